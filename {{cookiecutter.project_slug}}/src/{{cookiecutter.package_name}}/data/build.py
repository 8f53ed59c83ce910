"""Run sources through the filter chain, hash the result, write or check data.lock.

The training set's content hash is the sha256 of its canonical serialization:
one `canonical_json(row)` line per row, in order. That is also the exact byte
content of data/build/<split>.jsonl, so `sha256sum` on the file agrees with the lock.

Each row is serialized once, in blocks of CHUNK_ROWS lines: a block feeds the hash
and, for `ft data build`, the file, in one large write. With `data.workers` > 1, runs
of consecutive row filters are spread over processes in ordered chunks; the rows,
counts and errors are exactly those of the serial path (tests/test_data_parallel.py).
"""

import hashlib
import inspect
import json
import multiprocessing
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..errors import UserError
from ..hashing import canonical_json, write_atomic
from .filters import FILTERS, Filter
from .sources import load_source
from .suites import load_suites, lock_entry

LOCK_SCHEMA = 1
SPLITS = ("train", "eval")
CHUNK_ROWS = 4096  # rows per serialized block: ~0.5-2 MB, so one hash update and one write each
PARALLEL_CHUNK_ROWS = 4096  # rows a filter worker takes at a time (data.workers > 1)
# canonical_json's encoder, built once: json.dumps with these options builds it per call.
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


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
            raise UserError(
                f"unknown data filter {spec.name!r}",
                file=cfg._path,
                key=f"data.filters.{i}.name",
                fix=f"use one of: {', '.join(sorted(FILTERS))}, or add it to data/filters.py",
            )
        params = inspect.signature(flt.fn).parameters
        for p in spec.params:
            if p not in list(params)[1:]:
                raise UserError(
                    f"filter {spec.name!r} takes no parameter {p!r}",
                    file=cfg._path,
                    key=f"data.filters.{i}.params.{p}",
                    fix=f"its parameters are: {', '.join(list(params)[1:]) or 'none'}",
                )
        chain.append((flt, dict(spec.params)))
    return chain


def apply_chain(
    cfg: Config,
    split: str,
    rows: list[dict],
    chain: list[tuple[Filter, dict]],
    workers: int | None = None,
    chunk_rows: int | None = None,
) -> SplitResult:
    """Apply the filters in order. `workers` (default: data.workers) > 1 runs each stretch of
    consecutive row filters in that many processes, `chunk_rows` (default:
    PARALLEL_CHUNK_ROWS) rows at a time; a split of one chunk or less stays in process."""
    workers = cfg.data.workers if workers is None else workers
    chunk_rows = chunk_rows or PARALLEL_CHUNK_ROWS
    result = SplitResult(rows=rows, rows_in=len(rows))
    position = 0
    while position < len(chain):
        end = position + 1
        if workers > 1 and chain[position][0].kind == "row":
            while end < len(chain) and chain[end][0].kind == "row":
                end += 1
            if len(result.rows) > chunk_rows:
                _row_filters_parallel(cfg, split, result, chain, position, end, workers, chunk_rows)
                position = end
                continue
        for offset, (flt, params) in enumerate(chain[position:end]):
            _apply_one(cfg, split, result, flt, params, position + offset)
        position = end
    return result


def _apply_one(
    cfg: Config, split: str, result: SplitResult, flt: Filter, params: dict, position: int
) -> None:
    before = len(result.rows)
    try:
        if flt.kind == "dataset":
            result.rows = list(flt.fn(result.rows, **params))
        else:
            kept = []
            for index, row in enumerate(result.rows):  # noqa: B007 - named in the error below
                out = flt.fn(row, **params)
                if out is not None:
                    kept.append(out)
            result.rows = kept
    except Exception as e:
        at = (
            "" if flt.kind == "dataset" else f" on {split} row {index} ({canonical_json(row)[:80]})"
        )
        raise _filter_error(cfg, flt, position, type(e).__name__, str(e), at) from None
    result.steps.append({"filter": flt.name, "rows_in": before, "rows_out": len(result.rows)})


def _filter_error(
    cfg: Config, flt: Filter, position: int, kind: str, message: str, at: str
) -> UserError:
    return UserError(
        f"data filter {flt.name!r} raised {kind}: {message}{at}",
        file=cfg._path,
        key=f"data.filters.{position}",
        fix="fix the filter in data/filters.py or the offending row",
    )


# What a worker process filters: the run of row filters and the split's rows, set by the
# pool initializer. Under fork they are inherited as they are (filters registered at run
# time included, no copy of the rows); under spawn they are pickled once per worker.
_WORKER_CHAIN: list[tuple[Filter, dict]] = []
_WORKER_ROWS: list[dict] = []


