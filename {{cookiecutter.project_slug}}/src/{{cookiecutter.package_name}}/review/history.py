"""`ft history`: one static HTML page over every published version.

    uv run ft history                                   # the repo's registry (ft registry list)
    uv run ft history --registry file://./registry --out site/

Writes OUT/index.html (default site/) and OUT/reproduce/<version>.md, each
release's REPRODUCE.md, linked relatively from the page. The page shows metric
trajectories across releases (eval loss, last training loss), the training-loss
curves of every release, and a table of each version's pins with its reproduce
status (its verification.json). The monthly drill reports in an issue, not here
(docs/decisions/0023-the-drill-reports-in-an-issue.md).

Self-contained: inline CSS, figures embedded as base64 PNG data URIs drawn with
matplotlib, no script and nothing fetched at view time, so a workflow can publish
the directory with GitHub Pages as it is. The directory is replaced whole.
"""

import base64
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from .behaviour import metric_names
from .report import write_dir
from .report.figures import new_figure, png_bytes
from .report.format import fixed
from .report.load import Side, load_run
from .report.markdown import pins, reproduce_status
from .report.templating import render_template

INDEX = "index.html"
# The page's columns after version, published and reproduce: pins, by their name in
# report.markdown.pins().
PINS = ("git commit", "base model", "data train sha256", "image digest", "uv.lock sha256")


def collect(registry) -> list[tuple[str, dict, Side]]:
    """(version, its index, its files read) for every published version, oldest first."""
    releases = []
    for version in registry.versions():
        index = registry.show(version)
        with tempfile.TemporaryDirectory(prefix="ft-history-") as tmp:
            dest = Path(tmp) / version
            registry.pull(version, dest)
            releases.append((version, index, load_run(dest, label=version)))
    return releases


def trajectory_figure(releases: list[tuple[str, dict, Side]]) -> bytes:
    fig = new_figure(5.6, 3.4)
    ax = fig.add_subplot()
    versions = [v for v, _, _ in releases]
    for key, color, marker in (("eval_loss", "C0", "o"), ("train_loss_last", "C1", "s")):
        values = [side.manifest["metrics"].get(key) for _, _, side in releases]
        points = [(i, y) for i, y in enumerate(values) if y is not None]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, "-", color=color, marker=marker, label=key)
        for x, y in points:
            ax.annotate(
                f"{y:.4f}",
                (x, y),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=7,
                color=color,
            )
    ax.set_xticks(range(len(versions)), versions, rotation=30 if len(versions) > 6 else 0)
    ax.set_xlabel("release")
    ax.set_ylabel("loss (mean per token)")
    ax.set_title("Metrics across releases")
    ax.grid(alpha=0.3)
    ax.margins(x=0.1, y=0.15)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def curves_figure(releases: list[tuple[str, dict, Side]]) -> bytes | None:
    with_curves = [(v, side.curve) for v, _, side in releases if side.curve]
    if not with_curves:
        return None
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    fig = new_figure(5.6, 3.4)
    ax = fig.add_subplot()
    for i, (version, curve) in enumerate(with_curves):
        color = cmap(i / max(1, len(with_curves) - 1) * 0.85)
        ax.plot(
            [r["step"] for r in curve],
            [r["loss"] for r in curve],
            color=color,
            label=version,
            linewidth=1.6 if i == len(with_curves) - 1 else 1.0,
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss by release")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2 if len(with_curves) > 6 else 1)
    return png_bytes(fig)


def _badge(text: str, state: str, small: str | None = None) -> dict:
    return {"text": text, "state": state, "small": small}


def _when(stamp) -> str:
    """An ISO time as `YYYY-MM-DD HH:MMZ` (UTC stamps), anything else unchanged."""
    text = str(stamp or "-")
    if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?\+00:00", text):
        return text[:16].replace("T", " ") + "Z"
    return text


def _reproduce_badge(side: Side) -> dict:
    v = side.verification
    if v is None:
        return _badge("no record", "none")
    if v.get("passed") and side.verification_current:
        return _badge("passed", "pass", f"{v.get('mode')} · {_when(v.get('finished_at'))}")
    return _badge("failed", "fail", reproduce_status(side).removeprefix("❌ "))


def suites_cell(manifest: dict) -> str:
    """One line per suite: each segment's first generation metric (else its loss)."""
    parts = []
    for name, suite in (manifest.get("eval_suites") or {}).items():
        metrics = metric_names(suite)
        if not metrics:
            continue
        metric = metrics[0]
        segs = " · ".join(
            f"{seg} {fixed(values.get(metric))}" for seg, values in suite["segments"].items()
        )
        parts.append(f"{name} {metric}: {segs}")
    return "; ".join(parts) or "-"


def _row(version: str, index: dict, side: Side) -> dict:
    """One release's row of the table, its values as the page shows them."""
    m = side.manifest
    return {
        "version": version,
        "reproduce_md": side.reproduce_md is not None,
        "published": _when(index.get("created_at")),
        "reproduce": _reproduce_badge(side),
        "metrics": m["metrics"],
        "train_rows": m["data"]["splits"].get("train", {}).get("rows"),
        "suites": suites_cell(m),
        "run_id": m.get("run_id"),
        "pins": pins(m),
    }


def render(uri: str, releases: list[tuple[str, dict, Side]], generated: str) -> str:
    figures = []
    if releases:
        figures.append((trajectory_figure(releases), "eval loss and last training loss by release"))
        curves = curves_figure(releases)
        if curves is not None:
            figures.append((curves, "training loss per step of each release"))
    return render_template(
        "history.html.j2",
        uri=uri,
        generated=generated,
        count=len(releases),
        figures=[{"alt": alt, "data": base64.b64encode(png).decode()} for png, alt in figures],
        rows=[_row(*release) for release in reversed(releases)],  # newest first
        pin_names=PINS,
    )


def build(registry_uri: str) -> dict[str, bytes]:
    from ..publish.registries import open_registry

    releases = collect(open_registry(registry_uri))
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    files = {INDEX: render(registry_uri, releases, generated).encode()}
    for version, _, side in releases:
        if side.reproduce_md is not None:
            files[f"reproduce/{version}.md"] = side.reproduce_md.encode()
    return files


def main(registry: str | None = None, out: str = "site") -> int:
    from ..publish.registries import resolve_registry

    registry = resolve_registry(registry)
    files = build(registry)
    write_dir(Path(out), files, INDEX)
    count = sum(1 for name in files if name.startswith("reproduce/"))
    print(f"wrote {Path(out) / INDEX} ({count} release(s) from {registry})")
    return 0
