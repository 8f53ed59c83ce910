"""The schema as a table: every dotted key with its type, default and docstring
(`ft config show --doc`, docs/config.md)."""

import json
from types import UnionType
from typing import Literal, Union, get_args, get_origin

from pydantic import BaseModel

from .schema import Config
from .section import Section


def reference(model: type[Section] = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) of every field in the schema, depth first.

    A section inside a list is spelt `key[].field`; a required key has no default. This
    is what `ft config show --doc` prints and docs/config.md's reference table holds.
    """
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        # Required keys and sections (their fields follow, with defaults) show none.
        plain = not field.is_required() and not isinstance(default, BaseModel)
        shown = json.dumps(default) if plain else ""
        doc = " ".join((field.description or "").split())
        rows.append((key, _type_name(field.annotation), shown, doc))
        inner, many = _section_in(field.annotation)
        if inner is not None:
            rows += reference(inner, f"{key}[]." if many else f"{key}.")
    return rows


def reference_markdown() -> str:
    """The reference table of every config key, as Markdown."""
    esc = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, kind, default, doc in reference():
        lines.append(
            f"| `{key}` | {esc(kind)} | {f'`{esc(default)}`' if default else ''} | {esc(doc)} |"
        )
    return "\n".join(lines) + "\n"


def _section_in(annotation) -> tuple[type[Section] | None, bool]:
    """(the section a field holds, whether it holds a list of them)."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation, False
    if get_origin(annotation) is list:
        inner = get_args(annotation)[0]
        if isinstance(inner, type) and issubclass(inner, Section):
            return inner, True
    return None, False


def _type_name(annotation) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return "section"
    return getattr(annotation, "__name__", str(annotation))
