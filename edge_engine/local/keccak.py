"""Keccak-256 (the original Keccak padding used by Ethereum), in pure Python.

``hashlib.sha3_256`` is *not* Keccak-256: FIPS 202 changed the padding's domain byte from ``0x01`` to ``0x06``,
and neither ``hashlib`` (OpenSSL 3.0) nor ``cryptography`` exposes the original. This module implements the
keccak-f[1600] permutation from the specification (round constants and rotation offsets are derived at import
from their defining LFSR and walk, not typed in). It is slow (about 0.25 ms per 136-byte block) but only hashes a few
dozen bytes when an address is derived. The same sponge with domain byte ``0x06`` reproduces SHA3-256, which the
tests use to check the permutation.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1


def _round_constants() -> tuple[int, ...]:
    """The 24 iota constants, from the degree-8 LFSR x^8 + x^6 + x^5 + x^4 + 1 (FIPS 202, 3.2.5)."""
    state = 1
    bits = []
    for _ in range(24 * 7):
        bits.append(state & 1)
        state <<= 1
        if state & 0x100:
            state ^= 0x171
    constants = []
    for rnd in range(24):
        value = 0
        for j in range(7):
            if bits[7 * rnd + j]:
                value |= 1 << ((1 << j) - 1)
        constants.append(value)
    return tuple(constants)


def _rotation_offsets() -> tuple[int, ...]:
    """Rho offsets indexed by ``x + 5*y`` (FIPS 202, 3.2.2)."""
    offsets = [0] * 25
    x, y = 1, 0
    for t in range(24):
        offsets[x + 5 * y] = ((t + 1) * (t + 2) // 2) % 64
        x, y = y, (2 * x + 3 * y) % 5
    return tuple(offsets)


_RC = _round_constants()
_ROT = _rotation_offsets()
# pi: lane (x, y) moves to (y, 2x + 3y); precompute (source index, destination index, rotation).
_RHO_PI = tuple((x + 5 * y, y + 5 * ((2 * x + 3 * y) % 5), _ROT[x + 5 * y]) for y in range(5) for x in range(5))


def _keccak_f1600(lanes: list[int]) -> list[int]:
    """Apply the 24 rounds of keccak-f[1600] to 25 little-endian 64-bit lanes."""
    a = lanes
    for rc in _RC:
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ (((c[(x + 1) % 5] << 1) | (c[(x + 1) % 5] >> 63)) & _MASK) for x in range(5)]
        b = [0] * 25
        for src, dst, rot in _RHO_PI:
            lane = a[src] ^ d[src % 5]
            b[dst] = ((lane << rot) | (lane >> (64 - rot))) & _MASK if rot else lane
        a = [b[i] ^ (~b[(i + 1) % 5 + i - i % 5] & b[(i + 2) % 5 + i - i % 5]) for i in range(25)]
        a[0] ^= rc
    return a


def _sponge(data: bytes, rate: int, domain: int, out_len: int) -> bytes:
    """Keccak sponge with multi-rate padding ``domain ... 0x80``; ``rate`` in bytes."""
    padded = bytearray(data)
    padded.append(domain)
    padded.extend(b"\x00" * (-len(padded) % rate))
    padded[-1] |= 0x80
    lanes = [0] * 25
    for offset in range(0, len(padded), rate):
        block = padded[offset : offset + rate]
        for i in range(rate // 8):
            lanes[i] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")
        lanes = _keccak_f1600(lanes)
    out = bytearray()
    while True:
        for i in range(rate // 8):
            out += lanes[i].to_bytes(8, "little")
        if len(out) >= out_len:
            return bytes(out[:out_len])
        lanes = _keccak_f1600(lanes)


def keccak256(data: bytes) -> bytes:
    """Keccak-256 digest (Ethereum's hash) of ``data``: 32 bytes."""
    return _sponge(bytes(data), rate=136, domain=0x01, out_len=32)
