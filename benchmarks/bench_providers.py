"""Execution providers on this CPU: onnxruntime's CPU provider against OpenVINO's (``EXECUTION_PROVIDER``).

Two models, each run the way a model-server process runs it (one session, ``INTRA_OP_THREADS`` threads, the
providers :mod:`edge_engine.serving.providers` gives the plugin, so OpenVINO gets the same thread budget through
``num_of_threads``):

- the PP-OCRv6 text detector of the ``rapidocr`` wheel on a 640×480 frame (``PP_OCR_DETECTOR`` with ``LIMIT_SIDE``
  640), and
- a YOLO-shaped convnet built here with ``onnx`` (640×640 input, a strided conv backbone with SiLU and three
  heads, output ``[1, 84, 8400]`` as a YOLOv8 export; about 3 GFLOPs, random weights: the cost, not the boxes).

onnxruntime's builds cannot share a venv (each installs the ``onnxruntime`` module), so each set-up runs in a fresh
process of its own interpreter: the CPU provider in this venv (the ``onnxruntime`` package), OpenVINO and the CPU
provider of the OpenVINO build in the ``--openvino-python`` venv (made by ``--make-venv DIR``: the node's
requirements with ``requirements-openvino.txt`` instead of ``requirements-models.txt``' onnxruntime). The set-ups
alternate over ``--rounds`` rounds (the order turns each round), so the machine's load hits them alike. Per run:
median ms per frame, CPU ms per frame (user + system: the thread budget held?), the session's load seconds
(OpenVINO compiles the model there), RSS after the runs and its peak, and the outputs' largest difference from the
CPU provider's.

    .venv/bin/python benchmarks/bench_providers.py --make-venv .venv/openvino      # once (about 250 MB)
    .venv/bin/python benchmarks/bench_providers.py [--openvino-python .venv/openvino/bin/python] [--rounds 5]
        [--frames 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record
from _serving_common import REPO

DEFAULT_VENV = REPO / ".venv" / "openvino"

CHILD = r"""
import json, resource, sys, time
job = json.loads(sys.argv[1])
sys.path.insert(0, job["repo"])


def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


import numpy as np
import onnxruntime as ort
from edge_engine.serving import providers as execution

out = {"version": ort.__version__, "build": execution.installed_build(), "import_mb": rss_mb()}
options = ort.SessionOptions()
options.intra_op_num_threads = job["threads"]
options.inter_op_num_threads = 1
options.log_severity_level = 3
choice = execution.resolve(job["provider"], ort.get_available_providers(), job["name"], out["build"])
started = time.perf_counter()
session = ort.InferenceSession(job["model"], options, providers=execution.session_providers(choice, job["threads"]))
data = np.random.default_rng(7).random(job["shape"], dtype=np.float32)
feeds = {session.get_inputs()[0].name: data}
first = session.run(None, feeds)[0]
out["load_s"] = time.perf_counter() - started
out["providers"] = session.get_providers()
times, cpu_started = [], cpu_s()
for _ in range(job["frames"]):
    begun = time.perf_counter()
    session.run(None, feeds)
    times.append(time.perf_counter() - begun)
