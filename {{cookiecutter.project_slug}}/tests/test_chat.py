"""Chat rows: rendered as the tokenizer's chat template renders them, loss on assistant turns.

    uv run pytest tests/test_chat.py -q

The tiny base's tokenizer carries a chat template (base.py); these tests hold the encoder
to `apply_chat_template` itself, check which tokens carry loss for each `data.loss_on`, and
that rows of the wrong shape or a base without a template are user errors, not tracebacks.
"""

import json
import shutil
from pathlib import Path

import pytest

CONVERSATION = [
    {"role": "system", "content": "Answer tersely."},
    {"role": "user", "content": "Add 2 and 3."},
    {"role": "assistant", "content": "5"},
    {"role": "user", "content": "Uppercase: red fox"},
    {"role": "assistant", "content": "RED FOX"},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)


def encode(pkg, tokenizer, messages, loss_on="assistant", max_len=512):
    from importlib import import_module

    chat = import_module(f"{pkg.__name__}.data.chat")
    return chat.encode_chat([{"messages": messages}], tokenizer, max_len, loss_on)[0]


def learned_text(tokenizer, example) -> str:
    return tokenizer.decode(
        [t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label >= 0]
    )


def test_ids_are_exactly_what_apply_chat_template_makes(pkg, tokenizer):
    example = encode(pkg, tokenizer, CONVERSATION)
    expected = tokenizer.apply_chat_template(CONVERSATION, return_dict=True)["input_ids"]
    assert example["input_ids"] == expected
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert rendered == (
        "<|bos|><|system|>\nAnswer tersely.<|eos|>\n<|user|>\nAdd 2 and 3.<|eos|>\n"
        "<|assistant|>\n5<|eos|>\n<|user|>\nUppercase: red fox<|eos|>\n"
        "<|assistant|>\nRED FOX<|eos|>\n"
    )


@pytest.mark.parametrize(
    "loss_on, learned",
    [
        ("assistant", "5<|eos|>\nRED FOX<|eos|>\n"),
        ("last_assistant", "RED FOX<|eos|>\n"),
    ],
)
def test_loss_only_on_assistant_turns_and_their_end(pkg, tokenizer, loss_on, learned):
    example = encode(pkg, tokenizer, CONVERSATION, loss_on)
    assert learned_text(tokenizer, example) == learned
    # The generation prompt is context: what follows it at inference is what was learned.
    prompt = tokenizer.apply_chat_template(
        CONVERSATION[:-1], add_generation_prompt=True, return_dict=True
    )["input_ids"]
    assert example["input_ids"][: len(prompt)] == prompt
    context = {"input_ids": prompt, "labels": example["labels"][: len(prompt)]}
    assert learned_text(tokenizer, context) == learned.removesuffix("RED FOX<|eos|>\n")


def test_loss_on_all_learns_every_token(pkg, tokenizer):
    example = encode(pkg, tokenizer, CONVERSATION, "all")
    assert example["labels"] == example["input_ids"]


def test_truncation_cuts_ids_and_labels_together(pkg, tokenizer):
    full = encode(pkg, tokenizer, CONVERSATION)
    cut = encode(pkg, tokenizer, CONVERSATION, max_len=20)
    assert cut["input_ids"] == full["input_ids"][:20]
    assert cut["labels"] == full["labels"][:20]


def test_template_hash_is_the_sha256_of_its_text(pkg, tokenizer):
    import hashlib
    from importlib import import_module

    chat = import_module(f"{pkg.__name__}.data.chat")
    digest = hashlib.sha256(pkg.model.tiny.CHAT_TEMPLATE.encode()).hexdigest()
    assert tokenizer.chat_template == pkg.model.tiny.CHAT_TEMPLATE
    assert chat.template_sha256(tokenizer) == digest


def test_a_template_that_is_not_prefix_stable_is_refused(pkg, tokenizer):
    from importlib import import_module

    chat = import_module(f"{pkg.__name__}.data.chat")
    odd = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    # Announces the number of turns up front: a prefix renders differently from the whole.
    odd.chat_template = "{{ messages|length }}" + pkg.model.tiny.CHAT_TEMPLATE
    with pytest.raises(pkg.errors.UserError) as caught:
        chat.encode_chat([{"messages": CONVERSATION}], odd, 512, "assistant", "configs/x.yaml")
    assert "data.loss_on" in str(caught.value) and "loss_on: all" in str(caught.value)
    # With loss on every token no span is needed, so it trains.
    assert chat.encode_chat([{"messages": CONVERSATION}], odd, 512, "all")[0]["labels"]


