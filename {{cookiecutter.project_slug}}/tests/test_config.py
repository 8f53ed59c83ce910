"""The typed config: every shipped YAML validates; every mistake is one clear error.

    uv run pytest tests/test_config.py -q

Bad inputs go through the real `ft` entry point (the `ft` fixture), so what is
checked is what a person sees: exit 2 and one `error: file: key: problem (fix: ...)`.
"""

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
SMOKE = "configs/smoke.yaml"
# The resolved smoke config's hash. smoke.yaml does not depend on the bake answers, so
# this moves only when smoke.yaml or the schema (a key or a default) changes; such a
# change alters every run's recorded config hash, so update this pin on purpose.
SMOKE_CONFIG_SHA256 = "896544672f44073916a56c22b6b8041a7da19e49b3ea5243cb893412d3cf179e"
HEX40 = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32
# smoke.yaml with its local tiny base swapped for a hub model (revision still to add).
HUB_BASE = [
    "--set=model.base.path=null",
    "--set=model.base.sha256=null",
    "--set=model.base.build=null",
    "--set=model.base.hub_id=org/model",
]


def write_config(name: str, edit) -> str:
    """Write configs/<name>: smoke.yaml's raw mapping after `edit(raw)`; return its path."""
    raw = yaml.safe_load(Path(SMOKE).read_text())
    edit(raw)
    path = Path("configs", name)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def test_configs_are_found():
    names = {p.name for p in CONFIGS}
    assert {"recipe.yaml", "smoke.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(pkg, path):
    cfg = pkg.config.load_config(path)
    resolved = cfg.resolved()
    # The resolved config is plain JSON and YAML, and re-validates to the same config.
    assert json.loads(json.dumps(resolved)) == resolved
    assert yaml.safe_load(pkg.config.dump_yaml(resolved)) == resolved
    assert pkg.config.Config.model_validate(resolved).resolved() == resolved
    assert cfg.hash() == pkg.util.hashing.sha256_json(resolved)
    assert len(cfg.hash()) == 64


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_opens_with_its_command(path):
    header = path.read_text().splitlines()[0:3]
    assert all(line.startswith("#") for line in header)
    assert f"uv run ft train --config configs/{path.name}" in "\n".join(header)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_cli_validate_prints_each_hash(pkg, ft, data_workdir, path):
    rel = f"configs/{path.name}"
    result = ft("config", "validate", "--config", rel)
    assert result.code == 0, result.err
    assert result.out == f"ok  {rel}  config sha256 {pkg.config.load_config(rel).hash()}\n"


@pytest.mark.shipped
def test_smoke_config_hash_is_pinned(pkg, data_workdir):
    assert pkg.config.load_config(SMOKE).hash() == SMOKE_CONFIG_SHA256


@pytest.mark.shipped
def test_config_hash_is_stable_across_processes(pkg, data_workdir, run_python):
    code = f"from {pkg.__name__}.config import load_config\nprint(load_config({SMOKE!r}).hash())"
    runs = [run_python(code, PYTHONHASHSEED=seed) for seed in ("0", "4242")]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert [r.stdout.strip() for r in runs] == [SMOKE_CONFIG_SHA256] * 2


def test_resolved_config_fills_defaults_and_omits_its_path(pkg, data_workdir):
    resolved = pkg.config.load_config(SMOKE).resolved()
    # smoke.yaml has no publish or launch section: the defaults are recorded anyway
    # (registry null: the repo's, from configs/recipe.yaml).
    assert resolved["publish"] == {"registry": None, "license": "apache-2.0"}
    assert resolved["launch"]["image"] is None
    assert resolved["train"]["max_steps"] == 12
    assert "_path" not in json.dumps(resolved)


@pytest.mark.shipped
def test_hash_ignores_file_name_comments_and_key_order(pkg, data_workdir):
    raw = yaml.safe_load(Path(SMOKE).read_text())
    reordered = dict(reversed(list(raw.items())))
    Path("configs/copy.yaml").write_text(yaml.safe_dump(reordered, sort_keys=False))
    assert pkg.config.load_config("configs/copy.yaml").hash() == SMOKE_CONFIG_SHA256


def test_hash_changes_with_any_value(pkg, data_workdir):
    changed = pkg.config.load_config(SMOKE, ["train.lr=0.004"]).hash()
    assert changed != SMOKE_CONFIG_SHA256


def test_config_show_prints_a_config_that_validates_to_the_same_hash(pkg, ft, data_workdir):
    result = ft("config", "show", "--config", SMOKE, "--set", "train.max_steps=7")
    assert result.code == 0, result.err
    first, _, body = result.out.partition("\n")
    expected = pkg.config.load_config(SMOKE, ["train.max_steps=7"]).hash()
    assert first == f"# resolved {SMOKE}  sha256 {expected}"
    Path("configs/shown.yaml").write_text(result.out)
    assert pkg.config.load_config("configs/shown.yaml").hash() == expected
    assert yaml.safe_load(body)["train"]["max_steps"] == 7


# --- overrides -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "assignment, path, expected",
    [
        ("train.lr=2e-4", ("train", "lr"), 2e-4),
        ("seed=7", ("seed",), 7),
        ("launch.use_spot=false", ("launch", "use_spot"), False),
        ("data.sources.1.name=held-out", ("data", "sources", 1, "name"), "held-out"),
        (
            "model.lora.target_modules.0=k_proj",
            ("model", "lora", "target_modules"),
            ["k_proj", "v_proj"],
        ),
        ("model.lora.target_modules=[o_proj]", ("model", "lora", "target_modules"), ["o_proj"]),
        ("data.filters.2.params.limit=100", ("data", "filters", 2, "params", "limit"), 100),
        ("publish.license=", ("publish", "license"), ""),
        (f"launch.image=ghcr.io/org/ft@{DIGEST}", ("launch", "image"), f"ghcr.io/org/ft@{DIGEST}"),
    ],
)
def test_override_sets_a_dotted_key(pkg, data_workdir, assignment, path, expected):
    node = pkg.config.load_config(SMOKE, [assignment]).resolved()
    for part in path:
        node = node[part]
    assert node == expected


