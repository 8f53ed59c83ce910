"""The model stage: the base model at its pin, plus a LoRA adapter from peft.

A local base is checked against its content hash before loading; a hub base is
loaded at its 40-hex revision (its tokenizer at `tokenizer_revision`, defaulting
to the same commit). The adapter is created right after the caller has seeded
every generator, so its initial weights follow from the config seed.
"""

from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import UserError
from ..util.hashing import sha256_file, sha256_tree, tree_files

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",  # newer tokenizers keep the chat template beside the config
    "chat_template.json",
)


def ensure_local_base(cfg: Config) -> str:
    """Build the embedded base if absent (when the config says so), then verify its hash."""
    base = cfg.model.base
    assert base.path is not None, "called for a local base only"
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
    from transformers.utils import logging as hf_logging

    from . import quant

    hf_logging.disable_progress_bar()
    quant.check_installed(cfg)
    base = cfg.model.base
    dtype = getattr(torch, cfg.model.dtype)
    pins: dict[str, Any]
    tok_dir: str | Path
    if base.path is not None:
        pins = {"path": base.path, "sha256": ensure_local_base(cfg)}
        model, tokenizer = _from_pretrained(cfg, base.path, None, None, dtype, local_only=True)
        tok_dir = base.path
    else:
        hub_id, revision = base.hub_id, base.revision
        # The schema (BaseModelSpec._pinned) requires both for a base that is not local.
        assert hub_id is not None and revision is not None
        tok_revision = base.tokenizer_revision or revision
        model, tokenizer = _load_hub(cfg, hub_id, revision, tok_revision, dtype)
        # Every file of both snapshots, verified against the hub's content addresses, so a
        # corrupted cache fails here and `ft diff` names the file that moved.
        files = snapshot_files(cfg, hub_id, revision)
        tok_files = snapshot_files(cfg, hub_id, tok_revision)
        pins = {
            "hub_id": hub_id,
            "revision": revision,
            "tokenizer_revision": tok_revision,
            "files": files,
            "tokenizer_files": {n: h for n, h in tok_files.items() if n in TOKENIZER_FILES},
        }
        tok_dir = snapshot_dir(hub_id, tok_revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pins["tokenizer_sha256"] = tokenizer_hash(tok_dir)
    # The chat template is an input of its own: a change to it changes what the model is
    # trained on even where the rest of the tokenizer is equal (data/chat.py).
    from ..data.chat import template_sha256

    pins["chat_template_sha256"] = template_sha256(tokenizer)
    return quant.prepare(cfg, model), tokenizer, pins | quant.pins(cfg)


def _from_pretrained(cfg, source, revision, tok_revision, dtype, local_only: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import quant

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=tok_revision, local_files_only=local_only
        )
        with quant.quantizing(cfg):
            model = AutoModelForCausalLM.from_pretrained(
                source,
                revision=revision,
                dtype=dtype,
                attn_implementation=cfg.model.attn_implementation,  # train/compute.py checked it
                local_files_only=local_only,
                # transformers looks for an adapter_config.json on the hub without passing
                # local_files_only on (minutes of retries when the hub is unreachable).
                adapter_kwargs={"local_files_only": local_only},
                **quant.load_kwargs(cfg),  # QLoRA: 4-bit NF4 base (model/quant.py)
            )
    except OSError as e:
        raise UserError(
            f"could not load base model {source!r}: {e}",
            file=cfg._path,
            key="model.base",
            fix="check the id and revision; for hub models set "
            "HF_TOKEN if gated and make sure the hub is reachable",
        ) from None
    return model, tokenizer


def _load_hub(cfg: Config, repo_id: str, revision: str, tok_revision: str, dtype):
    """A pinned commit never changes, so the local cache is tried first, without network;
    only what is missing is fetched, and only after a short probe says the hub is there."""
    from huggingface_hub import constants

    try:
        return _from_pretrained(cfg, repo_id, revision, tok_revision, dtype, local_only=True)
    except UserError as e:
        from_cache = e
    missing = [r for r in dict.fromkeys((revision, tok_revision)) if not _cached(repo_id, r)]
    if constants.HF_HUB_OFFLINE and not missing:
        raise from_cache  # the snapshot is there: a partial download or an unloadable model
    where = missing[0] if missing else revision
    fetch = f"hf download {repo_id} --revision {where}"
    if constants.HF_HUB_OFFLINE:
        raise UserError(
            f"revision {where} of {repo_id} is not (completely) in the local hub cache "
            f"{constants.HF_HUB_CACHE}, and HF_HUB_OFFLINE=1 forbids fetching it",
            file=cfg._path,
            key="model.base.revision",
            fix=f"fetch it once where the hub is reachable: `HF_HUB_OFFLINE=0 uv run {fetch}` "
            "(with HF_TOKEN if the model is gated), or unset HF_HUB_OFFLINE",
        )
    from ..util.net import check_reachable

    check_reachable(
        constants.ENDPOINT,
        what=f"the Hugging Face Hub to fetch {repo_id}@{where[:12]}",
        key="HF_ENDPOINT",
        fix="check the network (or HF_ENDPOINT), or fetch the revision into the cache "
        f"elsewhere (`uv run {fetch}`) and copy the cache here",
    )
    return _from_pretrained(cfg, repo_id, revision, tok_revision, dtype, local_only=False)


def snapshot_dir(repo_id: str, revision: str) -> Path:
    """The cache folder of a model repo at a commit (huggingface_hub's cache layout)."""
    from huggingface_hub import constants

    return Path(
        constants.HF_HUB_CACHE, f"models--{repo_id.replace('/', '--')}", "snapshots", revision
    )


def _cached(repo_id: str, revision: str) -> bool:
    return snapshot_dir(repo_id, revision).is_dir()


def snapshot_files(cfg: Config, repo_id: str, revision: str) -> dict[str, str]:
    """sha256 of every file in the snapshot, each checked against its blob's name.

    The cache stores a file as `blobs/<address>` linked from the snapshot: the address is
    the file's sha256 for LFS files (weights) and its git blob id (sha1 of
    `blob <size>\\0<bytes>`) for the others. A file whose bytes do not give its address
    was corrupted after download.
    """
    import os
    import re

    root = snapshot_dir(repo_id, revision)
    files = {}
    for rel in tree_files(root):
        path = root / rel
        digest, git_oid = _sha256_and_git_oid(path)
        address = Path(os.path.realpath(path)).name
        # A snapshot copied without its links (e.g. a plain directory) has no address to check.
        expected = {64: digest, 40: git_oid}.get(len(address))
        if re.fullmatch(r"[0-9a-f]+", address) and expected is not None and expected != address:
            raise UserError(
                f"{rel.as_posix()} of {repo_id}@{revision[:12]} in the hub cache is corrupted: "
                f"its bytes hash to {digest[:16]}..., the hub's address is {address[:16]}...",
                file=str(path),
                key="model.base",
                fix=f"delete {os.path.realpath(path)} and fetch the revision again "
                f"(`uv run hf download {repo_id} --revision {revision}`)",
            )
        files[rel.as_posix()] = digest
    return files


def _sha256_and_git_oid(path: Path) -> tuple[str, str]:
    import hashlib

    sha, oid = hashlib.sha256(), hashlib.sha1(usedforsecurity=False)
    oid.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            oid.update(chunk)
    return sha.hexdigest(), oid.hexdigest()


def add_lora(cfg: Config, model):
    """Wrap the base with a fresh LoRA adapter; the caller must have seeded torch first."""
    from peft import LoraConfig, get_peft_model

    lora = cfg.model.lora
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        # A list of names, or peft's own `all-linear` (every linear layer but the head).
        target_modules=lora.target_modules
        if isinstance(lora.target_modules, str)
        else list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        # A bfloat16 base still gets a float32 adapter (train/compute.py).
        return get_peft_model(model, peft_config, autocast_adapter_dtype=True)
    except ValueError as e:
        raise UserError(
            str(e),
            file=cfg._path,
            key="model.lora.target_modules",
            fix="name linear layers that exist in the base model (e.g. q_proj, v_proj)",
        ) from None
