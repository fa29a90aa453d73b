"""Signatures and encryption against Ratio1's official SDK (recorded vectors; the SDK itself is not needed).

``tests/fixtures/ratio1_sdk_vectors.json`` is made by ``tests/fixtures/make_ratio1_vectors.py`` (see there to
regenerate it): messages the SDK signed and encrypted, the SDK's canonical text of tricky inputs, and the SDK's
verdict on messages this engine signed and encrypted.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import random
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import coincurve
import numpy as np
import pytest
from coincurve.utils import GROUP_ORDER_INT
from conftest import load_module

from edge_engine.comms import crypto, signing
from edge_engine.local.identity import Identity, identity_from_private_key

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VECTORS = json.loads((FIXTURES / "ratio1_sdk_vectors.json").read_text(encoding="utf-8"))
SDK_SIGNED = VECTORS["sdk_signed"]
# canon used by each kind of SDK vector (unversioned messages signed with legacy floats verify as v1)
KIND_CANON = {"v2": "v2", "v2-encrypted": "v2", "v1": "v1", "unversioned": "unversioned", "no-hash": "v2"}
KIND_CANON["unversioned-legacy"] = "v1"


def _identity(pem: str) -> Identity:
    return identity_from_private_key(coincurve.PrivateKey.from_pem(pem.encode()))


NODE = _identity(VECTORS["node_key_pem"])
SDK = _identity(VECTORS["sdk_key_pem"])


def _load_generator() -> Any:
    return load_module(FIXTURES / "make_ratio1_vectors.py")


def _message(vector: dict[str, Any]) -> dict[str, Any]:
    return json.loads(vector["wire"])


def _is_high_s(message: dict[str, Any]) -> bool:
    _, s = signing._parse_der(base64.urlsafe_b64decode(message["EE_SIGN"]))
    return s > GROUP_ORDER_INT // 2


# --- the fixture itself ----------------------------------------------------------------------------


def test_fixture_holds_enough_vectors() -> None:
    assert VECTORS["sdk_address"] == SDK.address and VECTORS["node_address"] == NODE.address
    assert len(SDK_SIGNED) >= 30
    assert {v["kind"] for v in SDK_SIGNED} == set(KIND_CANON)
    assert {v["eth_enabled"] for v in SDK_SIGNED} == {True, False}
    assert len(VECTORS["sdk_encrypted"]) >= 5
    assert {"single", "single-uncompressed", "multi"} <= {v["format"] for v in VECTORS["sdk_encrypted"]}
    assert len(VECTORS["ours_verified_by_sdk"]) >= 10


# --- SDK → us: signatures --------------------------------------------------------------------------


@pytest.mark.parametrize("vector", SDK_SIGNED, ids=lambda v: v["kind"])
def test_verify_accepts_sdk_signed_message(vector: dict[str, Any]) -> None:
    message = _message(vector)
    result = signing.verify(message)
    assert result.ok, result.reason
    assert result.sender == SDK.address
    assert result.canon == KIND_CANON[vector["kind"]]
    assert signing.verify(message, eth_enabled=vector["eth_enabled"]).ok


def test_about_half_of_the_sdk_signatures_are_high_s() -> None:
    """OpenSSL signs high-S about half the time; libsecp256k1 alone rejects those, our verify normalises them."""
    high = [v for v in SDK_SIGNED if _is_high_s(_message(v))]
    print(f"high-S SDK signatures: {len(high)}/{len(SDK_SIGNED)}")
    assert 0.25 * len(SDK_SIGNED) < len(high) < 0.75 * len(SDK_SIGNED)
    for vector in high:
        message = _message(vector)
        raw = base64.urlsafe_b64decode(message["EE_SIGN"])
        digest = bytes.fromhex(message["EE_HASH"]) if message.get("EE_HASH") else None
        if digest is not None:
            key = signing.public_key_from_address(message["EE_SENDER"])
            assert not key.verify(raw, digest)  # the trap
            assert key.verify(signing.low_s_der(raw), digest)
        assert signing.verify(message).ok


@pytest.mark.parametrize("vector", [v for v in SDK_SIGNED if v["kind"] != "no-hash"], ids=lambda v: v["kind"])
def test_compute_hash_reproduces_sdk_hash(vector: dict[str, Any]) -> None:
    message = _message(vector)
    canon = KIND_CANON[vector["kind"]]
    assert signing.compute_hash(message, vector["eth_enabled"], canon) == message["EE_HASH"]


def test_canonical_json_matches_sdk_on_tricky_inputs() -> None:
    """NaN/Inf, numpy, datetime, tuples, non-str keys, excluded fields, legacy floats: same text as the SDK."""
    cases = _load_generator().tricky_inputs()
    expected = VECTORS["sdk_canonical"]
    assert len(cases) == len(expected) >= 40
    for (version, eth, data), sdk in zip(cases, expected, strict=True):
        assert (version, eth) == (sdk["version"], sdk["eth_enabled"])
        assert signing.canonical_json(data, eth, version) == sdk["text"]


def _tamper(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, 0]
    return {**value, "EXTRA": 1}


@pytest.mark.parametrize("vector", [v for v in SDK_SIGNED if v["kind"].startswith("v2")][:12], ids=lambda v: v["kind"])
def test_tampering_any_field_breaks_verification(vector: dict[str, Any]) -> None:
    original = _message(vector)
    skip = {"EE_SIGN", "EE_SENDER", "EE_HASH", "SIGN_CANON_V"}
    if vector["eth_enabled"]:  # not covered by an eth-enabled signature (Ratio1's rule)
        skip |= {"EE_ETH_SENDER", "EE_ETH_SIGN"}
    for key in original:
        if key in skip:
            continue
        message = copy.deepcopy(original)
        message[key] = _tamper(message[key])
        assert signing.verify(message).reason == "hash mismatch", key
        # a forger who also fixes EE_HASH still lacks the key
        message["EE_HASH"] = signing.compute_hash(message, vector["eth_enabled"], message.get("SIGN_CANON_V", "v2"))
        assert signing.verify(message).reason == "bad signature", key
    message = copy.deepcopy(original)
    message["NEW_FIELD"] = 1
    assert not signing.verify(message).ok
    if isinstance(original.get("PAYLOAD"), dict):
        message = copy.deepcopy(original)
        message["PAYLOAD"]["NAME"] = "other"
        assert not signing.verify(message).ok
    message = copy.deepcopy(original)
    message["SIGN_CANON_V"] = "v1"
    assert not signing.verify(message).ok


def test_another_sender_fails() -> None:
    message = _message(SDK_SIGNED[0])
    message["EE_SENDER"] = NODE.address
    result = signing.verify(message)
    assert not result.ok and result.reason == "bad signature" and result.sender == NODE.address


def test_verify_reasons() -> None:
    good = _message(SDK_SIGNED[0])
    assert signing.verify({"A": 1}).reason == "missing signature fields"
    assert signing.verify({**good, "EE_SENDER": "0xai_short"}).reason.startswith("malformed sender address")
    assert signing.verify({**good, "EE_SIGN": "not-a-signature"}).reason.startswith("malformed signature")
    assert signing.verify({**good, "SIGN_CANON_V": "v9"}).reason == "unknown canon version 'v9'"
    old_prefix = {**good, "EE_SENDER": "aixp_" + good["EE_SENDER"][5:]}
    assert signing.verify(old_prefix).ok
    unpadded = {**good, "EE_SIGN": good["EE_SIGN"].rstrip("=")}
    assert signing.verify(unpadded).ok


# --- us → SDK: signatures (recorded verdicts of the SDK's verify) -----------------------------------


def test_sdk_accepted_our_signatures() -> None:
    results = VECTORS["ours_verified_by_sdk"]
    for item in results:
        verdicts = item["sdk_verify"]
        assert verdicts["sdk_eth"]["valid"], verdicts
        # signed without eth: no EE_ETH_* fields, so an SDK that is not eth-enabled accepts it too
        assert verdicts["sdk_noeth"]["valid"] == (not item["eth_enabled"]), verdicts
        message = json.loads(item["wire"])
        assert message["EE_SENDER"] == NODE.address
        assert signing.verify(message, eth_enabled=item["eth_enabled"]).ok
        assert signing.verify(message).ok


def test_sign_adds_ratio1_fields() -> None:
    message = signing.sign({"ACTION": "STATUS", "PAYLOAD": None}, NODE)
    assert message["SIGN_CANON_V"] == "v2" and message["EE_SENDER"] == NODE.address
    assert message["EE_HASH"] == signing.compute_hash(message)
    assert "EE_ETH_SENDER" not in message
    eth = signing.sign({"ACTION": "STATUS"}, NODE, eth_enabled=True)
    assert eth["EE_ETH_SENDER"] == NODE.eth_address and eth["EE_ETH_SIGN"] == "0xBEEF"
    assert signing.verify(eth, eth_enabled=True).ok
    assert signing.verify(eth, eth_enabled=False).reason == "hash mismatch"
    assert signing.verify(eth).ok  # auto: tries eth-enabled hashing first


def test_our_signatures_are_low_s() -> None:
    for index in range(50):
        assert not _is_high_s(signing.sign({"N": index}, NODE))


def test_sign_to_json_is_the_signed_message() -> None:
    data = {"B": [1.5, float("nan")], "A": np.float32(0.25), "T": (1, 2), "é": datetime(2026, 1, 2, 3, 4, 5)}
    for eth in (False, True):
        wire = signing.sign_to_json(dict(data), NODE, eth_enabled=eth)
        message = json.loads(wire)
        assert message["B"] == [1.5, None] and message["A"] == 0.25 and message["é"] == "2026-01-02 03:04:05"
        assert signing.verify(message, eth_enabled=eth).ok
        assert message["EE_HASH"] == hashlib.sha256(signing.canonical_json(message, eth).encode()).hexdigest()


def test_seal_of_the_text_to_sign_is_sign_to_json() -> None:
    """A message stored as its text to sign and signed later (the durable outbox) gets sign_to_json's bytes."""
    data = {"B": [1.5, float("nan")], "A": np.float32(0.25), "T": (1, 2), "é": datetime(2026, 1, 2, 3, 4, 5)}
    for eth in (False, True):
        text = signing.text_to_sign(dict(data), eth_enabled=eth).encode()
        wire = signing.seal(text, NODE, eth_enabled=eth)
        assert wire == signing.sign_to_json(dict(data), NODE, eth_enabled=eth).encode()
        assert signing.verify(json.loads(wire), eth_enabled=eth).ok
        assert len(wire) <= len(text) + signing.SEAL_MAX_EXTRA + len(NODE.address) + (0 if not eth else 200)


