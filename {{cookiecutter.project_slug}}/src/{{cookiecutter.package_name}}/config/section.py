"""What every config section shares: unknown keys refused, field docstrings kept as
descriptions, no inf/nan, no booleans where numbers go; and the pin patterns."""

import re
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

DEFAULT_CONFIG = "configs/recipe.yaml"
HEX40 = re.compile(r"[0-9a-f]{40}")
HEX64 = re.compile(r"[0-9a-f]{64}")
IMAGE_DIGEST = re.compile(r"[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}")


class Section(BaseModel):
    # Each field's docstring is its description: `ft config show --doc` and docs/config.md.
    # inf/nan validate as floats by default (`lr: .inf`): refused, a run would diverge.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, raw):
        """`seed: true` would silently become 1: a number key takes a number only."""
        if isinstance(raw, dict):
            for name, field in cls.model_fields.items():
                if field.annotation in (int, float, int | None, float | None) and isinstance(
                    raw.get(name), bool
                ):
                    raise ValueError(f"`{name}` must be a number, got {raw[name]!r}")
        return raw


V = TypeVar("V", bound=str | None)


def must_match(value: V, pattern: re.Pattern, message: str) -> V:
    """`value` if it is null or matches `pattern` whole; else ValueError(message)."""
    if value is not None and not pattern.fullmatch(value):
        raise ValueError(message)
    return value
