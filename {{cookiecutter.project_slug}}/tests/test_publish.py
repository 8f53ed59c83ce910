"""The publish gate end to end: no weights leave without a clean reproduction.

    uv run pytest tests/test_publish.py -q

One smoke run is trained and reproduced (real `ft` processes) in a throwaway git
copy of this repository, once for the module; each test publishes a copy of that
verified run into a registry of its own. `ft publish` imports no torch, so the
processes that publish, get killed midway or race each other are cheap.
"""

import hashlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from test_closure import _make_project
from test_registry import mlflow_server as _server  # noqa: F401 - the real `mlflow server`

# Trains real runs in `ft` processes: not part of the quick suite (`-m "not slow"`).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PKG = next(p.name for p in sorted((REPO / "src").iterdir()) if (p / "__init__.py").is_file())
SECRETS = {
    "HF_TOKEN": "hf_publish_test_secret_0123456789abcdef",
    "AWS_SECRET_ACCESS_KEY": "aws-publish-secret-do-not-leak",
}
WEIGHTS = "adapter/adapter_model.safetensors"
# A release keeps the adapter's files at its root, where PEFT looks (release.release_name).
PUSHED = {
    "adapter_model.safetensors",
    "adapter_config.json",
    "config.yaml",
    "data.lock",
    "eval.json",
    "metrics.jsonl",
    "manifest.json",
    "REPRODUCE.md",
    "verification.json",
    "README.md",
}


# --- a verified run, once per module ------------------------------------------------------


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for key in ("GITHUB_REF_TYPE", "GITHUB_REF_NAME", "GITHUB_SHA"):
        env.pop(key, None)  # a CI tag build must not change what these tests check
    return env


def _run(cwd: Path, *cmd: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(**env), capture_output=True, text=True)


