"""Data sources: where rows come from, each pinned by content, read in batches.

A path source is a file or a directory, local or under a URL (s3://, gs://, az://,
https://, read through fsspec with credentials from the environment only), pinned by
sha256. Its bytes are hashed as they are read for parsing, so a source is read once;
the pin is checked when the last byte has gone by, before anything built from it is
committed (build.py writes to temp files and renames last). Formats:

- jsonl: one JSON object per line, streamed line by line;
- parquet: needs its footer before its first row, so a remote object is first copied to
  a local spool file (hashed on the way: one read of the object), then read a row group
  at a time; a local file is hashed, then read;
- arrow: a directory of Arrow IPC files, e.g. what `datasets.save_to_disk` writes, pinned
  by the hash of its file manifest (hashing.sha256_tree's definition: sorted
  `relative/path\\0<file sha256>` lines); the data files are streamed in the order its
  state.json lists them (else sorted by name).

An optional `etag` or `size` is compared with the object's metadata before any byte is
read, to fail fast when it changed. A hub source is a dataset repo named by id and 40-hex
revision, read through `datasets` (needs network: not exercised by the offline tests).
"""

import hashlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..config import Config, SourceSpec
from ..errors import UserError
from ..util.hashing import sha256_file

BATCH_ROWS = 4096  # rows per batch handed to the filters: bounded memory, few calls
READ_BYTES = 1 << 20  # bytes per read from a file or an object
CREDENTIALS_FIX = (
    "check the URL and the credentials in the environment (S3: AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL or AWS_PROFILE; GCS: "
    "GOOGLE_APPLICATION_CREDENTIALS; Azure: AZURE_STORAGE_CONNECTION_STRING)"
)


def is_url(path: str) -> bool:
    return "://" in path


class _Hashing(io.RawIOBase):
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

    def drain(self) -> None:
        """Read what a parser left unread (trailing bytes), so the hash covers the file."""
        while self.read(READ_BYTES):
            pass


