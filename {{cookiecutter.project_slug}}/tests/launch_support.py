"""Helpers for tests/test_image.py and tests/test_launch.py: a committed copy of this repo.

`ft launch --backend sky` and `ft image record` read git (HEAD, a clean tree, the
`origin` remote), so those tests run in a throwaway copy that is its own git repo.
"""

import importlib
import os
import subprocess
import sys
from pathlib import Path

from test_closure import copy_repo

ROOT = Path(__file__).resolve().parents[1]
PKG_NAME = next(p.name for p in sorted((ROOT / "src").iterdir()) if (p / "__init__.py").is_file())
REMOTE = "https://github.com/example-org/example-finetune.git"
DIGEST = "sha256:" + "d1" * 32
BASE_DIGEST = "sha256:" + "b5" * 32


def mod(stage: str):
    """A module of this repo's package (its name differs per bake)."""
    return importlib.import_module(f"{PKG_NAME}.{stage}")


def git(cwd: Path, *args: str) -> str:
    ident = ["-c", "user.name=test", "-c", "user.email=test@localhost"]
    return subprocess.run(
        ["git", *ident, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


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
