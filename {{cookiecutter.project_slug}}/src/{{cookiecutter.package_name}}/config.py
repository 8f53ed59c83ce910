"""The one typed config: YAML file + dotted `--set` overrides, validated once.

    uv run ft config validate --config configs/recipe.yaml --set train.lr=2e-4
    uv run ft config show --config configs/smoke.yaml

Unknown keys are refused with their dotted path; hub models must be pinned by a
40-hex commit; images by an `@sha256:` digest. The resolved config (defaults
filled in) is what a run records and hashes.
"""

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import UserError
from .util.hashing import sha256_json

DEFAULT_CONFIG = "configs/recipe.yaml"
HEX40 = re.compile(r"[0-9a-f]{40}")
HEX64 = re.compile(r"[0-9a-f]{64}")
IMAGE_DIGEST = re.compile(r"[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseModelSpec(Section):
    """Where the base model comes from: a local directory pinned by content hash,
    or a hub repo pinned by commit."""

    path: str | None = None
    sha256: str | None = None
    build: Literal["tiny", "tiny-v2"] | None = None
    hub_id: str | None = None
    revision: str | None = None
    tokenizer_revision: str | None = None
    # The base model's licence (an SPDX id or the hub's name, e.g. llama3.1), for the model card.
    license: str | None = None

    @field_validator("revision", "tokenizer_revision")
    @classmethod
    def _commit(cls, value: str | None) -> str | None:
        if value is not None and HEX40.fullmatch(value.lower()) and value != value.lower():
            raise ValueError(
                f"{value!r} is a commit in uppercase, but hub commit ids are lowercase hex: "
                f"write {value.lower()!r}"
            )
        if value is not None and not HEX40.fullmatch(value):
            raise ValueError(
                f"must be a 40-hex commit, got {value!r}: a branch or tag such as "
                "'main' moves under you"
            )
        return value

    @field_validator("sha256")
    @classmethod
    def _content_hash(cls, value: str | None) -> str | None:
        if value is not None and not HEX64.fullmatch(value):
            raise ValueError(
                f"must be a 64-hex sha256, got {value!r}; `ft base hash PATH` prints it"
            )
        return value

    @model_validator(mode="after")
    def _pinned(self):
        if (self.path is None) == (self.hub_id is None):
            raise ValueError("give exactly one of `path` (local directory) or `hub_id`")
        if self.path is not None:
            if self.sha256 is None:
                raise ValueError(
                    "a local base model needs `sha256`, the 64-hex content hash "
                    "printed by `ft base hash PATH`"
                )
            if self.revision or self.tokenizer_revision:
                raise ValueError(
                    "`revision` is for hub models; a local model is pinned by `sha256`"
                )
        else:
            if self.build is not None:
                raise ValueError("`build` applies to a local `path` only")
            if self.revision is None:
                raise ValueError(
                    "a hub model needs `revision`, a 40-hex commit: a branch or tag "
                    "such as 'main' moves under you"
                )
        return self


class LoraSpec(Section):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "v_proj"]


class ModelSpec(Section):
    base: BaseModelSpec
    lora: LoraSpec = LoraSpec()
    dtype: Literal["float32", "bfloat16"] = "float32"


