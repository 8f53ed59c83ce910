"""The pre-gen hook refuses bad answers: one line on stderr, nothing left on disk.

uv run --frozen pytest tests/test_hooks.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import HUB_MODEL, HUB_REVISION
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

HUB = {"base_model": HUB_MODEL, "base_model_revision": HUB_REVISION}

BAD_ANSWERS = {
    "slug-with-capitals": ({"project_slug": "My_Finetune"}, "project_slug"),
    "slug-starts-with-digit": ({"project_slug": "1finetune"}, "project_slug"),
    "package-not-identifier": ({"package_name": "my-finetune"}, "package_name"),
    "base-model-not-hub-id": ({"base_model": "llama tiny"}, "base_model"),
    "revision-is-a-branch": ({**HUB, "base_model_revision": "main"}, "base_model_revision"),
    "revision-too-short": (
        {**HUB, "base_model_revision": HUB_REVISION[:12]},
        "base_model_revision",
    ),
    "revision-uppercase-hex": (
        {**HUB, "base_model_revision": HUB_REVISION.upper()},
        "base_model_revision",
    ),
    "hub-without-revision": ({"base_model": HUB_MODEL}, "base_model_revision"),
    "revision-with-tiny": ({"base_model_revision": HUB_REVISION}, "base_model_revision"),
    "nodes-not-integer": ({"num_nodes": "two"}, "num_nodes"),
    "nodes-fraction": ({"num_nodes": "1.5"}, "num_nodes"),
    "nodes-zero": ({"num_nodes": "0"}, "num_nodes"),
    "accelerator-without-count": ({"accelerator": "H100"}, "accelerator"),
    "accelerator-zero-count": ({"accelerator": "H100:0"}, "accelerator"),
    "accelerator-with-space": ({"accelerator": "H100 :1"}, "accelerator"),
    "gh200-with-an-amd64-image": ({"accelerator": "GH200:1"}, "accelerator"),
    "runpod-multi-node": ({"cloud": "runpod", "num_nodes": "2"}, "num_nodes"),
}


@pytest.mark.parametrize(("answers", "key"), BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_pre_gen_hook_refuses(
    answers: dict[str, str],
    key: str,
    template: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(FailedHookException):
        cookiecutter(
            str(template),
            no_input=True,
            extra_context=answers,
            output_dir=str(tmp_path),
            default_config=True,
        )
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"ft-template: bad answer {key}="), lines[0]
    assert list(tmp_path.iterdir()) == [], "a refused bake left files behind"


def test_pre_gen_hook_accepts_a_pinned_hub_model(template: Path, tmp_path: Path) -> None:
    baked = cookiecutter(
        str(template),
        no_input=True,
        extra_context={**HUB, "num_nodes": "4", "accelerator": "A100-80GB:8"},
        output_dir=str(tmp_path),
        default_config=True,
    )
    assert Path(baked, "configs", "recipe.yaml").is_file()


def test_a_real_template_update_through_cruft(template: Path, tmp_path: Path) -> None:
    """Bake from a clone (the README's way), commit a template change, `cruft update`:
    the change arrives, `cruft check` passes, and no nested repository crept into the diff."""
    import os
    import subprocess
    import sys

    cruft = str(Path(sys.executable).parent / "cruft")

    def run(*argv: str, cwd: Path) -> str:
        ident = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@localhost",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@localhost",
        }
        env = {k: v for k, v in os.environ.items() if k != "FT_TEMPLATE_NO_GIT"} | ident
        done = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
        return done.stdout

    clone = tmp_path / "ft-template"
    run("git", "clone", "--quiet", str(template), str(clone), cwd=tmp_path)
    baked = Path(cookiecutter(str(clone), no_input=True, output_dir=str(tmp_path / "out")))
    state = json.loads((baked / ".cruft.json").read_text())
    assert state["template"] == str(clone)
    run(cruft, "check", cwd=baked)

    doc = clone / "{{cookiecutter.project_slug}}" / "docs" / "governance.md"
    doc.write_text(doc.read_text() + "\nA line the template added later.\n")
    run("git", "commit", "--quiet", "-am", "Template: one more governance line", cwd=clone)
    head = run("git", "rev-parse", "HEAD", cwd=clone).strip()

    run(cruft, "update", "--skip-apply-ask", "--allow-untracked-files", cwd=baked)
    run(cruft, "check", cwd=baked)
    assert "A line the template added later." in (baked / "docs" / "governance.md").read_text()
    assert json.loads((baked / ".cruft.json").read_text())["commit"] == head
    changed = run("git", "status", "--porcelain", cwd=baked).split("\n")
    assert sorted(line[3:] for line in changed if line) == [".cruft.json", "docs/governance.md"]


def test_post_gen_hook_says_what_was_made_and_what_to_run(
    template: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    baked = Path(
        cookiecutter(str(template), no_input=True, output_dir=str(tmp_path), default_config=True)
    )
    out = capfd.readouterr().out
    assert (
        f"Baked {baked.name}/: package my_finetune, Python 3.11, base tiny, registry local." in out
    )
    assert "a git repository with one commit" in out and "nothing to commit yet" in out
    commands = [line.split("#")[0].strip() for line in out.splitlines() if line.startswith("  ")]
    assert commands == [
        f"cd {baked.name} && uv sync --frozen",
        "uv run ft train",
        "uv run ft reproduce runs/<id>",
    ]
