"""Generation metrics: small, pure, registered functions of (prediction, reference).

Each maps one greedy completion and the row's reference response to a score in [0, 1];
a segment's metric is the mean over its rows, and higher is better (gates rely on it).
Add one here with @metric, a docstring, and a fixture test in tests/test_eval.py; then
list it under `eval.suites[].metrics`. No randomness, no clock, no network.
"""

import json
from collections.abc import Callable

METRICS: dict[str, Callable[[str, str], float]] = {}
# Metrics every suite reports from the token loss; lower is better for these.
LOSS_METRICS = ("loss", "perplexity")


def metric(fn):
    METRICS[fn.__name__] = fn
    return fn


def higher_is_better(name: str) -> bool:
    return name not in LOSS_METRICS


@metric
def exact_match(prediction: str, reference: str) -> float:
    """1 if the completion equals the reference once surrounding white space is stripped."""
    return float(prediction.strip() == reference.strip())


@metric
def contains(prediction: str, reference: str) -> float:
    """1 if the (non-empty) reference appears anywhere in the completion."""
    ref = reference.strip()
    return float(bool(ref) and ref in prediction)


@metric
def json_valid(prediction: str, reference: str) -> float:
    """1 if the completion parses as one JSON value (the reference is not used)."""
    try:
        json.loads(prediction)
    except ValueError:
        return 0.0
    return 1.0
