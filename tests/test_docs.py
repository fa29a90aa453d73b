"""Docs stay in step with the code: hookspecs are documented, env variables are in .env.template."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from edge_engine.constants import ENV_VARS
from edge_engine.plugin import hookspecs

REPO = Path(__file__).resolve().parent.parent


def hookspec_signatures() -> dict[str, str]:
    result = {}
    for name, func in vars(hookspecs).items():
        if name.startswith("edge_") and callable(func):
            params = ", ".join(inspect.signature(func).parameters)
            result[name] = f"{name}({params})"
    return result


def test_every_hookspec_has_a_docs_heading_with_its_signature() -> None:
    text = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^### (edge_\w+\([^)]*\))$", text, flags=re.MULTILINE))
    signatures = hookspec_signatures()
    assert signatures, "no hookspecs found"
    missing = sorted(set(signatures.values()) - headings)
    assert not missing, f"docs/plugins.md lacks headings for: {missing}"
    stale = sorted(headings - set(signatures.values()))
    assert not stale, f"docs/plugins.md documents hooks that do not exist: {stale}"


def test_every_hookspec_has_a_docstring() -> None:
    for name in hookspec_signatures():
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name


def test_env_template_lists_exactly_the_known_variables() -> None:
    text = (REPO / ".env.template").read_text(encoding="utf-8")
    listed = re.findall(r"^#?\s*(EE_[A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert sorted(listed) == sorted(ENV_VARS), "edit .env.template and constants.ENV_VARS together"
    for name in ENV_VARS:
        comment = re.search(rf"^# (.+)\n#?\s*{name}=", text, flags=re.MULTILINE)
        assert comment and len(comment.group(1)) > 10, f"{name} needs a one-line comment above it"


def test_every_env_variable_the_code_reads_is_listed() -> None:
    from edge_engine.comms.comms_settings import ENV_FIELDS
    from edge_engine.config.node_settings import ENV_OVERRIDES

    assert set(ENV_FIELDS) <= set(ENV_VARS)
    assert set(ENV_OVERRIDES) <= set(ENV_VARS)
    read = set()
    for path in (REPO / "edge_engine").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        read |= set(re.findall(r"""(?:environ|env|getenv)\s*(?:\.get\(|\[|\()\s*["'](EE_[A-Z0-9_]+)["']""", text))
    unknown = sorted(read - set(ENV_VARS) - {"EE_TEST_OUTAGE_SECONDS"})
    assert not unknown, f"variables read by the engine but not in constants.ENV_VARS/.env.template: {unknown}"
