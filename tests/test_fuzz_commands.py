"""10,000 fuzzed messages on a node's command topic: none accepted, the node alive, its memory bounded.

A real node process (``device.py``) talks to a real Mosquitto on a free port. After one accepted deploy from
the allowlisted owner (so there is something to replay), a seeded fuzzer publishes ``EE_TEST_FUZZ_COUNT``
messages (10,000 by default; seed ``EE_TEST_FUZZ_SEED``) on ``{root}/{address}/config``: random bytes, invalid
JSON, JSON that is not an object, wrong types in every field (re-signed by the owner, so they reach the checks
behind the signature, and not re-signed), unsigned commands, bad signatures, valid signatures from keys not in
the allowlist (commands that the owner would have had accepted), replays of the accepted command, stale or
future TIME, encrypted garbage (random data, data for another node, a zlib bomb, non-JSON inside), messages
over the size limit, deep nesting, and path-like pipeline names. They go in chunks, each waiting until the
node has counted the previous one, so every message reaches the checks (the node's command queue holds 1,000).

Asserted: no message accepted (the accepted counter stays at the deploy, the pipelines and their files are
unchanged, no positive notification code), every message counted as received and rejected (or dropped by the
full queue, counted), rejection notifications within DECISIONS 19's budget, no traceback in the node's log,
heartbeats still coming with the counters, and the node's RSS bounded.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import os
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import coincurve
import paho.mqtt.client as mqtt
import pytest
from conftest import wait_for
from mqtt_broker import Mosquitto
from node_runner import NodeRunner, base_env, rss_bytes
from plugins_src import synthetic_pipeline

from edge_engine.cli.ops import main_add_allowed
from edge_engine.comms.commands import PIPELINE_OK, PLUGIN_CONFIG_OK
from edge_engine.comms.crypto import encrypt_for
from edge_engine.comms.signing import sign_to_json
from edge_engine.local.identity import Identity, identity_from_private_key
from edge_engine.remote.node_client import EdgeClient, Received, load_client_identity

FUZZ_COUNT = int(os.environ.get("EE_TEST_FUZZ_COUNT", "10000"))
SEED = int(os.environ.get("EE_TEST_FUZZ_SEED", "20261123"))
CHUNK = 500  # under the node's command queue (1,000)
HUGE_MESSAGES = 20  # over EE_MAX_MESSAGE_BYTES (1,000,000): 1.2 MB each through the broker
RSS_GROWTH_LIMIT = 80 * 1024 * 1024
NOTIFICATIONS_PER_SECOND = 10  # DECISIONS 19, per sender
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
pytestmark = pytest.mark.timeout(180)

KEEP = synthetic_pipeline("keep", "FRAME_STATS", {"INSTANCE_ID": "k", "REPORT_EVERY": 1000}, CAP_RESOLUTION=5)
BASE = {**KEEP, "NAME": "base"}
# actions an allowlisted owner could have accepted with a fresh TIME: the fuzzer sends them only in forms that
# must fail (unsigned, tampered, foreign key, stale, replayed, encrypted wrongly)
DANGEROUS = ["UPDATE_CONFIG", "DELETE_CONFIG", "DELETE_CONFIG_ALL", "ARCHIVE_CONFIG_ALL", "STOP", "RESTART",
             "STATUS", "UPDATE_PIPELINE_INSTANCE", "BATCH_UPDATE_PIPELINE_INSTANCE"]  # fmt: skip
# actions the owner may send signed and fresh, each with a payload that is wrong for it
CHECKED = ["UPDATE_CONFIG", "DELETE_CONFIG", "ARCHIVE_CONFIG", "UPDATE_PIPELINE_INSTANCE",
           "BATCH_UPDATE_PIPELINE_INSTANCE"]  # fmt: skip
FIELDS = ["ACTION", "PAYLOAD", "TIME", "EE_SENDER", "EE_SIGN", "EE_HASH", "EE_IS_ENCRYPTED", "EE_ENCRYPTED_DATA",
          "EE_DEST", "EE_ID", "SESSION_ID", "INITIATOR_ID", "INITIATOR_ADDR", "SIGN_CANON_V"]  # fmt: skip


@functools.cache
def zlib_bomb() -> str:
    return base64.b64encode(zlib.compress(b"0" * 20_000_000)).decode()


def compact(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


class Fuzzer:
    """Seeded generator of bad command messages for one node."""

    def __init__(self, rng: random.Random, node: str, owner: Identity, strangers: list[Identity], accepted: dict):
        self.rng = rng
        self.node = node
        self.owner = owner
        self.strangers = strangers
        self.accepted = accepted
        self.kinds: dict[str, Callable[[], bytes]] = {
            "random_bytes": self.random_bytes,
            "invalid_json": self.invalid_json,
            "not_an_object": self.not_an_object,
            "wrong_types_signed": self.wrong_types_signed,
            "wrong_types_unsigned": self.wrong_types_unsigned,
            "unsigned": self.unsigned,
            "bad_signature": self.bad_signature,
            "not_allowlisted": self.not_allowlisted,
            "replay": self.replay,
            "stale_time": self.stale_time,
            "encrypted_garbage": self.encrypted_garbage,
            "deep_nesting": self.deep_nesting,
            "path_names": self.path_names,
        }

    # --- values ------------------------------------------------------------------------------------------
    def text(self, low: int = 0, high: int = 40) -> str:
        alphabet = "abcXYZ019_-./\\ \"'{}[]:,\u00e9\u4e2d\U0001f600\x00\n"
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(low, high)))

    def value(self, depth: int = 0) -> Any:
        """A random JSON value of any type (the wrong type for most fields)."""
        choices = ["int", "float", "bool", "null", "str", "big_int", "long_str"]
        if depth < 3:
            choices += ["list", "dict"]
        kind = self.rng.choice(choices)
        if kind == "int":
            return self.rng.randint(-(2**31), 2**31)
        if kind == "big_int":
            return self.rng.choice([2**64, -(2**70), 10**300])
        if kind == "float":
            return self.rng.choice([0.0, -1.5, 1e308, 3.14159, 1e-300])
        if kind == "bool":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        if kind == "long_str":
            return "Z" * self.rng.randint(1000, 20000)
        if kind == "list":
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        if kind == "dict":
            return {self.text(1, 12): self.value(depth + 1) for _ in range(self.rng.randint(0, 4))}
        return self.text()

    def fresh_time(self) -> str:
        return datetime.now().strftime(TIME_FORMAT)

    def pipeline(self) -> dict[str, Any]:
        """A valid pipeline the owner could deploy (named fz-...)."""
        return {**json.loads(json.dumps(KEEP)), "NAME": f"fz-{self.rng.randrange(10**9)}"}

    def dangerous(self) -> tuple[str, Any]:
        action = self.rng.choice(DANGEROUS)
        payload = {"UPDATE_CONFIG": self.pipeline(), "DELETE_CONFIG": "keep"}.get(action)
        if action == "UPDATE_PIPELINE_INSTANCE":
            payload = {"NAME": "keep", "SIGNATURE": "FRAME_STATS", "INSTANCE_ID": "k",
                       "INSTANCE_CONFIG": {"REPORT_EVERY": 3}}  # fmt: skip
        return action, payload

    def command(self, action: Any, payload: Any, sent_at: str | None = None, **extra: Any) -> dict[str, Any]:
        message = {"ACTION": action, "PAYLOAD": payload, "EE_DEST": self.node, "EE_ID": self.node,
                   "SESSION_ID": "fuzz", "INITIATOR_ID": "fuzzer", "INITIATOR_ADDR": self.owner.address,
                   "TIME": sent_at or self.fresh_time(), "EE_IS_ENCRYPTED": False}  # fmt: skip
        message.update(extra)
        return message

    def signed(self, message: dict[str, Any], identity: Identity | None = None) -> dict[str, Any]:
        return json.loads(sign_to_json(dict(message), identity or self.owner))

    # --- kinds ----------------------------------------------------------------------------------------------
    def random_bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.choice([0, 1, 2, 7, 64, 512, 4096]))

    def invalid_json(self) -> bytes:
        good = compact(self.signed(self.command(*self.dangerous())))
        choice = self.rng.randrange(7)
        if choice == 0:
            return good[: self.rng.randrange(1, len(good))]
        if choice == 1:
            return b"\xff\xfe" + good
        if choice == 2:
            return good.replace(b'"', b"'")
        if choice == 3:
            return good[:-1] + b',"X":NaN,}'
        if choice == 4:
            return b'{"ACTION": "STOP", "PAYLOAD": ' + self.rng.randbytes(16) + b"}"
        if choice == 5:
            return b'{"ACTION": "STOP", "TIME": ' + b"7" * 5000 + b"}"  # an int Python refuses to read
        return good + b" trailing"

    def not_an_object(self) -> bytes:
        good = self.signed(self.command(*self.dangerous()))
        return compact(self.rng.choice([[], [good], 1, -3.5, "STOP", None, True, [self.value()], self.text()]))

    def wrong_types_signed(self) -> bytes:
        """Signed by the owner with a fresh TIME: the checks behind the signature see wrong types."""
        field = self.rng.choice(["ACTION", "PAYLOAD", "TIME", "EE_IS_ENCRYPTED", "EE_ENCRYPTED_DATA",
                                 "SESSION_ID", "INITIATOR_ADDR", "UNKNOWN_ACTION"])  # fmt: skip
        action: Any = self.rng.choice(CHECKED)
        payload: Any = self.wrong_payload(action)
        message = self.command(action, payload)
        if field == "ACTION":
            message["ACTION"] = self.rng.choice([None, 1, [], {}, "", ["STOP"], {"A": "STOP"}, True])
        elif field == "UNKNOWN_ACTION":
            message["ACTION"] = "FZ_" + self.text(1, 30)
        elif field == "TIME":
            message["TIME"] = self.rng.choice([None, 0, 1.5e9, [], {}, "", "yesterday", "2026-13-45 99:99:99",
                                               "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999"])  # fmt: skip
        elif field == "EE_IS_ENCRYPTED":
            message["EE_IS_ENCRYPTED"] = self.rng.choice([1, "yes", [0], {"a": 1}])
            message["EE_ENCRYPTED_DATA"] = self.value()
        elif field == "EE_ENCRYPTED_DATA":
            message["EE_IS_ENCRYPTED"] = True
            message["EE_ENCRYPTED_DATA"] = self.value()
        else:
            message[field] = self.value()
        return compact(self.signed(message))

    def wrong_payload(self, action: str) -> Any:
        """A payload that ``action`` must refuse."""
        if action == "UPDATE_CONFIG":
            return self.rng.choice([self.broken_pipeline(), self.value(), [self.pipeline()], None])
        if action in ("DELETE_CONFIG", "ARCHIVE_CONFIG"):
            return self.rng.choice([None, 1, [], {}, "", "fz-" + self.text(1, 20), ["keep"], {"NAME": "keep"}])
        if action == "UPDATE_PIPELINE_INSTANCE":
            payload = {"NAME": self.rng.choice(["keep", "fz-none", 1, None]),
                       "SIGNATURE": self.rng.choice(["FRAME_STATS", "FZ_NONE", [], None]),
                       "INSTANCE_ID": self.rng.choice(["k", "fz", 0]),
                       "INSTANCE_CONFIG": self.rng.choice([{"REPORT_EVERY": self.value()}, self.value(),
                                                           {"FZ_UNKNOWN": 1}, {"INSTANCE_COMMAND": None}])}  # fmt: skip
            if payload["NAME"] == "keep" and payload["SIGNATURE"] == "FRAME_STATS" and payload["INSTANCE_ID"] == "k":
                payload["INSTANCE_CONFIG"] = {"REPORT_EVERY": self.rng.choice(["often", 0, [1], {"x": 1}])}
            drop = self.rng.choice([None, "NAME", "INSTANCE_CONFIG"])
            if drop:
                payload.pop(drop)
            return self.rng.choice([payload, self.value()])
        return self.rng.choice([[], None, self.value(), [self.wrong_payload("UPDATE_PIPELINE_INSTANCE")]])

    def broken_pipeline(self) -> dict[str, Any]:
        """A pipeline with one key wrong (a type or value it cannot have, or a key nobody declares)."""
        broken: dict[str, Any] = self.pipeline()
        key = self.rng.choice(["NAME", "TYPE", "PLUGINS", "CAP_RESOLUTION", "MODE", "UNKNOWN", "INSTANCE"])
        wrong: dict[str, list[Any]] = {
            "NAME": [None, 1, [], {}, "", "../" + broken["NAME"], "x" * 100, "a b", "/abs"],
            "TYPE": [None, 2, [], "FZ_NO_SUCH_CAPTURE", ""],
            "PLUGINS": [None, 3, "FRAME_STATS", {}, [{"SIGNATURE": "FZ_NO_SUCH"}], [1], [{"INSTANCES": 5}]],
            "CAP_RESOLUTION": ["fast", [], {}, -5],
            "MODE": ["fz-mode", 1, []],
        }
        if key == "UNKNOWN":
            broken["FZ_" + self.text(1, 10).upper()] = self.value()
        elif key == "INSTANCE":
            broken["PLUGINS"][0]["INSTANCES"][0]["REPORT_EVERY"] = self.rng.choice(["often", [1], {"x": 1}, 0])
        else:
            broken[key] = self.rng.choice(wrong[key])
        return broken

    def wrong_types_unsigned(self) -> bytes:
        """A signed command with one field replaced afterwards (any field, any type): the signature breaks."""
        message = self.signed(self.command(*self.dangerous()))
        field = self.rng.choice(FIELDS)
        value = self.value()
        while json.dumps(value) == json.dumps(message.get(field)):  # a changed field (False stays False...)
            value = self.value()
        message[field] = value
        return compact(message)

    def unsigned(self) -> bytes:
        message = self.command(*self.dangerous())
        if self.rng.random() < 0.5:
            message["EE_SENDER"] = self.owner.address  # a claim without a signature
        return compact(message)

    def bad_signature(self) -> bytes:
        message = self.signed(self.command(*self.dangerous()))
        choice = self.rng.randrange(5)
        if choice == 0:
            message["PAYLOAD"] = self.pipeline()  # tampered after signing
        elif choice == 1:
            message["EE_SIGN"] = base64.urlsafe_b64encode(self.rng.randbytes(self.rng.choice([8, 70, 72]))).decode()
        elif choice == 2:
            forged = self.signed(self.command(*self.dangerous()), self.rng.choice(self.strangers))
            forged["EE_SENDER"] = self.owner.address  # another key's signature under the owner's name
            message = forged
        elif choice == 3:
            message["EE_HASH"] = f"{self.rng.getrandbits(256):064x}"
        else:
            message["EE_SENDER"] = identity_from_private_key(coincurve.PrivateKey()).address
        return compact(message)

    def not_allowlisted(self) -> bytes:
        """Commands the owner would have had accepted, correctly signed by keys not in the allowlist."""
        return compact(self.signed(self.command(*self.dangerous()), self.rng.choice(self.strangers)))

    def replay(self) -> bytes:
        if self.rng.random() < 0.5:
            return compact(self.accepted)
        items = list(self.accepted.items())
        self.rng.shuffle(items)
        return json.dumps(dict(items), indent=self.rng.choice([None, 1, 2])).encode()

    def stale_time(self) -> bytes:
        hours = self.rng.choice([25, 48, 24 * 365, 24 * 365 * 30]) * self.rng.choice([-1, 1])
        when = (datetime.now() + timedelta(hours=hours)).strftime(TIME_FORMAT)
        return compact(self.signed(self.command(*self.dangerous(), sent_at=when)))

    def encrypted_garbage(self) -> bytes:
        action, payload = self.dangerous()
        inner = json.dumps({"ACTION": action, "PAYLOAD": payload})
        choice = self.rng.randrange(6)
        if choice == 0:
            data: Any = base64.b64encode(self.rng.randbytes(self.rng.choice([0, 10, 40, 500]))).decode()
        elif choice == 1:
            data = encrypt_for(inner, self.owner, self.rng.choice(self.strangers).address)  # for another node
        elif choice == 2:
            data = zlib_bomb()  # 20 MB of zeros in 20 kB
        elif choice == 3:
            data = encrypt_for(self.rng.choice(["not json", "[1, 2]", "{", '"STOP"']), self.owner, self.node)
        elif choice == 4:
            data = self.text(1, 200)
        else:  # a valid command, but encrypted by the owner and then sent stale
            when = (datetime.now() - timedelta(days=3)).strftime(TIME_FORMAT)
            message = self.command(None, None, sent_at=when, EE_IS_ENCRYPTED=True,
                                   EE_ENCRYPTED_DATA=encrypt_for(inner, self.owner, self.node))  # fmt: skip
            message.pop("ACTION")
            message.pop("PAYLOAD")
            return compact(self.signed(message))
        message = self.command(None, None, EE_IS_ENCRYPTED=True, EE_ENCRYPTED_DATA=data)
        message.pop("ACTION")
        message.pop("PAYLOAD")
        signer = self.rng.choice([self.owner, *self.strangers])  # anyone can sign: the bomb must not cost them
        return compact(self.signed(message, signer))

    def deep_nesting(self) -> bytes:
        depth = self.rng.choice([500, 990, 5_000, 100_000])
        choice = self.rng.randrange(4)
        if choice == 0:
            return b"[" * depth + b"]" * depth
        if choice == 1:
            return b'{"ACTION":' * depth + b"1" + b"}" * depth
        if choice == 2:
            return b"[" * depth  # unterminated too
        nested: Any = "x"
        for _ in range(min(depth, 400)):
            nested = {"A": [nested]}
        return compact(self.signed(self.command("UPDATE_CONFIG", {**self.pipeline(), "FZ_NESTED": nested})))

    def path_names(self) -> bytes:
        """Owner-signed, fresh: pipeline names that would reach outside the pipelines folder."""
        name = self.rng.choice(["../../config_startup", "../../_data/e2", "../streams/keep", "/etc/passwd", "..",
                                ".", "keep/../keep", "../box_configuration/config_app", "Z" * 20_000])  # fmt: skip
        action = self.rng.choice(["DELETE_CONFIG", "ARCHIVE_CONFIG", "UPDATE_CONFIG"])
        payload: Any = name if action != "UPDATE_CONFIG" else {**KEEP, "NAME": name}
        return compact(self.signed(self.command(action, payload)))

    def huge(self) -> bytes:
        filler = "A" * 1_200_000
        return compact(self.signed(self.command("UPDATE_CONFIG", {**self.pipeline(), "FZ_FILL": filler})))

    def messages(self, count: int) -> Iterator[tuple[str, bytes]]:
        names = list(self.kinds)
        huge_at = set(self.rng.sample(range(count), min(HUGE_MESSAGES, count)))
        for i in range(count):
            if i in huge_at:
                yield "huge", self.huge()
            else:
                name = names[i % len(names)]
                yield name, self.kinds[name]()


class Blaster:
    """A bare paho client publishing raw bytes at QoS 1 and waiting for the broker's acknowledgements."""

    def __init__(self, port: int):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzzer", clean_session=True)
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish_all(self, topic: str, messages: list[bytes]) -> None:
        infos = [self.client.publish(topic, data, qos=1) for data in messages]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published(), "the broker did not acknowledge a fuzz message"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def commands_seen(runner: NodeRunner) -> dict[str, Any]:
    return ((runner.info() or {}).get("comms") or {}).get("commands") or {}