class Source:
    """One configured path source, opened: its metadata checked, ready to stream."""

    def __init__(
        self,
        spec: SourceSpec,
        index: int,
        config_file: str,
        on_bytes: Callable[[int], None] | None = None,
    ):
        self.spec, self.index, self.config_file = spec, index, config_file
        self.on_bytes = on_bytes
        self.rows = 0
        self.sha256: str | None = None  # set once the stream has ended and matched the pin
        path = self.spec.path
        if is_url(path) and "@" in urlsplit(path).netloc:
            raise UserError(
                "the URL carries credentials, which would end up in data.lock and logs",
                file=config_file,
                key=self._key("path"),
                fix="drop them from the URL; set them in the environment instead",
            )
        self.fs, self.root = _filesystem(config_file, index, path)
        self.remote = is_url(path) and not path.startswith("file://")
        self.size = self._check_metadata()

    def _key(self, field: str) -> str:
        return f"data.sources.{self.index}.{field}"

    @contextmanager
    def _storage(self, doing: str):
        """Storage failures (missing object or bucket, no credentials, denied) as one line."""
        try:
            yield
        except UserError:
            raise
        except FileNotFoundError:
            raise self._missing() from None
        except Exception as e:
            boto = sys.modules.get("botocore.exceptions")  # loaded by s3fs when in use
            if not isinstance(e, OSError) and not (boto and isinstance(e, boto.BotoCoreError)):
                raise
            raise UserError(
                f"{doing} {self.spec.path} failed: {type(e).__name__}: {e}",
                file=self.config_file,
                key=self._key("path"),
                fix=CREDENTIALS_FIX,
            ) from None

    def _missing(self) -> UserError:
        return UserError(
            f"data source {self.spec.name!r} not found at {self.spec.path}",
            file=self.config_file,
            key=self._key("path"),
            fix="fix the path or restore the "
            + ("object" if self.remote else "file (git checkout -- PATH)"),
        )

    def _check_metadata(self) -> int | None:
        """Existence, and the optional etag/size pins, before any byte is read."""
        with self._storage("reading metadata of"):
            try:
                info = self.fs.info(self.root)
            except FileNotFoundError:
                raise self._missing() from None
            is_dir = info.get("type") == "directory"
            if (self.spec.kind == "arrow") != is_dir:
                raise UserError(
                    f"{self.spec.path} is a {'directory' if is_dir else 'file'}, "
                    f"but format {self.spec.kind} reads "
                    f"{'a directory' if self.spec.kind == 'arrow' else 'a file'}",
                    file=self.config_file,
                    key=self._key("format"),
                    fix="set format: arrow for a directory of Arrow files, "
                    "jsonl or parquet for a file",
                )
            if is_dir:
                base = self.root.rstrip("/")
                return sum(self.fs.info(f"{base}/{p}").get("size") or 0 for p in self._files())
        size = info.get("size")
        if self.spec.size is not None and size != self.spec.size:
            raise self._changed("size", size, self.spec.size)
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"') or None
        if self.spec.etag is not None and etag != self.spec.etag.strip('"'):
            raise self._changed("ETag", etag, self.spec.etag)
        return size

    def _changed(self, what: str, actual, pinned) -> UserError:
        return UserError(
            f"{self.spec.path} has {what} {actual} but the config pins {pinned}: "
            "the object changed since it was pinned",
            file=self.config_file,
            key=self._key(what.lower()),
            fix="restore the object; if the change is intended, re-pin it (sha256, etag, "
            f"size) from `ft data hash {self.spec.path}` and rebuild data.lock",
        )

    def _files(self) -> list[str]:
        """A directory's files as safe relative POSIX names, sorted."""
        with self._storage("listing"):
            found = self.fs.find(self.root)
        base = self.root.rstrip("/") + "/"
        names = []
        for p in found:
            rel = PurePosixPath(p[len(base) :] if p.startswith(base) else p)
            if rel.is_absolute() or ".." in rel.parts or not p.startswith(base):
                raise UserError(
                    f"the listing of {self.spec.path} names {p!r}, outside the directory",
                    file=self.config_file,
                    key=self._key("path"),
                    fix="point the source at a directory whose files lie inside it",
                )
            names.append(rel.as_posix())
        return sorted(names)

    def _open(self, rel: str | None = None):
        target = self.root if rel is None else f"{self.root.rstrip('/')}/{rel}"
        with self._storage("opening"):
            return self.fs.open(target, "rb", block_size=READ_BYTES)

    # --- streaming --------------------------------------------------------------------

    def batches(self) -> Iterator[list[dict]]:
        """Rows in batches of BATCH_ROWS; the pin is checked after the last byte."""
        reader = {"jsonl": self._jsonl, "parquet": self._parquet, "arrow": self._arrow}
        digest = yield from reader[self.spec.kind]()
        self._check_pin(digest)

    def verify(self) -> None:
        """Hash the source without parsing it and check the pin (a warm token store)."""
        self._check_pin(self.digest())

    def digest(self) -> str:
        """The sha256 the pin covers, read without parsing (arrow: its file manifest)."""
        if self.spec.kind == "arrow":
            manifest = hashlib.sha256()
            for rel in self._files():
                with self._open(rel) as raw, self._storage("reading"):
                    hashing = _Hashing(raw, self.on_bytes)
                    hashing.drain()
                manifest.update(f"{rel}\0{hashing.sha.hexdigest()}\n".encode())
            return manifest.hexdigest()
        with self._open() as raw, self._storage("reading"):
            hashing = _Hashing(raw, self.on_bytes)
            hashing.drain()
        return hashing.sha.hexdigest()

    def _check_pin(self, digest: str) -> None:
        if digest != self.spec.sha256:
            key = self._key("sha256")
            restore = (
                "restore the object"
                if self.remote
                else f"restore {self.spec.path} (git checkout -- {self.spec.path})"
            )
            raise UserError(
                f"{self.spec.path} has sha256 {digest} but the config pins {self.spec.sha256}",
                file=self.config_file,
                key=key,
                fix=f"if the data change is intended, set {key} to {digest}; otherwise {restore}",
            )
        self.sha256 = digest

    def _counted(self, batch: list[dict]) -> list[dict]:
        self.rows += len(batch)
        return batch

    def _jsonl(self):
        with self._open() as raw:
            hashing = _Hashing(raw, self.on_bytes)
            text = io.TextIOWrapper(io.BufferedReader(hashing, READ_BYTES), encoding="utf-8")
            batch = []
            with self._storage("reading"):
                try:
                    for row in parse_jsonl(text, self.spec.path):
                        batch.append(row)
                        if len(batch) == BATCH_ROWS:
                            yield self._counted(batch)
                            batch = []
                except UserError:
                    # A bad line in bytes that are not the pinned ones: the pin is the cause.
                    hashing.drain()
                    if hashing.sha.hexdigest() != self.spec.sha256:
                        return hashing.sha.hexdigest()
                    raise
            if batch:
                yield self._counted(batch)
            return hashing.sha.hexdigest()

    def _parquet(self):
        import pyarrow.parquet as pq

        spool = None
        try:
            if self.remote:
                # The footer comes first for a reader: copy once to local disk, hashed on the way.
                fd, spool = tempfile.mkstemp(prefix=".ft-spool-", suffix=".parquet")
                with self._open() as raw, os.fdopen(fd, "wb") as out:
                    hashing = _Hashing(raw, self.on_bytes)
                    with self._storage("reading"):
                        while chunk := hashing.read(READ_BYTES):
                            out.write(chunk)
                digest, local = hashing.sha.hexdigest(), spool
            else:
                local = self.root
                digest = sha256_file(local)
                if self.on_bytes is not None:
                    self.on_bytes(self.size or 0)
            try:
                parquet = pq.ParquetFile(local)
            except Exception as e:  # pyarrow raises ArrowInvalid on a damaged or non-parquet file
                raise self._unreadable(e) from None
            if digest != self.spec.sha256:  # not a parquet problem: report the pin instead
                return digest
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                yield self._counted(batch.to_pylist())
            return digest
        finally:
            if spool is not None:
                Path(spool).unlink(missing_ok=True)

    def _arrow(self):
        """A directory pinned by its file manifest; data files streamed in the listed order."""
        import pyarrow as pa

        files = self._files()
        order = [f for f in files if f.endswith(".arrow")]
        if "state.json" in files:
            with self._open("state.json") as f:
                listed = [d["filename"] for d in json.loads(f.read()).get("_data_files", [])]
            if listed and sorted(listed) == sorted(order):
                order = listed
        if not order:
            raise UserError(
                f"{self.spec.path} holds no .arrow file",
                file=self.config_file,
                key=self._key("path"),
                fix="point the source at a `datasets.save_to_disk` directory or a "
                "directory of Arrow IPC files",
            )
        digests = {}
        for rel in order:
            with self._open(rel) as raw:
                hashing = _Hashing(raw, self.on_bytes)
                stream = io.BufferedReader(hashing, READ_BYTES)
                try:
                    reader = pa.ipc.open_stream(stream)
                except pa.ArrowInvalid as e:
                    raise self._unreadable(e, rel) from None
                pending = []
                for record_batch in reader:
                    pending.extend(record_batch.to_pylist())
                    while len(pending) >= BATCH_ROWS:
                        yield self._counted(pending[:BATCH_ROWS])
                        pending = pending[BATCH_ROWS:]
                if pending:
                    yield self._counted(pending)
                stream.read()
                hashing.drain()
                digests[rel] = hashing.sha.hexdigest()
        for rel in files:
            if rel not in digests:
                with self._open(rel) as raw:
                    hashing = _Hashing(raw, self.on_bytes)
                    hashing.drain()
                    digests[rel] = hashing.sha.hexdigest()
        manifest = hashlib.sha256()
        for rel in files:
            manifest.update(f"{rel}\0{digests[rel]}\n".encode())
        return manifest.hexdigest()

    def _unreadable(self, error: Exception, rel: str | None = None) -> UserError:
        where = f"{self.spec.path.rstrip('/')}/{rel}" if rel else self.spec.path
        return UserError(
            f"{where} is not readable as {self.spec.kind}: {error}",
            file=self.config_file,
            key=self._key("format"),
            fix="set `format` to the file's format (jsonl, parquet, arrow), or fix the file",
        )

    def lock_entry(self) -> dict:
        """What data.lock records about this source (after the stream ended)."""
        return {
            "name": self.spec.name,
            "split": self.spec.split,
            "rows": self.rows,
            "path": self.spec.path,
            "sha256": self.sha256,
        }


