"""Registry backends: file:// for real, hf:// through a seam, mlflow:// against a real server.

    uv run pytest tests/test_registry.py -q

The local backend and the MLflow backend run for real (MLflow against an
`mlflow server` this module starts on 127.0.0.1 with a sqlite store). The hub
cannot be reached from CI, so the hf:// backend is driven through its `api`
seam by a recorder that answers like HfApi; that checks the exact calls it
makes, never the hub itself (docs/publish.md lists what is not exercised).
"""

import hashlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from release_support import make_release

REPO = Path(__file__).resolve().parents[1]
PKG = next(p.name for p in sorted((REPO / "src").iterdir()) if (p / "__init__.py").is_file())
SECRETS = {
    "HF_TOKEN": "hf_registry_test_secret_0123456789abcdef",
    "AWS_SECRET_ACCESS_KEY": "aws-registry-secret-do-not-leak",
}


@pytest.fixture(scope="module")
def reg():
    """The registry package (`reg.open_registry`, `reg.local`, `reg.hf`, `reg.mlflow`)."""
    package = importlib.import_module(f"{PKG}.publish.registries")
    for name in ("local", "hf", "mlflow"):
        importlib.import_module(f"{PKG}.publish.registries.{name}")
    return package


@pytest.fixture
def release(tmp_path) -> dict[str, Path]:
    """A small release: weights-like bytes in a subdirectory, JSON, a card."""
    src = tmp_path / "release"
    payload = {
        "adapter/adapter_model.safetensors": hashlib.sha256(b"w").digest() * 256,
        "adapter/adapter_config.json": b'{"r": 4}\n',
        "manifest.json": b'{"run_id": "smoke"}\n',
        "README.md": b"# card\n",
    }
    files = {}
    for name, data in payload.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
        files[name] = src / name
    return files


META = {
    "run_id": "smoke",
    "git_commit": "a" * 40,
    "manifest_sha256": "b" * 64,
    "metrics": {"eval_loss": 1.5},
}


def same_bytes(dest: Path, files: dict[str, Path]) -> None:
    got = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert got == set(files)
    for name, src in files.items():
        assert (dest / name).read_bytes() == src.read_bytes(), name


# --- URIs and versions --------------------------------------------------------------------


def test_uri_picks_the_backend(reg, tmp_path):
    local = reg.open_registry("file://./registry")
    assert type(local).__name__ == "LocalRegistry" and local.root == Path("registry")
    assert reg.open_registry(f"file://{tmp_path}/r").root == tmp_path / "r"
    assert reg.open_registry("hf://my-org/my-model").repo_id == "my-org/my-model"
    assert reg.open_registry("mlflow://my-model").name == "my-model"


@pytest.mark.parametrize(
    "uri",
    [
        "registry",
        "s3://bucket/x",
        "file://",
        "hf://owner-only",
        "hf://a/b/c",
        "hf://a/b@main",
        "mlflow://",
        "mlflow://a/b",
    ],
)
def test_bad_registry_uris_are_user_errors(reg, uri):
    with pytest.raises(reg.UserError) as err:
        reg.open_registry(uri)
    assert type(err.value).__name__ == "UserError" and "publish.registry" in str(err.value)
    assert "fix:" in str(err.value)


def test_config_refuses_an_unknown_registry_scheme(pkg, data_workdir):
    with pytest.raises(pkg.errors.UserError) as err:
        pkg.config.load_config("configs/smoke.yaml", ["publish.registry=s3://bucket/releases"])
    assert "publish: `registry` must be file://PATH" in str(err.value)


