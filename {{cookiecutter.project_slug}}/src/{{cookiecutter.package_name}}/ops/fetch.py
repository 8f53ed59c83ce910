"""`ft fetch URL DIR [--checkpoints]`: a finished run from its store, every file re-hashed.

uv run ft fetch s3://bucket/runs/smoke runs/smoke        # then ft reproduce / ft diff
"""

import os
import re
import sys
from pathlib import Path

from ..errors import UserError
from ..util.hashing import check_new_dir, new_dir, write_atomic
from ..util.paths import inside, safe_name
from ..util.records import loads
from .remote import RESTORE_FIX, RemoteDir

# A checkpoint file as a manifest's chain names it (ft fetch --checkpoints).
CHECKPOINT_FILE = re.compile(r"checkpoints/step-\d{8}/(state\.pt|rng-rank\d+\.pt)")


def fetch(url: str, dest: str | os.PathLike, checkpoints: bool = False) -> Path:
    """`ft fetch URL DIR [--checkpoints]`: a finished run, every file re-hashed against its
    manifest.

    Downloads manifest.json, REPRODUCE.md, run.json and every output the manifest
    lists (with `checkpoints`, or when the run's config says `reproduce.strategy:
    segments`, also every checkpoint of its chain) into a temp directory beside DIR,
    renamed into place only when every hash matched: DIR is complete or absent.
    """
    remote, dest = RemoteDir(url), Path(os.path.normpath(dest))
    check_new_dir(dest, fix="pass a new directory, e.g. runs/<id>")
    if "manifest.json" not in remote.names():
        raise UserError(
            "no manifest.json: the run did not finish (or this is not a run)",
            file=url,
            fix="pass the URL of a finished run (its manifest is written last)",
        )
    manifest_bytes = remote.read("manifest.json")
    try:
        manifest = loads(manifest_bytes)
        reproduce = manifest["config"]["reproduce"]
        if not isinstance(manifest["outputs"], dict) or not isinstance(reproduce, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise UserError(
            "is not a manifest written by `ft train`",
            file=f"{remote.url}/manifest.json",
            fix=RESTORE_FIX,
        ) from None
    for name in manifest["outputs"]:  # every name checked before anything is downloaded
        safe_name(name, source=f"{remote.url}/manifest.json", fix=RESTORE_FIX)
    with new_dir(dest, tag="partial", fix="pass a new directory, e.g. runs/<id>") as partial:
        write_atomic(partial / "manifest.json", manifest_bytes)
        for name in ("run.json", "REPRODUCE.md"):
            remote.get(name, partial / name)
        for name, digest in sorted(manifest["outputs"].items()):
            dest_file = inside(partial, name, source=f"{remote.url}/manifest.json", fix=RESTORE_FIX)
            remote.get(name, dest_file, digest, against="manifest.json")
        # A run whose config verifies by segments needs its chain wherever it is verified.
        checkpoints = checkpoints or reproduce.get("strategy") == "segments"
        for link in manifest.get("checkpoints") or [] if checkpoints else []:
            for name, digest in sorted(link["files"].items()):
                rel = f"{link['path']}/{name}"
                # Names from the remote manifest must stay inside the run directory.
                if not CHECKPOINT_FILE.fullmatch(rel):
                    raise UserError(
                        f"the manifest lists a checkpoint file outside the chain: {rel!r}",
                        file=f"{url}/manifest.json",
                        fix="fetch a run written by `ft train`",
                    )
                dest_file = inside(
                    partial, rel, source=f"{remote.url}/manifest.json", fix=RESTORE_FIX
                )
                remote.get(rel, dest_file, digest, against="manifest.json")
    print(
        f"fetched {remote.url} -> {dest}: {len(manifest['outputs'])} outputs match manifest.json",
        file=sys.stderr,
    )
    return dest
