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

`collect` is the gate's side (`ft reproduce RUN_DIR --collect RUN_URI`, ADR 0042): it
reads each interval's committed result from RUN_URI/verify/interval-NNNN (a checkpoint
exists once its COMPLETE marker does; the last interval's outputs once its manifest.json
does), re-hashes the downloaded bytes against the run's recorded chain and outputs, and
writes the verification.json a local segment replay writes. Nothing the jobs wrote about
their own verdict is read.

Only `launch.submit` and `launch.follow` leave this machine; the tests run the jobs'
`run:` lines locally against a real S3 server (docs/verification.md says what was and
was not exercised).
"""

import json
import shlex
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from ..config import load_config
from ..errors import UserError
from ..ops import launch
from ..train.checkpoint import digest, step_dir
from ..util.hashing import sha256_bytes, write_atomic
from .segments import (
    OUT_DIR,
    Interval,
    chain_entry,
    choose,
    compare_last,
    conclude,
    intervals,
    select,
)

MOUNT = "$ARTIFACTS"  # where sky/train.yaml mounts ARTIFACT_BUCKET in the job


def interval_command(
    manifest: dict, run_uri: str, index: int, label: str | None = None
) -> list[str]:
    """The job's `run:`: replay interval `index` of the run at `run_uri` into its verify/ dir."""
    parts = urlsplit(run_uri)
    chain = f"{MOUNT}/{parts.path.strip('/')}"  # the run as the mounted bucket shows it
    cmd = manifest["command"]
    train = ["ft", "train", "--config", cmd["config"]]
    for override in cmd["overrides"]:
        train += ["--set", override]
    out = result_url(run_uri, index, label)
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
    manifest: dict, run_uri: str, k: int | None = None, seed: int = 0, label: str | None = None
) -> list[tuple[int, int]]:
    """Submit one managed job per chosen interval, all before waiting on any; return
    (interval, job id) pairs. Waiting is `launch.follow(job_id)` per job.

    `label` (a release tag) keeps one verification's results apart from another's of the
    same run (RUN_URI/verify/LABEL/interval-NNNN) and names the jobs
    `<task>-verify-LABEL-NNNN`, which is how `ft jobs reproduced` finds them."""
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
        task, job = launch.sky_task(
            cfg,
            cmd["overrides"],
            run_uri=result_url(run_uri, index, label),
            command=interval_command(manifest, run_uri, index, label),
            name_suffix=None if label is None else job_suffix(label, index),
        )
        jobs.append((index, launch.submit(task, job["name"])))
    return jobs


def result_url(run_uri: str, index: int, label: str | None = None) -> str:
    """Where interval `index`'s job commits its result: RUN_URI/verify[/LABEL]/interval-NNNN."""
    folder = "verify" if label is None else f"verify/{label}"
    return f"{run_uri.rstrip('/')}/{folder}/interval-{index:04d}"


def job_suffix(label: str, index: int) -> str:
    """A labelled interval job's name after `<task>-` (ops/jobs.py: `reproduced` parses it)."""
    return f"verify-{label}-{index:04d}"


