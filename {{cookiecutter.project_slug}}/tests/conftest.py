"""Shared fixtures: the package, a scratch copy of the repo, the tiny base model.

    uv run pytest -q

Everything here runs offline. The package's import name is chosen when the
template is baked, so it is discovered from src/ and handed to tests through the
`pkg` fixture; no test spells it out. Tests run in a scratch copy of the repo
(`data_workdir`, `workdir`) so they never write into the checkout. The tiny base
model costs one torch + transformers import (~10 s), so it is built once per
session (`tiny_base`) and copied where a test needs it.
"""

import importlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from s3_server import s3  # noqa: F401 - the session's S3 server, for every module that asks

# Before anything can import huggingface_hub: a test must never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# The suite exercises laptop behaviour (runs and registries on disk) even when CI runs it: the
# runner rule of ops/runner.py is tested where a test sets GITHUB_ACTIONS itself.
for _name in ("GITHUB_ACTIONS", "FT_RUNNER_SCRATCH"):
    os.environ.pop(_name, None)

ROOT = Path(__file__).resolve().parents[1]
PKG_NAME = next(p.name for p in sorted((ROOT / "src").iterdir()) if (p / "__init__.py").is_file())
# Importing these loads no heavy module, so every test may use them.
LIGHT_MODULES = (
    "errors",
    "util.hashing",
    "config",
    "cli",
    "commands",
    "model.tiny",
    "data.sources",
    "data.filters",
    "data.build",
    "review.report",
    "review.history",
)


@pytest.fixture(scope="session")
def pkg() -> ModuleType:
    """The package, with its light modules imported: `pkg.config`, `pkg.data.build`, ..."""
    for name in LIGHT_MODULES:
        importlib.import_module(f"{PKG_NAME}.{name}")
    return importlib.import_module(PKG_NAME)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, pkg) -> Path:
    """The embedded tiny base model, built once per session; treat it as read-only."""
    out = tmp_path_factory.mktemp("tiny-base") / "tiny-llama"
    pkg.model.tiny.init_tiny(out)
    return out


@pytest.fixture
def data_workdir(tmp_path, monkeypatch) -> Path:
    """A scratch copy of configs/, data/raw/, data/suites/ and data.lock, made the working
    directory."""
    work = tmp_path / "work"
    shutil.copytree(ROOT / "configs", work / "configs")
    shutil.copytree(ROOT / "data" / "raw", work / "data" / "raw")
    shutil.copytree(ROOT / "data" / "suites", work / "data" / "suites")
    shutil.copy2(ROOT / "data.lock", work / "data.lock")
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def workdir(data_workdir, tiny_base) -> Path:
    """`data_workdir` plus a copy of the session's tiny base model at base/tiny-llama."""
    shutil.copytree(tiny_base, data_workdir / "base" / "tiny-llama")
    return data_workdir


@dataclass
class FtResult:
    """What one in-process `ft` invocation returned and printed."""

    code: int
    out: str
    err: str

    def user_error(self, *needles: str) -> str:
        """Assert a user error as the CLI contract has it, and return the message line.

        Exit 2, nothing on stdout, exactly one `error: ...` line on stderr that
        offers a fix, no traceback, and every needle (file, key, cause) in it. A
        registry command may say first which registry it resolved (`registry: URI (...)`).
        """
        assert self.code == 2, (
            f"exit {self.code}, expected 2\nstdout: {self.out}\nstderr: {self.err}"
        )
        assert "Traceback" not in self.err + self.out
        assert self.out == ""
        lines = self.err.splitlines()
        if len(lines) == 2 and lines[0].startswith("registry: "):
            lines = lines[1:]
        assert len(lines) == 1, f"expected one error line, got:\n{self.err}"
        line = lines[0]
        assert line.startswith("error: "), line
        assert "(fix: " in line, line
        for needle in needles:
            assert needle in line, f"{needle!r} not in: {line}"
        return line


@pytest.fixture
def ft(pkg, capsys):
    """Run `ft ARGS...` in-process through the real entry point; returns an FtResult."""

    def run(*argv) -> FtResult:
        capsys.readouterr()  # drop whatever earlier steps printed
        code = pkg.cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return FtResult(code, out, err)

    return run


@pytest.fixture
def run_python():
    """Run `python -c CODE` in a fresh interpreter of this venv, in the current directory."""

    def run(code: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=120,
        )

    return run


# The embedded defaults as the template ships them. Tests marked `shipped` pin exact
# hashes and row counts of these inputs; once this repo changes its data, filters or smoke
# config on purpose, they are skipped (the lock and the closure tests keep guarding it).
SHIPPED = {
    "data.lock": "4e31d1bde46df96a362e9d5cf3dacb2509145d8f426839b43e40023f6830c43e",
    "configs/smoke.yaml": "6f72617d865c6c31933248ad2e43f0a9dce72b2d7eb9d614bffa2635efe67ed0",
}


def _changed_since_shipped() -> list[str]:
    import hashlib

    return [
        rel
        for rel, digest in SHIPPED.items()
        if not (ROOT / rel).is_file()
        or hashlib.sha256((ROOT / rel).read_bytes()).hexdigest() != digest
    ]


def pytest_collection_modifyitems(config, items):
    """Skip `shipped` tests once the defaults changed."""
    changed = _changed_since_shipped()
    if changed:
        skip = pytest.mark.skip(
            reason=f"pins the template's embedded defaults; this repo changed {', '.join(changed)}"
        )
        for item in items:
            if item.get_closest_marker("shipped"):
                item.add_marker(skip)
