"""The run directory of `ft train`: created with its invocation record, or reopened to resume.

Called by the recipe (train/recipe.py) before anything trains. A fresh run refuses a
directory that holds anything, locks it (ops/store.py `lock_run_dir`), and writes
`run.json` (the invocation: what `--resume` re-reads) and the resolved `config.yaml`.
A resume re-reads `run.json` and refuses a config or a git tree that moved since.
Under torchrun only the first process sets the directory up.
"""

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..closure.manifest import dirty_files, git_state
from ..config import Config, dump_yaml, load_config
from ..errors import UserError
from ..ops import store
from ..util.hashing import write_atomic
from ..util.records import read_json

RUN_FILE = "run.json"  # the invocation, written first: what --resume re-reads


def first_process() -> bool:
    """Whether this process sets the run up: under torchrun RANK 0, else the only one. Read
    from the environment because the run directory is set up before the Accelerator exists
    (it needs the config's seed first, and a resume's config is in the directory)."""
    return int(os.environ.get("RANK", "0")) == 0


def create(
    cfg: Config, config_path: str, overrides: list[str], out: str | None
) -> tuple[Path, dict]:
    """A new run directory (`out`, else runs/<config>-<UTC time>) and the invocation it records."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    # Normalised first: `--out runs/x/new/..` is runs/x, and must meet the not-empty guard.
    run_dir = (
        Path(os.path.normpath(out)) if out else Path("runs") / f"{Path(config_path).stem}-{stamp}"
    )
    invocation = {
        "config": config_path,
        "overrides": list(overrides),
        "config_sha256": cfg.hash(),
        "started_at": datetime.now(UTC).isoformat(),
        "git": git_state(),
    }
    if first_process():  # under torchrun, only rank 0 sets the run up
        if run_dir.exists() and not run_dir.is_dir():
            raise UserError(
                "is a file, not a run directory",
                file=str(run_dir),
                key="--out",
                fix="pass a new directory for --out",
            )
        # Checked before mkdir (never create anything inside someone's directory), and again
        # under the directory's lock (another `ft train` may have started in between).
        for locked in (False, True):
            if run_dir.is_dir() and any(not store.is_scratch(p.name) for p in run_dir.iterdir()):
                if locked:
                    store.unlock_run_dir(run_dir)
                raise UserError(
                    "the output directory is not empty",
                    file=str(run_dir),
                    fix="pass a new --out, or add --resume to continue an interrupted run",
                )
            if not locked:
                run_dir.mkdir(parents=True, exist_ok=True)
                store.lock_run_dir(run_dir)
        for p in run_dir.iterdir():  # temp files of a run killed while it set up
            if store.is_scratch(p.name):
                p.unlink(missing_ok=True)
        write_atomic(run_dir / RUN_FILE, json.dumps(invocation, indent=2) + "\n")
        write_atomic(run_dir / "config.yaml", dump_yaml(cfg.resolved()))
    return run_dir, invocation


def reopen(out: str | None) -> tuple[Path, dict]:
    """The interrupted run in `out` and the invocation it started with (locked; a finished
    run raises store.RunComplete)."""
    if out is None:
        raise UserError(
            "--resume needs the run to continue",
            key="--out",
            fix="pass --out runs/<id> of the interrupted run",
        )
    run_dir = Path(os.path.normpath(out))
    if not (run_dir / RUN_FILE).is_file():
        raise UserError(
            "no run was started here",
            file=str(run_dir),
            fix="pass the --out directory of an interrupted run",
        )
    if first_process():
        store.lock_run_dir(run_dir)
    if (run_dir / "manifest.json").exists():
        store.unlock_run_dir(run_dir)
        raise store.RunComplete(str(run_dir))
    invocation = read_json(
        run_dir / RUN_FILE, fix="start a new run with another --out (this one's record is lost)"
    )
    return run_dir, invocation


def resumed_config(run_dir: Path, invocation: dict) -> Config:
    """The config a resumed run started with, refused if it changed since."""
    cfg = load_config(invocation["config"], invocation["overrides"])
    if cfg.hash() != invocation["config_sha256"]:
        raise UserError(
            "the config changed since this run started",
            file=str(run_dir / RUN_FILE),
            fix="resume with the same config and data, or start a new run",
        )
    return cfg


def git_at_start(run_dir: Path, invocation: dict, resume: bool) -> dict:
    """The git state the run records: sampled once, when it first started. A tree that moved
    before a resume is refused (and one that moves while training, by the recipe at the end)."""
    if resume and invocation.get("git") not in (None, git_state()):
        raise UserError(
            "the git tree changed since this run started (commit or uncommitted changes)",
            file=str(run_dir / RUN_FILE),
            fix="restore the tree the run started from (see `git` in run.json), or start a new run",
        )
    return invocation.get("git") or git_state()


def warn_if_dirty() -> None:
    """One line up front: a run from uncommitted changes can be neither reproduced nor
    published (`ft reproduce` rebuilds from the recorded commit), so say so before it trains."""
    if not first_process():
        return
    dirty = dirty_files()
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        print(
            f"warning: uncommitted changes ({shown}): this run will not be reproducible or "
            "publishable; commit them and train again for a release",
            file=sys.stderr,
            flush=True,
        )
