"""Segment replay of a SkyPilot-trained run: one managed job per interval, all at once.

    uv sync --frozen --group launch
    python -c "from <package>.closure.segments_sky import launch_intervals; ..."

A run trained with `ft launch --backend sky` lives in the bucket (RUN_URI) and must be
replayed on its pinned image and GPU shape. `launch_intervals` builds, for each chosen
interval, the same task `ft launch --backend sky` would submit (image from image.lock,
commit, the config's `launch:` hardware, secrets from this environment), with `run:`
replaced by the interval's replay: `ft train --segment I --chain <the run, as the
bucket is mounted> --out RUN_URI/verify/interval-NNNN`. Every job is submitted before
any is waited on, so the intervals run in parallel; each one's end checkpoint is then
committed to the bucket by the store's marker protocol, where the gate reads it.

Only `launch.submit` and `launch.follow` leave this machine; the tests stop there
(docs/verification.md says what was and was not exercised).
"""

import shlex
from urllib.parse import urlsplit

from ..config import load_config
from ..errors import UserError
from ..ops import launch
from .segments import intervals, select

MOUNT = "$ARTIFACTS"  # where sky/train.yaml mounts ARTIFACT_BUCKET in the job


def interval_command(manifest: dict, run_uri: str, index: int) -> list[str]:
    """The job's `run:`: replay interval `index` of the run at `run_uri` into its verify/ dir."""
    parts = urlsplit(run_uri)
    chain = f"{MOUNT}/{parts.path.strip('/')}"  # the run as the mounted bucket shows it
    cmd = manifest["command"]
    train = ["ft", "train", "--config", cmd["config"]]
    for override in cmd["overrides"]:
        train += ["--set", override]
    out = f"{run_uri.rstrip('/')}/verify/interval-{index:04d}"
    world = manifest["hardware"]["world_size"]
    launcher = (
        f"accelerate launch --multi_gpu --num_processes {world} --mixed_precision no "
        "--dynamo_backend no --no_python "
        if world > 1
        else ""
    )
    script = (
        'export PATH="$UV_PROJECT_ENVIRONMENT/bin:$PATH"; '
        + launcher
        + shlex.join(train)
        + f' --segment {index} --chain "{chain}" --out {shlex.quote(out)}'
    )
    return ["bash", "-euo", "pipefail", "-c", script]


def launch_intervals(
    manifest: dict, run_uri: str, k: int | None = None, seed: int = 0
) -> list[tuple[int, int]]:
    """Submit one managed job per chosen interval, all before waiting on any; return
    (interval, job id) pairs. Waiting is `launch.follow(job_id)` per job."""
    if manifest["command"].get("backend") != "sky":
        raise UserError(
            "this run was trained locally; replay its intervals here",
            key="--backend",
            fix="ft reproduce RUN --segments all --parallel P",
        )
    if manifest["config"]["launch"]["num_nodes"] > 1:
        raise UserError(
            "segment replay of a multi-node run is not supported",
            key="launch.num_nodes",
            fix="verify it with a full replay (ft reproduce RUN --full)",
        )
    found = intervals(manifest)
    if not found:
        raise UserError(
            "the run records no checkpoint chain",
            key="checkpoints",
            fix="verify it with a full replay (ft reproduce RUN --full)",
        )
    cmd = manifest["command"]
    cfg = load_config(cmd["config"], cmd["overrides"])
    if cfg.hash() != manifest["config_sha256"]:
        raise UserError(
            "the config in this checkout differs from the run's",
            file=cmd["config"],
            fix="check out the run's commit first",
        )
    jobs = []
    for index in select(len(found), k, seed):
        out = f"{run_uri.rstrip('/')}/verify/interval-{index:04d}"
        task, job = launch.sky_task(
            cfg, cmd["overrides"], run_uri=out, command=interval_command(manifest, run_uri, index)
        )
        jobs.append((index, launch.submit(task, job["name"])))
    return jobs
