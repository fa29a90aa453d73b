"""Local pipeline deploys: add, replace or delete a pipeline on this machine without MQTT.

``edge-node deploy FILE`` and ``edge-node delete NAME`` (also ``cmds/deploy``, ``cmds/delete``, so ``docker exec``
works) talk to a running node through files in its cache, never through a socket or the broker:

1. The command writes a request, ``_data/local_requests/<id>.request.json``, atomically (temporary file, fsync,
   rename), mode 0600 in a folder of mode 0700: only the node's user (or root, e.g. ``docker exec``, whose file is
   given to the node's user before it appears) can ask anything.
2. The node's :class:`LocalRequestWatcher` (a thread polling the folder every 0.2 s) takes the request (deletes it),
   applies it through the engine API (:meth:`Node.add_pipeline` validates with the same code as the MQTT commands
   and ``edge-node validate``; :meth:`Node.remove_pipeline`), and writes ``<id>.result.json``: ``applied``,
   ``deleted``, ``not_found`` or ``refused`` with every reason.
3. The command waits for the result, prints it and deletes it.

When no node runs on the cache (``local_info.json`` says ``stopped``, or has not been refreshed for 3 periods: a
crash), the command writes the cache itself, as the node would, and the pipeline starts with the next start. A
request nobody took within the wait is withdrawn (deleted) by the command, so a stopped node never finds an old
request at its next start; one left behind by a killed command expires after :data:`REQUEST_MAX_AGE` seconds.

:func:`unseeded_pipeline_warnings` says at start which pipelines the repository's startup config lists but the cache
does not have (``PIPELINES`` seeds only the first start).

Standard library only (plus the engine's ``cache``, ``constants`` and ``errors``): the client side runs in the ops
commands.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_engine import constants as C
from edge_engine.errors import CacheError, ConfigError, EdgeError, PipelineError
from edge_engine.local.cache import CacheLayout, atomic_write_json, read_json

if TYPE_CHECKING:
    from edge_engine.node.seams import LocalRequestHost

log = logging.getLogger(__name__)

REQUESTS_DIR = "local_requests"
REQUEST_SUFFIX = ".request.json"
RESULT_SUFFIX = ".result.json"
POLL_SECONDS = 0.2
REQUEST_MAX_AGE = 120.0  # seconds: an older request (its command was killed) is answered "expired", not applied
MAX_REQUEST_BYTES = 4 * 1024 * 1024
STOP_SECONDS = 2.0  # the watcher's stop waits this long for a request being handled
STALE_PERIODS = 3  # local_info.json older than this many refresh periods: the node is not running (as healthcheck)
ACTIONS = ("deploy", "delete")
RUNNING_STATES = ("starting", "running")


def requests_dir(layout: CacheLayout) -> Path:
    """``_data/local_requests``: where the commands leave requests and the node its results."""
    return layout.data / REQUESTS_DIR


def ratio1_time(ts: float | None = None) -> str:
    """Ratio1's ``LAST_UPDATE_TIME`` format (UTC), as the node stamps the pipelines it writes."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


