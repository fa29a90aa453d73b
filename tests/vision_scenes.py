"""Ground truth for tracking and zone tests: drawn scenes with known trajectories, and a colour-box ONNX detector.

No labelled video can be downloaded here, so we make it: each :class:`Scene` draws coloured rectangles moving
along known paths over a dark background (OpenCV drawing), optionally behind a static occluder, and knows for
every frame where each object is (its ground-truth box, or None when absent or hidden). The same frames can
be written to a video file for end-to-end runs.

:func:`color_box_model` builds, with the ``onnx`` package, a real detector graph: for each of K reference
colours it thresholds the image (max channel difference below a tolerance), reduces the mask over rows and
columns (``ReduceMax``) and turns the first and last occupied column and row into a box; its score is 1 when
the colour is present, else 0. So the boxes come from the pixels, one object per colour.
:func:`decode_color_boxes` turns its outputs into the common detection format (decision 34).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

WIDTH, HEIGHT, FPS = 320, 240, 10
BACKGROUND = (30, 30, 30)
OCCLUDER = (90, 90, 90)
# bright, far apart in BGR, and far from the background in gray level (so the motion detector sees them too)
COLORS = {"yellow": (0, 255, 255), "cyan": (255, 255, 0), "magenta": (255, 0, 255), "green": (0, 255, 0)}

Path2D = Callable[[int], tuple[float, float] | None]  # frame → centre, or None when the object is absent


@dataclass
class SceneObject:
    """One drawn object: a colour (its identity), a size and a path."""

    color: str
    path: Path2D
    size: tuple[int, int] = (24, 40)  # width, height (a standing person's proportions)

    def box(self, frame: int) -> list[float] | None:
        centre = self.path(frame)
        if centre is None:
            return None
        w, h = self.size
        return [centre[0] - w / 2, centre[1] - h / 2, centre[0] + w / 2, centre[1] + h / 2]


@dataclass
class Scene:
    """Objects with known paths, an optional static occluder (x1, y1, x2, y2), and a length in frames."""

    name: str
    frames: int
    objects: list[SceneObject]
    occluder: tuple[int, int, int, int] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def render(self, frame: int) -> np.ndarray:
        import cv2

        image = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
        for obj in self.objects:
            box = obj.box(frame)
            if box is not None:
                x1, y1, x2, y2 = (round(v) for v in box)
                cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), COLORS[obj.color], -1)
        if self.occluder:
            x1, y1, x2, y2 = self.occluder
            image[y1:y2, x1:x2] = OCCLUDER
        return image

    def truth(self, frame: int) -> dict[int, list[float]]:
        """Ground-truth boxes of the visible objects (id = index in ``objects`` + 1), clipped to the frame."""
        result = {}
        for index, obj in enumerate(self.objects, start=1):
            box = obj.box(frame)
            if box is None:
                continue
            box = [max(0.0, box[0]), max(0.0, box[1]), min(float(WIDTH), box[2]), min(float(HEIGHT), box[3])]
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            if self.occluder and _covered(box, self.occluder):
                continue
            drawn_over = [o.box(frame) for o in self.objects[index:]]  # later objects are drawn on top
            if any(other is not None and _covered(box, other) for other in drawn_over):
                continue
            result[index] = box
        return result

    def write_video(self, path: Path) -> Path:
        """Write the scene as an MJPG AVI at :data:`FPS` (decodable by every OpenCV build)."""
        import cv2

        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
        try:
            for frame in range(self.frames):
                writer.write(self.render(frame))
        finally:
            writer.release()
        return path


def _covered(box: Sequence[float], occluder: Sequence[float]) -> bool:
    """More than half of the box hidden by the occluder."""
    x1, y1 = max(box[0], occluder[0]), max(box[1], occluder[1])
    x2, y2 = min(box[2], occluder[2]), min(box[3], occluder[3])
    hidden = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return hidden > 0.5 * (box[2] - box[0]) * (box[3] - box[1])


def linear(start: tuple[float, float], velocity: tuple[float, float], first: int = 0, last: int = 10**9) -> Path2D:
    """A path from ``start`` at frame ``first``, moving ``velocity`` pixels per frame, until frame ``last``."""

    def path(frame: int) -> tuple[float, float] | None:
        if frame < first or frame > last:
            return None
        t = frame - first
        return start[0] + velocity[0] * t, start[1] + velocity[1] * t

    return path


def waypoints(points: Sequence[tuple[int, float, float]]) -> Path2D:
    """A path through ``(frame, x, y)`` points, linear between them, absent before the first and after the last."""

    def path(frame: int) -> tuple[float, float] | None:
        if frame < points[0][0] or frame > points[-1][0]:
            return None
        for (f0, x0, y0), (f1, x1, y1) in itertools.pairwise(points):
            if f0 <= frame <= f1:
                t = (frame - f0) / max(1, f1 - f0)
                return x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
        return points[-1][1], points[-1][2]

    return path


# --- the scenes the tests and the benchmark use -----------------------------------------------------------------
LINE_X = 160  # vertical counting line in the middle (pixels)
ZONE = (180, 60, 300, 200)  # x1, y1, x2, y2 of the test zone


def scene_line_both_ways() -> Scene:
    """One object goes right across the line (frame 12), waits, and comes back left (frame 41)."""
    path = waypoints([(2, 40, 120), (32, 280, 120), (35, 280, 120), (65, 40, 120)])
    return Scene("line_both_ways", 70, [SceneObject("yellow", path)])


def scene_zone_stop() -> Scene:
    """One object walks into the zone, stops 3 s inside, and walks out."""
    path = waypoints([(2, 40, 100), (22, 240, 100), (52, 240, 100), (66, 240, 230)])
    return Scene("zone_stop", 75, [SceneObject("cyan", path)])


def scene_crossing_paths() -> Scene:
    """Two objects of the same class cross paths in the middle (boxes overlap for several frames)."""
    a = waypoints([(2, 30, 110), (42, 290, 130)])
    b = waypoints([(2, 290, 110), (42, 30, 130)])
    return Scene("crossing_paths", 48, [SceneObject("yellow", a), SceneObject("magenta", b)])


def scene_occlusion() -> Scene:
    """One object passes behind a pillar (hidden about 6 frames), then crosses the line at x=230."""
    path = waypoints([(2, 30, 120), (42, 290, 120)])
    return Scene("occlusion", 48, [SceneObject("green", path)], occluder=(110, 60, 165, 200), notes={"line_x": 230})


def scene_jitter() -> Scene:
    """One object walks to the line, jitters on it (±3 px) for 2 s, then crosses: one crossing only."""
    points = [(2, 60, 120), (14, LINE_X - 2, 120)]
    for k in range(20):
        points.append((15 + k, LINE_X + (3 if k % 2 == 0 else -3), 120))
    points += [(35, LINE_X + 2, 120), (50, 280, 120)]
    return Scene("jitter", 55, [SceneObject("yellow", waypoints(points))])


def scene_crowd() -> Scene:
    """Three objects walk into the zone one after the other and stay: the count goes 1, 2, 3."""
    objects = [
        SceneObject("yellow", waypoints([(2, 20, 90), (22, 210, 90), (60, 210, 90)])),
        SceneObject("cyan", waypoints([(10, 20, 140), (30, 240, 140), (60, 240, 140)])),
        SceneObject("magenta", waypoints([(18, 20, 170), (38, 270, 170), (60, 270, 170)])),
    ]
    return Scene("crowd", 60, objects)


def first_frame(scene: Scene, obj: int, predicate: Callable[[list[float]], bool], start: int = 0) -> int:
    """The first frame from ``start`` where object ``obj`` (0-based) exists and ``predicate(box)`` holds."""
    for frame in range(start, scene.frames):
        box = scene.objects[obj].box(frame)
        if box is not None and predicate(box):
            return frame
    raise AssertionError(f"{scene.name}: object {obj} never satisfies the predicate")


# --- the colour-box detector ---------------------------------------------------------------------------------------
def color_box_model(path: Path, colors: Sequence[tuple[int, int, int]], height: int = HEIGHT, width: int = WIDTH,
                    tolerance: float = 60.0) -> Path:  # fmt: skip
    """``image`` (N × 3 × H × W float, BGR 0..255) → ``boxes`` (N × K × 4, xyxy) and ``scores`` (N × K)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = len(colors)
    consts = {
        "colors": np.asarray(colors, np.float32).reshape(1, k, 3, 1, 1),
        "tol": np.asarray(tolerance, np.float32),
        "ramp_w": np.arange(width, dtype=np.float32).reshape(1, 1, width),
        "rev_w": (width - np.arange(width, dtype=np.float32)).reshape(1, 1, width),
        "ramp_h": np.arange(height, dtype=np.float32).reshape(1, 1, height),
        "rev_h": (height - np.arange(height, dtype=np.float32)).reshape(1, 1, height),
        "size_w": np.asarray(width, np.float32),
        "size_h": np.asarray(height, np.float32),
        "one": np.asarray(1.0, np.float32),
        "axis1": np.asarray([1], np.int64),
    }
    initializers = [numpy_helper.from_array(v, name) for name, v in consts.items()]
    node = helper.make_node
    nodes = [
        node("Unsqueeze", ["image", "axis1"], ["image5"]),  # N×1×3×H×W
        node("Sub", ["image5", "colors"], ["diff"]),  # N×K×3×H×W
        node("Abs", ["diff"], ["absdiff"]),
        node("ReduceMax", ["absdiff"], ["maxdiff"], axes=[2], keepdims=0),  # N×K×H×W
        node("Less", ["maxdiff", "tol"], ["hit"]),
        node("Cast", ["hit"], ["mask"], to=TensorProto.FLOAT),
        node("ReduceMax", ["mask"], ["cols"], axes=[2], keepdims=0),  # N×K×W
        node("ReduceMax", ["mask"], ["rows"], axes=[3], keepdims=0),  # N×K×H
        node("ReduceMax", ["cols"], ["scores"], axes=[2], keepdims=0),  # N×K
        node("Mul", ["cols", "ramp_w"], ["cw"]),
        node("ReduceMax", ["cw"], ["x2m"], axes=[2], keepdims=1),
        node("Add", ["x2m", "one"], ["x2"]),
        node("Mul", ["cols", "rev_w"], ["cwr"]),
        node("ReduceMax", ["cwr"], ["x1r"], axes=[2], keepdims=1),
        node("Sub", ["size_w", "x1r"], ["x1"]),
        node("Mul", ["rows", "ramp_h"], ["rh"]),
        node("ReduceMax", ["rh"], ["y2m"], axes=[2], keepdims=1),
        node("Add", ["y2m", "one"], ["y2"]),
        node("Mul", ["rows", "rev_h"], ["rhr"]),
        node("ReduceMax", ["rhr"], ["y1r"], axes=[2], keepdims=1),
        node("Sub", ["size_h", "y1r"], ["y1"]),
        node("Concat", ["x1", "y1", "x2", "y2"], ["boxes"], axis=2),  # N×K×4
    ]
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])
    boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", k, 4])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", k])
    graph = helper.make_graph(nodes, "color_boxes", [image], [boxes, scores], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def decode_color_boxes(boxes: np.ndarray, scores: np.ndarray, class_names: Sequence[str],
                       class_ids: Sequence[int]) -> list[dict[str, Any]]:  # fmt: skip
    """One input's model outputs (K × 4, K) → detections of the colours present."""
    found = []
    for slot in range(len(scores)):
        if scores[slot] < 0.5:
            continue
        box = [float(v) for v in boxes[slot]]
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        found.append({"box": box, "score": 0.9, "class_id": int(class_ids[slot]), "class_name": class_names[slot]})
    return found


class ColorBoxDetector:
    """The colour-box model run in-process with onnxruntime (for the tests that drive the tracker directly)."""

    def __init__(self, model: Path, class_names: Sequence[str], class_ids: Sequence[int]):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.class_names, self.class_ids = list(class_names), list(class_ids)

    def __call__(self, frame: np.ndarray) -> list[dict[str, Any]]:
        tensor = np.ascontiguousarray(frame.transpose(2, 0, 1)[None].astype(np.float32))
        boxes, scores = self.session.run(None, {"image": tensor})
        return decode_color_boxes(boxes[0], scores[0], self.class_names, self.class_ids)


# The serving plugin a node loads for the end-to-end tests (written to the node's plugins/ folder).
COLOR_BOX_SERVING = '''
"""COLOR_BOXES: the colour-box ONNX detector as a serving plugin giving detections (decision 34)."""

from pathlib import Path

from edge_engine.api import Key, OnnxServingPlugin, make_detection


class ColorBoxes(OnnxServingPlugin):
    SIGNATURE = "COLOR_BOXES"
    CONFIG = {
        "ONNX_MODEL": Key("color_boxes.onnx", type=str),
        "CLASS_NAMES": Key(["yellow", "cyan", "magenta", "green"], type=list),
        "CLASS_IDS": Key([0, 1, 2, 3], type=list),
        "WORKERS": 1,
        "MAX_BATCH_SIZE": 1,
    }

    @classmethod
    def model_file(cls, config, models_dir):
        return (models_dir or Path(".")) / config["ONNX_MODEL"]

    def pre_process(self, inputs):
        import numpy as np

        return np.stack([inp.image.transpose(2, 0, 1).astype(np.float32) for inp in inputs])

    def post_process(self, predictions, inputs):
        boxes, scores = predictions
        names, ids = self.config["CLASS_NAMES"], self.config["CLASS_IDS"]
        results = []
        for b, s in zip(boxes, scores):
            found = []
            for slot in range(len(s)):
                box = [float(v) for v in b[slot]]
                if s[slot] >= 0.5 and box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                    found.append(make_detection(box, 0.9, ids[slot], names[slot]))
            results.append(found)
        return results
'''
