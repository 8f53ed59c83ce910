"""`ft reproduce --clean-room`: the re-run sees only its checkout and what it pins.

The pipeline must still run when its resources are accessed by a different account with
nothing of this machine's state. Around the REPRODUCE.md block, the clean room
1. refuses, naming the config key, a file the run's config reads from outside the
   checkout (an absolute path or `..`), or a local base model that is neither in the
   checkout nor rebuildable (`build:`): a run that needs it cannot be rebuilt elsewhere;
2. gives the block a fresh, empty HOME and empty Hugging Face / torch / XDG caches, so
   hub files are fetched at their pinned revisions or not at all (a model found only in
   this machine's warm cache fails, naming it);
3. strips every credential-like variable (tokens, secrets, keys, passwords) so the
   run holds no write credentials; `--keep-env NAME` passes one through by name (a
   sky-trained run's REPRODUCE.md needs the SkyPilot token to submit its job);
4. afterwards fails naming any tracked file of the checkout the run modified: sources
   and configs are read-only to a reproduction (witnessed by git, which also holds
   when file modes cannot, e.g. as root).
uv's package cache is kept (UV_CACHE_DIR, UV_PYTHON_INSTALL_DIR): uv checks every wheel
against the sha256 in uv.lock, so a warm cache cannot change what is installed.
"""

import re
import subprocess
from pathlib import Path, PurePosixPath

CREDENTIAL = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|(^|_)KEY($|_)|_KEY_ID$|^AWS_")
CACHES = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "HF_DATASETS_CACHE",
    "TORCH_HOME",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
)


def outside_resources(config: dict, tree: Path) -> list[str]:
    """`key: path` for every file the config reads that a checkout of the commit lacks."""
    found = []

    def check(key: str, path: str | None, buildable: bool = False) -> None:
        if not path or "://" in path:  # URLs are pinned by content and fetched
            return
        p = PurePosixPath(path)
        if p.is_absolute() or ".." in p.parts:
            found.append(f"{key}: {path} (outside the repository)")
        elif not (tree / path).exists() and not buildable:
            found.append(f"{key}: {path} (not in the checkout of the commit)")

    for i, source in enumerate(config.get("data", {}).get("sources", [])):
        check(f"data.sources.{i}.path", source.get("path"))
    for i, suite in enumerate(config.get("eval", {}).get("suites", [])):
        check(f"eval.suites.{i}.path", suite.get("path"))
    base = config.get("model", {}).get("base", {})
    check("model.base.path", base.get("path"), buildable=base.get("build") is not None)
    return found


def _uv_dir(*args: str) -> str | None:
    done = subprocess.run(["uv", *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def environment(
    env: dict[str, str], scratch: Path, keep: tuple[str, ...] = ()
) -> tuple[dict[str, str], list[str]]:
    """(the clean room's environment, the names of the variables it dropped). `keep` names
    credentials the block needs to run at all (e.g. the SkyPilot token of a sky-trained
    run): they pass through, and must be read- or launch-scoped, never registry writers."""
    keep_uv = {
        "UV_CACHE_DIR": _uv_dir("cache", "dir"),
        "UV_PYTHON_INSTALL_DIR": _uv_dir("python", "dir"),
    }
    dropped = sorted(k for k in env if CREDENTIAL.search(k) and k not in keep)
    clean = {k: v for k, v in env.items() if k not in dropped and k not in CACHES}
    home = scratch / "home"
    home.mkdir(parents=True, exist_ok=True)
    clean["HOME"] = str(home)
    clean["XDG_CACHE_HOME"] = str(home / ".cache")
    clean["HF_HOME"] = str(home / ".cache" / "huggingface")
    clean["TORCH_HOME"] = str(home / ".cache" / "torch")
    clean |= {k: v for k, v in keep_uv.items() if v and k not in clean}
    return clean, dropped


def modified_tracked_files(tree: Path) -> list[str]:
    done = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=tree,
    )
    return [line[3:] for line in done.stdout.splitlines() if line.strip()]
