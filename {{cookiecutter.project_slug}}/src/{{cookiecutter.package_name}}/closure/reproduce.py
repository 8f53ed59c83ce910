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
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..errors import UserError
from ..util.hashing import sha256_file, write_atomic
from .checkout import Failed, checkout, execute
from .compare import compare
from .diff import report
from .manifest import output_files, read_manifest
from .reproduce_md import SEGMENT_FENCES, command_block, fenced_block, render_reproduce

SCHEMA = 1


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
    label: str | None = None,
) -> int:
    """`segments`: "all" or a count K; None follows the run's reproduce.strategy.
    `collect`: a SkyPilot-trained run's URL; its interval jobs' results are collected
    from it (closure/segments_sky.py) instead of replaying the intervals here; `label`: the
    release tag they were submitted for (closure/release_verify.py)."""
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
        block = check_document(run_dir, manifest, record)
        check_run_files(run_dir, manifest)
        if collect:
            from .segments_sky import collect as gather

            return _segments(
                run_dir,
                record,
                lambda: gather(run_dir, manifest, record, collect, k=k, seed=seed, label=label),
            )
        if strategy == "segments":

            def fresh_checkout():
                return checkout(manifest, record, clean_room, tuple(keep_env))

            return _segments(
                run_dir,
                record,
                lambda: _local_segments(
                    run_dir, manifest, record, fresh_checkout, k=k, seed=seed, parallel=parallel
                ),
            )
        out = execute(run_dir, manifest, block, record, clean_room, tuple(keep_env), verbose)
        fresh = read_manifest(out)
        # Binds this record to the reproduction it saw: publish re-reads that manifest and
        # recomputes every verdict from it instead of trusting "equal"/"passed" below.
        record["reproduction_manifest_sha256"] = sha256_file(out / "manifest.json")
        record["reproduced_on"] = fresh["hardware"]
        record["compared"] = compare(run_dir, out, manifest)
        failed = [c for c in record["compared"] if not c["equal"]]
        if failed:
            raise Failed(
                f"{len(failed)} output(s) differ: " + ", ".join(c["file"] for c in failed),
                detail=report(manifest, fresh),
                file=failed[0]["file"],
                fix="the lines below say which pinned input moved; see docs/determinism.md",
            )
        record |= {"passed": True, "reason": None}
    except Failed as f:
        _failed(record, f, f"FAIL  {run_dir / f.file}: {f.reason} (fix: {f.fix})")
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
        raise Failed(
            "REPRODUCE.md has no segment command blocks (the run records no checkpoint "
            "chain, or was trained by SkyPilot: collect its interval jobs with --collect "
            "RUN_URI); verify it with a full replay (--full)"
        )
    verify(run_dir, manifest, record, blocks=(setup, interval), checkout=checkout, **how)


def _segments(run_dir: Path, record: dict, body) -> int:
    """Run a segments verification (`body` fills `record` or raises Failed); write it."""
    try:
        body()
        record |= {"passed": True, "reason": None}
    except Failed as f:
        _failed(record, f, f"FAIL  {f.reason}")
    return _finish(run_dir, record)


def _failed(record: dict, failure: Failed, line: str) -> None:
    """Record a failed verdict and say it on stderr: the FAIL line, then its detail."""
    record |= {"passed": False, "reason": failure.reason}
    print(line, file=sys.stderr)
    if failure.detail:
        print(failure.detail, file=sys.stderr)


def check_document(run_dir: Path, manifest: dict, record: dict) -> str:
    path = run_dir / "REPRODUCE.md"
    if not path.is_file():
        raise Failed(
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
        raise Failed(
            f"REPRODUCE.md was edited after the run (line {line + 1}: expected "
            f"{want[line] if line < len(want) else '<end>'!r}, found "
            f"{got[line] if line < len(got) else '<end>'!r}); it is rendered from "
            "manifest.json and must not be changed by hand",
            fix="restore the rendered REPRODUCE.md (e.g. `ft fetch` the run again)",
        )
    block = command_block(text)
    if block is None:
        raise Failed(
            "REPRODUCE.md has no ```bash command block",
            fix="restore the rendered REPRODUCE.md (e.g. `ft fetch` the run again)",
        )
    record["command"] = block
    return block


def check_run_files(run_dir: Path, manifest: dict) -> None:
    """The files in the run directory must still be the ones the manifest describes.

    A pulled release (`ft registry pull`, what the drill reproduces) is in its published
    layout: the adapter's files at its root (publish/release.py: release_name), and from MLflow
    the MLmodel and pyfunc loader beside them, checked as the pull checks them (this
    package's loader, byte for byte). Every manifest output is still compared by sha256.
    """
    actual = output_files(run_dir)
    expected = dict(manifest["outputs"])
    from ..publish.release import ADAPTER_DIR

    adapter = ADAPTER_DIR.rstrip("/")
    if any(n.startswith(ADAPTER_DIR) for n in expected) and not (run_dir / adapter).exists():
        from ..publish.registries import mlflow as backend
        from ..publish.release import check_backend_files, release_name

        expected = {release_name(n): d for n, d in expected.items()}
        added = {backend.MLMODEL, f"code/{backend.LOADER}.py"} & (actual.keys() - expected.keys())

        def bad(name: str, problem: str) -> Failed:
            return Failed(
                f"{name} {problem}",
                file=name,
                fix="pull the release again (`ft registry pull VERSION DIR`)",
            )

        for name in check_backend_files(run_dir, added, bad):
            actual.pop(name)
    changed = sorted(n for n in expected.keys() | actual.keys() if expected.get(n) != actual.get(n))
    if changed:
        raise Failed(
            "the run directory no longer matches its manifest (edited after training): "
            + ", ".join(changed),
            file=changed[0],
            fix="restore the files the run produced (e.g. `ft fetch` it again), or train again",
        )
