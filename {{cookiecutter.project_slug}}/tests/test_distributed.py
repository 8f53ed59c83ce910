"""`train.strategy: fsdp`: FSDP2 over 2 CPU processes (gloo), against ddp and itself.

    uv run pytest -q tests/test_distributed.py      # the slow ones train under torchrun

torch's FSDP2 (`fully_shard`) runs over gloo on CPU, so the sharded path is exercised here
for real: 2 processes shard the base and the adapter, train, gather the adapter, checkpoint
by name (torch.distributed.checkpoint's state-dict API) and resume. What is pinned: an fsdp
run equals the ddp run of the same shape byte for byte (same reductions, in the same order),
its REPRODUCE.md (torchrun, 2 processes) rebuilds it exactly, and a run SIGKILLed mid-way
and resumed from its sharded-then-gathered checkpoint ends in the same bytes.
"""

import json
import subprocess
from pathlib import Path

import pytest
from test_closure import (
    NO_DROPOUT,
    SMOKE,
    _env,
    _make_project,
    adapter_bytes,
    ft,
    ft_under_torchrun,
    kill_at_step,
)

TWO = [*SMOKE, *NO_DROPOUT, "--set", "reproduce.mode=tolerance"]
FSDP = [*TWO, "--set", "train.strategy=fsdp"]


def test_strategy_is_ddp_by_default_and_fsdp_refuses_a_4bit_base(pkg, data_workdir, ft):
    assert pkg.config.load_config("configs/smoke.yaml").train.strategy == "ddp"
    cfg = pkg.config.load_config("configs/smoke.yaml", ["train.strategy=fsdp"])
    assert cfg.train.strategy == "fsdp"
    both = ["--set", "train.strategy=fsdp", "--set", "model.quantization=nf4"]
    done = ft("config", "validate", *SMOKE, *both)
    done.user_error("configs/smoke.yaml", "train.strategy fsdp", "4-bit")


def train_two(project: Path, *args: str) -> subprocess.CompletedProcess:
    """`ft train ARGS` as 2 processes under torchrun; it must succeed."""
    done = subprocess.run(
        [*ft_under_torchrun(project, 2), "train", *args],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def fsdp_project(tmp_path_factory):
    return _make_project(tmp_path_factory.mktemp("fsdp"))


@pytest.fixture(scope="module")
def fsdp_run(fsdp_project):
    done = train_two(fsdp_project, *FSDP, "--out", "runs/fsdp")
    assert "fsdp: base and adapter sharded over 2 processes" in done.stderr
    return fsdp_project / "runs" / "fsdp"


@pytest.mark.slow
def test_fsdp_over_two_processes_equals_ddp_byte_for_byte(fsdp_project, fsdp_run):
    train_two(fsdp_project, *TWO, "--out", "runs/ddp")
    ddp = fsdp_project / "runs" / "ddp"
    manifest = json.loads((fsdp_run / "manifest.json").read_text())
    assert manifest["hardware"]["world_size"] == 2
    assert manifest["config"]["train"]["strategy"] == "fsdp"
    assert adapter_bytes(fsdp_run) == adapter_bytes(ddp)
    assert (fsdp_run / "metrics.jsonl").read_bytes() == (ddp / "metrics.jsonl").read_bytes()
    # The checkpoints differ in form only: fsdp's optimizer state is keyed by parameter name.
    import torch

    state = torch.load(fsdp_run / "checkpoints" / "step-00000004" / "state.pt", weights_only=False)
    assert all("lora_" in key for key in state["optimizer"]["state"])


@pytest.mark.slow
def test_an_fsdp_run_reproduces_exactly_from_its_reproduce_md(fsdp_project, fsdp_run):
    assert "torchrun --standalone --nproc_per_node=2" in (fsdp_run / "REPRODUCE.md").read_text()
    done = ft(fsdp_project, "reproduce", "runs/fsdp", check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert adapter_bytes(fsdp_run / "reproduce") == adapter_bytes(fsdp_run)


@pytest.mark.slow
def test_an_fsdp_run_killed_and_resumed_gives_the_same_bytes(fsdp_project, fsdp_run):
    out = "runs/fsdp-killed"
    kill_at_step(
        [*ft_under_torchrun(fsdp_project, 2), "train", *FSDP, "--out", out], fsdp_project, _env(), 6
    )
    run = fsdp_project / out
    assert not (run / "manifest.json").exists()
    resumed = train_two(fsdp_project, "--out", out, "--resume")
    assert "resuming from checkpoints/step-00000004 (step 4)" in resumed.stderr
    assert adapter_bytes(run) == adapter_bytes(fsdp_run)
    assert (run / "eval.json").read_bytes() == (fsdp_run / "eval.json").read_bytes()


@pytest.fixture
def two_gpus():
    """Skips the test (before any project is made) without 2 CUDA devices."""
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA devices (FSDP over NCCL)")


@pytest.mark.gpu
@pytest.mark.slow
def test_fsdp_over_two_gpus_reruns_byte_for_byte(two_gpus, fsdp_project):
    """NCCL, which no CPU run exercises: two fsdp runs on the same 2 GPUs give the same bytes."""
    runs = []
    for name in ("gpu-a", "gpu-b"):
        train_two(fsdp_project, *FSDP, "--out", f"runs/{name}")
        runs.append(fsdp_project / "runs" / name)
    manifest = json.loads((runs[0] / "manifest.json").read_text())
    assert manifest["hardware"]["device_type"] == "cuda"
    assert adapter_bytes(runs[0]) == adapter_bytes(runs[1])
