"""GPU benchmark: `ft train` vs the bare script on a ~0.5B Llama-style model, bf16.

    cd <baked repo> && .venv/bin/python <template>/bench/gpu.py > gpu.json        # one GPU
    cd <baked repo> && .venv/bin/python <template>/bench/gpu.py --tiny > gpu.json # CPU check

No hub is needed: the base model is random-initialised from transformers' LlamaConfig
(seeded) and saved as a local model directory pinned by content hash, with the embedded
tiny model's tokenizer. The training rows are generated so that every example fills
`--seq` tokens (no padding), so each step processes exactly batch x seq tokens.

Arms, interleaved, `--reps` times each:
- ft:          `ft train --config configs/smoke.yaml --set ...` (the pipeline; deterministic)
- bare:        bench/bare_train.py with the same settings, deterministic
- bare-nondet: the same script with torch's default (non-deterministic) kernels

Reports tokens/s of the training loop (trained tokens: the response tokens, as both
print), processed tokens/s, MFU (LoRA FLOPs: 4 x linear params per token for the frozen
base forward + input gradients, plus 12 x layers x seq x hidden for attention; peak
dense bf16 by device name or --peak-tflops), the ft/bare and determinism cost ratios,
and whether two runs of each deterministic arm wrote identical adapter bytes.
`--tiny` builds a 2-layer model and runs a few float32 steps on CPU: a check that the
script works, not a measurement.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, log, median, run_timed, summary

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCH = Path(__file__).resolve().parent
# Dense bf16 peak (no sparsity), TFLOP/s, by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = [("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4),
                    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("A10G", 70.0)]
SIZES = {
    # ~0.5B parameters: 16 layers x hidden 1536, GQA 12/4 heads, vocab 32000.
    "0.5b": {"hidden_size": 1536, "intermediate_size": 4096, "num_hidden_layers": 16,
                 "num_attention_heads": 12, "num_key_value_heads": 4, "head_dim": 128,
                 "vocab_size": 32000, "max_position_embeddings": 4096},
    # ~1B: 16 layers x hidden 2048, GQA 16/8 heads.
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
               "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
               "vocab_size": 32000, "max_position_embeddings": 4096},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                 "vocab_size": 512, "max_position_embeddings": 512},
}
WORDS = [
    "the", "of", "and", "to", "in", "is", "it", "you", "that", "he", "was", "for", "on",
    "are", "with", "as", "his", "they", "be", "at", "one", "have", "this", "from", "or",
    "had", "by", "word", "but", "what", "some", "we", "can", "out", "other", "were", "all",
    "there", "when", "up", "use", "your", "how", "said", "an", "each", "she", "which", "do",
    "their", "time", "if", "will", "way", "about", "many"
]


def package_name() -> str:
    return next(p.name for p in sorted(Path("src").iterdir()) if (p / "__init__.py").is_file())


def build_base(out: Path, size: str, seed: int) -> tuple[str, int, int]:
    """Random-init Llama model + the tiny tokenizer in `out`; return (sha256, params, linear)."""
    import importlib

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hashing = importlib.import_module(f"{package_name()}.util.hashing")
    config = LlamaConfig(**SIZES[size], rms_norm_eps=1e-6, rope_theta=10000.0,
                         tie_word_embeddings=False, hidden_act="silu", bos_token_id=0,
                         eos_token_id=1, pad_token_id=2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    if not (out / "config.json").is_file():
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        model.to(torch.bfloat16 if size != "tiny" else torch.float32).save_pretrained(
            staging, safe_serialization=True)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy2(Path("base/tiny-llama") / name, staging / name)
        staging.rename(out)
    return hashing.sha256_tree(out), params, linear


def write_rows(path: Path, n: int, seq: int, seed: int) -> str:
    """n rows, each a short prompt and a response long enough to fill `seq` tokens."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            prompt = f"Row {i}: continue the text."
            response = " ".join(rng.choice(WORDS) for _ in range(seq * 2))
            f.write(json.dumps({"prompt": prompt, "response": response}) + "\n")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flops_per_token(linear: int, layers: int, hidden: int, seq: int) -> float:
    """LoRA on a frozen base: forward (2N) + input gradients (2N), attention fwd + bwd."""
    return 4 * linear + 12 * layers * seq * hidden


