"""The one typed config: YAML file + dotted `--set` overrides, validated once.

    uv run ft config validate --config configs/recipe.yaml --set train.lr=2e-4
    uv run ft config show --config configs/smoke.yaml

Unknown keys are refused with their dotted path; hub models must be pinned by a
40-hex commit; images by an `@sha256:` digest. The resolved config (defaults
filled in) is what a run records and hashes.
"""

import json
import re
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

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
    # Each field's docstring is its description: `ft config show --doc` and docs/config.md.
    # inf/nan validate as floats by default (`lr: .inf`): refused, a run would diverge.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, raw):
        """`seed: true` would silently become 1: a number key takes a number only."""
        if isinstance(raw, dict):
            for name, field in cls.model_fields.items():
                if field.annotation in (int, float, int | None, float | None) and isinstance(
                    raw.get(name), bool
                ):
                    raise ValueError(f"`{name}` must be a number, got {raw[name]!r}")
        return raw


class BaseModelSpec(Section):
    """Where the base model comes from: a local directory pinned by content hash,
    or a hub repo pinned by commit."""

    path: str | None = None
    """Local directory of the base model (config.json, weights, tokenizer). Give `path` +
    `sha256`, or `hub_id` + `revision`.
    """
    sha256: str | None = None
    """Content hash of `path` (`ft base hash PATH`); a mismatch stops the run before anything
    loads.
    """
    build: Literal["tiny", "tiny-v2", "small"] | None = None
    """`tiny`, `tiny-v2` or `small`: rebuild that embedded model byte for byte at `path` when
    it is absent (`ft base init-tiny`, `ft base init-small`).
    """
    hub_id: str | None = None
    """Hub repo of the base model, e.g. `org/model`; needs `revision`."""
    revision: str | None = None
    """40-hex hub commit of the base model; a branch or tag name is refused (it moves)."""
    tokenizer_revision: str | None = None
    """40-hex hub commit of the tokenizer; defaults to `revision`."""
    license: str | None = None
    """The base model's licence (an SPDX id or the hub's name, e.g. llama3.1), for the model
    card."""

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
    """Adapter rank: higher learns more; memory and time grow linearly with it."""
    alpha: int = Field(16, ge=1)
    """LoRA scaling numerator (the update is scaled by alpha / r); keep about 2x `r`."""
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the adapter input; its stream derives from `seed`."""
    target_modules: list[str] | Literal["all-linear"] = ["q_proj", "v_proj"]
    """Names of the linear layers that get adapters, or `all-linear` (every linear layer but
    the output head): more layers, more capacity, adapter memory and optimizer state.
    """

    @field_validator("target_modules", mode="before")
    @classmethod
    def _names_or_all_linear(cls, value):
        # One message instead of pydantic's two (one per arm of the union).
        if isinstance(value, str) and value != "all-linear":
            raise ValueError(
                f"must be a list of layer names (e.g. [q_proj, v_proj]) or all-linear, "
                f"got {value!r}"
            )
        return value


class ModelSpec(Section):
    base: BaseModelSpec
    """The base model, pinned by content hash or hub commit."""
    lora: LoraSpec = LoraSpec()
    """The LoRA adapter trained on top of the frozen base."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype of the frozen base weights: bfloat16 halves their memory and speeds GPU matmuls
    (CPU too runs it, slower); the adapter weights, their matmuls and the optimizer state
    stay float32 either way (train/compute.py). Both are byte-identical on re-runs.
    """
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    """Attention kernel: sdpa (torch's fused attention), eager (plain matmuls: more memory),
    or flash_attention_2 (GPU only, needs the flash-attn package; least memory at long
    sequences, run in its deterministic mode at some speed cost).
    """
    quantization: Literal["nf4"] | None = None
    """null, or nf4: QLoRA, the frozen base in 4-bit NF4 through bitsandbytes (`uv sync --frozen
    --group qlora`): about a quarter of the base's memory; each step dequantizes, so slower.
    """


class SourceSpec(Section):
    """One data source pinned by content: a file or directory (local path or s3://, gs://,
    az://, https:// URL) with its sha256, or a hub dataset with its 40-hex revision."""

    name: str
    """Name of the source in data.lock and in error messages."""
    split: Literal["train", "eval"]
    """`train` (trained on) or `eval` (held out, evaluated after training)."""
    path: str | None = None
    """Local file or directory, or an s3://, gs://, az:// or https:// URL (credentials from the
    environment only).
    """
    sha256: str | None = None
    """Content hash of `path` (`ft data hash PATH`); checked on every byte read."""
    format: Literal["jsonl", "parquet", "arrow"] | None = None
    """jsonl, parquet or arrow (a `datasets.save_to_disk` directory); null: from the name
    (.parquet, .arrow or a trailing /, else jsonl).
    """
    etag: str | None = None
    """Optional ETag of a remote object (quote it): a changed object stops before any byte is
    read.
    """
    size: int | None = Field(None, ge=0)
    """Optional size in bytes of a remote object, checked like `etag`."""
    hub_id: str | None = None
    """Hub dataset id (instead of `path`); needs `revision`."""
    revision: str | None = None
    """40-hex hub commit of the dataset."""
    hub_split: str = "train"
    """Split of the hub dataset to read."""

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
    """A registered filter in data/filters.py."""
    params: dict[str, Any] = {}
    """Keyword arguments of the filter."""


class DataSpec(Section):
    sources: list[SourceSpec] = Field(min_length=1)
    """Where the rows come from, each pinned by content."""
    row_format: Literal["chat", "prompt_response"] = "prompt_response"
    """chat: rows of `messages`, rendered with the base tokenizer's chat template
    (data/chat.py). prompt_response: rows of `prompt` and `response`, joined by a newline,
    EOS appended.
    """
    loss_on: Literal["assistant", "last_assistant", "all"] = "assistant"
    """Which chat tokens carry loss: every assistant turn, the last one only, or every token."""
    filters: list[FilterSpec] = []
    """Filters applied in order to every split; their counts go into data.lock."""
    lock: str = "data.lock"
    """The committed data lock: source hashes, per-filter counts, final hashes."""
    out_dir: str = "data/build"
    """Where `ft data build` writes the training set."""
    max_seq_len: int = Field(128, ge=8)
    """Tokens per example; longer rows are truncated. Memory grows with it."""
    workers: int = Field(1, ge=1)
    """Processes for runs of consecutive row filters; the output is identical for any value."""
    packing: bool = False
    """Pack consecutive training examples into rows of up to max_seq_len tokens (attention
    stays within each example): fewer padding tokens, so fewer steps per epoch at the same
    batch_size (batch_size then counts packed rows). The sampler orders packed rows by seed
    and step; eval is never packed.
    """
    token_store: bool = True
    """Tokenize the training set once into a memory-mapped store under out_dir/tokens/ and map
    it on later runs (false: tokenize into memory on every run; same bytes either way).
    """


class TrainSpec(Section):
    optimizer: Literal["adamw_torch", "sgd"] = "adamw_torch"
    """adamw_torch or sgd, pinned by name."""
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay on the adapter weights."""
    lr_schedule: Literal["constant", "linear", "cosine"] = "linear"
    """constant, linear or cosine decay after warmup."""
    warmup_steps: int = Field(0, ge=0)
    """Steps of linear warmup from 0."""
    max_steps: int = Field(100, ge=1)
    """Optimizer steps: the run's length."""
    batch_size: int = Field(8, ge=1)
    """Examples per device per micro-step."""
    grad_accum_steps: int = Field(1, ge=1)
    """Micro-steps per optimizer step (effective batch = batch_size x this x devices)."""
    max_grad_norm: float = Field(1.0, gt=0)
    """Gradient clipping norm."""
    num_workers: int = Field(0, ge=0)
    """Dataloader worker processes; the data order does not depend on it."""
    strategy: Literal["ddp", "fsdp"] = "ddp"
    """How several processes share the model (train/distributed.py). ddp: a whole copy each.
    fsdp: FSDP2 shards base and adapter over them, for a base bigger than one device; each
    layer is gathered per step (more communication). One process: both train alike.
    """
    checkpoint_every: int = Field(50, ge=1)
    """Steps between checkpoints (`ft train --resume` continues from the last); also the
    verification grain: `ft reproduce --segments` replays one interval per checkpoint."""
    log_every: int = Field(10, ge=1)
    """Steps between log lines and metrics.jsonl records."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass: activation memory drops to
    about one layer's, at about a third more compute per step. Same bytes as without.
    """
    fused_optimizer: bool = False
    """One fused kernel for the AdamW/SGD update (CPU and CUDA): faster steps on many
    parameters; deterministic, but not the same bytes as the unfused update.
    """


class SegmentSpec(Section):
    """A slice of a suite's rows: those whose `field` equals `value` (default: the segment's
    name), or those a registered segment function (data/segments.py) keeps."""

    name: str = Field(min_length=1)
    """Segment name in eval.json, the report and gates (`all` is reserved for the whole suite)."""
    field: str | None = None
    """Row field that selects the segment's rows (give `field` or `fn`)."""
    value: str | None = None
    """Value of `field` the rows must have; default: the segment's name."""
    fn: str | None = None
    """A registered segment function in data/segments.py (instead of `field`)."""
    params: dict[str, Any] = {}
    """Keyword arguments of `fn`."""

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
    """Suite name in eval.json, the report and gates (lowercase, digits, - and _)."""
    path: str
    """JSONL file of prompt/response rows."""
    sha256: str
    """Content hash of `path` (`sha256sum PATH`); recorded in data.lock."""
    segments: list[SegmentSpec] = []
    """Slices of the rows, each scored separately; `all` is always reported."""
    metrics: list[str] = ["exact_match", "contains"]
    """Generation metrics (evaluate/metrics.py); loss and perplexity are always scored."""

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
    """The suite the gate reads."""
    segment: str = "all"
    """The segment of that suite (`all`: the whole suite)."""
    metric: str
    """loss, perplexity or one of the suite's generation metrics."""
    max_regression: float = Field(ge=0)
    """Largest regression allowed against the latest release, in the metric's units and bad
    direction.
    """


class EvalSpec(Section):
    batch_size: int = Field(16, ge=1)
    """Eval batch size; it does not change the metric."""
    max_new_tokens: int = Field(16, ge=1)
    """Tokens generated per row for the generation metrics (greedy decoding)."""
    suites: list[SuiteSpec] = []
    """Pinned eval suites, scored per segment after training (docs/data.md)."""
    gates: list[GateSpec] = []
    """Bounds on a suite segment's metric against the last release; a release enforces them."""

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
    """Largest allowed |a - b| over every adapter weight."""
    eval_loss_abs: float = Field(1e-3, ge=0)
    """Largest allowed |a - b| of the eval loss."""


class ReproduceSpec(Section):
    """How `ft reproduce` verifies a run (docs/verification.md). `strategy` and `parallel`
    choose how the gate spends its time; they never change what a run trains."""

    mode: Literal["exact", "tolerance"] = "exact"
    """exact: every output byte equal. tolerance: within `tolerance` (another GPU count or type)."""
    tolerance: ToleranceSpec = ToleranceSpec()
    """Bounds used in tolerance mode only."""
    strategy: Literal["full", "segments"] = "full"
    """full: re-run the whole training. segments: replay every checkpoint interval from its
    recorded start checkpoint (same training work plus a start-up per interval; wall ~ one
    interval with enough processes)."""
    parallel: int = Field(1, ge=1)
    """Intervals replayed at once by `ft reproduce` under strategy segments (processes)."""


class PublishSpec(Section):
    """Where `ft publish` pushes releases (docs/publish.md) and the licence on the model card.

    One registry per repo: `registry` is read from configs/recipe.yaml by every command
    (`--registry` / $FT_REGISTRY override it); other configs leave it unset (null).
    """

    registry: str | None = None
    """file://PATH, hf://OWNER/REPO (token from HF_TOKEN) or mlflow://MODEL_NAME (server from
    MLFLOW_TRACKING_URI); set in configs/recipe.yaml only (null elsewhere).
    """
    license: str = "apache-2.0"
    """Licence written into the model card."""

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
    """local (this machine) or sky (a SkyPilot managed job)."""
    infra: str = "any"
    """SkyPilot infra: any, aws, gcp, kubernetes, ..."""
    accelerators: str = "H100:1"
    """Accelerators per node, NAME:COUNT."""
    num_nodes: int = Field(1, ge=1)
    """Nodes; more than one trains with accelerate over SkyPilot's node IPs."""
    use_spot: bool = True
    """Spot/preemptible instances; a preempted job resumes from its last checkpoint."""
    image: str | None = None
    """Training image, name@sha256:<digest>; null: the one pinned in image.lock."""

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
    """Trackers fed the metrics: any of tensorboard, mlflow, wandb (each needs its package)."""
    experiment: str = Field("ft", min_length=1)
    """MLflow experiment / W&B project the runs are filed under."""
    dir: str = "runs/tracking"
    """Local tracker files (TensorBoard events, W&B), outside run directories."""


class Config(Section):
    seed: int = Field(ge=0, lt=2**63)  # torch takes seeds below 2**64; derive() stays below 2**63
    """Derives every random source: data order, LoRA init, dropout, workers."""
    # The file this config was read from, for error messages; not part of the hash.
    _path: str = PrivateAttr(default=DEFAULT_CONFIG)
    model: ModelSpec
    """The base model and the adapter."""
    data: DataSpec
    """Sources, filters and the data lock."""
    train: TrainSpec = TrainSpec()
    """The optimizer and the training loop."""
    eval: EvalSpec = EvalSpec()
    """Held-out evaluation after training."""
    reproduce: ReproduceSpec = ReproduceSpec()
    """What `ft reproduce` accepts as the same result."""
    publish: PublishSpec = PublishSpec()
    """Where releases go."""
    launch: LaunchSpec = LaunchSpec()
    """Where training runs."""
    track: TrackSpec = TrackSpec()
    """Optional experiment trackers."""

    @model_validator(mode="after")
    def _strategy_fits_the_model(self):
        if self.train.strategy == "fsdp" and self.model.quantization is not None:
            raise ValueError(
                "train.strategy fsdp does not shard a 4-bit base (model.quantization): use "
                "train.strategy ddp with QLoRA, or drop the quantization"
            )
        return self

    def resolved(self) -> dict:
        """Every key with its value, defaults included: what a run records."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        return sha256_json(self.resolved())


def reference(model: type[Section] = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) of every field in the schema, depth first.

    A section inside a list is spelt `key[].field`; a required key has no default. This
    is what `ft config show --doc` prints and docs/config.md's reference table holds.
    """
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        # Required keys and sections (their fields follow, with defaults) show none.
        plain = not field.is_required() and not isinstance(default, BaseModel)
        shown = json.dumps(default) if plain else ""
        doc = " ".join((field.description or "").split())
        rows.append((key, _type_name(field.annotation), shown, doc))
        inner, many = _section_in(field.annotation)
        if inner is not None:
            rows += reference(inner, f"{key}[]." if many else f"{key}.")
    return rows


def reference_markdown() -> str:
    """The reference table of every config key, as Markdown."""
    esc = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, kind, default, doc in reference():
        lines.append(
            f"| `{key}` | {esc(kind)} | {f'`{esc(default)}`' if default else ''} | {esc(doc)} |"
        )
    return "\n".join(lines) + "\n"


def _section_in(annotation) -> tuple[type[Section] | None, bool]:
    """(the section a field holds, whether it holds a list of them)."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation, False
    if get_origin(annotation) is list:
        inner = get_args(annotation)[0]
        if isinstance(inner, type) and issubclass(inner, Section):
            return inner, True
    return None, False


def _type_name(annotation) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error, not a silent overwrite."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (the second one would silently win)",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


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
    fix = "pass --config with a YAML file under configs/"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("config file not found", file=str(path), fix=fix) from None
    except IsADirectoryError:
        raise UserError("is a directory, not a config file", file=str(path), fix=fix) from None
    except UnicodeDecodeError as e:
        raise UserError(
            f"is not UTF-8 text (byte {e.start})", file=str(path), fix="save it as UTF-8"
        ) from None
    except OSError as e:
        raise UserError(f"cannot be read ({e.strerror or e})", file=str(path), fix=fix) from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
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