out["cpu_ms"] = 1000 * (cpu_s() - cpu_started) / job["frames"]
out["ms"] = 1000 * sorted(times)[len(times) // 2]
out["rss_mb"] = rss_mb()
out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
np.save(job["output"], first)
print(json.dumps(out))
"""


def yolo_shaped(path: Path) -> Path:
    """A convnet with a YOLOv8 export's input and output shapes: 640×640 RGB → ``[1, 84, 8400]``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    nodes: list[Any] = []
    inits: list[Any] = []

    def conv(x: str, cin: int, cout: int, stride: int, name: str, kernel: int = 3, act: bool = True) -> str:
        weight = rng.normal(0, (2 / (cin * kernel * kernel)) ** 0.5, (cout, cin, kernel, kernel)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"{name}.w"))
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}.b"))
        pad = kernel // 2
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.c"], strides=[stride] * 2,
                                      pads=[pad] * 4, kernel_shape=[kernel] * 2))  # fmt: skip
        if not act:
            return f"{name}.c"
        nodes.append(helper.make_node("Sigmoid", [f"{name}.c"], [f"{name}.s"]))
        nodes.append(helper.make_node("Mul", [f"{name}.c", f"{name}.s"], [name]))  # SiLU, as YOLOv8
        return name

    x = conv("images", 3, 16, 2, "stem")  # 320
    x = conv(x, 16, 32, 2, "d1")  # 160
    x = conv(x, 32, 32, 1, "b1")
    p3 = conv(conv(x, 32, 64, 2, "d2"), 64, 64, 1, "b2")  # 80
    p4 = conv(conv(p3, 64, 128, 2, "d3"), 128, 128, 1, "b3")  # 40
    p5 = conv(conv(p4, 128, 256, 2, "d4"), 256, 256, 1, "b4")  # 20
    inits.append(numpy_helper.from_array(np.array([1, 84, -1], np.int64), "flat"))
    heads = []
    for level, (feature, channels) in enumerate(((p3, 64), (p4, 128), (p5, 256))):
        head = conv(conv(feature, channels, 64, 1, f"h{level}"), 64, 84, 1, f"o{level}", kernel=1, act=False)
        nodes.append(helper.make_node("Reshape", [head, "flat"], [f"r{level}"]))
        heads.append(f"r{level}")
    nodes.append(helper.make_node("Concat", heads, ["raw"], axis=2))
    nodes.append(helper.make_node("Sigmoid", ["raw"], ["output0"]))
    graph = helper.make_graph(
        nodes, "yolo_shaped", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, 8400])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def pp_ocr_detector() -> Path:
    from edge_engine.plugin.discovery import import_file

    module = import_file(REPO / "extensions" / "serving" / "pp_ocr.py", "bench_providers_pp_ocr")
    return module.rapidocr_models_dir() / module.PpOcrDetector.MODEL_FILE  # type: ignore[no-any-return]


def make_venv(target: Path) -> None:
    """A venv with the node's requirements and onnxruntime-openvino (never next to onnxruntime)."""
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REPO / "requirements.txt"), "-r", str(REPO / "requirements-openvino.txt")],
                   check=True)  # fmt: skip
    rapidocr = [line.strip() for line in (REPO / "requirements-models.txt").read_text().splitlines()
                if line.strip().startswith("rapidocr")]  # fmt: skip
    subprocess.run([*pip, "--no-deps", *rapidocr], check=True)  # DECISIONS 15
    subprocess.run([*pip, "pytest", "pytest-timeout", "onnx"], check=True)  # for tests/test_execution_providers.py


