"""How each path source's bytes become rows, hashed as they are read.

sources.py opens a source (metadata, pins) and checks its sha256 once the last byte has gone
by; the reader for its `format` (READERS) parses it here, in batches of BATCH_ROWS, and
returns the digest the pin covers:

- jsonl: one JSON object per line, streamed line by line;
- parquet: needs its footer before its first row, so a remote object is first copied to a
  local spool file (hashed on the way: one read of the object), then read a row group at a
  time; a local file is hashed, then read;
- arrow: a directory of Arrow IPC files, e.g. what `datasets.save_to_disk` writes, pinned by
  the hash of its file manifest (hashing.sha256_tree's definition: sorted
  `relative/path\\0<file sha256>` lines); the data files are streamed in the order its
  state.json lists them (else sorted by name).
"""

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..util.hashing import sha256_file
from ..util.records import parse_json

if TYPE_CHECKING:
    from .sources import Source

BATCH_ROWS = 4096  # rows per batch handed to the filters: bounded memory, few calls
READ_BYTES = 1 << 20  # bytes per read from a file or an object

Batches = Generator[list[dict], None, str]  # rows in batches; returns the digest read


class Hashing(io.RawIOBase):
    """A read-only binary stream that feeds every byte it passes on to sha256."""

    def __init__(self, raw, on_bytes: Callable[[int], None] | None = None):
        self.raw, self.on_bytes = raw, on_bytes
        self.sha = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha.update(data)
        self.count += n
        if self.on_bytes is not None and n:
            self.on_bytes(n)
        return n

    def drain(self) -> str:
        """Read what a parser left unread (trailing bytes); the sha256 of the whole file."""
        while self.read(READ_BYTES):
            pass
        return self.sha.hexdigest()


def manifest_digest(digests: dict[str, str]) -> str:
    """A directory's pin: sha256 of its sorted `relative/path\\0<file sha256>` lines."""
    manifest = hashlib.sha256()
    for rel in sorted(digests):
        manifest.update(f"{rel}\0{digests[rel]}\n".encode())
    return manifest.hexdigest()


def jsonl(source: "Source") -> Batches:
    with source.open() as raw:
        hashing = Hashing(raw, source.on_bytes)
        text = io.TextIOWrapper(io.BufferedReader(hashing, READ_BYTES), encoding="utf-8")
        batch = []
        with source.storage("reading"):
            try:
                for row in parse_jsonl(text, source.path):
                    batch.append(row)
                    if len(batch) == BATCH_ROWS:
                        yield source.counted(batch)
                        batch = []
            except UserError:
                # A bad line in bytes that are not the pinned ones: the pin is the cause.
                digest = hashing.drain()
                if digest != source.spec.sha256:
                    return digest
                raise
        if batch:
            yield source.counted(batch)
        return hashing.sha.hexdigest()


def parquet(source: "Source") -> Batches:
    import pyarrow.parquet as pq

    spool = None
    try:
        if source.remote:
            # The footer comes first for a reader: copy once to local disk, hashed on the way.
            fd, spool = tempfile.mkstemp(prefix=".ft-spool-", suffix=".parquet")
            with source.open() as raw, os.fdopen(fd, "wb") as out:
                hashing = Hashing(raw, source.on_bytes)
                with source.storage("reading"):
                    while chunk := hashing.read(READ_BYTES):
                        out.write(chunk)
            digest, local = hashing.sha.hexdigest(), spool
        else:
            local = source.root
            digest = sha256_file(local)
            if source.on_bytes is not None:
                source.on_bytes(source.size or 0)
        try:
            parquet = pq.ParquetFile(local)
        except Exception as e:  # pyarrow raises ArrowInvalid on a damaged or non-parquet file
            raise source.unreadable(e) from None
        if digest != source.spec.sha256:  # not a parquet problem: report the pin instead
            return digest
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            yield source.counted(batch.to_pylist())
        return digest
    finally:
        if spool is not None:
            Path(spool).unlink(missing_ok=True)


def arrow(source: "Source") -> Batches:
    """A directory pinned by its file manifest; data files streamed in the listed order."""
    import pyarrow as pa

    files = source.files()
    order = [f for f in files if f.endswith(".arrow")]
    if "state.json" in files:
        with source.open("state.json") as f:
            listed = [d["filename"] for d in json.loads(f.read()).get("_data_files", [])]
        if listed and sorted(listed) == sorted(order):
            order = listed
    if not order:
        raise UserError(
            f"{source.spec.path} holds no .arrow file",
            file=source.config_file,
            key=source.key("path"),
            fix="point the source at a `datasets.save_to_disk` directory or a "
            "directory of Arrow IPC files",
        )
    digests = {}
    for rel in order:
        with source.open(rel) as raw:
            hashing = Hashing(raw, source.on_bytes)
            stream = io.BufferedReader(hashing, READ_BYTES)
            try:
                reader = pa.ipc.open_stream(stream)
            except pa.ArrowInvalid as e:
                raise source.unreadable(e, rel) from None
            pending = []
            for record_batch in reader:
                pending.extend(record_batch.to_pylist())
                while len(pending) >= BATCH_ROWS:
                    yield source.counted(pending[:BATCH_ROWS])
                    pending = pending[BATCH_ROWS:]
            if pending:
                yield source.counted(pending)
            stream.read()
            digests[rel] = hashing.drain()
    for rel in files:
        if rel not in digests:
            digests[rel] = source.hash_file(rel)
    return manifest_digest(digests)


READERS: dict[str, Callable[["Source"], Batches]] = {
    "jsonl": jsonl,
    "parquet": parquet,
    "arrow": arrow,
}


def parse_jsonl(lines, name: str) -> Iterator[dict]:
    """JSON objects from an iterable of lines; blank lines skipped; errors name the line."""
    for lineno, line in enumerate(_decoded(lines, name), 1):
        if not line.strip():
            continue
        row = parse_json(line, file=name, fix="one JSON object per line", line=lineno)
        if not isinstance(row, dict):
            raise UserError(
                f"line {lineno} is not a JSON object", file=name, fix="one JSON object per line"
            )
        yield row


def _decoded(lines, name: str) -> Iterator[str]:
    """The lines of a text stream; bytes that are not UTF-8 are a UserError naming the file."""
    it, lineno = iter(lines), 0
    while True:
        try:
            line = next(it)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise UserError(
                "not UTF-8 text" + (f" (the bad bytes follow line {lineno})" if lineno else ""),
                file=name,
                fix="save the file as UTF-8 (one JSON object per line)",
            ) from None
        lineno += 1
        yield line


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Every row of a local JSONL file (tests and tools; builds stream through Source)."""
    with open(path, encoding="utf-8") as f:
        yield from parse_jsonl(f, str(path))
