"""Run locations: a run directory on local disk, or under an fsspec URL (s3://, gs://, file://).

    uv run ft train --config configs/smoke.yaml --out s3://bucket/runs/smoke
    uv run ft train --out s3://bucket/runs/smoke --resume   # e.g. on a fresh spot VM
    uv run ft fetch s3://bucket/runs/smoke runs/smoke        # fetch.py; then ft reproduce

Training always writes a local directory. A plain path `--out` is that directory,
as it always was. A URL `--out` trains in `runs/.staging/<sha256(URL)[:16]>/<name>/`
and mirrors the run to the URL as it goes: run.json and config.yaml at the start,
each checkpoint right after it is written, the outputs at the end.

Object stores have no atomic rename, so commits are marker objects written last
(docs/decisions/0007-checkpoint-commit-protocol-on-object-stores.md):
- a checkpoint's files are uploaded first, then metrics.jsonl, then
  `checkpoints/step-N/COMPLETE` (the sha256 of each file it covers). A checkpoint
  without its marker does not exist for a resume, and every file is re-hashed on
  download, so a half-uploaded or altered checkpoint is never loaded.
- a run's outputs are uploaded first, then manifest.json, then REPRODUCE.md: as on
  disk, the manifest's existence means the run finished.

One process writes a run URL at a time: it holds the lease `<URL>/.ft-lock`
(ops/runlock.py, docs/decisions/0016), taken before anything is pulled or pushed.

The objects under a URL are a RemoteDir (remote.py: credentials come from the environment,
never from us); `ft fetch` is fetch.py.
"""

import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from ..errors import UserError
from ..train.checkpoint import STEP_DIR
from ..util.hashing import sha256_file, tree_files, write_atomic
from ..util.paths import inside
from ..util.records import loads
from .remote import RESTORE_FIX, RemoteDir, is_url, normalise_url
from .runlock import Lease

MARKER = "COMPLETE"
STAGING = Path("runs") / ".staging"
START_FILES = ("run.json", "config.yaml")  # mirrored when a run starts
RESUME_FILES = ("run.json", "config.yaml", "metrics.jsonl")  # pulled before a resume
FINAL_FILES = ("REPRODUCE.md", "manifest.json")  # pushed last, in this order: manifest commits
_HELD: dict[str, int] = {}  # run directory -> open lock descriptor, for this process's life
BUSY_FIX = "wait for it to finish (or stop it), then resume; or pass a new --out"
READY_WAIT_S = 3600  # how long the other processes of one machine wait for a resume's pull


def is_scratch(name: str) -> bool:
    """Files a run directory may hold before it starts: temps of a write that was killed."""
    return bool(re.fullmatch(r"\..+\.tmp-\d+", name))


def lock_run_dir(run_dir: Path) -> None:
    """Take the run directory's exclusive lock for this process's life, or refuse.

    Two `ft train --resume` (or a train and a resume) on one directory would interleave
    checkpoints and metrics; the second is refused. The lock is flock(2) on the directory
    itself: no lock file to leave behind, and the kernel releases it when the process
    dies, so a killed run never leaves a stale lock. (flock is per machine; on a shared
    filesystem across machines, and for --out URLs, the checkpoint markers are the
    protocol, docs/decisions/0007.)
    """
    import fcntl

    key = str(Path(run_dir).resolve())
    if key in _HELD:
        return
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        busy = "another `ft train` is writing this run directory"
        raise UserError(busy, file=str(run_dir), key="--out", fix=BUSY_FIX) from None
    _HELD[key] = fd


def unlock_run_dir(run_dir: Path) -> None:
    fd = _HELD.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)


def staging_dir(url: str) -> Path:
    """The local directory a URL run trains in; its name is the URL's last part (the run id)."""
    url = normalise_url(url)
    return STAGING / hashlib.sha256(url.encode()).hexdigest()[:16] / url.rsplit("/", 1)[-1]


class RunComplete(Exception):
    """`--resume` of a run whose manifest.json exists: nothing to do (not an error)."""

    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