def test_later_override_wins(pkg, data_workdir):
    cfg = pkg.config.load_config(SMOKE, ["train.max_steps=3", "train.max_steps=5"])
    assert cfg.train.max_steps == 5


def test_override_creates_a_missing_section(pkg, data_workdir):
    # smoke.yaml has no `publish:` section; an override may still set a key in it.
    cfg = pkg.config.load_config(SMOKE, ["publish.license=mit"])
    assert cfg.publish.license == "mit"
    assert cfg.publish.registry is None


@pytest.mark.parametrize(
    "assignment, needles",
    [
        ("train.lr", ["--set", "bad override 'train.lr'", "dotted.key=value"]),
        ("=3", ["--set", "bad override '=3'"]),
        ("train..lr=1", ["--set", "bad override 'train..lr=1'"]),
        ("data.sources.2.name=x", ["--set data.sources.2.name", "no list item '2'", "below 2"]),
        ("data.sources.first.name=x", ["--set data.sources.first.name", "no list item 'first'"]),
        ("seed.value=1", ["--set seed.value", "seed is not a mapping"]),
    ],
)
def test_bad_override_is_a_user_error(ft, data_workdir, assignment, needles):
    ft("config", "validate", "--config", SMOKE, "--set", assignment).user_error(*needles)


def test_override_of_an_unknown_key_is_refused(ft, data_workdir):
    result = ft("config", "validate", "--config", SMOKE, "--set", "train.learning_rate=1e-3")
    result.user_error(SMOKE, "--set train.learning_rate", "train has no key 'learning_rate'", "lr")


@pytest.mark.parametrize(
    "assignment, needles",
    [
        ("no.such.key=1", ["--set no.such.key:", "the top level has no key 'no'", "seed, model"]),
        ("model.lora.rank.x=4", ["--set model.lora.rank.x:", "model.lora has no key 'rank'"]),
        ("data.sources.0.sha=1", ["--set data.sources.0.sha:", "data.sources.0 has no key 'sha'"]),
    ],
)
def test_override_of_an_unknown_path_names_the_full_dotted_path(
    ft, data_workdir, assignment, needles
):
    line = ft("config", "validate", "--config", SMOKE, "--set", assignment).user_error(
        SMOKE, *needles
    )
    assert "Extra inputs" not in line


def test_override_inside_a_free_form_mapping_is_accepted(pkg, data_workdir):
    cfg = pkg.config.load_config(SMOKE, ["data.filters.0.params.new_param=3"])
    assert cfg.data.filters[0].params["new_param"] == 3