def test_versions_are_validated_and_ordered_by_semver(reg):
    good = [
        "v0.0.1",
        "v1.2.0",
        "v1.2.0-rc.1",
        "v1.2.0-alpha",
        "v1.10.0",
        "v1.2.0-rc.10",
        "v1.2.0-rc.2",
        "v2.0.0-0.3.7",
        "v1.2.0-x-y.1",
    ]
    for v in good:
        assert reg.check_version(v) == v
    for v in ["1.2.0", "v1.2", "v1.2.0+b1", "v01.2.0", "v1.2.0-01", "v1.2.0-", "V1.2.0", ""]:
        with pytest.raises(reg.UserError):
            reg.check_version(v)
    assert reg.sort_versions(good + ["not-a-version"]) == [
        "v0.0.1",
        "v1.2.0-alpha",
        "v1.2.0-rc.1",
        "v1.2.0-rc.2",
        "v1.2.0-rc.10",
        "v1.2.0-x-y.1",
        "v1.2.0",
        "v1.10.0",
        "v2.0.0-0.3.7",
    ]


# --- file:// -------------------------------------------------------------------------------


def test_local_round_trip_is_byte_identical_and_versions_are_immutable(reg, release, tmp_path):
    registry = reg.open_registry(f"file://{tmp_path}/registry")
    assert registry.versions() == [] and not registry.exists("v1.0.0")
    index = registry.publish("v1.0.0", release, META)
    assert registry.versions() == ["v1.0.0"] and registry.exists("v1.0.0")
    assert registry.show("v1.0.0") == index and index["meta"] == META
    for name, entry in index["files"].items():
        blob = tmp_path / "registry" / "blobs" / "sha256" / entry["sha256"]
        assert blob.read_bytes() == release[name].read_bytes()
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == entry["sha256"]
        assert not os.stat(blob).st_mode & 0o222  # blobs are read-only

    with pytest.raises(reg.VersionExists, match="already exists"):
        registry.publish("v1.0.0", {"README.md": release["README.md"]}, {})
    assert registry.show("v1.0.0") == index

    # A second version shares the unchanged blobs.
    blobs = len(list((tmp_path / "registry" / "blobs" / "sha256").iterdir()))
    registry.publish("v1.1.0", release | {"README.md": release["manifest.json"]}, META)
    assert len(list((tmp_path / "registry" / "blobs" / "sha256").iterdir())) == blobs
    assert registry.versions() == ["v1.0.0", "v1.1.0"]

    registry.pull("v1.0.0", tmp_path / "pulled")
    same_bytes(tmp_path / "pulled", release)  # a file:// release holds only what was published
    with pytest.raises(reg.UserError, match="not empty"):
        registry.pull("v1.0.0", tmp_path / "pulled")
    with pytest.raises(reg.VersionNotFound):
        registry.pull("v3.0.0", tmp_path / "nothing")


def test_local_pull_refuses_a_damaged_blob_and_writes_nothing(reg, release, tmp_path):
    registry = reg.open_registry(f"file://{tmp_path}/registry")
    index = registry.publish("v1.0.0", release, META)
    blob = tmp_path / "registry" / "blobs" / "sha256" / index["files"]["manifest.json"]["sha256"]
    os.chmod(blob, 0o644)
    blob.write_bytes(b'{"run_id": "other"}\n')
    with pytest.raises(reg.IntegrityError, match="manifest.json of v1.0.0 does not match"):
        registry.pull("v1.0.0", tmp_path / "pulled")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry", "release"]
    # Publishing the same bytes again (a new version) repairs the blob by its address.
    registry.publish("v1.0.1", release, META)
    registry.pull("v1.0.0", tmp_path / "pulled")
    same_bytes(tmp_path / "pulled", release)


def test_an_index_cannot_write_outside_the_destination(reg, release, tmp_path):
    registry = reg.open_registry(f"file://{tmp_path}/registry")
    registry.publish("v1.0.0", release, META)
    path = tmp_path / "registry" / "versions" / "v1.0.0.json"
    index = json.loads(path.read_text())
    index["files"]["../escaped"] = index["files"].pop("README.md")
    path.write_text(json.dumps(index))
    with pytest.raises(reg.IntegrityError, match="unsafe file name"):
        registry.pull("v1.0.0", tmp_path / "pulled")
    assert not (tmp_path / "escaped").exists()


