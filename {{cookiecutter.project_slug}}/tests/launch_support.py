"""Helpers for tests/test_image.py and tests/test_launch.py: a committed copy of this repo.

`ft launch --backend sky` and `ft image record` read git (HEAD, a clean tree, the
`origin` remote), so those tests run in a throwaway copy that is its own git repo.
"""

import os
import sys
from pathlib import Path

from test_closure import _git as git
from test_closure import copy_repo, mod

ROOT = Path(__file__).resolve().parents[1]
PKG_NAME = next(p.name for p in sorted((ROOT / "src").iterdir()) if (p / "__init__.py").is_file())
REMOTE = "https://github.com/example-org/example-finetune.git"
DIGEST = "sha256:" + "d1" * 32
BASE_DIGEST = "sha256:" + "b5" * 32


def enter_project(tmp_path: Path, monkeypatch) -> Path:
    """A committed copy of the repo with a recorded image and a git remote, as the cwd, with
    no artifact store configured."""
    copy_project(tmp_path)
    record_image(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FT_ARTIFACT_STORE", raising=False)
    return tmp_path


def copy_project(dest: Path, remote: str | None = REMOTE) -> Path:
    """This repo's working files (tracked and untracked, not ignored), committed in `dest`."""
    return copy_repo(dest, remote=remote)


def commit(project: Path, message: str) -> str:
    git(project, "add", "-A")
    git(project, "commit", "-q", "--allow-empty", "-m", message)
    return git(project, "rev-parse", "HEAD")


def record_image(project: Path) -> dict:
    """image.lock for a (pretend) image built from this commit, committed."""
    lock = mod("ops.image").record(None, DIGEST, BASE_DIGEST, root=project)
    commit(project, "record the training image")
    return lock


def subprocess_env(**extra: str) -> dict:
    """This environment for a child process: offline, CI-style logs, this venv's uv first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "FT_LAUNCH_BACKEND")
    }
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CI": "1", **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env
