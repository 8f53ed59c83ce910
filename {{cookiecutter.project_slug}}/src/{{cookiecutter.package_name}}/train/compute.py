"""Compute options of a run: dtype, attention kernel, gradient checkpointing, fused update.

    uv run ft train --config configs/smoke.yaml --set model.dtype=bfloat16 \\
        --set train.gradient_checkpointing=true --set train.fused_optimizer=true

Called by the recipe (train/recipe.py): `check` before the base loads (a flash-attention
request that cannot run is refused before minutes of loading), `prepare_base` between the
base and the adapter, `optimizer_kwargs` where the optimizer is built. Each option keeps
byte-identical re-runs and resumes on the same hardware; docs/determinism.md says how, and
docs/decisions/0028-compute-options-keep-exact-bytes.md why they are built this way.

Precision (model.dtype): the frozen base is loaded in that dtype; the adapter is always
float32 (peft's `autocast_adapter_dtype`, asserted below), so its matmuls, gradients,
AdamW moments and saved weights are float32. No autocast: every op runs in the dtype of
its tensors, the same on CPU and GPU, so the arithmetic is fixed by the config alone.
"""

import importlib.util
import os

from ..config import Config
from ..errors import UserError


def check(cfg: Config, cuda: bool) -> None:
    """Refuse an option this machine cannot run, before anything loads."""
    if cfg.model.attn_implementation != "flash_attention_2":
        return
    if not cuda:
        raise UserError(
            "flash_attention_2 runs on CUDA GPUs only and this machine has none",
            file=cfg._path,
            key="model.attn_implementation",
            fix="use sdpa (the default) on CPU, or train on a GPU",
        )
    if importlib.util.find_spec("flash_attn") is None:
        raise UserError(
            "flash_attention_2 needs the flash-attn package, which is not installed",
            file=cfg._path,
            key="model.attn_implementation",
            fix="use sdpa (the default), or add it: `uv add flash-attn` (then commit uv.lock)",
        )
    if cfg.model.dtype != "bfloat16":
        raise UserError(
            "flash_attention_2 runs in half precision only",
            file=cfg._path,
            key="model.dtype",
            fix="set model.dtype: bfloat16, or use attn_implementation: sdpa",
        )
    # flash-attn's backward accumulates dq with atomics unless asked not to; transformers
    # reads this variable on every call (modeling_flash_attention_utils).
    os.environ["FLASH_ATTENTION_DETERMINISTIC"] = "1"


def prepare_base(cfg: Config, base) -> None:
    """Gradient checkpointing on the frozen base, before the adapter wraps it."""
    if not cfg.train.gradient_checkpointing:
        return
    # Non-reentrant checkpointing restores the RNG state when it recomputes a layer, so
    # dropout draws the same masks in the recomputation: same bytes as without it.
    # transformers also makes the (frozen) input embeddings' output require grad, as peft
    # needs for a checkpointed first layer to have a graph to backpropagate through
    # (tests/test_compute.py checks it).
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    base.config.use_cache = False  # a KV cache is useless in training and warns with it


def check_adapter(cfg: Config, model) -> None:
    """The adapter must be float32 whatever the base dtype: a bfloat16 adapter would round
    away most updates (8 bits of mantissa) and differ from the documented semantics."""
    import torch

    wrong = {str(p.dtype) for p in model.parameters() if p.requires_grad} - {str(torch.float32)}
    if wrong:
        raise RuntimeError(f"adapter weights are {sorted(wrong)}, expected torch.float32")


def optimizer_kwargs(cfg: Config) -> dict:
    """The update kernel: torch's single-tensor loop, or its fused kernel.

    Both are deterministic on CPU and CUDA (elementwise, no reductions across threads):
    two runs with the fused kernel on a CPU gave the same bytes, as do resumes (the test
    suite checks both). foreach (multi-tensor) stays off: same math as the loop in
    another order of launches, no gain on CPU.
    """
    fused = cfg.train.fused_optimizer
    return {"foreach": False, "fused": fused}
