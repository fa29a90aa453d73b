"""``cmds/healthcheck`` (the image's HEALTHCHECK and the Kubernetes probes): fresh engine loop = healthy.

DECISIONS 22: healthy means ``local_info.json`` says running and was refreshed within 3 periods; a lost broker is
reported in the message but is not unhealthy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edge_engine.cli import ops

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 15, 0, 10, tzinfo=timezone.utc)


def write_info(cache: Path, **fields: object) -> Path:
    info = {"address": "0xai_A", "alias": "node-1", "status": "running", "refresh_seconds": 5.0,
            "updated_at": "2026-11-23T15:00:08.000Z", **fields}  # fmt: skip
    (cache / "_data").mkdir(parents=True, exist_ok=True)
    (cache / "_data" / "e2.pem").write_text("key")
    path = cache / "_data" / "local_info.json"
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


def test_fresh_and_running_is_healthy(tmp_path: Path) -> None:
    write_info(tmp_path, comms={"broker": "mqtt:1883", "connected": True})
    healthy, message = ops.health(tmp_path, now=NOW)
    assert healthy and "node-1" in message and "2 s old (limit 15 s)" in message and "connected" in message


def test_a_lost_broker_is_reported_but_healthy(tmp_path: Path) -> None:
    write_info(tmp_path, comms={"broker": "mqtt:1883", "connected": False})
    healthy, message = ops.health(tmp_path, now=NOW)
    assert healthy and "NOT connected" in message


def test_stale_is_unhealthy_after_three_periods(tmp_path: Path) -> None:
    write_info(tmp_path)
    assert ops.health(tmp_path, now=NOW + timedelta(seconds=12))[0]  # 14 s old
    healthy, message = ops.health(tmp_path, now=NOW + timedelta(seconds=14))
    assert not healthy and "16 s old (limit 15 s)" in message


def test_starting_or_stopped_is_unhealthy(tmp_path: Path) -> None:
    write_info(tmp_path, status="starting")
    assert ops.health(tmp_path, now=NOW) == (False, "node-1 (0xai_A) is starting (local_info.json 2 s old)")
    write_info(tmp_path, status="stopped")
    assert not ops.health(tmp_path, now=NOW)[0]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "cmds" / "healthcheck"), *args], capture_output=True,
                          text=True, check=False)  # fmt: skip


def test_command_exit_codes_and_messages(tmp_path: Path) -> None:
    path = write_info(tmp_path)
    info = json.loads(path.read_text())
    info["updated_at"] = datetime.now(timezone.utc).isoformat()
    path.write_text(json.dumps(info))
    result = run("--cache-dir", str(tmp_path))
    assert result.returncode == 0 and result.stdout.startswith("healthcheck: healthy: node-1"), result
    info["updated_at"] = "2020-01-01T00:00:00Z"
    path.write_text(json.dumps(info))
    result = run("--cache-dir", str(tmp_path))
    assert result.returncode == 1 and "unhealthy" in result.stderr and "Traceback" not in result.stderr


def test_command_explains_a_cache_with_no_node_yet(tmp_path: Path) -> None:
    result = run("--cache-dir", str(tmp_path))
    assert result.returncode == 1
    assert "no node has started with the cache" in result.stderr and "volume mounted" in result.stderr
    (tmp_path / "_data").mkdir()
    (tmp_path / "_data" / "e2.pem").write_text("key")
    result = run("--cache-dir", str(tmp_path))
    assert result.returncode == 1 and "the node is starting" in result.stderr
