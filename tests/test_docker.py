"""The deployment path against a real Docker daemon: docker/smoke.sh under pytest (marker ``docker``).

Not part of the default run (pyproject's addopts deselect ``-m docker``); run it with

    .venv/bin/python -m pytest -m docker -s                          # builds the image, then every smoke step
    SMOKE_ARGS="--image edge-node:mainnet" .venv/bin/python -m pytest -m docker -s   # test an existing image
    SMOKE_ARGS="--wheelhouse" ...                                   # build from docker/wheelhouse/ (no network)

Without a reachable daemon (or Compose) the tests are skipped and say why.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMPOSE_DIR = REPO / "docker-compose"
pytestmark = pytest.mark.docker


def compose_command() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) and subprocess.run([*command, "version"], capture_output=True).returncode == 0:
            return command
    return None


def daemon_problem() -> str | None:
    if not shutil.which("docker"):
        return "the docker command is not installed"
    result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return f"no Docker daemon reachable: {(result.stderr or result.stdout).strip().splitlines()[-1:]}"
    if compose_command() is None:
        return "neither docker-compose nor the Compose v2 plugin is installed"
    return None


@pytest.fixture(scope="module")
def docker_ready() -> None:
    problem = daemon_problem()
    if problem:
        pytest.skip(problem)


@pytest.mark.parametrize(
    "files",
    [
        ["docker-compose.yml"],
        ["docker-compose.three-nodes.yml"],
        ["docker-compose.yml", "docker-compose.debug.yml"],
        ["docker-compose.yml", "docker-compose.local-images.yml"],
        ["docker-compose.three-nodes.yml", "docker-compose.local-images.yml"],
    ],
    ids=lambda files: "+".join(files),
)
def test_compose_config_is_valid(files: list[str]) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither docker-compose nor the Compose v2 plugin is installed")
    args = [part for name in files for part in ("-f", name)]
    result = subprocess.run([*command, *args, "config", "-q"], cwd=COMPOSE_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(3600)
def test_smoke_script_passes(docker_ready: None) -> None:
    args = shlex.split(os.environ.get("SMOKE_ARGS", ""))
    result = subprocess.run([str(REPO / "docker" / "smoke.sh"), *args], cwd=REPO, capture_output=True, text=True)
    print(result.stdout)
    steps = [line for line in result.stdout.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")]
    assert result.returncode == 0, f"docker/smoke.sh failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    assert steps and all(line.startswith("PASS") for line in steps), result.stdout
