"""Score a model on the eval suites: per segment, loss/perplexity and generation metrics.

Called by `ft train` after training (eval.json's `suites`). Generation is greedy, one row
at a time (no padding, so a row's completion does not depend on its neighbours), for at
most `eval.max_new_tokens` tokens, stopping at EOS: a pure function of the weights. The
loss is summed per row over response tokens, then pooled per segment (token-weighted).
"""

import math

from ..config import Config
from ..data.loader import Collate, encode
from ..data.suites import Suite, lock_entry
from ..errors import UserError
from ..util.hashing import sha256_json
from .metrics import METRICS


def resolve_metrics(cfg: Config) -> None:
    """Fail before training if a suite names a metric that is not registered."""
    for s, suite in enumerate(cfg.eval.suites):
        for m, name in enumerate(suite.metrics):
            if name not in METRICS:
                raise UserError(
                    f"unknown generation metric {name!r}",
                    file=cfg._path,
                    key=f"eval.suites.{s}.metrics.{m}",
                    fix=f"use one of: {', '.join(sorted(METRICS))}, or add it to "
                    "evaluate/metrics.py",
                )


def suite_sha256(cfg: Config, suite: Suite, index: int) -> str:
    """Identity of what a suite measures: its rows, its segments and how it is scored.
    Two runs are compared like for like only when this matches."""
    entry = lock_entry(cfg, suite, index)
    return sha256_json(
        {
            "sha256": entry["sha256"],
            "segments": entry["segments"],
            "rules": entry["rules"],
            "metrics": cfg.eval.suites[index].metrics,
            "max_new_tokens": cfg.eval.max_new_tokens,
            "max_seq_len": cfg.data.max_seq_len,
            "row_format": cfg.data.row_format,
        }
    )


def suite_examples(cfg: Config, rows: list[dict], tokenizer, max_len: int) -> list[dict]:
    """Suite rows encoded as training encodes its rows: with `data.row_format: chat`, each
    prompt/response becomes a user turn and an assistant turn under the chat template."""
    if cfg.data.row_format == "chat":
        from ..data.chat import encode_chat

        chats = [
            {"messages": [
                {"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row["response"]},
            ]}
            for row in rows
        ]  # fmt: skip
        return encode_chat(chats, tokenizer, max_len, cfg.data.loss_on, cfg._path)
    return encode(rows, tokenizer, max_len)


def prompt_ids(cfg: Config, tokenizer, prompt: str) -> list[int]:
    """The context a completion continues, formatted as training formats a prompt."""
    if cfg.data.row_format == "chat":
        from ..data.chat import render_chat

        text = render_chat(tokenizer, [{"role": "user", "content": prompt}], generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + tokenizer(prompt + "\n", add_special_tokens=False)["input_ids"]


def row_losses(model, examples: list[dict], pad_id: int, batch_size: int, device):
    """(loss sum, token count) per example, over its labelled tokens."""
    import torch
    import torch.nn.functional as F

    collate = Collate(pad_id)
    out = []
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[i : i + batch_size]).items()}
            logits = (
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                .logits[:, :-1]
                .float()
            )
            labels = batch["labels"][:, 1:]
            loss = F.cross_entropy(
                logits.transpose(1, 2), labels, ignore_index=-100, reduction="none"
            )
            for sums, n in zip(
                loss.sum(dim=1).tolist(), (labels != -100).sum(dim=1).tolist(), strict=True
            ):
                out.append((sums, int(n)))
    return out


def greedy(model, tokenizer, ids: list[int], max_new_tokens: int, max_len: int, device) -> str:
    """The greedy completion of a prompt's token ids (`prompt_ids`).

    A plain argmax loop over the KV cache (ties go to the lowest token id, as torch's
    argmax does): `generate`'s per-step machinery costs more than the tiny model itself."""
    import torch

    ids = ids[: max(1, max_len - max_new_tokens)]
    new: list[int] = []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=device), use_cache=True)
        for _ in range(max_new_tokens):
            token = int(out.logits[0, -1].argmax())
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
            if len(new) == max_new_tokens:
                break
            out = model(
                input_ids=torch.tensor([[token]], device=device),
                past_key_values=out.past_key_values,
                use_cache=True,
            )
    return tokenizer.decode(new, skip_special_tokens=True)


def aggregate(
    suite: Suite, metrics: list[str], losses: list[tuple[float, int]], predictions: list[str]
) -> dict:
    """Per segment: rows, response tokens, pooled loss and perplexity, and the mean of each
    generation metric over the segment's rows. Pure: tests pin it on known answers."""
    scores = [
        {name: METRICS[name](pred, row["response"]) for name in metrics}
        for pred, row in zip(predictions, suite.rows, strict=True)
    ]
    segments = {}
    for name, idx in suite.segments.items():
        total = sum(losses[i][0] for i in idx)
        tokens = sum(losses[i][1] for i in idx)
        loss = total / max(tokens, 1)
        seg = {
            "rows": len(idx),
            "tokens": tokens,
            "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)),
        }
        for metric_name in metrics:
            seg[metric_name] = sum(scores[i][metric_name] for i in idx) / len(idx)
        segments[name] = seg
    return segments


def score_suites(cfg: Config, suites: list[Suite], model, tokenizer, device) -> dict:
    """eval.json's `suites`: per suite, its identity and per-segment metrics with row counts."""
    import torch

    was_training = model.training
    model.eval()
    results = {}
    for index, suite in enumerate(suites):
        spec = cfg.eval.suites[index]
        examples = suite_examples(cfg, suite.rows, tokenizer, cfg.data.max_seq_len)
        losses = row_losses(model, examples, tokenizer.pad_token_id, cfg.eval.batch_size, device)
        # One intra-op thread for batch-1 decoding: tiny matmuls gain nothing from a pool,
        # and a busy machine's spinning pool costs ~30x the CPU. Restored below.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            predictions = [
                greedy(
                    model,
                    tokenizer,
                    prompt_ids(cfg, tokenizer, row["prompt"]),
                    cfg.eval.max_new_tokens,
                    cfg.data.max_seq_len,
                    device,
                )
                for row in suite.rows
            ]
        finally:
            torch.set_num_threads(threads)
        segments = aggregate(suite, spec.metrics, losses, predictions)
        results[suite.name] = {
            "sha256": suite.sha256,
            "suite_sha256": suite_sha256(cfg, suite, index),
            "rows": len(suite.rows),
            "max_new_tokens": cfg.eval.max_new_tokens,
            "segments": segments,
            # The greedy completions, in row order: what the generation metrics scored.
            "predictions": predictions,
        }
    model.train(was_training)
    return results
