"""`hf://OWNER/REPO`: the Hugging Face Hub, one model repo per model, one git tag per version.

    export HF_TOKEN=...            # or `hf auth login`; read by huggingface_hub, never by us
    uv run ft publish runs/<id> --version v1.2.0 --registry hf://my-org/my-finetune

A publish is one commit (`upload_folder`: the release files plus release.json,
replacing what the previous version left at the repo root) and then
`create_tag(version)` on exactly that commit. A hub commit is atomic, and the
tag is the commit point: the hub answers 409 to a second tag of the same name,
so of two concurrent publishes one gets the tag and the other is refused. A
publish killed before the tag leaves a commit on `main` but no version. A repo
created by the first publish is private.

The token is never passed, logged or written here: huggingface_hub reads
$HF_TOKEN or the saved login itself. `api` is a seam: tests hand in a recorder
for HfApi's methods, since the hub cannot be reached from CI (docs/publish.md).
"""

import json
from pathlib import Path

from ...errors import UserError
from . import (
    INDEX_NAME,
    Fetch,
    Registry,
    bad_uri,
    downloaded,
    read_index,
    release_folder,
    sort_versions,
)

FORM = "hf://OWNER/REPO, e.g. hf://my-org/my-finetune"


class HfRegistry(Registry):
    def __init__(self, repo_id: str, uri: str, api=None):
        parts = repo_id.split("/")
        if len(parts) != 2 or not all(parts) or any(c in repo_id for c in " ?#@:"):
            raise bad_uri(f"not a hub model repo: {uri!r}", FORM)
        self.repo_id, self.uri, self._api = repo_id, uri, api

    def _call(self, method: str, *args, **kwargs):
        """One HfApi call; hub answers a user can act on become one-line UserErrors."""
        from huggingface_hub.errors import (
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            return getattr(self.api, method)(*args, **kwargs)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            raise
        except OfflineModeIsEnabled:
            raise UserError(
                f"cannot reach the hub for {self.uri}: HF_HUB_OFFLINE is set",
                key="HF_HUB_OFFLINE",
                fix="unset HF_HUB_OFFLINE to use an hf:// registry",
            ) from None
        except HfHubHTTPError as e:
            status = getattr(e.response, "status_code", None)
            if status in (401, 403):
                raise UserError(
                    f"the hub refused {method} on {self.repo_id} (HTTP {status})",
                    key="HF_TOKEN",
                    fix="export HF_TOKEN with write access to the repo, or run `hf auth login`",
                ) from None
            raise
        except Exception as e:
            # huggingface_hub lets its HTTP client's transport errors (DNS, refused, timeout)
            # through; they all derive from a class named TransportError.
            if not any(c.__name__ == "TransportError" for c in type(e).__mro__):
                raise
            raise UserError(
                f"cannot reach the hub for {self.uri} ({type(e).__name__}: {e})",
                key="HF_ENDPOINT",
                fix="check the network (or HF_ENDPOINT), then run the command again",
            ) from None

    @property
    def api(self):
        if self._api is None:
            from huggingface_hub import HfApi

            self._api = HfApi()
        return self._api

    def versions(self) -> list[str]:
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            refs = self._call("list_repo_refs", self.repo_id)
        except RepositoryNotFoundError:
            return []
        return sort_versions(tag.name for tag in refs.tags)

    def show(self, version: str) -> dict:
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        if not self.exists(version):
            raise self.not_found(version)
        try:
            path = self._call("hf_hub_download", self.repo_id, INDEX_NAME, revision=version)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            raise self.not_found(version) from None
        return read_index(Path(path).read_bytes(), version, f"{self.uri}@{version}/{INDEX_NAME}")

    def publish(self, version: str, files: dict[str, Path], meta: dict) -> dict:
        from huggingface_hub.errors import HfHubHTTPError

        if self.exists(version):
            raise self.already_exists(version, " (a tag of that name)")
        with release_folder(version, files, meta) as (folder, index, _):
            self._call("create_repo", self.repo_id, repo_type="model", private=True, exist_ok=True)
            commit = self._call(
                "upload_folder",
                repo_id=self.repo_id,
                repo_type="model",
                folder_path=str(folder),
                revision="main",
                commit_message=f"Release {version}",
                commit_description=_describe(meta),
                delete_patterns="*",
            )  # the repo root holds exactly this version
        try:
            self._call(
                "create_tag",
                self.repo_id,
                tag=version,
                revision=commit.oid,
                tag_message=f"{version}: run {meta.get('run_id')}, trained at commit "
                f"{meta.get('git_commit')}",
            )
        except HfHubHTTPError as e:
            if getattr(e.response, "status_code", None) == 409:
                raise self.already_exists(version, " (a tag of that name)") from None
            raise
        return index

    def _open(self, version: str, scratch: Path) -> tuple[dict, Fetch]:
        if not self.exists(version):
            raise self.not_found(version)
        self._call("snapshot_download", self.repo_id, revision=version, local_dir=str(scratch))
        return downloaded(
            scratch,
            version,
            self.uri,
            lambda data: read_index(data, version, f"{self.uri}@{version}"),
            made_by="this tag was not made by `ft publish`",
            changed="this tag was changed after `ft publish`",
        )


def _describe(meta: dict) -> str:
    keep = {k: meta[k] for k in ("run_id", "git_commit", "manifest_sha256") if k in meta}
    return "Published by `ft publish` after a passing `ft reproduce`.\n\n" + json.dumps(keep)