class HubSource:
    """A hub dataset at its pinned revision (rows in batches, through `datasets`)."""

    def __init__(self, cfg: Config, index: int, on_bytes=None):
        self.spec = cfg.data.sources[index]
        self.rows, self.size = 0, None

    def batches(self) -> Iterator[list[dict]]:
        try:
            import datasets  # heavy and optional: imported only for hub sources
        except ImportError:
            raise UserError(
                "hub sources are read through `datasets`, which is not installed",
                key="data.sources",
                fix="install it (`uv add datasets`), or point the source at a file or bucket",
            ) from None
        ds = datasets.load_dataset(
            self.spec.hub_id, revision=self.spec.revision, split=self.spec.hub_split
        )
        for start in range(0, len(ds), BATCH_ROWS):
            batch = ds[start : start + BATCH_ROWS]
            rows = [
                dict(zip(batch, values, strict=True))
                for values in zip(*batch.values(), strict=True)
            ]
            self.rows += len(rows)
            yield rows

    def lock_entry(self) -> dict:
        return {
            "name": self.spec.name,
            "split": self.spec.split,
            "rows": self.rows,
            "hub_id": self.spec.hub_id,
            "revision": self.spec.revision,
        }


def open_source(cfg: Config, index: int, on_bytes=None) -> Source | HubSource:
    """Open source `index`: metadata checked now, rows streamed by `.batches()`."""
    spec = cfg.data.sources[index]
    if spec.path is not None:
        return Source(spec, index, cfg._path, on_bytes)
    return HubSource(cfg, index, on_bytes)