def load_config(path: str):
    return importlib.import_module(f"{PKG}.config").load_config(path)


def set_repo_registry(uri: str) -> None:
    """Point publish.registry of the working copy's configs/recipe.yaml at `uri`."""
    import yaml

    path = Path("configs/recipe.yaml")
    raw = yaml.safe_load(path.read_text())
    raw["publish"]["registry"] = uri
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_every_command_resolves_one_registry(reg, release, tmp_path, ft, data_workdir, monkeypatch):
    """An mlflow repo's smoke run (smoke.yaml has no publish key) publishes where
    `ft registry list` reads: configs/recipe.yaml's registry; FT_REGISTRY and --registry
    override it for every command alike, and each command says which one it used."""
    monkeypatch.delenv("FT_REGISTRY", raising=False)
    set_repo_registry("mlflow://team-model")
    smoke = load_config("configs/smoke.yaml").resolved()
    assert reg.resolve_registry(None, smoke) == "mlflow://team-model"
    repo = f"file://{tmp_path}/team-registry"
    set_repo_registry(repo)
    reg.open_registry(repo).publish("v0.1.0", release, META)
    listed = ft("registry", "list")
    assert listed.err == f"registry: {repo} (publish.registry of configs/recipe.yaml)\n"
    assert listed.out.startswith("v0.1.0\t")
    # $FT_REGISTRY, then --registry, win over the repo's registry; the source is named.
    other = f"file://{tmp_path}/other"
    monkeypatch.setenv("FT_REGISTRY", other)
    env = ft("registry", "list")
    assert env.err.splitlines()[0] == f"registry: {other} ($FT_REGISTRY)" and env.out == ""
    site = ft("history", "--out", tmp_path / "site")
    assert site.err.startswith(f"registry: {other} ($FT_REGISTRY)\n")
    assert f"0 release(s) from {other}" in site.out
    flag = ft("registry", "list", "--registry", repo)
    assert flag.err == f"registry: {repo} (--registry)\n" and flag.out.startswith("v0.1.0")
    monkeypatch.delenv("FT_REGISTRY")
    # A run whose own config names another registry is refused, not silently redirected.
    smoke["publish"]["registry"] = other
    with pytest.raises(reg.UserError, match="a repo has one registry"):
        reg.resolve_registry(None, smoke)
    assert reg.resolve_registry(other, smoke) == other  # unless chosen explicitly


def test_registry_commands_on_a_local_registry(
    reg, release, tmp_path, ft, data_workdir, monkeypatch
):
    uri = f"file://{tmp_path}/registry"
    # The default: the repo's registry, publish.registry of configs/recipe.yaml.
    recipe = load_config("configs/recipe.yaml").publish.registry
    if recipe.startswith("hf://"):
        # An hf bake's registry is the hub: offline, one clear line naming the fix.
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        empty = ft("registry", "list")
        empty.user_error("HF_HUB_OFFLINE", recipe)
    else:
        empty = ft("registry", "list")
        assert empty.code == 0 and empty.out == ""
    assert empty.err.splitlines()[0] == (
        f"registry: {recipe} (publish.registry of configs/recipe.yaml)"
    )
    # `ft registry pull` checks a release against its own manifest: publish a whole one.
    real, meta = make_release(tmp_path / "real", "v0.1.0")
    reg.open_registry(uri).publish("v0.1.0", real, meta)
    listed = ft("registry", "list", "--registry", uri)
    assert listed.out == (
        f"v0.1.0\trun smoke\tcommit {'a' * 12}\teval_loss 1.5\tverified 2026-01-01T00:00:00+00:00\n"
    )
    shown = json.loads(ft("registry", "show", "v0.1.0", "--registry", uri).out)
    assert shown["version"] == "v0.1.0" and set(shown["files"]) == set(real)
    pulled = ft("registry", "pull", "v0.1.0", tmp_path / "out", "--registry", uri)
    assert pulled.code == 0 and "every sha256 verified" in pulled.out
    same_bytes(tmp_path / "out", real)
    ft("registry", "show", "v9.0.0", "--registry", uri).user_error("VERSION", "no version v9.0.0")
    ft("registry", "show", "9.0", "--registry", uri).user_error("VERSION", "not a release")
    # `latest` is the highest release; pre-releases do not count.
    ft("registry", "pull", "latest", tmp_path / "x", "--registry", f"{uri}-empty").user_error(
        "VERSION", "no release in", "ft publish"
    )
    reg.open_registry(uri).publish("v0.2.0-rc.1", release, META)
    assert (
        json.loads(ft("registry", "show", "latest", "--registry", uri).out)["version"] == "v0.1.0"
    )
    latest = ft("registry", "pull", "latest", tmp_path / "latest", "--registry", uri)
    assert latest.out.startswith("pulled v0.1.0 from")
    ft("registry", "list", "--registry", "ftp://x").user_error("publish.registry", "ftp")