# --- the node's side ------------------------------------------------------------------------------------------
class LocalRequestWatcher:
    """Takes the requests the commands leave in ``_data/local_requests`` and answers each with a result file; a
    node service (:class:`edge_engine.node.seams.Service`)."""

    name = "local requests"

    def __init__(self, node: LocalRequestHost, poll_seconds: float = POLL_SECONDS):
        self.node = node
        self.folder = requests_dir(node.layout)
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unreadable: set[str] = set()

    def prepare(self) -> bool:
        """Create the folder owner-only; False (and a log line) when it is not this process's to use."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = self.folder.stat()
            if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
                log.error("local deploys disabled: %s belongs to another user (uid %d)", REQUESTS_DIR, st.st_uid)
                return False
            if st.st_mode & 0o077:
                os.chmod(self.folder, 0o700)
        except OSError as exc:
            log.error("local deploys disabled: cannot prepare %s: %s", REQUESTS_DIR, exc)
            return False
        return True

    def start(self) -> None:
        if not self.prepare():
            return
        self._thread = threading.Thread(target=self._run, name="local-requests", daemon=True)
        self._thread.start()

    def stop(self, deadline: float | None = None) -> list[str]:
        """Stop polling; waits up to ``STOP_SECONDS`` for a request being handled (the node's ``deadline`` does not
        cut it: a request half applied is worse than a late stop)."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return []
        thread.join(STOP_SECONDS)
        return [thread.name] if thread.is_alive() else []

    def snapshot(self) -> None:
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.process_pending()
            except Exception:  # never let a request end the watcher
                log.exception("local request handling failed")

    def process_pending(self) -> int:
        """Answer every waiting request (oldest first) and drop old results; returns how many were answered."""
        try:
            entries = sorted(p for p in self.folder.iterdir() if not p.name.startswith("."))
        except OSError:
            return 0
        answered = 0
        for path in entries:
            if path.name.endswith(REQUEST_SUFFIX):
                answered += self._take(path)
            elif path.name.endswith(RESULT_SUFFIX):
                _remove_if_older(path, REQUEST_MAX_AGE)
        return answered

    def _take(self, path: Path) -> int:
        request_id = path.name[: -len(REQUEST_SUFFIX)]
        try:
            if path.stat().st_size > MAX_REQUEST_BYTES:
                raise ValueError(f"request larger than {MAX_REQUEST_BYTES // (1024 * 1024)} MB")
            request = read_json(path)
        except FileNotFoundError:
            return 0  # withdrawn by its command
        except CacheError as exc:
            if isinstance(exc.__cause__, PermissionError):
                if request_id not in self._unreadable:  # e.g. written by root without the node's ownership
                    self._unreadable.add(request_id)
                    log.error("local request %s cannot be read by the node: %s", request_id, exc.__cause__)
                return 0
            request = {"invalid": "not valid JSON"}
        except (OSError, ValueError) as exc:
            request = {"invalid": str(exc)}
        try:
            path.unlink()
        except FileNotFoundError:
            return 0  # withdrawn by its command in the meantime
        result = self.handle(request)
        result["id"] = request_id
        result["answered_at"] = time.time()
        try:
            atomic_write_json(self.folder / f"{request_id}{RESULT_SUFFIX}", result, mode=0o600)
        except OSError as exc:
            log.error("local request %s: result not written: %s", request_id, exc)
        return 1

    def handle(self, request: Any) -> dict[str, Any]:
        """Apply one request; the result says what happened (never raises)."""
        problem = check_request(request)
        if problem:
            log.warning("local request refused: %s", problem)
            return refused([problem])
        action = request["action"]
        try:
            if action == "deploy":
                return self._deploy(request["pipeline"], str(request.get("source") or "local deploy"))
            return self._delete(request["name"])
        except ConfigError as exc:
            reasons = [str(issue) for issue in exc.issues]
        except PipelineError as exc:
            reasons = [exc.reason]
        except Exception as exc:  # a pipeline that fails to start must not stop the node
            log.exception("local %s failed", action)
            reasons = [f"{type(exc).__name__}: {exc}"]
        for reason in reasons:
            log.warning("local %s refused: %s", action, reason)
        return refused(reasons)

    def _deploy(self, raw: dict[str, Any], source: str) -> dict[str, Any]:
        name = raw.get("NAME")
        replaced = name in self.node.pipeline_names()
        spec = self.node.add_pipeline(raw, source=source)
        verb = "replaced" if replaced else "added"
        log.info("pipeline %r %s by a local deploy (%s)", spec.name, verb, source)
        return {
            "status": "applied",
            "pipeline": spec.name,
            "replaced": replaced,
            "message": f"pipeline {spec.name!r} {verb} on the running node",
        }

    def _delete(self, name: str) -> dict[str, Any]:
        if self.node.remove_pipeline(name):
            log.info("pipeline %r deleted by a local request", name)
            message = f"pipeline {name!r} deleted from the running node"
            return {"status": "deleted", "pipeline": name, "message": message}
        return {"status": "not_found", "pipeline": name, "message": f"the node has no pipeline {name!r}"}


def check_request(request: Any) -> str | None:
    """What is wrong with a request's shape, or None."""
    if not isinstance(request, dict):
        return "a request is a JSON object"
    if "invalid" in request:
        return f"unreadable request: {request['invalid']}"
    action = request.get("action")
    if action not in ACTIONS:
        return f"unknown action {action!r} (expected one of {', '.join(ACTIONS)})"
    created = request.get("created_at")
    if not isinstance(created, (int, float)) or time.time() - created > REQUEST_MAX_AGE:
        return f"expired: older than {REQUEST_MAX_AGE:.0f} s (its command gave up waiting)"
    if action == "deploy" and not isinstance(request.get("pipeline"), dict):
        return "a deploy request carries one pipeline (a JSON object)"
    if action == "delete" and not (isinstance(request.get("name"), str) and request["name"]):
        return "a delete request carries a pipeline NAME"
    return None


