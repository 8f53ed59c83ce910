"""migration.md and the drift section of `ft plan`, as Markdown lines."""


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