class SourceSpec(Section):
    """One data source pinned by content: a file or directory (local path or s3://, gs://,
    az://, https:// URL) with its sha256, or a hub dataset with its 40-hex revision."""

    name: str
    split: Literal["train", "eval"]
    path: str | None = None
    sha256: str | None = None
    # jsonl, parquet or arrow (a directory of Arrow files, e.g. `datasets.save_to_disk`);
    # None: from the name (.parquet, .arrow or a trailing /, else jsonl).
    format: Literal["jsonl", "parquet", "arrow"] | None = None
    # Optional fail-fast pins of a remote object: checked against its metadata before any
    # byte is read. The sha256 stays the pin; these only stop a changed object early.
    etag: str | None = None
    size: int | None = Field(None, ge=0)
    hub_id: str | None = None
    revision: str | None = None
    hub_split: str = "train"

    @model_validator(mode="after")
    def _pinned(self):
        if (self.path is None) == (self.hub_id is None):
            raise ValueError("give exactly one of `path` or `hub_id`")
        if self.path is not None and (self.sha256 is None or not HEX64.fullmatch(self.sha256)):
            raise ValueError(
                "a path source needs `sha256` (64-hex); `ft data hash PATH_OR_URL` prints it"
            )
        if self.hub_id is not None and (
            self.revision is None or not HEX40.fullmatch(self.revision)
        ):
            if self.revision and HEX40.fullmatch(self.revision.lower()):
                raise ValueError(
                    f"`revision` {self.revision!r} is in uppercase, but hub commit ids are "
                    f"lowercase hex: write {self.revision.lower()!r}"
                )
            raise ValueError("a hub dataset needs `revision`, a 40-hex commit")
        if self.hub_id is not None and (self.format or self.etag or self.size is not None):
            raise ValueError("`format`, `etag` and `size` apply to a `path` source only")
        return self

    @property
    def kind(self) -> str:
        """The reader: jsonl, parquet or arrow (hub sources: hub)."""
        if self.path is None:
            return "hub"
        if self.format is not None:
            return self.format
        name = self.path.rstrip("/").lower()
        if name.endswith(".parquet"):
            return "parquet"
        if name.endswith(".arrow") or self.path.endswith("/"):
            return "arrow"
        return "jsonl"


class FilterSpec(Section):
    name: str
    params: dict[str, Any] = {}


class DataSpec(Section):
    sources: list[SourceSpec] = Field(min_length=1)
    # chat: rows of `messages`, rendered with the base tokenizer's chat template (data/chat.py).
    # prompt_response: rows of `prompt` and `response`, joined by a newline, EOS appended.
    row_format: Literal["chat", "prompt_response"] = "prompt_response"
    # Which chat tokens carry loss: every assistant turn, the last one only, or every token.
    loss_on: Literal["assistant", "last_assistant", "all"] = "assistant"
    filters: list[FilterSpec] = []
    lock: str = "data.lock"
    out_dir: str = "data/build"
    max_seq_len: int = Field(128, ge=8)
    # Processes for runs of consecutive row filters; the output is identical for any value.
    workers: int = Field(1, ge=1)
    # Tokenize the training set once into a memory-mapped store under out_dir/tokens/ and
    # map it on later runs (false: tokenize into memory on every run; same bytes either way).
    token_store: bool = True


class TrainSpec(Section):
    optimizer: Literal["adamw_torch", "sgd"] = "adamw_torch"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "linear"
    warmup_steps: int = Field(0, ge=0)
    max_steps: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    num_workers: int = Field(0, ge=0)
    checkpoint_every: int = Field(50, ge=1)
    log_every: int = Field(10, ge=1)


class SegmentSpec(Section):
    """A slice of a suite's rows: those whose `field` equals `value` (default: the segment's
    name), or those a registered segment function (data/segments.py) keeps."""

    name: str = Field(min_length=1)
    field: str | None = None
    value: str | None = None
    fn: str | None = None
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _one_rule(self):
        if self.name == "all":
            raise ValueError("`all` is the whole suite, always reported; name the segment else")
        if (self.field is None) == (self.fn is None):
            raise ValueError(
                "give exactly one of `field` (a row field) or `fn` (a segment function)"
            )
        if self.fn is not None and self.value is not None:
            raise ValueError("`value` goes with `field`; a segment function takes `params`")
        return self


