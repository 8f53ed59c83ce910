"""Behaviour in reviews: the eval-suite table and the gate table of `ft report`, and the
per-segment cell of `ft history`. Numbers come from manifest.json's `eval_suites`."""

from ..evaluate import gates
from ..evaluate.metrics import LOSS_METRICS


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _metric_names(suite: dict) -> list[str]:
    names = set()
    for seg in suite["segments"].values():
        names |= {k for k in seg if k not in ("rows", "tokens")}
    generation = sorted(names - set(LOSS_METRICS))
    return [*generation, *(m for m in LOSS_METRICS if m in names)]


def suites_section(run_manifest: dict, base_manifest: dict | None) -> list[str]:
    """Markdown: per suite, one row per segment with row counts and each metric
    (baseline value beside it when the suite is unchanged)."""
    suites = run_manifest.get("eval_suites") or {}
    if not suites:
        return ["This run scores no eval suite (`eval.suites` is empty)."]
    base = (base_manifest or {}).get("eval_suites") or {}
    lines = []
    for name, suite in suites.items():
        metrics = _metric_names(suite)
        other = base.get(name)
        same = other is not None and other.get("suite_sha256") == suite.get("suite_sha256")
        note = (
            "no baseline"
            if base_manifest is None
            else "not in the baseline"
            if other is None
            else "same suite as the baseline"
            if same
            else "**changed suite**: the baseline scored other rows, segments or settings; "
            "its numbers are not shown beside these"
        )
        lines += [
            f"**{name}** ({suite['rows']} rows, sha256 `{suite['sha256'][:12]}`, "
            f"max_new_tokens {suite['max_new_tokens']}): {note}.",
            "",
            "| segment | rows | " + " | ".join(metrics) + " |",
            "| --- | ---: | " + " | ".join("---:" for _ in metrics) + " |",
        ]
        for seg_name, seg in suite["segments"].items():
            cells = []
            for m in metrics:
                text = _fmt(seg.get(m))
                if same:
                    was = other["segments"].get(seg_name, {}).get(m)
                    if was is not None:
                        text += f" (was {_fmt(was)})"
                cells.append(text)
            lines.append(f"| {seg_name} | {seg['rows']} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines[:-1]


def gate_results(run_manifest: dict, base_manifest: dict | None) -> list:
    """The run's own gates (its resolved config) checked against the baseline."""
    configured = run_manifest["config"].get("eval", {}).get("gates", [])
    base = None if base_manifest is None else (base_manifest.get("eval_suites") or {})
    return gates.check(configured, run_manifest.get("eval_suites") or {}, base)


def gates_section(run_manifest: dict, base_manifest: dict | None) -> list[str]:
    results = gate_results(run_manifest, base_manifest)
    if not results:
        return ["No gates (`eval.gates` is empty)."]
    failed = gates.failures(results)
    head = (
        f"**{len(failed)} of {len(results)} gate(s) fail**: a release of this run is refused "
        "unless its tag waives them (docs/evaluation.md)."
        if failed
        else f"All {len(results)} gate(s) pass."
    )
    return [head, "", *gates.table(results)]


def history_cell(manifest: dict) -> str:
    """One line per suite: each segment's first generation metric (else its loss)."""
    parts = []
    for name, suite in (manifest.get("eval_suites") or {}).items():
        metrics = _metric_names(suite)
        if not metrics:
            continue
        metric = metrics[0]
        segs = " · ".join(
            f"{seg} {_fmt(values.get(metric))}" for seg, values in suite["segments"].items()
        )
        parts.append(f"{name} {metric}: {segs}")
    return "; ".join(parts) or "-"
