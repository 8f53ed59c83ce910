"""The client side of the SkyPilot stand-in: the SDK calls `ft` makes, answered from a state
directory ($FT_SKY_STANDIN) instead of a SkyPilot API server (tests/test_sky_standin.py).

Replaced: `sky.jobs.launch`, `sky.jobs.queue_v2`, `sky.jobs.tail_logs`, `sky.jobs.wait`,
`sky.get` and `sky.stream_and_get` (every SkyPilot call in src/: ops/launch.py, ops/jobs.py).
Everything before them is SkyPilot's own code: the task is parsed by `sky.Task`, and the git
workdir is resolved by `Task.update_envs_and_secrets_from_workdir` (an HTTPS probe and
`git ls-remote` against the test's remote). `jobs.launch` stores the task as the API server
receives it (its YAML config, secrets included) and starts vm.py, the "jobs controller", as a
process of its own that outlives `ft launch --detach`; the other calls read what it records.
"""

import subprocess
import sys
import time
import uuid
from pathlib import Path

import sky.jobs
import yaml
from sky.exceptions import JobExitCode
from sky.schemas.api.responses import ManagedJobRecord
from vm import Job, state_dir

import sky

_RESULTS: dict[str, object] = {}  # request id -> what sky.get returns for it


def _request(value: object) -> str:
    request_id = uuid.uuid4().hex
    _RESULTS[request_id] = value
    return request_id


def get(request_id: str):
    return _RESULTS.pop(request_id)


def stream_and_get(request_id: str | None = None, **_ignored):
    if request_id is None:  # SkyPilot then follows the latest request: ft never asks for that
        raise NotImplementedError("the stand-in answers a given request id only")
    return get(request_id)


def launch(task, name: str | None = None, **_ignored) -> str:
    jobs = state_dir() / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    job_id = 1
    while True:  # the next free id; mkdir is atomic, so two launches never share one
        try:
            (jobs / str(job_id)).mkdir()
            break
        except FileExistsError:
            job_id += 1
    job = Job(jobs / str(job_id))
    job.task_yaml.touch(mode=0o600)  # it holds the secrets' values, as the API server's copy does
    job.task_yaml.write_text(yaml.safe_dump(task.to_yaml_config(), sort_keys=False))
    job.write(
        job_id=job_id,
        job_name=name or task.name,
        status="PENDING",
        submitted_at=time.time(),
        recovery_count=0,
    )
    with open(job.path / "controller.log", "wb") as log:
        controller = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("vm.py")), str(job.path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives `ft launch --detach`, as a controller does
        )
    (job.path / "controller.pid").write_text(str(controller.pid))
    return _request(([job_id], None))


def _records() -> list[ManagedJobRecord]:
    jobs = state_dir() / "jobs"
    found = sorted((int(p.name) for p in jobs.iterdir()), reverse=True) if jobs.is_dir() else []
    return [ManagedJobRecord(**Job(jobs / str(i)).read()) for i in found]


def queue_v2(refresh: bool, skip_finished: bool = False, name_match=None, **_ignored) -> str:
    records = [
        r
        for r in _records()
        if (name_match is None or name_match in (r.job_name or ""))
        and not (skip_finished and r.status is not None and r.status.is_terminal())
    ]
    counts: dict[str, int] = {}
    for r in records:
        counts[str(r.status.value)] = counts.get(str(r.status.value), 0) + 1
    return _request((records, len(records), counts, len(records)))


def _exit_code(job: Job) -> int:
    return int(JobExitCode.from_managed_job_status(sky.jobs.ManagedJobStatus(job.read()["status"])))


def _ended(job: Job) -> bool:
    return sky.jobs.ManagedJobStatus(job.read()["status"]).is_terminal()


def tail_logs(name=None, job_id: int | None = None, follow: bool = True, **_ignored) -> int:
    """Print the job's log (following it until the job ends); return SkyPilot's exit code."""
    job = Job(state_dir() / "jobs" / str(job_id))
    offset = 0
    while True:
        ended = _ended(job)  # read before the log, so no line written before the end is missed
        if job.log.is_file():
            with open(job.log, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        if ended or not follow:
            return _exit_code(job)
        time.sleep(0.5)


def wait(job_id: int | None = None, **_ignored) -> str:
    job = Job(state_dir() / "jobs" / str(job_id))
    while not _ended(job):
        time.sleep(0.5)
    return _request(_exit_code(job))


def install() -> None:
    sky.get, sky.stream_and_get = get, stream_and_get
    for fn in (launch, queue_v2, tail_logs, wait):
        setattr(sky.jobs, fn.__name__, fn)
