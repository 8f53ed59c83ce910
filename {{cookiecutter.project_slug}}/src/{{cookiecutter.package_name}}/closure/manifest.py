"""The manifest: what a run was made from and what it made.

manifest.json is written last by `ft train`: its existence means the run
finished. REPRODUCE.md is rendered from it, never by hand (reproduce_md.py); `ft reproduce`
re-renders it to catch edits and executes its one fenced command block verbatim.

Keys listed in VOLATILE may differ between two runs of the same closure (when,
how fast, which directory); everything else must match for a reproduction.
"""

import json
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from ..errors import UserError
from ..train.checkpoint import chain
from ..util import git
from ..util.groups import run_groups
from ..util.hashing import sha256_bytes, sha256_file, write_atomic
from ..util.paths import safe_name
from ..util.records import read_json
from .reproduce_md import render_reproduce

SCHEMA = 1
VOLATILE = ("created_at", "run_id", "timing", "invocation")
# README.md is the model card a registry adds beside a published run.
# segment.json: what an interval replay (`ft train --segment`) records instead of a manifest.
NOT_OUTPUTS = {
    "manifest.json",
    "REPRODUCE.md",
    "verification.json",
    "run.json",
    "README.md",
    "segment.json",
}
NOT_OUTPUT_DIRS = {"checkpoints", "reproduce", "report"}  # report: `ft report`'s default --out
LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "tokenizers",
    "safetensors",
    "numpy",
)


def output_files(run_dir: Path) -> dict[str, str]:
    """sha256 of every output file of a run, by path relative to the run directory."""
    run_dir = Path(run_dir)
    hashes = {}
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if (
            not path.is_file()
            or rel.parts[0] in NOT_OUTPUT_DIRS
            or str(rel) in NOT_OUTPUTS
            or any(part.startswith(".") for part in rel.parts)
        ):
            continue
        hashes[rel.as_posix()] = sha256_file(path)
    return hashes


def git_state() -> dict:
    """The checkout's commit, whether it is dirty, and a hash of exactly how.

    `ft train` samples this once, before it reads any pin, and again before the
    manifest: a tree edited (or reverted) while the run trained is refused, so the
    recorded state is the one that produced the run.
    """
    commit = git.raw("rev-parse", "HEAD")
    status = git.raw("status", "--porcelain", "--untracked-files=normal")
    changes = git.raw("diff", "HEAD", "--no-ext-diff", "--binary") if commit else None
    return {
        "commit": commit.decode().strip() if commit else None,
        "dirty": bool(status.strip()) if status is not None else None,
        "state_sha256": sha256_bytes((status or b"") + b"\0" + (changes or b"")),
    }


def dirty_files() -> list[str]:
    """Paths `git status` reports as changed or untracked (what makes a run's tree dirty)."""
    return git.changed_paths() or []  # not a git checkout: the manifest records that instead


def _hardware(accelerator) -> dict:
    import torch

    cpu_model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cuda = torch.cuda.is_available()
    return {
        "device_type": "cuda" if cuda else "cpu",
        "device_name": torch.cuda.get_device_name(0) if cuda else None,
        "device_count": torch.cuda.device_count() if cuda else 0,
        "world_size": accelerator.num_processes,
        "cpu_model": cpu_model,
        # Kernels differ by vector ISA (AVX512 vs AVX2 change low bits), so it is part of the shape.
        "cpu_isa": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "cuda_version": torch.version.cuda if cuda else None,
    }


def write_manifest(run_dir: Path, manifest: dict) -> dict:
    """Write a manifest from `build_manifest` and the REPRODUCE.md rendered from it."""
    # REPRODUCE.md first: a kill between the two leaves no manifest, so the run is simply
    # unfinished (resumable); the manifest stays the last file, the commit point.
    write_atomic(Path(run_dir) / "REPRODUCE.md", render_reproduce(manifest))
    write_atomic(
        Path(run_dir) / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    )
    return manifest


