"""`ft plan --base REF`: what a pull request changes for training, as Markdown.

    uv run ft plan --base origin/main --out plan.md

For a reviewer: whether merging starts GPU training (the changed files are matched
against the `paths:` filter of .github/workflows/train.yml, the one source of truth),
which config keys change in each config, and how the data moves: per-filter rows
in/out and the training-set hash, base branch -> this branch (from data.lock). A config
whose `model.base` changed gets the tokenizer drift section of `ft migrate`.
"""

import json
from pathlib import Path

import yaml

from ..closure.diff import changed_keys
from ..data.lock import SPLITS, differences, split_of, steps_table
from ..errors import UserError
from ..ops.inputs import IMAGE_WORKFLOW, training_paths, triggers_training
from ..util import git
from ..util.hashing import write_atomic

__all__ = ["IMAGE_WORKFLOW", "render", "main", "training_paths", "triggers_training"]


def _show(ref: str, path: str) -> str | None:
    """A file's text at `ref`, or None if it does not exist there."""
    done = git.run("show", f"{ref}:{path}")
    return done.stdout if done.returncode == 0 else None


def _config_rows(base: str, path: str) -> list[tuple[str, object, object]]:
    old_text, new_text = _show(base, path), Path(path).read_text() if Path(path).exists() else None
    old = yaml.safe_load(old_text) if old_text else {}
    new = yaml.safe_load(new_text) if new_text else {}
    return changed_keys(old or {}, new or {})


def data_rows(old: dict, new: dict) -> list[str]:
    """Markdown table rows: each split's filters, rows in -> out before and after, and the
    final rows and hash; a changed cell is marked **changed**."""
    rows = []
    fmt = lambda s: f"{s['rows_in']} -> {s['rows_out']}" if s else "absent"  # noqa: E731
    for split in SPLITS:
        for name, sa, sb in steps_table(old, new, split):
            mark = "" if sa == sb else " **changed**"
            rows.append(f"| {split} | `{name}` | {fmt(sa)} | {fmt(sb)}{mark} |")
        a, b = split_of(old, split), split_of(new, split)
        old_hash, new_hash = str(a.get("sha256", "-"))[:12], str(b.get("sha256", "-"))[:12]
        mark = "" if old_hash == new_hash else " **changed**"
        rows.append(
            f"| {split} | **final** | {a.get('rows', '-')} rows `{old_hash}` | "
            f"{b.get('rows', '-')} rows `{new_hash}`{mark} |"
        )
    return rows


def _base_change(since: str, path: str) -> list[str]:
    """Tokenizer drift of a base-model change (review/migrate/), measured on this branch's
    data against the base branch's base model."""
    from ..config import load_config
    from .migrate import plan_section

    old = (yaml.safe_load(_show(since, path) or "") or {}).get("model", {}).get("base") or {}
    return plan_section(load_config(path), path, old)


def render(base: str, configs: list[str], lock_path: str = "data.lock") -> str:
    merge_base = git.run("merge-base", base, "HEAD")
    if merge_base.returncode != 0:
        raise UserError(
            f"cannot find the merge base of {base} and HEAD",
            key="--base",
            fix="fetch the base branch (actions/checkout with fetch-depth: 0)",
        )
    since = merge_base.stdout.strip()
    changed_files = git.run("diff", "--name-only", since).stdout.split()
    changed_files += git.run("ls-files", "--others", "--exclude-standard").stdout.split()
    hits = triggers_training(sorted(set(changed_files)), training_paths())
    lines = ["## Training plan", ""]
    if hits:
        lines.append(
            "Merging this starts **GPU training** of `configs/recipe.yaml` "
            f"(training inputs changed: {', '.join(f'`{h}`' for h in hits)})."
        )
    else:
        lines.append("Merging this does not start training (no training input changed).")
    image_hits = (
        triggers_training(sorted(set(changed_files)), training_paths(IMAGE_WORKFLOW))
        if IMAGE_WORKFLOW.is_file()
        else []
    )
    if image_hits:
        lines.append(
            "\nMerging this **rebuilds the training image** first "
            f"({', '.join(f'`{h}`' for h in image_hits)} changed): the image workflow opens a "
            "pull request pinning it in `image.lock`, and merging that one starts training "
            "on the new image. Until then `ft launch --backend sky` refuses the stale lock."
        )
    for path in configs:
        rows = _config_rows(since, path)
        lines += ["", f"### Config `{path}`", ""]
        if not rows:
            lines.append("No change.")
            continue
        lines += ["| key | base | this branch |", "| --- | --- | --- |"]
        lines += [f"| `{k}` | `{a}` | `{b}` |" for k, a, b in rows]
        if any(k.startswith("model.base") for k, _, _ in rows):
            lines += ["", *_base_change(since, path)]
    old_lock_text = _show(since, lock_path)
    new_lock = json.loads(Path(lock_path).read_text())
    old_lock = json.loads(old_lock_text) if old_lock_text else {}
    lines += [
        "",
        "### Data",
        "",
        "| split | filter | base rows in -> out | this branch |",
        "| --- | --- | --- | --- |",
        *data_rows(old_lock, new_lock),
    ]
    moved = differences(old_lock, new_lock) if old_lock else ["no data.lock on the base"]
    if moved:
        lines += ["", "What moved: " + "; ".join(moved)]
    return "\n".join(lines) + "\n"


def main(base: str, configs: list[str] | None, out: str | None) -> int:
    configs = configs or sorted(str(p) for p in Path("configs").glob("*.yaml"))
    text = render(base, configs)
    if out:
        write_atomic(out, text)
    else:
        print(text, end="")
    return 0
