"""Tokenizer drift between two bases: how each training split and eval suite moves against
the context window, with the tokenizer facts and the architecture of both (no rendering, no
config editing). Token counts are those `ft train` sees: data/loader.py's `encode`, untruncated.
"""

from pathlib import Path

from ...config import BaseModelSpec, Config
from ...errors import UserError
from ...util.hashing import sha256_tree

QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)


# --- loading a base: tokenizer, config, parameter count -----------------------------------


def _source(spec: BaseModelSpec) -> tuple[str, str | None, str | None]:
    """(path or hub id, model revision, tokenizer revision)."""
    if spec.path is not None:
        return spec.path, None, None
    assert spec.hub_id is not None  # the schema gives exactly one of `path` and `hub_id`
    return spec.hub_id, spec.revision, spec.tokenizer_revision or spec.revision


def _check_local(spec: BaseModelSpec, key: str, where: str) -> None:
    assert spec.path is not None, "called for a local base only"
    path = Path(spec.path)
    if not path.exists() and spec.build is not None:
        from ...model.tiny import init_tiny

        init_tiny(path, spec.build)
    if not (path / "config.json").is_file():
        raise UserError(
            f"no model directory at {path}",
            file=where,
            key=key,
            fix="pass the directory holding config.json (`ft base init-tiny --variant tiny-v2 "
            "--out DIR` builds the embedded second base)",
        )
    actual = sha256_tree(path)
    if actual != spec.sha256:
        raise UserError(
            f"{path} has content hash {actual}, not {spec.sha256}",
            file=where,
            key=key,
            fix="pin the hash `ft base hash DIR` prints, or restore the directory",
        )


def load_tokenizer(spec: BaseModelSpec, key: str, where: str):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if spec.path is not None:
        _check_local(spec, key, where)
    source, _, tok_revision = _source(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=tok_revision)
    except OSError as e:
        raise UserError(
            f"could not load the tokenizer of {source!r}: {e}",
            file=where,
            key=key,
            fix="check the id and revision; hub models need the hub (and HF_TOKEN if gated)",
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def architecture(spec: BaseModelSpec) -> dict:
    """The model's class, shape and parameter count, from its config alone (meta device:
    no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    source, revision, _ = _source(spec)
    config = AutoConfig.from_pretrained(source, revision=revision)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    keys = (
        "model_type",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "max_position_embeddings",
    )
    return {
        "architectures": list(getattr(config, "architectures", None) or []),
        **{k: getattr(config, k, None) for k in keys},
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def tokenizer_facts(tokenizer) -> dict:
    specials = {
        name: [value, tokenizer.convert_tokens_to_ids(value)]
        for name, value in sorted(tokenizer.special_tokens_map.items())
        if isinstance(value, str)
    }
    return {
        "vocab_size": len(tokenizer),
        "special_tokens": specials,
        "chat_template": getattr(tokenizer, "chat_template", None),
    }


# --- drift ----------------------------------------------------------------------------------


def token_counts(cfg: Config, name: str, rows: list[dict], tokenizer) -> list[int]:
    """Untruncated tokens per row, exactly as training (data/loader.py) or suite scoring
    (evaluate/suites.py) encodes it."""
    from ...data.loader import encode_rows
    from ...evaluate.suites import suite_examples

    if name.startswith("suite "):
        encoded = suite_examples(cfg, rows, tokenizer, 1 << 30)
    else:
        encoded = encode_rows(cfg.model_copy(update={"data": cfg.data.model_copy(
            update={"max_seq_len": 1 << 30})}), rows, tokenizer)  # fmt: skip
    return [len(e["input_ids"]) for e in encoded]


def _quantile(sorted_values: list[int], q: float) -> int:
    return sorted_values[round(q * (len(sorted_values) - 1))]


def drift(rows: list[dict], before: list[int], after: list[int], max_len: int) -> dict:
    """How a tokenizer change moves one set of rows against the context window."""
    changes = sorted(b - a for a, b in zip(before, after, strict=True))
    crossed_out = [
        i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a <= max_len < b
    ]
    crossed_in = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if b <= max_len < a]
    return {
        "rows": len(rows),
        "max_seq_len": max_len,
        "over_before": sum(n > max_len for n in before),
        "over_after": sum(n > max_len for n in after),
        "now_over": crossed_out,  # fitted before, truncated after
        "now_fit": crossed_in,  # truncated before, fit after
        "lost_before": sum(max(0, n - max_len) for n in before),
        "lost_after": sum(max(0, n - max_len) for n in after),
        "tokens_before": sum(before),
        "tokens_after": sum(after),
        "change_quantiles": {f"p{round(q * 100)}": _quantile(changes, q) for q in QUANTILES}
        if changes
        else {},
        "change_mean": sum(changes) / len(changes) if changes else 0.0,
        "longer": sum(c > 0 for c in changes),
        "shorter": sum(c < 0 for c in changes),
        "same": sum(c == 0 for c in changes),
        "counts": {i: [a, b] for i, (a, b) in enumerate(zip(before, after, strict=True))},
    }


def row_sets(cfg: Config) -> dict[str, list[dict]]:
    """Every training split (after the filters, as data.lock pins it) and every eval suite."""
    from ...data.build import run_pipeline
    from ...data.suites import load_suites

    rows: dict[str, list[dict]] = {}
    run_pipeline(cfg, sink=lambda split, chunk: rows.setdefault(f"split {split}", []).extend(chunk))
    for suite in load_suites(cfg):
        rows[f"suite {suite.name}"] = suite.rows
    return rows


def compare(cfg: Config, old_tok, new_tok) -> dict[str, dict]:
    sets = row_sets(cfg)
    return {
        name: drift(
            rows,
            token_counts(cfg, name, rows, old_tok),
            token_counts(cfg, name, rows, new_tok),
            cfg.data.max_seq_len,
        )
        for name, rows in sets.items()
    } | {"_rows": sets}


def measure(cfg: Config, old: BaseModelSpec, new: BaseModelSpec, where: str, key: str) -> dict:
    """Everything the drift report shows: per row set, tokenizer facts, architectures."""
    old_tok = load_tokenizer(old, "model.base", where)
    new_tok = load_tokenizer(new, key, where)
    return {
        "result": compare(cfg, old_tok, new_tok),
        "facts": {"old": tokenizer_facts(old_tok), "new": tokenizer_facts(new_tok)},
        "arch": {"old": architecture(old), "new": architecture(new)},
    }
