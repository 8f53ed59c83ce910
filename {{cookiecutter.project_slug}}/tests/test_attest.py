"""`ft registry verify` (src/<pkg>/publish/attest.py) up to GitHub's attestation boundary.

    uv run pytest tests/test_attest.py -q

A real directory registry holds a version; `gh` is a stand-in on PATH that answers
`gh attestation verify FILE` from a list of attested sha256 digests, as GitHub's attestation
store would for the release workflow's signatures. What is real: the pull with its hash checks,
which files are asked about, the arguments (repository, signer workflow), the verdict. What
only GitHub can show: the Sigstore signature and its identity (docs/gitops.md).
"""

import hashlib
import importlib
import os
import stat

import pytest

GH = """#!/usr/bin/env bash
echo "$*" >> "$GH_CALLS"
digest=$(sha256sum "$3" | cut -d' ' -f1)
if ! grep -qx "$digest" "$ATTESTED"; then
  echo "Error: no attestations found for sha256:$digest" >&2
  exit 1
fi
"""


@pytest.fixture
def released(pkg, tmp_path, monkeypatch):
    registries = importlib.import_module(f"{pkg.__name__}.publish.registries")
    files = {}
    for name, data in {
        "adapter/adapter_model.safetensors": b"weights",
        "manifest.json": b'{"run": 1}',
        "verification.json": b'{"passed": true}',
    }.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[name] = path
    uri = (tmp_path / "registry").as_uri()
    registries.open_registry(uri).publish("v1.0.0", files, {})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(GH)
    (bin_dir / "gh").chmod(stat.S_IRWXU)
    attested = tmp_path / "attested"
    attested.write_text(
        "".join(hashlib.sha256(p.read_bytes()).hexdigest() + "\n" for p in files.values())
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ATTESTED", str(attested))
    monkeypatch.setenv("GH_CALLS", str(tmp_path / "calls"))
    monkeypatch.chdir(tmp_path)
    return uri, attested, tmp_path / "calls"


def test_every_file_is_checked_against_the_release_workflow(released, ft):
    uri, _, calls = released
    result = ft("registry", "verify", "v1.0.0", "--repo", "acme/ft", "--registry", uri)
    assert result.code == 0, result.err
    assert "ok  v1.0.0: 3 files, each attested by acme/ft/.github/workflows/release.yml" in (
        result.out
    )
    asked = calls.read_text().splitlines()
    assert len(asked) == 3
    assert all(
        line.startswith("attestation verify ")
        and line.endswith("--repo acme/ft --signer-workflow acme/ft/.github/workflows/release.yml")
        for line in asked
    )


def test_a_file_without_an_attestation_fails_by_name(released, ft):
    uri, attested, _ = released
    weights = hashlib.sha256(b"weights").hexdigest()
    attested.write_text(attested.read_text().replace(weights + "\n", ""))
    ft("registry", "verify", "v1.0.0", "--repo", "acme/ft", "--registry", uri).user_error(
        "adapter/adapter_model.safetensors of v1.0.0 carries no attestation from acme/ft",
        "no attestations found",
    )
