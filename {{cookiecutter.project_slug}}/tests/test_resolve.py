"""`ft release resolve` and the release's commit check (src/<pkg>/ops/inputs.py).

    uv run pytest tests/test_resolve.py -q

A small git history in a scratch repo with this repository's train.yml (its `paths:` list is
the training inputs) and a directory as the artifact store, runs keyed by commit as the
train workflow writes them. Real git, no training: a second or two.
"""

import importlib
import json
import shutil
import subprocess

import pytest
from conftest import ROOT


def git(cwd, *args) -> str:
    ident = ["-c", "user.name=test", "-c", "user.email=test@localhost"]
    return subprocess.run(
        ["git", *ident, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def history(tmp_path, monkeypatch):
    """trained (configs change) -> docs (README only) -> retrain (configs change again)."""
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy2(ROOT / ".github" / "workflows" / "train.yml", repo / ".github" / "workflows")
    (repo / "configs").mkdir()
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    commits = {}
    for name, path, text in [
        ("base", "configs/recipe.yaml", "seed: 1\n"),
        ("trained", "configs/recipe.yaml", "seed: 2\n"),
        ("docs", "README.md", "docs only\n"),
        ("retrain", "configs/recipe.yaml", "seed: 3\n"),
    ]:
        (repo / path).write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", name)
        commits[name] = git(repo, "rev-parse", "HEAD")
    monkeypatch.chdir(repo)
    store = tmp_path / "store"
    return repo, store, commits


def finish(store, sha, done=True) -> None:
    run = store / sha
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    if done:
        (run / "manifest.json").write_text(json.dumps({"git": {"commit": sha}}))


def test_a_docs_only_tag_resolves_to_the_trained_ancestor(history, ft):
    repo, store, c = history
    finish(store, c["trained"])
    result = ft("release", "resolve", "--commit", c["docs"], "--store", store)
    assert result.code == 0, result.err
    assert result.out.strip() == f"{store}/{c['trained']}"
    # The trained commit resolves to itself.
    assert ft("release", "resolve", "--commit", c["trained"], "--store", store).out.strip() == (
        f"{store}/{c['trained']}"
    )


def test_unfinished_or_missing_runs_say_what_to_wait_for(history, ft):
    repo, store, c = history
    finish(store, c["trained"], done=False)
    ft("release", "resolve", "--commit", c["docs"], "--store", store).user_error(
        f"the run of {c['trained'][:12]}", "has not finished", "wait for the ft/train status"
    )
    # New inputs at `retrain`: the older run does not stand in for them.
    finish(store, c["base"])
    ft("release", "resolve", "--commit", c["retrain"], "--store", store).user_error(
        f"no run in {store} was trained with the training inputs of {c['retrain'][:12]}",
        f"run the train workflow on {c['retrain'][:12]}",
    )


def test_publish_accepts_an_ancestor_with_the_same_inputs_only(history, pkg):
    repo, store, c = history
    inputs = importlib.import_module(f"{pkg.__name__}.ops.inputs")
    inputs.check_same_inputs(c["trained"], c["docs"], "--tag-commit")
    with pytest.raises(pkg.errors.UserError, match="training inputs changed.*configs/recipe.yaml"):
        inputs.check_same_inputs(c["trained"], c["retrain"], "--tag-commit")
    with pytest.raises(pkg.errors.UserError, match="not an ancestor"):
        inputs.check_same_inputs(c["docs"], c["trained"], "--tag-commit")


def test_plan_says_an_image_input_rebuilds_the_image_before_training(history, ft, tmp_path):
    """uv.lock / Dockerfile: image.yml first, training once its image.lock PR merges."""
    repo, _, c = history
    shutil.copy2(ROOT / ".github" / "workflows" / "image.yml", repo / ".github" / "workflows")
    shutil.copy2(ROOT / "data.lock", repo / "data.lock")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "image workflow and data.lock")
    base = git(repo, "rev-parse", "HEAD")
    (repo / "uv.lock").write_text("version = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "bump a dependency")
    out = tmp_path / "plan.md"
    result = ft("plan", "--base", base, "--config", "configs/recipe.yaml", "--out", out)
    assert result.code == 0, result.err
    text = out.read_text()
    assert "Merging this does not start training" in text
    assert "Merging this **rebuilds the training image** first (`uv.lock` changed)" in text
    assert "merging that one starts training on the new image" in text
