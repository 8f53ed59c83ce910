"""A directory of objects under a URL (s3://, gs://, file://), through fsspec.

Every storage failure (missing bucket, denied, unreachable) is one UserError naming the URL.
Credentials are never passed, logged or written here: fsspec's backends read them from the
environment (s3fs/botocore: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or
AWS_PROFILE; gcsfs: the gcloud login), and a URL that carries them is refused.
"""

import os
import posixpath
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UserError
from ..util.hashing import open_atomic, sha256_file, write_atomic
from .runlock import LEASE

ACCESS_FIX = (
    "check the URL, that the bucket exists, and the credentials in the environment "
    "(S3: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
)
RESTORE_FIX = "the object was tampered with or damaged; restore it, or train the run again"


def is_url(out: str | os.PathLike | None) -> bool:
    return out is not None and "://" in str(out)


def normalise_url(url: str) -> str:
    """`s3://b/runs/x/..` is `s3://b/runs`: a URL's path is normalised like a local one."""
    scheme, _, rest = url.partition("://")
    head, slash, path = rest.partition("/")
    if not slash:
        return url.rstrip("/")
    clean = posixpath.normpath("/" + path).lstrip("/")
    return f"{scheme}://{head}/{clean}".rstrip("/") if clean != "." else f"{scheme}://{head}"


class RemoteDir:
    """A directory of objects under a URL, through fsspec; every failure is one UserError."""

    def __init__(self, url: str):
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.url = normalise_url(url)
        parts = urlsplit(self.url)
        if "@" in parts.netloc:  # named without its credentials: this message is a log line too
            shown = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
            raise UserError(
                "the URL carries credentials, which would end up in logs",
                file=shown,
                fix="drop them from the URL; set them in the environment instead",
            )
        protocol = self.url.split("://", 1)[0]
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url)
        except ImportError as e:
            raise UserError(
                f"no fsspec backend for {protocol}:// ({e})",
                file=url,
                fix="add the backend package (e.g. `uv add adlfs` for abfs://), or use "
                "s3://, gs:// or file://",
            ) from None
        except ValueError as e:
            raise UserError(
                f"not a storage URL ({e})",
                file=url,
                fix="use a path, file:///abs/path or s3://bucket/path",
            ) from None
        self.root = root.rstrip("/")
        self.on_disk = isinstance(self.fs, LocalFileSystem)

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    @contextmanager
    def errors(self, doing: str):
        """Storage failures (missing bucket, denied, unreachable) as one line naming the URL."""
        try:
            yield
        except UserError:
            raise
        except Exception as e:
            boto = sys.modules.get("botocore.exceptions")  # loaded by s3fs when in use
            if not isinstance(e, OSError) and not (boto and isinstance(e, boto.BotoCoreError)):
                raise
            raise UserError(
                f"{doing} failed: {type(e).__name__}: {e}", file=self.url, fix=ACCESS_FIX
            ) from None

    def exists(self, rel: str = "") -> bool:
        """Whether there is an object at `rel` (or, with no `rel`, anything at the URL); asked
        afresh, never from a cached listing."""
        with self.errors("checking"):
            self.fs.invalidate_cache()
            return bool(self.fs.exists(self._path(rel) if rel else self.root))

    def names(self) -> set[str]:
        """Every object below the URL, as a relative path; a fresh listing, never a cached one."""
        with self.errors("listing"):
            self.fs.invalidate_cache()
            if not self.fs.exists(self.root):
                return set()
            return {  # the writer's lease is not part of the run
                p[len(self.root) + 1 :]
                for p in self.fs.find(self.root)
                if p.startswith(self.root + "/") and p != f"{self.root}/{LEASE}"
            }

    def read(self, rel: str) -> bytes:
        with self.errors(f"reading {rel}"):
            return self.fs.cat_file(self._path(rel))

    def put(self, local: Path, rel: str) -> None:
        """One object; on disk under a temp name and renamed, on object stores one PUT."""
        target = self._path(rel)
        with self.errors(f"uploading {rel}"):
            if self.on_disk:
                with open(local, "rb") as src, open_atomic(target) as dst:
                    shutil.copyfileobj(src, dst)
            else:
                self.fs.put_file(str(local), target)

    def put_bytes(self, data: bytes, rel: str) -> None:
        with self.errors(f"writing {rel}"):
            if self.on_disk:
                write_atomic(self._path(rel), data)
            else:
                self.fs.pipe_file(self._path(rel), data)

    def get(self, rel: str, dest: Path, sha256: str | None = None, against: str = "") -> None:
        """Download one object to `dest`; with `sha256`, refuse bytes that differ from it."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self.errors(f"downloading {rel}"):
            self.fs.get_file(self._path(rel), str(dest))
        if sha256 is not None and (actual := sha256_file(dest)) != sha256:
            raise UserError(
                f"sha256 {actual[:16]}... differs from {against}'s {sha256[:16]}...: "
                "the object was changed or damaged after it was written",
                file=f"{self.url}/{rel}",
                fix="restore the object, or train the run again",
            )
