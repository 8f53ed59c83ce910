"""`ft task run`: the whole `run:` of sky/train.yaml, on each node of the SkyPilot job.

    "$UV_PROJECT_ENVIRONMENT/bin/ft" task run     # in the job, after `setup:`

It reads the envs `ft launch` filled (CONFIG, OVERRIDES, RUN_URI, ARTIFACT_BUCKET, and ARTIFACTS,
the bucket's mount: absent on RunPod, which cannot mount buckets) and SkyPilot's variables
(SKYPILOT_NUM_NODES, SKYPILOT_NODE_RANK, SKYPILOT_NUM_GPUS_PER_NODE, SKYPILOT_NODE_IPS), then:

1. finished (the run's manifest.json exists): say so and exit 0: a recovery raced completion;
2. started (its run.json exists: a restart after a preemption): `ft train --out OUT --resume`,
   which continues from the last complete checkpoint; otherwise
   `ft train --config CONFIG --out OUT [--set KEY=VALUE ...]`;
3. one process per GPU, several joined by accelerate (ops/shape.py); the command replaces this
   process (exec), so the job's exit status is training's.

OUT: one machine trains on its own disk and mirrors the run to RUN_URI, committing each
checkpoint with a marker (ops/store.py); several machines share the mounted directory.
"""

import os
import shlex
import sys
from collections.abc import Callable, Mapping

from ..errors import UserError
from .remote import RemoteDir
from .shape import launcher

FIX = "run it as the `run:` of sky/train.yaml, submitted by `ft launch --backend sky`"


def _env(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if value is None:
        raise UserError("not set: ft launch or SkyPilot sets it in the job", key=name, fix=FIX)
    return value


def _int(environ: Mapping[str, str], name: str) -> int:
    value = _env(environ, name)
    try:
        return int(value)
    except ValueError:
        raise UserError(f"not a whole number: {value!r}", key=name, fix=FIX) from None


def locate(environ: Mapping[str, str]) -> tuple[str, str, Callable[[str], bool]]:
    """(the run as this machine sees it, where `ft train` writes it, is-there-a-file-in-it)."""
    run_uri, bucket = _env(environ, "RUN_URI"), _env(environ, "ARTIFACT_BUCKET")
    if not run_uri.startswith(bucket + "/") or len(run_uri) == len(bucket) + 1:
        raise UserError(
            f"RUN_URI={run_uri!r} is not a directory in ARTIFACT_BUCKET={bucket!r}",
            key="RUN_URI",
            fix="launch with `ft launch --backend sky`, which sets both",
        )
    mount = environ.get("ARTIFACTS")
    if mount is None:  # no mount (RunPod): ask the bucket
        return run_uri, run_uri, RemoteDir(run_uri).exists
    seen = f"{mount}/{run_uri[len(bucket) + 1 :]}"
    out = seen if _int(environ, "SKYPILOT_NUM_NODES") > 1 else run_uri
    return seen, out, lambda name: os.path.isfile(f"{seen}/{name}")


def train_command(environ: Mapping[str, str], out: str, *, started: bool) -> list[str]:
    """Resume a started run; otherwise train CONFIG with OVERRIDES (one KEY=VALUE a line)."""
    if started:
        return ["ft", "train", "--out", out, "--resume"]
    argv = ["ft", "train", "--config", _env(environ, "CONFIG"), "--out", out]
    for override in environ.get("OVERRIDES", "").split("\n"):
        if override:
            argv += ["--set", override]
    return argv


def plan(environ: Mapping[str, str]) -> list[str] | None:
    """This node's command, or None when the run already finished."""
    _, out, exists = locate(environ)
    if exists("manifest.json"):
        return None
    train = train_command(environ, out, started=exists("run.json"))
    return launcher(
        train,
        gpus_per_node=_int(environ, "SKYPILOT_NUM_GPUS_PER_NODE"),
        nodes=_int(environ, "SKYPILOT_NUM_NODES"),
        rank=_int(environ, "SKYPILOT_NODE_RANK"),
        node_ips=_env(environ, "SKYPILOT_NODE_IPS"),
        port=environ.get("MAIN_PROCESS_PORT", "29500"),
    )


def main(environ: Mapping[str, str] = os.environ) -> int:
    argv = plan(environ)
    if argv is None:
        print(f"{environ['RUN_URI']} already finished", flush=True)
        return 0
    env = dict(environ)
    venv = environ.get("UV_PROJECT_ENVIRONMENT")
    if venv:  # the image's venv first: `ft` and `accelerate` are its console scripts
        env["PATH"] = f"{venv}/bin{os.pathsep}{env.get('PATH', '')}"
    print(f"task: {shlex.join(argv)}", file=sys.stderr, flush=True)
    os.execvpe(argv[0], argv, env)
