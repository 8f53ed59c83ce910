"""Eval gates: the comparison on fixtures, waivers read from a real annotated git tag, and
end to end a planted regression confined to one segment that fails its gate while the
overall metric passes; the release is refused until the tag waives it, and the registry
entry records who waived which gate.

    uv run pytest -q tests/test_gates.py            # the end-to-end test is marked slow
"""

import json
import subprocess
from importlib import import_module
from pathlib import Path

import pytest

GATES = [
    {"suite": "tasks", "segment": "all", "metric": "loss", "max_regression": 0.01},
    {"suite": "tasks", "segment": "lookup", "metric": "loss", "max_regression": 0.01},
    {"suite": "tasks", "segment": "lookup", "metric": "exact_match", "max_regression": 0.0},
]


def _suites(loss_all=2.0, loss_lookup=1.0, em_lookup=0.5, identity="a" * 64) -> dict:
    return {
        "tasks": {
            "suite_sha256": identity,
            "segments": {
                "all": {"rows": 24, "loss": loss_all, "exact_match": 0.25},
                "lookup": {"rows": 8, "loss": loss_lookup, "exact_match": em_lookup},
            },
        }
    }


@pytest.fixture(scope="module")
def gates(pkg):
    return import_module(f"{pkg.__name__}.evaluate.gates")


def test_a_regression_in_one_segment_fails_only_its_gate(gates):
    results = gates.check(GATES, _suites(loss_lookup=1.05), _suites())
    assert [r.status for r in results] == ["pass", "fail", "pass"]
    assert results[1].gate == "tasks/lookup/loss"
    assert results[1].regression == pytest.approx(0.05)
    assert [r.gate for r in gates.failures(results)] == ["tasks/lookup/loss"]


def test_direction_follows_the_metric(gates):
    # Lower loss and higher exact match are improvements: negative regressions pass.
    better = gates.check(GATES, _suites(loss_all=1.5, loss_lookup=0.5, em_lookup=1.0), _suites())
    assert all(r.status == "pass" and r.regression < 0 for r in better)
    worse = gates.check(GATES, _suites(em_lookup=0.375), _suites())
    assert worse[2].status == "fail" and worse[2].regression == pytest.approx(0.125)


def test_within_the_bound_passes(gates):
    assert gates.check(GATES[:1], _suites(loss_all=2.01), _suites())[0].status == "pass"


def test_a_changed_suite_is_reported_as_such_never_compared(gates, pkg):
    run = _suites(loss_lookup=9.0, identity="b" * 64)  # would fail if compared
    results = gates.check(GATES, run, _suites())
    assert {r.status for r in results} == {"changed suite"}
    assert all(r.regression is None for r in results)
    assert gates.changed_suites(run, _suites()) == ["tasks"]
    templating = import_module(f"{pkg.__name__}.review.report.templating")
    assert "changed suite" in templating.render_macro("tables.md.j2", "gates_table", results)


def test_no_baseline_new_suite_and_unmeasured_metric(gates):
    assert {r.status for r in gates.check(GATES, _suites(), None)} == {"no baseline"}
    assert {r.status for r in gates.check(GATES, _suites(), {})} == {"new suite"}
    gate = [{"suite": "tasks", "segment": "lookup", "metric": "json_valid", "max_regression": 0}]
    assert gates.check(gate, _suites(), _suites())[0].status == "fail"  # run lacks the metric