def _ft(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return _run(project, str(project / ".venv" / "bin" / "ft"), *args, **env)


def _ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{done.args} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """This repo's files, committed in a fresh git repo, with their own venv."""
    return _make_project(tmp_path_factory.mktemp("publish-project"))


@pytest.fixture(scope="module")
def verified(project) -> Path:
    """runs/smoke: trained, then reproduced by `ft reproduce` (verification.json passed)."""
    _ok(_ft(project, "train", "--config", "configs/smoke.yaml", "--out", "runs/smoke"))
    _ok(_ft(project, "reproduce", "runs/smoke"))
    run = project / "runs" / "smoke"
    assert json.loads((run / "verification.json").read_text())["passed"] is True
    return run


def run_name(release_name: str) -> str:
    """Where a release file came from in the run directory."""
    return f"adapter/{release_name}" if release_name.startswith("adapter_") else release_name


def copy_run(verified: Path, name: str) -> Path:
    """A copy of the verified run and its reproduction (what the gate sees is unchanged)."""
    dest = verified.parent / name
    shutil.copytree(verified, dest, ignore=shutil.ignore_patterns("checkpoints"))
    return dest


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rewrite(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def registry_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def versions_in(root: Path) -> list[str]:
    d = root / "versions"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


# --- the gate -----------------------------------------------------------------------------


def test_publish_without_verification_is_refused(verified, tmp_path, ft):
    run = copy_run(verified, "never-reproduced")
    (run / "verification.json").unlink()
    uri = f"file://{tmp_path / 'registry'}"
    line = ft("publish", run, "--version", "v0.1.0", "--registry", uri).user_error(
        "verification.json", "never reproduced", "ft reproduce"
    )
    assert str(run) in line
    assert not (tmp_path / "registry").exists()


def test_failed_verification_is_refused_with_its_reason(verified, tmp_path, ft):
    run = copy_run(verified, "failed-reproduce")
    record = json.loads((run / "verification.json").read_text())
    record |= {"passed": False, "reason": "1 output(s) differ: adapter/adapter_model.safetensors"}
    (run / "verification.json").write_text(json.dumps(record))
    ft("publish", run, "--version", "v0.1.0", "--registry", f"file://{tmp_path}/r").user_error(
        "verification.json", "did not pass", "1 output(s) differ"
    )


def test_reproduced_run_publishes_lists_and_is_immutable(project, verified):
    """The new user's path: train -> reproduce -> publish -> `ft registry list`.

    Both resolve the repo's one registry, publish.registry of configs/recipe.yaml (the
    default bake's file://./registry), and say so.
    """
    recipe = yaml.safe_load((project / "configs" / "recipe.yaml").read_text())
    env, said = {}, "registry: file://./registry (publish.registry of configs/recipe.yaml)\n"
    if recipe["publish"]["registry"] != "file://./registry":  # an hf:// or mlflow:// bake
        env, said = (
            {"FT_REGISTRY": "file://./registry"},
            "registry: file://./registry ($FT_REGISTRY)\n",
        )
    done = _ok(_ft(project, "publish", "runs/smoke", "--version", "v0.1.0", **SECRETS, **env))
    assert "published v0.1.0 to file://./registry" in done.stdout
    assert done.stderr.startswith(said)
    listed = _ok(_ft(project, "registry", "list", **env))
    assert listed.stdout.startswith("v0.1.0\trun smoke\t") and listed.stderr == said

    registry = project / "registry"
    index = json.loads((registry / "versions" / "v0.1.0.json").read_text())
    assert set(index["files"]) == PUSHED
    for name, entry in index["files"].items():
        blob = registry / "blobs" / "sha256" / entry["sha256"]
        if name != "README.md":
            assert blob.read_bytes() == (verified / run_name(name)).read_bytes(), name
    manifest = json.loads((verified / "manifest.json").read_text())
    meta = index["meta"]
    assert meta["git_commit"] == manifest["git"]["commit"]
    assert meta["manifest_sha256"] == index["files"]["manifest.json"]["sha256"]
    assert meta["license"] == "apache-2.0" and meta["verification_mode"] == "exact"

    card = (registry / "blobs" / "sha256" / index["files"]["README.md"]["sha256"]).read_text()
    train = manifest["data"]["splits"]["train"]
    for expected in (
        "license: apache-2.0",
        manifest["base_model"]["sha256"],
        train["sha256"],
        f"| train | {train['rows_in']} | {train['rows']} |",
        "| eval_loss |",
        "ft train --config configs/smoke.yaml",
        manifest["git"]["commit"],
        "byte-identical",
    ):
        assert expected in card, expected

    for path, data in registry_files(registry).items():
        for secret in SECRETS.values():
            assert secret.encode() not in data, f"a secret leaked into registry/{path}"

    again = _ft(project, "publish", "runs/smoke", "--version", "v0.1.0", **env)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr and again.stderr.startswith(said)
    assert again.stderr.count("\n") == 2  # which registry, then the one error line
    assert json.loads((registry / "versions" / "v0.1.0.json").read_text()) == index


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        (WEIGHTS, lambda b: b[:-1] + bytes([b[-1] ^ 1])),
        ("manifest.json", lambda b: b.replace(b'"steps": 12', b'"steps": 13', 1)),
        ("REPRODUCE.md", lambda b: b + b"\nrm -rf /\n"),
        ("data.lock", lambda b: b.replace(b'"rows": 1076', b'"rows": 1077', 1)),
    ],
    ids=["weights", "manifest", "reproduce-md", "data-lock"],
)
def test_file_edited_after_verification_is_refused_naming_it(verified, tmp_path, ft, name, edit):
    run = copy_run(verified, f"tampered-{name.replace('/', '-')}")
    before = (run / name).read_bytes()
    (run / name).write_bytes(edit(before))
    assert (run / name).read_bytes() != before
    uri = f"file://{tmp_path / 'registry'}"
    ft("publish", run, "--version", "v0.1.0", "--registry", uri).user_error(
        f"{run / name}: {name} changed after verification", "ft reproduce"
    )
    assert versions_in(tmp_path / "registry") == []


def test_file_added_after_verification_is_refused(verified, tmp_path, ft):
    run = copy_run(verified, "extra-file")
    (run / "adapter" / "extra.bin").write_bytes(b"not trained")
    ft("publish", run, "--version", "v0.1.0", "--registry", f"file://{tmp_path}/r").user_error(
        "adapter/extra.bin", "not listed in manifest.json"
    )


# --- a record is never taken at its word ---------------------------------------------------


