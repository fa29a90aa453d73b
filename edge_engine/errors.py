"""Exceptions of the engine, one tree.

    EdgeError                       base of everything the engine raises on purpose
    ├── ConfigError                 one or more configuration problems (``.issues``: list of ConfigIssue)
    ├── PluginLoadError             a plugin module or class could not be loaded (``.source``, ``.name``)
    ├── PipelineError               a pipeline could not be added, updated or removed (``.pipeline``)
    ├── CacheError                  the local cache is missing, unreadable or of a newer format
    ├── EndOfStream                 raised by a capture plugin when its source has no more data
    └── ServingError                a model gave no result for an input (the marker in ``Input.inferences``)

Configuration errors carry a full location so they can be printed as
``file › pipeline 'x' › plugin 'SIG' › instance 'id' › key 'K': what is wrong (got V); hint``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final, TypeVar

_SEP = " › "
_T = TypeVar("_T")


class _NotGiven(enum.Enum):
    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = _NotGiven.NOT_GIVEN
"""A :class:`ConfigIssue` without a ``got`` value (a missing key): ``None`` is a value the owner may have written."""


class EdgeError(Exception):
    """Base class of the engine's own errors."""


@dataclass(frozen=True)
class ConfigIssue:
    """One configuration problem and where it is."""

    message: str
    file: str | None = None
    pipeline: str | None = None
    plugin: str | None = None
    instance: str | None = None
    key: str | None = None
    got: Any = NOT_GIVEN
    hint: str | None = None

    def location(self) -> str:
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.pipeline is not None:
            parts.append(f"pipeline {self.pipeline!r}")
        if self.plugin is not None:
            parts.append(f"plugin {self.plugin!r}")
        if self.instance is not None:
            parts.append(f"instance {self.instance!r}")
        if self.key is not None:
            parts.append(f"key {self.key!r}")
        return _SEP.join(parts)

    def __str__(self) -> str:
        text = self.message
        if self.got is not NOT_GIVEN:
            text += f" (got {_short(self.got)})"
        if self.hint:
            text += f"; {self.hint}"
        loc = self.location()
        return f"{loc}: {text}" if loc else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "pipeline": self.pipeline,
            "plugin": self.plugin,
            "instance": self.instance,
            "key": self.key,
            "message": self.message,
            "hint": self.hint,
            "text": str(self),
        }


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigError(EdgeError):
    """Configuration problems, all of them at once."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


def valid_or_raise(found: tuple[_T, list[ConfigIssue]]) -> _T:
    """The value of a ``(value, issues)`` pair, as the ``read_*_settings`` functions return; raises
    :class:`ConfigError` with the issues when there are any."""
    value, issues = found
    if issues:
        raise ConfigError(issues)
    return value


class PluginLoadError(EdgeError):
    """A plugin module or class could not be loaded."""

    def __init__(self, source: str, name: str, reason: str):
        self.source = source
        self.name = name
        self.reason = reason
        super().__init__(f"{source} › {name}: {reason}")


class PipelineError(EdgeError):
    """A pipeline could not be added, updated or removed."""

    def __init__(self, pipeline: str, reason: str):
        self.pipeline = pipeline
        self.reason = reason
        super().__init__(f"pipeline {pipeline!r}: {reason}")


class CacheError(EdgeError):
    """The local cache is missing, unreadable, or written by a newer node."""


class EndOfStream(EdgeError):
    """Raised by a capture plugin's ``read()`` when its source is exhausted (and not looping)."""


class ServingError(EdgeError):
    """A model gave no result for an input: what a business plugin finds in ``inp.inferences[SIGNATURE]`` then.

    ``kind`` says why: ``config`` (the model's config is wrong), ``load_failed`` (the model did not load),
    ``crashed`` (its server process died during the batch), ``timeout`` (the batch ran past the watchdog),
    ``inference_error`` (pre-process, predict or post-process raised), ``unavailable`` (no server could take
    the input in time), ``flapping`` (its server processes failed too often and are stopped until the pipelines
    are updated or the node restarts), ``stopping`` (the node or pipeline is stopping) or ``unknown_engine`` (no
    serving plugin has that signature). Test with ``isinstance(value, ServingError)``, or ``raise value``.
    """

    def __init__(self, signature: str, kind: str, message: str, model: str | None = None):
        self.signature = signature
        self.kind = kind
        self.message = message
        self.model = model
        where = f"serving plugin {signature!r}" + (f" › model {model!r}" if model else "")
        super().__init__(f"{where}: {kind}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (ServingError, (self.signature, self.kind, self.message, self.model))
