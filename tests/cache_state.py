"""The logical state of a node's local cache, read from its files, and a check that every file is whole.

``cache_state(cache)`` returns one entry per part of :data:`STATE_READERS`: the node's address (from
``_data/e2.pem``), its alias, the allowlist, and the persisted pipelines (without ``LAST_UPDATE_TIME``, which
every save restamps). A crash test takes it after ``kill -9`` and compares it with what the restarted node
reports. More parts plug in by adding a reader: ``STATE_READERS["outbox"] = read_outbox`` (a function of the
cache folder returning something comparable, e.g. the sequence numbers waiting in ``_data/outbox/``), and, for
a part the node drains by itself, its name to :data:`DRAINING`.

Two such parts are here: ``outbox`` (per channel the ``EE_MESSAGE_SEQ`` of every record a restart would send, read
with the outbox's own reader, :func:`edge_engine.comms.disk_outbox.inspect_outbox`, which changes nothing) and
``uploads`` (the object keys waiting in ``_data/uploads/pending/``, as the upload queue names its files; the
temporary files of unfinished writes, which its recovery deletes, left out). Both drain once the broker or S3
answers, so both are in :data:`DRAINING`.

``torn_files(cache)`` lists every JSON file that does not parse and every JSON-lines file with a line that
does not parse; ``temp_files(cache)`` the temporary files of atomic writes a crash left behind;
``outbox_torn(cache)`` the number of outbox segments per channel with a torn or corrupt tail (a restart cuts it off).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from edge_engine.comms.disk_outbox import inspect_outbox
from edge_engine.constants import OUTBOX_DIR, UPLOADS_DIR
from edge_engine.local.allowlist import read as read_allowlist
from edge_engine.local.identity import load_or_create_identity

SKIPPED_DIRS = {"_models"}


def read_address(cache: Path) -> str | None:
    key = cache / "_data" / "e2.pem"
    return load_or_create_identity(key).address if key.exists() else None


def read_alias(cache: Path) -> str | None:
    path = cache / "config_startup.json"
    return json.loads(path.read_bytes()).get("EE_ID") if path.exists() else None


def read_allowed(cache: Path) -> list[tuple[str, str | None]]:
    return sorted((entry.address, entry.alias) for entry in read_allowlist(cache / "authorized_addrs"))


def read_pipelines(cache: Path) -> dict[str, dict[str, Any]]:
    streams = cache / "_data" / "box_configuration" / "streams"
    pipelines = {}
    for path in sorted(streams.glob("*.json")):
        config = json.loads(path.read_bytes())
        config.pop("LAST_UPDATE_TIME", None)
        pipelines[path.stem] = config
    return pipelines


def read_outbox(cache: Path) -> dict[str, list[int]]:
    """Per channel (``payloads``, ``notif``) the sequence numbers a restart would send, oldest first."""
    report = inspect_outbox(cache / "_data" / OUTBOX_DIR)
    return {lane: entry["seqs"] for lane, entry in report.items()}


def outbox_torn(cache: Path) -> dict[str, int]:
    """Per channel the number of segments with a torn or corrupt tail."""
    report = inspect_outbox(cache / "_data" / OUTBOX_DIR)
    return {lane: entry["torn"] for lane, entry in report.items()}


def read_uploads(cache: Path) -> list[str]:
    """The object keys waiting in the upload queue (its files are named after them, URL-quoted)."""
    pending = cache / "_data" / UPLOADS_DIR / "pending"
    if not pending.is_dir():
        return []
    return sorted(unquote(p.name) for p in pending.iterdir() if not p.name.startswith("."))


STATE_READERS: dict[str, Callable[[Path], Any]] = {
    "address": read_address,
    "alias": read_alias,
    "allowlist": read_allowed,
    "pipelines": read_pipelines,
    "outbox": read_outbox,
    "uploads": read_uploads,
}


# parts a running node consumes by itself (an outbox drains once the broker answers): a crash test compares them
# right after the kill and again after the restart only while the broker (or S3) is down
DRAINING: set[str] = {"outbox", "uploads"}


def cache_state(cache: Path) -> dict[str, Any]:
    """The logical state of the cache (see the module docstring)."""
    return {name: reader(cache) for name, reader in STATE_READERS.items()}


def _files(cache: Path, pattern: str) -> list[Path]:
    return [p for p in cache.rglob(pattern) if p.is_file() and not SKIPPED_DIRS & set(p.relative_to(cache).parts)]


def torn_files(cache: Path) -> list[str]:
    """JSON files that do not parse and JSON-lines files with a line that does not parse (with the reason)."""
    torn = []
    for path in _files(cache, "*.json"):
        try:
            json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            torn.append(f"{path}: {exc}")
    for path in _files(cache, "*.jsonl"):
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            try:
                json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                torn.append(f"{path}:{number}: {exc}")
    return torn


def temp_files(cache: Path) -> list[str]:
    """Temporary files of atomic writes (``.<name>.<random>.tmp``) left by a crash."""
    return sorted(str(p.relative_to(cache)) for p in _files(cache, ".*.tmp"))
