"""QLoRA: the frozen base loaded with 4-bit NF4 weights through bitsandbytes, LoRA on top.

    model:
      quantization: nf4       # null (default): the base in `model.dtype`

    uv sync --frozen --group qlora                    # bitsandbytes is an optional group
    uv run ft train --config configs/smoke.yaml --set model.quantization=nf4

The base's linear layers are stored as 4-bit NF4 codes with double-quantised block scales
(the QLoRA recipe), and computed in `model.dtype`; everything else (embeddings, norms, the
head) and the adapter stay in float32 (peft's `prepare_model_for_kbit_training`), so the
adapter and optimizer state are exact fp32 as without quantization. Quantisation happens
once, while loading, from the pinned base bytes: same bytes in, same codes out.

bitsandbytes 0.50 has a CPU path (its own CPU kernels for dequantisation and a torch
implementation of quantisation), so a QLoRA run trains, re-runs and resumes byte for byte on
CPU, tested in tests/test_quant.py; CUDA uses its CUDA kernels (docs/determinism.md says
what a GPU run needs).
"""

import logging
from contextlib import contextmanager

from ..config import Config
from ..errors import UserError
from ..util import groups


def check_installed(cfg: Config) -> None:
    """A QLoRA config on an environment without bitsandbytes: one line naming the fix."""
    if cfg.model.quantization is None or groups.installed("bitsandbytes"):
        return
    raise UserError(
        f"{cfg.model.quantization!r} needs bitsandbytes, which this environment lacks",
        file=cfg._path,
        key="model.quantization",
        fix=f"{groups.fix('bitsandbytes')} (or set model.quantization: null)",
    )


def load_kwargs(cfg: Config) -> dict:
    """Extra `from_pretrained` arguments that quantize the base (empty without quantization)."""
    if cfg.model.quantization is None:
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    compute = getattr(torch, cfg.model.dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":  # one process per GPU: each loads its copy onto its own device
        import os

        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_quant_storage=torch.uint8,
        ),
        # bitsandbytes quantises as weights move to their device: load straight onto it.
        "device_map": {"": device},
    }


@contextmanager
def quantizing(cfg: Config):
    """Around the base's load: quantise eagerly, and keep bitsandbytes' CPU notice quiet.

    bitsandbytes wraps its quantiser in `torch.compile` and silently falls back to eager code
    where compiling fails (no C compiler in the image): which path ran would depend on the
    machine. With dynamo off, every machine runs the same eager code.
    """
    if cfg.model.quantization is None:
        yield
        return
    import torch._dynamo

    # On CPUs with AVX512-BF16 it looks for an optional hub kernel (`kernels`) for 4-bit
    # inference and logs a warning when absent; its own CPU kernel is used instead.
    quiet = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with torch._dynamo.config.patch(disable=True):
            yield
    finally:
        quiet.setLevel(level)


def prepare(cfg: Config, model):
    """Ready a quantized base for adapter training (before `add_lora`); others pass through.

    peft's recipe: freeze the base, upcast its non-quantized parameters to float32 and let
    gradients reach the adapters through the frozen embeddings. Gradient checkpointing is
    left to `train.gradient_checkpointing`, not switched on here.
    """
    if cfg.model.quantization is None:
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def pins(cfg: Config) -> dict:
    """What the manifest records about the quantization, beside the base model pins."""
    if cfg.model.quantization is None:
        return {}
    from importlib import metadata

    return {
        "quantization": {
            "method": cfg.model.quantization,
            "double_quant": True,
            "compute_dtype": cfg.model.dtype,
            "bitsandbytes": metadata.version("bitsandbytes"),
        }
    }