# --- validation errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, dotted",
    [
        (lambda raw: raw.update(epochs=3), "epochs"),
        (lambda raw: raw["train"].update(lrr=0.1), "train.lrr"),
        (lambda raw: raw["model"]["lora"].update(rank=4), "model.lora.rank"),
        (lambda raw: raw["data"]["sources"][1].update(sha=""), "data.sources.1.sha"),
        (lambda raw: raw["data"]["filters"][2].update(param={}), "data.filters.2.param"),
    ],
    ids=["top", "section", "nested", "list-item", "filter"],
)
def test_unknown_key_is_refused_with_its_dotted_path(ft, data_workdir, edit, dotted):
    path = write_config("typo.yaml", edit)
    line = ft("config", "validate", "--config", path).user_error(
        path, f"{dotted}: Extra inputs are not permitted", "remove the key or fix its spelling"
    )
    assert line.count("Extra inputs") == 1


@pytest.mark.parametrize(
    "assignment, dotted",
    [
        ("train.max_steps=lots", "train.max_steps"),
        ("train.lr=fast", "train.lr"),
        ("seed=-1", "seed"),
        ("model.lora.dropout=1.5", "model.lora.dropout"),
        ("model.lora.target_modules=q_proj", "model.lora.target_modules"),
        ("launch.use_spot=maybe", "launch.use_spot"),
        ("data.max_seq_len=4", "data.max_seq_len"),
        ("data.sources=[]", "data.sources"),
    ],
)
def test_wrong_type_or_range_names_the_key(ft, data_workdir, assignment, dotted):
    ft("config", "validate", "--config", SMOKE, "--set", assignment).user_error(
        f"{SMOKE}: {dotted}: ", "see the comment on this key"
    )


def test_value_outside_a_choice_lists_the_choices(ft, data_workdir):
    result = ft("config", "validate", "--config", SMOKE, "--set", "train.optimizer=adam")
    result.user_error(SMOKE, "train.optimizer", "use one of the allowed values", "'sgd'")


def test_missing_required_key(ft, data_workdir):
    path = write_config("no-seed.yaml", lambda raw: raw.pop("seed"))
    ft("config", "validate", "--config", path).user_error(
        path, "seed: Field required", "add the key"
    )


def test_every_error_is_reported_at_once(ft, data_workdir):
    result = ft(
        "config", "validate", "--config", SMOKE, "--set=train.lrr=1", "--set=eval.batch_size=0"
    )
    result.user_error("train.lrr", "eval.batch_size")


def test_missing_config_file(ft, data_workdir):
    ft("config", "validate", "--config", "configs/nope.yaml").user_error(
        "configs/nope.yaml: config file not found", "pass --config"
    )


def test_missing_config_file_for_a_stage_command(ft, data_workdir):
    ft("data", "check", "--config", "configs/nope.yaml").user_error(
        "configs/nope.yaml: config file not found"
    )


def test_invalid_yaml_names_the_line(ft, data_workdir):
    Path("configs/broken.yaml").write_text("seed: 1\nmodel:\n  base: [unclosed\n")
    ft("config", "validate", "--config", "configs/broken.yaml").user_error(
        "configs/broken.yaml: line ", "not valid YAML", "fix the YAML syntax"
    )


@pytest.mark.parametrize("text", ["- seed: 1\n", "just text\n", ""])
def test_config_must_be_a_mapping(ft, data_workdir, text):
    Path("configs/list.yaml").write_text(text)
    ft("config", "validate", "--config", "configs/list.yaml").user_error(
        "configs/list.yaml: the config must be a mapping"
    )


# --- pins -------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", ["main", "v1.0", "deadbee", "null"])
def test_hub_base_revision_must_be_a_commit(ft, data_workdir, revision):
    result = ft(
        "config", "validate", "--config", SMOKE, *HUB_BASE, f"--set=model.base.revision={revision}"
    )
    needle = (
        "model.base: a hub model needs `revision`"  # YAML null: the key is effectively absent
        if revision == "null"
        else "model.base.revision: must be a 40-hex commit"
    )
    result.user_error(SMOKE, needle, "moves under you")


def test_uppercase_commit_is_refused_saying_hub_commits_are_lowercase(ft, data_workdir):
    upper = "ABCDEF" + HEX40[6:]
    line = ft(
        "config", "validate", "--config", SMOKE, *HUB_BASE, f"--set=model.base.revision={upper}"
    ).user_error(SMOKE, "model.base.revision", "hub commit ids are lowercase hex")
    assert f"write 'abcdef{HEX40[6:]}'" in line and "branch or tag" not in line


