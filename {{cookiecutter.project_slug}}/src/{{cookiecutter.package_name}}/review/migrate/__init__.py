"""`ft migrate`: move the recipe to another base model as one reviewable change.

    uv run ft migrate --hub-id ORG/NAME --revision <40 hex> [--tokenizer-revision <40 hex>]
    uv run ft migrate --path base/tiny-llama-v2 --sha256 <64 hex> [--build tiny-v2]

Edits the `model.base` block of the config (default configs/recipe.yaml) and writes
migration.md: for every training split and eval suite, the tokenizer drift between the
old base and the new one (rows whose token count crosses `data.max_seq_len` in either
direction, named; tokens lost to truncation before and after; the distribution of the
per-row token-count change), whether the special tokens and the chat template changed,
the parameter count and architecture change, and the commands that follow (train, gate
against the last release on the old base, open the pull request). Nothing trains here.
`ft plan` recomputes the same drift section for a pull request that changes the base
(`plan_section`), so the comment never trusts a committed migration.md.
Token counts are those `ft train` sees: data/loader.py's `encode`, untruncated.

The package: drift.py measures (loads both bases, counts tokens), edit.py rewrites the
config's base block, report.py writes the Markdown; this module is the command.
"""

import yaml
from pydantic import ValidationError

from ...config import BaseModelSpec, Config, load_config
from ...errors import UserError
from ...util.hashing import write_atomic
from .drift import measure
from .edit import edit_config
from .report import body, render


def _validate(config: str, text: str) -> None:
    try:
        Config.model_validate(yaml.safe_load(text))
    except (ValidationError, yaml.YAMLError) as e:
        raise UserError(
            f"the edited config would not validate ({str(e).splitlines()[0]})",
            file=config,
            key="model.base",
            fix="edit model.base by hand (docs/migration.md shows both forms)",
        ) from None


def new_spec(
    hub_id: str | None,
    revision: str | None,
    tokenizer_revision: str | None,
    path: str | None,
    sha256: str | None,
    build: str | None,
) -> BaseModelSpec:
    if (hub_id is None) == (path is None):
        raise UserError(
            "name the new base once", key="--hub-id/--path", fix="pass --hub-id or --path"
        )
    fields = {
        "hub_id": hub_id,
        "revision": revision,
        "tokenizer_revision": tokenizer_revision,
        "path": path,
        "sha256": sha256,
        "build": build,
    }
    try:
        return BaseModelSpec.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        key = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "--hub-id/--path"
        raise UserError(
            err["msg"].removeprefix("Value error, "),
            key=key,
            fix="--revision and --tokenizer-revision are 40-hex commits; --sha256 is what "
            "`ft base hash DIR` prints",
        ) from None


def main(
    config: str,
    hub_id: str | None = None,
    revision: str | None = None,
    tokenizer_revision: str | None = None,
    path: str | None = None,
    sha256: str | None = None,
    build: str | None = None,
    out: str = "migration.md",
) -> int:
    cfg = load_config(config)
    spec = new_spec(hub_id, revision, tokenizer_revision, path, sha256, build)
    old = cfg.model.base
    if old.model_dump() == spec.model_dump():
        raise UserError(
            "the config already trains on this base", file=config, key="model.base",
            fix="name another base",
        )  # fmt: skip
    edited = edit_config(config, spec)
    measured = measure(cfg, old, spec, config, "--hub-id" if hub_id else "--path")
    result = measured["result"]
    report = render(config, old.model_dump(), spec.model_dump(), measured)
    _validate(config, edited)  # the edited config must load before either file is written
    write_atomic(out, report)
    write_atomic(config, edited)
    sets = [k for k in result if k != "_rows"]
    crossing = sum(len(result[k]["now_over"]) + len(result[k]["now_fit"]) for k in sets)
    print(
        f"edited {config} (model.base) and wrote {out}: {crossing} row(s) cross the "
        f"{cfg.data.max_seq_len}-token window; next: uv run ft train --config {config}"
    )
    return 0


def plan_section(cfg: Config, path: str, old_base: dict) -> list[str]:
    """`ft plan`: the drift section for a config whose model.base differs from the base
    branch's (`old_base`, its raw YAML mapping). A base that cannot be loaded here is
    named instead of measured."""
    lines = [f"### Base model change in `{path}`", ""]
    try:
        old = BaseModelSpec.model_validate(old_base)
    except ValidationError as e:  # the base branch's config is not this branch's to fix
        return [*lines, f"The base branch's `model.base` does not validate: {e.errors()[0]['msg']}"]
    try:
        measured = measure(cfg, old, cfg.model.base, path, "model.base")
    except UserError as e:
        return [*lines, f"Drift not measured: {e.format()}"]
    return [*lines, *body(old.model_dump(), cfg.model.base.model_dump(), measured, "####")]
