"""The supported platforms hold together in the files: Python 3.10–3.13, amd64 and arm64 images, one multi-arch tag.

No Docker daemon needed. The Python range is the same in pyproject.toml, scripts/_venv.sh, the Dockerfile and the
docs, and _venv.sh really accepts 3.13 (a stand-in interpreter reports the version); docker/build.sh builds another
architecture with ``--platform`` (its own tag), refuses 32-bit ARM and an arm64 GPU image, and so does the base
script; Kubernetes and Compose pin no architecture, so the multi-arch tag of docker/publish-multiarch.sh works
unchanged; the smoke script has its arm64 mode; the platforms table is in both docs. The real runs are
scripts/check-python313.sh (the suite on 3.13) and ``docker/smoke.sh --platform linux/arm64`` (docs/deployment.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SUPPORTED = [(3, 10), (3, 11), (3, 12), (3, 13)]
DOCS = [REPO / "README.md", REPO / "docs" / "deployment.md"]


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


# --- Python 3.10-3.13 -------------------------------------------------------------------------------------------
def test_pyproject_allows_3_10_to_3_13() -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^requires-python = ">=3\.10,<3\.14"$', text, re.M), "requires-python must allow 3.10-3.13"
    for major, minor in SUPPORTED:
        assert f'"Programming Language :: Python :: {major}.{minor}"' in text


def test_no_file_still_says_3_12_is_the_newest() -> None:
    paths = [*DOCS, REPO / "docker" / "Dockerfile", REPO / "scripts" / "_venv.sh", REPO / "docker" / "build.sh"]
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"3\.10\s*[–-]\s*3\.12|3\.10, 3\.11 or 3\.12", text), f"{path.name} still stops at 3.12"


@pytest.fixture
def stand_in_python(tmp_path: Path):
    """Make an interpreter that reports the given version to the code _venv.sh runs with -c."""

    def make(version: tuple[int, int]) -> Path:
        path = tmp_path / f"python{version[0]}.{version[1]}"
        path.write_text(
            f"#!{sys.executable}\nimport sys\nsys.version_info = ({version[0]}, {version[1]}, 0, 'final', 0)\n"
            "exec(sys.argv[2])\n",
            encoding="utf-8",
        )
        path.chmod(0o755)
        return path

    return make


@pytest.mark.parametrize(("version", "accepted"), [((3, 13), True), ((3, 10), True), ((3, 14), False), ((3, 9), False)])
def test_venv_script_picks_python_3_10_to_3_13(stand_in_python, version: tuple[int, int], accepted: bool) -> None:
    python = stand_in_python(version)
    tools = python.parent / "tools"  # a PATH with sed and no real interpreter to fall back on
    tools.mkdir()
    (tools / "sed").symlink_to(shutil.which("sed"))
    picker = 'eval "$(sed -n "/^pick_python()/,/^}/p" scripts/_venv.sh)"; pick_python'
    done = run([shutil.which("bash"), "-c", picker], env={**os.environ, "PYTHON": str(python), "PATH": str(tools)})
    if accepted:
        assert done.returncode == 0 and done.stdout.strip() == str(python), done.stderr
    else:
        assert done.returncode != 0 and "3.10, 3.11, 3.12 or 3.13 is needed" in done.stderr


# --- images of two architectures ------------------------------------------------------------------------------
@pytest.fixture
def fake_docker(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A ``docker`` that records its calls: no buildx (the classic builder) unless FAKE_BUILDX is set; an image whose
    name says arm64 is arm64, any other amd64; an image's ID is ``sha256:`` and its name."""
    log = tmp_path / "docker.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(
        f'#!/bin/sh\necho "$*" >> {log}\n'
        "for last; do :; done\n"
        'case "$1" in buildx) [ -n "$FAKE_BUILDX" ] || exit 1 ;;\n'
        '  image) case "$*" in *Architecture*arm64*) echo arm64 ;; *Architecture*) echo amd64 ;;\n'
        '    *.Id*) echo "sha256:$last" ;; esac ;; esac\nexit 0\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return log, {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "REVISION": "test"}


def build_command(log: Path) -> str:
    (build,) = [c for c in log.read_text(encoding="utf-8").splitlines() if c.startswith("build ")]
    return build


