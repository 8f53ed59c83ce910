"""Collecting a SkyPilot-trained run's interval jobs: real bucket, real jobs' `run:` lines.

    uv run pytest tests/test_segments_collect.py -q

Up to the SkyPilot boundary, with real parts on both sides: the bucket is the session's
SeaweedFS S3 server (tests/s3_server.py); the run is a real `ft train --out s3://...` of
the smoke config as a sky job records it (FT_LAUNCH_BACKEND=sky); each interval job's
`run:` is the exact command line `interval_command` renders, executed here in a separate
git worktree of the run's commit with its own HOME. The one substitution: SkyPilot
mounts the bucket at $ARTIFACTS; here $ARTIFACTS is a local directory holding a copy of
the run's objects (what the mount shows). Then `ft reproduce RUN_DIR --collect RUN_URI`
reads the results back from the bucket and `ft publish` takes the verification.
"""

import contextlib
import json
import subprocess
from pathlib import Path

import pytest
from s3_server import BUCKET, _bucket_fs
from test_closure import SMOKE, _env, _git, _make_project, ft, mod

pytestmark = pytest.mark.slow

URL = f"s3://{BUCKET}/runs/sky"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return _make_project(tmp_path_factory.mktemp("collect-project"))


@pytest.fixture(scope="module")
def sky_run(project, s3, tmp_path_factory) -> dict:
    """A sky-style run in the bucket, fetched to runs/sky, and every interval job run."""
    ft(project, "train", *SMOKE, "--out", URL, FT_LAUNCH_BACKEND="sky", **s3)
    ft(project, "fetch", URL, "runs/sky", **s3)
    manifest = json.loads((project / "runs" / "sky" / "manifest.json").read_text())
    assert manifest["command"]["backend"] == "sky" and len(manifest["checkpoints"]) == 3
    # $ARTIFACTS: what the job's bucket mount shows, the run's objects as files.
    scratch = tmp_path_factory.mktemp("job")
    mount, fs = scratch / "artifacts", _bucket_fs(s3)
    for obj in fs.find(f"{BUCKET}/runs/sky"):
        dest = mount / obj.removeprefix(f"{BUCKET}/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(fs.cat_file(obj))
    tree = scratch / "checkout"  # the job's checkout of COMMIT, not the project's own tree
    _git(project, "worktree", "add", "-q", "--detach", str(tree), manifest["git"]["commit"])
    (scratch / "home").mkdir()
    env = _env(
        **s3,
        ARTIFACTS=str(mount),
        HOME=str(scratch / "home"),
        UV_PROJECT_ENVIRONMENT=str(project / ".venv"),
        FT_LAUNCH_BACKEND="sky",
    )
    commands = []
    for index in range(3):
        argv = mod("closure.segments_sky").interval_command(manifest, URL, index)
        commands.append(argv)
        done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    return {"manifest": manifest, "commands": commands}


def collect(project, s3, check=False):
    return ft(project, "reproduce", "runs/sky", "--collect", URL, check=check, **s3)


def test_collected_intervals_pass_and_the_verification_publishes(project, s3, sky_run, tmp_path):
    assert (
        f'--chain "$ARTIFACTS/runs/sky" --out {URL}/verify/interval-0002'
        in (sky_run["commands"][2][-1])
    )
    done = collect(project, s3)
    assert done.returncode == 0, done.stderr
    assert "PASS  sky: 3 of 3 intervals" in done.stderr
    record = json.loads((project / "runs" / "sky" / "verification.json").read_text())
    chain = {c["step"]: c["sha256"] for c in sky_run["manifest"]["checkpoints"]}
    assert record["strategy"] == "segments" and record["passed"] is True
    assert (
        record["segments"]["complete"] and record["segments"]["collected_from"] == f"{URL}/verify"
    )
    assert [e["steps"] for e in record["intervals"]] == [[0, 4], [4, 8], [8, 12]]
    assert [e["end"]["actual"] for e in record["intervals"][:2]] == [chain[4], chain[8]]
    assert record["intervals"][0]["start"]["actual"] == chain[0]
    assert record["compared"] and all(c["equal"] for c in record["compared"])
    uri = f"file://{tmp_path / 'registry'}"
    published = ft(project, "publish", "runs/sky", "--version", "v0.1.0", "--registry", uri)
    assert "published v0.1.0" in published.stdout


@contextlib.contextmanager
def tampered(s3: dict, obj: str, edit):
    """Bucket object `obj` replaced by `edit(its bytes)` (None: removed) inside the block,
    then restored, so the session's sky run stays whole for the next test."""
    fs = _bucket_fs(s3)
    original = fs.cat_file(obj)
    changed = edit(original)
    if changed is None:
        fs.rm_file(obj)
    else:
        fs.pipe_file(obj, changed)
    try:
        yield
    finally:
        fs.pipe_file(obj, original)


def test_a_tampered_interval_result_fails_naming_the_interval(project, s3, sky_run):
    obj = f"{BUCKET}/runs/sky/verify/interval-0001/checkpoints/step-00000008/state.pt"
    with tampered(s3, obj, lambda data: data[:-1] + bytes([data[-1] ^ 1])):
        done = collect(project, s3)
    assert done.returncode == 1
    assert "the run diverged between steps 4 and 8 (interval 1 of 3" in done.stderr
    record = json.loads((project / "runs" / "sky" / "verification.json").read_text())
    assert record["passed"] is False
    assert record["first_divergence"] == {"index": 1, "steps": [4, 8]}


def test_a_missing_interval_result_is_an_error_naming_it(project, s3, sky_run):
    obj = f"{BUCKET}/runs/sky/verify/interval-0002/manifest.json"
    with tampered(s3, obj, lambda data: None):
        done = collect(project, s3)
    assert done.returncode == 1
    assert "interval 2 (steps 8-12) has no committed result" in done.stderr
    assert f"{URL}/verify/interval-0002/manifest.json is missing" in done.stderr
    assert (
        json.loads((project / "runs" / "sky" / "verification.json").read_text())["passed"] is False
    )


def test_collecting_into_another_run_is_refused_and_writes_nothing(project, s3, sky_run):
    run = project / "runs" / "sky"
    before = (run / "verification.json").read_bytes()
    other = f"{BUCKET}/runs/other/manifest.json"  # a run whose manifest is not RUN_DIR's
    _bucket_fs(s3).pipe_file(other, (run / "manifest.json").read_bytes() + b"\n")
    done = ft(
        project,
        "reproduce",
        "runs/sky",
        "--collect",
        f"s3://{BUCKET}/runs/other",
        check=False,
        **s3,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"is not the manifest of the run at s3://{BUCKET}/runs/other" in done.stderr
    assert "--collect" in done.stderr
    assert (run / "verification.json").read_bytes() == before


def test_a_release_collects_its_own_tags_results_and_says_verified(project, s3, sky_run):
    """`ft release verify --collect` (release.yml, dispatched once the tag's jobs ended) reads
    RUN_URI/verify/TAG/: here the bytes the interval jobs committed, as a tag's jobs would."""
    fs = _bucket_fs(s3)
    for obj in fs.find(f"{BUCKET}/runs/sky/verify"):
        rel = obj.removeprefix(f"{BUCKET}/runs/sky/verify/")
        if rel.startswith("interval-"):
            fs.pipe_file(f"{BUCKET}/runs/sky/verify/v1.0.0/{rel}", fs.cat_file(obj))
    done = ft(
        project, "release", "verify", "runs/sky", "--run-uri", URL, "--tag", "v1.0.0",
        "--collect", **s3,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "verified\n" and "PASS  sky: 3 of 3 intervals" in done.stderr
    record = json.loads((project / "runs" / "sky" / "verification.json").read_text())
    assert record["passed"] and record["segments"]["collected_from"] == f"{URL}/verify/v1.0.0"
    assert f"--out {URL}/verify/v1.0.0/interval-0000" in record["segment_command"]["interval"]
    # Another tag of the same run has no results of its own: nothing is borrowed from v1.0.0,
    # and a verdict forged into its folder is not read.
    forged = json.dumps(record).encode()
    fs.pipe_file(f"{BUCKET}/runs/sky/verify/v1.0.1/verification.json", forged)
    other = ft(
        project, "release", "verify", "runs/sky", "--run-uri", URL, "--tag", "v1.0.1",
        "--collect", check=False, **s3,
    )  # fmt: skip
    assert other.returncode == 1 and other.stdout == ""
    assert f"{URL}/verify/v1.0.1/interval-0000/checkpoints/step-00000000" in other.stderr


def test_a_release_of_an_edited_run_fails_before_any_job_is_submitted(project, s3, sky_run):
    doc = project / "runs" / "sky" / "REPRODUCE.md"
    original = doc.read_text()
    doc.write_text(original.replace("ft launch", "ft  launch", 1))
    try:
        done = ft(
            project, "release", "verify", "runs/sky", "--run-uri", URL, "--tag", "v1.0.2",
            check=False, **s3,
        )  # fmt: skip
    finally:
        doc.write_text(original)
    assert done.returncode == 1 and done.stdout == ""
    assert "REPRODUCE.md was edited after the run" in done.stderr
    assert "submitted" not in done.stderr
