"""Data sources: where rows come from, each pinned by content, read in batches.

A path source is a file or a directory, local or under a URL (s3://, gs://, az://,
https://, read through fsspec with credentials from the environment only), pinned by
sha256. Its bytes are hashed as they are read for parsing, so a source is read once;
the pin is checked when the last byte has gone by, before anything built from it is
committed (build.py writes to temp files and renames last). The formats (jsonl, parquet,
arrow: a directory of Arrow IPC files) are parsed by formats.py.

An optional `etag` or `size` is compared with the object's metadata before any byte is
read, to fail fast when it changed. A hub source is a dataset repo named by id and 40-hex
revision, read through `datasets` (the `hub-data` dependency group; needs network: not
exercised by the offline tests).
"""

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..config import Config, SourceSpec
from ..errors import UserError
from ..util import groups
from .formats import BATCH_ROWS, READ_BYTES, READERS, Hashing, manifest_digest

CREDENTIALS_FIX = (
    "check the URL and the credentials in the environment (S3: AWS_ACCESS_KEY_ID, "
    "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL or AWS_PROFILE; GCS: "
    "GOOGLE_APPLICATION_CREDENTIALS; Azure: AZURE_STORAGE_CONNECTION_STRING)"
)


def is_url(path: str) -> bool:
    return "://" in path


class _Opened:
    """What both kinds of source share: the rows counted, and the data.lock entry."""

    spec: SourceSpec
    rows: int

    def counted(self, batch: list[dict]) -> list[dict]:
        self.rows += len(batch)
        return batch

    def pins(self) -> dict:
        raise NotImplementedError

    def lock_entry(self) -> dict:
        """What data.lock records about this source (after the stream ended)."""
        return {"name": self.spec.name, "split": self.spec.split, "rows": self.rows} | self.pins()


class Source(_Opened):
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
        assert path is not None, "a hub_id source is a HubSource (open_source)"
        self.path = path
        if is_url(path) and "@" in urlsplit(path).netloc:
            raise UserError(
                "the URL carries credentials, which would end up in data.lock and logs",
                file=config_file,
                key=self.key("path"),
                fix="drop them from the URL; set them in the environment instead",
            )
        self.fs, self.root = _filesystem(config_file, index, path)
        self.remote = is_url(path) and not path.startswith("file://")
        self.size = self._check_metadata()

    def key(self, field: str) -> str:
        return f"data.sources.{self.index}.{field}"

    @contextmanager
    def storage(self, doing: str):
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
                key=self.key("path"),
                fix=CREDENTIALS_FIX,
            ) from None

    def _missing(self) -> UserError:
        return UserError(
            f"data source {self.spec.name!r} not found at {self.spec.path}",
            file=self.config_file,
            key=self.key("path"),
            fix="fix the path or restore the "
            + ("object" if self.remote else "file (git checkout -- PATH)"),
        )

    def _check_metadata(self) -> int | None:
        """Existence, and the optional etag/size pins, before any byte is read."""
        with self.storage("reading metadata of"):
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
                    key=self.key("format"),
                    fix="set format: arrow for a directory of Arrow files, "
                    "jsonl or parquet for a file",
                )
            if is_dir:
                base = self.root.rstrip("/")
                return sum(self.fs.info(f"{base}/{p}").get("size") or 0 for p in self.files())
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
            key=self.key(what.lower()),
            fix="restore the object; if the change is intended, re-pin it (sha256, etag, "
            f"size) from `ft data hash {self.spec.path}` and rebuild data.lock",
        )

    def files(self) -> list[str]:
        """A directory's files as safe relative POSIX names, sorted."""
        with self.storage("listing"):
            found = self.fs.find(self.root)
        base = self.root.rstrip("/") + "/"
        names = []
        for p in found:
            rel = PurePosixPath(p[len(base) :] if p.startswith(base) else p)
            if rel.is_absolute() or ".." in rel.parts or not p.startswith(base):
                raise UserError(
                    f"the listing of {self.spec.path} names {p!r}, outside the directory",
                    file=self.config_file,
                    key=self.key("path"),
                    fix="point the source at a directory whose files lie inside it",
                )
            names.append(rel.as_posix())
        return sorted(names)

    def open(self, rel: str | None = None):
        target = self.root if rel is None else f"{self.root.rstrip('/')}/{rel}"
        with self.storage("opening"):
            return self.fs.open(target, "rb", block_size=READ_BYTES)

    # --- streaming --------------------------------------------------------------------

    def batches(self) -> Iterator[list[dict]]:
        """Rows in batches of BATCH_ROWS; the pin is checked after the last byte."""
        digest = yield from READERS[self.spec.kind](self)
        self._check_pin(digest)

    def verify(self) -> None:
        """Hash the source without parsing it and check the pin (a warm token store)."""
        self._check_pin(self.digest())

    def digest(self) -> str:
        """The sha256 the pin covers, read without parsing (arrow: its file manifest)."""
        if self.spec.kind == "arrow":
            return manifest_digest({rel: self.hash_file(rel) for rel in self.files()})
        return self.hash_file()

    def hash_file(self, rel: str | None = None) -> str:
        """sha256 of the source file (or of `rel` in its directory), read without parsing."""
        with self.open(rel) as raw, self.storage("reading"):
            return Hashing(raw, self.on_bytes).drain()

    def _check_pin(self, digest: str) -> None:
        if digest != self.spec.sha256:
            key = self.key("sha256")
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

    def unreadable(self, error: Exception, rel: str | None = None) -> UserError:
        where = f"{self.path.rstrip('/')}/{rel}" if rel else self.path
        return UserError(
            f"{where} is not readable as {self.spec.kind}: {error}",
            file=self.config_file,
            key=self.key("format"),
            fix="set `format` to the file's format (jsonl, parquet, arrow), or fix the file",
        )

    def pins(self) -> dict:
        return {"path": self.spec.path, "sha256": self.sha256}


