"""The benchmark harness: what the template costs next to doing the same work by hand.

    .venv/bin/python bench/run.py --quick                 # every figure, small sizes
    .venv/bin/python bench/run.py                         # full sizes (1 GB of data, ...)
    .venv/bin/python bench/run.py --only startup,data     # some figures
    .venv/bin/python bench/run.py --project /tmp/b/my-finetune   # reuse a bake
    .venv/bin/python bench/run.py --render bench/results/<file>.json  # docs only

Runs with the template's dev env. Bakes the default answers into a temp dir (or uses
--project: a baked repo with its .venv and a clean git tree), then runs every figure's
arms side by side, interleaved (A B, B A, ...), in that repo's venv, and reports ratios
of medians or medians of paired ratios, never one absolute time alone. Every measured
process gets OMP_NUM_THREADS=1 unless --threads says otherwise: on a shared 2-core machine
two OpenMP threads spin-waiting on a busy neighbour swing the tiny model's step time 2-5x,
which drowns the differences being measured. Writes bench/results/<date>-<host>.json
(<date>-<host>-quick.json for --quick), docs/benchmarks.md and docs/benchmarks-scaling.png.
Nothing here is wired into .ci/run.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from common import host, interleaved, log, median, paired_ratios, run_timed, summary

RESULTS = BENCH / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PNG = ROOT / "docs" / "benchmarks-scaling.png"
FIGURES = ("startup", "data", "overhead", "reproduce", "scaling", "gpu")
PRESETS = {
    "quick": {"steps": 400, "overhead_reps": 3, "startup_reps": 10, "data_mb": 128,
              "e2e_mb": 16, "filter_rows": 200_000, "data_reps": 3, "reproduce_reps": 1,
              "seq": "64,256", "rank": "4,64", "scaling_steps": 10, "scaling_reps": 1,
              "gpu_check_reps": 1, "fsync_off_arm": False},
    "full": {"steps": 1000, "overhead_reps": 5, "startup_reps": 10, "data_mb": 1024,
             "e2e_mb": 128, "filter_rows": 1_000_000, "data_reps": 3, "reproduce_reps": 3,
             "seq": "64,128,256", "rank": "4,16,64", "scaling_steps": 20, "scaling_reps": 3,
             "gpu_check_reps": 2, "fsync_off_arm": True},
}
TARGETS = {"overhead": 1.05, "hash": 0.8, "help": 0.5, "validate": 1.0, "reproduce": 1.05,
           "determinism": 1.10}


class Project:
    """A baked repo and how to run things in it."""

    def __init__(self, path: Path, threads: int | None):
        self.path = path.resolve()
        self.bin = self.path / ".venv" / "bin"
        self.python, self.ft = str(self.bin / "python"), str(self.bin / "ft")
        self.package = next(p.name for p in sorted((self.path / "src").iterdir())
                            if (p / "__init__.py").is_file())
        # A user's environment: pyc files written (a fresh venv pays its compile once),
        # no caller's venv, hub offline, plain progress lines; `uv` is the repo's pinned one.
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "FT_OUT")}
        env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "CI": "1",
                "UV_PYTHON_DOWNLOADS": "never",
                "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}
        if threads:
            env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.env = env

    def run(self, cmd: list, check: bool = True, cwd=None, **env) -> dict:
        return run_timed([str(c) for c in cmd], cwd=cwd or self.path, env=self.env | env,
                         check=check)

    def display(self, cmd: list) -> str:
        """A command as a person types it in the baked repo, without this machine's paths."""
        words = []
        for word in map(str, cmd):
            if word.startswith(str(self.bin) + "/"):
                word = ".venv/bin/" + word[len(str(self.bin)) + 1:]
            elif word.startswith(str(BENCH) + "/"):
                word = "<template>/bench/" + word[len(str(BENCH)) + 1:]
            elif word.startswith(str(self.path) + "/"):
                word = word[len(str(self.path)) + 1:]
            words.append(word)
        return shlex.join(words)

    def json(self, cmd: list, **kw) -> dict:
        return json.loads(self.run(cmd, **kw)["stdout"].strip().splitlines()[-1])


def bake(dest: Path) -> Path:
    uv = Path(sys.executable).parent / "uv"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {"FT_TEMPLATE_NO_GIT": "0", "UV_PYTHON_DOWNLOADS": "never"}
    run_timed([sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(dest), str(ROOT)],
              cwd=ROOT, env=env)
    project = next(p for p in dest.iterdir() if (p / "pyproject.toml").is_file())
    run_timed([str(uv), "sync", "--frozen", "--quiet"], cwd=project, env=env)
    return project


def prepare(project: Project) -> dict:
    """Tiny base, data/build/ (the bare script reads it), pyc files for the heavy imports."""
    began = time.perf_counter()
    if not (project.path / "base" / "tiny-llama" / "config.json").is_file():
        project.run([project.ft, "base", "init-tiny"])
    project.run([project.ft, "data", "build"])
    project.run([project.python, "-c", ("import torch, transformers, peft, accelerate, pydantic, "
                 "yaml, safetensors, numpy, matplotlib")])
    return {"prepare_s": round(time.perf_counter() - began, 1)}


def machine(project: Project) -> dict:
    info = host()
    info |= project.json([project.python, "-c", ("import json, torch, importlib.metadata as m; "
                          "print(json.dumps({'cpu_isa': torch.backends.cpu.get_cpu_capability(),"
                          " 'torch_threads': torch.get_num_threads(), 'cuda': "
                          "torch.cuda.is_available(), 'versions': {k: m.version(k) for k in "
                          "('torch', 'transformers', 'peft', 'accelerate')}}))")])
    info["omp_num_threads"] = project.env.get("OMP_NUM_THREADS")
    info["pythondontwritebytecode_in_caller_env"] = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    return info


