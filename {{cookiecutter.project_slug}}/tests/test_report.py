"""`ft report` and the optional trackers, on real smoke runs.

    uv run pytest tests/test_report.py -q

Two smoke runs (tests/report_runs.py, trained once per session in this process):
`base` as shipped, and `variant` with one filter tightened (max_chars limit 256 -> 64,
its own committed data lock) that also sends its metric records to MLflow. Reports
go through the real `ft` entry point; the figures are read back as images.
"""

import json
import re
from pathlib import Path

import pytest
import report_runs

# Trains real runs in `ft` processes: not part of the quick suite (`-m "not slow"`).
pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"
SECTIONS = ["Metrics", "Eval suites", "Gates", "Data", "Config", "Pins", "Reproduce"]
# The metrics table's rows, in the order the report lists them (eval first, then training).
METRICS = [
    "eval_loss",
    "eval_perplexity",
    "train_loss_last",
    "train_loss_first",
    "train_loss_min",
    "steps",
    "eval_tokens",
    "train_rows",
    "tokens_per_s",
]
PINS = [
    "git commit",
    "base model",
    "tokenizer sha256",
    "data train sha256",
    "data eval sha256",
    "config sha256",
    "seed",
    "image digest",
    "uv.lock sha256",
    "hardware",
]


@pytest.fixture(scope="session")
def runs(tmp_path_factory, tiny_base) -> dict[str, Path]:
    return report_runs.runs(tmp_path_factory, tiny_base, "base", "variant")


@pytest.fixture(scope="module")
def solo(runs) -> Path:
    """`ft report runs/base --baseline none`, into its default place RUN_DIR/report."""
    with report_runs.in_project(runs["base"].parents[1]):
        assert report_runs.mod("cli").main(["report", "runs/base", "--baseline", "none"]) == 0
    return runs["base"] / "report"


