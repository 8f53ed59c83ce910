"""`ft jobs ended` (src/<pkg>/ops/jobs.py): the watcher's view of detached training jobs.

    uv run pytest tests/test_jobs.py -q

The SkyPilot API server is not reachable here, so the queue is stood in for at the one SDK
call (`queue_records`), with records shaped as sky.jobs.queue_v2 returns them in 0.14.1
(job_id, job_name, status, end_at). Everything after that call is the real code.
"""

import importlib
from enum import Enum

import pytest
import yaml
from conftest import ROOT

NOW = 1_800_000_000.0
SHA = [f"{i:x}" * 40 for i in range(1, 6)]


class ManagedJobStatus(Enum):  # the SDK hands back its enum; the code reads `.value`
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    FAILED_SETUP = "FAILED_SETUP"
    CANCELLED = "CANCELLED"
    RUNNING = "RUNNING"
    RECOVERING = "RECOVERING"


@pytest.fixture
def jobs(pkg, monkeypatch, tmp_path):
    module = importlib.import_module(f"{pkg.__name__}.ops.jobs")
    (tmp_path / "sky").mkdir()
    (tmp_path / "sky" / "train.yaml").write_text((ROOT / "sky" / "train.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    name = yaml.safe_load((ROOT / "sky" / "train.yaml").read_text())["name"]
    asked = []

    def records(prefix):
        asked.append(prefix)
        S = ManagedJobStatus
        return [
            {
                "job_id": 7,
                "job_name": f"{name}-{SHA[0]}",
                "status": S.SUCCEEDED,
                "end_at": NOW - 60,
            },
            {
                "job_id": 8,
                "job_name": f"{name}-{SHA[1]}",
                "status": S.FAILED_SETUP,
                "end_at": NOW - 5,
            },
            {"job_id": 9, "job_name": f"{name}-{SHA[2]}", "status": S.RECOVERING, "end_at": None},
            {
                "job_id": 5,
                "job_name": f"{name}-{SHA[3]}",
                "status": S.CANCELLED,
                "end_at": NOW - 600,
            },
            {"job_id": 3, "job_name": f"{name}-{SHA[4]}", "status": S.FAILED, "end_at": NOW - 7200},
            {"job_id": 4, "job_name": f"{name}-recipe-20261201", "status": S.FAILED, "end_at": NOW},
            {"job_id": 2, "job_name": f"other-{SHA[0]}", "status": "FAILED", "end_at": NOW},
        ]

    monkeypatch.setattr(module, "queue_records", records)
    return module, name, asked


def test_ended_jobs_map_to_commit_statuses(jobs):
    module, name, asked = jobs
    got = module.ended(60, now=NOW)
    assert asked == [f"{name}-"]
    assert [(e.job_id, e.commit, e.state, e.status) for e in got] == [
        (5, SHA[3], "error", "CANCELLED"),
        (7, SHA[0], "success", "SUCCEEDED"),
        (8, SHA[1], "failure", "FAILED_SETUP"),
    ]  # a recovering job is still running; a hand-started one and an old one are left out


def test_cli_prints_one_tab_separated_line_per_job(jobs, ft, monkeypatch):
    module, name, _ = jobs
    monkeypatch.setattr(module.time, "time", lambda: NOW)
    result = ft("jobs", "ended", "--minutes", "180")
    assert result.code == 0, result.err
    lines = [line.split("\t") for line in result.out.splitlines()]
    assert [line[:3] for line in lines] == [
        [SHA[4], "failure", "3"],
        [SHA[3], "error", "5"],
        [SHA[0], "success", "7"],
        [SHA[1], "failure", "8"],
    ]
    assert all(line[4].startswith(f"{name}-") for line in lines)


def test_a_tag_is_reported_once_all_its_reproduction_jobs_ended(jobs, monkeypatch):
    module, name, _ = jobs
    S = ManagedJobStatus

    def job(job_id, tag, index, status, end_at):
        name_ = f"{name}-verify-{tag}-{index:04d}"
        return {"job_id": job_id, "job_name": name_, "status": status, "end_at": end_at}

    records = [
        job(11, "v1.0.0", 0, S.SUCCEEDED, NOW - 900),
        job(12, "v1.0.0", 1, S.SUCCEEDED, NOW - 30),
        job(13, "v1.1.0-rc.1", 0, S.SUCCEEDED, NOW - 40),
        job(14, "v1.1.0-rc.1", 1, S.FAILED, NOW - 50),
        job(15, "v1.2.0", 0, S.SUCCEEDED, NOW - 20),
        job(16, "v1.2.0", 1, S.RECOVERING, None),  # still running: not yet
        job(17, "v0.9.0", 0, S.SUCCEEDED, NOW - 7200),  # ended before the window
        job(19, "drill-5", 2, S.SUCCEEDED, NOW - 300),
        {
            "job_id": 20,
            "job_name": f"{name}-verify-drill-5-retrain",  # a drill's re-training
            "status": S.SUCCEEDED,
            "end_at": NOW - 100,
        },
        {"job_id": 18, "job_name": f"{name}-{SHA[0]}", "status": S.SUCCEEDED, "end_at": NOW},
    ]
    asked = []

    def queue(prefix):
        asked.append(prefix)
        return records

    monkeypatch.setattr(module, "queue_records", queue)
    got = module.reproduced(60, now=NOW)
    assert asked == [f"{name}-verify-"]
    assert [(r.tag, r.state, r.job_ids) for r in got] == [
        ("drill-5", "success", (19, 20)),
        ("v1.0.0", "success", (11, 12)),
        ("v1.1.0-rc.1", "failure", (13, 14)),
    ]
    assert [e.job_id for e in module.ended(60, now=NOW)] == [18]  # training jobs only
