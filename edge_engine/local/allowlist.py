"""The allowlist of senders who may change the node: ``_local_cache/authorized_addrs``, Ratio1's format.

One entry per line: ``<address> [alias] [# comment]``; lines starting with ``#`` are comments. Addresses are
``0xai_`` + urlsafe base64 of a 33-byte compressed secp256k1 public key (the prefix may be omitted in the
file). Standard library only: the ops commands use it. Writes are atomic; the node re-reads the file when
its modification time changes, so edits take effect without a restart.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

from edge_engine.constants import ADDRESS_PREFIX, ALIAS_MAX_LEN
from edge_engine.local.cache import atomic_write_text

LEGACY_PREFIX = "aixp_"
_ALIAS = re.compile(r"^[A-Za-z0-9_.-]{1,%d}$" % ALIAS_MAX_LEN)  # noqa: UP031
_NOT_BASE64URL = re.compile(r"[^A-Za-z0-9_=-]")
ADDRESS_CHARS = 44  # urlsafe base64 of 33 bytes
SECP256K1_P = 2**256 - 2**32 - 977  # the field prime of secp256k1


class AllowlistError(ValueError):
    """A malformed address or alias, or a conflicting entry."""


def normalize_address(address: str) -> str:
    """The address with its ``0xai_`` prefix, validated; raises AllowlistError saying what is wrong with it."""
    text = address.strip()
    for prefix in (ADDRESS_PREFIX, LEGACY_PREFIX):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    if len(text) != ADDRESS_CHARS:
        raise AllowlistError(
            f"malformed address {address!r}: expected 0xai_ followed by {ADDRESS_CHARS} characters (got {len(text)})"
        )
    bad = sorted(set(_NOT_BASE64URL.findall(text)))
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise AllowlistError(
            f"malformed address {address!r}: {shown} cannot appear in an address (only A-Z a-z 0-9 - _ and = at the "
            "end: urlsafe base64)"
        )
    try:
        raw = base64.urlsafe_b64decode(text)
    except (binascii.Error, ValueError) as exc:
        raise AllowlistError(f"malformed address {address!r}: '=' may only end it (urlsafe base64: {exc})") from exc
    if len(raw) != 33 or raw[0] not in (2, 3):
        raise AllowlistError(
            f"malformed address {address!r}: not a compressed secp256k1 public key (33 bytes starting 02 or 03)"
        )
    if not on_secp256k1(int.from_bytes(raw[1:], "big")):
        raise AllowlistError(
            f"malformed address {address!r}: not a valid public key (no point of the secp256k1 curve has this x); "
            "copy the address again from the client (its get_node_info or SDK)"
        )
    return ADDRESS_PREFIX + text


def on_secp256k1(x: int) -> bool:
    """Whether some point of secp256k1 (y² = x³ + 7 mod p) has the coordinate ``x``: Euler's criterion says
    whether x³ + 7 is a square mod p, so a compressed key with this x decompresses to a real point."""
    if not 0 <= x < SECP256K1_P:
        return False
    rhs = (pow(x, 3, SECP256K1_P) + 7) % SECP256K1_P
    return rhs == 0 or pow(rhs, (SECP256K1_P - 1) // 2, SECP256K1_P) == 1


@dataclass(frozen=True)
class Entry:
    address: str
    alias: str | None


def parse(text: str) -> list[Entry]:
    """Entries of an authorized_addrs file (malformed lines are skipped)."""
    entries = []
    for line in text.splitlines():
        content = line.split("#", 1)[0].split()
        if not content:
            continue
        try:
            address = normalize_address(content[0])
        except AllowlistError:
            continue
        entries.append(Entry(address, content[1] if len(content) > 1 else None))
    return entries


def read(path: Path) -> list[Entry]:
    """The entries of ``path`` (none if it does not exist)."""
    if not path.exists():
        return []
    return parse(path.read_text(encoding="utf-8", errors="replace"))


def add(path: Path, address: str, alias: str | None = None) -> Entry:
    """Append an entry; refuses a malformed or duplicate address or alias (the file is not touched)."""
    normalized = normalize_address(address)
    if alias is not None and not _ALIAS.match(alias):
        raise AllowlistError(f"invalid alias {alias!r}: 1-{ALIAS_MAX_LEN} letters, digits, '_', '-' or '.'")
    current = read(path)
    for entry in current:
        if entry.address == normalized:
            raise AllowlistError(f"{normalized} is already allowed" + (f" as {entry.alias}" if entry.alias else ""))
        if alias is not None and entry.alias == alias:
            raise AllowlistError(f"alias {alias!r} is already used by {entry.address}")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    text += f"{normalized}  {alias}\n" if alias else f"{normalized}\n"
    atomic_write_text(path, text, mode=0o600)
    return Entry(normalized, alias)


def remove(path: Path, address: str) -> bool:
    """Remove every line of ``address``; returns False when it was not there (file untouched)."""
    normalized = normalize_address(address)
    if not path.exists():
        return False
    kept, removed = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        content = line.split("#", 1)[0].split()
        if content:
            try:
                if normalize_address(content[0]) == normalized:
                    removed = True
                    continue
            except AllowlistError:
                pass
        kept.append(line)
    if removed:
        atomic_write_text(path, "\n".join(kept) + ("\n" if kept else ""), mode=0o600)
    return removed


class Allowlist:
    """The node's view of the file, re-read when it changes."""

    def __init__(self, path: Path, own_address: str):
        self.path = path
        self.own_address = own_address
        self._mtime: tuple[int, int, int] | None = None
        self._addresses: frozenset[str] = frozenset()
        self.version = 0  # rises each time the file is seen changed (a watcher compares it, whoever re-read it)
        self.refresh()

    def refresh(self) -> None:
        try:
            st = self.path.stat()
            # inode too: edits are atomic renames, and two of them within the clock's granularity keep the mtime
            mtime: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            self._mtime = mtime
            self._addresses = frozenset(e.address for e in read(self.path))
            self.version += 1

    def allowed(self, address: str) -> bool:
        """Whether ``address`` may change the node (the node itself always may)."""
        self.refresh()
        try:
            normalized = normalize_address(address)
        except AllowlistError:
            return False
        return normalized == self.own_address or normalized in self._addresses

    def addresses(self) -> list[str]:
        self.refresh()
        return sorted(self._addresses)
