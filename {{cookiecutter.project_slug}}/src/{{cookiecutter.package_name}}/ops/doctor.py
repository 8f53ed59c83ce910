"""`ft doctor`: what the configured backends need from this environment, and what is missing.

    uv run ft doctor                      # what a person at a terminal needs
    uv run ft doctor --workflow release   # what release.yml needs (each workflow runs it first)

One line per requirement: `ok`, `MISSING` (the workflow cannot work without it) or `note`
(needed only in some setups, e.g. a private repository), with where to set it. Exit 2 when
something required is missing, so a misconfigured repository fails in seconds, on the first
step, with the list, instead of an hour later inside a GPU job.

Secrets are never printed. A workflow tells the doctor whether a secret is set without handing
it the secret: `HAVE_<NAME>: ${{ secrets.NAME != '' }}` in the step's env (the value there is
`true` or `false`). Outside a workflow the secret's own environment variable counts.

What each backend needs (docs/gitops.md has the full table):

- store s3:// -- FT_ARTIFACT_STORE; AWS_ROLE_ARN (OIDC) or an access key pair;
- store gs:// -- FT_ARTIFACT_STORE; GCP_WORKLOAD_IDENTITY_PROVIDER (OIDC) or a key file;
- launch sky -- SKYPILOT_API_SERVER_ENDPOINT, SKYPILOT_SERVICE_ACCOUNT_TOKEN; GIT_TOKEN for a
  private repository; SKYPILOT_DOCKER_PASSWORD for a private image;
- registry hf:// -- FT_REGISTRY, HF_TOKEN;
- registry mlflow:// -- FT_REGISTRY, MLFLOW_TRACKING_URI (and a login when the server asks);
- optional dependency groups -- `group:mlflow` (an mlflow:// registry or tracker), `group:report`
  (ft report in CI), `group:hub-data` (hub sources): `uv sync --frozen --group NAME`.
"""

import os
from dataclasses import dataclass

from ..errors import UserError
from ..util.groups import GROUPS, fix, installed

VARIABLE = "repository variable (Settings > Secrets and variables > Actions > Variables)"
SECRET = "secret (Settings > Secrets and variables > Actions > Secrets; release: the environment's)"
GROUPS_WHERE = "pyproject.toml dependency groups"
WORKFLOWS = ("terminal", "ci", "train", "poll", "release", "drill")
# Bucket access per scheme: the OIDC variable that makes stored keys unnecessary, else the
# key a workflow needs instead (name, where it is set, what the line says).
_GCS = (
    ("GCP_WORKLOAD_IDENTITY_PROVIDER", "bucket access by OIDC"),
    (
        "GOOGLE_APPLICATION_CREDENTIALS",
        VARIABLE,
        "bucket access: set GCP_WORKLOAD_IDENTITY_PROVIDER (OIDC) or a key file",
    ),
)
BUCKET_ACCESS = {
    "s3": (
        ("AWS_ROLE_ARN", "bucket access by OIDC (no stored keys)"),
        (
            "AWS_ACCESS_KEY_ID",
            SECRET,
            "bucket access: set AWS_ROLE_ARN (OIDC, preferred) or the key pair",
        ),
    ),
    "gs": _GCS,
    "gcs": _GCS,
}


@dataclass(frozen=True)
class Line:
    status: str  # ok | MISSING | note
    name: str
    why: str
    where: str

    def __str__(self) -> str:
        return f"{self.status:8} {self.name:32} {self.why}  [{self.where}]"


def _set(name: str) -> bool:
    """A variable, or a secret the workflow reported with HAVE_<NAME> (never its value)."""
    return bool(os.environ.get(name)) or os.environ.get(f"HAVE_{name}", "").lower() == "true"


def _need(name: str, why: str, where: str, required: bool = True) -> Line:
    if _set(name):
        return Line("ok", name, why, where)
    return Line("MISSING" if required else "note", name, why, where)


def store_lines(store: str | None, *, required: bool) -> list[Line]:
    lines = []
    if not store or "://" not in store or store.startswith("file://"):
        status = "MISSING" if required else "note"
        shown = f"{store!r} is this machine's disk" if store else "not set"
        return [
            Line(
                status,
                "FT_ARTIFACT_STORE",
                f"bucket for runs, keyed by commit ({shown}); e.g. s3://my-bucket/runs",
                VARIABLE,
            )
        ]
    lines.append(Line("ok", "FT_ARTIFACT_STORE", f"runs go to {store}/<commit>", VARIABLE))
    access = BUCKET_ACCESS.get(store.split("://", 1)[0])
    if access:
        (oidc, oidc_says), (key, kind, key_says) = access
        lines.append(
            Line("ok", oidc, oidc_says, VARIABLE)
            if _set(oidc)
            else _need(key, key_says, kind, required=required)
        )
    return lines


def sky_lines(*, required: bool) -> list[Line]:
    return [
        _need(
            "SKYPILOT_API_SERVER_ENDPOINT",
            "the team's SkyPilot API server (without it the SDK starts a private server per run)",
            VARIABLE,
            required=required,
        ),
        _need(
            "SKYPILOT_SERVICE_ACCOUNT_TOKEN",
            "service-account token for that server",
            SECRET,
            required=required,
        ),
        _need("GIT_TOKEN", "clones a private repository (every restart too)", SECRET, False),
        _need(
            "SKYPILOT_DOCKER_PASSWORD",
            "pulls a private training image (with SKYPILOT_DOCKER_USERNAME/SERVER variables)",
            SECRET,
            False,
        ),
    ]


