"""YAML file + dotted `--set` overrides -> a validated `Config`; every user mistake one
UserError naming the file, the key and the fix."""

import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import UserError
from .schema import Config
from .section import DEFAULT_CONFIG


def apply_override(raw: dict, assignment: str) -> None:
    """Set `a.b.c=value` in a raw config dict; the value is parsed as YAML."""
    key, sep, text = assignment.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(
            f"bad override {assignment!r}",
            key="--set",
            fix="write it as dotted.key=value, e.g. --set train.lr=2e-4",
        )
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(
                    f"no list item {part!r} under {'.'.join(parts[:i]) or 'the top'}",
                    key=f"--set {key}",
                    fix=f"use an index below {len(node)}",
                )
            part = int(part)
        elif not isinstance(node, dict):
            raise UserError(
                f"{'.'.join(parts[:i])} is not a mapping",
                key=f"--set {key}",
                fix="override a key that exists in the config schema",
            )
        if last:
            node[part] = yaml.safe_load(text) if text else ""
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error, not a silent overwrite."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (the second one would silently win)",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unknown_override(assignment: str) -> tuple[str, str] | None:
    """For `--set` of a key the schema does not have: (the unknown prefix as pydantic
    names it, a message naming the whole dotted path). Pydantic alone would report only
    the first unknown part (`no: Extra inputs are not permitted` for `no.such.key`)."""
    key = assignment.partition("=")[0]
    parts = key.split(".")
    node: Any = Config
    for i, part in enumerate(parts):
        # Unwrap `X | None` and list items down to a section class, if there is one.
        while True:
            origin = typing.get_origin(node)
            if origin in (typing.Union, types.UnionType):
                node = next(a for a in typing.get_args(node) if a is not type(None))
            elif origin is list and part.isdigit():
                node, part = typing.get_args(node)[0], None
                break
            else:
                break
        if part is None:
            continue  # a list index: checked against the list when applied
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return None  # a free-form mapping (filter params) or a scalar: nothing to check
        if part not in node.model_fields:
            where = ".".join(parts[:i]) or "the top level"
            known = ", ".join(n for n in node.model_fields if not n.startswith("_"))
            return ".".join(parts[: i + 1]), (
                f"--set {key}: not a config key: {where} has no key {part!r} (fix: remove the "
                f"override or fix its spelling; {where} has {known})"
            )
        node = node.model_fields[part].annotation
    return None


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _fix_for(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "remove the key or fix its spelling; configs/recipe.yaml documents every key"
    if kind == "missing":
        return "add the key; configs/recipe.yaml shows it with a comment"
    if kind == "literal_error":
        return f"use one of the allowed values ({error['msg'].removeprefix('Input should be ')})"
    return "see the comment on this key in configs/recipe.yaml"


def load_config(path: str | Path = DEFAULT_CONFIG, overrides: Sequence[str] = ()) -> Config:
    """Read, override and validate; every user mistake becomes one UserError."""
    path = Path(path)
    fix = "pass --config with a YAML file under configs/"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("config file not found", file=str(path), fix=fix) from None
    except IsADirectoryError:
        raise UserError("is a directory, not a config file", file=str(path), fix=fix) from None
    except UnicodeDecodeError as e:
        raise UserError(
            f"is not UTF-8 text (byte {e.start})", file=str(path), fix="save it as UTF-8"
        ) from None
    except OSError as e:
        raise UserError(f"cannot be read ({e.strerror or e})", file=str(path), fix=fix) from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise UserError(
            f"not valid YAML: {getattr(e, 'problem', e)}",
            file=str(path),
            key=where,
            fix="fix the YAML syntax at that line",
        ) from None
    if not isinstance(raw, dict):
        raise UserError(
            "the config must be a mapping of keys",
            file=str(path),
            fix="start from configs/recipe.yaml",
        )
    for assignment in overrides:
        apply_override(raw, assignment)
    unknown = dict(filter(None, map(_unknown_override, overrides)))
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        lines = list(unknown.values())
        for err in e.errors():
            if err["type"] == "extra_forbidden" and _dotted(err["loc"]) in unknown:
                continue  # said above, with the override's whole path
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{_dotted(err['loc'])}: {msg} (fix: {_fix_for(err)})")
        raise UserError("; ".join(lines), file=str(path)) from None
    cfg._path = str(path)
    return cfg


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
