"""The recipe: config -> data -> model -> train -> evaluate -> outputs -> manifest.

    uv run ft train --config configs/smoke.yaml            # seconds on CPU
    uv run ft train --out runs/x --resume                  # continue a killed run
    uv run ft train --out s3://bucket/runs/x [--resume]    # staged locally, mirrored (ops/store.py)
    uv run ft train --segment 1 --chain runs/x --out DIR   # replay one checkpoint interval
    torchrun --nproc_per_node 2 -m <package>.cli train ... # several processes (gloo on CPU)

Reads top to bottom in pipeline order. The run directory gets the resolved
config, the adapter, metrics, and last the manifest (its existence means the run
finished), then REPRODUCE.md rendered from it. A run killed at any point can be
resumed from its last complete checkpoint and ends with the same bytes.

With `--segment I --chain RUN`, it replays interval I of a finished run instead
(closure/segments.py): from RUN's checkpoint I (interval 0: from the config alone)
to its next checkpoint, or for the last interval through eval and outputs. That is
what `ft reproduce --segments` runs, one process per interval.
"""

import json
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

from ..closure import segments
from ..config import Config, dump_yaml, load_config
from ..errors import UserError
from ..ops import store
from ..util.hashing import default_mode, write_atomic
from . import checkpoint, compute, determinism, distributed

RUN_FILE = "run.json"  # the invocation, written first: what --resume re-reads


def main(
    config_path: str,
    overrides: list[str],
    out: str | None = None,
    resume: bool = False,
    segment: int | None = None,
    chain: str | None = None,
    break_lock: bool = False,
) -> Path:
    # 1. Config: validated once; a resume re-reads the invocation the run started with.
    # An --out URL (s3://...) trains in a local staging directory mirrored to it (ops/store.py).
    # A segment replay trains one interval of the finished run `chain` (closure/segments.py).
    replay = segments.Replay.open(chain, segment, out, resume)
    # An --out URL holds the run's lease from open() until this function returns.
    location = store.RunLocation(None)
    try:
        location = store.RunLocation.open(out, resume, break_lock)
        run_dir, invocation = _run_dir(config_path, overrides, location.local_dir, resume)
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
    if int(os.environ.get("RANK", "0")) == 0:
        _warn_if_dirty()
    # A fresh run that fails on a user error (a bad pin, a diverging loss) leaves nothing,
    # so the same --out can be used again; an interrupted one keeps its checkpoints.
    try:
        return _pipeline(run_dir, invocation, location, resume, replay)
    except UserError:
        if not resume and int(os.environ.get("RANK", "0")) == 0:
            shutil.rmtree(run_dir, ignore_errors=True)
            location.abandon()
        raise
    finally:
        store.unlock_run_dir(run_dir)
        location.release()