def _git(cwd: Path, *args: str, **env: str) -> str:
    ident = ["-c", "user.name=Rel Eng", "-c", "user.email=releng@example.com"]
    return subprocess.run(
        ["git", *ident, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def test_waivers_come_from_the_annotated_tag_with_the_tagger(gates, tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "commit", "-q", "--allow-empty", "-m", "Waive-gate: tasks/all/loss: in a commit")
    message = (
        "v0.2.0\n\nWaive-gate: tasks/lookup/loss: lookup traded for hard, see #12\n"
        "Waive-gate: tasks/hard/loss:\n"  # no reason: waives nothing
    )
    _git(tmp_path, "tag", "-a", "v0.2.0", "-m", message)
    _git(tmp_path, "tag", "v0.3.0")  # lightweight: its "message" is the commit's
    waivers = gates.tag_waivers("v0.2.0", cwd=str(tmp_path))
    assert waivers == {
        "tasks/lookup/loss": {
            "gate": "tasks/lookup/loss",
            "by": "Rel Eng <releng@example.com>",
            "reason": "lookup traded for hard, see #12",
            "tag": "v0.2.0",
        }
    }
    assert gates.tag_waivers("v0.3.0", cwd=str(tmp_path)) == {}
    assert gates.tag_waivers("v9.9.9", cwd=str(tmp_path)) == {}


# --- end to end: a planted regression confined to one segment ----------------------------

# Enough training for the tiny model to learn the suite's tasks a little (see the test).
LONGER = [
    "--set", "train.max_steps=300", "--set", "train.lr=0.01",
    "--set", "model.lora.target_modules=[q_proj,v_proj,lm_head]",
    "--set", "train.checkpoint_every=300", "--set", "train.log_every=10",
]  # fmt: skip
TEST_GATES = (
    "  gates:\n"
    "    - {suite: tasks, segment: all, metric: loss, max_regression: 0.10}\n"
    "    - {suite: tasks, segment: lookup, metric: loss, max_regression: 0.10}\n"
)


def _damage_lookup(project: Path, ft) -> None:
    """Train data that teaches the wrong answer for "Last word of" rows (the first word),
    in whichever row format the smoke config's training source has."""
    import hashlib

    import yaml

    smoke = yaml.safe_load((project / "configs" / "smoke.yaml").read_text())
    source = next(s for s in smoke["data"]["sources"] if s["split"] == "train")
    raw = project / source["path"]

    def wrong(prompt: str) -> str:
        return prompt.split(":", 1)[1].split()[0]

    rows = [json.loads(line) for line in raw.read_text().splitlines() if line.strip()]
    for row in rows:
        if "messages" in row:
            turns = row["messages"]
            for user, answer in zip(turns, turns[1:], strict=False):
                content = str(user.get("content", "")).strip()
                pair = user["role"] == "user" and answer["role"] == "assistant"
                if pair and content.startswith("Last word of:") and len(content.split()) > 3:
                    answer["content"] = wrong(content)
        elif row["prompt"].startswith("Last word of:") and row["response"]:
            row["response"] = wrong(row["prompt"])
    raw.write_text("".join(json.dumps(row) + "\n" for row in rows))
    new = hashlib.sha256(raw.read_bytes()).hexdigest()
    for config in (project / "configs").glob("*.yaml"):
        config.write_text(config.read_text().replace(source["sha256"], new))
    ft("data", "build", "--config", "configs/smoke.yaml")


@pytest.mark.slow  # four 300-step trainings (two runs, each reproduced): minutes on CPU
def test_planted_segment_regression_fails_its_gate_and_a_waiver_publishes(tmp_path):
    """Calibrated on chat rows on 2026-12-02 with this test's own commands (eval.json, suite
    `tasks`; a run's bytes, and so these figures, are fixed by its pins):

        run                               all/loss  lookup/loss  arithmetic/loss  hard/loss
        v0.1.0, 300 steps                  4.8992     4.2810        1.6881         5.6221
        `Last word of` -> the first word   4.9554     4.5852        1.5097         5.6632
        regression                        +0.0562    +0.3042       -0.1784        +0.0411

    The damage is confined to lookup rows; the overall loss moves by about lookup's share of
    the suite's answer tokens (50 of 305) times lookup's regression, the diluted signal a
    per-segment gate exists to catch. With both bounds at 0.10, lookup fails by 0.20 and the
    overall loss passes by 0.044. The smoke adapter (r=4 on q_proj, v_proj) could not show
    this: it cannot scale the tiny base's frozen random output layer, so the suite's loss
    stays near ln(512) ~ 6.2 whatever it trains on (60 steps: lookup -0.0044 when damaged).
    With LoRA on lm_head too, 300 steps at lr 0.01 learn the tasks (arithmetic 6.0 -> 1.7).
    """
    from test_publish import _ft, _make_project, _ok, _run

    project = tmp_path / "project"
    project.mkdir()
    _make_project(project)
    smoke = project / "configs" / "smoke.yaml"
    text = smoke.read_text()
    head, rest = text.split("  gates:", 1)
    tail = rest.split("\n\n", 1)[1]
    smoke.write_text(head + TEST_GATES + "\n" + tail)
    _ok(_run(project, "git", "commit", "-qam", "test gates", "--author", "t <t@t>"))

    def ft(*args: str):
        return _ok(_ft(project, *args))

    registry = f"file://{tmp_path / 'registry'}"
    ft("train", "--config", "configs/smoke.yaml", *LONGER, "--out", "runs/base")
    ft("reproduce", "runs/base")
    ft("publish", "runs/base", "--version", "v0.1.0", "--registry", registry)

    _damage_lookup(project, ft)
    _ok(_run(project, "git", "commit", "-qam", "damage lookup", "--author", "t <t@t>"))
    ft("train", "--config", "configs/smoke.yaml", *LONGER, "--out", "runs/damaged")
    ft("reproduce", "runs/damaged")

    gate = _ft(project, "gate", "runs/damaged", "--registry", registry)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    rows = {line.split("`")[1]: line for line in gate.stdout.splitlines() if line.startswith("| `")}
    assert "pass" in rows["tasks/all/loss"], gate.stdout  # the overall metric holds
    assert "fail" in rows["tasks/lookup/loss"], gate.stdout  # the damaged segment does not
    assert "tasks/lookup/loss" in gate.stderr

    refused = _ft(project, "publish", "runs/damaged", "--version", "v0.2.0", "--registry", registry)
    assert refused.returncode == 2 and "tasks/lookup/loss" in refused.stderr
    assert "Waive-gate: tasks/lookup/loss" in refused.stderr

    message = "v0.2.0\n\nWaive-gate: tasks/lookup/loss: planted in a test"
    releng = ["-c", "user.name=Rel Eng", "-c", "user.email=releng@example.com"]
    _ok(_run(project, "git", *releng, "tag", "-a", "v0.2.0", "-m", message))
    published = ft("publish", "runs/damaged", "--version", "v0.2.0", "--registry", registry)
    assert "waived by Rel Eng <releng@example.com>" in published.stderr
    meta = json.loads(ft("registry", "show", "v0.2.0", "--registry", registry).stdout)["meta"]
    assert meta["gates"]["baseline"] == "v0.1.0"
    assert meta["gates"]["waivers"] == [
        {
            "gate": "tasks/lookup/loss",
            "by": "Rel Eng <releng@example.com>",
            "reason": "planted in a test",
            "tag": "v0.2.0",
        }
    ]
    statuses = {r["gate"]: r["status"] for r in meta["gates"]["results"]}
    assert statuses == {"tasks/all/loss": "pass", "tasks/lookup/loss": "fail"}


# --- the drill's re-training on today's pipeline -----------------------------------------


@pytest.mark.slow
def test_retrain_passes_on_an_unchanged_pipeline_and_fails_on_a_planted_filter_change(tmp_path):
    from test_publish import _ft, _make_project, _ok, _run

    project = tmp_path / "project"
    project.mkdir()
    _make_project(project)
    _ok(_ft(project, "train", "--config", "configs/smoke.yaml", "--out", "runs/release"))

    same = _ft(project, "retrain", "runs/release", "--out", "runs/again", "--gates-out", "g.md")
    assert same.returncode == 0, same.stderr[-3000:]
    table = (project / "g.md").read_text()
    assert table.count("✅ pass") == 3 and "fail" not in table
    assert "+0.0000" in table  # the same closure gives the same metrics: no regression

    # A dependency-like change lands on main: a filter now behaves differently.
    filters = project / "src" / next(p.name for p in (project / "src").iterdir()) / "data"
    code = (filters / "filters.py").read_text()
    planted = code.replace(
        'return _SPACES.sub(" ", value).strip()', 'return _SPACES.sub("  ", value)'
    )
    assert planted != code, "the planted change no longer matches filters.py"
    (filters / "filters.py").write_text(planted)
    _ok(_run(project, "git", "commit", "-qam", "a filter change", "--author", "t <t@t>"))
    moved = _ft(project, "retrain", "runs/release", "--out", "runs/moved", "--gates-out", "g2.md")
    assert moved.returncode == 1
    assert "normalize_whitespace" in moved.stderr and "code changed" in moved.stderr
    assert "did not train on this pipeline" in (project / "g2.md").read_text()
