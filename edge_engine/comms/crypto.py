"""End-to-end encryption of message data (``EE_ENCRYPTED_DATA``), compatible with Ratio1's ``ratio1`` SDK.

Key agreement: ECDH on secp256k1 between the sender's and the receiver's keys, giving the raw 32-byte x
coordinate of the shared point (OpenSSL's ECDH output; libsecp256k1's default ``ecdh`` hashes the point instead
and does not interoperate), then HKDF-SHA256 (length 32, no salt, info ``b"0xai handshake data"``). Cipher:
AES-256-GCM with a random 12-byte nonce and no associated data. Derived keys are cached per key pair.

Formats (all text is standard base64):

* single receiver: ``b64(nonce(12) | flag(1) | ciphertext+tag)``; flag 1 means the plaintext was zlib-compressed
  before encryption (any non-zero flag is read as compressed, like the SDK).
* several receivers: ``b64(zlib(json))`` of ``{"M": true, "c": "01", "n": <hex nonce>, "d": <hex ciphertext+tag>,
  "k": [{"a": <0xai_ address>, "k": <hex>}, ...]}``. The plaintext (zlib-compressed, ``c`` = hex of the flag byte)
  is encrypted once under a random 32-byte key with nonce ``n``; each ``k`` entry holds, for receiver ``a``,
  ``nonce'(12) | AES-GCM(shared key of sender and a, nonce', the 32-byte key) (48 bytes)``.

The receiver derives the shared key from the *sender's* address (``EE_SENDER``). ``cryptography`` is imported
on first use, so a node that never encrypts does not load it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import zlib
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import coincurve

from edge_engine.comms.signing import public_key_from_address, strip_address_prefix
from edge_engine.constants import ADDRESS_PREFIX

if TYPE_CHECKING:
    from edge_engine.local.identity import Identity

HKDF_INFO = b"0xai handshake data"
NONCE_SIZE = 12
MAX_PLAINTEXT_BYTES = 64 * 1024 * 1024  # a decompression bomb stops here


class DecryptError(ValueError):
    """Data that cannot be decrypted by this node: malformed, not addressed to it, or tampered with."""


@lru_cache(maxsize=1024)
def _shared_key(own_secret: bytes, peer_public_key: bytes) -> bytes:
    """HKDF-SHA256 of the raw x coordinate of ``own_secret`` × ``peer_public_key`` (both byte strings)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    point = coincurve.PublicKey(peer_public_key).multiply(own_secret).format(compressed=True)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(point[1:])


def shared_key(identity: Identity, peer_address: str) -> bytes:
    """The 32-byte AES key shared by ``identity`` and the owner of ``peer_address`` (ValueError if malformed)."""
    peer = public_key_from_address(peer_address).format(compressed=True)
    return _shared_key(identity.private_key.secret, peer)


