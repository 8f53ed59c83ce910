"""The token store (data/tokens.py): built once per pin set, mapped after, never stale.

    uv run pytest tests/test_tokens.py -q

Each example the store serves equals what tokenizing the row in memory gives (the
byte-identical training run is in tests/test_closure.py); a second call reuses the store
without reading the data; a tokenizer, chat template or max_seq_len change builds another
one; a changed store file is refused.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = "configs/recipe.yaml"


@pytest.fixture
def tokenizer(workdir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(workdir / "base" / "tiny-llama")


def module(pkg, name: str):
    import importlib

    return importlib.import_module(f"{pkg.__name__}.{name}")


@pytest.fixture
def base_pins(pkg, workdir):
    tiny = workdir / "base" / "tiny-llama"
    return {"tokenizer_sha256": module(pkg, "model").tokenizer_hash(tiny)}


def tokens(pkg):
    return module(pkg, "data.tokens")


def examples(pkg, cfg, tokenizer, pins):
    return tokens(pkg).training_examples(cfg, tokenizer, pins)


def test_store_serves_what_tokenizing_in_memory_gives(pkg, workdir, tokenizer, base_pins):
    cfg = pkg.config.load_config(RECIPE)
    lock, train, held_out, store = examples(pkg, cfg, tokenizer, base_pins)
    memory = pkg.config.load_config(RECIPE, ["data.token_store=false"])
    lock_m, train_m, held_out_m, none = examples(pkg, memory, tokenizer, base_pins)
    assert none is None and lock == lock_m
    assert (len(train), len(held_out)) == (
        lock["splits"]["train"]["rows"],
        lock["splits"]["eval"]["rows"],
    )
    assert [train[i] for i in range(len(train))] == train_m
    assert held_out[0 : len(held_out)] == held_out_m  # slices, as evaluate.py reads them
    meta = json.loads((Path(store["path"]) / "meta.json").read_text())
    assert store["sha256"] == meta["sha256"] and store["key"]["max_seq_len"] == cfg.data.max_seq_len
    assert store["key"]["splits"]["train"] == lock["splits"]["train"]["sha256"]


def test_second_call_reuses_the_store_without_reading_data(
    pkg, workdir, tokenizer, base_pins, monkeypatch
):
    cfg = pkg.config.load_config(RECIPE)
    *_, first = examples(pkg, cfg, tokenizer, base_pins)
    built = {p.name: p.stat().st_mtime_ns for p in Path(first["path"]).iterdir()}

    def no_data_pass(*args, **kwargs):
        raise AssertionError("the warm path must not stream the data")

    monkeypatch.setattr(tokens(pkg), "check", no_data_pass)
    *_, second = examples(pkg, cfg, tokenizer, base_pins)
    assert second == first
    assert {p.name: p.stat().st_mtime_ns for p in Path(first["path"]).iterdir()} == built


@pytest.mark.parametrize(
    "change",
    ["template", "tokenizer", "max_seq_len", "data"],
)
def test_any_pin_change_builds_another_store(pkg, workdir, tokenizer, base_pins, change):
    cfg = pkg.config.load_config(RECIPE)
    *_, first = examples(pkg, cfg, tokenizer, base_pins)
    if change == "template":
        tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    elif change == "tokenizer":
        base_pins = {"tokenizer_sha256": "f" * 64}
    elif change == "max_seq_len":
        cfg = pkg.config.load_config(RECIPE, ["data.max_seq_len=64"])
    else:
        cfg = pkg.config.load_config(RECIPE, ["data.filters.2.params.limit=40"])
        pkg.data.build.build(cfg)  # the intended data change, with its new data.lock
    *_, second = examples(pkg, cfg, tokenizer, base_pins)
    assert second["path"] != first["path"] and second["key"] != first["key"]
    assert len(list(Path(second["path"]).parent.iterdir())) == 2


def test_a_changed_store_file_is_refused(pkg, ft, workdir, tokenizer, base_pins):
    cfg = pkg.config.load_config(RECIPE)
    *_, store = examples(pkg, cfg, tokenizer, base_pins)
    target = Path(store["path"]) / "train.tokens"
    data = bytearray(target.read_bytes())
    data[10] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(pkg.errors.UserError) as info:
        examples(pkg, cfg, tokenizer, base_pins)
    assert "train.tokens has sha256" in str(info.value) and "delete" in str(info.value)


def test_a_data_change_without_its_lock_builds_nothing(pkg, workdir, tokenizer, base_pins):
    cfg = pkg.config.load_config(RECIPE, ["data.filters.2.params.limit=40"])
    with pytest.raises(pkg.errors.UserError, match="data.lock is out of date"):
        examples(pkg, cfg, tokenizer, base_pins)
    assert not list(Path("data").glob("build/tokens/*"))


def test_gc_keeps_the_most_recently_used_stores(pkg, ft, workdir, tokenizer, base_pins):
    cfgs = [pkg.config.load_config(RECIPE, [f"data.max_seq_len={n}"]) for n in (192, 64, 96)]
    first, middle, last = (examples(pkg, c, tokenizer, base_pins)[-1] for c in cfgs)
    examples(pkg, cfgs[0], tokenizer, base_pins)  # the first store used again: the newest
    stores = Path(first["path"]).parent
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    (stores / f".building-{dead}").mkdir()  # a build whose process was killed
    (stores / f".building-{os.getpid()}").mkdir()  # one in progress

    dry = ft("data", "gc", "--keep", "2", "--dry-run")
    assert dry.code == 0 and f"would remove {middle['path']}" in dry.out
    assert Path(middle["path"]).is_dir()
    done = ft("data", "gc", "--keep", "2")
    assert done.code == 0 and "removed 2 token store(s)" in done.out
    assert sorted(p.name for p in stores.iterdir()) == sorted(
        [Path(first["path"]).name, Path(last["path"]).name, f".building-{os.getpid()}"]
    )
    assert ft("data", "gc", "--keep", "0").code == 0
    assert [p.name for p in stores.iterdir()] == [f".building-{os.getpid()}"]
    # Nothing is lost but disk: the next run rebuilds a removed store with the same bytes.
    again = examples(pkg, cfgs[1], tokenizer, base_pins)[-1]
    assert again == middle
    ft("data", "gc", "--keep", "-1").user_error("--keep", "0 or more")
