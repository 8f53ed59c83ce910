"""Behaviour in reviews: what the eval-suite and gate tables of `ft report` and `ft gate`
show, and which metrics `ft history` picks. Numbers come from manifest.json's `eval_suites`;
the tables are laid out by report/templates/tables.md.j2 (`suites_table`, `gates_section`,
`gates_table`), so this module holds values only.
"""

from ..evaluate import gates
from ..evaluate.metrics import LOSS_METRICS


def metric_names(suite: dict) -> list[str]:
    """A suite's metrics as columns: generation metrics alphabetically, then the losses."""
    names = set()
    for seg in suite["segments"].values():
        names |= {k for k in seg if k not in ("rows", "tokens")}
    generation = sorted(names - set(LOSS_METRICS))
    return [*generation, *(m for m in LOSS_METRICS if m in names)]


def suites(run_manifest: dict, base_manifest: dict | None) -> list[dict]:
    """Per suite: its identity, how it stands to the baseline (`none`, `absent`, `same`,
    `changed`) and per segment each metric's (value, baseline value); the baseline's value
    only when the suite is the same, else None."""
    base = (base_manifest or {}).get("eval_suites") or {}
    shown = []
    for name, suite in (run_manifest.get("eval_suites") or {}).items():
        metrics = metric_names(suite)
        other = base.get(name)
        same = other is not None and other.get("suite_sha256") == suite.get("suite_sha256")
        before = other["segments"] if same and other is not None else {}
        shown.append(
            {
                "name": name,
                "rows": suite["rows"],
                "sha256": suite["sha256"],
                "max_new_tokens": suite["max_new_tokens"],
                "baseline": "none"
                if base_manifest is None
                else "absent"
                if other is None
                else "same"
                if same
                else "changed",
                "metrics": metrics,
                "segments": [
                    {
                        "name": seg_name,
                        "rows": seg["rows"],
                        "cells": [(seg.get(m), before.get(seg_name, {}).get(m)) for m in metrics],
                    }
                    for seg_name, seg in suite["segments"].items()
                ],
            }
        )
    return shown


def gate_results(run_manifest: dict, base_manifest: dict | None) -> list[gates.GateResult]:
    """The run's own gates (its resolved config) checked against the baseline."""
    configured = run_manifest["config"].get("eval", {}).get("gates", [])
    base = None if base_manifest is None else (base_manifest.get("eval_suites") or {})
    return gates.check(configured, run_manifest.get("eval_suites") or {}, base)
