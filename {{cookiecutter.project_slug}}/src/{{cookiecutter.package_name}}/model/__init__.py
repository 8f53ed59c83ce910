"""The model stage: the base model at its pin, plus a LoRA adapter from peft.

A local base is checked against its content hash before loading; a hub base is
loaded at its 40-hex revision (its tokenizer at `tokenizer_revision`, defaulting
to the same commit). The adapter is created right after the caller has seeded
every generator, so its initial weights follow from the config seed.
"""

from pathlib import Path

from ..config import Config
from ..errors import UserError
from ..util.hashing import sha256_file, sha256_tree

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)


def ensure_local_base(cfg: Config) -> str:
    """Build the embedded base if absent (when the config says so), then verify its hash."""
    base = cfg.model.base
    path = Path(base.path)
    if not path.exists() and base.build is not None:
        from .tiny import init_tiny

        init_tiny(path, base.build)
    if not (path / "config.json").is_file():
        raise UserError(
            f"base model not found at {path}",
            file=cfg._path,
            key="model.base.path",
            fix="point it at a model directory, or set `build: tiny` to build the embedded one",
        )
    actual = sha256_tree(path)
    if actual != base.sha256:
        raise UserError(
            f"{path} has content hash {actual}, the config pins {base.sha256}",
            file=cfg._path,
            key="model.base.sha256",
            fix="restore the pinned model (delete it if `build: tiny`), or pin the new "
            "one by setting the hash above if the change is intended",
        )
    return actual


def tokenizer_hash(tokenizer_dir: str | Path) -> str:
    """sha256 over the tokenizer files present, by name, so the tokenizer is pinned by content."""
    import hashlib

    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        f = Path(tokenizer_dir) / name
        if f.is_file():
            h.update(f"{name}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def load_base(cfg: Config):
    """Return (model, tokenizer, pins) where pins records exactly what was loaded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    base = cfg.model.base
    dtype = getattr(torch, cfg.model.dtype)
    if base.path is not None:
        pins = {"path": base.path, "sha256": ensure_local_base(cfg)}
        source, revision, tok_revision = base.path, None, None
    else:
        source, revision = base.hub_id, base.revision
        tok_revision = base.tokenizer_revision or base.revision
        pins = {"hub_id": base.hub_id, "revision": revision, "tokenizer_revision": tok_revision}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=tok_revision)
        model = AutoModelForCausalLM.from_pretrained(source, revision=revision, dtype=dtype)
    except OSError as e:
        raise UserError(
            f"could not load base model {source!r}: {e}",
            file=cfg._path,
            key="model.base",
            fix="check the id and revision; for hub models set "
            "HF_TOKEN if gated and make sure the hub is reachable",
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tok_dir = base.path if base.path is not None else _hub_snapshot(source, tok_revision)
    pins["tokenizer_sha256"] = tokenizer_hash(tok_dir) if tok_dir else None
    return model, tokenizer, pins


def _hub_snapshot(repo_id: str, revision: str) -> str | None:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            repo_id, revision=revision, local_files_only=True, allow_patterns=list(TOKENIZER_FILES)
        )
    except Exception:
        return None


def add_lora(cfg: Config, model):
    """Wrap the base with a fresh LoRA adapter; the caller must have seeded torch first."""
    from peft import LoraConfig, get_peft_model

    lora = cfg.model.lora
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, peft_config)
    except ValueError as e:
        raise UserError(
            str(e),
            file=cfg._path,
            key="model.lora.target_modules",
            fix="name linear layers that exist in the base model (e.g. q_proj, v_proj)",
        ) from None
