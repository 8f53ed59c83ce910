"""`ft reproduce RUN_DIR`: re-run REPRODUCE.md verbatim from a clean checkout and compare.

    uv run ft reproduce runs/<id>                              # reproduce.strategy (default full)
    uv run ft reproduce runs/<id> --segments all --parallel 2  # interval by interval
    uv run ft reproduce runs/<id> --segments 1                 # spot check 1 interval (drill)

1. REPRODUCE.md must equal its rendering from manifest.json (a hand edit fails).
2. Its command block runs with bash, verbatim, in a fresh `git worktree` of the
   recorded commit, writing into RUN_DIR/reproduce/.
3. Exact mode: every output file's sha256 must equal the manifest's. Tolerance
   mode (config `reproduce.mode`): inputs exact, adapter weights and eval loss
   within the declared bounds.
4. RUN_DIR/verification.json records what ran, where, the compared hashes and
   the verdict; on failure `ft diff` explains which pinned input moved.
5. `--clean-room` (what the release runs): a fresh HOME, empty caches, no credentials,
   nothing read from outside the checkout, no tracked file written (cleanroom.py).

Strategy `segments` (closure/segments.py) replaces step 2: REPRODUCE.md's segment
blocks replay each checkpoint interval from its recorded start checkpoint, P at a
time; each interval's end checkpoint (and for the last, every output) is compared.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..errors import UserError
from ..util import git
from ..util.hashing import sha256_file, write_atomic
from .diff import report
from .manifest import (
    SEGMENT_FENCES,
    command_block,
    fenced_block,
    output_files,
    read_manifest,
    render_reproduce,
)

SCHEMA = 1
EXACT_IN_TOLERANCE_MODE = ("config.yaml", "data.lock")


def main(
    run_dir: str,
    clean_room: bool = False,
    keep_env: tuple[str, ...] = (),
    verbose: bool = False,
    *,
    segments: str | None = None,
    parallel: int | None = None,
    seed: int | None = None,
    full: bool = False,
    collect: str | None = None,
) -> int:
    """`segments`: "all" or a count K; None follows the run's reproduce.strategy.
    `collect`: a SkyPilot-trained run's URL; its interval jobs' results are collected
    from it (closure/segments_sky.py) instead of replaying the intervals here."""
    run_dir = Path(run_dir).resolve()
    manifest = read_manifest(run_dir)
    settings = manifest["config"]["reproduce"]
    strategy = (
        "full" if full else "segments" if segments or collect else settings.get("strategy", "full")
    )
    k = _count(segments)
    parallel = parallel or settings.get("parallel", 1)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    record = {
        "schema": SCHEMA,
        "run_id": manifest["run_id"],
        "started_at": started,
        "manifest_sha256": sha256_file(run_dir / "manifest.json"),
        "commit": manifest["git"]["commit"],
        "mode": settings["mode"],
        "strategy": strategy,
    }
    try:
        block = _check_document(run_dir, manifest, record)
        _check_run_files(run_dir, manifest)
        if collect:
            from .segments_sky import collect as gather

            return _segments(
                run_dir, record, lambda: gather(run_dir, manifest, record, collect, k=k, seed=seed)
            )
        if strategy == "segments":

            def checkout():
                return _checkout(manifest, record, clean_room, tuple(keep_env))

            return _segments(
                run_dir,
                record,
                lambda: _local_segments(
                    run_dir, manifest, record, checkout, k=k, seed=seed, parallel=parallel
                ),
            )
        out = _execute(run_dir, manifest, block, record, clean_room, tuple(keep_env), verbose)
        fresh = read_manifest(out)
        # Binds this record to the reproduction it saw: publish re-reads that manifest and
        # recomputes every verdict from it instead of trusting "equal"/"passed" below.
        record["reproduction_manifest_sha256"] = sha256_file(out / "manifest.json")
        record["reproduced_on"] = fresh["hardware"]
        record["compared"] = compare(run_dir, out, manifest)
        failed = [c for c in record["compared"] if not c["equal"]]
        if failed:
            raise _Failed(
                f"{len(failed)} output(s) differ: " + ", ".join(c["file"] for c in failed),
                detail=report(manifest, fresh),
                file=failed[0]["file"],
                fix="the lines below say which pinned input moved; see docs/determinism.md",
            )
        record |= {"passed": True, "reason": None}
    except _Failed as f:
        record |= {"passed": False, "reason": f.reason}
        print(f"FAIL  {run_dir / f.file}: {f.reason} (fix: {f.fix})", file=sys.stderr)
        if f.detail:
            print(f.detail, file=sys.stderr)
    return _finish(run_dir, record)


def _finish(run_dir: Path, record: dict) -> int:
    record["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_atomic(run_dir / "verification.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    if record["passed"] and record["strategy"] == "segments":
        seg = record["segments"]
        print(
            f"PASS  {run_dir.name}: {len(seg['replayed'])} of {seg['intervals']} intervals "
            f"replayed and matched ({record['mode']} mode)"
            + ("" if seg["complete"] else f"; a spot check drawn with seed {seg['seed']}"),
            file=sys.stderr,
        )
    elif record["passed"]:
        print(
            f"PASS  {run_dir.name} reproduced ({record['mode']} mode): "
            f"{len(record['compared'])} outputs compared",
            file=sys.stderr,
        )
    return 0 if record["passed"] else 1


def _count(segments: str | None) -> int | None:
    """`--segments all` -> None (every interval); `--segments K` -> K."""
    if segments in (None, "all"):
        return None
    if not segments.isdigit() or int(segments) < 1:
        raise UserError(
            f"--segments takes `all` or a positive count, got {segments!r}",
            key="--segments",
            fix="pass --segments all (exact) or --segments K (spot check of K intervals)",
        )
    return int(segments)


def _local_segments(run_dir: Path, manifest: dict, record: dict, checkout, **how) -> None:
    from .segments import verify

    text = (run_dir / "REPRODUCE.md").read_text()
    setup, interval = (fenced_block(text, fence) for fence in SEGMENT_FENCES)
    if setup is None or interval is None:
        raise _Failed(
            "REPRODUCE.md has no segment command blocks (the run records no checkpoint "
            "chain, or was trained by SkyPilot: collect its interval jobs with --collect "
            "RUN_URI); verify it with a full replay (--full)"
        )
    verify(run_dir, manifest, record, blocks=(setup, interval), checkout=checkout, **how)


def _segments(run_dir: Path, record: dict, body) -> int:
    """Run a segments verification (`body` fills `record` or raises _Failed); write it."""
    try:
        body()
        record |= {"passed": True, "reason": None}
    except _Failed as f:
        record |= {"passed": False, "reason": f.reason}
        print(f"FAIL  {f.reason}", file=sys.stderr)
        if f.detail:
            print(f.detail, file=sys.stderr)
    return _finish(run_dir, record)


class _Failed(Exception):
    """A verdict: the FAIL line names the file (relative to the run) and the fix."""

    def __init__(
        self,
        reason: str,
        detail: str | None = None,
        *,
        file: str = "REPRODUCE.md",
        fix: str = "fix the cause named here, then run `ft reproduce` again",
    ):
        super().__init__(reason)
        self.reason, self.detail, self.file, self.fix = reason, detail, file, fix


def _check_document(run_dir: Path, manifest: dict, record: dict) -> str:
    path = run_dir / "REPRODUCE.md"
    if not path.is_file():
        raise _Failed(
            "REPRODUCE.md is missing from the run directory",
            fix="restore it from the run's store (it is rendered by `ft train`)",
        )
    text = path.read_text()
    record["reproduce_md_sha256"] = sha256_file(path)
    expected = render_reproduce(manifest)
    if text != expected:
        got, want = text.splitlines(), expected.splitlines()
        line = next(
            (i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w),
            min(len(got), len(want)),
        )
        raise _Failed(
            f"REPRODUCE.md was edited after the run (line {line + 1}: expected "
            f"{want[line] if line < len(want) else '<end>'!r}, found "
            f"{got[line] if line < len(got) else '<end>'!r}); it is rendered from "
            "manifest.json and must not be changed by hand",
            fix="restore the rendered REPRODUCE.md (e.g. `ft fetch` the run again)",
        )
    block = command_block(text)
    if block is None:
        raise _Failed(
            "REPRODUCE.md has no ```bash command block",
            fix="restore the rendered REPRODUCE.md (e.g. `ft fetch` the run again)",
        )
    record["command"] = block
    return block


def _check_run_files(run_dir: Path, manifest: dict) -> None:
    """The files in the run directory must still be the ones the manifest describes.

    A pulled release (`ft registry pull`, what the drill reproduces) is in its published
    layout: the adapter's files at its root (publish/gate.py: release_name), and from MLflow
    the MLmodel and pyfunc loader beside them, checked as the pull checks them (this
    package's loader, byte for byte). Every manifest output is still compared by sha256.
    """
    actual = output_files(run_dir)
    expected = dict(manifest["outputs"])
    from ..publish.gate import ADAPTER_DIR

    adapter = ADAPTER_DIR.rstrip("/")
    if any(n.startswith(ADAPTER_DIR) for n in expected) and not (run_dir / adapter).exists():
        from ..publish.gate import _backend_files, release_name
        from ..publish.registries import mlflow as backend

        expected = {release_name(n): d for n, d in expected.items()}
        added = {backend.MLMODEL, f"code/{backend.LOADER}.py"} & (actual.keys() - expected.keys())

        def bad(name: str, problem: str) -> _Failed:
            return _Failed(
                f"{name} {problem}",
                file=name,
                fix="pull the release again (`ft registry pull VERSION DIR`)",
            )

        for name in _backend_files(run_dir, added, bad):
            actual.pop(name)
    changed = sorted(n for n in expected.keys() | actual.keys() if expected.get(n) != actual.get(n))
    if changed:
        raise _Failed(
            "the run directory no longer matches its manifest (edited after training): "
            + ", ".join(changed),
            file=changed[0],
            fix="restore the files the run produced (e.g. `ft fetch` it again), or train again",
        )


def _execute(
    run_dir: Path,
    manifest: dict,
    block: str,
    record: dict,
    clean_room: bool = False,
    keep_env: tuple[str, ...] = (),
    verbose: bool = False,
) -> Path:
    out = run_dir / "reproduce"
    shutil.rmtree(out, ignore_errors=True)
    with _checkout(manifest, record, clean_room, keep_env) as (tree, env):
        done = _run_block(block, tree, env | {"FT_OUT": str(out)}, verbose)
        record["exit_code"] = done.returncode
        if done.returncode != 0:
            errors = [ln for ln in (done.stderr or "").splitlines() if ln.startswith("error: ")]
            raise _Failed(
                f"the REPRODUCE.md command exited with status {done.returncode}"
                + (f" in the clean room: {errors[-1].removeprefix('error: ')}" if errors else ""),
                fix="its output above names the cause; fix it at the recorded commit",
            )
    if not (out / "manifest.json").is_file():
        raise _Failed(
            "the REPRODUCE.md command finished but wrote no run to $FT_OUT",
            fix="the command block must train into $FT_OUT; re-render it with `ft train`",
        )
    return out


@contextmanager
def _checkout(
    manifest: dict, record: dict, clean_room: bool = False, keep_env: tuple[str, ...] = ()
):
    """A fresh `git worktree` of the recorded commit and the environment to run in it (with
    `clean_room`, cleanroom.py's); after the body, a clean room's tracked files are checked."""
    commit = manifest["git"]["commit"]
    if not commit:
        raise _Failed(
            "the run was not trained inside a git checkout, so there is no commit to rebuild from",
            file="manifest.json",
            fix="train from a committed git checkout",
        )
    if manifest["git"]["dirty"]:
        raise _Failed(
            f"the run was trained from a dirty tree (uncommitted changes on top of "
            f"{commit[:12]}): a checkout of the commit cannot rebuild it",
            file="manifest.json",
            fix="commit the changes, then train again",
        )
    top = git.output("rev-parse", "--show-toplevel")
    if top is None:
        raise UserError(
            "not inside the project's git checkout",
            file=os.getcwd(),
            fix="run ft reproduce from the repository the run was trained in",
        )
    scratch = Path(tempfile.mkdtemp(prefix="ft-reproduce-"))
    tree = scratch / "checkout"
    added = git.run("worktree", "add", "--detach", str(tree), commit, cwd=top)
    if added.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise _Failed(
            f"cannot check out commit {commit}: {added.stderr.strip()}",
            file="manifest.json",
            fix="fetch the commit (git fetch origin), or reproduce in the repo it was made in",
        )
    # PYTHONDONTWRITEBYTECODE (set by many images and sandboxes) is dropped: the scratch
    # checkout's venv is the gate's own, and without it every `ft train` of a segment replay
    # compiled the ~3,000 modules it imports again (~6 CPU-s each, docs/benchmarks.md).
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "FT_OUT", "FT_SEGMENT", "FT_CHAIN", "PYTHONDONTWRITEBYTECODE")
    }
    # The re-run is compared, then discarded: it may live on a CI runner's disk (ops/runner.py).
    env["FT_RUNNER_SCRATCH"] = "1"
    env["FT_REPRODUCING"] = "1"  # the nested `ft train` then gives no "reproduce me" hint
    print(
        f"reproducing {manifest['run_id']} at {commit[:12]} in {tree}", file=sys.stderr, flush=True
    )
    try:
        if clean_room:  # closure/cleanroom.py: fresh HOME and caches, no credentials
            from .cleanroom import environment, outside_resources

            outside = outside_resources(manifest["config"], tree)
            if outside:
                raise _Failed(
                    "clean room: the run depends on " + "; ".join(outside),
                    file="manifest.json",
                    fix="pin what it needs in the repo (or pass --keep-env for a named secret)",
                )
            env, dropped = environment(env, scratch, keep_env)
            record["clean_room"] = {
                "home": "fresh",
                "caches": "empty",
                "dropped_env": dropped,
                "kept_env": sorted(k for k in keep_env if k in env),
            }
        yield tree, env
        if clean_room:
            from .cleanroom import modified_tracked_files

            modified = modified_tracked_files(tree)
            if modified:
                raise _Failed(
                    "clean room: the run wrote into its checkout's tracked files, which a "
                    "reproduction must only read: " + ", ".join(modified),
                    file=modified[0],
                    fix="write outputs under $FT_OUT or an ignored path, never into tracked files",
                )
    finally:
        # The worktree's fresh .venv holds tens of thousands of files: removing it directly
        # is several times faster than letting `git worktree remove` walk it.
        shutil.rmtree(tree / ".venv", ignore_errors=True)
        git.run("worktree", "remove", "--force", str(tree), cwd=top)
        shutil.rmtree(scratch, ignore_errors=True)


# What `uv sync` says about a fresh venv: a line per package (157 for the default lock) and
# some preamble. Without --verbose only its "Installed N packages in T" line is kept.
UV_CHATTER = re.compile(
    r"( [+~-] \S|Using CPython |Creating virtual environment |Resolved \d+ packages|"
    r"Prepared \d+ packages|Uninstalled \d+ packages|Audited \d+ packages|Bytecode compiled)"
)
UV_SUMMARY = re.compile(r"Installed \d+ packages? in ")


def _run_block(block: str, tree: Path, env: dict, verbose: bool) -> subprocess.CompletedProcess:
    """Run the command block; its output goes to stderr, with uv's package list folded into
    one summary line unless `verbose`. Nothing the block computes depends on this."""
    argv = ["bash", "-euo", "pipefail", "-c", block]
    if verbose:
        return subprocess.run(argv, cwd=tree, env=env)
    with subprocess.Popen(
        argv, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None  # stdout=PIPE
        for line in proc.stdout:
            if UV_SUMMARY.match(line):
                sys.stderr.write(f"uv sync: {line}")
            elif not UV_CHATTER.match(line):
                sys.stderr.write(line)
            sys.stderr.flush()
    return subprocess.CompletedProcess(argv, proc.returncode)


def compare(run_dir: Path, out: Path, manifest: dict) -> list[dict]:
    """One entry per output file of the original run: equal or not, and by how much."""
    mode = manifest["config"]["reproduce"]["mode"]
    tol = manifest["config"]["reproduce"]["tolerance"]
    fresh = output_files(out)
    compared = []
    for name, expected in sorted(manifest["outputs"].items()):
        actual = fresh.get(name)
        entry = {"file": name, "expected": expected, "actual": actual, "equal": expected == actual}
        if mode == "tolerance" and not entry["equal"] and actual is not None:
            if name.endswith(".safetensors"):
                delta = max_abs_diff(run_dir / name, out / name)
                entry |= {
                    "max_abs_diff": delta,
                    "bound": tol["weights_max_abs"],
                    "equal": delta is not None and delta <= tol["weights_max_abs"],
                }
            elif name == "eval.json":
                a = json.loads((run_dir / name).read_text())["eval_loss"]
                b = json.loads((out / name).read_text())["eval_loss"]
                entry |= {
                    "abs_diff": abs(a - b),
                    "bound": tol["eval_loss_abs"],
                    "equal": abs(a - b) <= tol["eval_loss_abs"],
                }
            elif name not in EXACT_IN_TOLERANCE_MODE:
                entry |= {"equal": True, "note": "not compared in tolerance mode"}
        compared.append(entry)
    for name in sorted(fresh.keys() - manifest["outputs"].keys()):
        compared.append({"file": name, "expected": None, "actual": fresh[name], "equal": False})
    return compared


def max_abs_diff(a: Path, b: Path) -> float | None:
    """Largest |a - b| over every tensor of two safetensors files; None if shapes differ."""
    from safetensors.torch import load_file

    ta, tb = load_file(a), load_file(b)
    if ta.keys() != tb.keys() or any(ta[k].shape != tb[k].shape for k in ta):
        return None
    return max(((ta[k].double() - tb[k].double()).abs().max().item() for k in ta), default=0.0)
