"""The local cache folder: its layout, atomic JSON writes, and safe reads.

Standard library only, so the ops commands in ``cmds/`` can use it with any Python 3.10+.
Every file is written to a temporary sibling, flushed, fsynced and moved into place with
``os.replace``: a reader sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_engine import constants as C
from edge_engine.errors import CacheError


def _default_file_mode() -> int:
    """The mode ``open()`` would give a new file under the process umask (mkstemp alone gives 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


DEFAULT_FILE_MODE = _default_file_mode()


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename).

    ``mode`` defaults to what a plain ``open()`` would give; secrets pass ``0o600``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, DEFAULT_FILE_MODE if mode is None else mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: Path, obj: Any, indent: int | None = 2, mode: int | None = None) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    separators = None if indent else (",", ":")
    text = json.dumps(obj, indent=indent, separators=separators, ensure_ascii=False, default=str)
    atomic_write_text(path, text + "\n", mode)


def read_json(path: Path) -> Any:
    """Read a JSON file; a missing or invalid file raises :class:`CacheError` naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise CacheError(f"{path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CacheError(f"{path} cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise CacheError(f"{path} is not valid JSON: {exc}") from exc


def resolve_cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``explicit``, else ``$EE_CACHE_DIR``, else ``./_local_cache``."""
    chosen = explicit or os.environ.get(C.ENV_CACHE_DIR) or C.DEFAULT_CACHE_DIR
    return Path(chosen).expanduser().absolute()


@dataclass(frozen=True)
class CacheLayout:
    """Paths inside one local cache folder (Ratio1's layout)."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / C.CACHE_DATA

    @property
    def logs(self) -> Path:
        return self.root / C.CACHE_LOGS

    @property
    def output(self) -> Path:
        return self.root / C.CACHE_OUTPUT

    @property
    def models(self) -> Path:
        return self.root / C.CACHE_MODELS

    @property
    def local_info(self) -> Path:
        return self.data / C.LOCAL_INFO_FILE

    @property
    def local_history(self) -> Path:
        return self.data / C.LOCAL_HISTORY_FILE

    @property
    def key_file(self) -> Path:
        return self.data / C.KEY_FILE

    @property
    def authorized_addrs(self) -> Path:
        return self.root / C.AUTHORIZED_ADDRS_FILE

    @property
    def startup_config(self) -> Path:
        return self.root / C.CACHED_STARTUP_CONFIG

    @property
    def app_config(self) -> Path:
        return self.data / C.BOX_CONFIGURATION / C.CACHED_APP_CONFIG

    @property
    def streams(self) -> Path:
        return self.data / C.BOX_CONFIGURATION / C.STREAMS_DIR

    @property
    def cache_version(self) -> Path:
        return self.data / C.CACHE_VERSION_FILE

    @property
    def first_start_marker(self) -> Path:
        """Present from the first start's first write until its pipelines are seeded (a crash between: seed again)."""
        return self.data / C.FIRST_START_MARKER

    def stream_file(self, name: str) -> Path:
        return self.streams / f"{name}.json"

    def ensure(self) -> None:
        """Create the folders of the layout (idempotent)."""
        for folder in (self.data, self.logs, self.output, self.models, self.streams):
            folder.mkdir(parents=True, exist_ok=True)

    def remove_stale_temp_files(self, older_than: float = 2.0) -> int:
        """Delete temporary files of atomic writes (``.<name>.<random>.tmp``) that a crash left behind in the
        cache root and ``_data``; younger ones may belong to a write in progress (an ops command). Returns how many."""
        removed = 0
        now = time.time()
        for path in [*self.root.glob(".*.tmp"), *self.data.rglob(".*.tmp")]:
            try:
                if path.is_file() and now - path.stat().st_mtime > older_than:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed
