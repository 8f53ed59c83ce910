"""The training loop of the recipe (train/recipe.py): optimizer, schedule, steps, metrics.

`train` runs optimizer steps [start, stop): accumulate micro-batches, clip, step; log to
RUN_DIR/metrics.jsonl and checkpoint on schedule. A run that starts at 0 first
checkpoints its initial state. metrics.jsonl is written whole once (the records a run
starts or resumes with), then appended one line per log step, and fsynced at each
checkpoint; a checkpoint holds the records too, so a resume never trusts the file.
"""

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.optim.lr_scheduler import LambdaLR

from .. import evaluate
from ..config import Config
from ..errors import UserError
from ..ops.store import RunLocation
from ..ops.tracking import Trackers
from ..util.hashing import naming, write_atomic
from . import checkpoint, compute


def optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """train.optimizer over the adapter's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    t = cfg.train
    kind = torch.optim.AdamW if t.optimizer == "adamw_torch" else torch.optim.SGD
    return kind(params, lr=t.lr, weight_decay=t.weight_decay, **compute.optimizer_kwargs(cfg))


def scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> LambdaLR:
    """Linear warmup from 0 over train.warmup_steps, then train.lr_schedule's decay."""
    t = cfg.train

    def factor(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / (t.warmup_steps + 1)
        progress = (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps)
        if t.lr_schedule == "linear":
            return max(0.0, 1.0 - progress)
        if t.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return LambdaLR(optimizer, factor)


def train(
    *,
    cfg: Config,
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LambdaLR,
    loader: torch.utils.data.DataLoader,
    start: int,
    stop: int,
    run_dir: Path,
    metrics: list[dict],
    location: RunLocation,
) -> dict:
    """Steps [start, stop); `metrics` (the records so far) grows by one per log step.
    Returns the loop's timing: wall seconds, tokens, tokens per second."""
    t = cfg.train
    world = accelerator.num_processes
    log = MetricsLog(run_dir / "metrics.jsonl", metrics, accelerator.is_main_process)
    if start == 0 and not checkpoint.step_dir(run_dir, 0).exists():
        saved = checkpoint.save(run_dir, 0, model, optimizer, scheduler, accelerator, metrics)
        if accelerator.is_main_process:
            location.push_checkpoint(saved)
    model.train()
    batches = iter(loader)
    progress = Progress(accelerator, start, t.max_steps)
    trackers = Trackers.start(cfg, run_dir, accelerator.is_main_process)  # cfg.track.report_to
    tokens_total, began = 0, time.perf_counter()
    for step in range(start, stop):
        step_loss = 0.0
        for micro in range(t.grad_accum_steps):
            batch = {k: v.to(accelerator.device) for k, v in next(batches).items()}
            last = micro == t.grad_accum_steps - 1
            with nullcontext() if last else accelerator.no_sync(model):
                loss_sum, n = evaluate.token_loss(model, batch)
                # Normalise by the tokens of the whole micro-batch across processes, so one
                # process and several compute the same quantity (DDP averages: hence * world).
                counts = accelerator.reduce(
                    torch.tensor([loss_sum.item(), float(n)], device=accelerator.device), "sum"
                )
                accelerator.backward(loss_sum * world / (counts[1] * t.grad_accum_steps))
            step_loss += counts[0].item() / counts[1].item() / t.grad_accum_steps
            tokens_total += int(counts[1].item())
        if not math.isfinite(step_loss):  # every rank holds the same reduced loss: all stop
            raise UserError(
                f"the training loss is {step_loss} at step {step + 1}: the run diverged "
                "(nothing was written as finished)",
                file=cfg._path,
                key="train.lr",
                fix="lower train.lr (or train.max_grad_norm), check the data, and train again",
            )
        accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if done % t.log_every == 0 or done == t.max_steps:
            log.append({"step": done, "loss": step_loss, "lr": scheduler.get_last_lr()[0]})
            trackers.log(metrics[-1])
        progress.update(done, step_loss, tokens_total / max(1e-9, time.perf_counter() - began))
        if done % t.checkpoint_every == 0 and done < t.max_steps:
            log.sync()  # before the checkpoint: a stored checkpoint is pushed with its metrics
            saved = checkpoint.save(
                run_dir, done, model, optimizer, scheduler, accelerator, metrics
            )
            if accelerator.is_main_process:
                location.push_checkpoint(saved)
    log.sync()
    progress.close()
    trackers.close()
    wall = time.perf_counter() - began
    return {
        "train_wall_s": round(wall, 3),
        "tokens": tokens_total,
        "tokens_per_s": round(tokens_total / max(wall, 1e-9), 1),
    }


class MetricsLog:
    """RUN_DIR/metrics.jsonl over the run's records: on the first log step of this process
    the file is written whole (dropping lines a killed run left past its checkpoint, or a
    torn last one), then each record is one appended line; `sync` makes it durable."""

    def __init__(self, path: Path, records: list[dict], main: bool):
        self.path, self.records, self.main = path, records, main
        self.written = False

    def append(self, record: dict) -> None:
        self.records.append(record)
        if not self.main:
            return
        if not self.written:
            write_atomic(self.path, "".join(map(_line, self.records)))
            self.written = True
            return
        with naming(self.path), open(self.path, "a", encoding="utf-8") as f:
            f.write(_line(record))

    def sync(self) -> None:
        if self.main and self.written:
            with naming(self.path):
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)


def _line(record: dict) -> str:
    return json.dumps(record, sort_keys=True) + "\n"


def read_metrics(run_dir: Path, upto: int) -> list[dict]:
    """The records of RUN_DIR/metrics.jsonl up to step `upto` (none if there is no file)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [m for m in records if m["step"] <= upto]
    except (ValueError, KeyError, TypeError):
        raise UserError(
            "is damaged (not one JSON record with `step` per line)",
            file=str(path),
            fix="restore it from the run's store, or start a new run",
        ) from None


class Progress:
    """Where training is: a tqdm bar on a terminal (step/total, loss, tokens/s, ETA), plain
    lines in CI logs and pipes (`step 5/100  loss ...  eta 0:42`, about 20 per run).

    It only reads the loop's numbers and writes to stderr: no run output depends on it.
    """

    def __init__(self, accelerator: Accelerator, start: int, total: int):
        self.main = accelerator.is_main_process
        self.bar = None
        self.start, self.total = start, total
        self.every = max(1, total // 20)
        self.began = time.perf_counter()
        if self.main and sys.stderr.isatty() and not os.environ.get("CI"):
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=start, unit="step", dynamic_ncols=True, desc="train"
            )

    def update(self, step: int, loss: float, tok_s: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tok_s:,.0f}")
        elif self.main and (step % self.every == 0 or step == self.start + 1 or step == self.total):
            elapsed = time.perf_counter() - self.began
            eta = elapsed / (step - self.start) * (self.total - step)
            print(
                f"step {step}/{self.total}  loss {loss:.4f}  tok/s {tok_s:,.0f}  "
                f"elapsed {_clock(elapsed)}  eta {_clock(eta)}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
