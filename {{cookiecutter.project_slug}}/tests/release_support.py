"""A release as `ft publish` would push it, built without training: for registry tests.

    files, meta = make_release(tmp_path / "release")
    registry.publish("v1.0.0", files, meta)

The manifest is synthetic (no run behind it) but complete and self-consistent:
REPRODUCE.md and the model card are rendered from it by the package's own code,
the verification record vouches for it, and the metadata is `release_meta`'s. So
`ft registry pull` accepts it, and any one edit of it is a tamper case.
"""

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PKG = next(p.name for p in sorted((REPO / "src").iterdir()) if (p / "__init__.py").is_file())
VERSION = "v1.0.0"


# The hardware record of a test release (and of a test's patched manifest writer).
HARDWARE = {
    "device_type": "cpu",
    "device_name": None,
    "device_count": 0,
    "world_size": 1,
    "cpu_model": "test",
    "cpu_isa": "AVX2",
    "torch_threads": 1,
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_release(
    root: Path, version: str = VERSION, uri: str = "file://registry"
) -> tuple[dict[str, Path], dict]:
    release = importlib.import_module(f"{PKG}.publish.release")
    card = importlib.import_module(f"{PKG}.publish.card")
    render_reproduce = importlib.import_module(f"{PKG}.closure.reproduce_md").render_reproduce
    outputs = {
        "adapter/adapter_model.safetensors": hashlib.sha256(b"w").digest() * 64,
        "adapter/adapter_config.json": b'{"r": 4}\n',
        "config.yaml": b"seed: 1\n",
        "eval.json": b'{"eval_loss": 1.5}\n',
    }
    manifest: dict[str, Any] = {
        "schema": 1,
        "run_id": "smoke",
        "seed": 1,
        "command": {"config": "configs/smoke.yaml", "overrides": [], "backend": "local"},
        "config": {
            "model": {"base": {"build": "tiny"}},
            "reproduce": {"mode": "exact"},
            "publish": {"license": "apache-2.0"},
        },
        "config_sha256": "c" * 64,
        "data": {
            "splits": {
                "train": {"rows_in": 10, "rows": 8, "sha256": "d" * 64, "steps": []},
            }
        },
        "base_model": {"path": "base/tiny-llama", "sha256": "e" * 64, "tokenizer_sha256": "f" * 64},
        "environment": {"uv_lock_sha256": "1" * 64, "image_digest": None},
        "git": {"commit": "a" * 40, "dirty": False},
        "hardware": HARDWARE,
        "metrics": {"eval_loss": 1.5},
        "outputs": {name: _sha(data) for name, data in outputs.items()},
    }
    files = {}
    for name, data in outputs.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        files[release.release_name(name)] = root / name  # as `ft publish` lays it out
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (root / "manifest.json").write_bytes(manifest_bytes)
    (root / "REPRODUCE.md").write_text(render_reproduce(manifest))
    record = {
        "schema": 1,
        "run_id": "smoke",
        "passed": True,
        "mode": "exact",
        "finished_at": "2026-01-01T00:00:00+00:00",
        "manifest_sha256": _sha(manifest_bytes),
        "reproduce_md_sha256": _sha((root / "REPRODUCE.md").read_bytes()),
        "compared": [
            {"file": n, "expected": d, "actual": d, "equal": True}
            for n, d in sorted(manifest["outputs"].items())
        ],
    }
    (root / "verification.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    for name in ("manifest.json", "REPRODUCE.md", "verification.json"):
        files[name] = root / name
    (root / "README.md").write_text(card.model_card(manifest, record, version, files, uri))
    files["README.md"] = root / "README.md"
    return files, release.release_meta(manifest, record)
