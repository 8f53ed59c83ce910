"""The generated repo's workflows, executed end to end on this host with `act`.

Each third-party action is replaced by a stand-in from tests/act/ (the git host is
unreachable here); every `run:` step is the real one: `uv sync`, `ft train`,
`ft reproduce`, `ft publish`... with the launch backend `local`, a directory registry
and a directory artifact store. Cases (issue: GitOps workflows):

1. a PR that edits a filter: ci.yml passes; its report shows the data diff; one comment
2. a push to main: train.yml trains and stores the run keyed by the commit
3. a tag v0.1.0: release.yml reproduces and publishes; the registry holds v0.1.0
4. the tag flow with REPRODUCE.md broken: reproduce fails, publish never runs
5. the drill on a published release passes; with the release's data tampered it fails

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
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
ACT_DIR = Path(__file__).resolve().parent / "act"
BIN = Path(sys.executable).parent
STAND_INS = {
    "actions/checkout": "checkout",
    "astral-sh/setup-uv": "setup-uv",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "marocchino/sticky-pull-request-comment": "sticky-comment",
    "JasonEtco/create-an-issue": "create-issue",
    "aws-actions/configure-aws-credentials": "noop",
    "peter-evans/create-pull-request": "noop",
    "docker/setup-buildx-action": "noop",
    "docker/login-action": "noop",
    "docker/build-push-action": "noop",
}
REPO_NAME = "acme/my-finetune"

pytestmark = [pytest.mark.act, pytest.mark.slow]


def git(cwd: Path, *args: str) -> str:
    ident = ["-c", "user.name=test", "-c", "user.email=test@localhost"]
    done = subprocess.run(
        ["git", *ident, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def workflow(repo: Path, name: str) -> dict:
    return yaml.safe_load((repo / ".github" / "workflows" / name).read_text())


def pinned_uses(repo: Path) -> set[str]:
    uses = set()
    for path in (repo / ".github" / "workflows").glob("*.yml"):
        uses |= set(re.findall(r"uses: ([\w.-]+/[\w.-]+@[0-9a-f]{40})", path.read_text()))
    return uses


class Act:
    """One baked repo and the folders its workflow runs share (store, registry, outbox)."""

    def __init__(self, root: Path):
        self.root = root
        self.repo = root / "repo"
        self.store, self.registry = root / "store", root / "registry"
        self.outbox, self.artifacts = root / "outbox", root / "artifacts"
        for folder in (self.store, self.registry, self.outbox, self.artifacts):
            folder.mkdir(parents=True)
        self.log_index = 0

    def run(
        self,
        event: str,
        workflow_file: str,
        payload: dict,
        expect_success: bool = True,
        job: str | None = None,
    ) -> str:
        (self.root / "event.json").write_text(json.dumps(payload))
        mappings = []
        for use in sorted(pinned_uses(self.repo)):
            action = use.split("@")[0]
            assert action in STAND_INS, f"no act stand-in for {use}"
            mappings += ["--local-repository", f"{use}={ACT_DIR / STAND_INS[action]}"]
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        cmd = [
            str(BIN / "act"),
            event,
            "-W",
            f".github/workflows/{workflow_file}",
            *(["-j", job] if job else []),
            "-e",
            str(self.root / "event.json"),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--bind",
            "--no-skip-checkout",
            "--no-cache-server",
            "--actor",
            "test",
            *mappings,
            "--env",
            f"FT_ACT_SOURCE={self.repo}",
            "--env",
            f"FT_ACT_UV_DIR={BIN}",
            "--env",
            f"FT_ACT_BIN={ACT_DIR / 'bin'}",
            "--env",
            f"FT_ACT_OUTBOX={self.outbox}",
            "--env",
            f"FT_ACT_ARTIFACTS={self.artifacts}",
            "--var",
            "FT_LAUNCH_BACKEND=local",
            "--var",
            f"FT_ARTIFACT_STORE={self.store}",
            "--var",
            f"FT_REGISTRY=file://{self.registry}",
        ]
        done = subprocess.run(
            cmd, cwd=self.repo, env=env, capture_output=True, text=True, timeout=1500, check=False
        )
        self.log_index += 1
        log = self.root / f"act-{self.log_index}-{workflow_file}.log"
        log.write_text(done.stdout + done.stderr)
        if expect_success:
            assert done.returncode == 0, (
                f"act failed, log: {log}\n{(done.stdout + done.stderr)[-4000:]}"
            )
        else:
            assert done.returncode != 0, f"act should have failed, log: {log}"
        return done.stdout + done.stderr


@pytest.fixture(scope="module")
def act(tmp_path_factory, template) -> Act:
    root = tmp_path_factory.mktemp("act")
    env_before = os.environ.get("FT_TEMPLATE_NO_GIT")
    baked = Path(cookiecutter(str(template), no_input=True, output_dir=str(root / "bake")))
    assert env_before != "1"
    shutil.move(str(baked), root / "repo")
    acting = Act(root)
    git(acting.repo, "remote", "add", "origin", f"https://github.com/{REPO_NAME}.git")
    subprocess.run([str(BIN / "uv"), "sync", "--frozen", "--quiet"], cwd=acting.repo, check=True)
    return acting


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
        "uv.lock",
        "Dockerfile",
        "image.lock",
    ]
    not_inputs = [
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
            if "uses:" in line:
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
    act.run("pull_request", "ci.yml", pr_payload(1, "tighter-filter"))
    comment = (act.outbox / "comment-ft-report.md").read_text()
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
    act.run("pull_request", "ci.yml", pr_payload(1, "tighter-filter"), job="comment")
    assert (act.outbox / "log").read_text().count("comment ft-report") == 2
    assert len(list(act.outbox.glob("comment-*.md"))) == 1
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "tighter-filter")


def test_2_push_to_main_trains_and_stores_the_run_by_commit(act):
    sha = git(act.repo, "rev-parse", "HEAD")
    act.run("push", "train.yml", push_payload("refs/heads/main"))
    run = act.store / sha
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["git"]["commit"] == sha and manifest["git"]["dirty"] is False
    assert manifest["command"]["config"] == "configs/recipe.yaml"
    assert (run / "REPRODUCE.md").is_file() and (run / "adapter").is_dir()


def test_3_tag_reproduces_then_publishes(act):
    git(act.repo, "tag", "v0.1.0")
    act.run("push", "release.yml", push_payload("refs/tags/v0.1.0"))
    versions = [p.name for p in act.registry.rglob("*") if p.name.startswith("v0.1.0")]
    assert versions, f"registry holds no v0.1.0: {sorted(p.name for p in act.registry.rglob('*'))}"
    notes = (act.outbox / "release-v0.1.0.md").read_text()
    assert "REPRODUCE" in notes or "reproduce" in notes
    assert "gh release create v0.1.0" in (act.outbox / "log").read_text()


def test_4_broken_reproduce_md_blocks_the_release(act):
    sha = git(act.repo, "rev-parse", "HEAD")
    doc = act.store / sha / "REPRODUCE.md"
    original = doc.read_text()
    doc.write_text(original.replace("ft train --config", "ft train  --config"))
    before = sorted(p.relative_to(act.registry) for p in act.registry.rglob("*"))
    try:
        git(act.repo, "tag", "v0.1.1")
        log = act.run("push", "release.yml", push_payload("refs/tags/v0.1.1"), expect_success=False)
    finally:
        doc.write_text(original)
    assert "REPRODUCE.md was edited" in log
    assert "ft publish" not in log.split("Job succeeded")[-1] or "publish" not in log
    assert sorted(p.relative_to(act.registry) for p in act.registry.rglob("*")) == before
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