class SuiteSpec(Section):
    """One eval suite: a JSONL file of prompt/response rows pinned by sha256 (recorded in
    data.lock), cut into segments, scored by loss and by generation metrics."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    path: str
    sha256: str
    segments: list[SegmentSpec] = []
    metrics: list[str] = ["exact_match", "contains"]

    @field_validator("sha256")
    @classmethod
    def _content_hash(cls, value: str) -> str:
        if not HEX64.fullmatch(value):
            raise ValueError(f"must be a 64-hex sha256, got {value!r}; `sha256sum PATH` prints it")
        return value

    @model_validator(mode="after")
    def _unique_segments(self):
        names = [s.name for s in self.segments]
        if len(set(names)) != len(names):
            raise ValueError(f"segment names must be unique, got {names}")
        return self


class GateSpec(Section):
    """The largest regression of one metric allowed against the baseline release."""

    suite: str
    segment: str = "all"
    metric: str
    max_regression: float = Field(ge=0)  # absolute, in the metric's units, in its bad direction


class EvalSpec(Section):
    batch_size: int = Field(16, ge=1)
    max_new_tokens: int = Field(16, ge=1)
    suites: list[SuiteSpec] = []
    gates: list[GateSpec] = []

    @model_validator(mode="after")
    def _gates_name_suites(self):
        suites = {s.name: s for s in self.suites}
        if len(suites) != len(self.suites):
            raise ValueError("suite names must be unique")
        for i, gate in enumerate(self.gates):
            suite = suites.get(gate.suite)
            if suite is None:
                raise ValueError(
                    f"gates.{i}.suite {gate.suite!r} is not a suite (suites: {sorted(suites)})"
                )
            segments = ["all", *(s.name for s in suite.segments)]
            if gate.segment not in segments:
                raise ValueError(
                    f"gates.{i}.segment {gate.segment!r} is not a segment of {gate.suite!r} "
                    f"({segments})"
                )
            metrics = ["loss", "perplexity", *suite.metrics]
            if gate.metric not in metrics:
                raise ValueError(
                    f"gates.{i}.metric {gate.metric!r} is not measured on {gate.suite!r} "
                    f"({metrics})"
                )
        return self


class ToleranceSpec(Section):
    weights_max_abs: float = Field(1e-4, ge=0)
    eval_loss_abs: float = Field(1e-3, ge=0)


class ReproduceSpec(Section):
    mode: Literal["exact", "tolerance"] = "exact"
    tolerance: ToleranceSpec = ToleranceSpec()


class PublishSpec(Section):
    """Where `ft publish` pushes releases (docs/publish.md) and the licence on the model card.

    One registry per repo: `registry` is read from configs/recipe.yaml by every command
    (`--registry` / $FT_REGISTRY override it); other configs leave it unset (null).
    """

    registry: str | None = None
    license: str = "apache-2.0"

    @model_validator(mode="after")
    def _scheme(self):
        if self.registry is None:
            return self
        scheme, sep, rest = self.registry.partition("://")
        if scheme not in ("file", "hf", "mlflow") or not sep or not rest:
            raise ValueError(
                f"`registry` must be file://PATH, hf://OWNER/REPO or "
                f"mlflow://MODEL_NAME, got {self.registry!r}"
            )
        return self


class LaunchSpec(Section):
    """Where `ft launch` trains (docs/launch.md). The hardware keys shape the SkyPilot job;
    `ft launch --backend sky` also checks accelerator names and counts against its own list."""

    backend: Literal["local", "sky"] = "local"
    infra: str = "any"
    accelerators: str = "H100:1"
    num_nodes: int = Field(1, ge=1)
    use_spot: bool = True
    image: str | None = None

    @field_validator("image")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not IMAGE_DIGEST.fullmatch(value):
            raise ValueError(
                f"must be pinned by digest (name@sha256:<64 hex>), got {value!r}: "
                "a tag can be re-pushed"
            )
        return value

    @field_validator("accelerators")
    @classmethod
    def _per_node(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*:[1-9][0-9]*", value):
            raise ValueError(f"must be NAME:COUNT per node, e.g. H100:8, got {value!r}")
        return value


class TrackSpec(Section):
    """Optional trackers fed the same records as RUN_DIR/metrics.jsonl (always written)."""

    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = []
    experiment: str = Field("ft", min_length=1)  # MLflow experiment / W&B project name
    dir: str = "runs/tracking"  # local tracker files (TensorBoard events, W&B), outside run dirs


class Config(Section):
    seed: int = Field(ge=0)
    # The file this config was read from, for error messages; not part of the hash.
    _path: str = PrivateAttr(default=DEFAULT_CONFIG)
    model: ModelSpec
    data: DataSpec
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    reproduce: ReproduceSpec = ReproduceSpec()
    publish: PublishSpec = PublishSpec()
    launch: LaunchSpec = LaunchSpec()
    track: TrackSpec = TrackSpec()

    def resolved(self) -> dict:
        """Every key with its value, defaults included: what a run records."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        return sha256_json(self.resolved())


