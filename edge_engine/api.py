"""The public plugin API: everything a plugin author imports, and nothing else.

    from edge_engine.api import BusinessPlugin, CapturePlugin, Input, Key, hookimpl

Plugins in ``extensions/`` and ``plugins/`` import only this module (and third-party libraries).
"""

from edge_engine.errors import EndOfStream, ServingError
from edge_engine.messages import Notification, Payload
from edge_engine.plugin.config_keys import Key
from edge_engine.plugin.hookspecs import hookimpl
from edge_engine.plugin.kinds import (
    BusinessPlugin,
    CapturePlugin,
    Input,
    PluginBase,
    PluginContext,
    ServingPlugin,
)
from edge_engine.serving.cascade import crop_box, crop_detection, crop_quad, crop_text_line
from edge_engine.serving.onnx_info import OnnxIO, TensorInfo, read_onnx_io
from edge_engine.serving.onnx_plugin import OnnxServingPlugin
from edge_engine.vision.analytics import ZoneAnalyticsPlugin
from edge_engine.vision.boxes import Letterbox, box_iou, letterbox, non_max_suppression
from edge_engine.vision.detections import Detection, make_detection
from edge_engine.vision.draw import class_color, draw_detections

# numpy-based vision tools load on first use, so importing the API (every plugin module does) stays cheap.
_LAZY = {
    "Clip": "edge_engine.vision.clips",
    "ClipRecorder": "edge_engine.vision.clips",
    "MotionBoxes": "edge_engine.vision.motion",
    "MotionSettings": "edge_engine.vision.motion",
    "Region": "edge_engine.vision.zones",
    "Track": "edge_engine.vision.tracking",
    "Tracker": "edge_engine.vision.tracking",
    "TrackerConfig": "edge_engine.vision.tracking",
    "ZoneMonitor": "edge_engine.vision.zones",
    "draw_overlay": "edge_engine.vision.analytics",
    "parse_regions": "edge_engine.vision.zones",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BusinessPlugin",
    "CapturePlugin",
    "Detection",
    "EndOfStream",
    "Input",
    "Key",
    "Letterbox",
    "Notification",
    "OnnxIO",
    "OnnxServingPlugin",
    "Payload",
    "PluginBase",
    "PluginContext",
    "ServingError",
    "ServingPlugin",
    "TensorInfo",
    "box_iou",
    "class_color",
    "crop_box",
    "crop_detection",
    "crop_quad",
    "crop_text_line",
    "draw_detections",
    "hookimpl",
    "letterbox",
    "make_detection",
    "non_max_suppression",
    "read_onnx_io",
    "ZoneAnalyticsPlugin",
    *_LAZY,
]
