"""Content hashes: sha256 over streamed bytes, never a whole file in memory.

A directory hashes to the sha256 of its sorted `relative/path\\0<file sha256>\\n`
lines, so renaming, adding or editing any file changes it, and the result does
not depend on the filesystem's listing order.
"""

import hashlib
import json
import os
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


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


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write to a temp file beside `path`, fsync, then rename over it.

    Readers see the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
