"""Data pipeline throughput: its content hash against raw sha256, and the filter chain.

    cd <baked repo> && .venv/bin/python <template>/bench/data_hash.py --mb 1024 --reps 3

Prints one JSON object. Figures, each measured side by side in one process, median of
`--reps` interleaved repetitions:

(a) hashing already-serialized canonical bytes (~`--mb` MB) the way data/build.py does
    (one sha256 update per block of CHUNK_ROWS lines) vs one hashlib.sha256 call over
    the same bytes, and vs `sha256sum` on a file of them; plus the former per-line
    updates on the first `--e2e-mb` MB, for comparison;
(b) end to end from rows: serialize + hash (`ft data check`), and serialize + hash +
    write + fsync (`ft data build`), now and as it was (canonical_json per line, hashed,
    then serialized again to write), on `--e2e-mb` MB of rows, as a rate against raw sha256;
(c) rows/s of the default filter chain on `--filter-rows` rows shaped like the shipped data
    (its 1,200 train rows, cycled) with data.workers 1 and 2; then the same with a costlier
    row filter added (pii_scan below: NFKC + five regexes, a typical cleaning step).
"""

import argparse
import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

from common import interleaved, log, median, summary

WORDS = [
    "reverse", "sort", "add", "subtract", "uppercase", "lowercase", "count", "letters",
    "words", "answer", "question", "list", "repeat", "spell", "first", "last", "vowels",
    "digits", "sum", "the", "of", "and", "to", "in", "is", "it", "you", "that", "he", "was",
    "for", "on", "are", "with", "as", "his", "they", "be", "at", "one", "have", "this",
    "from", "or", "had", "by", "word", "but", "what", "água", "naïve", "café", "東京", "✓"
]


def package():
    root = Path.cwd() / "src"
    name = next(p.name for p in sorted(root.iterdir()) if (p / "__init__.py").is_file())
    for sub in ("config", "util.hashing", "data.build", "data.serialize", "data.filters"):
        importlib.import_module(f"{name}.{sub}")
    return importlib.import_module(name)


def make_rows(n: int, start: int = 0) -> list[dict]:
    """Deterministic rows of ~400 bytes, with messy ones every default filter acts on."""
    pool = [" ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(40 + i % 20))
            for i in range(512)]
    rows = []
    for i in range(start, start + n):
        prompt = f"  {pool[i % 512]}  #{i}\t"
        response = pool[(i * 31) % 512][: 80 + i % 120]
        if i % 97 == 0:
            response = ""
        elif i % 89 == 0:
            response = "TODO"
        elif i % 83 == 0:
            prompt = prompt * 3
        elif i % 79 == 0:
            prompt = f"  {pool[i % 512]}  #{i - 1}\t"  # a duplicate of the previous row
            response = pool[((i - 1) * 31) % 512][: 80 + (i - 1) % 120]
        rows.append({"prompt": prompt, "response": response})
    return rows


def shipped_like_rows(n: int) -> list[dict]:
    """n rows cycling through the shipped data/raw/train.jsonl (short task rows, messy ones
    included), each cycle's prompts tagged so that only in-cycle duplicates stay duplicates."""
    base = [json.loads(line) for line in Path("data/raw/train.jsonl").read_text().splitlines()
            if line.strip()]
    return [{**row, "prompt": f"{row['prompt']} [{i // len(base)}]"}
            if isinstance(row.get("prompt"), str) and row["prompt"].strip() else dict(row)
            for i, row in ((i, base[i % len(base)]) for i in range(n))]