class HubSource(_Opened):
    """A hub dataset at its pinned revision (rows in batches, through `datasets`)."""

    def __init__(self, cfg: Config, index: int, on_bytes=None):
        self.spec = cfg.data.sources[index]
        self.rows, self.size = 0, None
        groups.require(
            "datasets", "a hub source", file=cfg._path, key=f"data.sources.{index}.hub_id"
        )

    def batches(self) -> Iterator[list[dict]]:
        import datasets  # heavy and optional (the hub-data group): checked when opened

        ds = datasets.load_dataset(
            self.spec.hub_id, revision=self.spec.revision, split=self.spec.hub_split
        )
        for start in range(0, len(ds), BATCH_ROWS):
            batch = ds[start : start + BATCH_ROWS]
            rows = [
                dict(zip(batch, values, strict=True))
                for values in zip(*batch.values(), strict=True)
            ]
            yield self.counted(rows)

    def pins(self) -> dict:
        return {"hub_id": self.spec.hub_id, "revision": self.spec.revision}


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
    except (ImportError, ValueError) as e:
        no_backend = isinstance(e, ImportError)
        raise UserError(
            f"no fsspec backend for {protocol}:// ({e})"
            if no_backend
            else f"not a storage URL ({e})",
            file=config_file,
            key=f"data.sources.{index}.path",
            fix="add the backend package (gs://: `uv add gcsfs`, az://: `uv add adlfs`)"
            if no_backend
            else "use a path, s3://bucket/key, gs://, az:// or https://",
        ) from None
    return fs, root


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
        with source.storage("reading metadata of"):
            info = source.fs.info(source.root)
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"') or None
    out: dict[str, str | int] = {"path": path, "sha256": digest, "format": source.spec.kind}
    if source.size is not None and source.spec.kind != "arrow":
        out["size"] = source.size
    if etag:
        out["etag"] = etag
    return out