def test_a_record_saying_equal_for_different_hashes_is_refused(verified, tmp_path, ft):
    run = copy_run(verified, "equal-but-not")
    record = json.loads((run / "verification.json").read_text())
    entry = next(c for c in record["compared"] if c["file"] == WEIGHTS)
    entry |= {"actual": "0" * 64, "equal": True}  # the claim, against the recorded hashes
    _rewrite(run / "verification.json", record)
    ft("publish", run, "--version", "v0.1.0", "--registry", f"file://{tmp_path}/r").user_error(
        "verification.json", WEIGHTS, "not the ones recomputed", "ft reproduce"
    )
    assert not (tmp_path / "r").exists()


def test_a_run_never_reproduced_with_a_copied_record_is_refused(verified, tmp_path, ft):
    run = copy_run(verified, "copied-record")
    shutil.rmtree(run / "reproduce")  # this copy was never reproduced; its record was copied
    ft("publish", run, "--version", "v0.1.0", "--registry", f"file://{tmp_path}/r").user_error(
        "verification.json", "no reproduction", "ft reproduce"
    )


def test_a_record_of_another_run_is_refused(verified, tmp_path, ft):
    run = copy_run(verified, "other-run-record")
    record = json.loads((run / "verification.json").read_text())
    _rewrite(run / "verification.json", record | {"run_id": "someone-else"})
    ft("publish", run, "--version", "v0.1.0", "--registry", f"file://{tmp_path}/r").user_error(
        "verification.json", "someone-else", "ft reproduce"
    )


def test_a_reproduction_swapped_after_the_record_is_refused(verified, tmp_path, ft):
    run = copy_run(verified, "swapped-reproduction")
    fresh = run / "reproduce" / "manifest.json"
    fresh.write_text(fresh.read_text().replace('"seed": ', '"seed":  ', 1))
    ft("publish", run, "--version", "v0.1.0", "--registry", f"file://{tmp_path}/r").user_error(
        "reproduce/manifest.json", "not the reproduction this record was written for"
    )


def test_nan_weights_are_refused_even_with_every_record_rewritten(project, verified, tmp_path, ft):
    """The whole forgery: NaN weights, and the manifest, REPRODUCE.md, the reproduction and
    the record all rewritten to match them. The hashes agree; the weights are no model."""
    from safetensors.numpy import load_file, save_file

    run = copy_run(verified, "nan-weights")
    tensors = load_file(run / WEIGHTS)
    tensors = {k: (v * float("nan")).astype(v.dtype) for k, v in tensors.items()}
    for where in (run, run / "reproduce"):
        save_file(tensors, where / WEIGHTS)
        manifest = json.loads((where / "manifest.json").read_text())
        manifest["outputs"][WEIGHTS] = _sha(where / WEIGHTS)
        _rewrite(where / "manifest.json", manifest)
    render = importlib.import_module(f"{PKG}.closure.reproduce_md").render_reproduce
    (run / "REPRODUCE.md").write_text(render(json.loads((run / "manifest.json").read_text())))
    record = json.loads((run / "verification.json").read_text())
    for entry in record["compared"]:
        if entry["file"] == WEIGHTS:
            entry["expected"] = entry["actual"] = _sha(run / WEIGHTS)
    record |= {
        "manifest_sha256": _sha(run / "manifest.json"),
        "reproduce_md_sha256": _sha(run / "REPRODUCE.md"),
        "reproduction_manifest_sha256": _sha(run / "reproduce" / "manifest.json"),
    }
    _rewrite(run / "verification.json", record)
    ft("publish", run, "--version", "v0.1.0", "--registry", f"file://{tmp_path}/r").user_error(
        str(run / WEIGHTS), "NaN or infinite", "train.lr"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "version", ["0.1.0", "v1.2", "v1.2.0+build.5", "v01.2.0", "latest", "v1.2.0-", "v1.2.0-rc..1"]
)
def test_invalid_versions_are_refused(verified, tmp_path, ft, version):
    ft("publish", verified, "--version", version, "--registry", f"file://{tmp_path}/r").user_error(
        "--version", "not a release version"
    )


