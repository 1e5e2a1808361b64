"""Typed dataclass configs <-> command-line options and YAML files. Each field becomes `--field-name`;
the docstring under a field is its help text, so configs document themselves once. A YAML config file is
the dataclass serialised (`dataclasses.asdict`), checked field by field when read back."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import textwrap
import typing
from functools import cache
from pathlib import Path

import yaml

from .errors import SoftPromptError

# What a value of each annotated field type may be (an int is a fine float; a bool is no number).
ACCEPTED_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,)}


def fits(type_name: str, value) -> bool:
    """Whether `value` may fill a field annotated `type_name` (types outside ACCEPTED_TYPES are not checked)."""
    allowed = ACCEPTED_TYPES.get(type_name)
    return allowed is None or (isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed))


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The string literal written under each field of a dataclass (and its bases)."""
    docs = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, following in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# How the text of an option becomes a value of its field's type (on the command line and in KEY=VALUE pairs).
TEXT_PARSERS = {"int": int, "float": float, "str": str, "bool": _bool}


def add_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One option per scalar field of `cls`, defaulting to None so only what the user typed is set.
    Fields marked `metadata={"internal": True}` are set by the program, not the user, and get none."""
    docs = field_docs(cls)
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for item in dataclasses.fields(cls):
        kind = TEXT_PARSERS.get(str(hints[item.name]))
        if kind is None or item.name in skip or item.metadata.get("internal"):
            continue
        default = item.default
        parser.add_argument(f"--{item.name.replace('_', '-')}", dest=item.name, type=kind, default=None,
                            metavar=kind.__name__.lstrip("_").upper(), help=f"{docs.get(item.name, '')} (default: {default!r})".replace("%", "%%"))


def given(namespace: argparse.Namespace, cls: type, skip: tuple[str, ...] = ()) -> dict:
    """The fields of `cls` (less `skip`) that the user set on the command line."""
    names = {f.name for f in dataclasses.fields(cls)} - set(skip)
    return {k: v for k, v in vars(namespace).items() if k in names and v is not None}


def checked(cls: type, values, where: str) -> dict:
    """`values` (a mapping from a file) if every key is a field of dataclass `cls` holding a value of its type."""
    if not isinstance(values, dict):
        raise SoftPromptError(f"{where}: expected a mapping of option: value, got {type(values).__name__}")
    hints = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise SoftPromptError(f"{where}: unknown option(s) {unknown}; valid options: {', '.join(sorted(hints))}")
    for key, value in values.items():
        if not fits(hints[key], value):
            raise SoftPromptError(f"{where}: {key} must be {hints[key]}, got {type(value).__name__} {value!r}")
    return {k: float(v) if hints[k] == "float" else v for k, v in values.items()}


def parse_options(cls: type, pairs: list[str], where: str) -> dict:
    """KEY=VALUE texts as fields of dataclass `cls`, each converted by its field's type as the command line does."""
    hints = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    values = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals:
            raise SoftPromptError(f"{where}: expected KEY=VALUE, got {pair!r}")
        try:
            values[key] = TEXT_PARSERS.get(hints.get(key), str)(text)  # unknown keys stay text: checked() names them
        except (ValueError, argparse.ArgumentTypeError) as error:
            raise SoftPromptError(f"{where}: {key} must be {hints[key]}, got {text!r}") from error
    return checked(cls, values, where)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SoftPromptError(f"config file {str(path)!r} does not exist")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SoftPromptError(f"config file {path} is not valid YAML: {error}") from error
    return {} if values is None else values


def to_yaml(config) -> str:
    """A dataclass config as the YAML that `--config` reads back."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)


def from_options(cls: type, options: dict, what: str):
    """`cls(**options)`, refusing keys it does not have with a message naming `what` and its fields."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(options) - known
    if unknown:
        raise SoftPromptError(f"{what} has no option(s) {sorted(unknown)}; it has: {sorted(known)}")
    return cls(**options)


def check_types(config) -> None:
    """Refuse a field whose value is not of its declared scalar type (an int is a fine float; a bool is no number)."""
    for name, hint in typing.get_type_hints(type(config)).items():
        value = getattr(config, name, None)
        if not fits(getattr(hint, "__name__", ""), value):
            raise SoftPromptError(f"{name} must be {hint.__name__}, got {type(value).__name__} {value!r}")


def at_least(config, minimum: float, *names: str) -> None:
    """Refuse a field below `minimum`, and any non-finite number (nan, inf)."""
    for name in names:
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= minimum):
            raise SoftPromptError(f"{name} must be a finite number >= {minimum}, got {value!r}")