@pytest.fixture(scope="module")
def compared(runs, tmp_path_factory) -> Path:
    """`ft report runs/variant --baseline runs/base --out <tmp>`."""
    out = tmp_path_factory.mktemp("compared") / "report"
    with report_runs.in_project(runs["base"].parents[1]):
        code = report_runs.mod("cli").main(
            ["report", "runs/variant", "--baseline", "runs/base", "--out", str(out)]
        )
    assert code == 0
    return out


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def curve(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def image(path: Path):
    """The PNG decoded by matplotlib (Pillow underneath); checks the signature first."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG, f"{path} is not a PNG"
    return matplotlib.image.imread(path)


def steps(run: Path, split: str) -> dict[str, tuple[int, int]]:
    info = manifest(run)["data"]["splits"][split]
    return {s["filter"]: (s["rows_in"], s["rows_out"]) for s in info["steps"]}


def sections(md: str) -> dict[str, str]:
    """The report's `### ` sections by title, in order; "" holds what comes before them."""
    parts = re.split(r"^### (.+)$", md, flags=re.M)
    return {"": parts[0], **dict(zip(parts[1::2], parts[2::2], strict=True))}


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in `text`, as rows of stripped cells: the header row first, the
    alignment row checked and dropped. A `\\|` inside a cell is text, not a border."""
    found, lines = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            assert line.endswith("|"), line
            lines.append(line)
            continue
        if lines:
            rows = [
                [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row)[1:-1]]
                for row in lines
            ]
            assert len(rows) >= 2 and all(re.fullmatch(r"-{3}:?", c) for c in rows[1]), lines
            assert {len(row) for row in rows} == {len(rows[0])}, f"ragged table: {lines}"
            found.append([rows[0], *rows[2:]])
        lines = []
    return found


def data_table(runs: list[Path]) -> list[list[str]]:
    """The Data section's rows expected of these runs (one: rows in -> out; two: old, new)."""
    rows = []
    splits = sorted(manifest(runs[0])["data"]["splits"], key=lambda s: (s != "train", s))
    for split in splits:
        counts = [steps(run, split) for run in runs]
        for name in counts[0]:
            cells = [f"{c[name][0]} -> {c[name][1]}" for c in counts]
            if len(runs) == 2 and counts[0][name] != counts[1][name]:
                cells[1] += " **changed**"
            rows.append([split, f"`{name}`", *cells])
        finals = [manifest(run)["data"]["splits"][split] for run in runs]
        cells = [f"{f['rows']} rows `{f['sha256'][:12]}`" for f in finals]
        if len(runs) == 2 and finals[0]["sha256"] != finals[1]["sha256"]:
            cells[1] += " **changed**"
        rows.append([split, "**final**", *cells])
    return rows


# --- a run on its own ---------------------------------------------------------------------


def test_report_of_a_run_alone(runs, solo):
    assert {p.name for p in solo.iterdir()} == {"report.md", "loss.png", "data.png"}
    md = (solo / "report.md").read_text()
    m = manifest(runs["base"])
    fmt = report_runs.mod("review.report.format").fmt
    assert md.startswith("## Run report: `base`\n")
    assert "Baseline: none (`--baseline none`)." in md
    assert f"**eval_loss {fmt(m['metrics']['eval_loss'])}**" in md
    assert f"| eval_loss | {fmt(m['metrics']['eval_loss'])} |" in md
    assert f"| train_loss_last | {fmt(m['metrics']['train_loss_last'])} |" in md
    rows_in, rows_out = steps(runs["base"], "train")["max_chars"]
    assert f"| train | `max_chars` | {rows_in} -> {rows_out} |" in md
    train = m["data"]["splits"]["train"]
    assert f"| train | **final** | {train['rows']} rows `{train['sha256'][:12]}` |" in md
    assert f"| git commit | `{m['git']['commit'][:12]}` |" in md
    assert f"| data train sha256 | `{train['sha256'][:12]}` |" in md
    assert "| image digest | `none (local run)` |" in md
    assert f"| uv.lock sha256 | `{m['environment']['uv_lock_sha256'][:12]}` |" in md
    assert "not reproduced yet: run `uv run ft reproduce runs/base`" in md
    # Figures are relative links; the curve is also text, for a PR comment.
    assert "](loss.png)" in md and "](data.png)" in md
    spark = report_runs.mod("review.report.format").sparkline(
        [r["loss"] for r in curve(runs["base"])]
    )
    assert f"| this run | `{spark}` |" in md and len(spark) == len(curve(runs["base"]))
    # The structure: the sections in order, each table cell by cell.
    parts = sections(md)
    assert list(parts)[1:] == SECTIONS
    head = parts[""].splitlines()[4].split(" · ")
    assert head == [
        f"**eval_loss {fmt(m['metrics']['eval_loss'])}**",
        f"train rows {fmt(train['rows'])}",
        "not reproduced yet",
    ]
    (curves,) = tables(parts[""])
    assert [row[:2] for row in curves] == [
        ["train loss", "by step (shared scale)"],
        ["this run", f"`{spark}`"],
    ]
    (metrics,) = tables(parts["Metrics"])
    assert metrics[0] == ["metric", "this run"]
    values = {name: cells for name, *cells in metrics[1:]}
    assert list(values) == METRICS and set(m["metrics"]) < set(METRICS)
    assert all(values[k] == [fmt(v)] for k, v in m["metrics"].items())
    assert values["train_rows"] == [fmt(train["rows"])]
    (data,) = tables(parts["Data"])
    assert data == [["split", "filter", "rows in -> out"], *data_table([runs["base"]])]
    assert parts["Config"].strip() == (
        f"Config sha256 `{m['config_sha256'][:12]}` (`configs/smoke.yaml`); "
        "no baseline to compare with."
    )
    (pins,) = tables(parts["Pins"])
    assert pins[0] == ["pin", "this run"] and [row[0] for row in pins[1:]] == PINS
    assert dict(pins[1:])["seed"] == f"`{m['seed']}`"
    assert parts["Reproduce"].strip().splitlines()[0].startswith("- this run: not reproduced")


def test_report_inside_the_run_leaves_its_closure_intact(runs, solo):
    """RUN_DIR/report is not a run output: reproduce and publish still match the manifest."""
    outputs = report_runs.mod("closure.manifest").output_files(runs["base"])
    assert outputs == manifest(runs["base"])["outputs"]
    assert not [p for p in runs["base"].iterdir() if p.name.startswith(".report")]


# --- against a baseline whose data differs ------------------------------------------------


def test_report_against_a_baseline_shows_the_data_and_config_change(runs, compared):
    md = (compared / "report.md").read_text()
    base, variant = runs["base"], runs["variant"]
    assert md.startswith("## Run report: `variant`\n")
    assert "Baseline: run `runs/base`." in md
    # Data: every per-filter row, marked where it moved, and the final hash old -> new.
    for split in ("train", "eval"):
        old, new = steps(base, split), steps(variant, split)
        for name in old:
            mark = "" if old[name] == new[name] else " **changed**"
            assert (
                f"| {split} | `{name}` | {old[name][0]} -> {old[name][1]} | "
                f"{new[name][0]} -> {new[name][1]}{mark} |"
            ) in md
        a, b = (manifest(r)["data"]["splits"][split] for r in (base, variant))
        assert (
            f"| {split} | **final** | {a['rows']} rows `{a['sha256'][:12]}` | "
            f"{b['rows']} rows `{b['sha256'][:12]}` **changed** |"
        ) in md
    assert steps(base, "train")["max_chars"] != steps(variant, "train")["max_chars"]
    assert "Inputs that moved: filter parameters changed." in md
    # Config: changed keys only, by their --set path.
    assert "| `data.filters.2.params.limit` | `256` | `64` |" in md
    assert "| `data.lock` | `data.lock` | `data-variant.lock` |" in md
    assert '| `track.report_to` | `[]` | `["mlflow"]` |' in md
    assert "`train.lr`" not in md and "`seed`" not in md
    # Metrics: both values and the delta.
    report = report_runs.mod("review.report.format")
    ma, mb = manifest(base)["metrics"], manifest(variant)["metrics"]
    d, verdict = report.delta(mb["eval_loss"], ma["eval_loss"], "eval_loss")
    assert d and verdict in ("better", "worse")
    row = f"| **eval_loss** | {report.fmt(mb['eval_loss'])} | {report.fmt(ma['eval_loss'])} | "
    assert f"{row}{d} | {verdict} |" in md
    rows_a, rows_b = (manifest(r)["data"]["splits"]["train"]["rows"] for r in (base, variant))
    assert f"| train_rows | {rows_b:,} | {rows_a:,} | {rows_b - rows_a:+,} (" in md
    assert f"train rows {rows_a:,} -> {rows_b:,}" in md
    assert "eval set changed" in md  # the filter also moved the eval split
    # Pins: the data moved, the base model did not.
    old_sha = manifest(base)["data"]["splits"]["train"]["sha256"][:12]
    new_sha = manifest(variant)["data"]["splits"]["train"]["sha256"][:12]
    assert f"| data train sha256 | `{old_sha}` | `{new_sha}` **changed** |" in md
    base_row = next(line for line in md.splitlines() if line.startswith("| base model |"))
    assert "base/tiny-llama sha256" in base_row and "**changed**" not in base_row
    # Both curves, on one scale.
    assert "| this run | `" in md and "| baseline `runs/base` | `" in md
    # The structure: the sections in order, each table cell by cell.
    parts = sections(md)
    assert list(parts)[1:] == SECTIONS
    (curves,) = tables(parts[""])
    assert [row[0] for row in curves[1:]] == ["this run", "baseline `runs/base`"]
    for row, run in zip(curves[1:], (variant, base), strict=True):
        assert len(row[1].strip("`")) == len(curve(run))
    (metrics,) = tables(parts["Metrics"])
    assert metrics[0] == ["metric", "this run", "baseline (`runs/base`)", "Δ", ""]
    values = {name.strip("*"): cells for name, *cells in metrics[1:]}
    assert list(values) == METRICS
    for key, old in ma.items():
        assert values[key] == [
            report.fmt(mb[key]),
            report.fmt(old),
            *report.delta(mb[key], old, key),
        ]
    (data,) = tables(parts["Data"])
    assert data[0] == ["split", "filter", "baseline rows in -> out", "this run"]
    assert data[1:] == data_table([base, variant])
    (config,) = tables(parts["Config"])
    experiment = [manifest(r)["config"]["track"]["experiment"] for r in (base, variant)]
    assert config == [
        ["key", "baseline", "this run"],
        ["`data.filters.2.params.limit`", "`256`", "`64`"],
        ["`data.lock`", "`data.lock`", "`data-variant.lock`"],
        ["`track.experiment`", *(f"`{e}`" for e in experiment)],
        ["`track.report_to`", "`[]`", '`["mlflow"]`'],
    ]
    head = parts[""].splitlines()[4].split(" · ")
    assert head[1:] == [
        f"train rows {rows_a:,} -> {rows_b:,}",
        f"{len(config) - 1} config key(s) changed",
        "not reproduced yet",
    ]
    (pins,) = tables(parts["Pins"])
    assert pins[0] == ["pin", "baseline", "this run"] and [row[0] for row in pins[1:]] == PINS
    changed = {row[0] for row in pins[1:] if row[2].endswith(" **changed**")}
    assert changed == {"git commit", "data train sha256", "data eval sha256", "config sha256"}
    assert parts["Reproduce"].strip().splitlines()[:2] == [
        "- this run: not reproduced yet: run `uv run ft reproduce runs/variant`",
        "- baseline: not reproduced yet",
    ]


@pytest.mark.parametrize(
    ("name", "width", "height"), [("loss.png", 800, 450), ("data.png", 1000, 450)]
)
def test_figures_are_pngs_of_sensible_size(solo, compared, name, width, height):
    for report in (solo, compared):
        pixels = image(report / name)
        assert pixels.shape[:2] == (height, width)
        colours = {tuple(p) for p in pixels.reshape(-1, pixels.shape[2])[::97].tolist()}
        assert len(colours) > 20, f"{report / name} looks blank"
    # The comparison draws the baseline too: the figure differs from the solo one.
    assert (solo / name).read_bytes() != (compared / name).read_bytes()


def test_rerun_replaces_the_report_whole(runs, compared):
    before = {p.name: p.read_bytes() for p in compared.iterdir()}
    (compared / "stale.txt").write_text("from an older report")
    with report_runs.in_project(runs["base"].parents[1]):
        code = report_runs.mod("cli").main(
            ["report", "runs/variant", "--baseline", "runs/base", "--out", str(compared)]
        )
    assert code == 0
    assert {p.name: p.read_bytes() for p in compared.iterdir()} == before
    assert [p.name for p in compared.parent.iterdir()] == ["report"]  # no temp dir left


def test_default_baseline_with_an_empty_registry_says_so(runs, tmp_path, ft, monkeypatch):
    monkeypatch.chdir(runs["base"].parents[1])
    uri = (tmp_path / "registry").as_uri()
    out = tmp_path / "r"
    result = ft("report", "runs/variant", "--registry", uri, "--out", out)
    assert result.code == 0, result.err
    md = (out / "report.md").read_text()
    assert f"Baseline: none: `{uri}` holds no other published version yet." in md
    assert "| metric | this run |" in md


@pytest.mark.parametrize(
    "registry, env, why",
    [
        ("hf://acme/model", {"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ("mlflow://model", {"MLFLOW_TRACKING_URI": None}, "MLFLOW_TRACKING_URI is not set"),
    ],
    ids=["hf-offline", "mlflow-no-uri"],
)
def test_unreachable_registry_means_no_baseline_not_a_red_pr(
    runs, tmp_path, ft, monkeypatch, registry, env, why
):
    """CI on a PR (a fork's too) has FT_REGISTRY set but no credentials: report, say why."""
    monkeypatch.chdir(runs["base"].parents[1])
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    out = tmp_path / "r"
    result = ft("report", "runs/variant", "--registry", registry, "--out", out)
    assert result.code == 0, result.err
    md = (out / "report.md").read_text()
    assert f"Baseline: none: `{registry}` is not reachable here (" in md
    assert why in md
    # An explicitly asked-for release still fails loudly.
    ft(
        "report", "runs/variant", "--registry", registry, "--baseline", "v1.0.0", "--out", out
    ).user_error(why.split()[0])


def test_user_mistakes_are_one_line_errors(runs, tmp_path, ft, monkeypatch):
    monkeypatch.chdir(runs["base"].parents[1])
    ft("report", "runs/nope").user_error("runs/nope", "no manifest.json")
    ft("report", "runs/base", "--baseline", "runs/nope").user_error(
        "--baseline", "neither a run directory nor a release version"
    )
    ft(
        "report", "runs/base", "--baseline", "v9.9.9", "--registry", (tmp_path / "reg").as_uri()
    ).user_error("no version v9.9.9")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    ft("report", "runs/base", "--baseline", "none", "--out", precious).user_error(
        str(precious), "--out"
    )
    assert (precious / "notes.txt").read_text() == "keep me"


# --- trackers -----------------------------------------------------------------------------


def test_mlflow_received_the_records_of_metrics_jsonl(runs, monkeypatch):
    """The variant trained with track.report_to=[mlflow] into a file store (offline)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(report_runs.mlflow_uri())
    experiment = client.get_experiment_by_name("report-tests")
    assert experiment is not None
    found = client.search_runs([experiment.experiment_id], "tags.`ft.run_id` = 'variant'")
    assert len(found) == 1
    run = found[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["ft.config_sha256"] == manifest(runs["variant"])["config_sha256"]
    records = curve(runs["variant"])
    for key in ("loss", "lr"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [(h.step, h.value) for h in history] == [(r["step"], r[key]) for r in records]


def test_trackers_are_off_by_default_and_missing_ones_stop_the_run(runs, ft, monkeypatch, pkg):
    assert manifest(runs["base"])["config"]["track"]["report_to"] == []
    cfg = pkg.config.load_config("configs/recipe.yaml")
    assert cfg.track.report_to == []
    monkeypatch.chdir(runs["base"].parents[1])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # mlflow is installed, but has nowhere to go: stop before training, say what to set.
    result = ft(
        "train",
        "--config",
        "configs/smoke.yaml",
        "--set",
        "track.report_to=[mlflow]",
        "--out",
        "runs/no-uri",
    )
    result.user_error("configs/smoke.yaml", "track.report_to.0", "MLFLOW_TRACKING_URI")
    assert not (runs["base"].parents[1] / "runs" / "no-uri" / "manifest.json").exists()
    # A tracker whose package is absent names the package to add.
    try:
        import wandb  # noqa: F401
    except ImportError:
        result = ft(
            "train",
            "--config",
            "configs/smoke.yaml",
            "--set",
            "track.report_to=[wandb]",
            "--out",
            "runs/no-wandb",
        )
        result.user_error("track.report_to.0", "wandb is not installed", "uv add wandb")
    # An unknown tracker is refused by the schema.
    ft(
        "config", "validate", "--config", "configs/smoke.yaml", "--set", "track.report_to=[comet]"
    ).user_error("track.report_to.0")
