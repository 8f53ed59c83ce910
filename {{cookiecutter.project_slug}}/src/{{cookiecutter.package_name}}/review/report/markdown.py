"""report.md: the sections of a run report, as Markdown lines."""

import json

from ...closure.diff import changed_keys
from ..behaviour import gates_section, suites_section
from .figures import DATA_PNG, LOSS_PNG
from .format import cell, code, delta, fmt, short, sparkline
from .load import Side, splits

# Listed first, in this order; any other metric follows alphabetically.
METRIC_ORDER = (
    "eval_loss",
    "eval_perplexity",
    "train_loss_last",
    "train_loss_first",
    "train_loss_min",
    "steps",
    "eval_tokens",
)


def config_changes(old: dict, new: dict) -> list[tuple[str, object, object]]:
    return changed_keys(old, new)


def train_rows(m: dict) -> int | None:
    return m["data"]["splits"].get("train", {}).get("rows")


def eval_set_changed(run: Side, base: Side) -> bool:
    sha = [side.manifest["data"]["splits"].get("eval", {}).get("sha256") for side in (run, base)]
    return sha[0] != sha[1]


def metric_table(run: Side, base: Side | None) -> list[str]:
    def values(side: Side) -> dict:
        m = side.manifest
        return {
            **m["metrics"],
            "train_rows": train_rows(m),
            "tokens_per_s": (m.get("timing") or {}).get("tokens_per_s"),
        }

    a = values(run)
    b = values(base) if base else {}
    keys = [k for k in METRIC_ORDER if k in a or k in b]
    keys += sorted((a.keys() | b.keys()) - set(keys) - {"train_rows", "tokens_per_s"})
    keys += ["train_rows", "tokens_per_s"]
    if base is None:
        rows = ["| metric | this run |", "| --- | ---: |"]
        rows += [f"| {k} | {fmt(a.get(k))} |" for k in keys]
        return rows
    rows = [
        f"| metric | this run | baseline ({cell(base.label)}) | Δ | |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for k in keys:
        d, verdict = delta(a.get(k), b.get(k), k)
        name = f"**{k}**" if k == "eval_loss" else k
        rows.append(f"| {name} | {fmt(a.get(k))} | {fmt(b.get(k))} | {d} | {verdict} |")
    if eval_set_changed(run, base):
        rows += [
            "",
            "The eval split changed between the two runs (see Data), so the eval "
            "metrics measure different rows.",
        ]
    rows += ["", "tokens_per_s is wall-clock throughput: comparable on the same hardware only."]
    return rows


def data_section(run: Side, base: Side | None) -> list[str]:
    new = run.manifest["data"]
    if base is None:
        rows = ["| split | filter | rows in -> out |", "| --- | --- | --- |"]
        for split, info in splits(run.manifest):
            rows += [
                f"| {split} | `{s['filter']}` | {s['rows_in']} -> {s['rows_out']} |"
                for s in info["steps"]
            ]
            rows.append(f"| {split} | **final** | {info['rows']} rows `{short(info['sha256'])}` |")
        return rows
    from ...data.lock import input_differences
    from ..plan import data_rows

    old = base.manifest["data"]
    rows = [
        "| split | filter | baseline rows in -> out | this run |",
        "| --- | --- | --- | --- |",
        *data_rows(old, new),
    ]
    moved = input_differences(old, new)
    if moved:
        rows += ["", "Inputs that moved: " + "; ".join(moved) + "."]
    elif old["splits"] == new["splits"]:
        rows += ["", "No data change."]
    return rows


def config_section(run: Side, base: Side | None) -> list[str]:
    if base is None:
        return [
            f"Config sha256 `{short(run.manifest['config_sha256'])}` "
            f"(`{run.manifest['command']['config']}`); no baseline to compare with."
        ]
    changes = config_changes(base.manifest["config"], run.manifest["config"])
    if not changes:
        return ["No config key changed."]
    return [
        "| key | baseline | this run |",
        "| --- | --- | --- |",
        *[f"| `{k}` | {code(_yamlish(a))} | {code(_yamlish(b))} |" for k, a, b in changes],
    ]


def _yamlish(value) -> str | None:
    if value is None:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value)


def pins(m: dict) -> dict[str, str | None]:
    base, env, git = m["base_model"], m["environment"], m["git"]
    commit = git.get("commit")
    return {
        "git commit": f"{short(commit)}{' (dirty)' if git.get('dirty') else ''}"
        if commit
        else None,
        "base model": (
            f"{base['hub_id']}@{short(base['revision'])}"
            if "hub_id" in base
            else f"{base['path']} sha256 {short(base['sha256'])}"
        ),
        "tokenizer sha256": short(base.get("tokenizer_sha256")),
        "data train sha256": short(m["data"]["splits"].get("train", {}).get("sha256")),
        "data eval sha256": short(m["data"]["splits"].get("eval", {}).get("sha256")),
        "config sha256": short(m["config_sha256"]),
        "seed": str(m["seed"]),
        "image digest": short_image(env.get("image_digest")),
        "uv.lock sha256": short(env.get("uv_lock_sha256")),
        "hardware": hardware(m["hardware"]),
    }


def short_image(image: str | None) -> str:
    if not image:
        return "none (local run)"
    name, sep, digest = image.partition("@sha256:")
    return f"{name}@sha256:{short(digest)}" if sep else image


