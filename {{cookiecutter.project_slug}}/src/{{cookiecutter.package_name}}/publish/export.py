"""`ft export RUN_DIR|VERSION --merged OUT`: the adapter merged into its base, as one model.

    uv run ft export runs/<id> --merged exports/my-model
    uv run ft export v1.2.0 --merged exports/my-model [--registry URI]

Loads the base at the manifest's pin with the adapter (as `ft generate` does), folds the
LoRA weights in with peft's `merge_and_unload`, and writes a plain transformers model:
safetensors weights, config, generation config, tokenizer and its chat template, so
`AutoModelForCausalLM.from_pretrained(OUT)` and `AutoTokenizer.from_pretrained(OUT)` load it
with no peft installed. `export.json` records where it came from (run id, manifest sha256,
base pins, chat template sha256) and the sha256 of every file written. OUT is written in a
private directory beside it and renamed into place, so it appears whole or not at all; an
existing non-empty OUT is refused.
"""

import json

from ..util.hashing import new_dir, sha256_file, tree_files, write_atomic

EXPORT_RECORD = "export.json"


def main(target: str, out: str, registry_uri: str | None = None) -> dict:
    from ..data.chat import template_sha256
    from .generate import artifact, load_adapter

    with new_dir(
        out, tag="export", what="the export directory", fix="pass a new or empty --merged directory"
    ) as staging:
        with artifact(target, registry_uri) as (manifest_dir, adapter_dir):
            loaded = load_adapter(manifest_dir, adapter_dir)
            merged = loaded.model.merge_and_unload()
            merged.save_pretrained(staging, safe_serialization=True)
            loaded.tokenizer.save_pretrained(staging)
            manifest_sha = sha256_file(manifest_dir / "manifest.json")
            manifest = loaded.manifest
        record = {
            "schema": 1,
            "source": target,
            "run_id": manifest["run_id"],
            "manifest_sha256": manifest_sha,
            "base_model": manifest["base_model"],
            "chat_template_sha256": template_sha256(loaded.tokenizer),
            "merge": "peft merge_and_unload",
            "files": {p.as_posix(): sha256_file(staging / p) for p in tree_files(staging)},
        }
        write_atomic(staging / EXPORT_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
