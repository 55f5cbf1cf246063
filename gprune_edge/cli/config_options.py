"""Command-line options generated from a typed config's fields, so `--help` cannot drift from
the config: a field `batch_size` becomes `--batch-size`, its help text is the field's
(`edgecore.typed_config.option`), its default is the field's. Every option defaults to None in
click, so a command knows what the user gave and overrides only that (a --recipe or --config
file supplies the rest)."""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing

import click

from edgecore.errors import GPruneError

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_tokens(text: str, option: str = "--tokens") -> int:
    """A token count: 20000, 20k, 1.5M."""
    match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", str(text))
    if not match:
        raise GPruneError(f"{option} must be a number of tokens such as 20000, 20k or 2M, got {text!r}")
    return round(float(match.group(1)) * _SUFFIX[match.group(2).lower()])


class TokenCount(click.ParamType):
    name = "TOKENS"

    def convert(self, value, param, ctx):
        return value if isinstance(value, int) else parse_tokens(value, f"--{param.name.replace('_', '-')}")


class CommaList(click.ParamType):
    name = "A,B,..."

    def __init__(self, item=str):
        self.item = item

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [self.item(v) for v in value.split(",")]
        except ValueError:
            raise GPruneError(f"--{param.name.replace('_', '-')} must be a comma-separated list of {self.item.__name__} "
                              f"values, got {value!r}") from None


def _click_type(tp):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _click_type(next(a for a in args if a is not type(None)))
    if origin is typing.Literal:
        return click.Choice([str(a) for a in args])
    if origin in (list, tuple):
        return CommaList(args[0] if args and args[0] in (int, float, str) else str)
    return {int: int, float: float, str: str, bool: bool}[tp]


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ""
    if value is None:
        return ""
    shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else (
        json.dumps(value) if isinstance(value, bool) else str(value))
    return f" [default: {shown}]"


def config_options(config_type, only: tuple[str, ...] | None = None, types: dict | None = None,
                   short: dict | None = None, required: tuple[str, ...] = ()):
    """Decorator: one click option per field of `config_type` (those in `only`, when given);
    `types` overrides a field's click type (e.g. TokenCount), `short` adds a short flag ("-s");
    the fields in `required` show no default (the command asks for them)."""
    hints = typing.get_type_hints(config_type)
    chosen = [f for f in dataclasses.fields(config_type) if only is None or f.name in only]

    def decorate(command):
        for f in reversed(chosen):
            flag = "--" + f.name.replace("_", "-")
            flags = [flag, *([short[f.name]] if short and f.name in short else [])]
            help_text = f.metadata.get("help", "") + ("" if f.name in required else _default_text(f))
            kind = (types or {}).get(f.name) or _click_type(hints[f.name])
            if kind is bool:
                decl = f"{flag}/--no-{f.name.replace('_', '-')}"
                command = click.option(decl, f.name, default=None, help=help_text)(command)
            else:
                command = click.option(*flags, f.name, type=kind, default=None, help=help_text)(command)
        return command
    return decorate


def given(config_type, values: dict, only: tuple[str, ...] | None = None) -> dict:
    """The options of `config_type` the user gave, popped from a command's keyword arguments."""
    names = [f.name for f in dataclasses.fields(config_type) if only is None or f.name in only]
    return {name: value for name in names if (value := values.pop(name, None)) is not None}
