"""Declared configuration keys: how a plugin says which keys it takes, their defaults and types.

A plugin's ``CONFIG`` maps UPPER_SNAKE keys to either a plain default (its type is inferred from
the value: ``5`` is an int, ``0.5`` a float, ``"x"`` a string, ``None`` anything) or a :class:`Key`
with constraints. Subclasses inherit and override their parents' keys. Where a float is declared, a JSON
integer is accepted too (``79`` for ``Key(80.0, type=float)``). :func:`declaration_problems` checks a class's
declarations when it is loaded, so a malformed ``CONFIG`` fails that class alone, never a pipeline or the node.
"""

from __future__ import annotations

import builtins
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_engine.errors import ConfigIssue

KEY_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_MISSING = object()


@dataclass(frozen=True)
class Key:
    """A declared config key.

    :param default: value used when the pipeline does not set the key.
    :param type: a type or tuple of types; inferred from ``default`` when omitted.
    :param required: the pipeline must set the key (``default`` is ignored).
    :param min/max: inclusive bounds for numbers.
    :param choices: allowed values.
    :param doc: one line shown by ``plugins`` and in errors.
    """

    default: Any = None
    type: type | tuple[type, ...] | None = None
    required: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def resolved_type(self) -> tuple[builtins.type, ...] | None:  # builtins: the field ``type`` shadows the name here
        if self.type is not None:
            types = self.type if isinstance(self.type, tuple) else (self.type,)
            if float in types and int not in types:
                types = (*types, int)  # JSON writes 80.0 as 80: an integer is a valid float
            return types
        if self.default is None:
            return None
        if isinstance(self.default, bool):
            return (bool,)
        if isinstance(self.default, float):
            return (int, float)
        if isinstance(self.default, int):
            return (int,)
        if isinstance(self.default, (list, tuple)):
            return (list,)
        return (type(self.default),)

    def type_name(self) -> str:
        types = self.resolved_type()
        if types is None:
            return "any"
        if set(types) == {int, float}:
            return "number"
        return " or ".join(getattr(t, "__name__", repr(t)) for t in types)


def as_key(value: Any) -> Key:
    """A declared CONFIG entry as a :class:`Key`."""
    return value if isinstance(value, Key) else Key(default=value)


def declaration_problems(cls: type) -> list[str]:
    """What is wrong with the ``CONFIG`` declarations of ``cls`` and its bases (empty when all is well).

    ``CONFIG`` must be a mapping of UPPER_SNAKE names to a default or a :class:`Key` whose ``type`` is a type
    (or tuple of types), whose bounds and choices are well formed, and whose default has its type and lies
    within its bounds. Each problem names the class and key, and says what to write instead.
    """
    problems: list[str] = []
    for owner in reversed(cls.__mro__):
        config = vars(owner).get("CONFIG", _MISSING)
        if config is _MISSING:
            continue
        where = f"{owner.__qualname__}.CONFIG"
        if not isinstance(config, Mapping):
            problems.append(f"{where} must be a dict {{'KEY': default or Key(...)}} (got {type(config).__name__})")
            continue
        for name, value in config.items():
            if not isinstance(name, str) or not KEY_NAME.match(name):
                problems.append(f"{where}: key {name!r} is not UPPER_SNAKE (A-Z, 0-9, _; starting with a letter)")
                continue
            problems.extend(f"{where}[{name!r}]: {text}" for text in key_problems(as_key(value)))
    return problems


