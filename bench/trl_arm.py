"""The TRL arm of bench/trl_small.py: TRL's SFTTrainer + PEFT LoRA doing what
`ft train --config configs/small.yaml` does (see bench/trl_small.py for the list).

    cd <bake> && <trl-venv>/bin/python <template>/bench/trl_arm.py \
        --config configs/small.yaml --set train.max_steps=20 --out /tmp/trl-run [--check]

Runs in the throwaway venv trl_small.py makes (the bake's lock plus a pinned TRL), with the
baked repo as the working directory. Reads the config's values (model, LoRA, data, train,
eval) with plain YAML; `--check` only compares its tokenized rows with the template's
encoder and prints the count. Prints one JSON line of timings and losses.
"""

import argparse
import json
from pathlib import Path


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _encode(tokenizer, messages: list[dict], max_len: int) -> dict:
    """input_ids as apply_chat_template makes them; labels on each assistant turn's text
    (what the turn adds after the generation prompt, its end-of-turn token included)."""

    def render(msgs, prompt=False):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=prompt)

    text = render(messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            spans.append(
                (len(render(messages[:i], True)) if i else 0, len(render(messages[: i + 1])))
            )
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert offsets["input_ids"] == ids, "apply_chat_template ids differ from the text's"
    labels = [
        t if any(s <= a < e for s, e in spans) else -100
        for t, (a, _) in zip(ids, offsets["offset_mapping"], strict=True)
    ]
    return {"input_ids": ids[:max_len], "labels": labels[:max_len]}


def trl_arm(args) -> None:
    import time

    t0 = time.perf_counter()
    import torch
    import yaml
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cfg = yaml.safe_load(Path(args.config).read_text())
    for item in args.set:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        node[leaf] = yaml.safe_load(value)
    lora, data, train = cfg["model"]["lora"], cfg["data"], cfg["train"]
    base, max_len, steps, batch = (
        cfg["model"]["base"]["path"],
        data["max_seq_len"],
        train["max_steps"],
        train["batch_size"],
    )
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = _rows(Path(data["out_dir"]) / "train.jsonl")
    train_ex = [_encode(tokenizer, r["messages"], max_len) for r in rows]
    held_out = [
        _encode(tokenizer, r["messages"], max_len)
        for r in _rows(Path(data["out_dir"]) / "eval.jsonl")
    ]
    suite_rows = _rows(Path(cfg["eval"]["suites"][0]["path"]))
    suite_ex = [
        _encode(
            tokenizer,
            [
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["response"]},
            ],
            max_len,
        )
        for r in suite_rows
    ]
    if args.check:  # preflight: the same tokens and labels as the template's encoder
        from my_finetune.data.chat import encode_chat

        ours = encode_chat(rows, tokenizer, max_len, data["loss_on"])
        same = [
            a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]
            for a, b in zip(train_ex, ours, strict=True)
        ]
        print(json.dumps({"rows": len(same), "identical": sum(same)}))
        return
    # The template's batches, in its order (its seeded sampler), trained sequentially.
    from my_finetune.data.loader import StepSampler

    order = [i for chunk in StepSampler(len(train_ex), batch, cfg["seed"], 0, steps) for i in chunk]
    dataset = Dataset.from_list([train_ex[i] for i in order])
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    sft = SFTConfig(
        output_dir=args.out,
        max_steps=steps,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=cfg["eval"]["batch_size"],
        gradient_accumulation_steps=train["grad_accum_steps"],
        learning_rate=train["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        seed=cfg["seed"],
        full_determinism=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="sequential",
        packing=False,
        padding_free=False,
        max_length=max_len,
        dataloader_num_workers=train["num_workers"],
        logging_steps=train["log_every"],
        save_strategy="steps",
        save_steps=train["checkpoint_every"],
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=sft,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"],
            task_type="CAUSAL_LM",
        ),
    )
    ready = time.perf_counter()
    result = trainer.train()
    trained = time.perf_counter()
    held = trainer.evaluate(Dataset.from_list(held_out))
    suite = trainer.evaluate(Dataset.from_list(suite_ex), metric_key_prefix="suite")
    model = trainer.model.eval()
    new_tokens = cfg["eval"]["max_new_tokens"]
    completions = []
    with torch.no_grad():
        for r in suite_rows:
            ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": r["prompt"]}],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )
            out = model.generate(
                **ids,
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            completions.append(
                tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
            )
    trainer.save_model(f"{args.out}/adapter")
    done = time.perf_counter()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    print(
        json.dumps(
            {
                "setup_s": ready - t0,
                "train_s": trained - ready,
                "eval_save_s": done - trained,
                "train_loss": result.training_loss,
                "logged_losses": losses,
                "eval_loss": held["eval_loss"],
                "suite_loss": suite["suite_loss"],
                "exact": sum(
                    c.strip() == r["response"] for c, r in zip(completions, suite_rows, strict=True)
                ),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/small.yaml")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE, as ft train's")
    p.add_argument("--out", required=True, help="TRL's output_dir")
    p.add_argument("--check", action="store_true", help="compare tokenization only")
    trl_arm(p.parse_args())


if __name__ == "__main__":
    main()
