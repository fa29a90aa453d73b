"""``HTTP_POLL`` capture plugin: an HTTP(S) endpoint polled every ``INTERVAL`` seconds.

Each answer becomes a structured input ``{"url", "status", "payload", "received_at"}``: the URL without its
credentials, the HTTP status, the body parsed as ``PARSE`` says (``json`` by default, or ``text``) and the UTC
ISO-8601 time it arrived. With ``ONLY_CHANGES`` an answer whose body equals the previous one's gives no input.
A body that is not valid JSON in ``json`` mode arrives as ``payload: None`` with ``error`` and ``raw`` (the
text), and is counted (``parse_errors`` in the input's metadata).

``METHOD`` is ``GET`` or ``POST`` (``BODY``: a string sent as is, or an object sent as JSON), ``HEADERS`` extra
request headers. Credentials in the URL (``https://user:pass@host/...``) are sent as HTTP basic
authentication and never shown: the URL appears as ``https://***@host/...`` in inputs, logs and errors, and
the values of secret-looking headers (``Authorization``, cookies, tokens, keys) are masked in logs.
An HTTP error status, a timeout or an unreachable host raises ``ConnectionError``: the source is *away*,
and the engine polls again after its backoff (at most ``AWAY_PROBE_MAX_SECONDS``). The wait between polls
ends at once when the node stops. Only the standard library is used (``urllib``, imported on first use);
the source is live by default (``LIVE_FEED``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar

from edge_engine.api import CapturePlugin, Input, Key, PluginContext

PARSE_MODES = ("json", "text")
METHODS = ("GET", "POST")
RAW_LIMIT = 4096  # characters of an unparseable body kept in its input
SECRET_HEADER = re.compile(r"AUTH|COOKIE|TOKEN|KEY|SECRET|PASS|SESSION|SIGNATURE", re.IGNORECASE)
MASK = "***"


def utc_iso(ts: float) -> str:
    """UTC ISO-8601 with milliseconds, e.g. ``2026-11-23T15:00:00.123Z``."""
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def split_credentials(url: str) -> tuple[str, str | None, str | None, str]:
    """``(url without user:pass@, user, password, url as shown)``; user and password are None when absent."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None, url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    shown = urllib.parse.urlunsplit(parts._replace(netloc=f"***@{hostport}"))
    return clean, urllib.parse.unquote(user), urllib.parse.unquote(password) if sep else None, shown


def masked_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """Headers for logs: the values of secret-looking ones shown as ``***``."""
    return {str(k): MASK if SECRET_HEADER.search(str(k)) else str(v) for k, v in headers.items()}


