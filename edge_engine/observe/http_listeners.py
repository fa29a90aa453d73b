"""The HTTP listeners: the status page and its JSON API, and ``/metrics`` (stdlib ``http.server`` only).

Routes: ``/`` (the page), ``/api/status`` (the node snapshot, redacted), ``/api/history`` (the node
history), ``/api/witness/<pipeline>/<SIGNATURE>_<INSTANCE>`` (the instance's newest image: its live view
(``publish_live``) or its newest witness JPEG, whichever is newer) and ``/metrics``.
Clients from a non-loopback address need ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from edge_engine.observe.observe_settings import ObserveSettings, load_observe_settings
from edge_engine.plugin.kinds import LIVE_IMAGE
from edge_engine.redact import redact

if TYPE_CHECKING:
    from edge_engine.node.seams import ObservedNode

log = logging.getLogger(__name__)
SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")


def newest_witness(output_dir: Path, pipeline: str, folder: str) -> Path | None:
    """The newer of the instance's live view (``live.jpg``) and the newest ``.jpg`` in its ``images``
    folder, under ``output_dir/pipeline/folder``; None for unsafe names or none there."""
    if not (SAFE_SEGMENT.match(pipeline) and SAFE_SEGMENT.match(folder)) or ".." in (pipeline, folder):
        return None
    base = (output_dir / pipeline / folder).resolve()
    if not base.is_relative_to(output_dir.resolve()) or not base.is_dir():
        return None
    best: tuple[float, str] | None = None
    live = base / LIVE_IMAGE
    try:
        best = (live.stat().st_mtime, LIVE_IMAGE)
    except OSError:
        pass
    images = base / "images"
    if images.is_dir():
        with os.scandir(images) as entries:
            for entry in entries:
                if entry.name.endswith(".jpg") and entry.is_file():
                    key = (entry.stat().st_mtime, f"images/{entry.name}")
                    best = key if best is None or key > best else best
    return base / best[1] if best else None


class _Handler(BaseHTTPRequestHandler):
    """One request; ``server.app`` holds the node and the settings."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if not self._allowed(parse_qs(url.query)):
            return
        path = url.path.rstrip("/") or "/"
        app = self.server.app
        try:
            if self.server.metrics_only and path != "/metrics":
                self._send(404, b"not found", "text/plain")
            elif path in ("/", "/index.html"):
                self._send(200, app.page(), "text/html; charset=utf-8")
            elif path == "/api/status":
                self._json(redact(app.node.snapshot()))
            elif path == "/api/history":
                history = app.node.history
                self._json(history.to_json() if history is not None else {})
            elif path.startswith("/api/witness/"):
                self._witness(path[len("/api/witness/") :])
            elif path == "/metrics":
                exporter = app.metrics()
                self._send(200, exporter.render(), exporter.content_type)
            else:
                self._send(404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _allowed(self, query: dict[str, list[str]]) -> bool:
        host = self.client_address[0]
        try:
            loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            loopback = False
        if loopback or self.server.metrics_only:
            return True
        token = self.server.app.settings.token
        if not token:
            self._send(403, b"forbidden: the status page serves loopback only", "text/plain")
            return False
        given = self.headers.get("Authorization", "")
        given = given[7:].strip() if given.lower().startswith("bearer ") else (query.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), token.encode()):
            self._send(401, b"unauthorized: a token is required", "text/plain", {"WWW-Authenticate": "Bearer"})
            return False
        return True

    def _witness(self, rest: str) -> None:
        parts = [unquote(p) for p in rest.split("/")]
        found = None
        if len(parts) == 2:
            found = newest_witness(self.server.app.node.layout.output, parts[0], parts[1])
        if found is None:
            self._send(404, b"no witness image", "text/plain")
            return
        try:
            data = found.read_bytes()
        except OSError:
            self._send(404, b"no witness image", "text/plain")
            return
        self._send(200, data, "image/jpeg")

    def _json(self, value: Any) -> None:
        self._send(200, json.dumps(value, default=str).encode(), "application/json")

    def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: ObserveServer, metrics_only: bool = False):
        self.app = app
        self.metrics_only = metrics_only
        super().__init__(address, _Handler)


class ObserveServer:
    """The status page (and ``/metrics``) of one node, plus the optional metrics-only listener; a node service
    (:class:`edge_engine.node.seams.Service`)."""

    name = "observe"

    def __init__(self, node: ObservedNode, settings: ObserveSettings):
        self.node = node
        self.settings = settings
        self.servers: list[_Server] = []
        self._page: bytes | None = None
        self._metrics: Any = None
        self._lock = threading.Lock()

    def page(self) -> bytes:
        if self._page is None:
            self._page = resources.files("edge_engine.observe").joinpath("static/status.html").read_bytes()
        return self._page

    def metrics(self) -> Any:
        """The exporter, built on first use (``prometheus_client`` is imported only then)."""
        with self._lock:
            if self._metrics is None:
                from edge_engine.observe.metrics import MetricsExporter

                self._metrics = MetricsExporter(self.node.snapshot)
            return self._metrics

    def start(self) -> None:
        """Bind the listeners that are on; a bind failure is logged and skipped."""
        s = self.settings
        wanted = [(s.status_bind, s.status_port, False)] if s.status_port else []
        if s.metrics_port:
            wanted.append((s.metrics_bind, s.metrics_port, True))
        for host, port, metrics_only in wanted:
            what = "metrics" if metrics_only else "status page"
            try:
                server = _Server((host, port), self, metrics_only)
            except OSError as exc:
                log.error("%s: cannot listen on %s:%d (%s); the node runs without it", what, host, port, exc)
                continue
            self.servers.append(server)
            threading.Thread(target=server.serve_forever, name=f"observe-{port}", daemon=True).start()
            note = " (token required from other hosts)" if not metrics_only and s.token else ""
            level = logging.WARNING if host not in ("127.0.0.1", "localhost", "::1") else logging.INFO
            log.log(level, "%s listening on http://%s:%d/%s", what, host, self.port(metrics_only), note)

    def port(self, metrics_only: bool = False) -> int:
        """The bound port of the status page (or the metrics listener); 0 if it is not listening."""
        for server in self.servers:
            if server.metrics_only == metrics_only:
                return int(server.server_address[1])
        return 0

    def stop(self, deadline: float | None = None) -> list[str]:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        self.servers.clear()
        return []

    def snapshot(self) -> dict[str, int]:
        """The bound ports (0: not listening)."""
        return {"status_port": self.port(), "metrics_port": self.port(metrics_only=True)}


def make_observe(node: ObservedNode) -> ObserveServer | None:
    """The listeners configured in the node's environment, not started yet; None when both are off."""
    settings = load_observe_settings(node.settings.env)
    if not settings.status_port and not settings.metrics_port:
        log.info("status page off (EE_STATUS_PORT=0)")
        return None
    return ObserveServer(node, settings)


def start_observe(node: ObservedNode) -> ObserveServer | None:
    """Start the listeners configured in the node's environment; None when both are off."""
    server = make_observe(node)
    if server is not None:
        server.start()
    return server
