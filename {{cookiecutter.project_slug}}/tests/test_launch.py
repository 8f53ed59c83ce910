"""`ft launch` and sky/train.yaml, up to SkyPilot's API: everything short of a cloud.

    uv sync --frozen --group launch && uv run pytest tests/test_launch.py -q

- sky/train.yaml loads with SkyPilot's own parser and says what the bake answered;
- the task `ft launch --backend sky` submits, caught at the SDK boundary (`launch.submit`):
  digest-pinned image, hardware, envs, secrets (never envs), bucket mount, git workdir;
- launch refuses a stale or missing image.lock, a dirty tree, a bad shape;
- the YAML's `run:` script, executed here with SkyPilot's variables for 2 nodes, starts
  2 processes that train together (gloo) into the "bucket", and that run reproduces;
- `--backend local` runs ft train (or a command) as a subprocess.
Tests that need the SkyPilot SDK skip without it, saying which sync installs it.
"""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from launch_support import DIGEST, ROOT, commit, copy_project, enter_project, git, mod
from launch_support import subprocess_env as env_for

SECRET = "hf_launch_test_secret_0123456789"
SMOKE = "configs/smoke.yaml"


@pytest.fixture(scope="session")
def sky():
    return pytest.importorskip(
        "sky", reason="the SkyPilot SDK is in the `launch` group: uv sync --frozen --group launch"
    )


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    return enter_project(tmp_path, monkeypatch)


@pytest.fixture
def submitted(monkeypatch):
    """Stop at the SDK boundary: record what would be submitted; the job 'exits' with `code`."""
    calls: dict[str, Any] = {"tasks": [], "code": 0}
    launch = mod("ops.launch")

    def submit(task, name):
        calls["tasks"].append((task, name))
        return 42

    def follow(job_id):
        assert job_id == 42
        return calls["code"]

    monkeypatch.setattr(launch, "submit", submit)
    monkeypatch.setattr(launch, "follow", follow)
    return calls


def task_yaml() -> dict:
    return yaml.safe_load((ROOT / "sky" / "train.yaml").read_text())


def recipe_launch() -> dict:
    return yaml.safe_load((ROOT / "configs" / "recipe.yaml").read_text())["launch"]


# --- the task file ---------------------------------------------------------------------------


def test_task_yaml_loads_with_skypilot(sky):
    task = sky.Task.from_yaml(str(ROOT / "sky" / "train.yaml"))
    resources = next(iter(task.resources))
    launch = recipe_launch()
    name, count = launch["accelerators"].split(":")
    assert resources.accelerators == {name: int(count)}
    assert task.num_nodes == int(launch["num_nodes"])
    assert resources.image_id is None  # never hard-coded: ft launch pins it from image.lock
    assert resources.job_recovery["max_restarts_on_errors"] >= 1
    # docs/launch.md, per cloud: an AWS VM reaches its S3 bucket by its IAM role and a GCP VM
    # its gs:// bucket by its service account; any other cloud needs the S3 key pair.
    key_pair = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert [ref.name for ref in task.managed_secret_refs] == [
        "HF_TOKEN",
        "SKYPILOT_DOCKER_USERNAME",
        "SKYPILOT_DOCKER_PASSWORD",
        "SKYPILOT_DOCKER_SERVER",
        *([] if launch["infra"] in ("aws", "gcp") else key_pair),
    ]
    assert not task.secrets  # no value in the file
    if launch["infra"] == "runpod":  # no bucket mounts there: `ft task run` asks the bucket
        assert not task.storage_mounts and "ARTIFACTS" not in task.envs
    else:
        assert task.storage_mounts["/artifacts"].source == task.envs["ARTIFACT_BUCKET"]
        assert task.envs["ARTIFACTS"] == "/artifacts"
    assert "uv sync --frozen --no-dev" in task.setup


@pytest.mark.parametrize(
    ("groups", "argv"),
    [
        ("", "sync --frozen --no-dev --group qlora"),
        ("hub-data mlflow", "sync --frozen --no-dev --group qlora --group hub-data --group mlflow"),
    ],
)
def test_setup_syncs_qlora_and_the_groups_ft_launch_fills(tmp_path, groups, argv):
    """The task's real setup script, run by bash with a `uv` that records its arguments."""
    (tmp_path / "uv").write_text('#!/bin/sh\necho "$@" > "$ARGV"\n')
    (tmp_path / "uv").chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "FT_GROUPS": groups,
        "ARGV": str(tmp_path / "argv"),
    }
    subprocess.run(["bash", "-euo", "pipefail", "-c", task_yaml()["setup"]], env=env, check=True)
    assert (tmp_path / "argv").read_text().strip() == argv


