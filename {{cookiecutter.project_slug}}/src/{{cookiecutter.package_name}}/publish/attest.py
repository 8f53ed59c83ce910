"""`ft registry verify VERSION`: a pulled version against the release's signed attestation.

    uv run ft registry verify v1.2.0 --repo my-org/my-finetune

The release workflow's publish job (environment `release`) pulls the version it just pushed
and signs a build-provenance attestation over every file of it with
actions/attest-build-provenance: an in-toto statement whose subjects are the files' sha256
(weights, manifest.json, REPRODUCE.md, the resolved config, the verification record, the model
card) and whose predicate names the workflow, the repository, the tagged commit and the run,
signed through Sigstore with the job's OIDC identity and stored by GitHub.

This command pulls the version into a temporary directory (re-verifying every file against
the registry's index, as `ft registry pull`), then asks GitHub, through `gh attestation
verify`, whether each file's digest carries an attestation signed by this repository's
release workflow. A file the registry holds but the release did not attest (swapped after
publishing, or published by hand) fails, named. `gh` must be installed and logged in; the
check needs GitHub, so it is not run offline.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import UserError
from ..util import git

SIGNER_WORKFLOW = ".github/workflows/release.yml"


def _repo(repo: str | None) -> str:
    if repo:
        return repo
    if os.environ.get("GITHUB_REPOSITORY"):
        return os.environ["GITHUB_REPOSITORY"]
    url = git.output("remote", "get-url", "origin") or ""
    tail = url.removesuffix(".git").replace(":", "/").split("/")
    if "github.com" in url and len(tail) >= 2:
        return f"{tail[-2]}/{tail[-1]}"
    raise UserError(
        "cannot tell which GitHub repository released this",
        key="--repo",
        fix="pass --repo OWNER/NAME",
    )


def verify(registry_uri: str, version: str, repo: str | None) -> int:
    from .registries import open_registry
    from .versions import resolve_version

    repo = _repo(repo)
    gh = shutil.which("gh")
    if gh is None:
        raise UserError(
            "the GitHub CLI `gh` is not installed",
            key="gh",
            fix="install it (https://cli.github.com) and `gh auth login`",
        )
    registry = open_registry(registry_uri)
    version = resolve_version(registry, version)
    with tempfile.TemporaryDirectory(prefix="ft-verify-") as tmp:
        dest = Path(tmp) / version
        index = registry.pull(version, dest)
        names = sorted(index["files"])
        for name in names:
            done = subprocess.run(
                [
                    gh,
                    "attestation",
                    "verify",
                    str(dest / name),
                    "--repo",
                    repo,
                    "--signer-workflow",
                    f"{repo}/{SIGNER_WORKFLOW}",
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                why = (done.stderr or done.stdout).strip().splitlines()
                raise UserError(
                    f"{name} of {version} carries no attestation from {repo}'s release "
                    f"workflow ({why[-1] if why else 'gh exited ' + str(done.returncode)})",
                    file=registry_uri,
                    key=version,
                    fix="do not use this version; re-publish it through the release workflow",
                )
    print(f"ok  {version}: {len(names)} files, each attested by {repo}/{SIGNER_WORKFLOW}")
    return 0