# --- hf:// through the seam ---------------------------------------------------------------


class RecordingHub:
    """Answers HfApi's methods from memory and records every call with its arguments."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.commits: dict[str, dict[str, bytes]] = {}
        self.tags: dict[str, str] = {}
        self.repo = False
        self.before_tag = None  # a hook: what another publisher does meanwhile
        self.scratch: Path  # where downloads land: set by the test that downloads

    @staticmethod
    def _error(cls_name: str, status: int):
        from huggingface_hub import errors

        # The HTTP client huggingface_hub itself uses (its errors wrap that client's Response).
        http = importlib.import_module(errors.Response.__module__.partition(".")[0])
        response = http.Response(status, request=http.Request("GET", "https://hub.invalid"))
        return getattr(errors, cls_name)(f"HTTP {status}", response=response)

    def list_repo_refs(self, repo_id, **kw):
        self.calls.append(("list_repo_refs", {"repo_id": repo_id, **kw}))
        if not self.repo:
            raise self._error("RepositoryNotFoundError", 404)
        tags = [SimpleNamespace(name=t, target_commit=c) for t, c in self.tags.items()]
        return SimpleNamespace(tags=tags, branches=[], converts=[])

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kw}))
        self.repo = True

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))
        folder = Path(kw["folder_path"])
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }
        oid = hashlib.sha1(
            json.dumps(sorted((k, v.hex()) for k, v in files.items())).encode()
        ).hexdigest()
        self.commits[oid] = files
        return SimpleNamespace(oid=oid)

    def create_tag(self, repo_id, *, tag, revision=None, **kw):
        self.calls.append(
            ("create_tag", {"repo_id": repo_id, "tag": tag, "revision": revision, **kw})
        )
        if self.before_tag:
            self.before_tag()
        if tag in self.tags:
            raise self._error("HfHubHTTPError", 409)
        self.tags[tag] = revision

    def hf_hub_download(self, repo_id, filename, *, revision, **kw):
        self.calls.append(
            (
                "hf_hub_download",
                {"repo_id": repo_id, "filename": filename, "revision": revision, **kw},
            )
        )
        path = Path(self.scratch) / "dl" / revision / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.commits[self.tags[revision]][filename])
        return str(path)

    def snapshot_download(self, repo_id, *, revision, local_dir, **kw):
        self.calls.append(
            (
                "snapshot_download",
                {"repo_id": repo_id, "revision": revision, "local_dir": local_dir, **kw},
            )
        )
        for name, data in self.commits[self.tags[revision]].items():
            (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(local_dir) / name).write_bytes(data)
        (Path(local_dir) / ".gitattributes").write_text("*.safetensors filter=lfs\n")
        (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True)
        return local_dir


@pytest.fixture
def hub(reg, tmp_path, monkeypatch):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    recorder = RecordingHub()
    recorder.scratch = tmp_path / "hub"
    return recorder, reg.hf.HfRegistry("my-org/my-model", "hf://my-org/my-model", api=recorder)


def test_hf_publish_is_one_commit_then_a_tag_on_it(hub, release):
    recorder, registry = hub
    index = registry.publish("v1.0.0", release, META)
    assert [name for name, _ in recorder.calls] == [
        "list_repo_refs",
        "create_repo",
        "upload_folder",
        "create_tag",
    ]
    create, upload, tag = (kw for _, kw in recorder.calls[1:])
    assert create == {
        "repo_id": "my-org/my-model",
        "repo_type": "model",
        "private": True,
        "exist_ok": True,
    }
    assert upload["repo_id"] == "my-org/my-model" and upload["revision"] == "main"
    assert upload["delete_patterns"] == "*" and upload["commit_message"] == "Release v1.0.0"
    ((commit, files),) = recorder.commits.items()
    assert tag["tag"] == "v1.0.0" and tag["revision"] == commit
    assert set(files) == set(release) | {"release.json"}
    assert json.loads(files["release.json"]) == index
    for name, src in release.items():
        assert files[name] == src.read_bytes()
    # The token stays in the environment: no argument and no uploaded byte carries a secret.
    assert all("token" not in kw for _, kw in recorder.calls)
    blob = repr(recorder.calls).encode() + b"".join(files.values())
    for secret in SECRETS.values():
        assert secret.encode() not in blob


def test_hf_refuses_an_existing_tag_without_uploading(reg, hub, release):
    recorder, registry = hub
    registry.publish("v1.0.0", release, META)
    recorder.calls.clear()
    with pytest.raises(reg.VersionExists, match="already exists"):
        registry.publish("v1.0.0", release, META)
    assert [name for name, _ in recorder.calls] == ["list_repo_refs"]
    assert registry.versions() == ["v1.0.0"]


def test_hf_losing_the_tag_race_is_refused(reg, hub, release):
    recorder, registry = hub
    recorder.repo = True
    recorder.before_tag = lambda: recorder.tags.setdefault("v1.0.0", "f" * 40)
    with pytest.raises(reg.VersionExists, match="already exists"):
        registry.publish("v1.0.0", release, META)
    assert recorder.tags == {"v1.0.0": "f" * 40}


def test_hf_pull_verifies_every_file(reg, hub, release, tmp_path):
    recorder, registry = hub
    index = registry.publish("v1.0.0", release, META)
    assert registry.show("v1.0.0") == index
    registry.pull("v1.0.0", tmp_path / "pulled")
    same_bytes(tmp_path / "pulled", release)  # no release.json, .gitattributes or .cache
    (files,) = recorder.commits.values()
    files["adapter/adapter_model.safetensors"] = b"tampered"
    with pytest.raises(reg.IntegrityError, match="adapter_model.safetensors of v1.0.0"):
        registry.pull("v1.0.0", tmp_path / "again")
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize("case", ["swapped model card", "dropped eval.json"])
def test_hf_pull_checks_the_release_against_its_manifest(reg, hub, tmp_path, ft, monkeypatch, case):
    """A tag re-pointed at a commit whose files and release.json were edited together:
    every sha256 matches the index, the release no longer matches its manifest."""
    recorder, registry = hub
    versions = importlib.import_module(f"{PKG}.publish.versions")
    monkeypatch.setattr(versions, "open_registry", lambda uri: registry)
    files, meta = make_release(tmp_path / "release", uri=registry.uri)
    registry.publish("v1.0.0", files, meta)
    assert ft("registry", "pull", "v1.0.0", tmp_path / "ok", "--registry", registry.uri).code == 0
    (stored,) = recorder.commits.values()
    index = json.loads(stored["release.json"])
    if case == "swapped model card":
        name = "README.md"
        stored[name] = stored[name].replace(b"apache-2.0", b"mit")
        index["files"][name] = {
            "sha256": hashlib.sha256(stored[name]).hexdigest(),
            "size": len(stored[name]),
        }
    else:
        name = "eval.json"
        del stored[name], index["files"][name]
    stored["release.json"] = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
    ft("registry", "pull", "v1.0.0", tmp_path / "out", "--registry", registry.uri).user_error(
        name, "v1.0.0", "restore the registry"
    )
    assert not (tmp_path / "out").exists()


def test_hf_auth_and_offline_failures_are_one_line_user_errors(reg, hub, release):
    recorder, registry = hub

    def refuse(*args, **kw):
        raise recorder._error("HfHubHTTPError", 401)

    recorder.list_repo_refs = refuse
    with pytest.raises(reg.UserError, match="HTTP 401") as err:
        registry.versions()
    assert "HF_TOKEN" in str(err.value) and SECRETS["HF_TOKEN"] not in str(err.value)

    def unreachable(*args, **kw):
        from huggingface_hub import errors

        http = importlib.import_module(errors.Response.__module__.partition(".")[0])
        raise http.ConnectError("[Errno -2] Name or service not known")

    recorder.list_repo_refs = unreachable
    with pytest.raises(reg.UserError, match="cannot reach the hub for hf://my-org/my-model"):
        registry.versions()
    # The real HfApi, offline (conftest sets HF_HUB_OFFLINE): refused before any request.
    offline = reg.hf.HfRegistry("my-org/my-model", "hf://my-org/my-model")
    with pytest.raises(reg.UserError, match="HF_HUB_OFFLINE"):
        offline.versions()


# --- mlflow:// against a real server ------------------------------------------------------


def test_mlflow_needs_a_reachable_tracking_server(reg, monkeypatch, release):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(reg.UserError, match="MLFLOW_TRACKING_URI is not set"):
        reg.open_registry("mlflow://my-model").versions()
    assert reg.mlflow.alias_for("v1.2.0-rc.1") == "v1-2-0-rc-1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(reg.UserError, match="cannot reach the MLflow server") as err:
        reg.open_registry("mlflow://my-model").publish("v1.0.0", release, META)
    assert err.value.key == "MLFLOW_TRACKING_URI"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1: sqlite store, artifacts proxied into a local directory."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    # Job execution spawns a pool of background workers this test does not need.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited:\n{(root / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield SimpleNamespace(url=url, root=root)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def mlflow_env(mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    return mlflow_server


def _secret_free(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and path.name != "server.log":
            data = path.read_bytes()
            for secret in SECRETS.values():
                assert secret.encode() not in data, f"a secret leaked into {path}"


@pytest.mark.slow  # starts a real mlflow server (~30 s)
def test_mlflow_publish_list_show_pull_and_immutability(reg, mlflow_env, release, tmp_path, ft):
    from mlflow import MlflowClient

    registry = reg.open_registry("mlflow://ft-round-trip")
    assert registry.versions() == []
    index = registry.publish("v1.0.0", release, META)
    assert registry.versions() == ["v1.0.0"] and registry.exists("v1.0.0")
    assert registry.show("v1.0.0") == index

    client = MlflowClient(mlflow_env.url)
    mv = client.get_model_version_by_alias("ft-round-trip", "v1-0-0")
    assert mv.tags["release_version"] == "v1.0.0"
    assert mv.tags["git_commit"] == "a" * 40 and json.loads(mv.tags["metrics"]) == META["metrics"]
    assert (
        mv.tags["index_sha256"]
        == hashlib.sha256((json.dumps(index, indent=2, sort_keys=True) + "\n").encode()).hexdigest()
    )

    registry.pull("v1.0.0", tmp_path / "pulled")
    # A release on MLflow is also an MLflow Model: MLmodel and its pyfunc loader, indexed.
    model_files = {"MLmodel", "code/ft_adapter_pyfunc.py"}
    same_bytes(tmp_path / "pulled", release | {n: tmp_path / "pulled" / n for n in model_files})
    with pytest.raises(reg.VersionExists, match="already exists"):
        registry.publish("v1.0.0", release, META)
    # v1.0.0-rc.1 and v1.0.0-rc-1 would share the alias v1-0-0-rc-1: the second is refused.
    registry.publish("v1.0.0-rc.1", release, META)
    with pytest.raises(reg.VersionExists):
        registry.publish("v1.0.0-rc-1", release, META)
    assert registry.versions() == ["v1.0.0-rc.1", "v1.0.0"]
    assert len(client.search_model_versions("name='ft-round-trip'")) == 2

    listed = ft("registry", "list", "--registry", "mlflow://ft-round-trip")
    assert listed.code == 0 and listed.out.splitlines()[1].startswith("v1.0.0\trun smoke")

    # Damaged artifacts on the server are caught on pull.
    weights = next(mlflow_env.root.glob(f"artifacts/**/{mv.run_id}/**/adapter_model.safetensors"))
    weights.write_bytes(b"tampered")
    with pytest.raises(reg.IntegrityError, match="adapter_model.safetensors of v1.0.0"):
        registry.pull("v1.0.0", tmp_path / "again")
    assert not (tmp_path / "again").exists()


@pytest.mark.slow  # publishes to the real mlflow server started for this module
@pytest.mark.parametrize(
    "case", ["metadata", "re-pointed adapter", "swapped model card", "dropped eval.json"]
)
def test_mlflow_pull_checks_the_release_against_its_manifest(reg, mlflow_env, tmp_path, ft, case):
    """Someone with write access to the MLflow server edits a release consistently (the
    artifacts, release.json's hashes and the index_sha256 tag): every sha256 still matches
    the index, so only the check against the release's own manifest catches it."""
    from mlflow import MlflowClient

    name = "ft-tamper-" + case.replace(" ", "-").replace(".", "-")
    uri = f"mlflow://{name}"
    files, meta = make_release(tmp_path / "release", uri=uri)
    reg.open_registry(uri).publish("v1.0.0", files, meta)
    assert ft("registry", "pull", "v1.0.0", tmp_path / "ok", "--registry", uri).code == 0

    client = MlflowClient(mlflow_env.url)
    mv = client.get_model_version_by_alias(name, "v1-0-0")
    index_file = next(mlflow_env.root.glob(f"artifacts/**/{mv.run_id}/**/release.json"))
    root = index_file.parent
    index = json.loads(index_file.read_text())
    if case == "metadata":
        index["meta"]["metrics"]["eval_loss"] = 0.01
        needle = "metrics"
    else:
        target, data = {
            "re-pointed adapter": ("adapter_model.safetensors", b"\0" * 64),
            "swapped model card": (
                "README.md",
                (root / "README.md").read_bytes().replace(b"apache-2.0", b"mit"),
            ),
            "dropped eval.json": ("eval.json", None),
        }[case]
        needle = target
        if data is None:
            (root / target).unlink()
            del index["files"][target]
        else:
            (root / target).write_bytes(data)
            index["files"][target] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    index_file.write_bytes((json.dumps(index, indent=2, sort_keys=True) + "\n").encode())
    client.set_model_version_tag(
        name, mv.version, "index_sha256", hashlib.sha256(index_file.read_bytes()).hexdigest()
    )
    ft("registry", "pull", "v1.0.0", tmp_path / "out", "--registry", uri).user_error(
        needle, "v1.0.0", "restore the registry"
    )
    assert not (tmp_path / "out").exists()


MLFLOW_CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from mlflow import MlflowClient
    from PACKAGE.publish.registries import open_registry

    name, version, release, kill_after, go = sys.argv[1:6]
    if kill_after != "-":  # die right after this client call returns, like a killed job
        original = getattr(MlflowClient, kill_after)

        def dying(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
            return result

        setattr(MlflowClient, kill_after, dying)
    files = dict()
    for root, _, names in os.walk(release):
        for n in names:
            path = os.path.join(root, n)
            files[os.path.relpath(path, release)] = path
    registry = open_registry("mlflow://" + name)
    registry.client  # connect before the start line
    if go != "-":
        open(go + ".ready." + str(os.getpid()), "w").close()
        while not os.path.exists(go):
            time.sleep(0.001)
    registry.publish(version, files, dict(run_id="smoke"))
""").replace("PACKAGE", PKG)


def _mlflow_child(url: str, *args: str, go: str = "-") -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, **SECRETS}
    return subprocess.Popen(
        [sys.executable, "-c", MLFLOW_CHILD, *args, go],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # each publisher process imports mlflow (~5 s of CPU)
@pytest.mark.parametrize("kill_after", ["log_artifacts", "create_model_version"])
def test_mlflow_killed_publish_leaves_no_version_and_a_retry_succeeds(
    reg, mlflow_env, release, tmp_path, kill_after
):
    from mlflow import MlflowClient

    name = f"ft-killed-{kill_after.replace('_', '-')}"
    root = release["README.md"].parent
    child = _mlflow_child(mlflow_env.url, name, "v1.0.0", str(root), kill_after)
    _, err = child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL, err[-3000:]
    registry = reg.open_registry(f"mlflow://{name}")
    assert registry.versions() == [] and not registry.exists("v1.0.0")
    if kill_after == "create_model_version":
        # The candidate is hidden, but blocks the version until it is stale.
        with pytest.raises(reg.VersionExists, match="being published concurrently"):
            registry.publish("v1.0.0", release, META)
        registry.stale_after_s = 0
    registry.publish("v1.0.0", release, META)
    assert registry.versions() == ["v1.0.0"]
    found = MlflowClient(mlflow_env.url).search_model_versions(
        f"name='{name}' and tags.release_version='v1.0.0'"
    )
    assert len(found) == 1
    registry.pull("v1.0.0", tmp_path / "pulled")
    # A release on MLflow is also an MLflow Model: MLmodel and its pyfunc loader, indexed.
    model_files = {"MLmodel", "code/ft_adapter_pyfunc.py"}
    same_bytes(tmp_path / "pulled", release | {n: tmp_path / "pulled" / n for n in model_files})
    _secret_free(mlflow_env.root)


@pytest.mark.slow  # three publisher processes import mlflow at once
def test_mlflow_concurrent_publishes_of_one_version_have_one_winner(
    reg, mlflow_env, release, tmp_path
):
    from mlflow import MlflowClient

    root, go = release["README.md"].parent, tmp_path / "go"
    children = [
        _mlflow_child(mlflow_env.url, "ft-race", "v2.0.0", str(root), "-", go=str(go))
        for _ in range(3)
    ]
    deadline = time.monotonic() + 240
    while len(list(tmp_path.glob("go.ready.*"))) < len(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    results = [(c.wait(timeout=300), c.communicate()[1]) for c in children]
    assert sorted(code for code, _ in results) == [0, 1, 1], results
    assert all("VersionExists" in err for code, err in results if code)
    registry = reg.open_registry("mlflow://ft-race")
    assert registry.versions() == ["v2.0.0"]
    assert len(MlflowClient(mlflow_env.url).search_model_versions("name='ft-race'")) == 1
    registry.pull("v2.0.0", tmp_path / "pulled")
    # An MLflow version is also an MLflow Model: MLmodel and its pyfunc loader ride along.
    model_files = {"MLmodel", "code/ft_adapter_pyfunc.py"}
    same_bytes(tmp_path / "pulled", release | {n: tmp_path / "pulled" / n for n in model_files})
    _secret_free(mlflow_env.root)


def test_unreachable_mlflow_server_fails_in_seconds(ft, data_workdir, monkeypatch):
    """Nothing listens on the port: the error comes from a 3 s connect probe, not after
    MLflow's own retries (minutes with its default backoff)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:secret@127.0.0.1:{port}")
    began = time.perf_counter()
    for argv in (["registry", "list"], ["registry", "show", "v1.0.0"]):
        line = ft(*argv, "--registry", "mlflow://my-model").user_error(
            "MLFLOW_TRACKING_URI",
            f"cannot reach the MLflow server at http://127.0.0.1:{port} (Connection refused)",
            "start the server",
        )
        assert "secret" not in line
    assert time.perf_counter() - began < 5
