"""Disk bounds of the local cache (DECISIONS 25): ``_output/`` and ``_logs/`` capped by size, and a full disk.

``_output/`` is kept within its bound at write time: the local output writer writes through
:meth:`DiskManager.writing`, which first makes room (the least recently written files go, down to 90 % of the
bound) from an index of the folder's files, built by a scan at the first write or housekeeping round, whichever
comes first, and refreshed every ``RESCAN_SECONDS`` (that rescan also prunes what other writers added).
:func:`prune_oldest` deletes a folder's oldest files (by modification time) until it is back under its bound:
``_logs/`` at each rescan. The manager also watches free space: when a write fails with ENOSPC/EDQUOT, or free
space falls under ``EE_DISK_MIN_FREE_MB``, outputs are paused (the node keeps running), one notification says
so and ``local_info.json`` carries ``disk.full``; once space is back (free space over the threshold and a probe
write succeeds) outputs resume and a second notification says so.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_engine.config.settings_schema import group, read_group
from edge_engine.errors import ConfigIssue, valid_or_raise
from edge_engine.messages import utc_iso

log = logging.getLogger(__name__)

MB = 1024 * 1024
ENV_OUTPUT_MAX_MB = "EE_OUTPUT_MAX_MB"
ENV_LOGS_MAX_MB = "EE_LOGS_MAX_MB"
ENV_DISK_MIN_FREE_MB = "EE_DISK_MIN_FREE_MB"
DEFAULTS_MB: dict[str, float] = {name: setting.default for name, setting in group("disk").items()}
PRUNE_TO = 0.9  # prune down to 90 % of the bound, so the next prune is not one file away
RESCAN_SECONDS = 60.0
PROBE_BYTES = 64 * 1024
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
PROBE_FILE = ".disk_probe"


@dataclass(frozen=True)
class DiskSettings:
    output_max_bytes: int
    logs_max_bytes: int
    min_free_bytes: int


def read_disk_settings(env: Mapping[str, str]) -> tuple[DiskSettings, list[ConfigIssue]]:
    """The bounds from ``EE_OUTPUT_MAX_MB``, ``EE_LOGS_MAX_MB`` and ``EE_DISK_MIN_FREE_MB`` (MB, finite, ≥ 0; declared
    in :mod:`edge_engine.config.settings_schema`), and every bad value in the schema's one form (the defaults stand
    in for them)."""
    values, issues = read_group("disk", env)
    mb = {name: values.get(name, default) for name, default in DEFAULTS_MB.items()}
    settings = DiskSettings(
        int(mb[ENV_OUTPUT_MAX_MB] * MB), int(mb[ENV_LOGS_MAX_MB] * MB), int(mb[ENV_DISK_MIN_FREE_MB] * MB)
    )
    return settings, issues


def load_disk_settings(env: Mapping[str, str]) -> DiskSettings:
    """:func:`read_disk_settings`, raising :class:`ConfigError` on any bad value."""
    return valid_or_raise(read_disk_settings(env))


def log_file_bytes(logs_max_bytes: int, backups: int, configured: int) -> int:
    """Size of one rotating log file so that the current file and its backups fit ``logs_max_bytes``."""
    return max(1024, min(configured, logs_max_bytes // (backups + 1)))


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


def folder_files(folder: Path) -> list[tuple[float, int, Path]]:
    """``(mtime, size, path)`` of every regular file under ``folder`` (files vanishing meanwhile are skipped)."""
    found: list[tuple[float, int, Path]] = []
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    found.append((info.st_mtime, info.st_size, Path(entry.path)))
            except OSError:
                continue
    return found


@dataclass
class PruneResult:
    total_bytes: int  # after pruning
    deleted: int
    freed_bytes: int


def delete_file(path: Path, on_delete: Callable[[Path], None] | None = None) -> bool:
    """Call ``on_delete(path)`` (the writer closes its handle), then delete ``path``. False, with a warning,
    when the file stays (permissions...); a file already gone counts as deleted."""
    if on_delete is not None:
        on_delete(path)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot delete %s: %s", path, exc)
        return False
    return True


def prune_oldest(
    folder: Path,
    max_bytes: int,
    keep: Callable[[Path], bool] | None = None,
    on_delete: Callable[[Path], None] | None = None,
) -> PruneResult:
    """Delete the oldest files under ``folder`` until it holds at most ``max_bytes`` (then down to 90 % of it).

    ``keep(path)`` true protects a file (the log file being written); ``on_delete(path)`` is called before a
    file is deleted (the writer closes its handle). Nothing is deleted while the folder is under the bound.
    """
    files = folder_files(folder)
    total = sum(size for _, size, _ in files)
    if total <= max_bytes:
        return PruneResult(total, 0, 0)
    target = int(max_bytes * PRUNE_TO)
    deleted = freed = 0
    for _mtime, size, path in sorted(files, key=lambda item: (item[0], str(item[2]))):
        if total <= target:
            break
        if keep is not None and keep(path):
            continue
        if not delete_file(path, on_delete):
            continue
        total -= size
        deleted += 1
        freed += size
    return PruneResult(total, deleted, freed)


class DiskManager:
    """Keeps ``_output`` and ``_logs`` under their bounds and pauses outputs while the disk is full."""

    def __init__(
        self,
        settings: DiskSettings,
        output_dir: Path,
        logs_dir: Path,
        notify: Callable[[str, str, dict[str, Any]], None],
        output_on_delete: Callable[[Path], None] | None = None,
        free_bytes: Callable[[Path], int] | None = None,
    ):
        self.settings = settings
        self.output_dir = output_dir
        self.logs_dir = logs_dir
        self.notify = notify
        self.output_on_delete = output_on_delete
        self.free_bytes = free_bytes or (lambda path: shutil.disk_usage(path).free)
        self.full = False
        self.reason: str | None = None
        self.full_since: float | None = None
        self._enospc = False
        self.alerts = 0
        self.outputs_skipped = 0
        self.pruned_files = 0
        self.pruned_bytes = 0
        self.logs_bytes = 0
        self.free: int | None = None
        self._next_rescan = 0.0
        self._lock = threading.Lock()
        # _output's files, least recently written first -> bytes (None until the first scan); guarded by _output_lock,
        # which a write holds from making room to its last byte, so nothing is deleted under a writer
        self._index: OrderedDict[Path, int] | None = None
        self._indexed_bytes = 0
        self._touched: set[Path] | None = None  # paths changed while a rescan walks the folder
        self._output_lock = threading.RLock()

    # --- called by writers ---------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        """True while outputs must not be written (the disk is full)."""
        return self.full

    def skipped(self, count: int = 1) -> None:
        """Count outputs not written because the disk is full."""
        self.outputs_skipped += count

    @contextmanager
    def writing(self, path: Path, nbytes: int) -> Iterator[bool]:
        """Hold the output folder while ``nbytes`` are written to ``path``: room is made first (the least recently
        written files are deleted, their handles closed through ``output_on_delete``), so the folder never holds
        more than its bound. Yields False when ``nbytes`` alone exceed the bound: the caller must not write."""
        with self._output_lock:
            yield self._make_room(path, nbytes)

    def renamed(self, old: Path, new: Path) -> None:
        """A file under ``_output`` was renamed (a JSON-lines file rotated)."""
        with self._output_lock:
            if self._index is not None and old in self._index:
                self._index[new] = self._index.pop(old)
            if self._touched is not None:
                self._touched.update((old, new))

    def _make_room(self, path: Path, nbytes: int) -> bool:
        bound = self.settings.output_max_bytes
        if nbytes > bound:
            return False
        index = self._ensure_index()
        if self._indexed_bytes + nbytes > bound:
            self._evict(int(bound * PRUNE_TO) - nbytes)
        index[path] = index.pop(path, 0) + nbytes  # the newest now
        self._indexed_bytes += nbytes
        if self._touched is not None:
            self._touched.add(path)
        return True

    def _ensure_index(self) -> OrderedDict[Path, int]:
        """The index of ``_output`` (scanned now when no housekeeping round has built it yet)."""
        if self._index is None:
            self._install_index(folder_files(self.output_dir), set())
        assert self._index is not None
        return self._index

    def _install_index(self, files: list[tuple[float, int, Path]], touched: set[Path]) -> None:
        """Replace the index by a scan's result; paths changed during the scan keep what the index says."""
        fresh: OrderedDict[Path, int] = OrderedDict()
        for _mtime, size, path in sorted(files, key=lambda item: (item[0], str(item[2]))):
            if path not in touched:
                fresh[path] = size
        for path in touched:
            if self._index is not None and path in self._index:
                fresh[path] = self._index[path]
        self._index = fresh
        self._indexed_bytes = sum(fresh.values())

    def _evict(self, target: int) -> PruneResult:
        """Delete the least recently written files until the index holds at most ``target`` bytes (lock held)."""
        assert self._index is not None
        deleted = freed = 0
        while self._index and self._indexed_bytes > max(target, 0):
            path, size = self._index.popitem(last=False)
            self._indexed_bytes -= size
            if self._touched is not None:
                self._touched.add(path)
            if not delete_file(path, self.output_on_delete):
                continue
            deleted += 1
            freed += size
        result = PruneResult(self._indexed_bytes, deleted, freed)
        self._count(result, self.output_dir)
        return result

    def write_failed(self, exc: BaseException, where: str = "") -> bool:
        """Report a failed write; True (and outputs paused) when it failed because the disk is full."""
        if not is_disk_full(exc):
            return False
        self._enospc = True
        self._enter_full(f"{where or 'a write'} failed: {getattr(exc, 'strerror', None) or exc}")
        return True

    # --- housekeeping ---------------------------------------------------------------------------------
    def tick(self) -> None:
        """One housekeeping round: check free space, prune what is over its bound. Never raises OSError."""
        try:
            self._check_space()
            now = time.monotonic()
            if now >= self._next_rescan:
                self.prune_output()
                self.prune_logs()
                self._next_rescan = now + RESCAN_SECONDS
        except OSError as exc:
            log.error("disk housekeeping failed: %s", exc)

    def check_space(self) -> None:
        """Only the free-space check (one statvfs): cheap enough for start-up, where a full scan is not."""
        try:
            self._check_space()
        except OSError as exc:
            log.error("disk housekeeping failed: %s", exc)

    def prune_output(self) -> PruneResult:
        """Rescan ``_output`` (writes go on meanwhile) and delete the oldest files if others' writes put it over."""
        with self._output_lock:
            self._touched = set()
        try:
            files = folder_files(self.output_dir)
        finally:
            with self._output_lock:
                touched, self._touched = self._touched, None
                self._install_index(files, touched)
        with self._output_lock:
            if self._indexed_bytes <= self.settings.output_max_bytes:
                return PruneResult(self._indexed_bytes, 0, 0)
            return self._evict(int(self.settings.output_max_bytes * PRUNE_TO))

    @property
    def output_bytes(self) -> int:
        """Bytes under ``_output`` as the index knows them (0 before the first scan)."""
        return self._indexed_bytes

    def prune_logs(self) -> PruneResult:
        current = self.logs_dir / "node.log"
        result = prune_oldest(self.logs_dir, self.settings.logs_max_bytes, keep=lambda p: p == current)
        self.logs_bytes = result.total_bytes
        self._count(result, self.logs_dir)
        return result

    def _count(self, result: PruneResult, folder: Path) -> None:
        if result.deleted:
            self.pruned_files += result.deleted
            self.pruned_bytes += result.freed_bytes
            log.info(
                "%s over its bound: deleted the %d oldest file(s), %.1f MB",
                folder.name,
                result.deleted,
                result.freed_bytes / MB,
            )

    def _check_space(self) -> None:
        folders = [f for f in (self.output_dir, self.logs_dir) if f.exists()] or [self.output_dir.parent]
        free = min(self.free_bytes(folder) for folder in folders)
        self.free = free
        minimum = self.settings.min_free_bytes
        if free < minimum:
            self._enter_full(f"free space {free / MB:.1f} MB is under {minimum / MB:.0f} MB")
        elif self.full and free >= minimum + min(minimum // 10, 10 * MB) and (not self._enospc or self._probe()):
            self._resume(free)  # a margin over the threshold, so that a disk at the threshold does not flap

    def _probe(self) -> bool:
        """Whether a small write to ``_output`` succeeds again after ENOSPC."""
        try:
            with open(self.output_dir / PROBE_FILE, "wb") as handle:
                handle.write(b"\0" * PROBE_BYTES)
                handle.flush()
                os.fsync(handle.fileno())
                handle.truncate(0)  # the file stays (empty): nothing to delete on the next probe
            return True
        except OSError:
            return False

    def _enter_full(self, reason: str) -> None:
        with self._lock:
            if self.full:
                return
            self.full, self.reason, self.full_since = True, reason, time.time()
            self.alerts += 1
        log.error("disk full: %s; outputs paused until space is back (the node keeps running)", reason)
        self.notify("error", f"disk full: {reason}; outputs paused (the node keeps running)", {"DISK_FULL": True})

    def _resume(self, free: int) -> None:
        with self._lock:
            if not self.full:
                return
            skipped = self.outputs_skipped
            self.full, self.reason, self.full_since, self._enospc = False, None, None, False
        log.info("disk space back (%.1f MB free): outputs resumed", free / MB)
        self.notify(
            "info",
            f"disk space back ({free / MB:.0f} MB free): outputs resumed",
            {"DISK_FULL": False, "OUTPUTS_SKIPPED": skipped},
        )

    def snapshot(self) -> dict[str, Any]:
        """The ``disk`` section of local_info.json."""
        return {
            "full": self.full,
            "reason": self.reason,
            "full_since": None if self.full_since is None else utc_iso(self.full_since),
            "free_mb": None if self.free is None else round(self.free / MB, 1),
            "min_free_mb": round(self.settings.min_free_bytes / MB, 1),
            "output_mb": round(self.output_bytes / MB, 2),
            "output_max_mb": round(self.settings.output_max_bytes / MB, 1),
            "logs_mb": round(self.logs_bytes / MB, 2),
            "logs_max_mb": round(self.settings.logs_max_bytes / MB, 1),
            "outputs_skipped": self.outputs_skipped,
            "pruned_files": self.pruned_files,
            "pruned_mb": round(self.pruned_bytes / MB, 2),
            "alerts": self.alerts,
        }