class HttpPoll(CapturePlugin):
    """Poll an HTTP endpoint; see the module docstring."""

    SIGNATURE = "HTTP_POLL"
    VERSION = "1.0.0"
    DESCRIPTION = (
        "Polls an HTTP(S) URL every INTERVAL seconds (GET or POST) and hands on status and parsed body; "
        "ONLY_CHANGES skips unchanged bodies. HTTP errors and timeouts make the engine retry with backoff. "
        "URL credentials and secret headers are never shown."
    )
    CONFIG: ClassVar[dict[str, Any]] = {
        "URL": Key(required=True, type=str, doc="http:// or https:// URL; user:pass@ is sent as basic auth"),
        "INTERVAL": Key(5.0, min=0.01, doc="seconds between two polls"),
        "METHOD": Key("GET", type=str, choices=METHODS, doc="HTTP method"),
        "HEADERS": Key({}, type=dict, doc="extra request headers; secret-looking values are masked in logs"),
        "BODY": Key(None, type=(str, dict, list), doc="POST body: text as is, an object or list as JSON"),
        "TIMEOUT": Key(10.0, min=0.1, doc="seconds before a request counts as failed"),
        "PARSE": Key("json", type=str, choices=PARSE_MODES, doc="how the body becomes the payload"),
        "ONLY_CHANGES": Key(False, type=bool, doc="give an input only when the body differs from the previous one"),
        "MAX_BYTES": Key(1_000_000, type=int, min=1, doc="larger bodies are a failure"),
        "LIVE_FEED": Key(True, type=bool, doc="drop the oldest input when consumers lag"),
    }

    def __init__(self, config: Mapping[str, Any], context: PluginContext):
        super().__init__(config, context)
        self._request: Any = None  # urllib.request.Request
        self._shown = ""
        self._next_due = 0.0
        self._last_digest: str | None = None
        self.polls = 0
        self.unchanged = 0
        self.parse_errors = 0

    def connect(self) -> None:
        """Prepare the request (nothing is sent yet); the first poll follows at once."""
        import urllib.request

        url, user, password, self._shown = split_credentials(str(self.config["URL"]))
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"URL must be http:// or https:// (got {self._shown!r})")
        headers = {str(k): str(v) for k, v in (self.config.get("HEADERS") or {}).items()}
        if user is not None and not any(k.lower() == "authorization" for k in headers):
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        method = str(self.config.get("METHOD", "GET")).upper()
        body = self.config.get("BODY")
        data: bytes | None = None
        if method == "POST" and body is not None:
            if isinstance(body, str):
                data = body.encode("utf-8")
            else:
                data = json.dumps(body).encode("utf-8")
                headers.setdefault("Content-Type", "application/json")
        self._request = urllib.request.Request(url, data=data, headers=headers, method=method)
        self._next_due = 0.0
        self.log.info("polling %s %s every %g s (headers %s)", method, self._shown,
                      float(self.config["INTERVAL"]), masked_headers(headers))  # fmt: skip

    def read(self) -> Input | None:
        """Wait for the next poll (returning None at once when stopping), poll, and return the answer."""
        wait = self._next_due - time.monotonic()
        if wait > 0 and self.context.stop_event.wait(wait):
            return None
        self._next_due = time.monotonic() + float(self.config["INTERVAL"])
        status, body = self._fetch()
        self.polls += 1
        if self.config.get("ONLY_CHANGES"):
            digest = hashlib.sha256(body).hexdigest()
            if digest == self._last_digest:
                self.unchanged += 1
                return None
            self._last_digest = digest
        ts = time.time()
        message = {"url": self._shown, "status": status, "payload": None, "received_at": utc_iso(ts)}
        self._parse(body, message)
        return Input(data=message, timestamp=ts, metadata={
            "url": self._shown, "polls": self.polls, "unchanged": self.unchanged, "parse_errors": self.parse_errors,
        })  # fmt: skip

    def _fetch(self) -> tuple[int, bytes]:
        import urllib.error
        import urllib.request

        assert self._request is not None
        limit = int(self.config.get("MAX_BYTES", 1_000_000))
        try:
            with urllib.request.urlopen(self._request, timeout=float(self.config["TIMEOUT"])) as answer:
                body = answer.read(limit + 1)
                status = int(answer.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise ConnectionError(f"HTTP {exc.code} {exc.reason} from {self._shown}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, DNS, timeout, bad answer
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise ConnectionError(f"cannot poll {self._shown}: {type(reason).__name__}: {reason}") from None
        if len(body) > limit:
            raise ConnectionError(f"answer of {self._shown} larger than MAX_BYTES ({limit} bytes)")
        return status, body

    def _parse(self, body: bytes, message: dict[str, Any]) -> None:
        text = body.decode("utf-8", errors="replace")
        if self.config.get("PARSE", "json") == "text":
            message["payload"] = text
            return
        try:
            message["payload"] = json.loads(text)
        except ValueError as exc:
            self.parse_errors += 1
            if self.parse_errors <= 3 or self.parse_errors % 100 == 0:
                self.log.warning("answer of %s is not JSON (%d so far): %s", self._shown, self.parse_errors, exc)
            message["error"] = f"invalid JSON: {exc}"
            message["raw"] = text[:RAW_LIMIT]
            if len(text) > RAW_LIMIT:
                message["truncated"] = True
