"""Typed dataclass configs <-> command-line options. Each field becomes `--field-name`; the docstring
under a field is its help text, so configs document themselves once."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
from functools import cache


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


def add_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One option per scalar field of `cls`, defaulting to None so only what the user typed is set.
    Fields marked `metadata={"internal": True}` are set by the program, not the user, and get none."""
    docs = field_docs(cls)
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for item in dataclasses.fields(cls):
        kind = {"int": int, "float": float, "str": str, "bool": _bool}.get(str(hints[item.name]))
        if kind is None or item.name in skip or item.metadata.get("internal"):
            continue
        default = item.default
        parser.add_argument(f"--{item.name.replace('_', '-')}", dest=item.name, type=kind, default=None,
                            metavar=kind.__name__.lstrip("_").upper(), help=f"{docs.get(item.name, '')} (default: {default!r})".replace("%", "%%"))


def given(namespace: argparse.Namespace, cls: type) -> dict:
    """The fields of `cls` that the user set on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(namespace).items() if k in names and v is not None}
