"""The signature registry: every loaded plugin class by kind and signature, and every load failure.

Built once at start, before any pipeline is read. Lookups are case-insensitive and honour a class's
``ALIASES`` (Ratio1 ``TYPE`` names). Unknown names get a "did you mean" suggestion. A class is checked
before it is registered (kind, ``SIGNATURE``, ``ALIASES`` and its ``CONFIG`` declarations): one that fails
is refused with the reason, so nothing it declares can fail a pipeline or the node later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import get_close_matches

from edge_engine.errors import PluginLoadError
from edge_engine.plugin.config_keys import declaration_problems
from edge_engine.plugin.kinds import PLUGIN_BASES, PluginBase

SIGNATURE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class PluginRecord:
    """A registered plugin class and where it came from."""

    cls: type[PluginBase]
    kind: str
    signature: str
    source: str

    @property
    def version(self) -> str:
        return str(getattr(self.cls, "VERSION", ""))


@dataclass(frozen=True)
class LoadFailure:
    """A module or class that could not be loaded, and why."""

    source: str
    name: str
    reason: str
    signature: str = ""  # the class's SIGNATURE when it has one: pipelines naming it are told why it is missing

    def __str__(self) -> str:
        return f"{self.source} › {self.name}: {self.reason}"


@dataclass
class PluginRegistry:
    """Plugin classes by ``(kind, lowercase name)``; aliases point at the same record."""

    _by_name: dict[tuple[str, str], PluginRecord] = field(default_factory=dict)
    _records: list[PluginRecord] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (folder-relative file name, why it is not loaded)

    def add(self, cls: type, source: str) -> PluginRecord:
        """Validate and register one class; raises :class:`PluginLoadError` when it cannot be."""
        name = getattr(cls, "__qualname__", repr(cls))
        if not isinstance(cls, type) or not issubclass(cls, PluginBase):
            raise PluginLoadError(source, name, "not a subclass of CapturePlugin, ServingPlugin or BusinessPlugin")
        kind = cls.KIND
        if kind not in PLUGIN_BASES:
            raise PluginLoadError(source, name, "subclass CapturePlugin, ServingPlugin or BusinessPlugin")
        signature = cls.SIGNATURE
        if not isinstance(signature, str) or not signature:
            raise PluginLoadError(source, name, "class has no SIGNATURE (set SIGNATURE = '...', or ABSTRACT = True)")
        if not SIGNATURE_PATTERN.match(signature):
            raise PluginLoadError(source, name, f"invalid SIGNATURE {signature!r} (letters, digits, _; max 64)")
        aliases = cls.ALIASES
        if not isinstance(aliases, (tuple, list)) or not all(isinstance(a, str) and a for a in aliases):
            raise PluginLoadError(source, name, f"{signature}: ALIASES must be a tuple of names (got {aliases!r})")
        problems = declaration_problems(cls)
        if problems:
            raise PluginLoadError(source, name, f"{signature}: " + "; ".join(problems))
        names = [signature, *aliases]
        for candidate in names:
            existing = self._by_name.get((kind, candidate.lower()))
            if existing is not None:
                raise PluginLoadError(
                    source,
                    name,
                    f"duplicate signature {candidate!r}: already registered by "
                    f"{existing.source} › {existing.cls.__qualname__}; this class is skipped",
                )
        record = PluginRecord(cls=cls, kind=kind, signature=signature, source=source)
        for candidate in names:
            self._by_name[(kind, candidate.lower())] = record
        self._records.append(record)
        return record

    def get(self, kind: str, name: str) -> PluginRecord | None:
        """The record registered under ``name`` (signature or alias, any case), or None."""
        if not isinstance(name, str):
            return None
        return self._by_name.get((kind, name.lower()))

    def failure_for(self, name: str) -> LoadFailure | None:
        """The load failure of the class whose SIGNATURE is ``name`` (any case), or None."""
        if not isinstance(name, str):
            return None
        return next((f for f in self.failures if f.signature and f.signature.lower() == name.lower()), None)

    def suggest(self, kind: str, name: str) -> str | None:
        """The closest known signature of ``kind`` to ``name``, for "did you mean"."""
        known = {r.signature.lower(): r.signature for r in self._records if r.kind == kind}
        for record in self._records:
            if record.kind == kind:
                for alias in record.cls.ALIASES:
                    known.setdefault(alias.lower(), alias)
        near = get_close_matches(str(name).lower(), list(known), n=1, cutoff=0.5)
        return known[near[0]] if near else None

    def records(self, kind: str | None = None) -> list[PluginRecord]:
        """Registered records, optionally of one kind, in load order."""
        return [r for r in self._records if kind is None or r.kind == kind]

    def copy(self) -> PluginRegistry:
        """An independent registry with the same records (to add test or tool plugins without side effects)."""
        return PluginRegistry(dict(self._by_name), list(self._records), list(self.failures), list(self.skipped))

    def remove_source(self, source: str) -> list[PluginRecord]:
        """Forget every class loaded from ``source`` (used when a file is reloaded)."""
        removed = [r for r in self._records if r.source == source]
        self._records = [r for r in self._records if r.source != source]
        self._by_name = {k: r for k, r in self._by_name.items() if r.source != source}
        return removed