def max_diff(output: Path, reference: Path) -> float | None:
    """The largest absolute difference between a run's first output and the CPU provider's (None: no reference)."""
    import numpy as np

    if not reference.exists():
        return None
    return float(np.abs(np.load(output) - np.load(reference)).max())


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--openvino-python", type=Path, default=DEFAULT_VENV / "bin" / "python")
    parser.add_argument("--make-venv", type=Path, help="create the OpenVINO venv there, then exit")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=15, help="timed frames per run (after the first)")
    parser.add_argument("--threads", type=int, default=1, help="INTRA_OP_THREADS (OpenVINO: num_of_threads)")
    args = parser.parse_args(argv)
    if args.make_venv:
        make_venv(args.make_venv)
        return 0
    openvino = args.openvino_python if args.openvino_python.exists() else None
    setups = [("cpu", sys.executable, "cpu")]
    if openvino is None:
        print(f"no OpenVINO venv at {args.openvino_python}: only the CPU provider runs (make it with --make-venv)")
    else:
        setups += [("openvino", str(openvino), "openvino"), ("cpu, OpenVINO build", str(openvino), "cpu")]
    work = Path(tempfile.mkdtemp(prefix="bench-providers-"))
    models = {"PP-OCRv6 detector 640x480": (pp_ocr_detector(), [1, 3, 480, 640]),
              "YOLO-shaped 640x640": (yolo_shaped(work / "yolo_shaped.onnx"), [1, 3, 640, 640])}  # fmt: skip
    print(f"load before: {load()}; {args.rounds} rounds × {args.frames} frames, {args.threads} thread(s)")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_ in range(args.rounds):
        for model, (path, shape) in models.items():
            order = setups if round_ % 2 == 0 else setups[::-1]
            for label, python, provider in order:
                job = {"repo": str(REPO), "model": str(path), "name": path.name, "shape": shape,
                       "provider": provider, "threads": args.threads, "frames": args.frames,
                       "output": str(work / f"{label}-{path.stem}.npy")}  # fmt: skip
                done = subprocess.run([python, "-c", CHILD, json.dumps(job)], capture_output=True, text=True)
                if done.returncode != 0:
                    print(done.stderr[-2000:], file=sys.stderr)
                    raise SystemExit(f"{label} on {model} failed")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                if round_ == 0:
                    result["max_diff"] = max_diff(Path(job["output"]), work / f"cpu-{path.stem}.npy")
                runs.setdefault((model, label), []).append(result)
                print(f"round {round_ + 1} {model:28} {label:20} {result['ms']:8.1f} ms  "
                      f"cpu {result['cpu_ms']:8.1f} ms  load {result['load_s']:5.2f} s  "
                      f"rss {result['rss_mb']:6.1f} MB  ({load()})", flush=True)  # fmt: skip
    print(f"load after: {load()}")
    print("\nmedians over rounds (ratio: the CPU provider's ms / this set-up's, wall and CPU time; > 1 = faster than")
    print("the CPU provider. On a loaded machine the CPU time per frame is the steadier figure: wall time waits)")
    print(f"{'model':28} {'set-up':20} {'ms/frame':>9} {'cpu ms':>8} {'ratio':>6} {'cpu r':>6} {'load s':>7} "
          f"{'RSS MB':>7} {'peak MB':>8}  versions")  # fmt: skip
    for model in models:
        baseline = statistics.median(r["ms"] for r in runs[(model, "cpu")])
        cpu_baseline = statistics.median(r["cpu_ms"] for r in runs[(model, "cpu")])
        for label, _, _ in setups:
            rs = runs[(model, label)]
            ms = statistics.median(r["ms"] for r in rs)
            row = {k: statistics.median(r[k] for r in rs) for k in ("cpu_ms", "load_s", "rss_mb", "peak_mb")}
            diff = next((r.get("max_diff") for r in rs if r.get("max_diff") is not None), None)
            versions = f"{rs[0]['build']} {rs[0]['version']} {rs[0]['providers'][0]}"
            print(f"{model:28} {label:20} {ms:9.1f} {row['cpu_ms']:8.1f} {baseline / ms:6.2f} "
                  f"{cpu_baseline / row['cpu_ms']:6.2f} {row['load_s']:7.2f} "
                  f"{row['rss_mb']:7.1f} {row['peak_mb']:8.1f}  {versions}"
                  + (f", max |diff| vs cpu {diff:.2g}" if diff is not None else ""))  # fmt: skip
            name = f"{model} {label}"
            record(f"{name} ms/frame", round(ms, 2), "ms", samples=[r["ms"] for r in rs],
                   baseline=round(baseline, 2) if label != "cpu" else None,
                   baseline_name="CPU provider (onnxruntime)" if label != "cpu" else None,
                   note=f"{args.threads} thread(s); {rs[0]['build']} {rs[0]['version']}")  # fmt: skip
            record(f"{name} CPU ms/frame", round(row["cpu_ms"], 2), "ms", samples=[r["cpu_ms"] for r in rs],
                   baseline=round(cpu_baseline, 2) if label != "cpu" else None,
                   baseline_name="CPU provider (onnxruntime)" if label != "cpu" else None)  # fmt: skip
            record(f"{name} RSS after runs", round(row["rss_mb"], 1), "MB", samples=[r["rss_mb"] for r in rs])
            record(f"{name} session load", round(row["load_s"], 3), "s", samples=[r["load_s"] for r in rs])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