def refused(reasons: list[str]) -> dict[str, Any]:
    return {"status": "refused", "reasons": reasons, "message": "refused; nothing changed"}


def _remove_if_older(path: Path, seconds: float) -> None:
    try:
        if time.time() - path.stat().st_mtime > seconds:
            path.unlink()
    except OSError:
        pass


# --- the command's side ---------------------------------------------------------------------------------------
@dataclass
class NodeState:
    """Whether a node runs on a cache, as far as ``local_info.json`` tells."""

    running: bool
    status: str
    detail: str


def node_state(layout: CacheLayout, now: float | None = None) -> NodeState:
    """``running`` when ``local_info.json`` says starting/running and was refreshed within 3 of its periods."""
    try:
        info = read_json(layout.local_info)
    except CacheError:
        return NodeState(False, "absent", "no node has written local_info.json in this cache")
    if not isinstance(info, dict):
        return NodeState(False, "absent", "local_info.json holds no JSON object")
    status = str(info.get("status") or "unknown")
    age = (time.time() if now is None else now) - _timestamp(info.get("updated_at"))
    refresh = info.get("refresh_seconds")
    period = float(refresh) if isinstance(refresh, (int, float)) and refresh > 0 else C.DEFAULT_LOCAL_INFO_SECONDS
    if status in RUNNING_STATES and age <= STALE_PERIODS * period:
        return NodeState(True, status, f"{info.get('alias') or 'the node'} is {status}")
    if status in RUNNING_STATES:
        detail = f"local_info.json says {status} but is {age:.0f} s old: the node is not running"
        return NodeState(False, "stale", detail)
    return NodeState(False, status, f"the node is {status}")


def _timestamp(value: Any) -> float:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


class RequestError(EdgeError):
    """A request could not be handed to the node (e.g. the folder is another user's)."""


def new_request(action: str, **fields: Any) -> dict[str, Any]:
    return {"action": action, "created_at": time.time(), **fields}


