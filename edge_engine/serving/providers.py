"""Which onnxruntime execution providers an ONNX serving plugin's ``EXECUTION_PROVIDER`` asks for.

``EXECUTION_PROVIDER`` names an accelerator by a short name: ``"cpu"``, ``"openvino"``, ``"cuda"``, ``"tensorrt"``,
or ``"auto"`` (the default: the best one the installed onnxruntime build has, see :data:`AUTO_ORDER`). It maps to
onnxruntime provider names (:data:`PROVIDERS`), each list ending with the CPU provider, which runs the operators an
accelerator does not take. A choice the installed build cannot run is an error naming the model and the package
to install: the model never runs silently on another provider than the one asked for.

onnxruntime ships one build per package (``onnxruntime``, ``onnxruntime-openvino``, ``onnxruntime-gpu``), and all of
them install the same ``onnxruntime`` module: one venv (or image) holds one of them. The node process never imports
onnxruntime: there :func:`installed_build` reads the installed package's name from its metadata, enough to refuse a
pipeline at once and to choose the number of worker processes; the model-server process then checks against
``onnxruntime.get_available_providers()``, which is what counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

CPU = "CPUExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

#: short name → onnxruntime providers in preference order (the CPU one takes what the accelerator does not)
PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": (CPU,),
    "openvino": (OPENVINO, CPU),
    "cuda": (CUDA, CPU),
    "tensorrt": (TENSORRT, CUDA, CPU),
}
CHOICES = ("auto", *PROVIDERS)
#: ``"auto"``: the first of these the build has. CUDA before the CPU; TensorRT only when asked (it builds an engine
#: per model and input shape at load, minutes on a Jetson). OpenVINO: see docs/serving.md "Execution providers"
#: (``benchmarks/bench_providers.py``).
AUTO_ORDER = ("cuda", "cpu")
#: the package whose build has each accelerator (what the error says to install)
PACKAGES = {
    "cpu": "onnxruntime",
    "openvino": "onnxruntime-openvino",
    "cuda": "onnxruntime-gpu",
    "tensorrt": "onnxruntime-gpu (and NVIDIA's TensorRT libraries)",
}
#: the accelerators each onnxruntime package provides (read in the node process, without importing onnxruntime)
BUILDS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("cpu",),
    "onnxruntime-openvino": ("openvino", "cpu"),
    "onnxruntime-gpu": ("tensorrt", "cuda", "cpu"),
}
INSTALL = {
    "openvino": "pip install 'edge-engine[openvino]' in a venv without onnxruntime, or the image's --openvino variant",
    "cuda": "the image's --gpu variant (onnxruntime-gpu) on a machine with an NVIDIA GPU",
    "tensorrt": "the image's --gpu variant on a machine with an NVIDIA GPU and TensorRT",
    "cpu": "pip install onnxruntime",
}


class ProviderUnavailable(ValueError):
    """The ``EXECUTION_PROVIDER`` asked for is not in the installed onnxruntime build."""


def choice_of(config: Mapping[str, Any]) -> str:
    """The config's ``EXECUTION_PROVIDER`` in lower case (``"auto"`` when unset)."""
    return str(config.get("EXECUTION_PROVIDER") or "auto").strip().lower()


def installed_build() -> str | None:
    """The name of the installed onnxruntime package (one of :data:`BUILDS`), or None when there is none."""
    for name in ("onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime"):
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        return name
    return None


def build_accelerators(build: str | None) -> tuple[str, ...]:
    """The short names a build provides (from :data:`BUILDS`; an unknown build: the CPU only)."""
    if build is None:
        return ()
    return BUILDS.get(build, ("cpu",))


