"""`ft publish RUN_DIR --version vX.Y.Z`: the gate between a reproduced run and a registry.

    uv run ft reproduce runs/<id>
    uv run ft publish runs/<id> --version v0.1.0 [--registry URI] [--tag-commit SHA]

Refuses, naming the file and the fix, unless
1. RUN_DIR/verification.json says `ft reproduce` passed for this very manifest.json
   and this very REPRODUCE.md (the record holds their sha256);
2. every output the record compared has the manifest's hash, and the files about
   to be pushed still have it: they are copied to a private staging directory and
   re-hashed there, and that copy is what the registry receives;
3. the version is a release version (vMAJOR.MINOR.PATCH[-PRERELEASE]) the registry
   does not hold yet: versions are immutable;
4. on a release (--tag-commit, or $GITHUB_SHA when $GITHUB_REF_TYPE is `tag`) the run
   was trained at the tagged commit;
5. every eval gate (`eval.gates` of the run's config) passes against the latest other
   release, or the annotated tag `vX.Y.Z` carries `Waive-gate: SUITE/SEGMENT/METRIC: why`
   for it; the registry entry records the gate results and who waived which gate.

Pushed: the run's outputs (adapter, resolved config.yaml, data.lock, metrics, eval),
manifest.json, REPRODUCE.md, verification.json and a model card README.md rendered
from the manifest. The registry is the repo's (registry/__init__.py: resolve_registry).

Layout of a release: the adapter's files (RUN_DIR/adapter/*) sit at its root, where PEFT
looks, so `PeftModel.from_pretrained(base, DIR)` loads a pulled version and
`PeftModel.from_pretrained(base, "org/repo", revision="v1.2.0")` a hub one; every other
output keeps its run-relative name. `release_name` is the one mapping (the hashes are the
manifest's, so a release file is checked against its output by sha256).
"""

import json
import os
import re
import sys
import tempfile
from pathlib import Path

from ..closure.manifest import command_block, output_files, read_manifest
from ..closure.segments import check_complete
from ..closure.segments import check_record as check_segments
from ..errors import UserError
from ..util.hashing import copy_hashing
from ..util.records import read_json
from .registries import (
    IntegrityError,
    VersionNotFound,
    check_version,
    open_registry,
    resolve_registry,
)

RECORDS = ("manifest.json", "REPRODUCE.md", "verification.json")
ADAPTER_DIR = "adapter/"
CARD = "README.md"
HEX40 = re.compile(r"[0-9a-f]{40}")
STAGING_PREFIX = "ft-publish-"  # + pid: a killed publish's copy is swept by the next one