def _init_worker(chain: list[tuple[Filter, dict]], rows: list[dict]) -> None:
    global _WORKER_CHAIN, _WORKER_ROWS
    _WORKER_CHAIN, _WORKER_ROWS = chain, rows


def _filter_chunk(bounds: tuple[int, int]):
    """Apply each filter to rows[start:stop] in turn, as the serial path does to the split.

    Returns (kept rows, rows out of each filter that completed, error or None), the error
    being (filter offset, index of the row in that filter's input, type, message, row text).
    """
    rows = _WORKER_ROWS[bounds[0] : bounds[1]]
    counts = []
    for offset, (flt, params) in enumerate(_WORKER_CHAIN):
        kept = []
        for index, row in enumerate(rows):
            try:
                out = flt.fn(row, **params)
            except Exception as e:
                return (
                    [],
                    counts,
                    (offset, index, type(e).__name__, str(e), canonical_json(row)[:80]),
                )
            if out is not None:
                kept.append(out)
        counts.append(len(kept))
        rows = kept
    return rows, counts, None


def _row_filters_parallel(
    cfg: Config,
    split: str,
    result: SplitResult,
    chain: list[tuple[Filter, dict]],
    start: int,
    end: int,
    workers: int,
    chunk_rows: int,
) -> None:
    """chain[start:end] (row filters only) over `workers` processes, in ordered chunks."""
    n = len(result.rows)
    bounds = [(i, min(i + chunk_rows, n)) for i in range(0, n, chunk_rows)]
    # fork where it is the default (Linux): workers inherit the rows and the filters; the
    # tasks are index ranges and only the kept rows travel back. Elsewhere spawn, which
    # imports the filters by name.
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with context.Pool(
        workers, initializer=_init_worker, initargs=(chain[start:end], result.rows)
    ) as pool:
        done = list(pool.imap(_filter_chunk, bounds))
    # Rows entering filter k of the run, per chunk: the chunk, then what filter k-1 kept.
    inputs = [[b - a, *counts] for (a, b), (_, counts, _) in zip(bounds, done, strict=True)]
    errors = [(err[0], c, err) for c, (_, _, err) in enumerate(done) if err is not None]
    if errors:
        # The error the serial path meets first: the earliest filter, then the earliest row.
        offset, c, (_, index, kind, message, text) = min(errors, key=lambda e: e[:2])
        index += sum(inputs[prior][offset] for prior in range(c))
        raise _filter_error(
            cfg,
            chain[start + offset][0],
            start + offset,
            kind,
            message,
            f" on {split} row {index} ({text})",
        )
    for offset in range(end - start):
        result.steps.append(
            {
                "filter": chain[start + offset][0].name,
                "rows_in": sum(i[offset] for i in inputs),
                "rows_out": sum(i[offset + 1] for i in inputs),
            }
        )
    result.rows = [row for kept, _, _ in done for row in kept]


def canonical_chunks(rows: list[dict], chunk_rows: int = CHUNK_ROWS) -> Iterator[bytes]:
    """The canonical serialization in blocks of `chunk_rows` lines, UTF-8 encoded.

    Byte for byte the concatenation of `canonical_json(row) + "\n"` over the rows.
    """
    encode = _ENCODER.encode
    for start in range(0, len(rows), chunk_rows):
        yield ("\n".join(map(encode, rows[start : start + chunk_rows])) + "\n").encode()


def canonical_lines(rows: list[dict]):
    """The canonical serialization, one encoded line per row."""
    for row in rows:
        yield (canonical_json(row) + "\n").encode()


def serialize(rows: list[dict], out=None) -> str:
    """Serialize the rows once; feed every block to sha256 and, if given, the binary file
    `out`. Returns the hex digest."""
    h = hashlib.sha256()
    for block in canonical_chunks(rows):
        h.update(block)
        if out is not None:
            out.write(block)
    return h.hexdigest()


def hash_rows(rows: list[dict]) -> str:
    """sha256 of the canonical serialization."""
    return serialize(rows)


def _temp_for(out: Path) -> Path:
    return out.with_name(f".{out.name}.tmp-{os.getpid()}")


def _write_temp(rows: list[dict], tmp: Path) -> str:
    """Serialize into `tmp` (fsynced) and return the hash of what was written."""
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        digest = serialize(rows, f)
        f.flush()
        os.fsync(f.fileno())
    return digest


