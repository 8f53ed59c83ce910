"""Evaluate the adapter: mean loss over the held-out split here; eval suites in suites.py.

Runs in a fixed order without dropout, so the metric is as reproducible as the
weights. Every process evaluates the whole split (it is small) and agrees.
"""

import math


def eval_loss(model, examples: list[dict], pad_id: int, batch_size: int, device) -> dict:
    import torch

    from ..data.loader import Collate

    collate = Collate(pad_id)
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[i : i + batch_size]).items()}
            loss_sum, n = token_loss(model, batch)
            total += loss_sum.item()
            tokens += n
    model.train(was_training)
    mean = total / tokens
    return {"eval_loss": mean, "eval_perplexity": math.exp(min(mean, 50.0)), "eval_tokens": tokens}


def token_loss(model, batch: dict):
    """(sum of next-token losses over labelled tokens, number of those tokens)."""
    import torch.nn.functional as F

    if "position_ids" in batch:  # packed rows: positions restart per example, which makes
        # transformers mask attention block-diagonally (data/packing.py); padding is causal.
        # (Only without a KV cache: transformers skips that mask when it has one.)
        inputs = {"position_ids": batch["position_ids"], "attention_mask": None, "use_cache": False}
    else:
        inputs = {"attention_mask": batch["attention_mask"]}
    logits = model(input_ids=batch["input_ids"], **inputs).logits
    labels = batch["labels"][:, 1:]
    logits = logits[:, :-1].float()
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss, int((labels != -100).sum())
