"""The model card (README.md) of a release, rendered from its manifest and verification record.

Front matter for the Hub (licence, base model, `model-index` with one result per eval suite
segment), then the base pin, the one call that loads the version from the registry it was
published to, the training data, the metrics, the command that reproduces it and its
provenance. `ft registry pull` renders it again and refuses a card that differs.
"""

from pathlib import Path

from ..closure.reproduce_md import command_block


def model_card(
    manifest: dict, record: dict, version: str, files: dict[str, Path], uri: str = ""
) -> str:
    """README.md for the registry entry, from the manifest and the verification record."""
    base, hw, env = manifest["base_model"], manifest["hardware"], manifest["environment"]
    license_ = manifest["config"]["publish"]["license"]
    hub = "hub_id" in base
    front = ["---", f"license: {license_}", "library_name: peft"]
    if hub:
        front += [f"base_model: {base['hub_id']}", "base_model_relation: adapter"]
    front.append("tags: [lora, peft, ft-template]")
    front += model_index(manifest, version)
    front += ["---", ""]
    pin = (
        f"`{base['hub_id']}` at revision `{base['revision']}`"
        if hub
        else f"`{base['path']}` (sha256 `{base['sha256']}`)"
    )
    mode = record.get("mode", "exact")
    how = (
        "byte-identical outputs"
        if mode == "exact"
        else "outputs within the tolerance declared in the config"
    )
    data_rows = []
    for split, info in manifest["data"]["splits"].items():
        steps = ", ".join(f"{s['filter']} {s['rows_in']}->{s['rows_out']}" for s in info["steps"])
        data_rows.append(
            f"| {split} | {info['rows_in']} | {info['rows']} | `{info['sha256']}` | {steps} |"
        )
    metrics = [f"| {k} | {number(v)} |" for k, v in sorted(manifest["metrics"].items())]
    reproduce = Path(files["REPRODUCE.md"]).read_text() if "REPRODUCE.md" in files else ""
    block = command_block(reproduce) or ""
    shape = (
        f"{hw['device_count']} x {hw['device_name']}"
        if hw["device_type"] == "cuda"
        else f"CPU ({hw['cpu_model']}, {hw['cpu_isa']})"
    )
    lines = [
        *front,
        f"# {manifest['run_id']} {version}",
        "",
        f"A LoRA adapter for {pin}, published as `{version}` by `ft publish` after "
        f"`ft reproduce` re-ran this release's REPRODUCE.md and got {how} ({mode} mode, "
        f"verified {record.get('finished_at')}).",
        "",
        "## Base model",
        "",
        "| | |",
        "| --- | --- |",
        f"| model | {pin} |",
        f"| tokenizer sha256 | `{base.get('tokenizer_sha256')}` |",
        f"| chat template sha256 | `{base.get('chat_template_sha256')}` |",
        f"| licence | {base_license(manifest)} |",
        "",
        "## Use",
        "",
        "```python",
        *usage_snippet(manifest, version, uri),
        "```",
        "",
        "## Training data",
        "",
        "| split | rows in | rows | sha256 | filters (rows in -> out) |",
        "| --- | --- | --- | --- | --- |",
        *data_rows,
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "| --- | --- |",
        *metrics,
        "",
        *suite_lines(manifest),
        "## Reproduce",
        "",
        f"From a clean checkout of commit `{manifest['git']['commit']}`, on the same hardware "
        f"shape ({shape}, {hw['world_size']} process(es)):",
        "",
        "```bash",
        block.rstrip("\n"),
        "```",
        "",
        "REPRODUCE.md in this release lists the pins and the sha256 every output must have; "
        "`ft reproduce` checks them.",
        "",
        "## Provenance",
        "",
        "| | |",
        "| --- | --- |",
        f"| git commit | `{manifest['git']['commit']}` |",
        f"| config | `{manifest['command']['config']}` sha256 `{manifest['config_sha256']}` |",
        f"| seed | {manifest['seed']} |",
        f"| uv.lock sha256 | `{env['uv_lock_sha256']}` |",
        f"| image | `{env['image_digest'] or 'none (local run)'}` |",
        f"| manifest.json sha256 | `{record['manifest_sha256']}` |",
        "",
        "## Licence",
        "",
        f"{license_} (the config's `publish.license`). The base model's own licence also "
        f"applies: {base_license(manifest)}.",
        "",
    ]
    return "\n".join(lines)


