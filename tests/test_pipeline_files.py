"""``edge-node validate`` and the node read pipeline files through one reader
(:func:`edge_engine.config.pipelines.read_pipeline_file`), so they agree: a file in the cache holds one pipeline
object (a JSON array there is refused by both, with the same reason); a seed file (the startup config's
``PIPELINES``) may hold a list, which both accept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import start_snapshot
from test_cli_validate import make_project, run, write_json

GOOD = {"NAME": "good", "TYPE": "SYNTHETIC", "COUNT": 3,
        "PLUGINS": [{"SIGNATURE": "HELLO", "INSTANCES": [{"INSTANCE_ID": "h1", "NEEDED": "x"}]}]}  # fmt: skip


def start(base: Path) -> dict[str, Any]:
    return start_snapshot(base, base / "cache")


def test_an_array_in_the_cache_is_refused_by_validate_and_by_the_node_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_project(tmp_path)
    streams = base / "cache" / "_data" / "box_configuration" / "streams"
    write_json(streams / "good.json", [GOOD])
    code, out = run(base, monkeypatch=monkeypatch, capsys=capsys)
    reason = "expected one pipeline object, not a list (got 'a list of 1')"
    assert code == 1, out
    assert f"cache/_data/box_configuration/streams/good.json: {reason}" in out, out
    code, out = run(base, str(streams / "good.json"), monkeypatch=monkeypatch, capsys=capsys)  # named: the same
    assert code == 1 and reason in out, out

    snapshot = start(base)
    assert snapshot["pipelines"] == []
    (invalid,) = snapshot["invalid_pipelines"]
    assert invalid["name"] == "good" and reason in invalid["errors"][0], invalid
    assert json.loads((streams / "good.json").read_text()) == [GOOD], "an invalid file is kept, never rewritten"


def test_a_list_in_a_seed_file_is_accepted_by_validate_and_seeded_by_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    second = {**GOOD, "NAME": "second"}
    base = make_project(tmp_path, startup={"PIPELINES": ["pipelines/both.json"]})
    write_json(base / "pipelines" / "both.json", [GOOD, second])
    code, out = run(base, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, out
    assert "ok: pipelines/both.json › 'good'" in out and "ok: pipelines/both.json › 'second'" in out

    snapshot = start(base)
    assert sorted(p["name"] for p in snapshot["pipelines"]) == ["good", "second"]
    assert snapshot["invalid_pipelines"] == []


def test_an_empty_list_is_refused_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_project(tmp_path, startup={"PIPELINES": ["pipelines/none.json"]})
    write_json(base / "pipelines" / "none.json", [])
    code, out = run(base, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 1 and "pipelines/none.json: expected a pipeline object or a non-empty list of them" in out, out
    (invalid,) = start(base)["invalid_pipelines"]
    assert invalid["name"] == "none" and "non-empty list" in invalid["errors"][0]


def test_a_list_written_in_pipelines_itself_is_refused_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An item of ``PIPELINES`` is a file name or one pipeline object; a list in its place is neither."""
    base = make_project(tmp_path, startup={"PIPELINES": [[GOOD]]})
    code, out = run(base, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 1 and "startup config › PIPELINES[0]: a pipeline must be a JSON object (got 'list')" in out, out
    snapshot = start(base)
    assert snapshot["pipelines"] == []
    (invalid,) = snapshot["invalid_pipelines"]
    assert "a pipeline must be a JSON object (got 'list')" in invalid["errors"][0], invalid


def test_an_admin_pipeline_file_in_the_cache_is_ignored_by_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The admin pipeline is built from the startup config; a file of that name in the cache means nothing."""
    base = make_project(tmp_path)
    write_json(base / "cache" / "_data" / "box_configuration" / "streams" / "admin_pipeline.json", [1, 2])
    code, out = run(base, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and "admin_pipeline.json" not in out, out
    assert start(base)["invalid_pipelines"] == []
