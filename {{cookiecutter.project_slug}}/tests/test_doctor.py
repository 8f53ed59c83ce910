"""No state on a CI runner, and `ft doctor` (src/<pkg>/ops/runner.py, ops/doctor.py).

    uv run pytest tests/test_doctor.py -q

Under GITHUB_ACTIONS=true the commands that hand a run or a version to another workflow run
refuse this machine's disk with the repository variable to set; `ft doctor --workflow W`
lists what W needs, one line each, exits 2 when something required is missing, and never
prints a secret. All in-process and offline: seconds.
"""

import importlib
import re
from pathlib import Path

import pytest

GITHUB = {"GITHUB_ACTIONS": "true"}
ALL_NAMES = [
    "GITHUB_ACTIONS",
    "FT_RUNNER_SCRATCH",
    "FT_ARTIFACT_STORE",
    "FT_REGISTRY",
    "AWS_ROLE_ARN",
    "AWS_ACCESS_KEY_ID",
    "SKYPILOT_API_SERVER_ENDPOINT",
    "SKYPILOT_SERVICE_ACCOUNT_TOKEN",
    "HAVE_SKYPILOT_SERVICE_ACCOUNT_TOKEN",
    "HF_TOKEN",
    "HAVE_HF_TOKEN",
    "MLFLOW_TRACKING_URI",
    "GIT_TOKEN",
]


@pytest.fixture
def env(monkeypatch, data_workdir):
    for name in ALL_NAMES:
        monkeypatch.delenv(name, raising=False)

    def set_(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)

    return set_


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["train", "--config", "configs/smoke.yaml", "--out", "runs/x"], ["--out", "runs/x"]),
        (["train", "--config", "configs/smoke.yaml"], ["--out", "'runs'"]),
        (["fetch", "runs/x", "runs/y"], ["run_url", "runs/x"]),
        (["fetch", "file:///tmp/runs/x", "runs/y"], ["run_url", "file:///tmp/runs/x"]),
    ],
    ids=["train-relative", "train-default", "fetch-relative", "fetch-file-url"],
)
def test_runner_refuses_a_store_on_its_own_disk(ft, env, argv, needles):
    env(**GITHUB)
    line = ft(*argv).user_error(*needles, "set the repository variable FT_ARTIFACT_STORE")
    assert "gone when the job ends" in line


@pytest.mark.parametrize(
    "argv, key",
    [
        (["registry", "list"], "publish.registry"),
        (["registry", "pull", "latest", "out", "--registry", "file://./registry"], "--registry"),
        (["registry", "show", "v1.0.0", "--registry", "file:///srv/reg"], "--registry"),
        (["publish", "runs/x", "--version", "v1.0.0", "--registry", "file://reg"], "--registry"),
    ],
    ids=["list-config-default", "pull", "show", "publish"],
)
def test_runner_refuses_a_file_registry(ft, env, argv, key):
    if argv == ["registry", "list"]:
        # The config's default registry on this disk, whatever registry the bake chose.
        recipe = Path("configs/recipe.yaml")
        text, n = re.subn(
            r"(?m)^  registry: .*$", "  registry: file://./registry", recipe.read_text()
        )
        assert n == 1
        recipe.write_text(text)
    env(**GITHUB)
    ft(*argv).user_error(key, "set the repository variable FT_REGISTRY", "hf://OWNER/REPO")


def test_off_the_runner_all_is_allowed_and_scratch_relaxes_only_runs(env, pkg):
    runner = importlib.import_module(f"{pkg.__name__}.ops.runner")
    # Off a runner: a laptop keeps runs and versions on disk, as ever.
    runner.require_shared_store("runs/x", key="--out")
    runner.require_shared_registry("file://./registry", key="--registry")
    env(**GITHUB, FT_RUNNER_SCRATCH="1")
    runner.require_shared_store("runs/smoke", key="--out")  # ci.yml's throwaway smoke run
    with pytest.raises(pkg.errors.UserError, match="FT_REGISTRY"):
        runner.require_shared_registry("file://./registry", key="--registry")


def test_doctor_ci_needs_nothing(ft, env):
    env(FT_REGISTRY="hf://acme/model")
    result = ft("doctor", "--workflow", "ci")
    assert result.code == 0, result.err
    assert "FT_REGISTRY" in result.out and "HF_TOKEN" in result.out
    assert "MISSING" not in result.out


def test_doctor_release_lists_every_missing_setting_then_exits_2(ft, env):
    env(FT_REGISTRY="mlflow://model")
    result = ft("doctor", "--workflow", "release", "--backend", "sky")
    assert result.code == 2
    missing = [line.split()[1] for line in result.out.splitlines() if line.startswith("MISSING")]
    assert missing == [
        "FT_ARTIFACT_STORE",
        "SKYPILOT_API_SERVER_ENDPOINT",
        "SKYPILOT_SERVICE_ACCOUNT_TOKEN",
        "MLFLOW_TRACKING_URI",
    ]
    assert "GIT_TOKEN" in result.out and "note" in result.out  # optional: a private repo only
    line = result.err.strip()
    assert line.startswith("error: --workflow release: 4 required setting(s) missing")
    assert "(fix: " in line


def test_doctor_release_ok_when_configured_and_never_prints_a_secret(ft, env):
    secret = "hf_do-not-print-me-0123456789"
    env(
        FT_ARTIFACT_STORE="s3://bucket/runs",
        AWS_ROLE_ARN="arn:aws:iam::123:role/ci",
        FT_REGISTRY="hf://acme/model",
        SKYPILOT_API_SERVER_ENDPOINT="https://sky.example.com",
        HAVE_SKYPILOT_SERVICE_ACCOUNT_TOKEN="true",
        HF_TOKEN=secret,
    )
    result = ft("doctor", "--workflow", "release", "--backend", "sky")
    assert result.code == 0, result.out + result.err
    assert "MISSING" not in result.out
    assert secret not in result.out + result.err
    ok = {line.split()[1] for line in result.out.splitlines() if line.startswith("ok")}
    assert {"FT_ARTIFACT_STORE", "AWS_ROLE_ARN", "SKYPILOT_SERVICE_ACCOUNT_TOKEN", "HF_TOKEN"} <= ok


def test_doctor_with_a_config_that_sets_no_registry_uses_the_repos(ft, env, pkg):
    # configs/smoke.yaml leaves publish.registry unset: recipe.yaml's registry is the repo's.
    registries = importlib.import_module(f"{pkg.__name__}.publish.registries")
    repo_registry, _ = registries.repo_registry()
    result = ft("doctor", "--workflow", "release", "--config", "configs/smoke.yaml")
    assert result.code == 2, result.err
    line = next(line for line in result.out.splitlines() if " FT_REGISTRY " in line)
    assert repo_registry in line, result.out


def test_doctor_refuses_a_local_store_for_train(ft, env):
    env(FT_ARTIFACT_STORE="runs")
    result = ft("doctor", "--workflow", "train", "--backend", "local")
    assert result.code == 2
    assert "MISSING  FT_ARTIFACT_STORE" in result.out
    assert "'runs' is this machine's disk" in result.out
    ft("doctor", "--workflow", "nightly").user_error("--workflow", "unknown workflow")
