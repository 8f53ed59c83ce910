"""`ft migrate`: move the recipe to another base model as one reviewable change.

    uv run ft migrate --hub-id ORG/NAME --revision <40 hex> [--tokenizer-revision <40 hex>]
    uv run ft migrate --path base/tiny-llama-v2 --sha256 <64 hex> [--build tiny-v2]

Edits the `model.base` block of the config (default configs/recipe.yaml) and writes
migration.md: for every training split and eval suite, the tokenizer drift between the
old base and the new one (rows whose token count crosses `data.max_seq_len` in either
direction, named; tokens lost to truncation before and after; the distribution of the
per-row token-count change), whether the special tokens and the chat template changed,
the parameter count and architecture change, and the commands that follow (train, gate
against the last release on the old base, open the pull request). Nothing trains here.
`ft plan` recomputes the same drift section for a pull request that changes the base
(`plan_section`), so the comment never trusts a committed migration.md.
Token counts are those `ft train` sees: data/loader.py's `encode`, untruncated.
"""

import re
from pathlib import Path

from ..config import BaseModelSpec, Config, load_config
from ..errors import UserError
from ..util.hashing import sha256_tree, write_atomic

QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)


# --- loading a base: tokenizer, config, parameter count -----------------------------------


def _source(spec: BaseModelSpec) -> tuple[str, str | None, str | None]:
    """(path or hub id, model revision, tokenizer revision)."""
    if spec.path is not None:
        return spec.path, None, None
    return spec.hub_id, spec.revision, spec.tokenizer_revision or spec.revision


def _check_local(spec: BaseModelSpec, key: str, where: str) -> None:
    path = Path(spec.path)
    if not path.exists() and spec.build is not None:
        from ..model.tiny import init_tiny

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
    from ..data.loader import encode_rows
    from ..evaluate.suites import suite_examples

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
    from ..data.build import run_pipeline
    from ..data.suites import load_suites

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


# --- rendering ------------------------------------------------------------------------------


def _pin(spec: dict) -> str:
    if spec.get("path"):
        return f"`{spec['path']}` sha256 `{spec['sha256']}`"
    tok = spec.get("tokenizer_revision")
    return f"`{spec['hub_id']}` @ `{spec['revision']}`" + (
        f" (tokenizer @ `{tok}`)" if tok and tok != spec["revision"] else ""
    )