def write_rows(rows: list[dict], out: Path) -> str:
    """Write the canonical serialization to `out` via a temp file and a rename; return its
    sha256."""
    out = Path(out)
    tmp = _temp_for(out)
    try:
        digest = _write_temp(rows, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def run_pipeline(cfg: Config, out_dir: str | Path | None = None) -> tuple[dict, dict[str, list]]:
    """Build every split; return (lock content, rows per split). Writes files if out_dir."""
    chain = resolve_filters(cfg)
    sources, raw = [], {s: [] for s in SPLITS}
    for i, source in enumerate(cfg.data.sources):
        pin, rows = load_source(cfg, i)
        rows = list(rows)
        raw[source.split].extend(rows)
        entry = {"name": source.name, "split": source.split, "rows": len(rows)}
        entry |= (
            {"path": source.path, "sha256": pin}
            if source.path
            else {"hub_id": source.hub_id, "revision": pin}
        )
        sources.append(entry)
    lock = {
        "schema": LOCK_SCHEMA,
        "sources": sources,
        "filters": [{"name": f.name, "params": p, "code_sha256": f.code_sha256} for f, p in chain],
        "splits": {},
    }
    results = {}
    for split in SPLITS:
        if not raw[split]:
            raise UserError(
                f"no {split} rows: no source has split: {split}",
                file=cfg._path,
                key="data.sources",
                fix=f"add a source with split: {split}",
            )
        result = apply_chain(cfg, split, raw[split], chain)
        if not result.rows:
            raise UserError(
                f"the filters dropped every {split} row",
                file=cfg._path,
                key="data.filters",
                fix="loosen the filters (see the per-filter counts with `ft data build`)",
            )
        results[split] = result
    # Every split has passed its filters: serialize each once, into the hash and (with
    # out_dir) a temp file beside its target. The renames come last, so a failure leaves
    # the previous training set whole instead of a new train split beside an old eval one.
    temps = (
        {split: _temp_for(Path(out_dir) / f"{split}.jsonl") for split in results}
        if out_dir is not None
        else {}
    )
    try:
        for split, result in results.items():
            result.sha256 = (
                _write_temp(result.rows, temps[split]) if temps else hash_rows(result.rows)
            )
            lock["splits"][split] = {
                "rows_in": result.rows_in,
                "steps": result.steps,
                "rows": len(result.rows),
                "sha256": result.sha256,
            }
        for split, tmp in temps.items():
            os.replace(tmp, tmp.with_name(f"{split}.jsonl"))
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    if cfg.eval.suites:  # eval suites: pinned like sources, recorded beside the splits
        lock["suites"] = [lock_entry(cfg, suite, i) for i, suite in enumerate(load_suites(cfg))]
    return lock, {split: result.rows for split, result in results.items()}


def render_lock(lock: dict) -> str:
    return json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_lock(cfg: Config) -> dict:
    path = Path(cfg.data.lock)
    if not path.is_file():
        raise UserError(
            "data lock not found",
            file=str(path),
            fix="run `uv run ft data build` and commit data.lock",
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(
            f"not valid JSON ({e.msg}, line {e.lineno})",
            file=str(path),
            fix="regenerate it with `uv run ft data build`",
        ) from None


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
        diffs.append(
            f"filter list changed: {[n for n, _ in old_f]} -> {[n for n, _ in new_f]}"
            if [n for n, _ in old_f] != [n for n, _ in new_f]
            else "filter parameters changed"
        )
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
                diffs.append(
                    f"{split}: filter {step['filter']!r} rows {prev['rows_in']}->"
                    f"{prev['rows_out']} became {step['rows_in']}->{step['rows_out']}"
                )
        if a.get("sha256") != b.get("sha256"):
            diffs.append(
                f"{split}: {a.get('rows')} rows sha256 {str(a.get('sha256'))[:12]} -> "
                f"{b.get('rows')} rows sha256 {str(b.get('sha256'))[:12]}"
            )
    old_suites = {s["name"]: s for s in old.get("suites", [])}
    new_suites = {s["name"]: s for s in new.get("suites", [])}
    for name in sorted(old_suites.keys() | new_suites.keys()):
        a, b = old_suites.get(name), new_suites.get(name)
        if a is None or b is None:
            diffs.append(f"eval suite {name!r} {'added' if a is None else 'removed'}")
            continue
        for k in ("sha256", "path", "rows", "segments", "rules"):
            if a.get(k) != b.get(k):
                diffs.append(f"eval suite {name!r}: {k} {a.get(k)} -> {b.get(k)}")
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
        raise UserError(
            "data.lock is out of date: " + "; ".join(diffs or ["lock content differs"]),
            file=cfg.data.lock,
            fix="if the change is intended, run `uv run ft data "
            "build` and commit data.lock with it",
        )
    return new, rows