def collect(
    run_dir: Path,
    manifest: dict,
    record: dict,
    run_uri: str,
    *,
    k: int | None,
    seed: int | None,
    label: str | None = None,
) -> None:
    """Fill `record` from the interval jobs' committed results under RUN_URI/verify/; raise
    Failed naming the first diverged interval, or the first interval with no result."""
    from ..ops.remote import RemoteDir, normalise_url
    from ..ops.store import MARKER
    from .checkout import Failed

    if manifest["command"].get("backend") != "sky":
        raise UserError(
            "this run was trained locally: there are no interval jobs to collect",
            key="--collect",
            fix="replay it here: ft reproduce RUN --segments all --parallel P",
        )
    if k is not None and seed is None:
        raise UserError(
            "a spot check collects the intervals its seed drew",
            key="--seed",
            fix="pass the --seed the interval jobs were launched with",
        )
    found = intervals(manifest)
    if not found:
        raise Failed("the run records no checkpoint chain; verify it with a full replay (--full)")
    run_uri = normalise_url(run_uri)
    # RUN_DIR must be the run at RUN_URI (`ft fetch RUN_URI RUN_DIR`), byte for byte.
    run = RemoteDir(run_uri)
    remote_manifest = run.read("manifest.json")
    if sha256_bytes(remote_manifest) != record["manifest_sha256"]:
        raise UserError(
            f"{run_dir}/manifest.json is not the manifest of the run at {run_uri}",
            key="--collect",
            fix=f"ft fetch {run_uri} into a new directory and collect into that",
        )
    seed = 0 if seed is None else seed
    chosen = choose(found, k, seed, record)  # one managed job per interval, all at once
    record["segments"]["collected_from"] = result_url(run_uri, 0, label).rsplit("/", 1)[0]
    record["segment_command"] = {
        "backend": "sky",
        "interval": shlex.join(interval_command(manifest, run_uri, chosen[0].index, label)),
    }
    out_root = run_dir / OUT_DIR
    shutil.rmtree(out_root, ignore_errors=True)  # nothing collected earlier counts
    remotes = {iv.index: RemoteDir(result_url(run_uri, iv.index, label)) for iv in chosen}
    listed = {i: remote.names() for i, remote in remotes.items()}
    chain = run.names()
    for iv in chosen:  # the chain checkpoints the jobs started from, as the bucket holds them
        marker = f"checkpoints/step-{iv.start:08d}/{MARKER}"
        if iv.start > 0 and marker not in chain:
            raise Failed(
                f"{iv.name}: its start checkpoint {run_uri}/{marker} is missing from the "
                "chain; restore it from the run's store, or verify with a full replay (--full)"
            )
    missing = [
        (iv, need) for iv in chosen for need in _needed(iv, MARKER) if need not in listed[iv.index]
    ]
    if missing:
        iv, need = missing[0]
        raise Failed(
            f"{iv.name} has no committed result: {result_url(run_uri, iv.index, label)}/{need} is "
            f"missing ({len({m[0].index for m in missing})} of {len(chosen)} intervals lack "
            "theirs); follow its job (sky jobs logs) or launch the interval again"
        )
    entries = []
    for iv in chosen:
        remote, out = remotes[iv.index], out_root / f"interval-{iv.index:04d}"
        entry = {
            "index": iv.index,
            "steps": [iv.start, iv.stop],
            "exit_code": 0,  # its result is committed: the job got past it
            "wall_s": None,
            "source": remote.url,
        }
        start = chain_entry(manifest, iv.start)["sha256"]
        # Interval 0 builds step 0 from the config (its job's own step 0 is hashed); the
        # others start from the run's checkpoint in the bucket, hashed here as it is now.
        entry["start"] = {
            "checkpoint": f"checkpoints/step-{iv.start:08d}",
            "expected": start,
            "actual": _checkpoint(remote, out, 0, MARKER)
            if iv.start == 0
            else _checkpoint(run, out_root / "chain", iv.start, MARKER),
        }
        if iv.last:
            _outputs(remote, out)
            ok_end = compare_last(run_dir, out, manifest, record, entry)
        else:
            entry["end"] = {
                "checkpoint": f"checkpoints/step-{iv.stop:08d}",
                "expected": chain_entry(manifest, iv.stop)["sha256"],
                "actual": _checkpoint(remote, out, iv.stop, MARKER),
            }
            ok_end = entry["end"]["actual"] == entry["end"]["expected"]
        entry["equal"] = entry["start"]["actual"] == start and ok_end
        entries.append(entry)
    conclude(manifest, record, entries, out_root)


def _needed(iv: Interval, marker: str) -> list[str]:
    """The objects that commit an interval's result: its checkpoints' markers, or for the
    last interval its manifest (pushed last)."""
    need = [f"checkpoints/step-{iv.start:08d}/{marker}"] if iv.start == 0 else []
    return need + ["manifest.json" if iv.last else f"checkpoints/step-{iv.stop:08d}/{marker}"]


def _checkpoint(remote, out: Path, step: int, marker: str) -> str:
    """Download the files a committed checkpoint's marker lists; its content hash, recomputed
    from the downloaded bytes (the marker only says which files the commit covers)."""
    from ..ops.fetch import CHECKPOINT_FILE

    prefix = f"checkpoints/step-{step:08d}"
    files = json.loads(remote.read(f"{prefix}/{marker}")).get("files") or {}
    for name in sorted(files):
        if not CHECKPOINT_FILE.fullmatch(f"{prefix}/{name}"):
            raise UserError(
                f"the marker lists a file outside the checkpoint: {name!r}",
                file=f"{remote.url}/{prefix}/{marker}",
                fix="launch the interval again",
            )
        remote.get(f"{prefix}/{name}", out / prefix / name)
    return digest(step_dir(out, step))["sha256"]


def _outputs(remote, out: Path) -> None:
    """The last interval's run: manifest.json and every output it lists (their hashes are
    compared against the original run's by `compare_last`, not against this manifest)."""
    from ..ops.remote import RESTORE_FIX
    from ..util.paths import inside, safe_name

    where = f"{remote.url}/manifest.json"
    data = remote.read("manifest.json")
    try:
        outputs = dict(json.loads(data)["outputs"])
    except (ValueError, KeyError, TypeError):
        raise UserError(
            "is not a manifest written by `ft train`", file=where, fix=RESTORE_FIX
        ) from None
    for name in outputs:
        safe_name(name, source=where, fix=RESTORE_FIX)
        remote.get(name, inside(out, name, source=where, fix=RESTORE_FIX))
    write_atomic(out / "manifest.json", data)
