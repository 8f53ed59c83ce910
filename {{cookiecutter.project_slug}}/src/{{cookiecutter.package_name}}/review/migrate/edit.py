"""Editing a config's `model.base` block in place: the block is replaced, every other line
(and its comment) kept as written."""

import re
from pathlib import Path

from ...config import BaseModelSpec
from ...errors import UserError

# `base:` at some indent, then every deeper-indented, comment or blank line after it.
_BASE_BLOCK = re.compile(
    r"(?m)^(?P<indent>[ ]+)base:[ \t]*(#.*)?\n"
    r"(?P<body>(?:(?P=indent)[ ]+.*\n|[ \t]*#.*\n|[ \t]*\n)*)"
)


def base_lines(spec: BaseModelSpec, indent: str) -> list[str]:
    pad = indent + "  "
    if spec.path is not None:
        lines = [
            f"{pad}path: {spec.path}   # base model directory (set by ft migrate: migration.md)",
            f"{pad}sha256: {spec.sha256}  # content hash; a mismatch stops the run",
        ]
        if spec.build is not None:
            lines.append(f"{pad}build: {spec.build}   # rebuilt by `ft base init-tiny` when absent")
        return lines
    lines = [
        f"{pad}hub_id: {spec.hub_id}   # hub repo of the base (set by ft migrate: migration.md)",
        f'{pad}revision: "{spec.revision}"  # 40-hex commit: a branch or tag name is refused',
    ]
    if spec.tokenizer_revision is not None:
        lines.append(
            f'{pad}tokenizer_revision: "{spec.tokenizer_revision}"  # the tokenizer\'s commit'
        )
    return lines


def edit_config(path: str, spec: BaseModelSpec) -> str:
    """The config text with its `model.base` block replaced (comments elsewhere kept)."""
    text = Path(path).read_text()
    match = _BASE_BLOCK.search(text)
    if match is None:
        raise UserError(
            "found no `base:` block under `model:`",
            file=path,
            key="model.base",
            fix="write model.base by hand (docs/migration.md shows both forms)",
        )
    new = "\n".join(base_lines(spec, match["indent"])) + "\n"
    blank = re.search(r"\n((?:[ \t]*\n)*)$", match["body"])  # blank lines after it
    trailing = blank[1] if blank else ""
    head = text[: match.start("body")]
    return head + new + trailing + text[match.end("body") :]
