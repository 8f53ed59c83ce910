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
from the manifest. The registry is the repo's (registries/__init__.py: resolve_registry).

This module is the orchestration; the parts live beside it: verdict.py (1, 2: the record
and the verdict recomputed from hashes), release.py (a release's layout and metadata),
card.py (the model card), versions.py (`ft registry list|show|pull`).
"""

import os
import re
import sys
import tempfile
from pathlib import Path

from ..closure.manifest import output_files, read_manifest
from ..errors import UserError
from ..util.hashing import copy_hashing
from ..util.records import read_json
from .card import model_card
from .registries import check_version, open_registry, resolve_registry
from .release import CARD, RECORDS, release_meta, release_name
from .verdict import check_record as check_segments
from .verdict import check_verdict, read_verification

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
            raise registry.already_exists(version)
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


def _changed(run_dir: Path, name: str, problem: str, fix: str) -> UserError:
    return UserError(f"{name} {problem}", file=str(run_dir / name), fix=fix)
