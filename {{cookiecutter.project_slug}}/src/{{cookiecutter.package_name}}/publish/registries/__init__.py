"""Registries: where published versions live, one small interface over three backends.

    uv run ft registry list  [--registry URI]
    uv run ft registry show  v0.1.0
    uv run ft registry pull  v0.1.0 DIR

The URI picks the backend. Every command resolves it the same way (resolve_registry):
`--registry URI`, else $FT_REGISTRY, else `publish.registry` of configs/recipe.yaml (the
repo's registry), else file://./registry; and says on stderr which one it used.

    file://PATH       a directory: content-addressed blobs + one index per version (local.py)
    hf://OWNER/REPO   a Hugging Face Hub model repo; a version is a git tag (hf.py)
    mlflow://NAME     an MLflow registered model; server from $MLFLOW_TRACKING_URI (mlflow.py)

Every backend keeps one contract: a version is immutable (publishing one that
exists is refused), appears whole or not at all, and carries an index
(`release.json`: sha256 and size of every file) that `pull` re-checks byte for
byte before anything lands in the destination directory.
"""

import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ...config import DEFAULT_CONFIG
from ...errors import UserError
from ...util.hashing import copy_hashing, new_dir, sha256_file
from ...util.paths import HEX64, safe_name

INDEX_NAME = "release.json"
Fetch = Callable[[str, dict], Path]  # (name in the index, its entry) -> a local file to copy
INDEX_SCHEMA = 1
# vMAJOR.MINOR.PATCH with an optional semver pre-release; no build metadata (`+` is not a
# valid git tag / MLflow alias character, and versions must compare without it).
VERSION = re.compile(
    r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
)


