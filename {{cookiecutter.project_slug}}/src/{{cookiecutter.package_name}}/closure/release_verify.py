"""`ft release verify`: the release's reproduction, with no runner waiting on a GPU job.

    uv run ft release verify runs/release --run-uri "$RUN_URI" --tag v1.2.0            # on the tag
    uv run ft release verify runs/release --run-uri "$RUN_URI" --tag v1.2.0 --collect  # dispatched

RUN_DIR is `ft fetch RUN_URI RUN_DIR`. What happens depends on where the run was trained
(its manifest's `command.backend`):

- `local` (CPU CI, or a runner that trains): REPRODUCE.md is re-run here in the clean room,
  as `ft reproduce --clean-room` does; it fits a hosted job because the training did.
- `sky`: the run is replayed on its pinned image and GPU shape as one managed job per
  checkpoint interval (closure/segments_sky.py), submitted from a worktree of the run's
  commit, so each job clones exactly that commit. The jobs are named
  `<task>-verify-TAG-NNNN` and write to RUN_URI/verify/TAG/interval-NNNN; the command
  returns once all are submitted. train-watch.yml sees them end (`ft jobs reproduced`) and
  dispatches release.yml on the tag, whose `--collect` recomputes every verdict from the
  bytes the jobs committed to the bucket (ADR 0042) and writes RUN_DIR/verification.json.

Stdout is one word, for the workflow to branch on: `verified` (verification.json passed;
publish may run) or `submitted` (jobs are running; nothing to publish yet). A failed
verification exits 1 with its FAIL line, as `ft reproduce` does.
"""

import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError
from ..util import git
from . import reproduce
from .checkout import Failed
from .manifest import read_manifest

# Characters a SkyPilot job name and a bucket path segment both keep as they are.
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def main(
    run_dir: str,
    run_uri: str,
    tag: str,
    *,
    collect: bool = False,
    keep_env: tuple[str, ...] = (),
) -> int:
    check_label(tag, key="--tag", example="v1.2.0")
    manifest = read_manifest(Path(run_dir))
    if manifest["command"].get("backend") != "sky":
        code = reproduce.main(run_dir, clean_room=True, keep_env=keep_env)
        return _say(code, "verified")
    if collect:
        # Every interval, the release's exact bar (a spot check is the drill's).
        code = reproduce.main(run_dir, segments="all", collect=run_uri, label=tag)
        return _say(code, "verified")
    return _say(submit(Path(run_dir).resolve(), manifest, run_uri, tag), "submitted")


def check_label(label: str, *, key: str, example: str) -> None:
    """A tag or drill label names managed jobs and a bucket folder as it is: refuse others."""
    if not LABEL.fullmatch(label):
        raise UserError(
            f"{label!r} cannot name the jobs and their bucket folder",
            key=key,
            fix=f"use letters, digits, '.', '_' and '-' (e.g. {example})",
        )


def submit(run_dir: Path, manifest: dict, run_uri: str, tag: str) -> int:
    """Check the run as `ft reproduce` does first (a hand-edited REPRODUCE.md or output file
    fails here, before any GPU is paid for), then submit every interval's job."""
    from .segments_sky import launch_intervals

    try:
        reproduce.check_document(run_dir, manifest, {})
        reproduce.check_run_files(run_dir, manifest)
    except Failed as f:
        print(f"FAIL  {run_dir / f.file}: {f.reason} (fix: {f.fix})", file=sys.stderr)
        return 1
    with at_commit(manifest["git"]["commit"]):
        jobs = launch_intervals(manifest, run_uri, label=tag)
    for index, job_id in jobs:
        print(f"interval {index}: managed job {job_id}", file=sys.stderr)
    print(
        f"submitted {len(jobs)} interval job(s) for {tag}; train-watch.yml dispatches the "
        "release again once they ended",
        file=sys.stderr,
    )
    return 0


@contextmanager
def at_commit(commit: str):
    """Work in a fresh `git worktree` of `commit` meanwhile: the jobs' task, config and
    image.lock are the run's, and the commit they clone is the one that trained."""
    top = git.in_checkout(
        "rev-parse", "--show-toplevel", fix="run it from the repository the run was trained in"
    )

    def cannot(message: str) -> UserError:
        return UserError(
            f"cannot check out the run's commit {commit[:12]}: {message}",
            key="git.commit",
            fix="fetch the full history (actions/checkout with fetch-depth: 0)",
        )

    with git.worktree(commit, top=top, prefix="ft-release-verify-", error=cannot) as tree:
        here = os.getcwd()
        os.chdir(tree)
        try:
            yield tree
        finally:
            os.chdir(here)


def _say(code: int, word: str) -> int:
    if code == 0:
        print(word)
    return code
