"""`ft train` on configs/small.yaml against TRL's SFTTrainer + PEFT LoRA, on identical work.

    python3 bench/trl_small.py --project /tmp/bake/my-finetune --steps 20 --reps 3
    python3 bench/trl_small.py --render bench/results/<file>.json     # docs only

Runs with any Python 3.11+ (standard library only here). The ft arm runs in the baked
repo's venv; the TRL arm (bench/trl_arm.py) in a throwaway venv made by uv from the baked
repo's lock plus `trl==<--trl>`: `uv export --frozen --no-hashes --no-emit-project`,
`uv venv --python <bake>/.venv/bin/python`, `uv pip install -r <export> -e <bake> trl==X`.
The lock is not changed; the script refuses to measure when the throwaway venv's torch,
transformers, peft, accelerate or datasets differ from the bake's.

Identical work, arm by arm:
- model: base/small-llama (the ~38M embedded small base, `ft base init-small`), float32;
- rows: data/build/train.jsonl and eval.jsonl, the chat rows after the filter chain
  (`ft data build`); the TRL arm tokenizes them with `tokenizer.apply_chat_template` (the
  base tokenizer's own template), loss on assistant turns (its own span code: the template
  has no `{% generation %}` markers, so TRL's assistant_only_loss cannot be used), and a
  preflight (not timed) checks that its input_ids and labels equal the template's;
- batches: the same rows in the same order (the TRL arm lays the rows out in the order of
  the template's seeded sampler and trains with train_sampling_strategy=sequential), so
  every step pads to the same width; packing and padding-free off, max_length 512;
- LoRA r/alpha/dropout/targets, AdamW (lr, weight decay 0, clip 1.0), constant schedule,
  no warmup, batch size, steps, a checkpoint every `train.checkpoint_every` steps with the
  optimizer state, deterministic algorithms on (TRL: full_determinism), bf16 and gradient
  checkpointing off (TRL defaults both on);
- after training: loss on the held-out split, loss on the eval suite's rows and a greedy
  completion of each suite prompt (eval.max_new_tokens), the adapter saved.
The ft arm also does what the template adds (config validation, data rebuild and lock
check, base hash, manifest); that is the cost being measured.

Arms are whole processes, run side by side and interleaved (A B, B A, ...), each with
OMP_NUM_THREADS=1 as in bench/run.py; wall and peak RSS come from wait4 (bench/common.py).
Writes bench/results/<date>-trl-small.json and section 8 of docs/benchmarks.md (between
its markers; bench/run.py keeps it when it rewrites the page). Not wired into .ci/run.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from common import host, interleaved, log, paired_ratios, run_timed, summary

DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- trl-small:begin -->", "<!-- trl-small:end -->"
TARGETS = {"wall": 1.05, "rss": 1.10}
PINNED = ("torch", "transformers", "peft", "accelerate", "datasets")


# --- the harness ---------------------------------------------------------------------


def _env(threads: int) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "FT_OUT")
    }
    return env | {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "CI": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }


def _versions(python: str, env: dict) -> dict:
    code = (
        "import json, importlib.metadata as m\nout = {}\n"
        f"for k in {PINNED + ('trl',)!r}:\n"
        "    try:\n        out[k] = m.version(k)\n"
        "    except m.PackageNotFoundError:\n        pass\nprint(json.dumps(out))"
    )
    return json.loads(run_timed([python, "-c", code], env=env)["stdout"].strip())


def trl_venv(project: Path, dest: Path, version: str, env: dict) -> tuple[str, list[list[str]]]:
    """The bake's lock plus trl==version in a throwaway venv; the commands that made it."""
    uv = [sys.executable, "-m", "uv"] if shutil.which("uv") is None else ["uv"]
    req = dest.parent / "requirements-locked.txt"
    export = [*uv, "export", "--frozen", "--no-hashes", "--no-emit-project", "--quiet"]
    req.write_text(run_timed(export, cwd=project, env=env)["stdout"])
    venv = [*uv, "venv", "--quiet", "--python", str(project / ".venv/bin/python"), str(dest)]
    install = [
        *uv,
        "pip",
        "install",
        "--quiet",
        "--python",
        str(dest / "bin/python"),
        "-r",
        str(req),
        "-e",
        str(project),
        f"trl=={version}",
    ]
    for cmd in (venv, install):
        run_timed(cmd, cwd=project, env=env)
    shown = [
        [w.replace(str(project), "<bake>").replace(str(dest.parent), "<tmp>") for w in c]
        for c in (export, venv, install)
    ]
    return str(dest / "bin/python"), shown