def template_commit() -> dict:
    def git(*args):
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None
            else None}


# --- figures ---------------------------------------------------------------------------


def fig_startup(project: Project, preset: dict) -> dict:
    arms = {"python -c pass": [project.python, "-c", "pass"],
            "ft --help": [project.ft, "--help"],
            "ft config validate": [project.ft, "config", "validate"]}
    runs = interleaved({name: lambda _, c=cmd: project.run(c)["wall_s"]
                        for name, cmd in arms.items()}, preset["startup_reps"], log)
    done = project.run([project.python, "-X", "importtime", "-m", f"{project.package}.cli",
                        "config", "validate"])
    top = []
    for line in done["stderr"].splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        if len(name) - len(name.lstrip()) == 1:  # a top-level import
            top.append((int(cumulative) / 1e6, name.strip()))
    return {"wall_s": {name: summary(v) for name, v in runs.items()},
            "top_imports_config_validate_s": [{"module": m, "seconds": round(s, 3)}
                                              for s, m in sorted(top, reverse=True)[:6]]}


def fig_data(project: Project, preset: dict) -> dict:
    return project.json([project.python, BENCH / "data_hash.py", "--mb", preset["data_mb"],
                         "--e2e-mb", preset["e2e_mb"], "--filter-rows", preset["filter_rows"],
                         "--reps", preset["data_reps"]])


def overhead_commands(project: Project, steps: int, fsync_off_arm: bool) -> dict:
    sets = ["--set", f"train.max_steps={steps}", "--set", "train.checkpoint_every=50",
            "--set", "train.log_every=10"]
    # A diagnostic arm, not a proposal: the same `ft train` with os.fsync made a no-op, so
    # the difference to `ft` is what its fsyncs cost on this disk at this moment.
    no_fsync = ("import os, sys; os.fsync = lambda fd: None; "
                f"from {project.package}.cli import main; sys.exit(main(sys.argv[1:]))")
    commands = {"ft": [project.ft, "train", "--config", "configs/smoke.yaml", *sets, "--out"],
                "bare": [project.python, BENCH / "bare_train.py", "--steps", steps,
                         "--checkpoint-every", 50, "--log-every", 10, "--out"]}
    if fsync_off_arm:
        commands["ft, fsync off"] = [project.python, "-c", no_fsync, "train", "--config",
                                     "configs/smoke.yaml", *sets, "--out"]
    return commands


def fig_overhead(project: Project, preset: dict, scratch: Path) -> dict:
    steps = preset["steps"]
    commands = overhead_commands(project, steps, preset["fsync_off_arm"])

    def arm(name):
        def go(rep):
            out = scratch / f"{name.replace(', ', '-').replace(' ', '-')}-{rep}"
            done = project.run([*commands[name], out])
            if name != "bare":
                manifest = json.loads((out / "manifest.json").read_text())
                phases = {"train_wall_s": manifest["timing"]["train_wall_s"]}
            else:
                phases = json.loads(done["stdout"].strip().splitlines()[-1])
            shutil.rmtree(out, ignore_errors=True)
            return {"wall_s": done["wall_s"], "maxrss_mb": done["maxrss_mb"], **phases}
        return go

    runs = interleaved({name: arm(name) for name in commands}, preset["overhead_reps"], log)
    walls = {k: [r["wall_s"] for r in v] for k, v in runs.items()}
    loops = {k: [r["train_wall_s"] for r in v] for k, v in runs.items()}
    log("overhead: profiling one more ft train under cProfile")
    prof = scratch / "ft-train.prof"
    profile_cmd = [project.python, "-m", "cProfile", "-o", prof, "-m", f"{project.package}.cli",
                   *commands["ft"][1:], scratch / "ft-profiled"]
    profiled = project.run(profile_cmd)
    stages = project.json([project.python, BENCH / "profile_stages.py", prof])
    shutil.rmtree(scratch / "ft-profiled", ignore_errors=True)
    bare_phases = {k: median([r[k] for r in runs["bare"]])
                   for k in ("imports_s", "setup_s", "train_wall_s", "eval_save_s")}
    return {"steps": steps,
            "wall_ratio": summary(paired_ratios(walls["ft"], walls["bare"])),
            "loop_ratio": summary(paired_ratios(loops["ft"], loops["bare"])),
            **({"no_fsync_wall_ratio": summary(paired_ratios(walls["ft, fsync off"],
                                                             walls["bare"])),
                "no_fsync_loop_ratio": summary(paired_ratios(loops["ft, fsync off"],
                                                             loops["bare"]))}
               if "ft, fsync off" in walls else {}),
            "wall_s": {k: summary(v) for k, v in walls.items()},
            "train_loop_s": {k: summary(v) for k, v in loops.items()},
            "maxrss_mb": {k: max(r["maxrss_mb"] for r in v) for k, v in runs.items()},
            "bare_phases_s": bare_phases,
            "ft_profile": stages | {"profiled_wall_s": profiled["wall_s"]},
            "commands": {name: project.display(cmd) + " runs/bench-out"
                         for name, cmd in commands.items()}}


def command_block(text: str) -> str | None:
    """REPRODUCE.md's first ```bash block (the same rule as manifest.command_block)."""
    start = text.find("```bash\n")
    end = text.find("\n```", start + 8)
    return None if start < 0 or end < 0 else text[start + 8:end + 1]