def apply_override(raw: dict, assignment: str) -> None:
    """Set `a.b.c=value` in a raw config dict; the value is parsed as YAML."""
    key, sep, text = assignment.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(
            f"bad override {assignment!r}",
            key="--set",
            fix="write it as dotted.key=value, e.g. --set train.lr=2e-4",
        )
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(
                    f"no list item {part!r} under {'.'.join(parts[:i]) or 'the top'}",
                    key=f"--set {key}",
                    fix=f"use an index below {len(node)}",
                )
            part = int(part)
        elif not isinstance(node, dict):
            raise UserError(
                f"{'.'.join(parts[:i])} is not a mapping",
                key=f"--set {key}",
                fix="override a key that exists in the config schema",
            )
        if last:
            node[part] = yaml.safe_load(text) if text else ""
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def _unknown_override(assignment: str) -> tuple[str, str] | None:
    """For `--set` of a key the schema does not have: (the unknown prefix as pydantic
    names it, a message naming the whole dotted path). Pydantic alone would report only
    the first unknown part (`no: Extra inputs are not permitted` for `no.such.key`)."""
    import types
    import typing

    key = assignment.partition("=")[0]
    parts = key.split(".")
    node: Any = Config
    for i, part in enumerate(parts):
        # Unwrap `X | None` and list items down to a section class, if there is one.
        while True:
            origin = typing.get_origin(node)
            if origin in (typing.Union, types.UnionType):
                node = next(a for a in typing.get_args(node) if a is not type(None))
            elif origin is list and part.isdigit():
                node, part = typing.get_args(node)[0], None
                break
            else:
                break
        if part is None:
            continue  # a list index: checked against the list when applied
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return None  # a free-form mapping (filter params) or a scalar: nothing to check
        if part not in node.model_fields:
            where = ".".join(parts[:i]) or "the top level"
            known = ", ".join(n for n in node.model_fields if not n.startswith("_"))
            return ".".join(parts[: i + 1]), (
                f"--set {key}: not a config key: {where} has no key {part!r} (fix: remove the "
                f"override or fix its spelling; {where} has {known})"
            )
        node = node.model_fields[part].annotation
    return None


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _fix_for(error: dict) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "remove the key or fix its spelling; configs/recipe.yaml documents every key"
    if kind == "missing":
        return "add the key; configs/recipe.yaml shows it with a comment"
    if kind == "literal_error":
        return f"use one of the allowed values ({error['msg'].removeprefix('Input should be ')})"
    return "see the comment on this key in configs/recipe.yaml"


def load_config(path: str | Path = DEFAULT_CONFIG, overrides: list[str] = ()) -> Config:
    """Read, override and validate; every user mistake becomes one UserError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(
            "config file not found", file=str(path), fix="pass --config with a file under configs/"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise UserError(
            f"not valid YAML: {getattr(e, 'problem', e)}",
            file=str(path),
            key=where,
            fix="fix the YAML syntax at that line",
        ) from None
    if not isinstance(raw, dict):
        raise UserError(
            "the config must be a mapping of keys",
            file=str(path),
            fix="start from configs/recipe.yaml",
        )
    for assignment in overrides:
        apply_override(raw, assignment)
    unknown = dict(filter(None, map(_unknown_override, overrides)))
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        lines = list(unknown.values())
        for err in e.errors():
            if err["type"] == "extra_forbidden" and _dotted(err["loc"]) in unknown:
                continue  # said above, with the override's whole path
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{_dotted(err['loc'])}: {msg} (fix: {_fix_for(err)})")
        raise UserError("; ".join(lines), file=str(path)) from None
    cfg._path = str(path)
    return cfg


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
