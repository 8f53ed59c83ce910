"""Operations: `ft launch`, `ft task run`, `ft image`, `ft jobs`, `ft release resolve|verify`,
`ft doctor`."""

import sys
from argparse import Namespace

from .spec import CONFIG, RUN_DIR, Command, arg, config_file


def launch(args: Namespace) -> int:
    from ..ops.launch import main

    return main(
        args.config,
        args.overrides,
        backend=args.backend,
        run_uri=args.run_uri,
        fetch=args.fetch,
        command=args.cmd,
        detach=args.detach,
    )


def task_run(args: Namespace) -> int:
    from ..ops.task import main

    return main()


def image_check(args: Namespace) -> int:
    from ..ops.image import check

    lock = check()
    print(f"ok  {_built(lock)}; uv.lock and Dockerfile unchanged since")
    return 0


def image_build_args(args: Namespace) -> int:
    from ..ops.image import build_args

    for key, value in build_args(latest_base=args.latest_base).items():
        print(f"{key}={value}")
    return 0


def image_record(args: Namespace) -> int:
    from ..ops.image import record

    lock = record(args.name, args.digest, args.base_digest)
    print(f"wrote image.lock: {_built(lock, base=True)}")
    return 0


def _built(lock: dict, base: bool = False) -> str:
    """`IMAGE  built from commit SHA`, or `IMAGE on BASE@DIGEST, built from commit SHA`."""
    from ..ops.image import reference

    on = f" on {lock['base']}@{lock['base_digest']}," if base else " "
    return f"{reference(lock)}{on} built from commit {lock['commit'][:12]}"


def jobs_ended(args: Namespace) -> int:
    from ..ops.jobs import ended

    for job in ended(args.minutes):
        print(f"{job.commit}\t{job.state}\t{job.job_id}\t{job.status}\t{job.name}")
    return 0


def jobs_reproduced(args: Namespace) -> int:
    from ..ops.jobs import reproduced

    for tag in reproduced(args.minutes):
        print(f"{tag.tag}\t{tag.state}\t{','.join(map(str, tag.job_ids))}")
    return 0


def release_resolve(args: Namespace) -> int:
    from ..ops.inputs import resolve_run
    from ..ops.runner import artifact_store

    store = artifact_store(args.store)
    url, commit = resolve_run(store, args.commit)
    print(f"run of {commit[:12]} (same training inputs)", file=sys.stderr)
    print(url)
    return 0


def release_verify(args: Namespace) -> int:
    from ..closure.release_verify import main
    from ..ops.runner import require_shared_store

    require_shared_store(args.run_uri, key="--run-uri")
    return main(
        args.run_dir,
        args.run_uri,
        args.tag,
        collect=args.collect,
        keep_env=tuple(args.keep_env),
    )


def doctor(args: Namespace) -> int:
    from ..ops.doctor import main

    return main(args.workflow, args.config, args.backend)


COMMANDS = {
    "launch": Command(
        launch,
        "Train here (local) or as a SkyPilot managed job on the image pinned in image.lock (sky)",
        (
            *CONFIG,
            arg(
                "--backend",
                choices=["local", "sky"],
                help="where to train (default: the config's launch.backend)",
            ),
            arg(
                "--run-uri",
                metavar="URI",
                help="where the run is written: local: a path or URL for ft train --out; sky: "
                "s3://bucket/path (default: <artifact store>/<config>-<UTC time>)",
            ),
            arg(
                "--fetch",
                metavar="DIR",
                help="sky: once the job succeeded, download its run into DIR (as ft fetch)",
            ),
            arg(
                "--detach",
                action="store_true",
                help="sky: submit and return (print the job as JSON); `ft jobs ended` sees it end",
            ),
            arg(
                "cmd",
                nargs="*",
                metavar="-- COMMAND",
                help="run this instead of ft train (sky: on the same image and machines)",
            ),
        ),
    ),
    "image check": Command(
        image_check, "Fail unless image.lock pins an image built from this uv.lock and Dockerfile"
    ),
    "image build-args": Command(
        image_build_args,
        "Print the KEY=VALUE build args for `docker build` of the training image",
        (
            arg(
                "--latest-base",
                action="store_true",
                help="build on the newest image of the base tag, not the pinned digest "
                "(a deliberate base bump; record its digest afterwards)",
            ),
        ),
    ),
    "image record": Command(
        image_record,
        "Write image.lock for an image built and pushed from this checkout",
        (
            arg("--name", help="image name without tag (default: the one in image.lock)"),
            arg("--digest", required=True, help="the pushed image's digest, sha256:<64 hex>"),
            arg(
                "--base-digest",
                required=True,
                help="the digest of the base image it was built on, sha256:<64 hex>",
            ),
        ),
    ),
    "task run": Command(
        task_run,
        "Inside a SkyPilot job (sky/train.yaml's run:): finish, resume or start the run, "
        "one process per GPU",
    ),
    "jobs ended": Command(
        jobs_ended,
        "The managed training jobs of this repository that ended lately: commit, status, job id",
        (
            arg(
                "--minutes",
                type=int,
                default=60,
                help="jobs that ended within this many minutes (default: %(default)s; keep it "
                "above the watcher's schedule so none is missed)",
            ),
        ),
    ),
    "jobs reproduced": Command(
        jobs_reproduced,
        "The release tags whose reproduction jobs all ended lately: tag, status, job ids",
        (
            arg(
                "--minutes",
                type=int,
                default=60,
                help="whose last job ended within this many minutes (default: %(default)s)",
            ),
        ),
    ),
    "release resolve": Command(
        release_resolve,
        "Print the bucket URL of the run that a commit's training inputs resolve to",
        (
            arg(
                "--commit",
                default="HEAD",
                help="the commit to release, e.g. the tag's (default: %(default)s)",
            ),
            arg(
                "--store",
                help="the artifact store, e.g. s3://bucket/runs (default: $FT_ARTIFACT_STORE)",
            ),
        ),
    ),
    "release verify": Command(
        release_verify,
        "Verify a fetched run for a release: reproduce it here (local run), or submit its "
        "interval jobs and return, then --collect them (sky run); prints verified|submitted",
        (
            RUN_DIR,
            arg("--run-uri", required=True, metavar="URI", help="the run's URL in the bucket"),
            arg("--tag", required=True, help="the release tag; names the jobs and their folder"),
            arg(
                "--collect",
                action="store_true",
                help="a sky-trained run: collect the tag's interval jobs from the bucket",
            ),
            arg(
                "--keep-env",
                action="append",
                default=[],
                metavar="NAME",
                help="a locally trained run: pass this credential into the clean room",
            ),
        ),
    ),
    "doctor": Command(
        doctor,
        "List what the configured backends need (variables, secrets) and what is missing",
        (
            arg(
                "--workflow",
                default="terminal",
                help="whose needs: terminal, ci, train, poll, release or drill "
                "(default: %(default)s)",
            ),
            arg(
                "--backend",
                choices=["local", "sky"],
                help="launch backend (default: the config's launch.backend)",
            ),
            config_file(),
        ),
    ),
}