def build_manifest(
    run_dir: Path,
    cfg,
    *,
    invocation: dict,
    data_lock: dict,
    base_pins: dict,
    metrics: dict,
    timing: dict,
    accelerator,
    eval_suites: dict | None = None,
    git_at: dict | None = None,
) -> dict:
    """Everything the manifest records, from what is in `run_dir` now.

    `git_at`: the tree state `ft train` sampled before it read any pin (default: now)."""
    lock_path = Path("uv.lock")
    git_at = git_at or git_state()
    manifest = {
        "schema": SCHEMA,
        "run_id": Path(run_dir).name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "invocation": invocation,
        "command": {
            "config": invocation["config"],
            "overrides": invocation["overrides"],
            # "sky" inside a SkyPilot job (sky/train.yaml sets it): REPRODUCE.md then
            # shows the `ft launch --backend sky` form.
            "backend": os.environ.get("FT_LAUNCH_BACKEND") or "local",
        },
        "seed": cfg.seed,
        "config": cfg.resolved(),
        "config_sha256": cfg.hash(),
        # token_store: the memory-mapped tokenized set the run read (data/tokens.py), if any.
        "data": {
            k: data_lock[k]
            for k in ("sources", "filters", "splits", "token_store")
            if k in data_lock
        },
        "base_model": base_pins,
        "environment": {
            "uv_lock_sha256": sha256_file(lock_path) if lock_path.is_file() else None,
            "image_digest": os.environ.get("FT_IMAGE_DIGEST") or None,
            "python": platform.python_version(),
            "libraries": _libraries(cfg.resolved()),
        },
        "git": {"commit": git_at["commit"], "dirty": git_at["dirty"]},
        "hardware": _hardware(accelerator),
        "metrics": metrics,
        # Per suite and segment (eval.json's `suites`): what gates compare across versions.
        "eval_suites": eval_suites or {},
        "timing": timing,
        "outputs": output_files(run_dir),
        # The checkpoint chain: segment replay verifies the run interval by interval.
        "checkpoints": chain(run_dir),
    }
    return manifest


def read_manifest(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise UserError(
            "no manifest.json: the run did not finish (or this is not a run)",
            file=str(run_dir),
            fix="pass a finished run directory, e.g. runs/<id>",
        )
    manifest = read_json(path, fix="restore it from the run's store, or train the run again")
    for key in ("run_id", "outputs", "git", "config", "command"):
        if key not in manifest:
            raise UserError(
                f"has no `{key}`: not a manifest written by `ft train`",
                file=str(path),
                key=key,
                fix="restore it from the run's store, or train the run again",
            )
    if not isinstance(manifest["outputs"], dict):
        raise UserError(
            "`outputs` is not an object",
            file=str(path),
            key="outputs",
            fix="restore it from the run's store, or train the run again",
        )
    for name in manifest["outputs"]:
        safe_name(name, source=str(path))
    return manifest


def check_outputs(run_dir: str | Path, manifest: dict, names=None) -> None:
    """The run's files (or `names` of them) must still hash as its manifest says.

    Readers of outputs (`ft report`, `ft diff`) call this first, so what they show is
    what the run produced, not a file edited or swapped since.
    """
    run_dir = Path(run_dir)
    for name in sorted(names if names is not None else manifest["outputs"]):
        want = manifest["outputs"].get(name)
        path = run_dir / safe_name(name, source=str(run_dir / "manifest.json"))
        if want is None or not path.is_file():
            raise UserError(
                "is missing from the run directory" if want else "is not in manifest.json",
                file=str(path),
                fix="restore the run's files (e.g. `ft fetch` it again)",
            )
        if (actual := sha256_file(path)) != want:
            raise UserError(
                f"changed after training (sha256 {actual[:16]}, manifest.json says {want[:16]})",
                file=str(path),
                fix="restore the file the run produced (e.g. `ft fetch` it again), or train again",
            )


def _libraries(config: dict) -> dict[str, str]:
    """Versions of the core libraries, and of `datasets` when the run read a hub source."""
    names = LIBRARIES + (("datasets",) if "hub-data" in run_groups(config) else ())
    return {name: metadata.version(name) for name in names}
