"""`file://PATH`: a directory registry, the embedded default (`file://./registry`).

    registry/
      blobs/sha256/<hex>     every file ever published, named by its sha256 (read-only)
      versions/<v>.json      one index per version: file name -> sha256 + size, and metadata
      .tmp/                  private scratch space of publishes in flight

A relative PATH is relative to the working directory. Publishing writes and
fsyncs every blob first, then the index under a temp name, then hard-links the
index to versions/<v>.json. link(2), unlike rename(2), fails if the name exists,
so the link is the single commit point: two publishes of one version race for
it and exactly one wins; a publish killed before it leaves only unreferenced
blobs and temp files, which no command shows (docs/decisions/0005).
"""

import os
import uuid
from pathlib import Path

from ...util.hashing import copy_hashing, fsync_dir, sha256_file
from . import (
    Fetch,
    IntegrityError,
    Registry,
    check_name,
    check_version,
    index_bytes,
    make_index,
    read_index,
    sort_versions,
)


class LocalRegistry(Registry):
    def __init__(self, root: Path, uri: str):
        self.root, self.uri = Path(root), uri
        self.blobs = self.root / "blobs" / "sha256"
        self.versions_dir = self.root / "versions"
        self.tmp = self.root / ".tmp"

    def _index_path(self, version: str) -> Path:
        return self.versions_dir / f"{check_version(version)}.json"

    def versions(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        return sort_versions(p.name.removesuffix(".json") for p in self.versions_dir.glob("*.json"))

    def exists(self, version: str) -> bool:
        return self._index_path(version).is_file()

    def show(self, version: str) -> dict:
        path = self._index_path(version)
        if not path.is_file():
            raise self.not_found(version)
        return read_index(path.read_bytes(), version, str(path))

    def publish(self, version: str, files: dict[str, Path], meta: dict) -> dict:
        final = self._index_path(version)
        if final.exists():
            raise self.already_exists(version)
        for d in (self.blobs, self.versions_dir, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        entries = {check_name(n): self._put_blob(Path(src)) for n, src in sorted(files.items())}
        fsync_dir(self.blobs)
        index = make_index(version, entries, meta)
        tmp = self.tmp / f"{version}.{os.getpid()}.{uuid.uuid4().hex}.json"
        try:
            with open(tmp, "xb") as f:
                f.write(index_bytes(index))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, final)  # the commit point: fails if another publish got there first
            except FileExistsError:
                raise self.already_exists(version) from None
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.versions_dir)
        return index

    def _put_blob(self, src: Path) -> dict:
        tmp = self.tmp / f"blob.{os.getpid()}.{uuid.uuid4().hex}"
        try:
            digest, size = copy_hashing(src, tmp)
            os.chmod(tmp, 0o444)
            blob = self.blobs / digest
            try:
                os.link(tmp, blob)
            except FileExistsError:
                # A damaged blob has the same address as the good bytes: they repair it.
                if sha256_file(blob) != digest:
                    os.replace(tmp, blob)
        finally:
            tmp.unlink(missing_ok=True)
        return {"sha256": digest, "size": size}

    def _open(self, version: str, scratch: Path) -> tuple[dict, Fetch]:
        index = self.show(version)

        def fetch(name: str, entry: dict) -> Path:
            blob = self.blobs / entry["sha256"]
            if not blob.is_file():
                raise IntegrityError(
                    f"blob of {name} ({entry['sha256'][:16]}) is missing from {version}",
                    file=str(blob),
                    fix="restore the registry from a backup",
                )
            return blob

        return index, fetch
