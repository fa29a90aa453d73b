"""Cache files are written atomically: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge_engine.errors import CacheError
from edge_engine.local.cache import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json

WRITE_SECONDS = 1.5
MIN_WRITES = 10


def big_document(version: int) -> dict[str, Any]:
    """About 200 KB of JSON whose content says which version it is, everywhere."""
    rows = [{"i": i, "version": version, "text": f"row {i} of version {version} " + "x" * 60} for i in range(2000)]
    return {"version": version, "rows": rows, "tail": version}


def test_readers_never_see_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "local_info.json"
    atomic_write_json(path, big_document(0))
    assert path.stat().st_size > 200_000
    stop = threading.Event()
    writes = [0]
    reads = [0, 0]
    errors: list[str] = []

    def writer() -> None:
        version = 0
        deadline = time.monotonic() + WRITE_SECONDS
        while time.monotonic() < deadline or version < MIN_WRITES:  # enough rewrites whatever the load
            version += 1
            atomic_write_json(path, big_document(version))
            writes[0] = version
        stop.set()

    def reader(slot: int) -> None:
        while not stop.is_set():
            try:
                with open(path, encoding="utf-8") as handle:
                    data = json.load(handle)
            except json.JSONDecodeError as exc:
                errors.append(f"torn read: {exc}")
                continue
            versions = {row["version"] for row in data["rows"]}
            if len(data["rows"]) != 2000 or versions != {data["version"]} or data["tail"] != data["version"]:
                errors.append(f"mixed content in version {data['version']}")
            reads[slot] += 1

    threads = [threading.Thread(target=writer), *(threading.Thread(target=reader, args=(i,)) for i in range(2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WRITE_SECONDS + 60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert writes[0] >= MIN_WRITES, "the writer should have rewritten the file many times"
    assert min(reads) >= 10, "both readers should have read it many times"
    assert read_json(path)["version"] == writes[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local_info.json"]  # no temp file left behind


@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_mode_is_applied_to_the_written_file(tmp_path: Path, mode: int) -> None:
    old = os.umask(0o077)  # the requested mode wins over the umask
    try:
        path = tmp_path / "secret.json"
        atomic_write_json(path, {"k": 1}, mode=mode)
        assert stat.S_IMODE(path.stat().st_mode) == mode
        atomic_write_text(path, "replaced", mode=mode)  # also when the file exists
        assert stat.S_IMODE(path.stat().st_mode) == mode
        assert path.read_text(encoding="utf-8") == "replaced"
    finally:
        os.umask(old)


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # os.replace onto a non-empty folder fails after the temp file was written
    (target / "inside").write_text("x", encoding="utf-8")
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]

    path = tmp_path / "config.json"
    atomic_write_json(path, {"v": 1})

    class Unserialisable:
        def __str__(self) -> str:
            raise RuntimeError("cannot render")

    with pytest.raises(RuntimeError):
        atomic_write_json(path, {"v": Unserialisable()})
    assert read_json(path) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "taken"]


def test_write_creates_missing_folders_and_compact_json(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.json"
    atomic_write_json(path, {"k": [1, 2], "é": "ü"}, indent=None)
    assert path.read_text(encoding="utf-8") == '{"k":[1,2],"é":"ü"}\n'


def test_read_json_names_the_file_on_errors(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="does not exist"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ', encoding="utf-8")
    with pytest.raises(CacheError) as info:
        read_json(bad)
    assert str(info.value).startswith(f"{bad} is not valid JSON: ")
