"""Stream sources through the filter chain, hash the result, write or check data.lock.

The training set's content hash is the sha256 of its canonical serialization:
one `canonical_json(row)` line per row, in order. That is also the exact byte
content of data/build/<split>.jsonl, so `sha256sum` on the file agrees with the lock.

Nothing holds a split: rows flow from the sources (sources.py, batches of BATCH_ROWS)
through the filters in chunks of CHUNK_ROWS into blocks that feed the hash, the output
file and any other sink (the token store), so memory is flat in the row count. A row
filter sees one row; a dataset filter written as a generator (dedupe) sees the stream
and keeps a bounded state of its own; a dataset filter that returns a list gets the
whole split as a list (the older form, kept so existing filters and locks stay valid;
its memory grows with the split). Row filters run chunk by chunk, every filter over a
chunk before the next chunk, so the first error met is the same for any `data.workers`:
with workers > 1 the chunks of a run of row filters go to that many processes, at most
2 x workers chunks in flight, and come back in order (tests/test_data_parallel.py).
"""

import hashlib
import inspect
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import UserError
from ..util.hashing import naming, write_atomic
from . import lock as lock_file
from .filters import FILTERS, Filter
from .lock import SPLITS
from .named import resolve
from .pool import map_chunks
from .serialize import ENCODER
from .sources import open_source
from .suites import load_suites, lock_entry

LOCK_SCHEMA = 1
PARALLEL_CHUNK_ROWS = 4096  # rows per filter chunk (a task for a worker when data.workers > 1)


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
        flt = resolve(
            FILTERS,
            spec.name,
            spec.params,
            unknown="data filter",
            what="filter",
            home="data/filters.py",
            file=cfg._path,
            key=f"data.filters.{i}",
            name_key="name",
        )
        chain.append((flt, dict(spec.params)))
    return chain


class _Upstream(Exception):
    """An error raised before a dataset filter, carried through it unchanged."""

    def __init__(self, error: BaseException):
        self.error = error


class Chain:
    """The filter chain over one split's stream of row batches, counting rows per filter."""

    def __init__(
        self,
        cfg: Config,
        split: str,
        chain: list[tuple[Filter, dict]],
        workers: int | None = None,
        chunk_rows: int | None = None,
    ):
        self.cfg, self.split, self.chain = cfg, split, chain
        self.workers = cfg.data.workers if workers is None else workers
        self.chunk_rows = chunk_rows or PARALLEL_CHUNK_ROWS
        self.rows_in = 0
        self.counts = [[0, 0] for _ in chain]  # per filter: rows in, rows out

    def steps(self) -> list[dict]:
        return [
            {"filter": flt.name, "rows_in": n_in, "rows_out": n_out}
            for (flt, _), (n_in, n_out) in zip(self.chain, self.counts, strict=True)
        ]

    def run(self, batches: Iterable[list[dict]]) -> Iterator[list[dict]]:
        """The filtered stream, in chunks; counts fill in as it is consumed."""
        stream = self._chunks(batches)
        position = 0
        while position < len(self.chain):
            if self.chain[position][0].kind == "row":
                end = position
                while end < len(self.chain) and self.chain[end][0].kind == "row":
                    end += 1
                stream = self._row_run(stream, position, end)
            else:
                end = position + 1
                stream = self._dataset(stream, position)
            position = end
        return stream

    def _chunks(self, batches: Iterable[list[dict]]) -> Iterator[list[dict]]:
        """Re-cut the sources' batches into chunks of exactly chunk_rows (the last shorter)."""
        pending: list[dict] = []
        for batch in batches:
            self.rows_in += len(batch)
            pending.extend(batch)
            while len(pending) >= self.chunk_rows:
                yield pending[: self.chunk_rows]
                pending = pending[self.chunk_rows :]
        if pending:
            yield pending

    def _row_run(self, stream, start: int, end: int) -> Iterator[list[dict]]:
        run = self.chain[start:end]
        for chunk, (kept, counts, error) in map_chunks(stream, run, self.workers):
            n = len(chunk)
            for offset, out in enumerate(counts):
                self.counts[start + offset][0] += n
                self.counts[start + offset][1] += out
                n = out
            if error is not None:
                offset, index, kind, message, text = error
                index += self.counts[start + offset][0]
                raise _filter_error(
                    self.cfg,
                    run[offset][0],
                    start + offset,
                    kind,
                    message,
                    f" on {self.split} row {index} ({text})",
                )
            if kept:
                yield kept

    def _dataset(self, stream, position: int) -> Iterator[list[dict]]:
        flt, params = self.chain[position]
        counts = self.counts[position]

        def rows_of(chunks):
            try:
                for chunk in chunks:
                    counts[0] += len(chunk)
                    yield from chunk
            except Exception as e:  # raised upstream: not this filter's
                raise _Upstream(e) from None

        try:
            if inspect.isgeneratorfunction(flt.fn):
                out: list[dict] = []
                for row in flt.fn(rows_of(stream), **params):
                    out.append(row)
                    if len(out) == self.chunk_rows:
                        counts[1] += len(out)
                        yield out
                        out = []
            else:  # a filter over the whole split as a list: memory grows with the split
                out = list(flt.fn(list(rows_of(stream)), **params))
        except _Upstream as e:
            raise e.error from None
        except UserError:
            raise
        except Exception as e:
            raise _filter_error(self.cfg, flt, position, type(e).__name__, str(e), "") from None
        for start in range(0, len(out), self.chunk_rows):
            piece = out[start : start + self.chunk_rows]
            counts[1] += len(piece)
            yield piece


