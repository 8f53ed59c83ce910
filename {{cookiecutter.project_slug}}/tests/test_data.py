"""Data as code: `ft data build` and `ft data check` against the committed data.lock.

    uv run pytest tests/test_data.py -q

Every test runs in a scratch copy of the repo (`data_workdir`). The expected
hashes and counts are the ones the shipped data.lock records; if the data or a
filter changes on purpose, `uv run ft data build` rewrites the lock and these pins.
"""

import hashlib
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
RECIPE = "configs/recipe.yaml"
TRAIN_SHA256 = "40c760265ef18a47df61bb50e8dc938ae1048a40ecd85669e2e7361479665782"
EVAL_SHA256 = "28a1af071c7796f5f70594817098426e6132069dd219cfcfd0ca7a38d8382e91"
TRAIN_SOURCE_SHA256 = "1ab1a5bcc573a839643393fffffaa76c7a755063f10da3513c7f38963ee2283f"
EVAL_SOURCE_SHA256 = "5026452714f8fc359907ab14707a2faa66c7dce0eea034edda9750f325d920f4"
NEW_ROW = {
    "messages": [
        {"role": "user", "content": "Reverse the words: amber falcon"},
        {"role": "assistant", "content": "falcon amber"},
    ]
}


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot() -> dict[str, bytes]:
    """Every file a build may write, with its bytes (dot files included)."""
    files = [Path("data.lock"), *sorted(Path("data/build").glob("*"))]
    return {str(p): p.read_bytes() for p in files if p.exists()}


def append_row(path: str, data: dict) -> str:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(data) + "\n")
    return sha256(path)


def register(monkeypatch, pkg, name: str, fn, kind: str = "row") -> None:
    """Register a filter for this test only."""
    filters = pkg.data.filters
    monkeypatch.setitem(filters.FILTERS, name, filters.Filter(name, kind, fn))


def first_user(row: dict) -> str:
    """The first user turn of a chat row: what the filter tests key rows on."""
    return next(m["content"] for m in row["messages"] if m["role"] == "user")


def raw_rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# --- the shipped lock -------------------------------------------------------------------


@pytest.mark.shipped
def test_shipped_lock_pins():
    lock = json.loads((ROOT / "data.lock").read_text())
    assert [(s["name"], s["sha256"], s["rows"]) for s in lock["sources"]] == [
        ("chat-train", TRAIN_SOURCE_SHA256, 1200),
        ("chat-eval", EVAL_SOURCE_SHA256, 120),
    ]
    train, held_out = lock["splits"]["train"], lock["splits"]["eval"]
    assert (train["sha256"], train["rows"]) == (TRAIN_SHA256, 1076)
    assert (held_out["sha256"], held_out["rows"]) == (EVAL_SHA256, 110)
    assert sha256(ROOT / "data/raw/chat-train.jsonl") == TRAIN_SOURCE_SHA256
    assert sha256(ROOT / "data/raw/chat-eval.jsonl") == EVAL_SOURCE_SHA256


@pytest.mark.shipped
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_check_passes_on_the_shipped_lock(ft, data_workdir, path):
    result = ft("data", "check", "--config", f"configs/{path.name}")
    assert result.code == 0, result.err
    assert f"=> 1076 rows  sha256 {TRAIN_SHA256}" in result.out
    assert f"=> 110 rows  sha256 {EVAL_SHA256}" in result.out
    assert result.out.endswith("ok  data.lock matches the sources and filters\n")
    assert not Path("data/build").exists(), "check must not write the training set"


@pytest.mark.shipped
def test_pipeline_reproduces_the_shipped_lock_exactly(pkg, data_workdir):
    rows: dict[str, list[dict]] = {"train": [], "eval": []}
    lock = pkg.data.build.run_pipeline(
        pkg.config.load_config(RECIPE), sink=lambda split, chunk: rows[split].extend(chunk)
    )
    assert pkg.data.lock.render(lock) == Path("data.lock").read_text()
    assert (len(rows["train"]), len(rows["eval"])) == (1076, 110)
    assert pkg.data.serialize.hash_rows(rows["train"]) == TRAIN_SHA256


