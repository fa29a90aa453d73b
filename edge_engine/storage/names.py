"""Names of stored things: content-addressed object keys and safe file names (standard library only)."""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def object_key(prefix: str, data: bytes, suffix: str) -> str:
    """The content-addressed key of ``data``: the same bytes always get the same key (and URL)."""
    return f"{prefix}{hashlib.sha256(data).hexdigest()}{suffix.lower()}"


def safe_file_name(name: str) -> str:
    """A plugin's file name reduced to one harmless path component (ValueError when nothing is left)."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    cleaned = _UNSAFE.sub("_", base).strip("._")
    if not cleaned:
        raise ValueError(f"not a usable file name: {name!r}")
    return cleaned[:120]
