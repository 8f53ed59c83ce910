"""`ft report RUN_DIR`: a run against a baseline, as Markdown tables and PNG figures.

    uv run ft report runs/<id>                           # baseline: the latest release
    uv run ft report runs/<id> --baseline runs/<other>   # another run directory
    uv run ft report runs/<id> --baseline v0.3.0         # a release, pulled from the registry
    uv run ft report runs/<id> --baseline none --out report/

Writes OUT/report.md (default RUN_DIR/report/) with loss.png (training loss per
step, the baseline's curve overlaid, eval loss marked) and data.png (rows kept
after each filter) beside it. The sections: headline, metrics with deltas, eval suites
per segment, gates (review/behaviour.py), data
diff (per-filter rows in -> out, training-set hash old -> new), config diff (changed
keys only), pins, reproduce status (RUN_DIR/verification.json).

The Markdown is written for a pull-request comment and a job summary. GitHub shows
no file that merely sits beside a comment, so every number that matters is in a
table and the loss curve is repeated as a text sparkline; the figures are relative
links that render wherever the report directory itself is viewed (the CI artifact,
a checkout, GitHub Pages), or under --figures-url where a workflow uploaded them.
The output directory is replaced whole: a reader never sees half a report.
"""

from pathlib import Path

from ...errors import UserError
from ...util.hashing import replace_dir
from .figures import DATA_PNG, LOSS_PNG, data_figure, loss_figure
from .load import load_run, resolve_baseline
from .markdown import render

REPORT = "report.md"


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
