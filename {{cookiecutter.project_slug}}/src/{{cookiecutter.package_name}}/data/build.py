"""Run sources through the filter chain, hash the result, write or check data.lock.

The training set's content hash is the sha256 of its canonical serialization:
one `canonical_json(row)` line per row, in order. That is also the exact byte
content of data/build/<split>.jsonl, so `sha256sum` on the file agrees with the lock.
"""

import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..errors import UserError
from ..hashing import canonical_json, write_atomic
from .filters import FILTERS, Filter
from .sources import load_source

LOCK_SCHEMA = 1
SPLITS = ("train", "eval")


@dataclass
class SplitResult:
    rows: list[dict]
    rows_in: int
    steps: list[dict] = field(default_factory=list)  # per filter: name, rows_in, rows_out
    sha256: str = ""


def resolve_filters(cfg: Config) -> list[tuple[Filter, dict]]:
    """Look up each configured filter and check its params against its signature."""
    chain = []
    for i, spec in enumerate(cfg.data.filters):
        flt = FILTERS.get(spec.name)
        if flt is None:
            raise UserError(f"unknown data filter {spec.name!r}", file=cfg._path,
                            key=f"data.filters.{i}.name",
                            fix=f"use one of: {', '.join(sorted(FILTERS))}, or add it to "
                            "data/filters.py")
        params = inspect.signature(flt.fn).parameters
        for p in spec.params:
            if p not in list(params)[1:]:
                raise UserError(f"filter {spec.name!r} takes no parameter {p!r}", file=cfg._path,
                                key=f"data.filters.{i}.params.{p}",
                                fix=f"its parameters are: {', '.join(list(params)[1:]) or 'none'}")
        chain.append((flt, dict(spec.params)))
    return chain


def apply_chain(cfg: Config, split: str, rows: list[dict],
                chain: list[tuple[Filter, dict]]) -> SplitResult:
    result = SplitResult(rows=rows, rows_in=len(rows))
    for position, (flt, params) in enumerate(chain):
        before = len(result.rows)
        try:
            if flt.kind == "dataset":
                result.rows = list(flt.fn(result.rows, **params))
            else:
                kept = []
                for index, row in enumerate(result.rows):
                    out = flt.fn(row, **params)
                    if out is not None:
                        kept.append(out)
                result.rows = kept
        except Exception as e:
            at = "" if flt.kind == "dataset" else f" on {split} row {index} ({canonical_json(row)[:80]})"
            raise UserError(f"data filter {flt.name!r} raised {type(e).__name__}: {e}{at}",
                            file=cfg._path, key=f"data.filters.{position}",
                            fix="fix the filter in data/filters.py or the offending row") from None
        result.steps.append({"filter": flt.name, "rows_in": before, "rows_out": len(result.rows)})
    return result


def canonical_lines(rows: list[dict]):
    """The canonical serialization, one encoded line per row."""
    for row in rows:
        yield (canonical_json(row) + "\n").encode()


def hash_rows(rows: list[dict]) -> str:
    """sha256 of the canonical serialization, streamed line by line."""
    h = hashlib.sha256()
    for line in canonical_lines(rows):
        h.update(line)
    return h.hexdigest()