def test_task_yaml_reads_top_to_bottom_and_matches_the_recipe():
    text = (ROOT / "sky" / "train.yaml").read_text()
    assert text.startswith("# SkyPilot managed job") and "uv run ft launch --backend sky" in text
    assert all(marker not in text for marker in ("{" + "{", "{" + "%"))  # no Jinja left
    spec = task_yaml()
    assert list(spec) == [
        "name",
        "resources",
        "num_nodes",
        "workdir",
        "envs",
        "secrets",
        *([] if recipe_launch()["infra"] == "runpod" else ["file_mounts"]),
        "setup",
        "run",
    ]
    launch = recipe_launch()
    assert spec["resources"]["accelerators"] == launch["accelerators"]
    assert spec["num_nodes"] == launch["num_nodes"]
    assert spec["resources"].get("infra", "any") == launch["infra"]
    assert "image_id" not in spec["resources"]
    assert spec["run"].strip().endswith('exec "$UV_PROJECT_ENVIRONMENT/bin/ft" task run')
    for key in spec["envs"]:  # tokens belong under secrets:, never envs
        assert not mod("ops.launch").SECRET_NAME.fullmatch(key), key


# --- what `ft launch --backend sky` submits -------------------------------------------------------


def test_sky_launch_submits_the_tested_task(sky, project, submitted, ft, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    lock = json.loads(Path("image.lock").read_text())
    head = git(project, "rev-parse", "HEAD")
    result = ft(
        "launch",
        "--backend",
        "sky",
        "--config",
        "configs/recipe.yaml",
        "--set",
        "train.lr=0.001",
        "--run-uri",
        "s3://bucket-x/runs/r1",
    )
    assert result.code == 0, result.err
    assert "managed job 42 finished with exit code 0" in result.err
    assert SECRET not in result.out + result.err

    [(task, name)] = submitted["tasks"]
    assert name == f"{task_yaml()['name']}-r1"
    resources = next(iter(task.resources))
    assert resources.image_id == {None: f"docker:{lock['name']}@{DIGEST}"}
    launch = recipe_launch()
    acc, count = launch["accelerators"].split(":")
    assert resources.accelerators == {acc: int(count)}
    assert resources.use_spot is launch["use_spot"]
    assert resources.job_recovery["strategy"] == "EAGER_NEXT_REGION"
    assert task.num_nodes == launch["num_nodes"]
    assert {
        k: task.envs[k]
        for k in (
            "CONFIG",
            "OVERRIDES",
            "RUN_URI",
            "ARTIFACT_BUCKET",
            "COMMIT",
            "REPO_URL",
            "FT_IMAGE_DIGEST",
            "FT_LAUNCH_BACKEND",
            "FT_GROUPS",
        )
    } == {
        "CONFIG": "configs/recipe.yaml",
        "OVERRIDES": "train.lr=0.001",
        "RUN_URI": "s3://bucket-x/runs/r1",
        "ARTIFACT_BUCKET": "s3://bucket-x",
        "COMMIT": head,
        "REPO_URL": git(project, "remote", "get-url", "origin"),
        "FT_IMAGE_DIGEST": f"{lock['name']}@{DIGEST}",
        "FT_LAUNCH_BACKEND": "sky",
        "FT_GROUPS": "",
    }
    assert task.secrets["HF_TOKEN"].get_secret_value() == SECRET
    assert SECRET not in json.dumps(task.envs)
    assert task.workdir == {"url": task.envs["REPO_URL"], "ref": head}
    if recipe_launch()["infra"] != "runpod":  # RunPod has no bucket mounts
        mount = task.storage_mounts["/artifacts"]
        assert mount.source == "s3://bucket-x" and mount.mode.name == "MOUNT_CACHED"
    assert task.run == task_yaml()["run"]  # the tested script, unchanged


def test_sky_launch_defaults_and_a_command(sky, project, submitted, ft, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("FT_ARTIFACT_STORE", "gs://team-store/runs")
    result = ft(
        "launch",
        "--backend",
        "sky",
        "--set",
        "launch.infra=gcp",
        "--set",
        "launch.accelerators=A100-80GB:8",
        "--set",
        "launch.num_nodes=2",
        "--",
        "nvidia-smi",
        "-L",
    )
    assert result.code == 0, result.err
    assert "HF_TOKEN" in result.err and "not set here; the job runs without" in result.err
    [(task, name)] = submitted["tasks"]
    resources = next(iter(task.resources))
    assert str(resources.cloud) == "GCP" and resources.accelerators == {"A100-80GB": 8}
    assert task.num_nodes == 2 and task.run == "nvidia-smi -L"
    assert task.envs["RUN_URI"].startswith("gs://team-store/runs/recipe-")
    assert task.envs["ARTIFACT_BUCKET"] == "gs://team-store"
    assert not task.secrets and not task.managed_secret_refs


def test_the_job_syncs_the_groups_its_config_needs(sky, project, submitted, ft):
    result = ft("launch", "--backend", "sky", "--set", "track.report_to=[mlflow]")
    assert result.code == 0, result.err
    [(task, _)] = submitted["tasks"]
    assert task.envs["FT_GROUPS"] == "mlflow"


def test_detach_submits_and_returns_without_following(sky, project, submitted, ft, monkeypatch):
    """train.yml's form: no runner waits on a GPU job; the job's name carries the commit."""
    monkeypatch.setattr(mod("ops.launch"), "follow", lambda job_id: pytest.fail("followed"))
    sha = git(project, "rev-parse", "HEAD")
    result = ft("launch", "--backend", "sky", "--detach", "--run-uri", f"s3://b/runs/{sha}")
    assert result.code == 0, result.err
    job = json.loads(result.out)
    assert job == {
        "job_id": 42,
        "name": f"{task_yaml()['name']}-{sha}",
        "run_uri": f"s3://b/runs/{sha}",
    }
    assert "not following" in result.err
    ft("launch", "--backend", "sky", "--detach", "--fetch", "runs/x").user_error(
        "--detach", "--fetch waits for the job"
    )
    ft("launch", "--backend", "local", "--detach").user_error("--detach", "--backend sky")


def test_the_jobs_exit_code_is_ft_launchs(sky, project, submitted, ft):
    submitted["code"] = 100  # SkyPilot's JobExitCode.FAILED
    result = ft(
        "launch", "--backend", "sky", "--run-uri", "s3://b/runs/failed", "--fetch", "runs/never"
    )
    assert result.code == 100
    assert not Path("runs/never").exists()


@pytest.mark.parametrize("stale", ["no digest", "uv.lock", "Dockerfile"])
def test_sky_launch_refuses_a_stale_or_missing_image(sky, project, submitted, ft, stale):
    if stale == "no digest":
        lock = json.loads(Path("image.lock").read_text())
        Path("image.lock").write_text(json.dumps(lock | {"digest": None}, indent=2) + "\n")
        key = "digest"
    else:
        with open(stale, "a") as f:
            f.write("\n")
        key = "uv_lock_sha256" if stale == "uv.lock" else "dockerfile_sha256"
    commit(project, f"make the image stale: {stale}")
    ft("launch", "--backend", "sky").user_error("image.lock", key, "ft image record")
    assert submitted["tasks"] == []


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("launch.accelerators=H100:3", ("launch.accelerators", "not '3'")),
        ("launch.accelerators=H100", ("launch.accelerators", "NAME:COUNT")),
        ("launch.num_nodes=0", ("launch.num_nodes",)),
        ("launch.infra=lambda launch.use_spot=true", ("launch.use_spot", "no spot")),
        ("launch.image=ghcr.io/o/other@sha256:" + "e" * 64, ("launch.image", "image.lock has")),
    ],
)
def test_sky_launch_checks_the_shape_before_submitting(
    sky, project, submitted, ft, override, needles
):
    sets = [arg for item in override.split() for arg in ("--set", item)]
    ft("launch", "--backend", "sky", *sets).user_error(*needles)
    assert submitted["tasks"] == []


