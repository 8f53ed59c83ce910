"""Row filters over chunks, in this process or in a pool of worker processes.

`map_chunks` yields each chunk with its result in stream order; with workers > 1 at most
2 x workers chunks are in flight, so memory stays bounded, and the first error met is the
same for any number of workers (tests/test_data_parallel.py).
"""

import multiprocessing
import sys
from collections import deque

from ..util.hashing import canonical_json
from .filters import Filter


def filter_chunk(run: list[tuple[Filter, dict]], rows: list[dict]):
    """Apply each filter of the run to the chunk in turn.

    Returns (kept rows, rows out of each filter that completed, error or None), the error
    being (filter offset, index of the row in that filter's input chunk, type, message,
    row text).
    """
    counts: list[int] = []
    for offset, (flt, params) in enumerate(run):
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


# The run of row filters a worker applies, set by the pool initializer. Under fork it is
# inherited as it is (filters registered at run time included); under spawn it is pickled
# once per worker and the filters are imported by name.
_WORKER_RUN: list[tuple[Filter, dict]] = []


def _init_worker(run: list[tuple[Filter, dict]]) -> None:
    global _WORKER_RUN
    _WORKER_RUN = run


def _worker_chunk(rows: list[dict]):
    return filter_chunk(_WORKER_RUN, rows)


def map_chunks(stream, run, workers: int):
    """(chunk, filter_chunk result) in stream order; in process, or over `workers`
    processes with at most 2 x workers chunks in flight (memory stays bounded)."""
    if workers <= 1:
        for chunk in stream:
            yield chunk, filter_chunk(run, chunk)
        return
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    pool = context.Pool(workers, initializer=_init_worker, initargs=(run,))
    pending: deque = deque()
    try:
        for chunk in stream:
            pending.append((chunk, pool.apply_async(_worker_chunk, (chunk,))))
            if len(pending) >= 2 * workers:
                done_chunk, result = pending.popleft()
                yield done_chunk, result.get()
        while pending:
            done_chunk, result = pending.popleft()
            yield done_chunk, result.get()
    finally:
        # Never Pool.terminate() (what `with Pool` does on exit) while chunks are in flight:
        # a worker blocked writing a large result holds the result queue's lock, and
        # terminate() waits on that lock forever. When the caller stops early (a filter
        # error), let the in-flight chunks (at most 2 x workers) finish, then join.
        pool.close()
        for _, result in pending:
            result.wait()
        pool.join()
