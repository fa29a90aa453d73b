"""``IMAGE_FOLDER`` capture plugin: the images of a folder, in name order, once, looping, or watched.

Files whose names match one of the ``;``-separated ``PATTERN`` globs (case-insensitively, so
``*.jpg`` also takes ``IMG_0001.JPG``) are decoded with OpenCV in sorted name order. An unreadable
file is skipped with a warning. After the last file the plugin ends the stream, or starts a new pass
over the folder (``LOOP``), or keeps polling the folder every ``POLL_SECONDS`` for files it has not
seen yet (``WATCH``, which wins over ``LOOP``). In watch mode a file that cannot be decoded yet (it
may still be being written) is tried again at the next polls before it is given up; writers should
still create files atomically (write ``x.jpg.part``, then rename it to ``x.jpg``), since a truncated
JPEG can decode as a partly gray image.
``cv2`` is imported lazily so that loading this module stays cheap.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edge_engine.api import CapturePlugin, EndOfStream, Input, Key, PluginContext

_WATCH_ATTEMPTS = 3  # polls at which a watched file that does not decode is tried


class ImageFolder(CapturePlugin):
    """Read the images of a folder; see the module docstring."""

    SIGNATURE = "IMAGE_FOLDER"
    VERSION = "1.0.0"
    DESCRIPTION = (
        "Images of a folder in name order. Ends after the last one, or loops (LOOP), or waits for new files "
        "(WATCH, polling every POLL_SECONDS). Unreadable files are skipped with a warning."
    )
    CONFIG: ClassVar[dict[str, Any]] = {
        "PATH": Key(required=True, type=str, doc="folder of images; relative paths resolve against the current dir"),
        "PATTERN": Key("*.jpg;*.jpeg;*.png;*.bmp", type=str, doc="';'-separated file globs, case-insensitive"),
        "LOOP": Key(False, type=bool, doc="start again from the first file after the last one"),
        "WATCH": Key(False, type=bool, doc="after the existing files, wait for new ones instead of ending"),
        "POLL_SECONDS": Key(1.0, min=0.01, doc="how often WATCH looks for new files"),
    }

    def __init__(self, config: Mapping[str, Any], context: PluginContext):
        super().__init__(config, context)
        self._folder = Path(".")
        self._patterns: list[str] = []
        self._pending: deque[str] = deque()
        self._seen: set[str] = set()
        self._failures: dict[str, int] = {}
        self._retry: set[str] = set()
        self._warned: set[str] = set()
        self._index = 0
        self._loops = 0
        self._yielded_in_pass = False

    def connect(self) -> None:
        """Check the folder and list its files; FileNotFoundError / NotADirectoryError when it is wrong."""
        folder = Path(str(self.config["PATH"])).expanduser()
        if not folder.exists():
            where = "" if folder.is_absolute() else f" (relative to {Path.cwd()})"
            raise FileNotFoundError(f"image folder not found: {folder}{where}")
        if not folder.is_dir():
            raise NotADirectoryError(f"not a folder: {folder}")
        self._folder = folder
        pattern = str(self.config.get("PATTERN") or "*")
        self._patterns = [p.strip().lower() for p in pattern.split(";") if p.strip()] or ["*"]
        self._seen.clear()
        self._failures.clear()
        self._retry.clear()
        self._pending = deque(self._new_files())
        self._index = 0
        self._loops = 0
        self._yielded_in_pass = False

    def read(self) -> Input | None:
        """Return the next readable image, or None while waiting for new files (WATCH)."""
        import cv2

        while True:
            while self._pending:
                name = self._pending.popleft()
                image = cv2.imread(str(self._folder / name), cv2.IMREAD_COLOR)
                if image is None:
                    self._unreadable(name)
                    continue
                index = self._index
                self._index = index + 1
                self._yielded_in_pass = True
                return Input(image=image, metadata={"file": name, "index": index, "loop": self._loops})
            stop = self.context.stop_event
            poll = float(self.config.get("POLL_SECONDS", 1.0))
            if self.config.get("WATCH"):
                self._pending.extend(self._new_files())
                if not self._pending:
                    stop.wait(poll)
                    self._pending.extend(sorted(self._retry))  # files that did not decode: try again
                    self._retry.clear()
                    return None
            elif self.config.get("LOOP"):
                if not self._yielded_in_pass:  # empty folder, or nothing readable: do not spin
                    stop.wait(poll)
                    if stop.is_set():
                        return None
                self._seen.clear()
                self._pending.extend(self._new_files())
                self._loops += 1
                self._index = 0
                self._yielded_in_pass = False
                if not self._pending:
                    return None
            else:
                raise EndOfStream(f"no more images in {self._folder}")

    def release(self) -> None:
        """Nothing to close: files are read one by one."""
        self._pending.clear()

    # --- helpers --------------------------------------------------------------------------------------
    def _new_files(self) -> list[str]:
        """Names of matching files not listed before, sorted; marks them as seen."""
        try:
            names = [entry.name for entry in self._folder.iterdir() if entry.is_file()]
        except OSError as exc:
            raise FileNotFoundError(f"cannot list image folder {self._folder}: {exc}") from exc
        fresh = sorted(n for n in names if n not in self._seen and self._matches(n))
        self._seen.update(fresh)
        return fresh

    def _matches(self, name: str) -> bool:
        lowered = name.lower()
        return any(fnmatch.fnmatchcase(lowered, p) for p in self._patterns)

    def _unreadable(self, name: str) -> None:
        if self.config.get("WATCH"):
            tries = self._failures.get(name, 0) + 1
            self._failures[name] = tries
            if tries < _WATCH_ATTEMPTS:
                self._retry.add(name)  # maybe still being written: try it again after the next poll
                return
        if name in self._warned:  # LOOP: say it once, not at every pass
            return
        self._warned.add(name)
        self.log.warning("skipping unreadable image %s", self._folder / name)