def _aesgcm(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _with_prefix(address: str) -> str:
    return ADDRESS_PREFIX + strip_address_prefix(address)


def encrypt_for(plaintext: str, identity: Identity, receiver_address: str, compress: bool = True) -> str:
    """Encrypt ``plaintext`` from ``identity`` to one receiver (single-receiver format)."""
    data = plaintext.encode("utf-8")
    if compress:
        data = zlib.compress(data)
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = _aesgcm(shared_key(identity, receiver_address)).encrypt(nonce, data, None)
    return base64.b64encode(nonce + (b"\x01" if compress else b"\x00") + ciphertext).decode("ascii")


def encrypt_for_multi(plaintext: str, identity: Identity, receivers: list[str]) -> str:
    """Encrypt ``plaintext`` once for several receivers (multi-receiver format; addresses keep ``0xai_``)."""
    if not receivers:
        raise ValueError("encrypt_for_multi needs at least one receiver")
    symmetric_key = os.urandom(32)
    nonce = os.urandom(NONCE_SIZE)
    ciphertext = _aesgcm(symmetric_key).encrypt(nonce, zlib.compress(plaintext.encode("utf-8")), None)
    keys = []
    for receiver in receivers:
        key_nonce = os.urandom(NONCE_SIZE)
        wrapped = _aesgcm(shared_key(identity, receiver)).encrypt(key_nonce, symmetric_key, None)
        keys.append({"a": _with_prefix(receiver), "k": (key_nonce + wrapped).hex()})
    package = {"M": True, "c": "01", "n": nonce.hex(), "d": ciphertext.hex(), "k": keys}
    return base64.b64encode(zlib.compress(json.dumps(package).encode("utf-8"))).decode("ascii")


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    result = inflater.decompress(data, MAX_PLAINTEXT_BYTES)
    if inflater.unconsumed_tail:
        raise DecryptError(f"decompressed data exceeds {MAX_PLAINTEXT_BYTES} bytes")
    if not inflater.eof:
        raise DecryptError("truncated zlib data")
    return result


def _multi_package(raw: bytes) -> dict[str, Any] | None:
    """The multi-receiver package in ``raw`` (already base64-decoded), or None when it is not one."""
    try:
        package = json.loads(_inflate(raw))
    except (zlib.error, DecryptError, ValueError):
        return None
    if isinstance(package, dict) and package.get("M") is True:
        return package
    return None


def _decrypt_multi(package: dict[str, Any], identity: Identity, sender_address: str) -> bytes:
    own = strip_address_prefix(identity.address)
    try:
        entry = next(k for k in package["k"] if strip_address_prefix(str(k["a"])) == own)
    except StopIteration:
        raise DecryptError("this node is not among the receivers of the multi-receiver data") from None
    try:
        wrapped = bytes.fromhex(entry["k"])
        nonce = bytes.fromhex(package["n"])
        ciphertext = bytes.fromhex(package["d"])
        compressed = int(package["c"], 16)
    except (KeyError, TypeError, ValueError) as exc:
        raise DecryptError(f"malformed multi-receiver package: {exc}") from exc
    from cryptography.exceptions import InvalidTag

    try:
        symmetric_key = _aesgcm(shared_key(identity, sender_address)).decrypt(
            wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], None
        )
        data = _aesgcm(symmetric_key).decrypt(nonce, ciphertext, None)
    except InvalidTag:
        raise DecryptError("authentication failed (wrong sender or tampered data)") from None
    except ValueError as exc:  # bad nonce or key size
        raise DecryptError(f"malformed multi-receiver package: {exc}") from exc
    return _inflate(data) if compressed else data


def _decrypt_single(raw: bytes, identity: Identity, sender_address: str) -> bytes:
    if len(raw) < NONCE_SIZE + 1 + 16:
        raise DecryptError(f"encrypted data too short ({len(raw)} bytes)")
    from cryptography.exceptions import InvalidTag

    try:
        data = _aesgcm(shared_key(identity, sender_address)).decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE + 1 :], None)
    except InvalidTag:
        raise DecryptError("authentication failed (wrong sender or tampered data)") from None
    return _inflate(data) if raw[NONCE_SIZE] else data


def decrypt(data_b64: str, identity: Identity, sender_address: str) -> str:
    """Decrypt ``EE_ENCRYPTED_DATA`` sent by ``sender_address`` to ``identity`` (multi format first, then single).

    Raises :class:`DecryptError` with the reason when the data cannot be decrypted.
    """
    try:
        raw = base64.b64decode(data_b64)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise DecryptError(f"encrypted data is not base64: {exc}") from exc
    try:
        public_key_from_address(sender_address)
    except ValueError as exc:
        raise DecryptError(f"malformed sender address {sender_address!r}: {exc}") from exc
    package = _multi_package(raw)
    if package is not None:
        plain = _decrypt_multi(package, identity, sender_address)
    else:
        plain = _decrypt_single(raw, identity, sender_address)
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecryptError(f"decrypted data is not UTF-8: {exc}") from exc
