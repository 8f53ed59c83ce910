"""Fault injection: kill `ft train` at its write events, damage a checkpoint, and check what holds.

    uv run python scripts/faults.py                 # every write event of a smoke run
    uv run python scripts/faults.py --every 3       # every third one (faster)

Run from a clean, committed checkout (a run records its commit). For each chosen k, a
child `ft train --config configs/smoke.yaml` gets a Python audit hook that SIGKILLs it
right before its k-th write-side filesystem event inside the run directory (a file
opened for writing, a rename, a directory made): the worst moments, not random ones.
Then `ft train --resume` must finish the run with the adapter and metrics.jsonl of an
uninterrupted run, byte for byte. Last, a finished checkpoint's state.pt is truncated:
the resume must stop with one line naming that file and exit 2, and after the fix it
names (remove that checkpoint) it must again finish with the same bytes.

Prints a Markdown table (case, trials, clean) for docs/reliability.md. Nothing here is
a test hook inside the package: the kills come from the child's audit hook.
"""

import argparse
import hashlib
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SMOKE = ["--config", "configs/smoke.yaml"]
CHILD = textwrap.dedent("""
    import atexit, os, signal, sys
    root, kill_at = os.path.realpath(sys.argv[1]), int(sys.argv[2])
    steps = 0

    def inside(path):
        return isinstance(path, (str, bytes, os.PathLike)) and \\
            os.path.realpath(os.fsdecode(path)).startswith(root + os.sep)

    def hook(event, args):
        global steps
        writes = (event == "open" and inside(args[0]) and args[1] is not None
                  and any(c in str(args[1]) for c in "wxa+"))
        if writes or (event in ("os.rename", "os.mkdir") and inside(args[0])):
            steps += 1
            if steps == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    atexit.register(lambda: print(f"write-events={steps}", file=sys.stderr))
    from PACKAGE.cli import main
    sys.exit(main(sys.argv[3:]))
""")


def package() -> str:
    src = Path("src")
    return next(p.name for p in sorted(src.iterdir()) if (p / "__init__.py").is_file())


def ft(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"{package()}.cli", *args], capture_output=True, text=True
    )


def child(run: Path, kill_at: int) -> subprocess.CompletedProcess:
    code = CHILD.replace("PACKAGE", package())
    run.mkdir(parents=True, exist_ok=True)  # the hook resolves paths under it
    args = ["train", *SMOKE, "--out", str(run)]
    return subprocess.run(
        [sys.executable, "-c", code, str(run), str(kill_at), *args], capture_output=True, text=True
    )


def digest(run: Path) -> str:
    h = hashlib.sha256()
    for rel in ("adapter/adapter_model.safetensors", "metrics.jsonl"):
        h.update((run / rel).read_bytes())
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=1, help="kill at every Nth write event")
    args = parser.parse_args()
    runs = "runs" if Path("runs").is_dir() else None
    scratch = Path(tempfile.mkdtemp(prefix="ft-faults-", dir=runs))
    rows = []
    try:
        # The reference: one uninterrupted run, counting its write events.
        ref = scratch / "reference"
        done = child(ref, 0)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        events = int(done.stderr.rsplit("write-events=", 1)[1].split()[0])
        want = digest(ref)

        clean = trials = 0
        for k in range(1, events + 1, args.every):
            run = scratch / f"kill-{k}"
            killed = child(run, k)
            trials += 1
            if killed.returncode != -signal.SIGKILL:
                print(f"kill at event {k}: the run was not killed ({killed.returncode})")
                continue
            if not (run / "run.json").is_file():  # killed before the run existed: the same
                resumed = ft("train", *SMOKE, "--out", str(run))  # --out must be accepted
            else:
                resumed = ft("train", "--out", str(run), "--resume")
            ok = resumed.returncode == 0 and digest(run) == want
            clean += ok
            print(f"kill at write event {k}/{events}: {'same bytes' if ok else 'DIFFERENT'}")
            if not ok:
                print(resumed.stderr[-2000:])
            shutil.rmtree(run, ignore_errors=True)
        rows.append(("SIGKILL at a write event of `ft train`, then --resume", trials, clean))

        # A truncated checkpoint: one line naming it, then the fix it gives works.
        run = scratch / "truncated"
        killed = child(run, events - 3)  # late: every checkpoint was committed
        last = sorted((run / "checkpoints").glob("step-*"))[-1]
        state = last / "state.pt"
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
        refused = ft("train", "--out", str(run), "--resume")
        lines = refused.stderr.strip().splitlines()
        one_line = (
            refused.returncode == 2
            and len(lines) == 1
            and str(state) in lines[0]
            and "(fix: " in lines[0]
            and "Traceback" not in refused.stderr
        )
        shutil.rmtree(last)  # what the message says to do
        again = ft("train", "--out", str(run), "--resume")
        ok = one_line and again.returncode == 0 and digest(run) == want
        print(f"truncated {state.relative_to(scratch)}: {'clean' if ok else 'NOT CLEAN'}")
        rows.append(("truncated checkpoint state.pt: one line, then resume", 1, int(ok)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n| case | trials | clean |\n| --- | --- | --- |")
    for case, n, k in rows:
        print(f"| {case} | {n} | {k}/{n} |")
    return 0 if all(n == k for _, n, k in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
