"""Allowed values of configuration dataclass fields, declared beside each default and checked in one place.

A field reads ``hidden_dim: int = value(256, ge=1)  # F (Tab. A)``: the annotation gives the type, ``value``
the range. :func:`check_values` checks a mapping (one source of a run's configuration, such as
``model.datasets.demo`` or ``train.loss``) against the dataclass and names the offending key, so
:func:`sdst.config.resolve_run`, which the workflow calls for every dataset x variant when it loads, stops a
bad value before any job runs. No torch here: the workflow imports it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing

LIMITS = "limits"  # key of the field metadata


class ConfigValueError(ValueError):
    """A configuration value of the wrong type or out of range; the message starts with its key."""


def value(default, *, ge=None, gt=None, le=None, lt=None, choices=None, pattern=None, odd=False, min_len=None,
          of=None):
    """A dataclass field with ``default`` and its allowed values. Bounds and ``choices`` apply to a number or
    string, or to each item of a list; ``min_len`` to a list; ``of``: the dataclass a dict field's keys are
    checked against (e.g. ``train.loss`` -> LossConfig)."""
    limits = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices, pattern=pattern, odd=odd or None,
                                    min_len=min_len, of=of).items() if v is not None}
    meta = {LIMITS: limits}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_NAMES = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string", dict: "a mapping",
          type(None): "null"}


def type_name(tp) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list ({type_name(typing.get_args(tp)[0])} each)"
    return _NAMES[tp]


def _matches(v, tp) -> bool:
    """Whether ``v`` is of type ``tp``: int, float, bool, str, dict, list[X], X | None."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(v, a) for a in args)
    if origin is list:
        return isinstance(v, list) and all(_matches(x, args[0]) for x in v)
    if tp is float:  # YAML writes 1 for 1.0: ints are numbers too
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if tp in _NAMES:
        return isinstance(v, tp)
    raise TypeError(f"sdst.values: no check for the type {tp!r}")


def _limit_problem(x, lim: dict) -> str | None:
    if "choices" in lim and x not in lim["choices"]:
        return f"must be one of {', '.join(map(str, lim['choices']))}"
    if "pattern" in lim and not re.fullmatch(lim["pattern"], x):
        return f"must match {lim['pattern']}"
    for key, text, ok in (("ge", ">=", lambda b: x >= b), ("gt", ">", lambda b: x > b),
                          ("le", "<=", lambda b: x <= b), ("lt", "<", lambda b: x < b)):
        if key in lim and not ok(lim[key]):
            return f"must be {text} {lim[key]}"
    if lim.get("odd") and x % 2 != 1:
        return "must be odd"
    return None


def field_default(cls, name: str):
    """The default declared for ``cls.name`` (a fresh copy for list and dict fields)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def check_values(cls, values: dict, where: str) -> None:
    """Raise ConfigValueError naming ``where.key`` for an unknown key, a wrong type or a value out of range."""
    if not isinstance(values, dict):
        raise ConfigValueError(f"{where}: expected a mapping of keys to values, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    for key, v in values.items():
        lim = fields[key].metadata.get(LIMITS, {})
        if not _matches(v, hints[key]):
            raise ConfigValueError(f"{where}.{key}: expected {type_name(hints[key])}, got {v!r}")
        if "of" in lim:
            check_values(lim["of"], v, f"{where}.{key}")
            continue
        if isinstance(v, list):
            if len(v) < lim.get("min_len", 0):
                raise ConfigValueError(f"{where}.{key}: needs at least {lim['min_len']} item(s), got {v!r}")
            problem = next((p for p in (_limit_problem(x, lim) for x in v) if p), None)
            problem = problem and f"every item {problem}"
        else:
            problem = _limit_problem(v, lim) if v is not None else None
        if problem:
            raise ConfigValueError(f"{where}.{key}: {problem}, got {v!r}")
