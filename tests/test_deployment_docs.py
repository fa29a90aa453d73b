"""The commands docs/deployment.md and the README give a newcomer agree with the files they run.

No Docker daemon needed: the compose commands name files that exist and set what their overrides need (the
offline stack builds its S3 image from the wheelhouse only with ``PIP_SOURCE=wheelhouse``); every ``build.sh``
option used exists; every command run with ``docker exec`` is on the image's ``PATH``; the image table lists the
Dockerfile's ports and environment; the plugin mount lands in a folder the node scans. ``docker/build.sh`` runs
against a stand-in ``docker`` that records its calls: the OCI revision label is the checkout's commit and the
classic builder's build stage gets a name instead of staying an anonymous ``<none>`` image.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from edge_engine import constants as C

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "docs" / "deployment.md", REPO / "README.md"]
COMPOSE_DIR = REPO / "docker-compose"
BUILD_SH = REPO / "docker" / "build.sh"
IMAGE_TOOLS = {"edge-node", "edge-client", "stat", "python3", "sh"}


def shell_lines(path: Path) -> list[str]:
    """The lines of the ``sh`` code blocks, continuation lines joined, comments dropped."""
    lines: list[str] = []
    in_block, pending = False, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_block = stripped == "```sh"
            continue
        if not in_block:
            continue
        pending += line.split("  #")[0].rstrip().rstrip("\\") + " "
        if not line.rstrip().endswith("\\"):
            if pending.strip():
                lines.append(" ".join(pending.split()))
            pending = ""
    return lines


def compose_commands() -> list[tuple[Path, str]]:
    found = [(p, line) for p in DOCS for line in shell_lines(p) if "docker-compose" in line or "docker compose" in line]
    for path in COMPOSE_DIR.glob("*.yml"):  # the usage lines in the compose files' own comments
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#   ") and "docker-compose" in line:
                found.append((path, line[1:].split("  #")[0].strip()))
    return found


def test_every_compose_command_names_existing_files() -> None:
    commands = compose_commands()
    assert len(commands) > 10
    for source, line in commands:
        for name in re.findall(r"-f (\S+\.ya?ml)\b", line):
            assert (COMPOSE_DIR / name).is_file(), f"{source.name}: {line!r} names {name}, which does not exist"


def test_the_offline_stack_commands_take_the_s3_package_from_the_wheelhouse() -> None:
    offline = [(s, line) for s, line in compose_commands() if "local-images.yml" in line and " up" in line]
    assert len(offline) >= 4  # deployment.md twice, README, the compose files' comments
    for source, line in offline:
        assert "PIP_SOURCE=wheelhouse" in line, f"{source.name}: {line!r} builds the S3 image from the index"
    text = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    recipe = text[text.index("The whole offline path") :]
    assert recipe.index("docker/make-wheelhouse.sh") < recipe.index("docker/build.sh --wheelhouse")
    assert recipe.index("docker/build.sh --wheelhouse") < recipe.index("PIP_SOURCE=wheelhouse docker-compose")


def build_options() -> set[str]:
    text = BUILD_SH.read_text(encoding="utf-8")
    return set(re.findall(r"^\s+(--[a-z-]+)\)", text, flags=re.MULTILINE))


def test_documented_build_options_exist() -> None:
    options = build_options()
    assert {"--network", "--gpu", "--wheelhouse", "--ca", "--base", "--prune-stage"} <= options
    for path in DOCS:
        for line in shell_lines(path):
            if line.startswith("docker/build.sh"):
                for option in re.findall(r"(--[a-z-]+)", line.split(" -- ")[0]):
                    assert option in options, f"{path.name}: {line!r}: build.sh has no {option}"


def test_documented_scripts_exist_and_the_ones_run_are_executable() -> None:
    for path in DOCS:
        for script in set(re.findall(r"\b((?:docker|scripts|cmds)/[\w.-]+\.(?:sh|py))\b", path.read_text("utf-8"))):
            assert (REPO / script).is_file(), f"{path.name} names {script}, which does not exist"
        for line in shell_lines(path):
            first = line.split()[0]
            if first.startswith(("docker/", "scripts/", "cmds/")):
                assert os.access(REPO / first, os.X_OK), f"{path.name}: {line!r}: {first} is not executable"


def test_docker_exec_commands_are_on_the_image_path() -> None:
    commands = {p.name for p in (REPO / "cmds").iterdir() if os.access(p, os.X_OK)}
    seen = set()
    for path in DOCS:
        for line in shell_lines(path):
            words = shlex.split(line.replace("$(", "").replace(")", ""))
            for i, word in enumerate(words[:-2]):
                if word == "exec" and words[i - 1] == "docker":
                    command = words[i + 2]
                    seen.add(command)
                    assert command in commands | IMAGE_TOOLS, f"{path.name}: {line!r}: {command} is not in the image"
    assert {"deploy", "delete", "get_node_info", "edge-client"} <= seen


def runtime_stage() -> str:
    text = (REPO / "docker" / "Dockerfile").read_text(encoding="utf-8")
    return text[text.rindex("\nFROM ") :]


def test_the_image_table_lists_ports_and_environment() -> None:
    doc = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    stage = runtime_stage()
    ports = re.findall(r"^EXPOSE (.+)$", stage, flags=re.MULTILINE)
    assert ports
    for port in " ".join(ports).split():
        assert f"`EXPOSE {port}`" in doc, f"EXPOSE {port} is not in docs/deployment.md"
    env = dict(re.findall(r"(EE_[A-Z_]+)=(\S+?)\s*(?:\\|$)", stage, flags=re.MULTILINE))
    assert env.get("EE_METRICS_PORT") == "9100"
    for name, value in env.items():
        if "$" not in value:
            assert f"`{name}={value}`" in doc, f"ENV {name}={value} is not in the image table"


def test_the_documented_plugin_mount_is_a_folder_the_node_scans() -> None:
    doc = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    targets = re.findall(r"-v \"\$PWD/[\w.-]+:(/edge_node/[\w/.-]+?)(?::ro)?\"", doc)
    copies = re.findall(r"^\s*COPY \S+ (/edge_node/\S+)$", doc, flags=re.MULTILINE)
    plugin_targets = [t for t in targets + copies if "plugins" in t or "extensions" in t]
    assert len(plugin_targets) >= 2
    for target in plugin_targets:
        parts = Path(target).relative_to("/edge_node").parts
        assert parts[0] in C.DEFAULT_PLUGIN_FOLDERS and parts[1] in C.PLUGIN_KINDS, target


@pytest.fixture
def fake_docker(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A ``docker`` that records every call; ``buildx`` is missing (the classic builder), so each build leaves its stage
    as a dangling image: ``stage-new`` (this build's, listed first, as ``docker images`` lists newest first) and
    ``stage-old``; ``edge-node:mainnet-build`` names ``prev``, the stage of an earlier build."""
    log = tmp_path / "docker.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$1" in\n'
        "  buildx) exit 1 ;;\n"
        '  image) [ "$2" = inspect ] && {\n'
        '    case "$*" in *Architecture*) echo amd64 ;; *) echo "sha256:prev" ;; esac; exit 0; } ;;\n'
        '  images) printf "sha256:stage-new\\nsha256:stage-old\\n"; exit 0 ;;\n'
        "esac\n"
        "exit 0\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("REVISION", None)
    return log, env