def _filter_error(
    cfg: Config, flt: Filter, position: int, kind: str, message: str, at: str
) -> UserError:
    return UserError(
        f"data filter {flt.name!r} raised {kind}: {message}{at}",
        file=cfg._path,
        key=f"data.filters.{position}",
        fix="fix the filter in data/filters.py or the offending row",
    )


def apply_chain(
    cfg: Config,
    split: str,
    rows: list[dict],
    chain: list[tuple[Filter, dict]],
    workers: int | None = None,
    chunk_rows: int | None = None,
) -> SplitResult:
    """The chain over rows already in memory (tests, tools): the streaming path, collected."""
    flow = Chain(cfg, split, chain, workers, chunk_rows)
    kept = [row for chunk in flow.run([rows]) for row in chunk]
    return SplitResult(rows=kept, rows_in=flow.rows_in, steps=flow.steps())


def _temp_for(out: Path) -> Path:
    return out.with_name(f".{out.name}.tmp-{os.getpid()}")


Sink = Callable[[str, list[dict]], None]  # (split, a chunk of its output rows, in order)


def run_pipeline(
    cfg: Config, out_dir: str | Path | None = None, sink: Sink | None = None, progress=None
) -> dict:
    """Stream every split through the chain; return the lock content.

    With `out_dir`, each split is written to a temp file beside its target as it streams;
    the renames come last, once every source matched its pin and every split has rows, so
    a failure leaves the previous training set whole. `sink` sees every output chunk
    (the token store builds from it); `progress` (progress.py) counts bytes and rows.
    """
    chain = resolve_filters(cfg)
    by_split = {s: [i for i, src in enumerate(cfg.data.sources) if src.split == s] for s in SPLITS}
    for split, indices in by_split.items():
        if not indices:
            raise UserError(
                f"no {split} rows: no source has split: {split}",
                file=cfg._path,
                key="data.sources",
                fix=f"add a source with split: {split}",
            )
    on_bytes = progress.add_bytes if progress is not None else None
    # Every source's metadata (existence, etag/size pins) before any byte is read.
    opened = [open_source(cfg, i, on_bytes) for i in range(len(cfg.data.sources))]
    if progress is not None:
        sizes = [src.size for src in opened if src.size is not None]
        progress.start(sum(sizes) if len(sizes) == len(opened) else None)
    lock: dict[str, Any] = {
        "schema": LOCK_SCHEMA,
        "sources": [],
        "filters": [{"name": f.name, "params": p, "code_sha256": f.code_sha256} for f, p in chain],
        "splits": {},
    }
    if cfg.eval.suites:  # eval suites: pinned like sources, recorded beside the splits;
        # checked before anything is written, so a bad suite leaves the old build whole.
        lock["suites"] = [lock_entry(cfg, suite, i) for i, suite in enumerate(load_suites(cfg))]
    temps = (
        {split: _temp_for(Path(out_dir) / f"{split}.jsonl") for split in SPLITS}
        if out_dir is not None
        else {}
    )
    made_dir = Path(out_dir) if out_dir is not None and not Path(out_dir).exists() else None
    done = False
    try:
        for split in SPLITS:
            flow = Chain(cfg, split, chain)
            batches = (
                batch
                for i in by_split[split]
                for batch in _check_format(cfg, i, opened[i].batches())
            )
            digest, rows = _stream_split(
                flow.run(batches), split, temps.get(split), sink, flow, progress
            )
            if not rows:
                raise UserError(
                    f"the filters dropped every {split} row",
                    file=cfg._path,
                    key="data.filters",
                    fix="loosen the filters (see the per-filter counts with `ft data build`)",
                )
            lock["splits"][split] = {
                "rows_in": flow.rows_in,
                "steps": flow.steps(),
                "rows": rows,
                "sha256": digest,
            }
        lock["sources"] = [src.lock_entry() for src in opened]
        for split, tmp in temps.items():
            os.replace(tmp, tmp.with_name(f"{split}.jsonl"))
        done = True
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        if made_dir and not done and made_dir.is_dir() and not any(made_dir.iterdir()):
            made_dir.rmdir()  # a failed first build leaves no trace
        if progress is not None:
            progress.close()
    return lock


