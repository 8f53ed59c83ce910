"""Segment replay of a SkyPilot-trained run, up to the SDK boundary.

    uv sync --frozen --group launch && uv run pytest tests/test_segments_sky.py

Every interval becomes the task `ft launch --backend sky` would submit (pinned image,
commit, hardware), with `run:` replaced by that interval's `ft train --segment`; all are
submitted before any is waited on. `launch.submit` is the boundary: it is replaced by a
recorder, so nothing reaches a cloud. The chain's manifest is the part a sky run would
record (backend sky, the config, its chain); the replay itself is tested locally in
tests/test_closure.py.
"""

import json

import pytest
from launch_support import DIGEST, enter_project, git, mod


@pytest.fixture
def sky():
    return pytest.importorskip(
        "sky", reason="the SkyPilot SDK is in the `launch` group: uv sync --frozen --group launch"
    )


@pytest.fixture
def project(tmp_path, monkeypatch):
    return enter_project(tmp_path, monkeypatch)


@pytest.fixture
def submitted(monkeypatch):
    calls = []
    launch = mod("ops.launch")

    def submit(task, name) -> int:
        calls.append((task, name))
        return 40 + len(calls)

    monkeypatch.setattr(launch, "submit", submit)
    monkeypatch.setattr(
        launch, "follow", lambda job_id: pytest.fail("launch_intervals must not wait")
    )
    return calls


def sky_manifest(world: int = 1) -> dict:
    cfg = mod("config").load_config("configs/smoke.yaml")
    return {
        "command": {"config": "configs/smoke.yaml", "overrides": [], "backend": "sky"},
        "config": cfg.resolved(),
        "config_sha256": cfg.hash(),
        "hardware": {"world_size": world},
        "checkpoints": [
            {"step": s, "path": f"checkpoints/step-{s:08d}", "sha256": f"{s:064x}"}
            for s in (0, 4, 8)
        ],
    }


def test_every_interval_is_a_managed_job_on_the_pinned_image(sky, project, submitted):
    jobs = mod("closure.segments_sky").launch_intervals(sky_manifest(), "s3://bucket-x/runs/r1")
    assert jobs == [(0, 41), (1, 42), (2, 43)]
    head = git(project, "rev-parse", "HEAD")
    for index, (task, name) in enumerate(submitted):
        out = f"s3://bucket-x/runs/r1/verify/interval-{index:04d}"
        assert name.endswith(f"-interval-{index:04d}")
        assert next(iter(task.resources)).image_id[None].endswith(f"@{DIGEST}")
        assert task.envs["COMMIT"] == head and task.envs["RUN_URI"] == out
        assert task.run.startswith("bash -euo pipefail -c ")
        assert (
            f"ft train --config configs/smoke.yaml --segment {index} "
            f'--chain "$ARTIFACTS/runs/r1" --out {out}'
        ) in task.run


def test_a_drill_submits_k_intervals_and_a_multi_gpu_run_keeps_its_process_count(
    sky, project, submitted
):
    segments = mod("closure.segments")
    seed = next(s for s in range(100) if segments.select(3, 1, s) == [2])
    jobs = mod("closure.segments_sky").launch_intervals(
        sky_manifest(world=2), "s3://bucket-x/runs/r1", k=1, seed=seed
    )
    assert [i for i, _ in jobs] == [2]
    ((task, _),) = submitted
    assert "accelerate launch --multi_gpu --num_processes 2" in task.run


def test_a_local_run_is_replayed_here_not_in_the_cloud(project, submitted):
    manifest = sky_manifest() | {"command": {"config": "configs/smoke.yaml", "overrides": []}}
    with pytest.raises(mod("errors").UserError, match="trained locally"):
        mod("closure.segments_sky").launch_intervals(manifest, "s3://bucket-x/runs/r1")
    assert submitted == []


def test_a_release_submits_from_the_runs_commit_with_jobs_named_by_tag(sky, project, submitted):
    """`ft release verify` on a tag: the jobs clone the commit that trained, not the tag's later
    docs-only commit, and carry the tag in their name and result folder."""
    trained = git(project, "rev-parse", "HEAD")
    (project / "README.md").write_text((project / "README.md").read_text() + "\nNotes.\n")
    git(project, "commit", "-qam", "Docs after the training")
    here = mod("util.git").output("rev-parse", "--show-toplevel")
    with mod("closure.release_verify").at_commit(trained) as tree:
        assert git(tree, "rev-parse", "HEAD") == trained
        jobs = mod("closure.segments_sky").launch_intervals(
            sky_manifest(), "s3://bucket-x/runs/r1", label="v1.2.0"
        )
    assert mod("util.git").output("rev-parse", "--show-toplevel") == here
    assert not tree.exists() and str(tree) not in git(project, "worktree", "list")
    assert [i for i, _ in jobs] == [0, 1, 2]
    for index, (task, name) in enumerate(submitted):
        out = f"s3://bucket-x/runs/r1/verify/v1.2.0/interval-{index:04d}"
        assert name.endswith(f"-train-verify-v1.2.0-{index:04d}")
        assert task.envs["COMMIT"] == trained and task.envs["RUN_URI"] == out
        assert f"--out {out}" in task.run


def test_a_tag_that_cannot_name_jobs_is_refused(project, submitted):
    with pytest.raises(mod("errors").UserError, match="cannot name the jobs"):
        mod("closure.release_verify").main("runs/none", "s3://bucket-x/runs/r1", "v1/2")
    assert submitted == []


def test_a_drill_retrains_the_releases_inputs_in_the_job_then_its_own_task(project):
    drill = mod("review.drill_sky")
    manifest = sky_manifest() | {"git": {"commit": "c" * 40}}
    argv = drill.retrain_command(manifest)
    assert argv[:4] == ["bash", "-euo", "pipefail", "-c"]
    restore = f"git checkout {'c' * 40} -- configs/smoke.yaml data.lock"
    assert restore in argv[4] and argv[4].endswith("; exec ft task run")
    assert drill.seed_of("drill-7") == drill.seed_of("drill-7") != drill.seed_of("drill-8")


def test_a_locally_trained_release_is_drilled_on_the_runner(project, tmp_path):
    release = tmp_path / "drill"
    release.mkdir()
    manifest = sky_manifest() | {
        "command": {"config": "configs/smoke.yaml", "overrides": []},
        "run_id": "r1",
        "outputs": {},
        "git": {"commit": "c" * 40},
    }
    (release / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(mod("errors").UserError, match="trained locally; drill it on the runner"):
        mod("review.drill_sky").submit(str(release), "s3://bucket-x/runs", "drill-7", 1)
