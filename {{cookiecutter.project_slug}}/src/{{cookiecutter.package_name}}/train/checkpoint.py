"""Checkpoints: adapter weights, optimizer, scheduler and RNG state, published atomically.

A checkpoint is written under `checkpoints/.partial-step-N/`, fsynced, then renamed
to `checkpoints/step-N/`. Only `step-N` names are ever loaded, so a process killed
mid-write leaves a partial directory that is ignored and cleaned up, never a
half-written checkpoint that a resume would pick up. Each rank stores its own RNG
state (dropout masks differ per rank); rank 0 stores the shared state.
"""

import os
import re
import shutil
from pathlib import Path

from ..errors import UserError
from ..util.hashing import fsync_dir
from .determinism import rng_state, set_rng_state

STEP_DIR = re.compile(r"step-(\d{8})")


def _save(obj, path: Path) -> None:
    import torch

    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def save(run_dir: Path, step: int, model, optimizer, scheduler, accelerator) -> Path:
    root = Path(run_dir) / "checkpoints"
    partial = root / f".partial-step-{step:08d}"
    final = root / f"step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    _save(rng_state(), partial / f"rng-rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trainable = {
            k: v.detach().cpu()
            for k, v in accelerator.unwrap_model(model).named_parameters()
            if v.requires_grad
        }
        _save(
            {
                "step": step,
                "world_size": accelerator.num_processes,
                "adapter": trainable,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
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


def load(path: Path, model, optimizer, scheduler, accelerator) -> int:
    """Restore everything saved by `save`; return the step to continue from."""
    import torch

    state = torch.load(path / "state.pt", weights_only=False)
    if state["world_size"] != accelerator.num_processes:
        raise UserError(
            f"checkpoint was written by {state['world_size']} processes, "
            f"this run has {accelerator.num_processes}",
            file=str(path),
            fix=f"resume with {state['world_size']} processes (the launch shape the run "
            "started with), or start a new run",
        )
    params = dict(accelerator.unwrap_model(model).named_parameters())
    with torch.no_grad():
        for name, value in state["adapter"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(torch.load(path / f"rng-rank{accelerator.process_index}.pt", weights_only=False))
    return state["step"]
