"""Typed configs that round-trip through JSON. A config is a dataclass deriving from
`TypedConfig`; `from_dict` builds it from parsed JSON and refuses, in one line, a key the
class does not declare or a value of the wrong type, so a typo never passes silently.
Field types understood: bool, int, float (ints accepted), str, Literal[...], X | None,
list[X] / tuple[X, ...] (JSON lists), dict, and nested TypedConfig classes."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import ClassVar

from edgecore.errors import GPruneError, note


def _type_name(tp) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(value, tp, where: str):
    """`value` as type `tp`, or GPruneError naming `where`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except GPruneError as e:
                errors.append(str(e))
        raise GPruneError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not a valid value")
    if origin is typing.Literal:
        if value in args:
            return value
        raise GPruneError(f"{where} must be {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise GPruneError(f"{where} must be a list, got {value!r}")
        items = [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
        return tuple(items) if origin is tuple else items
    if isinstance(tp, type) and issubclass(tp, TypedConfig):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise GPruneError(f"{where} must be a mapping, got {value!r}")
        return tp.from_dict(value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise GPruneError(f"{where} must be a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    else:
        return value  # a type this module does not check (Any and the like)
    raise GPruneError(f"{where} must be {_type_name(tp)}, got {value!r}")


def option(default, help: str, default_factory=None):
    """A config field with the help text `--help` shows for it (gprune_edge.cli.config_options)."""
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def read_json(path: str | Path, what: str):
    """The parsed JSON of a config file, or a one-line error naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GPruneError(f"{path}: cannot read {what} ({e})") from None


class TypedConfig:
    """Base of every config dataclass: strict `from_dict`, JSON-ready `to_dict`, and a
    `validate` hook for checks beyond types (ranges). Construction in Python is checked too."""

    what: ClassVar[str] = ""  # what the config is called in messages ("recipe", "build config")
    # options earlier versions had, each with the value that does what the config does now: a file
    # naming one loads with a note when it holds that value, else it is refused (it asked for more)
    retired: ClassVar[dict[str, object]] = {}
    # fields that moved out of this config (to the run context): dropped from old files with a note
    moved: ClassVar[dict[str, str]] = {}

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _convert(getattr(self, f.name), hints[f.name], self._where(f.name)))
        self.validate()

    def validate(self) -> None:
        """Raise GPruneError for values of the right type but out of range."""

    @classmethod
    def describe(cls) -> str:
        """What the config is called in error messages."""
        return cls.what or cls.__name__

    def _where(self, name: str) -> str:
        return f"{self.describe()} option {name!r}"

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict, label: str | None = None):
        if not isinstance(data, dict):
            raise GPruneError(f"{label or cls.describe()} must be a mapping, got {data!r}")
        data = cls._without_retired(data, label or cls.describe())
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            known = ", ".join(cls.field_names()) or "none"
            raise GPruneError(f"{label or cls.describe()} has no option {', '.join(map(repr, unknown))}; "
                              f"valid options: {known}")
        return cls(**data)

    @classmethod
    def _without_retired(cls, data: dict, label: str) -> dict:
        for key in sorted(set(data) & set(cls.moved)):
            note(f"{label}: {key!r} is no longer part of it ({cls.moved[key]}); dropped {data[key]!r}")
        for key in sorted(set(data) & set(cls.retired)):
            if data[key] != cls.retired[key]:
                raise GPruneError(f"{label}: option {key}={json.dumps(data[key])} was removed in gprune-edge 0.3 "
                                  f"(BENCHMARKS.md has its figures); drop {key!r} to run without it")
            note(f"{label}: option {key!r} was removed in gprune-edge 0.3; its value {data[key]!r} is what "
                 "the method does now, dropped")
        return {k: v for k, v in data.items() if k not in cls.retired and k not in cls.moved}

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, TypedConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