def serialized(ser, megabytes: int, keep_mb: int) -> tuple[bytearray, list[int], list[dict]]:
    """~megabytes of canonical bytes, their block boundaries, and the rows of the first
    ~keep_mb MB of them (for the end-to-end figures)."""
    data, bounds, kept, start, batch = bytearray(), [0], [], 0, 50_000
    while len(data) < megabytes * 1_000_000:
        rows = make_rows(batch, start)
        if len(data) < keep_mb * 1_000_000:
            kept.extend(rows)
        for block in ser.canonical_chunks(rows):
            data += block
            bounds.append(len(data))
        start += batch
    return data, bounds, kept


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def figure_a(data: bytearray, bounds: list[int], e2e_mb: int, reps: int, tmp: Path) -> dict:
    """Hashing already-serialized canonical bytes: data/build.py's block loop vs raw."""
    view = memoryview(data)
    blocks = [view[a:b] for a, b in itertools.pairwise(bounds)]
    path = tmp / "canonical.jsonl"
    path.write_bytes(data)
    cut = next((b for b in bounds if b >= e2e_mb * 1_000_000), bounds[-1])
    subset = bytes(view[:cut])
    lines = subset.splitlines(keepends=True)
    expected = hashlib.sha256(data).hexdigest()

    def pipeline_blocks():  # the loop in data/serialize.py's serialize(), on ready blocks
        h = hashlib.sha256()
        for block in blocks:
            h.update(block)
        assert h.hexdigest() == expected

    def per_line():  # the former hash_rows, on ready lines
        h = hashlib.sha256()
        for line in lines:
            h.update(line)
        return h.hexdigest()

    def sha256sum():
        done = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
        assert done.stdout.split()[0] == expected

    log(f"data (a): {len(data) / 1e6:.0f} MB in {len(blocks)} blocks, "
        f"per-line on {len(subset) / 1e6:.0f} MB, {reps} reps")
    times = interleaved({"raw_hashlib": lambda _: timed(lambda: hashlib.sha256(data)),
                         "pipeline_blocks": lambda _: timed(pipeline_blocks),
                         "sha256sum": lambda _: timed(sha256sum),
                         "raw_hashlib_subset": lambda _: timed(lambda: hashlib.sha256(subset)),
                         "per_line_updates_subset": lambda _: timed(per_line)}, reps, log)
    path.unlink()
    mb, mb_sub = len(data) / 1e6, len(subset) / 1e6
    return {
        "bytes": len(data), "blocks": len(blocks), "subset_bytes": len(subset),
        "rate_mb_s": {
            "raw_hashlib": mb / median(times["raw_hashlib"]),
            "pipeline_blocks": mb / median(times["pipeline_blocks"]),
            "sha256sum": mb / median(times["sha256sum"]),
            "per_line_updates": mb_sub / median(times["per_line_updates_subset"]),
        },
        # throughput ratios (pipeline / raw), per interleaved repetition
        "ratio_vs_hashlib": summary([r / p for r, p in zip(times["raw_hashlib"],
                                                             times["pipeline_blocks"],
                                                             strict=True)]),
        "ratio_vs_sha256sum": summary([r / p for r, p in zip(times["sha256sum"],
                                                               times["pipeline_blocks"],
                                                               strict=True)]),
        "per_line_ratio_vs_hashlib": summary([r / p for r, p in zip(
            times["raw_hashlib_subset"], times["per_line_updates_subset"], strict=True)]),
        "times_s": times,
    }