class RunLocation:
    """Where `ft train --out` puts a run. This one is a local directory: nothing to mirror."""

    def __init__(self, out: str | None):
        self.local_dir = out  # what training writes (None: train picks runs/<config>-<time>)

    @staticmethod
    def open(out: str | None, resume: bool = False, break_lock: bool = False) -> "RunLocation":
        """A local path as it is; a URL gets a staging directory, pulled from it on resume."""
        if out is None or not is_url(out):
            if break_lock:
                raise UserError(
                    "--break-lock is for an --out URL: a run directory's lock is released "
                    "by the kernel when the process holding it dies",
                    key="--break-lock",
                    fix="drop --break-lock; if `ft train` says the directory is in use, "
                    "another process on this machine is writing it",
                )
            return RunLocation(out)
        location = RemoteRunLocation(out)
        location.prepare(resume, break_lock)
        return location

    def begin(self, run_dir: Path) -> None:
        """run.json and config.yaml were written (on resume: re-read)."""

    def push_checkpoint(self, path: Path) -> None:
        """A checkpoint was committed locally at `path` (main process only)."""

    def push_outputs(self, run_dir: Path) -> None:
        """The run finished: outputs, manifest.json and REPRODUCE.md exist (main process only)."""

    def abandon(self) -> None:
        """A fresh run failed on a user error: remove what it mirrored (nothing here)."""

    def release(self) -> None:
        """This process is done with the run, however it ended (a URL: drop the lease)."""


