"""Segment replay: verify a run interval by interval along its checkpoint chain.

    uv run ft reproduce runs/<id> --segments all --parallel 2   # exact; wall ~ training / 2
    uv run ft reproduce runs/<id> --segments 1                  # drill spot check: 1 of N

A run records the content hash of every checkpoint (manifest.json `checkpoints`,
step 0 being the initial state built from the config alone). Interval i runs from
checkpoint i to checkpoint i+1; the last one runs on through eval and output
writing. Replaying interval 0 from the config and every other interval from its
recorded start checkpoint, and matching every recorded end hash and every output,
proves by induction that an uninterrupted run from the pins ends in the recorded
outputs (docs/verification.md gives the argument and its assumptions).

`ft train --segment I --chain RUN` replays one interval (`Replay`); `verify` is the
gate: it executes REPRODUCE.md's segment blocks verbatim, P intervals at a time,
and writes one verdict per interval into verification.json; `check_record`
(publish/verdict.py) recomputes those verdicts from the hashes, for `ft publish`.
"""

import json
import random
import secrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..train.checkpoint import digest, step_dir
from ..util.hashing import sha256_file, write_atomic

SEGMENT_RECORD = "segment.json"  # written last by an inner interval's replay
OUT_DIR = "reproduce/segments"  # under the run directory: one folder per interval


@dataclass(frozen=True)
class Interval:
    index: int
    start: int  # step of the start checkpoint
    stop: int  # step of the end checkpoint (the last interval: max_steps)
    last: bool

    @property
    def name(self) -> str:
        return f"interval {self.index} (steps {self.start}-{self.stop})"


def intervals(manifest: dict) -> list[Interval]:
    """The run's intervals, from its recorded chain; [] for a run that recorded none."""
    steps = [c["step"] for c in manifest.get("checkpoints") or []]
    if not steps or steps[0] != 0:
        return []
    bounds = [*steps, manifest["config"]["train"]["max_steps"]]
    return [Interval(i, bounds[i], bounds[i + 1], i == len(steps) - 1) for i in range(len(steps))]


def chain_entry(manifest: dict, step: int) -> dict:
    return next(c for c in manifest["checkpoints"] if c["step"] == step)


def select(n: int, k: int | None, seed: int) -> list[int]:
    """All intervals (k None), or k of them drawn by `seed` (recorded, so a drill's choice
    can be re-drawn and audited)."""
    if k is None or k >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), k))


# --- one interval: `ft train --segment I --chain RUN` --------------------------------------


