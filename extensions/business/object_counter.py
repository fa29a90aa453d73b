"""Object counter: how many objects of each class crossed each line (both ways) and entered each zone, today.

Built on the plugin API's :class:`~edge_engine.api.ZoneAnalyticsPlugin`: detections come from a detector
serving plugin (``AI_ENGINE``, decision 34's format) or from moving regions (``DETECTIONS_FROM: "MOTION"``),
are tracked, and every ``LINES`` crossing (``IN`` / ``OUT``) and ``ZONES`` entry and exit is counted per class.
"Count people crossing this line"::

    {"SIGNATURE": "OBJECT_COUNTER", "INSTANCES": [{"INSTANCE_ID": "door", "AI_ENGINE": "YOLO",
     "STARTUP_AI_ENGINE_PARAMS": {"ONNX_MODEL": "yolov8n.onnx"}, "CLASSES": ["person"],
     "LINES": [{"NAME": "door", "POINTS": [[0.5, 0.0], [0.5, 1.0]]}]}]}

Payloads: one per crossing or entry (``EVENT_PAYLOADS``), with the event, the day's ``COUNTS`` and a
witness image (zones, lines, tracks and ids drawn, the counted track in red); and a ``TOTALS`` payload every
``REPORT_SECONDS``. Totals are kept per UTC day in the instance's output folder (``counters.json``, written
atomically at most every ``PERSIST_SECONDS`` after a change, at least every minute so that the ``_output``
size bound, which deletes the least recently written files first, never takes it, and when the instance
stops), so a restart does not reset the day; at midnight UTC a last ``TOTALS`` payload of the day
(``DAY_CLOSED: true``) is sent and counting restarts.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import time
from typing import Any, ClassVar

from edge_engine.api import Input, Key, ZoneAnalyticsPlugin

COUNTED = ("CROSS", "ENTER", "EXIT")
STATE_FILE = "counters.json"
REFRESH_SECONDS = 60.0  # rewritten at least this often: the _output bound deletes the least recently written first


class ObjectCounter(ZoneAnalyticsPlugin):
    """Line and zone counts per class, with per-event and periodic payloads; see the module docstring."""

    SIGNATURE = "OBJECT_COUNTER"
    VERSION = "1.0.0"
    DESCRIPTION = "tracks detections; counts line crossings (IN/OUT) and zone entries per class; day totals persist"
    CONFIG: ClassVar[dict[str, Any]] = {
        "REPORT_SECONDS": Key(60.0, min=0, doc="a TOTALS payload every this many seconds; 0 = never"),
        "EVENT_PAYLOADS": Key(True, type=bool, doc="a payload for each crossing and zone entry / exit"),
        "WITNESS": Key(True, type=bool, doc="attach a witness image (zones, lines, tracks and ids drawn)"),
        "PERSIST_SECONDS": Key(1.0, min=0, doc="save the day's totals at most this often (and at stop)"),
    }

    def on_init(self) -> None:
        super().on_init()
        self._day = _utc_day()
        self._dirty = False
        self._saved_at = 0.0
        self._last_report: float | None = None
        self._load()

    def on_close(self) -> None:
        if self._dirty:
            self._save()

    def on_command(self, command: Any, **params: Any) -> Any:
        """``COUNTS`` returns the day's totals; ``RESET`` zeroes them."""
        name = str(command).strip().upper()
        if name == "COUNTS":
            return {"DAY": self._day, "COUNTS": self.counts(), "OCCUPANCY": self.monitor.occupancy()}
        if name == "RESET":
            self.monitor.reset_totals()
            self._save()
            return {"reset": True}
        return {"error": f"unknown command {command!r}; known: COUNTS, RESET"}

    def on_events(self, inp: Input, events: list[dict[str, Any]], tracked: list[dict[str, Any]], now: float) -> None:
        today = _utc_day()
        if today != self._day:
            self.emit(self._totals(now, closed=True), image=None)
            self.monitor.reset_totals()
            self._day, self._dirty = today, True
        counted = [e for e in events if e["EVENT"] in COUNTED]
        if counted:
            self._dirty = True
        if self.config["EVENT_PAYLOADS"]:
            for event in counted:
                image = self.witness(inp, tracked, highlight=[event["TRACK_ID"]]) if self.config["WITNESS"] else None
                self.emit({**event, "DAY": self._day, "COUNTS": self.counts()}, image=image)
        self._report_if_due(inp, now)
        since = time.monotonic() - self._saved_at
        if (self._dirty and since >= float(self.config["PERSIST_SECONDS"])) or since >= REFRESH_SECONDS:
            self._save()

    def counts(self) -> dict[str, Any]:
        """A copy of the day's totals (a payload keeps the values of its moment)."""
        return copy.deepcopy(self.monitor.totals)

    def _report_if_due(self, inp: Input, now: float) -> None:
        period = float(self.config["REPORT_SECONDS"])
        if period <= 0:
            return
        if self._last_report is None:
            self._last_report = now
        elif now - self._last_report >= period:
            self._last_report = now
            self.emit(self._totals(now), image=self.witness(inp) if self.config["WITNESS"] else None)

    def _totals(self, now: float, closed: bool = False) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "EVENT": "TOTALS",
            "DAY": self._day,
            "COUNTS": self.counts(),
            "OCCUPANCY": self.monitor.occupancy(),
            "ACTIVE_TRACKS": len(self.tracker.tracks),
            "TIME": round(now, 3),
        }
        if closed:
            payload["DAY_CLOSED"] = True
        return payload

    # --- persistence ----------------------------------------------------------------------------------------
    def _load(self) -> None:
        path = self.context.output_dir / STATE_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self.log.warning("counters file unreadable, starting from zero: %s", exc)
            return
        if isinstance(saved, dict) and saved.get("DAY") == self._day and isinstance(saved.get("COUNTS"), dict):
            self.monitor.restore(saved["COUNTS"])

    def _save(self) -> None:
        path = self.context.output_dir / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        temp.write_text(json.dumps({"DAY": self._day, "COUNTS": self.monitor.totals}), encoding="utf-8")
        os.replace(temp, path)
        self._dirty, self._saved_at = False, time.monotonic()


def _utc_day() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()