def model_index(manifest: dict, version: str) -> list[str]:
    """The card's `model-index` (Hub metadata): one result per eval suite segment."""
    import yaml

    results = []
    for name, suite in (manifest.get("eval_suites") or {}).items():
        for segment, values in suite["segments"].items():
            metrics = [
                {"type": k, "name": f"{name}/{segment} {k}", "value": round(float(v), 6)}
                for k, v in sorted(values.items())
                if k not in ("rows", "tokens")
            ]
            results.append(
                {
                    "task": {"type": "text-generation"},
                    "dataset": {
                        "name": f"{name} ({segment}, {values['rows']} rows)",
                        "type": name,
                        "split": segment,
                        "revision": suite["sha256"],
                    },
                    "metrics": metrics,
                }
            )
    if not results:
        return []
    index = [{"name": f"{manifest['run_id']} {version}", "results": results}]
    return yaml.safe_dump({"model-index": index}, sort_keys=False).rstrip("\n").splitlines()


def suite_lines(manifest: dict) -> list[str]:
    """The card's per-segment eval table (the same numbers as model-index)."""
    lines = []
    for name, suite in (manifest.get("eval_suites") or {}).items():
        keys = sorted({k for seg in suite["segments"].values() for k in seg} - {"rows", "tokens"})
        lines += [
            f"## Eval suite `{name}`",
            "",
            f"{suite['rows']} rows pinned by sha256 `{suite['sha256']}`; greedy decoding, "
            f"at most {suite['max_new_tokens']} new tokens.",
            "",
            "| segment | rows | " + " | ".join(keys) + " |",
            "| --- | ---: | " + " | ".join("---:" for _ in keys) + " |",
            *[
                f"| {seg} | {v['rows']} | " + " | ".join(number(v.get(k)) for k in keys) + " |"
                for seg, v in suite["segments"].items()
            ],
            "",
        ]
    return lines


def base_license(manifest: dict) -> str:
    """The base model's licence as the config records it (`model.base.license`)."""
    spec = manifest["config"]["model"]["base"]
    if spec.get("license"):
        return spec["license"]
    if spec.get("build"):
        return f"none: the embedded base is generated by this repository's code (`{spec['build']}`)"
    return "not recorded (set `model.base.license` in the config)"


def usage_snippet(manifest: dict, version: str, uri: str) -> list[str]:
    """The one call that loads this version, for the registry it was published to."""
    base = manifest["base_model"]
    if "hub_id" in base:
        load_base = (
            f'base = AutoModelForCausalLM.from_pretrained("{base["hub_id"]}", '
            f'revision="{base["revision"]}")'
        )
    else:
        load_base = f'base = AutoModelForCausalLM.from_pretrained("{base["path"]}")'
    scheme, _, where = uri.partition("://")
    if scheme == "mlflow":
        from .registries.mlflow import alias_for

        return [
            "import mlflow",
            "",
            f'model = mlflow.pyfunc.load_model("models:/{where}@{alias_for(version)}")',
            'print(model.predict(["Add 2 and 3."]))',
        ]
    lines = [
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        load_base,
    ]
    if scheme == "hf":
        lines.append(f'model = PeftModel.from_pretrained(base, "{where}", revision="{version}")')
    else:
        lines += [
            f"# after `uv run ft registry pull {version} {version}`",
            f'model = PeftModel.from_pretrained(base, "{version}")',
        ]
    return lines


def number(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
