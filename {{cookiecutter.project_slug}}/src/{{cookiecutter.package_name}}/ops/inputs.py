"""Training inputs: which files train, and which trained run a commit's inputs resolve to.

    uv run ft release resolve --commit "$(git rev-parse v1.2.0^{})"   # prints the run's URL

The `paths:` filter of .github/workflows/train.yml is the one list of training inputs: `ft plan`
reads it to tell a PR whether merging trains, and a release reads it to find its run. A tag
often points at a commit that did not train (a docs-only commit after the training merge), or
is pushed before training ended. `resolve_run` walks the tagged commit's first-parent history,
nearest first, for as long as no training input differs from the tag's, and takes the first of
those commits whose run in the bucket finished (`manifest.json` is written last). A run that
started but did not finish, or no run at all, is refused with what to wait for or dispatch.
"""

import re
from pathlib import Path

import yaml

from ..errors import UserError
from ..util import git
from .remote import RemoteDir

TRAIN_WORKFLOW = Path(".github/workflows/train.yml")
# Image inputs (uv.lock, Dockerfile) do not train directly: image.yml rebuilds the image and
# proposes the new image.lock as a PR, and merging that PR trains (image before training).
IMAGE_WORKFLOW = Path(".github/workflows/image.yml")
MAX_ANCESTORS = 500


def _glob_regex(pattern: str) -> re.Pattern:
    """GitHub `paths:` glob semantics: `**` crosses directories, `*` does not."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def training_paths(workflow: Path = TRAIN_WORKFLOW) -> list[str]:
    """The `on.push.paths` list of the training workflow (or of another workflow)."""
    data = yaml.safe_load(workflow.read_text())
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` key as True
    return list(triggers["push"]["paths"])


def triggers_training(files: list[str], patterns: list[str]) -> list[str]:
    regexes = [_glob_regex(p) for p in patterns]
    return [f for f in files if any(r.fullmatch(f) for r in regexes)]


def _git(*args: str) -> str:
    done = git.run(*args)
    if done.returncode != 0:
        raise UserError(
            f"git {' '.join(args)} failed: {done.stderr.strip()}",
            fix="run in a full clone (actions/checkout with fetch-depth: 0)",
        )
    return done.stdout


def changed_inputs(a: str, b: str) -> list[str]:
    """The training inputs that differ between commits `a` and `b`."""
    files = _git("diff", "--name-only", a, b).split()
    return triggers_training(sorted(files), training_paths())


def check_same_inputs(trained_at: str, commit: str, key: str) -> None:
    """Refuse unless `trained_at` is `commit` or an ancestor with the same training inputs."""
    if trained_at == commit:
        return
    ancestor = git.run("merge-base", "--is-ancestor", trained_at, commit)
    if ancestor.returncode != 0:
        raise UserError(
            f"the run was trained at {trained_at}, which is not an ancestor of {commit}",
            key=key,
            fix="release a commit whose history holds the trained one (or train at the tag)",
        )
    moved = changed_inputs(trained_at, commit)
    if moved:
        raise UserError(
            f"training inputs changed between the run's commit {trained_at[:12]} and "
            f"{commit[:12]}: {', '.join(moved)}",
            key=key,
            fix="tag a commit whose training inputs were trained (ft release resolve)",
        )


def _state(url: str) -> str | None:
    """`finished` (manifest.json present), `started` (anything else there) or None."""
    run = RemoteDir(url)
    if run.exists("manifest.json"):
        return "finished"
    return "started" if run.exists() else None


def resolve_run(store: str, commit: str) -> tuple[str, str]:
    """(run URL, commit it was trained at) for `commit`'s training inputs (see the module doc)."""
    commit = _git("rev-parse", "--verify", f"{commit}^" + "{commit}").strip()
    store = store.rstrip("/")
    ancestors = _git("rev-list", "--first-parent", f"--max-count={MAX_ANCESTORS}", commit).split()
    started, same = [], []
    for sha in ancestors:
        if sha != commit and changed_inputs(sha, commit):
            break  # an older commit trained other inputs; nothing further back can stand in
        same.append(sha)
        state = _state(f"{store}/{sha}")
        if state == "finished":
            return f"{store}/{sha}", sha
        if state == "started":
            started.append(sha)
    if started:
        raise UserError(
            f"the run of {started[0][:12]} (same training inputs as {commit[:12]}) has not "
            f"finished: no manifest.json in {store}/{started[0]}",
            key="--commit",
            fix=f"wait for the ft/train status of {started[0][:12]} to turn green, then re-run "
            "the release",
        )
    raise UserError(
        f"no run in {store} was trained with the training inputs of {commit[:12]} "
        f"(looked at {len(same)} commit(s) back to {same[-1][:12]})",
        key="--commit",
        fix=f"run the train workflow on {same[-1][:12]} (Actions > train > Run workflow), wait "
        "for its ft/train status, then re-run the release",
    )
