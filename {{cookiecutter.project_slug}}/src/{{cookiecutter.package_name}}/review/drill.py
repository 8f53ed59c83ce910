"""`ft retrain RELEASE_DIR`: the drill's second half, the release's config on today's pipeline.

    uv run ft registry pull latest runs/drill
    uv run ft reproduce runs/drill                        # the closure still runs
    uv run ft retrain runs/drill --out runs/retrain       # and today's code still behaves

Restores the release's training inputs (its config file, data.lock, local data sources and
eval suites) from the release's commit into this checkout, trains them with this checkout's
code, dependencies and image, then checks the release's gates of the new run against the
release itself. A filter, tokenizer or library change on main that moves behaviour fails
here (at `ft data check` when it changes the data, or at a gate when it changes the
metrics) before a migration needs the pipeline. Prints the gate table (and writes it with
--gates-out, for the drill's issue); exits 1 on a failing gate.
"""

import os
import subprocess
import sys
from pathlib import Path

from ..closure.manifest import read_manifest
from ..errors import UserError
from ..util.hashing import write_atomic
from .gates import render


def release_inputs(manifest: dict) -> list[str]:
    """The files a run's training read from its checkout, by repository path."""
    config = manifest["config"]
    paths = [manifest["command"]["config"], config["data"]["lock"]]
    paths += [
        s["path"] for s in config["data"]["sources"] if s.get("path") and "://" not in s["path"]
    ]
    paths += [s["path"] for s in config.get("eval", {}).get("suites", [])]
    return sorted(set(paths))


def main(release_dir: str, out: str = "runs/retrain", gates_out: str | None = None) -> int:
    release = read_manifest(release_dir)
    commit = release["git"]["commit"]
    paths = release_inputs(release)
    restored = subprocess.run(
        ["git", "checkout", commit, "--", *paths], capture_output=True, text=True
    )
    if restored.returncode != 0:
        raise UserError(
            f"cannot restore the release's inputs from commit {commit}: "
            f"{restored.stderr.strip().splitlines()[-1] if restored.stderr.strip() else ''}",
            file=str(Path(release_dir) / "manifest.json"),
            fix="run from a full clone (actions/checkout with fetch-depth: 0)",
        )
    print(f"restored {', '.join(paths)} from {commit[:12]}", file=sys.stderr)
    command = [sys.executable, "-m", f"{__package__.rsplit('.', 1)[0]}.cli", "train"]
    command += ["--config", release["command"]["config"]]
    for override in release["command"]["overrides"]:
        command += ["--set", override]
    # The new run is checked against the release's gates, then discarded: like the re-run
    # of `ft reproduce`, it may live on a CI runner's disk (ops/runner.py).
    env = {**os.environ, "FT_RUNNER_SCRATCH": "1"}
    trained = subprocess.run([*command, "--out", out], env=env)
    if trained.returncode != 0:
        print(
            f"the release's config no longer trains on this pipeline (exit {trained.returncode})",
            file=sys.stderr,
        )
        if gates_out:
            write_atomic(
                gates_out,
                f"The release's config did not train on this pipeline (`ft train` exit "
                f"{trained.returncode}); see the job log.\n",
            )
        return 1
    return check_gates(read_manifest(out), release, release_dir, gates_out)


def check_gates(run: dict, release: dict, release_dir: str, gates_out: str | None) -> int:
    """The release's gates of the re-trained `run` against the release; the table on stdout
    (and in `gates_out`); 1 when one fails."""
    text, results = render(run, release, f"the release (`{release_dir}`)")
    sys.stdout.write(text)
    if gates_out:
        write_atomic(gates_out, text)
    failed = [r for r in results if r.status == "fail"]
    if failed:
        print(f"{len(failed)} gate(s) failed on today's pipeline", file=sys.stderr)
        return 1
    print(f"ok  the release's config re-trains and passes {len(results)} gate(s)", file=sys.stderr)
    return 0
