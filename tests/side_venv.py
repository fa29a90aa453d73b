"""A virtual environment of its own beside the test venv, for what cannot share the test venv's packages.

``tests/sdk_env.py`` (Ratio1's SDK) and ``tests/openvino_env.py`` (onnxruntime's OpenVINO build) keep theirs in
``<test venv>/<name>`` (``.venv/<name>`` outside a venv: ignored by git and ruff, deleted with the test venv). Each
says what it installs and how; this module makes the folder, installs once under a file lock and reinstalls when
the requirements change (a stamp file holds what was installed).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT = 900


def venv_dir(name: str) -> Path:
    """``name`` inside the running virtual environment (``.venv/name`` outside one)."""
    base = Path(sys.prefix) if sys.prefix != sys.base_prefix else REPO / ".venv"
    return base / name


def side_python(
    name: str,
    override: str,
    wanted: str,
    what: str,
    install: Callable[[Path, Path], None],
    with_pip: bool = True,
) -> Path:
    """The interpreter of the venv ``name``, made first when it is missing or ``wanted`` (the requirements) changed.

    ``override``: an environment variable that names another interpreter to use instead. ``install(folder,
    python)`` installs into the new venv (made with pip in it, or without when ``with_pip`` is false); ``what`` is
    said on stderr while it runs.
    """
    explicit = os.environ.get(override)
    if explicit:
        return Path(explicit)
    folder = venv_dir(name)
    python = folder / "bin" / "python"
    stamp = folder / ".installed"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time
        if python.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
            return python
        print(f"installing {what} into {folder}", file=sys.stderr, flush=True)
        if not python.exists():
            made = [sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), str(folder)]
            subprocess.run(made, check=True, timeout=120)
        install(folder, python)
        stamp.write_text(wanted, encoding="utf-8")
    return python
