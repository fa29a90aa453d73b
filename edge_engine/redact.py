"""Keeping secrets out of logs, files and messages.

URLs lose their ``user:pass@`` (shown as ``***@``); values of keys named like ``*PASS*``, ``*SECRET*``,
``*TOKEN*`` or ``*KEY*`` are shown as ``***``, and so are HTTP credential headers (``Authorization``,
``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``) wherever they appear as keys (``HTTP_POLL``'s ``HEADERS``).
:class:`LocalPaths` keeps the node's own folders out of what it sends (decision 37).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s:]+(?::[^/@\s]*)?@")
_SECRET_KEY = re.compile(r"PASS|SECRET|TOKEN|KEY|AUTHORIZATION|COOKIE", re.IGNORECASE)
MASK = "***"


def redact_text(text: str) -> str:
    """Replace credentials embedded in URLs by ``***``."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(name))


def redact(value: Any, key: str | None = None) -> Any:
    """A copy of ``value`` with secret-named keys masked and URL credentials removed."""
    if key is not None and is_secret_key(key) and value not in (None, "", False):
        return MASK
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that removes URL credentials from every record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


class LocalPaths:
    """The node's own folders (the local cache, the working folder), named in nothing that leaves the node
    (decision 37): an absolute path under one of them becomes its last part (``.../streams/cam.json`` → ``cam.json``,
    what a reason needs), the folder itself ``<node folder>``. Other text is left as it is."""

    def __init__(self, *roots: str | Path):
        variants: set[str] = set()
        for root in roots:
            path = Path(root)
            variants |= {str(path.absolute()).rstrip("/"), str(path.resolve()).rstrip("/")}
        self.roots = tuple(sorted((v for v in variants if len(v) > 1), key=len, reverse=True))
        alternatives = "|".join(re.escape(root) for root in self.roots) or r"(?!x)x"
        # a root preceded by a word character or '/' is part of something else (a URL's path): left alone
        self._pattern = re.compile(rf"(?<![\w./-])(?:{alternatives})(?P<rest>/[^\s'\"(),;<>\[\]{{}}]*)?(?![\w.-])")

    def text(self, text: str) -> str:
        """``text`` with the node's paths replaced."""
        if not any(root in text for root in self.roots):  # the common case: one scan per root, nothing rebuilt
            return text
        return self._pattern.sub(_last_part, text)

    def scrub(self, value: Any, skip: frozenset[str] = frozenset()) -> Any:
        """A copy of ``value`` (dicts, lists, strings) with the node's paths replaced; keys in ``skip`` are kept as
        they are (inline images, pipeline configs an owner wrote)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: v if k in skip else self.scrub(v, skip) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v, skip) for v in value]
        return value


def _last_part(match: re.Match[str]) -> str:
    rest = (match.group("rest") or "").rstrip("/")
    return rest.rsplit("/", 1)[-1] if rest else "<node folder>"