def figure_b(ser, hashing, rows: list[dict], reps: int, tmp: Path) -> dict:
    """End to end from rows: serialize + hash (+ write), now and as it was, vs raw sha256."""
    row_bytes = b"".join(ser.canonical_chunks(rows))
    size = len(row_bytes)
    digest = hashlib.sha256(row_bytes).hexdigest()
    log(f"data (b): {len(rows)} rows, {size / 1e6:.0f} MB, {reps} reps")

    def old_hash():  # the former hash_rows: canonical_json per row, one update per line
        h = hashlib.sha256()
        for row in rows:
            h.update((hashing.canonical_json(row) + "\n").encode())
        assert h.hexdigest() == digest

    def old_build():  # the former `ft data build`: hash_rows, then serialize again to write
        old_hash()
        target = tmp / "old.jsonl"
        with open(target, "wb") as f:
            f.writelines((hashing.canonical_json(row) + "\n").encode() for row in rows)
            f.flush()
            os.fsync(f.fileno())
        target.unlink()

    def new_hash():
        assert ser.hash_rows(rows) == digest

    def new_build():
        target = tmp / "new.jsonl"
        assert ser.write_rows(rows, target) == digest
        target.unlink()

    times = interleaved({"raw_hashlib": lambda _: timed(lambda: hashlib.sha256(row_bytes)),
                         "hash_now": lambda _: timed(new_hash),
                         "hash_before": lambda _: timed(old_hash),
                         "build_now": lambda _: timed(new_build),
                         "build_before": lambda _: timed(old_build)}, reps, log)
    mb = size / 1e6

    def paired(a, b):  # per-repetition ratios
        return summary([x / y for x, y in zip(times[a], times[b], strict=True)])

    return {
        "rows": len(rows), "bytes": size,
        "rate_mb_s": {k: mb / median(v) for k, v in times.items()},
        "rows_per_s": {k: len(rows) / median(v) for k, v in times.items()},
        "ratio_vs_hashlib": {k: paired("raw_hashlib", k) for k in times if k != "raw_hashlib"},
        "speedup": {"hash": paired("hash_before", "hash_now"),
                    "build": paired("build_before", "build_now")},
        "times_s": times,
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, default=1024, help="canonical bytes for figure (a)")
    p.add_argument("--e2e-mb", type=int, default=128, help="rows for figure (b), in MB")
    p.add_argument("--filter-rows", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tmp", default=None, help="directory for the scratch files")
    args = p.parse_args()
    pkg = package()
    build, ser, hashing = pkg.data.build, pkg.data.serialize, pkg.util.hashing
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-", dir=args.tmp))
    out: dict = {"chunk_rows": ser.CHUNK_ROWS}

    log(f"data: serializing ~{args.mb} MB of rows")
    data, bounds, rows = serialized(ser, args.mb, args.e2e_mb)
    out["a"] = figure_a(data, bounds, args.e2e_mb, args.reps, tmp)
    del data, bounds
    out["b"] = figure_b(ser, hashing, rows, args.reps, tmp)
    del rows

    # (c) the default filter chain, one process vs two; then with a costlier row filter.
    cfg = pkg.config.load_config("configs/recipe.yaml")
    frows = shipped_like_rows(args.filter_rows)
    filters = pkg.data.filters
    filters.FILTERS["pii_scan"] = filters.Filter("pii_scan", "row", pii_scan)
    out["c"] = {}
    for label, names in (("default", None), ("with_pii_scan", "pii_scan")):
        chain = build.resolve_filters(cfg)
        if names:
            chain.insert(len(chain) - 1, (filters.FILTERS[names], {}))
        log(f"data (c): {[f.name for f, _ in chain]} on {len(frows)} rows, {args.reps} reps")
        out["c"][label] = filter_chain(build, cfg, chain, frows, args.reps)
    tmp.rmdir()
    print(json.dumps(out))
    return 0


_PII = [re.compile(p) for p in (r"[\w.+-]+@[\w-]+\.[\w.]+", r"\+?\d[\d -]{8,}\d",
                                 r"https?://\S+", r"\b\d{1,3}(?:\.\d{1,3}){3}\b",
                                 r"\b(?:\d[ -]*?){13,16}\b")]


def pii_scan(row: dict) -> dict | None:
    """Drop rows with an e-mail, phone number, URL, IP or card number (NFKC-folded text):
    a typical cleaning filter, costlier per row than the shipped ones."""
    text = unicodedata.normalize("NFKC", f"{row['prompt']}\n{row['response']}")
    return None if any(p.search(text) for p in _PII) else row


def filter_chain(build, cfg, chain, rows, reps) -> dict:
    results = {}

    def run(workers):
        def go(_):
            began = time.perf_counter()
            result = build.apply_chain(cfg, "train", rows, chain, workers=workers)
            elapsed = time.perf_counter() - began
            results.setdefault(workers, (result.rows, result.steps))
            assert (result.rows, result.steps) == results[workers]
            return elapsed
        return go

    times = interleaved({"workers_1": run(1), "workers_2": run(2)}, reps, log)
    assert results[1] == results[2], "parallel filter output differs from serial"
    return {"rows": len(rows), "filters": [f.name for f, _ in chain],
            "rows_out": len(results[1][0]), "steps": results[1][1],
            "rows_per_s": {k: len(rows) / median(v) for k, v in times.items()},
            "speedup_2_vs_1": summary([a / b for a, b in zip(
                times["workers_1"], times["workers_2"], strict=True)]),
            "parallel_chunk_rows": build.PARALLEL_CHUNK_ROWS, "times_s": times}
if __name__ == "__main__":
    sys.exit(main())
