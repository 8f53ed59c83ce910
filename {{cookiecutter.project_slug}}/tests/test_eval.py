"""Eval suites: metrics and segment functions on fixtures, per-segment aggregation on known
answers, the suite pinned in data.lock, and config mistakes as one-line errors.

    uv run pytest -q tests/test_eval.py

Determinism of the generation metrics across processes is asserted on the smoke run's
reproduction in tests/test_closure.py (eval.json, predictions included, is byte-compared).
"""

import json
from pathlib import Path

import pytest
import yaml

SMOKE = "configs/smoke.yaml"


def test_generation_metrics_on_fixtures(pkg):
    from importlib import import_module

    metrics = import_module(f"{pkg.__name__}.evaluate.metrics").METRICS
    assert {"exact_match", "contains", "json_valid"} <= set(metrics)
    cases = [
        ("exact_match", " 179\n", "179", 1.0),
        ("exact_match", "1790", "179", 0.0),
        ("contains", "the answer is 179.", "179", 1.0),
        ("contains", "17 9", "179", 0.0),
        ("contains", "anything", "  ", 0.0),  # an empty reference is never contained
        ("json_valid", '{"a": [1, 2]}', "", 1.0),
        ("json_valid", '{"a": [1, 2}', "", 0.0),
        ("json_valid", "", "", 0.0),
    ]
    for name, prediction, reference, want in cases:
        assert metrics[name](prediction, reference) == want, (name, prediction, reference)


def test_segment_functions_on_fixtures(pkg):
    from importlib import import_module

    segments = import_module(f"{pkg.__name__}.data.segments").SEGMENTS
    row = {"prompt": "Reverse the words: a b c d e f g", "response": "g f e d c b a"}
    assert segments["long_prompt"].fn(row) is True
    assert segments["long_prompt"].fn(row, min_words=11) is False
    assert segments["long_response"].fn(row) is True
    assert segments["numeric_response"].fn(row) is False
    assert segments["numeric_response"].fn({"prompt": "Add 2 and 3.", "response": " 5"}) is True


def test_segment_metrics_on_known_answers(pkg):
    from importlib import import_module

    suites = import_module(f"{pkg.__name__}.data.suites")
    evaluate = import_module(f"{pkg.__name__}.evaluate.suites")
    rows = [
        {"prompt": "p0", "response": "ab", "segment": "easy"},
        {"prompt": "p1", "response": "cd", "segment": "easy"},
        {"prompt": "p2", "response": "ef", "segment": "hard"},
        {"prompt": "p3", "response": "{}", "segment": "hard"},
    ]
    segments = {"all": [0, 1, 2, 3], "easy": [0, 1], "hard": [2, 3]}
    suite = suites.Suite("fx", "0" * 64, rows, segments)
    losses = [(2.0, 2), (6.0, 2), (1.0, 1), (9.0, 3)]  # (loss sum, tokens) per row
    predictions = ["ab", "xcdx", "ef ", "{}"]
    out = evaluate.aggregate(suite, ["exact_match", "contains", "json_valid"], losses, predictions)
    assert out["easy"] == {
        "rows": 2,
        "tokens": 4,
        "loss": 2.0,  # (2 + 6) / 4: pooled over tokens, not a mean of row means
        "perplexity": pytest.approx(7.38905609893065),
        "exact_match": 0.5,
        "contains": 1.0,
        "json_valid": 0.0,
    }
    assert out["hard"]["loss"] == 2.5 and out["hard"]["exact_match"] == 1.0
    assert out["hard"]["json_valid"] == 0.5
    assert out["all"]["rows"] == 4 and out["all"]["loss"] == 18.0 / 8
    assert out["all"]["exact_match"] == 0.75


def test_the_embedded_suite_is_pinned_in_data_lock(pkg, data_workdir):
    cfg = pkg.config.load_config(SMOKE)
    lock = pkg.data.build.run_pipeline(cfg)
    (entry,) = lock["suites"]
    assert entry["name"] == "tasks" and entry["rows"] == 24
    assert entry["segments"] == {"all": 24, "lookup": 8, "arithmetic": 8, "hard": 8}
    assert entry["sha256"] == cfg.eval.suites[0].sha256
    assert json.loads(Path("data.lock").read_text())["suites"] == lock["suites"]


def test_an_edited_suite_stops_the_data_check(ft, data_workdir):
    with open("data/suites/tasks.jsonl", "a") as f:
        f.write('{"prompt": "Add 1 and 1.", "response": "2", "segment": "arithmetic"}\n')
    ft("data", "check", "--config", SMOKE).user_error(
        SMOKE, "eval.suites.0.sha256", "data/suites/tasks.jsonl", "changed suite"
    )


def test_a_new_segment_moves_data_lock(pkg, data_workdir):
    cfg = pkg.config.load_config(
        SMOKE,
        ["eval.suites.0.segments=[{name: numbers, fn: numeric_response}]", "eval.gates=[]"],
    )
    new = pkg.data.build.run_pipeline(cfg)
    diffs = pkg.data.lock.differences(pkg.data.lock.read(cfg.data.lock), new)
    assert any("eval suite 'tasks': segments" in d for d in diffs), diffs
    assert new["suites"][0]["segments"]["numbers"] == 8  # the arithmetic rows


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        (
            "eval.suites.0.segments.0={name: x, fn: no_such_fn}",
            ["eval.suites.0.segments.0.fn", "no_such_fn", "long_prompt"],
        ),
        (
            "eval.suites.0.segments.0={name: x, fn: long_prompt, params: {limit: 3}}",
            ["eval.suites.0.segments.0.params.limit", "min_words"],
        ),
        (
            "eval.suites.0.segments.0={name: x, field: segment, value: nowhere}",
            ["eval.suites.0.segments.0", "holds no row"],
        ),
    ],
)
def test_bad_segments_are_one_line_errors(ft, data_workdir, override, needles):
    ft("data", "check", "--config", SMOKE, "--set", override, "--set", "eval.gates=[]").user_error(
        SMOKE, *needles
    )


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("eval.gates.0.suite=nope", "gates.0.suite 'nope' is not a suite"),
        ("eval.gates.0.segment=nope", "gates.0.segment 'nope' is not a segment of 'tasks'"),
        ("eval.gates.0.metric=bleu", "gates.0.metric 'bleu' is not measured on 'tasks'"),
        ("eval.gates.0.max_regression=-1", "eval.gates.0.max_regression"),
        ("eval.suites.0.segments.0.name=all", "`all` is the whole suite"),
    ],
)
def test_bad_gates_and_suites_are_refused_by_the_schema(ft, data_workdir, override, needle):
    ft("config", "validate", "--config", SMOKE, "--set", override).user_error(SMOKE, needle)


def test_an_unknown_metric_fails_before_training(ft, data_workdir):
    bleu = ["--set", "eval.suites.0.metrics=[bleu]", "--set", "eval.gates=[]"]
    ft("train", "--config", SMOKE, *bleu).user_error(
        SMOKE, "eval.suites.0.metrics.0", "bleu", "exact_match"
    )


def test_every_config_scores_the_same_suites(data_workdir):
    """recipe.yaml and smoke.yaml share data.lock, so they must pin the same suites."""
    suites = {
        path.name: yaml.safe_load(path.read_text())["eval"]["suites"]
        for path in Path("configs").glob("*.yaml")
    }
    assert len({json.dumps(s, sort_keys=True) for s in suites.values()}) == 1, suites