@pytest.mark.shipped
def test_content_hash_is_stable_across_processes(pkg, data_workdir, run_python):
    code = (
        f"from {pkg.__name__}.config import load_config\n"
        f"from {pkg.__name__}.data.build import run_pipeline\n"
        f"lock = run_pipeline(load_config({RECIPE!r}))\n"
        "print(lock['splits']['train']['sha256'], lock['splits']['eval']['sha256'])"
    )
    # Different hash seeds: set and dict iteration order must not reach the data.
    runs = [run_python(code, PYTHONHASHSEED=seed) for seed in ("0", "271828")]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert [r.stdout.split() for r in runs] == [[TRAIN_SHA256, EVAL_SHA256]] * 2


# --- ft data build ----------------------------------------------------------------------


@pytest.mark.shipped
def test_build_writes_files_whose_sha256sum_is_the_lock_hash(ft, data_workdir):
    lock_before = Path("data.lock").read_bytes()
    result = ft("data", "build")
    assert result.code == 0, result.err
    assert result.out.endswith("wrote data/build/ and data.lock\n")
    assert sorted(p.name for p in Path("data/build").iterdir()) == ["eval.jsonl", "train.jsonl"]
    assert sha256("data/build/train.jsonl") == TRAIN_SHA256
    assert sha256("data/build/eval.jsonl") == EVAL_SHA256
    # Nothing moved, so the rewritten lock is byte-identical and no temp file is left.
    assert Path("data.lock").read_bytes() == lock_before
    assert sorted(p.name for p in Path(".").iterdir()) == ["configs", "data", "data.lock"]


