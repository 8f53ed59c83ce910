"""Training cost curve of the tiny model: tokens/s and peak memory vs sequence length and rank.

    cd <baked repo> && .venv/bin/python <template>/bench/scaling.py \
        --seq 64,128,256 --rank 4,16,64 --steps 20 --reps 3 > scaling.json
    .venv/bin/python <template>/bench/scaling.py --plot scaling.json --png scaling.png
    (--plot also takes a bench/results/*.json file of bench/run.py)

Each grid point trains in a process of its own, with the recipe's settings: LoRA on
q/k/v/o (alpha = 2 x rank), AdamW, batch 8, float32, deterministic algorithms. Batches
are full sequences of random token ids (seeded), so every step processes exactly
batch x seq tokens. Per point: tokens/s over `--steps` timed steps after 2 warm-up
steps (from the median step time), and the process's peak RSS (ru_maxrss from wait4),
each the median over `--reps` processes per point, run in alternating grid order.
A point with no steps (same imports, model, adapter and optimizer) is the baseline; a
point's own memory is its peak RSS minus the baseline's.
"""

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local base model only: never the network
from common import log, run_timed

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def train_point(base: str, seq: int, rank: int, batch: int, steps: int, seed: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05,
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3,
                                  foreach=False, fused=False)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    model.train()

    def step():
        ids = torch.randint(0, vocab, (batch, seq), generator=gen)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(2 if steps else 0):
        step()
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    # The median step: one stalled step on a shared machine does not bend the curve.
    step_s = statistics.median(times) if times else 0.0
    return {"seq": seq, "rank": rank, "batch": batch, "steps": steps, "trainable": trainable,
            "step_s": step_s, "tokens_per_s": batch * seq / step_s if step_s else None,
            "mean_step_s": sum(times) / len(times) if times else None,
            "torch_threads": torch.get_num_threads()}


def measure(args) -> dict:
    if not Path(args.base, "config.json").is_file():
        sys.exit(f"scaling: no model at {args.base}; run `ft base init-tiny` first")

    def run(seq, rank, steps) -> dict:
        done = run_timed([sys.executable, __file__, "--point", f"{seq},{rank},{steps}",
                          "--base", args.base, "--batch", str(args.batch),
                          "--seed", str(args.seed)])
        return json.loads(done["stdout"].strip().splitlines()[-1]) | {
            "peak_rss_mb": round(done["maxrss_mb"], 1)}

    baseline = run(args.seq[0], args.rank[0], 0)["peak_rss_mb"]
    log(f"  baseline (imports, model, adapter, optimizer): peak RSS {baseline:.1f} MB")
    grid = [(s, r) for s in args.seq for r in args.rank]
    runs: dict[tuple, list] = {point: [] for point in grid}
    for rep in range(args.reps):  # the grid in alternating order, so drift hits every point
        for seq, rank in grid if rep % 2 == 0 else grid[::-1]:
            result = run(seq, rank, args.steps)
            runs[(seq, rank)].append(result)
            log(f"  rep {rep + 1}/{args.reps} seq {seq:4} rank {rank:3}: "
                f"{result['tokens_per_s']:9.0f} tok/s  peak RSS {result['peak_rss_mb']:7.1f} MB")
    points = []
    for (seq, rank), results in runs.items():
        point = dict(results[0])
        for key in ("tokens_per_s", "step_s", "mean_step_s", "peak_rss_mb"):
            point[key] = statistics.median(r[key] for r in results)
        point["tokens_per_s_values"] = [round(r["tokens_per_s"]) for r in results]
        point["point_mb"] = round(point["peak_rss_mb"] - baseline, 1)
        points.append(point)
    return {"base": args.base, "targets": TARGETS, "batch": args.batch, "steps": args.steps,
            "reps": args.reps, "baseline_peak_rss_mb": baseline, "points": points}


def plot(results: dict, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = results["points"]
    ranks = sorted({p["rank"] for p in points})
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for rank in ranks:
        row = sorted((p for p in points if p["rank"] == rank), key=lambda p: p["seq"])
        seqs = [p["seq"] for p in row]
        left.plot(seqs, [p["tokens_per_s"] for p in row], marker="o", label=f"rank {rank}")
        right.plot(seqs, [p["point_mb"] for p in row], marker="o", label=f"rank {rank}")
    for ax, title in ((left, "training tokens/s"), (right, "peak RSS above baseline (MB)")):
        ax.set_ylim(bottom=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({p["seq"] for p in points}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("sequence length (tokens)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    left.legend()
    fig.suptitle(f"tiny model, batch {results['batch']}, LoRA on {'/'.join(results['targets'])}",
                 fontsize=10)
    fig.tight_layout()
    tmp = Path(png).with_name(f".{Path(png).name}.tmp")
    fig.savefig(tmp, dpi=110, format="png", metadata={"Software": None})
    os.replace(tmp, png)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--base", default="base/tiny-llama")
    p.add_argument("--seq", default="64,128,256", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--rank", default="4,16,64", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--reps", type=int, default=1, help="processes per point (median)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--plot", metavar="JSON", help="plot a result file instead of measuring")
    p.add_argument("--point", help="SEQ,RANK,STEPS: measure one point in this process")
    p.add_argument("--png", default="scaling.png")
    args = p.parse_args()
    if args.plot:
        data = json.loads(Path(args.plot).read_text())
        plot(data["figures"]["scaling"] if "figures" in data else data, args.png)  # run.py's file
        return 0
    if args.point:
        seq, rank, steps = (int(x) for x in args.point.split(","))
        print(json.dumps(train_point(args.base, seq, rank, args.batch, steps, args.seed)))
        return 0
    print(json.dumps(measure(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
