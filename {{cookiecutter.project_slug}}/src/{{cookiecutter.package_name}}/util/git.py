"""The one place the package runs git: output captured as text, failures returned.

Callers decide what a failure means (outside a checkout a manifest records `null`;
`ft launch` refuses), so nothing here raises on a non-zero exit, except `in_checkout`,
for the commands that cannot run outside one.
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError


def run(*args: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    """`git ARGS` in `cwd` (default: the working directory)."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def output(*args: str, cwd: str | Path | None = None) -> str | None:
    """Stripped stdout of `git ARGS`, or None when git failed (no checkout, unknown ref)."""
    done = run(*args, cwd=cwd)
    return done.stdout.strip() if done.returncode == 0 else None


def changed_paths(cwd: str | Path | None = None) -> list[str] | None:
    """Paths `git status` reports as changed or untracked; None outside a git checkout."""
    done = run("status", "--porcelain", "--untracked-files=normal", cwd=cwd)
    if done.returncode != 0:
        return None
    return [line[3:] for line in done.stdout.splitlines() if len(line) > 3]


def raw(*args: str, cwd: str | Path | None = None) -> bytes | None:
    """Stdout of `git ARGS` as bytes (diffs of non-UTF-8 files), or None when git failed."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True)
    return done.stdout if done.returncode == 0 else None


def in_checkout(*args: str, fix: str) -> str:
    """Stripped stdout of `git ARGS` run where a command needs a checkout; outside one, a
    UserError naming the working directory and `fix` (what to run from instead)."""
    out = output(*args)
    if out is None:
        raise UserError("not inside a git checkout", file=os.getcwd(), fix=fix)
    return out


@contextmanager
def worktree(
    commit: str, *, top: str | Path, prefix: str, error: Callable[[str], Exception]
) -> Iterator[Path]:
    """A detached `git worktree` of `commit` at <new temporary directory>/checkout (the
    directory is the caller's scratch space too), removed afterwards; when git cannot check
    the commit out, `error(git's message)` is raised."""
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    tree = scratch / "checkout"
    added = run("worktree", "add", "--detach", str(tree), commit, cwd=top)
    if added.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise error(added.stderr.strip())
    try:
        yield tree
    finally:
        # A fresh .venv in it holds tens of thousands of files: removing it directly is
        # several times faster than letting `git worktree remove` walk it.
        shutil.rmtree(tree / ".venv", ignore_errors=True)
        run("worktree", "remove", "--force", str(tree), cwd=top)
        shutil.rmtree(scratch, ignore_errors=True)
