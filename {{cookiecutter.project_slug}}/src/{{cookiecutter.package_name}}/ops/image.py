"""The training image and image.lock, which pins it by digest and says what it was built from.

    uv run ft image check          # was image.lock's image built from this uv.lock + Dockerfile?
    uv run ft image build-args     # KEY=VALUE lines for `docker build --build-arg`
    uv run ft image record --name ghcr.io/org/repo --digest sha256:... --base-digest sha256:...

`ft launch --backend sky` runs only on the image image.lock names, and refuses while
`ft image check` fails: a uv.lock or Dockerfile edited after the build means that
image no longer holds the environment this commit locks. The image-build workflow
builds with `ft image build-args`, pushes, and proposes the `ft image record` change
as a pull request. A tag never pins anything here: names and digests are separate
keys, and the digest is what a job runs.
"""

import json
import re
from pathlib import Path

from ..errors import UserError
from ..util import git
from ..util.hashing import sha256_file, write_atomic
from ..util.records import parse_json

LOCK = "image.lock"
DOCKERFILE = "Dockerfile"
UV_LOCK = "uv.lock"
SCHEMA = 1
KEYS = (
    "schema",
    "name",
    "digest",
    "base",
    "base_digest",
    "uv_lock_sha256",
    "dockerfile_sha256",
    "commit",
)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# registry[:port]/path, lowercase, no tag and no digest (those are separate keys).
NAME = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+")
BASE = re.compile(r"[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*")  # name:tag
HEX40 = re.compile(r"[0-9a-f]{40}")
RECORD_FIX = (
    "build and push the image, then run `uv run ft image record --name NAME "
    "--digest sha256:<pushed> --base-digest sha256:<base>` (docs/launch.md)"
)


def load(root: str | Path = ".") -> dict:
    """image.lock, with every key present and every non-null value well formed."""
    path = Path(root) / LOCK
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(
            "no image lock",
            file=LOCK,
            fix="restore image.lock from git, or create it with `ft image record`",
        ) from None
    lock = parse_json(
        text, file=LOCK, fix="restore image.lock from git; it is written by `ft image record`"
    )
    if not isinstance(lock, dict) or set(lock) != set(KEYS):
        found = sorted(lock) if isinstance(lock, dict) else type(lock).__name__
        raise UserError(
            f"expected exactly the keys {list(KEYS)}, found {found}",
            file=LOCK,
            fix="restore image.lock from git; it is written by `ft image record`",
        )
    formats = {
        "name": NAME,
        "digest": DIGEST,
        "base": BASE,
        "base_digest": DIGEST,
        "uv_lock_sha256": re.compile(r"[0-9a-f]{64}"),
        "dockerfile_sha256": re.compile(r"[0-9a-f]{64}"),
        "commit": HEX40,
    }
    for key, pattern in formats.items():
        value = lock[key]
        nullable = key not in ("name", "base")
        if (value is None and not nullable) or (
            value is not None and (not isinstance(value, str) or not pattern.fullmatch(value))
        ):
            raise UserError(
                f"malformed value {value!r}",
                file=LOCK,
                key=key,
                fix="restore image.lock from git; it is written by `ft image record`",
            )
    return lock


def reference(lock: dict) -> str:
    """The pinned image, `name@sha256:...`: what a job runs and its manifest records."""
    return f"{lock['name']}@{lock['digest']}"


def check(root: str | Path = ".") -> dict:
    """image.lock names a built image whose uv.lock and Dockerfile are this tree's; or UserError."""
    root = Path(root)
    lock = load(root)
    if lock["digest"] is None:
        raise UserError(
            "no image has been built for this repository yet",
            file=LOCK,
            key="digest",
            fix=RECORD_FIX,
        )
    for key, name in (("uv_lock_sha256", UV_LOCK), ("dockerfile_sha256", DOCKERFILE)):
        if not (root / name).is_file():
            raise UserError(f"{name} is missing", file=name, fix=f"restore {name} from git")
        now = sha256_file(root / name)
        if lock[key] != now:
            raise UserError(
                f"{name} changed after the image was built (recorded sha256 "
                f"{str(lock[key])[:12]}, now {now[:12]})",
                file=LOCK,
                key=key,
                fix=RECORD_FIX,
            )
    return lock


def build_args(root: str | Path = ".", latest_base: bool = False) -> dict[str, str]:
    """The `--build-arg` values for building this tree's image (see the Dockerfile).

    The base is the digest image.lock recorded; `latest_base` (or no digest yet) builds
    from the tag instead, i.e. the newest base, whose digest `ft image record` then pins.
    """
    root = Path(root)
    lock = load(root)
    base = lock["base"]
    if lock["base_digest"] and not latest_base:
        base = f"{base}@{lock['base_digest']}"
    return {
        "BASE_IMAGE": base,
        "UV_LOCK_SHA256": sha256_file(root / UV_LOCK),
        "DOCKERFILE_SHA256": sha256_file(root / DOCKERFILE),
        "GIT_COMMIT": _head(root),
    }


def record(name: str | None, digest: str, base_digest: str, root: str | Path = ".") -> dict:
    """Write image.lock for an image just built from this checkout (atomically)."""
    root = Path(root)
    lock = load(root)
    name = name or lock["name"]
    for key, value, pattern, example in (
        ("--name", name, NAME, "ghcr.io/org/repo"),
        ("--digest", digest, DIGEST, "sha256:<64 hex>"),
        ("--base-digest", base_digest, DIGEST, "sha256:<64 hex>"),
    ):
        if not pattern.fullmatch(value):
            raise UserError(
                f"malformed value {value!r}", key=key, fix=f"pass {example} (a digest, never a tag)"
            )
    changed = _git(root, "status", "--porcelain", "--", UV_LOCK, DOCKERFILE)
    if changed:
        raise UserError(
            "uncommitted changes to uv.lock or the Dockerfile",
            file=LOCK,
            fix="record from the clean checkout the image was built from",
        )
    lock |= {
        "name": name,
        "digest": digest,
        "base_digest": base_digest,
        "uv_lock_sha256": sha256_file(root / UV_LOCK),
        "dockerfile_sha256": sha256_file(root / DOCKERFILE),
        "commit": _head(root),
    }
    write_atomic(root / LOCK, json.dumps({k: lock[k] for k in KEYS}, indent=2) + "\n")
    return lock


def _git(root: Path, *args: str) -> str:
    done = git.run(*args, cwd=root)
    if done.returncode != 0:
        raise UserError(
            f"git {args[0]} failed: {done.stderr.strip()}",
            file=str(root),
            fix="run this inside the project's git checkout",
        )
    return done.stdout.strip()


def _head(root: Path) -> str:
    return _git(root, "rev-parse", "HEAD")
