"""`mlflow://MODEL_NAME`: an MLflow registered model; the server comes from $MLFLOW_TRACKING_URI.

    export MLFLOW_TRACKING_URI=https://mlflow.example.com   # credentials: MLFLOW_TRACKING_TOKEN...
    uv run ft publish runs/<id> --version v1.2.0 --registry mlflow://my-finetune

A publish logs the release files (and release.json) as artifacts of a new run
under the experiment `ft-registry/MODEL_NAME`, registers a model version from
them carrying the release metadata as tags (`release_version`, `manifest_sha256`,
`index_sha256`, ...), and last points the alias `v1-2-0` at it (aliases may not
contain dots; the `release_version` tag keeps the exact name). The alias is the
commit point: `list`, `show` and `pull` see a version only through its alias.

MLflow has no compare-and-set on aliases, so concurrent publishes of one version
are settled by the registry's own unique, increasing version numbers: each
publisher registers a candidate, and only the lowest-numbered live candidate for
that release may set the alias; the others delete theirs and are refused. A
candidate left by a killed publish blocks the version until it is
`stale_after_s` older than a newer candidate (server clock), then it is removed.

A release here is also an MLflow Model: `MLmodel` (the `python_function` flavour) and its
loader `code/ft_adapter_pyfunc.py` (registry/pyfunc.py) are published with it, hashed in
its index like every other file, so `mlflow.pyfunc.load_model("models:/NAME@v1-2-0")`
returns the base model at its pin with the adapter, generating greedily.
"""

import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

from ...errors import UserError
from ...util.hashing import sha256_bytes
from ...util.net import cap_mlflow_retries, check_reachable
from . import (
    INDEX_NAME,
    Fetch,
    IntegrityError,
    Registry,
    bad_uri,
    check_version,
    downloaded,
    read_index,
    release_folder,
    sort_versions,
)

RELEASE_TAG = "release_version"
ARTIFACT_DIR = "release"
MLMODEL = "MLmodel"
LOADER = "ft_adapter_pyfunc"
FORM = "mlflow://MODEL_NAME, e.g. mlflow://my-finetune"


def model_files(folder: Path) -> dict[str, Path]:
    """The files that make a release directory an MLflow Model with a pyfunc flavour.

    Their bytes depend only on this package's code and the Python/MLflow versions, so two
    publishes of one run carry the same MLmodel."""
    import platform

    import yaml
    from mlflow.version import VERSION as MLFLOW_VERSION

    code = folder / "code" / f"{LOADER}.py"
    code.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("pyfunc.py"), code)
    flavor = {
        "loader_module": LOADER,
        "code": "code",
        "data": ".",
        "python_version": platform.python_version(),
    }
    mlmodel = folder / MLMODEL
    mlmodel.write_text(
        yaml.safe_dump(
            {"flavors": {"python_function": flavor}, "mlflow_version": MLFLOW_VERSION},
            sort_keys=True,
        )
    )
    return {MLMODEL: mlmodel, f"code/{LOADER}.py": code}


def alias_for(version: str) -> str:
    """`v1.2.0` -> `v1-2-0`: MLflow aliases allow only letters, digits, `_` and `-`."""
    return check_version(version).replace(".", "-")


