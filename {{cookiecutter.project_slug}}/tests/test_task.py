"""`ft task run` (ops/task.py, ops/shape.py): sky/train.yaml's `run:` as tested Python.

    uv run pytest tests/test_task.py -q

The decision (finished / resume / start) on a mounted bucket and, as on RunPod, on the bucket
itself, and the process arithmetic (one per GPU, accelerate across nodes). Running it for real
in a job: tests/test_launch.py (2 nodes, a preemption) and tests/test_sky_standin.py.
"""

import importlib
from pathlib import Path

import pytest

SMOKE = "configs/smoke.yaml"


@pytest.fixture
def task(pkg):
    return importlib.import_module(f"{pkg.__name__}.ops.task")


@pytest.fixture
def shape(pkg):
    return importlib.import_module(f"{pkg.__name__}.ops.shape")


def job_env(bucket: Path, *, mounted: bool = True, nodes: int = 1, gpus: int = 1, **extra):
    """What ft launch and SkyPilot set on one node; the bucket is a local folder."""
    env = {
        "CONFIG": SMOKE,
        "OVERRIDES": "",
        "RUN_URI": f"file://{bucket}/runs/r1",
        "ARTIFACT_BUCKET": f"file://{bucket}",
        "MAIN_PROCESS_PORT": "29500",
        "SKYPILOT_NUM_NODES": str(nodes),
        "SKYPILOT_NODE_RANK": "0",
        "SKYPILOT_NUM_GPUS_PER_NODE": str(gpus),
        "SKYPILOT_NODE_IPS": "\n".join(f"10.0.0.{i + 1}" for i in range(nodes)),
        **extra,
    }
    if mounted:
        env["ARTIFACTS"] = str(bucket)
    return env


def put(bucket: Path, name: str) -> None:
    run = bucket / "runs" / "r1"
    run.mkdir(parents=True, exist_ok=True)
    (run / name).write_text("{}")


# --- the decision --------------------------------------------------------------------------


@pytest.mark.parametrize("mounted", [True, False], ids=["mount", "no-mount"])
def test_a_fresh_run_starts_with_the_config_and_its_overrides(task, tmp_path, mounted):
    env = job_env(tmp_path, mounted=mounted, OVERRIDES="train.lr=0.001\n\ntrain.seed=3 # x\n")
    assert task.plan(env) == [
        "ft",
        "train",
        "--config",
        SMOKE,
        "--out",
        env["RUN_URI"],  # one machine mirrors to the bucket URL, mounted or not
        "--set",
        "train.lr=0.001",
        "--set",
        "train.seed=3 # x",
    ]


@pytest.mark.parametrize("mounted", [True, False], ids=["mount", "no-mount"])
def test_a_started_run_resumes_and_a_finished_one_exits(task, tmp_path, mounted):
    env = job_env(tmp_path, mounted=mounted, OVERRIDES="train.lr=0.001")
    put(tmp_path, "run.json")
    assert task.plan(env) == ["ft", "train", "--out", env["RUN_URI"], "--resume"]
    put(tmp_path, "manifest.json")
    assert task.plan(env) is None


def test_only_a_file_counts_as_started(task, tmp_path):
    (tmp_path / "runs" / "r1" / "run.json").mkdir(parents=True)  # as `[ -f ]` did
    assert "--config" in task.plan(job_env(tmp_path))


def test_several_nodes_share_the_mounted_directory(task, tmp_path):
    env = job_env(tmp_path, nodes=2, gpus=0)
    argv = task.plan(env)
    assert argv[argv.index("--out") + 1] == f"{tmp_path}/runs/r1"
    put(tmp_path, "run.json")
    resume = task.plan(env)
    assert resume[-5:] == ["ft", "train", "--out", f"{tmp_path}/runs/r1", "--resume"]


def test_finished_says_so_and_exits_zero(ft, tmp_path, monkeypatch):
    for key, value in job_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    put(tmp_path, "manifest.json")
    done = ft("task", "run")
    assert done.code == 0 and done.out.strip() == f"file://{tmp_path}/runs/r1 already finished"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"RUN_URI": "s3://other-bucket/runs/r1"}, "RUN_URI"),
        ({"RUN_URI": "BUCKET/"}, "RUN_URI"),
        ({"SKYPILOT_NUM_GPUS_PER_NODE": "eight"}, "SKYPILOT_NUM_GPUS_PER_NODE"),
    ],
)
def test_a_bad_job_environment_is_one_line(ft, tmp_path, monkeypatch, change, key):
    env = job_env(tmp_path)
    env |= {k: v.replace("BUCKET", env["ARTIFACT_BUCKET"]) for k, v in change.items()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    done = ft("task", "run")
    assert done.code == 2 and done.err.count("\n") == 1 and key in done.err
    assert not (tmp_path / "runs").exists()  # nothing started


def test_outside_a_job_it_names_the_missing_variable(ft, tmp_path, monkeypatch):
    env = job_env(tmp_path)
    del env["SKYPILOT_NODE_IPS"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SKYPILOT_NODE_IPS", raising=False)
    done = ft("task", "run")
    assert done.code == 2 and "SKYPILOT_NODE_IPS" in done.err and "ft launch" in done.err


# --- the process arithmetic ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpus", "nodes", "total"), [(0, 1, 1), (1, 1, 1), (8, 1, 8), (0, 2, 2), (4, 3, 12)]
)
def test_one_process_per_gpu_and_one_on_a_node_without(shape, gpus, nodes, total):
    assert shape.processes(gpus, nodes) == total


def test_a_single_process_needs_no_launcher(shape):
    train = ["ft", "train", "--out", "s3://b/r", "--resume"]
    assert shape.launcher(train, gpus_per_node=0, nodes=1, rank=0, node_ips="", port="1") == train


def test_several_processes_join_at_the_first_nodes_ip(shape):
    train = ["ft", "train", "--out", "/artifacts/r", "--resume"]
    argv = shape.launcher(
        train, gpus_per_node=8, nodes=2, rank=1, node_ips="10.0.0.7\n10.0.0.9", port="29511"
    )
    assert argv == [
        "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "16",
        "--num_machines",
        "2",
        "--machine_rank",
        "1",
        "--main_process_ip",
        "10.0.0.7",
        "--main_process_port",
        "29511",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--no_python",
        *train,
    ]