def fig_reproduce(project: Project, preset: dict, scratch: Path) -> dict:
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project.path, check=False,
                            capture_output=True, text=True).stdout
    if status.strip():
        return {"skipped": "the bake's git tree is dirty, so a run cannot be reproduced:\n"
                + status}
    source = scratch / "repro-src"
    project.run([project.ft, "train", "--config", "configs/smoke.yaml", "--out", source])
    block = command_block((source / "REPRODUCE.md").read_text())
    rerun = "".join(line + "\n" for line in block.splitlines()
                    if line.strip() != "uv sync --frozen")

    def reproduce(_):
        done = project.run([project.ft, "reproduce", source])
        assert "PASS" in done["stderr"], done["stderr"][-2000:]
        return done["wall_s"]

    def bare(rep):
        out = scratch / f"rerun-{rep}"
        done = project.run(["bash", "-euo", "pipefail", "-c", rerun], FT_OUT=str(out))
        shutil.rmtree(out, ignore_errors=True)
        return done["wall_s"]

    runs = interleaved({"ft reproduce": reproduce, "bare re-run": bare},
                       preset["reproduce_reps"], log)
    log("reproduce: timing its phases one by one")
    phases = reproduce_phases(project, source, rerun, scratch)
    return {"block": block, "bare_rerun": rerun,
            "ratio": summary(paired_ratios(runs["ft reproduce"], runs["bare re-run"])),
            "wall_s": {k: summary(v) for k, v in runs.items()}, "phases_s": phases}


def reproduce_phases(project: Project, source: Path, rerun: str, scratch: Path) -> dict:
    """What `ft reproduce` does, step by step: worktree, fresh venv, cold and warm re-run."""
    commit = json.loads((source / "manifest.json").read_text())["git"]["commit"]
    tree = Path(tempfile.mkdtemp(prefix="ft-bench-tree-")) / "checkout"
    phases = {}
    try:
        phases["git worktree add"] = project.run(
            ["git", "worktree", "add", "--detach", tree, commit])["wall_s"]
        phases["uv sync --frozen (fresh .venv)"] = project.run(
            ["bash", "-c", "uv sync --frozen"], cwd=tree)["wall_s"]
        files = [Path(d, n) for d, _, names in os.walk(tree / ".venv") for n in names]
        venv = {"files": len(files), "gb": sum(p.lstat().st_size for p in files) / 1e9}
        phases["ft train, first in the fresh venv (cold imports)"] = project.run(
            ["bash", "-euo", "pipefail", "-c", rerun], cwd=tree,
            FT_OUT=str(scratch / "phase-cold"))["wall_s"]
        phases["ft train again in that venv (warm imports)"] = project.run(
            ["bash", "-euo", "pipefail", "-c", rerun], cwd=tree,
            FT_OUT=str(scratch / "phase-warm"))["wall_s"]
        phases["uv sync --frozen again (venv up to date)"] = project.run(
            ["bash", "-c", "uv sync --frozen"], cwd=tree)["wall_s"]
    finally:
        removed = project.run(["git", "worktree", "remove", "--force", tree], check=False)
        phases["git worktree remove"] = removed["wall_s"]
        shutil.rmtree(tree.parent, ignore_errors=True)
        for name in ("phase-cold", "phase-warm"):
            shutil.rmtree(scratch / name, ignore_errors=True)
    return {k: round(v, 2) for k, v in phases.items()} | {"venv": venv}


def fig_scaling(project: Project, preset: dict, scratch: Path) -> dict:
    result = project.json([project.python, BENCH / "scaling.py", "--seq", preset["seq"],
                           "--rank", preset["rank"], "--steps", preset["scaling_steps"],
                           "--reps", preset["scaling_reps"]])
    data = scratch / "scaling.json"
    data.write_text(json.dumps(result))
    project.run([project.python, BENCH / "scaling.py", "--plot", data, "--png", PNG])
    return result


def fig_gpu(project: Project, preset: dict, date: str) -> dict:
    cuda = project.json([project.python, "-c", ("import json, torch; "
                         "print(json.dumps(torch.cuda.is_available()))")])
    if cuda:
        return {"status": "run", "result": project.json([project.python, BENCH / "gpu.py"])}
    check = project.json([project.python, BENCH / "gpu.py", "--tiny", "--reps",
                          preset["gpu_check_reps"]])
    shutil.rmtree(project.path / "runs" / "bench-gpu", ignore_errors=True)
    return {"status": f"not run: no GPU available to this task ({date})", "tiny_check": check}


# --- the document ------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def fmt_x(value: float) -> str:
    return f"{value:.2f}×"


def pct(value: float | None) -> str:
    return "n/a (unknown peak)" if value is None else f"{value:.1%}"