def _stream_split(chunks, split: str, tmp: Path | None, sink, flow: Chain, progress):
    """Serialize each chunk once into the hash, the temp file and the sink: (sha256, rows)."""
    h, rows, seen_in = hashlib.sha256(), 0, 0
    out = None
    if tmp is not None:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        out = open(tmp, "wb")  # noqa: SIM115 - closed below, after the fsync
    # A full disk fails a write with no file name: name the file being written.
    target = tmp.with_name(tmp.name.split(".tmp-")[0].lstrip(".")) if tmp is not None else None
    try:
        with naming(target) if target is not None else nullcontext():
            encode = ENCODER.encode
            for chunk in chunks:
                block = ("\n".join(map(encode, chunk)) + "\n").encode()
                h.update(block)
                if out is not None:
                    out.write(block)
                if sink is not None:
                    sink(split, chunk)
                rows += len(chunk)
                if progress is not None:
                    progress.add_rows(flow.rows_in - seen_in)
                    seen_in = flow.rows_in
            if out is not None:
                out.flush()
                os.fsync(out.fileno())
    finally:
        if out is not None:
            with suppress(OSError):  # a buffer that cannot be flushed: the error above says why
                out.close()
    return h.hexdigest(), rows


def _check_format(cfg: Config, index: int, batches):
    """Pass source `index`'s batches on, checking each row has the shape `data.row_format` names
    (data/chat.py): a row of another shape stops the build naming the source and row. The
    rest of the source is read first, so a file that also fails its pin reports the pin."""
    from .chat import row_problem

    fmt, n = cfg.data.row_format, 0
    batches = iter(batches)
    for batch in batches:
        for row in batch:
            n += 1
            problem = row_problem(row, fmt)
            if problem is not None:
                for _ in batches:  # the source checks its sha256 once it is read to the end
                    pass
                source = cfg.data.sources[index]
                raise UserError(
                    f"row {n} of source {source.name!r} is not a {fmt} row: {problem}",
                    file=source.path or cfg._path,
                    key="data.row_format",
                    fix="fix the row, or set data.row_format to the format the source holds "
                    "(chat: messages; prompt_response: prompt and response)",
                )
        yield batch


def build(cfg: Config, progress=None) -> dict:
    """`ft data build`: write the training set and data.lock."""
    lock = run_pipeline(cfg, cfg.data.out_dir, progress=progress)
    write_atomic(cfg.data.lock, lock_file.render(lock))
    return lock


def check(cfg: Config, sink: Sink | None = None) -> dict:
    """`ft data check`: stream the pipeline and compare with data.lock; raise naming what
    moved. `sink` sees every output chunk (it must discard them if this raises)."""
    old = lock_file.read(cfg.data.lock)
    new = run_pipeline(cfg, sink=sink)
    diffs = lock_file.differences(old, new)
    if diffs or old != new:
        raise UserError(
            "data.lock is out of date: " + "; ".join(diffs or ["lock content differs"]),
            file=cfg.data.lock,
            fix="if the change is intended, run `uv run ft data "
            "build` and commit data.lock with it",
        )
    return new
