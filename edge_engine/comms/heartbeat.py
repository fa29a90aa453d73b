"""Heartbeats in Ratio1's v2 form: a small envelope plus ``ENCODED_DATA`` (base64 of zlib-compressed JSON).

The body says who the node is (address, alias, version, allowlist), how the machine is doing (CPU, memory,
disk, uptime) and what runs (pipelines and instances with status and counters). Credentials never appear:
pipeline configs are redacted before they are put in ``CONFIG_STREAMS``.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import time
import zlib
from typing import Any

from edge_engine import __version__
from edge_engine.comms.envelope import ratio1_timestamp
from edge_engine.redact import redact


def encode_data(body: dict[str, Any]) -> str:
    """base64(zlib(json)), as the SDK decodes it."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)
    return base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")


def decode_data(text: str) -> dict[str, Any]:
    """Inverse of :func:`encode_data`."""
    return json.loads(zlib.decompress(base64.b64decode(text)).decode("utf-8"))


def machine_status(cache_dir: str) -> dict[str, Any]:
    """CPU, memory and disk figures (psutil, non-blocking)."""
    import psutil

    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(cache_dir)
    process = psutil.Process()
    gb = 1024**3
    return {
        "CPU_USED": psutil.cpu_percent(interval=None),
        "CPU_NR_CORES": psutil.cpu_count() or 1,
        "CPU": platform.processor() or platform.machine(),
        "MACHINE_MEMORY": round(memory.total / gb, 2),
        "AVAILABLE_MEMORY": round(memory.available / gb, 2),
        "PROCESS_MEMORY": round(process.memory_info().rss / gb, 3),
        "TOTAL_DISK": round(disk.total / gb, 2),
        "AVAILABLE_DISK": round(disk.free / gb, 2),
        "GPUS": [],
        "GPU_INFO": "no GPU used",
        "DEFAULT_CUDA": None,
        "PY_VER": platform.python_version(),
    }


def active_plugins(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """Ratio1's ACTIVE_PLUGINS list from a node snapshot."""
    result = []
    for pipeline in snapshot.get("pipelines", []):
        for inst in pipeline.get("instances", []):
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
                }
            )
    return result


def build_heartbeat(
    snapshot: dict[str, Any],
    pipelines: list[dict[str, Any]],
    secured: bool,
    include_pipelines: bool,
    counters: dict[str, int],
) -> dict[str, Any]:
    """The heartbeat message body (v2), before envelope and signature."""
    body = {
        "EE_ADDR": snapshot["address"],
        "EE_ETH_ADDR": snapshot.get("eth_address"),
        "EE_ID": snapshot["alias"],
        "EE_WHITELIST": snapshot.get("info", {}).get("whitelist", []),
        "EE_IS_SUPER": False,
        "SECURED": secured,
        "DEVICE_STATUS": "ONLINE",
        "EE_HB_TIME": counters.get("interval", 10),
        "CURRENT_TIME": ratio1_timestamp(),
        "TIMESTAMP": time.time(),
        "UPTIME": snapshot.get("uptime_seconds"),
        "VERSION": f"v{__version__}",
        "LOGGER_VERSION": __version__,
        "PID": os.getpid(),
        "NR_PAYLOADS": counters.get("payloads", 0),
        "NR_INFERENCES": 0,
        "NR_STREAMS_DATA": sum(p.get("capture", {}).get("inputs", 0) for p in snapshot.get("pipelines", [])),
        "ACTIVE_PLUGINS": active_plugins(snapshot),
        "CONFIG_STREAMS": redact(pipelines) if include_pipelines else [],
        "PIPELINES_STATUS": snapshot.get("pipelines", []),
        "INVALID_PIPELINES": snapshot.get("invalid_pipelines", []),
        "COMM_STATS": {k: v for k, v in counters.items() if k != "interval"},
        **machine_status(snapshot.get("cache_dir") or "."),
    }
    return {
        "ENCODED_DATA": encode_data(body),
        "HEARTBEAT_VERSION": "v2",
        "NR_PAYLOADS": body["NR_PAYLOADS"],
        "NR_INFERENCES": 0,
        "NR_STREAMS_DATA": body["NR_STREAMS_DATA"],
    }
