"""The allowlist and key ops commands, run as real processes the way an operator runs them."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import coincurve
from test_ops_cmds import run

from edge_engine.local.identity import load_or_create_identity


def new_address() -> str:
    return "0xai_" + base64.urlsafe_b64encode(coincurve.PrivateKey().public_key.format()).decode()


def make_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    (cache / "_data").mkdir(parents=True)
    return cache


def test_add_get_remove_allowed(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    first, second = new_address(), new_address()
    assert run(["add_allowed", first, "alice"], env_cache=cache).returncode == 0
    assert run(["add_allowed", second], env_cache=cache).returncode == 0
    listed = run(["get_allowed"], env_cache=cache)
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [f"{first}  alice", second]
    path = cache / "authorized_addrs"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    removed = run(["remove_allowed", first], env_cache=cache)
    assert removed.returncode == 0 and first in removed.stdout
    assert run(["get_allowed"], env_cache=cache).stdout.splitlines() == [second]


def test_bad_input_is_refused_and_the_file_is_untouched(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    address = new_address()
    assert run(["add_allowed", address, "alice"], env_cache=cache).returncode == 0
    before = (cache / "authorized_addrs").read_bytes()
    cases = [
        (["add_allowed", "0xai_nope"], "malformed address"),
        (["add_allowed", "0xai_" + "A" * 44], "not a compressed secp256k1 public key"),
        # 02 prefix and x = 5: the right shape, but 5³ + 7 is not a square mod p, so no curve point has this x
        (["add_allowed", "0xai_AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAF"], "not a valid public key"),
        (["add_allowed", address[:-3] + "!" + address[-2:]], "'!' cannot appear in an address"),
        (["add_allowed", address], "already allowed"),
        (["add_allowed", new_address(), "alice"], "already used"),
        (["add_allowed", new_address(), "x" * 16], "invalid alias"),
        (["remove_allowed", new_address()], "is not in"),
    ]
    for args, message in cases:
        result = run(args, env_cache=cache)
        assert result.returncode == 1, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert (cache / "authorized_addrs").read_bytes() == before


def test_reset_node_keys_needs_yes_and_keeps_a_backup(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    key_file = cache / "_data" / "e2.pem"
    old = load_or_create_identity(key_file)
    refused = run(["reset_node_keys"], env_cache=cache)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert key_file.exists()
    done = run(["reset_node_keys", "--yes"], env_cache=cache)
    assert done.returncode == 0, done.stderr
    assert "restart" in done.stdout
    assert not key_file.exists()
    backups = list(key_file.parent.glob("e2.pem.bak-*"))
    assert len(backups) == 1 and stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert load_or_create_identity(backups[0]).address == old.address
    assert load_or_create_identity(key_file).address != old.address
    missing = run(["reset_node_keys", "--yes"], env_cache=make_cache(tmp_path / "other"))
    assert missing.returncode == 1 and "no node key" in missing.stderr
