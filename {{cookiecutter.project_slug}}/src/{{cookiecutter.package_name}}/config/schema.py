"""The sections after the inputs (train, eval, reproduce, publish, launch, track) and the
whole `Config`, whose resolved dump is what a run records and hashes."""

import re
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from ..util.hashing import sha256_json
from .inputs import DataSpec, ModelSpec
from .section import DEFAULT_CONFIG, HEX64, IMAGE_DIGEST, Section, must_match

PER_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*:[1-9][0-9]*")


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
        return must_match(
            value, HEX64, f"must be a 64-hex sha256, got {value!r}; `sha256sum PATH` prints it"
        )

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
        return must_match(
            value,
            IMAGE_DIGEST,
            f"must be pinned by digest (name@sha256:<64 hex>), got {value!r}: "
            "a tag can be re-pushed",
        )

    @field_validator("accelerators")
    @classmethod
    def _per_node(cls, value: str) -> str:
        return must_match(
            value, PER_NODE, f"must be NAME:COUNT per node, e.g. H100:8, got {value!r}"
        )


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