class RemoteRunLocation(RunLocation):
    """A run under a URL, trained in a local staging directory mirrored to it."""

    def __init__(self, url: str):
        self.staging = staging_dir(url)
        super().__init__(str(self.staging))
        self.remote = RemoteDir(url)
        self.url = self.remote.url
        self.lease: Lease | None = None

    def prepare(self, resume: bool, break_lock: bool = False) -> None:
        """Check the URL's state; on resume rebuild staging from it (the bucket is the truth)."""
        world = os.environ.get("WORLD_SIZE", "1")
        if os.environ.get("LOCAL_WORLD_SIZE", world) != world:
            raise UserError(
                "a --out URL stages the run on one machine's disk; this run spans several machines",
                key="--out",
                fix="run on one machine, or use a directory on a shared filesystem",
            )
        staging = self.staging
        if int(os.environ.get("LOCAL_RANK", "0")) != 0:
            if resume and "manifest.json" in self.remote.names():
                raise RunComplete(self.url)  # as the first process does: nothing to wait for
            if resume:  # the first process of this machine pulls; the others wait for it
                _wait_ready(staging)
            return
        if resume and "manifest.json" in self.remote.names():
            raise RunComplete(self.url)  # finished: nothing to write, no lock needed
        # One writer per URL: the lease comes before anything local or remote is touched
        # (another process of this machine shares the staging directory).
        self.lease = Lease(self.remote)
        self.lease.acquire(break_lock)
        try:
            self._prepare(resume, staging)
        except BaseException:
            self.release()
            raise

    def _prepare(self, resume: bool, staging: Path) -> None:
        present = self.remote.names()  # listed again, under the lease
        if not resume:
            if present:
                raise UserError(
                    "the output location is not empty",
                    file=self.url,
                    fix="pass a new --out, or add --resume to continue an interrupted run",
                )
            shutil.rmtree(staging.parent, ignore_errors=True)  # left by a run killed early
            return
        if "run.json" not in present:
            raise UserError(
                "no run was started here",
                file=self.url,
                fix="pass the --out URL of an interrupted run",
            )
        if "manifest.json" in present:
            raise RunComplete(self.url)
        shutil.rmtree(staging.parent, ignore_errors=True)
        for name in RESUME_FILES:
            if name in present:
                self.remote.get(name, staging / name)
        if (step := latest_checkpoint(present)) is not None:
            self.pull_checkpoint(step, staging)
        _mark_ready(staging)

    def pull_checkpoint(self, name: str, run_dir: Path) -> Path:
        """Download checkpoints/<name>/ as its marker lists it, verified, renamed into place."""
        prefix = f"checkpoints/{name}"
        where = f"{self.url}/{prefix}/{MARKER}"
        try:
            marker = loads(self.remote.read(f"{prefix}/{MARKER}"))
            files, step = marker["files"], marker["step"]
            if not isinstance(files, dict) or type(step) is not int:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise UserError(
                "is not a checkpoint marker written by `ft train`",
                file=where,
                fix=RESTORE_FIX,
            ) from None
        partial = Path(run_dir) / "checkpoints" / f".partial-{name}"
        shutil.rmtree(partial, ignore_errors=True)
        for rel, digest in sorted(files.items()):
            dest = inside(partial, rel, source=where, fix=RESTORE_FIX)
            self.remote.get(f"{prefix}/{rel}", dest, digest, against=MARKER)
        final = partial.with_name(name)
        os.replace(partial, final)
        print(f"pulled {self.url}/{prefix} (step {marker['step']})", file=sys.stderr, flush=True)
        return final

    def begin(self, run_dir: Path) -> None:
        if int(os.environ.get("RANK", "0")) == 0:  # as in train._run_dir: one process sets up
            for name in START_FILES:
                self.remote.put(Path(run_dir) / name, name)

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    def _commit(self, data: bytes, rel: str) -> None:
        """Write a commit object (a checkpoint's marker), if the lease is still ours."""
        if self.lease is not None:
            self.lease.check()
        self.remote.put_bytes(data, rel)

    def abandon(self) -> None:
        """Remove the start files this fresh run mirrored, unless a checkpoint was committed."""
        present = self.remote.names()
        if latest_checkpoint(present) is not None or "manifest.json" in present:
            return
        with self.remote.errors("removing the failed run's start files"):
            for name in START_FILES:
                if name in present:
                    self.remote.fs.rm_file(self.remote._path(name))

    def push_checkpoint(self, path: Path) -> None:
        path = Path(path)
        if self.lease is not None:
            self.lease.check()
        files = {rel.as_posix(): sha256_file(path / rel) for rel in tree_files(path)}
        prefix = f"checkpoints/{path.name}"
        for rel in files:
            self.remote.put(path / rel, f"{prefix}/{rel}")
        metrics = path.parent.parent / "metrics.jsonl"
        if metrics.is_file():  # before the marker: a committed checkpoint has its metrics
            self.remote.put(metrics, "metrics.jsonl")
        named = STEP_DIR.fullmatch(path.name)
        assert named is not None, f"not a checkpoint directory: {path}"  # checkpoint.save names it
        step = int(named.group(1))
        marker = json.dumps({"step": step, "files": files}, indent=2, sort_keys=True) + "\n"
        self._commit(marker.encode(), f"{prefix}/{MARKER}")  # last: commits it

    def push_outputs(self, run_dir: Path) -> None:
        run_dir = Path(run_dir)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        names = [*sorted(manifest["outputs"]), "run.json", *FINAL_FILES]
        if self.lease is not None:
            self.lease.check()
        for name in names:
            if name == FINAL_FILES[-1] and self.lease is not None:
                self.lease.check()  # the manifest commits the run: still ours?
            self.remote.put(run_dir / name, name)
        print(
            f"pushed {len(names)} files to {self.url} (fetch: uv run ft fetch {self.url} "
            f"runs/{run_dir.name})",
            file=sys.stderr,
            flush=True,
        )


def latest_checkpoint(names: set[str]) -> str | None:
    """The newest committed checkpoint (`step-N`) among object names; unmarked ones don't count."""
    steps = []
    for name in names:
        parts = name.split("/")
        if (
            len(parts) == 3
            and parts[0] == "checkpoints"
            and parts[2] == MARKER
            and STEP_DIR.fullmatch(parts[1])
        ):
            steps.append(parts[1])
    return max(steps, default=None)


def _ready_file(staging: Path) -> Path:
    # One token per torchrun launch (and restart), so a marker left by an earlier launch
    # never releases the processes of this one.
    token = (
        f"{os.environ.get('TORCHELASTIC_RUN_ID', 'none')}-"
        f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    )
    return staging.parent / f".pulled-{token}"


def _mark_ready(staging: Path) -> None:
    write_atomic(_ready_file(staging), "")


def _wait_ready(staging: Path) -> None:
    ready, deadline = _ready_file(staging), time.monotonic() + READY_WAIT_S
    while not ready.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the first process did not pull the run into {staging} within {READY_WAIT_S} s"
            )
        time.sleep(1)
