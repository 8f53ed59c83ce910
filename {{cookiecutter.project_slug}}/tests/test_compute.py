"""Compute options: bfloat16 base, attention kernel, gradient checkpointing, all-linear LoRA,
sequence packing, fused optimizer (train/compute.py, data/packing.py).

    uv run pytest tests/test_compute.py -q                 # the fast checks
    uv run pytest tests/test_compute.py -q -m slow         # each option's re-run and resume

The fast checks hold each option to what it promises (dtypes, modules, masks, the error a
machine that cannot run it gives). The slow ones train the smoke config with one option on
twice: uninterrupted in this process, and in an `ft` process SIGKILLed after step 6 then
resumed from checkpoint 4 in another; both must give the same adapter and metrics bytes.
"""

import json
from pathlib import Path

import pytest
from test_closure import SMOKE, _env, _make_project, adapter_bytes, kill_after_step, mod
from test_closure import ft as ft_process

OPTIONS = {
    "bfloat16": ["model.dtype=bfloat16"],
    "eager": ["model.attn_implementation=eager"],
    "checkpointing": ["train.gradient_checkpointing=true"],
    "all-linear": ["model.lora.target_modules=all-linear"],
    "packing": ["data.packing=true"],
    "fused": ["train.fused_optimizer=true"],
}
LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


# -- what each option does (fast) ------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(pkg):
    root = Path(__file__).resolve().parents[1]
    return lambda *overrides: pkg.config.load_config(root / "configs/smoke.yaml", overrides)


def model_for(pkg, cfg, tiny_base):
    """The base as the recipe loads it (compute options applied) plus the adapter."""
    import importlib

    import torch

    model_stage = importlib.import_module(f"{pkg.__name__}.model")
    compute = mod("train.compute")
    cfg.model.base.path = str(tiny_base)  # the session's copy, at the pinned hash
    base, tokenizer, _ = model_stage.load_base(cfg)
    compute.prepare_base(cfg, base)
    torch.manual_seed(0)
    model = model_stage.add_lora(cfg, base)
    compute.check_adapter(cfg, model)
    return model, tokenizer


def test_bfloat16_base_keeps_a_float32_adapter(pkg, smoke, tiny_base):
    import torch

    model, _ = model_for(pkg, smoke("model.dtype=bfloat16"), tiny_base)
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trained = {p.dtype for p in model.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}
    # A bf16 matmul on CPU runs, and the loss is finite.
    ids = torch.arange(3, 40).unsqueeze(0)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and all(g is not None and g.dtype == torch.float32 for g in grads)


def test_attention_kernel_is_the_configured_one(pkg, smoke, tiny_base):
    for kernel in ("sdpa", "eager"):
        model, _ = model_for(pkg, smoke(f"model.attn_implementation={kernel}"), tiny_base)
        assert model.config._attn_implementation == kernel


def test_gradient_checkpointing_is_on_and_changes_no_gradient(pkg, smoke, tiny_base):
    import torch

    grads = {}
    for on in (False, True):
        model, _ = model_for(
            pkg, smoke(f"train.gradient_checkpointing={on}", "model.lora.dropout=0.2"), tiny_base
        )
        assert model.base_model.model.is_activation_checkpointing is on
        embedded = model.get_input_embeddings()(torch.arange(3, 9).unsqueeze(0))
        assert embedded.requires_grad is on  # input grads, as peft needs with checkpointing
        model.train()
        torch.manual_seed(7)  # the same dropout masks: checkpointing replays the RNG state
        ids = torch.arange(3, 60).unsqueeze(0)
        model(input_ids=ids, labels=ids).loss.backward()
        grads[on] = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    assert all(torch.equal(a, b) for a, b in zip(grads[False], grads[True], strict=True))


def test_all_linear_adapts_every_linear_layer_but_the_head(pkg, smoke, tiny_base):
    model, _ = model_for(pkg, smoke("model.lora.target_modules=all-linear"), tiny_base)
    names = [n for n, _ in model.named_parameters()]
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in names if ".lora_A." in n}
    assert adapted == LINEAR
    assert not any("lm_head.lora" in n for n in names)


def test_fused_optimizer_uses_the_fused_kernel(pkg, smoke):
    compute = mod("train.compute")
    assert compute.optimizer_kwargs(smoke()) == {"foreach": False, "fused": False}
    assert compute.optimizer_kwargs(smoke("train.fused_optimizer=true"))["fused"] is True


def test_packing_is_next_fit_in_order():
    packing = mod("data.packing")
    import numpy as np

    starts = packing.row_starts(np.array([5, 4, 3, 8, 1, 1, 9]), 10)
    assert starts.tolist() == [0, 2, 3, 6, 7]  # rows [5 4] [3] [8 1 1] [9]
    examples = [
        {"input_ids": [10, 11, 12], "labels": [-100, 11, 12]},
        {"input_ids": [20, 21], "labels": [20, 21]},
        {"input_ids": [30, 31, 32, 33], "labels": [-100, -100, 32, 33]},
    ]
    packed = packing.Packed(examples, 6)
    assert len(packed) == 2
    assert packed[0] == {
        "input_ids": [10, 11, 12, 20, 21],
        "labels": [-100, 11, 12, -100, 21],  # an example's first token is never a target
        "position_ids": [0, 1, 2, 0, 1],
    }
    assert packed[1]["position_ids"] == [0, 1, 2, 3]


