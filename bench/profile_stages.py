"""Where `ft train`'s time goes: named stages out of a cProfile dump.

    .venv/bin/python -m cProfile -o ft.prof -m <package>.cli train --config configs/smoke.yaml
    .venv/bin/python <template>/bench/profile_stages.py ft.prof

Prints one JSON object: total seconds, then the cumulative seconds of each stage
function below (stages nest: load_base includes the base hash check, _train the
checkpoints), and the top functions by own time. cProfile slows Python-heavy code
more than torch kernels, so use it to attribute time, not as the timing itself.
"""

import json
import pstats
import sys

# (label, file suffix, function[, (caller file suffix, caller function)]): the template's
# stages, then what they call; with a caller, only the time of calls made from it.
STAGES = [
    ("imports (all modules, wherever imported)", "<frozen importlib._bootstrap>",
     "_find_and_load"),
    ("config: load + validate", "config.py", "load_config"),
    ("run directory setup (run.json, config.yaml)", "train/recipe.py", "_run_dir"),
    ("determinism.configure", "train/determinism.py", "configure"),
    ("accelerate.Accelerator()", "accelerate/accelerator.py", "__init__"),
    ("data: rebuild + check against data.lock", "data/build.py", "check"),
    ("  of which sources (read + sha256 verify)", "data/sources.py", "verify_local"),
    ("  of which filters", "data/build.py", "apply_chain"),
    ("  of which canonical serialization + hash", "data/build.py", "serialize"),
    ("model: load base (incl. hash check)", "model/__init__.py", "load_base"),
    ("  of which base model hash verification", "model/__init__.py", "ensure_local_base"),
    ("  of which tokenizer hash", "model/__init__.py", "tokenizer_hash"),
    ("tokenize (encode)", "data/loader.py", "encode"),
    ("add LoRA (peft)", "model/__init__.py", "add_lora"),
    ("training loop (_train)", "train/recipe.py", "_train"),
    ("  of which checkpoints (torch.save + fsync + rename)", "train/checkpoint.py", "save"),
    ("  of which metrics.jsonl rewrites (write_atomic: temp file, fsync, rename)",
     "util/hashing.py", "write_atomic", ("train/recipe.py", "_train")),
    ("  of which loss all-reduce (accelerator.reduce)", "accelerate/accelerator.py", "reduce"),
    ("evaluate (eval_loss)", "evaluate.py", "eval_loss"),
    ("write adapter", "train/recipe.py", "_write_adapter"),
    ("manifest + REPRODUCE.md", "closure/manifest.py", "write_manifest"),
    ("  of which output hashes", "closure/manifest.py", "output_files"),
    ("  of which git rev-parse / status", "closure/manifest.py", "_git"),
    ("  of which library versions (importlib.metadata)", "importlib/metadata/__init__.py",
     "version"),
    ("os.fsync, everywhere (atomic writes, checkpoints)", "~", "<built-in method posix.fsync>"),
]


def summarize(path: str, top: int = 12) -> dict:
    stats = pstats.Stats(path)
    entries = stats.stats  # (file, line, function) -> (cc, nc, tottime, cumtime, callers)
    total = max(ct for (_, _, _, ct, _) in entries.values())
    stages = {}
    for label, suffix, function, *caller in STAGES:
        cum = []
        for (f, _, fn), (_, _, _, ct, callers) in entries.items():
            if fn != function or not f.endswith(suffix):
                continue
            if caller:
                (c_suffix, c_function), = caller
                ct = sum(v[3] for (cf, _, cfn), v in callers.items()
                         if cfn == c_function and cf.endswith(c_suffix))
            cum.append(ct)
        stages[label] = round(max(cum), 3) if cum else None
    own = sorted(((v[2], f"{'/'.join(f.rsplit('/', 2)[-2:])}:{fn}")
                  for (f, _, fn), v in entries.items()), reverse=True)[:top]
    fsync_calls = sum(v[1] for (f, _, fn), v in entries.items() if fn.endswith("posix.fsync>"))
    return {"total_s": round(total, 3), "stages_s": stages, "fsync_calls": fsync_calls,
            "top_own_time": [{"function": name, "seconds": round(t, 3)} for t, name in own]}


if __name__ == "__main__":
    print(json.dumps(summarize(sys.argv[1])))
