"""`ft launch`: train here, or as a SkyPilot managed job on the image pinned in image.lock.

    uv run ft launch --config configs/smoke.yaml                  # local: `ft train`, here
    uv run ft launch --backend sky --config configs/recipe.yaml   # cloud GPUs
    uv run ft launch --backend sky -- nvidia-smi                  # another command, same job shape

`local` runs `ft train` (or the command after `--`) as a subprocess and exits with
its status: what CPU CI and the tests use. `sky` (after `uv sync --frozen --group
launch`) loads sky/train.yaml with SkyPilot's own parser, fills in what the file
leaves open (image digest from image.lock, commit, git remote, run URL, the config's
`launch:` section, the secrets from this environment), submits it through SkyPilot's
Python SDK, streams the logs, waits, and exits with the job's status: 0 succeeded,
100 failed, 103 cancelled (SkyPilot's JobExitCode). `submit` and `follow` are the
only calls that leave this machine; tests stop there and inspect the task.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from ..config import Config, load_config
from ..errors import UserError
from ..util import git
from ..util.groups import GROUPS, job_groups
from . import image
from .shape import check_shape

TASK_YAML = "sky/train.yaml"
# Buckets a job can mount (file_mounts) and `ft fetch` can read (fsspec).
BUCKET_SCHEMES = ("s3", "gs")
# envs in sky/train.yaml that ft launch fills for every job.
FILLED = (
    "CONFIG",
    "OVERRIDES",
    "RUN_URI",
    "ARTIFACT_BUCKET",
    "REPO_URL",
    "COMMIT",
    "FT_IMAGE_DIGEST",
    "FT_GROUPS",
)
SECRET_NAME = re.compile(r".*(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS|_KEY)(_.*)?", re.I)


def main(
    config: str,
    overrides: list[str],
    backend: str | None = None,
    run_uri: str | None = None,
    fetch: str | None = None,
    command: list[str] | None = None,
    detach: bool = False,
) -> int:
    cfg = load_config(config, overrides)
    backend = backend or cfg.launch.backend
    command = _strip_separator(command)
    if backend == "local":
        for flag, given in (("--fetch", fetch is not None), ("--detach", detach)):
            if given:
                raise UserError(
                    f"{flag} is for a cloud job; a local run happens here and now",
                    key=flag,
                    fix=f"drop {flag}, or pass --backend sky",
                )
        return run_local(config, overrides, run_uri, command)
    if detach and fetch is not None:
        raise UserError(
            "--fetch waits for the job, --detach does not",
            key="--detach",
            fix="drop one of them (fetch later with `ft fetch RUN_URI DIR`)",
        )
    task, job = sky_task(cfg, overrides, run_uri, command)
    print(f"launch (sky): {job['summary']}", file=sys.stderr, flush=True)
    job_id = submit(task, job["name"])
    if detach:
        # A CI runner must not wait on a GPU job (6 h cap, billed minutes): submit and return.
        # The job's end is observed by `ft jobs ended` (the train-watch workflow, ADR 0011).
        print(f"managed job {job_id} submitted ({job['name']}); not following", file=sys.stderr)
        print(json.dumps({"job_id": job_id, "name": job["name"], "run_uri": job["run_uri"]}))
        return 0
    print(
        f"managed job {job_id} submitted ({job['name']}); streaming its logs",
        file=sys.stderr,
        flush=True,
    )
    try:
        code = follow(job_id)
    except KeyboardInterrupt:
        print(
            f"stopped following; managed job {job_id} keeps running "
            f"(sky jobs logs {job_id} / sky jobs cancel {job_id})",
            file=sys.stderr,
        )
        raise
    print(
        f"managed job {job_id} finished with exit code {code} (0: succeeded)",
        file=sys.stderr,
        flush=True,
    )
    if code == 0 and fetch is not None:
        from .fetch import fetch as fetch_run

        fetch_run(job["run_uri"], fetch)
    return code


# --- local ---------------------------------------------------------------------------------


def run_local(config: str, overrides: list[str], run_uri: str | None, command: list[str]) -> int:
    """`ft train` (or `command`) in a subprocess of this environment; its output streams through."""
    if not command:
        command = [
            sys.executable,
            "-m",
            f"{__package__.rpartition('.')[0]}.cli",
            "train",
            "--config",
            config,
        ]
        for override in overrides:
            command += ["--set", override]
        if run_uri is not None:
            command += ["--out", run_uri]
    print(f"launch (local): {shlex.join(command)}", file=sys.stderr, flush=True)
    env = os.environ | {"FT_LAUNCH_BACKEND": "local"}
    try:
        return subprocess.run(command, env=env).returncode
    except FileNotFoundError:
        raise UserError(
            f"command not found: {command[0]}",
            key="-- COMMAND",
            fix="pass an executable on PATH after `--`",
        ) from None


# --- sky -----------------------------------------------------------------------------------


def sky_task(
    cfg: Config,
    overrides: list[str],
    run_uri: str | None = None,
    command: list[str] | None = None,
    environ=os.environ,
    name_suffix: str | None = None,
):
    """The sky.Task `ft launch --backend sky` submits, and a description of the job.

    The job is named `<name: of sky/train.yaml>-<name_suffix>`, by default the run's id (the
    last part of its URL: the commit, for train.yml's runs). Every check that can fail without
    a cloud runs here, before anything is submitted.
    """
    sky = _import_sky()
    check_shape(cfg)
    lock = image.check()
    pinned = image.reference(lock)
    if cfg.launch.image is not None and cfg.launch.image != pinned:
        raise UserError(
            f"the config pins image {cfg.launch.image} but image.lock has {pinned}",
            file=cfg._path,
            key="launch.image",
            fix="set launch.image to null (image.lock decides) or to image.lock's image",
        )
    commit, repo_url = _clean_commit()
    for override in overrides:
        if "\n" in override:
            raise UserError(
                "an override spans several lines",
                key=f"--set {override[:30]}",
                fix="pass a one-line value",
            )

    # Every key of the file loads with SkyPilot's own parser, before anything is filled in.
    text = _read_task_yaml(sky)
    raw = yaml.safe_load(text)
    envs = raw.get("envs") or {}
    for key in FILLED:
        if key not in envs:
            raise UserError(
                "missing: ft launch fills it for every job",
                file=TASK_YAML,
                key=f"envs.{key}",
                fix=f'add `{key}: ""` under envs',
            )
    for key in envs:
        if SECRET_NAME.fullmatch(key):
            raise UserError(
                "looks like a secret: envs are shown by `sky jobs queue` and logs",
                file=TASK_YAML,
                key=f"envs.{key}",
                fix=f"move it under secrets: as "
                f"`{key}: null`; ft launch passes its value from your environment",
            )

    run_uri = _run_uri(cfg, run_uri, envs, environ)
    parts = urlsplit(run_uri)
    run_id = parts.path.rstrip("/").rsplit("/", 1)[-1]
    fills = {
        "CONFIG": cfg._path,
        "OVERRIDES": "\n".join(overrides),
        "RUN_URI": run_uri,
        "ARTIFACT_BUCKET": f"{parts.scheme}://{parts.netloc}",
        "REPO_URL": repo_url,
        "COMMIT": commit,
        "FT_IMAGE_DIGEST": pinned,
        # setup: syncs these besides qlora (the image has qlora; the others are not in it).
        "FT_GROUPS": " ".join(
            g for g in job_groups(cfg.resolved()) if g != GROUPS["bitsandbytes"][0]
        ),
    }

    # The config's launch: section decides the hardware; the image is the pinned one.
    resources = raw.setdefault("resources", {})
    resources |= {
        "accelerators": cfg.launch.accelerators,
        "use_spot": cfg.launch.use_spot,
        "image_id": f"docker:{pinned}",
    }
    if cfg.launch.infra == "any":
        resources.pop("infra", None)
    else:
        resources["infra"] = cfg.launch.infra
    raw["num_nodes"] = cfg.launch.num_nodes
    if command:
        raw["run"] = shlex.join(command)

    # Secrets: values from this environment only; a secret not set here is left out.
    declared = raw.get("secrets") or {}
    names = list(declared) if isinstance(declared, dict) else [str(s) for s in declared]
    present = [(name, environ[name]) for name in names if environ.get(name)]
    missing = [name for name in names if not environ.get(name)]
    if missing:
        print(
            f"launch (sky): {', '.join(missing)} not set here; the job runs without",
            file=sys.stderr,
        )
    raw["secrets"] = {name: None for name, _ in present}
    if not present:
        raw.pop("secrets")
    name = re.sub(r"[^a-zA-Z0-9._-]", "-", f"{raw.get('name') or 'train'}-{name_suffix or run_id}")
    try:
        task = sky.Task.from_yaml_config(
            raw, env_overrides=list(fills.items()), secrets_overrides=present or None
        )
    except ValueError as e:
        raise UserError(
            f"SkyPilot rejects the filled-in task: {e}", file=TASK_YAML, fix="fix the key it names"
        ) from None

    infra = cfg.launch.infra
    summary = (
        f"{name}: {cfg.launch.num_nodes} x {cfg.launch.accelerators} "
        f"({'any cloud' if infra == 'any' else infra}"
        f"{', spot' if cfg.launch.use_spot else ''}); image {pinned}; commit {commit[:12]}; "
        f"run {run_uri}"
    )
    return task, {
        "name": name,
        "run_uri": run_uri,
        "summary": summary,
        "image": pinned,
        "commit": commit,
    }


def submit(task, name: str) -> int:
    """Submit `task` as a SkyPilot managed job named `name`; return its job id (the SDK boundary).

    Resolving the git workdir (access check, GIT_TOKEN from the environment) is what
    `sky jobs launch` does too; it needs the network, so it happens here.
    """
    import sky

    with _stdout_to_stderr():  # SkyPilot logs to stdout; --detach prints only the job's JSON
        task.update_envs_and_secrets_from_workdir()
        job_ids, _ = sky.stream_and_get(sky.jobs.launch(task, name=name))
    if not job_ids:
        raise RuntimeError(f"SkyPilot returned no job id for {name}")
    return int(job_ids[0])


def follow(job_id: int) -> int:
    """Stream the job's logs until it ends; return SkyPilot's exit code for its final status."""
    import sky

    code = sky.jobs.tail_logs(job_id=job_id, follow=True)
    if code is None:
        code = sky.get(sky.jobs.wait(job_id=job_id))
    return int(code)


@contextmanager
def _stdout_to_stderr():
    """File descriptor 1 points at 2 meanwhile: SkyPilot's log handlers hold sys.stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _import_sky():
    try:
        import sky
    except ImportError:
        raise UserError(
            "the SkyPilot SDK is not installed",
            key="--backend sky",
            fix="uv sync --frozen --group launch",
        ) from None
    return sky


