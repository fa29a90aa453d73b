"""glibc's allocator, bounded for many threads: at most :data:`ARENA_LIMIT` malloc arenas instead of 8 per core.

glibc gives each new thread its own malloc arena until there are 8 per core (16 on 2 cores). A node with many
cameras runs three threads per camera, and a decoded 640x480 frame (0.9 MB) is allocated in the capture thread's
arena and freed wherever its last consumer lets it go; every arena then keeps the high-water mark of the frames that
passed through it. At 64 cameras the node's RSS was 340-428 MB with glibc's default and 311-321 MB with two arenas,
at the same CPU (docs/performance.md). The limit is set once, when the first pipeline is made (before its threads
start); an arena limit chosen by the operator (``MALLOC_ARENA_MAX`` in the environment, which glibc reads itself) is
left alone. Elsewhere than glibc this does nothing.

A stopped pipeline frees its decoder and frames into the arenas, which keep them (64 cameras removed: RSS 337 →
241 MB, the idle node is 85 MB). :func:`request_release` asks for a ``malloc_trim(0)`` and the node's watchdog
thread makes it (:func:`release_if_requested`: one call for a burst of removals, 4-14 ms), which brought that
241 MB back to 95 MB.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import threading

ARENA_LIMIT = 2
M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h

log = logging.getLogger(__name__)
_lock = threading.Lock()
_done = False


def limit_arenas(limit: int = ARENA_LIMIT) -> bool:
    """Bound glibc's malloc arenas to ``limit`` (once per process); True when this call set the bound."""
    global _done
    with _lock:
        if _done:
            return False
        _done = True
        if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
            return False
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        if not mallopt(M_ARENA_MAX, int(limit)):
            log.debug("mallopt(M_ARENA_MAX, %d) refused", limit)
            return False
        return True


_release_wanted = threading.Event()


def request_release() -> None:
    """Ask for the free memory of the allocator to go back to the system (a pipeline stopped)."""
    _release_wanted.set()


def release_if_requested() -> bool:
    """``malloc_trim(0)`` when :func:`request_release` was called since the last one; True when it ran."""
    if not _release_wanted.is_set():
        return False
    _release_wanted.clear()
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True
