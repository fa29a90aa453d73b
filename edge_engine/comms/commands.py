"""Commands from owners: checked (size, JSON, signature, allowlist, time window, replay), decrypted,
validated against each action's contract, and applied through the node's engine API.

Every rejection is reported with a reason in a notification (at most 10 per second per sender; the rest
are counted), and nothing from an unauthorised sender changes state. Actions and notification codes
follow Ratio1 so its SDK can drive the node.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from edge_engine.allowlist import Allowlist
from edge_engine.comms.replay import ReplayGuard
from edge_engine.errors import ConfigError, PipelineError

log = logging.getLogger(__name__)

# Ratio1 notification codes (ratio1/const/payload.py)
PIPELINE_OK, PIPELINE_FAILED = 1, -1
PIPELINE_ARCHIVE_OK, PIPELINE_ARCHIVE_FAILED = 4, -4
PLUGIN_CONFIG_OK, PLUGIN_CONFIG_FAILED = 100, -100
PLUGIN_INSTANCE_COMMAND_OK, PLUGIN_INSTANCE_COMMAND_FAILED = 101, -101
COMM_RECEIVED_BAD_COMMAND = -5000

TIME_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S")
PUBLIC_ACTIONS = frozenset({"FULL_HEARTBEAT", "TIMERS_ONLY_HEARTBEAT", "SIMPLE_HEARTBEAT"})
REJECTIONS_PER_SECOND = 10
UNVERIFIED = "unverified"  # rate-limit bucket of messages whose signature did not verify (or was not reached)
COMMAND_RESULT_TIMEOUT = 5.0


class NodeAPI(Protocol):
    """What commands need from the node."""

    alias: str

    def add_pipeline(self, raw: dict[str, Any], source: str = ...) -> Any: ...
    def remove_pipeline(self, name: str) -> bool: ...
    def update_instance(self, pipeline: str, signature: str, instance_id: str, changes: dict[str, Any]) -> None: ...
    def instance_command(self, pipeline: str, signature: str, instance_id: str, command: Any, **params: Any) -> Any: ...
    def pipeline_names(self) -> list[str]: ...
    def request_stop(self, reason: str = ...) -> None: ...
    def request_restart(self, reason: str = ...) -> None: ...
    def notify(self, level: str, message: str, path: list[Any], **fields: Any) -> None: ...


class Rejected(Exception):
    """A command that must not be applied; ``reason`` goes to the sender."""

    def __init__(self, reason: str, code: int = COMM_RECEIVED_BAD_COMMAND, notified: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.notified = notified  # the sender was already told (with more detail): count it, do not repeat it


@dataclass
class CommandStats:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    rejections_not_notified: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class RejectionLimiter:
    """At most ``rate`` notifications per second per sender."""

    def __init__(self, rate: int = REJECTIONS_PER_SECOND):
        self.rate = rate
        self._windows: dict[str, tuple[float, int]] = {}

    def allow(self, sender: str) -> bool:
        now = time.monotonic()
        start, count = self._windows.get(sender, (now, 0))
        if now - start >= 1.0:
            start, count = now, 0
        if count >= self.rate:
            self._windows[sender] = (start, count)
            return False
        self._windows[sender] = (start, count + 1)
        if len(self._windows) > 10_000:
            self._windows.clear()
        return True


def parse_command_time(text: Any) -> float:
    """The SDK's ``TIME`` (sender's naive local time) as epoch seconds."""
    if not isinstance(text, str):
        raise Rejected(f"missing or invalid TIME (got {text!r})")
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    raise Rejected(f"invalid TIME {text!r}: expected 'YYYY-MM-DD HH:MM:SS.ffffff'")


class CommandProcessor:
    """Checks and applies one command at a time (called from the comms command thread)."""

    def __init__(
        self,
        node: NodeAPI,
        identity: Any,
        allowlist: Allowlist,
        replay: ReplayGuard,
        verify: Callable[[dict[str, Any]], Any],
        decrypt: Callable[[str, Any, str], str],
        secured: bool = True,
        window_seconds: float = 24 * 3600.0,
        max_bytes: int = 1_000_000,
        on_heartbeat_request: Callable[[], None] | None = None,
    ):
        self.node = node
        self.identity = identity
        self.allowlist = allowlist
        self.replay = replay
        self.verify = verify
        self.decrypt = decrypt
        self.secured = secured
        self.window = window_seconds
        self.max_bytes = max_bytes
        self.on_heartbeat_request = on_heartbeat_request
        self.stats = CommandStats()
        self.limiter = RejectionLimiter()
        self._lock = threading.Lock()

    # --- entry point ------------------------------------------------------------------------------------
    def handle(self, raw: bytes) -> tuple[bool, str]:
        """Check and apply one raw message; returns (accepted, reason or action)."""
        self.stats.received += 1
        # Until the signature is verified, EE_SENDER is only a claim: such rejections share one notification
        # budget, so forged senders can neither escape the rate limit nor use up a real sender's budget.
        sender = UNVERIFIED
        claimed = "unknown"
        context: dict[str, Any] = {}
        try:
            message = self._parse(raw)
            claimed = str(message.get("EE_SENDER") or "unknown")
            context = _context(message)
            result = self.verify(message)
            if not result.ok:
                raise Rejected(f"signature rejected: {result.reason}")
            sender = result.sender
            action, payload = self._authorise(message, sender)
            with self._lock:
                self._apply(action, payload, context, sender)
        except Rejected as exc:
            self._reject(sender, exc, context, claimed)
            return False, exc.reason
        self.stats.accepted += 1
        return True, action

    def _parse(self, raw: bytes) -> dict[str, Any]:
        if len(raw) > self.max_bytes:
            raise Rejected(f"message too large ({len(raw)} bytes > {self.max_bytes})")
        try:
            message = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Rejected(f"malformed JSON: {exc}") from exc
        if not isinstance(message, dict):
            raise Rejected(f"a command must be a JSON object (got {type(message).__name__})")
        return message

    def _authorise(self, message: dict[str, Any], sender: str) -> tuple[str, Any]:
        """Decrypt, then check ACTION, allowlist, time window and replay for a message signed by ``sender``."""
        if message.get("EE_IS_ENCRYPTED"):
            data = message.get("EE_ENCRYPTED_DATA")
            if not isinstance(data, str):
                raise Rejected("EE_IS_ENCRYPTED without EE_ENCRYPTED_DATA")
            try:
                inner = json.loads(self.decrypt(data, self.identity, sender))
            except Exception as exc:
                raise Rejected(f"cannot decrypt the command: {type(exc).__name__}: {exc}") from exc
            if not isinstance(inner, dict):
                raise Rejected("the decrypted command is not a JSON object")
            action, payload = inner.get("ACTION"), inner.get("PAYLOAD")
        else:
            action, payload = message.get("ACTION"), message.get("PAYLOAD")
        if not isinstance(action, str) or not action:
            raise Rejected(f"missing or invalid ACTION (got {action!r})")
        action = action.upper()
        if action in PUBLIC_ACTIONS:
            return action, payload
        if self.secured and not self.allowlist.allowed(sender):
            raise Rejected(f"sender {sender} is not in authorized_addrs")
        sent_at = parse_command_time(message.get("TIME"))
        skew = time.time() - sent_at
        if abs(skew) > self.window:
            raise Rejected(f"TIME outside the accepted window (off by {skew:+.0f} s, window ±{self.window:.0f} s)")
        digest = message.get("EE_HASH")
        if not isinstance(digest, str) or not self.replay.check_and_remember(digest):
            raise Rejected("replayed command (this EE_HASH was already accepted)")
        return action, payload

    def _reject(self, sender: str, exc: Rejected, context: dict[str, Any], claimed: str = "unknown") -> None:
        self.stats.rejected += 1
        key = exc.reason.split(":")[0][:60]
        self.stats.reasons[key] = self.stats.reasons.get(key, 0) + 1
        who = sender if sender != UNVERIFIED else f"{claimed} (unverified)"
        log.warning("command from %s rejected: %s", who, exc.reason)
        if exc.notified:
            return
        if not self.limiter.allow(sender):
            self.stats.rejections_not_notified += 1
            return
        self._notify("error", f"command rejected: {exc.reason}", exc.code, None, None, None, context)

    def _notify(self, level: str, text: str, code: int, pipeline: str | None, signature: str | None,
                instance: str | None, context: dict[str, Any], **info: Any) -> None:  # fmt: skip
        fields = {"NOTIFICATION_CODE": code, "NOTIFICATION_TYPE": "NORMAL" if code > 0 else "EXCEPTION", **context}
        if info:
            fields["INFO"] = info
        self.node.notify(level, text, [self.node.alias, pipeline, signature, instance], **fields)

    # --- actions -------------------------------------------------------------------------------------------
    def _apply(self, action: str, payload: Any, context: dict[str, Any], sender: str) -> None:
        handler = ACTIONS.get(action)
        if handler is None:
            raise Rejected(f"unknown ACTION {action!r}; known: {', '.join(sorted(ACTIONS))}")
        log.info("command %s from %s", action, sender)
        handler(self, payload, context, sender)

    def _update_config(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        if not isinstance(payload, dict):
            raise Rejected(f"UPDATE_CONFIG needs a pipeline object as PAYLOAD (got {type(payload).__name__})")
        raw = dict(payload)
        for key in ("SESSION_ID", "INITIATOR_ID", "INITIATOR_ADDR"):
            if context.get(key) is not None:
                raw.setdefault(key, context[key])
        raw["MODIFIED_BY_ADDR"] = sender
        if context.get("INITIATOR_ID") is not None:
            raw["MODIFIED_BY_ID"] = context["INITIATOR_ID"]
        name = raw.get("NAME")
        try:
            spec = self.node.add_pipeline(raw, source=f"command from {sender}")
        except ConfigError as exc:
            lines = [str(i) for i in exc.issues]
            self._notify("error", f"pipeline {name!r} refused: " + "; ".join(lines), PIPELINE_FAILED,
                         name if isinstance(name, str) else None, None, None, context, ERRORS=lines)  # fmt: skip
            raise Rejected("; ".join(lines), PIPELINE_FAILED, notified=True) from exc
        self._notify("info", f"pipeline {spec.name!r} applied", PIPELINE_OK, spec.name, None, None, context)
        for inst in spec.instances:
            self._notify("info", f"instance {inst.signature}/{inst.instance_id} configured", PLUGIN_CONFIG_OK,
                         spec.name, inst.signature, inst.instance_id, context)  # fmt: skip

    def _delete_config(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        if not isinstance(payload, str) or not payload:
            raise Rejected(
                f"DELETE_CONFIG needs the pipeline NAME as PAYLOAD (got {payload!r})", PIPELINE_ARCHIVE_FAILED
            )
        if payload == "admin_pipeline":
            raise Rejected("the admin pipeline cannot be deleted", PIPELINE_ARCHIVE_FAILED)
        if not self.node.remove_pipeline(payload):
            raise Rejected(f"no pipeline named {payload!r}", PIPELINE_ARCHIVE_FAILED)
        self._notify("info", f"pipeline {payload!r} deleted", PIPELINE_ARCHIVE_OK, payload, None, None, context)

    def _delete_all(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        for name in self.node.pipeline_names():
            if name != "admin_pipeline":
                self._delete_config(name, context, sender)

    def _update_instance(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        if not isinstance(payload, dict):
            raise Rejected("UPDATE_PIPELINE_INSTANCE needs {NAME, SIGNATURE, INSTANCE_ID, INSTANCE_CONFIG}",
                           PLUGIN_CONFIG_FAILED)  # fmt: skip
        missing = [k for k in ("NAME", "SIGNATURE", "INSTANCE_ID", "INSTANCE_CONFIG") if k not in payload]
        if missing:
            raise Rejected(f"UPDATE_PIPELINE_INSTANCE is missing {', '.join(missing)}", PLUGIN_CONFIG_FAILED)
        name, signature, instance = payload["NAME"], payload["SIGNATURE"], payload["INSTANCE_ID"]
        changes = payload["INSTANCE_CONFIG"]
        if not all(isinstance(v, str) for v in (name, signature, instance)) or not isinstance(changes, dict):
            raise Rejected("NAME, SIGNATURE and INSTANCE_ID must be strings and INSTANCE_CONFIG an object",
                           PLUGIN_CONFIG_FAILED)  # fmt: skip
        command = changes.get("INSTANCE_COMMAND")
        config = {k: v for k, v in changes.items() if k != "INSTANCE_COMMAND"}
        try:
            if config:
                self.node.update_instance(name, signature, instance, config)
        except (ConfigError, PipelineError) as exc:
            text = "; ".join(str(i) for i in exc.issues) if isinstance(exc, ConfigError) else str(exc)
            raise Rejected(text, PLUGIN_CONFIG_FAILED) from exc
        if config:
            self._notify("info", f"instance {signature}/{instance} updated", PLUGIN_CONFIG_OK, name, signature,
                         instance, context, KEYS=sorted(config))  # fmt: skip
        if command:
            self._instance_command(name, signature, instance, command, context)

    def _instance_command(self, name: str, signature: str, instance: str, command: Any,
                          context: dict[str, Any]) -> None:  # fmt: skip
        params: dict[str, Any] = {}
        if isinstance(command, dict) and isinstance(command.get("COMMAND_PARAMS"), dict):
            params = dict(command["COMMAND_PARAMS"])
            command = {k: v for k, v in command.items() if k != "COMMAND_PARAMS"}
        try:
            future = self.node.instance_command(name, signature, instance, command, **params)
            result = future.result(COMMAND_RESULT_TIMEOUT)
        except PipelineError as exc:
            raise Rejected(str(exc), PLUGIN_INSTANCE_COMMAND_FAILED) from exc
        except Exception as exc:
            raise Rejected(f"instance command failed: {type(exc).__name__}: {exc}",
                           PLUGIN_INSTANCE_COMMAND_FAILED) from exc  # fmt: skip
        self._notify("info", f"instance {signature}/{instance} ran the command", PLUGIN_INSTANCE_COMMAND_OK,
                     name, signature, instance, context, RESULT=result)  # fmt: skip

    def _batch_update(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        if not isinstance(payload, list) or not payload:
            raise Rejected("BATCH_UPDATE_PIPELINE_INSTANCE needs a non-empty list", PLUGIN_CONFIG_FAILED)
        for item in payload:
            self._update_instance(item, context, sender)

    def _stop(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        self._notify("warning", f"node stopping on request of {sender}", PIPELINE_OK, None, None, None, context)
        self.node.request_stop(f"STOP command from {sender}")

    def _restart(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        self._notify("warning", f"node restarting on request of {sender}", PIPELINE_OK, None, None, None, context)
        self.node.request_restart(f"RESTART command from {sender}")

    def _heartbeat(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        if self.on_heartbeat_request is not None:
            self.on_heartbeat_request()

    def _status(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        self._notify("info", "pipelines", PIPELINE_OK, None, None, None, context, PIPELINES=self.node.pipeline_names())


def _context(message: dict[str, Any]) -> dict[str, Any]:
    """Fields of the command repeated in its notifications; ``COMMAND_HASH`` (the command's ``EE_HASH``) lets the
    sender tell which of its commands a notification answers."""
    keys = ("SESSION_ID", "INITIATOR_ID", "INITIATOR_ADDR")
    context = {k: message.get(k) for k in keys if message.get(k) is not None}
    if isinstance(message.get("EE_HASH"), str):
        context["COMMAND_HASH"] = message["EE_HASH"]
    return context


ACTIONS: dict[str, Callable[[CommandProcessor, Any, dict[str, Any], str], None]] = {
    "UPDATE_CONFIG": CommandProcessor._update_config,
    "DELETE_CONFIG": CommandProcessor._delete_config,
    "ARCHIVE_CONFIG": CommandProcessor._delete_config,
    "DELETE_CONFIG_ALL": CommandProcessor._delete_all,
    "ARCHIVE_CONFIG_ALL": CommandProcessor._delete_all,
    "UPDATE_PIPELINE_INSTANCE": CommandProcessor._update_instance,
    "BATCH_UPDATE_PIPELINE_INSTANCE": CommandProcessor._batch_update,
    "STOP": CommandProcessor._stop,
    "RESTART": CommandProcessor._restart,
    "FULL_HEARTBEAT": CommandProcessor._heartbeat,
    "TIMERS_ONLY_HEARTBEAT": CommandProcessor._heartbeat,
    "SIMPLE_HEARTBEAT": CommandProcessor._heartbeat,
    "STATUS": CommandProcessor._status,
    "ACTIVE_PLUGINS": CommandProcessor._status,
}
