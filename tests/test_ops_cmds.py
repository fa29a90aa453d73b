"""The ops commands in cmds/, run as real executables against a local cache in a temporary folder."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edge_engine.cli import ops
from edge_engine.errors import CacheError

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 15, 0, 10, tzinfo=timezone.utc)

LOCAL_INFO = {
    "address": "0xai_AkYwQx3AkYwQx3AkYwQx3AkYwQx3AkYwQx3AkYwQx3Ak",
    "alias": "lab-node",
    "eth_address": "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23",
    "version_long": "v0.1.0 | edge_engine 0.1.0",
    "version_short": "v0.1.0",
    "info": {"whitelist": ["0xai_A", "0xai_B"]},
    "pid": 123,
    "started_at": "2026-11-23T15:00:00.000Z",
    "updated_at": "2026-11-23T15:00:08.000Z",
    "uptime_seconds": 12.3,
    "uptime": "0:00:12",
    "refresh_seconds": 5.0,
    "cache_dir": "/edge_node/_local_cache",
    "pipelines": [
        {
            "name": "gate",
            "type": "VIDEO_FILE",
            "status": "running",
            "started_at": "2026-11-23T15:00:00.000Z",
            "capture": {
                "status": "running",
                "inputs": 4321,
                "dropped": 17,
                "errors": 2,
                "restarts": 0,
                "rate": 25.0,
                "last_error": None,
                "last_error_time": None,
            },
            "instances": [
                {
                    "signature": "MOTION_DETECTOR",
                    "instance_id": "door",
                    "status": "running",
                    "inputs": 4300,
                    "payloads": 987,
                    "errors": 5,
                    "dropped": 0,
                    "restarts": 1,
                    "last_error": "ZeroDivisionError: division by zero " + "x" * 200,
                    "last_error_time": "2026-11-23T15:00:05.000Z",
                    "process_ms_avg": 1.2,
                }
            ],
        }
    ],
    "invalid_pipelines": [{"name": "broken", "file": "streams/broken.json", "errors": ["unknown plugin 'NOPE'"]}],
    "plugins": {"loaded": 8, "failed": [{"source": "plugins/bad.py", "name": "bad", "reason": "SyntaxError"}]},
}

HISTORY = {
    "address": "0xai_x",
    "alias": "lab-node",
    "uptime": "1:00:00",
    "version": "v0.1.0",
    "last_save_time": "2026-11-23T16:00:00.000Z",
    "cpu_load": [1.0, 2.0, 3.0, 4.0],
    "total_memory": [16.0, 16.0, 16.0, 16.0],
    "occupied_memory": [4.0, 4.1, 4.2, 4.3],
    "timestamps": ["t1", "t2", "t3", "t4"],
    "pipelines": {"gate": [25.0, 24.0, 23.0, 22.0]},
    "coarse": {"timestamps": ["c1", "c2", "c3"], "cpu_load": [1.0, 2.0, 3.0], "pipelines": {"gate": [1, 2, 3]}},
}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "_local_cache"
    (root / "_data").mkdir(parents=True)
    (root / "_data" / "local_info.json").write_text(json.dumps(LOCAL_INFO, indent=2))
    (root / "_data" / "local_history.json").write_text(json.dumps(HISTORY, separators=(",", ":")))
    return root


def run(args: list[str], env_cache: Path | None = None, python: str = sys.executable, cwd: Path | None = None):
    """Run one of cmds/ like an operator would: a real process, a clean environment."""
    env = {k: v for k, v in os.environ.items() if k != "EE_CACHE_DIR" and not k.startswith("PYTHON")}
    if env_cache is not None:
        env["EE_CACHE_DIR"] = str(env_cache)
    script = str(REPO / "cmds" / args[0])
    return subprocess.run(
        [python, script, *args[1:]], capture_output=True, text=True, env=env, cwd=cwd or REPO, timeout=60
    )


# --- executables --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["get_node_info", "get_node_history", "change_alias"])
def test_commands_are_thin_executables(name: str) -> None:
    path = REPO / "cmds" / name
    assert path.read_text().startswith("#!/usr/bin/env python3\n")
    assert path.stat().st_mode & stat.S_IXUSR
    assert len(path.read_text().splitlines()) < 20


def test_get_node_info_prints_the_file_as_json(cache: Path) -> None:
    before = (cache / "_data" / "local_info.json").read_bytes()
    result = run(["get_node_info", "--cache-dir", str(cache)])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == LOCAL_INFO
    assert result.stdout == json.dumps(LOCAL_INFO, indent=2) + "\n"
    assert (cache / "_data" / "local_info.json").read_bytes() == before


def test_get_node_info_finds_the_cache_from_the_environment(cache: Path, tmp_path: Path) -> None:
    result = run(["get_node_info"], env_cache=cache, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == LOCAL_INFO


def test_get_node_info_finds_the_cache_in_the_current_folder(cache: Path) -> None:
    result = run(["get_node_info"], cwd=cache.parent)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["alias"] == "lab-node"


def test_get_node_info_pretty_shows_pipelines_instances_and_counters(cache: Path) -> None:
    result = run(["get_node_info", "--pretty", "--cache-dir", str(cache)])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("lab-node", "0xai_AkYw", "v0.1.0", "0:00:12", "gate", "VIDEO_FILE", "MOTION_DETECTOR/door"):
        assert text in out, text
    for counter in ("4321", "17", "25.0", "4300", "987"):
        assert counter in out, counter
    assert "ZeroDivisionError" in out and "x" * 100 not in out  # last error shortened
    assert "broken" in out and "unknown plugin 'NOPE'" in out
    assert "8 loaded, 1 failed" in out
    assert "STALE" in out  # the fixture's updated_at is long past


def test_format_node_info_freshness() -> None:
    fresh = ops.format_node_info(LOCAL_INFO, now=NOW)
    assert "STALE" not in fresh and "(2 s ago)" in fresh
    stale = ops.format_node_info(LOCAL_INFO, now=NOW + timedelta(seconds=20))
    assert "STALE" in stale
    no_refresh = {k: v for k, v in LOCAL_INFO.items() if k != "refresh_seconds"}
    assert "STALE" not in ops.format_node_info(no_refresh, now=NOW + timedelta(seconds=12))  # 14 s old
    assert "STALE" in ops.format_node_info(no_refresh, now=NOW + timedelta(seconds=14))  # 16 s old


def test_format_node_info_tolerates_a_ratio1_file() -> None:
    ratio1 = {"address": "0xai_A", "alias": "r1", "eth_address": "0x1", "version_short": "v2.1.0", "info": {}}
    text = ops.format_node_info(ratio1)
    assert "r1" in text and "PIPELINES (0)" in text
    assert ops.format_node_info({})


def test_missing_cache_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run(["get_node_info", "--cache-dir", str(missing)])
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"no local cache found at {missing}" in result.stderr
    assert "start the node first or set EE_CACHE_DIR" in result.stderr
    assert "Traceback" not in result.stderr
    result = run(["get_node_info"], env_cache=missing)
    assert result.returncode == 1 and "EE_CACHE_DIR" in result.stderr


def test_missing_local_info_exits_1(tmp_path: Path) -> None:
    (tmp_path / "_data").mkdir()
    result = run(["get_node_info", "--cache-dir", str(tmp_path)])
    assert result.returncode == 1
    assert "local_info.json does not exist" in result.stderr


def test_corrupt_local_info_exits_1_naming_the_file(cache: Path) -> None:
    path = cache / "_data" / "local_info.json"
    path.write_text('{"address": "0xai_')
    result = run(["get_node_info", "--cache-dir", str(cache)])
    assert result.returncode == 1
    assert str(path) in result.stderr and "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_argument_exits_1() -> None:
    result = run(["get_node_info", "--no-such-flag"])
    assert result.returncode == 1
    assert "unrecognized arguments" in result.stderr


def test_help_exits_0() -> None:
    result = run(["get_node_history", "--help"])
    assert result.returncode == 0
    assert "--last" in result.stdout


def test_commands_run_without_the_venv_dependencies(cache: Path) -> None:
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None:
        pytest.skip("no system python3 in /usr/bin or /bin to run the commands outside the venv")
    probe = subprocess.run([system_python, "-c", "import psutil"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip(f"{system_python} has psutil installed: it cannot show that the commands do without it")
    result = run(["get_node_info", "--pretty", "--cache-dir", str(cache)], python=system_python)
    assert result.returncode == 0, result.stderr
    assert "MOTION_DETECTOR/door" in result.stdout


def test_ops_imports_only_the_standard_library() -> None:
    code = (
        "import sys, edge_engine.cli.ops; "
        "bad = [m for m in ('psutil', 'coincurve', 'cryptography', 'pluggy', 'edge_engine.local.identity') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


# --- history ------------------------------------------------------------------------------------------------
def test_get_node_history_prints_the_file(cache: Path) -> None:
    result = run(["get_node_history", "--cache-dir", str(cache)])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == HISTORY


def test_get_node_history_last_cuts_every_list(cache: Path) -> None:
    result = run(["get_node_history", "--last", "2", "--cache-dir", str(cache)])
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["cpu_load"] == [3.0, 4.0]
    assert data["timestamps"] == ["t3", "t4"]
    assert data["pipelines"]["gate"] == [23.0, 22.0]
    assert data["coarse"]["timestamps"] == ["c2", "c3"]
    assert data["alias"] == "lab-node" and data["uptime"] == "1:00:00"


def test_get_node_history_rejects_a_negative_last(cache: Path) -> None:
    result = run(["get_node_history", "--last", "-1", "--cache-dir", str(cache)])
    assert result.returncode == 1
    assert "--last" in result.stderr


def test_node_history_last_zero_and_missing_file(cache: Path, tmp_path: Path) -> None:
    assert ops.node_history(cache, 0)["cpu_load"] == []
    with pytest.raises(CacheError, match=r"local_history\.json does not exist"):
        ops.node_history(tmp_path)


# --- alias --------------------------------------------------------------------------------------------------
def test_change_alias_keeps_other_keys(cache: Path) -> None:
    config = cache / "config_startup.json"
    config.write_text(json.dumps({"EE_ID": "old", "SECONDS_LOCAL_INFO": 5, "PLUGINS_ON_THREADS": True}))
    os.chmod(config, 0o640)
    result = run(["change_alias", "new-alias_1.x", "--cache-dir", str(cache)])
    assert result.returncode == 0, result.stderr
    assert "alias set to new-alias_1.x" in result.stdout
    assert "restart" in result.stdout
    text = config.read_text()
    assert json.loads(text) == {"EE_ID": "new-alias_1.x", "SECONDS_LOCAL_INFO": 5, "PLUGINS_ON_THREADS": True}
    assert text.startswith('{\n  "EE_ID"')  # indent 2
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert sorted(p.name for p in cache.iterdir()) == ["_data", "config_startup.json"]  # no temp file left


def test_change_alias_creates_the_config(cache: Path) -> None:
    result = run(["change_alias", "fresh"], env_cache=cache)
    assert result.returncode == 0, result.stderr
    assert json.loads((cache / "config_startup.json").read_text()) == {"EE_ID": "fresh"}


@pytest.mark.parametrize("alias", ["a" * 16, "", "has space", "émoji", "semi;colon"])
def test_change_alias_rejects_invalid_aliases(cache: Path, alias: str) -> None:
    result = run(["change_alias", alias, "--cache-dir", str(cache)])
    assert result.returncode == 1
    assert "invalid alias" in result.stderr and "1 to 15 characters" in result.stderr
    assert not (cache / "config_startup.json").exists()


def test_change_alias_refuses_to_overwrite_a_corrupt_config(cache: Path) -> None:
    config = cache / "config_startup.json"
    config.write_text("{broken")
    result = run(["change_alias", "ok", "--cache-dir", str(cache)])
    assert result.returncode == 1
    assert str(config) in result.stderr
    assert config.read_text() == "{broken"


def test_find_cache_dir_order(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("EE_CACHE_DIR", str(other))
    assert ops.find_cache_dir(str(cache)) == cache
    assert ops.find_cache_dir() == other
    monkeypatch.delenv("EE_CACHE_DIR")
    monkeypatch.chdir(cache.parent)
    assert ops.find_cache_dir() == cache
    monkeypatch.setenv("EE_CACHE_DIR", str(tmp_path / "missing"))
    with pytest.raises(CacheError, match="missing"):
        ops.find_cache_dir()