def _pipeline(run_dir: Path, invocation: dict, location, resume: bool, replay) -> Path:
    location.begin(run_dir)
    cfg = load_config(invocation["config"], invocation["overrides"])
    if resume and cfg.hash() != invocation["config_sha256"]:
        raise UserError(
            "the config changed since this run started",
            file=str(run_dir / RUN_FILE),
            fix="resume with the same config and data, or start a new run",
        )
    if replay:
        replay.check_config(cfg)
    # Git is sampled once, before the data pins are read; a tree that moves under the run
    # (an edit, then a revert) is refused at the end instead of being recorded as clean.
    from ..closure.manifest import git_state

    if resume and invocation.get("git") not in (None, git_state()):
        raise UserError(
            "the git tree changed since this run started (commit or uncommitted changes)",
            file=str(run_dir / RUN_FILE),
            fix="restore the tree the run started from (see `git` in run.json), or start a new run",
        )
    git_at_start = invocation.get("git") or git_state()

    # 2. Determinism: seeds and deterministic kernels before anything random or CUDA.
    determinism.configure(cfg.seed)
    import warnings

    import torch

    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    compute.check(cfg, cuda=torch.cuda.is_available())  # an option this machine cannot run
    rank, world = accelerator.process_index, accelerator.num_processes
    if cfg.train.batch_size % world:
        raise UserError(
            f"train.batch_size {cfg.train.batch_size} does not split over {world} processes",
            file=cfg._path,
            key="train.batch_size",
            fix=f"use a multiple of {world}",
        )

    # 3. Eval suites and their metrics: an unknown metric fails now, not after training.
    from ..data.suites import load_suites
    from ..evaluate.suites import resolve_metrics

    resolve_metrics(cfg)
    suites = load_suites(cfg)

    # 4. Model: base at its pin (its tokenizer is part of the data's next step).
    from ..data.loader import train_loader
    from ..data.tokens import training_examples
    from ..model import add_lora, load_base

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
        from ..data.packing import Packed

        train_examples = Packed(train_examples, cfg.data.max_seq_len)
    # The adapter (float32 on any base dtype) is initialised from a seed of its own.
    compute.prepare_base(cfg, base)  # gradient checkpointing
    torch.manual_seed(determinism.derive(cfg.seed, "adapter-init"))
    model = add_lora(cfg, base)
    compute.check_adapter(cfg, model)
    model = distributed.shard(cfg, accelerator, model)  # train.strategy fsdp: FSDP2 shards
    if distributed.is_sharded(model):
        _log(accelerator, f"fsdp: base and adapter sharded over {world} processes")
    optimizer, scheduler = _optimizer(cfg, model)
    model, optimizer = distributed.prepare(accelerator, model, optimizer)
    torch.manual_seed(determinism.derive(cfg.seed, f"dropout-rank{rank}"))

    # 6. Train: from step 0 (checkpointed as the initial state), from the last complete
    # checkpoint, or for a segment replay from the interval's start checkpoint in the chain.
    start, saved_metrics = 0, None
    if replay and replay.interval.start > 0:
        first = replay.start_checkpoint  # hashed against the chain before it is loaded
        start, saved_metrics = checkpoint.load(first, model, optimizer, scheduler, accelerator)
        _log(accelerator, f"replaying {replay.interval.name} from {first}")
    elif resume and (last := checkpoint.latest(run_dir)) is not None:
        start, saved_metrics = checkpoint.load(last, model, optimizer, scheduler, accelerator)
        _log(accelerator, f"resuming from {last.relative_to(run_dir)} (step {start})")
    metrics = saved_metrics if saved_metrics is not None else _read_metrics(run_dir, start)
    stop = replay.interval.stop if replay else cfg.train.max_steps
    accum = cfg.train.grad_accum_steps
    loader = train_loader(
        train_examples,
        tokenizer.pad_token_id,
        cfg.train.batch_size,
        cfg.seed,
        start * accum,
        cfg.train.max_steps * accum,
        cfg.train.num_workers,
        rank,
        world,
    )
    timing = _train(
        cfg,
        accelerator,
        model,
        optimizer,
        scheduler,
        loader,
        steps=(start, stop),
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

    # 7. Evaluate on the held-out split, then on each eval suite, segment by segment.
    from ..evaluate import eval_loss
    from ..evaluate.suites import score_suites

    unwrapped = accelerator.unwrap_model(model)
    scores = eval_loss(
        unwrapped, eval_examples, tokenizer.pad_token_id, cfg.eval.batch_size, accelerator.device
    )
    suite_scores = score_suites(cfg, suites, unwrapped, tokenizer, accelerator.device)

    # 8. Outputs, then 9. the manifest (last: its existence means the run finished).
    # A sharded adapter is gathered whole first, by every rank (train/distributed.py).
    adapter = (
        distributed.adapter_state(model, accelerator) if distributed.is_sharded(model) else None
    )
    if accelerator.is_main_process:
        from ..closure.manifest import build_manifest, write_manifest

        _write_adapter(unwrapped, run_dir, adapter)
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
        hint = (
            ""
            if os.environ.get("FT_REPRODUCING")
            else f"  (reproduce: uv run ft reproduce {run_dir})"
        )
        _log(accelerator, f"done: {run_dir}  eval_loss {scores['eval_loss']:.4f}{hint}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def _run_dir(
    config_path: str, overrides: list[str], out: str | None, resume: bool
) -> tuple[Path, dict]:
    """Pick the run directory and the invocation it records (or re-read it on resume)."""
    if resume:
        if out is None:
            raise UserError(
                "--resume needs the run to continue",
                key="--out",
                fix="pass --out runs/<id> of the interrupted run",
            )
        run_dir = Path(os.path.normpath(out))
        if not (run_dir / RUN_FILE).is_file():
            raise UserError(
                "no run was started here",
                file=str(run_dir),
                fix="pass the --out directory of an interrupted run",
            )
        if int(os.environ.get("RANK", "0")) == 0:
            store.lock_run_dir(run_dir)
        if (run_dir / "manifest.json").exists():
            store.unlock_run_dir(run_dir)
            raise store.RunComplete(str(run_dir))
        from ..util.records import read_json

        return run_dir, read_json(
            run_dir / RUN_FILE, fix="start a new run with another --out (this one's record is lost)"
        )
    cfg = load_config(config_path, overrides)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    # Normalised first: `--out runs/x/new/..` is runs/x, and must meet the not-empty guard.
    run_dir = (
        Path(os.path.normpath(out)) if out else Path("runs") / f"{Path(config_path).stem}-{stamp}"
    )
    from ..closure.manifest import git_state

    invocation = {
        "config": config_path,
        "overrides": list(overrides),
        "config_sha256": cfg.hash(),
        "started_at": datetime.now(UTC).isoformat(),
        "git": git_state(),
    }
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, only rank 0 sets the run up
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError(
                "is a file, not a run directory",
                file=str(run_dir),
                key="--out",
                fix="pass a new directory for --out",
            )
        # Checked before mkdir (never create anything inside someone's directory), and again
        # under the directory's lock (another `ft train` may have started in between).
        for locked in (False, True):
            if run_dir.is_dir() and any(not store.is_scratch(p.name) for p in run_dir.iterdir()):
                if locked:
                    store.unlock_run_dir(run_dir)
                raise UserError(
                    "the output directory is not empty",
                    file=str(run_dir),
                    fix="pass a new --out, or add --resume to continue an interrupted run",
                )
            if not locked:
                run_dir.mkdir(parents=True, exist_ok=True)
                store.lock_run_dir(run_dir)
        for p in run_dir.iterdir():  # temp files of a run killed while it set up
            if store.is_scratch(p.name):
                p.unlink(missing_ok=True)
        write_atomic(run_dir / RUN_FILE, json.dumps(invocation, indent=2) + "\n")
        write_atomic(run_dir / "config.yaml", dump_yaml(cfg.resolved()))
    return run_dir, invocation


def _warn_if_dirty() -> None:
    """One line up front: a run from uncommitted changes can be neither reproduced nor
    published (`ft reproduce` rebuilds from the recorded commit), so say so before it trains."""
    from ..closure.manifest import dirty_files

    dirty = dirty_files()
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        print(
            f"warning: uncommitted changes ({shown}): this run will not be reproducible or "
            "publishable; commit them and train again for a release",
            file=sys.stderr,
            flush=True,
        )


def _optimizer(cfg: Config, model):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    t = cfg.train
    if t.optimizer == "adamw_torch":
        optimizer = torch.optim.AdamW(
            params, lr=t.lr, weight_decay=t.weight_decay, **compute.optimizer_kwargs(cfg)
        )
    else:
        optimizer = torch.optim.SGD(
            params, lr=t.lr, weight_decay=t.weight_decay, **compute.optimizer_kwargs(cfg)
        )

    def factor(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / (t.warmup_steps + 1)
        progress = (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps)
        if t.lr_schedule == "linear":
            return max(0.0, 1.0 - progress)
        if t.lr_schedule == "cosine":
            import math

            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _train(
    cfg, accelerator, model, optimizer, scheduler, loader, *, steps, run_dir, metrics, location
):
    """The loop over steps [start, stop): accumulate micro-batches, clip, step; log and
    checkpoint on schedule. A run that starts at 0 first checkpoints its initial state."""
    import torch

    from ..evaluate import token_loss
    from ..ops.tracking import Trackers

    t = cfg.train
    start, stop = steps
    world = accelerator.num_processes
    if start == 0 and not checkpoint.step_dir(run_dir, 0).exists():
        saved = checkpoint.save(run_dir, 0, model, optimizer, scheduler, accelerator, metrics)
        if accelerator.is_main_process:
            location.push_checkpoint(saved)
    model.train()
    batches = iter(loader)
    progress = _Progress(accelerator, start, t.max_steps)
    trackers = Trackers.start(cfg, run_dir, accelerator.is_main_process)  # cfg.track.report_to
    tokens_total, began = 0, time.perf_counter()
    for step in range(start, stop):
        step_loss = 0.0
        for micro in range(t.grad_accum_steps):
            batch = {k: v.to(accelerator.device) for k, v in next(batches).items()}
            last = micro == t.grad_accum_steps - 1
            with nullcontext() if last else accelerator.no_sync(model):
                loss_sum, n = token_loss(model, batch)
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
            metrics.append({"step": done, "loss": step_loss, "lr": scheduler.get_last_lr()[0]})
            if accelerator.is_main_process:
                write_atomic(
                    run_dir / "metrics.jsonl",
                    "".join(json.dumps(m, sort_keys=True) + "\n" for m in metrics),
                )
            trackers.log(metrics[-1])
        progress.update(done, step_loss, tokens_total / max(1e-9, time.perf_counter() - began))
        if done % t.checkpoint_every == 0 and done < t.max_steps:
            saved = checkpoint.save(
                run_dir, done, model, optimizer, scheduler, accelerator, metrics
            )
            if accelerator.is_main_process:
                location.push_checkpoint(saved)
    progress.close()
    trackers.close()
    wall = time.perf_counter() - began
    return {
        "train_wall_s": round(wall, 3),
        "tokens": tokens_total,
        "tokens_per_s": round(tokens_total / max(wall, 1e-9), 1),
    }


def _read_metrics(run_dir: Path, upto: int) -> list[dict]:
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


def _write_adapter(model, run_dir: Path, state: dict | None) -> None:
    """peft's adapter files, written beside and renamed into place."""
    final, partial = run_dir / "adapter", run_dir / ".partial-adapter"
    shutil.rmtree(partial, ignore_errors=True)
    # peft asks the hub whether a hub base's config.json exists to decide what to save;
    # offline it decides from the local model, so the files never depend on the network.
    import warnings

    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with warnings.catch_warnings():  # peft's note that it did not ask: expected here
            warnings.filterwarnings("ignore", message="Could not find a config file in")
            gathered = {} if state is None else {"state_dict": state}
            model.save_pretrained(partial, safe_serialization=True, **gathered)
    finally:
        if previous is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
    (partial / "README.md").unlink(missing_ok=True)  # peft's generic card; publish writes ours
    # peft keeps target_modules as a set and dumps it in hash-seed order: canonicalise.
    config_file = partial / "adapter_config.json"
    adapter_config = json.loads(config_file.read_text())
    if isinstance(adapter_config.get("target_modules"), list):
        adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
    write_atomic(config_file, json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
    for path in partial.iterdir():  # safetensors creates its file 0600; outputs are shared
        default_mode(path)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)


def _loss_summary(metrics: list[dict]) -> dict:
    losses = [m["loss"] for m in metrics]
    return {
        "train_loss_first": losses[0],
        "train_loss_last": losses[-1],
        "train_loss_min": min(losses),
        "steps": metrics[-1]["step"],
    }


def _log(accelerator, text: str) -> None:
    if accelerator.is_main_process:
        print(text, file=sys.stderr, flush=True)


class _Progress:
    """Where training is: a tqdm bar on a terminal (step/total, loss, tokens/s, ETA), plain
    lines in CI logs and pipes (`step 5/100  loss ...  eta 0:42`, about 20 per run).

    It only reads the loop's numbers and writes to stderr: no run output depends on it.
    """

    def __init__(self, accelerator, start: int, total: int):
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
