"""The layout of a release, and the check that a pulled one is what its manifest describes.

A release holds the run's outputs, manifest.json, REPRODUCE.md, verification.json and the
model card README.md. The adapter's files (RUN_DIR/adapter/*) sit at its root, where PEFT
looks, so `PeftModel.from_pretrained(base, DIR)` loads a pulled version and
`PeftModel.from_pretrained(base, "org/repo", revision="v1.2.0")` a hub one; every other
output keeps its run-relative name. `release_name` is the one mapping (the hashes are the
manifest's, so a release file is checked against its output by sha256). `release_meta` is
what a registry records beside the file hashes; `verify_release` checks a pulled release
against both.
"""

import json
from pathlib import Path

from ..errors import UserError
from ..util.records import read_json
from .card import model_card
from .registries import IntegrityError

RECORDS = ("manifest.json", "REPRODUCE.md", "verification.json")
ADAPTER_DIR = "adapter/"
CARD = "README.md"


def release_name(output: str) -> str:
    """A run output's name in a release: the adapter's files at the root, the rest as named."""
    return output.removeprefix(ADAPTER_DIR)


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


def check_backend_files(root: Path, names, bad) -> set[str]:
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
    from ..closure.reproduce_md import render_reproduce
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
    added = check_backend_files(root, backend_files, bad)
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
