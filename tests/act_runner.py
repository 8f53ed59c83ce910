"""Workflow runs under `act` that start from nothing, as GitHub's jobs do (test_workflows.py).

On GitHub every job runs on a fresh VM: an empty workspace, a new HOME, no file left by an
earlier run. `Act` gives each workflow run the same on one host, so no test can pass through a
path that two runs happen to share here (a file an earlier run left, ~/.cache, ~/.config, the
baked repo's runs/ or registry/):

- the baked repo is the developer's clone: before each run it pushes its branches and tags to
  a bare repository, the git remote;
- each run gets act-runs/NN-<workflow>/ with `event/`, a fresh clone of the remote at the
  event's ref (act reads the workflow file, GITHUB_SHA and GITHUB_REF there); `home/`, an
  empty HOME with its XDG directories; `tmp/` (TMPDIR); `artifacts/`, the run's
  upload/download-artifact store (artifacts belong to one workflow run, as on GitHub);
- act starts from an environment built from nothing: the system PATH, that HOME, the
  offline switches and the package index settings (how a runner reaches PyPI), plus the
  run's variables and secrets. Each job's workspace is act's host-executor directory under
  that HOME, deleted when the job ends; the checkout stand-in (act/checkout) refuses a
  non-empty one and fetches GITHUB_SHA from the remote with the step's fetch-depth.

Runs share only what the real topology shares: the bucket and the registry (act_services.py),
the git remote, GitHub's own side (the outbox: comments, statuses, issues, releases,
attestations), uv's package cache and, in test_workflows_sky.py, the SkyPilot stand-in's job
store (the team's API server), passed with `Act.run(env=...)` and checked as the rest. The cache is the one deliberate share: on GitHub
setup-uv restores one (the setup-uv stand-in sets UV_CACHE_DIR to it, also where a release
turns the cache off), and here a cold download of torch and the rest for every run would cost
minutes each and the network. uv checks every wheel against uv.lock's sha256, so a warm cache
cannot change what is installed.

`Act.run` asserts the isolation after every run: the baked repo is exactly as before (no path
created, removed or modified; its .venv aside, see tree_state), no variable act starts with points into the host's HOME (but
the uv cache), and every checkout landed in an empty workspace of its own under the run's
HOME, holding nothing but the commit's tracked files.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ACT_DIR = Path(__file__).resolve().parent / "act"
BIN = Path(sys.executable).parent
STAND_INS = {
    "actions/checkout": "checkout",
    "astral-sh/setup-uv": "setup-uv",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "marocchino/sticky-pull-request-comment": "sticky-comment",
    "JasonEtco/create-an-issue": "create-issue",
    "aws-actions/configure-aws-credentials": "noop",
    "actions/cache": "noop",
    "actions/create-github-app-token": "noop",
    "actions/attest-build-provenance": "attest",
    "peter-evans/create-pull-request": "noop",
    "docker/setup-buildx-action": "noop",
    "docker/login-action": "noop",
    "docker/build-push-action": "noop",
}
# A runner's PATH holds the system's tools; setup-uv adds uv (and the tests' `gh` stand-in).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How this host reaches the network and the package index (pre-commit installs hooks with pip).
NETWORK = re.compile(
    r"PIP_\w+|(HTTPS?|NO|ALL)_PROXY|(https?|no|all)_proxy|SSL_CERT_(FILE|DIR)"
    r"|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|GIT_SSL_CAINFO"
)
# pip's per-user settings live under HOME; a runner's pip reaches its index without them.
PIP_USER_CONFIGS = (".config/pip/pip.conf", ".pip/pip.conf")
CHECKOUT = re.compile(
    r"checkout stand-in: (?P<sha>[0-9a-f]{40}) depth=(?P<depth>\d+) "
    r"workspace=(?P<workspace>\S+) home=(?P<home>\S+) untracked=(?P<untracked>\d+)"
)


def git(cwd: Path, *args: str) -> str:
    ident = ["-c", "user.name=test", "-c", "user.email=test@localhost"]
    done = subprocess.run(
        ["git", *ident, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def pinned_uses(repo: Path) -> set[str]:
    uses = set()
    for path in (repo / ".github" / "workflows").glob("*.yml"):
        uses |= set(re.findall(r"uses: ([\w.-]+/[\w.-]+@[0-9a-f]{40})", path.read_text()))
    return uses


def tree_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under root with its mode, size and mtime (not following links), but .venv:
    uv hardlinks installed files from its cache, so the baked repo's venv shares inodes with
    every run's, and a write into one shows in all (once seen: certifi's bundle, rewritten in
    place by something on this host); that is the uv cache share, not a run writing there."""
    state = {}
    for folder, dirs, files in os.walk(root):
        if folder == str(root) and ".venv" in dirs:
            dirs.remove(".venv")
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            rel = os.path.relpath(os.path.join(folder, name), root)
            state[rel] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return state


