"""Eval suites: pinned JSONL files of prompt/response rows, cut into named segments.

    uv run ft data build   # records each suite's sha256, rows and segment sizes in data.lock

A suite is read as it is (no filters run on it: what is scored is exactly what is pinned),
checked against its sha256, and sliced by its segments (config `eval.suites[].segments`):
a row field or a registered function of data/segments.py. `all` is always the whole suite.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import UserError
from ..util.hashing import sha256_file
from .formats import read_jsonl
from .named import resolve
from .segments import SEGMENTS


@dataclass
class Suite:
    name: str
    sha256: str
    rows: list[dict]
    segments: dict[str, list[int]]  # segment name -> row indices, "all" first


def _rule(cfg: Config, s: int, g: int):
    spec = cfg.eval.suites[s].segments[g]
    key = f"eval.suites.{s}.segments.{g}"
    if spec.fn is None:  # a field rule: the schema gives exactly one of `field` and `fn`
        field, value = spec.field, spec.value if spec.value is not None else spec.name
        return lambda row: row.get(field) == value
    seg = resolve(
        SEGMENTS,
        spec.fn,
        spec.params,
        unknown="segment function",
        what="segment function",
        home="data/segments.py",
        file=cfg._path,
        key=key,
        name_key="fn",
    )
    params = dict(spec.params)
    return lambda row: bool(seg.fn(row, **params))


def load_suite(cfg: Config, index: int) -> Suite:
    """Read suite `index`, check its pin, and slice it into segments."""
    spec = cfg.eval.suites[index]
    path = Path(spec.path)
    if not path.is_file():
        raise UserError(
            f"eval suite {spec.name!r} not found at {path}",
            file=cfg._path,
            key=f"eval.suites.{index}.path",
            fix="fix the path or restore the file",
        )
    actual = sha256_file(path)
    if actual != spec.sha256:
        key = f"eval.suites.{index}.sha256"
        raise UserError(
            f"{path} has sha256 {actual} but the config pins {spec.sha256}",
            file=cfg._path,
            key=key,
            fix=f"if the suite change is intended, set {key} to {actual} (gates then report "
            f"a changed suite, not a regression); otherwise restore {path}",
        )
    rows = list(read_jsonl(path))
    for n, row in enumerate(rows, 1):
        if not isinstance(row.get("prompt"), str) or not isinstance(row.get("response"), str):
            raise UserError(
                f"row {n} needs string `prompt` and `response` fields",
                file=str(path),
                fix='every suite row is {"prompt": ..., "response": ..., <segment fields>}',
            )
    segments = {"all": list(range(len(rows)))}
    for g, seg in enumerate(spec.segments):
        keep = _rule(cfg, index, g)
        segments[seg.name] = [i for i, row in enumerate(rows) if keep(row)]
        if not segments[seg.name]:
            raise UserError(
                f"segment {seg.name!r} of suite {spec.name!r} holds no row",
                file=cfg._path,
                key=f"eval.suites.{index}.segments.{g}",
                fix="fix the field/value or the function, or drop the segment",
            )
    return Suite(spec.name, actual, rows, segments)


def load_suites(cfg: Config) -> list[Suite]:
    return [load_suite(cfg, i) for i in range(len(cfg.eval.suites))]


def lock_entry(cfg: Config, suite: Suite, index: int) -> dict:
    """What data.lock records about a suite: its pin, size, and segment sizes and rules."""
    spec = cfg.eval.suites[index]
    rules: dict[str, dict[str, Any]] = {}
    for seg in spec.segments:
        if seg.fn is None:  # a field rule
            rules[seg.name] = {"field": seg.field, "value": seg.value or seg.name}
        else:
            rules[seg.name] = {
                "fn": seg.fn,
                "params": dict(seg.params),
                "code_sha256": SEGMENTS[seg.fn].code_sha256,
            }
    return {
        "name": suite.name,
        "path": spec.path,
        "sha256": suite.sha256,
        "rows": len(suite.rows),
        "segments": {name: len(idx) for name, idx in suite.segments.items()},
        "rules": rules,
    }
