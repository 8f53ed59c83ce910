"""data.lock: the committed record of a data build, and what moved between two of them.

One module reads, writes and compares locks for `ft data build` / `ft data check`
(data/build.py), `ft diff` (closure/diff.py), `ft plan` and `ft report` (review/).
A lock is JSON: `sources` (name, path, sha256, rows, split), `filters` (name, params,
code_sha256), the pinned eval `suites` and, per split, the rows in, each filter's rows
in -> out (`steps`), the rows out and the sha256 of the serialized split.
"""

import json
from pathlib import Path

from ..errors import UserError
from ..util.records import read_json

SPLITS = ("train", "eval")
SOURCE_KEYS = ("sha256", "revision", "path", "hub_id", "rows", "split")
SUITE_KEYS = ("sha256", "path", "rows", "segments", "rules")


def render(lock: dict) -> str:
    """The lock's file text: sorted keys, two-space indent, one trailing newline."""
    return json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read(path: str | Path) -> dict:
    """The lock at `path`; a missing, malformed or non-lock file is a UserError naming the fix."""
    path = Path(path)
    if not path.exists():  # a directory: read_json names it as one
        raise UserError(
            "data lock not found",
            file=str(path),
            fix="run `uv run ft data build` and commit data.lock",
        )
    lock = read_json(path, fix="regenerate it with `uv run ft data build`")
    if not isinstance(lock.get("splits"), dict) or not isinstance(lock.get("filters"), list):
        raise UserError(
            "is not a data lock written by `ft data build` (no splits or filters)",
            file=str(path),
            fix="regenerate it with `uv run ft data build`",
        )
    return lock


def split_of(lock: dict, split: str) -> dict:
    """One split's record ({} when the lock has none)."""
    return lock.get("splits", {}).get(split, {})


def steps_table(old: dict, new: dict, split: str) -> list[tuple[str, dict | None, dict | None]]:
    """(filter, step before, step after) for every filter of `split`: the old order, then
    filters only the new lock has. A step is {filter, rows_in, rows_out}; None if absent."""
    steps_a = {s["filter"]: s for s in split_of(old, split).get("steps", [])}
    steps_b = {s["filter"]: s for s in split_of(new, split).get("steps", [])}
    names = list(steps_a) + [n for n in steps_b if n not in steps_a]
    return [(name, steps_a.get(name), steps_b.get(name)) for name in names]


def splits_diff(old: dict, new: dict) -> list[dict]:
    """Per split of two locks: its filter steps side by side (steps_table) and each side's
    split record (rows, sha256); what `ft plan` and `ft report` show as the data diff."""
    return [
        {
            "split": s,
            "steps": steps_table(old, new, s),
            "old": split_of(old, s),
            "new": split_of(new, s),
        }
        for s in SPLITS
    ]


def moved_steps(old_split: dict, new_split: dict) -> list[tuple[dict, dict]]:
    """(before, after) for each filter in both splits whose rows in or out changed."""
    before = {s["filter"]: s for s in old_split.get("steps", [])}
    return [
        (before[s["filter"]], s)
        for s in new_split.get("steps", [])
        if s["filter"] in before
        and (before[s["filter"]]["rows_in"], before[s["filter"]]["rows_out"])
        != (s["rows_in"], s["rows_out"])
    ]


def input_differences(old: dict, new: dict) -> list[str]:
    """What moved in the inputs: sources, filters and their code, eval suites."""
    return _training_input_differences(old, new) + suite_differences(old, new)


def _training_input_differences(old: dict, new: dict) -> list[str]:
    """Sources, the filter list and parameters, filter code."""
    diffs = _named_differences(
        "source", old.get("sources", []), new.get("sources", []), SOURCE_KEYS
    )
    old_f = [(f["name"], f["params"]) for f in old.get("filters", [])]
    new_f = [(f["name"], f["params"]) for f in new.get("filters", [])]
    if old_f != new_f:
        diffs.append(
            f"filter list changed: {[n for n, _ in old_f]} -> {[n for n, _ in new_f]}"
            if [n for n, _ in old_f] != [n for n, _ in new_f]
            else "filter parameters changed"
        )
    old_code = {f["name"]: f["code_sha256"] for f in old.get("filters", [])}
    for f in new.get("filters", []):
        if f["name"] in old_code and old_code[f["name"]] != f["code_sha256"]:
            diffs.append(f"filter {f['name']!r}: code changed")
    return diffs


def split_differences(old: dict, new: dict) -> list[str]:
    """What moved in the outputs: per split, filter row counts and the final hash."""
    diffs = []
    for split in SPLITS:
        a, b = split_of(old, split), split_of(new, split)
        for prev, step in moved_steps(a, b):
            diffs.append(
                f"{split}: filter {step['filter']!r} rows {prev['rows_in']}->"
                f"{prev['rows_out']} became {step['rows_in']}->{step['rows_out']}"
            )
        if a.get("sha256") != b.get("sha256"):
            diffs.append(
                f"{split}: {a.get('rows')} rows sha256 {str(a.get('sha256'))[:12]} -> "
                f"{b.get('rows')} rows sha256 {str(b.get('sha256'))[:12]}"
            )
    return diffs


def suite_differences(old: dict, new: dict) -> list[str]:
    """What moved in the pinned eval suites: added, removed, or a pinned field changed."""
    return _named_differences(
        "eval suite", old.get("suites", []), new.get("suites", []), SUITE_KEYS
    )


def _named_differences(kind: str, old: list[dict], new: list[dict], keys) -> list[str]:
    """Entries matched by name: each one added or removed, and each of `keys` that changed."""
    diffs = []
    before, after = {e["name"]: e for e in old}, {e["name"]: e for e in new}
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            diffs.append(f"{kind} {name!r} {'added' if a is None else 'removed'}")
            continue
        diffs += [
            f"{kind} {name!r}: {k} {a.get(k)} -> {b.get(k)}" for k in keys if a.get(k) != b.get(k)
        ]
    return diffs


def differences(old: dict, new: dict) -> list[str]:
    """Human-readable list of what moved between two locks (empty if none)."""
    return (
        _training_input_differences(old, new)
        + split_differences(old, new)
        + suite_differences(old, new)
    )