def test_release_tag_must_point_at_the_trained_commit(verified, tmp_path, ft, monkeypatch):
    commit = json.loads((verified / "manifest.json").read_text())["git"]["commit"]
    other = "0" * 40
    uri = f"file://{tmp_path / 'registry'}"
    for key in ("GITHUB_REF_TYPE", "GITHUB_REF_NAME", "GITHUB_SHA"):
        monkeypatch.delenv(key, raising=False)
    ft(
        "publish", verified, "--version", "v1.0.0", "--registry", uri, "--tag-commit", other
    ).user_error("--tag-commit", f"trained at {commit}", f"not an ancestor of {other}")
    ft(
        "publish", verified, "--version", "v1.0.0", "--registry", uri, "--tag-commit", "abc123"
    ).user_error("--tag-commit", "not a full commit hash")
    # On a GitHub tag build the commit and the tag's name come from the environment.
    monkeypatch.setenv("GITHUB_REF_TYPE", "tag")
    monkeypatch.setenv("GITHUB_REF_NAME", "v1.0.0")
    monkeypatch.setenv("GITHUB_SHA", other)
    ft("publish", verified, "--version", "v1.0.0", "--registry", uri).user_error(
        "GITHUB_SHA", other
    )
    monkeypatch.setenv("GITHUB_SHA", commit)
    ft("publish", verified, "--version", "v1.0.1", "--registry", uri).user_error(
        "--version", "tag v1.0.0"
    )
    assert versions_in(tmp_path / "registry") == []
    assert ft("publish", verified, "--version", "v1.0.0", "--registry", uri).code == 0
    assert versions_in(tmp_path / "registry") == ["v1.0.0.json"]


# --- atomicity: killed midway, raced ------------------------------------------------------

# A child that runs the real `ft publish` and SIGKILLs itself just before its Nth write-side
# filesystem step inside the registry (a file opened for writing, a link, a rename), seen
# through a Python audit hook, so no test hook lives in the code under test. KILL_AT=0 only
# counts the steps.
CHILD = textwrap.dedent("""
    import os, signal, sys
    root, kill_at = os.path.realpath(sys.argv[1]), int(sys.argv[2])
    steps = 0

    def inside(path):
        return isinstance(path, (str, bytes, os.PathLike)) and \\
            os.path.realpath(os.fsdecode(path)).startswith(root + os.sep)

    def hook(event, args):
        global steps
        writes = (event == "open" and inside(args[0]) and args[1] is not None
                  and any(c in str(args[1]) for c in "wxa+"))
        if writes or (event in ("os.link", "os.rename") and inside(args[1])):
            steps += 1
            if steps == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    print("pid=" + str(os.getpid()), file=sys.stderr, flush=True)
    from PACKAGE.cli import main
    code = main(sys.argv[3:])
    print("steps=" + str(steps), file=sys.stderr)
    sys.exit(code)
""").replace("PACKAGE", PKG)


def killed_pid(done: subprocess.CompletedProcess) -> int:
    return int(done.stderr.split("pid=", 1)[1].split()[0])


def _publish_child(project: Path, registry: Path, kill_at: int, *args: str, **env: str):
    return _run(
        project,
        str(project / ".venv" / "bin" / "python"),
        "-c",
        CHILD,
        str(registry),
        str(kill_at),
        "publish",
        *args,
        "--registry",
        f"file://{registry}",
        **env,
    )


@pytest.fixture(scope="module")
def publish_steps(project, verified, tmp_path_factory) -> int:
    """How many write-side steps one publish of the verified run takes."""
    registry = tmp_path_factory.mktemp("count") / "registry"
    done = _ok(_publish_child(project, registry, 0, "runs/smoke", "--version", "v9.9.9"))
    steps = int(done.stderr.rsplit("steps=", 1)[1])
    assert steps == 2 * len(PUSHED) + 2  # each blob: temp write + link; the index: write + link
    return steps


