"""Ratio1's SDK in a virtual environment of its own, for the real-SDK tests (``tests/test_ratio1_sdk.py``).

The SDK (``requirements-sdk.txt``, pinned) brings web3, pandas and about 160 MB of dependencies with pins of
their own; it must neither shape nor be shaped by the node's. So it lives in ``<test venv>/ratio1-sdk``
(``.venv/ratio1-sdk``: ignored by git and ruff, deleted with the test venv) and the tests run SDK scripts with
its interpreter, as separate processes. ``scripts/run-tests.sh`` prepares it (``python tests/sdk_env.py``);
the tests do it too when it is missing. ``EE_TEST_SDK_PYTHON`` names another interpreter that has the SDK.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements-sdk.txt"
INSTALL_TIMEOUT = 900


def venv_dir() -> Path:
    """``ratio1-sdk`` inside the running virtual environment (``.venv/ratio1-sdk`` outside one)."""
    base = Path(sys.prefix) if sys.prefix != sys.base_prefix else REPO / ".venv"
    return base / "ratio1-sdk"


def sdk_python() -> Path:
    """The SDK's interpreter, installing the SDK first when it is missing or its requirements changed."""
    explicit = os.environ.get("EE_TEST_SDK_PYTHON")
    if explicit:
        return Path(explicit)
    folder = venv_dir()
    python = folder / "bin" / "python"
    stamp = folder / ".installed"
    wanted = REQUIREMENTS.read_text(encoding="utf-8")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".ratio1-sdk.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time
        if python.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
            return python
        print(f"installing the ratio1 SDK ({REQUIREMENTS.name}) into {folder}", file=sys.stderr, flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
            check=True,
            timeout=INSTALL_TIMEOUT,
        )
        stamp.write_text(wanted, encoding="utf-8")
    return python


if __name__ == "__main__":
    print(sdk_python())
