"""`ft generate RUN_DIR|VERSION`: greedy samples from a trained or published adapter.

    uv run ft generate runs/<id> --prompt "Add 2 and 3."
    uv run ft generate v1.2.0 --messages chat.json [--registry URI] [--max-new-tokens 64]

RUN_DIR is a finished run (its manifest.json and adapter/); VERSION is pulled from the
registry (--registry, else $FT_REGISTRY, else publish.registry of configs/recipe.yaml),
every hash checked, into a scratch directory. The base is loaded at the manifest's pin
(a local base must match its content hash). Decoding is greedy with a fixed budget, so
the same artifact and input give the same text on every call. `--messages` is a JSON
file: a list of {"role", "content"} turns, rendered with the base tokenizer's chat
template and a generation prompt; a `--prompt` goes through the template too when the
run trained on chat rows.
"""

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError
from ..util.records import parse_json


@contextmanager
def artifact(target: str, registry_uri: str | None):
    """Yield (directory with manifest.json, adapter directory) for a run dir or a version."""
    from .registries import VERSION, open_registry, resolve_registry

    path = Path(target)
    if (path / "manifest.json").is_file():
        yield path, path / "adapter"
        return
    if not VERSION.fullmatch(target):
        raise UserError(
            f"{target!r} is neither a finished run directory nor a release version",
            key="RUN_DIR|VERSION",
            fix="pass runs/<id> (with manifest.json) or a version such as v1.2.0",
        )
    uri = resolve_registry(registry_uri, shared=True)
    with tempfile.TemporaryDirectory(prefix="ft-artifact-") as tmp:
        dest = Path(tmp) / target
        open_registry(uri).pull(target, dest)
        yield dest, dest  # a release keeps the adapter at its root (gate.release_name)


def read_messages(path: str) -> list[dict]:
    from ..data.chat import row_problem

    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UserError("file not found", file=path, fix="pass a JSON file of turns") from None
    turns = 'write a list of {"role": ..., "content": ...} turns'
    messages = parse_json(text, file=path, fix=turns)
    row = {"messages": messages + [{"role": "assistant", "content": ""}]}
    problem = row_problem(row, "chat") if isinstance(messages, list) else "not a list of turns"
    if problem:
        raise UserError(
            problem,
            file=path,
            fix='write a list of {"role": "system"|"user"|"assistant", "content": "..."} turns',
        )
    return messages


def load_adapter(manifest_dir: Path, adapter_dir: Path):
    """The base at the manifest's pin plus the adapter (registry/pyfunc.py's AdapterModel)."""
    from .registries.pyfunc import AdapterModel

    spec = json.loads((manifest_dir / "manifest.json").read_text())["config"]["model"]["base"]
    if spec.get("build") == "tiny" and spec.get("path") and not Path(spec["path"]).exists():
        from ..model.tiny import init_tiny  # rebuilt byte for byte, as ft train does

        init_tiny(spec["path"])
    try:
        return AdapterModel(str(manifest_dir), str(adapter_dir))
    except ValueError as e:
        raise UserError(
            str(e),
            file=str(manifest_dir / "manifest.json"),
            key="base_model",
            fix="run from the repository that trained it (`uv run ft base init-tiny` rebuilds "
            "the embedded base) or set FT_BASE_ROOT to the directory holding the base",
        ) from None


def main(
    target: str,
    prompt: str | None,
    messages_file: str | None,
    max_new_tokens: int,
    registry_uri: str | None = None,
) -> str:
    if (prompt is None) == (messages_file is None):
        raise UserError(
            "give exactly one of --prompt TEXT or --messages FILE",
            key="--prompt/--messages",
            fix='e.g. ft generate runs/<id> --prompt "Add 2 and 3."',
        )
    item = read_messages(messages_file) if messages_file else prompt
    with artifact(target, registry_uri) as (manifest_dir, adapter_dir):
        model = load_adapter(manifest_dir, adapter_dir)
        return model.predict([item], {"max_new_tokens": max_new_tokens})[0]
