"""Heartbeats in Ratio1's v2 form: a small envelope plus ``ENCODED_DATA`` (base64 of zlib-compressed JSON).

The body says who the node is (address, alias, version, allowlist), how the machine is doing (CPU, memory,
disk, uptime) and what runs (pipelines and instances with status and counters). Credentials never appear:
pipeline configs are redacted before they are put in ``CONFIG_STREAMS``. Nor do the node's local paths
(decision 37): ``INVALID_PIPELINES`` carries names and reasons only, and every other field has the node's folders
replaced (:class:`edge_engine.redact.LocalPaths`); ``CONFIG_STREAMS`` is the owners' configs, as they wrote them.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import platform
import shutil
import socket
import subprocess
import threading
import time
import zlib
from typing import Any

from edge_engine import __version__
from edge_engine.comms.envelope import ratio1_timestamp
from edge_engine.node.snapshot import NodeSnapshot
from edge_engine.redact import LocalPaths, redact


def encode_data(body: dict[str, Any]) -> str:
    """base64(zlib(json)), as the SDK decodes it."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)
    return base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")


def decode_data(text: str) -> dict[str, Any]:
    """Inverse of :func:`encode_data`."""
    body: dict[str, Any] = json.loads(zlib.decompress(base64.b64decode(text)).decode("utf-8"))
    return body


GPU_CACHE_SECONDS = 60.0
GPU_QUERY_TIMEOUT = 5.0
_NVIDIA_FIELDS = ("name", "memory.total", "memory.used", "utilization.gpu", "temperature.gpu")
_gpu_cache: tuple[float, list[dict[str, Any]]] = (-GPU_CACHE_SECONDS, [])
_gpu_lock = threading.Lock()


def _query_nvidia_smi() -> list[dict[str, Any]]:
    """One dict per GPU from ``nvidia-smi`` (empty when it is absent or fails); no torch, no CUDA import."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        out = subprocess.run(
            [tool, f"--query-gpu={','.join(_NVIDIA_FIELDS)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=GPU_QUERY_TIMEOUT,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(_NVIDIA_FIELDS):
            continue
        name, total, used, load, temp = parts
        gpus.append(
            {
                "NAME": name,
                "TOTAL_MEM": _num(total, 1024),
                "ALLOCATED_MEM": _num(used, 1024),
                "GPU_USED": _num(load),
                "GPU_TEMP": _num(temp),
            }
        )
    return gpus


def _num(text: str, divide: float = 1.0) -> float | None:
    try:
        return round(float(text) / divide, 2)
    except ValueError:
        return None


def gpu_status(now: float | None = None) -> list[dict[str, Any]]:
    """GPUs seen by ``nvidia-smi``, queried at most once per ``GPU_CACHE_SECONDS`` (memory in GB)."""
    global _gpu_cache
    now = time.monotonic() if now is None else now
    with _gpu_lock:
        if now - _gpu_cache[0] >= GPU_CACHE_SECONDS:
            _gpu_cache = (now, _query_nvidia_smi())
        return _gpu_cache[1]


@functools.lru_cache(maxsize=1)
def _machine_ip() -> str | None:
    """The host's address as its name resolves (looked up once: a slow resolver must not delay heartbeats)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None


def machine_status(cache_dir: str) -> dict[str, Any]:
    """CPU, memory, disk and GPU figures (psutil, non-blocking; GPUs through a cached ``nvidia-smi``)."""
    import psutil

    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(cache_dir)
    process = psutil.Process()
    gb = 1024**3
    gpus = gpu_status()
    return {
        "CPU_USED": psutil.cpu_percent(interval=None),
        "CPU_NR_CORES": psutil.cpu_count() or 1,
        "CPU": platform.processor() or platform.machine(),
        "MACHINE_IP": _machine_ip(),
        "MACHINE_MEMORY": round(memory.total / gb, 2),
        "AVAILABLE_MEMORY": round(memory.available / gb, 2),
        "PROCESS_MEMORY": round(process.memory_info().rss / gb, 3),
        "IS_ALERT_RAM": memory.percent > 90,
        "TOTAL_DISK": round(disk.total / gb, 2),
        "AVAILABLE_DISK": round(disk.free / gb, 2),
        "GPUS": gpus,
        "GPU_INFO": f"{len(gpus)} GPU(s): " + ", ".join(g["NAME"] for g in gpus) if gpus else "no GPU used",
        "DEFAULT_CUDA": "cuda:0" if gpus else None,
        "PY_VER": platform.python_version(),
    }


