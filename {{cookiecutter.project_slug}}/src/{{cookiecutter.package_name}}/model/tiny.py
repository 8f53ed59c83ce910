"""The embedded default base model: a tiny Llama-style LM built offline, byte for byte.

    uv run ft base init-tiny --out base/tiny-llama   # prints the content hash
    uv run ft base init-tiny --variant tiny-v2 --out base/tiny-llama-v2
    uv run ft base init-small --out base/small-llama  # ~38M parameters, for configs/small.yaml
    uv run ft base hash base/tiny-llama

No hub is needed: a byte-level BPE tokenizer is trained with `tokenizers` on a
fixed corpus below, and weights come from a PCG64 stream turned into floats with
exact arithmetic only (no transcendental functions, whose last bits vary with the
CPU's vector unit). Every file is written by this module with fixed content, so
the directory hashes the same on every machine; configs pin that hash.

`tiny-v2` is a second embedded base for rehearsing a base-model migration offline
(`ft migrate`, docs/migration.md): the same architecture with a smaller vocabulary
trained on a different corpus, so its tokenizer splits rows differently (different
merges, more tokens per row) and its embedding matrices change the parameter count.

`small` is the same recipe at a size where kernels, not Python, dominate a step: the default
tokenizer (its context raised to 1024) and a 12-layer, 512-wide body, about 38M parameters
(150 MB of float32), for configs/small.yaml and the benchmarks.
"""

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..util.hashing import default_mode, sha256_tree, write_atomic

TINY_SEED = 20240611
TINY_CONFIG: dict[str, Any] = {  # config.json of the embedded base
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 2,
    "torch_dtype": "float32",
}
SPECIAL_TOKENS = ["<|bos|>", "<|eos|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]
# The tokenizer's chat template (Jinja, as transformers' apply_chat_template runs it): a role
# header token, the content, EOS closing the turn. Training renders chat rows with it and
# `ft generate` prompts with it, so what the adapter learns is what inference sends.
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{- raise_exception('roles are system, user and assistant, got ' + message['role']) -}}"
    "{%- endif -%}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)
# One readable string; the order of its words is part of the model's hash.
_WORDS = (  # noqa: SIM905
    "the of and to in is it you that he was for on are with as his they be at one have "
    "this from or had by word but what some we can out other were all there when up use "
    "your how said an each she which do their time if will way about many then them write "
    "would like so these her long make thing see him two has look more day could go come "
    "did number sound no most people my over know water than call first who may down side "
    "been now find reverse sort add subtract uppercase lowercase count letters words "
    "answer question list repeat spell first last vowels digits sum"
).split()


def _corpus() -> list[str]:
    """A fixed training corpus for the tokenizer: words, digits, punctuation."""
    lines = [" ".join(_WORDS[i : i + 12]) for i in range(0, len(_WORDS), 12)]
    lines += [" ".join(str(n) for n in range(start, start + 20)) for start in range(0, 400, 20)]
    lines += ["".join(chr(c) for c in range(32, 127))]
    lines += [f"{w.capitalize()}: {w.upper()}? {w[::-1]}." for w in _WORDS]
    return lines


# variant -> (vocabulary size, corpus). "tiny" is the default and must never change.
VARIANTS = {"tiny": (512, "full"), "tiny-v2": (300, "tasks"), "small": (512, "full")}
# The body of `small`: 12 layers of width 512 (8 query heads of 64, 4 key/value heads),
# MLP 1536: 12 x (2 x 512^2 + 2 x 512 x 256 + 3 x 512 x 1536) + 2 x 512^2 ~ 38.3M parameters.
SMALL_SHAPE = {
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "max_position_embeddings": 1024,
}
# The embedded data set's task vocabulary (which the default tokenizer never saw).
_TASK_WORDS = (  # noqa: SIM905
    "apple river stone cloud tiger lemon piano rocket garden window silver orange "
    "forest candle bridge pepper marble violet thunder planet button castle meadow "
    "harbor jacket kettle ladder mirror needle pillow rabbit saddle tunnel wallet"
).split()


def _variant_config(variant: str) -> dict:
    shape = SMALL_SHAPE if variant == "small" else {}
    return TINY_CONFIG | shape | {"vocab_size": VARIANTS[variant][0]}


def _variant_corpus(variant: str) -> list[str]:
    if VARIANTS[variant][1] == "full":
        return _corpus()
    # The task words and prompts only: shorter rows of those words, longer rows of digits
    # and of the default's words, so rows move across a context window both ways.
    words = [" ".join(_TASK_WORDS[i : i + 6]) for i in range(0, len(_TASK_WORDS), 6)]
    words += [f"{w} " * 3 for w in _TASK_WORDS]
    prompts = "Reverse the words: Sort the letters of Uppercase: Last word of: Count the words:"
    return words + [prompts] * 3


def _build_tokenizer(out: Path, variant: str = "tiny") -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_variant_config(variant)["vocab_size"],
        special_tokens=SPECIAL_TOKENS,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_variant_corpus(variant), trainer=trainer)
    write_atomic(out / "tokenizer.json", tok.to_str(pretty=True) + "\n")
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": SPECIAL_TOKENS[0],
        "eos_token": SPECIAL_TOKENS[1],
        "pad_token": SPECIAL_TOKENS[2],
        "model_max_length": _variant_config(variant)["max_position_embeddings"],
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    write_atomic(
        out / "tokenizer_config.json", json.dumps(tokenizer_config, indent=2, sort_keys=True) + "\n"
    )


def _weights(config: dict = TINY_CONFIG) -> dict:
    """Deterministic init: uniform(-a, a) with a = std * sqrt(3), norms at 1."""
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        shapes = {
            k: tuple(v.shape)
            for k, v in LlamaForCausalLM(LlamaConfig(**config)).state_dict().items()
        }
    bits = np.random.PCG64(TINY_SEED)
    half_width = TINY_CONFIG["initializer_range"] * 3**0.5
    tensors = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith("norm.weight"):
            tensors[name] = torch.ones(shape, dtype=torch.float32)
            continue
        n = int(np.prod(shape))
        top24 = (bits.random_raw(n) >> np.uint64(40)).astype(np.float64)  # exact
        unit = (top24 + 0.5) / float(1 << 24) * 2.0 - 1.0  # exact in float64
        tensors[name] = torch.from_numpy((unit * half_width).astype(np.float32).reshape(shape))
    return tensors


def init_tiny(out: str | Path, variant: str = "tiny") -> str:
    """Build the tiny base model `variant` into `out` (replacing it atomically); return its
    hash.

    Safe to race: parallel segment replays each build the base when it is absent. An `out`
    that already holds these exact bytes is left alone (a reader may be loading it), and a
    rename that loses to a concurrent builder of the same bytes is not an error.
    """
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the model is not a secret
    try:
        write_atomic(
            staging / "config.json",
            json.dumps(_variant_config(variant), indent=2, sort_keys=True) + "\n",
        )
        weights = _weights(_variant_config(variant))
        save_file(weights, str(staging / "model.safetensors"), metadata={"format": "pt"})
        default_mode(staging / "model.safetensors")  # safetensors writes 0600
        _build_tokenizer(staging, variant)
        built = sha256_tree(staging)
        if out.exists():
            if out.is_dir() and sha256_tree(out) == built:
                return built  # already these bytes: keep it, a reader may hold it open
            shutil.rmtree(out)
        try:
            staging.rename(out)
        except OSError:
            # A concurrent builder renamed first; deterministic, so its bytes are ours.
            if out.is_dir() and sha256_tree(out) == built:
                return built
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sha256_tree(out)
