"""Chat rows: `messages` rendered with the base tokenizer's chat template, loss on assistant turns.

    data:
      row_format: chat        # rows are {"messages": [{"role": ..., "content": ...}, ...]}
      loss_on: assistant      # assistant | last_assistant | all

A row is rendered exactly as `tokenizer.apply_chat_template(messages)` renders it (the
template is the base tokenizer's, so training and inference see the same text), then
tokenized once. Which tokens carry loss comes from character spans: the assistant text of
turn i is what `render(messages[:i + 1])` adds to `render(messages[:i], generation prompt)`,
its closing end-of-turn marker included, so the model learns to stop. That needs a template
whose rendering of a prefix is a prefix of the rendering (true of common templates); one
that is not is refused with a message naming the key, never trained on silently wrong masks.

The template text is an input of the closure: `template_sha256` goes into the manifest's
base-model pins, REPRODUCE.md and `ft diff`.
"""

import hashlib

from ..errors import UserError

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")
LOSS_ON = ("assistant", "last_assistant", "all")


def row_problem(row: dict, fmt: str) -> str | None:
    """Why `row` is not a row of format `fmt` (None when it is)."""
    if fmt == "prompt_response":
        if not all(isinstance(row.get(k), str) for k in ("prompt", "response")):
            return 'a prompt_response row needs string "prompt" and "response"'
        return None
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return 'a chat row needs "messages", a non-empty list'
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return f"messages[{i}] needs a role of {', '.join(ROLES)}"
        if not isinstance(m.get("content"), str):
            return f'messages[{i}] needs a string "content"'
    if not any(m["role"] == "assistant" for m in messages):
        return "a chat row needs at least one assistant turn (nothing to learn otherwise)"
    return None


def template_text(tokenizer) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one is used
        template = template.get("default")
    return template


def template_sha256(tokenizer) -> str | None:
    """sha256 of the chat template text the tokenizer applies (None if it has none)."""
    text = template_text(tokenizer)
    return hashlib.sha256(text.encode()).hexdigest() if text else None


def render_chat(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    """Messages as text, through the base's own chat template: what training encodes, and
    (with the generation prompt) what an eval suite's completion continues."""
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )


def assistant_spans(tokenizer, messages: list[dict], loss_on: str) -> tuple[str, list]:
    """(rendered text, [(start, end) character spans that carry loss])."""
    text = render_chat(tokenizer, messages)
    if loss_on == "all":
        return text, [(0, len(text))]
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if loss_on == "last_assistant":
        turns = turns[-1:]
    spans = []
    for i in turns:
        before = render_chat(tokenizer, messages[:i], generation_prompt=True) if i else ""
        through = render_chat(tokenizer, messages[: i + 1])
        if not (text.startswith(through) and through.startswith(before)):
            raise TemplateNotPrefixStable(i)
        spans.append((len(before), len(through)))
    return text, spans


class TemplateNotPrefixStable(Exception):
    """The template renders a conversation's prefix as something other than a prefix."""


def encode_chat(
    rows: list[dict], tokenizer, max_len: int, loss_on: str, config_path: str = ""
) -> list[dict]:
    """Token ids (as apply_chat_template makes them) and labels (-100 outside loss spans)."""
    if template_text(tokenizer) is None:
        raise UserError(
            "data.row_format is chat but the base tokenizer has no chat template",
            file=config_path,
            key="data.row_format",
            fix="use a base whose tokenizer defines chat_template, or row_format: prompt_response",
        )
    out = []
    for index, row in enumerate(rows):
        try:
            text, spans = assistant_spans(tokenizer, row["messages"], loss_on)
        except TemplateNotPrefixStable as e:
            raise UserError(
                f"the base's chat template does not render row {index}'s conversation up to "
                f"turn {e.args[0]} as a prefix of the whole, so assistant tokens cannot be "
                "located",
                file=config_path,
                key="data.loss_on",
                fix="set data.loss_on: all, or use a base whose template renders prefixes stably",
            ) from None
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"][:max_len]
        labels = [
            tok if any(s <= start < e for s, e in spans) else IGNORE_INDEX
            for tok, (start, _) in zip(ids, enc["offset_mapping"], strict=False)
        ]
        out.append({"input_ids": ids, "labels": labels})
    return out