def peak_tflops(name: str | None, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS:
        if name and key in name:
            return value
    return None


def adapter_sha(run: Path) -> str:
    return hashlib.sha256((run / "adapter" / "adapter_model.safetensors").read_bytes()).hexdigest()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    p.add_argument("--tiny", action="store_true", help="2-layer model, a few CPU steps: a check")
    p.add_argument("--seq", type=int, default=1024, help="tokens per example")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--reps", type=int, default=2, help="runs per arm (2: the identity check)")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on a GPU, float32 on CPU")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak, dense bf16")
    p.add_argument("--work", default="runs/bench-gpu", help="scratch directory")
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args()
    if args.tiny:
        args.size, args.seq, args.batch, args.steps = "tiny", min(args.seq, 128), 2, 4
    import torch

    cuda = torch.cuda.is_available()
    dtype = args.dtype or ("bfloat16" if cuda else "float32")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()

    log(f"gpu: building the {args.size} base model")
    base = work / f"base-{args.size}"
    base_sha, params, linear = build_base(base, args.size, args.seed)
    cfg = SIZES[args.size]
    rows = max(args.steps * args.batch + args.batch, 64)
    train_sha = write_rows(work / "train.jsonl", rows, args.seq, args.seed)
    eval_sha = write_rows(work / "eval.jsonl", max(2 * args.batch, 16), args.seq, args.seed + 1)
    targets = "q_proj,k_proj,v_proj,o_proj"
    overrides = [
        f"model.base.path={base}", f"model.base.sha256={base_sha}", "model.base.build=null",
        f"model.dtype={dtype}", f"model.lora.r={args.rank}", f"model.lora.alpha={2 * args.rank}",
        f"model.lora.target_modules=[{targets}]",
        f"data.sources.0.path={work / 'train.jsonl'}", f"data.sources.0.sha256={train_sha}",
        f"data.sources.1.path={work / 'eval.jsonl'}", f"data.sources.1.sha256={eval_sha}",
        "data.filters.2.params.limit=100000000", f"data.lock={work / 'data.lock'}",
        f"data.out_dir={work / 'data-build'}", f"data.max_seq_len={args.seq}",
        f"train.max_steps={args.steps}", f"train.batch_size={args.batch}",
        "train.lr_schedule=constant", "train.warmup_steps=0", "train.lr=0.0002",
        f"train.checkpoint_every={args.steps}", "train.log_every=10",
        f"eval.batch_size={args.batch}",
    ]
    sets = [a for o in overrides for a in ("--set", o)]
    ft = [str(Path(sys.executable).parent / "ft")]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"CI": "1"}
    run_timed([*ft, "data", "build", "--config", "configs/smoke.yaml", *sets], env=env)
    bare = [sys.executable, str(BENCH / "bare_train.py"), "--base", str(base),
            "--data", str(work / "data-build"), "--steps", str(args.steps),
            "--batch-size", str(args.batch), "--lr", "0.0002", "--rank", str(args.rank),
            "--alpha", str(2 * args.rank), "--targets", targets, "--max-len", str(args.seq),
            "--checkpoint-every", str(args.steps), "--log-every", "10",
            "--eval-batch-size", str(args.batch), "--dtype", dtype, "--seed", str(args.seed)]
    commands = {"ft": [*ft, "train", "--config", "configs/smoke.yaml", *sets, "--out"],
                "bare": [*bare, "--out"], "bare-nondet": [*bare, "--nondeterministic", "--out"]}

    def arm(name):
        def go(rep):
            out = work / f"{name}-{rep}"
            shutil.rmtree(out, ignore_errors=True)
            done = run_timed([*commands[name], str(out)], env=env)
            if name == "ft":
                timing = json.loads((out / "manifest.json").read_text())["timing"]
            else:
                timing = json.loads(done["stdout"].strip().splitlines()[-1])
            return {"wall_s": done["wall_s"], "train_wall_s": timing["train_wall_s"],
                    "tokens": timing["tokens"], "adapter_sha256": adapter_sha(out),
                    "maxrss_mb": done["maxrss_mb"]}
        return go

    runs = interleaved({name: arm(name) for name in commands}, args.reps, log)
    processed = args.batch * args.seq * args.steps
    fpt = flops_per_token(linear, cfg["num_hidden_layers"], cfg["hidden_size"], args.seq)
    device = torch.cuda.get_device_name(0) if cuda else None
    peak = peak_tflops(device, args.peak_tflops) if cuda else None
    arms = {}
    for name, results in runs.items():
        loop = median([r["train_wall_s"] for r in results])
        tps = processed / loop
        arms[name] = {"wall_s": summary([r["wall_s"] for r in results]),
                      "train_wall_s": summary([r["train_wall_s"] for r in results]),
                      "trained_tokens_per_s": results[0]["tokens"] / loop,
                      "processed_tokens_per_s": tps,
                      "mfu": tps * fpt / (peak * 1e12) if peak else None,
                      "adapter_sha256": [r["adapter_sha256"] for r in results],
                      # None: one run only, nothing to compare
                      "identical_adapter_bytes": (len({r["adapter_sha256"] for r in results}) == 1
                                                  if len(results) > 1 else None),
                      "maxrss_mb": max(r["maxrss_mb"] for r in results)}

    def ratio(a, b, key):
        return summary([x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True)])

    versions = subprocess.run([sys.executable, "-c", ("import json, importlib.metadata as m; "
                               "print(json.dumps({k: m.version(k) for k in ('torch', "
                               "'transformers', 'peft', 'accelerate')}))")],
                              capture_output=True, text=True, check=True).stdout
    print(json.dumps({
        "date": datetime.now(UTC).date().isoformat(), "tiny_check": args.tiny,
        "device": device or "cpu", "cuda": torch.version.cuda if cuda else None,
        "versions": json.loads(versions), "dtype": dtype, "size": args.size,
        "params": params, "linear_params": linear, "seq": args.seq, "batch": args.batch,
        "steps": args.steps, "rank": args.rank, "reps": args.reps,
        "flops_per_token": fpt, "peak_tflops": peak,
        "arms": arms,
        "ft_vs_bare_train_loop": ratio("ft", "bare", "train_wall_s"),
        "ft_vs_bare_wall": ratio("ft", "bare", "wall_s"),
        "determinism_cost_train_loop": ratio("bare", "bare-nondet", "train_wall_s"),
        "commands": {k: " ".join(v) + " <out>" for k, v in commands.items()},
        "wall_s": time.perf_counter() - began,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
