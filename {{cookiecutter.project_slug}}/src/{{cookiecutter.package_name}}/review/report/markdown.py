"""report.md: what the run report shows, gathered here and laid out by templates/report.md.j2."""

import json

from ...closure.diff import changed_keys
from ...data.lock import input_differences, splits_diff
from ...evaluate.gates import failures
from ..behaviour import gate_results, suites
from .figures import DATA_PNG, LOSS_PNG
from .format import short
from .load import Side, splits
from .templating import render_template

# Listed first, in this order; any other metric follows alphabetically.
METRIC_ORDER = (
    "eval_loss",
    "eval_perplexity",
    "train_loss_last",
    "train_loss_first",
    "train_loss_min",
    "steps",
    "eval_tokens",
)


def config_changes(old: dict, new: dict) -> list[tuple[str, object, object]]:
    return changed_keys(old, new)


def train_rows(m: dict) -> int | None:
    return m["data"]["splits"].get("train", {}).get("rows")


def eval_set_changed(run: Side, base: Side) -> bool:
    sha = [side.manifest["data"]["splits"].get("eval", {}).get("sha256") for side in (run, base)]
    return sha[0] != sha[1]


def metrics(run: Side, base: Side | None) -> dict:
    """Each side's metrics (train rows and throughput added) and the order to list them in."""

    def values(side: Side) -> dict:
        m = side.manifest
        return {
            **m["metrics"],
            "train_rows": train_rows(m),
            "tokens_per_s": (m.get("timing") or {}).get("tokens_per_s"),
        }

    a = values(run)
    b = values(base) if base else {}
    names = [k for k in METRIC_ORDER if k in a or k in b]
    names += sorted((a.keys() | b.keys()) - set(names) - {"train_rows", "tokens_per_s"})
    names += ["train_rows", "tokens_per_s"]
    return {"names": names, "run": a, "base": b}


def data(run: Side, base: Side | None) -> dict:
    """Without a baseline: each split's filter steps; with one: the rows of the data diff."""
    if base is None:
        return {"splits": splits(run.manifest)}
    old, new = base.manifest["data"], run.manifest["data"]
    return {
        "rows": splits_diff(old, new),
        "moved": input_differences(old, new),
        "unchanged": old["splits"] == new["splits"],
    }


def _yamlish(value) -> str | None:
    if value is None:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value)


def pins(m: dict) -> dict[str, str | None]:
    base, env, git = m["base_model"], m["environment"], m["git"]
    commit = git.get("commit")
    return {
        "git commit": f"{short(commit)}{' (dirty)' if git.get('dirty') else ''}"
        if commit
        else None,
        "base model": (
            f"{base['hub_id']}@{short(base['revision'])}"
            if "hub_id" in base
            else f"{base['path']} sha256 {short(base['sha256'])}"
        ),
        "tokenizer sha256": short(base.get("tokenizer_sha256")),
        "data train sha256": short(m["data"]["splits"].get("train", {}).get("sha256")),
        "data eval sha256": short(m["data"]["splits"].get("eval", {}).get("sha256")),
        "config sha256": short(m["config_sha256"]),
        "seed": str(m["seed"]),
        "image digest": short_image(env.get("image_digest")),
        "uv.lock sha256": short(env.get("uv_lock_sha256")),
        "hardware": hardware(m["hardware"]),
    }


def short_image(image: str | None) -> str:
    if not image:
        return "none (local run)"
    name, sep, digest = image.partition("@sha256:")
    return f"{name}@sha256:{short(digest)}" if sep else image


def hardware(hw: dict) -> str:
    if hw.get("device_type") == "cuda":
        return f"{hw.get('device_count')} x {hw.get('device_name')}, {hw.get('world_size')} proc"
    return f"CPU {hw.get('cpu_isa')}, {hw.get('world_size')} proc"


def reproduce_badge(side: Side) -> str:
    v = side.verification
    if v is None:
        return "not reproduced yet"
    if not side.verification_current:
        return "reproduce record stale"
    return "✅ reproduced" if v.get("passed") else "❌ reproduction failed"


def reproduce_status(side: Side, run_ref: str | None = None) -> str:
    v = side.verification
    if v is None:
        return "not reproduced yet" + (f": run `uv run ft reproduce {run_ref}`" if run_ref else "")
    if not side.verification_current:
        return "stale: verification.json was written for another manifest.json"
    if v.get("passed"):
        compared = v.get("compared") or []
        return (
            f"✅ passed ({v.get('mode')} mode): {len(compared)} outputs compared, all equal; "
            f"{v.get('finished_at')}"
        )
    unequal = [c.get("file") for c in v.get("compared") or [] if not c.get("equal")]
    return f"❌ failed: {v.get('reason')}" + (f" (differ: {', '.join(unequal)})" if unequal else "")


def curves(run: Side, base: Side | None) -> dict:
    """The training-loss curves to draw as sparklines, on one scale shared by both sides."""
    drawn = [(s, s.curve) for s in (run, base) if s is not None and s.curve]
    losses = [r["loss"] for _, curve in drawn for r in curve]
    return {
        "curves": [
            {
                "name": "this run" if side is run else f"baseline {side.label}",
                "losses": [r["loss"] for r in curve],
                "last_step": curve[-1]["step"],
            }
            for side, curve in drawn
        ],
        "curve_lo": min(losses, default=None),
        "curve_hi": max(losses, default=None),
    }


def render(
    run: Side, base: Side | None, baseline_how: str, run_ref: str, figures_url: str | None = None
) -> str:
    def fig(name: str) -> str:
        return f"{figures_url.rstrip('/')}/{name}" if figures_url else name

    m = run.manifest
    changes = config_changes(base.manifest["config"], m["config"]) if base else []
    gates = gate_results(m, base.manifest if base else None)
    return render_template(
        "report.md.j2",
        run_id=m["run_id"],
        baseline=base,
        baseline_how=baseline_how,
        head={
            "eval_loss": m["metrics"].get("eval_loss"),
            "base_eval_loss": base.manifest["metrics"].get("eval_loss") if base else None,
            "rows": train_rows(m),
            "base_rows": train_rows(base.manifest) if base else None,
        },
        badge=reproduce_badge(run),
        eval_set_changed=base is not None and eval_set_changed(run, base),
        **curves(run, base),
        figures={"loss": fig(LOSS_PNG), "data": fig(DATA_PNG)},
        figure_names={"loss": LOSS_PNG, "data": DATA_PNG},
        metrics=metrics(run, base),
        suites=suites(m, base.manifest if base else None),
        gates=gates,
        gates_failed=failures(gates),
        data=data(run, base),
        config_sha256=m["config_sha256"],
        config_path=m["command"]["config"],
        config_changes=[(k, _yamlish(a), _yamlish(b)) for k, a, b in changes],
        pins={"run": pins(m), "base": pins(base.manifest) if base else {}},
        reproduce={
            "run": reproduce_status(run, run_ref),
            "base": reproduce_status(base) if base else None,
        },
        run_ref=run_ref,
    )
