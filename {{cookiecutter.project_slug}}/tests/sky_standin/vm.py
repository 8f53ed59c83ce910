"""The "jobs controller" of the SkyPilot stand-in: runs one managed job for real.

    python tests/sky_standin/vm.py JOB_DIR      # started by skyjobs.launch, never by hand

SkyPilot's controller provisions a VM from the task's image, clones the workdir, runs `setup`
then `run` with the task's envs and secrets plus its own variables, and after a preemption
does it all again on a new VM. Here a "VM" is a new directory under JOB_DIR: its own HOME and
TMPDIR, the workdir cloned by SkyPilot's own `git_clone.sh` from the git URL at the commit
(as `Task.update_envs_and_secrets_from_workdir` resolved them), and `setup`/`run` as bash in
a process group of their own. The task is re-read with `sky.Task.from_yaml_config`, as the API
server does with what the client sends.

Forced deviations (no cloud, no Docker): the image is a venv made once by the Dockerfile's
`uv sync` (`image.json`: its path stands for the task's UV_PROJECT_ENVIRONMENT, /opt/venv); a
bucket mount is a folder filled from the bucket when the VM starts (a read-only snapshot, not
a live FUSE mount: enough for a single node, which only reads it); the VM's cloud identity
(the S3 endpoint, trust for the test's certificate, uv's package cache, no Hub access) comes
from `cloud.json`. A preemption is `preempt()`: a marker, then SIGKILL to the VM's process
group; the controller then recovers on a new VM, as SkyPilot does (RECOVERING, one more
`recovery_count`). A failure that is not a preemption is retried `max_restarts_on_errors`
times, then the job is FAILED (FAILED_SETUP when `setup` failed).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

import sky


def state_dir() -> Path:
    return Path(os.environ["FT_SKY_STANDIN"])


class Job:
    """One managed job's directory: task.yaml, job.json (its record), run.log, vm-N/."""

    def __init__(self, path: Path):
        self.path = path
        self.task_yaml = path / "task.yaml"
        self.log = path / "run.log"
        self.pid = path / "vm.pid"  # the process group of the VM's running step
        self.preempted = path / "preempted"

    def read(self) -> dict:
        return json.loads((self.path / "job.json").read_text())

    def write(self, **fields) -> None:
        record = self.read() if (self.path / "job.json").exists() else {}
        tmp = self.path / "job.json.tmp"
        tmp.write_text(json.dumps(record | fields))
        os.replace(tmp, self.path / "job.json")


def preempt(job_dir: Path) -> None:
    """The cloud takes the VM back: every process of its running step dies at once."""
    job = Job(job_dir)
    job.preempted.touch()
    os.killpg(int(job.pid.read_text()), signal.SIGKILL)


def _secret(value) -> str:
    return str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)


def _step(job: Job, script: str, cwd: Path, env: dict) -> int:
    with open(job.log, "ab") as log:
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        job.pid.write_text(str(proc.pid))
        return proc.wait()


def _fill_mount(folder: Path, source: str, env: dict) -> None:
    """The bucket as a mount shows it when the VM starts (a snapshot; see the docstring)."""
    import s3fs

    fs = s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
        skip_instance_cache=True,
        use_listings_cache=False,
    )
    root = source.removeprefix("s3://").rstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    for key in fs.find(root):
        dest = folder / key[len(root) + 1 :]
        dest.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(key, str(dest))


def _vm(job: Job, task, attempt: int, cloud: dict, image: dict) -> tuple[str, int]:
    """One VM from nothing: clone, setup, run. Returns (the step that ended it, its status)."""
    vm = job.path / f"vm-{attempt}"
    home, tmp = vm / "home", vm / "tmp"
    home.mkdir(parents=True)
    tmp.mkdir()
    envs = {k: str(v) for k, v in task.envs.items()}
    envs["UV_PROJECT_ENVIRONMENT"] = image["venv"]  # the image's venv
    mounts = {}
    for path, storage in (task.storage_mounts or {}).items():
        mounts[path] = (vm / "mnt" / path.lstrip("/"), storage.source)
        if envs.get("ARTIFACTS") == path:
            envs["ARTIFACTS"] = str(mounts[path][0])
    resources = next(iter(task.resources))
    gpus = sum((resources.accelerators or {}).values())
    env = {
        "PATH": f"{image['bin']}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        **cloud,
        **envs,
        **{k: _secret(v) for k, v in task.secrets.items()},
        "SKYPILOT_NUM_NODES": str(task.num_nodes),
        "SKYPILOT_NODE_RANK": "0",
        "SKYPILOT_NODE_IPS": "127.0.0.1",
        "SKYPILOT_NUM_GPUS_PER_NODE": str(int(gpus)),
        "SKYPILOT_TASK_ID": f"standin-{job.path.name}-{attempt}",
    }
    for folder, source in mounts.values():
        _fill_mount(folder, source, env)
    workdir = home / "sky_workdir"
    clone = Path(sky.__file__).parent / "utils" / "git_clone.sh"
    code = _step(job, f"bash {clone} {workdir}", home, env)
    if code != 0:
        return "clone", code
    job.write(status="STARTING")
    if task.setup and (code := _step(job, task.setup, workdir, env)) != 0:
        return "setup", code
    job.write(status="RUNNING", start_at=job.read().get("start_at") or time.time())
    return "run", _step(job, task.run, workdir, env)


def main(job_dir: Path) -> None:
    job = Job(job_dir)
    task = sky.Task.from_yaml_config(yaml.safe_load(job.task_yaml.read_text()))
    cloud = json.loads((job_dir.parents[1] / "cloud.json").read_text())
    image = json.loads((job_dir.parents[1] / "image.json").read_text())
    recovery = next(iter(task.resources)).job_recovery or {}
    retries = int(recovery.get("max_restarts_on_errors", 0))
    attempt = 0
    while True:
        attempt += 1
        step, code = _vm(job, task, attempt, cloud, image)
        if job.preempted.exists():
            job.preempted.unlink()
            job.write(status="RECOVERING", recovery_count=job.read()["recovery_count"] + 1)
            continue
        if code == 0:
            job.write(status="SUCCEEDED", end_at=time.time())
            return
        if retries > 0:
            retries -= 1
            job.write(status="RECOVERING", recovery_count=job.read()["recovery_count"] + 1)
            continue
        status = "FAILED_SETUP" if step in ("clone", "setup") else "FAILED"
        job.write(status=status, end_at=time.time(), failure_reason=f"{step} exited {code}")
        return


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]))
    except BaseException as e:  # a controller bug must not leave the job "running" forever
        Job(Path(sys.argv[1])).write(status="FAILED_CONTROLLER", end_at=time.time())
        print(f"controller: {type(e).__name__}: {e}", file=sys.stderr)
        raise
