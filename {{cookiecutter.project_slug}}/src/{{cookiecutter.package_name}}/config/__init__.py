"""The one typed config: YAML file + dotted `--set` overrides, validated once.

    uv run ft config validate --config configs/recipe.yaml --set train.lr=2e-4
    uv run ft config show --config configs/smoke.yaml

Unknown keys are refused with their dotted path; hub models must be pinned by a
40-hex commit; images by an `@sha256:` digest. The resolved config (defaults
filled in) is what a run records and hashes.

The package: section.py (the base every section shares), inputs.py (model and data),
schema.py (the other sections and `Config`), load.py (YAML, overrides, errors),
reference.py (the documented table of keys).
"""

from .inputs import BaseModelSpec, DataSpec, FilterSpec, LoraSpec, ModelSpec, SourceSpec
from .load import apply_override, dump_yaml, load_config
from .reference import reference, reference_markdown
from .schema import (
    Config,
    EvalSpec,
    GateSpec,
    LaunchSpec,
    PublishSpec,
    ReproduceSpec,
    SegmentSpec,
    SuiteSpec,
    ToleranceSpec,
    TrackSpec,
    TrainSpec,
)
from .section import DEFAULT_CONFIG, HEX40, HEX64, IMAGE_DIGEST, Section

__all__ = [
    "DEFAULT_CONFIG",
    "HEX40",
    "HEX64",
    "IMAGE_DIGEST",
    "BaseModelSpec",
    "Config",
    "DataSpec",
    "EvalSpec",
    "FilterSpec",
    "GateSpec",
    "LaunchSpec",
    "LoraSpec",
    "ModelSpec",
    "PublishSpec",
    "ReproduceSpec",
    "Section",
    "SegmentSpec",
    "SourceSpec",
    "SuiteSpec",
    "ToleranceSpec",
    "TrackSpec",
    "TrainSpec",
    "apply_override",
    "dump_yaml",
    "load_config",
    "reference",
    "reference_markdown",
]
