"""Bake fixtures for the template tests.

    uv run --frozen pytest                    # fast subset: every answer value at least once
    uv run --frozen pytest --all-variants     # every prompt combination (add -n 2 --dist loadgroup)

A variant is one set of prompt answers. Each variant is baked once per session
(with cookiecutter's Python API, as a user would, post-gen git commit included) and
shared by every test that asks for it; a baked repo that runs is `uv sync`ed once too.
Two tiers:

- every selected variant: file set, no Jinja left, `uv lock --check`, configs and
  `.cruft.json` reflect the answers, one clean git commit, and its configs pass
  `ft config validate` (run by the default bake's `ft`: the code does not depend on
  the answers, the configs do);
- a few on the host's Python, 3.11 (the default bake and one hub-model bake; with
  --all-variants one per base model x registry): `uv sync --frozen`, `ft config
  validate`, `ft data check`, then the baked repo's own pre-commit and pytest.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cookiecutter.exceptions import CookiecutterException
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
# The template venv's uv, never a `uv` from PATH (a pyenv shim there breaks inside a
# baked repo whose .python-version names a Python that is not installed).
UV = Path(sys.executable).parent / "uv"
# Baked repos are synced and run only on the Python running these tests: uv must not
# download another one (CI machines have one Python and no route to its downloads).
HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

COOKIECUTTER_JSON = json.loads((ROOT / "cookiecutter.json").read_text())
PYTHON_VERSIONS: tuple[str, ...] = tuple(COOKIECUTTER_JSON["python_version"])
REGISTRIES: tuple[str, ...] = tuple(COOKIECUTTER_JSON["registry"])
CLOUDS: tuple[str, ...] = tuple(COOKIECUTTER_JSON["cloud"])
BASE_MODELS = ("tiny", "hub")
# (accelerator, num_nodes): the default single GPU, and a multi-node shape.
SHAPES = ((COOKIECUTTER_JSON["accelerator"], COOKIECUTTER_JSON["num_nodes"]), ("A100-80GB:8", "2"))

HUB_MODEL = "acme/llama-tiny"
HUB_REVISION = "0123456789abcdef0123456789abcdef01234567"
# Hub bakes also get a non-default project name, so the slug / package renaming and
# the relocked uv.lock are exercised with a name other than the default's.
HUB_PROJECT_NAME = "Acme Chat_Tune"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One set of prompt answers; the defaults are cookiecutter.json's."""

    python_version: str = PYTHON_VERSIONS[0]
    base_model: str = "tiny"  # "tiny" or "hub" (HUB_MODEL at HUB_REVISION)
    registry: str = REGISTRIES[0]
    cloud: str = CLOUDS[0]
    accelerator: str = SHAPES[0][0]
    num_nodes: str = SHAPES[0][1]

    @property
    def id(self) -> str:
        shape = f"{self.accelerator.replace(':', 'x')}-n{self.num_nodes}"
        return f"py{self.python_version}-{self.base_model}-{self.registry}-{self.cloud}-{shape}"

    @property
    def is_default(self) -> bool:
        return self == Variant()

    @property
    def project_name(self) -> str:
        return HUB_PROJECT_NAME if self.base_model == "hub" else COOKIECUTTER_JSON["project_name"]

    @property
    def slug(self) -> str:
        return self.project_name.lower().replace(" ", "-").replace("_", "-")

    @property
    def package(self) -> str:
        return self.slug.replace("-", "_")

    @property
    def hub(self) -> bool:
        return self.base_model == "hub"

    @property
    def runs_here(self) -> bool:
        return self.python_version == HOST_PYTHON

    def answers(self) -> dict[str, str]:
        """The prompt answers that this variant sets."""
        answers = {
            "python_version": self.python_version,
            "registry": self.registry,
            "cloud": self.cloud,
            "accelerator": self.accelerator,
            "num_nodes": self.num_nodes,
        }
        if self.hub:
            answers |= {
                "project_name": self.project_name,
                "base_model": HUB_MODEL,
                "base_model_revision": HUB_REVISION,
            }
        return answers

    def extra_context(self) -> dict[str, str]:
        """cookiecutter's extra_context: the default variant answers nothing (pure defaults)."""
        return {} if self.is_default else self.answers()


def bakes(cloud: str, nodes: str) -> bool:
    """Answer pairs the pre-gen hook accepts: SkyPilot on RunPod is single-node only."""
    return cloud != "runpod" or nodes == "1"


def all_variants() -> list[Variant]:
    return [
        Variant(py, base, registry, cloud, accel, nodes)
        for py, base, registry, cloud, (accel, nodes) in itertools.product(
            PYTHON_VERSIONS, BASE_MODELS, REGISTRIES, CLOUDS, SHAPES
        )
        if bakes(cloud, nodes)
    ]


