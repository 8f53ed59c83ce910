"""The fast paths of the data pipeline give exactly what the plain ones give.

    uv run pytest tests/test_data_parallel.py -q

- serialization in blocks (one pass feeding the hash and the file) is byte for byte
  the `canonical_json(row)` lines that data.lock's hash is defined over;
- `data.workers` > 1 (row filters over processes, in ordered chunks) keeps the same rows,
  per-filter counts and error messages as one process;
- the streaming chain (chunks in, chunks out) gives the rows of the whole-list form, and
  the shipped data.lock of the list-based dedupe byte for byte.
"""

import hashlib
import json
from pathlib import Path

import pytest

RECIPE = "configs/recipe.yaml"
# Rows that stress the canonical form: key order, non-ASCII, escapes, numbers, nesting.
ODD_ROWS = [
    {"response": "b", "prompt": "a"},
    {"prompt": "héllo wörld ✓ 漢字 😀", "response": "\u2028 line sep \u0000 nul \t tab"},
    {"prompt": 'quote " backslash \\ slash /', "response": "</script>", "n": -0.0},
    {"z": [1, 2.5, 1e-7, 1e300, True, False, None], "a": {"y": {"x": []}, "b": {}}},
    {"prompt": "", "response": " ", "float": 0.1 + 0.2, "big": 2**70},
    {},
]


def canonical_bytes(pkg, rows) -> bytes:
    return "".join(pkg.util.hashing.canonical_json(r) + "\n" for r in rows).encode()


def messy_rows(n: int) -> list[dict]:
    """Rows every default filter acts on: white space, empties, long rows, TODOs, duplicates."""
    rows = []
    for i in range(n):
        prompt = f"  Reverse   the words: w{i % 997} w{i % 13}\t"
        response = f"w{i % 13} w{i % 997}"
        if i % 11 == 0:
            response = ""
        elif i % 17 == 0:
            response = "TODO"
        elif i % 23 == 0:
            prompt = prompt * 40
        rows.append({"prompt": prompt, "response": response, "i": i % 5000})
    return rows


def chain_of(pkg, *names_params):
    flt = pkg.data.filters.FILTERS
    return [(flt[name], params) for name, params in names_params]


def default_chain(pkg):
    return chain_of(
        pkg,
        ("normalize_whitespace", {}),
        ("drop_empty", {}),
        ("max_chars", {"limit": 256}),
        ("drop_containing", {"phrases": ["TODO"]}),
        ("dedupe", {}),
    )


def both(pkg, cfg, rows, chain, **parallel):
    serial = pkg.data.build.apply_chain(cfg, "train", rows, chain, workers=1)
    fanned = pkg.data.build.apply_chain(cfg, "train", rows, chain, workers=2, **parallel)
    return serial, fanned


def error_of(pkg, cfg, rows, chain, **kwargs) -> str:
    with pytest.raises(pkg.errors.UserError) as info:
        pkg.data.build.apply_chain(cfg, "train", rows, chain, **kwargs)
    return info.value.format()