def _read_task_yaml(sky) -> str:
    path = Path(TASK_YAML)
    if not path.is_file():
        raise UserError("no SkyPilot task file", file=TASK_YAML, fix="restore it from git")
    try:
        sky.Task.from_yaml(str(path))
    except (ValueError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"SkyPilot cannot load it: {first}",
            file=TASK_YAML,
            fix="fix the key it names (SkyPilot's task YAML reference)",
        ) from None
    return path.read_text()


def _run_uri(cfg: Config, run_uri: str | None, envs: dict, environ) -> str:
    """The run's URL: --run-uri, or <artifact store>/<config>-<UTC time>."""
    if run_uri is None:
        store = environ.get("FT_ARTIFACT_STORE") or ""
        if "://" not in store:  # a local store (CI on CPU) cannot be a cloud job's
            store = f"{str(envs.get('ARTIFACT_BUCKET', '')).rstrip('/')}/runs"
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        run_uri = f"{store.rstrip('/')}/{Path(cfg._path).stem}-{stamp}"
    parts = urlsplit(run_uri)
    if parts.scheme not in BUCKET_SCHEMES or not parts.netloc or not parts.path.strip("/"):
        raise UserError(
            f"a cloud job writes its run to a bucket, not to {run_uri!r}",
            key="--run-uri",
            fix=f"pass {BUCKET_SCHEMES[0]}://<bucket>/<path> (or "
            f"{'/'.join(BUCKET_SCHEMES)}), or set envs.ARTIFACT_BUCKET in {TASK_YAML}",
        )
    if "@" in parts.netloc:
        raise UserError(
            "the URL carries credentials, which would end up in logs",
            key="--run-uri",
            fix="drop them; the job's cloud credentials reach the bucket",
        )
    return run_uri.rstrip("/")


def _clean_commit() -> tuple[str, str]:
    """HEAD and the git remote the job clones it from; uncommitted changes are refused."""
    head = git.output("rev-parse", "HEAD")
    if head is None:
        raise UserError(
            "not inside a git checkout",
            file=os.getcwd(),
            fix="launch from the project's repository: the job clones a commit",
        )
    changed = git.changed_paths() or []
    if changed:
        paths = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
        raise UserError(
            "uncommitted changes would not reach the job (it clones the commit)",
            file=paths,
            fix="commit and push them, then launch",
        )
    url = git.output("remote", "get-url", "origin")
    if not url:
        raise UserError(
            "no git remote `origin` to clone the commit from",
            key="origin",
            fix="git remote add origin <url> && git push",
        )
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        raise UserError(
            "the remote URL carries credentials, which would end up in the job's envs",
            key="origin",
            fix="set a plain URL; pass a token as GIT_TOKEN",
        )
    return head, url


def _strip_separator(command: list[str] | None) -> list[str]:
    command = list(command or [])
    return command[1:] if command[:1] == ["--"] else command
