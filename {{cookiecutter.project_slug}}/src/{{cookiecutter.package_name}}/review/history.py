"""`ft history`: one static HTML page over every published version.

    uv run ft history                                   # the repo's registry (ft registry list)
    uv run ft history --registry file://./registry --out site/

Writes OUT/index.html (default site/) and OUT/reproduce/<version>.md, each
release's REPRODUCE.md, linked relatively from the page. The page shows metric
trajectories across releases (eval loss, last training loss), the training-loss
curves of every release, and a table of each version's pins with its reproduce
status (its verification.json) and drill status (a drill.json in the entry, if
the scheduled re-training drill recorded one; otherwise "not run").

Self-contained: inline CSS, figures embedded as base64 PNG data URIs drawn with
matplotlib, no script and nothing fetched at view time, so a workflow can publish
the directory with GitHub Pages as it is. The directory is replaced whole.
"""

import base64
import html
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from .behaviour import history_cell
from .report import write_dir
from .report.figures import new_figure, png_bytes
from .report.format import fmt
from .report.load import Side, load_run
from .report.markdown import pins, reproduce_status

INDEX = "index.html"
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1f2328; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
.sub { color: #59636e; margin-top: 0; }
.figs { display: flex; flex-wrap: wrap; gap: 1rem; }
.figs img { max-width: 100%; border: 1px solid #d1d9e0; border-radius: 6px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 13px; }
th, td { border: 1px solid #d1d9e0; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fafbfc; }
td.when { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; font-size: 12px;
         white-space: nowrap; }
.pass { background: #dafbe1; color: #116329; } .fail { background: #ffebe9; color: #a40e26; }
.none { background: #eaeef2; color: #59636e; }
"""


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
    with_curves = [(v, side) for v, _, side in releases if side.curve]
    if not with_curves:
        return None
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    fig = new_figure(5.6, 3.4)
    ax = fig.add_subplot()
    for i, (version, side) in enumerate(with_curves):
        color = cmap(i / max(1, len(with_curves) - 1) * 0.85)
        ax.plot(
            [r["step"] for r in side.curve],
            [r["loss"] for r in side.curve],
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


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _badge(text: str, state: str) -> str:
    return f'<span class="badge {state}">{html.escape(text)}</span>'


def _when(stamp) -> str:
    """An ISO time as `YYYY-MM-DD HH:MMZ` (UTC stamps), anything else unchanged."""
    text = str(stamp or "-")
    if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?\+00:00", text):
        return text[:16].replace("T", " ") + "Z"
    return text


def _small(text: str) -> str:
    return f"<br><small>{html.escape(text)}</small>"


def _reproduce_badge(side: Side) -> str:
    v = side.verification
    if v is None:
        return _badge("no record", "none")
    if v.get("passed") and side.verification_current:
        return _badge("passed", "pass") + _small(f"{v.get('mode')} · {_when(v.get('finished_at'))}")
    return _badge("failed", "fail") + _small(reproduce_status(side).removeprefix("❌ "))


def _drill_badge(side: Side) -> str:
    d = side.drill
    if d is None:
        return _badge("not run", "none")
    when = _when(d.get("finished_at") or d.get("checked_at") or d.get("started_at") or "")
    if d.get("passed") is True:
        return _badge("passed", "pass") + _small(str(when))
    return _badge("failed", "fail") + _small(f"{d.get('reason') or 'did not pass'} {when}")


def _code(value) -> str:
    return "-" if value in (None, "-") else f"<code>{html.escape(str(value))}</code>"


def render(uri: str, releases: list[tuple[str, dict, Side]], generated: str) -> str:
    head = (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="ft history">\n'
        f"<title>Releases: {html.escape(uri)}</title>\n<style>{STYLE}</style>\n</head>\n"
    )
    body = [
        "<h1>Releases</h1>",
        f'<p class="sub">{len(releases)} published version(s) in <code>{html.escape(uri)}'
        f"</code> · generated {html.escape(generated)} by <code>ft history</code></p>",
    ]
    if not releases:
        body.append(
            "<p>No published version yet: <code>ft publish RUN_DIR --version v0.1.0"
            "</code> after <code>ft reproduce</code> passes.</p>"
        )
    else:
        figures = [_img(trajectory_figure(releases), "eval loss and last training loss by release")]
        curves = curves_figure(releases)
        if curves is not None:
            figures.append(_img(curves, "training loss per step of each release"))
        body.append(f'<div class="figs">{"".join(figures)}</div>')
        header = [
            "version",
            "published",
            "reproduce",
            "drill",
            "eval loss",
            "train loss (last)",
            "train rows",
            "eval suites (per segment)",
            "run",
            "git commit",
            "base model",
            "data train sha256",
            "image digest",
            "uv.lock sha256",
        ]
        rows = []
        for version, index, side in reversed(releases):  # newest first
            m = side.manifest
            p = pins(m)
            metrics = m["metrics"]
            link = (
                f'<br><a href="reproduce/{html.escape(version)}.md">REPRODUCE.md</a>'
                if side.reproduce_md is not None
                else ""
            )
            cells = [
                f'<td id="{html.escape(version)}"><b>{html.escape(version)}</b>{link}</td>',
                f'<td class="when">{html.escape(_when(index.get("created_at")))}</td>',
                f"<td>{_reproduce_badge(side)}</td>",
                f"<td>{_drill_badge(side)}</td>",
                f'<td class="num">{fmt(metrics.get("eval_loss"))}</td>',
                f'<td class="num">{fmt(metrics.get("train_loss_last"))}</td>',
                f'<td class="num">{fmt(m["data"]["splits"].get("train", {}).get("rows"))}</td>',
                f'<td class="when">{html.escape(history_cell(m))}</td>',
                f"<td>{_code(m.get('run_id'))}</td>",
                f"<td>{_code(p['git commit'])}</td>",
                f"<td>{_code(p['base model'])}</td>",
                f"<td>{_code(p['data train sha256'])}</td>",
                f"<td>{_code(p['image digest'])}</td>",
                f"<td>{_code(p['uv.lock sha256'])}</td>",
            ]
            rows.append("<tr>" + "".join(cells) + "</tr>")
        body += [
            '<div class="scroll"><table>',
            "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>",
            *rows,
            "</table></div>",
            '<p class="sub">Hashes are shortened to 12 hex; every release\'s manifest.json '
            "in the registry holds the full values. Reproduce: the release's "
            "verification.json; drill: the scheduled re-run of the release, if recorded.</p>",
        ]
    return head + "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"


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