def event_ref(payload: dict) -> str:
    """The ref a workflow run of this event checks out (a dispatch: the default branch)."""
    if "pull_request" in payload:
        return "refs/heads/" + payload["pull_request"]["head"]["ref"]
    return payload.get("ref", "refs/heads/main")


class Act:
    """One baked repo, its git remote, the services its workflow runs share, and an outbox.

    `s3_env` and `mlflow_url` reach the bucket and the registry; `registry` is the directory
    where the MLflow server keeps the published files; `variables` are the repository
    variables; `outbox` is GitHub's side of every run (what the stand-ins and `gh` record)."""

    def __init__(
        self,
        root: Path,
        repo: Path,
        *,
        s3_env: dict,
        mlflow_url: str,
        registry_dir: Path,
        variables: dict,
    ):
        self.root, self.repo, self.variables = root, repo, variables
        self.s3_env, self.mlflow_url = s3_env, mlflow_url
        self.registry = registry_dir
        self.outbox, self.runs = root / "outbox", root / "act-runs"
        for folder in (self.outbox, self.runs):
            folder.mkdir(parents=True)
        self.remote = root / "remote.git"
        git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(self.remote))
        git(repo, "remote", "set-url", "--push", "origin", str(self.remote))
        # setup-uv's stand-in puts exactly uv on PATH, never the rest of this venv.
        self.uv_bin = root / "uv-bin"
        self.uv_bin.mkdir()
        for tool in ("uv", "uvx"):
            (self.uv_bin / tool).symlink_to(BIN / tool)
        self.uv_cache = subprocess.run(
            [str(BIN / "uv"), "cache", "dir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.pip_conf = root / "pip.conf"  # the host's per-user pip settings, read-only
        found = [Path.home() / rel for rel in PIP_USER_CONFIGS if (Path.home() / rel).is_file()]
        self.pip_conf.write_text("\n".join(path.read_text() for path in found))
        self.workspaces: set[str] = set()
        # What the checkout stand-in fetches from (GitHub's URL for the repository); a test
        # may serve self.remote over HTTPS and put that URL here (test_workflows_sky.py).
        self.remote_url = str(self.remote)
        self.trained = ""  # the commit train.yml trained (test 2)

    def client_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "GITHUB_ACTIONS")}
        return env | self.s3_env | {"MLFLOW_TRACKING_URI": self.mlflow_url, "HF_HUB_OFFLINE": "1"}

    def ft(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`ft` of the baked repo, from outside any workflow (a person looking); `gh` is the
        stand-in of act/bin, which answers from what the attest stand-in recorded."""
        env = self.client_env() | {
            "PATH": f"{ACT_DIR / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "FT_ACT_OUTBOX": str(self.outbox),
        }
        done = subprocess.run(
            [str(self.repo / ".venv" / "bin" / "ft"), *args],
            cwd=self.repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert not check or done.returncode == 0, done.stderr
        return done

    def bucket(self, code: str) -> str:
        """Run Python with `fs`, an S3 client of the bucket; return its stdout."""
        prelude = "import s3fs; fs = s3fs.S3FileSystem(skip_instance_cache=True)\n"
        done = subprocess.run(
            [str(self.repo / ".venv" / "bin" / "python"), "-c", prelude + code],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def versions(self) -> list[str]:
        registry = self.variables["FT_REGISTRY"]
        return self.ft("registry", "list", "--registry", registry).stdout.split()

    def runner_env(self, run_dir: Path) -> dict:
        """What act (and so every step) starts with: nothing of this host's session."""
        home = run_dir / "home"
        env = {
            "PATH": SYSTEM_PATH,
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "TMPDIR": str(run_dir / "tmp"),
            "LANG": "C.UTF-8",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
        }
        env |= {k: v for k, v in os.environ.items() if NETWORK.fullmatch(k)}
        env.setdefault("PIP_CONFIG_FILE", str(self.pip_conf))
        for folder in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "TMPDIR"):
            Path(env[folder]).mkdir(parents=True, exist_ok=True)
        return env

    def push(self) -> None:
        """`git push` of every branch and tag: what GitHub then holds."""
        refs = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
        git(self.repo, "push", "--quiet", "origin", *refs)

    def checkout_event(self, run_dir: Path, payload: dict) -> tuple[Path, str]:
        """A fresh clone of the remote at the event's ref: act reads its workflow and SHA."""
        ref = event_ref(payload)
        git(
            run_dir,
            "clone",
            "--quiet",
            "--no-hardlinks",
            "--no-checkout",
            str(self.remote),
            "event",
        )
        event = run_dir / "event"
        # act names the repository (github.repository) after the clone's origin, as GitHub does.
        git(event, "remote", "set-url", "origin", git(self.repo, "remote", "get-url", "origin"))
        if ref.startswith("refs/heads/"):
            branch = ref.removeprefix("refs/heads/")
            git(event, "checkout", "--quiet", "-B", branch, f"origin/{branch}")
        else:
            git(event, "checkout", "--quiet", "--detach", ref)
        return event, git(event, "rev-parse", "HEAD")

    def run(
        self,
        event: str,
        workflow_file: str,
        payload: dict,
        expect_success: bool = True,
        job: str | None = None,
        credentials: bool = True,
        variables: dict | None = None,
        env: dict | None = None,
        secrets: dict | None = None,
    ) -> str:
        """act one workflow run from nothing; return its log. Without `credentials` the run
        gets no bucket keys and no MLflow server (a PR, a fork's too); `variables` override
        the repository variables; `job` runs one job and the jobs it needs; `env` adds what
        the runner shares with a service (checked as the other shares are); `secrets` are the
        repository's secrets."""
        self.push()
        run_dir = self.runs / f"{len(list(self.runs.iterdir())) + 1:02d}-{Path(workflow_file).stem}"
        run_dir.mkdir()
        event_dir, sha = self.checkout_event(run_dir, payload)
        artifacts = run_dir / "artifacts"
        artifacts.mkdir()
        (run_dir / "event.json").write_text(json.dumps(payload))
        (run_dir / "empty").write_text("")  # no .env/.secrets/.vars from the checkout
        repo_vars = {
            **self.variables,
            **({"MLFLOW_TRACKING_URI": self.mlflow_url} if credentials else {}),
            **(variables or {}),
        }
        mappings = []
        for use in sorted(pinned_uses(event_dir)):
            action = use.split("@")[0]
            assert action in STAND_INS, f"no act stand-in for {use}"
            mappings += ["--local-repository", f"{use}={ACT_DIR / STAND_INS[action]}"]
        shared = {
            "FT_ACT_REMOTE": self.remote_url,
            "FT_ACT_UV_DIR": self.uv_bin,
            "FT_ACT_UV_CACHE": self.uv_cache,
            "FT_ACT_BIN": ACT_DIR / "bin",
            "FT_ACT_OUTBOX": self.outbox,
            "FT_ACT_ARTIFACTS": artifacts,
            **(env or {}),
        }
        secret_env = self.s3_env if credentials else {}
        empty = str(run_dir / "empty")
        cmd = [
            str(BIN / "act"),
            event,
            "-W",
            f".github/workflows/{workflow_file}",
            *(["-j", job] if job else []),
            "-e",
            str(run_dir / "event.json"),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--no-skip-checkout",
            "--no-cache-server",
            "--actor",
            "test",
            *("--env-file", empty, "--secret-file", empty, "--var-file", empty),
            *mappings,
            *(arg for k, v in shared.items() for arg in ("--env", f"{k}={v}")),
            *(arg for k, v in repo_vars.items() for arg in ("--var", f"{k}={v}")),
            *(arg for k, v in secret_env.items() for arg in ("--env", f"{k}={v}")),
            *(arg for k, v in (secrets or {}).items() for arg in ("--secret", f"{k}={v}")),
        ]
        env = self.runner_env(run_dir)
        self.assert_no_host_home(env, shared)
        before = tree_state(self.repo)
        done = subprocess.run(
            cmd, cwd=event_dir, env=env, capture_output=True, text=True, timeout=1500, check=False
        )
        log = done.stdout + done.stderr
        (run_dir / "act.log").write_text(log)
        if expect_success:
            assert done.returncode == 0, f"act failed, log: {run_dir / 'act.log'}\n{log[-4000:]}"
        else:
            assert done.returncode != 0, f"act should have failed, log: {run_dir / 'act.log'}"
        self.assert_isolated(run_dir, sha, log, before)
        return log

    def assert_no_host_home(self, env: dict, shared: dict) -> None:
        """Nothing act starts with names a path in the host's HOME, but the uv cache, this
        test's own folder and the template's tools and stand-ins (if they live there); the
        host's network settings pass as they are."""
        host_home = Path.home()
        allowed = (Path(self.uv_cache), self.root, ACT_DIR.parents[1], BIN.parent)
        values = [v for k, v in env.items() if not NETWORK.fullmatch(k)]
        for value in [*values, *(str(v) for v in shared.values())]:
            for token in re.split(r"[\s:=]+", value):
                path = Path(token)
                if path.is_absolute() and path.is_relative_to(host_home):
                    assert any(path.is_relative_to(a) for a in allowed), f"{token}: host HOME"

    def assert_isolated(self, run_dir: Path, sha: str, log: str, before: dict) -> None:
        """The run wrote nothing to the baked repo, and each of its jobs checked the commit
        out into an empty workspace of its own under the run's HOME."""
        after = tree_state(self.repo)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"the run wrote into the baked repo: {changed[:10]}"
        home = run_dir / "home"
        checkouts = list(CHECKOUT.finditer(log))
        assert checkouts, "no job of the run checked the commit out (or its record changed)"
        for checkout in checkouts:
            workspace = checkout["workspace"]
            assert checkout["sha"] == sha and Path(checkout["home"]) == home, checkout[0]
            assert Path(workspace).is_relative_to(home), checkout[0]
            assert workspace not in self.workspaces, f"{workspace} was an earlier job's"
            assert checkout["untracked"] == "0", f"{checkout[0]}: more than the commit"
            self.workspaces.add(workspace)