def sweep_stale_staging() -> None:
    """Remove the private copies of publishes that were killed (their process is gone).

    A SIGKILLed process cannot clean up after itself; its staging directory carries its
    pid, so the next `ft publish` on this machine removes it instead of leaking a copy of
    a release into the temp directory for ever.
    """
    import shutil

    for path in Path(tempfile.gettempdir()).glob(f"{STAGING_PREFIX}*-*"):
        pid = path.name.removeprefix(STAGING_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


def main(
    run_dir: str, version: str, registry_uri: str | None = None, tag_commit: str | None = None
) -> int:
    run_dir = Path(run_dir)
    check_version(version)
    read_manifest(run_dir)  # a run that never finished is refused before anything else
    sweep_stale_staging()
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-") as tmp:
        staging = Path(tmp)
        # 1. The record, then the manifest and REPRODUCE.md it vouches for, read from the
        #    staged copies: what is checked is what gets pushed.
        record = read_verification(run_dir, staging)
        manifest = stage_records(run_dir, record, staging)
        # A segment verification counts only if it covered the recorded chain, hash for hash.
        check_segments(record, manifest, str(run_dir / "verification.json"))
        # 2. The release: commit of the tag, a version the registry does not hold.
        check_release_commit(manifest, version, tag_commit)
        uri = resolve_registry(registry_uri, manifest["config"], shared=True)
        registry = open_registry(uri)
        if registry.exists(version):
            raise UserError(
                f"version {version} already exists in {uri}; published versions are immutable",
                key="--version",
                fix="publish under a new version",
            )
        # 3. The eval gates against the latest release; a failure needs a waiver in the tag.
        gate_record = release_gates(manifest, record, registry, version)
        # 4. The outputs, re-hashed; then the model card; then one atomic publish.
        files = stage_outputs(run_dir, manifest, record, staging)
        files[CARD] = staging / CARD
        files[CARD].write_text(model_card(manifest, record, version, files, uri))
        meta = release_meta(manifest, record) | {"gates": gate_record}
        index = registry.publish(version, files, meta)
    for waiver in gate_record["waivers"]:
        print(
            f"gate {waiver['gate']} fails and is waived by {waiver['by']}: {waiver['reason']}",
            file=sys.stderr,
        )
    print(
        f"published {version} to {uri}: {len(index['files'])} files from run "
        f"{manifest['run_id']} (commit {manifest['git']['commit'][:12]})"
    )
    return 0


def read_verification(run_dir: Path, staging: Path) -> dict:
    """The record `ft reproduce` wrote (staged); it must say the reproduction passed."""
    path = run_dir / "verification.json"
    if not path.is_file():
        raise UserError(
            "no verification.json: this run was never reproduced",
            file=str(path),
            fix=f"run `ft reproduce {run_dir}` first; publish needs it to pass",
        )
    copy_hashing(path, staging / path.name)
    try:
        record = json.loads((staging / path.name).read_text())
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise UserError(
            "verification.json is not a record written by `ft reproduce`",
            file=str(path),
            fix=f"run `ft reproduce {run_dir}` again",
        )
    if record.get("passed") is not True:
        raise UserError(
            f"`ft reproduce` did not pass: {record.get('reason')}",
            file=str(path),
            fix=f"fix the cause, run `ft reproduce {run_dir}` until it passes, then publish",
        )
    check_complete(record, str(path))  # a drill's K-of-N sample passes, but verifies nothing
    if (
        not isinstance(record.get("compared"), list)
        or not record.get("manifest_sha256")
        or not record.get("reproduce_md_sha256")
    ):
        raise UserError(
            "verification.json lacks the compared hashes",
            file=str(path),
            fix=f"run `ft reproduce {run_dir}` again with this version of ft",
        )
    return record


def stage_records(run_dir: Path, record: dict, staging: Path) -> dict:
    """Stage manifest.json and REPRODUCE.md; both must be the ones that were verified."""
    for name, key in (
        ("manifest.json", "manifest_sha256"),
        ("REPRODUCE.md", "reproduce_md_sha256"),
    ):
        _stage_one(run_dir, name, record[key], "verification.json says", staging)
    return read_json(staging / "manifest.json")


def _stage_one(run_dir: Path, name: str, want: str, who: str, staging: Path) -> Path:
    src = run_dir / name
    if not src.is_file():
        raise _changed(run_dir, name, "is missing", "restore it, or train and reproduce again")
    digest, _ = copy_hashing(src, staging / name)
    if digest != want:
        raise _changed(
            run_dir,
            name,
            f"changed after verification (sha256 {digest[:16]}, {who} {want[:16]})",
            "restore the verified file, or train and run `ft reproduce` again",
        )
    return staging / name


def check_release_commit(manifest: dict, version: str, tag_commit: str | None) -> None:
    """On a release tag, the run must come from the tagged commit (and carry the tag's name)."""
    key = "--tag-commit"
    if os.environ.get("GITHUB_REF_TYPE") == "tag":
        ref = os.environ.get("GITHUB_REF_NAME")
        if ref and ref != version:
            raise UserError(
                f"this build is for tag {ref} but --version is {version}",
                key="--version",
                fix=f"publish the tag's version: --version {ref}",
            )
        if tag_commit is None:
            tag_commit, key = os.environ.get("GITHUB_SHA"), "GITHUB_SHA"
    if tag_commit is None:
        return
    if not HEX40.fullmatch(tag_commit.lower()):
        raise UserError(
            f"{tag_commit!r} is not a full commit hash",
            key=key,
            fix="pass the 40-hex commit, e.g. --tag-commit $(git rev-parse v1.2.0^{})",
        )
    # The run may come from an ancestor of the tag whose training inputs equal the tag's
    # (a docs-only commit tagged after the training merge; `ft release resolve`).
    from ..ops.inputs import check_same_inputs

    check_same_inputs(manifest["git"]["commit"], tag_commit.lower(), key)


def stage_outputs(run_dir: Path, manifest: dict, record: dict, staging: Path) -> dict[str, Path]:
    """Stage every output; each must have the manifest's hash, which the record verified."""
    outputs = manifest["outputs"]
    if CARD in outputs:
        raise _changed(
            run_dir,
            CARD,
            "is a run output, but a release's README.md is the model card",
            "rename that output in train/recipe.py",
        )
    extra = sorted(output_files(run_dir).keys() - outputs.keys())
    if extra:
        raise _changed(
            run_dir,
            extra[0],
            "is not listed in manifest.json (added after training)",
            "remove it; a release holds exactly what the run produced",
        )
    check_verdict(run_dir, manifest, record)
    check_finite(run_dir, manifest)
    files = {name: staging / name for name in RECORDS}
    for name, want in sorted(outputs.items()):
        files[release_name(name)] = _stage_one(
            run_dir, name, want, "manifest.json and verification.json say", staging
        )
    return files


# The inputs a reproduction must share with the run it reproduces (outputs are compared apart).
PINS = ("seed", "config_sha256", "data", "base_model", "git")


def check_verdict(run_dir: Path, manifest: dict, record: dict) -> None:
    """Recompute the verdict from hashes; `passed`/`equal` in the record are never trusted.

    The record must belong to this run (its run id and manifest hash) and name the
    reproduction it saw (RUN_DIR/reproduce/manifest.json by sha256; for a segments
    verification, the last interval's manifest under reproduce/segments/). That reproduction's
    files must hash as its own manifest says, its pins must be this run's, and every
    output must compare equal again, here, from those hashes (or, in tolerance mode,
    from the files within the declared bounds).
    """
    from ..closure.reproduce import compare
    from ..util.hashing import sha256_file

    where = str(run_dir / "verification.json")
    again = f"run `ft reproduce {run_dir}` again"
    if record.get("run_id") != manifest["run_id"]:
        raise UserError(
            f"the record is for run {record.get('run_id')!r}, not {manifest['run_id']!r}",
            file=where,
            fix=again,
        )
    # A full replay leaves its outputs in reproduce/; a segments verification (complete:
    # check_record ran first) in its last interval's folder. The place follows from the
    # strategy and the manifest's chain, never from a path in the record.
    repro_dir = run_dir / "reproduce"
    if record.get("strategy") == "segments":
        from ..closure.segments import reproduction_dir

        repro_dir = reproduction_dir(run_dir, manifest)
    repro_manifest = repro_dir / "manifest.json"
    want = record.get("reproduction_manifest_sha256")
    if not isinstance(want, str) or not repro_manifest.is_file():
        raise UserError(
            "no reproduction to check the record against (reproduce/manifest.json and its "
            "sha256 in the record are both needed)",
            file=where,
            fix=f"{again}; keep RUN_DIR/reproduce/ until the run is published",
        )
    if sha256_file(repro_manifest) != want:
        raise UserError(
            "reproduce/manifest.json is not the reproduction this record was written for",
            file=str(repro_manifest),
            fix=again,
        )
    fresh = read_json(repro_manifest)
    for key in PINS:
        if fresh.get(key) != manifest.get(key):
            raise UserError(
                f"the reproduction was made from other inputs than the run ({key} differs)",
                file=str(repro_manifest),
                fix=again,
            )
    actual = output_files(repro_dir)
    for name in sorted(set(fresh.get("outputs") or {}) | set(actual)):
        if (fresh.get("outputs") or {}).get(name) != actual.get(name):
            raise UserError(
                f"{name} of the reproduction does not match its manifest",
                file=str(repro_dir / name),
                fix=again,
            )
    recomputed = {c["file"]: c for c in compare(run_dir, repro_dir, manifest)}
    claimed = {c.get("file"): c for c in record.get("compared") or [] if isinstance(c, dict)}
    for name, entry in sorted(recomputed.items()):
        if not entry["equal"]:
            raise UserError(
                f"{name} was not reproduced: sha256 {str(entry['actual'])[:16]} in the "
                f"reproduction, {str(entry['expected'])[:16]} in manifest.json",
                file=str(run_dir / name),
                fix=again + " and make it pass",
            )
        said = claimed.get(name, {})
        if (said.get("expected"), said.get("actual")) != (entry["expected"], entry["actual"]):
            raise UserError(
                f"the record's hashes for {name} are not the ones recomputed from the reproduction",
                file=where,
                fix=again,
            )
    if claimed.keys() != recomputed.keys():
        raise UserError(
            "the record compared other files than the reproduction holds",
            file=where,
            fix=again,
        )


def check_finite(run_dir: Path, manifest: dict) -> None:
    """Refuse NaN or infinite metrics and weights: such a run reproduces, but is no model."""
    import math

    for key, value in sorted((manifest.get("metrics") or {}).items()):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(
                f"metric {key} is {value}: the run diverged",
                file=str(run_dir / "manifest.json"),
                key=f"metrics.{key}",
                fix="lower train.lr or fix the data, then train and reproduce again",
            )
    weights = sorted(n for n in manifest["outputs"] if n.endswith(".safetensors"))
    if not weights:
        return
    from safetensors.torch import load_file

    for name in weights:
        for tensor_name, tensor in sorted(load_file(run_dir / name).items()):
            if tensor.is_floating_point() and not tensor.isfinite().all():
                raise UserError(
                    f"tensor {tensor_name} holds NaN or infinite values",
                    file=str(run_dir / name),
                    fix="lower train.lr or fix the data, then train and reproduce again",
                )


def release_gates(manifest: dict, record: dict, registry, version: str) -> dict:
    """Check the run's eval gates against the latest other release; refuse a failing gate
    unless the annotated tag `version` waives it. Returns what the registry entry records."""
    from ..evaluate import gates

    baseline, base_suites = gates.latest_release(registry, record["manifest_sha256"])
    configured = manifest["config"].get("eval", {}).get("gates", [])
    results = gates.check(configured, manifest.get("eval_suites") or {}, base_suites)
    failed = gates.failures(results)
    waivers = gates.tag_waivers(version) if failed else {}
    unwaived = [r for r in failed if r.gate not in waivers]
    if unwaived:
        worst = ", ".join(
            f"{r.gate} (regression {r.regression:+.4f} > {r.max_regression:g})"
            if r.regression is not None
            else f"{r.gate} (not measured)"
            for r in unwaived
        )
        raise UserError(
            f"{len(unwaived)} eval gate(s) fail against {baseline}: {worst}",
            key="eval.gates",
            fix=f"see `ft gate RUN_DIR --baseline {baseline}`; fix the regression, or waive "
            f"it with the line `{gates.WAIVER_PREFIX} {unwaived[0].gate}: <reason>` in the "
            f"annotation of tag {version} (git tag -a)",
        )
    return {
        "baseline": baseline,
        "results": [r.to_json() for r in results],
        "waivers": [waivers[r.gate] for r in failed],
    }


def release_name(output: str) -> str:
    """A run output's name in a release: the adapter's files at the root, the rest as named."""
    return output.removeprefix(ADAPTER_DIR)


def _changed(run_dir: Path, name: str, problem: str, fix: str) -> UserError:
    return UserError(f"{name} {problem}", file=str(run_dir / name), fix=fix)


def release_meta(manifest: dict, record: dict) -> dict:
    """What a registry records about a version, beside the file hashes."""
    return {
        "run_id": manifest["run_id"],
        "git_commit": manifest["git"]["commit"],
        "manifest_sha256": record["manifest_sha256"],
        "reproduce_md_sha256": record["reproduce_md_sha256"],
        "config_sha256": manifest["config_sha256"],
        "verification_mode": record.get("mode"),
        "verified_at": record.get("finished_at"),
        "base_model": manifest["base_model"],
        "data_sha256": {k: split["sha256"] for k, split in manifest["data"]["splits"].items()},
        "metrics": manifest["metrics"],
        # Per-segment metrics (no completions): the next release's gate baseline.
        "eval_suites": {
            name: {k: v for k, v in suite.items() if k != "predictions"}
            for name, suite in (manifest.get("eval_suites") or {}).items()
        },
        "license": manifest["config"]["publish"]["license"],
    }


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
    metrics = [f"| {k} | {_number(v)} |" for k, v in sorted(manifest["metrics"].items())]
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
                f"| {seg} | {v['rows']} | " + " | ".join(_number(v.get(k)) for k in keys) + " |"
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


def _number(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def list_versions(registry_uri: str) -> int:
    registry = open_registry(registry_uri)
    versions = registry.versions()
    if not versions:
        print(f"no versions in {registry_uri}", file=sys.stderr)
    for version in versions:
        meta = registry.show(version).get("meta", {})
        loss = meta.get("metrics", {}).get("eval_loss")
        print(
            f"{version}\trun {meta.get('run_id')}\tcommit {str(meta.get('git_commit'))[:12]}\t"
            f"eval_loss {_number(loss) if loss is not None else '-'}\t"
            f"verified {meta.get('verified_at')}"
        )
    return 0


def resolve_version(registry, version: str) -> str:
    """A version name, or `latest`: the highest release that is not a pre-release."""
    if version != "latest":
        return check_version(version, key="VERSION")
    releases = [v for v in registry.versions() if "-" not in v]
    if not releases:
        raise VersionNotFound(
            f"no release in {registry.uri} yet, so there is no `latest`",
            key="VERSION",
            fix="publish one first: ft publish runs/<id> --version v0.1.0",
        )
    return releases[-1]


def show_version(registry_uri: str, version: str) -> int:
    registry = open_registry(registry_uri)
    index = registry.show(resolve_version(registry, version))
    print(json.dumps(index, indent=2, sort_keys=True))
    return 0


def pull_version(registry_uri: str, version: str, dest: str) -> int:
    """Pull into a private directory, check the release against itself, then rename it in.

    The registry checks its index (every file's sha256); this checks what the index
    cannot vouch for: that the release is the one its manifest describes.
    """
    import shutil
    import uuid

    registry = open_registry(registry_uri)
    version = resolve_version(registry, version)
    target = Path(os.path.normpath(dest))
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(
            "the destination exists and is not empty",
            file=str(target),
            fix="pull into a new or empty directory",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    private = target.parent / f".{target.name}.verify-{uuid.uuid4().hex[:12]}"
    try:
        index = registry.pull(version, private)
        verify_release(
            private,
            index,
            f"{registry_uri} {version}",
            getattr(registry, "ADDED_FILES", ()),
            uri=registry.uri,
        )
        if target.exists():
            target.rmdir()
        os.rename(private, target)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    print(
        f"pulled {version} from {registry_uri} into {dest}: {len(index['files'])} files, every "
        "sha256 verified, the release matches its manifest"
    )
    return 0


def _backend_files(root: Path, names, bad) -> set[str]:
    """Files a backend adds beside the release (MLflow's MLmodel and its pyfunc loader):
    allowed only as this package writes them, since a loader is code a consumer runs."""
    names = set(names)
    if not names:
        return names
    from .registries import mlflow as backend

    loader = f"code/{backend.LOADER}.py"
    for name in sorted(names):
        if not (root / name).is_file():
            raise bad(name, "is missing from the release")
    if loader in names:
        ours = Path(backend.__file__).with_name("pyfunc.py").read_bytes()
        if (root / loader).read_bytes() != ours:
            raise bad(loader, "is not the loader this package publishes (code a consumer runs)")
    if backend.MLMODEL in names:
        import yaml

        try:
            flavor = yaml.safe_load((root / backend.MLMODEL).read_text())["flavors"][
                "python_function"
            ]
        except (yaml.YAMLError, KeyError, TypeError, UnicodeDecodeError):
            flavor = None
        if not isinstance(flavor, dict) or (flavor.get("loader_module"), flavor.get("code")) != (
            backend.LOADER,
            "code",
        ):
            raise bad(backend.MLMODEL, "does not load this package's pyfunc loader")
    return names


def verify_release(
    root: Path, index: dict, where: str, backend_files=(), uri: str = "file://"
) -> None:
    """A pulled release must be what its own manifest and verification record describe.

    Every output the manifest lists is present with its hash and nothing else rides
    along; REPRODUCE.md and the model card are the renderings of the manifest; the
    verification record is for this manifest and compares equal; and the index's
    metadata (run, commit, hashes, metrics) is the manifest's, not a hand edit.
    """
    from ..closure.manifest import render_reproduce
    from ..util.hashing import sha256_file

    fix = "the release was altered after `ft publish`; restore the registry from a backup"

    def bad(name: str, problem: str) -> UserError:
        return IntegrityError(f"{name} {problem}", file=f"{where}: {name}", fix=fix)

    for name in (*RECORDS, CARD):
        if not (root / name).is_file():
            raise bad(name, "is missing from the release")
    manifest = read_json(root / "manifest.json", fix=fix)
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict):
        raise bad("manifest.json", "has no outputs")
    have = {n for n in index["files"]}
    for output, digest in sorted(outputs.items()):
        name = release_name(output)  # the adapter's files sit at the release's root
        if name not in have:
            raise bad(name, "is listed in manifest.json but missing from the release")
        if index["files"][name]["sha256"] != digest or sha256_file(root / name) != digest:
            raise bad(name, "does not have the sha256 manifest.json gives it")
    added = _backend_files(root, backend_files, bad)
    extra = sorted(have - {release_name(n) for n in outputs} - {*RECORDS, CARD} - added)
    if extra:
        raise bad(extra[0], "is in the release but not in its manifest.json")
    if (root / "REPRODUCE.md").read_text(encoding="utf-8") != render_reproduce(manifest):
        raise bad("REPRODUCE.md", "is not the rendering of manifest.json")
    record = read_json(root / "verification.json", fix=fix)
    manifest_sha = sha256_file(root / "manifest.json")
    if record.get("manifest_sha256") != manifest_sha or record.get("run_id") != manifest.get(
        "run_id"
    ):
        raise bad("verification.json", "is not the record of this manifest.json")
    compared = {c.get("file"): c for c in record.get("compared") or [] if isinstance(c, dict)}
    mode = manifest.get("config", {}).get("reproduce", {}).get("mode", "exact")
    for name, digest in sorted(outputs.items()):
        entry = compared.get(name) or {}
        if entry.get("expected") != digest or (mode == "exact" and entry.get("actual") != digest):
            raise bad("verification.json", f"does not show {name} reproduced")
    meta = index.get("meta") or {}
    expected_meta = release_meta(manifest, record) | {"manifest_sha256": manifest_sha}
    expected_meta["reproduce_md_sha256"] = sha256_file(root / "REPRODUCE.md")
    for key in sorted(expected_meta):
        if meta.get(key) != expected_meta[key]:
            raise IntegrityError(
                f"the index says {key} = {json.dumps(meta.get(key))[:60]}, the release's "
                f"manifest.json says {json.dumps(expected_meta[key])[:60]}",
                file=f"{where}: index metadata",
                fix=fix,
            )
    # The card's usage lines depend on the backend and its repo/model name only (a file://
    # registry's path never appears), so the pull's URI renders the card publish wrote.
    card = model_card(
        manifest, record, index["version"], {"REPRODUCE.md": root / "REPRODUCE.md"}, uri
    )
    if (root / CARD).read_text(encoding="utf-8") != card:
        raise bad(CARD, "is not the model card of this manifest")