def test_a_base_without_a_chat_template_is_a_user_error(pkg, tokenizer):
    from importlib import import_module

    chat = import_module(f"{pkg.__name__}.data.chat")
    bare = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    bare.chat_template = None
    with pytest.raises(pkg.errors.UserError) as caught:
        chat.encode_chat([{"messages": CONVERSATION}], bare, 512, "assistant", "configs/x.yaml")
    assert "data.row_format" in str(caught.value) and "prompt_response" in str(caught.value)


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"prompt": "a", "response": "b"}, 'a chat row needs "messages"'),
        ({"messages": [{"role": "user", "content": "hi"}]}, "at least one assistant turn"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0] needs a role of"),
        ({"messages": [{"role": "assistant", "content": 3}]}, 'needs a string "content"'),
    ],
)
def test_a_row_of_the_wrong_shape_names_source_row_and_key(ft, data_workdir, row, problem):
    path = Path("data/raw/chat-train.jsonl")
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    import hashlib

    pin = f"--set=data.sources.0.sha256={hashlib.sha256(path.read_bytes()).hexdigest()}"
    ft("data", "check", pin).user_error(
        "error: data/raw/chat-train.jsonl: data.row_format: row 1201 of source 'chat-train' "
        "is not a chat row",
        problem,
    )


def test_prompt_response_sources_are_still_a_format(ft, data_workdir):
    # The original task rows, read as prompt/response into a lock of their own.
    result = ft(
        "data",
        "build",
        "--set=data.row_format=prompt_response",
        "--set=data.sources.0.path=data/raw/train.jsonl",
        f"--set=data.sources.0.sha256={_sha('data/raw/train.jsonl')}",
        "--set=data.sources.1.path=data/raw/eval.jsonl",
        f"--set=data.sources.1.sha256={_sha('data/raw/eval.jsonl')}",
        "--set=data.lock=prompt-response.lock",
    )
    assert result.code == 0, result.err
    row = json.loads(Path("data/build/train.jsonl").read_text().splitlines()[0])
    assert set(row) == {"prompt", "response"}
    # Chat rows are refused under prompt_response, naming the key.
    ft("data", "check", "--set=data.row_format=prompt_response").user_error(
        "data.row_format", "is not a prompt_response row"
    )


def test_chat_rows_through_the_filters(pkg):
    filters = pkg.data.filters.FILTERS

    def chat(question, answer):
        return {
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
        }

    assert filters["normalize_whitespace"].fn(chat("  a \t b ", "c\n")) == chat("a b", "c")
    assert filters["drop_empty"].fn(chat("a", "")) is None
    assert filters["drop_empty"].fn(chat("a", "b")) == chat("a", "b")
    assert filters["max_chars"].fn(chat("abc", "de"), limit=5) == chat("abc", "de")
    assert filters["max_chars"].fn(chat("abc", "def"), limit=5) is None
    assert filters["drop_containing"].fn(chat("a", "TODO later"), phrases=["todo"]) is None
    rows = [chat("a", "b"), chat("a", "c"), chat("a", "b")]
    assert list(filters["dedupe"].fn(rows)) == rows[:2]


def test_a_template_change_moves_the_base_pins(pkg, tiny_base, data_workdir):
    """Same weights, another chat template: the template pin and the tokenizer pin move."""
    from importlib import import_module

    model = import_module(f"{pkg.__name__}.model")
    edited = data_workdir / "base" / "edited"
    shutil.copytree(tiny_base, edited)
    config_file = edited / "tokenizer_config.json"
    tok_config = json.loads(config_file.read_text())
    tok_config["chat_template"] = tok_config["chat_template"].replace("'\\n'", "': '")
    config_file.write_text(json.dumps(tok_config, indent=2, sort_keys=True) + "\n")

    def pins(path):
        cfg = pkg.config.load_config(
            "configs/smoke.yaml",
            [
                f"model.base.path={path}",
                f"model.base.sha256={pkg.util.hashing.sha256_tree(path)}",
                "model.base.build=null",
            ],
        )
        return model.load_base(cfg)[2]

    before, after = pins(tiny_base), pins(edited)
    assert before["chat_template_sha256"] != after["chat_template_sha256"]
    assert before["tokenizer_sha256"] != after["tokenizer_sha256"]


def _sha(path: str) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
