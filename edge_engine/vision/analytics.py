"""A business-plugin base for video analytics: detections → tracks → zone and line events, from config alone.

:class:`ZoneAnalyticsPlugin` reads each frame's detections (decision 34) from a serving plugin
(``inp.inferences[DETECTIONS_FROM or the first AI_ENGINE]``) or, with ``DETECTIONS_FROM: "MOTION"``, from a
background model of the frames themselves; keeps only ``CLASSES`` scoring ``MIN_SCORE`` or more; tracks
them (:class:`~edge_engine.vision.tracking.Tracker`, settings in ``TRACKER``); and runs the ``ZONES`` and
``LINES`` (:class:`~edge_engine.vision.zones.ZoneMonitor`). A subclass implements :meth:`on_events`, which
gets every frame's events and tracked detections, and uses :meth:`witness` for an image with zones, lines,
boxes and track ids drawn. ``OBJECT_COUNTER`` and ``ZONE_ALERT`` are built on it; so can any plugin.

numpy and OpenCV are imported when an instance starts, not when this module is imported.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from edge_engine.errors import ServingError
from edge_engine.plugin.config_keys import Key
from edge_engine.plugin.kinds import BusinessPlugin, Input
from edge_engine.vision.detections import Detection

MOTION = "MOTION"
_ZONE_COLOR = (0, 200, 255)  # BGR orange
_LINE_COLOR = (255, 0, 255)  # magenta
_PALETTE = ((60, 180, 75), (255, 130, 0), (0, 130, 255), (200, 60, 200), (0, 200, 200), (128, 128, 255))


class ZoneAnalyticsPlugin(BusinessPlugin):
    """Tracks detections and runs zones and lines; subclasses turn the events into payloads."""

    ABSTRACT = True
    CONFIG: ClassVar[dict[str, Any]] = {
        "DETECTIONS_FROM": Key(
            "", type=str, doc="serving plugin giving detections (default: the first AI_ENGINE); MOTION: moving regions"
        ),
        "CLASSES": Key([], type=list, doc="class names or ids to track; empty = every class"),
        "MIN_SCORE": Key(0.1, min=0, max=1, doc="detections scoring less are ignored"),
        "TRACKER": Key({}, type=dict, doc="tracker settings: HIGH_SCORE, LOW_SCORE, MATCH_IOU, MAX_LOST, MIN_HITS..."),
        "ZONES": Key([], type=list, doc="polygons: {NAME, POINTS, CLASSES, DWELL_SECONDS, MAX_COUNT, MARGIN, ANCHOR}"),
        "LINES": Key([], type=list, doc="polylines: {NAME, POINTS, CLASSES, MARGIN, ANCHOR}"),
        "MOTION": Key({}, type=dict, doc="DETECTIONS_FROM MOTION settings: PIXEL_THRESHOLD, MIN_BOX_AREA, ..."),
        "TIME_SOURCE": Key(
            "capture",
            type=str,
            choices=("capture", "video"),
            doc="event times: capture clock, or video time (frame_index / fps: files read faster than real time)",
        ),
        "WITNESS_WIDTH": Key(960, type=int, min=64, max=8192, doc="largest witness image width"),
        "LIVE_OVERLAY_SECONDS": Key(
            1.0, min=0, doc="status page: the annotated frame (zones, boxes, ids) every this many seconds; 0 = off"
        ),
        "CLIP_SECONDS_BEFORE": Key(0.0, min=0, max=60, doc="event clips: seconds kept before the event; 0 = no clips"),
        "CLIP_SECONDS_AFTER": Key(5.0, min=0, max=60, doc="event clips: seconds recorded after the event"),
        "CLIP_WIDTH": Key(640, type=int, min=64, max=4096, doc="event clips: largest frame width"),
    }
    ZONE_EXTRA_KEYS: ClassVar[tuple[str, ...]] = ()  # extra per-zone keys a subclass reads (Region.options)
    LINE_EXTRA_KEYS: ClassVar[tuple[str, ...]] = ()

    # --- lifecycle ------------------------------------------------------------------------------------------
    def on_init(self) -> None:
        """Build the tracker, the zones and lines (a config error raises, naming the entry and key)."""
        self._build(keep_totals=None)
        self.frames = 0
        self.last_tracked: list[Detection] = []
        self.last_frame_size = (0, 0)
        self._live_at = 0.0
        self._video_offset = 0.0
        self._video_last: tuple[float, float] | None = None
        self.clips: Any = None
        if float(self.config["CLIP_SECONDS_BEFORE"]) > 0:
            from edge_engine.vision.clips import ClipRecorder

            self.clips = ClipRecorder(
                pre_seconds=float(self.config["CLIP_SECONDS_BEFORE"]),
                post_seconds=float(self.config["CLIP_SECONDS_AFTER"]),
                max_width=int(self.config["CLIP_WIDTH"]),
            )

    def on_close(self) -> None:
        """Encode the clip being recorded and send the clips not sent yet."""
        if self.clips is not None:
            self._send_clips(self.clips.close())

    def on_config(self, changed: dict[str, Any]) -> None:
        """Rebuild what changed; totals of regions that keep their name survive."""
        if changed.keys() & {"TRACKER", "ZONES", "LINES", "MOTION", "DETECTIONS_FROM", "AI_ENGINE"}:
            self._build(keep_totals=self.monitor.totals)

    def _build(self, keep_totals: Mapping[str, Any] | None) -> None:
        """Parse and check everything first (a bad config changes nothing), then apply it. Tracks, the motion
        background and the state of regions that keep their name carry over a live update."""
        from edge_engine.vision.motion import MotionBoxes, MotionSettings
        from edge_engine.vision.tracking import Tracker, TrackerConfig
        from edge_engine.vision.zones import LINE, ZONE, ZoneMonitor, parse_regions

        tracker_config = TrackerConfig.from_mapping(self.config["TRACKER"])
        zones = parse_regions(self.config["ZONES"], ZONE, self.ZONE_EXTRA_KEYS)
        lines = parse_regions(self.config["LINES"], LINE, self.LINE_EXTRA_KEYS)
        motion_settings = None
        if self.detection_source() == MOTION:
            known = {f.upper(): f for f in MotionSettings.__dataclass_fields__}
            unknown = sorted(set(map(str.upper, self.config["MOTION"])) - set(known))
            if unknown:
                raise ValueError(f"MOTION: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            motion_settings = MotionSettings(**{known[k.upper()]: v for k, v in self.config["MOTION"].items()})
        elif not self.detection_source():
            raise ValueError("set AI_ENGINE (a detector serving plugin) or DETECTIONS_FROM: MOTION")
        old_tracker, old_monitor, old_motion = (getattr(self, name, None) for name in ("tracker", "monitor", "motion"))
        tracker = old_tracker if old_tracker is not None else Tracker(tracker_config)
        tracker.config = tracker_config  # ids go on: an old id never names a new object
        motion = None
        if motion_settings is not None:
            same = old_motion is not None and old_motion.settings == motion_settings
            motion = old_motion if same else MotionBoxes(motion_settings)
        monitor = ZoneMonitor(zones, lines)
        if old_monitor is not None:
            monitor.adopt(old_monitor)
        if keep_totals:
            monitor.restore(keep_totals)
        self.tracker, self.monitor, self.motion = tracker, monitor, motion
        self.classes = {str(c) for c in self.config["CLASSES"]}

    def detection_source(self) -> str:
        """The serving plugin whose results are tracked, or ``MOTION``."""
        source = str(self.config["DETECTIONS_FROM"] or "").strip()
        if source:
            return MOTION if source.upper() == MOTION else source
        engines = self.config["AI_ENGINE"]
        engines = [engines] if isinstance(engines, str) else list(engines or [])
        return str(engines[0]) if engines else ""

    # --- per frame ------------------------------------------------------------------------------------------
    def process(self, inp: Input | None) -> Mapping[str, Any] | None:
        """Detections → tracks → events, then :meth:`on_events`."""
        if inp is None:
            return self.on_idle()
        detections = self.detections(inp)
        if detections is None:
            return None
        now = self.frame_time(inp)
        size = self.frame_size(inp)
        tracked = self.tracker.update(detections, now)
        gone = [t.track_id for t in self.tracker.removed]
        events = self.monitor.update(tracked, now, size, self.frame_index(inp), gone)
        self.frames += 1
        self.last_tracked, self.last_frame_size = tracked, size
        if self.clips is not None and inp.image is not None:
            self.clips.add(inp.image, now)
        self._publish_live(inp, tracked)
        result = self.on_events(inp, events, tracked, now)
        if self.clips is not None:
            self._send_clips(self.clips.finished())
        return result

    def _publish_live(self, inp: Input, tracked: list[Detection]) -> None:
        """The annotated frame as the instance's live view on the status page, every LIVE_OVERLAY_SECONDS."""
        period = float(self.config["LIVE_OVERLAY_SECONDS"])
        clock = time.monotonic()
        if period <= 0 or inp.image is None or clock - self._live_at < period:
            return
        self._live_at = clock
        self.publish_live(self.witness(inp, tracked))

    # --- event clips ----------------------------------------------------------------------------------------
    def start_clip(self, now: float, **tags: Any) -> str | None:
        """Record a clip around ``now`` (``CLIP_SECONDS_BEFORE`` / ``AFTER``); returns its ``CLIP_ID`` for the
        event's payload, or None when clips are off. A clip already being recorded is extended instead, and
        its id is returned. When the MP4 is ready a payload ``EVENT: "CLIP"`` carries ``CLIP_ID`` and
        ``CLIP_URL`` (the object URL, or the file's path in the local cache)."""
        if self.clips is None:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"clip_{self.context.instance_id or self.SIGNATURE}_{stamp}_{self.frames}.mp4"
        self.clips.trigger(name, now, **tags)
        return self.clips.recording or name

    def _send_clips(self, clips: list[Any]) -> None:
        for clip in clips:
            payload: dict[str, Any] = {"EVENT": "CLIP", "CLIP_ID": clip.name, **clip.tags}
            if clip.error or not clip.data:
                payload["CLIP_ERROR"] = clip.error or "empty clip"
            else:
                payload.update(
                    CLIP_URL=self.save_file(clip.name, clip.data),
                    CLIP_SECONDS=clip.seconds,
                    CLIP_FRAMES=clip.frames,
                    CLIP_BYTES=len(clip.data),
                    CLIP_START=round(clip.start, 3),
                    CLIP_FRAMES_SKIPPED=clip.skipped,
                )
            self.emit(payload)

    def on_events(
        self, inp: Input, events: list[dict[str, Any]], tracked: list[Detection], now: float
    ) -> Mapping[str, Any] | None:
        """Called for every frame with its events (maybe none) and its tracked detections."""
        return None

    def on_idle(self) -> Mapping[str, Any] | None:
        """Called with no input (``ALLOW_EMPTY_INPUTS``)."""
        return None

    def detections(self, inp: Input) -> list[dict[str, Any]] | None:
        """This frame's detections, filtered by ``CLASSES`` and ``MIN_SCORE``; None when the frame has none to give.

        A model that could not answer raises its ``ServingError`` (counted as the instance's error)."""
        source = self.detection_source()
        if source == MOTION:
            if inp.image is None or self.motion is None:
                return None
            found: Any = self.motion.boxes(inp.image)
        else:
            found = inp.inferences.get(source)
            if isinstance(found, ServingError):
                raise found
            if found is None:
                return None
            if not isinstance(found, (list, tuple)):
                raise TypeError(
                    f"{source} gave a {type(found).__name__}, not a list of detections (decision 34: box, score, "
                    "class_id, class_name); use a detector serving plugin"
                )
        for index, detection in enumerate(found):
            if not _valid_detection(detection):
                raise ValueError(
                    f"{source} gave a malformed detection #{index} ({str(detection)[:120]}): each needs 'box' "
                    "[x1, y1, x2, y2] (finite numbers, x1 <= x2, y1 <= y2) and a numeric 'score' (decision 34)"
                )
        minimum = float(self.config["MIN_SCORE"])
        return [
            d
            for d in found
            if float(d.get("score", 1.0)) >= minimum
            and (not self.classes or str(d.get("class_name")) in self.classes or str(d.get("class_id")) in self.classes)
        ]

    def frame_time(self, inp: Input) -> float:
        """Seconds of this frame: capture time, or video time with ``TIME_SOURCE: video`` (``frame_index / fps``,
        kept increasing when a looping file starts again: each loop continues one frame after the last)."""
        if self.config["TIME_SOURCE"] == "video":
            fps = float(inp.metadata.get("fps") or 0)
            index = inp.metadata.get("frame_index")
            if fps > 0 and index is not None:
                raw = float(index) / fps
                last = self._video_last
                if last is not None and raw + self._video_offset <= last[1]:
                    self._video_offset = last[1] + 1 / fps - raw  # the file started again
                self._video_last = (raw, raw + self._video_offset)
                return raw + self._video_offset
        return float(inp.timestamp or time.time())

    @staticmethod
    def frame_index(inp: Input) -> int:
        index = inp.metadata.get("frame_index")
        return int(index) if index is not None else int(inp.seq)

    @staticmethod
    def frame_size(inp: Input) -> tuple[int, int]:
        if inp.image is not None:
            return int(inp.image.shape[1]), int(inp.image.shape[0])
        width, height = inp.metadata.get("width"), inp.metadata.get("height")
        return (int(width), int(height)) if width and height else (1, 1)

    # --- drawing --------------------------------------------------------------------------------------------
    def witness(self, inp: Input, tracked: list[Detection] | None = None, highlight: Any = ()) -> Any:
        """The frame (at most ``WITNESS_WIDTH`` wide) with zones, lines, boxes and track ids drawn; None without
        an image. Tracks whose id is in ``highlight`` are drawn thicker, in red."""
        if inp.image is None:
            return None
        return draw_overlay(
            inp.image,
            self.monitor,
            self.last_tracked if tracked is None else tracked,
            int(self.config["WITNESS_WIDTH"]),
            set(highlight),
        )


