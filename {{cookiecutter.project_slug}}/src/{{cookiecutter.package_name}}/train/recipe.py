"""The recipe: config -> data -> model -> train -> evaluate -> outputs -> manifest.

    uv run ft train --config configs/smoke.yaml            # seconds on CPU
    uv run ft train --out runs/x --resume                  # continue a killed run
    uv run ft train --out s3://bucket/runs/x [--resume]    # staged locally, mirrored (ops/store.py)
    uv run ft train --segment 1 --chain runs/x --out DIR   # replay one checkpoint interval
    torchrun --nproc_per_node 2 -m <package>.cli train ... # several processes (gloo on CPU)

Reads top to bottom in pipeline order. The run directory (train/rundir.py) gets the
resolved config, the adapter, metrics, and last the manifest (its existence means the
run finished), then REPRODUCE.md rendered from it. A run killed at any point can be
resumed from its last complete checkpoint and ends with the same bytes. The loop
itself is train/loop.py.

With `--segment I --chain RUN`, it replays interval I of a finished run instead
(closure/segments.py): from RUN's checkpoint I (interval 0: from the config alone)
to its next checkpoint, or for the last interval through eval and outputs. That is
what `ft reproduce --segments` runs, one process per interval.
"""

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.optim.lr_scheduler import LambdaLR

from ..closure import segments
from ..closure.manifest import build_manifest, git_state, write_manifest
from ..config import Config, load_config
from ..data.loader import train_loader
from ..data.packing import Packed
from ..data.suites import load_suites
from ..data.tokens import training_examples
from ..errors import UserError
from ..evaluate import eval_loss
from ..evaluate.suites import resolve_metrics, score_suites
from ..model import add_lora, load_base
from ..ops import store
from ..util.hashing import write_atomic
from . import checkpoint, compute, determinism, distributed, loop, rundir
from .outputs import write_adapter


def main(
    config_path: str,
    overrides: list[str],
    out: str | None = None,
    resume: bool = False,
    segment: int | None = None,
    chain: str | None = None,
    break_lock: bool = False,
) -> Path:
    # An --out URL (s3://...) trains in a local staging directory mirrored to it, and holds
    # the run's lease from open() until this function returns (ops/store.py). A segment
    # replay trains one interval of the finished run `chain` (closure/segments.py).
    replay = segments.Replay.open(chain, segment, out, resume)
    location, cfg = store.RunLocation(None), None
    try:
        location = store.RunLocation.open(out, resume, break_lock)
        if resume:  # the config is re-read from the run's invocation, in _pipeline
            run_dir, invocation = rundir.reopen(location.local_dir)
        else:
            cfg = load_config(config_path, overrides)
            run_dir, invocation = rundir.create(cfg, config_path, overrides, location.local_dir)
    except store.RunComplete as done:
        location.release()
        # Retry wrappers and SkyPilot restarts re-issue `--resume` blindly: a finished run
        # is success, not an error.
        print(
            f"nothing to resume: {done.where} is complete (manifest.json exists)",
            file=sys.stderr,
            flush=True,
        )
        return Path(done.where)
    except BaseException:
        location.release()
        raise
    rundir.warn_if_dirty()
    # A fresh run that fails on a user error (a bad pin, a diverging loss) leaves nothing,
    # so the same --out can be used again; an interrupted one keeps its checkpoints.
    try:
        return _pipeline(
            run_dir, invocation=invocation, cfg=cfg, location=location, resume=resume, replay=replay
        )
    except UserError:
        if not resume and rundir.first_process():
            shutil.rmtree(run_dir, ignore_errors=True)
            location.abandon()
        raise
    finally:
        store.unlock_run_dir(run_dir)
        location.release()


