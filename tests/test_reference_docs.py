"""The generated reference in docs/plugins.md matches the code; every declared config key is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_engine.cli import gen_reference
from edge_engine.plugin.kinds import PLUGIN_BASES
from edge_engine.runtime.sandbox import load_catalog

REPO = Path(__file__).resolve().parent.parent
FIX = "run `python -m edge_engine.cli.gen_reference` and commit docs/plugins.md"


def test_generated_sections_are_up_to_date() -> None:
    text = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    generated = gen_reference.sections(REPO)
    for name in generated:
        assert f"<!-- BEGIN GENERATED: {name} -->" in text, f"docs/plugins.md lost the {name!r} markers"
    _, changed = gen_reference.render(text, generated)
    assert not changed, f"docs/plugins.md is out of date in {changed}: {FIX}"
    assert gen_reference.main(["--check", "--repo", str(REPO)]) == 0


@pytest.mark.parametrize("kind", sorted(PLUGIN_BASES))
def test_every_base_config_key_has_a_doc(kind: str) -> None:
    schema = PLUGIN_BASES[kind].config_schema()
    assert [name for name, key in schema.items() if not key.doc.strip()] == []


def test_every_built_in_plugin_key_has_a_doc() -> None:
    catalog = load_catalog([REPO / "extensions"])
    assert catalog.registry.failures == []
    undocumented = [
        f"{record.signature}.{name}"
        for record in catalog.registry.records()
        for name, key in record.cls.config_schema().items()
        if not key.doc.strip()
    ]
    assert undocumented == [], "give these keys a Key(..., doc='...')"


def test_docstrings_become_markdown() -> None:
    doc = """Do a thing with ``x``.

    More about :class:`~edge_engine.errors.EndOfStream`.

    :param x: the first
        argument, on two lines.
    :return: nothing.
    """
    assert gen_reference.docstring_markdown(doc) == (
        "Do a thing with `x`.\n\nMore about `EndOfStream`.\n\n- `x`: the first argument, on two lines.\n\n"
        "**Returns:** nothing."
    )


def test_check_mode_reports_a_stale_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "docs" / "plugins.md"
    doc.parent.mkdir()
    doc.write_text((REPO / "docs" / "plugins.md").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "extensions").symlink_to(REPO / "extensions")
    assert gen_reference.main(["--repo", str(tmp_path)]) == 0
    fresh = doc.read_text(encoding="utf-8")
    doc.write_text(fresh.replace("### edge_payload(payload)", "### stale"), encoding="utf-8")
    capsys.readouterr()
    assert gen_reference.main(["--check", "--repo", str(tmp_path)]) == 1
    assert "is out of date (hooks)" in capsys.readouterr().err
    assert gen_reference.main(["--repo", str(tmp_path)]) == 0
    assert doc.read_text(encoding="utf-8") == fresh
