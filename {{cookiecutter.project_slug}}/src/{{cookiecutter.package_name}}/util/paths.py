"""Names read from remote or recorded metadata, checked in one place before any use.

A manifest's `outputs`, a checkpoint's COMPLETE marker, a registry index and a
blob address are all written by someone else (a bucket anyone with write access
can edit, a registry restored from a backup). Every such name goes through
`safe_name` before it becomes a path, and `inside` joins it under its root and
proves the result stays there, so `../../x`, `/etc/x`, `a/./b` or a symlinked
parent never lead a download or a copy outside the directory it is meant for.

    from ..util.paths import inside, safe_name
    dest = inside(run_dir, safe_name(name, source="manifest.json outputs"))
"""

import os
import re
from pathlib import Path, PurePosixPath

from ..errors import UserError

HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_NAME = 1024  # a longer name is an attack or a bug, never an artifact


class UnsafeName(UserError):
    pass


def safe_name(name: object, *, source: str, fix: str | None = None) -> str:
    """`name` if it is a plain relative POSIX path (no `..`, `.`, empty part, `\\`, NUL,
    absolute path or drive), else an UnsafeName naming `source` (the file it came from)."""
    fix = fix or "the metadata was tampered with or damaged; restore it from the original"
    if not isinstance(name, str) or not (
        0 < len(name) <= MAX_NAME
        and "\\" not in name
        and "\0" not in name
        and not any(ord(c) < 32 for c in name)
        and not PurePosixPath(name).is_absolute()
        and not re.match(r"^[A-Za-z]:", name)
        and all(part not in ("", ".", "..") for part in name.split("/"))
    ):
        raise UnsafeName(
            f"unsafe file name {name!r} (must stay inside its directory)", file=source, fix=fix
        )
    return name


def inside(root: str | os.PathLike, name: object, *, source: str, fix: str | None = None) -> Path:
    """root/name for a checked name, refused if it resolves outside root (symlinks included)."""
    rel = safe_name(name, source=source, fix=fix)
    root = Path(root)
    path = root / rel
    base = root.resolve()
    if not path.resolve().is_relative_to(base):
        raise UnsafeName(
            f"file name {name!r} leads outside {root} (through a symlink)",
            file=source,
            fix=fix or "the metadata was tampered with or damaged; restore it from the original",
        )
    return path


def safe_digest(value: object, *, source: str) -> str:
    """A sha256 hex digest used as a file name (content-addressed blobs)."""
    if not isinstance(value, str) or not HEX64.fullmatch(value):
        raise UnsafeName(
            f"{value!r} is not a sha256 digest",
            file=source,
            fix="the index was tampered with or damaged; restore the registry from a backup",
        )
    return value
