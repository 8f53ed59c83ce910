"""`ft jobs ended`: which managed training jobs ended lately, and how (the watcher's input).

    uv sync --frozen --group launch && uv run --frozen ft jobs ended --minutes 60

train.yml submits with `ft launch --backend sky --detach` and returns at once: no runner waits
on a GPU job. A job's name is `<name: of sky/train.yaml>-<run id>`, and a workflow's run id is
the commit it trains (`--run-uri $FT_ARTIFACT_STORE/<sha>`), so the name says which commit a
job belongs to. The scheduled train-watch workflow lists the jobs that ended within a window
longer than its schedule and sets each commit's `ft/train` status (and opens an issue on a
failure); setting a status twice is harmless, so overlapping windows lose nothing.

One tab-separated line per job: commit, GitHub status state (`success`, `failure`,
`error` for a cancelled job), job id, SkyPilot status, job name. Jobs whose name does not end
in a 40-hex commit (started by hand) are left out. The SDK is called in `queue_records` alone.

`ft jobs reproduced` is the same view of the jobs a release or a drill submits and collects
later (`ft release verify` names them `<task>-verify-TAG-NNNN`, one per checkpoint interval;
`ft drill submit` adds `<task>-verify-drill-N-retrain`): one line per label (a tag, or a
drill's `drill-N`) all of whose jobs have ended, the last within the window: label, `success`
when every job succeeded (else `failure`), and the job ids. The watcher then dispatches
release.yml on the tag (or drill.yml with the label), once.
"""

import re
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .launch import TASK_YAML

COMMIT = re.compile(r"[0-9a-f]{40}")
STATE = {"SUCCEEDED": "success", "CANCELLED": "error"}  # any other end is a failure
RUNNING = {
    "PENDING",
    "SUBMITTED",
    "STARTING",
    "RUNNING",
    "WINDING_DOWN",
    "RECOVERING",
    "CANCELLING",
}


@dataclass(frozen=True)
class Reproduced:
    tag: str
    state: str
    job_ids: tuple[int, ...]


@dataclass(frozen=True)
class Ended:
    commit: str
    state: str
    job_id: int
    status: str
    name: str


def task_name(root: Path = Path(".")) -> str:
    return str(yaml.safe_load((root / TASK_YAML).read_text()).get("name") or "train")


def queue_records(name_prefix: str) -> list[dict]:
    """The managed jobs whose name contains `name_prefix`, every user's (the SDK boundary)."""
    import sky

    records, *_ = sky.get(
        sky.jobs.queue_v2(
            refresh=False, skip_finished=False, all_users=True, name_match=name_prefix
        )
    )
    return list(records)


def _status(record: dict) -> str:
    status = record.get("status")
    return str(getattr(status, "value", status)).upper()


def ended(minutes: int, *, now: float | None = None, root: Path = Path(".")) -> list[Ended]:
    """Jobs of this repository's task that ended within the last `minutes`, oldest first."""
    prefix = task_name(root) + "-"
    since = (time.time() if now is None else now) - 60 * minutes
    out = []
    for record in queue_records(prefix):
        name, status = str(record.get("job_name") or ""), _status(record)
        commit = name[len(prefix) :] if name.startswith(prefix) else ""
        if not COMMIT.fullmatch(commit) or status in RUNNING:
            continue
        if float(record.get("end_at") or 0) < since:
            continue
        out.append(Ended(commit, STATE.get(status, "failure"), int(record["job_id"]), status, name))
    return sorted(out, key=lambda e: e.job_id)


def reproduced(
    minutes: int, *, now: float | None = None, root: Path = Path(".")
) -> list[Reproduced]:
    """Labels (tags, drills) whose jobs have all ended, the last within the last `minutes`."""
    prefix = f"{task_name(root)}-verify-"
    name = re.compile(re.escape(prefix) + r"(?P<tag>[A-Za-z0-9][A-Za-z0-9._-]*)-(\d{4}|retrain)")
    since = (time.time() if now is None else now) - 60 * minutes
    by_tag: dict[str, list[dict]] = {}
    for record in queue_records(prefix):
        found = name.fullmatch(str(record.get("job_name") or ""))
        if found:
            by_tag.setdefault(found["tag"], []).append(record)
    out = []
    for tag, records in sorted(by_tag.items()):
        statuses = [_status(r) for r in records]
        if any(s in RUNNING for s in statuses):
            continue  # not all ended: nothing to collect yet
        if max(float(r.get("end_at") or 0) for r in records) < since:
            continue  # reported by an earlier window
        state = "success" if all(s == "SUCCEEDED" for s in statuses) else "failure"
        out.append(Reproduced(tag, state, tuple(sorted(int(r["job_id"]) for r in records))))
    return out
