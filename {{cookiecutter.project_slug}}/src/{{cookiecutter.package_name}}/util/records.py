"""Reading the JSON records a run is made of (manifest.json, run.json, data.lock, ...).

Every reader of a record goes through `read_json`, so a truncated, hand-edited
or non-UTF-8 file ends in one line naming it and the fix, never a traceback.
"""

import json
import math
import os
from pathlib import Path

from ..errors import UserError

REDO = "restore it, or run the step that writes it again"


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def loads(data: bytes | str):
    """json.loads, refusing the NaN/Infinity extensions Python would accept."""
    return json.loads(data, parse_constant=_no_constant)


def parse_json(text: str, *, file: str, fix: str, line: int | None = None):
    """json.loads(text); a syntax error is one UserError naming the file and the line.

    `line`: the line number of `text` in its file (one JSONL line); else the error's own.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        at = e.lineno if line is None else line
        raise UserError(f"line {at} is not valid JSON: {e.msg}", file=file, fix=fix) from None


def read_json(path: str | os.PathLike, *, fix: str = REDO, kind: type = dict):
    """The JSON value in `path` (an object unless `kind` says otherwise); NaN/Infinity refused."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise UserError("not found", file=str(path), fix=fix) from None
    except IsADirectoryError:
        raise UserError("a directory, not a file", file=str(path), fix=fix) from None
    except UnicodeDecodeError:
        raise UserError("not UTF-8 text", file=str(path), fix=fix) from None
    except ValueError as e:
        raise UserError(f"not valid JSON ({e})", file=str(path), fix=fix) from None
    except OSError as e:
        raise UserError(f"cannot be read ({e.strerror or e})", file=str(path), fix=fix) from None
    if not isinstance(data, kind):
        raise UserError(f"not a JSON {kind.__name__}", file=str(path), fix=fix)
    return data


def finite(value) -> bool:
    """Whether every number in a JSON-able value is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite(v) for v in value)
    return True
