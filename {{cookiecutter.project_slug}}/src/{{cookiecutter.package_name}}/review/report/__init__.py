"""`ft report RUN_DIR`: a run against a baseline, as Markdown tables and PNG figures.

    uv run ft report runs/<id>                           # baseline: the latest release
    uv run ft report runs/<id> --baseline runs/<other>   # another run directory
    uv run ft report runs/<id> --baseline v0.3.0         # a release, pulled from the registry
    uv run ft report runs/<id> --baseline none --out report/

Writes OUT/report.md (default RUN_DIR/report/) with loss.png (training loss per
step, the baseline's curve overlaid, eval loss marked) and data.png (rows kept
after each filter) beside it. The sections: headline, metrics with deltas, data
diff (per-filter rows in -> out, training-set hash old -> new), config diff (changed
keys only), pins, reproduce status (RUN_DIR/verification.json).

The Markdown is written for a pull-request comment and a job summary. GitHub shows
no file that merely sits beside a comment, so every number that matters is in a
table and the loss curve is repeated as a text sparkline; the figures are relative
links that render wherever the report directory itself is viewed (the CI artifact,
a checkout, GitHub Pages), or under --figures-url where a workflow uploaded them.
The output directory is replaced whole: a reader never sees half a report.
"""

import json
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from ...closure.diff import changed_keys
from ...closure.manifest import read_manifest
from ...errors import UserError
from ...util.hashing import replace_dir, sha256_file

REPORT = "report.md"
LOSS_PNG, DATA_PNG = "loss.png", "data.png"
SPARKS = "▁▂▃▄▅▆▇█"
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


@dataclass
class Side:
    """One run of a comparison: a run directory or a pulled release."""

    label: str  # how tables name it: "this run", "`runs/x`", "v0.3.0"
    manifest: dict
    curve: list[dict] | None  # metrics.jsonl records, if the run or release carries them
    verification: dict | None
    verification_current: bool = False  # the record vouches for this very manifest.json
    reproduce_md: str | None = None
    drill: dict | None = None


# --- loading ------------------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise UserError(
            f"not valid JSON ({e})",
            file=str(path),
            fix="restore the file the command wrote, or re-run that command",
        ) from None
    return data if isinstance(data, dict) else None


def read_curve(path: Path) -> list[dict] | None:
    """The records of a metrics.jsonl ({step, loss, lr}), or None if the file is absent."""
    if not path.is_file():
        return None
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records.append(
                {
                    "step": int(record["step"]),
                    "loss": float(record["loss"]),
                    **{k: v for k, v in record.items() if k not in ("step", "loss")},
                }
            )
        except (ValueError, KeyError, TypeError):
            raise UserError(
                f"line {n} is not a metric record with step and loss",
                file=str(path),
                fix="metrics.jsonl is written by `ft train`; restore it from the run",
            ) from None
    return records


def load_run(run_dir: str | Path, label: str | None = None) -> Side:
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    verification = _read_json(run_dir / "verification.json")
    current = bool(verification) and verification.get("manifest_sha256") == sha256_file(
        run_dir / "manifest.json"
    )
    reproduce_md = run_dir / "REPRODUCE.md"
    return Side(
        label=label or f"`{run_dir}`",
        manifest=manifest,
        curve=read_curve(run_dir / "metrics.jsonl"),
        verification=verification,
        verification_current=current,
        reproduce_md=reproduce_md.read_text() if reproduce_md.is_file() else None,
        drill=_read_json(run_dir / "drill.json"),
    )


def load_release(registry, version: str) -> Side:
    """A published version, pulled (every hash checked) into a scratch directory and read."""
    with tempfile.TemporaryDirectory(prefix="ft-report-") as tmp:
        dest = Path(tmp) / version
        registry.pull(version, dest)
        return load_run(dest, label=version)


