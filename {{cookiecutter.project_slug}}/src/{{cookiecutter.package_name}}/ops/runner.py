"""No state on a CI runner: a GitHub-hosted job is a fresh VM whose disk is gone when it ends.

Under `GITHUB_ACTIONS=true`, a run directory or a registry that lives on the runner's disk can
hand nothing to the next workflow run (the release cannot fetch a run trained by `train`, a
publish to `file://` vanishes with the VM). The commands that hand things on call
`require_shared` and refuse such a location with the repository variable to set.

A job whose runs are throwaway by design (the PR smoke train in ci.yml) says so with
`FT_RUNNER_SCRATCH=1`; `ft reproduce` sets it for its own re-run, and `ft retrain` (the drill)
for its new run, whose output is compared and then discarded. Nothing else relaxes the rule.
"""

import os

from ..errors import UserError

VARIABLES_PAGE = "Settings > Secrets and variables > Actions > Variables"


def on_runner() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def scratch() -> bool:
    return os.environ.get("FT_RUNNER_SCRATCH") == "1"


def is_local(location: str) -> bool:
    """A path, or a file:// URL: storage on this machine only."""
    return "://" not in location or location.startswith("file://")


def require_shared(location: str, *, what: str, key: str, variable: str, example: str) -> None:
    """Refuse `location` on a CI runner when it is this machine's disk (see the module doc)."""
    if on_runner() and is_local(location) and not (scratch() and what == "run directory"):
        raise UserError(
            f"{what} {location!r} is on this runner's disk, which is gone when the job ends",
            key=key,
            fix=f"set the repository variable {variable} to {example} ({VARIABLES_PAGE})",
        )


def require_shared_store(location: str, *, key: str) -> None:
    require_shared(
        location,
        what="run directory",
        key=key,
        variable="FT_ARTIFACT_STORE",
        example="a bucket URL such as s3://my-bucket/runs",
    )


def require_shared_registry(uri: str, *, key: str) -> None:
    require_shared(
        uri,
        what="registry",
        key=key,
        variable="FT_REGISTRY",
        example="hf://OWNER/REPO or mlflow://MODEL_NAME",
    )


def artifact_store(given: str | None, *, key: str = "--store") -> str:
    """`given`, else $FT_ARTIFACT_STORE: where runs live (refused on a runner's disk)."""
    store = given or os.environ.get("FT_ARTIFACT_STORE")
    if not store:
        raise UserError(
            "no artifact store",
            key=key,
            fix="pass --store s3://bucket/runs or set FT_ARTIFACT_STORE",
        )
    require_shared_store(store, key=key)
    return store