def measure(args) -> dict:
    project = Path(args.project).resolve()
    env = _env(args.threads)
    ft, python = str(project / ".venv/bin/ft"), str(project / ".venv/bin/python")
    sets = ["--set", f"train.max_steps={args.steps}"]
    work = Path(tempfile.mkdtemp(prefix="trl-small-"))
    try:
        log("preparing: small base, data/build, the TRL venv")
        if not (project / "base/small-llama/config.json").is_file():
            run_timed([ft, "base", "init-small"], cwd=project, env=env)
        run_timed([ft, "data", "build"], cwd=project, env=env)
        trl_python, made_with = trl_venv(project, work / "trl-venv", args.trl, env)
        versions = {"bake": _versions(python, env), "trl_venv": _versions(trl_python, env)}
        if any(versions["bake"][k] != versions["trl_venv"][k] for k in PINNED):
            raise SystemExit(f"the TRL venv does not match the lock: {versions}")
        worker = [
            trl_python,
            str(BENCH / "trl_arm.py"),
            "--config",
            args.config,
            "--set",
            f"train.max_steps={args.steps}",
        ]
        check = json.loads(
            run_timed([*worker, "--out", str(work / "check"), "--check"], cwd=project, env=env)[
                "stdout"
            ]
            .strip()
            .splitlines()[-1]
        )
        log(f"preflight: {check['identical']}/{check['rows']} rows tokenized identically")
        # Warm both arms' imports (pyc files, page cache) once, untimed.
        run_timed([trl_python, "-c", "import trl, peft, transformers, torch"], env=env)
        run_timed([ft, "--help"], cwd=project, env=env)

        def ft_arm(rep: int) -> dict:
            out = work / f"ft-{rep}"
            r = run_timed(
                [ft, "train", "--config", args.config, *sets, "--out", str(out)],
                cwd=project,
                env=env,
            )
            scores = json.loads((out / "eval.json").read_text())
            metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            return {k: r[k] for k in ("wall_s", "maxrss_mb", "user_s", "sys_s")} | {
                "evaluation": scores.get("eval_loss"),
                "logged_losses": [m["loss"] for m in metrics if "loss" in m],
            }

        def trl_run(rep: int) -> dict:
            r = run_timed([*worker, "--out", str(work / f"trl-{rep}")], cwd=project, env=env)
            return {k: r[k] for k in ("wall_s", "maxrss_mb", "user_s", "sys_s")} | {
                "report": json.loads(r["stdout"].strip().splitlines()[-1])
            }

        began = datetime.now(UTC)
        load_before = os.getloadavg()
        runs = interleaved({"ft": ft_arm, "trl": trl_run}, args.reps, log)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    walls = paired_ratios([r["wall_s"] for r in runs["ft"]], [r["wall_s"] for r in runs["trl"]])
    cpu = paired_ratios(
        [r["user_s"] + r["sys_s"] for r in runs["ft"]],
        [r["user_s"] + r["sys_s"] for r in runs["trl"]],
    )
    rss = paired_ratios([r["maxrss_mb"] for r in runs["ft"]], [r["maxrss_mb"] for r in runs["trl"]])
    return {
        "date": began.isoformat(timespec="seconds"),
        "host": host(),
        "load_before": load_before,
        "load_after": load_after,
        "threads": args.threads,
        "config": args.config,
        "steps": args.steps,
        "reps": args.reps,
        "trl": args.trl,
        "versions": versions,
        "trl_venv_commands": made_with,
        "preflight": check,
        "ft_command": ["ft", "train", "--config", args.config, *sets, "--out", "<tmp>/ft-N"],
        "trl_command": [
            "<trl-venv>/bin/python",
            "<template>/bench/trl_arm.py",
            "--config",
            args.config,
            *sets[:2],
            "--out",
            "<tmp>/trl-N",
        ],
        "runs": runs,
        "wall_ratio": summary(walls),
        "rss_ratio": summary(rss),
        "cpu_ratio": summary(cpu),
        "targets": TARGETS,
    }


def _loss(value) -> str:
    return "not recorded" if value is None else f"{value:.4f}"