def hardware(hw: dict) -> str:
    if hw.get("device_type") == "cuda":
        return f"{hw.get('device_count')} x {hw.get('device_name')}, {hw.get('world_size')} proc"
    return f"CPU {hw.get('cpu_isa')}, {hw.get('world_size')} proc"


def pins_section(run: Side, base: Side | None) -> list[str]:
    a = pins(run.manifest)
    if base is None:
        return [
            "| pin | this run |",
            "| --- | --- |",
            *[f"| {k} | {code(v)} |" for k, v in a.items()],
        ]
    b = pins(base.manifest)
    rows = ["| pin | baseline | this run |", "| --- | --- | --- |"]
    for k in a:
        mark = "" if a[k] == b.get(k) else " **changed**"
        rows.append(f"| {k} | {code(b.get(k))} | {code(a[k])}{mark} |")
    return rows


def reproduce_badge(side: Side) -> str:
    v = side.verification
    if v is None:
        return "not reproduced yet"
    if not side.verification_current:
        return "reproduce record stale"
    return "✅ reproduced" if v.get("passed") else "❌ reproduction failed"


def reproduce_status(side: Side, run_ref: str | None = None) -> str:
    v = side.verification
    if v is None:
        return "not reproduced yet" + (f": run `uv run ft reproduce {run_ref}`" if run_ref else "")
    if not side.verification_current:
        return "stale: verification.json was written for another manifest.json"
    if v.get("passed"):
        compared = v.get("compared") or []
        return (
            f"✅ passed ({v.get('mode')} mode): {len(compared)} outputs compared, all equal; "
            f"{v.get('finished_at')}"
        )
    unequal = [c.get("file") for c in v.get("compared") or [] if not c.get("equal")]
    return f"❌ failed: {v.get('reason')}" + (f" (differ: {', '.join(unequal)})" if unequal else "")


def headline(run: Side, base: Side | None, changes: int) -> str:
    m = run.manifest["metrics"]
    parts = [f"**eval_loss {fmt(m.get('eval_loss'))}**"]
    if base is not None:
        b = base.manifest["metrics"]
        d, verdict = delta(m.get("eval_loss"), b.get("eval_loss"), "eval_loss")
        note = "; eval set changed: not like for like" if eval_set_changed(run, base) else ""
        parts[0] += f" vs {fmt(b.get('eval_loss'))} ({d}{', ' + verdict if verdict else ''}{note})"
        rows_a, rows_b = train_rows(run.manifest), train_rows(base.manifest)
        parts.append(
            f"train rows {fmt(rows_b)} -> {fmt(rows_a)}"
            if rows_a != rows_b
            else f"train rows {fmt(rows_a)} (unchanged)"
        )
        parts.append(f"{changes} config key(s) changed" if changes else "config unchanged")
    else:
        parts.append(f"train rows {fmt(train_rows(run.manifest))}")
    return " · ".join(parts)


def curve_table(run: Side, base: Side | None) -> list[str]:
    sides = [s for s in (run, base) if s is not None and s.curve]
    if not sides:
        return []
    losses = [r["loss"] for s in sides for r in s.curve]
    lo, hi = min(losses), max(losses)
    rows = [
        "| train loss | by step (shared scale) | first -> last | min |",
        "| --- | --- | --- | ---: |",
    ]
    for side in sides:
        values = [r["loss"] for r in side.curve]
        name = "this run" if side is run else f"baseline {side.label}"
        rows.append(
            f"| {cell(name)} | `{sparkline(values, lo, hi)}` | {fmt(values[0])} -> "
            f"{fmt(values[-1])} (step {side.curve[-1]['step']}) | {fmt(min(values))} |"
        )
    return rows


def render(
    run: Side, base: Side | None, baseline_how: str, run_ref: str, figures_url: str | None = None
) -> str:
    def fig(name: str) -> str:
        return f"{figures_url.rstrip('/')}/{name}" if figures_url else name

    changes = config_changes(base.manifest["config"], run.manifest["config"]) if base else []
    lines = [
        f"## Run report: `{run.manifest['run_id']}`",
        "",
        f"Baseline: {baseline_how}.",
        "",
        headline(run, base, len(changes)) + " · " + reproduce_badge(run),
        "",
    ]
    if base is not None and base.curve is None:
        lines += [
            "The baseline carries no metrics.jsonl, so only its first/last training loss is drawn.",
            "",
        ]
    lines += curve_table(run, base)
    lines += [
        "",
        f"![Training loss per step, this run vs the baseline]({fig(LOSS_PNG)})",
        f"![Rows kept after each data filter]({fig(DATA_PNG)})",
        "",
        "### Metrics",
        "",
        *metric_table(run, base),
        "",
        "### Eval suites",
        "",
        *suites_section(run.manifest, base.manifest if base else None),
        "",
        "### Gates",
        "",
        *gates_section(run.manifest, base.manifest if base else None),
        "",
        "### Data",
        "",
        *data_section(run, base),
        "",
        "### Config",
        "",
        *config_section(run, base),
        "",
        "### Pins",
        "",
        *pins_section(run, base),
        "",
        "### Reproduce",
        "",
        f"- this run: {reproduce_status(run, run_ref)}",
    ]
    if base is not None:
        lines.append(f"- baseline: {reproduce_status(base)}")
    lines += [
        "",
        f"<sub>`ft report {cell(run_ref)}`: figures {LOSS_PNG} and {DATA_PNG} lie "
        "beside report.md (in CI: the report artifact); hashes are shortened to 12 hex, "
        "full values are in manifest.json.</sub>",
        "",
    ]
    return "\n".join(lines)
