"""Data filters: small, pure, registered functions, applied in the order the config lists.

Two kinds:
- a row filter maps one row to a row, or to None to drop it; it sees nothing else,
  so a chain of them can run in parallel over shards;
- a dataset filter sees the whole split (e.g. dedupe). Write it as a generator over the
  row stream that yields the rows kept and holds a bounded state (dedupe keeps a 16-byte
  digest per distinct row, not the row), so a split of any size streams through it. One
  that takes and returns a list still works, but holds the split in memory.

Add one by writing a function here with @row_filter or @dataset_filter, a docstring
saying what it keeps, and a fixture test in tests/test_filters.py; then list it under
`data.filters` in a config and run `uv run ft data build` to update data.lock.
Filters must not use randomness or the clock: their output is pinned by hash.
"""

import hashlib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..util.hashing import canonical_json

Row = dict


@dataclass(frozen=True)
class Filter:
    name: str
    kind: str  # "row" or "dataset"
    fn: Callable

    @property
    def code_sha256(self) -> str:
        """Hash of the filter's code closure: data.lock notices an edited filter, and also an
        edited helper function, constant or compiled pattern the filter uses (`code_closure`)."""
        return hashlib.sha256(code_closure(self.fn).encode()).hexdigest()


def _names(code) -> set[str]:
    """Global names a code object (and the lambdas/comprehensions inside it) refers to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _names(const)
    return names


def code_closure(fn: Callable) -> str:
    """The source of `fn`, then of every function or class of this project it reaches through
    its globals, then the value of every plain constant (numbers, text, tuples, regex patterns)
    it reads, each under its name. Library modules are pinned by uv.lock, not hashed here."""
    package = __name__.split(".", 1)[0]
    parts, seen, todo = [], set(), [fn]
    while todo:
        f = todo.pop(0)
        if id(f) in seen:
            continue
        seen.add(id(f))
        # The filter's own source comes bare, so a filter that uses nothing else keeps the
        # hash it always had; what it reaches is headed by its qualified name (not module:
        # the package name differs from bake to bake).
        head = "" if f is fn else f"# {f.__qualname__}\n"
        parts.append(head + inspect.getsource(f))
        scope = dict(getattr(f, "__globals__", None) or vars(inspect.getmodule(f)))
        code = getattr(f, "__code__", None)
        names = _names(code) if code else set()
        if code and f.__closure__:  # variables of an enclosing function count like globals
            for name, cell in zip(code.co_freevars, f.__closure__, strict=True):
                scope[name] = cell.cell_contents
                names.add(name)
        for name in sorted(names):
            value = scope.get(name)
            if (inspect.isfunction(value) or inspect.isclass(value)) and (
                value.__module__ or ""
            ).split(".", 1)[0] == package:
                todo.append(value)
            elif isinstance(value, re.Pattern):
                parts.append(f"# {name} = re.compile({value.pattern!r}, {value.flags})\n")
            elif isinstance(value, int | float | str | bytes | tuple | frozenset | bool):
                parts.append(f"# {name} = {value!r}\n")
    return "".join(parts)


FILTERS: dict[str, Filter] = {}


def _register(kind: str):
    def deco(fn):
        FILTERS[fn.__name__] = Filter(fn.__name__, kind, fn)
        return fn

    return deco


row_filter = _register("row")
dataset_filter = _register("dataset")

_SPACES = re.compile(r"\s+")


def texts(row: Row) -> list[str]:
    """The text a row carries: prompt and response, or each chat turn's content."""
    if isinstance(row.get("messages"), list):
        return [m.get("content") or "" for m in row["messages"]]
    return [row.get("prompt") or "", row.get("response") or ""]


def _fold(value):
    return _SPACES.sub(" ", value).strip() if isinstance(value, str) else value


@row_filter
def normalize_whitespace(row: Row) -> Row:
    """Strip each text field and each chat turn's content; fold runs of white space into one."""
    out = {k: _fold(v) for k, v in row.items()}
    if isinstance(row.get("messages"), list):
        out["messages"] = [
            {**m, "content": _fold(m.get("content"))} if isinstance(m, dict) else m
            for m in row["messages"]
        ]
    return out


@row_filter
def drop_empty(row: Row, fields: tuple[str, ...] = ("prompt", "response")) -> Row | None:
    """Drop rows where any of `fields` is missing or empty; a chat row, where any turn is."""
    if isinstance(row.get("messages"), list):
        return row if row["messages"] and all(texts(row)) else None
    return row if all(isinstance(row.get(f), str) and row[f] for f in fields) else None


@row_filter
def max_chars(row: Row, limit: int = 512) -> Row | None:
    """Drop rows whose text (prompt plus response, or all turns) is over `limit` characters."""
    return row if sum(map(len, texts(row))) <= limit else None


@row_filter
def drop_containing(row: Row, phrases: Iterable[str] = ()) -> Row | None:
    """Drop rows whose text (any field or turn) contains any of `phrases` (case-insensitive)."""
    text = "\n".join(texts(row)).lower()
    return None if any(p.lower() in text for p in phrases) else row


@dataset_filter
def dedupe(rows: Iterable[Row], fields: tuple[str, ...] = ("prompt", "response")) -> Iterator[Row]:
    """Keep the first of rows that agree on all of `fields` (chat rows: on every turn).

    Its state is one 16-byte BLAKE2b digest of those fields per distinct row (~100 bytes
    of memory each in a Python set: ~1 GB at 10M distinct rows), never the rows.
    """
    seen = set()
    for row in rows:
        if isinstance(row.get("messages"), list):
            what = [[m.get("role"), m.get("content")] for m in row["messages"]]
        else:
            what = [row.get(f) for f in fields]
        key = hashlib.blake2b(canonical_json(what).encode(), digest_size=16).digest()
        if key not in seen:
            seen.add(key)
            yield row
