"""Zone alert: intrusion, dwell and crowding alerts on zones, raised and lowered in Ratio1's alert fields.

Built on the plugin API's :class:`~edge_engine.api.ZoneAnalyticsPlugin` (detections from ``AI_ENGINE`` or
``DETECTIONS_FROM: "MOTION"``, tracked, against ``ZONES``). What raises a zone's alert is set per zone:

* ``DWELL_SECONDS`` – a tracked object stays inside longer than this (``EVENT: "DWELL"``);
* ``MAX_COUNT`` – more objects than this inside at once (``EVENT: "COUNT_ABOVE"``);
* ``INTRUSION`` – any object entering (``EVENT: "ENTER"``); on by default for a zone with neither of the above.

"Alert when a car stays in this zone more than 60 s"::

    {"SIGNATURE": "ZONE_ALERT", "INSTANCES": [{"INSTANCE_ID": "no-parking", "AI_ENGINE": "YOLO",
     "STARTUP_AI_ENGINE_PARAMS": {"ONNX_MODEL": "yolov8n.onnx"}, "CLASSES": ["car"],
     "ZONES": [{"NAME": "no-parking", "POINTS": [[0.1, 0.5], [0.6, 0.5], [0.6, 0.9], [0.1, 0.9]],
                "DWELL_SECONDS": 60}]}]}

Each raising event gives a payload with the event, ``IS_ALERT: true``, ``IS_NEW_RAISE`` (true for the first
one of an alert), the zone's occupancy and a witness image (the object in red). When nothing holds the alert
any more (the objects left, the count fell back), a payload ``EVENT: "ALERT_END"`` with ``IS_ALERT: false``,
``IS_NEW_LOWER: true`` and ``LAST_ALERT_DURATION`` (seconds) lowers it.

With ``CLIP_SECONDS_BEFORE`` > 0 each raising payload also names a ``CLIP_ID``: the seconds before and
``CLIP_SECONDS_AFTER`` after it are kept as an MP4 (pre-roll from a bounded in-memory ring, encoded on a
background thread), and a payload ``EVENT: "CLIP"`` with the same ``CLIP_ID`` gives its ``CLIP_URL`` (the
object's URL with object storage, uploaded by the node's queue like witness images; else its path in the
local cache) once it is written.
"""

from __future__ import annotations

from typing import Any, ClassVar

from edge_engine.api import Input, Key, ZoneAnalyticsPlugin


class ZoneAlert(ZoneAnalyticsPlugin):
    """Intrusion, dwell and count alerts per zone; see the module docstring."""

    SIGNATURE = "ZONE_ALERT"
    VERSION = "1.0.0"
    DESCRIPTION = "tracks detections; alerts on zone intrusion, dwell longer than N s, or more than N objects inside"
    CONFIG: ClassVar[dict[str, Any]] = {
        "WITNESS": Key(True, type=bool, doc="attach a witness image (zones, tracks and ids drawn, the cause in red)"),
    }
    ZONE_EXTRA_KEYS = ("INTRUSION",)

    def on_init(self) -> None:
        super().on_init()
        self._alert_since: dict[str, float] = {}

    def on_command(self, command: Any, **params: Any) -> Any:
        """``STATUS``: zones in alert (since when) and their occupancy."""
        if str(command).strip().upper() == "STATUS":
            return {"ALERTS": dict(self._alert_since), "OCCUPANCY": self.monitor.occupancy()}
        return {"error": f"unknown command {command!r}; known: STATUS"}

    def intrusion(self, zone: Any) -> bool:
        """Whether entering the zone is an alert by itself."""
        flag = zone.options.get("INTRUSION")
        if flag is None:
            return not zone.dwell_seconds and not zone.max_count
        return bool(flag)

    def on_events(self, inp: Input, events: list[dict[str, Any]], tracked: list[dict[str, Any]], now: float) -> None:
        zones = {z.name: z for z in self.monitor.zones}
        for event in events:
            zone = zones.get(event["REGION"])
            if zone is None:
                continue
            kind = event["EVENT"]
            if kind == "DWELL" or kind == "COUNT_ABOVE" or (kind == "ENTER" and self.intrusion(zone)):
                new = zone.name not in self._alert_since
                if new:
                    self._alert_since[zone.name] = now
                self._emit_raise(inp, tracked, event, new)
        for name in list(self._alert_since):
            if name not in zones:
                del self._alert_since[name]  # the zone was removed by a config update
            elif not self._holds(zones[name]):
                self._emit_lower(inp, tracked, name, now)

    def _holds(self, zone: Any) -> bool:
        occupancy = sum(self.monitor.occupancy()[zone.name].values())
        return (
            (self.intrusion(zone) and occupancy > 0)
            or (zone.dwell_seconds > 0 and self.monitor.dwelling(zone.name) > 0)
            or (zone.max_count > 0 and self.monitor.count_alert(zone.name))
        )

    def _emit_raise(self, inp: Input, tracked: list[dict[str, Any]], event: dict[str, Any], new: bool) -> None:
        highlight = [event["TRACK_ID"]] if "TRACK_ID" in event else []
        payload = {
            **event,
            "ZONE": event["REGION"],
            "OCCUPANCY": self.monitor.occupancy()[event["REGION"]],
            **_alert_fields(is_alert=True, raised=new),
        }
        clip = self.start_clip(float(event["TIME"]), ZONE=event["REGION"], ALERT_EVENT=event["EVENT"])
        if clip:
            payload["CLIP_ID"] = clip
        self.emit(payload, image=self.witness(inp, tracked, highlight=highlight) if self.config["WITNESS"] else None)

    def _emit_lower(self, inp: Input, tracked: list[dict[str, Any]], zone: str, now: float) -> None:
        since = self._alert_since.pop(zone)
        payload = {
            "EVENT": "ALERT_END",
            "REGION": zone,
            "ZONE": zone,
            "TIME": round(now, 3),
            "FRAME_INDEX": self.frame_index(inp),
            "OCCUPANCY": self.monitor.occupancy()[zone],
            "LAST_ALERT_DURATION": round(now - since, 3),
            **_alert_fields(is_alert=False, lowered=True),
        }
        self.emit(payload, image=self.witness(inp, tracked) if self.config["WITNESS"] else None)


def _alert_fields(is_alert: bool, raised: bool = False, lowered: bool = False) -> dict[str, bool]:
    """Ratio1's alert flags of a business payload body."""
    return {
        "IS_ALERT": is_alert,
        "IS_NEW_RAISE": raised,
        "IS_NEW_LOWER": lowered,
        "IS_ALERT_NEW_RAISE": raised,
        "IS_ALERT_NEW_LOWER": lowered,
        "IS_ALERT_STATUS_CHANGED": raised or lowered,
    }