class Registry:
    """What `ft publish` and `ft registry` need from a backend, and what backends share.

    A backend implements `versions`, `show`, `publish` and `_open` (where a version's
    files are read from); `pull` is the same for all: open, then copy each file while
    hashing it and place the verified whole at `dest` (`pull_into`).
    """

    uri: str

    def versions(self) -> list[str]:
        """Published versions, oldest release first (semver order)."""
        raise NotImplementedError

    def exists(self, version: str) -> bool:
        return check_version(version) in self.versions()

    def show(self, version: str) -> dict:
        """The version's index: files (sha256, size) and the release metadata."""
        raise NotImplementedError

    def publish(self, version: str, files: dict[str, Path], meta: dict) -> dict:
        """Store `files` (registry name -> local path) as `version`, atomically; the index."""
        raise NotImplementedError

    def _open(self, version: str, scratch: Path) -> tuple[dict, Fetch]:
        """The version's verified index and a `fetch(name, entry) -> local path` for its
        files; `scratch` is an empty private directory to download into."""
        raise NotImplementedError

    def pull(self, version: str, dest: Path) -> dict:
        """Download into `dest` (absent or empty), verifying every hash; the index."""
        scratch = Path(tempfile.mkdtemp(prefix="ft-pull-"))
        try:
            index, fetch = self._open(version, scratch)
            return pull_into(index, Path(dest), fetch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def not_found(self, version: str) -> "VersionNotFound":
        return VersionNotFound(
            f"no version {version} in {self.uri}",
            key="VERSION",
            fix="`ft registry list` shows the published versions",
        )

    def already_exists(self, version: str, detail: str = "") -> "VersionExists":
        return VersionExists(
            f"version {version} already exists in {self.uri}{detail}; "
            "published versions are immutable",
            key="--version",
            fix="publish under a new version, e.g. bump the patch number",
        )


def downloaded(
    root: Path, version: str, where: str, read: Callable[[bytes], dict], made_by: str, changed: str
) -> tuple[dict, Fetch]:
    """`Registry._open` for a version downloaded whole into `root`: its index (checked by
    `read`) and a fetch that refuses files the download lacks. `made_by` and `changed` are
    the fixes for a missing index and a missing file, in the backend's words."""
    index_file = root / INDEX_NAME
    if not index_file.is_file():
        raise IntegrityError(f"{version} has no {INDEX_NAME}", file=where, fix=made_by)
    index = read(index_file.read_bytes())

    def fetch(name: str, entry: dict) -> Path:
        path = root / name
        if not path.is_file():
            raise IntegrityError(f"{name} is missing from {version}", file=where, fix=changed)
        return path

    return index, fetch


class VersionExists(UserError):
    pass


class VersionNotFound(UserError):
    pass


class IntegrityError(UserError):
    pass


DEFAULT_REGISTRY = "file://./registry"
REPO_CONFIG = DEFAULT_CONFIG  # configs/recipe.yaml: the repo's registry lives there


URI_FORMS = "file://PATH, hf://OWNER/REPO or mlflow://MODEL_NAME"


def bad_uri(problem: str, form: str = URI_FORMS) -> UserError:
    """A registry URI written wrong (`publish.registry`, --registry or $FT_REGISTRY)."""
    return UserError(problem, key="publish.registry", fix=f"use {form}")


def resolve_registry(
    flag: str | None, run_config: dict | None = None, *, shared: bool = False
) -> str:
    """The repo's one registry, or the explicit override; printed (stderr) with its source.

    `run_config` is the resolved config of the run being published or reported: if it
    names a registry of its own that is not the repo's, that is refused rather than
    silently overridden either way. `shared`: the command needs a registry that outlives
    a CI runner (publish, registry list/show/pull), so this machine's disk is refused there.
    """
    if flag:
        uri, source, key = flag, "--registry", "--registry"
    elif os.environ.get("FT_REGISTRY"):
        uri, source, key = os.environ["FT_REGISTRY"], "$FT_REGISTRY", "FT_REGISTRY"
    else:
        (uri, source), key = repo_registry(), "publish.registry"
        own = ((run_config or {}).get("publish") or {}).get("registry")
        if own and own != uri:
            raise UserError(
                f"the run's config names registry {own}, but this repo's registry is {uri} "
                f"({source}); a repo has one registry",
                key="publish.registry",
                fix=f"set it only in {REPO_CONFIG}, or choose explicitly with --registry "
                "or FT_REGISTRY",
            )
    print(f"registry: {uri} ({source})", file=sys.stderr, flush=True)
    if shared:
        from ...ops.runner import require_shared_registry

        require_shared_registry(uri, key=key)
    return uri


def repo_registry() -> tuple[str, str]:
    """(URI, where it came from): `publish.registry` of configs/recipe.yaml, else the default."""
    from ...config import load_config

    if Path(REPO_CONFIG).is_file():
        registry = load_config(REPO_CONFIG).publish.registry
        if registry:
            return registry, f"publish.registry of {REPO_CONFIG}"
    return DEFAULT_REGISTRY, f"the default: {REPO_CONFIG} sets no publish.registry"


def open_registry(uri: str) -> Registry:
    """The backend for a registry URI; a bad URI is a UserError naming the key."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not rest:
        raise bad_uri(f"not a registry URI: {uri!r}")
    if scheme == "file":
        from .local import LocalRegistry

        return LocalRegistry(Path(os.path.expanduser(rest)), uri)
    if scheme == "hf":
        from .hf import HfRegistry

        return HfRegistry(rest, uri)
    if scheme == "mlflow":
        from ...util.groups import require
        from .mlflow import MlflowRegistry

        require("mlflow", uri, key="publish.registry")

        return MlflowRegistry(rest, uri)
    raise bad_uri(f"unknown registry scheme {scheme!r} in {uri!r}")


def check_version(version: str, key: str = "--version") -> str:
    if not VERSION.fullmatch(version or ""):
        raise UserError(
            f"{version!r} is not a release version",
            key=key,
            fix="use vMAJOR.MINOR.PATCH with an optional -prerelease, e.g. v1.2.0 or v1.2.0-rc.1",
        )
    return version


def version_key(version: str) -> tuple:
    """Semver precedence: a pre-release sorts before its release; numeric parts numerically."""
    m = VERSION.fullmatch(version)
    if m is None:  # sort_versions passes versions only
        raise ValueError(f"not a version: {version!r}")
    core = tuple(int(m.group(i)) for i in (1, 2, 3))
    if m.group(4) is None:
        return (*core, 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in m.group(4).split("."))
    return (*core, 0, parts)


def sort_versions(names) -> list[str]:
    return sorted({n for n in names if VERSION.fullmatch(n)}, key=version_key)


def check_name(name: str, where: str = INDEX_NAME) -> str:
    """A file name inside a version: relative, POSIX, no `..`; a pull never writes elsewhere."""
    try:
        return safe_name(
            name,
            source=where,
            fix="the index was tampered with; restore the registry from a backup",
        )
    except UserError as e:
        raise IntegrityError(e.problem, file=e.file, fix=e.fix) from None


def make_index(version: str, entries: dict[str, dict], meta: dict) -> dict:
    return {
        "schema": INDEX_SCHEMA,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {name: entries[name] for name in sorted(entries)},
        "meta": meta,
    }


def index_bytes(index: dict) -> bytes:
    return (json.dumps(index, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def hash_files(files: dict[str, Path]) -> dict[str, dict]:
    """sha256 and size of every file to publish, by its name in the registry."""
    return {
        check_name(name): {"sha256": sha256_file(path), "size": Path(path).stat().st_size}
        for name, path in files.items()
    }


@contextmanager
def release_folder(
    version: str, files: dict[str, Path], meta: dict
) -> Iterator[tuple[Path, dict, bytes]]:
    """A temp folder holding a version's files and its index, as a remote backend uploads
    them in one go; yields (folder, index, the index's bytes)."""
    index = make_index(version, hash_files(files), meta)
    data = index_bytes(index)
    with tempfile.TemporaryDirectory(prefix="ft-release-") as tmp:
        folder = Path(tmp)
        for name, src in files.items():
            copy_hashing(Path(src), folder / name)
        (folder / INDEX_NAME).write_bytes(data)
        yield folder, index, data


def read_index(data: bytes, version: str, where: str) -> dict:
    try:
        index = json.loads(data)
    except ValueError:
        index = None
    if (
        not isinstance(index, dict)
        or index.get("version") != version
        or not isinstance(index.get("files"), dict)
    ):
        raise IntegrityError(
            f"the index of {version} is not a valid release index",
            file=where,
            fix="the registry was modified by hand; restore it from a backup",
        )
    for name, entry in index["files"].items():
        check_name(name, where)
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not HEX64.fullmatch(entry["sha256"])
            or type(entry.get("size")) is not int
        ):
            raise IntegrityError(
                f"the index entry of {name} has no valid sha256 and size",
                file=where,
                fix="the registry was modified by hand; restore it from a backup",
            )
    if not isinstance(index.get("meta", {}), dict):
        raise IntegrityError(
            "the index metadata is not an object",
            file=where,
            fix="the registry was modified by hand; restore it from a backup",
        )
    return index


def pull_into(index: dict, dest: Path, fetch) -> dict:
    """Copy every indexed file via `fetch(name, entry) -> local source path` into a private
    directory beside `dest`, check each sha256 and size, then rename it into place.

    `dest` must be absent or empty: a pull never mixes a version with other files.
    """
    with new_dir(dest, tag="pull", fix="pull into a new or empty directory") as staging:
        for name, entry in sorted(index["files"].items()):
            src = fetch(name, entry)
            digest, size = copy_hashing(Path(src), staging / check_name(name))
            if digest != entry["sha256"] or size != entry["size"]:
                raise IntegrityError(
                    f"{name} of {index['version']} does not match its hash (sha256 {digest[:16]}, "
                    f"index says {entry['sha256'][:16]}): the registry copy is corrupted",
                    file=str(src),
                    fix="restore the registry from a backup; a published version "
                    "is immutable and cannot be re-published",
                )
    return index