def test_hub_base_without_revision_is_refused(ft, data_workdir):
    result = ft("config", "validate", "--config", SMOKE, *HUB_BASE)
    result.user_error(SMOKE, "model.base: a hub model needs `revision`, a 40-hex commit")


def test_hub_base_pinned_by_commit_is_accepted(pkg, data_workdir):
    args = [a.removeprefix("--set=") for a in HUB_BASE]
    cfg = pkg.config.load_config(SMOKE, [*args, f"model.base.revision={HEX40}"])
    assert (cfg.model.base.hub_id, cfg.model.base.revision) == ("org/model", HEX40)
    cfg = pkg.config.load_config(
        SMOKE, [*args, f"model.base.revision={HEX40}", f"model.base.tokenizer_revision={HEX40}"]
    )
    assert cfg.model.base.tokenizer_revision == HEX40


def test_hub_tokenizer_revision_must_be_a_commit(ft, data_workdir):
    result = ft(
        "config",
        "validate",
        "--config",
        SMOKE,
        *HUB_BASE,
        f"--set=model.base.revision={HEX40}",
        "--set=model.base.tokenizer_revision=main",
    )
    result.user_error(SMOKE, "model.base.tokenizer_revision: must be a 40-hex commit", "'main'")


@pytest.mark.parametrize(
    "assignments, needle",
    [
        (["model.base.sha256=null"], "a local base model needs `sha256`"),
        (["model.base.sha256=abc123"], "must be a 64-hex sha256, got 'abc123'"),
        ([f"model.base.revision={HEX40}"], "`revision` is for hub models"),
        (["model.base.hub_id=org/model"], "give exactly one of `path` (local directory) or"),
    ],
)
def test_local_base_is_pinned_by_content(ft, data_workdir, assignments, needle):
    sets = [f"--set={a}" for a in assignments]
    ft("config", "validate", "--config", SMOKE, *sets).user_error(SMOKE, "model.base", needle)


def test_local_source_needs_its_sha256(ft, data_workdir):
    result = ft("config", "validate", "--config", SMOKE, "--set=data.sources.1.sha256=null")
    result.user_error(SMOKE, "data.sources.1: a path source needs `sha256`", "ft data hash")


def test_hub_source_needs_a_commit(ft, data_workdir):
    sets = ["--set=data.sources.0.path=null", "--set=data.sources.0.hub_id=org/data"]
    result = ft(
        "config", "validate", "--config", SMOKE, *sets, "--set=data.sources.0.revision=main"
    )
    result.user_error(SMOKE, "data.sources.0: a hub dataset needs `revision`, a 40-hex commit")


@pytest.mark.parametrize(
    "image",
    ["ghcr.io/org/ft:latest", "ghcr.io/org/ft", "ghcr.io/org/ft@sha256:abc", "ft@" + DIGEST + "0"],
)
def test_image_must_be_pinned_by_digest(ft, data_workdir, image):
    result = ft("config", "validate", "--config", SMOKE, f"--set=launch.image={image}")
    result.user_error(SMOKE, "launch.image: must be pinned by digest", "a tag can be re-pushed")


@pytest.mark.parametrize(
    "image", [f"ghcr.io/org/ft@{DIGEST}", f"localhost:5000/ft:v1@{DIGEST}", f"ft@{DIGEST}"]
)
def test_image_pinned_by_digest_is_accepted(pkg, data_workdir, image):
    assert pkg.config.load_config(SMOKE, [f"launch.image={image}"]).launch.image == image


# --- the reference: every key documented from the schema ----------------------------------


def test_every_config_key_has_a_description(pkg):
    undocumented = [key for key, _, _, doc in pkg.config.reference() if not doc]
    assert undocumented == [], "give each field a docstring in config/"


def test_docs_config_reference_matches_the_schema(pkg):
    text = (ROOT / "docs" / "config.md").read_text()
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    table = text[text.index(start) + len(start) : text.index(end)]
    assert table == pkg.config.reference_markdown(), (
        "docs/config.md is stale: paste `uv run ft config show --doc` between its markers"
    )


def test_config_show_doc_prints_the_reference(pkg, ft):
    result = ft("config", "show", "--doc")
    assert (result.code, result.err) == (0, "")
    assert result.out == pkg.config.reference_markdown()
    assert "| `train.lr` | float | `0.001` | Peak learning rate. |" in result.out
