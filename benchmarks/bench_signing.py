"""Cost per message of Ratio1-compatible signing, verification and encryption (:mod:`edge_engine.comms`).

Two typical messages: a ~300-byte business payload (envelope fields + a few values) and a ~3 KB one (nested
lists and dicts, floats, non-ASCII text). For each, the median over ``--repeat`` runs of ``--number`` calls:

* ``canonical``: the canonical JSON only (fast path); ``recipe``: the literal three-step recipe with the standard
  ``json`` module (dump, load, sorted dump), for comparison;
* ``sign``: :func:`sign` on a fresh copy, then ``json.dumps`` of the result (what a publisher would do);
* ``sign_to_json``: signed and serialised in one go (the canonical text is reused as the wire text);
* ``naive``: literal recipe + sha256 + sign + ``json.dumps`` (the straightforward path of DECISIONS 21);
* ``text_to_sign`` and ``seal``: ``sign_to_json`` in its two halves, as the durable outbox splits it (the producer
  stores the text to sign, the publisher seals it into the same bytes);
* ``sign only``: the ECDSA signature of a 32-byte digest alone (libsecp256k1 through coincurve);
* ``verify``: :func:`verify` of the parsed message (our low-S signature) and of an OpenSSL high-S one;
* ``encrypt``/``decrypt``: single-receiver encryption of the message text (shared key cached).

    .venv/bin/python benchmarks/bench_signing.py [--number 2000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import coincurve
from _results import record
from coincurve.utils import GROUP_ORDER_INT

from edge_engine.comms import crypto, signing
from edge_engine.local.identity import identity_from_private_key


def small_message() -> dict[str, Any]:
    return {
        "EE_ID": "edge-7f3a",
        "EE_EVENT_TYPE": "PAYLOAD",
        "EE_PAYLOAD_PATH": ["edge-7f3a", "gate", "PEOPLE_COUNTER", "door"],
        "EE_MESSAGE_SEQ": 123456,
        "EE_TIMESTAMP": "2026-11-23 14:35:21.477674",
        "COUNT": 3,
        "SCORE": 0.8731,
        "IS_ALERT": False,
        "LABEL": "entrée",
    }


def large_message() -> dict[str, Any]:
    message = small_message()
    message["DETECTIONS"] = [
        {"TLBR_POS": [12.5 * i, 40.25, 180.0 + i, 320.75], "PROB_PRC": 0.91 - i / 100, "TYPE": "person", "ID": i}
        for i in range(20)
    ]
    message["STATS"] = {f"METRIC_{i}": {"MEAN": i / 7, "MAX": i * 1.5, "TAGS": ["a", "ß"]} for i in range(8)}
    return message


def measure(func: Callable[[], Any], number: int, repeat: int) -> float:
    """Median µs per call."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            func()
        runs.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(runs)


def high_s_copy(message: dict[str, Any]) -> dict[str, Any]:
    """The same signed message with S replaced by n − S (what OpenSSL produces about half the time)."""
    r, s = signing._parse_der(base64.urlsafe_b64decode(message["EE_SIGN"]))
    body = signing._der_integer(r) + signing._der_integer(GROUP_ORDER_INT - s)
    der = b"\x30" + bytes([len(body)]) + body
    return {**message, "EE_SIGN": base64.urlsafe_b64encode(der).decode()}


def stdlib_recipe(fields: dict[str, Any]) -> str:
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def naive_sign(data: dict[str, Any], identity: Any) -> str:
    data["SIGN_CANON_V"] = "v2"
    text = stdlib_recipe(signing._hashed_fields(data, False, "v2"))
    digest = hashlib.sha256(text.encode()).digest()
    data["EE_SIGN"] = base64.urlsafe_b64encode(identity.private_key.sign(digest)).decode()
    data["EE_SENDER"] = identity.address
    data["EE_HASH"] = digest.hex()
    return json.dumps(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    node = identity_from_private_key(coincurve.PrivateKey())
    peer = identity_from_private_key(coincurve.PrivateKey())

    print(f"{'message':>8} {'bytes':>6} | " + " | ".join(f"{h:>12}" for h in COLUMNS) + "   (µs/message)")
    for name, template in (("small", small_message()), ("large", large_message())):
        size, results = bench_message(template, node, peer, args.number, args.repeat)
        print(f"{name:>8} {size:>6} | " + " | ".join(f"{results[h]:>12.1f}" for h in COLUMNS))
        record(f"sign_to_json, {name} message ({size} B)", round(results["sign_to_json"], 1), "µs",
               baseline=round(results["naive"], 1), baseline_name="naive recipe")  # fmt: skip
        for column in ("verify", "encrypt", "decrypt"):
            record(f"{column}, {name} message ({size} B)", round(results[column], 1), "µs")


def bench_message(template: dict[str, Any], node: Any, peer: Any, n: int, r: int) -> tuple[int, dict[str, float]]:
    """Wire size of the signed message and µs per call of each operation."""
    wire = signing.sign_to_json(copy.deepcopy(template), node)
    received = json.loads(wire)
    high = high_s_copy(received)
    assert signing.verify(received).ok and signing.verify(high).ok
    encrypted = crypto.encrypt_for(wire, node, peer.address)
    fields = signing._hashed_fields(template, False, "v2")
    digest = hashlib.sha256(wire.encode()).digest()
    text = signing.text_to_sign(dict(template)).encode()
    assert signing.seal(text, node) == wire.encode()
    results = {
        "canonical": measure(lambda: signing.canonical_json(template), n, r),
        "recipe": measure(lambda: stdlib_recipe(fields), n, r),
        "sign+dumps": measure(lambda: json.dumps(signing.sign(dict(template), node)), n, r),
        "sign_to_json": measure(lambda: signing.sign_to_json(dict(template), node), n, r),
        "naive": measure(lambda: naive_sign(dict(template), node), n, r),
        "text_to_sign": measure(lambda: signing.text_to_sign(dict(template)), n, r),
        "seal": measure(lambda: signing.seal(text, node), n, r),
        "sign only": measure(lambda: node.private_key.sign(digest), n, r),
        "verify": measure(lambda: signing.verify(received), n, r),
        "verify high-S": measure(lambda: signing.verify(high), n, r),
        "encrypt": measure(lambda: crypto.encrypt_for(wire, node, peer.address), n, r),
        "decrypt": measure(lambda: crypto.decrypt(encrypted, peer, node.address), n, r),
    }
    return len(wire.encode()), results


COLUMNS = [
    "canonical",
    "recipe",
    "sign+dumps",
    "sign_to_json",
    "naive",
    "text_to_sign",
    "seal",
    "sign only",
    "verify",
    "verify high-S",
    "encrypt",
    "decrypt",
]

if __name__ == "__main__":
    main()
