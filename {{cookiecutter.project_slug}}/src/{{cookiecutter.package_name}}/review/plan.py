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
from ..data.lock import differences, splits_diff
from ..errors import UserError
from ..ops.inputs import IMAGE_WORKFLOW, training_paths, triggers_training
from ..util import git
from ..util.hashing import write_atomic
from .report.templating import render_template

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
    files = sorted(set(changed_files))
    configs_shown = []
    for path in configs:
        rows = _config_rows(since, path)
        base_change = any(k.startswith("model.base") for k, _, _ in rows)
        configs_shown.append(
            {
                "path": path,
                "rows": rows,
                "base_change": _base_change(since, path) if base_change else [],
            }
        )
    old_lock_text = _show(since, lock_path)
    new_lock = json.loads(Path(lock_path).read_text())
    old_lock = json.loads(old_lock_text) if old_lock_text else {}
    return render_template(
        "plan.md.j2",
        hits=triggers_training(files, training_paths()),
        image_hits=triggers_training(files, training_paths(IMAGE_WORKFLOW))
        if IMAGE_WORKFLOW.is_file()
        else [],
        configs=configs_shown,
        data=splits_diff(old_lock, new_lock),
        moved=differences(old_lock, new_lock) if old_lock else ["no data.lock on the base"],
    )


def main(base: str, configs: list[str] | None, out: str | None) -> int:
    configs = configs or sorted(str(p) for p in Path("configs").glob("*.yaml"))
    text = render(base, configs)
    if out:
        write_atomic(out, text)
    else:
        print(text, end="")
    return 0