def test_a_packed_row_scores_as_its_examples_apart(pkg, tiny_base, smoke):
    """Attention stays inside each example: the summed loss of a packed batch equals the
    losses of its examples run one by one (float rounding apart)."""
    import torch

    loader, packing = mod("data.loader"), mod("data.packing")
    token_loss = mod("evaluate").token_loss
    model, tokenizer = model_for(pkg, smoke("model.lora.dropout=0"), tiny_base)
    model.eval()
    rows = [{"prompt": f"item {i} " * (i + 1), "response": f"answer {i}"} for i in range(7)]
    examples = loader.encode(rows, tokenizer, 64)
    packed = packing.Packed(examples, 64)
    assert 1 < len(packed) < len(examples)
    collate = loader.Collate(tokenizer.pad_token_id)
    with torch.no_grad():
        together, n_together = token_loss(model, collate([packed[i] for i in range(len(packed))]))
        apart = [token_loss(model, collate([e])) for e in examples]
    assert n_together == sum(n for _, n in apart)
    assert torch.allclose(together, sum(loss for loss, _ in apart), rtol=1e-5)


def test_packed_rows_from_the_store_equal_rows_from_memory(pkg, tmp_path):
    import numpy as np

    packing = mod("data.packing")
    examples = [{"input_ids": list(range(n)), "labels": list(range(n))} for n in (3, 7, 2, 9)]

    class Store(list):  # a token store exposes its offsets; the lengths come from them
        offsets = np.cumsum([0, 3, 7, 2, 9])

    assert packing.lengths(Store(examples)).tolist() == packing.lengths(examples).tolist()
    assert packing.Packed(Store(examples), 10).starts.tolist() == [0, 2, 3, 4]  # [3 7] [2] [9]


@pytest.mark.parametrize(
    "overrides, needles",
    [
        (
            ["model.attn_implementation=flash_attention_2"],
            ["model.attn_implementation", "CUDA", "sdpa"],
        ),
        (["model.attn_implementation=flash"], ["model.attn_implementation", "flash_attention_2"]),
        (["model.lora.target_modules=all"], ["model.lora.target_modules", "all-linear"]),
        (["model.dtype=float16"], ["model.dtype", "bfloat16"]),
        (["data.packing=maybe"], ["data.packing"]),
        (["train.fused_optimizer=2"], ["train.fused_optimizer"]),
    ],
)
def test_bad_values_are_one_clean_error(ft, workdir, overrides, needles):
    result = ft("train", *SMOKE, *sets(overrides), "--out", "runs/bad")
    result.user_error("configs/smoke.yaml", *needles)
    assert not (workdir / "runs" / "bad").exists()


# -- each option keeps byte-identical re-runs and resumes (slow) ---------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return _make_project(tmp_path_factory.mktemp("compute-project"))


@pytest.fixture(scope="module")
def default_run(project) -> Path:
    """The smoke run with no option, in its own process."""
    ft_process(project, "train", *SMOKE, "--out", "runs/default")
    return project / "runs" / "default"


@pytest.mark.slow
@pytest.mark.parametrize("option", OPTIONS)
def test_option_reruns_and_resumes_byte_identically(project, default_run, option, monkeypatch):
    overrides = OPTIONS[option]
    monkeypatch.chdir(project)
    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    whole = project / mod("train.recipe").main(
        "configs/smoke.yaml", overrides, out=f"runs/{option}"
    )
    args = [*SMOKE, *sets(overrides)]
    killed = kill_after_step(project, args, f"runs/{option}-killed", 6)
    resumed = ft_process(project, "train", "--out", f"runs/{option}-killed", "--resume")
    assert "resuming from checkpoints/step-00000004 (step 4)" in resumed.stderr
    assert adapter_bytes(killed) == adapter_bytes(whole)
    assert (killed / "metrics.jsonl").read_bytes() == (whole / "metrics.jsonl").read_bytes()
    assert (killed / "eval.json").read_bytes() == (whole / "eval.json").read_bytes()
    # The option took effect: other bytes than the default run, except checkpointing,
    # whose recomputation is exact and so must give the default run's bytes.
    if option == "checkpointing":
        assert adapter_bytes(whole) == adapter_bytes(default_run)
    else:
        assert adapter_bytes(whole) != adapter_bytes(default_run)
    config = json.loads((whole / "manifest.json").read_text())["config"]
    assert config == json.loads((killed / "manifest.json").read_text())["config"]