def active_plugins(snapshot: NodeSnapshot) -> list[dict[str, Any]]:
    """Ratio1's ACTIVE_PLUGINS list from a node snapshot."""
    result = []
    for pipeline in snapshot.get("pipelines", []):
        for inst in pipeline["instances"]:
            result.append(
                {
                    "STREAM_ID": pipeline["name"],
                    "SIGNATURE": inst["signature"],
                    "INSTANCE_ID": inst["instance_id"],
                    "STATUS": inst["status"],
                    "TOTAL_PAYLOAD_COUNT": inst.get("payloads", 0),
                    "CURRENT_PROCESS_ITERATION": inst.get("inputs", 0),
                    "ERRORS": inst.get("errors", 0),
                    "LAST_ERROR": inst.get("last_error"),
                    "LAST_ERROR_TIME": inst.get("last_error_time"),
                    **({"FLAPPING": inst["flapping"]} if inst.get("flapping") else {}),
                    **({"SAFE_MODE": True} if inst.get("safe_mode") else {}),
                }
            )
    return result


def invalid_pipelines(snapshot: NodeSnapshot) -> list[dict[str, Any]]:
    """``INVALID_PIPELINES``: each invalid pipeline's name and reasons, never the file it is in (decision 37)."""
    return [{"name": item["name"], "errors": list(item["reasons"])} for item in snapshot.get("invalid_pipelines", [])]


def build_heartbeat(
    snapshot: NodeSnapshot,
    pipelines: list[dict[str, Any]],
    secured: bool,
    include_pipelines: bool,
    counters: dict[str, int],
    supervisor: bool = False,
    admin_plugins: list[dict[str, Any]] | None = None,
    local_paths: LocalPaths | None = None,
) -> dict[str, Any]:
    """The heartbeat message body (v2), before envelope and signature.

    ``pipelines`` are the configs for ``CONFIG_STREAMS`` (the admin pipeline's included by the caller);
    ``admin_plugins`` the admin pipeline's ``ACTIVE_PLUGINS`` entries; ``supervisor`` sets ``EE_IS_SUPER``;
    ``local_paths`` the node's folders to keep out (default: the snapshot's cache folder).
    """
    local_paths = local_paths or LocalPaths(*([snapshot["cache_dir"]] if snapshot.get("cache_dir") else []))
    body = {
        "EE_ADDR": snapshot["address"],
        "EE_ETH_ADDR": snapshot.get("eth_address"),
        "EE_ID": snapshot["alias"],
        "EE_WHITELIST": snapshot["info"]["whitelist"] if "info" in snapshot else [],
        "EE_IS_SUPER": bool(supervisor),
        "SECURED": secured,
        "DEVICE_STATUS": "ONLINE",
        "EE_HB_TIME": counters.get("interval", 10),
        "CURRENT_TIME": ratio1_timestamp(),
        "TIMESTAMP": time.time(),
        "UPTIME": snapshot.get("uptime_seconds"),
        "UPTIME_TEXT": snapshot.get("uptime"),
        "VERSION": f"v{__version__}",
        "LOGGER_VERSION": __version__,
        "PID": os.getpid(),
        "NR_PAYLOADS": counters.get("payloads", 0),
        "NR_INFERENCES": 0,
        "NR_STREAMS_DATA": sum(p["capture"]["inputs"] for p in snapshot.get("pipelines", [])),
        "ACTIVE_PLUGINS": list(admin_plugins or []) + active_plugins(snapshot),
        "CONFIG_STREAMS": redact(pipelines) if include_pipelines else [],
        "PIPELINES_STATUS": snapshot.get("pipelines", []),
        "INVALID_PIPELINES": invalid_pipelines(snapshot),
        "COMM_STATS": {k: v for k, v in counters.items() if k != "interval"},
        "UPLOAD_STATS": snapshot.get("storage"),  # object storage queue and counters (no credentials)
        **machine_status(snapshot.get("cache_dir") or "."),
    }
    body = local_paths.scrub(body, skip=frozenset({"CONFIG_STREAMS"}))
    return {
        "ENCODED_DATA": encode_data(body),
        "HEARTBEAT_VERSION": "v2",
        "NR_PAYLOADS": body["NR_PAYLOADS"],
        "NR_INFERENCES": 0,
        "NR_STREAMS_DATA": body["NR_STREAMS_DATA"],
    }
