"""Optional dependency groups (src/<pkg>/util/groups.py): a command that needs one it lacks.

    uv run pytest tests/test_groups.py -q

The dev group includes every optional group, so each test here takes one away by blocking its
import (`sys.modules[name] = None`, what Python does for a module it must not load): in this
process where the command is cheap, in a fresh interpreter at the real entry point otherwise.
docs/decisions/0019-optional-groups.md records the same commands run in a venv synced with
`uv sync --frozen --no-dev`, where the packages are really absent.
"""

import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import PKG_NAME

GROUP_FIX = "`uv sync --frozen --group {}`"


@pytest.fixture
def without(monkeypatch):
    """Block the import of each module named, for this test."""

    def block(*modules: str) -> None:
        for name in modules:
            monkeypatch.setitem(sys.modules, name, None)

    return block


def test_mlflow_registry_at_the_entry_point_names_the_group(data_workdir):
    code = (
        "import sys; sys.modules['mlflow'] = None\n"
        f"from {PKG_NAME}.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "registry", "list", "--registry", "mlflow://my-model"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    error = [line for line in done.stderr.splitlines() if not line.startswith("registry: ")]
    assert len(error) == 1
    assert error[0].startswith("error: publish.registry: mlflow://my-model needs mlflow-skinny")
    assert GROUP_FIX.format("mlflow") in error[0]


def test_hub_source_without_datasets_stops_before_reading(ft, data_workdir, without):
    smoke = Path("configs/smoke.yaml").read_text()
    # The train source from the hub instead of a file: hub_id + revision for path + sha256.
    hub, n = re.subn(
        r"      path: data/raw/chat-train.jsonl\n      sha256: \w+\n",
        "      hub_id: acme/chat\n      revision: " + "0123456789abcdef" * 2 + "01234567\n",
        smoke,
    )
    assert n == 1
    Path("configs/hub.yaml").write_text(hub)
    without("datasets")
    ft("data", "build", "--config", "configs/hub.yaml").user_error(
        "configs/hub.yaml",
        "data.sources.0.hub_id",
        "needs datasets",
        GROUP_FIX.format("hub-data"),
    )
    assert not Path("data/build").exists()


def test_mlflow_tracker_without_the_group(ft, workdir, without):
    without("mlflow")
    ft("train", "--config", "configs/smoke.yaml", "--set", "track.report_to=[mlflow]").user_error(
        "track.report_to.0", "mlflow-skinny", GROUP_FIX.format("mlflow")
    )
    assert not Path("runs").exists() or not any(Path("runs").rglob("manifest.json"))


def test_report_figures_without_matplotlib(pkg, without):
    without("matplotlib")
    figures = importlib.import_module(f"{PKG_NAME}.review.report.figures")
    with pytest.raises(pkg.errors.UserError) as raised:
        figures.new_figure(2, 2)
    assert "needs matplotlib" in str(raised.value)
    assert raised.value.fix == GROUP_FIX.format("report")


def test_doctor_names_the_groups_a_workflow_lacks(ft, data_workdir, without, monkeypatch):
    monkeypatch.setenv("FT_REGISTRY", "mlflow://my-model")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("FT_ARTIFACT_STORE", "s3://bucket/runs")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123:role/ci")
    result = ft("doctor", "--workflow", "release")
    assert result.code == 0, result.out + result.err
    assert "ok       group:mlflow" in result.out
    without("mlflow", "matplotlib")
    result = ft("doctor", "--workflow", "release")
    assert result.code == 2
    assert "MISSING  group:mlflow" in result.out and GROUP_FIX.format("mlflow") in result.out
    result = ft("doctor", "--workflow", "ci")
    assert result.code == 2
    assert "MISSING  group:report" in result.out and GROUP_FIX.format("report") in result.out


def test_reproduce_syncs_the_groups_a_run_needs(pkg):
    manifest_mod = importlib.import_module(f"{PKG_NAME}.closure.reproduce_md")
    sources = [{"name": "chat", "split": "train", "path": "data/raw/chat-train.jsonl"}]
    manifest: dict[str, Any] = {
        "command": {"config": "configs/smoke.yaml", "overrides": []},
        "hardware": {"world_size": 1},
        "config": {"model": {"quantization": None}, "data": {"sources": sources}},
    }
    plain = manifest_mod.reproduce_command(manifest)
    assert plain.startswith("uv sync --frozen\nuv run --frozen ft train ")
    sources.append({"name": "hub", "split": "train", "hub_id": "acme/chat"})
    hub = manifest_mod.reproduce_command(manifest)
    assert hub.startswith("uv sync --frozen --group hub-data\n")
    assert "uv run --frozen --group hub-data ft train " in hub
    manifest["config"]["model"]["quantization"] = "nf4"
    both = manifest_mod.reproduce_command(manifest)
    assert both.startswith("uv sync --frozen --group qlora --group hub-data\n")
