"""A hub base model through huggingface_hub's own cache layout, built by code, offline.

    uv run pytest tests/test_hub_base.py -q

The tiny base is laid out as the hub cache stores a download (`blobs/<address>`
linked from `snapshots/<commit>/`), so loading goes through transformers and
huggingface_hub exactly as for a real hub model, with no network. The hub
itself is stood in for by a closed port on 127.0.0.1 (HF_ENDPOINT): what is
exercised is everything up to the first byte that would leave the machine.
"""

import hashlib
import importlib
import json
import os
import socket
import time
import warnings
from pathlib import Path

import pytest

REPO_ID = "acme/tiny-llama"
REVISION = "0123456789abcdef0123456789abcdef01234567"
LFS = (".safetensors",)  # stored under their sha256; other files under their git blob id


def _address(name: str, data: bytes) -> str:
    if name.endswith(LFS):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def make_hub_cache(cache: Path, model_dir: Path, repo_id: str = REPO_ID, revision: str = REVISION):
    """Lay `model_dir` out as huggingface_hub caches `repo_id` at `revision`."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for path in sorted(model_dir.iterdir()):
        data = path.read_bytes()
        blob = repo / "blobs" / _address(path.name, data)
        blob.write_bytes(data)
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: nothing listens there


@pytest.fixture
def hub(tmp_path, tiny_base, monkeypatch):
    """A hub cache holding the tiny base as acme/tiny-llama@REVISION; hub = a closed port.

    Name resolution is limited to 127.0.0.1 meanwhile: a code path that would still call
    huggingface.co fails at once here instead of leaving the machine.
    """
    from huggingface_hub import constants

    real = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, f"test: no network for {host}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)
    cache = tmp_path / "hub-cache"
    snapshot = make_hub_cache(cache, tiny_base)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    return snapshot


def hub_config(pkg):
    return pkg.config.load_config("configs/smoke.yaml", hub_sets_plain())


def test_cached_revision_loads_with_every_file_hashed_even_online(
    pkg, data_workdir, hub, tiny_base, monkeypatch
):
    """HF_HUB_OFFLINE unset and the hub unreachable: a cached pinned commit loads from the
    cache alone (no request, no retry wait), and every file's sha256 is recorded."""
    from huggingface_hub import constants

    model_mod = importlib.import_module(f"{pkg.__name__}.model")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    began = time.perf_counter()
    _, tokenizer, pins = model_mod.load_base(hub_config(pkg))
    assert time.perf_counter() - began < 10
    want = {p.name: pkg.util.hashing.sha256_file(p) for p in tiny_base.iterdir()}
    assert pins["files"] == want
    assert pins["tokenizer_files"] == {
        n: want[n] for n in ("tokenizer.json", "tokenizer_config.json")
    }
    assert pins["tokenizer_sha256"] == model_mod.tokenizer_hash(tiny_base)
    assert (pins["hub_id"], pins["revision"], pins["tokenizer_revision"]) == (
        REPO_ID,
        REVISION,
        REVISION,
    )
    assert tokenizer.pad_token_id == 2


def test_corrupted_cache_file_is_refused_naming_it(pkg, ft, data_workdir, hub):
    blob = Path(os.path.realpath(hub / "model.safetensors"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01  # one bit of the last weight: still loadable, no longer the download
    blob.write_bytes(bytes(data))
    line = ft("train", "--config", "configs/smoke.yaml", *hub_sets(), "--out", "runs/x").user_error(
        "model.safetensors of acme/tiny-llama@0123456789ab in the hub cache is corrupted",
        str(blob),
        "fetch the revision again",
    )
    assert "hf download acme/tiny-llama --revision " + REVISION in line
    assert not Path("runs/x/manifest.json").exists()


def test_revision_missing_from_the_offline_cache_says_where_and_how(pkg, ft, data_workdir, hub):
    other = "f" * 40
    line = ft(
        "train", "--config", "configs/smoke.yaml", *hub_sets(revision=other), "--out", "runs/x"
    ).user_error(
        "model.base.revision",
        f"revision {other} of {REPO_ID} is not (completely) in the local hub cache",
        str(hub.parents[2]),  # the cache directory
        "HF_HUB_OFFLINE=1 forbids fetching it",
        f"hf download {REPO_ID} --revision {other}",
    )
    assert "couldn't connect" not in line


def test_unreachable_hub_fails_in_seconds(pkg, ft, data_workdir, hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    began = time.perf_counter()
    result = ft("train", "--config", "configs/smoke.yaml", *hub_sets(revision="e" * 40))
    result.user_error("HF_ENDPOINT", "cannot reach the Hugging Face Hub", constants.ENDPOINT)
    assert time.perf_counter() - began < 10  # torch already imported; the probe is 1 connect


def hub_sets(revision: str = REVISION) -> list[str]:
    return [
        "--set=model.base.path=null",
        "--set=model.base.sha256=null",
        "--set=model.base.build=null",
        f"--set=model.base.hub_id={REPO_ID}",
        f"--set=model.base.revision={revision}",
    ]


@pytest.mark.slow
def test_hub_base_run_records_every_file_and_diff_names_the_one_that_moved(
    pkg, data_workdir, hub, monkeypatch
):
    """The whole run with HF_HUB_OFFLINE unset and the hub unreachable: nothing waits on it
    (peft's save asks the hub about the base unless told it is offline)."""
    from huggingface_hub import constants

    train = importlib.import_module(f"{pkg.__name__}.train.recipe")
    diff = importlib.import_module(f"{pkg.__name__}.closure.diff")
    monkeypatch.setenv("CI", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. peft's "Unable to fetch remote file"
        run = train.main("configs/smoke.yaml", hub_sets_plain(), out="runs/hub")
    assert time.perf_counter() - began < 60
    a = json.loads((run / "manifest.json").read_text())
    assert set(a["base_model"]["files"]) == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    b = json.loads(json.dumps(a))
    b["base_model"]["files"]["model.safetensors"] = "9" * 64
    b["outputs"]["adapter/adapter_model.safetensors"] = "8" * 64
    text = diff.report(a, b)
    assert "base model: files.model.safetensors: " in text
    assert "nondeterministic" not in text


def hub_sets_plain() -> list[str]:
    return [s.removeprefix("--set=") for s in hub_sets()]