PROTECTED = ("config_startup.json", "authorized_addrs", "_data/e2.pem", "_data/box_configuration/config_app.txt")


def state(runner: NodeRunner) -> tuple[list[str], dict[str, bytes], dict[str, bytes | None]]:
    """What no fuzz message may change: running pipelines, the persisted configs, the node's own files."""
    info = runner.info() or {}
    streams = runner.cache / "_data" / "box_configuration" / "streams"
    own = {name: (runner.cache / name).read_bytes() if (runner.cache / name).exists() else None for name in PROTECTED}
    return (
        sorted(p["name"] for p in info.get("pipelines", [])),
        {p.name: p.read_bytes() for p in streams.glob("*")},
        own,
    )


@pytest.fixture
def fuzz_node(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[NodeRunner]:
    config = {"DEMO_PIPELINE": False, "PIPELINES": [KEEP], "SECONDS_LOCAL_INFO": 0.2, "SECONDS_HEARTBEAT": 1}
    runner = NodeRunner(tmp_path / "work", base_env(tmp_path / "work" / "cache", **mosquitto.env), config)
    runner.start()
    try:
        yield runner
    finally:
        runner.cleanup()


def test_fuzzed_commands_are_all_rejected(fuzz_node: NodeRunner, mosquitto: Mosquitto, tmp_path: Path) -> None:
    runner = fuzz_node
    info = runner.wait_running(lambda i: bool((i.get("comms") or {}).get("connected")))
    node_address = info["address"]
    owner = load_client_identity(tmp_path / "owner.pem")
    strangers = [load_client_identity(tmp_path / f"stranger{i}.pem") for i in range(3)]
    assert main_add_allowed(["--cache-dir", str(runner.cache), owner.address, "owner"]) == 0

    client = EdgeClient(owner, port=mosquitto.port, channels=("heartbeats", "notifications")).connect()
    notes: list[Received] = []
    lock = threading.Lock()

    def collect(r: Received) -> bool:
        if r.channel == "notifications" and r.sender == node_address:
            with lock:
                notes.append(r)
        return False

    listener = client.listen(collect)
    blaster = Blaster(mosquitto.port)
    try:
        deployed = client.deploy(node_address, BASE, timeout=20)
        assert deployed.ok, deployed.reason
        runner.wait_running(lambda i: "base" in [p["name"] for p in i["pipelines"]])
        before = state(runner)
        # the node counts the command once its handler and the edge_command_received hook ran: wait for it
        baseline = wait_for(lambda: commands_seen(runner).get("accepted") and commands_seen(runner), timeout=20)
        assert baseline["accepted"] == 1 and baseline["rejected"] == 0, baseline
        # the deploy's notifications (pipeline applied, instance configured) arrive before the fuzz starts
        wait_for(lambda: {PIPELINE_OK, PLUGIN_CONFIG_OK} <= {n.code for n in list(notes)}, timeout=10)
        with lock:
            notes.clear()
        rss_before = rss_bytes(runner.proc.pid)

        fuzzer = Fuzzer(random.Random(SEED), node_address, owner, strangers, deployed.command)
        topic = client.command_topic(node_address)
        kinds: Counter[str] = Counter()
        stream = fuzzer.messages(FUZZ_COUNT)
        made = 0.0

        def next_chunk() -> list[bytes]:
            nonlocal made
            begun = time.monotonic()
            chunk = []
            for kind, data in itertools.islice(stream, CHUNK):
                kinds[kind] += 1
                chunk.append(data)
            made += time.monotonic() - begun
            return chunk

        sent, started = 0, time.monotonic()
        rss_half = 0
        chunk = next_chunk()
        while chunk:
            blaster.publish_all(topic, chunk)
            sent += len(chunk)
            chunk = next_chunk()  # made while the node (another process) handles the previous chunk
            wait_counted(runner, baseline["received"] + sent)
            if not rss_half and sent >= FUZZ_COUNT // 2:
                rss_half = rss_bytes(runner.proc.pid)
        elapsed = time.monotonic() - started

        # the last rejections' notifications: each rejection is notified once or counted as not notified
        def all_notified() -> bool:
            seen = commands_seen(runner)
            handled = bool(seen) and seen["rejected"] >= seen["received"] - 1  # every message but the deploy
            return handled and len(notes) >= seen["rejected"] - seen["rejections_not_notified"]

        wait_for(all_notified, timeout=30)
        after = commands_seen(runner)
        rss_after = rss_bytes(runner.proc.pid)
        print(f"\nfuzz: {sent} messages (seed {SEED}) made in {made:.1f} s, published and handled in {elapsed:.1f} s "
              f"({sent / elapsed:.0f}/s); kinds {dict(kinds)}")  # fmt: skip
        print(f"fuzz: node counters {json.dumps({k: v for k, v in after.items() if k != 'reasons'})}")
        print(f"fuzz: node RSS {rss_before / 2**20:.1f} MB before, {rss_half / 2**20:.1f} MB half-way, "
              f"{rss_after / 2**20:.1f} MB after; {len(after['reasons'])} reason keys")  # fmt: skip

        # none accepted, nothing changed
        assert after["accepted"] == 1, after
        assert after["received"] + after["dropped"] == baseline["received"] + sent
        assert after["rejected"] == after["received"] - 1, "a message was neither accepted nor rejected (crashed?)"
        assert state(runner) == before
        with lock:
            codes = Counter(n.code for n in notes)
        assert not [c for c in codes if c is not None and c > 0], codes
        # rejections are notified within the per-sender budget (owner, unverified, 3 strangers), the rest counted
        assert sum(codes.values()) <= NOTIFICATIONS_PER_SECOND * 5 * (elapsed + 2), codes
        assert after["rejections_not_notified"] > 0
        assert len(after["reasons"]) <= 200, "rejection reasons are keyed by attacker-controlled text"

        # alive: still heartbeating with the counters, and memory bounded
        with client.listen(lambda r: r.channel == "heartbeats" and r.sender == node_address) as beats:
            beat = beats.get(5)
            beat = beats.get(5) or beat  # one sent after the fuzz
        assert beat is not None and beat.verified
        stats = beat.data["COMM_STATS"]
        assert stats["commands_accepted"] == 1 and stats["commands_rejected"] >= after["rejected"] - 1
        assert runner.proc.poll() is None
        assert rss_after - rss_before < RSS_GROWTH_LIMIT, (rss_before, rss_after)
        output = runner.output()
        assert "Traceback" not in output and "command handling failed" not in output, output[-5000:]
        longest = max(len(line) for line in output.splitlines())
        assert longest < 5000, f"a log line of {longest} characters (attacker-sized text in a reason)"
    finally:
        listener.close()
        blaster.close()
        client.close()


def wait_counted(runner: NodeRunner, total: int, timeout: float = 60.0) -> None:
    """Wait until the node has counted ``total`` command messages (received or dropped)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = commands_seen(runner)
        if seen and seen["received"] + seen["dropped"] >= total:
            return
        assert runner.proc is not None and runner.proc.poll() is None, runner.output()[-5000:]
        assert time.monotonic() < deadline, f"the node counted {seen} of {total} messages"
        time.sleep(0.05)
