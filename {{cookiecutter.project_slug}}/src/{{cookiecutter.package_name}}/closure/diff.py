"""`ft diff RUN_A RUN_B`: which pinned input moved between two runs.

    uv run ft diff runs/a runs/b
    uv run ft diff runs/a          # runs/a against its failed reproduction

Compares two manifests input by input (data, filters, base model, tokenizer,
uv.lock, image, hardware, libraries, seed, config keys, commit), then the
checkpoint chains (the first checkpoint that differs brackets where the runs
diverged), then outputs. `ft reproduce` prints this when a reproduction fails, so
a failure says why. With one run, the other side is its reproduction: the replay
of the first diverging interval for a segment verification, else RUN/reproduce.
"""

import json
from pathlib import Path

from ..data.lock import moved_steps
from .compare import record_path
from .manifest import check_outputs, read_manifest


def flatten(value, prefix: str = "") -> dict:
    """Dotted keys as `--set` writes them; lists of mappings are keyed by position, so a
    change reads `data.filters.2.params.limit` rather than the whole filter list."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        value = {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict) or not value:
        return {prefix.rstrip("."): value}
    out: dict[str, object] = {}
    for k, v in value.items():
        out |= flatten(v, f"{prefix}{k}.")
    return out


def changed_keys(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """(dotted key, value in a, value in b) for every key whose value differs."""
    fa, fb = flatten(a), flatten(b)
    return [
        (k, fa.get(k), fb.get(k)) for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)
    ]


def _short(v) -> str:
    s = str(v)
    return s[:16] if len(s) == 64 and all(c in "0123456789abcdef" for c in s) else s


def explain(a: dict, b: dict) -> tuple[list[str], list[str]]:
    """(lines about inputs that moved, lines about outputs that differ)."""
    inputs = []

    def section(name: str, x: dict, y: dict) -> None:
        for key, va, vb in changed_keys(x or {}, y or {}):
            inputs.append(f"{name}: {key}: {_short(va)} -> {_short(vb)}")

    if a["seed"] != b["seed"]:
        inputs.append(f"seed: {a['seed']} -> {b['seed']}")
    for split in sorted(a["data"]["splits"].keys() | b["data"]["splits"].keys()):
        sa, sb = a["data"]["splits"].get(split, {}), b["data"]["splits"].get(split, {})
        if sa.get("sha256") != sb.get("sha256"):
            inputs.append(
                f"data: {split}: {sa.get('rows')} rows sha256 {_short(sa.get('sha256'))} "
                f"-> {sb.get('rows')} rows sha256 {_short(sb.get('sha256'))}"
            )
        for prev, step in moved_steps(sa, sb):
            inputs.append(
                f"data: {split}: filter {step['filter']} "
                f"{prev['rows_in']}->{prev['rows_out']} became "
                f"{step['rows_in']}->{step['rows_out']}"
            )
    section(
        "data sources",
        {s["name"]: s for s in a["data"]["sources"]},
        {s["name"]: s for s in b["data"]["sources"]},
    )
    section(
        "filters",
        {f"{i}:{f['name']}": f for i, f in enumerate(a["data"]["filters"])},
        {f"{i}:{f['name']}": f for i, f in enumerate(b["data"]["filters"])},
    )
    section("base model", a["base_model"], b["base_model"])
    section("environment", a["environment"], b["environment"])
    section("hardware", a["hardware"], b["hardware"])
    section("git", a["git"], b["git"])
    config_a = {k: v for k, v in a["config"].items() if k != "seed"}
    config_b = {k: v for k, v in b["config"].items() if k != "seed"}
    section("config", config_a, config_b)

    outputs = []
    if (where := divergence(a, b)) is not None:
        outputs.append(where)
    for name in sorted(a["outputs"].keys() | b["outputs"].keys()):
        ha, hb = a["outputs"].get(name), b["outputs"].get(name)
        if ha != hb:
            outputs.append(f"output: {name}: {_short(ha)} -> {_short(hb)}")
    for key, va, vb in changed_keys(a["metrics"], b["metrics"]):
        outputs.append(f"metric: {key}: {va} -> {vb}")
    return inputs, outputs


def divergence(a: dict, b: dict) -> str | None:
    """Where two checkpoint chains part: the last equal checkpoint and the first unequal one."""
    ca = {c["step"]: c["sha256"] for c in a.get("checkpoints") or []}
    cb = {c["step"]: c["sha256"] for c in b.get("checkpoints") or []}
    common = sorted(ca.keys() & cb.keys())
    equal = [s for s in common if ca[s] == cb[s]]
    differ = [s for s in common if ca[s] != cb[s]]
    if not differ:
        return None
    first = differ[0]
    before = max((s for s in equal if s < first), default=None)
    since = f"after step {before} (equal there)" if before is not None else "from step 0"
    return f"checkpoints: the runs diverge {since}; step {first} differs"


def report(a: dict, b: dict) -> str:
    inputs, outputs = explain(a, b)
    lines = inputs or ["no pinned input moved"]
    if outputs and not inputs:
        lines.append(
            "outputs differ although every pinned input is equal: the pipeline is "
            "nondeterministic here (an unseeded random source, a nondeterministic "
            "kernel, or an unrecorded input); see docs/determinism.md"
        )
    return "\n".join(lines + outputs)


def main(run_a: str, run_b: str | None = None) -> int:
    a = read_manifest(Path(run_a))
    check_outputs(run_a, a)  # the hashes compared below must be the files' own
    if run_b is None:
        return _against_reproduction(Path(run_a), a)
    b = read_manifest(Path(run_b))
    check_outputs(run_b, b)
    print(report(a, b))
    inputs, outputs = explain(a, b)
    return 1 if inputs or outputs else 0


def _against_reproduction(run: Path, a: dict) -> int:
    """The run against what its last `ft reproduce` replayed, at the first divergence."""
    from .segments import replay_pins

    path = record_path(
        run,
        missing="nothing to compare the run with",
        fix=f"run `ft reproduce {run}` first, or pass a second run",
    )
    record = json.loads(path.read_text())
    where = record.get("first_divergence")
    if record.get("strategy") == "segments":
        if not where:
            print("the segment replay matched every replayed interval: nothing diverged")
            return 0
        first, last = where["steps"]
        print(f"the run diverged between steps {first} and {last} (interval {where['index']})")
        b = replay_pins(run, where["index"])
    else:
        b = (
            json.loads((run / "reproduce" / "manifest.json").read_text())
            if (run / "reproduce" / "manifest.json").is_file()
            else None
        )
    if b is None:
        print("its replay recorded no inputs (it stopped before writing them)")
        return 1
    inputs, outputs = explain(a, b)
    print("\n".join(inputs) or "no pinned input moved")
    if where is None:
        print("\n".join(outputs))
    return 1 if inputs or outputs or where else 0
