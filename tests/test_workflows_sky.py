"""train.yml with FT_LAUNCH_BACKEND=sky, then train-watch.yml and release.yml, under act
(test_workflows.py).

The merge submits the training job detached and its runner step ends before the job does;
a later train-watch run (workflow_dispatch, as the schedule would) sees the job end and sets
the merge commit's ft/train status. A tag on a later docs-only commit: release.yml submits one
reproduction job per checkpoint interval, from the trained commit, and ends before they do;
the next train-watch run sees them all end and dispatches release.yml on the tag (recorded
by the `gh` stand-in; the test then runs it, as GitHub would), which collects the jobs'
results from the bucket and publishes in the release environment; `ft registry verify`
passes. Later watch runs do not dispatch that tag again. A training job that fails gets a
failure status and one issue, not a second on the next watch run.

SkyPilot's API server and cloud are the generated repo's stand-in (tests/sky_standin/, copied
out of the baked repo so no run writes there): every run reaches it through PYTHONPATH and
FT_SKY_STANDIN, its job store, which is what the real topology shares (the API server). Its
"jobs controller" runs on a venv of its own (server.json), as the API server has its own
SkyPilot: the runner's venv goes with the job's workspace when act ends the job. The job
clones the commit from the git remote served over HTTPS (what the checkout fetches too), trains
on an "image" venv synced from uv.lock and writes the run to the bucket (SeaweedFS).
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from act_runner import BIN, Act, git
from test_workflows import (  # noqa: F401 (the act fixture)
    PUBLISH_JOB,
    REGISTRY,
    REPO_NAME,
    STORE,
    act,
    push_payload,
)

pytestmark = [pytest.mark.act, pytest.mark.slow]

DIGEST = "sha256:" + "d1" * 32
BASE_DIGEST = "sha256:" + "b5" * 32
ENDED = {"SUCCEEDED", "FAILED", "FAILED_SETUP", "CANCELLED", "FAILED_CONTROLLER"}


def _sync(project: Path, venv: Path, *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "uv"), "sync", "--frozen", "--no-dev", "--no-install-project", *args],
        cwd=project,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        | {"UV_PROJECT_ENVIRONMENT": str(venv)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _stand_in(flows: Act, cafile: Path) -> tuple[Path, Path]:
    """The SkyPilot stand-in's code (outside the baked repo) and its state: the API server's
    venv, the image's venv, the cloud's identity."""
    code = flows.root / "sky-sdk"
    shutil.copytree(flows.repo / "tests" / "sky_standin", code)
    state = flows.root / "sky"
    image, image_bin = state / "image" / "opt-venv", state / "image" / "bin"
    image_bin.mkdir(parents=True)
    (image_bin / "uv").symlink_to(BIN / "uv")
    _sync(flows.repo, image, "--group", "qlora")
    server = state / "server-venv"
    _sync(flows.repo, server, "--group", "launch")
    (state / "image.json").write_text(json.dumps({"venv": str(image), "bin": str(image_bin)}))
    (state / "server.json").write_text(json.dumps({"python": str(server / "bin" / "python")}))
    cloud = {k: v for k, v in flows.s3_env.items() if not k.startswith("AWS_SECRET")}
    cloud.pop("AWS_ACCESS_KEY_ID", None)
    cloud |= {
        "GIT_SSL_CAINFO": str(cafile),
        "UV_CACHE_DIR": flows.uv_cache,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    (state / "cloud.json").write_text(json.dumps(cloud))
    return code, state


def _job(state: Path, job_id: int) -> dict:
    return json.loads((state / "jobs" / str(job_id) / "job.json").read_text())


def _jobs(state: Path, name_part: str) -> list[dict]:
    """Every job the stand-in holds whose name contains `name_part`, by id."""
    found = [json.loads(p.read_text()) for p in (state / "jobs").glob("*/job.json")]
    return sorted((r for r in found if name_part in r["job_name"]), key=lambda r: r["job_id"])


def _wait(state: Path, job_id: int, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while (record := _job(state, job_id))["status"] not in ENDED:
        log = state / "jobs" / str(job_id) / "run.log"
        assert time.monotonic() < deadline, log.read_text()[-3000:] if log.is_file() else ""
        time.sleep(1)
    return record


def _stop(state: Path) -> None:
    for pid in (*state.glob("jobs/*/controller.pid"), *state.glob("jobs/*/vm.pid")):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid.read_text()), signal.SIGKILL)


def test_sky_merge_is_watched_to_its_commit_status(act):  # noqa: F811 (the fixture)
    sys.path.insert(0, str(act.repo / "tests"))
    try:
        from git_https import https_remote
    finally:
        sys.path.remove(str(act.repo / "tests"))
    with https_remote(act.root / "https", name=REPO_NAME) as served:
        # GitHub's side serves the one remote every run and every job clones from.
        shutil.rmtree(served.bare)
        served.bare.symlink_to(act.remote)
        act.remote_url = served.url
        code, state = _stand_in(act, served.cafile)
        try:
            _run(act, code, state, served.cafile)
        finally:
            _stop(state)


def _run(flows: Act, code: Path, state: Path, cafile: Path) -> None:
    shares = {
        "PYTHONPATH": str(code),  # the SDK calls go to the stand-in
        "FT_SKY_STANDIN": str(state),  # the API server's job store
        "GIT_SSL_CAINFO": str(cafile),  # the git host's certificate (GitHub's is public)
        "REQUESTS_CA_BUNDLE": str(cafile),  # SkyPilot's probe of the workdir URL
    }
    sky = {
        "variables": {
            "FT_LAUNCH_BACKEND": "sky",
            "SKYPILOT_API_SERVER_ENDPOINT": "http://127.0.0.1:9",  # never reached: stand-in
        },
        "env": shares,
        "secrets": {"SKYPILOT_SERVICE_ACCOUNT_TOKEN": "sky-standin-token"},
    }
    flows.ft("image", "record", "--digest", DIGEST, "--base-digest", BASE_DIGEST)
    git(flows.repo, "add", "image.lock")
    git(flows.repo, "commit", "-qm", "Record the training image")
    sha = git(flows.repo, "rev-parse", "HEAD")

    # The merge: submitted detached; act returns while the job still runs.
    flows.run("push", "train.yml", push_payload("refs/heads/main"), **sky)
    record = _job(state, 1)
    assert record["status"] not in ENDED, record
    assert record["job_name"].endswith(sha)
    log = (flows.outbox / "log").read_text()
    assert f"statuses/{sha} -f state=pending -f context=ft/train" in log
    assert f"statuses/{sha} -f state=success" not in log
    assert _wait(state, 1)["status"] == "SUCCEEDED"
    watch = {"repository": {"full_name": REPO_NAME}}
    flows.run("workflow_dispatch", "train-watch.yml", watch, **sky)
    log = (flows.outbox / "log").read_text()
    assert f"statuses/{sha} -f state=success -f context=ft/train" in log
    assert not (flows.outbox / "issue.md").exists()
    flows.bucket(f"assert fs.exists('{STORE}/{sha}/manifest.json')")

    # The release: a tag on a later docs-only commit. Its run submits one reproduction job per
    # checkpoint interval, from the trained commit, and ends before they do.
    (flows.repo / "README.md").write_text((flows.repo / "README.md").read_text() + "\nNotes.\n")
    git(flows.repo, "commit", "-qam", "Docs before the release")
    git(flows.repo, "tag", "v0.1.0")
    tagged = git(flows.repo, "rev-parse", "HEAD")
    log = flows.run("push", "release.yml", push_payload("refs/tags/v0.1.0"), **sky)
    assert f"run of {sha[:12]} (same training inputs)" in log
    assert f"[release/{PUBLISH_JOB}]" not in log  # nothing verified yet: no publish job
    replays = _jobs(state, "-verify-v0.1.0-")
    assert [r["job_name"][-4:] for r in replays] == [f"{i:04d}" for i in range(6)]  # 300 / 50
    assert any(r["status"] not in ENDED for r in replays), replays
    for r in replays:  # each clones the commit that trained, not the tag's
        task = (state / "jobs" / str(r["job_id"]) / "task.yaml").read_text()
        assert yaml.safe_load(task)["envs"]["COMMIT"] == sha and tagged not in task
    log = (flows.outbox / "log").read_text()
    assert f"statuses/{tagged} -f state=pending -f context=ft/release" in log
    assert all(_wait(state, r["job_id"])["status"] == "SUCCEEDED" for r in replays)
    flows.run("workflow_dispatch", "train-watch.yml", watch, **sky)
    assert (flows.outbox / "dispatched").read_text() == "release.yml v0.1.0\n"
    # GitHub starts the dispatched run on the tag: it collects, and publishes once reviewed.
    tag_event = push_payload("refs/tags/v0.1.0")
    log = flows.run("workflow_dispatch", "release.yml", tag_event, **sky)
    assert "PASS  release: 6 of 6 intervals replayed and matched" in log
    assert f"[release/{PUBLISH_JOB}]" in log and "v0.1.0" in flows.versions()
    verify = ("registry", "verify", "v0.1.0", "--repo", REPO_NAME, "--registry", REGISTRY)
    assert "each attested by" in flows.ft(*verify).stdout
    log = (flows.outbox / "log").read_text()
    assert f"statuses/{tagged} -f state=success -f context=ft/release" in log
    flows.bucket(f"assert fs.exists('{STORE}/{sha}/verify/v0.1.0/interval-0005/manifest.json')")

    # A merge whose training fails on the GPU (the base model's pin no longer matches).
    path = flows.repo / "configs" / "recipe.yaml"
    text = path.read_text()
    pin = text.split("sha256: ", 1)[1][:64]
    path.write_text(text.replace(pin, "f" * 64, 1))
    git(flows.repo, "commit", "-qam", "A base model pin that does not match")
    bad = git(flows.repo, "rev-parse", "HEAD")
    flows.run("push", "train.yml", push_payload("refs/heads/main"), **sky)
    (failing,) = _jobs(state, bad)
    assert _wait(state, failing["job_id"])["status"] == "FAILED"
    for _ in range(2):  # the second watch run sees the same ended job: no second issue
        flows.run("workflow_dispatch", "train-watch.yml", watch, **sky)
    log = (flows.outbox / "log").read_text()
    assert log.count(f"statuses/{bad} -f state=failure -f context=ft/train") == 2
    issues = [line for line in log.splitlines() if "issue create" in line]
    assert len(issues) == 1 and bad[:12] in issues[0], issues
    assert (flows.outbox / "issues").read_text().count("\n") == 1
    # Those watch runs saw v0.1.0's jobs in their window too: its dispatch is not repeated.
    assert (flows.outbox / "dispatched").read_text() == "release.yml v0.1.0\n"

    # The drill of v0.1.0, a sky-trained release: main's recipe is the broken one by now, so
    # the re-training job must restore the release's inputs from its commit.
    flows.run("workflow_dispatch", "drill.yml", watch, **sky)
    drills = _jobs(state, "-verify-drill-")
    label = drills[0]["job_name"].split("-verify-", 1)[1].rsplit("-", 1)[0]
    interval, retrain = sorted(r["job_name"].rsplit("-", 1)[1] for r in drills)
    assert interval.isdigit() and retrain == "retrain"  # one spot-check interval, one re-training
    assert all(_wait(state, r["job_id"])["status"] == "SUCCEEDED" for r in drills)
    for _ in range(2):  # overlapping windows: the drill is dispatched once
        flows.run("workflow_dispatch", "train-watch.yml", watch, **sky)
    dispatched = (flows.outbox / "dispatched").read_text().splitlines()
    assert dispatched == ["release.yml v0.1.0", f"drill.yml main label={label}"]
    log = flows.run("workflow_dispatch", "drill.yml", watch | {"inputs": {"label": label}}, **sky)
    assert "PASS  drill: 1 of 6 intervals replayed and matched" in log
    assert "ok  the release's config re-trains and passes" in log
    assert not (flows.outbox / "issue.md").exists()
