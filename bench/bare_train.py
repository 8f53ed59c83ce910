"""The baseline: the smoke fine-tune written by hand with transformers + peft + accelerate.

    cd <baked repo> && .venv/bin/python <template>/bench/bare_train.py \
        --base base/tiny-llama --data data/build --steps 200 --out runs/bare

What a user would write without the template, doing the same work as
`ft train --config configs/smoke.yaml --set train.max_steps=200 --set train.checkpoint_every=50`:
same base model, rows (data/build/*.jsonl from `ft data build`), tokenization, LoRA
settings, AdamW, constant learning rate, batch size, gradient clipping, checkpoint interval
(accelerate's save_state), held-out loss and adapter save, with the same determinism
settings (seeds, deterministic algorithms, no TF32). It skips what the template adds:
config validation, the data rebuild and lock check, the base model's hash check, atomic
fsynced writes, the manifest and REPRODUCE.md. Prints one JSON line of timings.
"""

import argparse
import json
import os
import random
import sys
import time

T0 = time.perf_counter()
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local base model only: never the network

import numpy as np
import torch
from accelerate import Accelerator
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoTokenizer

IMPORTED = time.perf_counter()


def encode(rows, tokenizer, max_len):
    """Prompt tokens are context (label -100); the response and EOS are learned."""
    out = []
    for row in rows:
        prompt = [tokenizer.bos_token_id] + tokenizer(row["prompt"] + "\n",
                                                      add_special_tokens=False)["input_ids"]
        answer = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
        answer += [tokenizer.eos_token_id]
        out.append({"input_ids": (prompt + answer)[:max_len],
                    "labels": ([-100] * len(prompt) + answer)[:max_len]})
    return out


def collate(pad_id):
    def pad(examples):
        width = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), width), pad_id)
        labels = torch.full((len(examples), width), -100)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = (torch.tensor(e["input_ids"]),
                                                      torch.tensor(e["labels"]), 1)
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return pad


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", default="base/tiny-llama")
    p.add_argument("--data", default="data/build", help="directory with train.jsonl, eval.jsonl")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--alpha", type=int, default=8)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--targets", default="q_proj,v_proj")
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--nondeterministic", action="store_true",
                   help="leave torch's default (fast, non-deterministic) kernels on")
    args = p.parse_args()

    # Determinism: the same settings ft train applies.
    if not args.nondeterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForCausalLM.from_pretrained(args.base, dtype=getattr(torch, args.dtype))
    model = get_peft_model(model, LoraConfig(
        r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout,
        target_modules=args.targets.split(","), task_type="CAUSAL_LM"))
    train = encode(read_jsonl(f"{args.data}/train.jsonl"), tokenizer, args.max_len)
    held_out = encode(read_jsonl(f"{args.data}/eval.jsonl"), tokenizer, args.max_len)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        collate_fn=collate(tokenizer.pad_token_id),
                        generator=torch.Generator().manual_seed(args.seed))
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad],
                                  lr=args.lr, foreach=False, fused=False)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    ready = time.perf_counter()

    model.train()
    step, tokens = 0, 0
    while step < args.steps:
        for batch in loader:
            loss = model(**batch).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += int((batch["labels"][:, 1:] != -100).sum())
            if step % args.log_every == 0:
                print(f"step {step}  loss {loss.item():.4f}", file=sys.stderr, flush=True)
            if step % args.checkpoint_every == 0 and step < args.steps:
                accelerator.save_state(f"{args.out}/checkpoint-{step}")
            if step == args.steps:
                break
    trained = time.perf_counter()

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        pad = collate(tokenizer.pad_token_id)
        for i in range(0, len(held_out), args.eval_batch_size):
            batch = {k: v.to(accelerator.device)
                     for k, v in pad(held_out[i:i + args.eval_batch_size]).items()}
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += model(**batch).loss.item() * n
            count += n
    accelerator.unwrap_model(model).save_pretrained(f"{args.out}/adapter")
    done = time.perf_counter()
    print(json.dumps({"imports_s": IMPORTED - T0, "setup_s": ready - IMPORTED,
                      "train_wall_s": trained - ready, "eval_save_s": done - trained,
                      "tokens": tokens, "tokens_per_s": tokens / (trained - ready),
                      "eval_loss": total / count}))


if __name__ == "__main__":
    main()