def test_an_accelerator_missing_from_the_list_is_warned_about_and_submitted(
    sky, project, submitted, ft
):
    """SkyPilot's catalog cannot be read offline: a new GPU name warns instead of failing."""
    result = ft("launch", "--backend", "sky", "--set", "launch.accelerators=B300:8")
    assert result.code == 0, result.err
    assert "launch.accelerators: 'B300' is not in ft's list" in result.err
    assert "sky show-gpus B300" in result.err
    [(task, _)] = submitted["tasks"]
    assert next(iter(task.resources)).accelerators == {"B300": 8}


def test_sky_launch_refuses_what_would_not_reach_the_job(sky, project, submitted, ft):
    Path("configs/recipe.yaml").write_text(Path("configs/recipe.yaml").read_text() + "\n")
    ft("launch", "--backend", "sky").user_error(
        "configs/recipe.yaml", "uncommitted changes", "commit and push"
    )
    commit(project, "commit it")
    git(project, "remote", "remove", "origin")
    ft("launch", "--backend", "sky").user_error("origin", "git remote add origin")
    git(project, "remote", "add", "origin", "https://user:tok@github.com/o/r.git")
    ft("launch", "--backend", "sky").user_error("origin", "credentials")
    git(project, "remote", "set-url", "origin", "https://github.com/o/r.git")
    ft("launch", "--backend", "sky", "--run-uri", "runs/local").user_error("--run-uri", "bucket")
    assert submitted["tasks"] == []


