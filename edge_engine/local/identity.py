"""The node's identity: its secp256k1 key in ``_data/e2.pem`` and the addresses derived from it.

The key file has Ratio1's format (unencrypted PEM PKCS8, ``BEGIN PRIVATE KEY``), so the ``e2.pem`` of an existing
Ratio1 node gives the same ``0xai_`` address here. The key is created at first start, written atomically with mode
0600, and an existing file readable by group or others is tightened (with a warning). The private key never
appears in a repr or a log line.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import socket
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import coincurve
from coincurve.utils import pem_to_der

from edge_engine import constants as C
from edge_engine.errors import CacheError
from edge_engine.local.cache import atomic_write_bytes
from edge_engine.local.keccak import keccak256

log = logging.getLogger(__name__)

KEY_FILE_MODE = 0o600
# DER encoding of the secp256k1 curve OID 1.3.132.0.10, as it appears in a PKCS8 AlgorithmIdentifier.
_SECP256K1_OID_DER = bytes.fromhex("06052b8104000a")
_ALIAS_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Identity:
    """The node's key pair and addresses. ``private_key`` is left out of repr and comparisons."""

    private_key: coincurve.PrivateKey = field(repr=False, compare=False)
    address: str
    eth_address: str
    key_file: Path | None = None

    @property
    def public_key(self) -> bytes:
        """The 33-byte compressed public key (X9.62)."""
        return self.private_key.public_key.format(compressed=True)


def address_from_public_key(public_key: bytes) -> str:
    """Ratio1 address: ``0xai_`` + urlsafe base64 of the 33-byte compressed public key (44 characters)."""
    compressed = coincurve.PublicKey(public_key).format(compressed=True)
    return C.ADDRESS_PREFIX + base64.urlsafe_b64encode(compressed).decode("ascii")


def eth_address_from_public_key(public_key: bytes) -> str:
    """EIP-55 checksummed Ethereum address of a secp256k1 public key (compressed or not)."""
    uncompressed = coincurve.PublicKey(public_key).format(compressed=False)
    return to_checksum_address(keccak256(uncompressed[1:])[-20:].hex())


def to_checksum_address(hex_address: str) -> str:
    """EIP-55 mixed-case form of a 20-byte hex address (with or without ``0x``)."""
    plain = hex_address.lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{40}", plain):
        raise ValueError(f"not a 20-byte hex address: {hex_address!r}")
    digest = keccak256(plain.encode("ascii")).hex()
    return "0x" + "".join(ch.upper() if int(digest[i], 16) >= 8 else ch for i, ch in enumerate(plain))


def identity_from_private_key(private_key: coincurve.PrivateKey, key_file: Path | None = None) -> Identity:
    """Build an :class:`Identity` (addresses included) from a private key."""
    public = private_key.public_key.format(compressed=True)
    return Identity(
        private_key=private_key,
        address=address_from_public_key(public),
        eth_address=eth_address_from_public_key(public),
        key_file=key_file,
    )


def load_or_create_identity(key_file: Path) -> Identity:
    """Load the node key from ``key_file`` (``_data/e2.pem``), creating it at first start.

    Raises :class:`CacheError` naming the file when it exists but is not an unencrypted PEM PKCS8 secp256k1 key.
    """
    key_file = Path(key_file)
    if key_file.exists():
        _tighten_permissions(key_file)
        identity = identity_from_private_key(_read_private_key(key_file), key_file)
        log.debug("loaded node key %s: %s", key_file, identity.address)
        return identity
    private_key = coincurve.PrivateKey()
    atomic_write_bytes(key_file, private_key.to_pem(), mode=KEY_FILE_MODE)
    identity = identity_from_private_key(private_key, key_file)
    log.info("created node key %s: %s", key_file, identity.address)
    return identity


def reset_identity(key_file: Path) -> Path:
    """Move the key to ``e2.pem.bak-<UTC yyyymmddTHHMMSSZ>`` (mode 0600); return the backup's path.

    The next :func:`load_or_create_identity` creates a new key, hence a new address.
    """
    key_file = Path(key_file)
    if not key_file.exists():
        raise CacheError(f"{key_file} does not exist: there is no node key to reset")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backup = key_file.with_name(f"{key_file.name}.bak-{stamp}")
    counter = 1
    while backup.exists():
        backup = key_file.with_name(f"{key_file.name}.bak-{stamp}-{counter}")
        counter += 1
    os.chmod(key_file, KEY_FILE_MODE)
    os.rename(key_file, backup)
    log.warning("node key %s moved to %s; a new key and address are created at the next start", key_file, backup)
    return backup


def default_alias(address: str, hostname: str | None = None) -> str:
    """Default alias: short hostname cut to 10 characters, ``-``, first 4 characters of the address after ``0xai_``."""
    host = (hostname if hostname is not None else socket.gethostname()).split(".")[0]
    host = _ALIAS_UNSAFE.sub("-", host)[:10] or "node"
    return f"{host}-{address.removeprefix(C.ADDRESS_PREFIX)[:4]}"


def _read_private_key(key_file: Path) -> coincurve.PrivateKey:
    try:
        pem = key_file.read_bytes()
    except OSError as exc:
        raise CacheError(f"{key_file} cannot be read: {exc}") from exc
    expected = "an unencrypted PEM PKCS8 secp256k1 key ('BEGIN PRIVATE KEY', as Ratio1 writes it)"
    if b"BEGIN ENCRYPTED PRIVATE KEY" in pem:
        raise CacheError(
            f"{key_file} is an encrypted key; the node needs {expected}. "
            f"Decrypt it with: openssl pkcs8 -in {key_file} -out e2.pem.plain (then move it into place, mode 0600)"
        )
    if b"BEGIN PRIVATE KEY" not in pem:
        hint = ""
        if b"BEGIN EC PRIVATE KEY" in pem:
            hint = f"; convert it with: openssl pkcs8 -topk8 -nocrypt -in {key_file} -out e2.pem.pkcs8"
        raise CacheError(f"{key_file} is not {expected}{hint}")
    try:
        der = pem_to_der(pem)
        private_key = coincurve.PrivateKey.from_pem(pem)
    except Exception as exc:  # coincurve raises ValueError, binascii.Error or its own errors for bad input
        raise CacheError(f"{key_file} is not {expected}: {exc}") from exc
    if _SECP256K1_OID_DER not in der:
        raise CacheError(f"{key_file} holds a key on another curve; the node needs {expected}")
    return private_key


def _tighten_permissions(key_file: Path) -> None:
    mode = stat.S_IMODE(key_file.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "node key %s was readable by group/others (mode %04o); setting it to %04o", key_file, mode, KEY_FILE_MODE
        )
        try:
            os.chmod(key_file, KEY_FILE_MODE)
        except OSError as exc:
            log.warning("cannot change the mode of %s: %s", key_file, exc)