def test_build_sh_builds_arm64_under_its_own_tag(fake_docker: tuple[Path, dict[str, str]]) -> None:
    """The build stage runs on the host's platform from the host's base; the image is the arm64 base's."""
    log, env = fake_docker
    args = ["--base", "base-arm64:1", "--build-base", "base:1", "--platform", "linux/arm64"]
    done = run(["docker/build.sh", *args], env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "edge-node:mainnet-arm64"
    build = build_command(log)
    assert "-t edge-node:mainnet-arm64" in build, build
    for arg in ["BASE_IMAGE=base-arm64:1", "BUILD_BASE_IMAGE=base:1", "BUILD_PLATFORM=linux/amd64", "TARGETARCH=arm64"]:
        assert f"--build-arg {arg} " in build, (arg, build)
    # the classic builder checks every stage against --platform, and the build stage is amd64: none given
    assert "--platform" not in build, build


def test_build_sh_gives_buildkit_the_platform(fake_docker: tuple[Path, dict[str, str]]) -> None:
    log, env = fake_docker
    args = ["--base", "base-arm64:1", "--build-base", "base:1", "--platform", "linux/arm64"]
    done = run(["docker/build.sh", *args], env={**env, "FAKE_BUILDX": "1"})
    assert done.returncode == 0, done.stderr
    build = build_command(log)
    assert "--platform linux/arm64" in build and "--build-arg TARGETARCH=arm64 " in build, build


def test_build_sh_refuses_a_base_of_the_wrong_architecture(fake_docker: tuple[Path, dict[str, str]]) -> None:
    log, env = fake_docker
    done = run(["docker/build.sh", "--base", "base:1", "--build-base", "other:1", "--platform", "linux/arm64"], env=env)
    assert done.returncode == 1 and "the base base:1 is amd64, not arm64" in done.stderr, done.stderr
    assert "build " not in log.read_text(encoding="utf-8")


def test_the_native_build_runs_as_before(fake_docker: tuple[Path, dict[str, str]]) -> None:
    log, env = fake_docker
    done = run(["docker/build.sh", "--base", "base:1"], env=env)
    assert done.returncode == 0, done.stderr
    build = build_command(log)
    assert "--build-arg BASE_IMAGE=base:1 --build-arg BUILD_BASE_IMAGE=base:1 " in build, build
    assert "--build-arg TARGETARCH=amd64 " in build and "--platform" not in build, build


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--platform", "linux/arm/v7"], "not supported: onnxruntime has no 32-bit wheels"),
        (["--platform", "linux/386"], "not supported"),
        (["--platform", "linux/riscv64"], "must be linux/amd64 or linux/arm64"),
        (["--gpu", "--platform", "linux/arm64"], "GPU image is amd64 only"),
    ],
)
def test_build_sh_refuses_what_is_not_supported(fake_docker: tuple[Path, dict[str, str]], args, message) -> None:
    log, env = fake_docker
    done = run(["docker/build.sh", *args], env=env)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not log.exists() or "build " not in log.read_text(encoding="utf-8")


def test_build_base_refuses_32_bit_arm(fake_docker: tuple[Path, dict[str, str]]) -> None:
    _, env = fake_docker
    done = run(["docker/build-base.sh"], env={**env, "ARCH": "armhf"})
    assert done.returncode == 2 and "no 32-bit wheels" in done.stderr, done.stderr


def test_the_offline_base_is_debian_13_for_both_architectures() -> None:
    base = (REPO / "docker" / "build-base.sh").read_text(encoding="utf-8")
    assert 'SUITE="${SUITE:-trixie}"' in base and 'debootstrap --arch="$ARCH"' in base
    # the image must say its architecture: a build FROM scratch with --platform (Docker 20.10's import ignores it)
    assert 'docker build -q --platform "linux/$ARCH"' in base and "FROM scratch" in base
    build = (REPO / "docker" / "build.sh").read_text(encoding="utf-8")
    assert 'OFFLINE_BASE="${OFFLINE_BASE:-edge-node-base:trixie}"' in build


# --- one tag for both: nothing pins an architecture ------------------------------------------------------------
def walk(node: object):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def test_k8s_pins_no_architecture() -> None:
    for path in sorted((REPO / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            for key, value in walk(document):
                assert "arch" not in str(key).lower(), f"{path.name}: {key}"
                if key in ("nodeSelector", "affinity", "nodeAffinity"):
                    assert "arch" not in str(value), f"{path.name}: {key} pins an architecture: {value}"


def test_compose_pins_no_platform() -> None:
    for path in sorted((REPO / "docker-compose").glob("*.yml")):
        services = yaml.safe_load(path.read_text(encoding="utf-8")).get("services") or {}
        for name, service in services.items():
            assert "platform" not in (service or {}), f"{path.name}: service {name} pins a platform"


def test_publish_script_joins_amd64_and_arm64() -> None:
    text = (REPO / "docker" / "publish-multiarch.sh").read_text(encoding="utf-8")
    assert "ARCHES=(amd64 arm64)" in text
    for command in ("docker manifest create", "docker manifest annotate --os linux --arch", "docker manifest push"):
        assert command in text
    assert 'docker pull -q --platform "linux/$arch" "$list"' in text  # each platform pulled back and checked
    assert run(["bash", "-n", "docker/publish-multiarch.sh"]).returncode == 0


# --- the arm64 smoke and the docs ------------------------------------------------------------------------------
def test_smoke_script_has_an_arm64_mode() -> None:
    smoke = (REPO / "docker" / "smoke.sh").read_text(encoding="utf-8")
    assert '--platform) PLATFORM="$2"' in smoke and "source docker/smoke-platform.sh" in smoke
    steps = (REPO / "docker" / "smoke-platform.sh").read_text(encoding="utf-8")
    listed = re.findall(r"^  run_step (\S+) (\S+)$", steps, re.M)
    names = [name for name, _ in listed]
    for needed in ("run-healthy", "heartbeat", "exec-get_node_info", "demo-pipeline", "model-pipeline", "stop"):
        assert needed in names
    for _, function in listed:
        assert re.search(rf"^{function}\(\) \{{", steps, re.M), f"{function} is not defined"
    assert run(["bash", "-n", "docker/smoke-platform.sh"]).returncode == 0
    done = run(["docker/smoke.sh", "--help"])
    assert "--platform linux/arm64" in done.stdout


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_platforms_table_in_the_docs(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    table = text[text.index("<!-- platforms -->") : text.index("<!-- /platforms -->")]
    for row in ("amd64", "arm64", "Jetson", "32-bit ARM", "Python 3.13"):
        assert row in table, f"{path.name}: the platforms table has no {row} row"
    for how in ("native", "emulated", "untested", "not supported"):
        assert how in table
