"""Segment replay against full replay: gate wall vs training wall, CPU seconds, drill cost.

    .venv/bin/python bench/segments.py --project /tmp/bake/my-finetune      # measure + render
    .venv/bin/python bench/segments.py --render bench/results/<file>.json   # docs only

Runs in the template's dev env; everything measured runs in the baked repo's venv, in a
committed copy of it (the gate checks out the run's commit). For each case (the smoke
config, and a longer tiny run) it trains once, then runs the gate as `ft reproduce --full`,
`--segments all --parallel P` for P = 1, 2 and N (the number of intervals), and a drill
`--segments 1`. Wall and CPU seconds are the gate process's own, children included
(wait4's rusage covers every process it reaped). OMP_NUM_THREADS=1 for every process, as
in bench/run.py, so P processes use P cores. Writes bench/results/<date>-segments.json and
the "Segment replay" section of docs/benchmarks.md (between its markers).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from common import host, log, run_timed

DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- segments:begin -->", "<!-- segments:end -->"
CASES = {
    "smoke": [],  # 12 steps, a checkpoint every 4: N = 3
    "longer": ["--set", "train.max_steps=96", "--set", "train.checkpoint_every=24"],  # N = 4
    # Intervals whose training is long against an interval's start-up: N = 4 of 600 steps.
    "long": ["--set", "train.max_steps=2400", "--set", "train.checkpoint_every=600"],
}


def committed_copy(project: Path, dest: Path) -> Path:
    """The bake's working files committed in `dest`, with its own synced venv."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=project,
                           check=True, capture_output=True, text=True).stdout.splitlines()
    for rel in files:
        if (project / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(project / rel, dest / rel)
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *ident, *args], cwd=dest, check=True)
    subprocess.run([str(project / ".venv" / "bin" / "uv"), "sync", "--frozen", "--quiet"],
                   cwd=dest, check=True, env=_env())
    return dest


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CI": "1",
            "OMP_NUM_THREADS": "1"}
    return env


def measure(project: Path, case: str, sets: list[str]) -> dict:
    ft = str(project / ".venv" / "bin" / "ft")
    env = _env()
    env["PATH"] = f"{project / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    run = f"runs/bench-{case}"
    shutil.rmtree(project / run, ignore_errors=True)

    def timed(label: str, cmd: list[str]) -> dict:
        done = run_timed(cmd, cwd=project, env=env)
        cpu = done["user_s"] + done["sys_s"]
        log(f"  {case}: {label}: wall {done['wall_s']:.1f} s, cpu {cpu:.1f} s")
        return {"wall_s": round(done["wall_s"], 2), "cpu_s": round(cpu, 2)}

    out = {"train": timed("train", [ft, "train", "--config", "configs/smoke.yaml", *sets,
                                    "--out", run])}
    manifest = json.loads((project / run / "manifest.json").read_text())
    n = len(manifest["checkpoints"])
    out["intervals"] = n
    out["train_loop_s"] = manifest["timing"]["train_wall_s"]
    out["full"] = timed("full", [ft, "reproduce", run, "--full"])
    for p in sorted({1, 2, n}):
        r = timed(f"segments P={p}", [ft, "reproduce", run, "--segments", "all",
                                      "--parallel", str(p)])
        record = json.loads((project / run / "verification.json").read_text())
        assert record["passed"], record["reason"]
        r["interval_wall_s"] = [e["wall_s"] for e in record["intervals"]]
        out[f"segments_p{p}"] = r
    r = timed("drill K=1", [ft, "reproduce", run, "--segments", "1", "--seed", "0"])
    r["replayed"] = json.loads((project / run / "verification.json").read_text())[
        "segments"]["replayed"]
    out["drill_k1"] = r
    return out


