"""onnxruntime's OpenVINO build in a virtual environment of its own, for the OpenVINO check of
``tests/test_execution_providers.py``.

``onnxruntime`` and ``onnxruntime-openvino`` install the same ``onnxruntime`` module, so the test venv (CPU build)
cannot hold the OpenVINO one. The check runs the serving plugins' ``predict`` (the model session) in
``<test venv>/onnxruntime-openvino`` (``.venv/onnxruntime-openvino``: ignored by git and ruff, deleted with the test
venv) as a separate process, on the tensors the test venv's ``pre_process`` made, and the test post-processes and
compares with the CPU provider. That venv holds only what ``predict`` imports: ``onnxruntime-openvino`` as pinned in
``requirements-openvino.txt`` (without its dependencies: sympy, protobuf... are for onnxruntime's tools), numpy and
pluggy as in ``requirements.txt``; the repository is on ``PYTHONPATH``, not installed. ``scripts/run-tests.sh``
prepares it (``python tests/openvino_env.py``); the test does it too when it is missing. ``EE_TEST_OPENVINO_PYTHON``
names another interpreter that has the OpenVINO build (and numpy, pluggy).

Run with that interpreter as ``python tests/openvino_env.py predict JOB.json``: see :func:`predict`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from side_venv import INSTALL_TIMEOUT, REPO, side_python

#: onnxruntime-openvino publishes x86-64 wheels only (Linux and Windows): elsewhere the check cannot run
NO_WHEEL_MACHINES = "onnxruntime-openvino has no wheel for {} (x86-64 only: requirements-openvino.txt)"


def requirements() -> list[str]:
    """The pinned onnxruntime-openvino lines of requirements-openvino.txt, and numpy and pluggy as the node has them."""
    wanted = {"onnxruntime-openvino": "requirements-openvino.txt", "numpy": "requirements.txt",
              "pluggy": "requirements.txt"}  # fmt: skip
    lines = []
    for name, file in wanted.items():
        text = (REPO / file).read_text(encoding="utf-8").splitlines()
        found = [line.split("#")[0].strip() for line in text if line.strip().lower().startswith(name)]
        lines.extend(found or [name])  # several lines: one per Python version, by environment marker
    return lines


def no_wheel_reason() -> str | None:
    """Why this machine can have no onnxruntime-openvino at all (None: it has wheels)."""
    machine = platform.machine().lower()
    return None if machine in ("x86_64", "amd64") else NO_WHEEL_MACHINES.format(machine or "this machine")


class InstallFailed(RuntimeError):
    """pip could not install the OpenVINO build here (its output is in the message)."""


def openvino_python() -> Path:
    """The OpenVINO venv's interpreter, installing it first when it is missing or its requirements changed."""

    def install(folder: Path, python: Path) -> None:  # no pip inside: the test venv's pip installs into it
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", *requirements()],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
        )  # fmt: skip
        if done.returncode != 0:
            python_version = ".".join(map(str, sys.version_info[:2]))
            errors = "\n".join(line for line in done.stderr.splitlines() if "WARNING: Location" not in line)
            raise InstallFailed(
                f"pip could not install {' '.join(requirements())} for Python {python_version} on "
                f"{platform.machine()} into {folder}:\n{errors.strip()}"
            )

    wanted = "\n".join(requirements())
    return side_python(
        "onnxruntime-openvino", "EE_TEST_OPENVINO_PYTHON", wanted, " ".join(requirements()), install, with_pip=False
    )


def run_predict(job: dict[str, Any], timeout: float = 300) -> list[dict[str, Any]]:
    """Run :func:`predict` on ``job`` in the OpenVINO venv; its answer (one dict per run)."""
    python = openvino_python()
    job_file = Path(job["work"]) / "job.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONHOME", None)
    done = subprocess.run([str(python), __file__, "predict", str(job_file)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the OpenVINO side failed ({python}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def predict(job_file: Path) -> list[dict[str, Any]]:
    """In the OpenVINO venv: for each run of the job, load its plugin (``plugin``: a file of the repository,
    ``class``) with ``config`` and ``models_dir`` as a model server does, and save what its ``predict`` gives for
    the tensor in ``tensor`` (.npy) to ``output`` (.npy). ``rapidocr_models``: the folder the PP-OCR plugins read
    their model files from (the test venv's rapidocr package; not installed here). Answers each plugin's
    ``model_info`` and the onnxruntime build."""
    import logging
    import threading

    import numpy as np
    import onnxruntime

    from edge_engine.api import PluginContext
    from edge_engine.plugin.discovery import import_file

    job = json.loads(job_file.read_text(encoding="utf-8"))
    answers = []
    for index, run in enumerate(job["runs"]):
        module = import_file(REPO / run["plugin"], f"openvino_check_{index}")
        if run.get("rapidocr_models"):
            module.rapidocr_models_dir = lambda folder=Path(run["rapidocr_models"]): folder
        models = Path(run["models_dir"])
        logger = logging.getLogger("openvino-check")
        context = PluginContext("", "", run["class"], None, logger, models, models, threading.Event())
        plugin = getattr(module, run["class"])(run["config"], context)
        plugin.on_init()
        output, _ = plugin.predict((np.load(run["tensor"]), None))
        np.save(run["output"], output)
        info = plugin.model_info()
        answers.append(
            {
                "providers": list(info["providers"]),
                "execution_provider": info["execution_provider"],
                "onnxruntime": onnxruntime.__version__,
                "available": onnxruntime.get_available_providers(),
            }
        )
    return answers


if __name__ == "__main__":
    if sys.argv[1:2] == ["predict"]:
        print(json.dumps(predict(Path(sys.argv[2]))))
    elif no_wheel_reason():
        print(f"no OpenVINO venv: {no_wheel_reason()}", file=sys.stderr)
    else:
        print(openvino_python())