# --- serialization ---------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [1, 2, 4, 4096])
def test_blocks_are_the_canonical_lines(pkg, chunk_rows):
    blocks = list(pkg.data.serialize.canonical_chunks(ODD_ROWS, chunk_rows))
    assert len(blocks) == -(-len(ODD_ROWS) // chunk_rows)
    assert b"".join(blocks) == canonical_bytes(pkg, ODD_ROWS)
    assert b"".join(pkg.data.serialize.canonical_lines(ODD_ROWS)) == canonical_bytes(pkg, ODD_ROWS)


def test_hash_and_file_come_from_one_serialization(pkg, tmp_path):
    rows = ODD_ROWS * 3000  # several blocks
    expected = hashlib.sha256(canonical_bytes(pkg, rows)).hexdigest()
    assert pkg.data.serialize.hash_rows(rows) == expected
    out = tmp_path / "sub" / "train.jsonl"
    assert pkg.data.serialize.write_rows(rows, out) == expected
    assert hashlib.sha256(out.read_bytes()).hexdigest() == expected
    assert [p.name for p in out.parent.iterdir()] == ["train.jsonl"]  # no temp file left


def test_empty_rows_serialize_to_nothing(pkg):
    assert list(pkg.data.serialize.canonical_chunks([])) == []
    assert pkg.data.serialize.hash_rows([]) == hashlib.sha256(b"").hexdigest()


# --- parallel filters ------------------------------------------------------------------


def test_workers_default_to_one_and_must_be_positive(pkg, ft, data_workdir):
    assert pkg.config.load_config(RECIPE).data.workers == 1
    ft("data", "check", "--set=data.workers=0").user_error(
        f"{RECIPE}: data.workers: Input should be greater than or equal to 1"
    )


def test_parallel_chain_matches_serial_on_the_shipped_data(pkg, data_workdir):
    cfg = pkg.config.load_config(RECIPE)
    chain = pkg.data.build.resolve_filters(cfg)
    for path in ("data/raw/chat-train.jsonl", "data/raw/chat-eval.jsonl"):
        rows = list(pkg.data.formats.read_jsonl(path))
        serial, fanned = both(pkg, cfg, rows, chain, chunk_rows=97)
        assert fanned.rows == serial.rows and fanned.steps == serial.steps
        assert fanned.rows_in == serial.rows_in == len(rows)


def test_parallel_chain_matches_serial_around_a_dataset_filter(pkg, data_workdir):
    # Row filters on both sides of dedupe: two parallel stretches, one serial step between.
    cfg = pkg.config.load_config(RECIPE)
    chain = chain_of(
        pkg,
        ("normalize_whitespace", {}),
        ("drop_empty", {}),
        ("dedupe", {"fields": ["prompt"]}),
        ("max_chars", {"limit": 200}),
        ("drop_containing", {"phrases": ["TODO", "w7 "]}),
    )
    rows = messy_rows(20_000)
    serial, fanned = both(pkg, cfg, rows, chain, chunk_rows=333)
    assert len(serial.rows) < len(rows) and len(serial.steps) == 5
    assert all(step["rows_out"] < step["rows_in"] for step in serial.steps[1:])
    assert fanned.rows == serial.rows and fanned.steps == serial.steps


def test_small_inputs_match_too(pkg, data_workdir):
    cfg = pkg.config.load_config(RECIPE)
    rows = messy_rows(300)
    serial, fanned = both(pkg, cfg, rows, default_chain(pkg))  # 300 rows < one chunk
    assert fanned.rows == serial.rows and fanned.steps == serial.steps


def test_parallel_error_is_the_one_the_serial_path_raises(pkg, data_workdir, monkeypatch):
    cfg = pkg.config.load_config(RECIPE)
    rows = messy_rows(5_000)
    filters = pkg.data.filters

    def late_fail(row):
        """Raise on a row near the end (a late chunk)."""
        if row["i"] == 4_900:
            raise ValueError("late row")
        return row

    def early_fail(row):
        """Raise on rows in the first and third chunk."""
        if row["i"] in (40, 2_100):
            raise KeyError("early row")
        return row

    for name, fn in (("late_fail", late_fail), ("early_fail", early_fail)):
        monkeypatch.setitem(filters.FILTERS, name, filters.Filter(name, "row", fn))
    # Chunk by chunk, every filter over a chunk before the next chunk: the second filter's
    # error in the first chunk is met before the first filter's in the last chunk, for any
    # number of workers (the chunks are the same).
    chain = chain_of(pkg, ("drop_empty", {}), ("late_fail", {}), ("early_fail", {}))
    serial = error_of(pkg, cfg, rows, chain, workers=1, chunk_rows=1000)
    assert "'early_fail' raised KeyError: 'early row' on train row " in serial
    assert error_of(pkg, cfg, rows, chain, workers=2, chunk_rows=1000) == serial
    chain = chain_of(pkg, ("drop_empty", {}), ("late_fail", {}))
    serial = error_of(pkg, cfg, rows, chain, workers=1, chunk_rows=1000)
    assert "'late_fail' raised ValueError: late row on train row " in serial
    assert error_of(pkg, cfg, rows, chain, workers=3, chunk_rows=1000) == serial
    # Same filter failing in two chunks: the first row, its index counted after earlier drops.
    chain = chain_of(
        pkg, ("drop_empty", {}), ("drop_containing", {"phrases": ["TODO"]}), ("early_fail", {})
    )
    serial = error_of(pkg, cfg, rows, chain, workers=1, chunk_rows=700)
    kept_before = sum(1 for r in rows[:40] if r["response"] and r["response"] != "TODO")
    assert f"raised KeyError: 'early row' on train row {kept_before} (" in serial
    assert error_of(pkg, cfg, rows, chain, workers=2, chunk_rows=700) == serial


def test_data_build_with_workers_writes_the_same_lock_and_files(pkg, ft, data_workdir, monkeypatch):
    monkeypatch.setattr(pkg.data.build, "PARALLEL_CHUNK_ROWS", 100)  # many chunks in flight
    assert ft("data", "build").code == 0
    one = {
        p: Path(p).read_bytes()
        for p in ("data.lock", "data/build/train.jsonl", "data/build/eval.jsonl")
    }
    result = ft("data", "build", "--set=data.workers=2")
    assert result.code == 0, result.err
    assert {p: Path(p).read_bytes() for p in one} == one
    lock = json.loads(one["data.lock"])
    assert (
        lock["splits"]["train"]["sha256"]
        == hashlib.sha256(one["data/build/train.jsonl"]).hexdigest()
    )


# --- streaming ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [1, 7, 4096])
def test_chunked_stream_gives_the_rows_of_one_list(pkg, data_workdir, chunk_rows):
    cfg = pkg.config.load_config(RECIPE)
    rows = messy_rows(3_000)
    whole = pkg.data.build.apply_chain(cfg, "train", rows, default_chain(pkg), chunk_rows=10_000)
    flow = pkg.data.build.Chain(cfg, "train", default_chain(pkg), workers=1, chunk_rows=chunk_rows)
    batches = (rows[i : i + 333] for i in range(0, len(rows), 333))
    chunks = list(flow.run(batches))
    assert all(0 < len(c) <= chunk_rows for c in chunks)
    assert [r for c in chunks for r in c] == whole.rows
    assert flow.steps() == whole.steps and flow.rows_in == len(rows)


def test_streamed_dedupe_keeps_what_the_list_dedupe_keeps(pkg, data_workdir, tmp_path):
    rows = messy_rows(20_000)
    list_dedupe = load_list_dedupe(tmp_path / "list_dedupe.py")
    for fields in (("prompt", "response"), ("prompt",), ("i",)):
        kept = list(pkg.data.filters.dedupe(iter(rows), fields))
        expected = list_dedupe(rows, fields)
        assert kept == expected


# The dedupe this template shipped before filters could stream: its text verbatim (the
# lock pins a filter by the hash of its source), taking and returning a whole list.
LIST_DEDUPE = '''
@dataset_filter
def dedupe(rows: list[Row], fields: tuple[str, ...] = ("prompt", "response")) -> list[Row]:
    """Keep the first of rows that agree on all of `fields`."""
    seen, kept = set(), []
    for row in rows:
        key = tuple(row.get(f) for f in fields)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept
'''


def load_list_dedupe(module: Path):
    """LIST_DEDUPE as a function, its source written to `module` (inspect reads it back from
    there for the filter's code hash)."""
    import linecache

    module.write_text(LIST_DEDUPE)
    scope = {"dataset_filter": lambda fn: fn, "Row": dict}
    code = compile(LIST_DEDUPE, str(module), "exec")
    linecache.checkcache(str(module))
    exec(code, scope)
    return scope["dedupe"]


# The prompt/response rows that dedupe was written for (chat rows came later).
PROMPT_RESPONSE = [
    "data.row_format=prompt_response",
    "data.sources.0.path=data/raw/train.jsonl",
    "data.sources.0.sha256=5b9b99590e4cdc6d968229d3db8ba6de222ac3066cf8a0227d74d695ae6ad744",
    "data.sources.1.path=data/raw/eval.jsonl",
    "data.sources.1.sha256=989d6bd6c322d5981fd0e687590d25e778fe8256a30aeed82fcef650c562251c",
]


@pytest.mark.shipped  # pins the shipped rows (955): skipped once a PR changes data or filters
def test_a_list_dedupe_still_runs_in_the_streaming_pipeline(
    pkg, data_workdir, monkeypatch, tmp_path
):
    """A repo that kept the list-based dedupe still builds: the streaming pipeline feeds it
    the split and keeps the same rows as the streamed dedupe; only its code hash differs."""
    filters = pkg.data.filters
    cfg = pkg.config.load_config(RECIPE, PROMPT_RESPONSE)
    streamed = pkg.data.build.run_pipeline(cfg)
    old = filters.Filter("dedupe", "dataset", load_list_dedupe(tmp_path / "list_dedupe.py"))
    monkeypatch.setitem(filters.FILTERS, "dedupe", old)
    lock = pkg.data.build.run_pipeline(cfg)
    assert lock["splits"] == streamed["splits"] and lock["sources"] == streamed["sources"]
    assert lock["splits"]["train"]["rows"] == 955
    assert [f["code_sha256"] for f in streamed["filters"][:4]] == [
        f["code_sha256"] for f in lock["filters"][:4]
    ]
    assert streamed["filters"][4]["code_sha256"] != lock["filters"][4]["code_sha256"]