def run_build(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BUILD_SH), "--base", "some-base:1", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_build_sh_labels_the_commit_and_names_the_build_stage(fake_docker: tuple[Path, dict[str, str]]) -> None:
    log, env = fake_docker
    assert run_build(env) == "edge-node:mainnet"
    calls = log.read_text(encoding="utf-8").splitlines()
    builds = [c for c in calls if c.startswith("build ")]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert re.search(rf"--build-arg REVISION={commit}(-dirty)? ", builds[0]), builds[0]
    assert len(builds) == 1
    # (the stage of this build's target architecture: an amd64 and an arm64 build may run side by side)
    stage_query = "images -q --no-trunc --filter dangling=true --filter label=edge-node.stage=build"
    assert f"{stage_query} --filter label=edge-node.stage.target-arch=amd64" in calls
    assert "tag sha256:stage-new edge-node:mainnet-build" in calls  # this build's stage gets a name
    assert {"rmi sha256:stage-old", "rmi sha256:prev"} <= set(calls)  # older anonymous ones and the replaced one go
    assert "rmi sha256:stage-new" not in calls and "rmi edge-node:mainnet-build" not in calls


def test_the_build_stage_carries_the_label_build_sh_looks_for() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text(encoding="utf-8")
    build_stage = text[text.index(" AS build") : text.index("\nFROM ", text.index(" AS build"))]
    assert 'LABEL edge-node.stage="build"' in build_stage
    assert "label=edge-node.stage=build" in BUILD_SH.read_text(encoding="utf-8")


def test_build_sh_revision_override_and_prune_stage(fake_docker: tuple[Path, dict[str, str]]) -> None:
    log, env = fake_docker
    run_build({**env, "REVISION": "v1.2.3"}, "--prune-stage")
    calls = log.read_text(encoding="utf-8").splitlines()
    assert "--build-arg REVISION=v1.2.3 " in next(c for c in calls if c.startswith("build "))
    assert "rmi edge-node:mainnet-build" in calls