def registry_lines(registry: str, *, required: bool) -> list[Line]:
    if registry.startswith("file://"):
        return [
            Line(
                "MISSING" if required else "note",
                "FT_REGISTRY",
                f"{registry} is this machine's disk; e.g. hf://OWNER/REPO or mlflow://MODEL_NAME",
                VARIABLE,
            )
        ]
    lines = [Line("ok", "FT_REGISTRY", f"versions go to {registry}", VARIABLE)]
    if registry.startswith("hf://"):
        lines.append(_need("HF_TOKEN", "write access to the hub repository", SECRET, required))
    elif registry.startswith("mlflow://"):
        lines.append(_need("MLFLOW_TRACKING_URI", "the MLflow server", VARIABLE, required))
        if not (_set("MLFLOW_TRACKING_TOKEN") or _set("MLFLOW_TRACKING_PASSWORD")):
            lines.append(
                Line(
                    "note",
                    "MLFLOW_TRACKING_TOKEN",
                    "or MLFLOW_TRACKING_USERNAME/PASSWORD, when the server asks for a login",
                    SECRET,
                )
            )
    return lines


def group_lines(
    workflow: str, *, registry: str, tracks_mlflow: bool, hub_data: bool, required: bool
) -> list[Line]:
    """The optional dependency groups (util/groups.py) this workflow's commands import."""
    needs: dict[str, str] = {}  # module -> what needs it
    if registry.startswith("mlflow://") and workflow in ("release", "drill", "terminal"):
        needs["mlflow"] = f"ft publish / ft registry with {registry}"
    if tracks_mlflow and workflow in ("ci", "train", "terminal"):
        needs.setdefault("mlflow", "track.report_to: mlflow")
    if workflow in ("ci", "terminal"):
        needs["matplotlib"] = "the figures of ft report (and ft history)"
    if hub_data and workflow in ("ci", "terminal"):
        needs["datasets"] = "the hub sources in data.sources"
    lines = []
    for module, why in needs.items():
        group = GROUPS[module][0]
        status = "ok" if installed(module) else "MISSING" if required else "note"
        lines.append(Line(status, f"group:{group}", f"{why}: {fix(module)}", GROUPS_WHERE))
    return lines


def check(
    workflow: str,
    *,
    backend: str,
    store: str | None,
    registry: str,
    base_on_hub: bool,
    tracks_mlflow: bool = False,
    hub_data: bool = False,
):
    """The requirement lines for `workflow` (see the module doc)."""
    if workflow not in WORKFLOWS:
        raise UserError(
            f"unknown workflow {workflow!r}",
            key="--workflow",
            fix=f"use one of {', '.join(WORKFLOWS)}",
        )
    lines: list[Line] = []
    if workflow == "ci":
        # A PR (a fork's too) has no secrets: everything is a note; the report says when it
        # had no baseline to compare with. Its smoke run and report need their groups.
        lines += registry_lines(registry, required=False)
        lines += group_lines(
            workflow,
            registry=registry,
            tracks_mlflow=tracks_mlflow,
            hub_data=hub_data,
            required=True,
        )
        return lines
    hands_on = workflow != "terminal"
    if workflow != "poll":  # the watcher reads the API server only
        lines += store_lines(store, required=hands_on)
    if backend == "sky" or workflow == "poll":
        lines += sky_lines(required=hands_on)
        if workflow == "terminal" and not _set("SKYPILOT_API_SERVER_ENDPOINT"):
            lines.append(
                Line(
                    "note",
                    "uv sync --group sky-<cloud>",
                    "without an API server the SDK's local server needs your cloud's clients",
                    GROUPS_WHERE,
                )
            )
    if workflow in ("release", "drill", "terminal"):
        lines += registry_lines(registry, required=hands_on)
    if base_on_hub and workflow in ("train", "release", "drill", "terminal"):
        lines.append(
            _need("HF_TOKEN", "downloads a gated or private base model", SECRET, required=False)
        )
    lines += group_lines(
        workflow,
        registry=registry,
        tracks_mlflow=tracks_mlflow,
        hub_data=hub_data,
        required=hands_on,
    )
    return lines


def main(workflow: str, config: str, backend: str | None) -> int:
    from ..config import load_config
    from ..publish.registries import repo_registry

    cfg = load_config(config)
    backend = backend or cfg.launch.backend
    # A config other than configs/recipe.yaml leaves publish.registry unset: the repo's
    # registry is then the one every command uses (recipe.yaml's, else the default).
    registry = os.environ.get("FT_REGISTRY") or cfg.publish.registry or repo_registry()[0]
    store = os.environ.get("FT_ARTIFACT_STORE")
    lines = check(
        workflow,
        backend=backend,
        store=store,
        registry=registry,
        base_on_hub=cfg.model.base.hub_id is not None,
        tracks_mlflow="mlflow" in cfg.track.report_to,
        hub_data=any(source.hub_id for source in cfg.data.sources),
    )
    print(f"ft doctor: {workflow}, launch backend {backend}")
    for line in lines:
        print(line)
    missing = [line.name for line in lines if line.status == "MISSING"]
    if missing:
        raise UserError(
            f"{len(missing)} required setting(s) missing: {', '.join(missing)}",
            key=f"--workflow {workflow}",
            fix="set each MISSING line where its [brackets] say (docs/gitops.md, first-real-use)",
        )
    return 0