@pytest.mark.parametrize("where", ["first", "middle", "before-index", "before-commit"])
def test_killed_publish_leaves_no_version_and_a_retry_succeeds(
    project, verified, tmp_path, publish_steps, where
):
    kill_at = {
        "first": 1,
        "middle": publish_steps // 2,
        "before-index": publish_steps - 1,
        "before-commit": publish_steps,
    }[where]
    registry, scratch = tmp_path / "registry", tmp_path / "tmp"
    scratch.mkdir()
    killed = _publish_child(
        project, registry, kill_at, "runs/smoke", "--version", "v0.2.0", TMPDIR=str(scratch)
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert versions_in(registry) == []
    # The killed process could not remove its private copy of the release ...
    assert [p.name.split("-")[2] for p in scratch.iterdir()] == [str(killed_pid(killed))]
    if where == "before-commit":  # every blob and the index were written, but not linked
        assert len(list((registry / "blobs" / "sha256").iterdir())) == len(PUSHED)
        assert [p.suffix for p in (registry / ".tmp").iterdir()] == [".json"]
    listed = _ok(_ft(project, "registry", "list", "--registry", f"file://{registry}"))
    assert listed.stdout == "" and "no versions" in listed.stderr
    _ok(
        _ft(
            project,
            "publish",
            "runs/smoke",
            "--version",
            "v0.2.0",
            "--registry",
            f"file://{registry}",
            TMPDIR=str(scratch),
        )
    )
    assert versions_in(registry) == ["v0.2.0.json"]
    assert list(scratch.iterdir()) == []  # ... the next publish swept it
    _ok(
        _ft(
            project,
            "registry",
            "pull",
            "v0.2.0",
            str(tmp_path / "pulled"),
            "--registry",
            f"file://{registry}",
        )
    )
    pulled = tmp_path / "pulled" / "adapter_model.safetensors"
    assert pulled.read_bytes() == (verified / WEIGHTS).read_bytes()


def test_concurrent_publishes_of_one_version_have_one_winner(project, verified, tmp_path):
    registry = tmp_path / "registry"
    go = tmp_path / "go"
    # Each racer imports everything first, says it is ready, and waits for the start line,
    # so the four race for the registry itself.
    racer = textwrap.dedent("""
        import os, sys, time
        import PACKAGE.publish.gate, PACKAGE.publish.registries.local
        from PACKAGE.cli import main
        go = os.environ["FT_TEST_GO"]
        open(go + ".ready." + str(os.getpid()), "w").close()
        while not os.path.exists(go):
            time.sleep(0.001)
        sys.exit(main(sys.argv[1:]))
    """).replace("PACKAGE", PKG)
    procs = [
        subprocess.Popen(
            [
                str(project / ".venv" / "bin" / "python"),
                "-c",
                racer,
                "publish",
                "runs/smoke",
                "--version",
                "v1.0.0",
                "--registry",
                f"file://{registry}",
            ],
            cwd=project,
            env=_env(FT_TEST_GO=str(go)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready.*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    results = [(p.returncode, err) for p in procs for _, err in [p.communicate(timeout=120)]]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2, 2, 2], results
    assert all("already exists" in err for code, err in results if code == 2)
    assert versions_in(registry) == ["v1.0.0.json"]
    _ok(
        _ft(
            project,
            "registry",
            "pull",
            "v1.0.0",
            str(tmp_path / "pulled"),
            "--registry",
            f"file://{registry}",
        )
    )


# --- pull ---------------------------------------------------------------------------------


def test_pull_is_byte_identical_and_reverifies_every_blob(project, verified, tmp_path):
    registry = tmp_path / "registry"
    uri = f"file://{registry}"
    _ok(_ft(project, "publish", "runs/smoke", "--version", "v0.3.0", "--registry", uri, **SECRETS))
    pulled = tmp_path / "pulled"
    done = _ok(_ft(project, "registry", "pull", "v0.3.0", str(pulled), "--registry", uri))
    assert "every sha256 verified" in done.stdout
    got = {p.relative_to(pulled).as_posix() for p in pulled.rglob("*") if p.is_file()}
    assert got == PUSHED
    for name in PUSHED - {"README.md"}:
        assert (pulled / name).read_bytes() == (verified / run_name(name)).read_bytes(), name
    for path, data in registry_files(registry).items():
        for secret in SECRETS.values():
            assert secret.encode() not in data, f"a secret leaked into {path}"

    index = json.loads((registry / "versions" / "v0.3.0.json").read_text())
    blob = registry / "blobs" / "sha256" / index["files"]["adapter_model.safetensors"]["sha256"]
    os.chmod(blob, 0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    again = tmp_path / "pulled-again"
    bad = _ft(project, "registry", "pull", "v0.3.0", str(again), "--registry", uri)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith(f"registry: {uri} (--registry)\n")
    assert bad.stderr.count("\n") == 2 and "corrupted" in bad.stderr
    assert "adapter_model.safetensors" in bad.stderr
    assert not again.exists()
    assert not any(p.name.startswith(".pulled-again") for p in tmp_path.iterdir())


# --- one standard call loads each artifact --------------------------------------------------


def test_a_pulled_version_loads_with_the_peft_one_liner(project, verified, tmp_path):
    """`PeftModel.from_pretrained(base, pulled_dir)`; the card carries that snippet; the
    merged export loads with AutoModelForCausalLM; `ft generate` gives the same text twice."""
    registry = tmp_path / "registry"
    uri = f"file://{registry}"
    _ok(_ft(project, "publish", "runs/smoke", "--version", "v0.4.0", "--registry", uri))
    pulled = tmp_path / "v0.4.0"
    _ok(_ft(project, "registry", "pull", "v0.4.0", str(pulled), "--registry", uri))
    card = (pulled / "README.md").read_text()
    assert 'model = PeftModel.from_pretrained(base, "v0.4.0")' in card
    assert "base model's own licence also applies: none: the embedded base" in card
    code = (
        "import sys, torch\n"
        "from peft import PeftModel\n"
        "from safetensors.torch import load_file\n"
        "from transformers import AutoModelForCausalLM\n"
        "base = AutoModelForCausalLM.from_pretrained('base/tiny-llama')\n"
        "model = PeftModel.from_pretrained(base, sys.argv[1])\n"
        "trained = load_file(sys.argv[2])\n"
        "state = model.state_dict()\n"
        "loaded = {k: v for k, v in state.items() if 'lora_' in k}\n"
        "assert len(loaded) == len(trained) > 0, (len(loaded), len(trained))\n"
        "for k, v in trained.items():\n"
        "    key = k.replace('.weight', '.default.weight')\n"
        "    assert torch.equal(state[key], v), k\n"
        "print('ok', len(trained))\n"
    )
    weights = str(verified / WEIGHTS)
    done = _ok(_run(project, str(project / ".venv/bin/python"), "-c", code, str(pulled), weights))
    assert done.stdout.startswith("ok ")

    out = tmp_path / "merged"
    _ok(_ft(project, "export", "runs/smoke", "--merged", str(out)))
    record = json.loads((out / "export.json").read_text())
    assert (
        record["manifest_sha256"]
        == hashlib.sha256((verified / "manifest.json").read_bytes()).hexdigest()
    )
    for name, digest in record["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    load = (
        "import sys\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "m = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
        "t = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "assert not any('lora' in k for k in m.state_dict()), 'adapter not merged'\n"
        "print(type(m).__name__, t.chat_template is not None)\n"
    )
    loaded = _ok(_run(project, str(project / ".venv/bin/python"), "-c", load, str(out)))
    assert loaded.stdout.strip() == "LlamaForCausalLM True"

    runs = [_ok(_ft(project, "generate", "runs/smoke", "--prompt", "Add 2 and 3.")) for _ in "ab"]
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.strip()
    from_version = _ok(
        _ft(project, "generate", "v0.4.0", "--prompt", "Add 2 and 3.", "--registry", uri)
    )
    assert from_version.stdout == runs[0].stdout


def test_an_mlflow_version_loads_with_pyfunc_on_the_real_server(
    project,
    verified,
    _server,  # noqa: F811 - test_registry's mlflow_server fixture, imported under this name
):
    """`mlflow.pyfunc.load_model("models:/NAME@ALIAS")` in a fresh process, on a real
    `mlflow server` (tests/test_registry.py starts it), answers as `ft generate` does."""
    env = {"MLFLOW_TRACKING_URI": _server.url}  # `_server`: test_registry's mlflow_server
    uri = "mlflow://ft-pyfunc"
    _ok(_ft(project, "publish", "runs/smoke", "--version", "v1.0.0", "--registry", uri, **env))
    code = (
        "import mlflow\n"
        "model = mlflow.pyfunc.load_model('models:/ft-pyfunc@v1-0-0')\n"
        "print(model.predict(['Add 2 and 3.'])[0])\n"
    )
    loaded = _ok(_run(project, str(project / ".venv/bin/python"), "-c", code, **env))
    local = _ok(_ft(project, "generate", "runs/smoke", "--prompt", "Add 2 and 3."))
    assert loaded.stdout == local.stdout and loaded.stdout.strip()