@dataclass
class Replay:
    chain: Path
    manifest: dict
    interval: Interval

    @classmethod
    def open(cls, chain: str | None, segment: int | None, out: str | None, resume: bool):
        """None for an ordinary run; else the interval `segment` of the finished run `chain`."""
        if segment is None and chain is None:
            return None
        if segment is None or chain is None:
            raise UserError(
                "--segment and --chain go together",
                key="--segment" if segment is None else "--chain",
                fix="pass both: --segment I --chain runs/<id> (as REPRODUCE.md writes them)",
            )
        if resume or out is None:
            raise UserError(
                "a segment replay writes a new directory and cannot resume",
                key="--out",
                fix="pass a new --out directory and no --resume",
            )
        from .manifest import read_manifest

        manifest = read_manifest(chain)
        found = intervals(manifest)
        if not found:
            raise UserError(
                "this run records no checkpoint chain (trained before segment replay existed)",
                file=str(Path(chain) / "manifest.json"),
                fix="verify it with a full replay: ft reproduce RUN --full",
            )
        if not 0 <= segment < len(found):
            raise UserError(
                f"the run has intervals 0..{len(found) - 1}, not {segment}",
                key="--segment",
                fix=f"pass an interval between 0 and {len(found) - 1}",
            )
        return cls(Path(chain), manifest, found[segment])

    @property
    def start_checkpoint(self) -> Path:
        """The interval's start checkpoint, only if its bytes are the recorded ones: a
        checkpoint is a pickle, and loading one runs code."""
        path = step_dir(self.chain, self.interval.start)
        recorded = chain_entry(self.manifest, self.interval.start)["sha256"]
        if not path.is_dir() or digest(path)["sha256"] != recorded:
            raise UserError(
                f"checkpoint {path} is missing or differs from the chain manifest.json records",
                file=str(self.chain / "manifest.json"),
                fix="restore the run's checkpoints (ft fetch --checkpoints), or verify it "
                "with a full replay",
            )
        return path

    def check_config(self, cfg) -> None:
        if cfg.hash() != self.manifest["config_sha256"]:
            raise UserError(
                "the config differs from the one the chain's run was trained with",
                file=cfg._path,
                fix="replay with the run's own --config and --set overrides (see its REPRODUCE.md)",
            )

    def write_record(
        self, run_dir: Path, cfg, invocation, data_lock, base_pins, timing, accelerator
    ) -> None:
        """segment.json: the pins this replay ran on (for `ft diff`) and its checkpoints."""
        from .manifest import build_manifest

        record = build_manifest(
            run_dir,
            cfg,
            invocation=invocation,
            data_lock=data_lock,
            base_pins=base_pins,
            metrics={},
            timing=timing,
            accelerator=accelerator,
        )
        iv = self.interval
        record["segment"] = {"index": iv.index, "steps": [iv.start, iv.stop]}
        write_atomic(run_dir / SEGMENT_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")


# --- the gate: `ft reproduce --segments all|K [--parallel P]` --------------------------------


def missing_checkpoints(run_dir: Path, manifest: dict) -> list[dict]:
    """Recorded checkpoints absent from the run directory (the chain must be retained)."""
    return [c for c in manifest["checkpoints"] if not (run_dir / c["path"]).is_dir()]


def choose(
    found: list, k: int | None, seed: int, record: dict, parallel: int | None = None
) -> list:
    """The intervals to replay (K drawn by `seed`, or all), recorded in `record["segments"]`;
    `parallel` None: all chosen at once (one managed job each)."""
    chosen = [found[i] for i in select(len(found), k, seed)]
    record["segments"] = {
        "intervals": len(found),
        "replayed": [iv.index for iv in chosen],
        "k": k,
        "seed": seed,
        "parallel": len(chosen) if parallel is None else parallel,
        "complete": len(chosen) == len(found),
    }
    return chosen


def verify(
    run_dir: Path,
    manifest: dict,
    record: dict,
    *,
    blocks: tuple[str, str],
    k: int | None,
    seed: int | None,
    parallel: int,
    checkout,
) -> None:
    """Replay the chosen intervals through REPRODUCE.md's blocks; fill `record`; raise Failed
    naming the first diverging interval. `checkout()` yields a clean worktree and its env."""
    from .checkout import Failed

    found = intervals(manifest)
    if not found:
        raise Failed(
            "the run records no checkpoint chain, so it cannot be verified by segments; "
            "verify it with a full replay (ft reproduce RUN --full)"
        )
    seed = secrets.randbits(63) if seed is None else seed
    chosen = choose(found, k, seed, record, parallel)
    missing = missing_checkpoints(run_dir, manifest)
    if missing:
        raise Failed(
            f"checkpoint {missing[0]['path']} is missing from the chain "
            f"({len(missing)} of {len(manifest['checkpoints'])} missing; manifest.json records "
            f"sha256 {missing[0]['sha256'][:16]}); restore it from the run's artifact store, "
            "or verify with a full replay (--full)"
        )
    # Start checkpoints are hashed before anything loads them: a checkpoint that is not the
    # recorded one is never unpickled, and its interval fails without running.
    starts = {
        iv.index: digest(step_dir(run_dir, iv.start))["sha256"] for iv in chosen if iv.start > 0
    }
    setup, per_interval = blocks
    record["segment_command"] = {"setup": setup, "interval": per_interval}
    out_root = run_dir / OUT_DIR
    shutil.rmtree(out_root, ignore_errors=True)  # no replay output of an earlier gate counts
    runnable = [
        iv
        for iv in chosen
        if iv.start == 0 or starts[iv.index] == chain_entry(manifest, iv.start)["sha256"]
    ]
    # (exit code, wall seconds) per interval; a tampered start: never loaded, no exit code
    results: dict[int, tuple[int | None, float]] = {iv.index: (None, 0.0) for iv in chosen}
    if runnable:
        with checkout() as (tree, env):
            print(
                f"replaying {len(runnable)} of {len(found)} intervals of {run_dir.name}, "
                f"{parallel} at a time",
                file=sys.stderr,
                flush=True,
            )
            setup_done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", setup], cwd=tree, env=env
            )
            if setup_done.returncode != 0:
                raise Failed(f"the segment setup block exited with status {setup_done.returncode}")

            def run(iv: Interval) -> tuple[int, float]:
                out = out_root / f"interval-{iv.index:04d}"
                shutil.rmtree(out, ignore_errors=True)
                began = time.perf_counter()
                done = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", per_interval],
                    cwd=tree,
                    env=env
                    | {"FT_SEGMENT": str(iv.index), "FT_CHAIN": str(run_dir), "FT_OUT": str(out)},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                if done.returncode != 0:
                    print(done.stderr[-2000:], file=sys.stderr)
                return done.returncode, round(time.perf_counter() - began, 3)

            with ThreadPoolExecutor(max_workers=parallel) as pool:
                for iv, result in zip(runnable, pool.map(run, runnable), strict=True):
                    results[iv.index] = result

    entries = []
    for iv in chosen:
        code, wall = results[iv.index]
        out = out_root / f"interval-{iv.index:04d}"
        entry = {
            "index": iv.index,
            "steps": [iv.start, iv.stop],
            "exit_code": code,
            "wall_s": wall,
            "start": _start(run_dir, manifest, iv, starts, out),
        }
        if iv.last:
            ok_end = compare_last(run_dir, out, manifest, record, entry)
        else:
            end = step_dir(out, iv.stop)
            entry["end"] = {
                "checkpoint": f"checkpoints/{end.name}",
                "expected": chain_entry(manifest, iv.stop)["sha256"],
                "actual": digest(end)["sha256"] if (out / SEGMENT_RECORD).is_file() else None,
            }
            ok_end = entry["end"]["actual"] == entry["end"]["expected"]
        start_ok = entry["start"]["actual"] == entry["start"]["expected"]
        entry["equal"] = code == 0 and start_ok and ok_end
        entries.append(entry)
    conclude(manifest, record, entries, out_root)


