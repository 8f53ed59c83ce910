"""The pinned inputs of a run: the base model and its adapter, the data sources and filters."""

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .section import HEX40, HEX64, Section, must_match


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
        return must_match(
            value,
            HEX40,
            f"must be a 40-hex commit, got {value!r}: a branch or tag such as "
            "'main' moves under you",
        )

    @field_validator("sha256")
    @classmethod
    def _content_hash(cls, value: str | None) -> str | None:
        return must_match(
            value, HEX64, f"must be a 64-hex sha256, got {value!r}; `ft base hash PATH` prints it"
        )

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
