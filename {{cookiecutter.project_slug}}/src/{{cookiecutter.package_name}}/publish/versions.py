"""`ft registry list|show|pull`: the published versions of the repo's registry.

    uv run ft registry list
    uv run ft registry show latest
    uv run ft registry pull v1.2.0 DIR

`pull` downloads into a private directory (the registry checks every file's sha256 against
its index), checks the release against its own manifest (release.py: verify_release) and
only then renames it into DIR.
"""

import json
import sys

from ..util.hashing import new_dir
from .card import number
from .registries import VersionNotFound, check_version, open_registry
from .release import verify_release


def list_versions(registry_uri: str) -> int:
    registry = open_registry(registry_uri)
    versions = registry.versions()
    if not versions:
        print(f"no versions in {registry_uri}", file=sys.stderr)
    for version in versions:
        meta = registry.show(version).get("meta", {})
        loss = meta.get("metrics", {}).get("eval_loss")
        print(
            f"{version}\trun {meta.get('run_id')}\tcommit {str(meta.get('git_commit'))[:12]}\t"
            f"eval_loss {number(loss) if loss is not None else '-'}\t"
            f"verified {meta.get('verified_at')}"
        )
    return 0


def resolve_version(registry, version: str) -> str:
    """A version name, or `latest`: the highest release that is not a pre-release."""
    if version != "latest":
        return check_version(version, key="VERSION")
    releases = [v for v in registry.versions() if "-" not in v]
    if not releases:
        raise VersionNotFound(
            f"no release in {registry.uri} yet, so there is no `latest`",
            key="VERSION",
            fix="publish one first: ft publish runs/<id> --version v0.1.0",
        )
    return releases[-1]


def show_version(registry_uri: str, version: str) -> int:
    registry = open_registry(registry_uri)
    index = registry.show(resolve_version(registry, version))
    print(json.dumps(index, indent=2, sort_keys=True))
    return 0


def pull_version(registry_uri: str, version: str, dest: str) -> int:
    """Pull into a private directory, check the release against itself, then rename it in.

    The registry checks its index (every file's sha256); this checks what the index
    cannot vouch for: that the release is the one its manifest describes.
    """
    registry = open_registry(registry_uri)
    version = resolve_version(registry, version)
    with new_dir(dest, tag="verify", fix="pull into a new or empty directory") as private:
        index = registry.pull(version, private)
        verify_release(
            private,
            index,
            f"{registry_uri} {version}",
            getattr(registry, "ADDED_FILES", ()),
            uri=registry.uri,
        )
    print(
        f"pulled {version} from {registry_uri} into {dest}: {len(index['files'])} files, every "
        "sha256 verified, the release matches its manifest"
    )
    return 0
