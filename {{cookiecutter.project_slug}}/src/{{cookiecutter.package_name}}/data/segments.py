"""Segment functions: small, pure, registered predicates that slice an eval suite.

A suite segment in the config is either a row field (`field: segment`, rows whose field
equals the segment's name or `value`) or one of these functions by name (`fn:`), with
`params`. Each function sees one row and answers whether it belongs; it must not use
randomness or the clock (a suite's segments are recorded in data.lock by row count).
Add one here with @segment, a docstring, and a fixture test in tests/test_eval.py.
"""

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

Row = dict


@dataclass(frozen=True)
class Segmenter:
    name: str
    fn: Callable[..., bool]

    @property
    def code_sha256(self) -> str:
        return hashlib.sha256(inspect.getsource(self.fn).encode()).hexdigest()


SEGMENTS: dict[str, Segmenter] = {}


def segment(fn):
    SEGMENTS[fn.__name__] = Segmenter(fn.__name__, fn)
    return fn


@segment
def long_prompt(row: Row, min_words: int = 8) -> bool:
    """Rows whose prompt has at least `min_words` white-space separated words."""
    return len(row["prompt"].split()) >= min_words


@segment
def long_response(row: Row, min_words: int = 4) -> bool:
    """Rows whose reference response has at least `min_words` words (long outputs)."""
    return len(row["response"].split()) >= min_words


@segment
def numeric_response(row: Row) -> bool:
    """Rows whose reference response is an integer (arithmetic and counting tasks)."""
    return row["response"].strip().lstrip("-").isdigit()
