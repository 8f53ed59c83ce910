"""Checkpoints: adapter weights, optimizer, scheduler and RNG state, published atomically.

A checkpoint is written under `checkpoints/.partial-step-N/`, fsynced, then renamed
to `checkpoints/step-N/`. Only `step-N` names are ever loaded, so a process killed
mid-write leaves a partial directory that is ignored and cleaned up, never a
half-written checkpoint that a resume would pick up. Each rank stores its own RNG
state (dropout masks differ per rank); rank 0 stores the shared state, and the
metric records so far, so a checkpoint alone determines everything the rest of
the run writes.

`step-00000000` is the initial state (adapter init, empty optimizer, scheduler at
0, RNG, sampler at 0), built from the config alone. The manifest records every
checkpoint's `digest` (the chain); `ft reproduce --segments` replays the intervals
between them (docs/verification.md).
"""

import os
import re
import shutil
import sys
from pathlib import Path

from ..errors import UserError
from ..util.hashing import fsync_dir, naming, sha256_bytes, sha256_file
from . import distributed
from .determinism import rng_state, set_rng_state

STEP_DIR = re.compile(r"step-(\d{8})")
# The files a checkpoint consists of; anything else in its directory (a store's marker)
# is not part of its content.
FILES = re.compile(r"state\.pt|rng-rank\d+\.pt")


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def _canonical(obj):
    """The same value with fresh containers and interned strings.

    pickle memoizes objects by identity, so a key that is one string object in the run
    that wrote a checkpoint and two (one loaded, one from code) in a run resumed from it
    would serialise to different bytes for equal values. Segment replay compares
    checkpoint bytes, so they must be a function of the values alone.
    """
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_canonical(v) for v in obj)
    if type(obj) is str:
        return sys.intern(obj)
    return obj


def _save(obj, path: Path) -> None:
    import torch

    with naming(path), open(path, "wb") as f:
        torch.save(_canonical(obj), f)
        f.flush()
        os.fsync(f.fileno())


def save(
    run_dir: Path, step: int, model, optimizer, scheduler, accelerator, metrics: list[dict]
) -> Path:
    root = Path(run_dir) / "checkpoints"
    partial = root / f".partial-step-{step:08d}"
    final = step_dir(run_dir, step)
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    _save(rng_state(), partial / f"rng-rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    # Whole adapter and optimizer state, gathered from the shards under fsdp (every rank
    # takes part), so the file is the same however the state was split (train/distributed.py).
    trainable = distributed.adapter_state(model, accelerator)
    optimizer_state = distributed.optimizer_state(model, optimizer)
    if accelerator.is_main_process:
        _save(
            {
                "step": step,
                "world_size": accelerator.num_processes,
                "adapter": trainable,
                "optimizer": optimizer_state,
                "scheduler": scheduler.state_dict(),
                "metrics": list(metrics),
            },
            partial / "state.pt",
        )
        fsync_dir(partial)
        os.replace(partial, final)
        fsync_dir(root)
    accelerator.wait_for_everyone()
    return final


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint; partial ones are removed."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    for p in root.glob(".partial-step-*"):
        shutil.rmtree(p, ignore_errors=True)
    steps = sorted(p for p in root.iterdir() if STEP_DIR.fullmatch(p.name))
    return steps[-1] if steps else None


def load(path: Path, model, optimizer, scheduler, accelerator) -> tuple[int, list[dict] | None]:
    """Restore everything saved by `save`; return the step to continue from and the metric
    records up to it (None from a checkpoint written before they were stored)."""
    state = _load(path / "state.pt")
    if state.get("world_size") != accelerator.num_processes:
        raise UserError(
            f"checkpoint was written by {state.get('world_size')} processes, "
            f"this run has {accelerator.num_processes}",
            file=str(path),
            fix=f"resume with {state.get('world_size')} processes (the launch shape the run "
            "started with), or start a new run",
        )
    distributed.load_adapter(model, accelerator, state["adapter"])
    distributed.load_optimizer(model, optimizer, state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(_load(path / f"rng-rank{accelerator.process_index}.pt"))
    return state["step"], state.get("metrics")


def _load(file: Path) -> dict:
    """A checkpoint file; a truncated or damaged one is a UserError naming it."""
    import pickle

    import torch

    try:
        state = torch.load(file, weights_only=False)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, ValueError) as e:
        raise UserError(
            f"cannot be loaded ({type(e).__name__}): the checkpoint is truncated or damaged",
            file=str(file),
            fix=f"remove {file.parent} to resume from the checkpoint before it, or start a new run",
        ) from None
    if not isinstance(state, dict):
        raise UserError(
            "is not a checkpoint written by `ft train`",
            file=str(file),
            fix=f"remove {file.parent} to resume from the checkpoint before it",
        )
    return state


def digest(path: Path) -> dict:
    """A checkpoint's content hash: sha256 over its sorted `name\\0<file sha256>\\n` lines,
    and each file's sha256 (so a mismatch names the file)."""
    files = {
        p.name: sha256_file(p) for p in sorted(Path(path).iterdir()) if FILES.fullmatch(p.name)
    }
    lines = "".join(f"{name}\0{sha}\n" for name, sha in files.items())
    return {"sha256": sha256_bytes(lines.encode()), "files": files}


def chain(run_dir: Path) -> list[dict]:
    """Every complete checkpoint of a run, oldest first, with its digest: the manifest's chain."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    steps = sorted(p for p in root.iterdir() if STEP_DIR.fullmatch(p.name))
    return [
        {"step": int(p.name.removeprefix("step-")), "path": f"checkpoints/{p.name}"} | digest(p)
        for p in steps
    ]
