"""Each data filter on a small fixture: what it keeps, drops and rewrites.

    uv run pytest tests/test_filters.py -q

A new filter in data/filters.py needs a test here: test_every_filter_is_tested
fails until its name is added to TESTED with fixture cases of its own.
"""

import copy
import hashlib
import inspect
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "filter_rows.jsonl"
LOCK = json.loads((ROOT / "data.lock").read_text())
TESTED = {"normalize_whitespace", "drop_empty", "max_chars", "drop_containing", "dedupe"}


@pytest.fixture
def apply(pkg):
    """apply(name, row_or_rows, **params): call the registered filter by its name."""

    def run(name, data, **params):
        out = pkg.data.filters.FILTERS[name].fn(data, **params)
        # A dataset filter may stream (a generator): collect what it keeps.
        return out if out is None or isinstance(out, dict | list) else list(out)

    return run


def row(prompt: str, response: object, **extra) -> dict:  # bad values too
    return {"prompt": prompt, "response": response, **extra}


# --- the registry ---------------------------------------------------------------------


def test_every_filter_is_tested(pkg):
    assert set(pkg.data.filters.FILTERS) == TESTED, "add fixture cases for the new filter here"


def test_registry_entries_are_documented_and_hashed(pkg):
    for name, flt in pkg.data.filters.FILTERS.items():
        assert flt.name == name == flt.fn.__name__
        assert flt.kind in ("row", "dataset")
        assert flt.fn.__doc__, f"{name} needs a docstring saying what it keeps"
        closure = pkg.data.filters.code_closure(flt.fn)
        assert closure.startswith(inspect.getsource(flt.fn))
        assert flt.code_sha256 == hashlib.sha256(closure.encode()).hexdigest()


@pytest.mark.parametrize("entry", LOCK["filters"], ids=lambda e: e["name"])
def test_filter_code_matches_the_lock(pkg, entry):
    # data.lock pins each filter's code: an edit needs `uv run ft data build`.
    assert pkg.data.filters.FILTERS[entry["name"]].code_sha256 == entry["code_sha256"]


@pytest.mark.parametrize("name", sorted(TESTED))
def test_filter_does_not_mutate_its_input(pkg, name):
    flt = pkg.data.filters.FILTERS[name]
    rows = [row("  Two  spaces ", " TODO "), row("x", ""), row("  Two  spaces ", " TODO ")]
    data = rows if flt.kind == "dataset" else rows[0]
    before = copy.deepcopy(data)
    flt.fn(data)
    assert data == before


# --- one filter at a time --------------------------------------------------------------


def test_normalize_whitespace_folds_and_strips(apply):
    out = apply("normalize_whitespace", row("  Reverse\tthe \n words: a  b ", "b a\n", n=3))
    assert out == row("Reverse the words: a b", "b a", n=3)


def test_normalize_whitespace_keeps_clean_rows_and_non_text(apply):
    clean = row("Sum: 2 3", "5", tags=["a  b"], n=None)
    assert apply("normalize_whitespace", clean) == clean


def test_normalize_whitespace_is_idempotent(apply):
    once = apply("normalize_whitespace", row(" a\u00a0 b ", "\tc\r\n"))
    assert once == row("a b", "c")
    assert apply("normalize_whitespace", once) == once


@pytest.mark.parametrize(
    "data, kept",
    [
        (row("Spell: cat", "c a t"), True),
        (row("Spell: cat", ""), False),
        (row("", "c a t"), False),
        ({"prompt": "Spell: cat"}, False),
        (row("Spell: cat", None), False),
        (row("Spell: cat", 3), False),
        # White space is text to this filter: normalize_whitespace must run before it.
        (row("   ", "x"), True),
    ],
)
def test_drop_empty_default_fields(apply, data, kept):
    assert apply("drop_empty", data) == (data if kept else None)


def test_drop_empty_fields_param(apply):
    data = row("Spell: cat", "", note="kept")
    assert apply("drop_empty", data, fields=["prompt"]) == data
    assert apply("drop_empty", data, fields=["prompt", "note"]) == data
    assert apply("drop_empty", data, fields=["response"]) is None


@pytest.mark.parametrize("length, kept", [(255, True), (256, True), (257, False)])
def test_max_chars_limit_counts_prompt_plus_response(apply, length, kept):
    data = row("p" * 100, "r" * (length - 100))
    assert apply("max_chars", data, limit=256) == (data if kept else None)


def test_max_chars_default_limit_is_512(apply):
    assert apply("max_chars", row("p" * 12, "r" * 500)) is not None
    assert apply("max_chars", row("p" * 13, "r" * 500)) is None


@pytest.mark.parametrize(
    "data, kept",
    [
        (row("Count the words: TODO fill", "3"), False),
        (row("Uppercase: todo", "TODO"), False),
        (row("Sum: 2 3", "ToDo: 5"), False),
        (row("Spell: toad", "t o a d"), True),
        (row("Sum: 2 3", "5"), True),
    ],
)
def test_drop_containing_is_case_insensitive_over_prompt_and_response(apply, data, kept):
    assert apply("drop_containing", data, phrases=["TODO"]) == (data if kept else None)


def test_drop_containing_several_phrases_and_none(apply):
    data = row("As an AI model", "I cannot")
    assert apply("drop_containing", data, phrases=["lorem", "as an ai"]) is None
    assert apply("drop_containing", data, phrases=["lorem"]) == data
    assert apply("drop_containing", data) == data  # default: no phrases, keeps everything


def test_dedupe_keeps_the_first_in_order(apply):
    rows = [row("a", "1", id=0), row("b", "2", id=1), row("a", "1", id=2), row("a", "3", id=3)]
    assert apply("dedupe", rows) == [rows[0], rows[1], rows[3]]


def test_dedupe_fields_param(apply):
    rows = [row("a", "1"), row("a", "2"), row("b", "1")]
    assert apply("dedupe", rows, fields=["prompt"]) == [rows[0], rows[2]]
    assert apply("dedupe", rows, fields=["response"]) == [rows[0], rows[1]]
    assert apply("dedupe", []) == []


# --- the shipped chain on the fixture file ----------------------------------------------


def test_shipped_chain_on_the_fixture(pkg):
    cfg = pkg.config.load_config(ROOT / "configs" / "recipe.yaml")
    chain = pkg.data.build.resolve_filters(cfg)
    rows = list(pkg.data.formats.read_jsonl(FIXTURE))
    result = pkg.data.build.apply_chain(cfg, "train", rows, chain)
    counts = [(s["filter"], s["rows_in"], s["rows_out"]) for s in result.steps]
    assert counts == [
        ("normalize_whitespace", 12, 12),
        ("drop_empty", 12, 9),  # empty response, blank prompt, null response
        ("max_chars", 9, 8),  # the 600-character repeat
        ("drop_containing", 8, 6),  # TODO and todo
        ("dedupe", 6, 4),  # a white-space variant and an exact copy
    ]
    assert result.rows == [
        row("Reverse the words: red fox", "fox red"),
        row("Sum: 2 3", "5"),
        row("Sum: 2 3", "6"),
        row("First letter of: apple", "a", source="handwritten"),
    ]
