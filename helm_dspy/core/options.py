"""Options defined once: a dataclass field carries its default, help, choices and checks; the CLI is built from it.

``option(...)`` is a ``dataclasses.field`` whose metadata argparse needs; ``add_options`` turns a dataclass (and
the dataclasses nested in it) into flags, ``from_args`` builds the dataclass back from the parsed namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from helm_dspy.errors import UserError


def option(
    default: Any = None,
    help: str = "",  # noqa: A002 (argparse's name)
    *,
    choices: tuple | None = None,
    minimum: int | None = None,
    required: bool = False,
    flag: str | None = None,
    metavar: str | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with what its command-line flag needs (``cli=False``: not a flag)."""
    metadata = {
        "help": help,
        "choices": choices,
        "minimum": minimum,
        "required": required,
        "flag": flag,
        "metavar": metavar,
        "cli": cli,
    }
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _nested(cls, field: dataclasses.Field) -> type | None:
    hint = typing.get_type_hints(cls).get(field.name)
    return hint if dataclasses.is_dataclass(hint) else None


def _value_type(cls, field: dataclasses.Field):
    """``int`` for ``int | None``, ``list`` for ``list[str]``: what argparse has to convert to."""
    hint = typing.get_type_hints(cls)[field.name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def add_options(parser: argparse.ArgumentParser, cls, defaults: dict[str, Any] | None = None) -> None:
    """One flag per field of ``cls`` (and of dataclasses nested in it); ``defaults`` override field defaults."""
    defaults = defaults or {}
    for field in dataclasses.fields(cls):
        nested = _nested(cls, field)
        if nested is not None:
            add_options(parser, nested, defaults)
            continue
        meta = field.metadata
        if not meta.get("cli", False):
            continue
        flag = meta.get("flag") or "--" + field.name.replace("_", "-")
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        default = defaults.get(field.name, default)
        value_type = _value_type(cls, field)
        help_text = meta["help"]
        if value_type is bool:
            parser.add_argument(flag, dest=field.name, action="store_true", help=help_text)
            continue
        if value_type is list:
            shown = ",".join(default) if default else None
            help_text += f" (default: {shown})" if shown else ""
            parser.add_argument(flag, dest=field.name, default=shown, metavar=meta.get("metavar"), help=help_text)
            continue
        if default is not None and meta.get("required") is not True and "default" not in help_text:
            help_text += f" (default: {default})"
        parser.add_argument(
            flag,
            dest=field.name,
            type=value_type if value_type in (int, float) else str,
            default=default,
            choices=meta.get("choices"),
            required=bool(meta.get("required")),
            metavar=meta.get("metavar"),
            help=help_text,
        )


def split_list(text: str) -> list[str]:
    """Comma-separated items, where a run entry keeps its own arguments together:
    ``medbullets:holdout=0.2,holdout_seed=7,head_qa`` is two entries (a ``key=value`` piece joins the item before)."""
    items: list[str] = []
    for piece in (piece.strip() for piece in text.split(",")):
        if not piece:
            continue
        if items and "=" in piece and ":" not in piece and ":" in items[-1]:
            items[-1] += f",{piece}"
        else:
            items.append(piece)
    return items


def from_args(cls, args: argparse.Namespace, **fixed: Any):
    """``cls`` built from parsed flags (checked: ``minimum``), nested dataclasses included; ``fixed`` wins."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        nested = _nested(cls, field)
        if field.name in fixed:
            values[field.name] = fixed[field.name]
        elif nested is not None:
            values[field.name] = from_args(nested, args)
        elif field.metadata.get("cli", False) and hasattr(args, field.name):
            value = getattr(args, field.name)
            if _value_type(cls, field) is list and isinstance(value, str):
                value = split_list(value)
            minimum = field.metadata.get("minimum")
            if minimum is not None and value is not None and value < minimum:
                flag = field.metadata.get("flag") or "--" + field.name.replace("_", "-")
                raise UserError(f"{flag} must be at least {minimum}")
            values[field.name] = value
    return cls(**values)


def to_args(options) -> list[str]:
    """The flags that ``from_args`` turns back into ``options`` (fields left at their default are left out):
    how one command hands its options to another (the grid starting ``helm-dspy optimize``)."""
    args: list[str] = []
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if dataclasses.is_dataclass(value):
            args += to_args(value)
            continue
        if not field.metadata.get("cli", False) or value is None:
            continue
        if field.default is not dataclasses.MISSING and value == field.default:
            continue
        flag = field.metadata.get("flag") or "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            args += [flag] if value else []
        elif isinstance(value, list):
            args += [flag, ",".join(value)]
        else:
            args += [flag, str(value)]
    return args


DATA_DIR_HELP = (
    "offline mirror folder (one subfolder per scenario, upstream file names); overrides HELM_DSPY_DATA_DIR. "
    "Without either, data is downloaded as HELM does."
)


def data_dir_option() -> Any:
    """``--data-dir``, the same for every command that reads benchmark data."""
    return option(None, DATA_DIR_HELP, metavar="DIR")