def render(results: dict) -> str:
    m, f = results["machine"], results["figures"]
    mode = results["mode"]
    cmd = f".venv/bin/python bench/run.py{' --quick' if mode == 'quick' else ''}"
    rows = []

    def row(num, name, measured, target, ok, only):
        rows.append(f"| {num} | {name} | {measured} | {target} | {verdict(ok)} | "
                    f"`{cmd} --only {only}` |")

    if "overhead" in f:
        o = f["overhead"]
        w, lp = o["wall_ratio"]["median"], o["loop_ratio"]["median"]
        row(1, f"`ft train` vs bare script, whole process ({o['steps']} steps)", fmt_x(w),
            "≤ 1.05×", w <= TARGETS["overhead"], "overhead")
        row(1, "… training loop only", fmt_x(lp), "≤ 1.05×", lp <= TARGETS["overhead"],
            "overhead")
        if "no_fsync_wall_ratio" in o:
            row(1, "… diagnostic: `ft train` with fsync off, whole process / loop",
                f"{fmt_x(o['no_fsync_wall_ratio']['median'])} / "
                f"{fmt_x(o['no_fsync_loop_ratio']['median'])}", "—", None, "overhead")
    if "data" in f:
        a, b, c = f["data"]["a"], f["data"]["b"], f["data"]["c"]
        r = a["ratio_vs_hashlib"]["median"]
        row("2a", f"data hash of canonical bytes ({a['bytes'] / 1e9:.2f} GB) vs "
            "`hashlib.sha256`, throughput", fmt_x(r), "≥ 0.8×", r >= TARGETS["hash"], "data")
        r = a["ratio_vs_sha256sum"]["median"]
        row("2a", "… vs `sha256sum`", fmt_x(r), "≥ 0.8×", r >= TARGETS["hash"], "data")
        r = b["ratio_vs_hashlib"]["hash_now"]["median"]
        row("2b", "serialize + hash from rows (`ft data check`) vs `hashlib.sha256`",
            f"{fmt_x(r)} ({b['rate_mb_s']['hash_now']:.0f} vs "
            f"{b['rate_mb_s']['raw_hashlib']:.0f} MB/s)", "none (JSON-bound)", None, "data")
        s = b["speedup"]["build"]["median"]
        row("2b", "`ft data build` serialize + hash + write, now vs before this change",
            f"{fmt_x(s)} faster", "—", None, "data")
        d = c["default"]
        row("2c", f"default filter chain, {d['rows'] / 1e6:g}M rows: 2 processes vs 1",
            f"{fmt_x(d['speedup_2_vs_1']['median'])} ({d['rows_per_s']['workers_1']:,.0f} → "
            f"{d['rows_per_s']['workers_2']:,.0f} rows/s)", "—", None, "data")
        d = c["with_pii_scan"]
        row("2c", "… with a costlier row filter (pii_scan)",
            f"{fmt_x(d['speedup_2_vs_1']['median'])} ({d['rows_per_s']['workers_1']:,.0f} → "
            f"{d['rows_per_s']['workers_2']:,.0f} rows/s)", "—", None, "data")
    if "startup" in f:
        s = f["startup"]["wall_s"]
        base = s["python -c pass"]["median"]
        h, v = s["ft --help"]["median"], s["ft config validate"]["median"]
        row(3, "`ft --help` wall", f"{h:.2f} s ({h / base:.1f}× `python -c pass`)", "≤ 0.5 s",
            h <= TARGETS["help"], "startup")
        row(3, "`ft config validate` wall", f"{v:.2f} s ({v / base:.1f}× `python -c pass`)",
            "≤ 1 s", v <= TARGETS["validate"], "startup")
    if "reproduce" in f:
        r = f["reproduce"]
        if "skipped" in r:
            row(4, "`ft reproduce` vs the bare re-run", "skipped (dirty tree)", "≤ 1.05×", None,
                "reproduce")
        else:
            x = r["ratio"]["median"]
            row(4, "`ft reproduce` vs the bare re-run it contains", fmt_x(x), "≤ 1.05×",
                x <= TARGETS["reproduce"], "reproduce")
    if "scaling" in f:
        pts = f["scaling"]["points"]
        lo = min(pts, key=lambda p: (p["seq"], p["rank"]))
        hi = max(pts, key=lambda p: (p["seq"], p["rank"]))
        row(5, "tokens/s and memory vs seq × rank (tiny model)",
            f"seq {lo['seq']}/r{lo['rank']} → seq {hi['seq']}/r{hi['rank']}: "
            f"{hi['tokens_per_s'] / lo['tokens_per_s']:.2f}× tokens/s, "
            f"+{lo['point_mb']:.0f} → +{hi['point_mb']:.0f} MB", "— (curve)", None, "scaling")
    if "gpu" in f:
        g = f["gpu"]
        if g["status"] == "run":
            res = g["result"]
            det = res["determinism_cost_train_loop"]["median"]
            same = all(res["arms"][a]["identical_adapter_bytes"] for a in ("ft", "bare"))
            row(6, f"GPU {res['device']}: determinism cost (bare det / non-det loop)",
                fmt_x(det), "≤ 1.10×", det <= TARGETS["determinism"], "gpu")
            row(6, "GPU: two runs, identical adapter bytes", "yes" if same else "no", "yes",
                same, "gpu")
            x = res["ft_vs_bare_train_loop"]["median"]
            row(6, "GPU: `ft train` vs bare, training loop", fmt_x(x), "≤ 1.05×",
                x <= TARGETS["overhead"], "gpu")
        else:
            row(6, "GPU: tokens/s, MFU, ft vs bare, determinism cost, identical bytes",
                g["status"], "≤ 1.10× determinism cost; identical bytes", None, "gpu")

    load = results["load"]
    pinned = (" (OMP_NUM_THREADS pinned by the harness: `bench/run.py --help`)"
              if m["omp_num_threads"] else "")
    lines = [
        "# Benchmarks",
        "",
        ("<!-- Rendered by bench/run.py from bench/results/"
        f"{results['result_file']}; edit the harness, not this file. -->"),
        "",
        ("What the template costs next to the same work done by hand. Every figure is a ratio "
        "of arms measured side by side in one run (interleaved A B, B A, …; median of the "
        "repetitions, or of paired ratios), because absolute times drift on shared machines."),
        "",
        (f"- **Date**: {results['date']} ({results['mode']} run, harness wall "
        f"{results['harness_wall_s'] / 60:.1f} min)"),
        f"- **Machine**: {m['cpu_model']}, ISA {m['cpu_isa']}, {m['cpus']} CPUs, torch threads "
        f"{m['torch_threads']}{pinned}, {m['memory_gib']} GiB, {m['os']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        (f"- **Load**: other processes were running on this machine throughout (load average "
        f"{load['before'][0]:.1f} before, {load['after'][0]:.1f} after, on {m['cpus']} CPUs). "
        "Interleaving puts the noise on both arms alike, but spreads are wide; see the min/max "
        "in the JSON."),
        (f"- **Template commit**: `{results['template']['commit']}`"
        f"{' (dirty tree)' if results['template']['dirty'] else ''}"),
        f"- **Reproduce all**: `{cmd}` (writes bench/results/ and this page)",
        *quick_line(results),
        *figure_runs_line(results),
        *superseded_line(results),
        "",
        "| # | figure | measured | target | result | command |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    lines += details(results)
    return "\n".join(lines) + "\n" + _kept_sections()


def _kept_sections() -> str:
    """Sections other harnesses own (bench/segments.py, bench/trl_small.py), carried over
    from the current page."""
    doc = DOC.read_text() if DOC.is_file() else ""
    kept = ""
    for name in ("segments", "trl-small"):
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        if begin in doc and end in doc:
            kept += "\n" + begin + doc.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
    return kept


def headline(figure: str, data: dict) -> dict:
    """The numbers a figure's row shows, kept when a later run replaces the figure."""
    keys = {"overhead": ("wall_ratio", "loop_ratio"), "reproduce": ("ratio",)}.get(figure, ())
    return {k: data[k] for k in keys if k in data}


def superseded_line(results: dict) -> list[str]:
    old = {k: v for k, v in results.get("superseded", {}).items()
           if any(isinstance(x, dict) for x in v.values())}
    if not old:
        return []
    parts = []
    for figure, values in old.items():
        ratios = ", ".join(f"{k.replace('_', ' ')} {fmt_x(v['median'])} "
                           f"({', '.join(f'{x:.2f}' for x in v['values'])})"
                           for k, v in values.items() if isinstance(v, dict))
        parts.append(f"{figure} measured at {values['measured_at'][11:16]} UTC: {ratios}")
    return ["- **Replaced by the later measurement** (same machine, same day): "
            + "; ".join(parts)]


def figure_runs_line(results: dict) -> list[str]:
    """Figures measured again later (`--only`) and merged into this result file."""
    later = {k: v for k, v in results.get("figure_runs", {}).items()
             if results.get("started_at", "")[:16] not in v["started_at"][:16]
             and v["command"] != results.get("command")}
    if not later:
        return []
    return ["- **Measured again, merged into this file**: " + "; ".join(
        f"{k} at {v['started_at'][11:16]} UTC (`{v['command']}`)" for k, v in later.items())]


def quick_line(results: dict) -> list[str]:
    """The wall time of the latest quick run (the CI-sized harness), if there is one."""
    if results["mode"] == "quick":
        return [(f"- **Quick harness wall time**: {results['harness_wall_s'] / 60:.1f} min "
                "(bake, uv sync and every figure)")]
    runs = sorted(RESULTS.glob("*-quick.json"))
    if not runs:
        return []
    quick = json.loads(runs[-1].read_text())
    return [(f"- **Quick harness wall time**: {quick['harness_wall_s'] / 60:.1f} min on "
            f"{quick['date']} (`bench/results/{runs[-1].name}`; bake, uv sync and every figure)")]


def details(results: dict) -> list[str]:
    f = results["figures"]
    out = []
    if "overhead" in f:
        o = f["overhead"]
        prof = o["ft_profile"]
        out += [
            "## 1. Pipeline overhead",
            "",
            "Arms (each run from the baked repo's root, interleaved):",
            "",
            f"- ft: `{o['commands']['ft']}`",
            (f"- bare: `{o['commands']['bare']}` (bench/bare_train.py: transformers + peft + "
             "accelerate written plainly; same base, rows, tokenization, LoRA, AdamW, lr, batch, "
             "clipping, checkpoint interval, eval and adapter save, same determinism settings)"),
            *([(f"- ft, fsync off (diagnostic): `{o['commands']['ft, fsync off']}`: the same "
               "`ft train` with `os.fsync` made a no-op, to price the fsyncs")]
              if "ft, fsync off" in o["commands"] else []),
            "",
            *overhead_table(o),
            "",
            "Bare script phases (median, s): " + ", ".join(
                f"{k.removesuffix('_s')} {v:.1f}" for k, v in o["bare_phases_s"].items()) + ".",
            "",
            (f"Where `ft train`'s time goes (one extra run under cProfile, "
            f"{prof['total_s']:.1f} s profiled; stages nest, cProfile inflates Python-heavy "
            "code):"),
            "",
            "| stage | s |",
            "| --- | --- |",
            *[f"| {'… ' if k.startswith(' ') else ''}{k.strip()} | "
              f"{'' if v is None else f'{v:.2f}'} |" for k, v in prof["stages_s"].items()],
            "",
            *overhead_findings(o),
        ]
    if "data" in f:
        d = f["data"]
        a, b = d["a"], d["b"]
        out += [
            "## 2. Data hashing and filters",
            "",
            ("(a) Hashing already-serialized canonical bytes as `data/build.py` does (one "
            f"`sha256.update` per block of {d['chunk_rows']} lines) vs one `hashlib.sha256` "
            f"call and `sha256sum` over the same {a['bytes'] / 1e9:.2f} GB:"),
            "",
            "| hasher | MB/s |",
            "| --- | --- |",
            *[f"| {k.replace('_', ' ')} | {v:,.0f} |" for k, v in a["rate_mb_s"].items()],
            "",
            (f"The former per-line updates reach {fmt_x(a['per_line_ratio_vs_hashlib']['median'])} "
            "of raw hashlib (measured on the first "
            f"{a['subset_bytes'] / 1e6:.0f} MB). `sha256sum` here is coreutils without SHA-NI "
            "acceleration; hashlib (OpenSSL) uses it."),
            "",
            (f"(b) End to end from {b['rows']:,} rows ({b['bytes'] / 1e6:.0f} MB): "
            "serialization dominates; the canonical JSON (sorted keys, `ensure_ascii=False`) is "
            "the format data.lock is defined over, so it stays."),
            "",
            "| path | MB/s | rows/s | vs raw hashlib |",
            "| --- | --- | --- | --- |",
            *[f"| {k.replace('_', ' ')} | {b['rate_mb_s'][k]:,.0f} | {b['rows_per_s'][k]:,.0f} | "
              f"{fmt_x(b['ratio_vs_hashlib'].get(k, {'median': 1.0})['median'])} |"
              for k in b["rate_mb_s"]],
            "",
            ("`build before` serialized every row twice (once to hash, once to write); now each "
            "row is serialized once, in blocks, into the hash and the file."),
            "",
            ("(c) Filter chain, `data.workers` 1 vs 2 (identical output asserted). The "
             "parallel path spends more CPU in all (every kept row is pickled back to the "
             "parent: ~35% more CPU time than one process in a spot check here), and it only "
             "wins when there are idle cores to spend it on, which a 2-core machine busy with "
             "other work does not have; the default stays 1:"),
            "",
            "| chain | rows | rows/s, 1 process | rows/s, 2 processes | speedup |",
            "| --- | --- | --- | --- | --- |",
            *[f"| {', '.join(c['filters'])} | {c['rows']:,} | {c['rows_per_s']['workers_1']:,.0f} "
              f"| {c['rows_per_s']['workers_2']:,.0f} | "
              f"{fmt_x(c['speedup_2_vs_1']['median'])} |" for c in d["c"].values()],
            "",
        ]
    if "startup" in f:
        s = f["startup"]
        out += [
            "## 3. CLI start-up",
            "",
            "| command | median s | min | max |",
            "| --- | --- | --- | --- |",
            *[f"| `{k}` | {v['median']:.3f} | {v['min']:.3f} | {v['max']:.3f} |"
              for k, v in s["wall_s"].items()],
            "",
            "Largest top-level imports of `ft config validate` (`python -X importtime`): "
            + ", ".join(f"{i['module']} {i['seconds']:.2f} s"
                        for i in s["top_imports_config_validate_s"]) + ".",
            "",
        ]
    if "reproduce" in f and "skipped" not in f["reproduce"]:
        r = f["reproduce"]
        out += [
            "## 4. Reproduce gate",
            "",
            ("Arms: `ft reproduce <smoke run>` (fresh `git worktree`, the REPRODUCE.md block "
            "verbatim, output comparison) vs the block's own `ft train` line run in the same "
            "checkout, whose venv is already there:"),
            "",
            "```bash",
            r["bare_rerun"].rstrip("\n"),
            "```",
            "",
            "| arm | median s |",
            "| --- | --- |",
            *[f"| {k} | {v['median']:.1f} |" for k, v in r["wall_s"].items()],
            "",
            "Its phases, run one by one:",
            "",
            "| phase | s |",
            "| --- | --- |",
            *[f"| {k} | {v:.1f} |" for k, v in r["phases_s"].items() if k != "venv"],
            "",
            *reproduce_findings(r),
        ]
    if "scaling" in f:
        sc = f["scaling"]
        out += [
            "## 5. Scaling (tiny model)",
            "",
            (f"Batch {sc['batch']}, LoRA on {'/'.join(sc['targets'])}, float32, deterministic; "
            f"tokens/s from the median step, then the median of {sc.get('reps', 1)} "
            "process(es) per point; memory is the process's peak RSS minus a baseline "
            f"process with the same imports, model, adapter and optimizer "
            f"({sc['baseline_peak_rss_mb']:.0f} MB)."),
            "",
            "![scaling](benchmarks-scaling.png)",
            "",
            ("Peak RSS moves in allocator-sized steps, so differences of ~15 MB between points "
             "are noise; the tiny model's activations are a few MB. Its tokens/s barely move "
             "with sequence length or rank: at this size per-op overhead, not FLOPs, sets the "
             "pace, which is why the GPU benchmark (6) uses a ~0.5B model."),
            "",
            ("| seq | rank | trainable params | tokens/s | step ms | peak RSS MB | "
             "above baseline MB |"),
            "| --- | --- | --- | --- | --- | --- | --- |",
            *[f"| {p['seq']} | {p['rank']} | {p['trainable']:,} | {p['tokens_per_s']:,.0f} | "
              f"{p['step_s'] * 1000:.1f} | {p['peak_rss_mb']:.0f} | {p['point_mb']:.0f} |"
              for p in sc["points"]],
            "",
        ]
    if "gpu" in f:
        g = f["gpu"]
        out += ["## 6. GPU", ""]
        if g["status"] == "run":
            res = g["result"]
            out += [(f"Device {res['device']}, CUDA {res['cuda']}, {res['size']} model "
                    f"({res['params'] / 1e6:.0f}M parameters), {res['dtype']}, seq {res['seq']}, "
                    f"batch {res['batch']}, {res['steps']} steps, LoRA rank {res['rank']}."), "",
                    "| arm | processed tok/s | MFU | identical adapter bytes |",
                    "| --- | --- | --- | --- |",
                    *[f"| {k} | {v['processed_tokens_per_s']:,.0f} | {pct(v['mfu'])} | "
                      f"{v['identical_adapter_bytes']} |" for k, v in res["arms"].items()], ""]
        else:
            check = g["tiny_check"]
            out += [f"{g['status']}. `bench/gpu.py` builds a random-initialised ~0.5B "
                    "Llama-style model (LlamaConfig), trains it in bf16 with `ft train`, the bare "
                    "script deterministic and the bare script non-deterministic, and reports "
                    "tokens/s, MFU, the determinism cost and whether two runs wrote identical "
                    f"adapter bytes. Its CPU check (`bench/gpu.py --tiny --reps {check['reps']}`: "
                    "2-layer model, 4 float32 steps; a check that the script works, not a "
                    "measurement) ran here and finished: " + tiny_check_words(check), "",
                    "On a GPU machine: `cd <bake> && .venv/bin/python <template>/bench/gpu.py`.",
                    ""]
    return out


def tiny_check_words(check: dict) -> str:
    arms = check["arms"]
    same = {k: v["identical_adapter_bytes"] for k, v in arms.items()}
    if all(v is None for v in same.values()):
        return (f"all {len(arms)} arms trained ({', '.join(arms)}); one run each, so the "
                "identical-bytes check is left to the full run.")
    return ", ".join(f"{k}: two runs identical {v}" for k, v in same.items()) + "."


def overhead_table(o: dict) -> list[str]:
    arms = list(o["wall_s"])
    ratios = {"ft": ("wall_ratio", "loop_ratio"),
              "ft, fsync off": ("no_fsync_wall_ratio", "no_fsync_loop_ratio")}
    lines = [("| arm | whole process, s | training loop, s | peak RSS, MB | ratio to bare "
             "(median of pairs): process / loop |"), "| --- | --- | --- | --- | --- |"]
    for arm in arms:
        ratio = (f"{fmt_x(o[ratios[arm][0]]['median'])} / {fmt_x(o[ratios[arm][1]]['median'])}"
                 if arm in ratios and ratios[arm][0] in o else "")
        lines.append(f"| {arm} | {o['wall_s'][arm]['median']:.1f} | "
                     f"{o['train_loop_s'][arm]['median']:.1f} | {o['maxrss_mb'][arm]:.0f} | "
                     f"{ratio} |")
    return lines


# The stages only the template runs (the bare script has no counterpart), by profile label.
TEMPLATE_ONLY = ("config: load + validate", "run directory setup (run.json, config.yaml)",
                 "data: rebuild + check against data.lock",
                 "  of which base model hash verification", "  of which tokenizer hash",
                 "  of which metrics.jsonl rewrites (write_atomic: temp file, fsync, rename)",
                 "  of which loss all-reduce (accelerator.reduce)", "manifest + REPRODUCE.md")


def overhead_findings(o: dict) -> list[str]:
    """What the numbers say, in words computed from them."""
    wall = o["wall_s"]["ft"]["median"] - o["wall_s"]["bare"]["median"]
    loop = o["train_loop_s"]["ft"]["median"] - o["train_loop_s"]["bare"]["median"]
    stages = o["ft_profile"]["stages_s"]
    own = {k.strip().removeprefix("of which "): stages[k] for k in TEMPLATE_ONLY
           if stages.get(k) is not None}
    spread = ", ".join(f"{k} {v['min']:.1f}-{v['max']:.1f} s"
                       for k, v in o["train_loop_s"].items())
    fsync = stages.get("os.fsync, everywhere (atomic writes, checkpoints)") or 0.0
    lines = [
        ("**Where the extra time goes.** Medians, ft minus bare: whole process "
         f"{wall:+.1f} s, training loop {loop:+.1f} s. The stages only the template runs add "
         f"up to {sum(own.values()):.2f} s in the profiled run: "
         + ", ".join(f"{k} {v:.2f} s" for k, v in own.items()) + "; checkpoints (which the "
         "bare script also writes, with accelerate's `save_state`, in its loop) "
         f"{stages.get('  of which checkpoints (torch.save + fsync + rename)') or 0:.2f} s. "
         f"Of all that, fsync took {fsync:.2f} s over {o['ft_profile'].get('fsync_calls', '?')} "
         "calls (metrics.jsonl is rewritten and fsynced at every `train.log_every` step, a "
         "checkpoint fsyncs two files and two directories), and fsync latency is the one cost "
         "that grows with other processes' disk writes. The loop's spread across repetitions "
         f"({spread}) is of the same order as the differences."),
        "",
    ]
    if "no_fsync_loop_ratio" in o:
        off = o["train_loop_s"]["ft, fsync off"]["median"]
        lines += [
            (f"With fsync off (diagnostic arm), ft's loop took {off:.1f} s "
             f"({fmt_x(o['no_fsync_loop_ratio']['median'])} of bare, whole process "
             f"{fmt_x(o['no_fsync_wall_ratio']['median'])}), against "
             f"{fmt_x(o['loop_ratio']['median'])} with it: ft minus ft-without-fsync is "
             f"{o['train_loop_s']['ft']['median'] - off:+.1f} s of loop time"
             + (", inside the spread above, so the fsyncs did not cost measurable time in "
                "these runs." if abs(o["train_loop_s"]["ft"]["median"] - off)
                < o["train_loop_s"]["ft"]["max"] - o["train_loop_s"]["ft"]["min"] else ".")),
            "",
        ]
    return lines


def reproduce_findings(r: dict) -> list[str]:
    phases = r["phases_s"]
    cold = phases["ft train, first in the fresh venv (cold imports)"]
    warm = phases["ft train again in that venv (warm imports)"]
    fixed = r["wall_s"]["ft reproduce"]["median"] - r["wall_s"]["bare re-run"]["median"]
    return [
        (f"**Where the extra time goes.** `ft reproduce` costs {fixed:+.1f} s over the bare "
        "re-run, a fixed cost that does not grow with training: a fresh `.venv` "
        f"({phases['uv sync --frozen (fresh .venv)']:.1f} s; uv hard-links from its cache), "
        f"compiling the bytecode of every module imported for the first time in it "
        f"({cold - warm:.1f} s: the same `ft train` ran {cold:.1f} s cold, {warm:.1f} s warm), "
        f"and deleting that venv with the worktree ({phases['git worktree remove']:.1f} s; "
        f"`git worktree remove --force` on a tree holding a {phases['venv']['gb']:.1f} GB, "
        f"{phases['venv']['files']:,}-file `.venv`). Against the "
        f"smoke run's few seconds of training the ratio cannot reach 1.05×: that needs a "
        f"re-run of {fixed / 0.05 / 60:.0f} min or more, as a real fine-tune usually is. "
        "`uv sync --compile-bytecode` "
        "is no way out: it compiles every installed package (120 s, timed by hand on "
        "2026-11-23 on the 2-core machine of the first results)."),
        "",
    ]


def kept_sections() -> str:
    """Sections other scripts render into the page (bench/data_scale.py), kept as they are."""
    mark = "<!-- bench/data_scale.py:"
    text = DOC.read_text() if DOC.is_file() else ""
    return "\n" + text[text.index(mark):] if mark in text else ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (CI: a few minutes)")
    p.add_argument("--only", default=",".join(FIGURES),
                   help=f"comma-separated subset of {','.join(FIGURES)}")
    p.add_argument("--project", type=Path, help="a baked repo to use instead of a fresh bake")
    p.add_argument("--threads", type=int, default=1,
                   help="OMP_NUM_THREADS for every measured process (default: %(default)s; 0: "
                   "torch's default, one per core). On a shared 2-core machine, OpenMP threads "
                   "spin-waiting on a busy neighbour swing the tiny model's step time 2-5x")
    p.add_argument("--render", type=Path, help="re-render docs/benchmarks.md from a result file")
    p.add_argument("--no-docs", action="store_true", help="write the result file only")
    args = p.parse_args()
    if args.render:
        results = json.loads(args.render.read_text())
        DOC.write_text(render(results) + kept_sections())
        return 0
    only = [x for x in args.only.split(",") if x]
    unknown = set(only) - set(FIGURES)
    if unknown:
        p.error(f"unknown figure(s) {', '.join(sorted(unknown))}; choose from {FIGURES}")
    mode = "quick" if args.quick else "full"
    preset = PRESETS[mode]
    began, started = time.perf_counter(), datetime.now(UTC)
    date = started.date().isoformat()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="ft-bench-"))
    RESULTS.mkdir(exist_ok=True)
    try:
        if args.project:
            project = Project(args.project, args.threads)
        else:
            log(f"bench: baking the template into {tmp}")
            project = Project(bake(tmp / "bake"), args.threads)
        scratch = project.path / "runs" / "bench"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        log("bench: preparing the bake (tiny base, data/build, pyc files)")
        prep = prepare(project)
        info = machine(project)
        host_name = re.sub(r"[^A-Za-z0-9_.-]", "_", info["hostname"])
        name = f"{date}-{host_name}{'-quick' if mode == 'quick' else ''}.json"
        path = RESULTS / name
        # A run of some figures updates today's result file for this host instead of
        # replacing it; the figures it did not measure keep their values.
        merge = set(only) != set(FIGURES) and path.is_file()
        results = json.loads(path.read_text()) if merge else {
            "schema": 1, "mode": mode, "date": date, "started_at": started.isoformat(),
            "command": shlex.join([Path(sys.executable).name, *sys.argv]), "preset": preset,
            "machine": info, "template": template_commit(), "result_file": name, "figures": {},
            "figure_wall_s": {}, **prep}
        results.setdefault("figure_runs", {})
        figures = {"startup": lambda: fig_startup(project, preset),
                   "data": lambda: fig_data(project, preset),
                   "overhead": lambda: fig_overhead(project, preset, scratch),
                   "reproduce": lambda: fig_reproduce(project, preset, scratch),
                   "scaling": lambda: fig_scaling(project, preset, scratch),
                   "gpu": lambda: fig_gpu(project, preset, date)}
        for figure in only:
            log(f"bench: figure {figure}")
            t, load = time.perf_counter(), os.getloadavg()
            start_iso = datetime.now(UTC).isoformat(timespec="seconds")
            if merge and figure in results["figures"]:  # keep what the new figure replaces
                results.setdefault("superseded", {})[figure] = headline(
                    figure, results["figures"][figure]) | {
                    "measured_at": results.get("figure_runs", {}).get(figure, {}).get(
                        "started_at", results["started_at"])}
            results["figures"][figure] = figures[figure]()
            results["figure_wall_s"][figure] = round(time.perf_counter() - t, 1)
            results["figure_runs"][figure] = {
                "started_at": start_iso,
                "command": shlex.join([Path(sys.executable).name, *sys.argv]),
                "template": template_commit(), "load": {"before": load, "after": os.getloadavg()}}
            if not merge:
                results["load"] = {"before": load_before, "after": os.getloadavg()}
                results["harness_wall_s"] = round(time.perf_counter() - began, 1)
            # Written after every figure, so a failure later keeps what was measured.
            path.write_text(json.dumps(results, indent=1) + "\n")
        shutil.rmtree(scratch, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"bench: wrote bench/results/{name} ({(time.perf_counter() - began) / 60:.1f} min)")
    if not args.no_docs:
        DOC.write_text(render(results) + kept_sections())
        log(f"bench: wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