@pytest.mark.shipped
def test_build_output_is_canonical_json_lines(pkg, ft, data_workdir):
    assert ft("data", "build").code == 0
    lines = Path("data/build/train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1076
    for line in lines:
        data = json.loads(line)
        assert line == pkg.util.hashing.canonical_json(data)
        assert set(data) == {"messages"} and all(m["content"] for m in data["messages"])


def test_build_is_idempotent(ft, data_workdir):
    assert ft("data", "build").code == 0
    first = snapshot()
    assert ft("data", "build").code == 0
    assert snapshot() == first


@pytest.mark.shipped
def test_build_then_check_after_an_intended_change(ft, data_workdir):
    new_sha = append_row("data/raw/chat-train.jsonl", NEW_ROW)
    pin = f"--set=data.sources.0.sha256={new_sha}"
    assert ft("data", "build", pin).code == 0
    lock = json.loads(Path("data.lock").read_text())
    assert (lock["sources"][0]["sha256"], lock["sources"][0]["rows"]) == (new_sha, 1201)
    assert lock["splits"]["train"]["rows"] == 1077
    assert lock["splits"]["train"]["sha256"] == sha256("data/build/train.jsonl") != TRAIN_SHA256
    assert lock["splits"]["eval"]["sha256"] == EVAL_SHA256
    assert ft("data", "check", pin).code == 0


# --- ft data check names what moved ------------------------------------------------------


@pytest.mark.shipped
def test_check_fails_when_a_source_changed_and_its_pin_was_updated(ft, data_workdir):
    new_sha = append_row("data/raw/chat-train.jsonl", NEW_ROW)
    result = ft("data", "check", f"--set=data.sources.0.sha256={new_sha}")
    line = result.user_error(
        "error: data.lock: data.lock is out of date",
        f"source 'chat-train': sha256 {TRAIN_SOURCE_SHA256} -> {new_sha}",
        "source 'chat-train': rows 1200 -> 1201",
        "train: 1076 rows sha256 40c760265ef1 -> 1077 rows",
        "run `uv run ft data build` and commit data.lock",
    )
    assert "eval:" not in line


def test_check_fails_when_a_filter_changed_code(pkg, ft, data_workdir, monkeypatch):
    # An edit of max_chars that keeps its behaviour (this comment is part of the edit).
    def max_chars(row, limit=512):
        return row if sum(map(len, pkg.data.filters.texts(row))) <= limit else None

    register(monkeypatch, pkg, "max_chars", max_chars)
    line = ft("data", "check").user_error(
        "error: data.lock: data.lock is out of date: filter 'max_chars': code changed (fix: "
    )
    assert "rows" not in line  # the output did not move: only the code did


def test_check_fails_when_the_lock_records_other_filter_code(ft, data_workdir):
    lock = json.loads(Path("data.lock").read_text())
    lock["filters"][4]["code_sha256"] = "0" * 64
    Path("data.lock").write_text(json.dumps(lock))
    ft("data", "check").user_error("data.lock: ", "filter 'dedupe': code changed")


@pytest.mark.shipped
def test_check_fails_when_filter_params_changed(ft, data_workdir):
    result = ft("data", "check", "--set=data.filters.2.params.limit=60")
    result.user_error(
        "data.lock is out of date",
        "filter parameters changed",
        "train: filter 'max_chars' rows 1168->1149 became 1168->246",
        "train: 1076 rows sha256 40c760265ef1 -> 217 rows",
        "eval: 110 rows sha256 28a1af071c77 -> 32 rows",
        "eval: filter 'max_chars' rows 119->117 became 119->33",
    )


def test_check_fails_when_the_filter_list_changed(ft, data_workdir):
    result = ft("data", "check", "--set=data.filters.4.name=normalize_whitespace")
    result.user_error(
        "filter list changed",
        "['normalize_whitespace', 'drop_empty', 'max_chars', 'drop_containing', 'dedupe'] -> "
        "['normalize_whitespace', 'drop_empty', 'max_chars', 'drop_containing', "
        "'normalize_whitespace']",
    )


def test_check_without_a_lock(ft, data_workdir):
    Path("data.lock").unlink()
    ft("data", "check").user_error("data.lock: data lock not found", "uv run ft data build")


def test_check_with_a_corrupt_lock(ft, data_workdir):
    Path("data.lock").write_text('{"schema": 1,')
    ft("data", "check").user_error("data.lock: not valid JSON", "uv run ft data build")


# --- sources -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "build"])
@pytest.mark.parametrize(
    "index, path, pinned",
    [
        (0, "data/raw/chat-train.jsonl", TRAIN_SOURCE_SHA256),
        (1, "data/raw/chat-eval.jsonl", EVAL_SOURCE_SHA256),
    ],
)
def test_source_hash_mismatch_names_config_and_key(ft, data_workdir, command, index, path, pinned):
    before = snapshot()
    actual = append_row(path, NEW_ROW)
    ft("data", command).user_error(
        f"error: {RECIPE}: data.sources.{index}.sha256: {path} has sha256 {actual}",
        f"but the config pins {pinned}",
        f"set data.sources.{index}.sha256 to {actual}",
        f"git checkout -- {path}",
    )
    assert snapshot() == before


def test_missing_source_file(ft, data_workdir):
    Path("data/raw/chat-eval.jsonl").unlink()
    ft("data", "check").user_error(
        f"{RECIPE}: data.sources.1.path: data source 'chat-eval' not found at "
        "data/raw/chat-eval.jsonl"
    )


@pytest.mark.parametrize(
    "line, problem",
    [
        ("{not json\n", "line 1201 is not valid JSON"),
        ("[1, 2]\n", "line 1201 is not a JSON object"),
    ],
)
def test_bad_source_line_names_file_and_line(ft, data_workdir, line, problem):
    with open("data/raw/chat-train.jsonl", "a") as f:
        f.write(line)
    pin = f"--set=data.sources.0.sha256={sha256('data/raw/chat-train.jsonl')}"
    ft("data", "check", pin).user_error(
        f"data/raw/chat-train.jsonl: {problem}", "one JSON object per line"
    )


def test_blank_source_lines_are_skipped(pkg, data_workdir):
    Path("rows.jsonl").write_text('\n{"prompt": "a", "response": "b"}\n  \n')
    assert list(pkg.data.formats.read_jsonl("rows.jsonl")) == [{"prompt": "a", "response": "b"}]


def test_a_split_without_a_source(ft, data_workdir):
    raw = yaml.safe_load(Path(RECIPE).read_text())
    del raw["data"]["sources"][1]
    Path("configs/train-only.yaml").write_text(yaml.safe_dump(raw))
    ft("data", "build", "--config", "configs/train-only.yaml").user_error(
        "configs/train-only.yaml: data.sources: no eval rows", "add a source with split: eval"
    )
    assert not Path("data/build").exists()


# --- filters in the chain ----------------------------------------------------------------


def test_unknown_filter_name(ft, data_workdir):
    ft("data", "check", "--set=data.filters.1.name=strip_html").user_error(
        f"{RECIPE}: data.filters.1.name: unknown data filter 'strip_html'",
        "use one of: dedupe, drop_containing, drop_empty, max_chars, normalize_whitespace",
    )


@pytest.mark.parametrize(
    "assignment, key, fix",
    [
        ("data.filters.2.params.max=3", "data.filters.2.params.max", "its parameters are: limit"),
        ("data.filters.0.params.form=NFC", "data.filters.0.params.form", "parameters are: none"),
    ],
)
def test_unknown_filter_param(ft, data_workdir, assignment, key, fix):
    ft("data", "build", f"--set={assignment}").user_error(
        f"{RECIPE}: {key}: filter ", f"takes no parameter '{key.rsplit('.', 1)[1]}'", fix
    )
    assert not Path("data/build").exists()


def test_filter_raising_on_a_row_names_filter_and_row(pkg, ft, data_workdir, monkeypatch):
    before = snapshot()
    rows = raw_rows("data/raw/chat-train.jsonl")
    target = first_user(rows[3])
    index = next(i for i, r in enumerate(rows) if first_user(r) == target)

    def explode(row):
        """Raise on one known row."""
        if first_user(row) == target:
            raise ValueError("cannot parse this one")
        return row

    register(monkeypatch, pkg, "explode", explode)
    line = ft("data", "build", "--set=data.filters.0.name=explode").user_error(
        f"{RECIPE}: data.filters.0: data filter 'explode' raised ValueError: cannot parse this one",
        f"on train row {index} (",
        pkg.util.hashing.canonical_json(rows[index])[:40],
        "fix the filter in data/filters.py or the offending row",
    )
    assert len(line) < 600
    assert snapshot() == before
    assert not Path("data/build").exists()


def test_filter_param_of_the_wrong_type_is_a_user_error(ft, data_workdir):
    ft("data", "check", "--set=data.filters.2.params.limit=many").user_error(
        "data filter 'max_chars' raised TypeError", "on train row 0"
    )


def test_dataset_filter_raising_names_the_filter(pkg, ft, data_workdir, monkeypatch):
    def broken_dedupe(rows):
        """Raise on the whole split."""
        raise KeyError("id")

    register(monkeypatch, pkg, "broken_dedupe", broken_dedupe, kind="dataset")
    line = ft("data", "check", "--set=data.filters.4.name=broken_dedupe").user_error(
        "data filter 'broken_dedupe' raised KeyError: 'id'"
    )
    assert " row " not in line


def test_filters_that_drop_every_row(ft, data_workdir):
    ft("data", "build", "--set=data.filters.2.params.limit=1").user_error(
        f"{RECIPE}: data.filters: the filters dropped every train row", "loosen the filters"
    )
    assert not Path("data/build").exists()


def test_failing_build_leaves_the_previous_build_and_lock_untouched(
    pkg, ft, data_workdir, monkeypatch
):
    assert ft("data", "build").code == 0
    before = snapshot()
    train_prompts = {first_user(r) for r in raw_rows("data/raw/chat-train.jsonl")}
    target = next(
        first_user(r)
        for r in raw_rows("data/raw/chat-eval.jsonl")
        if first_user(r) not in train_prompts
    )

    def mark_then_fail(row):
        """Mark every train row, then raise on an eval row: train is done by then."""
        if first_user(row) == target:
            raise RuntimeError("boom")
        return {**row, "checked": True}

    register(monkeypatch, pkg, "mark_then_fail", mark_then_fail)
    ft("data", "build", "--set=data.filters.0.name=mark_then_fail").user_error(
        "data filter 'mark_then_fail' raised RuntimeError: boom", "on eval row"
    )
    assert snapshot() == before


# --- progress ------------------------------------------------------------------------------


def test_progress_line_shows_rows_per_second_bytes_and_eta(pkg):
    import importlib
    import io

    progress = importlib.import_module(f"{pkg.__name__}.data.progress").Progress(io.StringIO())
    progress.start(2_000_000)
    progress.began -= 10.0  # ten seconds in
    progress.add_bytes(500_000)
    progress.add_rows(40_000)
    line = progress.line()
    assert line.startswith("rows 40,000  ")
    assert "read 500.0 kB of 2.0 MB" in line
    assert "eta 0:00:30" in line  # a quarter read in 10 s: 30 s left
    progress.close()  # the last state stays on screen, on a line of its own
    drawn = progress.stream.getvalue()
    assert drawn.endswith("\n") and drawn.rsplit("\r\033[K", 1)[1].startswith("rows 40,000")


def test_build_progress_off_a_terminal_draws_nothing(ft, data_workdir):
    result = ft("data", "build", "--progress")
    assert result.code == 0, result.err
    assert result.err == ""  # stderr is not a terminal here: the summary lines are the record
