"""Node identity: Keccak-256, addresses, the e2.pem key file (creation, Ratio1 keys, permissions, reset)."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat

import coincurve
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge_engine.errors import CacheError
from edge_engine.local.identity import (
    Identity,
    default_alias,
    identity_from_private_key,
    load_or_create_identity,
    reset_identity,
    to_checksum_address,
)
from edge_engine.local.keccak import _sponge, keccak256

KNOWN_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
KNOWN_ETH = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- keccak -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "digest"),
    [
        (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
        (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
        (
            b"The quick brown fox jumps over the lazy dog",
            "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15",
        ),
    ],
)
def test_keccak256_known_vectors(data: bytes, digest: str) -> None:
    assert keccak256(data).hex() == digest


@pytest.mark.parametrize("length", [0, 1, 135, 136, 137, 272, 1000])
def test_keccak_permutation_reproduces_sha3_with_the_fips_domain_byte(length: int) -> None:
    data = os.urandom(length)
    assert _sponge(data, rate=136, domain=0x06, out_len=32) == hashlib.sha3_256(data).digest()
    assert keccak256(data) != hashlib.sha3_256(data).digest()


# --- addresses ----------------------------------------------------------------------------------------------
def test_known_private_key_gives_known_eth_address() -> None:
    identity = identity_from_private_key(coincurve.PrivateKey.from_hex(KNOWN_KEY))
    assert identity.eth_address == KNOWN_ETH


@pytest.mark.parametrize(
    "address",
    [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ],
)
def test_eip55_checksum_vectors(address: str) -> None:
    assert to_checksum_address(address.lower()) == address


def test_address_format() -> None:
    identity = identity_from_private_key(coincurve.PrivateKey.from_hex(KNOWN_KEY))
    assert identity.address.startswith("0xai_")
    body = identity.address[len("0xai_") :]
    assert len(body) == 44
    assert base64.urlsafe_b64decode(body) == identity.public_key
    assert len(identity.public_key) == 33


def test_private_key_not_in_repr() -> None:
    key = coincurve.PrivateKey.from_hex(KNOWN_KEY)
    identity = identity_from_private_key(key)
    text = repr(identity) + str(identity)
    assert KNOWN_KEY not in text
    assert "private_key" not in text
    assert identity.address in text


def test_default_alias() -> None:
    address = "0xai_Ak47ga-cIjTK0J1nnOYDXtE5I0fOZM5AX13NNiKKJd5u"
    assert default_alias(address, "my.host.example") == "my-Ak47"
    assert default_alias(address, "averyveryverylonghostname") == "averyveryv-Ak47"
    assert len(default_alias(address, "averyveryverylonghostname.lan")) == 15
    assert default_alias(address).endswith("-Ak47")


# --- key file -----------------------------------------------------------------------------------------------
def test_first_start_creates_pem_pkcs8_with_mode_0600(tmp_path) -> None:
    key_file = tmp_path / "_data" / "e2.pem"
    identity = load_or_create_identity(key_file)
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert _mode(key_file) == 0o600
    assert isinstance(identity, Identity)
    assert identity.key_file == key_file
    assert not [p for p in key_file.parent.iterdir() if p.name != "e2.pem"]  # no temp file left


def test_same_address_after_reload(tmp_path) -> None:
    key_file = tmp_path / "e2.pem"
    first = load_or_create_identity(key_file)
    second = load_or_create_identity(key_file)
    assert (second.address, second.eth_address) == (first.address, first.eth_address)
    assert first == second


def test_group_readable_key_is_tightened_with_a_warning(tmp_path, caplog) -> None:
    key_file = tmp_path / "e2.pem"
    address = load_or_create_identity(key_file).address
    os.chmod(key_file, 0o644)
    with caplog.at_level(logging.WARNING, logger="edge_engine.local.identity"):
        assert load_or_create_identity(key_file).address == address
    assert _mode(key_file) == 0o600
    assert "0644" in caplog.text


def test_ratio1_key_written_by_cryptography_gives_its_address(tmp_path) -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_file = tmp_path / "e2.pem"
    key_file.write_bytes(pem)
    os.chmod(key_file, 0o600)
    compressed = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    identity = load_or_create_identity(key_file)
    assert identity.address == "0xai_" + base64.urlsafe_b64encode(compressed).decode()
    uncompressed = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert identity.eth_address.lower() == "0x" + keccak256(uncompressed[1:])[-20:].hex()
    assert key_file.read_bytes() == pem  # an existing key is never rewritten


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not a key at all\n", "not an unencrypted PEM PKCS8"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not an unencrypted PEM PKCS8"),
        (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"),
    ],
)
def test_corrupt_or_encrypted_pem_raises_cache_error_naming_the_file(tmp_path, content: bytes, words: str) -> None:
    key_file = tmp_path / "e2.pem"
    key_file.write_bytes(content)
    with pytest.raises(CacheError, match=words) as info:
        load_or_create_identity(key_file)
    assert str(key_file) in str(info.value)
    assert key_file.read_bytes() == content  # never overwritten


def test_key_on_another_curve_is_refused(tmp_path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "e2.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(CacheError, match="another curve"):
        load_or_create_identity(key_file)


def test_sec1_key_gets_a_conversion_hint(tmp_path) -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    key_file = tmp_path / "e2.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    with pytest.raises(CacheError, match="openssl pkcs8 -topk8"):
        load_or_create_identity(key_file)


def test_reset_makes_a_backup_and_the_next_start_a_new_address(tmp_path) -> None:
    key_file = tmp_path / "e2.pem"
    old = load_or_create_identity(key_file)
    old_pem = key_file.read_bytes()
    backup = reset_identity(key_file)
    assert not key_file.exists()
    assert backup.parent == key_file.parent
    assert backup.name.startswith("e2.pem.bak-") and backup.name.endswith("Z")
    assert len(backup.name) == len("e2.pem.bak-20261123T150000Z")
    assert backup.read_bytes() == old_pem
    assert _mode(backup) == 0o600
    new = load_or_create_identity(key_file)
    assert new.address != old.address
    second_backup = reset_identity(key_file)  # same second: a distinct name, nothing overwritten
    assert second_backup != backup and backup.read_bytes() == old_pem


def test_reset_without_a_key_raises(tmp_path) -> None:
    with pytest.raises(CacheError, match="does not exist"):
        reset_identity(tmp_path / "e2.pem")