def test_sky_launch_refuses_a_secret_in_envs(sky, project, submitted, ft):
    spec = Path("sky/train.yaml")
    spec.write_text(
        spec.read_text().replace(
            "  CONFIG: configs/recipe.yaml", "  WANDB_API_KEY: abc\n  CONFIG: configs/recipe.yaml"
        )
    )
    commit(project, "a secret in envs")
    ft("launch", "--backend", "sky").user_error("sky/train.yaml", "envs.WANDB_API_KEY", "secrets:")
    assert submitted["tasks"] == []


def test_sky_launch_without_the_sdk_says_how_to_install_it(project, ft, monkeypatch):
    monkeypatch.setitem(sys.modules, "sky", None)  # `import sky` raises ImportError
    ft("launch", "--backend", "sky").user_error("--backend sky", "uv sync --frozen --group launch")


# --- REPRODUCE.md of a cloud run ------------------------------------------------------------


def test_a_cloud_runs_reproduce_block_is_the_ft_launch_form(pkg):
    manifest = mod("closure.reproduce_md")
    record = {
        "command": {
            "config": "configs/recipe.yaml",
            "overrides": ["train.lr=0.001"],
            "backend": "sky",
        },
        "hardware": {"world_size": 16},
    }
    block = manifest.reproduce_command(record)
    assert block == (
        "uv sync --frozen --group launch\n"
        "uv run --frozen --group launch ft launch --backend sky --config "
        "configs/recipe.yaml --set train.lr=0.001 "
        '--fetch "${FT_OUT:-runs/reproduced}"\n'
    )
    argv = shlex.split(block.splitlines()[1].replace('"${FT_OUT:-runs/reproduced}"', "out"))
    args = pkg.cli.build_parser().parse_args(argv[argv.index("ft") + 1 :])
    assert (args.backend, args.config, args.overrides, args.fetch) == (
        "sky",
        "configs/recipe.yaml",
        ["train.lr=0.001"],
        "out",
    )


# --- the local backend ----------------------------------------------------------------------


def test_local_launch_runs_a_command_and_returns_its_status(project, capfd):
    code = mod("cli").main(
        [
            "launch",
            "--backend",
            "local",
            "--config",
            SMOKE,
            "--",
            sys.executable,
            "-c",
            "import os, sys; print(os.environ['FT_LAUNCH_BACKEND']); sys.exit(3)",
        ]
    )
    assert code == 3
    assert capfd.readouterr().out.strip() == "local"


