"""Optional dependency groups: packages outside the core closure, and the check before use.

    uv sync --frozen --group mlflow      # what a command that lacks a group tells you to run

pyproject.toml's [dependency-groups] holds the packages only one backend or command uses, so
the training image (`uv sync --frozen --no-dev`) carries only what training needs. The dev
group (the default) includes them all. A command that needs one checks here before importing
it and, without it, stops with one line naming the group and the sync (exit 2), instead of an
ImportError traceback (docs/decisions/0019-optional-groups.md).
"""

import importlib.util

from ..errors import UserError

# module -> (the pyproject dependency group that holds it, the distribution in that group)
GROUPS = {
    "mlflow": ("mlflow", "mlflow-skinny"),
    "matplotlib": ("report", "matplotlib"),
    "datasets": ("hub-data", "datasets"),
    "bitsandbytes": ("qlora", "bitsandbytes"),
}


def installed(module: str) -> bool:
    """Whether `module` can be imported here (found, without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that fails to import, or a blocked module
        return False


def fix(module: str) -> str:
    return f"`uv sync --frozen --group {GROUPS[module][0]}`"


def require(
    module: str, needed_by: str, *, file: str | None = None, key: str | None = None
) -> None:
    """Stop with one line when `module`'s group is not installed; `needed_by` says who asks."""
    if installed(module):
        return
    group, package = GROUPS[module]
    raise UserError(
        f"{needed_by} needs {package}, in the dependency group {group!r} that this "
        "environment lacks",
        file=file,
        key=key,
        fix=fix(module),
    )


def run_groups(config: dict) -> list[str]:
    """The groups a run of this resolved config needs to train (REPRODUCE.md syncs them)."""
    data = config.get("data") or {}
    groups = []
    if (config.get("model") or {}).get("quantization"):
        groups.append(GROUPS["bitsandbytes"][0])
    if any(source.get("hub_id") for source in data.get("sources") or []):
        groups.append(GROUPS["datasets"][0])
    return groups


def job_groups(config: dict) -> list[str]:
    """The groups a training job of this resolved config needs: its run's groups, and mlflow
    when it reports to an MLflow tracker (a tracker is outside the closure, but the job must
    import it). `ft launch` passes them to the SkyPilot task's `setup:` (FT_GROUPS)."""
    groups = run_groups(config)
    if "mlflow" in ((config.get("track") or {}).get("report_to") or []):
        groups.append(GROUPS["mlflow"][0])
    return groups