def _valid_detection(detection: Any) -> bool:
    """A mapping with a finite xyxy ``box`` and a numeric ``score`` (when given)."""
    if not isinstance(detection, Mapping):
        return False
    box = detection.get("box")
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return False
    if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in box):
        return False
    score = detection.get("score", 1.0)
    return box[0] <= box[2] and box[1] <= box[3] and isinstance(score, numbers.Real) and math.isfinite(score)


def draw_overlay(image: Any, monitor: Any, tracked: Sequence[Detection], max_width: int, highlight: set[int]) -> Any:
    """A copy of ``image`` scaled to ≤ ``max_width`` with the monitor's zones and lines and the tracks drawn."""
    import cv2
    import numpy as np

    height, width = image.shape[:2]
    scale = min(1.0, max_width / width)
    canvas = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image.copy()
    if canvas.ndim == 2:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    thick = max(1, round(canvas.shape[1] / 480))
    font = 0.4 * max(1.0, canvas.shape[1] / 640)
    for zone in monitor.zones:
        pts = (monitor.region_pixels(zone, width, height) * scale).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], True, _ZONE_COLOR, thick, cv2.LINE_AA)
        _label(canvas, zone.name, pts[0, 0], _ZONE_COLOR, font)
    for line in monitor.lines:
        pts = (monitor.region_pixels(line, width, height) * scale).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], False, _LINE_COLOR, thick + 1, cv2.LINE_AA)
        _label(canvas, line.name, pts[0, 0], _LINE_COLOR, font)
    for det in tracked:
        track_id = int(det.get("track_id", 0))
        color = (0, 0, 255) if track_id in highlight else _PALETTE[track_id % len(_PALETTE)]
        x1, y1, x2, y2 = (round(v * scale) for v in det["box"])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thick + (2 if track_id in highlight else 0))
        text = f"#{track_id} {det.get('class_name', '')}".strip()
        _label(canvas, text, (x1, y1), color, font)
    return canvas


def _label(canvas: Any, text: str, origin: Any, color: tuple[int, int, int], font: float) -> None:
    import cv2

    x, y = int(origin[0]), max(12, int(origin[1]) - 4)
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font, color, 1, cv2.LINE_AA)
