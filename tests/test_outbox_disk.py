"""The durable outbox on its own: order, ack and requeue, the size bound and its drop policy, compaction,
recovery at the persisted ack point, torn tails, and ``kill -9`` of a process appending to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, wait_for

from edge_engine.comms.disk_outbox import (
    ACK_SLOT,
    MAGIC,
    MAGIC_UNSIGNED,
    RECORD,
    DiskOutbox,
    inspect_outbox,
    segment_files,
)
from edge_engine.comms.outbox import OutboxItem

pytestmark = pytest.mark.timeout(60)


def encode(item: OutboxItem) -> bytes:
    """A stand-in for the comms encoder: the item's channel, seq and body as JSON."""
    return json.dumps({"channel": item.channel, "seq": item.seq, **item.body}).encode()


def put(outbox: DiskOutbox, channel: str, seq: int, pad: int = 0) -> None:
    outbox.put(OutboxItem(channel, {"n": seq, "pad": "x" * pad}, [], seq=seq))


def take(outbox: DiskOutbox, count: int, timeout: float = 5.0) -> list[OutboxItem]:
    items = []
    for _ in range(count):
        item = outbox.get(timeout)
        assert item is not None, f"only {len(items)} of {count} came"
        items.append(item)
    return items


def drain(outbox: DiskOutbox, timeout: float = 0.3) -> list[OutboxItem]:
    items = []
    while (item := outbox.get(timeout)) is not None:
        items.append(item)
    return items


def seqs(items: list[OutboxItem], channel: str) -> list[int]:
    return [item.seq for item in items if item.channel == channel]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


def open_outbox(folder: Path, **kw: Any) -> DiskOutbox:
    kw.setdefault("fsync_seconds", 0.05)
    return DiskOutbox(folder, encode, **kw)


def test_unsigned_records_are_marked_and_older_signed_segments_kept_as_they_are(folder: Path) -> None:
    """``unsigned=True`` (the node's: texts to sign, signed by the publisher) stores its records in segments of
    their own header, and hands them out marked ``unsigned``, also after a restart; segments of the signed format
    (written before) are still delivered as they are, first."""
    before = open_outbox(folder)
    put(before, "payloads", 1)
    before.close()
    outbox = open_outbox(folder, unsigned=True)
    try:
        put(outbox, "payloads", 2)
        assert [(i.seq, i.unsigned) for i in take(outbox, 2)] == [(1, False), (2, True)]
    finally:
        outbox.close()
    heads = sorted(path.read_bytes()[: len(MAGIC)] for _, path in segment_files(folder, "payloads"))
    assert heads == [MAGIC, MAGIC_UNSIGNED]
    assert inspect_outbox(folder)["payloads"]["seqs"] == [1, 2]
    again = open_outbox(folder, unsigned=True)
    try:
        items = drain(again)
        assert [(i.seq, i.unsigned) for i in items] == [(1, False), (2, True)]
        assert json.loads(items[1].wire or b"")["n"] == 2
    finally:
        again.close()


def test_get_batch_keeps_the_order_and_ack_many_frees_the_records(folder: Path) -> None:
    """The publisher takes what waits in one call (heartbeats, notifications, payloads: get()'s order) and
    acknowledges a batch in one call; acknowledged records are not sent again after a restart."""
    outbox = open_outbox(folder)
    try:
        for i in range(1, 6):
            put(outbox, "payloads", i)
        put(outbox, "notif", 1)
        outbox.put(OutboxItem("ctrl", {"beat": 1}, [], seq=1))
        batch = outbox.get_batch(4, timeout=1)
        assert [(i.channel, i.seq) for i in batch] == [("ctrl", 1), ("notif", 1), ("payloads", 1), ("payloads", 2)]
        rest = outbox.get_batch(64, timeout=1)
        assert seqs(rest, "payloads") == [3, 4, 5] and outbox.get_batch(64, timeout=0.05) == []
        outbox.ack_many(batch + rest[:1])
        assert len(outbox) == 2
    finally:
        outbox.close()
    again = open_outbox(folder)
    try:
        assert [(i.channel, i.seq) for i in drain(again)] == [("payloads", 4), ("payloads", 5)]
    finally:
        again.close()