def _reachable(method):
    """Server trouble a user can fix (unreachable, unauthenticated) as one-line UserErrors."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except UserError:
            raise
        except Exception as e:
            from mlflow.exceptions import MlflowException

            if not isinstance(e, MlflowException):
                raise
            text = str(e)
            if e.error_code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
                raise UserError(
                    f"the MLflow server refused {method.__name__} on {self.uri} ({e.error_code})",
                    key="MLFLOW_TRACKING_TOKEN",
                    fix="set MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME/PASSWORD)",
                ) from None
            if text.startswith("API request to") and "failed with exception" in text:
                raise UserError(
                    f"cannot reach the MLflow server at {os.environ.get('MLFLOW_TRACKING_URI')}",
                    key="MLFLOW_TRACKING_URI",
                    fix="start the server or point MLFLOW_TRACKING_URI at it",
                ) from None
            raise

    return wrapper


class MlflowRegistry(Registry):
    # What publish adds beside the release (not in its manifest); `ft registry pull` checks
    # them against this package's own loader (publish/release.py: check_backend_files).
    ADDED_FILES = (MLMODEL, f"code/{LOADER}.py")

    stale_after_s = 600.0

    def __init__(self, name: str, uri: str, client=None):
        if not name or "/" in name or name != name.strip():
            raise bad_uri(f"not an MLflow model name: {uri!r}", FORM)
        self.name, self.uri, self._client = name, uri, client

    @property
    def client(self):
        if self._client is None:
            if not os.environ.get("MLFLOW_TRACKING_URI"):
                raise UserError(
                    f"{self.uri} needs an MLflow server, and MLFLOW_TRACKING_URI is not set",
                    key="MLFLOW_TRACKING_URI",
                    fix="export MLFLOW_TRACKING_URI=http://HOST:PORT of your server",
                )
            # Down or unreachable: say so in seconds, not after MLflow's minutes of retries.
            check_reachable(
                os.environ["MLFLOW_TRACKING_URI"],
                what="the MLflow server",
                key="MLFLOW_TRACKING_URI",
                fix="start the server or point MLFLOW_TRACKING_URI at it",
            )
            cap_mlflow_retries()
            # A CLI prints its own lines: no run links on stdout, no progress bars on stderr.
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            from mlflow import MlflowClient

            self._client = MlflowClient()
        return self._client

    # --- reading ---------------------------------------------------------------------------

    def _released(self) -> dict[str, object]:
        """release version -> its model version, for every alias this backend set."""
        client = self.client  # refuses before importing mlflow when no server is configured
        from mlflow.exceptions import MlflowException

        try:
            model = client.get_registered_model(self.name)
        except MlflowException as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        released = {}
        for alias, number in (model.aliases or {}).items():
            mv = self.client.get_model_version(self.name, number)
            version = mv.tags.get(RELEASE_TAG)
            if version and alias == alias_for(version):
                released[version] = mv
        return released

    @_reachable
    def versions(self) -> list[str]:
        return sort_versions(self._released())

    def _model_version(self, version: str):
        """The model version the release's alias points at, or None."""
        client = self.client
        from mlflow.exceptions import MlflowException

        try:
            mv = client.get_model_version_by_alias(self.name, alias_for(version))
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            raise
        return mv

    @_reachable
    def exists(self, version: str) -> bool:
        # The alias is taken even if it belongs to a release spelt with other dots/dashes
        # (v1.2.0-rc.1 and v1.2.0-rc-1 share v1-2-0-rc-1): either way it cannot be used.
        return self._model_version(version) is not None

    def _download(self, mv, dest: Path) -> Path:
        import mlflow.artifacts

        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=mv.source, dst_path=str(dest), tracking_uri=self.client.tracking_uri
            )
        )

    @_reachable
    def show(self, version: str) -> dict:
        mv = self._require(version)
        with tempfile.TemporaryDirectory(prefix="ft-mlflow-") as tmp:
            import mlflow.artifacts

            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{mv.source}/{INDEX_NAME}",
                dst_path=tmp,
                tracking_uri=self.client.tracking_uri,
            )
            return self._check_index(Path(path).read_bytes(), version, mv)

    def _require(self, version: str):
        mv = self._model_version(version)
        if mv is None or mv.tags.get(RELEASE_TAG) != version:
            raise self.not_found(version)
        return mv

    def _check_index(self, data: bytes, version: str, mv) -> dict:
        where = f"{self.uri} model version {mv.version}"
        if sha256_bytes(data) != mv.tags.get("index_sha256"):
            raise IntegrityError(
                f"{INDEX_NAME} of {version} does not match the model version's index_sha256 tag",
                file=where,
                fix="the artifacts were changed after publishing; restore them",
            )
        return read_index(data, version, where)

    # --- writing ---------------------------------------------------------------------------

    @_reachable
    def publish(self, version: str, files: dict[str, Path], meta: dict) -> dict:
        if self.exists(version):
            raise self.already_exists(version)
        model_dir = Path(tempfile.mkdtemp(prefix="ft-mlflow-model-"))
        try:
            return self._publish(version, {**files, **model_files(model_dir)}, meta)
        finally:
            shutil.rmtree(model_dir, ignore_errors=True)

    def _publish(self, version: str, files: dict[str, Path], meta: dict) -> dict:
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            client.create_registered_model(
                self.name,
                description="Fine-tuned adapters released "
                "by `ft publish`; aliases are release versions.",
            )
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        run = client.create_run(
            self._experiment(),
            run_name=f"publish {version}",
            tags={RELEASE_TAG: version, "ft.run_id": str(meta.get("run_id"))},
        )
        with release_folder(version, files, meta) as (folder, index, data):
            client.log_artifacts(run.info.run_id, str(folder), artifact_path=ARTIFACT_DIR)
        client.set_terminated(run.info.run_id)
        tags = {RELEASE_TAG: version, "index_sha256": sha256_bytes(data), **_flat_tags(meta)}
        mine = client.create_model_version(
            self.name,
            source=f"{run.info.artifact_uri}/{ARTIFACT_DIR}",
            run_id=run.info.run_id,
            tags=tags,
            description=f"Release {version} (ft publish)",
        )
        winner = self._settle(version, mine)
        if winner != mine.version:
            client.delete_model_version(self.name, mine.version)
            raise self.already_exists(
                version,
                f" (model version {winner} holds it or is being published concurrently)",
            )
        client.set_registered_model_alias(self.name, alias_for(version), mine.version)
        return index

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        name = f"ft-registry/{self.name}"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException as e:  # created by a concurrent publish
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    def _settle(self, version: str, mine) -> str:
        """The model version allowed to become `version`: the lowest-numbered live candidate."""
        if self.exists(version):
            return "the alias"
        found = self.client.search_model_versions(
            f"name='{self.name}' and tags.{RELEASE_TAG}='{version}'"
        )
        live = [mine.version]
        for mv in found:
            if mv.version == mine.version:
                continue
            age = int(mine.creation_timestamp) - int(mv.creation_timestamp)
            if age > self.stale_after_s * 1000:
                self.client.delete_model_version(self.name, mv.version)  # left by a killed publish
            else:
                live.append(mv.version)
        return min(live, key=int)

    @_reachable
    def _open(self, version: str, scratch: Path) -> tuple[dict, Fetch]:
        mv = self._require(version)
        return downloaded(
            self._download(mv, scratch),
            version,
            mv.source,
            lambda data: self._check_index(data, version, mv),
            made_by="this model version was not made by `ft publish`",
            changed="the artifacts were changed after publishing",
        )


def _flat_tags(meta: dict) -> dict[str, str]:
    """Release metadata as MLflow tags: scalars as text, nested values as JSON."""
    return {
        key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for key, value in meta.items()
        if value is not None
    }
