"""`ft launch --backend sky` to a finished run, through a stand-in for SkyPilot's managed jobs.

    uv sync --frozen --group launch && uv run pytest tests/test_sky_standin.py -q -m slow

`ft launch` and `ft jobs ended` run as separate processes whose SkyPilot SDK calls are answered
by tests/sky_standin/ (its docstrings list what stands in for what); everything up to those
calls is SkyPilot's own code, and everything after them runs for real: the job clones the
commit from a private git remote over HTTPS (tests/git_https.py; SkyPilot passes GIT_TOKEN)
into a new directory with a new HOME, runs the rendered sky/train.yaml's `setup` and `run`
with its envs, secrets and SkyPilot's variables, and writes the run to a bucket on a real S3
server (SeaweedFS, tests/s3_server.py). A preemption kills the job's processes once a
checkpoint is committed; the job recovers on a new "VM" and must end in the same bytes as an
uninterrupted job. docs/launch.md lists the deviations (no image, no Docker, no FUSE mount).
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from git_https import https_remote
from launch_support import DIGEST, PKG_NAME, copy_project, git, record_image
from launch_support import subprocess_env as env_for
from s3_server import _bucket_fs

pytestmark = pytest.mark.slow

STANDIN = Path(__file__).with_name("sky_standin")
SMOKE = "configs/smoke.yaml"
BUCKET = "ft-sky-standin"  # a bucket of its own: a mount's snapshot copies all of it
GIT_TOKEN = "ghp_standin_test_token_0123456789"  # the remote is private: only this reads it
ENDED = {"SUCCEEDED", "FAILED", "FAILED_SETUP", "CANCELLED", "FAILED_CONTROLLER"}


@pytest.fixture(scope="module")
def sky():
    return pytest.importorskip(
        "sky", reason="the SkyPilot SDK is in the `launch` group: uv sync --frozen --group launch"
    )


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    with https_remote(tmp_path_factory.mktemp("remote"), token=GIT_TOKEN) as served:
        yield served


@pytest.fixture
def stop_jobs():
    """Whatever happens, no job outlives the test (its controller and its VM's processes)."""
    states: list[Path] = []
    yield states.append
    for state in states:
        for pid_file in (*state.glob("jobs/*/controller.pid"), *state.glob("jobs/*/vm.pid")):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def _uv() -> str:
    return str(Path(sys.executable).parent / "uv")


def _cloud(tmp: Path, project: Path, s3: dict, cafile: Path) -> Path:
    """The stand-in's state: the image (a venv from the Dockerfile's sync) and the cloud."""
    state = tmp / "sky"
    image, image_bin = state / "image" / "opt-venv", state / "image" / "bin"
    image_bin.mkdir(parents=True)
    (image_bin / "uv").symlink_to(_uv())  # the image has uv (Dockerfile)
    done = subprocess.run(
        [_uv(), "sync", "--frozen", "--no-dev", "--group", "qlora", "--no-install-project"],
        cwd=project,
        env=env_for(UV_PROJECT_ENVIRONMENT=str(image)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (state / "image.json").write_text(json.dumps({"venv": str(image), "bin": str(image_bin)}))
    cache = subprocess.run([_uv(), "cache", "dir"], capture_output=True, text=True, check=True)
    cloud = {k: v for k, v in s3.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    cloud |= {
        "GIT_SSL_CAINFO": str(cafile),  # the VM trusts the test remote's certificate
        "UV_CACHE_DIR": cache.stdout.strip(),  # packages, as the image would hold them
        "HF_HUB_OFFLINE": "1",  # the smoke config needs no Hub; this machine has no network
        "HF_DATASETS_OFFLINE": "1",
    }
    (state / "cloud.json").write_text(json.dumps(cloud))
    return state


def _ft(project: Path, env: dict, *argv: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"{PKG_NAME}.cli", *argv],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _record(state: Path, job_id: int) -> dict:
    return json.loads((state / "jobs" / str(job_id) / "job.json").read_text())


def _log(job_dir: Path) -> str:
    log = job_dir / "run.log"
    return log.read_text() if log.is_file() else ""


def _until(what, timeout: float, job_dir: Path):
    """Poll `what()` until it is truthy; past `timeout`, fail showing the job's logs."""
    deadline = time.monotonic() + timeout
    while not (found := what()):
        controller = (job_dir / "controller.log").read_text()
        assert time.monotonic() < deadline, f"{_log(job_dir)[-3000:]}\n{controller[-2000:]}"
        time.sleep(0.5)
    return found


def test_a_detached_job_is_preempted_recovers_and_matches_an_uninterrupted_one(
    sky, s3, remote, tmp_path, stop_jobs
):
    # The developer's checkout, pushed to the remote the job clones from.
    project = copy_project(tmp_path / "dev", remote=remote.url)
    record_image(project)
    git(project, "push", "-q", str(remote.bare), "HEAD:main")
    commit = git(project, "rev-parse", "HEAD")
    fs = _bucket_fs(s3)
    fs.mkdir(BUCKET)
    state = _cloud(tmp_path, project, s3, remote.cafile)
    stop_jobs(state)
    runner = env_for(
        PYTHONPATH=str(STANDIN),
        FT_SKY_STANDIN=str(state),
        HOME=str(tmp_path / "runner-home"),
        REQUESTS_CA_BUNDLE=str(remote.cafile),
        GIT_SSL_CAINFO=str(remote.cafile),
        AWS_ACCESS_KEY_ID=s3["AWS_ACCESS_KEY_ID"],  # secrets ft launch passes to the job
        AWS_SECRET_ACCESS_KEY=s3["AWS_SECRET_ACCESS_KEY"],
        GIT_TOKEN=GIT_TOKEN,  # SkyPilot passes it on: the job clones with it, every recovery too
        GIT_TERMINAL_PROMPT="0",
    )
    for name in ("AWS_ENDPOINT_URL", "FT_ARTIFACT_STORE"):
        runner.pop(name, None)  # the runner itself never touches the bucket
    (tmp_path / "runner-home").mkdir()

    # Submit and return: the runner step ends before the job does.
    run_uri = f"s3://{BUCKET}/runs/{commit}"
    done = _ft(
        project,
        runner,
        "launch",
        "--backend",
        "sky",
        "--detach",
        "--config",
        SMOKE,
        "--run-uri",
        run_uri,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    job = json.loads(done.stdout)
    assert job["run_uri"] == run_uri and job["name"].endswith(commit)
    assert _record(state, job["job_id"])["status"] not in ENDED
    job_dir = state / "jobs" / str(job["job_id"])
    submitted = yaml.safe_load((job_dir / "task.yaml").read_text())
    assert submitted["secrets"]["GIT_TOKEN"] == GIT_TOKEN  # a secret, never an env
    assert GIT_TOKEN not in json.dumps(submitted["envs"])
    image = json.dumps(submitted["resources"]["image_id"])  # {region or null: image}
    assert '"docker:ghcr.io/' in image and f'@{DIGEST}"' in image  # image.lock's pin

    # The cloud takes the VM back once a checkpoint is committed in the bucket.
    prefix = f"{BUCKET}/runs/{commit}/checkpoints"

    def committed() -> bool:
        assert _record(state, job["job_id"])["status"] not in ENDED, _log(job_dir)[-3000:]
        return bool(fs.exists(prefix) and fs.glob(f"{prefix}/*/COMPLETE"))

    _until(committed, 600, job_dir)
    sys.path.insert(0, str(STANDIN))
    try:
        from vm import preempt
    finally:
        sys.path.remove(str(STANDIN))
    preempt(job_dir)
    record = _until(
        lambda: (r := _record(state, job["job_id"]))["status"] in ENDED and r,
        900,
        job_dir,
    )
    log = _log(job_dir)
    assert record["status"] == "SUCCEEDED", log[-3000:]
    assert record["recovery_count"] == 1
    assert "task: ft train --config configs/smoke.yaml" in log  # the first VM started it
    assert "resuming from checkpoints/step-" in log  # the second VM resumed from the bucket
    for vm in ("vm-1", "vm-2"):  # each VM cloned the commit afresh into its own HOME
        assert git(job_dir / vm / "home" / "sky_workdir", "rev-parse", "HEAD") == commit

    # What the watcher sees (ft jobs ended, over queue_v2).
    ended = _ft(project, runner, "jobs", "ended", "--minutes", "60", timeout=300)
    assert ended.returncode == 0, ended.stderr[-3000:]
    assert ended.stdout.splitlines() == [
        f"{commit}\tsuccess\t{job['job_id']}\tSUCCEEDED\t{job['name']}"
    ]

    # The same task, uninterrupted, followed from a terminal and fetched (tail_logs, wait):
    # a person whose machine reaches the bucket.
    fetched = tmp_path / "fetched"
    terminal = runner | {"AWS_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"]}
    again = _ft(
        project,
        terminal,
        "launch",
        "--backend",
        "sky",
        "--config",
        SMOKE,
        "--run-uri",
        f"s3://{BUCKET}/again/{commit}",
        "--fetch",
        str(fetched),
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "task: ft train --config configs/smoke.yaml" in again.stdout  # the job's log, streamed
    assert "finished with exit code 0" in again.stderr

    # Same bytes: every output file of the recovered run equals the uninterrupted run's.
    manifest = json.loads(fs.cat_file(f"{BUCKET}/runs/{commit}/manifest.json"))
    reference = json.loads((fetched / "manifest.json").read_text())
    assert manifest["outputs"] == reference["outputs"]
    for name in manifest["outputs"]:
        remote_bytes = fs.cat_file(f"{BUCKET}/runs/{commit}/{name}")
        assert remote_bytes == (fetched / name).read_bytes(), name
    assert manifest["git"] == {"commit": commit, "dirty": False}
    assert manifest["environment"]["image_digest"].endswith(DIGEST)
    assert manifest["command"]["backend"] == "sky"
    assert GIT_TOKEN not in json.dumps(manifest)
    assert os.environ.get("FT_SKY_STANDIN") is None  # nothing leaked into this process

    # A job that fails (not a preemption) is retried max_restarts_on_errors times, then ends
    # FAILED: `ft launch` exits 100 and the watcher reports the commit's training as failed.
    failed = _ft(
        project,
        runner,
        "launch",
        "--backend",
        "sky",
        "--run-uri",
        f"s3://{BUCKET}/failed/{commit}",
        "--",
        "false",
    )
    assert failed.returncode == 100, failed.stderr[-3000:]
    record = _record(state, 3)
    assert (record["status"], record["recovery_count"]) == ("FAILED", 1)
    ended = _ft(project, runner, "jobs", "ended", "--minutes", "60", timeout=300)
    assert f"{commit}\tfailure\t3\tFAILED\t{job['name']}" in ended.stdout.splitlines()