def fast_variants() -> list[Variant]:
    """As many rows as the longest choice list (clouds); every answer value appears.

    Row 0 is the default bake and row 1 a hub bake on the host Python. Cycling base
    models with period 2 and registries with period 3 covers every base x registry
    pair; python versions advance every second row, so each meets both base models.
    """
    rows = max(len(PYTHON_VERSIONS) * 2, len(CLOUDS), len(REGISTRIES) * 2)
    variants = []
    for i in range(rows):
        cloud = CLOUDS[i % len(CLOUDS)]
        accelerator, nodes = SHAPES[((i + 1) // 2) % 2]
        if not bakes(cloud, nodes):  # the multi-node shape where the cloud takes it
            accelerator, nodes = SHAPES[0]
        variants.append(
            Variant(
                python_version=PYTHON_VERSIONS[(i // 2) % len(PYTHON_VERSIONS)],
                base_model=BASE_MODELS[i % 2],
                registry=REGISTRIES[i % len(REGISTRIES)],
                cloud=cloud,
                accelerator=accelerator,
                num_nodes=nodes,
            )
        )
    return variants


def run_variants(selected: list[Variant], everything: bool) -> list[Variant]:
    """Variants whose baked repo is synced and runs its own CLI, pre-commit and pytest."""
    runnable = [v for v in selected if v.runs_here]
    if everything:  # one per base model x registry: the answers that change code paths
        firsts: dict[tuple[str, str], Variant] = {}
        for v in runnable:
            firsts.setdefault((v.base_model, v.registry), v)
        return list(firsts.values())
    return [v for v in runnable if v.is_default] + [v for v in runnable if v.hub][:1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all-variants",
        action="store_true",
        help="bake every prompt combination (default: a subset covering every answer value)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    everything = metafunc.config.getoption("--all-variants")
    selected = all_variants() if everything else fast_variants()
    tiers = {"variant": selected, "run_variant": run_variants(selected, everything)}
    for name, variants in tiers.items():
        if name in metafunc.fixturenames:
            # One xdist group per variant: with `-n N --dist loadgroup` a variant is
            # baked and synced on one worker only.
            params = [
                pytest.param(v, id=v.id, marks=pytest.mark.xdist_group(v.id)) for v in variants
            ]
            metafunc.parametrize(name, params, scope="session")


def clean_env(**extra: str) -> dict[str, str]:
    """Environment for commands inside a baked repo: no template venv, offline hubs."""
    env = {
        k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    }
    env |= {
        "UV_PYTHON_DOWNLOADS": "never",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # Hook envs are built once (they need PyPI) and reused by every bake and session.
    env.setdefault("PRE_COMMIT_HOME", str(Path.home() / ".cache" / "pre-commit"))
    return env | extra


def run_proc(
    cmd: list[str | Path], cwd: Path, timeout: float = 900, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a command in a baked repo, unattended, with `clean_env`; return what it did."""
    return subprocess.run(
        [str(c) for c in cmd],
        check=False,
        cwd=cwd,
        env=clean_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run(cmd: list[str | Path], cwd: Path, timeout: float = 900, **env: str) -> str:
    """Run a command in a baked repo; fail the test with its output if it exits non-zero."""
    proc = run_proc(cmd, cwd, timeout, **env)
    if proc.returncode != 0:
        pytest.fail(
            f"`{' '.join(map(str, cmd))}` exited {proc.returncode} in {cwd}\n"
            f"--- stdout ---\n{proc.stdout[-8000:]}\n--- stderr ---\n{proc.stderr[-8000:]}",
            pytrace=False,
        )
    return proc.stdout


def files_on_disk(path: Path) -> set[str]:
    return {
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(path).parts
    }


@dataclasses.dataclass
class Baked:
    variant: Variant
    path: Path
    # Recorded right after the bake, before any test runs a command in the repo.
    files: set[str]  # every file but .git/, relative, as baked
    commits: int
    porcelain: str
    tracked: set[str]


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template as a clone of this work tree would be: a one-commit git repo of the
    tracked and untracked-but-not-ignored files. Caches left in the work tree
    (.ruff_cache/, __pycache__/) stay out of bakes, and the post-gen hook finds a
    commit to record in .cruft.json, as it does for a user baking from a clone."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    out = tmp_path_factory.mktemp("template")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():  # a tracked file deleted in the work tree is gone
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out / rel)
    for args in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "--all"],
        [
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@localhost",
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            "template under test",
        ],
    ):
        run(["git", *args], cwd=out)
    return out


@pytest.fixture(scope="session")
def bake(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[Variant], Baked]:
    """Bake a variant (once per session) and return the baked repo."""
    cache: dict[Variant, Baked] = {}

    def _bake(variant: Variant) -> Baked:
        if variant not in cache:
            out = tmp_path_factory.mktemp(variant.id)
            try:
                path = Path(
                    cookiecutter(
                        str(template),
                        no_input=True,
                        extra_context=variant.extra_context(),
                        output_dir=str(out),
                        default_config=True,  # ignore the user's ~/.cookiecutterrc defaults
                    )
                )
            except CookiecutterException as err:  # the message says which file and why
                pytest.fail(f"baking {variant.id} failed: {err}", pytrace=False)

            def git(*args: str) -> str:
                return run(["git", *args], cwd=path)

            cache[variant] = Baked(
                variant=variant,
                path=path,
                files=files_on_disk(path),
                commits=int(git("rev-list", "--count", "HEAD").strip()),
                porcelain=git("status", "--porcelain", "--untracked-files=all"),
                tracked=set(git("ls-files", "-z").split("\0")) - {""},
            )
        return cache[variant]

    return _bake


@pytest.fixture(scope="session")
def sync(bake: Callable[[Variant], Baked]) -> Callable[[Variant], Path]:
    """Bake and `uv sync --frozen` a variant (once per session); return the repo path."""
    synced: set[Variant] = set()

    def _sync(variant: Variant) -> Path:
        path = bake(variant).path
        if variant not in synced:
            run(
                [UV, "sync", "--frozen", "--group", "launch"], cwd=path
            )  # launch: SkyPilot SDK tests
            synced.add(variant)
        return path

    return _sync


@pytest.fixture(scope="session")
def baked(bake: Callable[[Variant], Baked], variant: Variant) -> Baked:
    return bake(variant)


@pytest.fixture(scope="session")
def default_ft(sync: Callable[[Variant], Path]) -> Path:
    """The default bake's `ft`, to validate every variant's configs without a venv each."""
    if not Variant().runs_here:
        pytest.skip(f"the default bake needs Python {Variant().python_version}")
    return sync(Variant()) / ".venv" / "bin" / "ft"