def write_rows(rows: list[dict], out: Path) -> None:
    """Write the canonical serialization to `out` via a temp file and a rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.writelines(canonical_lines(rows))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def run_pipeline(cfg: Config, out_dir: str | Path | None = None) -> tuple[dict, dict[str, list]]:
    """Build every split; return (lock content, rows per split). Writes files if out_dir."""
    chain = resolve_filters(cfg)
    sources, raw = [], {s: [] for s in SPLITS}
    for i, source in enumerate(cfg.data.sources):
        pin, rows = load_source(cfg, i)
        rows = list(rows)
        raw[source.split].extend(rows)
        entry = {"name": source.name, "split": source.split, "rows": len(rows)}
        entry |= {"path": source.path, "sha256": pin} if source.path else {
            "hub_id": source.hub_id, "revision": pin}
        sources.append(entry)
    lock = {
        "schema": LOCK_SCHEMA,
        "sources": sources,
        "filters": [{"name": f.name, "params": p, "code_sha256": f.code_sha256} for f, p in chain],
        "splits": {},
    }
    built = {}
    for split in SPLITS:
        if not raw[split]:
            raise UserError(f"no {split} rows: no source has split: {split}", file=cfg._path,
                            key="data.sources", fix=f"add a source with split: {split}")
        result = apply_chain(cfg, split, raw[split], chain)
        if not result.rows:
            raise UserError(f"the filters dropped every {split} row", file=cfg._path,
                            key="data.filters", fix="loosen the filters (see the per-filter counts "
                            "with `ft data build`)")
        result.sha256 = hash_rows(result.rows)
        lock["splits"][split] = {"rows_in": result.rows_in, "steps": result.steps,
                                 "rows": len(result.rows), "sha256": result.sha256}
        built[split] = result.rows
    # Write only once every split has passed its filters, so a failure leaves the
    # previous training set whole instead of a new train split beside an old eval one.
    if out_dir is not None:
        for split, rows in built.items():
            write_rows(rows, Path(out_dir) / f"{split}.jsonl")
    return lock, built


def render_lock(lock: dict) -> str:
    return json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_lock(cfg: Config) -> dict:
    path = Path(cfg.data.lock)
    if not path.is_file():
        raise UserError("data lock not found", file=str(path),
                        fix="run `uv run ft data build` and commit data.lock")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON ({e.msg}, line {e.lineno})", file=str(path),
                        fix="regenerate it with `uv run ft data build`") from None


def lock_differences(old: dict, new: dict) -> list[str]:
    """Human-readable list of what moved between two locks (empty if none)."""
    diffs = []
    old_src = {s["name"]: s for s in old.get("sources", [])}
    new_src = {s["name"]: s for s in new.get("sources", [])}
    for name in sorted(old_src.keys() | new_src.keys()):
        a, b = old_src.get(name), new_src.get(name)
        if a is None or b is None:
            diffs.append(f"source {name!r} {'added' if a is None else 'removed'}")
            continue
        for k in ("sha256", "revision", "path", "hub_id", "rows", "split"):
            if a.get(k) != b.get(k):
                diffs.append(f"source {name!r}: {k} {a.get(k)} -> {b.get(k)}")
    old_f = [(f["name"], f["params"]) for f in old.get("filters", [])]
    new_f = [(f["name"], f["params"]) for f in new.get("filters", [])]
    if old_f != new_f:
        diffs.append(f"filter list changed: {[n for n, _ in old_f]} -> {[n for n, _ in new_f]}"
                     if [n for n, _ in old_f] != [n for n, _ in new_f]
                     else "filter parameters changed")
    old_code = {f["name"]: f["code_sha256"] for f in old.get("filters", [])}
    for f in new.get("filters", []):
        if f["name"] in old_code and old_code[f["name"]] != f["code_sha256"]:
            diffs.append(f"filter {f['name']!r}: code changed")
    for split in SPLITS:
        a, b = old.get("splits", {}).get(split, {}), new.get("splits", {}).get(split, {})
        steps_a = {s["filter"]: s for s in a.get("steps", [])}
        for step in b.get("steps", []):
            prev = steps_a.get(step["filter"])
            if prev and (prev["rows_in"], prev["rows_out"]) != (step["rows_in"], step["rows_out"]):
                diffs.append(f"{split}: filter {step['filter']!r} rows {prev['rows_in']}->"
                             f"{prev['rows_out']} became {step['rows_in']}->{step['rows_out']}")
        if a.get("sha256") != b.get("sha256"):
            diffs.append(f"{split}: {a.get('rows')} rows sha256 {str(a.get('sha256'))[:12]} -> "
                         f"{b.get('rows')} rows sha256 {str(b.get('sha256'))[:12]}")
    return diffs


def build(cfg: Config) -> dict:
    """`ft data build`: write the training set and data.lock."""
    lock, _ = run_pipeline(cfg, cfg.data.out_dir)
    write_atomic(cfg.data.lock, render_lock(lock))
    return lock


def check(cfg: Config) -> tuple[dict, dict[str, list]]:
    """`ft data check`: rebuild in memory and compare with data.lock; raise naming what moved."""
    old = read_lock(cfg)
    new, rows = run_pipeline(cfg)
    diffs = lock_differences(old, new)
    if diffs or old != new:
        raise UserError("data.lock is out of date: " + "; ".join(diffs or ["lock content differs"]),
                        file=cfg.data.lock, fix="if the change is intended, run `uv run ft data "
                        "build` and commit data.lock with it")
    return new, rows
