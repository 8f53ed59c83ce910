"""The generated repo's workflows, executed end to end on this host with `act`.

Each third-party action is replaced by a stand-in from tests/act/ (the git host is
unreachable here); every `run:` step is the real one: `uv sync`, `ft train`,
`ft reproduce`, `ft publish`... with the launch backend `local`. Each workflow run starts from
nothing, as a GitHub job on a fresh VM does (tests/act_runner.py): a new clone of the git
remote the baked repo pushes to, an empty workspace per job, a new HOME; runs share only what
the real topology shares: the bucket, a real S3 server (SeaweedFS), and the registry, a real
`mlflow server`, both on 127.0.0.1 (tests/act_services.py), the git remote, GitHub's side
(comments, statuses, issues, attestations) and, deliberately, uv's package cache. After every
run the harness asserts that the run wrote nothing into the baked repo, was given no path in
this host's HOME, and checked out into an empty workspace of its own. Cases:

1. a PR that edits a filter, with FT_REGISTRY set and no credentials (a fork's PR):
   ci.yml passes; its report shows the data diff and says why it has no baseline; one comment
2. a push to main: with FT_ARTIFACT_STORE on the runner's disk train.yml stops at
   `ft doctor`; with the bucket it trains and stores the run there, keyed by the commit
3. a tag v0.1.0 on a later docs-only commit: release.yml resolves the trained ancestor's run,
   reproduces, publishes and attests; the registry holds v0.1.0; `ft registry verify` passes,
   and fails once one file's attestation is missing
4. the tag flow with REPRODUCE.md broken: reproduce fails, publish never runs
5. the drill on a published release passes; with the release's data tampered it fails
6. a tag on new training inputs whose run started but did not finish: refused, nothing published

The trigger rules are asserted from the workflow files themselves.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from act_runner import BIN, Act, git
from act_services import BUCKET, mlflow_server, seaweedfs
from cookiecutter.main import cookiecutter

REPO_NAME = "acme/my-finetune"
MODEL = "my-finetune"  # the MLflow registered model
STORE = f"s3://{BUCKET}/runs"
REGISTRY = f"mlflow://{MODEL}"

pytestmark = [pytest.mark.act, pytest.mark.slow]


def workflow(repo: Path, name: str) -> dict:
    return yaml.safe_load((repo / ".github" / "workflows" / name).read_text())


@pytest.fixture(scope="module")
def act(tmp_path_factory, template):
    root = tmp_path_factory.mktemp("act")
    env_before = os.environ.get("FT_TEMPLATE_NO_GIT")
    baked = Path(cookiecutter(str(template), no_input=True, output_dir=str(root / "bake")))
    assert env_before != "1"
    repo = root / "repo"
    shutil.move(str(baked), repo)
    git(repo, "remote", "add", "origin", f"https://github.com/{REPO_NAME}.git")
    subprocess.run([str(BIN / "uv"), "sync", "--frozen", "--quiet"], cwd=repo, check=True)
    tools = repo / ".venv" / "bin"
    variables = {"FT_LAUNCH_BACKEND": "local", "FT_ARTIFACT_STORE": STORE, "FT_REGISTRY": REGISTRY}
    with (
        seaweedfs(root / "seaweedfs", tools) as s3_env,
        mlflow_server(root / "mlflow", tools) as (url, artifacts),
    ):
        yield Act(
            root, repo, s3_env=s3_env, mlflow_url=url, registry_dir=artifacts, variables=variables
        )


def pr_payload(number: int, head: str) -> dict:
    repo = {"full_name": REPO_NAME}
    return {
        "number": number,
        "repository": repo,
        "pull_request": {
            "number": number,
            "head": {"ref": head, "repo": repo},
            "base": {"ref": "main", "repo": repo},
        },
    }


def push_payload(ref: str) -> dict:
    return {"ref": ref, "repository": {"full_name": REPO_NAME}}


def test_train_triggers_cover_exactly_the_training_inputs(act):
    from importlib import import_module

    paths = workflow(act.repo, "train.yml")[True]["push"]["paths"]
    sys.path.insert(0, str(act.repo / "src"))
    try:
        plan = import_module("my_finetune.review.plan")
    finally:
        sys.path.remove(str(act.repo / "src"))
    inputs = [
        "configs/recipe.yaml",
        "configs/smoke.yaml",
        "data/raw/train.jsonl",
        "data.lock",
        "src/my_finetune/data/filters.py",
        "src/my_finetune/data/build.py",
        "image.lock",
    ]
    # Image inputs train only once the rebuilt image is pinned (image.yml -> image.lock PR).
    image_inputs = ["uv.lock", "Dockerfile"]
    image_paths = workflow(act.repo, "image.yml")[True]["push"]["paths"]
    assert plan.triggers_training(image_inputs, image_paths) == image_inputs
    not_inputs = [
        *image_inputs,
        "README.md",
        "docs/data.md",
        "tests/test_filters.py",
        ".github/CODEOWNERS",
        "src/my_finetune/cli.py",
        "pyproject.toml",
    ]
    assert plan.triggers_training(inputs, paths) == inputs
    assert plan.triggers_training(not_inputs, paths) == []
    assert workflow(act.repo, "train.yml")[True]["push"]["branches"] == ["main"]
    assert set(workflow(act.repo, "release.yml")[True]["push"]["tags"]) == {"v*"}
    assert "schedule" in workflow(act.repo, "drill.yml")[True]
    assert list(workflow(act.repo, "ci.yml")[True]) == ["pull_request"]


def test_every_action_is_pinned_by_sha_with_a_version_comment(act):
    for path in (act.repo / ".github" / "workflows").glob("*.yml"):
        for line in path.read_text().splitlines():
            if re.match(r"\s*(- )?uses:", line):  # the key, not e.g. `statuses: write`
                assert re.search(r"uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d", line), line
        data = yaml.safe_load(path.read_text())
        assert data["permissions"] == {}, f"{path.name}: top-level permissions must be {{}}"
        assert "pull_request_target" not in data[True]


def test_1_pull_request_that_edits_a_filter(act):
    repo = act.repo
    git(repo, "checkout", "-q", "-b", "tighter-filter")
    for config in ("configs/recipe.yaml", "configs/smoke.yaml"):
        path = repo / config
        path.write_text(path.read_text().replace("params: {limit: 256}", "params: {limit: 60}"))
    subprocess.run(
        [str(repo / ".venv" / "bin" / "ft"), "data", "build"],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "Drop rows over 60 characters")
    act.run("pull_request", "ci.yml", pr_payload(1, "tighter-filter"), credentials=False)
    comment = (act.outbox / "comment-ft-report.md").read_text()
    assert f"Baseline: none: `{REGISTRY}` is not reachable here (" in comment
    assert "## Training plan" in comment
    assert "Merging this starts **GPU training**" in comment and "`data.lock`" in comment
    assert "`data.filters.2.params.limit` | `256` | `60`" in comment
    assert re.search(
        r"\| train \| `max_chars` \| \d+ -> \d+ \| \d+ -> \d+ \*\*changed\*\*", comment
    )
    assert "PASS" in comment or "reproduced" in comment.lower()
    # One comment per PR, updated on re-runs: the sticky action keys it by a constant header.
    steps = workflow(act.repo, "ci.yml")["jobs"]["comment"]["steps"]
    sticky = next(s for s in steps if "sticky-pull-request-comment" in s["uses"])
    assert sticky["with"]["header"] == "ft-report"
    act.run(
        "pull_request", "ci.yml", pr_payload(1, "tighter-filter"), job="comment", credentials=False
    )
    assert (act.outbox / "log").read_text().count("comment ft-report") == 2
    assert len(list(act.outbox.glob("comment-*.md"))) == 1
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "tighter-filter")


def test_2_push_to_main_trains_and_stores_the_run_by_commit(act):
    sha = git(act.repo, "rev-parse", "HEAD")
    log = act.run(
        "push",
        "train.yml",
        push_payload("refs/heads/main"),
        expect_success=False,
        variables={"FT_ARTIFACT_STORE": "runs"},
    )
    assert "MISSING  FT_ARTIFACT_STORE" in log and "'runs' is this machine's disk" in log
    act.run("push", "train.yml", push_payload("refs/heads/main"))
    act.trained = sha
    log = (act.outbox / "log").read_text()
    assert f"statuses/{sha} -f state=pending -f context=ft/train" in log
    assert f"statuses/{sha} -f state=success -f context=ft/train" in log
    run = act.root / "fetched-2"
    act.ft("fetch", f"{STORE}/{sha}", str(run))  # re-verifies every output hash
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["git"]["commit"] == sha and manifest["git"]["dirty"] is False
    assert manifest["command"]["config"] == "configs/recipe.yaml"
    assert (run / "REPRODUCE.md").is_file() and (run / "adapter").is_dir()


# release.yml's publish job, as act prefixes its log lines.
PUBLISH_JOB = "Publish (release environment)"


def test_3_tag_reproduces_then_publishes(act):
    # The tag is on a later docs-only commit: the release resolves the trained ancestor.
    (act.repo / "README.md").write_text((act.repo / "README.md").read_text() + "\nRelease notes.\n")
    git(act.repo, "commit", "-qam", "Docs before the release")
    git(act.repo, "tag", "v0.1.0")
    log = act.run("push", "release.yml", push_payload("refs/tags/v0.1.0"))
    assert f"run of {act.trained[:12]} (same training inputs)" in log
    assert f"[release/{PUBLISH_JOB}]" in log
    assert "v0.1.0" in act.versions()
    # Every published file was attested in the release job; `ft registry verify` checks each.
    verify = ("registry", "verify", "v0.1.0", "--repo", REPO_NAME, "--registry", REGISTRY)
    assert (
        "each attested by acme/my-finetune/.github/workflows/release.yml" in act.ft(*verify).stdout
    )
    attested = act.outbox / "attested"
    kept = attested.read_text()
    attested.write_text("\n".join(kept.splitlines()[1:]) + "\n")  # one file never attested
    try:
        forged = act.ft(*verify, check=False)
    finally:
        attested.write_text(kept)
    assert (
        forged.returncode == 2 and "carries no attestation from acme/my-finetune" in forged.stderr
    )
    notes = (act.outbox / "release-v0.1.0.md").read_text()
    assert "REPRODUCE" in notes or "reproduce" in notes
    assert "gh release create v0.1.0" in (act.outbox / "log").read_text()


def test_4_broken_reproduce_md_blocks_the_release(act):
    doc = f"{STORE}/{act.trained}/REPRODUCE.md"
    original = act.bucket(f"print(fs.cat({doc!r}).decode(), end='')")
    edited = original.replace("ft train --config", "ft train  --config")
    act.bucket(f"fs.pipe({doc!r}, {edited.encode()!r})")
    before = act.versions()
    try:
        git(act.repo, "tag", "v0.1.1")
        log = act.run("push", "release.yml", push_payload("refs/tags/v0.1.1"), expect_success=False)
    finally:
        act.bucket(f"fs.pipe({doc!r}, {original.encode()!r})")
    assert "REPRODUCE.md was edited" in log
    assert f"[release/{PUBLISH_JOB}]" not in log  # the publish job never started
    assert act.versions() == before
    assert not (act.outbox / "release-v0.1.1.md").exists()


def test_5_drill_passes_then_fails_on_tampered_release_data(act):
    act.run("workflow_dispatch", "drill.yml", {"repository": {"full_name": REPO_NAME}})
    assert not (act.outbox / "issue.md").exists()
    locks = [
        p
        for p in act.registry.rglob("*")
        if p.is_file()
        and b'"splits"' in p.read_bytes()
        and b'"filters"' in p.read_bytes()
        and b'"schema"' in p.read_bytes()
    ]
    assert locks, "found no stored data.lock in the registry"
    for lock in locks:
        lock.chmod(0o644)
        lock.write_bytes(lock.read_bytes().replace(b'"rows": ', b'"rows": 1', 1))
    act.run(
        "workflow_dispatch",
        "drill.yml",
        {"repository": {"full_name": REPO_NAME}},
        expect_success=False,
    )
    issue = (act.outbox / "issue.md").read_text()
    assert "Re-training drill failed" in issue and "/actions/runs/" in issue
    assert "issue update_existing=true" in (act.outbox / "log").read_text()


def test_6_tag_before_its_training_finished_is_refused(act):
    """New training inputs whose run has started (run.json in the bucket) but not finished."""
    path = act.repo / "configs" / "recipe.yaml"
    path.write_text(path.read_text().replace("seed: ", "seed: 1", 1))
    git(act.repo, "commit", "-qam", "Another seed")
    sha = git(act.repo, "rev-parse", "HEAD")
    act.bucket(f"fs.pipe('{STORE}/{sha}/run.json', b'{{}}')")
    before = act.versions()
    git(act.repo, "tag", "v0.2.0")
    log = act.run("push", "release.yml", push_payload("refs/tags/v0.2.0"), expect_success=False)
    assert f"the run of {sha[:12]}" in log and "has not finished" in log
    assert f"wait for the ft/train status of {sha[:12]}" in log
    assert act.versions() == before