def resolve(choice: str, available: Sequence[str], model: str, build: str = "onnxruntime") -> str:
    """The accelerator ``choice`` means with the providers ``available``: ``"auto"`` becomes the first of
    :data:`AUTO_ORDER` whose providers are all there. Raises :class:`ProviderUnavailable` naming ``model`` when the
    build lacks a provider of the choice, and ValueError for a name that is no choice."""
    choice = choice.strip().lower()
    if choice == "auto":
        for name in AUTO_ORDER:
            if all(p in available for p in PROVIDERS[name]):
                return name
        raise ProviderUnavailable(
            f"model {model!r}: EXECUTION_PROVIDER 'auto' found no usable provider in {build} "
            f"(it has {', '.join(available) or 'none'})"
        )
    if choice not in PROVIDERS:
        raise ValueError(f"model {model!r}: EXECUTION_PROVIDER must be one of {', '.join(CHOICES)} (got {choice!r})")
    missing = [p for p in PROVIDERS[choice] if p not in available]
    if missing:
        raise ProviderUnavailable(
            f"model {model!r}: EXECUTION_PROVIDER {choice!r} needs {', '.join(missing)}, which the installed "
            f"{build} does not have (it has {', '.join(available) or 'none'}); install {PACKAGES[choice]} instead "
            f"of {build}: {INSTALL[choice]}"
        )
    return choice


def session_providers(choice: str, threads: int) -> list[str | tuple[str, dict[str, str]]]:
    """The ``providers=`` argument of ``onnxruntime.InferenceSession`` for a resolved ``choice``, with the same
    thread budget as the CPU provider's ``INTRA_OP_THREADS`` (``threads`` 0: the accelerator's default)."""
    providers: list[str | tuple[str, dict[str, str]]] = []
    for name in PROVIDERS[choice]:
        if name == OPENVINO:
            options = {"device_type": "CPU", "precision": "FP32", "num_streams": "1"}
            if threads > 0:
                options["num_of_threads"] = str(threads)
            providers.append((name, options))
        else:
            providers.append(name)
    return providers


def node_problems(config: Mapping[str, Any], model: str, build: str | None) -> list[str]:
    """What the node process can tell before a server starts: the choice is known and the installed package
    ``build`` has it (the server checks again against the providers onnxruntime reports)."""
    choice = choice_of(config)
    if choice not in CHOICES:
        return [f"model {model!r}: EXECUTION_PROVIDER must be one of {', '.join(CHOICES)} (got {choice!r})"]
    if build is None or choice == "auto" or choice in build_accelerators(build):
        return []  # no onnxruntime in this process's environment: the server says what it finds
    return [
        f"model {model!r}: EXECUTION_PROVIDER {choice!r} needs {PACKAGES[choice]}, but this node has {build}: "
        f"{INSTALL[choice]}"
    ]


def uses_gpu(config: Mapping[str, Any], build: str | None) -> bool:
    """Whether the model runs on a GPU (then one process feeds it): ``cuda``/``tensorrt``, or ``auto`` on a GPU
    build."""
    choice = choice_of(config)
    if choice == "auto":
        accelerators = build_accelerators(build)
        choice = next((a for a in AUTO_ORDER if a in accelerators), "cpu")
    return choice in ("cuda", "tensorrt")


def explicit(wanted: Sequence[str], available: Sequence[str], model: str, build: str = "onnxruntime") -> list[str]:
    """``EXECUTION_PROVIDERS`` (onnxruntime names, for a provider :data:`PROVIDERS` does not name): every one must
    be in the build (:class:`ProviderUnavailable` naming ``model`` otherwise); the CPU provider is added last."""
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ProviderUnavailable(
            f"model {model!r}: EXECUTION_PROVIDERS names {', '.join(missing)}, which the installed {build} does not "
            f"have (it has {', '.join(available) or 'none'})"
        )
    return [*wanted, CPU] if CPU not in wanted else list(wanted)


def load(config: Mapping[str, Any], available: Sequence[str], model: str, build: str) -> tuple[str, list[Any]]:
    """For the model server: the accelerator's short name (``"custom"`` for an ``EXECUTION_PROVIDERS`` list) and
    the ``providers=`` argument of the session, or :class:`ProviderUnavailable` naming ``model``."""
    listed = list(config.get("EXECUTION_PROVIDERS") or [])
    if listed:
        return "custom", list(explicit(listed, available, model, build))
    choice = resolve(choice_of(config), available, model, build)
    return choice, session_providers(choice, int(config.get("INTRA_OP_THREADS") or 0))
