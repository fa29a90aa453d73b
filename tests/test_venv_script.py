"""``scripts/_venv.sh``: one install stamp that knows dev ⊇ run, and installs only when a requirements file changed.

The script is sourced in a folder with copies of the requirement files and a virtual environment whose ``python`` is a
stand-in that records each ``pip install`` (the logic under test is the script's decision, not pip).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FILES = ("requirements.txt", "requirements-models.txt", "requirements-dev.txt", "pyproject.toml")

pytestmark = pytest.mark.skipif(shutil.which("sha256sum") is None, reason="sha256sum (coreutils) is not installed")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in FILES:
        shutil.copy(REPO / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text('#!/bin/sh\necho "$*" >> "$(dirname "$0")/../pip.log"\n', encoding="utf-8")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def setup(checkout: Path, dev: bool) -> list[str]:
    """Source the script as run-node.sh (dev False) or run-tests.sh (dev True); the pip installs it ran."""
    log = checkout / ".venv" / "pip.log"
    log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DEV", "VENV")}
    if dev:
        env["DEV"] = "1"
    script = f"set -euo pipefail; source {REPO / 'scripts' / '_venv.sh'}"
    subprocess.run(["bash", "-c", script], cwd=checkout, env=env, check=True, capture_output=True, timeout=30)
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [line for line in lines if line.startswith("-m pip install --quiet -e")]


def test_run_after_dev_installs_nothing(checkout: Path) -> None:
    first = setup(checkout, dev=True)
    assert len(first) == 1 and "requirements-dev.txt" in first[0]
    assert setup(checkout, dev=False) == []  # run-node.sh after run-tests.sh: dev ⊇ run
    assert setup(checkout, dev=True) == []


def test_dev_after_run_installs_the_test_tools(checkout: Path) -> None:
    first = setup(checkout, dev=False)
    assert len(first) == 1 and "requirements.txt" in first[0] and "requirements-dev.txt" not in first[0]
    assert setup(checkout, dev=False) == []
    second = setup(checkout, dev=True)
    assert len(second) == 1 and "requirements-dev.txt" in second[0]
    assert setup(checkout, dev=False) == []


def test_only_a_change_of_content_reinstalls(checkout: Path) -> None:
    setup(checkout, dev=True)
    os.utime(checkout / "requirements.txt")  # a checkout that touches the file: same content, nothing to do
    assert setup(checkout, dev=False) == []
    with open(checkout / "requirements.txt", "a", encoding="utf-8") as handle:
        handle.write("# a new line\n")
    again = setup(checkout, dev=False)  # a dev venv stays dev: the test tools are reinstalled with the rest
    assert len(again) == 1 and "requirements-dev.txt" in again[0]
    assert setup(checkout, dev=True) == []


def test_the_stamps_of_earlier_versions_count(checkout: Path) -> None:
    (checkout / ".venv" / ".installed-dev").touch()  # newer than every requirement file: up to date
    assert setup(checkout, dev=False) == []
    assert not (checkout / ".venv" / ".installed-dev").exists()
    assert "requirements-dev.txt" in (checkout / ".venv" / ".installed").read_text(encoding="utf-8")