@pytest.mark.slow
def test_local_launch_trains_the_config(project):
    """The workflow's CPU path: `ft launch --backend local --run-uri DIR` = `ft train --out DIR`."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            f"{mod('cli').__package__}.cli",
            "launch",
            "--backend",
            "local",
            "--config",
            SMOKE,
            "--set",
            "train.max_steps=4",
            "--run-uri",
            "runs/local",
        ],
        cwd=project,
        env=env_for(FT_LAUNCH_BACKEND="sky"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "launch (local):" in done.stderr and " train --config configs/smoke.yaml" in done.stderr
    manifest = json.loads((project / "runs/local/manifest.json").read_text())
    assert manifest["command"]["backend"] == "local"  # ft launch overrides a stray value
    assert manifest["command"]["overrides"] == ["train.max_steps=4"]
    assert "uv run --frozen ft train" in (project / "runs/local/REPRODUCE.md").read_text()


# --- the run: script, on this machine ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _job_env(project: Path, bucket: Path, run: str, nodes: int, rank: int, **extra) -> dict:
    """The environment SkyPilot gives the script on one node, with the bucket on local disk."""
    envs = {k: str(v) for k, v in task_yaml()["envs"].items()}
    envs |= {
        "CONFIG": SMOKE,
        "ARTIFACT_BUCKET": f"file://{bucket}",
        "ARTIFACTS": str(bucket),
        "RUN_URI": f"file://{bucket}/runs/{run}",
        "COMMIT": git(project, "rev-parse", "HEAD"),
        "FT_IMAGE_DIGEST": f"ghcr.io/example-org/example-finetune@{DIGEST}",
        # "local", so REPRODUCE.md is the torchrun form this machine can re-run.
        "FT_LAUNCH_BACKEND": "local",
        "UV_PROJECT_ENVIRONMENT": str(project / ".venv"),
        "SKYPILOT_NUM_NODES": str(nodes),
        "SKYPILOT_NODE_RANK": str(rank),
        "SKYPILOT_NODE_IPS": "\n".join(["127.0.0.1"] * nodes),
        "SKYPILOT_NUM_GPUS_PER_NODE": "0",
        **extra,
    }
    return env_for(**envs)


@pytest.fixture(scope="module")
def job_project(tmp_path_factory) -> Path:
    """A committed copy whose venv is made by the YAML's own `setup:` (as on the image)."""
    project = copy_project(tmp_path_factory.mktemp("job"))
    env = env_for(UV_PROJECT_ENVIRONMENT=str(project / ".venv"))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", task_yaml()["setup"]],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return project


def _script(project: Path, env: dict, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", task_yaml()["run"]], cwd=project, env=env, text=True, **popen
    )


@pytest.mark.slow
def test_two_nodes_train_together_and_the_run_reproduces(job_project, tmp_path):
    bucket = tmp_path / "bucket"
    port = str(_free_port())
    nodes = [
        _script(
            job_project,
            _job_env(job_project, bucket, "two-nodes", 2, rank, MAIN_PROCESS_PORT=port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in (0, 1)
    ]
    logs = [node.communicate(timeout=900)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-2000:] for log in logs)

    run = bucket / "runs" / "two-nodes"  # written through the "mounted bucket"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["hardware"]["world_size"] == 2
    assert manifest["git"] == {"commit": git(job_project, "rev-parse", "HEAD"), "dirty": False}
    assert manifest["environment"]["image_digest"].endswith(DIGEST)
    assert manifest["command"]["overrides"] == []

    # A restart of the finished job (e.g. recovery racing completion) does nothing.
    again = _script(
        job_project,
        _job_env(job_project, bucket, "two-nodes", 2, 0),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert again.communicate(timeout=60)[0].strip().endswith("already finished")
    assert again.returncode == 0

    # The run reproduces itself: REPRODUCE.md re-runs 2 processes, bytes compared.
    done = subprocess.run(
        [str(job_project / ".venv" / "bin" / "ft"), "reproduce", str(run)],
        cwd=job_project,
        env=env_for(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--nproc_per_node=2" in (run / "REPRODUCE.md").read_text()
    assert json.loads((run / "verification.json").read_text())["passed"] is True


@pytest.mark.slow
def test_a_preempted_single_node_job_resumes_from_the_bucket(job_project, tmp_path):
    bucket = tmp_path / "bucket"
    env = _job_env(job_project, bucket, "preempted", 1, 0)
    first = _script(job_project, env, stderr=subprocess.PIPE, start_new_session=True)
    assert first.stderr is not None
    for line in first.stderr:
        if line.startswith("step 6/"):  # checkpoint at step 4 is in the bucket by now
            os.killpg(first.pid, signal.SIGKILL)  # the VM is gone
            break
    first.wait(timeout=60)
    run = bucket / "runs" / "preempted"
    assert (run / "run.json").is_file() and not (run / "manifest.json").exists()
    assert (run / "checkpoints" / "step-00000004" / "COMPLETE").is_file()

    second = _script(job_project, env, stderr=subprocess.PIPE)
    err = second.communicate(timeout=900)[1]
    assert second.returncode == 0, err[-3000:]
    assert "pulled" in err and "resuming from checkpoints/step-00000004" in err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["hardware"]["world_size"] == 1 and manifest["metrics"]["steps"] == 12