# --- encryption ------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["sdk_encrypted"], ids=lambda v: v["format"])
def test_decrypt_sdk_encrypted(vector: dict[str, Any]) -> None:
    assert crypto.decrypt(vector["data"], NODE, SDK.address) == vector["plaintext"]


def test_sdk_decrypted_ours() -> None:
    results = VECTORS["ours_decrypted_by_sdk"]
    assert {"single", "multi"} == {item["format"] for item in results}
    assert all(item["sdk_ok"] for item in results)


def test_ecdh_secret_is_the_raw_x_coordinate() -> None:
    """Both sides derive the same key; it is HKDF of the raw x coordinate, not libsecp256k1's hashed ECDH."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    assert crypto.shared_key(NODE, SDK.address) == crypto.shared_key(SDK, NODE.address)
    ossl = ec.derive_private_key(NODE.private_key.to_int(), ec.SECP256K1())
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), SDK.public_key)
    expected = HKDF(hashes.SHA256(), 32, None, b"0xai handshake data").derive(ossl.exchange(ec.ECDH(), peer))
    assert crypto.shared_key(NODE, SDK.address) == expected
    assert NODE.private_key.ecdh(SDK.public_key) != ossl.exchange(ec.ECDH(), peer)


def _new_identity() -> Identity:
    return identity_from_private_key(coincurve.PrivateKey())


@pytest.mark.parametrize("compress", [True, False])
def test_roundtrip_single(compress: bool) -> None:
    alice, bob, eve = _new_identity(), _new_identity(), _new_identity()
    text = json.dumps({"ACTION": "UPDATE_CONFIG", "PAYLOAD": {"NAME": "ünïcode 🚀", "X": list(range(100))}})
    data = crypto.encrypt_for(text, alice, bob.address, compress=compress)
    assert base64.b64decode(data)[12] == (1 if compress else 0)
    assert crypto.decrypt(data, bob, alice.address) == text
    with pytest.raises(crypto.DecryptError, match="authentication failed"):
        crypto.decrypt(data, eve, alice.address)
    with pytest.raises(crypto.DecryptError, match="authentication failed"):
        crypto.decrypt(data, bob, eve.address)
    raw = bytearray(base64.b64decode(data))
    raw[-1] ^= 1
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(base64.b64encode(bytes(raw)).decode(), bob, alice.address)


def test_roundtrip_multi() -> None:
    alice, bob, carol, eve = _new_identity(), _new_identity(), _new_identity(), _new_identity()
    text = "multi ✓ " * 50
    data = crypto.encrypt_for_multi(text, alice, [bob.address, carol.address[5:]])  # a bare address gets 0xai_
    package = json.loads(__import__("zlib").decompress(base64.b64decode(data)))
    assert package["M"] is True and package["c"] == "01"
    assert [entry["a"] for entry in package["k"]] == [bob.address, carol.address]
    assert all(len(bytes.fromhex(entry["k"])) == 12 + 32 + 16 for entry in package["k"])
    assert crypto.decrypt(data, bob, alice.address) == text
    assert crypto.decrypt(data, carol, alice.address) == text
    with pytest.raises(crypto.DecryptError, match="not among the receivers"):
        crypto.decrypt(data, eve, alice.address)
    with pytest.raises(crypto.DecryptError, match="authentication failed"):
        crypto.decrypt(data, bob, eve.address)


def test_decrypt_rejects_garbage() -> None:
    with pytest.raises(crypto.DecryptError, match="base64"):
        crypto.decrypt("abc", NODE, SDK.address)
    with pytest.raises(crypto.DecryptError, match="too short"):
        crypto.decrypt(base64.b64encode(b"short").decode(), NODE, SDK.address)
    with pytest.raises(crypto.DecryptError, match="malformed sender"):
        crypto.decrypt(VECTORS["sdk_encrypted"][0]["data"], NODE, "0xai_nope")


def test_crypto_imports_cryptography_lazily() -> None:
    code = "import sys, edge_engine.comms.crypto; print('cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the fast path equals the literal recipe --------------------------------------------------------

FLOATS = [0.1, 0.2, 0.3, 1e-7, 1e21, 1e22, 1e16, 1e15, -0.0, 0.0, 1.0, 5e-324, 1.7976931348623157e308, 2.5, 1 / 3]
TEXTS = ["", "a", "Zürich", "日本語", "🚀", '"', "\\", "\n\t\r", "\u2028", "\x00\x1f", "ключ", "é" * 40]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(FLOATS)
    if kind == 1:
        return rng.uniform(-1e9, 1e9) * 10 ** rng.randrange(-30, 30)
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**64) - 1, 10**40, rng.randrange(-(10**12), 10**12)])
    if kind == 3:
        return rng.choice(TEXTS) + str(rng.randrange(10))
    if kind == 4:
        return rng.choice([True, False, None])
    if kind == 5:
        return struct_float(rng)
    if kind in (6, 7):
        return {rng.choice(TEXTS) + rng.choice("aAzZ09_") + str(rng.randrange(99)): _random_value(rng, depth + 1)
                for _ in range(rng.randrange(0, 6))}  # fmt: skip
    if kind == 8:
        return tuple(_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4)))
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]


def struct_float(rng: random.Random) -> float:
    """Any finite double, from random bits."""
    while True:
        value = __import__("struct").unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            return value


def literal_recipe(data: dict[str, Any]) -> str:
    """Ratio1's recipe as written: NaN/Inf→null, numpy→Python, datetime→text; compact dump, load, sorted dump."""

    def plain(obj: Any) -> Any:
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {key: plain(value) for key, value in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [plain(item) for item in obj]
        if isinstance(obj, np.ndarray):
            return plain(obj.tolist())
        if isinstance(obj, np.generic):
            return plain(obj.item())
        if isinstance(obj, datetime):
            return obj.strftime("%Y-%m-%d %H:%M:%S")
        return obj

    text = json.dumps(plain(data), separators=(",", ":"), ensure_ascii=False)
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_fast_path_equals_literal_recipe() -> None:
    rng = random.Random(20261123)
    fast = 0
    for _ in range(3000):
        data = {rng.choice(TEXTS) + str(rng.randrange(40)): _random_value(rng) for _ in range(rng.randrange(1, 12))}
        fields = signing._hashed_fields(data, False, "v2")
        expected = literal_recipe(fields)
        assert signing._recipe(fields, signing._float_v2) == expected
        assert signing.canonical_json(data) == expected
        if signing._only_str_keys(fields):
            fast += 1
            assert signing._fast_encode(fields) == expected
    assert fast == 3000  # all plain: the fast path served every one


def test_non_plain_data_takes_the_recipe() -> None:
    rng = random.Random(5)
    for index in range(500):
        data: dict[Any, Any] = {"K" + str(i): _random_value(rng) for i in range(rng.randrange(1, 6))}
        extra: list[tuple[Any, Any]] = [
            (rng.randrange(20), "int key"),
            ("N", float(rng.choice(["nan", "inf", "-inf"]))),
            ("NP", np.float32(rng.random())),
            ("ARR", np.arange(4) / 3),
            ("D", datetime(2026, 1, 1, 0, 0, index % 60)),
            ("DEEP", [{"x": {1: "nested int key"}}]),
        ]
        data.update(rng.sample(extra, rng.randrange(1, 4)))
        assert signing.canonical_json(data) == literal_recipe(signing._hashed_fields(data, False, "v2"))


def test_sign_does_not_change_data_values() -> None:
    data = {"N": float("nan"), "T": (1, 2), "NP": np.int64(3)}
    signed = signing.sign(dict(data), NODE)
    assert math.isnan(signed["N"]) and signed["T"] == (1, 2) and signed["NP"] == 3
    assert signing.verify(json.loads(json.dumps({**signed, "NP": 3}))).ok


def test_verify_survives_absurd_nesting() -> None:
    message = signing.sign({"A": 1}, NODE)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    message["A"] = deep
    result = signing.verify(message)
    assert not result.ok and result.reason.startswith("unserializable data")


class _Dict(dict[str, Any]):
    pass


class _List(list[Any]):
    pass


@pytest.mark.parametrize(
    ("data", "plain"),
    [
        ({"A": 1, "B": [1, "x", None, 2.5, True]}, True),
        ({"A": [1, {"B": {"C": [{"D": 1}]}}]}, True),
        ({"A": [[[[{3: 1}]]]]}, False),  # an int key deep down
        ({"A": (1, [{"B": 1}], {"C": {None: 1}})}, False),
        ({"A": _Dict()}, False),  # subclasses go to the recipe
        ({"A": [1, (_List(),)]}, False),
        ({"A": np.float32(1.0), "B": datetime(2026, 1, 1)}, True),  # not containers: the encoder refuses them
        ({}, True),
    ],
)
def test_only_str_keys_looks_into_every_container(data: dict[str, Any], plain: bool) -> None:
    assert signing._only_str_keys(data) is plain


def test_a_message_being_signed_hashes_like_its_copy() -> None:
    rng = random.Random(38)
    for _ in range(200):
        data = {"K" + str(i): _random_value(rng) for i in range(rng.randrange(1, 10))}
        data[signing.SIGN_CANON_V] = signing.CANON_V2  # as _sign_canonical sets it: hashed as the data itself
        copied = {k: v for k, v in data.items() if k != signing.SIGN_CANON_V}
        assert signing.canonical_json(data) == literal_recipe({**copied, signing.SIGN_CANON_V: "v2"})
        eth = {**data, signing.ETH_SENDER: "0xabc"}
        assert json.loads(signing.canonical_json(eth, eth_enabled=True)) == json.loads(signing.canonical_json(data))


def test_envelope_timestamps_match_ratio1_timestamp() -> None:
    from edge_engine.comms.envelope import _SecondLabels, ratio1_timestamp

    labels = _SecondLabels()
    rng = random.Random(7)
    base = 1_790_000_000.0
    stamps = [base + rng.uniform(0, 3 * 86400) for _ in range(20_000)]
    stamps += [base + 0.9999995, base + 0.9999994, base + 5.0000005, base + 5.0000015, base, base + 59.999999]
    stamps.sort()  # the cache's common case: time moving forward; then out of order
    for ts in stamps + stamps[::-7]:
        assert labels(ts) == ratio1_timestamp(ts), ts


def test_envelope_message_ids_are_random_uuid4() -> None:
    import threading
    import uuid

    from edge_engine.comms.envelope import MessageIds

    ids = MessageIds()
    found: list[str] = []

    def draw() -> None:
        found.extend(ids() for _ in range(2000))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == len(found) == 8000
    for text in found:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
