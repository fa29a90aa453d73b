"""Ratio1's SDK in a virtual environment of its own, for the real-SDK tests (``tests/test_ratio1_sdk.py``).

The SDK (``requirements-sdk.txt``, pinned) brings web3, pandas and about 160 MB of dependencies with pins of
their own; it must neither shape nor be shaped by the node's. So it lives in ``<test venv>/ratio1-sdk``
(``.venv/ratio1-sdk``: ignored by git and ruff, deleted with the test venv) and the tests run SDK scripts with
its interpreter, as separate processes. ``scripts/run-tests.sh`` prepares it (``python tests/sdk_env.py``);
the tests do it too when it is missing. ``EE_TEST_SDK_PYTHON`` names another interpreter that has the SDK.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from side_venv import INSTALL_TIMEOUT, REPO, side_python

REQUIREMENTS = REPO / "requirements-sdk.txt"


def sdk_python() -> Path:
    """The SDK's interpreter, installing the SDK first when it is missing or its requirements changed."""

    def install(folder: Path, python: Path) -> None:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
            check=True,
            timeout=INSTALL_TIMEOUT,
        )

    wanted = REQUIREMENTS.read_text(encoding="utf-8")
    return side_python("ratio1-sdk", "EE_TEST_SDK_PYTHON", wanted, f"the ratio1 SDK ({REQUIREMENTS.name})", install)


if __name__ == "__main__":
    print(sdk_python())
