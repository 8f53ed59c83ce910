"""`ft drill submit|collect`: the monthly drill of a SkyPilot-trained release, with no runner
waiting on a GPU job.

    uv run ft drill submit runs/drill --label drill-123                       # scheduled drill.yml
    uv run ft drill collect runs/drill --label drill-123 --gates-out gates.md # dispatched

A release trained by SkyPilot cannot be drilled on a hosted runner: its REPRODUCE.md follows a
GPU job as long as the training, and its config trains on GPUs. So the drill does what the
release does (closure/release_verify.py, ADR 0046): it submits managed jobs and ends.

- The spot check: `--segments K` checkpoint intervals of the release's run (the run in the
  bucket its commit resolves to, as `ft release resolve`), drawn with a seed derived from the
  label, replayed on the run's image and GPU shape into RUN_URI/verify/LABEL/.
- The re-training: the release's config on today's pipeline (this checkout's code, uv.lock
  and image.lock, the config's `launch:` hardware), with the release's training inputs
  restored from its commit inside the job, as `ft retrain` restores them locally; the run
  goes to STORE/LABEL, and after a preemption `ft task run` resumes it.

The jobs are named `<task>-verify-LABEL-NNNN` and `<task>-verify-LABEL-retrain`; train-watch.yml
dispatches drill.yml with the label once all have ended. `collect` then recomputes the spot
check from the bucket (`ft reproduce --collect`, nothing a job wrote about its verdict is
read), fetches the re-trained run (re-verifying its hashes) and checks the release's gates
against it (review/drill.py), printing the gate table and writing it for the drill's issue.
"""

import shlex
import sys
from pathlib import Path

from ..closure import reproduce
from ..closure.checkout import Failed
from ..closure.manifest import read_manifest
from ..closure.release_verify import at_commit, check_label
from ..errors import UserError
from ..util.hashing import sha256_bytes, write_atomic
from .drill import check_gates, release_inputs

RETRAIN = "retrain"  # the re-training job's name ends in -LABEL-retrain


def seed_of(label: str) -> int:
    """The spot check's seed: the same in the submitting and the collecting run."""
    return int(sha256_bytes(label.encode())[:8], 16)


def _release(release_dir: str, label: str, store: str) -> tuple[dict, str]:
    """The pulled release's manifest and the URL of its run in the bucket."""
    from ..ops.inputs import resolve_run

    check_label(label, key="--label", example="drill-<run id>, what drill.yml passes")
    release = read_manifest(Path(release_dir))
    if release["command"].get("backend") != "sky":
        raise UserError(
            "this release was trained locally; drill it on the runner",
            key="command.backend",
            fix=f"ft reproduce {release_dir} && ft retrain {release_dir}",
        )
    run_uri, _ = resolve_run(store, release["git"]["commit"])
    return release, run_uri


def retrain_command(release: dict) -> list[str]:
    """The re-training job's `run:`: restore the release's inputs from its commit (the job's
    clone of a commit is a full one), then the task's own `ft task run` (resume included)."""
    restore = ["git", "checkout", release["git"]["commit"], "--", *release_inputs(release)]
    script = (
        'export PATH="$UV_PROJECT_ENVIRONMENT/bin:$PATH"; '
        + shlex.join(restore)
        + "; exec ft task run"
    )
    return ["bash", "-euo", "pipefail", "-c", script]


def submit(release_dir: str, store: str, label: str, segments: int) -> int:
    from ..closure.segments_sky import launch_intervals, result_url
    from ..config import load_config
    from ..ops import launch

    release, run_uri = _release(release_dir, label, store)
    try:  # a hand-edited release fails here, before any GPU is paid for
        reproduce.check_document(Path(release_dir), release, {})
        reproduce.check_run_files(Path(release_dir), release)
    except Failed as f:
        print(f"FAIL  {Path(release_dir) / f.file}: {f.reason} (fix: {f.fix})", file=sys.stderr)
        return 1
    cmd = release["command"]
    cfg = load_config(cmd["config"], cmd["overrides"])  # today's file, for `launch:` only
    task, job = launch.sky_task(
        cfg,
        cmd["overrides"],
        run_uri=f"{store.rstrip('/')}/{label}",
        command=retrain_command(release),
        name_suffix=f"verify-{label}-{RETRAIN}",
    )
    with at_commit(release["git"]["commit"]):
        jobs = launch_intervals(release, run_uri, k=segments, seed=seed_of(label), label=label)
    retrain = launch.submit(task, job["name"])
    for index, job_id in jobs:
        print(f"spot check, interval {index}: managed job {job_id} -> "
              f"{result_url(run_uri, index, label)}", file=sys.stderr)  # fmt: skip
    print(f"re-training: managed job {retrain} -> {job['run_uri']}", file=sys.stderr)
    print("submitted")
    return 0


def collect(
    release_dir: str, store: str, label: str, segments: int, out: str, gates_out: str | None
) -> int:
    from ..ops.fetch import fetch
    from ..ops.remote import RemoteDir

    release, run_uri = _release(release_dir, label, store)
    checked = reproduce.main(
        release_dir, segments=str(segments), seed=seed_of(label), collect=run_uri, label=label
    )
    retrained = f"{store.rstrip('/')}/{label}"
    if not RemoteDir(retrained).exists("manifest.json"):
        print(
            f"the release's config did not finish training on today's pipeline: no "
            f"{retrained}/manifest.json (sky jobs logs of <task>-verify-{label}-{RETRAIN})",
            file=sys.stderr,
        )
        if gates_out:
            write_atomic(
                gates_out,
                f"The release's config did not finish training on today's pipeline: "
                f"`{retrained}` has no manifest.json; see its job's logs.\n",
            )
        return 1
    fetch(retrained, out)
    gated = check_gates(read_manifest(Path(out)), release, release_dir, gates_out)
    return 1 if checked or gated else 0