def render(res: dict) -> str:
    ft, trl = res["runs"]["ft"], res["runs"]["trl"]
    w, r = res["wall_ratio"]["median"], res["rss_ratio"]["median"]

    def cpu(run: dict) -> float:
        return run["user_s"] + run["sys_s"]

    rows = "\n".join(
        f"| {i + 1} | {a['wall_s']:.1f} | {b['wall_s']:.1f} | {a['wall_s'] / b['wall_s']:.3f} "
        f"| {cpu(a):.1f} | {cpu(b):.1f} | {cpu(a) / cpu(b):.3f} "
        f"| {a['maxrss_mb']:.0f} | {b['maxrss_mb']:.0f} | {a['maxrss_mb'] / b['maxrss_mb']:.3f} |"
        for i, (a, b) in enumerate(zip(ft, trl, strict=True))
    )
    c = statistics.median(cpu(a) / cpu(b) for a, b in zip(ft, trl, strict=True))
    ft_losses = ", ".join(f"{x:.3f}" for x in ft[0].get("logged_losses") or []) or "not recorded"
    rep = trl[0]["report"]
    cmds = "\n".join("    " + " ".join(c) for c in res["trl_venv_commands"])
    verdict = (
        f"wall {'meets' if w <= TARGETS['wall'] else 'misses'} the ≤{TARGETS['wall']} "
        f"target, peak RSS {'meets' if r <= TARGETS['rss'] else 'misses'} "
        f"≤{TARGETS['rss']}"
    )
    h = res["host"]
    return f"""{BEGIN}
## 8. `ft train` against TRL's SFTTrainer (bench/trl_small.py)

    python3 bench/trl_small.py --project <bake> --steps {res["steps"]} --reps {res["reps"]}

{res["date"]} on {h["cpu_model"]} ({h["cpus"]} cores, {h["memory_gib"]} GiB),
OMP_NUM_THREADS={res["threads"]}. **Noisy machine:** load average
{res["load_before"][0]:.2f} before and {res["load_after"][0]:.2f} after the measured runs
(a CI run of the whole template test suite and other sessions shared the 2 cores
throughout), so the arms ran interleaved side by side (A B, B A, ...) and only paired
ratios are reported.

Work: `ft train --config {res["config"]} --set train.max_steps={res["steps"]}` (the ~38M
embedded small base, float32, LoRA r/alpha/dropout/targets from the config, AdamW at a
constant lr, batch 8, a checkpoint every 10 steps, held-out loss, suite
loss and greedy completions, adapter saved) against TRL {res["trl"]} `SFTTrainer` with a
PEFT `LoraConfig` doing the same: same model directory, the same built chat rows in the
same batches (preflight: {res["preflight"]["identical"]}/{res["preflight"]["rows"]} rows
give identical input_ids and labels to the template's encoder), chat template applied by
`apply_chat_template`, loss on assistant turns, packing and padding-free off,
max_length 512, bf16 and gradient checkpointing off, deterministic algorithms on. Both
arms are whole processes from start to exit (imports included); the ft arm also validates
the config, rebuilds and checks the data lock, hashes the base and writes the manifest.

| rep | ft wall s | TRL wall s | wall ratio | ft CPU s | TRL CPU s | CPU ratio | ft peak RSS MB | TRL peak RSS MB | RSS ratio |
|---|---|---|---|---|---|---|---|---|---|
{rows}

Median of the paired ratios (ft / TRL): **wall {w:.3f}**, **peak RSS {r:.3f}**: {verdict}.
CPU seconds (user + sys, the process and its children) are less sensitive to the other
job's load than wall: median ratio {c:.3f}. With this much load a single pair can swing
wall by 25%; read the ratio as "within noise of 1" unless it is far from it, and re-run on
a quiet machine for a figure to two decimals.

Same work, checked: before timing, a preflight compares the TRL arm's tokenized rows with
the template's encoder (count above). Losses: ft logs the loss of steps 5, 10, 15, 20
({ft_losses}); TRL logs the mean of each 5-step window
({", ".join(f"{x:.3f}" for x in rep["logged_losses"])}), so they are not the same
quantity; the LoRA dropout masks also come from each framework's own RNG stream, so the
weights drift apart within noise. Held-out loss after training: ft
{_loss(ft[0]["evaluation"])}, TRL {rep["eval_loss"]:.4f}. Checkpoints: ft writes step 0
and step 10 (not the last step: the adapter is the output), TRL writes steps 10 and 20;
each holds the adapter and the optimizer state. TRL arm's own split (rep 1): setup
{rep["setup_s"]:.1f} s, train {rep["train_s"]:.1f} s, eval and save
{rep["eval_save_s"]:.1f} s.

TRL is not in the lock. It was installed for this arm only, in a throwaway venv made from
the bake's lock plus a pinned TRL (the script refuses to run if torch, transformers, peft,
accelerate or datasets differ from the bake's: {
        ", ".join(f"{k} {v}" for k, v in res["versions"]["trl_venv"].items())
    }):

{cmds}

Results: bench/results/{res["file"]}.
{END}"""


def write_doc(section: str) -> None:
    text = DOC.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", help="a baked repo with its .venv (uv sync --frozen done)")
    p.add_argument("--config", default="configs/small.yaml")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--trl", default="1.16.0", help="TRL version for the throwaway venv")
    p.add_argument("--render", help="re-render docs from a results JSON")
    args = p.parse_args()
    if args.render:
        res = json.loads(Path(args.render).read_text())
    else:
        if not args.project:
            p.error("--project (a baked repo) or --render is required")
        res = measure(args)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
        res["file"] = f"{stamp}-trl-small.json"
        (BENCH / "results").mkdir(exist_ok=True)
        (BENCH / "results" / res["file"]).write_text(json.dumps(res, indent=1) + "\n")
    write_doc(render(res))
    print(
        json.dumps(
            {"wall_ratio": res["wall_ratio"]["median"], "rss_ratio": res["rss_ratio"]["median"]}
        )
    )


if __name__ == "__main__":
    main()
