"""The verdict of a replay, output by output: equal sha256, or in tolerance mode within bounds.

Used by `ft reproduce` (full and segment replay) and again by `ft publish`, which never
trusts a recorded verdict but recomputes it from the files (publish/verdict.py).
"""

import json
from pathlib import Path

from ..errors import UserError
from .manifest import output_files

EXACT_IN_TOLERANCE_MODE = ("config.yaml", "data.lock")
RECORD = "verification.json"  # what `ft reproduce` writes into RUN_DIR


def record_path(run_dir: Path, *, missing: str, fix: str) -> Path:
    """RUN_DIR/verification.json; absent, a UserError saying why it is needed (`missing`)."""
    path = Path(run_dir) / RECORD
    if not path.is_file():
        raise UserError(f"no {RECORD}: {missing}", file=str(path), fix=fix)
    return path


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
