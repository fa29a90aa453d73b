"""Unit tests of the runtime's building blocks: the mailbox, the supervisor's backoff, and redaction."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

import pytest
from conftest import wait_for

from edge_engine.redact import MASK, RedactingFilter, is_secret_key, redact, redact_text
from edge_engine.runtime.mailbox import BLOCK, CONTROL, DROP_OLDEST, INPUT, Closed, Mailbox
from edge_engine.runtime.supervisor import RestartPolicy, Supervisor


def start(target: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``target(*args)`` on a thread; the dict gets its ``result`` or ``error`` and a ``done`` event."""
    box: dict[str, Any] = {"done": threading.Event()}

    def run() -> None:
        try:
            box["result"] = target(*args)
        except BaseException as exc:
            box["error"] = exc
        finally:
            box["done"].set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def drain(mailbox: Mailbox) -> list[tuple[str, Any]]:
    items = []
    while (item := mailbox.get(timeout=0)) is not None:
        items.append(item)
    return items


# --- mailbox -------------------------------------------------------------------------------------------------
def test_block_policy_waits_for_room_and_resumes_in_order() -> None:
    box = Mailbox(2, BLOCK)
    assert box.put(1) and box.put(2)
    _, producer = start(box.put, 3)
    assert not producer["done"].wait(0.1)  # full: the producer waits
    assert len(box) == 2
    assert box.get() == (INPUT, 1)
    assert producer["done"].wait(2)
    assert producer["result"] is True
    assert [item for _, item in drain(box)] == [2, 3]
    assert box.dropped == 0


def test_block_policy_put_times_out_when_still_full() -> None:
    box = Mailbox(1, BLOCK)
    box.put("a")
    started = time.monotonic()
    assert box.put("b", timeout=0.05) is False
    assert time.monotonic() - started >= 0.05
    assert box.get(timeout=0) == (INPUT, "a")
    assert box.get(timeout=0) is None  # "b" was not added


def test_drop_oldest_drops_and_counts() -> None:
    box = Mailbox(3, DROP_OLDEST)
    started = time.monotonic()
    assert all(box.put(i) for i in range(1, 8))
    assert time.monotonic() - started < 0.5  # never waits
    assert box.dropped == 4
    assert [item for _, item in drain(box)] == [5, 6, 7]


def test_control_messages_jump_ahead_and_are_never_dropped() -> None:
    box = Mailbox(1, DROP_OLDEST)
    box.put("in-1")
    for i in range(5):
        box.put_control(f"ctl-{i}")
        box.put(f"in-{i + 2}")
    assert box.dropped == 5  # inputs only
    assert drain(box) == [(CONTROL, f"ctl-{i}") for i in range(5)] + [(INPUT, "in-6")]


def test_get_controls_only_leaves_inputs_queued() -> None:
    box = Mailbox(4, BLOCK)
    box.put("frame")
    started = time.monotonic()
    assert box.get(timeout=0.05, inputs=False) is None
    assert time.monotonic() - started >= 0.05
    box.put_control("cfg")
    assert box.get(timeout=0, inputs=False) == (CONTROL, "cfg")
    assert box.get(timeout=0) == (INPUT, "frame")


def test_control_wakes_a_waiting_getter() -> None:
    box = Mailbox(2, BLOCK)
    _, getter = start(box.get, 5.0)
    assert not getter["done"].wait(0.05)
    box.put_control("stop")
    assert getter["done"].wait(2)
    assert getter["result"] == (CONTROL, "stop")


def test_get_times_out_on_empty_mailbox() -> None:
    box = Mailbox(2, BLOCK)
    started = time.monotonic()
    assert box.get(timeout=0.05) is None
    assert time.monotonic() - started >= 0.05


