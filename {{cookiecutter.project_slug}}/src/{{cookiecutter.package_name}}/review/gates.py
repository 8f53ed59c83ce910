"""`ft gate RUN_DIR`: every eval gate of a run against a baseline, pass or fail.

    uv run ft gate runs/<id>                     # baseline: the latest other release
    uv run ft gate runs/<id> --baseline v1.2.0   # or a run directory
    uv run ft gate runs/<id> --out gates.md      # also write the table (a PR comment)

Prints a Markdown table of every gate (suite/segment/metric, bound, values, verdict) and
exits 1 if any gate fails. A suite whose definition changed since the baseline is shown as
a changed suite, never compared. The logic is evaluate/gates.py; the baseline is resolved
as `ft report` resolves it.
"""

import sys
from pathlib import Path

from ..evaluate import gates
from ..util.hashing import write_atomic
from .behaviour import gate_results
from .report.load import load_run, resolve_baseline
from .report.templating import render_template


def render(run_manifest: dict, base_manifest: dict | None, how: str) -> tuple[str, list]:
    """The gate table as Markdown (templates/gates.md.j2), and the results it shows."""
    results = gate_results(run_manifest, base_manifest)
    changed = gates.changed_suites(
        run_manifest.get("eval_suites") or {},
        None if base_manifest is None else base_manifest.get("eval_suites") or {},
    )
    text = render_template(
        "gates.md.j2", run_id=run_manifest["run_id"], how=how, results=results, changed=changed
    )
    return text, results


def main(
    run_dir: str, baseline: str | None = None, registry: str | None = None, out: str | None = None
) -> int:
    run = load_run(run_dir, label="this run")
    base, how = resolve_baseline(baseline, registry, Path(run_dir))
    text, results = render(run.manifest, base.manifest if base else None, how)
    sys.stdout.write(text)
    if out:
        write_atomic(out, text)
    failed = gates.failures(results)
    if failed:
        print(
            f"{len(failed)} gate(s) failed: {', '.join(r.gate for r in failed)} "
            "(a release needs a waiver line in its tag annotation; docs/evaluation.md)",
            file=sys.stderr,
        )
        return 1
    print(f"ok  {len(results)} gate(s) pass", file=sys.stderr)
    return 0
