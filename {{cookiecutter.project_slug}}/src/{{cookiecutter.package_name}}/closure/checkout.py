"""Where `ft reproduce` re-runs a command block: a fresh `git worktree` of the recorded commit.

`checkout` makes the worktree and the environment to run in (with `clean_room`, cleanroom.py's
fresh HOME and caches), `run_block` runs REPRODUCE.md's block in it verbatim with bash, and
`execute` is the two for a full replay into RUN_DIR/reproduce/. A verdict that fails is a
`Failed`: the FAIL line names the file (relative to the run) and the fix.
"""

import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from ..util import git


class Failed(Exception):
    """A verdict: the FAIL line names the file (relative to the run) and the fix."""

    def __init__(
        self,
        reason: str,
        detail: str | None = None,
        *,
        file: str = "REPRODUCE.md",
        fix: str = "fix the cause named here, then run `ft reproduce` again",
    ):
        super().__init__(reason)
        self.reason, self.detail, self.file, self.fix = reason, detail, file, fix


def execute(
    run_dir: Path,
    manifest: dict,
    block: str,
    record: dict,
    clean_room: bool = False,
    keep_env: tuple[str, ...] = (),
    verbose: bool = False,
) -> Path:
    out = run_dir / "reproduce"
    shutil.rmtree(out, ignore_errors=True)
    with checkout(manifest, record, clean_room, keep_env) as (tree, env):
        done = run_block(block, tree, env | {"FT_OUT": str(out)}, verbose)
        record["exit_code"] = done.returncode
        if done.returncode != 0:
            errors = [ln for ln in (done.stderr or "").splitlines() if ln.startswith("error: ")]
            raise Failed(
                f"the REPRODUCE.md command exited with status {done.returncode}"
                + (f" in the clean room: {errors[-1].removeprefix('error: ')}" if errors else ""),
                fix="its output above names the cause; fix it at the recorded commit",
            )
    if not (out / "manifest.json").is_file():
        raise Failed(
            "the REPRODUCE.md command finished but wrote no run to $FT_OUT",
            fix="the command block must train into $FT_OUT; re-render it with `ft train`",
        )
    return out


@contextmanager
def checkout(
    manifest: dict, record: dict, clean_room: bool = False, keep_env: tuple[str, ...] = ()
):
    """A fresh `git worktree` of the recorded commit and the environment to run in it (with
    `clean_room`, cleanroom.py's); after the body, a clean room's tracked files are checked."""
    commit = manifest["git"]["commit"]
    if not commit:
        raise Failed(
            "the run was not trained inside a git checkout, so there is no commit to rebuild from",
            file="manifest.json",
            fix="train from a committed git checkout",
        )
    if manifest["git"]["dirty"]:
        raise Failed(
            f"the run was trained from a dirty tree (uncommitted changes on top of "
            f"{commit[:12]}): a checkout of the commit cannot rebuild it",
            file="manifest.json",
            fix="commit the changes, then train again",
        )
    top = git.in_checkout(
        "rev-parse",
        "--show-toplevel",
        fix="run ft reproduce from the repository the run was trained in",
    )

    def cannot(message: str) -> Failed:
        return Failed(
            f"cannot check out commit {commit}: {message}",
            file="manifest.json",
            fix="fetch the commit (git fetch origin), or reproduce in the repo it was made in",
        )

    with git.worktree(commit, top=top, prefix="ft-reproduce-", error=cannot) as tree:
        # PYTHONDONTWRITEBYTECODE (set by many images and sandboxes) is dropped: the scratch
        # checkout's venv is the gate's own, and without it every `ft train` of a segment
        # replay compiled the ~3,000 modules it imports again (~6 CPU-s each,
        # docs/benchmarks.md).
        drop = ("VIRTUAL_ENV", "FT_OUT", "FT_SEGMENT", "FT_CHAIN", "PYTHONDONTWRITEBYTECODE")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        # The re-run is compared, then discarded: it may live on a CI runner's disk
        # (ops/runner.py).
        env["FT_RUNNER_SCRATCH"] = "1"
        env["FT_REPRODUCING"] = "1"  # the nested `ft train` then gives no "reproduce me" hint
        print(
            f"reproducing {manifest['run_id']} at {commit[:12]} in {tree}",
            file=sys.stderr,
            flush=True,
        )
        if clean_room:  # closure/cleanroom.py: fresh HOME and caches, no credentials
            from .cleanroom import environment, outside_resources

            outside = outside_resources(manifest["config"], tree)
            if outside:
                raise Failed(
                    "clean room: the run depends on " + "; ".join(outside),
                    file="manifest.json",
                    fix="pin what it needs in the repo (or pass --keep-env for a named secret)",
                )
            env, dropped = environment(env, tree.parent, keep_env)
            record["clean_room"] = {
                "home": "fresh",
                "caches": "empty",
                "dropped_env": dropped,
                "kept_env": sorted(k for k in keep_env if k in env),
            }
        yield tree, env
        if clean_room:
            from .cleanroom import modified_tracked_files

            modified = modified_tracked_files(tree)
            if modified:
                raise Failed(
                    "clean room: the run wrote into its checkout's tracked files, which a "
                    "reproduction must only read: " + ", ".join(modified),
                    file=modified[0],
                    fix="write outputs under $FT_OUT or an ignored path, never into tracked files",
                )


# What `uv sync` says about a fresh venv: a line per package (157 for the default lock) and
# some preamble. Without --verbose only its "Installed N packages in T" line is kept.
UV_CHATTER = re.compile(
    r"( [+~-] \S|Using CPython |Creating virtual environment |Resolved \d+ packages|"
    r"Prepared \d+ packages|Uninstalled \d+ packages|Audited \d+ packages|Bytecode compiled)"
)
UV_SUMMARY = re.compile(r"Installed \d+ packages? in ")


def run_block(block: str, tree: Path, env: dict, verbose: bool) -> subprocess.CompletedProcess:
    """Run the command block; its output goes to stderr, with uv's package list folded into
    one summary line unless `verbose`. Nothing the block computes depends on this."""
    argv = ["bash", "-euo", "pipefail", "-c", block]
    if verbose:
        return subprocess.run(argv, cwd=tree, env=env)
    with subprocess.Popen(
        argv, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None  # stdout=PIPE
        for line in proc.stdout:
            if UV_SUMMARY.match(line):
                sys.stderr.write(f"uv sync: {line}")
            elif not UV_CHATTER.match(line):
                sys.stderr.write(line)
            sys.stderr.flush()
    return subprocess.CompletedProcess(argv, proc.returncode)