def test_close_wakes_getters_and_blocked_producers() -> None:
    box = Mailbox(1, BLOCK)
    empty = Mailbox(1, BLOCK)
    _, getter = start(empty.get)
    box.put("x")
    _, producer = start(box.put, "y")
    assert not getter["done"].wait(0.05)
    assert not producer["done"].wait(0.01)
    empty.close()
    box.close()
    assert getter["done"].wait(2) and producer["done"].wait(2)
    assert isinstance(getter["error"], Closed)
    assert producer["result"] is False
    assert box.closed


def test_close_lets_queued_items_drain_then_raises() -> None:
    box = Mailbox(4, BLOCK)
    box.put(1)
    box.put(2)
    box.put_control("last words")
    box.close()
    assert box.put(3) is False
    assert box.get() == (CONTROL, "last words")
    assert box.get() == (INPUT, 1)
    assert box.get() == (INPUT, 2)
    with pytest.raises(Closed):
        box.get()
    with pytest.raises(Closed):
        box.get(timeout=0)


def test_set_policy_to_drop_oldest_releases_a_blocked_producer() -> None:
    box = Mailbox(2, BLOCK)
    box.put(1)
    box.put(2)
    _, producer = start(box.put, 3)
    assert not producer["done"].wait(0.05)
    box.set_policy(DROP_OLDEST, 1)
    assert producer["done"].wait(2)
    assert producer["result"] is True
    assert [item for _, item in drain(box)] == [3]
    assert box.dropped == 2


def test_clear_discards_inputs_and_unknown_policy_is_refused() -> None:
    box = Mailbox(3)
    for i in range(3):
        box.put(i)
    box.put_control("keep")
    assert box.clear() == 3
    assert drain(box) == [(CONTROL, "keep")]
    with pytest.raises(ValueError, match="unknown mailbox policy"):
        Mailbox(1, "newest")
    assert Mailbox(0).maxsize == 1