def _row_text(row: dict) -> str:
    if "messages" in row:  # a chat row: its last two turns
        text = " → ".join(str(m.get("content", "")) for m in row["messages"][-2:])
    else:
        text = f"{row.get('prompt', '')} → {row.get('response', '')}"
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def drift_section(result: dict, limit: int = 25) -> list[str]:
    """Markdown: the per-split/suite drift table, then the rows that cross the window."""
    rows = result["_rows"]
    sets = [k for k in result if k != "_rows"]
    lines = [
        "| rows | count | over max_seq_len before → after | now truncated | now fit | "
        "tokens lost before → after | per-row change p0 / p10 / p50 / p90 / p100 (mean) |",
        "| --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for name in sets:
        d = result[name]
        q = d["change_quantiles"]
        dist = " / ".join(f"{v:+d}" for v in q.values()) + f" ({d['change_mean']:+.1f})"
        lines.append(
            f"| {name} | {d['rows']} | {d['over_before']} → {d['over_after']} | "
            f"{len(d['now_over'])} | {len(d['now_fit'])} | {d['lost_before']} → "
            f"{d['lost_after']} | {dist} |"
        )
    crossing = [
        (name, kind, i)
        for name in sets
        for kind in ("now_over", "now_fit")
        for i in result[name][kind]
    ]
    if crossing:
        lines += [
            "",
            f"Rows that cross the {result[sets[0]]['max_seq_len']}-token window "
            f"({len(crossing)}; first {min(limit, len(crossing))} shown):",
            "",
            "| rows | row | tokens before → after | | text |",
            "| --- | ---: | --- | --- | --- |",
        ]
        for name, kind, i in crossing[:limit]:
            a, b = result[name]["counts"][i]
            what = "now truncated" if kind == "now_over" else "now fits"
            lines.append(f"| {name} | {i} | {a} → {b} | {what} | {_row_text(rows[name][i])} |")
    else:
        lines += ["", "No row crosses the context window either way."]
    return lines


def measure(cfg: Config, old: BaseModelSpec, new: BaseModelSpec, where: str, key: str) -> dict:
    """Everything the drift report shows: per row set, tokenizer facts, architectures."""
    old_tok = load_tokenizer(old, "model.base", where)
    new_tok = load_tokenizer(new, key, where)
    return {
        "result": compare(cfg, old_tok, new_tok),
        "facts": {"old": tokenizer_facts(old_tok), "new": tokenizer_facts(new_tok)},
        "arch": {"old": architecture(old), "new": architecture(new)},
    }


def body(old: dict, new: dict, measured: dict, heading: str = "##") -> list[str]:
    """The report without its title and next steps: `ft plan` shows the same lines."""
    result, facts, arch = measured["result"], measured["facts"], measured["arch"]
    old_t, new_t = facts["old"], facts["new"]
    old_a, new_a = arch["old"], arch["new"]
    specials_same = old_t["special_tokens"] == new_t["special_tokens"]
    template_same = old_t["chat_template"] == new_t["chat_template"]
    keys = [k for k in old_a if k != "parameters" and old_a[k] != new_a[k]]
    delta = new_a["parameters"] - old_a["parameters"]
    return [
        f"- from: {_pin(old)}",
        f"- to: {_pin(new)}",
        "",
        f"{heading} Tokenizer drift",
        "",
        "Token counts as `ft train` encodes each row (prompt, response, special tokens), "
        "untruncated, with the old and the new tokenizer.",
        "",
        *drift_section(result),
        "",
        f"{heading} Tokenizer",
        "",
        "| | before | after | |",
        "| --- | --- | --- | --- |",
        f"| vocabulary | {old_t['vocab_size']} | {new_t['vocab_size']} | "
        f"{'same' if old_t['vocab_size'] == new_t['vocab_size'] else 'changed'} |",
        f"| special tokens | {_specials(old_t)} | {_specials(new_t)} | "
        f"{'same' if specials_same else '**changed**'} |",
        f"| chat template | {'yes' if old_t['chat_template'] else 'none'} | "
        f"{'yes' if new_t['chat_template'] else 'none'} | "
        f"{'same' if template_same else '**changed**'} |",
        "",
        f"{heading} Model",
        "",
        f"Parameters: {old_a['parameters']:,} → {new_a['parameters']:,} ({delta:+,}). "
        + (
            "Architecture unchanged."
            if not keys and old_a["architectures"] == new_a["architectures"]
            else "Changed: "
            + ", ".join(
                f"{k} {old_a[k]} → {new_a[k]}"
                for k in (
                    ["architectures"] if old_a["architectures"] != new_a["architectures"] else []
                )
                + keys
            )
            + "."
        ),
    ]


def render(config_path: str, old: dict, new: dict, measured: dict) -> str:
    lines = [
        "# Base-model migration",
        "",
        f"<!-- Written by `ft migrate`; {config_path} was edited with it. -->",
        "",
        *body(old, new, measured),
        "",
        "## Next",
        "",
        "```bash",
        "uv run ft data check                    # the data is unchanged; the base is not",
        f"uv run ft train --config {config_path} --out runs/migration",
        "uv run ft reproduce runs/migration",
        "uv run ft gate runs/migration           # per segment, vs the last release (old base)",
        f"git checkout -b migrate-base && git add {config_path} migration.md && "
        "git commit -m 'Migrate the base model'",
        "```",
        "",
        "Open the pull request: `ft plan` repeats the drift section in its comment, and the "
        "report shows the gate table against the last release on the old base. A gate that "
        "fails on purpose is waived in the release tag (docs/evaluation.md).",
        "",
    ]
    return "\n".join(lines)


def _specials(t: dict) -> str:
    return ", ".join(f"{n} `{v}`={i}" for n, (v, i) in t["special_tokens"].items()) or "none"


# --- editing the config --------------------------------------------------------------------

# `base:` at some indent, then every deeper-indented, comment or blank line after it.
_BASE_BLOCK = re.compile(
    r"(?m)^(?P<indent>[ ]+)base:[ \t]*(#.*)?\n"
    r"(?P<body>(?:(?P=indent)[ ]+.*\n|[ \t]*#.*\n|[ \t]*\n)*)"
)


def base_lines(spec: BaseModelSpec, indent: str) -> list[str]:
    pad = indent + "  "
    if spec.path is not None:
        lines = [
            f"{pad}path: {spec.path}   # base model directory (set by ft migrate: migration.md)",
            f"{pad}sha256: {spec.sha256}  # content hash; a mismatch stops the run",
        ]
        if spec.build is not None:
            lines.append(f"{pad}build: {spec.build}   # rebuilt by `ft base init-tiny` when absent")
        return lines
    lines = [
        f"{pad}hub_id: {spec.hub_id}   # hub repo of the base (set by ft migrate: migration.md)",
        f'{pad}revision: "{spec.revision}"  # 40-hex commit: a branch or tag name is refused',
    ]
    if spec.tokenizer_revision is not None:
        lines.append(
            f'{pad}tokenizer_revision: "{spec.tokenizer_revision}"  # the tokenizer\'s commit'
        )
    return lines


def edit_config(path: str, spec: BaseModelSpec) -> str:
    """The config text with its `model.base` block replaced (comments elsewhere kept)."""
    text = Path(path).read_text()
    match = _BASE_BLOCK.search(text)
    if match is None:
        raise UserError(
            "found no `base:` block under `model:`",
            file=path,
            key="model.base",
            fix="write model.base by hand (docs/migration.md shows both forms)",
        )
    new = "\n".join(base_lines(spec, match["indent"])) + "\n"
    trailing = re.search(r"\n((?:[ \t]*\n)*)$", match["body"])[1]  # blank lines after it
    head = text[: match.start("body")]
    return head + new + trailing + text[match.end("body") :]


# --- the command ---------------------------------------------------------------------------


def _validate(config: str, text: str) -> None:
    import yaml
    from pydantic import ValidationError

    from ..config import Config

    try:
        Config.model_validate(yaml.safe_load(text))
    except (ValidationError, yaml.YAMLError) as e:
        raise UserError(
            f"the edited config would not validate ({str(e).splitlines()[0]})",
            file=config,
            key="model.base",
            fix="edit model.base by hand (docs/migration.md shows both forms)",
        ) from None


def new_spec(
    hub_id: str | None,
    revision: str | None,
    tokenizer_revision: str | None,
    path: str | None,
    sha256: str | None,
    build: str | None,
) -> BaseModelSpec:
    from pydantic import ValidationError

    if (hub_id is None) == (path is None):
        raise UserError(
            "name the new base once", key="--hub-id/--path", fix="pass --hub-id or --path"
        )
    fields = {
        "hub_id": hub_id,
        "revision": revision,
        "tokenizer_revision": tokenizer_revision,
        "path": path,
        "sha256": sha256,
        "build": build,
    }
    try:
        return BaseModelSpec.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        key = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "--hub-id/--path"
        raise UserError(
            err["msg"].removeprefix("Value error, "),
            key=key,
            fix="--revision and --tokenizer-revision are 40-hex commits; --sha256 is what "
            "`ft base hash DIR` prints",
        ) from None


def main(
    config: str,
    hub_id: str | None = None,
    revision: str | None = None,
    tokenizer_revision: str | None = None,
    path: str | None = None,
    sha256: str | None = None,
    build: str | None = None,
    out: str = "migration.md",
) -> int:
    cfg = load_config(config)
    spec = new_spec(hub_id, revision, tokenizer_revision, path, sha256, build)
    old = cfg.model.base
    if old.model_dump() == spec.model_dump():
        raise UserError(
            "the config already trains on this base", file=config, key="model.base",
            fix="name another base",
        )  # fmt: skip
    edited = edit_config(config, spec)
    measured = measure(cfg, old, spec, config, "--hub-id" if hub_id else "--path")
    result = measured["result"]
    report = render(config, old.model_dump(), spec.model_dump(), measured)
    _validate(config, edited)  # the edited config must load before either file is written
    write_atomic(out, report)
    write_atomic(config, edited)
    sets = [k for k in result if k != "_rows"]
    crossing = sum(len(result[k]["now_over"]) + len(result[k]["now_fit"]) for k in sets)
    print(
        f"edited {config} (model.base) and wrote {out}: {crossing} row(s) cross the "
        f"{cfg.data.max_seq_len}-token window; next: uv run ft train --config {config}"
    )
    return 0


def plan_section(cfg: Config, path: str, old_base: dict) -> list[str]:
    """`ft plan`: the drift section for a config whose model.base differs from the base
    branch's (`old_base`, its raw YAML mapping). A base that cannot be loaded here is
    named instead of measured."""
    from pydantic import ValidationError

    lines = [f"### Base model change in `{path}`", ""]
    try:
        old = BaseModelSpec.model_validate(old_base)
    except ValidationError as e:  # the base branch's config is not this branch's to fix
        return [*lines, f"The base branch's `model.base` does not validate: {e.errors()[0]['msg']}"]
    try:
        measured = measure(cfg, old, cfg.model.base, path, "model.base")
    except UserError as e:
        return [*lines, f"Drift not measured: {e.format()}"]
    return [*lines, *body(old.model_dump(), cfg.model.base.model_dump(), measured, "####")]