def key_problems(key: Key) -> list[str]:
    """What is wrong with one declared :class:`Key` (its type, bounds, choices and default)."""
    types = key.type if isinstance(key.type, tuple) else (key.type,)
    if key.type is not None and (not types or not all(isinstance(t, type) for t in types)):
        return [f"type= must be a type or a tuple of types, such as float or (int, str) (got {key.type!r})"]
    problems = []
    for bound in ("min", "max"):
        value = getattr(key, bound)
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            problems.append(f"{bound}= must be a number (got {value!r})")
    if not problems and key.min is not None and key.max is not None and key.min > key.max:
        problems.append(f"min= {key.min!r} is above max= {key.max!r}")
    if key.choices is not None and not isinstance(key.choices, (tuple, list, frozenset, set)):
        problems.append(f"choices= must be a tuple of allowed values (got {key.choices!r})")
    if not isinstance(key.required, bool):
        problems.append(f"required= must be True or False (got {key.required!r})")
    if not isinstance(key.doc, str):
        problems.append(f"doc= must be text (got {type(key.doc).__name__})")
    if problems or key.required or key.default is None:
        return problems
    problem = check_value(key, _copy(key.default))
    if problem is not None:
        problems.append(f"default {key.default!r} does not fit its own declaration: {problem[0]}")
    return problems


def merged_schema(classes: list[type]) -> dict[str, Key]:
    """Merge the CONFIG dicts of a class hierarchy, base classes first."""
    schema: dict[str, Key] = {}
    for cls in classes:
        for name, value in vars(cls).get("CONFIG", {}).items():
            schema[name] = as_key(value)
    return schema


def defaults(schema: dict[str, Key]) -> dict[str, Any]:
    """The default values of a schema (required keys have none)."""
    return {name: _copy(key.default) for name, key in schema.items() if not key.required}


def _copy(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        import copy

        return copy.deepcopy(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def check_value(key: Key, value: Any) -> tuple[str, str | None] | None:
    """Check one value against its key. Returns ``(message, hint)`` or None when valid."""
    types = key.resolved_type()
    if value is None:
        if key.required:
            return ("must not be null", None)
        return None
    if types is not None and not _is_instance(value, types):
        hint = None
        if isinstance(value, str) and _looks_like(value, types):
            hint = "remove the quotes: JSON numbers and booleans are written without them"
        return (f"expected {key.type_name()}", hint)
    if key.min is not None and isinstance(value, (int, float)) and value < key.min:
        return (f"must be >= {key.min}", None)
    if key.max is not None and isinstance(value, (int, float)) and value > key.max:
        return (f"must be <= {key.max}", None)
    if key.choices is not None and value not in key.choices:
        return (f"must be one of {', '.join(map(repr, key.choices))}", None)
    return None


def _is_instance(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _looks_like(text: str, types: tuple[type, ...]) -> bool:
    lowered = text.strip().lower()
    if bool in types and lowered in ("true", "false"):
        return True
    if int in types or float in types:
        try:
            float(lowered)
        except ValueError:
            return False
        return True
    return False


def validate_mapping(
    values: dict[str, Any],
    schema: dict[str, Key],
    where: dict[str, Any],
    extra_known: frozenset[str] = frozenset(),
    structural: frozenset[str] = frozenset(),
) -> list[ConfigIssue]:
    """Check ``values`` against ``schema``.

    ``where`` gives the location fields of every issue (file, pipeline, plugin, instance).
    ``extra_known`` keys are accepted and left untouched (Ratio1's documented keys);
    ``structural`` keys are checked by the caller.
    """
    from difflib import get_close_matches

    issues: list[ConfigIssue] = []
    known = set(schema) | set(extra_known) | set(structural)
    for name, value in values.items():
        if name in structural or (name in extra_known and name not in schema):
            continue
        if name not in schema:
            near = get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]!r}?" if near else None
            issues.append(ConfigIssue("unknown key", key=name, hint=hint, **where))
            continue
        try:
            problem = check_value(schema[name], value)
        except Exception as exc:  # a declaration that slipped past the load checks: the key's error, not a crash
            problem = (f"the plugin declares this key wrongly ({type(exc).__name__}: {exc})", None)
        if problem:
            message, hint = problem
            issues.append(ConfigIssue(message, key=name, got=value, hint=hint, **where))
    for name, key in schema.items():
        if key.required and name not in values:
            doc = f"{key.doc}" if key.doc else None
            issues.append(ConfigIssue(f"missing required key ({key.type_name()})", key=name, hint=doc, **where))
    return issues