def resolve_baseline(
    spec: str | None, registry_uri: str | None, run_dir: Path
) -> tuple[Side | None, str]:
    """(the baseline, a sentence saying what it is). `spec` is a run dir, a version, or none.

    Without a spec: the latest release in the registry that is not this very run (after
    `ft publish`, the run is the latest release, and comparing it with itself says nothing).
    """
    from ...publish.registries import VERSION, open_registry

    if spec is not None and spec.lower() == "none":
        return None, "none (`--baseline none`)"
    if spec is not None and not VERSION.fullmatch(spec):
        path = Path(spec)
        if not path.is_dir():
            raise UserError(
                f"{spec!r} is neither a run directory nor a release version",
                key="--baseline",
                fix="pass runs/<id>, a version such as v1.2.0, or none",
            )
        return load_run(path), f"run `{spec}`"
    uri = registry_uri or read_manifest(run_dir)["config"]["publish"]["registry"]
    registry = open_registry(uri)
    if spec is not None:
        return load_release(registry, spec), f"release `{spec}` from `{uri}`"
    own = sha256_file(Path(run_dir) / "manifest.json")
    for version in reversed(registry.versions()):
        if (registry.show(version).get("meta") or {}).get("manifest_sha256") != own:
            return load_release(registry, version), (
                f"release `{version}`, the latest in `{uri}` other than this run"
            )
    return None, f"none: `{uri}` holds no other published version yet"


# --- numbers and text ---------------------------------------------------------------------


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.2f}"
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3g}"


def short(value, n: int = 12) -> str:
    return "-" if value is None else str(value)[:n]


def cell(text) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def code(text) -> str:
    return "-" if text is None else f"`{cell(text)}`"


def delta(new, old, key: str = "") -> tuple[str, str]:
    """(signed difference with percentage, verdict) for numbers; ('', '') otherwise."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (new, old))
    if not numeric:
        return "", ""
    d = new - old
    if d == 0:
        return "0", ""
    pct = f" ({d / old * 100:+.1f}%)" if old else ""
    text = ("+" if d > 0 else "") + fmt(d) + pct
    verdict = ""
    if d and ("loss" in key or "perplexity" in key):
        verdict = "better" if d < 0 else "worse"
    return text, verdict


def sparkline(values: list[float], lo: float | None = None, hi: float | None = None) -> str:
    if not values:
        return ""
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    span = (hi - lo) or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * len(SPARKS)))] for v in values)


def config_changes(old: dict, new: dict) -> list[tuple[str, object, object]]:
    return changed_keys(old, new)


def splits(m: dict) -> list[tuple[str, dict]]:
    """The data splits, train first."""
    return sorted(m["data"]["splits"].items(), key=lambda kv: (kv[0] != "train", kv[0]))


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


# --- figures ------------------------------------------------------------------------------


def new_figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas, without pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    buf = BytesIO()
    # No "Software" stamp: the same inputs give the same bytes on any matplotlib patch release.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _who(side: Side, run: Side) -> str:
    """How a figure's legend names a side."""
    return (
        f"this run ({side.manifest['run_id']})"
        if side is run
        else f"baseline ({side.label.strip('`')})"
    )