def _pipeline(
    run_dir: Path,
    *,
    invocation: dict,
    cfg: Config | None,
    location: store.RunLocation,
    resume: bool,
    replay: segments.Replay | None,
) -> Path:
    # 1. Config: loaded once, when the run started (a resume re-reads its invocation).
    # Git is sampled then too, before the data pins are read (rundir.git_at_start).
    location.begin(run_dir)
    if cfg is None:
        cfg = rundir.resumed_config(run_dir, invocation)
    if replay:
        replay.check_config(cfg)
    git_at_start = rundir.git_at_start(run_dir, invocation, resume)

    # 2. Determinism: seeds and deterministic kernels before anything random or CUDA.
    determinism.configure(cfg.seed)
    accelerator = _accelerator(cfg)

    # 3. Eval suites and their metrics: an unknown metric fails now, not after training.
    resolve_metrics(cfg)
    suites = load_suites(cfg)

    # 4. Model: base at its pin (its tokenizer is part of the data's next step).
    with accelerator.main_process_first():  # the first process builds a missing tiny base
        base, tokenizer, base_pins = load_base(cfg)

    # 5. Data: the training set at its data.lock pin, tokenized once per (data, tokenizer,
    # chat template, max_seq_len, packing) into a memory-mapped store (data/tokens.py).
    with accelerator.main_process_first():  # the first process builds a missing store
        data_lock, train_examples, eval_examples, tokens = training_examples(
            cfg, tokenizer, base_pins
        )
    if tokens is not None:
        data_lock = data_lock | {"token_store": tokens}
    if cfg.data.packing:  # consecutive examples share rows; the sampler orders the rows
        train_examples = Packed(train_examples, cfg.data.max_seq_len)

    # 6. The adapter on the base, its optimizer and learning-rate schedule.
    model = _adapter(cfg, accelerator, base)
    optimizer = loop.optimizer(cfg, model)
    scheduler = loop.scheduler(cfg, optimizer)
    model, optimizer = distributed.prepare(accelerator, model, optimizer)
    torch.manual_seed(determinism.derive(cfg.seed, f"dropout-rank{accelerator.process_index}"))

    # 7. Train: from step 0 (checkpointed as the initial state), from the last complete
    # checkpoint, or for a segment replay from the interval's start checkpoint in the chain.
    start, metrics = _restore(
        run_dir,
        resume=resume,
        replay=replay,
        state=(model, optimizer, scheduler),
        accelerator=accelerator,
    )
    accum = cfg.train.grad_accum_steps
    loader = train_loader(
        train_examples,
        pad_id=tokenizer.pad_token_id,
        batch_size=cfg.train.batch_size,
        seed=cfg.seed,
        start=start * accum,
        stop=cfg.train.max_steps * accum,
        num_workers=cfg.train.num_workers,
        rank=accelerator.process_index,
        world=accelerator.num_processes,
    )
    timing = loop.train(
        cfg=cfg,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loader=loader,
        start=start,
        stop=replay.interval.stop if replay else cfg.train.max_steps,
        run_dir=run_dir,
        metrics=metrics,
        location=location,
    )
    if replay and not replay.interval.last:
        # An inner interval ends at its end checkpoint: record what it ran on, then stop.
        if accelerator.is_main_process:
            replay.write_record(run_dir, cfg, invocation, data_lock, base_pins, timing, accelerator)
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return run_dir

    # 8. Evaluate on the held-out split, then on each eval suite, segment by segment.
    unwrapped = accelerator.unwrap_model(model)
    scores = eval_loss(
        unwrapped, eval_examples, tokenizer.pad_token_id, cfg.eval.batch_size, accelerator.device
    )
    suite_scores = score_suites(cfg, suites, unwrapped, tokenizer, accelerator.device)

    # 9. Outputs, then the manifest (last: its existence means the run finished).
    # A sharded adapter is gathered whole first, by every rank (train/distributed.py).
    adapter = (
        distributed.adapter_state(model, accelerator) if distributed.is_sharded(model) else None
    )
    if accelerator.is_main_process:
        write_adapter(unwrapped, run_dir, adapter)
        evaluation = scores | ({"suites": suite_scores} if suite_scores else {})
        write_atomic(run_dir / "eval.json", json.dumps(evaluation, indent=2, sort_keys=True) + "\n")
        shutil.copyfile(cfg.data.lock, run_dir / "data.lock")
        summary = _loss_summary(metrics) | scores
        if git_state() != git_at_start:
            raise UserError(
                "the git tree changed while the run trained: what it recorded at the start "
                "is no longer what produced it",
                file=str(run_dir),
                fix="leave the checkout alone while training (use a separate worktree), "
                "then train again",
            )
        manifest = build_manifest(
            run_dir,
            cfg,
            invocation=invocation,
            data_lock=data_lock,
            base_pins=base_pins,
            metrics=summary,
            timing=timing,
            accelerator=accelerator,
            eval_suites=suite_scores,
            git_at=git_at_start,
        )
        write_manifest(run_dir, manifest)
        location.push_outputs(run_dir)
        again = f"  (reproduce: uv run ft reproduce {run_dir})"
        hint = "" if os.environ.get("FT_REPRODUCING") else again
        _log(accelerator, f"done: {run_dir}  eval_loss {scores['eval_loss']:.4f}{hint}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def _accelerator(cfg: Config) -> Accelerator:
    """The processes this run trains on (one, or those torchrun/accelerate started),
    refused if this machine cannot run the config's options or the batch does not split."""
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    compute.check(cfg, cuda=torch.cuda.is_available())  # an option this machine cannot run
    world = accelerator.num_processes
    if cfg.train.batch_size % world:
        raise UserError(
            f"train.batch_size {cfg.train.batch_size} does not split over {world} processes",
            file=cfg._path,
            key="train.batch_size",
            fix=f"use a multiple of {world}",
        )
    return accelerator


def _adapter(cfg: Config, accelerator: Accelerator, base: torch.nn.Module) -> torch.nn.Module:
    """LoRA on the base (float32 on any base dtype), initialised from a seed of its own;
    under train.strategy fsdp, base and adapter sharded over the processes."""
    compute.prepare_base(cfg, base)  # gradient checkpointing
    torch.manual_seed(determinism.derive(cfg.seed, "adapter-init"))
    model = add_lora(cfg, base)
    compute.check_adapter(cfg, model)
    model = distributed.shard(cfg, accelerator, model)
    if distributed.is_sharded(model):
        world = accelerator.num_processes
        _log(accelerator, f"fsdp: base and adapter sharded over {world} processes")
    return model


def _restore(
    run_dir: Path,
    *,
    resume: bool,
    replay: segments.Replay | None,
    state: tuple[torch.nn.Module, torch.optim.Optimizer, LambdaLR],
    accelerator: Accelerator,
) -> tuple[int, list[dict]]:
    """(first step, metric records so far) with `state` (model, optimizer, scheduler) loaded
    from a replay's start checkpoint (hashed against the chain before it is loaded) or a
    resume's last complete checkpoint; else step 0 as it is."""
    model, optimizer, scheduler = state
    if replay and replay.interval.start > 0:
        first = replay.start_checkpoint
        start, metrics = checkpoint.load(first, model, optimizer, scheduler, accelerator)
        _log(accelerator, f"replaying {replay.interval.name} from {first}")
    elif resume and (last := checkpoint.latest(run_dir)) is not None:
        start, metrics = checkpoint.load(last, model, optimizer, scheduler, accelerator)
        _log(accelerator, f"resuming from {last.relative_to(run_dir)} (step {start})")
    else:
        start, metrics = 0, None
    return start, metrics if metrics is not None else loop.read_metrics(run_dir, start)


def _loss_summary(metrics: list[dict]) -> dict:
    losses = [m["loss"] for m in metrics]
    return {
        "train_loss_first": losses[0],
        "train_loss_last": losses[-1],
        "train_loss_min": min(losses),
        "steps": metrics[-1]["step"],
    }


def _log(accelerator: Accelerator, text: str) -> None:
    if accelerator.is_main_process:
        print(text, file=sys.stderr, flush=True)
