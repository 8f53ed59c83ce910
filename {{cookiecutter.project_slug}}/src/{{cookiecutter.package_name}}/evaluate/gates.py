"""Eval gates: each bounds one suite/segment/metric's regression against a baseline release.

    uv run ft gate runs/<id>                    # baseline: the latest release
    uv run ft gate runs/<id> --baseline v1.2.0

Pure functions over two runs' `eval_suites` (manifest.json) and the gates of the run's own
resolved config, so a release is judged by the gates it was trained with. A suite whose
identity (`suite_sha256`: rows, segments, scoring) differs from the baseline's is reported
as a changed suite and not compared: its numbers measure something else. `ft publish`
refuses a failing gate unless the release tag waives it (publish.py); the drill asserts them.
"""

from dataclasses import asdict, dataclass

from ..util import git
from .metrics import higher_is_better

PASS, FAIL = "pass", "fail"
CHANGED, NEW, NO_BASELINE = "changed suite", "new suite", "no baseline"
# Float noise allowed on top of max_regression (metrics are means of 0/1 scores and losses).
EPSILON = 1e-9


@dataclass
class GateResult:
    suite: str
    segment: str
    metric: str
    max_regression: float
    value: float | None
    baseline: float | None
    regression: float | None  # how much worse, in the metric's units (negative: better)
    status: str

    @property
    def gate(self) -> str:
        """The gate's name in tables and waivers: suite/segment/metric."""
        return f"{self.suite}/{self.segment}/{self.metric}"

    def to_json(self) -> dict:
        return asdict(self) | {"gate": self.gate}


def _metric(suites: dict, suite: str, segment: str, metric: str) -> float | None:
    value = suites.get(suite, {}).get("segments", {}).get(segment, {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def check(gates: list[dict], run_suites: dict, base_suites: dict | None) -> list[GateResult]:
    """One result per gate, in config order."""
    results = []
    for g in gates:
        suite, segment, metric = g["suite"], g.get("segment", "all"), g["metric"]
        value = _metric(run_suites, suite, segment, metric)
        base = None if base_suites is None else _metric(base_suites, suite, segment, metric)
        regression, status = None, PASS
        if value is None:
            status = FAIL  # the run did not measure what its own gate names
        elif base_suites is None:
            status = NO_BASELINE
        elif suite not in base_suites:
            status = NEW
        elif base_suites[suite].get("suite_sha256") != run_suites[suite].get("suite_sha256"):
            status = CHANGED
        elif base is None:
            status = NEW  # the baseline did not measure this segment or metric
        else:
            regression = base - value if higher_is_better(metric) else value - base
            status = FAIL if regression > g["max_regression"] + EPSILON else PASS
        results.append(
            GateResult(
                suite=suite,
                segment=segment,
                metric=metric,
                max_regression=g["max_regression"],
                value=value,
                baseline=base,
                regression=regression,
                status=status,
            )
        )
    return results


def failures(results: list[GateResult]) -> list[GateResult]:
    return [r for r in results if r.status == FAIL]


def changed_suites(run_suites: dict, base_suites: dict | None) -> list[str]:
    """Suites present in both whose identity moved: shown as changed, never compared."""
    if not base_suites:
        return []
    return sorted(
        name
        for name in run_suites.keys() & base_suites.keys()
        if run_suites[name].get("suite_sha256") != base_suites[name].get("suite_sha256")
    )


# --- releases: the latest other release as baseline, and waivers from the tag --------------

WAIVER_PREFIX = "Waive-gate:"


def tag_waivers(version: str, cwd: str | None = None) -> dict[str, dict]:
    """Waiver lines of the annotated tag `version`, by gate: `Waive-gate: SUITE/SEG/METRIC: why`.

    Only an annotated tag counts (a lightweight tag has no author or message of its own);
    the waiver records the tagger as who waived. No tag: no waivers."""
    ref = f"refs/tags/{version}"
    if (git.output("cat-file", "-t", ref, cwd=cwd) or "").strip() != "tag":
        return {}
    who = (
        git.output("for-each-ref", ref, "--format=%(taggername) %(taggeremail)", cwd=cwd) or ""
    ).strip()
    message = git.output("for-each-ref", ref, "--format=%(contents)", cwd=cwd) or ""
    waivers = {}
    for line in message.splitlines():
        if not line.strip().startswith(WAIVER_PREFIX):
            continue
        gate, _, reason = line.strip()[len(WAIVER_PREFIX) :].strip().partition(":")
        gate, reason = gate.strip(), reason.strip()
        if gate and reason:  # a waiver without a reason waives nothing
            waivers[gate] = {"gate": gate, "by": who or "unknown", "reason": reason, "tag": version}
    return waivers


def latest_release(registry, own_manifest_sha256: str) -> tuple[str | None, dict | None]:
    """(version, its eval_suites) of the newest release that is not this run, or (None, None).

    Releases published before eval suites existed carry none: their suites read as new."""
    for version in reversed(registry.versions()):
        meta = registry.show(version).get("meta") or {}
        if meta.get("manifest_sha256") != own_manifest_sha256:
            return version, meta.get("eval_suites") or {}
    return None, None