def compare_last(run_dir: Path, out: Path, manifest: dict, record: dict, entry: dict) -> bool:
    """The last interval's outputs (in `out`) against the run's, recomputed from the bytes."""
    from .compare import compare

    fresh = out / "manifest.json"
    entry["compared"] = compare(run_dir, out, manifest) if fresh.is_file() else []
    record["compared"] = entry["compared"]
    if fresh.is_file():
        # Binds the record to the last interval's outputs, as a full replay binds it
        # to reproduce/: publish re-reads this manifest and recomputes the verdict.
        record["reproduction_manifest_sha256"] = sha256_file(fresh)
        record["reproduced_on"] = json.loads(fresh.read_text()).get("hardware")
    return bool(entry["compared"]) and all(c["equal"] for c in entry["compared"])


def conclude(manifest: dict, record: dict, entries: list[dict], out_root: Path) -> None:
    """Record the per-interval verdicts; raise Failed naming the first diverging interval."""
    from .checkout import Failed
    from .diff import explain

    found = intervals(manifest)
    record["intervals"] = entries
    failed = [e for e in entries if not e["equal"]]
    if failed:
        first = failed[0]
        a, b = first["steps"]
        record["first_divergence"] = {"index": first["index"], "steps": [a, b]}
        pins = _pins(out_root / f"interval-{first['index']:04d}")
        inputs = explain(manifest, pins)[0] if pins is not None else []
        reason = (
            f"the run diverged between steps {a} and {b} "
            f"(interval {first['index']} of {len(found)}: {_why(first)})"
        )
        if pins is not None:
            reason += "; " + (
                f"{len(inputs)} pinned input(s) moved" if inputs else "no pinned input moved"
            )
        raise Failed(reason, detail="\n".join(inputs) or None)
    record["first_divergence"] = None


def reproduction_dir(run_dir: Path, manifest: dict) -> Path:
    """Where a complete segments verification left the outputs it compared: the last
    interval's replay (derived from the manifest's chain, never read from the record)."""
    found = intervals(manifest)
    return Path(run_dir) / OUT_DIR / f"interval-{found[-1].index:04d}"


def _start(run_dir: Path, manifest: dict, iv: Interval, starts: dict, out: Path) -> dict:
    """Interval 0 starts from the config: the replay's own step-0 checkpoint must equal the
    recorded one (the initial state is a function of the pins). Others start from the chain."""
    expected = chain_entry(manifest, iv.start)["sha256"]
    if iv.start == 0:
        produced = step_dir(out, 0)
        actual = digest(produced)["sha256"] if produced.is_dir() else None
        return {"checkpoint": "checkpoints/step-00000000", "expected": expected, "actual": actual}
    return {
        "checkpoint": f"checkpoints/step-{iv.start:08d}",
        "expected": expected,
        "actual": starts[iv.index],
    }


def _why(entry: dict) -> str:
    if entry["start"]["actual"] != entry["start"]["expected"]:
        if entry["index"] == 0:
            return "the initial state built from the config differs from the recorded step 0"
        return f"its start checkpoint {entry['start']['checkpoint']} differs from manifest.json"
    if entry["exit_code"] not in (0, None):
        return f"the replay exited with status {entry['exit_code']}"
    if "end" in entry:
        return f"it produced {entry['end']['checkpoint']} with another hash than recorded"
    differ = [c["file"] for c in entry["compared"] if not c["equal"]]
    return "outputs differ: " + ", ".join(differ) if differ else "it wrote no outputs"


def _pins(out: Path) -> dict | None:
    for name in ("manifest.json", SEGMENT_RECORD):
        if (out / name).is_file():
            return json.loads((out / name).read_text())
    return None


def replay_pins(run_dir: Path, index: int) -> dict | None:
    """What interval `index`'s replay recorded about its inputs (for `ft diff`)."""
    return _pins(Path(run_dir) / OUT_DIR / f"interval-{index:04d}")
