"""Content hashes and atomic writes: the one implementation every stage uses.

Hashes stream the bytes (never a whole file in memory). A directory hashes to the
sha256 of its sorted `relative/path\\0<file sha256>\\n` lines, so renaming, adding
or editing any file changes it, and the result does not depend on the filesystem's
listing order. Writers put bytes under a temp name beside the target, fsync, then
rename: a reader sees the old file (or directory) or the new one, never half of one.
"""

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import UserError

CHUNK = 1 << 20


def read_chunks(f: BinaryIO) -> Iterator[bytes]:
    """The file's bytes, CHUNK at a time."""
    while chunk := f.read(CHUNK):
        yield chunk


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in read_chunks(f):
            h.update(chunk)
    return h.hexdigest()


def copy_hashing(src: str | os.PathLike, dst: str | os.PathLike) -> tuple[str, int]:
    """Copy src to dst (created, fsynced) and return the sha256 and size of the bytes copied."""
    h, size = hashlib.sha256(), 0
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with naming(dst), open(src, "rb") as fin, open(dst, "xb") as fout:
        for chunk in read_chunks(fin):
            h.update(chunk)
            size += len(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest(), size


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_files(root: str | os.PathLike) -> list[Path]:
    """Every regular file below root, as sorted relative paths."""
    root = Path(root)
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def sha256_tree(root: str | os.PathLike) -> str:
    root = Path(root)
    h = hashlib.sha256()
    for rel in tree_files(root):
        h.update(f"{rel.as_posix()}\0{sha256_file(root / rel)}\n".encode())
    return h.hexdigest()


def canonical_json(obj) -> str:
    """One canonical text for JSON-able data: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_json(obj) -> str:
    return sha256_bytes(canonical_json(obj).encode())


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or link inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def default_mode(path: str | os.PathLike) -> None:
    """Give a file the mode `open()` would (0666 less the umask). Some writers (safetensors)
    create 0600 files, which a registry or shared bucket then serves unreadable to others."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextmanager
def open_atomic(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that appears at `path` whole, or not at all.

    Written under a temp name beside `path`, fsynced and renamed over it when the
    block ends; an exception leaves `path` as it was and removes the temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full or read-only disk: the path named (the temp goes below)
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    finally:  # an error or a signal: never leave the temp file behind
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to `path` through `open_atomic`."""
    with open_atomic(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


@contextmanager
def naming(path: str | os.PathLike):
    """An OSError raised inside (a write hitting a full or read-only disk carries no file
    name) is re-raised naming `path`, so the CLI can say which file and what to do."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def replace_dir(out: str | os.PathLike, files: dict[str, bytes]) -> None:
    """Make `out` a directory holding exactly `files` (relative name -> bytes), atomically.

    The files are written and fsynced in a temp directory beside `out`, which then
    replaces it with two renames; a failure leaves the old directory in place.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
    try:
        for name, data in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide it from a web server
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def check_new_dir(dest: Path, *, fix: str, what: str = "the destination") -> None:
    """`dest` must be absent or an empty directory: a command never mixes its output in."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"{what} exists and is not empty", file=str(dest), fix=fix)


@contextmanager
def new_dir(
    dest: str | os.PathLike, *, tag: str, fix: str, what: str = "the destination"
) -> Iterator[Path]:
    """An empty private directory beside `dest` that becomes `dest` when the block ends.

    `dest` must be absent or an empty directory (a UserError naming it and `fix`
    otherwise). What the block writes into the private directory (`.<tag>-<name>-<hex>`)
    is renamed into place only if the block returns: `dest` appears whole or not at all,
    and an error or a signal removes the private copy.
    """
    dest = Path(os.path.normpath(dest))
    check_new_dir(dest, fix=fix, what=what)
    dest.parent.mkdir(parents=True, exist_ok=True)
    private = dest.parent / f".{tag}-{dest.name}-{uuid.uuid4().hex[:12]}"
    try:
        private.mkdir()
        yield private
        if dest.exists():
            dest.rmdir()
        os.rename(private, dest)
    finally:
        shutil.rmtree(private, ignore_errors=True)