def loss_figure(run: Side, base: Side | None) -> bytes:
    fig = new_figure(8, 4.5)
    ax = fig.add_subplot()
    for side, color, style in ((run, "C0", "-"), (base, "C1", "--")):
        if side is None:
            continue
        m, who = side.manifest["metrics"], _who(side, run)
        if side.curve:
            ax.plot(
                [r["step"] for r in side.curve],
                [r["loss"] for r in side.curve],
                style,
                color=color,
                marker="o",
                markersize=3,
                label=f"{who}: train loss",
            )
            last_step = side.curve[-1]["step"]
        elif "train_loss_first" in m:  # only the manifest's summary travelled with it
            first_step = side.manifest["config"]["train"]["log_every"]
            last_step = m.get("steps", first_step)
            ax.plot(
                [first_step, last_step],
                [m["train_loss_first"], m["train_loss_last"]],
                ":",
                color=color,
                marker="x",
                label=f"{who}: train loss, first/last only",
            )
        else:
            last_step = m.get("steps", 0)
        if m.get("eval_loss") is not None:
            ax.scatter(
                [last_step],
                [m["eval_loss"]],
                marker="*",
                s=160,
                color=color,
                zorder=3,
                edgecolors="black",
                linewidths=0.5,
                label=f"{who}: eval loss {m['eval_loss']:.4f}",
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean per token)")
    ax.set_title(
        f"Training loss of {run.manifest['run_id']}"
        + (f" vs baseline {base.label.strip('`')}" if base else "")
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def data_figure(run: Side, base: Side | None) -> bytes:
    """Rows kept after each filter, per split; stages whose counts moved are shaded red."""
    names = [split for split, _ in splits(run.manifest)]
    fig = new_figure(10, 4.5)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    sides = [(run, "C0")] + ([(base, "C1")] if base else [])
    for ax, split in zip(axes, names, strict=True):
        stages: list[str] = []
        counts = []
        for side, _ in sides:
            info = side.manifest["data"]["splits"].get(split, {"rows_in": 0, "steps": []})
            kept = {"source": info["rows_in"]} | {s["filter"]: s["rows_out"] for s in info["steps"]}
            stages += [s for s in kept if s not in stages]
            counts.append(kept)
        height = 0.8 / len(sides)
        for i, ((side, color), kept) in enumerate(zip(sides, counts, strict=True)):
            ys = [p + (i - (len(sides) - 1) / 2) * height for p in range(len(stages))]
            bars = ax.barh(
                ys,
                [kept.get(s, 0) for s in stages],
                height=height,
                color=color,
                label=_who(side, run) if ax is axes[0] else None,
            )
            ax.bar_label(bars, fmt="%d", fontsize=7, padding=2)
        ax.set_yticks(range(len(stages)), stages, fontsize=8)
        if base:
            for tick, stage in zip(ax.get_yticklabels(), stages, strict=True):
                if counts[0].get(stage) != counts[1].get(stage):
                    position = stages.index(stage)
                    ax.axhspan(position - 0.45, position + 0.45, color="C3", alpha=0.08)
                    tick.set_color("C3")
                    tick.set_fontweight("bold")
        ax.invert_yaxis()  # pipeline order, top to bottom
        ax.set_xlabel("rows kept")
        ax.set_title(f"{split}: rows after each filter", fontsize=10)
        ax.margins(x=0.15)
        ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside upper center", ncols=len(sides), fontsize=8, frameon=False)
    return png_bytes(fig)


# --- the report ---------------------------------------------------------------------------


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


def write_dir(out: Path, files: dict[str, bytes], marker: str) -> None:
    """Make `out` hold exactly `files`: written into a temp dir beside it, then renamed.

    A directory that exists must be empty or hold `marker` (an earlier output of the
    same command), so a mistyped --out never deletes someone's files.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / marker).is_file())):
        raise UserError(
            f"exists and holds no {marker}: not an earlier output of this command",
            file=str(out),
            key="--out",
            fix="pass a new or empty directory",
        )
    replace_dir(out, files)


def build(
    run_dir: str,
    baseline: str | None = None,
    registry: str | None = None,
    figures_url: str | None = None,
) -> dict[str, bytes]:
    """The report's files, by name: report.md, loss.png, data.png."""
    run = load_run(run_dir, label="this run")
    base, how = resolve_baseline(baseline, registry, Path(run_dir))
    return {
        REPORT: render(run, base, how, str(run_dir), figures_url).encode(),
        LOSS_PNG: loss_figure(run, base),
        DATA_PNG: data_figure(run, base),
    }


def main(
    run_dir: str,
    baseline: str | None = None,
    registry: str | None = None,
    out: str | None = None,
    figures_url: str | None = None,
) -> int:
    files = build(run_dir, baseline, registry, figures_url)
    target = Path(out) if out else Path(run_dir) / "report"
    write_dir(target, files, REPORT)
    print(f"wrote {target / REPORT} ({', '.join(n for n in files if n != REPORT)} beside it)")
    return 0
