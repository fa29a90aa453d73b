"""Commands from owners: checked (size, JSON, signature, allowlist, time window, replay), decrypted,
validated against each action's contract, and applied through the node's engine API.

Every rejection is reported with a reason in a notification and a log line (each at most 10 per second per
sender; the rest are counted, and a summary line gives the count of unlogged ones), and counted by its kind
(``not_allowed``, ``bad_signature``, ...: the reason without the values it quotes). Nothing from an unauthorised
sender changes state. Actions and notification codes
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

from edge_engine.comms.replay import ReplayGuard
from edge_engine.errors import ConfigError, PipelineError
from edge_engine.local.allowlist import Allowlist

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
MAX_ANSWERS = 32  # most failure answers (per pipeline / instance named in a refused command) sent for one command
# an encrypted command from a sender that is not allowed is opened only to answer it where the SDK waits: if small
# (8 KB inflate to 8 MB at most) and at most this often for all such senders together
PEEK_MAX_BYTES = 8 * 1024
PEEKS_PER_SECOND = 2
MAX_REASON_CHARS = 500  # a rejection reason longer than this is cut (it may quote a huge field)
MAX_NAME_CHARS = 128  # longer pipeline/signature/instance names are not echoed whole in answers
MAX_REASON_KEYS = 100  # distinct keys of CommandStats.reasons; further ones count as "other"
UNVERIFIED = "unverified"  # rate-limit bucket of messages whose signature did not verify (or was not reached)
COMMAND_RESULT_TIMEOUT = 5.0
LOG_WINDOW_SECONDS = 1.0

# kinds of rejection: the keys of CommandStats.reasons (the reason text quotes senders, sizes and seconds)
TOO_LARGE = "too_large"
MALFORMED = "malformed"  # not JSON, not an object, no ACTION, encryption fields missing
BAD_SIGNATURE = "bad_signature"
DECRYPT_FAILED = "decrypt_failed"
NOT_ALLOWED = "not_allowed"
BAD_TIME = "bad_time"
OUTSIDE_WINDOW = "outside_time_window"
REPLAYED = "replayed"
UNKNOWN_ACTION = "unknown_action"
BAD_PAYLOAD = "bad_payload"  # the PAYLOAD does not have the action's shape
CONFIG_REFUSED = "config_refused"  # a pipeline or instance config failed validation
PIPELINE_ERROR = "pipeline_error"  # no such pipeline or instance, the admin pipeline, an unknown pipeline command
INSTANCE_COMMAND_FAILED = "instance_command_failed"
INTERNAL_ERROR = "internal_error"


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
    def keep_alive(self, pipeline: str) -> bool: ...
    def notify(self, level: str, message: str, path: list[Any], **fields: Any) -> None: ...


class Rejected(Exception):
    """A command that must not be applied; ``reason`` goes to the sender."""

    def __init__(
        self,
        reason: str,
        code: int = COMM_RECEIVED_BAD_COMMAND,
        notified: bool = False,
        path: tuple[str | None, str | None, str | None] = (None, None, None),
        command: tuple[str, Any] | None = None,
        kind: str = BAD_PAYLOAD,
    ):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # what CommandStats.reasons counts: one of the kinds above, never a sent value
        self.code = code
        self.notified = notified  # the sender was already told (with more detail): count it, do not repeat it
        self.path = path  # (pipeline, signature, instance) the refusal is about, as the SDK matches it
        self.command = command  # (ACTION, PAYLOAD) when known only to answer the refusal (see CommandProcessor._peek)


@dataclass
class CommandStats:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    rejections_not_notified: int = 0
    answers_not_sent: int = 0  # failure answers held back by the rate limit
    rejections_not_logged: int = 0  # log lines held back by the rate limit (each window ends with a summary)
    reasons: dict[str, int] = field(default_factory=dict)  # rejections by kind


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


class RejectionLog:
    """The WARNING lines of rejected commands: at most ``rate`` per second per sender, like the notifications;
    when a sender's window ends with lines held back, one summary line gives their count by kind (written by a
    timer, so it comes even if no other command follows)."""

    def __init__(self, rate: int = REJECTIONS_PER_SECOND, window: float = LOG_WINDOW_SECONDS):
        self.rate = rate
        self.window = window
        self._windows: dict[str, tuple[float, int, dict[str, int]]] = {}  # bucket -> (start, lines, held by kind)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.not_logged = 0

    def log(self, bucket: str, who: str, kind: str, reason: str) -> None:
        """Log one rejection unless ``bucket`` (the verified sender, or all unverified ones) used its lines."""
        now = time.monotonic()
        self.flush(now)
        with self._lock:
            start, lines, held = self._windows.get(bucket, (now, 0, {}))
            if lines < self.rate:
                self._windows[bucket] = (start, lines + 1, held)
            else:
                held[kind] = held.get(kind, 0) + 1
                self.not_logged += 1
                self._windows[bucket] = (start, lines, held)
                self._schedule(start + self.window - now)
                return
        log.warning("command from %s rejected: %s", who, reason)

    def _schedule(self, delay: float) -> None:
        if self._timer is None or not self._timer.is_alive():
            self._timer = threading.Timer(max(delay, 0.0) + 0.05, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def flush(self, now: float | None = None) -> None:
        """End the windows older than ``window``: a summary line for each that held lines back."""
        now = time.monotonic() if now is None else now
        summaries = []
        with self._lock:
            for bucket, (start, _lines, held) in list(self._windows.items()):
                if now - start < self.window:
                    if held and threading.current_thread() is self._timer:  # this timer ends: start the next
                        self._timer = None
                        self._schedule(start + self.window - now)
                    continue
                del self._windows[bucket]
                if held:
                    summaries.append((bucket, sum(held.values()), now - start, held))
            if len(self._windows) > 10_000:  # bounded whatever the number of senders
                self._windows.clear()
        for bucket, count, seconds, held in summaries:
            kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(held.items()))
            log.warning(
                "commands from %s: %d more rejection(s) not logged in %.1f s (%s)", bucket, count, seconds, kinds
            )


def parse_command_time(text: Any) -> float:
    """The SDK's ``TIME`` (sender's naive local time) as epoch seconds."""
    if not isinstance(text, str):
        raise Rejected(f"missing or invalid TIME (got {text!r})", kind=BAD_TIME)
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    raise Rejected(f"invalid TIME {text!r}: expected 'YYYY-MM-DD HH:MM:SS.ffffff'", kind=BAD_TIME)


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
        self._answered: set[tuple[Any, ...]] = set()  # (pipeline, signature, instance, |code|) answered this command
        self.limiter = RejectionLimiter()
        self.rejection_log = RejectionLog()
        self._peeks = RejectionLimiter(PEEKS_PER_SECOND)
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
        command: tuple[str, Any] | None = None
        self._answered = set()
        try:
            message = self._parse(raw)
            claimed = _short(str(message.get("EE_SENDER") or "unknown"), 60)
            context = _context(message)
            result = self.verify(message)
            if not result.ok:
                raise Rejected(f"signature rejected: {result.reason}", kind=BAD_SIGNATURE)
            sender = result.sender
            context.setdefault("INITIATOR_ADDR", sender)  # the SDK sends INITIATOR_ID only; the signer initiated it
            command = action, payload = self._open(message, sender)
            self._authorise(message, sender, action)
            with self._lock:
                self._apply(action, payload, context, sender)
        except Rejected as exc:
            self._reject(sender, exc, context, claimed, command or exc.command)
            return False, exc.reason
        except Exception as exc:  # a bug met by an odd message: refuse it (counted), keep the command thread going
            log.error("command from %s: internal error", claimed, exc_info=True)
            self._reject(
                sender, Rejected(f"internal error: {type(exc).__name__}", kind=INTERNAL_ERROR), context, claimed
            )
            return False, "internal error"
        self.stats.accepted += 1
        return True, action

    def _parse(self, raw: bytes) -> dict[str, Any]:
        if len(raw) > self.max_bytes:
            raise Rejected(f"message too large ({len(raw)} bytes > {self.max_bytes})", kind=TOO_LARGE)
        try:
            message = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
            raise Rejected(f"malformed JSON: {exc}", kind=MALFORMED) from exc
        except RecursionError as exc:
            raise Rejected("malformed JSON: nested too deeply", kind=MALFORMED) from exc
        if not isinstance(message, dict):
            raise Rejected(f"a command must be a JSON object (got {type(message).__name__})", kind=MALFORMED)
        return message

    def _open(self, message: dict[str, Any], sender: str) -> tuple[str, Any]:
        """ACTION and PAYLOAD of a message signed by ``sender``, decrypted when encrypted."""
        if message.get("EE_IS_ENCRYPTED"):
            if self.secured and not self.allowlist.allowed(sender):
                # decrypting (and inflating up to 64 MB) costs CPU and memory: only for allowed senders
                raise Rejected(
                    f"sender {sender} is not in authorized_addrs", command=self._peek(message, sender), kind=NOT_ALLOWED
                )
            data = message.get("EE_ENCRYPTED_DATA")
            if not isinstance(data, str):
                raise Rejected("EE_IS_ENCRYPTED without EE_ENCRYPTED_DATA", kind=MALFORMED)
            try:
                inner = json.loads(self.decrypt(data, self.identity, sender))
            except Exception as exc:
                raise Rejected(f"cannot decrypt the command: {type(exc).__name__}: {exc}", kind=DECRYPT_FAILED) from exc
            if not isinstance(inner, dict):
                raise Rejected("the decrypted command is not a JSON object", kind=MALFORMED)
            action, payload = inner.get("ACTION"), inner.get("PAYLOAD")
        else:
            action, payload = message.get("ACTION"), message.get("PAYLOAD")
        if not isinstance(action, str) or not action:
            raise Rejected(f"missing or invalid ACTION (got {action!r})", kind=MALFORMED)
        return action.upper(), payload

    def _peek(self, message: dict[str, Any], sender: str) -> tuple[str, Any] | None:
        """ACTION and PAYLOAD of an encrypted command from a sender that is not allowed, only to name in the refusal
        the pipeline and instances its SDK waits on (an SDK encrypts by default): small ones, rarely, else None."""
        data = message.get("EE_ENCRYPTED_DATA")
        if not isinstance(data, str) or len(data) > PEEK_MAX_BYTES or not self._peeks.allow("peek"):
            return None
        try:
            inner = json.loads(self.decrypt(data, self.identity, sender))
        except Exception:
            return None
        action = inner.get("ACTION") if isinstance(inner, dict) else None
        return (action.upper(), inner.get("PAYLOAD")) if isinstance(action, str) and action else None

    def _authorise(self, message: dict[str, Any], sender: str, action: str) -> None:
        """Allowlist, time window and replay checks (the public heartbeat actions skip them)."""
        if action in PUBLIC_ACTIONS:
            return
        if self.secured and not self.allowlist.allowed(sender):
            raise Rejected(f"sender {sender} is not in authorized_addrs", kind=NOT_ALLOWED)
        sent_at = parse_command_time(message.get("TIME"))
        skew = time.time() - sent_at
        if abs(skew) > self.window:
            raise Rejected(
                f"TIME outside the accepted window (off by {skew:+.0f} s, window ±{self.window:.0f} s)",
                kind=OUTSIDE_WINDOW,
            )
        digest = message.get("EE_HASH")
        if not isinstance(digest, str) or not self.replay.check_and_remember(digest):
            raise Rejected("replayed command (this EE_HASH was already accepted)", kind=REPLAYED)

    def _reject(
        self,
        sender: str,
        exc: Rejected,
        context: dict[str, Any],
        claimed: str = "unknown",
        command: tuple[str, Any] | None = None,
    ) -> None:
        """Count and log a refusal, tell the sender why (rate-limited), then send the failure answers the SDK
        waits for (see :func:`expected_failures`), so its transactions fail at once with the reason."""
        self.stats.rejected += 1
        exc.reason = _short(exc.reason)  # reasons quote what was sent: an attacker must not size our logs
        pipeline, signature, instance = (_short(p, MAX_NAME_CHARS) if isinstance(p, str) else p for p in exc.path)
        exc.path = (pipeline, signature, instance)
        key = exc.kind if exc.kind in self.stats.reasons or len(self.stats.reasons) < MAX_REASON_KEYS else "other"
        self.stats.reasons[key] = self.stats.reasons.get(key, 0) + 1
        who = sender if sender != UNVERIFIED else f"{claimed} (unverified)"
        self.rejection_log.log(sender, who, exc.kind, exc.reason)
        self.stats.rejections_not_logged = self.rejection_log.not_logged
        if not exc.notified:
            if not self.limiter.allow(sender):
                self.stats.rejections_not_notified += 1
                return
            self._notify(
                "error",
                f"command rejected: {exc.reason}",
                exc.code,
                *exc.path,
                context,
                REASON=exc.reason,
                KIND=exc.kind,
            )
        if command is None or sender == UNVERIFIED:
            return
        action, payload = command
        for code, pipeline, signature, instance in expected_failures(action, payload):
            if (pipeline, signature, instance, abs(code)) in self._answered:
                continue
            if not self.limiter.allow(sender):
                self.stats.answers_not_sent += 1
                return
            self._notify(
                "error",
                f"{action} refused: {exc.reason}",
                code,
                pipeline,
                signature,
                instance,
                context,
                REASON=exc.reason,
            )

    def _notify(
        self,
        level: str,
        text: str,
        code: int,
        pipeline: str | None,
        signature: str | None,
        instance: str | None,
        context: dict[str, Any],
        **info: Any,
    ) -> None:
        fields = {"NOTIFICATION_CODE": code, "NOTIFICATION_TYPE": "NORMAL" if code > 0 else "EXCEPTION", **context}
        if info:
            fields["INFO"] = info
        self._answered.add((pipeline, signature, instance, abs(code)))
        self.node.notify(level, text, [self.node.alias, pipeline, signature, instance], **fields)

    def _pipeline_ok(self, name: str, context: dict[str, Any], text: str) -> None:
        """PIPELINE_OK for ``name``, once per command: the SDK waits for it after any change in the pipeline."""
        if (name, None, None, PIPELINE_OK) not in self._answered:
            self._notify("info", text, PIPELINE_OK, name, None, None, context)

    # --- actions -------------------------------------------------------------------------------------------
    def _apply(self, action: str, payload: Any, context: dict[str, Any], sender: str) -> None:
        """Run the action's handler, then tell plugins (``edge_command_received``; their results are ignored). An
        ACTION the node does not know is offered to plugins and refused only when none of them handles it."""
        handler = ACTIONS.get(action)
        if handler is None:
            result = self._command_hook(action, payload, sender)
            if result is None:
                raise Rejected(f"unknown ACTION {action!r}; known: {', '.join(sorted(ACTIONS))}", kind=UNKNOWN_ACTION)
            try:
                json.dumps(result)
            except (TypeError, ValueError, RecursionError):
                raise Rejected(f"the plugin that handled {action!r} returned a result that is not JSON") from None
            log.info("command %s from %s handled by a plugin", action, sender)
            self._notify(
                "info", f"command {action} handled by a plugin", PIPELINE_OK, None, None, None, context, RESULT=result
            )
            return
        log.info("command %s from %s", action, sender)
        handler(self, payload, context, sender)
        self._command_hook(action, payload, sender)

    def _command_hook(self, action: str, payload: Any, sender: str) -> Any:
        """Fire ``edge_command_received`` (a hook implementation that raises is logged, never stops the command)."""
        hooks = getattr(self.node, "hooks", None)
        return None if hooks is None else hooks.command_received(action, payload, sender)

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
            lines = [_short(str(i)) for i in exc.issues[:MAX_ANSWERS]]
            if self.limiter.allow(sender):  # DECISIONS 19: refusals are rate-limited per sender, this one too
                self._notify(
                    "error",
                    _short(f"pipeline {name!r} refused: " + "; ".join(lines)),
                    PIPELINE_FAILED,
                    name if _text(name) else None,
                    None,
                    None,
                    context,
                    ERRORS=lines,
                )
            else:
                self.stats.rejections_not_notified += 1
            raise Rejected("; ".join(lines), PIPELINE_FAILED, notified=True, kind=CONFIG_REFUSED) from exc
        self._notify("info", f"pipeline {spec.name!r} applied", PIPELINE_OK, spec.name, None, None, context)
        for inst in spec.instances:
            self._notify(
                "info",
                f"instance {inst.signature}/{inst.instance_id} configured",
                PLUGIN_CONFIG_OK,
                spec.name,
                inst.signature,
                inst.instance_id,
                context,
            )

    def _delete_config(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        if not isinstance(payload, str) or not payload:
            raise Rejected(
                f"DELETE_CONFIG needs the pipeline NAME as PAYLOAD (got {payload!r})", PIPELINE_ARCHIVE_FAILED
            )
        if payload.lower() == "admin_pipeline":
            raise Rejected(
                "the admin pipeline cannot be deleted",
                PIPELINE_ARCHIVE_FAILED,
                path=(payload, None, None),
                kind=PIPELINE_ERROR,
            )
        if not self.node.remove_pipeline(payload):
            raise Rejected(
                f"no pipeline named {payload!r}",
                PIPELINE_ARCHIVE_FAILED,
                path=(payload, None, None),
                kind=PIPELINE_ERROR,
            )
        self._notify("info", f"pipeline {payload!r} deleted", PIPELINE_ARCHIVE_OK, payload, None, None, context)

    def _delete_all(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        for name in self.node.pipeline_names():
            if name != "admin_pipeline":
                self._delete_config(name, context, sender)

    def _update_instance(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        if not isinstance(payload, dict):
            raise Rejected(
                "UPDATE_PIPELINE_INSTANCE needs {NAME, SIGNATURE, INSTANCE_ID, INSTANCE_CONFIG}", PLUGIN_CONFIG_FAILED
            )
        missing = [k for k in ("NAME", "SIGNATURE", "INSTANCE_ID", "INSTANCE_CONFIG") if k not in payload]
        if missing:
            raise Rejected(f"UPDATE_PIPELINE_INSTANCE is missing {', '.join(missing)}", PLUGIN_CONFIG_FAILED)
        name, signature, instance = payload["NAME"], payload["SIGNATURE"], payload["INSTANCE_ID"]
        changes = payload["INSTANCE_CONFIG"]
        if not all(isinstance(v, str) for v in (name, signature, instance)) or not isinstance(changes, dict):
            raise Rejected(
                "NAME, SIGNATURE and INSTANCE_ID must be strings and INSTANCE_CONFIG an object", PLUGIN_CONFIG_FAILED
            )
        command = changes.get("INSTANCE_COMMAND")
        config = {k: v for k, v in changes.items() if k != "INSTANCE_COMMAND"}
        if not config and not command:  # else accepted with no answer at all: the SDK would wait out its timeout
            raise Rejected(
                "INSTANCE_CONFIG has no change and no INSTANCE_COMMAND",
                PLUGIN_CONFIG_FAILED,
                path=(name, signature, instance),
            )
        try:
            if config:
                self.node.update_instance(name, signature, instance, config)
        except (ConfigError, PipelineError) as exc:
            text = "; ".join(str(i) for i in exc.issues) if isinstance(exc, ConfigError) else str(exc)
            kind = CONFIG_REFUSED if isinstance(exc, ConfigError) else PIPELINE_ERROR
            raise Rejected(text, PLUGIN_CONFIG_FAILED, path=(name, signature, instance), kind=kind) from exc
        if config:
            self._notify(
                "info",
                f"instance {signature}/{instance} updated",
                PLUGIN_CONFIG_OK,
                name,
                signature,
                instance,
                context,
                KEYS=sorted(config),
            )
            self._pipeline_ok(name, context, f"pipeline {name!r} updated")
        if command:
            self._instance_command(name, signature, instance, command, context)
            self._pipeline_ok(name, context, f"pipeline {name!r} ran an instance command")

    def _instance_command(
        self, name: str, signature: str, instance: str, command: Any, context: dict[str, Any]
    ) -> None:
        params: dict[str, Any] = {}
        if isinstance(command, dict) and isinstance(command.get("COMMAND_PARAMS"), dict):
            params = dict(command["COMMAND_PARAMS"])
            command = {k: v for k, v in command.items() if k != "COMMAND_PARAMS"}
            flagged = [k for k, v in params.items() if v is True]
            if not command and flagged:
                # SDK: send_instance_command("RESET", command_params=P) as {"COMMAND_PARAMS": {**P, "RESET": true}}
                command = flagged[-1]
                params.pop(command)
        try:
            future = self.node.instance_command(name, signature, instance, command, **params)
            result = future.result(COMMAND_RESULT_TIMEOUT)
        except PipelineError as exc:
            raise Rejected(
                str(exc), PLUGIN_INSTANCE_COMMAND_FAILED, path=(name, signature, instance), kind=PIPELINE_ERROR
            ) from exc
        except Exception as exc:
            raise Rejected(
                f"instance command failed: {type(exc).__name__}: {exc}",
                PLUGIN_INSTANCE_COMMAND_FAILED,
                path=(name, signature, instance),
                kind=INSTANCE_COMMAND_FAILED,
            ) from exc
        self._notify(
            "info",
            f"instance {signature}/{instance} ran the command",
            PLUGIN_INSTANCE_COMMAND_OK,
            name,
            signature,
            instance,
            context,
            RESULT=result,
        )

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

    def _reload(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        """Ratio1's ``RELOAD_CONFIG_FROM_DISK``: every pipeline restarts from its file in the cache."""
        self._notify(
            "info", f"pipelines reloading from the cache on request of {sender}", PIPELINE_OK, None, None, None, context
        )
        self.node.request_restart(f"RELOAD_CONFIG_FROM_DISK command from {sender}")

    def _heartbeat(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        if self.on_heartbeat_request is not None:
            self.on_heartbeat_request()

    def _pipeline_command(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        """Ratio1's ``PIPELINE_COMMAND`` (``{"NAME", "PIPELINE_COMMAND"}``); this node knows ``KEEP_ALIVE`` (given as
        ``"KEEP_ALIVE"`` or ``{"KEEP_ALIVE": true}``). A keep-alive is not answered (it comes often); a refused one
        is."""
        if not isinstance(payload, dict) or not isinstance(payload.get("NAME"), str):
            raise Rejected("PIPELINE_COMMAND needs {NAME, PIPELINE_COMMAND}", PIPELINE_FAILED)
        name, command = payload["NAME"], payload.get("PIPELINE_COMMAND")
        keep_alive = (isinstance(command, str) and command.upper() == "KEEP_ALIVE") or (
            isinstance(command, dict) and bool(command.get("KEEP_ALIVE"))
        )
        if not keep_alive:
            raise Rejected(
                f"unknown PIPELINE_COMMAND {command!r}; known: KEEP_ALIVE", PIPELINE_FAILED, kind=PIPELINE_ERROR
            )
        try:
            self.node.keep_alive(name)
        except PipelineError as exc:
            raise Rejected(str(exc), PIPELINE_FAILED, kind=PIPELINE_ERROR) from exc

    def _status(self, payload: Any, context: dict[str, Any], sender: str) -> None:
        self._notify("info", "pipelines", PIPELINE_OK, None, None, None, context, PIPELINES=self.node.pipeline_names())


def expected_failures(action: str, payload: Any) -> list[tuple[int, str, str | None, str | None]]:
    """The failure answers (code, pipeline, signature, instance) that Ratio1's SDK waits for after ``action``.

    The SDK's ``deploy``/``close`` wait for PIPELINE_OK (1) on ``[alias, pipeline]``, PLUGIN_CONFIG_OK (100) or
    PLUGIN_INSTANCE_COMMAND_OK (101) on ``[alias, pipeline, SIGNATURE, INSTANCE_ID]`` per changed instance, and
    PIPELINE_ARCHIVE_OK (4) for a close; the negative code on the same path makes it fail with the reason.
    A refused command is answered with all of them (at most ``MAX_ANSWERS``), so the SDK never waits out its timeout.
    """
    answers: list[tuple[int, str, str | None, str | None]] = []
    if action == "UPDATE_CONFIG" and isinstance(payload, dict) and _text(payload.get("NAME")):
        name = payload["NAME"]
        answers.append((PIPELINE_FAILED, name, None, None))
        plugins = payload.get("PLUGINS")
        for plugin in plugins if isinstance(plugins, list) else []:
            instances = plugin.get("INSTANCES") if isinstance(plugin, dict) else None
            for item in instances if isinstance(instances, list) else []:
                if isinstance(item, dict) and _text(plugin.get("SIGNATURE")) and _text(item.get("INSTANCE_ID")):
                    answers.append((PLUGIN_CONFIG_FAILED, name, plugin["SIGNATURE"], item["INSTANCE_ID"]))
    elif action in ("DELETE_CONFIG", "ARCHIVE_CONFIG") and _text(payload):
        answers.append((PIPELINE_ARCHIVE_FAILED, payload, None, None))
    elif action == "PIPELINE_COMMAND" and isinstance(payload, dict) and _text(payload.get("NAME")):
        answers.append((PIPELINE_FAILED, payload["NAME"], None, None))
    elif action in ("UPDATE_PIPELINE_INSTANCE", "BATCH_UPDATE_PIPELINE_INSTANCE"):
        for item in payload if isinstance(payload, list) else [payload]:
            if not isinstance(item, dict) or not all(_text(item.get(k)) for k in ("NAME", "SIGNATURE", "INSTANCE_ID")):
                continue
            name, signature, instance = item["NAME"], item["SIGNATURE"], item["INSTANCE_ID"]
            config = item.get("INSTANCE_CONFIG")
            changes = config if isinstance(config, dict) else {}
            answers.append((PIPELINE_FAILED, name, None, None))
            if "INSTANCE_COMMAND" in changes:
                answers.append((PLUGIN_INSTANCE_COMMAND_FAILED, name, signature, instance))
            if set(changes) - {"INSTANCE_COMMAND"} or not changes:
                answers.append((PLUGIN_CONFIG_FAILED, name, signature, instance))
    return list(dict.fromkeys(answers))[:MAX_ANSWERS]


def _short(text: str, limit: int = MAX_REASON_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS


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
    "PIPELINE_COMMAND": CommandProcessor._pipeline_command,
    "RELOAD_CONFIG_FROM_DISK": CommandProcessor._reload,
}
