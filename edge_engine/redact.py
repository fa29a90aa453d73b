"""Keeping secrets out of logs, files and messages.

URLs lose their ``user:pass@`` (shown as ``***@``); values of keys named like ``*PASS*``, ``*SECRET*``,
``*TOKEN*`` or ``*KEY*`` are shown as ``***``, and so are HTTP credential headers (``Authorization``,
``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``) wherever they appear as keys (``HTTP_POLL``'s ``HEADERS``).
"""

from __future__ import annotations

import logging
import re
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
