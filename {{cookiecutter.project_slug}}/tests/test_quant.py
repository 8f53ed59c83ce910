"""QLoRA (`model.quantization: nf4`): a 4-bit NF4 base through bitsandbytes, on CPU.

    uv run pytest -q tests/test_quant.py            # the slow ones train in real `ft` processes

bitsandbytes is the optional `qlora` dependency group; the training tests make a project
whose venv has it (`uv sync --frozen --group qlora`), train the smoke config quantized, and
check what every option must keep: the clean-room reproduction (a separate process and a
fresh venv, synced by REPRODUCE.md's own command) gives the same bytes, and so does a run
SIGKILLed mid-way and resumed. The quick tests need no bitsandbytes.
"""

import json
import subprocess
import sys
from typing import Any

import pytest
from test_closure import SMOKE, _env, _uv, adapter_bytes, copy_repo, ft, kill_after_step, mod

QLORA = [*SMOKE, "--set", "model.quantization=nf4"]


def test_the_key_takes_nf4_or_null_and_names_the_fix(pkg, data_workdir, ft):
    cfg = pkg.config.load_config("configs/smoke.yaml", ["model.quantization=nf4"])
    assert cfg.model.quantization == "nf4"
    assert pkg.config.load_config("configs/smoke.yaml").model.quantization is None
    done = ft(
        "config", "validate", "--config", "configs/smoke.yaml", "--set", "model.quantization=int3"
    )
    done.user_error("configs/smoke.yaml", "model.quantization", "'nf4'")


def test_without_bitsandbytes_a_qlora_run_stops_naming_the_group(ft, workdir, monkeypatch):
    """Python's own marker for a module that cannot be imported (None in sys.modules): the
    run stops with one line naming the key and the `uv sync` that fixes it, and leaves no
    run directory behind."""
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    done = ft("train", *QLORA, "--out", "runs/q")
    done.user_error("configs/smoke.yaml", "model.quantization", "uv sync --frozen --group qlora")
    assert not (workdir / "runs" / "q").exists()


def test_reproduce_md_syncs_the_qlora_group(pkg):
    manifest: dict[str, Any] = {
        "command": {"config": "configs/smoke.yaml", "overrides": ["model.quantization=nf4"]},
        "hardware": {"world_size": 1},
        "config": {"model": {"quantization": "nf4"}},
        "checkpoints": [{"step": 0}],
    }
    manifest_mod = mod("closure.reproduce_md")
    block = manifest_mod.reproduce_command(manifest)
    assert block.startswith("uv sync --frozen --group qlora\n")
    assert "uv run --frozen --group qlora ft train --config configs/smoke.yaml" in block
    setup, interval = manifest_mod.segment_commands(manifest)
    assert setup == "uv sync --frozen --group qlora\n" and "--group qlora" in interval
    manifest["config"]["model"]["quantization"] = None
    assert "--group" not in manifest_mod.reproduce_command(manifest)


@pytest.fixture(scope="module")
def qlora_project(tmp_path_factory):
    """A committed copy of this repo whose venv has the qlora group."""
    dest = copy_repo(tmp_path_factory.mktemp("qlora"))
    subprocess.run(
        [_uv(), "sync", "--frozen", "--quiet", "--group", "qlora"], cwd=dest, check=True, env=_env()
    )
    return dest


@pytest.fixture(scope="module")
def qlora_run(qlora_project):
    ft(qlora_project, "train", *QLORA, "--out", "runs/qlora")
    return qlora_project / "runs" / "qlora"


@pytest.mark.slow
def test_a_qlora_run_trains_on_a_4bit_base_and_records_it(qlora_project, qlora_run):
    manifest = json.loads((qlora_run / "manifest.json").read_text())
    assert manifest["base_model"]["quantization"] == {
        "method": "nf4",
        "double_quant": True,
        "compute_dtype": "float32",
        "bitsandbytes": "0.50.2",
    }
    assert manifest["metrics"]["train_loss_last"] < manifest["metrics"]["train_loss_first"]
    # The adapter is plain fp32 LoRA weights, loadable on the unquantized base.
    from safetensors import safe_open

    with safe_open(qlora_run / "adapter" / "adapter_model.safetensors", "pt") as f:
        names = list(f.keys())
        assert names and all("lora_" in n for n in names)
        assert {str(f.get_tensor(n).dtype) for n in names} == {"torch.float32"}
    # Against the same config unquantized, `ft diff` names the key and the pins that moved.
    ft(qlora_project, "train", *SMOKE, "--out", "runs/plain")
    diff = ft(qlora_project, "diff", "runs/plain", "runs/qlora", check=False)
    assert "config: model.quantization: None -> nf4" in diff.stdout, diff.stdout
    assert "base model: quantization" in diff.stdout


@pytest.mark.slow
def test_a_qlora_run_reproduces_byte_for_byte_in_a_clean_room(qlora_project, qlora_run):
    """REPRODUCE.md's block syncs a fresh venv with the qlora group and trains again in a
    separate process: every output byte equal."""
    assert "uv sync --frozen --group qlora\n" in (qlora_run / "REPRODUCE.md").read_text()
    done = ft(qlora_project, "reproduce", "runs/qlora", check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((qlora_run / "verification.json").read_text())
    assert record["passed"] is True and all(c["equal"] for c in record["compared"])
    assert adapter_bytes(qlora_run / "reproduce") == adapter_bytes(qlora_run)


@pytest.mark.slow
def test_a_qlora_run_killed_and_resumed_gives_the_same_bytes(qlora_project, qlora_run):
    out = "runs/qlora-killed"
    run = kill_after_step(qlora_project, QLORA, out, 6)
    resumed = ft(qlora_project, "train", "--out", out, "--resume")
    assert "resuming from checkpoints/step-00000004" in resumed.stderr
    assert adapter_bytes(run) == adapter_bytes(qlora_run)
    assert (run / "eval.json").read_bytes() == (qlora_run / "eval.json").read_bytes()


@pytest.fixture
def cuda():
    """Skips the test (before any project is made) where there is no CUDA device."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device (bitsandbytes' CUDA kernels)")


@pytest.mark.gpu
@pytest.mark.slow
def test_a_qlora_run_on_a_gpu_reproduces_byte_for_byte(cuda, qlora_project):
    """The CUDA kernels of bitsandbytes, which no CPU run exercises: on a GPU the smoke config
    trains quantized and its clean-room reproduction must give the same bytes (the claim
    docs/determinism.md makes only once this has passed on a GPU)."""
    ft(qlora_project, "train", *QLORA, "--out", "runs/qlora-gpu")
    run = qlora_project / "runs" / "qlora-gpu"
    assert json.loads((run / "manifest.json").read_text())["hardware"]["device_type"] == "cuda"
    done = ft(qlora_project, "reproduce", "runs/qlora-gpu", check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert adapter_bytes(run / "reproduce") == adapter_bytes(run)