def test_many_producers_and_one_consumer_lose_nothing_with_block() -> None:
    box = Mailbox(3, BLOCK)
    got: list[int] = []

    def consume() -> None:
        try:
            while True:
                item = box.get()
                if item is not None:
                    got.append(item[1])
        except Closed:
            pass

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    producers = [threading.Thread(target=lambda k=k: [box.put(k * 1000 + i) for i in range(300)]) for k in range(4)]
    for t in producers:
        t.start()
    for t in producers:
        t.join(10)
    box.close()
    consumer.join(10)
    assert sorted(got) == sorted(k * 1000 + i for k in range(4) for i in range(300))
    for k in range(4):  # each producer's items stay in its order
        mine = [x for x in got if x // 1000 == k]
        assert mine == sorted(mine)
    assert box.dropped == 0


# --- supervisor ------------------------------------------------------------------------------------------------
def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RestartPolicy(initial=0.5, factor=2.0, cap=10.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.delay(0) == 0.5
    assert policy.delay(500) == 10.0
    assert policy.delay(5000) == 10.0  # no OverflowError for a part that failed for days
    assert RestartPolicy(cap=30.0).delay(10**6, random.Random(1)) <= 36.0


def test_jitter_stays_within_bounds_and_is_reproducible() -> None:
    policy = RestartPolicy(initial=1.0, factor=2.0, cap=8.0, jitter=0.25)
    rng = random.Random(1234)
    for n in range(1, 7):
        base = min(8.0, 2.0 ** (n - 1))
        samples = [policy.delay(n, rng) for _ in range(300)]
        assert all(base * 0.75 <= s <= base * 1.25 for s in samples), n
        assert min(samples) < base * 0.9 and max(samples) > base * 1.1  # it really spreads
    again = [policy.delay(3, random.Random(7)) for _ in range(3)]
    assert len(set(again)) == 1


def test_supervisor_counts_restarts_and_recovery_resets_the_backoff() -> None:
    policy = RestartPolicy(initial=0.1, factor=3.0, cap=5.0, jitter=0.0, flap_max_failures=0)  # flapping off
    supervisor = Supervisor(policy, random.Random(0))
    delays = [supervisor.failed("p/capture", RuntimeError("down")) for _ in range(3)]
    assert delays == pytest.approx([0.1, 0.3, 0.9])
    state = supervisor.state("p/capture")
    assert (state.restarts, state.consecutive_failures) == (3, 3)
    assert state.last_error == "RuntimeError: down"
    assert state.last_failure is not None
    supervisor.recovered("p/capture")
    assert supervisor.state("p/capture").consecutive_failures == 0
    assert supervisor.failed("p/capture", "again") == pytest.approx(0.1)
    assert supervisor.state("p/capture").restarts == 4  # the total is kept
    assert supervisor.state("other").restarts == 0  # parts are independent
    supervisor.recovered("never-failed")  # harmless
    supervisor.forget("p/capture")
    assert supervisor.state("p/capture").restarts == 0


def test_wait_restart_returns_false_at_once_when_stopping() -> None:
    supervisor = Supervisor(RestartPolicy(initial=30.0, cap=30.0, jitter=0.0))
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    assert supervisor.wait_restart("x", "failed", stop) is False
    assert time.monotonic() - started < 0.5

    stop = threading.Event()
    _, waiter = start(supervisor.wait_restart, "x", "failed again", stop)
    assert not waiter["done"].wait(0.05)
    stop.set()
    assert waiter["done"].wait(1.0)  # not after the 60 s backoff
    assert waiter["result"] is False
    assert supervisor.state("x").restarts == 2


def test_wait_restart_returns_true_after_the_delay() -> None:
    supervisor = Supervisor(RestartPolicy(initial=0.05, cap=0.05, jitter=0.0))
    started = time.monotonic()
    assert supervisor.wait_restart("x", "failed", threading.Event()) is True
    assert time.monotonic() - started >= 0.05


def test_supervisor_is_thread_safe() -> None:
    supervisor = Supervisor(RestartPolicy(jitter=0.0, flap_max_failures=0))
    threads = [
        threading.Thread(target=lambda: [supervisor.failed("shared", "e") for _ in range(200)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    wait_for(lambda: not any(t.is_alive() for t in threads))
    assert supervisor.state("shared").restarts == 1600


# --- redaction -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://user:secret@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("http://token@cam.local/x", "http://***@cam.local/x"),
        ("rtsp://admin:p%40ss:w0rd@h/x", "rtsp://***@h/x"),
        (
            "cannot open rtsp://a:b@h1/x nor https://c:d@h2/y",
            "cannot open rtsp://***@h1/x nor https://***@h2/y",
        ),
        ("rtsp://10.0.0.5:554/stream1", "rtsp://10.0.0.5:554/stream1"),
        ("mail me at someone@example.com", "mail me at someone@example.com"),
        ("rtsp://host/path?x=a@b", "rtsp://host/path?x=a@b"),
    ],
)
def test_url_credentials_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert "secret" not in redact_text(text)


def test_secret_named_keys_are_masked_recursively() -> None:
    config = {
        "URL": "rtsp://u:hunter2@cam/x",
        "PASSWORD": "hunter2",
        "api_token": "tok",
        "S3_SECRET_KEY": "sk",
        "EMPTY_PASSWORD": "",
        "NO_KEY": None,
        "nested": [{"ACCESS_KEY": "ak", "name": "n"}, "ftp://a:hunter2@h/f"],
        "count": 3,
    }
    assert redact(config) == {
        "URL": "rtsp://***@cam/x",
        "PASSWORD": MASK,
        "api_token": MASK,
        "S3_SECRET_KEY": MASK,
        "EMPTY_PASSWORD": "",
        "NO_KEY": None,
        "nested": [{"ACCESS_KEY": MASK, "name": "n"}, "ftp://***@h/f"],
        "count": 3,
    }
    assert config["PASSWORD"] == "hunter2"  # a copy: the original is untouched
    assert is_secret_key("db_pass") and not is_secret_key("INSTANCE_ID")


def test_logging_filter_masks_credentials_in_the_final_message() -> None:
    records: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = ListHandler()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redact.filter")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("opening %s with %d retries", "rtsp://user:secret@cam/1", 3)
        logger.info("no secrets here: %s", "rtsp://cam/1")
        logger.warning("inline http://a:secret@h/x")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert records == [
        "opening rtsp://***@cam/1 with 3 retries",
        "no secrets here: rtsp://cam/1",
        "inline http://***@h/x",
    ]


def test_a_part_may_cap_its_own_backoff() -> None:
    import random

    from edge_engine.runtime.supervisor import RestartPolicy, Supervisor

    supervisor = Supervisor(RestartPolicy(initial=1.0, factor=2.0, cap=30.0, jitter=0.0), random.Random(1))
    delays = [supervisor.failed("comms", "down", cap=5.0, flap=False) for _ in range(8)]  # comms never flaps
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    assert supervisor.failed("other", "down") == 1.0
    assert supervisor.state("comms").restarts == 8


def test_rate_meter_keeps_its_rate_when_readers_call_in_quick_succession() -> None:
    from edge_engine.runtime.stage_stats import RateMeter

    meter = RateMeter(min_window=1.0)
    assert meter.update(0, now=100.0) == 0.0
    assert meter.update(50, now=102.0) == 25.0
    assert meter.update(51, now=102.01) == 25.0  # a second reader right after: the window is not restarted
    assert meter.update(71, now=103.0) == 21.0  # (71 - 50) / (103 - 102)


def test_a_blocked_producer_is_woken_once_half_the_mailbox_is_free() -> None:
    box = Mailbox(4, BLOCK)
    for i in range(4):
        box.put(i)
    _, producer = start(box.put, 4)
    assert not producer["done"].wait(0.05)
    assert box.get() == (INPUT, 0)
    assert not producer["done"].wait(0.05)  # 3 of 4 still queued: no hand-off for one slot
    assert box.get() == (INPUT, 1)
    assert producer["done"].wait(2) and producer["result"] is True  # half free: the producer fills it in a batch
    assert [item for _, item in drain(box)] == [2, 3, 4]


def test_hand_off_keeps_order_and_counts_drops_under_load() -> None:
    for policy in (BLOCK, DROP_OLDEST):
        box = Mailbox(4, policy)
        got: list[int] = []

        def consume(box: Mailbox = box, got: list[int] = got) -> None:
            try:
                while True:
                    message = box.get()
                    if message is not None:
                        got.append(message[1])
            except Closed:
                pass

        consumer = threading.Thread(target=consume)
        consumer.start()
        for i in range(5000):
            assert box.put(i)
        box.close()
        consumer.join(10)
        assert got == sorted(got) and len(set(got)) == len(got)  # in order, nothing twice
        assert len(got) + box.dropped == 5000  # every input taken or counted as dropped
        assert box.dropped == 0 if policy == BLOCK else got[-1] == 4999


def test_a_get_that_timed_out_leaves_no_wake_up_behind() -> None:
    box = Mailbox(2, BLOCK)
    for _ in range(50):  # a put racing a timing-out get must not make a later get return at once
        _, getter = start(box.get, 0.001)
        box.put_control("x")
        getter["done"].wait(2)
        drain(box)
    started = time.monotonic()
    assert box.get(timeout=0.05) is None
    assert time.monotonic() - started >= 0.05


def test_every_waiting_getter_is_woken_whatever_it_waits_for() -> None:
    box = Mailbox(2, BLOCK)
    _, controls_only = start(lambda: box.get(timeout=5.0, inputs=False))
    _, any_message = start(lambda: box.get(timeout=5.0))
    wait_for(lambda: box._getters.count == 2)
    box.put("frame")  # wakes both: the controls-only getter must not swallow the other's wake-up
    assert any_message["done"].wait(2)
    assert any_message["result"] == (INPUT, "frame")
    box.close()
    assert controls_only["done"].wait(2)