def send_request(layout: CacheLayout, request: dict[str, Any]) -> str:
    """Write a request for the running node atomically; returns its id."""
    folder = requests_dir(layout)
    if not folder.is_dir():
        raise RequestError(f"the node has no {REQUESTS_DIR} folder in its cache: it predates local deploys")
    request_id = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
    data = (json.dumps(request, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{request_id}.", suffix=".tmp", dir=folder)
    except PermissionError as exc:
        raise RequestError(
            f"cannot write into the node's {REQUESTS_DIR} folder ({exc.strerror}): run as the node's user or root"
        ) from exc
    try:
        os.fchmod(fd, 0o600)
        _give_to_folder_owner(fd, folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / f"{request_id}{REQUEST_SUFFIX}")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return request_id


def _give_to_folder_owner(fd: int, folder: Path) -> None:
    """Run as root (``docker exec``): the request belongs to the node's user before it appears."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    st = folder.stat()
    os.fchown(fd, st.st_uid, st.st_gid)


def wait_result(
    layout: CacheLayout, request_id: str, timeout: float, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any] | None:
    """The node's answer, or None after ``timeout`` s; a request nobody took by then is withdrawn.

    Returns ``{"status": "not_taken"}`` when the request was withdrawn, ``{"status": "no_answer"}`` when the node
    took it but wrote no result in time.
    """
    folder = requests_dir(layout)
    result_path = folder / f"{request_id}{RESULT_SUFFIX}"
    request_path = folder / f"{request_id}{REQUEST_SUFFIX}"
    deadline = time.monotonic() + timeout
    while True:
        if result_path.exists():
            try:
                result = read_json(result_path)
            except CacheError:
                result = None  # cannot happen with atomic writes, but never fail on it
            result_path.unlink(missing_ok=True)
            if isinstance(result, dict):
                return result
        if time.monotonic() >= deadline:
            break
        sleep(0.05)
    try:
        request_path.unlink()
        return {"status": "not_taken"}
    except FileNotFoundError:
        return {"status": "no_answer"}


def write_stopped_cache(layout: CacheLayout, raw: dict[str, Any]) -> Path:
    """With no node running: write the pipeline as the node would (stamped); other files of the same NAME go."""
    name = str(raw["NAME"])
    target = layout.stream_file(name)
    for other in _files_holding(layout, name):
        if other != target:
            other.unlink(missing_ok=True)
    owner = _owner(layout.streams if layout.streams.is_dir() else layout.root)
    stamped = dict(raw)
    stamped["LAST_UPDATE_TIME"] = ratio1_time()
    atomic_write_json(target, stamped)
    _chown_if_root(target, owner)
    return target


def delete_from_stopped_cache(layout: CacheLayout, name: str) -> list[Path]:
    """With no node running: delete the pipeline's cache file(s); returns the files removed."""
    removed = []
    for path in _files_holding(layout, name):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _files_holding(layout: CacheLayout, name: str) -> list[Path]:
    """Stream files named ``<name>.json`` or whose ``NAME`` is ``name`` (the node starts them under that NAME)."""
    found: list[Path] = []
    if not layout.streams.is_dir():
        return found
    for path in sorted(layout.streams.glob("*.json")):
        if path.stem == name:
            found.append(path)
            continue
        try:
            data = read_json(path)
        except CacheError:
            continue
        if isinstance(data, dict) and data.get("NAME") == name:
            found.append(path)
    return found


def _owner(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_uid, st.st_gid


def _chown_if_root(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None and hasattr(os, "geteuid") and os.geteuid() == 0:
        os.chown(path, *owner)


# --- the start-up warning ---------------------------------------------------------------------------------------
def repository_pipelines(base_dir: Path, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(NAME, where)`` of every pipeline the repository's startup config lists in ``PIPELINES``."""
    spec = env.get(C.ENV_CONFIG)
    if spec and spec.lstrip().startswith("{"):
        try:
            config: Any = json.loads(spec)
        except json.JSONDecodeError:
            return []
        label = C.ENV_CONFIG
    else:
        path = Path(spec).expanduser() if spec else Path(C.STARTUP_CONFIG_FILE)
        path = path if path.is_absolute() else base_dir / path
        try:
            config = read_json(path)
        except CacheError:
            return []
        label = spec or C.STARTUP_CONFIG_FILE
    items = config.get("PIPELINES") if isinstance(config, dict) else None
    found: list[tuple[str, str]] = []
    for index, item in enumerate(items if isinstance(items, list) else []):
        where = f"{label} › PIPELINES[{index}]"
        data: Any = item
        if isinstance(item, str):
            where = item
            path = Path(item).expanduser()
            try:
                data = read_json(path if path.is_absolute() else base_dir / path)
            except CacheError:
                continue  # seeding reports unreadable files; this warning is about missing pipelines only
        for raw in data if isinstance(data, list) else [data]:
            if isinstance(raw, dict) and isinstance(raw.get("NAME"), str) and raw["NAME"]:
                found.append((raw["NAME"], where))
    return found


def cached_pipeline_names(layout: CacheLayout) -> set[str]:
    """Names the cache holds: file stems and the ``NAME`` inside each file."""
    names: set[str] = set()
    if not layout.streams.is_dir():
        return names
    for path in layout.streams.glob("*.json"):
        names.add(path.stem)
        try:
            data = read_json(path)
        except CacheError:
            continue
        if isinstance(data, dict) and isinstance(data.get("NAME"), str):
            names.add(data["NAME"])
    return names


def unseeded_pipeline_warnings(base_dir: Path, layout: CacheLayout, env: Mapping[str, str]) -> list[str]:
    """One message per pipeline the repository's startup config lists that the cache does not have."""
    have = cached_pipeline_names(layout)
    messages = []
    for name, where in repository_pipelines(base_dir, env):
        if name in have or name.lower() == C.ADMIN_PIPELINE_NAME:
            continue
        command = (
            f"edge-node deploy {where}"
            if not where.startswith((C.ENV_CONFIG, C.STARTUP_CONFIG_FILE))
            else ("edge-node deploy FILE")
        )
        messages.append(
            f"the startup config lists pipeline {name!r} ({where}) but this node's cache does not have it: "
            f"PIPELINES seeds the cache only at the first start. Add it with `{command}` (or cmds/deploy), or remove "
            f"it from PIPELINES if it was deleted on purpose"
        )
    return messages
