"""What a first start seeds, and the alias it takes, depending on the cache it meets:

* a brand new cache (no key, no pipelines, no allowlist) gets the demo; a Ratio1 volume, or any cache holding
  one of those, does not (issue 14 item 12);
* ``change_alias`` on a cache no node has started keeps the alias and the seeding still happens (item 7);
* a Ratio1 volume's alias, kept in its ``_data/local_info.json``, is the node's alias (item 11).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, start_snapshot
from plugins_src import synthetic_pipeline

from edge_engine.cli.ops import main_change_alias
from edge_engine.local.identity import load_or_create_identity

SEEDED = synthetic_pipeline("seeded", "FRAME_STATS", {"INSTANCE_ID": "s", "REPORT_EVERY": 1000}, CAP_RESOLUTION=5)
DEMO = {**SEEDED, "NAME": "demo"}
R1_ALIAS = "r1-gate-07"


def project(tmp_path: Path) -> Path:
    """A source checkout: startup config with one PIPELINES entry and the demo on, and a (light) demo pipeline."""
    base = tmp_path / "checkout"
    (base / "pipelines").mkdir(parents=True, exist_ok=True)
    (base / "pipelines" / "demo.json").write_text(json.dumps(DEMO), encoding="utf-8")
    config = {"PLUGIN_FOLDERS": [str(REPO / "extensions")], "DEMO_PIPELINE": True, "PIPELINES": [SEEDED]}
    (base / ".config_startup.json").write_text(json.dumps(config), encoding="utf-8")
    return base


def ratio1_volume(cache: Path, alias: str = R1_ALIAS) -> str:
    """What a Ratio1 node leaves in its volume: e2.pem, authorized_addrs, local_info.json; no config_startup.json."""
    identity = load_or_create_identity(cache / "_data" / "e2.pem")
    (cache / "authorized_addrs").write_text("\n", encoding="utf-8")
    info = {"address": identity.address, "alias": alias, "eth_address": identity.eth_address,
            "version_long": "v2.9.1 | core v7.7.1 | SDK 3.5.60", "version_short": "v2.9.1",
            "info": {"whitelist": [], "current_epoch": 123, "current_epoch_avail": 0.97}}  # fmt: skip
    (cache / "_data" / "local_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return identity.address


def start(base: Path, cache: Path, **env: str) -> dict[str, Any]:
    return start_snapshot(base, cache, env)


def names(snapshot: dict[str, Any]) -> list[str]:
    return sorted(p["name"] for p in snapshot["pipelines"])


def test_a_brand_new_cache_gets_the_demo(tmp_path: Path) -> None:
    assert names(start(project(tmp_path), tmp_path / "cache")) == ["demo", "seeded"]


@pytest.mark.parametrize("holding", ["ratio1 volume", "key", "pipeline", "allowlist"])
def test_a_cache_that_is_not_new_gets_no_demo(tmp_path: Path, holding: str) -> None:
    cache = tmp_path / "cache"
    (cache / "_data").mkdir(parents=True)
    if holding == "ratio1 volume":
        ratio1_volume(cache)
    elif holding == "key":
        load_or_create_identity(cache / "_data" / "e2.pem")
    elif holding == "pipeline":
        streams = cache / "_data" / "box_configuration" / "streams"
        streams.mkdir(parents=True)
        (streams / "mine.json").write_text(json.dumps({**SEEDED, "NAME": "mine"}), encoding="utf-8")
    else:
        (cache / "authorized_addrs").write_text("\n", encoding="utf-8")
    snapshot = start(project(tmp_path), cache)
    assert "demo" not in names(snapshot), names(snapshot)
    assert "seeded" in names(snapshot)  # the startup config's PIPELINES are the owner's: still seeded
    assert not (cache / "_data" / "box_configuration" / "streams" / "demo.json").exists()


def test_change_alias_before_the_first_start_keeps_the_seeding(tmp_path: Path) -> None:
    cache = tmp_path / "empty"
    cache.mkdir()
    assert main_change_alias(["--cache-dir", str(cache), "gate-3"]) == 0
    assert json.loads((cache / "config_startup.json").read_text()) == {"EE_ID": "gate-3"}
    snapshot = start(project(tmp_path), cache, EE_ID="other")
    assert snapshot["alias"] == "gate-3"
    assert names(snapshot) == ["demo", "seeded"], "the first start seeds as if change_alias had not run"
    cached = json.loads((cache / "config_startup.json").read_text())
    assert cached["EE_ID"] == "gate-3" and cached["PIPELINES"] == [SEEDED] and cached["DEMO_PIPELINE"] is True
    again = start(project(tmp_path), cache)  # not a first start any more: nothing seeded again, alias kept
    assert again["alias"] == "gate-3" and names(again) == ["demo", "seeded"]


def test_a_ratio1_volume_keeps_its_alias(tmp_path: Path) -> None:
    cache = tmp_path / "r1vol"
    (cache / "_data").mkdir(parents=True)
    address = ratio1_volume(cache)
    snapshot = start(project(tmp_path), cache, EE_ID="E2dkr")  # Ratio1's image default: a placeholder
    assert snapshot["address"] == address and snapshot["alias"] == R1_ALIAS
    assert json.loads((cache / "config_startup.json").read_text())["EE_ID"] == R1_ALIAS  # cached from now on
    assert start(project(tmp_path), cache, EE_ID="renamed")["alias"] == R1_ALIAS


def test_a_ratio1_volume_alias_wins_over_ee_id(tmp_path: Path) -> None:
    cache = tmp_path / "r1vol"
    (cache / "_data").mkdir(parents=True)
    ratio1_volume(cache)
    assert start(project(tmp_path), cache, EE_ID="from-env")["alias"] == R1_ALIAS
