"""Data sources: where rows come from, each pinned by content.

A local source is a JSONL file (one JSON object per line) named by path and
sha256; a hub source is a dataset repo named by id and 40-hex revision, read
through `datasets` (needs network, so it is not exercised by the offline tests).
"""

import json
from collections.abc import Iterator
from pathlib import Path

from ..config import Config, SourceSpec
from ..errors import UserError
from ..util.hashing import sha256_file


def verify_local(cfg: Config, index: int, source: SourceSpec) -> str:
    """Check a local source against its pin; return its sha256."""
    key = f"data.sources.{index}.sha256"
    path = Path(source.path)
    if not path.is_file():
        raise UserError(
            f"data source {source.name!r} not found at {path}",
            file=cfg._path,
            key=f"data.sources.{index}.path",
            fix="fix the path or restore the file",
        )
    actual = sha256_file(path)
    if actual != source.sha256:
        raise UserError(
            f"{path} has sha256 {actual} but the config pins {source.sha256}",
            file=cfg._path,
            key=key,
            fix=f"if the data change is intended, set {key} to {actual}; otherwise "
            f"restore {path} (git checkout -- {path})",
        )
    return actual


def read_jsonl(path: str | Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(
                    f"line {lineno} is not valid JSON: {e.msg}",
                    file=str(path),
                    fix="one JSON object per line",
                ) from None
            if not isinstance(row, dict):
                raise UserError(
                    f"line {lineno} is not a JSON object",
                    file=str(path),
                    fix="one JSON object per line",
                ) from None
            yield row


def read_hub(source: SourceSpec) -> Iterator[dict]:
    import datasets  # heavy: imported only for hub sources

    ds = datasets.load_dataset(source.hub_id, revision=source.revision, split=source.hub_split)
    yield from ds


def load_source(cfg: Config, index: int) -> tuple[str, Iterator[dict]]:
    """Return (pin, rows) for source `index`: the sha256 or revision, and a row iterator."""
    source = cfg.data.sources[index]
    if source.path is not None:
        return verify_local(cfg, index, source), read_jsonl(source.path)
    return source.revision, read_hub(source)
