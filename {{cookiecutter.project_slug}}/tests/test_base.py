"""The embedded tiny base model: rebuilt byte for byte, equal to the pin, loadable.

    uv run pytest tests/test_base.py -q

`tiny_base` (conftest.py) builds it once per session; the ~10 s here are the
torch + transformers import, which the training tests share.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
# Embeddings and head 2 x 512 x 64; per layer q/o 64x64, k/v 64x32, MLP 3 x 64x128, 2 norms.
PARAMETERS = 2 * 512 * 64 + 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64) + 64


@pytest.fixture(scope="module")
def pins(pkg) -> dict[str, str]:
    """config file name -> model.base.sha256, for every config built from the tiny model."""
    found = {}
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        base = pkg.config.load_config(path).model.base
        if base.build == "tiny":
            found[path.name] = base.sha256
    assert "smoke.yaml" in found  # smoke always trains the tiny model
    return found


def test_tiny_base_matches_every_config_pin(pkg, tiny_base, pins):
    assert sorted(p.name for p in tiny_base.iterdir()) == FILES
    digest = pkg.util.hashing.sha256_tree(tiny_base)
    assert pins == dict.fromkeys(pins, digest)


def test_init_tiny_twice_gives_identical_bytes(pkg, ft, tiny_base, pins, tmp_path):
    again = tmp_path / "again"
    result = ft("base", "init-tiny", "--out", again)
    assert result.code == 0, result.err
    assert result.out == f"built {again}  sha256 {pins['smoke.yaml']}\n"
    for name in FILES:
        assert (again / name).read_bytes() == (tiny_base / name).read_bytes(), name


def test_init_tiny_replaces_an_existing_directory(pkg, pins, tmp_path):
    out = tmp_path / "base" / "tiny-llama"
    out.mkdir(parents=True)
    (out / "stale.bin").write_bytes(b"old")
    assert pkg.model.tiny.init_tiny(out) == pins["smoke.yaml"]
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert [p.name for p in out.parent.iterdir()] == ["tiny-llama"]  # no staging dir left


def test_init_tiny_leaves_a_directory_holding_the_same_bytes(pkg, pins, tmp_path):
    out = tmp_path / "tiny-llama"
    pkg.model.tiny.init_tiny(out)
    before = {p.name: p.stat().st_ino for p in [out, *out.iterdir()]}
    assert pkg.model.tiny.init_tiny(out) == pins["smoke.yaml"]
    # Not replaced: a parallel segment replay may be loading it while another builds.
    assert {p.name: p.stat().st_ino for p in [out, *out.iterdir()]} == before


def test_init_tiny_racing_builders_all_succeed(pkg, pins, tmp_path):
    """`ft reproduce --segments all --parallel N` starts N replays that each build an absent
    base; every builder must return the pin, and one directory must be left."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    out = tmp_path / "base" / "tiny-llama"
    start = Barrier(3)

    def build(_: int) -> str:
        start.wait()
        return pkg.model.tiny.init_tiny(out)

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(build, range(3))) == [pins["smoke.yaml"]] * 3
    assert [p.name for p in out.parent.iterdir()] == ["tiny-llama"]
    assert pkg.util.hashing.sha256_tree(out) == pins["smoke.yaml"]


def test_tiny_base_files_are_readable_like_any_other_file(tiny_base):
    modes = {name: (tiny_base / name).stat().st_mode & 0o777 for name in FILES}
    assert set(modes.values()) == {modes["config.json"]}, modes  # safetensors alone wrote 0600


def test_base_hash_prints_the_pin(ft, tiny_base, pins):
    result = ft("base", "hash", tiny_base)
    assert (result.code, result.out) == (0, pins["smoke.yaml"] + "\n")


def test_workdir_holds_the_pinned_base(pkg, workdir, pins):
    base = pkg.config.load_config("configs/smoke.yaml").model.base
    assert pkg.util.hashing.sha256_tree(base.path) == pins["smoke.yaml"]


def test_tiny_base_loads_with_transformers(tiny_base):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    assert model.config.model_type == "llama"
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # Special tokens agree between the tokenizer and the model config.
    assert len(tokenizer) == model.config.vocab_size == 512
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 1, 2)
    assert (model.config.bos_token_id, model.config.eos_token_id) == (0, 1)
    text = "Reverse the words: red fox -> fox red. Sum: 12 30 = 42!"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), 512)
    assert torch.isfinite(logits).all()


def test_tiny_weights_follow_the_documented_init(tiny_base, pkg):
    from safetensors.torch import load_file

    bound = pkg.model.tiny.TINY_CONFIG["initializer_range"] * 3**0.5
    for name, tensor in load_file(tiny_base / "model.safetensors").items():
        if name.endswith("norm.weight"):
            assert bool((tensor == 1).all()), name
        else:
            assert float(tensor.abs().max()) <= bound, name
            assert float(tensor.std()) > bound / 3, name  # uniform(-a, a) has std a / sqrt(3)


# --- the embedded small base (configs/small.yaml) ------------------------------------------
# 12 layers of width 512 on the tiny vocabulary: embeddings and head 2 x 512 x 512; per layer
# q/o 512x512, k/v 512x256, MLP 3 x 512x1536, 2 norms; the final norm.
SMALL_PARAMETERS = 2 * 512 * 512 + 12 * (
    2 * 512 * 512 + 2 * 512 * 256 + 3 * 512 * 1536 + 2 * 512
) + 512  # fmt: skip


@pytest.fixture(scope="module")
def small_base(pkg, tmp_path_factory):
    """`ft base init-small`'s handler, once for the module (~150 MB of float32 weights)."""
    import argparse
    import contextlib
    import io

    out = tmp_path_factory.mktemp("small") / "small-llama"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert pkg.cli.COMMANDS["base init-small"].run(argparse.Namespace(out=out)) == 0
    return out, printed.getvalue()


@pytest.mark.slow
def test_init_small_matches_the_pin_of_configs_small_yaml(pkg, small_base, tmp_path, tiny_base):
    out, printed = small_base
    pin = pkg.config.load_config(ROOT / "configs" / "small.yaml").model.base
    assert (pin.build, pin.path) == ("small", "base/small-llama")
    assert printed == f"built {out}  sha256 {pin.sha256}\n"
    assert sorted(p.name for p in out.iterdir()) == FILES
    # Built again, byte for byte; the tokenizer is the tiny one with a longer context.
    again = pkg.model.tiny.init_tiny(tmp_path / "again", "small")
    assert again == pin.sha256
    assert (out / "tokenizer.json").read_bytes() == (tiny_base / "tokenizer.json").read_bytes()


@pytest.mark.slow
def test_small_base_is_a_38m_llama_that_runs_512_tokens(small_base):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = small_base
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert sum(p.numel() for p in model.parameters()) == SMALL_PARAMETERS
    assert 30e6 < SMALL_PARAMETERS < 60e6
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 1024
    with torch.no_grad():
        logits = model(torch.arange(512).unsqueeze(0) % 512).logits
    assert logits.shape == (1, 512, 512) and torch.isfinite(logits).all()