def test_order_per_channel_and_the_wire_bytes(folder: Path) -> None:
    outbox = open_outbox(folder)
    try:
        for i in range(1, 301):
            put(outbox, "payloads", i)
            if i % 50 == 0:
                put(outbox, "notif", i // 50)
        outbox.put(OutboxItem("ctrl", {"beat": 1}, [], seq=1))
        items = take(outbox, 307)
        assert items[0].channel == "ctrl" and items[0].wire is None  # heartbeats: in memory, encoded on sending
        assert seqs(items, "payloads") == list(range(1, 301))
        assert seqs(items, "notif") == list(range(1, 7))
        for item in items[1:]:
            assert json.loads(item.wire) == {"channel": item.channel, "seq": item.seq, "n": item.seq, "pad": ""}
        assert outbox.get(0.05) is None
        assert len(outbox) == 306  # handed out, not acknowledged yet
    finally:
        outbox.close()
    assert not list(folder.glob("ctrl*")), "heartbeats are never written to disk"


def test_ack_requeue_and_restart_at_the_ack_point(folder: Path) -> None:
    outbox = open_outbox(folder)
    for i in range(1, 101):
        put(outbox, "payloads", i)
    items = take(outbox, 100)
    outbox.requeue(items[40])
    assert outbox.get(1).seq == 41  # a requeued message comes again before anything newer
    for item in items[:30]:
        outbox.ack(item)
    outbox.ack(items[35])  # acknowledged out of order: kept until everything before it is
    outbox.ack(items[35])  # a second PUBACK for the same message changes nothing
    assert len(outbox) == 69
    outbox.close()

    reopened = open_outbox(folder)
    try:
        again = drain(reopened)
        # resumes at the ack point: everything not acknowledged comes again, in order (36 again too: the
        # ack point is the first message not acknowledged; a duplicate, never a loss)
        assert seqs(again, "payloads") == list(range(31, 101))
        assert reopened.recovered == 70 and reopened.corrupt == 0
        for item in again:
            reopened.ack(item)
        assert len(reopened) == 0
        put(reopened, "payloads", 101)
        assert take(reopened, 1)[0].seq == 101
    finally:
        reopened.close()


def test_fully_acknowledged_segments_are_deleted(folder: Path) -> None:
    outbox = open_outbox(folder, max_bytes=1024 * 1024)  # 64 KiB segments
    try:
        for i in range(1, 2001):
            put(outbox, "payloads", i, pad=200)
        items = take(outbox, 2000)
        assert len(segment_files(folder, "payloads")) > 4
        for item in items:
            outbox.ack(item)
        wait_for(lambda: len(segment_files(folder, "payloads")) <= 1, timeout=5)
        assert outbox.dropped == 0 and len(outbox) == 0
    finally:
        outbox.close()
    assert inspect_outbox(folder)["payloads"]["pending"] == 0


def test_bound_drops_oldest_payloads_keeps_notifications_and_notifies_once(folder: Path) -> None:
    notices: list[int] = []
    outbox = open_outbox(folder, max_bytes=256 * 1024, on_drop=notices.append)  # 16 KiB segments
    try:
        for i in range(1, 3001):  # about 900 KB of payloads while nothing is acknowledged
            put(outbox, "payloads", i, pad=250)
            if i % 100 == 0:
                put(outbox, "notif", i // 100)
        assert outbox.dropped > 2000
        assert outbox.disk_bytes <= 256 * 1024 + 64 * 1024  # the bound, give or take one batch
        wait_for(lambda: notices, timeout=5)
        assert len(notices) == 1, "one notification when dropping starts, not one per drop"
        items = drain(outbox)
        kept = seqs(items, "payloads")
        assert kept == list(range(3001 - len(kept), 3001)), "the oldest payloads go first, the rest stay in order"
        assert seqs(items, "notif") == list(range(1, 31)), "notifications are kept"
        assert outbox.dropped == 3000 - len(kept)
        assert outbox.stats()["dropped"] == outbox.dropped
        for item in items:
            outbox.ack(item)
        assert len(outbox) == 0
        for i in range(3001, 6001):  # drained, then full again: a new notification
            put(outbox, "payloads", i, pad=250)
        wait_for(lambda: len(notices) == 2, timeout=10)
    finally:
        outbox.close()


def file_bytes(folder: Path) -> int:
    """The size of the segment files now (one the group commit deletes meanwhile counts as gone)."""
    total = 0
    for lane in ("payloads", "notif"):
        for _, path in segment_files(folder, lane):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
    return total


def test_disk_bytes_follow_the_segment_files(folder: Path) -> None:
    """The byte count behind the bound is kept as segments grow, are compacted, dropped and recovered."""
    outbox = open_outbox(folder, max_bytes=256 * 1024)  # 16 KiB segments
    try:
        for i in range(1, 1201):
            put(outbox, "payloads", i, pad=250)
            if i % 50 == 0:
                put(outbox, "notif", i // 50)
        assert outbox.dropped > 0 and outbox.disk_bytes == file_bytes(folder)
        items = drain(outbox)
        for item in items[: len(items) // 2]:
            outbox.ack(item)
        wait_for(lambda: outbox.disk_bytes == file_bytes(folder) < 256 * 1024, timeout=5)
    finally:
        outbox.close()
    reopened = open_outbox(folder, max_bytes=256 * 1024)
    try:
        assert reopened.disk_bytes == file_bytes(folder) > 0
        for item in drain(reopened):
            reopened.ack(item)
        wait_for(lambda: reopened.disk_bytes == file_bytes(folder), timeout=5)
        assert reopened.stats()["bytes"] == reopened.disk_bytes
    finally:
        reopened.close()


def test_torn_tail_is_cut_off_and_the_rest_delivered(folder: Path) -> None:
    outbox = open_outbox(folder)
    for i in range(1, 51):
        put(outbox, "payloads", i)
    wait_for(lambda: outbox.stats()["pending_by_channel"]["payloads"] == 50)
    outbox.close()
    (_, path), *_ = segment_files(folder, "payloads")
    good = path.stat().st_size
    first = path.read_bytes()[len(MAGIC) :]
    length = RECORD.unpack_from(first)[0] + RECORD.size
    with open(path, "ab") as handle:  # a record cut short by a crash: its header and half its bytes
        handle.write(first[: length // 2])
    assert inspect_outbox(folder)["payloads"]["torn"] == 1

    reopened = open_outbox(folder)
    try:
        assert reopened.corrupt == 1
        assert path.stat().st_size == good, "the torn tail is cut off"
        put(reopened, "payloads", 51)
        assert seqs(drain(reopened), "payloads") == list(range(1, 52))
        assert len(segment_files(folder, "payloads")) == 2, "appends after a recovery go to a new segment"
    finally:
        reopened.close()
    assert inspect_outbox(folder)["payloads"]["torn"] == 0


def test_corrupt_record_and_torn_ack_slot(folder: Path) -> None:
    outbox = open_outbox(folder)
    for i in range(1, 21):
        put(outbox, "payloads", i)
    items = take(outbox, 20)
    for item in items[:5]:
        outbox.ack(item)
    outbox.close()
    ack_file = folder / "payloads.ack"
    slots = ack_file.read_bytes()
    newest = max((0, ACK_SLOT.size), key=lambda at: ACK_SLOT.unpack_from(slots, at)[0] if len(slots) > at else -1)
    with open(ack_file, "r+b") as handle:  # the newest slot torn: the other one is used
        handle.seek(newest + 3)
        handle.write(b"\xff\xff")
    (_, path), *_ = segment_files(folder, "payloads")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the last record
    path.write_bytes(bytes(data))

    reopened = open_outbox(folder)
    try:
        got = seqs(drain(reopened), "payloads")
        assert got == list(range(got[0], 20)), "the corrupt last record is discarded, the rest comes in order"
        assert got[0] <= 6 and reopened.corrupt == 1
    finally:
        reopened.close()


WRITER = """
import json, sys, time
from pathlib import Path
from edge_engine.comms.disk_outbox import DiskOutbox
from edge_engine.comms.outbox import OutboxItem

outbox = DiskOutbox(Path(sys.argv[1]), lambda it: json.dumps({"seq": it.seq, "pad": "x" * 300}).encode(),
                    max_bytes=64 * 1024 * 1024, fsync_seconds=0.05)
seq = int(sys.argv[2])
print("ready", flush=True)
while True:
    for _ in range(50):
        seq += 1
        outbox.put(OutboxItem("payloads", {}, [], seq=seq))
    item = outbox.get(0)
    if item is not None and item.seq % 3:
        outbox.ack(item)  # some acknowledged, so that kills land on ack writes too
    time.sleep(0.001)
"""


def test_kill9_while_appending_leaves_a_readable_outbox(folder: Path) -> None:
    """A process appending and acknowledging as fast as it can is killed at random moments, three times; each
    restart finds every record intact except at most one torn tail, and the sequence numbers stay in order."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    last = 0
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(last)], env=env,
                                stdout=subprocess.PIPE)  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3 + 0.17 * round_)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        report = inspect_outbox(folder)["payloads"]
        assert report["torn"] <= 1
        pending = report["seqs"]
        assert pending, "records were stored"
        assert pending == sorted(pending) and len(set(pending)) == len(pending)
        outbox = open_outbox(folder)
        try:
            items = drain(outbox, timeout=0.1)
            got = seqs(items, "payloads")
            assert got == pending, "a restart sends exactly what is on disk after the ack point, in order"
            assert outbox.previous_last_seq["payloads"] == pending[-1], "the last number stored before the kill"
            assert got[-1] > last
            # stored records are contiguous: nothing is lost in the middle
            assert got == list(range(got[0], got[0] + len(got)))
            last = got[-1]
        finally:
            outbox.close()


def test_outbox_figures_in_metrics() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from edge_engine.observe.metrics import MetricsExporter

    snapshot = {"comms": {"outbox": {"kind": "disk", "pending": 12, "bytes": 4096, "dropped": 3}}}
    text = MetricsExporter(lambda: snapshot).render().decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["edge_outbox_pending"] == 12 and values["edge_outbox_bytes"] == 4096
    assert values["edge_outbox_dropped_total"] == 3
