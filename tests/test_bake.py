"""Bake the template for each selected answer set and check what the user gets.

    uv run --frozen pytest tests/test_bake.py                  # fast subset
    uv run --frozen pytest tests/test_bake.py --all-variants   # every combination

Fixtures and the variant matrix live in conftest.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import (
    BASE_MODELS,
    CLOUDS,
    HOST_PYTHON,
    HUB_MODEL,
    HUB_REVISION,
    PYTHON_VERSIONS,
    REGISTRIES,
    SHAPES,
    UV,
    Baked,
    Variant,
    fast_variants,
    run,
    run_proc,
)

# Every file a bake produces, `{package}` standing for the package directory. Keep in
# step with the template: the failure message lists what is missing or unexpected.
FILES = [
    ".cruft.json",
    ".github/CODEOWNERS",
    ".github/DRILL_FAILURE.md",
    ".github/dependabot.yml",
    ".github/pull_request_template.md",
    ".github/workflows/ci.yml",
    ".github/workflows/drill.yml",
    ".github/workflows/image.yml",
    ".github/workflows/release.yml",
    ".github/workflows/template-update.yml",
    ".github/workflows/train-watch.yml",
    ".github/workflows/train.yml",
    ".gitignore",
    ".pre-commit-config.yaml",
    ".python-version",
    "Dockerfile",
    "README.md",
    "configs/recipe.yaml",
    "configs/smoke.yaml",
    "configs/small.yaml",
    "data.lock",
    "data/raw/chat-eval.jsonl",
    "data/raw/chat-train.jsonl",
    "data/raw/eval.jsonl",
    "data/raw/train.jsonl",
    "data/suites/tasks.jsonl",
    "docs/artifact-store.md",
    "docs/config.md",
    "docs/data.md",
    "docs/decisions/0000-template.md",
    "docs/decisions/0001-typed-config-with-pydantic.md",
    "docs/decisions/0002-training-loop-on-accelerate.md",
    "docs/decisions/0003-skypilot-click-override.md",
    "docs/decisions/0004-derived-seeds-and-own-sampler.md",
    "docs/decisions/0005-registry-immutability.md",
    "docs/decisions/0006-image-pinned-by-digest-launch-by-sdk.md",
    "docs/decisions/0007-checkpoint-commit-protocol-on-object-stores.md",
    "docs/decisions/0008-reports-and-trackers-stay-outside-the-closure.md",
    "docs/decisions/0015-verdicts-recomputed-and-what-a-local-gate-proves.md",
    "docs/decisions/0016-one-writer-per-run-url-by-a-conditional-lease.md",
    "docs/decisions/0017-config-commands-and-recipe-split.md",
    "docs/decisions/0018-publish-and-closure-split-by-concern.md",
    "docs/decisions/0019-optional-groups.md",
    "docs/decisions/0022-type-checked-with-mypy.md",
    "docs/decisions/0026-chat-rows-through-the-base-template.md",
    "docs/decisions/0027-releases-load-with-one-standard-call.md",
    "docs/decisions/0010-no-state-on-the-runner.md",
    "docs/decisions/0011-detached-training-observed-by-a-scheduled-poll.md",
    "docs/decisions/0012-template-updates-stay-on-cruft.md",
    "docs/decisions/0013-workflow-tests-run-each-act-run-from-nothing.md",
    "docs/decisions/0020-package-grouped-by-stage.md",
    "docs/decisions/0021-reports-rendered-from-jinja-templates.md",
    "docs/decisions/0023-the-drill-reports-in-an-issue.md",
    "docs/decisions/0030-eval-suites-and-gates.md",
    "docs/decisions/0031-base-migration-measures-drift-before-training.md",
    "docs/decisions/0045-stream-data-and-map-tokens.md",
    "docs/decisions/0035-one-registry-per-repo.md",
    "docs/decisions/0036-hub-snapshots-hashed-file-by-file.md",
    "docs/decisions/0040-verify-by-segment-replay.md",
    "docs/decisions/0041-segment-replay-shares-its-bytecode.md",
    "docs/decisions/0042-sky-interval-results-collected-from-the-bucket.md",
    "docs/decisions/0043-a-skypilot-stand-in-that-runs-the-job.md",
    "docs/decisions/0044-the-task-run-script-is-ft-task-run.md",
    "docs/decisions/0046-a-sky-release-is-verified-by-detached-interval-jobs.md",
    "docs/decisions/0047-the-drill-of-a-sky-release-is-detached-too.md",
    "docs/decisions/0025-an-embedded-small-base-built-by-code.md",
    "docs/decisions/0032-qlora-through-bitsandbytes.md",
    "docs/decisions/0033-fsdp2-sharding-with-gathered-adapter-checkpoints.md",
    "docs/decisions/0028-compute-options-keep-exact-bytes.md",
    "docs/decisions/0029-packing-is-a-view-over-the-examples.md",
    "docs/determinism.md",
    "docs/evaluation.md",
    "docs/gitops.md",
    "docs/governance.md",
    "docs/launch.md",
    "docs/migration.md",
    "docs/publish.md",
    "docs/reliability.md",
    "docs/reports.md",
    "docs/verification.md",
    "image.lock",
    "pyproject.toml",
    "scripts/faults.py",
    "scripts/install-chromium.sh",
    "sky/train.yaml",
    "src/{package}/__init__.py",
    "src/{package}/cli.py",
    "src/{package}/closure/__init__.py",
    "src/{package}/closure/checkout.py",
    "src/{package}/closure/cleanroom.py",
    "src/{package}/closure/compare.py",
    "src/{package}/closure/diff.py",
    "src/{package}/closure/manifest.py",
    "src/{package}/closure/reproduce.py",
    "src/{package}/closure/reproduce_md.py",
    "src/{package}/closure/segments.py",
    "src/{package}/closure/segments_sky.py",
    "src/{package}/closure/release_verify.py",
    "src/{package}/commands/__init__.py",
    "src/{package}/commands/config.py",
    "src/{package}/commands/data.py",
    "src/{package}/commands/ops.py",
    "src/{package}/commands/publish.py",
    "src/{package}/commands/review.py",
    "src/{package}/commands/spec.py",
    "src/{package}/commands/train.py",
    "src/{package}/config/__init__.py",
    "src/{package}/config/inputs.py",
    "src/{package}/config/load.py",
    "src/{package}/config/reference.py",
    "src/{package}/config/schema.py",
    "src/{package}/config/section.py",
    "src/{package}/data/__init__.py",
    "src/{package}/data/build.py",
    "src/{package}/data/chat.py",
    "src/{package}/data/filters.py",
    "src/{package}/data/loader.py",
    "src/{package}/data/packing.py",
    "src/{package}/data/lock.py",
    "src/{package}/data/named.py",
    "src/{package}/data/pool.py",
    "src/{package}/data/progress.py",
    "src/{package}/data/segments.py",
    "src/{package}/data/serialize.py",
    "src/{package}/data/sources.py",
    "src/{package}/data/formats.py",
    "src/{package}/data/suites.py",
    "src/{package}/data/tokens.py",
    "src/{package}/errors.py",
    "src/{package}/evaluate/__init__.py",
    "src/{package}/evaluate/gates.py",
    "src/{package}/evaluate/metrics.py",
    "src/{package}/evaluate/suites.py",
    "src/{package}/model/__init__.py",
    "src/{package}/model/tiny.py",
    "src/{package}/model/quant.py",
    "src/{package}/ops/__init__.py",
    "src/{package}/ops/doctor.py",
    "src/{package}/ops/fetch.py",
    "src/{package}/ops/image.py",
    "src/{package}/ops/inputs.py",
    "src/{package}/ops/jobs.py",
    "src/{package}/ops/launch.py",
    "src/{package}/ops/remote.py",
    "src/{package}/ops/runner.py",
    "src/{package}/ops/runlock.py",
    "src/{package}/ops/shape.py",
    "src/{package}/ops/store.py",
    "src/{package}/ops/task.py",
    "src/{package}/ops/tracking.py",
    "src/{package}/publish/__init__.py",
    "src/{package}/publish/attest.py",
    "src/{package}/publish/card.py",
    "src/{package}/publish/export.py",
    "src/{package}/publish/gate.py",
    "src/{package}/publish/generate.py",
    "src/{package}/publish/registries/__init__.py",
    "src/{package}/publish/registries/hf.py",
    "src/{package}/publish/registries/local.py",
    "src/{package}/publish/registries/mlflow.py",
    "src/{package}/publish/registries/pyfunc.py",
    "src/{package}/publish/release.py",
    "src/{package}/publish/verdict.py",
    "src/{package}/publish/versions.py",
    "src/{package}/review/__init__.py",
    "src/{package}/review/behaviour.py",
    "src/{package}/review/drill.py",
    "src/{package}/review/drill_sky.py",
    "src/{package}/review/gates.py",
    "src/{package}/review/history.py",
    "src/{package}/review/migrate/__init__.py",
    "src/{package}/review/migrate/drift.py",
    "src/{package}/review/migrate/edit.py",
    "src/{package}/review/migrate/report.py",
    "src/{package}/review/plan.py",
    "src/{package}/review/report/__init__.py",
    "src/{package}/review/report/figures.py",
    "src/{package}/review/report/format.py",
    "src/{package}/review/report/load.py",
    "src/{package}/review/report/markdown.py",
    "src/{package}/review/report/templates/gates.md.j2",
    "src/{package}/review/report/templates/history.html.j2",
    "src/{package}/review/report/templates/migration.md.j2",
    "src/{package}/review/report/templates/plan.md.j2",
    "src/{package}/review/report/templates/report.md.j2",
    "src/{package}/review/report/templates/tables.md.j2",
    "src/{package}/review/report/templating.py",
    "src/{package}/train/__init__.py",
    "src/{package}/train/checkpoint.py",
    "src/{package}/train/compute.py",
    "src/{package}/train/determinism.py",
    "src/{package}/train/distributed.py",
    "src/{package}/train/loop.py",
    "src/{package}/train/outputs.py",
    "src/{package}/train/recipe.py",
    "src/{package}/train/rundir.py",
    "src/{package}/util/__init__.py",
    "src/{package}/util/git.py",
    "src/{package}/util/hashing.py",
    "src/{package}/util/paths.py",
    "src/{package}/util/records.py",
    "src/{package}/util/net.py",
    "src/{package}/util/groups.py",
    "tests/conftest.py",
    "tests/fixtures/filter_rows.jsonl",
    "tests/launch_support.py",
    "tests/release_support.py",
    "tests/report_runs.py",
    "tests/test_bad_input.py",
    "tests/test_attest.py",
    "tests/test_base.py",
    "tests/test_chat.py",
    "tests/test_cli.py",
    "tests/test_compute.py",
    "tests/test_closure.py",
    "tests/test_config.py",
    "tests/test_data.py",
    "tests/test_data_parallel.py",
    "tests/test_distributed.py",
    "tests/test_doctor.py",
    "tests/test_groups.py",
    "tests/test_eval.py",
    "tests/test_filters.py",
    "tests/test_gates.py",
    "tests/test_history.py",
    "tests/test_hub_base.py",
    "tests/test_image.py",
    "tests/test_integrity.py",
    "tests/test_jobs.py",
    "tests/test_launch.py",
    "tests/test_migrate.py",
    "tests/test_publish.py",
    "tests/test_quant.py",
    "tests/test_registry.py",
    "tests/test_render.py",
    "tests/test_report.py",
    "tests/test_resolve.py",
    "tests/test_runlock.py",
    "tests/test_segments_collect.py",
    "tests/test_segments_sky.py",
    "tests/test_store.py",
    "tests/test_task.py",
    "tests/test_sky_standin.py",
    "tests/sky_standin/sitecustomize.py",
    "tests/sky_standin/skyjobs.py",
    "tests/sky_standin/vm.py",
    "tests/git_https.py",
    "tests/test_sources.py",
    "tests/test_tokens.py",
    "tests/test_data_memory.py",
    "tests/s3_server.py",
    "uv.lock",
]

# Files that only some answers get: {path: predicate on the variant}. Empty: every answer
# gets every file (the post-gen hook removes none).
OPTIONAL_FILES: dict[str, Callable[[Variant], bool]] = {}

# A Jinja tag left unrendered. `${{` (GitHub Actions expressions) and `${#` (shell
# string length) are legitimate outputs, so a `$` right before the brace is allowed.
JINJA_LEFT = re.compile(r"(?<!\$)\{[{%#]")
# Braces that are meant to reach the user, per file: name each one exactly.
BRACES_SHIPPED = {
    # Issue template filled in by the drill workflow's create-an-issue step.
    ".github/DRILL_FAILURE.md": ["{{ env.RUN_URL }}", "{{ env.GATES }}"],
    # The embedded tiny tokenizer's chat template (Jinja run by transformers) and its test.
    "src/{package}/model/tiny.py": [
        "{{- bos_token -}}",
        "{%- for message in messages -%}",
        "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}",
        "{{- raise_exception('roles are system, user and assistant, got ' + message['role']) -}}",
        "{%- endif -%}",
        "{{- '<|' + message['role'] + '|>\\\\n' + message['content'] + eos_token + '\\\\n' -}}",
        "{%- endfor -%}",
        "{%- if add_generation_prompt -%}",
        "{{- '<|assistant|>\\\\n' -}}",
    ],
    "tests/test_chat.py": ["{{ messages|length }}"],
    "tests/test_data_memory.py": ["{{name: {name}}}"],
    # The report templates' filters (format.py), rendered from a string.
    "tests/test_render.py": ["{{ 1234567|fmt }}", "{{ 'a|b'|cell }}", "{{ none|code }}"],
    "tests/test_tokens.py": ["{% for m in messages %}", "{{ m['content'] }}", "{% endfor %}"],
}


GENERATED = Path(__file__).resolve().parents[1] / "{{cookiecutter.project_slug}}"
# The package's own Jinja templates (report.md, the history page, migration.md, the gate
# table, the plan and their shared tables): `_copy_without_render` lists
# `src/*.j2`, so they reach the bake as they are in the template; checked byte for byte instead.
PACKAGE_TEMPLATES = {f for f in FILES if f.endswith(".j2")}


# `ft config validate` of both shipped configs (the CLI check of a bake).
VALIDATE_CONFIGS = [
    "config",
    "validate",
    "--config",
    "configs/recipe.yaml",
    "--config",
    "configs/smoke.yaml",
]


def expected_files(variant: Variant) -> set[str]:
    keep = {f for f in FILES if OPTIONAL_FILES.get(f, lambda _: True)(variant)}
    return {f.format(package=variant.package) for f in keep}


def recipe(path: Path, name: str = "recipe.yaml") -> dict:
    return yaml.safe_load((path / "configs" / name).read_text())


# --- the matrix itself ------------------------------------------------------


def test_default_variant_is_cookiecutter_json_defaults() -> None:
    assert fast_variants()[0] == Variant()
    assert Variant().extra_context() == {}


def test_fast_subset_covers_every_answer() -> None:
    fast = fast_variants()
    for field, values in {
        "python_version": PYTHON_VERSIONS,
        "base_model": BASE_MODELS,
        "registry": REGISTRIES,
        "cloud": CLOUDS,
        "accelerator": tuple(a for a, _ in SHAPES),
        "num_nodes": tuple(n for _, n in SHAPES),
    }.items():
        assert {getattr(v, field) for v in fast} == set(values), field
    pairs = {(v.base_model, v.registry) for v in fast}
    assert pairs == {(b, r) for b in BASE_MODELS for r in REGISTRIES}
    assert any(v.hub and v.runs_here for v in fast), "no hub bake runs on the host Python"


# --- every selected variant -------------------------------------------------


def test_file_set(baked: Baked) -> None:
    got, want = baked.files, expected_files(baked.variant)
    assert got == want, f"missing: {sorted(want - got)}\nunexpected: {sorted(got - want)}"


def test_no_jinja_left(baked: Baked) -> None:
    leftovers = []
    shipped_braces = {
        name.format(package=baked.variant.package): braces
        for name, braces in BRACES_SHIPPED.items()
    }
    verbatim = {name.format(package=baked.variant.package): name for name in PACKAGE_TEMPLATES}
    for rel in sorted(baked.files):
        if JINJA_LEFT.search(rel) or "cookiecutter" in rel:
            leftovers.append(f"{rel}: in the file name")
        if rel in verbatim:
            source = GENERATED / verbatim[rel].format(package="{{cookiecutter.package_name}}")
            assert (baked.path / rel).read_bytes() == source.read_bytes(), f"{rel} was rendered"
            continue
        try:
            text = (baked.path / rel).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for n, line in enumerate(text.splitlines(), 1):
            for shipped in shipped_braces.get(rel, []):
                line = line.replace(shipped, "")
            if JINJA_LEFT.search(line):
                leftovers.append(f"{rel}:{n}: {line.strip()}")
    assert not leftovers, "unrendered Jinja:\n" + "\n".join(leftovers)


def test_uv_lock_is_current(baked: Baked) -> None:
    # --python: 3.12 / 3.13 bakes are locked with the host interpreter, not a download.
    run([UV, "lock", "--check", "--python", HOST_PYTHON], cwd=baked.path)


def test_python_version_file(baked: Baked) -> None:
    assert (baked.path / ".python-version").read_text() == f"{baked.variant.python_version}\n"


def test_names(baked: Baked) -> None:
    v = baked.variant
    assert baked.path.name == v.slug
    assert (baked.path / "src" / v.package / "__init__.py").is_file()
    pyproject = (baked.path / "pyproject.toml").read_text()
    assert f'name = "{v.slug}"' in pyproject
    assert f'ft = "{v.package}.cli:main"' in pyproject
    assert f'module-name = "{v.package}"' in pyproject


def test_recipe_reflects_answers(baked: Baked) -> None:
    v, cfg = baked.variant, recipe(baked.path)
    base = cfg["model"]["base"]
    if v.hub:
        assert base["hub_id"] == HUB_MODEL
        assert base["revision"] == HUB_REVISION
        assert "path" not in base
    else:
        assert base["path"] == "base/tiny-llama"
        assert re.fullmatch(r"[0-9a-f]{64}", base["sha256"])
        assert "hub_id" not in base and "revision" not in base
    assert (
        cfg["publish"]["registry"]
        == {
            "local": "file://./registry",
            "hf": f"hf://my-org/{v.slug}",  # owner from the default ml_owners @my-org/ml-team
            "mlflow": f"mlflow://{v.slug}",
        }[v.registry]
    )
    assert cfg["launch"]["infra"] == v.cloud
    assert cfg["launch"]["accelerators"] == v.accelerator
    assert cfg["launch"]["num_nodes"] == int(v.num_nodes)


def test_smoke_config_always_uses_tiny_model(baked: Baked) -> None:
    base = recipe(baked.path, "smoke.yaml")["model"]["base"]
    assert base["path"] == "base/tiny-llama" and "hub_id" not in base


def test_git_one_clean_commit(baked: Baked) -> None:
    assert baked.commits == 1
    assert baked.porcelain == "", f"dirty tree after bake:\n{baked.porcelain}"
    # Nothing the template ships is hidden by its own .gitignore.
    hidden = baked.files - baked.tracked
    assert not hidden, f"shipped but ignored by the baked .gitignore: {sorted(hidden)}"


def test_cruft_link(baked: Baked, template: Path) -> None:
    # The template-update workflow runs `cruft check` against this record.
    state = json.loads((baked.path / ".cruft.json").read_text())
    head = run(["git", "rev-parse", "HEAD"], cwd=template).strip()
    assert (state["template"], state["commit"]) == (str(template), head)
    context = state["context"]["cookiecutter"]
    assert {k: context[k] for k in baked.variant.answers()} == baked.variant.answers()


def test_pre_commit_hooks_install_from_pypi_only(baked: Baked) -> None:
    # Behind a package mirror with no git host, only local hooks with pinned PyPI
    # dependencies install; ruff must be the dev group's ruff, or the two disagree, and
    # the uv that starts the dev group's mypy must be the dev group's uv.
    config = yaml.safe_load((baked.path / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    hooks = config["repos"][0]["hooks"]
    for hook in hooks:
        assert hook["language"] == "python", hook["id"]
        deps = hook["additional_dependencies"]
        assert deps and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", d) for d in deps), hook["id"]
    pyproject = (baked.path / "pyproject.toml").read_text()
    for tool in ("ruff", "uv"):
        pins = {d for h in hooks for d in h["additional_dependencies"] if d.startswith(f"{tool}==")}
        assert pins == set(re.findall(rf'"({tool}==[^"]+)"', pyproject)), tool
    mypy = next(h for h in hooks if h["id"] == "mypy")
    assert mypy["entry"].split()[:3] == ["uv", "run", "--frozen"] and "mypy==" in pyproject


def test_configs_validate(baked: Baked, default_ft: Path) -> None:
    out = run([default_ft, *VALIDATE_CONFIGS], cwd=baked.path)
    assert out.count("ok ") == 2, out


# --- a few on the host Python: the baked repo installs and its own gates pass


def test_cli_runs(sync: Callable[[Variant], Path], run_variant: Variant) -> None:
    path = sync(run_variant)
    run([".venv/bin/ft", *VALIDATE_CONFIGS], cwd=path)
    run([".venv/bin/ft", "data", "check"], cwd=path)


def test_pre_commit(sync: Callable[[Variant], Path], run_variant: Variant) -> None:
    path = sync(run_variant)
    proc = run_proc([".venv/bin/pre-commit", "run", "--all-files", "--color=never"], cwd=path)
    if proc.returncode != 0:
        failed = [line for line in proc.stdout.splitlines() if line.endswith("Failed")]
        pytest.fail(
            "pre-commit hooks failed in the baked repo:\n"
            + "\n".join(failed)
            + f"\n--- output (tail) ---\n{proc.stdout[-12000:]}{proc.stderr[-2000:]}",
            pytrace=False,
        )


@pytest.mark.slow
def test_baked_repo_tests(sync: Callable[[Variant], Path], run_variant: Variant) -> None:
    path = sync(run_variant)
    # The whole suite (minutes) on the default bake; the others differ only in answers
    # that the slow end-to-end tests do not read (they train configs/smoke.yaml).
    select = [] if run_variant.is_default else ["-m", "not slow"]
    proc = run_proc([".venv/bin/pytest", "-q", "-p", "no:cacheprovider", *select], path, 3600)
    assert proc.returncode == 0, f"{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}"


# --- the template's own docs -------------------------------------------------


def test_layout_doc_names_every_file_cookiecutter_renders() -> None:
    """docs/layout.md lists the files that hold Jinja for cookiecutter: every file that is
    not copied as it is (`_copy_without_render`, matched with fnmatch as cookiecutter does)
    and holds `{{`/`{%`. A new templated file, or one that lost its Jinja, fails here."""
    from fnmatch import fnmatch

    verbatim = json.loads((GENERATED.parent / "cookiecutter.json").read_text())[
        "_copy_without_render"
    ]
    rendered = set()
    for path in GENERATED.rglob("*"):
        rel = path.relative_to(GENERATED).as_posix()
        if not path.is_file() or any(fnmatch(rel, pattern) for pattern in verbatim):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if re.search(r"\{\{|\{%", text):
            rendered.add(rel)
    doc = (GENERATED.parent / "docs" / "layout.md").read_text()
    listed = doc.split("Jinja appears only in file and folder names and in ", 1)[1]
    listed = listed.split("(tests/test_bake.py", 1)[0]
    assert set(re.findall(r"`([^`]+)`", listed)) == rendered
    # `*` crosses `/` in fnmatch: the reason `src/*.py` covers the nested package.
    assert fnmatch("src/{{cookiecutter.package_name}}/train/recipe.py", "src/*.py")
