"""`ft`: one subcommand per pipeline stage.

    uv run ft --help

COMMANDS maps each command name straight to its handler in commands.py, with its
help line and its arguments. Handlers import their stage module only when they run,
so `ft --help` answers without loading torch, transformers or peft.
tests/test_cli.py checks that the map and the handlers agree.
"""

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import commands
from .errors import UserError

Arg = tuple[tuple[str, ...], dict[str, Any]]


def arg(*flags: str, **options: Any) -> Arg:
    """One `add_argument(*flags, **options)`, kept as data until the parser is built."""
    return flags, options


@dataclass(frozen=True)
class Command:
    run: Callable[[argparse.Namespace], int]
    help: str
    args: tuple[Arg, ...] = ()


CONFIG = (
    arg("--config", default="configs/recipe.yaml", help="YAML config (default: %(default)s)"),
    arg(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. --set train.lr=2e-4 (repeatable)",
    ),
)
# One registry per repo, resolved the same way by every command (docs/publish.md).
REGISTRY = (
    arg(
        "--registry",
        help="file://PATH, hf://OWNER/REPO or mlflow://MODEL_NAME "
        "(default: $FT_REGISTRY, else publish.registry of configs/recipe.yaml)",
    ),
)

COMMANDS: dict[str, Command] = {
    "config validate": Command(
        commands.config_validate,
        "Validate configs; print their hashes",
        (
            arg(
                "--config",
                dest="configs",
                action="append",
                metavar="PATH",
                help="config to validate (repeatable; default: every configs/*.yaml)",
            ),
            arg(
                "--set",
                dest="overrides",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="dotted override applied to each config (repeatable)",
            ),
        ),
    ),
    "config show": Command(
        commands.config_show,
        "Print the resolved config (defaults filled in)",
        (
            *CONFIG,
            arg(
                "--doc",
                action="store_true",
                help="print every key's type, default and description instead "
                "(the Markdown table in docs/config.md)",
            ),
        ),
    ),
    "base init-tiny": Command(
        commands.base_init_tiny,
        "Build the embedded tiny base model deterministically (offline)",
        (
            arg("--out", default="base/tiny-llama", help="directory (default: %(default)s)"),
            arg(
                "--variant",
                choices=["tiny", "tiny-v2"],
                default="tiny",
                help="tiny (the default base) or tiny-v2 (another tokenizer, to rehearse "
                "`ft migrate`) (default: %(default)s)",
            ),
        ),
    ),
    "base init-small": Command(
        commands.base_init_small,
        "Build the embedded small base model (~38M parameters) deterministically (offline)",
        (arg("--out", default="base/small-llama", help="directory (default: %(default)s)"),),
    ),
    "base hash": Command(
        commands.base_hash,
        "Print the content hash of a model directory",
        (arg("path"),),
    ),
    "data build": Command(
        commands.data_build,
        "Run sources through the filters; write the training set and data.lock",
        (
            *CONFIG,
            arg(
                "--progress",
                action="store_true",
                help="on a terminal, show rows/s, bytes read and the time left",
            ),
        ),
    ),
    "data check": Command(
        commands.data_check,
        "Fail if data or filters changed but data.lock did not",
        (*CONFIG,),
    ),
    "data gc": Command(
        commands.data_gc,
        "Remove token stores of old pins: all but the --keep most recently used",
        (
            *CONFIG,
            arg(
                "--keep",
                type=int,
                default=2,
                help="stores to keep, most recently used first (default: %(default)s)",
            ),
            arg("--dry-run", action="store_true", help="list what would be removed"),
        ),
    ),
    "data hash": Command(
        commands.data_hash,
        "Print the pins (sha256, size, ETag) of a data file, directory or bucket object",
        (arg("path", help="a local path or a URL: s3://, gs://, az://, https://"),),
    ),
    "train": Command(
        commands.train,
        "Train a LoRA adapter: data -> model -> train -> eval -> manifest",
        (
            *CONFIG,
            arg(
                "--out",
                help="run directory (default: runs/<config>-<UTC time>), or a URL "
                "(s3://bucket/runs/x): trained in runs/.staging/, mirrored there",
            ),
            arg(
                "--resume",
                action="store_true",
                help="continue the run in --out from its last complete checkpoint",
            ),
            arg(
                "--break-lock",
                action="store_true",
                help="with an --out URL: take the run's lock even though its holder looks "
                "alive (only when you know that process is dead; docs/artifact-store.md)",
            ),
            arg(
                "--segment",
                type=int,
                metavar="I",
                help="replay only checkpoint interval I of the finished run --chain (what "
                "`ft reproduce --segments` runs, as written in REPRODUCE.md)",
            ),
            arg("--chain", metavar="RUN_DIR", help="the finished run whose interval to replay"),
        ),
    ),
    "reproduce": Command(
        commands.reproduce,
        "Re-run a run's REPRODUCE.md from a clean checkout and compare its outputs",
        (
            arg("run_dir", help="a finished run, e.g. runs/<id>"),
            arg(
                "--clean-room",
                action="store_true",
                help="fresh HOME, empty caches, no credentials, nothing outside the checkout "
                "(what the release runs; docs/publish.md)",
            ),
            arg(
                "--keep-env",
                action="append",
                default=[],
                metavar="NAME",
                help="with --clean-room: pass this credential through (repeatable); only "
                "read- or launch-scoped ones, e.g. SKYPILOT_SERVICE_ACCOUNT_TOKEN",
            ),
            arg(
                "--verbose",
                action="store_true",
                help="show everything the re-run prints (uv's package list included)",
            ),
            arg(
                "--segments",
                metavar="all|K",
                help="replay checkpoint intervals instead of the whole run: `all` (exact) or K "
                "intervals drawn by a recorded seed (spot check) (default: reproduce.strategy)",
            ),
            arg(
                "--parallel",
                type=int,
                metavar="P",
                help="intervals replayed at once (default: reproduce.parallel of the run's config)",
            ),
            arg("--seed", type=int, help="seed that draws the K intervals (default: a random one)"),
            arg(
                "--full",
                action="store_true",
                help="re-run the whole training, whatever the config says",
            ),
            arg(
                "--collect",
                metavar="RUN_URI",
                help="a SkyPilot-trained run: collect its interval jobs' results from "
                "RUN_URI/verify/ (RUN_DIR is `ft fetch RUN_URI RUN_DIR`) instead of replaying",
            ),
        ),
    ),
    "diff": Command(
        commands.diff,
        "Explain which pinned inputs and outputs differ between two runs",
        (
            arg("run_a"),
            arg(
                "run_b",
                nargs="?",
                help="second run (default: RUN_A's reproduction, at its first divergence)",
            ),
        ),
    ),
    "plan": Command(
        commands.plan,
        "Markdown: what this branch changes for training (configs, data) against a base ref",
        (
            arg("--base", default="origin/main", help="base ref (default: %(default)s)"),
            arg(
                "--config",
                dest="configs",
                action="append",
                metavar="PATH",
                help="config to compare (repeatable; default: every configs/*.yaml)",
            ),
            arg("--out", help="write the Markdown here instead of stdout"),
        ),
    ),
    "fetch": Command(
        commands.fetch,
        "Download a finished run from a URL (s3://...) and re-verify every output hash",
        (
            arg("run_url", help="the run's --out URL, e.g. s3://bucket/runs/<id>"),
            arg("dest", help="a new local directory, e.g. runs/<id>"),
            arg(
                "--checkpoints",
                action="store_true",
                help="also download the checkpoint chain (for ft reproduce --segments)",
            ),
        ),
    ),
    "publish": Command(
        commands.publish,
        "Push a reproduced run to the registry as an immutable version (refused unless "
        "`ft reproduce` passed for exactly these files)",
        (
            arg("run_dir", help="a finished run with a passing verification.json"),
            arg(
                "--version",
                required=True,
                help="release version, vMAJOR.MINOR.PATCH[-PRERELEASE], e.g. v1.2.0",
            ),
            *REGISTRY,
            arg(
                "--tag-commit",
                metavar="SHA",
                help="the commit the release tag points at; "
                "the run must be trained there (default: $GITHUB_SHA on a tag build)",
            ),
        ),
    ),
    "registry list": Command(
        commands.registry_list,
        "List the published versions",
        (*REGISTRY,),
    ),
    "registry show": Command(
        commands.registry_show,
        "Print a version's index: files, hashes, run",
        (
            arg("version", help="vX.Y.Z, or `latest` (the highest non-pre-release)"),
            *REGISTRY,
        ),
    ),
    "registry pull": Command(
        commands.registry_pull,
        "Download a version into a new directory, re-verifying every file's sha256",
        (
            arg("version", help="vX.Y.Z, or `latest` (the highest non-pre-release)"),
            arg("dest", help="a new or empty directory"),
            *REGISTRY,
        ),
    ),
    "generate": Command(
        commands.generate,
        "Greedy, deterministic text from a run's or a release's adapter",
        (
            arg("artifact", metavar="RUN_DIR|VERSION", help="runs/<id>, or a release version"),
            arg("--prompt", help="one user prompt"),
            arg("--messages", metavar="FILE", help='JSON list of {"role", "content"} turns'),
            arg("--max-new-tokens", type=int, default=64, help="budget (default: %(default)s)"),
            *REGISTRY,
        ),
    ),
    "export": Command(
        commands.export,
        "Merge the adapter into its base and write a plain transformers model",
        (
            arg("artifact", metavar="RUN_DIR|VERSION", help="runs/<id>, or a release version"),
            arg("--merged", required=True, metavar="OUT", help="a new or empty directory"),
            *REGISTRY,
        ),
    ),
    "registry verify": Command(
        commands.registry_verify,
        "Check a version against the release's signed attestation (needs `gh` and GitHub)",
        (
            arg("version", help="vX.Y.Z, or `latest` (the highest non-pre-release)"),
            arg("--repo", help="OWNER/NAME that released it (default: the origin remote)"),
            *REGISTRY,
        ),
    ),
    "report": Command(
        commands.report,
        "Markdown + PNG report of a run: loss, metrics, data and config diffs vs a baseline",
        (
            arg("run_dir", help="a finished run, e.g. runs/<id>"),
            arg(
                "--baseline",
                help="a run directory, a release version (vX.Y.Z) or none "
                "(default: the latest release in the registry)",
            ),
            *REGISTRY,
            arg("--out", help="output directory (default: RUN_DIR/report)"),
            arg(
                "--figures-url",
                metavar="URL",
                help="link the figures under this URL instead of beside report.md",
            ),
        ),
    ),
    "gate": Command(
        commands.gate,
        "Check a run's eval gates against a baseline release; exit 1 if any fails",
        (
            arg("run_dir", help="a finished run, e.g. runs/<id>"),
            arg(
                "--baseline",
                help="a release version (vX.Y.Z), a run directory or none "
                "(default: the latest other release in the registry)",
            ),
            arg(
                "--registry",
                help="registry URI for a version baseline "
                "(default: publish.registry of the run's config)",
            ),
            arg("--out", help="also write the Markdown table to this file"),
        ),
    ),
    "migrate": Command(
        commands.migrate,
        "Move the recipe to another base model: edit model.base, write migration.md "
        "(tokenizer drift per split and suite, parameter and architecture change)",
        (
            arg(
                "--config",
                default="configs/recipe.yaml",
                help="config to edit (default: %(default)s)",
            ),
            arg("--hub-id", metavar="ORG/NAME", help="the new base on the hub"),
            arg("--revision", metavar="SHA", help="its 40-hex commit"),
            arg("--tokenizer-revision", metavar="SHA", help="the tokenizer's commit, if another"),
            arg("--path", metavar="DIR", help="or a local model directory"),
            arg("--sha256", metavar="HASH", help="its content hash (`ft base hash DIR`)"),
            arg(
                "--build",
                choices=["tiny", "tiny-v2", "small"],
                help="a local embedded base `ft train` rebuilds when the directory is absent",
            ),
            arg("--out", default="migration.md", help="the report (default: %(default)s)"),
        ),
    ),
    "retrain": Command(
        commands.retrain,
        "Drill: train a release's config on this checkout's pipeline and check its gates",
        (
            arg("release_dir", help="a pulled release (ft registry pull latest runs/drill)"),
            arg("--out", default="runs/retrain", help="the new run (default: %(default)s)"),
            arg("--gates-out", metavar="FILE", help="also write the gate table here"),
        ),
    ),
    "history": Command(
        commands.history,
        "Static HTML page over every published version: metrics, pins, reproduce/drill status",
        (
            *REGISTRY,
            arg("--out", default="site", help="output directory (default: %(default)s)"),
        ),
    ),
    "launch": Command(
        commands.launch,
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
    "task run": Command(
        commands.task_run,
        "Inside a SkyPilot job (sky/train.yaml's run:): finish, resume or start the run, "
        "one process per GPU",
    ),
    "image check": Command(
        commands.image_check,
        "Fail unless image.lock pins an image built from this uv.lock and Dockerfile",
    ),
    "image build-args": Command(
        commands.image_build_args,
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
        commands.image_record,
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
    "jobs ended": Command(
        commands.jobs_ended,
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
    "release resolve": Command(
        commands.release_resolve,
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
    "doctor": Command(
        commands.doctor,
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
            arg(
                "--config",
                default="configs/recipe.yaml",
                help="YAML config (default: %(default)s)",
            ),
        ),
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ft",
        description="Reproducible fine-tuning: config -> data -> train -> reproduce "
        "-> publish. Every command reads configs/ and writes nothing half-done.",
    )
    groups = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parents: dict[str, argparse._SubParsersAction] = {}
    for name, cmd in COMMANDS.items():
        head, _, sub = name.partition(" ")
        if not sub:
            leaf = groups.add_parser(head, help=cmd.help, description=cmd.help)
        else:
            if head not in parents:
                group = groups.add_parser(head, help=f"{head} commands")
                parents[head] = group.add_subparsers(
                    dest="subcommand", metavar="SUBCOMMAND", required=True
                )
            leaf = parents[head].add_parser(sub, help=cmd.help, description=cmd.help)
        for flags, options in cmd.args:
            leaf.add_argument(*flags, **options)
        leaf.set_defaults(handler=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except UserError as e:
        print(f"error: {e.format()}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ft registry show v1 | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        # The filesystem refused (full, read-only, a file where a directory belongs, no
        # permission): the user's to fix, so one line naming the path, never a traceback.
        # Only errors that carry a path qualify; anything else is a bug and keeps its trace.
        if e.filename is None:
            raise
        print(f"error: {filesystem_error(e).format()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


FS_FIXES = {
    "ENOSPC": "free disk space (or point --out at a larger disk), then run the command again",
    "EDQUOT": "free space under your quota, then run the command again",
    "EROFS": "the filesystem is read-only: use a writable location",
    "EACCES": "check the permissions of that path, or use another location",
    "EPERM": "check the permissions of that path, or use another location",
    "ENOTDIR": "a file stands where a directory is needed: remove or rename it",
    "EISDIR": "a directory stands where a file is needed: pass the file",
    "ENOENT": "check that the path exists",
    "EEXIST": "remove it, or use another path",
    "ENOTEMPTY": "empty or remove that directory, or use another path",
    "ENAMETOOLONG": "use a shorter path",
}


def filesystem_error(e: OSError) -> UserError:
    import errno

    code = errno.errorcode.get(e.errno or 0, "")
    where = str(e.filename) + (f" -> {e.filename2}" if e.filename2 else "")
    return UserError(
        e.strerror or str(e),
        file=where,
        fix=FS_FIXES.get(code, "check the path and the filesystem, then run the command again"),
    )


if __name__ == "__main__":
    sys.exit(main())