def section(results: dict, source: str) -> str:
    h = results["host"]
    lines = [
        BEGIN,
        "## 7. Segment replay",
        "",
        f"`ft reproduce --segments` (docs/verification.md in a baked repo) against a full "
        f"replay, measured {results['date']} by `{results['command']}` "
        f"(`{source}`). One repetition per arm: each figure below is one measurement.",
        "",
        f"- **Machine**: {h['cpu_model']}, {h['cpus']} CPUs, {h['memory_gib']} GiB, "
        f"OMP_NUM_THREADS=1 per process; load average {h['loadavg'][0]:.1f} at the start "
        "(several other sessions were running tests on the same 2 cores throughout, so "
        "absolute walls are inflated and noisy; with P processes on 2 busy cores, P > 2 "
        "cannot win wall time here).",
        "- **Cases**: "
        + "; ".join(
            f"`{case}` = configs/smoke.yaml"
            + (" with `" + " ".join(CASES[case][1::2]) + "`" if CASES[case] else "")
            for case in results["cases"]
        )
        + ".",
        "",
        "| case | N | training wall s | gate | gate wall s | wall / training | "
        "CPU s | CPU / full replay |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case, r in results["cases"].items():
        train, full = r["train"], r["full"]
        arms = [("full replay", full)] + [
            (f"segments all, P={k.removeprefix('segments_p')}", v)
            for k, v in r.items() if k.startswith("segments_p")
        ] + ([(f"drill K=1 (interval {r['drill_k1']['replayed'][0]})", r["drill_k1"])]
             if "drill_k1" in r else [])
        for name, arm in arms:
            lines.append(
                f"| {case} | {r['intervals']} | {train['wall_s']:.1f} | {name} | "
                f"{arm['wall_s']:.1f} | {arm['wall_s'] / train['wall_s']:.2f}x | "
                f"{arm['cpu_s']:.1f} | {arm['cpu_s'] / full['cpu_s']:.2f}x |"
            )
    walls = any(v.get("interval_wall_s") for r in results["cases"].values()
                for k, v in r.items() if k.startswith("segments_p"))
    if walls:
        lines += ["", "Per-interval walls (s), as verification.json records them:", ""]
    for case, r in results["cases"].items():
        for k, v in r.items():
            if k.startswith("segments_p") and v.get("interval_wall_s"):
                lines.append(f"- {case}, P={k.removeprefix('segments_p')}: "
                             + ", ".join(f"{w:.1f}" for w in v["interval_wall_s"]))
    lines += ["", results["reading"], END]
    return "\n".join(lines) + "\n"


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + text + rest.split(END, 1)[1].lstrip("\n")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    DOC.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a baked repo with its .venv")
    parser.add_argument("--render", type=Path, help="re-render docs from a results file")
    parser.add_argument("--only", help="comma-separated cases (default: all)")
    parser.add_argument("--reading", default="", help="a paragraph interpreting the figures")
    args = parser.parse_args()
    if args.render:
        results = json.loads(args.render.read_text())
        if args.reading:
            results["reading"] = args.reading
            args.render.write_text(json.dumps(results, indent=1) + "\n")
        write_doc(section(results, str(args.render.resolve().relative_to(ROOT))))
        return
    cases = args.only.split(",") if args.only else list(CASES)
    results = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "host": host(),
               "command": "python bench/segments.py --project <bake>", "cases": {},
               "reading": args.reading}
    with tempfile.TemporaryDirectory(prefix="bench-segments-") as tmp:
        project = committed_copy(args.project.resolve(), Path(tmp) / "project")
        for case in cases:
            log(f"bench segments: {case}")
            results["cases"][case] = measure(project, case, CASES[case])
    results["host"]["loadavg_end"] = os.getloadavg()
    # One file per measurement (an earlier one of the same day is kept: the doc cites it).
    path = BENCH / "results" / f"{datetime.now(UTC):%Y-%m-%d-%H%M}-segments.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    write_doc(section(results, str(path.relative_to(ROOT))))
    log(f"bench segments: wrote {path.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
