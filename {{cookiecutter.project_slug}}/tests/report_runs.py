"""Smoke runs for tests/test_report.py and tests/test_history.py, trained once per session.

A throwaway git copy of this repository trains, in this process (the torch import is
paid once), what a user does in the issue's story:

- `base`: configs/smoke.yaml as shipped;
- `variant`: one filter tightened (`data.filters.2.params.limit=64`, max_chars), with
  its own data lock (`ft data build` wrote data-variant.lock, committed like a user
  would), and its metric records also sent to MLflow (`track.report_to=[mlflow]`, a
  file store in the session's tmp dir);
- `lr` (test_history only): the base data with another learning rate, a third release.

Both test modules ask for the runs through `runs(...)`, which trains each at most once
per session whichever module asks first.
"""

import os
from pathlib import Path

from test_closure import _git as git
from test_closure import copy_repo, mod

REPO = Path(__file__).resolve().parents[1]
PKG = next(p.name for p in sorted((REPO / "src").iterdir()) if (p / "__init__.py").is_file())
SMOKE = "configs/smoke.yaml"
VARIANT_LOCK = "data-variant.lock"
VARIANT = ["data.filters.2.params.limit=64", f"data.lock={VARIANT_LOCK}"]
TRACKED = ["track.report_to=[mlflow]", "track.experiment=report-tests"]
LR = ["train.lr=0.01"]
_CACHE: dict = {}


class _Env:
    """chdir and environment for one in-process `ft` call, restored afterwards."""

    def __init__(self, cwd: Path, **env: str):
        self.cwd, self.env = (
            cwd,
            {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CI": "1", **env},
        )

    def __enter__(self):
        self.old_cwd, self.old_env = os.getcwd(), dict(os.environ)
        os.chdir(self.cwd)
        os.environ.update(self.env)

    def __exit__(self, *exc):
        os.chdir(self.old_cwd)
        os.environ.clear()
        os.environ.update(self.old_env)


def project(tmp_path_factory, tiny_base: Path) -> Path:
    """A git copy of this repo (tracked and untracked-but-not-ignored files), base included."""
    if "project" not in _CACHE:
        dest = tmp_path_factory.mktemp("report-project")
        # base/ is ignored by .gitignore: copied in, left untracked.
        copy_repo(dest, extra={"base/tiny-llama": tiny_base})
        _CACHE["project"] = dest
    return _CACHE["project"]


def mlflow_uri(tmp_path_factory=None) -> str:
    """The MLflow file store the variant logged to."""
    if "mlflow" not in _CACHE:
        _CACHE["mlflow"] = (tmp_path_factory.mktemp("mlflow") / "store").as_uri()
    return _CACHE["mlflow"]


def _train(proj: Path, name: str, overrides: list[str], **env: str) -> Path:
    with _Env(proj, **env):
        mod("train.recipe").main(SMOKE, overrides, out=f"runs/{name}")
    return proj / "runs" / name


def runs(tmp_path_factory, tiny_base: Path, *names: str) -> dict[str, Path]:
    """The named runs (base, variant, lr), trained on first request."""
    proj = project(tmp_path_factory, tiny_base)
    for name in names:
        if name in _CACHE:
            continue
        if name == "base":
            _CACHE[name] = _train(proj, "base", [])
        elif name == "variant":
            with _Env(proj):
                assert (
                    mod("cli").main(
                        ["data", "build", "--config", SMOKE, *[f"--set={o}" for o in VARIANT]]
                    )
                    == 0
                )
            git(proj, "add", VARIANT_LOCK)
            git(proj, "commit", "-q", "-m", "tighten max_chars to 64")
            # mlflow's file store is in maintenance mode: allowed explicitly, offline.
            _CACHE[name] = _train(
                proj,
                "variant",
                VARIANT + TRACKED,
                MLFLOW_TRACKING_URI=mlflow_uri(tmp_path_factory),
                MLFLOW_ALLOW_FILE_STORE="true",
            )
        elif name == "lr":
            _CACHE[name] = _train(proj, "lr", LR)
        else:
            raise KeyError(name)
    return {name: _CACHE[name] for name in names}


def in_project(proj: Path, **env: str) -> _Env:
    return _Env(proj, **env)