def _filesystem(config_file: str, index: int, path: str):
    """(fsspec filesystem, path inside it) for a local path or a URL."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    if not is_url(path):
        return LocalFileSystem(), os.path.abspath(path)
    protocol = path.split("://", 1)[0]
    try:
        # A fresh client each time: credentials are read from the environment as it is now.
        fs, root = fsspec.core.url_to_fs(path, skip_instance_cache=True)
    except ImportError as e:
        raise UserError(
            f"no fsspec backend for {protocol}:// ({e})",
            file=config_file,
            key=f"data.sources.{index}.path",
            fix="add the backend package (gs://: `uv add gcsfs`, az://: `uv add adlfs`)",
        ) from None
    except ValueError as e:
        raise UserError(
            f"not a storage URL ({e})",
            file=config_file,
            key=f"data.sources.{index}.path",
            fix="use a path, s3://bucket/key, gs://, az:// or https://",
        ) from None
    return fs, root


def parse_jsonl(lines, name: str) -> Iterator[dict]:
    """JSON objects from an iterable of lines; blank lines skipped; errors name the line."""
    for lineno, line in enumerate(_decoded(lines, name), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(
                f"line {lineno} is not valid JSON: {e.msg}",
                file=name,
                fix="one JSON object per line",
            ) from None
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


def describe(path: str) -> dict:
    """`ft data hash`: the pins of a file or directory, for a source entry."""
    is_dir = path.endswith("/") or (not is_url(path) and Path(path).is_dir())
    spec = SourceSpec(
        name="source",
        split="train",
        path=path,
        sha256="0" * 64,
        format="arrow" if is_dir else None,
    )
    source = Source(spec, 0, "ft data hash")
    # Hash without parsing: the same bytes the pin covers.
    digest, etag = source.digest(), None
    if source.spec.kind != "arrow":
        with source._storage("reading metadata of"):
            info = source.fs.info(source.root)
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"') or None
    out = {"path": path, "sha256": digest, "format": source.spec.kind}
    if source.size is not None and source.spec.kind != "arrow":
        out["size"] = source.size
    if etag:
        out["etag"] = etag
    return out
