"""The canonical serialization of rows: one `canonical_json(row)` line per row, UTF-8.

Its sha256 is a split's content hash in data.lock, and it is the byte content of
data/build/<split>.jsonl, so `sha256sum` on the file agrees with the lock.
"""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from ..util.hashing import canonical_json, open_atomic

CHUNK_ROWS = 4096  # rows per serialized block: ~0.5-2 MB, so one hash update and one write each


# canonical_json's encoder, built once: json.dumps with these options builds it per call.
ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def canonical_chunks(rows: list[dict], chunk_rows: int = CHUNK_ROWS) -> Iterator[bytes]:
    """The canonical serialization in blocks of `chunk_rows` lines, UTF-8 encoded.

    Byte for byte the concatenation of `canonical_json(row) + "\n"` over the rows.
    """
    encode = ENCODER.encode
    for start in range(0, len(rows), chunk_rows):
        yield ("\n".join(map(encode, rows[start : start + chunk_rows])) + "\n").encode()


def canonical_lines(rows: list[dict]):
    """The canonical serialization, one encoded line per row."""
    for row in rows:
        yield (canonical_json(row) + "\n").encode()


def serialize(rows: list[dict], out=None) -> str:
    """Serialize the rows once; feed every block to sha256 and, if given, the binary file
    `out`. Returns the hex digest."""
    h = hashlib.sha256()
    for block in canonical_chunks(rows):
        h.update(block)
        if out is not None:
            out.write(block)
    return h.hexdigest()


def hash_rows(rows: list[dict]) -> str:
    """sha256 of the canonical serialization."""
    return serialize(rows)


def write_rows(rows: list[dict], out: Path) -> str:
    """Write the canonical serialization to `out` via a temp file and a rename; return its
    sha256."""
    with open_atomic(out) as f:
        return serialize(rows, f)
