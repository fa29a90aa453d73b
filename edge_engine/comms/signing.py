"""Canonical hashing and ECDSA signatures of messages, compatible with Ratio1's ``ratio1`` SDK (canon v2).

A message is signed over its *data fields*: everything except ``EE_SIGN``, ``EE_SENDER``, ``EE_HASH`` and
``SIGN_CANON_V`` (and ``EE_ETH_SIGN``/``EE_ETH_SENDER`` when the signer is eth-enabled; otherwise those two are
hashed like data). Canon v2 puts ``SIGN_CANON_V: "v2"`` back into the hashed dict. The canonical text is Ratio1's
recipe: compact JSON (``ensure_ascii=False``, floats as ``float.__repr__``, NaN/Inf as ``null``, numpy values as
Python values, ``datetime`` as ``%Y-%m-%d %H:%M:%S``), parsed back, dumped again with sorted keys.
``EE_HASH`` is the SHA-256 hex of its UTF-8 bytes and ``EE_SIGN`` the urlsafe base64 of a DER ECDSA signature
over the 32 raw digest bytes, hashed once more with SHA-256 inside ECDSA (as the SDK does).

Speed: for plain JSON data (str keys; str, int, float, bool, None, list, tuple, dict values; finite floats) one
sorted compact ``json`` dump gives exactly the recipe's text, since such data survives the JSON round trip
unchanged; anything else (numpy, datetime, NaN, non-str keys, subclasses of dict/list) takes the literal recipe.

Verification accepts libsecp256k1's low-S and OpenSSL's high-S signatures (S is normalised to n − S before
verifying: the SDK's signatures are high-S about half the time). Messages without ``SIGN_CANON_V`` (older SDKs)
are tried as v2 without the field, then as legacy v1: v1 formats each float as ``repr`` with trailing ``0`` then
``.`` stripped when the text contains a ``.`` (``1.0`` → ``1``; as in Ratio1's v1 the exponent loses its zeros
too, ``1.5e+20`` → ``1.5e+2``, which parses back as 150.0 and prints as ``150``), in both dumps of the recipe.
Messages without ``EE_HASH`` carry a signature over the canonical bytes themselves.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import compress
from typing import TYPE_CHECKING, Any

import coincurve
from coincurve.utils import GROUP_ORDER_INT

from edge_engine.constants import ADDRESS_PREFIX

if TYPE_CHECKING:
    from edge_engine.local.identity import Identity

LEGACY_ADDRESS_PREFIX = "aixp_"

SIGN = "EE_SIGN"
SENDER = "EE_SENDER"
HASH = "EE_HASH"
SIGN_CANON_V = "SIGN_CANON_V"
ETH_SIGN = "EE_ETH_SIGN"
ETH_SENDER = "EE_ETH_SENDER"
ETH_SIGN_PLACEHOLDER = "0xBEEF"

CANON_V2 = "v2"
CANON_V1 = "v1"
CANON_UNVERSIONED = "unversioned"  # v2 float format, SIGN_CANON_V not hashed (SDKs before canon versions)

_NON_DATA = frozenset({SIGN, SENDER, HASH, SIGN_CANON_V})
_NON_DATA_ETH = _NON_DATA | {ETH_SIGN, ETH_SENDER}
_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_HALF_ORDER = GROUP_ORDER_INT // 2
_LEAF_TYPES = frozenset({str, int, float, bool, type(None)})
_CONTAINERS = (dict, list, tuple)
_PLAIN_CONTAINERS = frozenset(_CONTAINERS)
_STR_ONLY = frozenset({str})


# --- canonical JSON ------------------------------------------------------------------------------


def _reject(obj: Any) -> Any:
    raise TypeError(f"not plain JSON: {type(obj).__name__}")


# Sorted compact dump of plain data; raises on NaN/Inf and on any non-JSON type (then the recipe runs).
_fast_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"), default=_reject
).encode
_encode_str = json.JSONEncoder(ensure_ascii=False).encode


def _only_str_keys(root: dict[str, Any]) -> bool:
    """True when every dict in ``root`` is a plain dict with str keys (sorting then matches the recipe).

    Each container's key and value types are collected at C speed (``set(map(type, ...))``); only containers are
    walked into (a message's body is one flat dict with a few short lists: this check was as dear as the JSON
    dump when it looked at every value in Python)."""
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict:
            if node and not set(map(type, node)) <= _STR_ONLY:
                return False
            values: Any = node.values()
        elif kind is list or kind is tuple:
            values = node
        else:  # a dict/list subclass: leave it to the recipe
            return False
        kinds = set(map(type, values))
        if kinds <= _LEAF_TYPES:
            continue
        for other in kinds - _LEAF_TYPES - _PLAIN_CONTAINERS:
            if issubclass(other, _CONTAINERS):
                return False  # a dict/list/tuple subclass
        if not kinds.isdisjoint(_PLAIN_CONTAINERS):
            stack.extend(compress(values, map(_PLAIN_CONTAINERS.__contains__, map(type, values))))
    return True


def _float_v2(value: float) -> str:
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        return "null"
    return float.__repr__(value)


def _float_v1(value: float) -> str:
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        return "null"
    text = float.__repr__(value)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _convert(obj: Any) -> Any:
    """Ratio1's non-JSON conversions: numpy scalars and arrays to Python values, datetime to text."""
    if isinstance(obj, datetime):
        return obj.strftime(_DATETIME_FORMAT)
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _dict_key(key: Any, floatstr: Callable[[float], str]) -> str:
    """JSON text of a dict key, converted like :mod:`json` does (after Ratio1's float formatting)."""
    if isinstance(key, str):
        return key
    if isinstance(key, float):
        return floatstr(key)
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _dump(obj: Any, floatstr: Callable[[float], str], sort_keys: bool, out: list[str]) -> None:
    """Compact JSON of ``obj`` with Ratio1's float formatting and conversions, appended to ``out``."""
    if isinstance(obj, str):
        out.append(_encode_str(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, float):
        out.append(floatstr(obj))
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for index, item in enumerate(obj):
            if index:
                out.append(",")
            _dump(item, floatstr, sort_keys, out)
        out.append("]")
    elif isinstance(obj, dict):
        items = sorted(obj.items()) if sort_keys else obj.items()
        out.append("{")
        for index, (key, value) in enumerate(items):
            if index:
                out.append(",")
            out.append(_encode_str(_dict_key(key, floatstr)))
            out.append(":")
            _dump(value, floatstr, sort_keys, out)
        out.append("}")
    else:
        _dump(_convert(obj), floatstr, sort_keys, out)


def _recipe(data: dict[str, Any], floatstr: Callable[[float], str]) -> str:
    """Ratio1's recipe literally: compact dump, parse back, sorted compact dump (same float formatting)."""
    first: list[str] = []
    _dump(data, floatstr, False, first)
    second: list[str] = []
    _dump(json.loads("".join(first)), floatstr, True, second)
    return "".join(second)


def _hashed_fields(data: dict[str, Any], eth_enabled: bool, version: str) -> dict[str, Any]:
    excluded = _NON_DATA_ETH if eth_enabled else _NON_DATA
    if (
        version == CANON_V2
        and data.get(SIGN_CANON_V) == CANON_V2
        and SIGN not in data
        and HASH not in data
        and SENDER not in data
        and (not eth_enabled or (ETH_SIGN not in data and ETH_SENDER not in data))
    ):
        return data  # a message being signed: already its hashed fields (key order does not matter: sorted)
    fields = {key: value for key, value in data.items() if key not in excluded}
    if version == CANON_V2:
        fields[SIGN_CANON_V] = CANON_V2
    return fields


def canonical_json(data: dict[str, Any], eth_enabled: bool = False, version: str = CANON_V2) -> str:
    """The text that is hashed and signed for ``data`` (see the module docstring).

    ``version``: ``"v2"`` (current; hashes ``SIGN_CANON_V: "v2"``), ``"unversioned"`` (v2 floats, field not
    hashed) or ``"v1"`` (legacy floats, field not hashed). Raises TypeError for values JSON cannot represent
    (ValueError for an int too long to print, RecursionError for absurdly deep nesting).
    """
    if version not in (CANON_V2, CANON_UNVERSIONED, CANON_V1):
        raise ValueError(f"unknown signing canon version {version!r}")
    fields = _hashed_fields(data, eth_enabled, version)
    if version != CANON_V1 and _only_str_keys(fields):
        try:
            return _fast_encode(fields)
        except (TypeError, ValueError, RecursionError):
            pass  # NaN/Inf or a non-JSON value somewhere: the recipe converts them (or raises)
    return _recipe(fields, _float_v1 if version == CANON_V1 else _float_v2)


def compute_hash(data: dict[str, Any], eth_enabled: bool = False, version: str = CANON_V2) -> str:
    """``EE_HASH`` of ``data``: SHA-256 hex of its canonical JSON (UTF-8)."""
    return hashlib.sha256(canonical_json(data, eth_enabled, version).encode("utf-8")).hexdigest()


# --- signing -------------------------------------------------------------------------------------


def _sign_canonical(data: dict[str, Any], identity: Identity, eth_enabled: bool) -> str:
    """Sign ``data`` in place (canon v2) and return its canonical JSON."""
    text = text_to_sign(data, eth_enabled)
    digest_hex, data[SIGN] = _hash_and_signature(text.encode("utf-8"), identity)
    data[SENDER] = identity.address
    data[HASH] = digest_hex
    if eth_enabled:
        data[ETH_SENDER] = identity.eth_address
        data[ETH_SIGN] = ETH_SIGN_PLACEHOLDER
    return text


def text_to_sign(data: dict[str, Any], eth_enabled: bool = False) -> str:
    """The canonical JSON that signing ``data`` hashes (canon v2; sets ``SIGN_CANON_V`` in ``data``).

    :func:`seal` of its UTF-8 bytes gives exactly the bytes of :func:`sign_to_json` of ``data``: a message can be
    stored as this text and signed later (the signature is deterministic, RFC 6979)."""
    data[SIGN_CANON_V] = CANON_V2
    return canonical_json(data, eth_enabled)


SEAL_MAX_EXTRA = len(f',"{SENDER}":"","{HASH}":"","{SIGN}":""') + 64 + 96  # + the address; DER ≤ 72 B → 96 chars


def seal(text: bytes, identity: Identity, eth_enabled: bool = False) -> bytes:
    """The wire bytes of a message whose :func:`text_to_sign` (UTF-8) is ``text``: hash, ECDSA signature and the
    signature fields appended, the same bytes as :func:`sign_to_json` gives. At most ``SEAL_MAX_EXTRA`` plus the
    address's length longer than ``text`` (without eth fields)."""
    digest_hex, signature = _hash_and_signature(text, identity)
    return text[:-1] + _signature_fields(identity, digest_hex, signature, eth_enabled).encode("utf-8") + b"}"


def _hash_and_signature(text: bytes, identity: Identity) -> tuple[str, str]:
    """SHA-256 of the canonical text (hex) and the ECDSA signature over the digest bytes (low-S, URL-safe base64)."""
    digest = hashlib.sha256(text).digest()
    return digest.hex(), base64.urlsafe_b64encode(identity.private_key.sign(digest)).decode("ascii")


def _signature_fields(identity: Identity, digest_hex: str, signature: str, eth_enabled: bool) -> str:
    """The signature fields as they follow the canonical text on the wire (leading comma, no closing brace)."""
    fields = f',"{SENDER}":"{identity.address}","{HASH}":"{digest_hex}","{SIGN}":"{signature}"'
    if eth_enabled:
        fields += f',"{ETH_SENDER}":"{identity.eth_address}","{ETH_SIGN}":"{ETH_SIGN_PLACEHOLDER}"'
    return fields


def sign(data: dict[str, Any], identity: Identity, eth_enabled: bool = False) -> dict[str, Any]:
    """Sign ``data`` in place the way Ratio1 v2 does and return it.

    Adds ``SIGN_CANON_V`` (``"v2"``), ``EE_SENDER`` (``identity.address``), ``EE_HASH`` and ``EE_SIGN``; with
    ``eth_enabled`` also ``EE_ETH_SENDER`` (``identity.eth_address``) and ``EE_ETH_SIGN`` (``"0xBEEF"``), which
    are then left out of the hash. ``identity`` is an :class:`~edge_engine.local.identity.Identity`. Data values are not
    changed: a NaN stays NaN in the dict although it is hashed as ``null`` (serialise with :func:`sign_to_json`,
    or as JSON that Python parses, to send it).
    """
    _sign_canonical(data, identity, eth_enabled)
    return data


def sign_to_json(data: dict[str, Any], identity: Identity, eth_enabled: bool = False) -> str:
    """:func:`sign` ``data`` and return the message as compact JSON text, ready to publish.

    The text is the canonical JSON with the signature fields appended, so the message is serialised once
    (the receiver's hash input is exactly what was signed: NaN arrives as ``null``, numpy as numbers).
    """
    text = _sign_canonical(data, identity, eth_enabled)
    return text[:-1] + _signature_fields(identity, data[HASH], data[SIGN], eth_enabled) + "}"


# --- verification --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`: ``ok``, the claimed ``sender`` address, a short ``reason``, the canon used."""

    ok: bool
    sender: str | None
    reason: str
    canon: str | None = None


def strip_address_prefix(address: str) -> str:
    """The address without its ``0xai_`` (or old ``aixp_``) prefix."""
    for prefix in (ADDRESS_PREFIX, LEGACY_ADDRESS_PREFIX):
        if address.startswith(prefix):
            return address[len(prefix) :]
    return address


# more than the network view holds (EE_NETMON_MAX_NODES, 10,000 by default): heartbeats come round in a cycle, so
# an LRU cache smaller than the fleet would miss at every check
PUBLIC_KEY_CACHE_SIZE = 16_384


@lru_cache(maxsize=PUBLIC_KEY_CACHE_SIZE)
def public_key_from_address(address: str) -> coincurve.PublicKey:
    """The secp256k1 public key of a ``0xai_`` address (cached); ValueError when it is not one."""
    body = strip_address_prefix(address)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not urlsafe base64: {exc}") from exc
    if len(raw) != 33 or raw[0] not in (2, 3):
        raise ValueError("not a 33-byte compressed secp256k1 public key")
    try:
        return coincurve.PublicKey(raw)
    except Exception as exc:  # coincurve raises ValueError or its own error for a point off the curve
        raise ValueError(f"not a point on secp256k1: {exc}") from exc


def _parse_der(der: bytes) -> tuple[int, int]:
    """``(r, s)`` of a strict-DER ECDSA signature; ValueError otherwise."""
    if len(der) < 8 or len(der) > 72 or der[0] != 0x30 or der[1] != len(der) - 2:
        raise ValueError("not a DER ECDSA signature")
    values = []
    index = 2
    for _ in range(2):
        if index + 2 > len(der) or der[index] != 0x02:
            raise ValueError("not a DER ECDSA signature")
        length = der[index + 1]
        body = der[index + 2 : index + 2 + length]
        if length == 0 or len(body) != length or body[0] & 0x80:
            raise ValueError("bad DER integer")
        if length > 1 and body[0] == 0 and not body[1] & 0x80:
            raise ValueError("non-minimal DER integer")
        values.append(int.from_bytes(body, "big"))
        index += 2 + length
    if index != len(der):
        raise ValueError("trailing bytes after the DER signature")
    r, s = values
    if not (0 < r < GROUP_ORDER_INT and 0 < s < GROUP_ORDER_INT):
        raise ValueError("signature values out of range")
    return r, s


def _der_integer(value: int) -> bytes:
    body = value.to_bytes((value.bit_length() + 8) // 8, "big")
    return b"\x02" + bytes([len(body)]) + body


def low_s_der(der: bytes) -> bytes:
    """The same signature with S normalised to the lower half (libsecp256k1 only verifies low-S)."""
    r, s = _parse_der(der)
    if s <= _HALF_ORDER:
        return der
    body = _der_integer(r) + _der_integer(GROUP_ORDER_INT - s)
    return b"\x30" + bytes([len(body)]) + body


def _fail(sender: str | None, reason: str) -> VerifyResult:
    return VerifyResult(False, sender, reason)


def verify(message: dict[str, Any], eth_enabled: bool | None = None) -> VerifyResult:
    """Check the signature of a received message (Ratio1 canon v2, unversioned or v1).

    ``eth_enabled``: how the *signer* hashed ``EE_ETH_SENDER``/``EE_ETH_SIGN``: True (left out), False (hashed)
    or None (default: the message carries those fields → try left out first, then hashed; Ratio1 nodes and SDK
    sessions sign eth-enabled by default). Reasons on failure: ``missing signature fields``, ``malformed sender
    address``, ``malformed signature``, ``unknown canon version``, ``unserializable data``, ``hash mismatch``,
    ``bad signature``. The allowlist is not checked here.
    """
    sender = message.get(SENDER)
    signature = message.get(SIGN)
    if not isinstance(sender, str) or not isinstance(signature, str) or not sender or not signature:
        return _fail(sender if isinstance(sender, str) else None, "missing signature fields")
    try:
        public_key = public_key_from_address(sender)
    except ValueError as exc:
        return _fail(sender, f"malformed sender address: {exc}")
    try:
        der = low_s_der(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    except (binascii.Error, ValueError) as exc:
        return _fail(sender, f"malformed signature: {exc}")

    canon = message.get(SIGN_CANON_V)
    if canon is None:
        versions: tuple[str, ...] = (CANON_UNVERSIONED, CANON_V1)
    elif canon in (CANON_V2, CANON_V1):
        versions = (canon,)
    else:
        return _fail(sender, f"unknown canon version {canon!r}")
    if eth_enabled is None:
        eth_modes: tuple[bool, ...] = (True, False) if ETH_SENDER in message or ETH_SIGN in message else (False,)
    else:
        eth_modes = (eth_enabled,)

    received = message.get(HASH)
    hash_matched = not received
    for version in versions:
        for eth_mode in eth_modes:
            try:
                text = canonical_json(message, eth_mode, version).encode("utf-8")
            except (TypeError, ValueError, RecursionError) as exc:
                return _fail(sender, f"unserializable data: {exc}")
            if received:
                digest = hashlib.sha256(text).digest()
                if digest.hex() != received:
                    continue
                hash_matched = True
                signed = digest
            else:  # signature over the canonical bytes themselves
                signed = text
            if public_key.verify(der, signed):
                return VerifyResult(True, sender, "ok", version)
    return _fail(sender, "bad signature" if hash_matched else "hash mismatch")
