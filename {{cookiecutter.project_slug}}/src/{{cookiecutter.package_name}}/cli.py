"""`ft`: one subcommand per pipeline stage.

    uv run ft --help

Each command is a thin handler that imports its stage module only when it runs,
so `ft --help` answers without loading torch, transformers or peft. COMMANDS is
the whole map; tests/test_cli.py checks it is complete and resolves.
"""

import argparse
import sys
from collections.abc import Callable
from importlib import import_module

from .errors import UserError

# name -> (stage function as "module:function", help, argument builder)
COMMANDS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {}


def _stage(target: str) -> Callable:
    module, _, function = target.partition(":")
    return getattr(import_module(f"{__package__}.{module}"), function)


def command(name: str, target: str, help: str):
    def deco(add_args: Callable[[argparse.ArgumentParser], None]):
        COMMANDS[name] = (target, help, add_args)
        return add_args

    return deco


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", default="configs/recipe.yaml", help="YAML config (default: %(default)s)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. --set train.lr=2e-4 (repeatable)",
    )


@command("config validate", "commands:config_validate", "Validate configs; print their hashes")
def _(p):
    p.add_argument(
        "--config",
        dest="configs",
        action="append",
        metavar="PATH",
        help="config to validate (repeatable; default: every configs/*.yaml)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override applied to each config (repeatable)",
    )


@command("config show", "commands:config_show", "Print the resolved config (defaults filled in)")
def _(p):
    _config_args(p)


@command(
    "base init-tiny",
    "commands:base_init_tiny",
    "Build the embedded tiny base model deterministically (offline)",
)
def _(p):
    p.add_argument("--out", default="base/tiny-llama", help="directory (default: %(default)s)")


@command("base hash", "commands:base_hash", "Print the content hash of a model directory")
def _(p):
    p.add_argument("path")


@command(
    "data build",
    "commands:data_build",
    "Run sources through the filters; write the training set and data.lock",
)
def _(p):
    _config_args(p)


@command(
    "data check", "commands:data_check", "Fail if data or filters changed but data.lock did not"
)
def _(p):
    _config_args(p)


@command(
    "train", "commands:train", "Train a LoRA adapter: data -> model -> train -> eval -> manifest"
)
def _(p):
    _config_args(p)
    p.add_argument(
        "--out",
        help="run directory (default: runs/<config>-<UTC time>), or a URL "
        "(s3://bucket/runs/x): trained in runs/.staging/, mirrored there",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last complete checkpoint",
    )
    p.add_argument(
        "--segment",
        type=int,
        metavar="I",
        help="replay only checkpoint interval I of the finished run --chain (what "
        "`ft reproduce --segments` runs, as written in REPRODUCE.md)",
    )
    p.add_argument("--chain", metavar="RUN_DIR", help="the finished run whose interval to replay")


@command(
    "reproduce",
    "commands:reproduce",
    "Re-run a run's REPRODUCE.md from a clean checkout and compare its outputs",
)
def _(p):
    p.add_argument("run_dir", help="a finished run, e.g. runs/<id>")
    p.add_argument(
        "--segments",
        metavar="all|K",
        help="replay checkpoint intervals instead of the whole run: `all` (exact) or K "
        "intervals drawn by a recorded seed (spot check) (default: reproduce.strategy)",
    )
    p.add_argument(
        "--parallel",
        type=int,
        metavar="P",
        help="intervals replayed at once (default: reproduce.parallel of the run's config)",
    )
    p.add_argument(
        "--seed", type=int, help="seed that draws the K intervals (default: a fresh random one)"
    )
    p.add_argument(
        "--full", action="store_true", help="re-run the whole training, whatever the config says"
    )


@command("diff", "commands:diff", "Explain which pinned inputs and outputs differ between two runs")
def _(p):
    p.add_argument("run_a")
    p.add_argument(
        "run_b",
        nargs="?",
        help="second run (default: RUN_A's replay named by its verification.json)",
    )


@command(
    "plan",
    "commands:plan",
    "Markdown: what this branch changes for training (configs, data) against a base ref",
)
def _(p):
    p.add_argument("--base", default="origin/main", help="base ref (default: %(default)s)")
    p.add_argument(
        "--config",
        dest="configs",
        action="append",
        metavar="PATH",
        help="config to compare (repeatable; default: every configs/*.yaml)",
    )
    p.add_argument("--out", help="write the Markdown here instead of stdout")


@command(
    "fetch",
    "commands:fetch",
    "Download a finished run from a URL (s3://...) and re-verify every output hash",
)
def _(p):
    p.add_argument("run_url", help="the run's --out URL, e.g. s3://bucket/runs/<id>")
    p.add_argument("dest", help="a new local directory, e.g. runs/<id>")
    p.add_argument(
        "--checkpoints",
        action="store_true",
        help="also download the checkpoint chain (for ft reproduce --segments)",
    )


@command(
    "publish",
    "commands:publish",
    "Push a reproduced run to the registry as an immutable version (refused unless "
    "`ft reproduce` passed for exactly these files)",
)
def _(p):
    p.add_argument("run_dir", help="a finished run with a passing verification.json")
    p.add_argument(
        "--version",
        required=True,
        help="release version, vMAJOR.MINOR.PATCH[-PRERELEASE], e.g. v1.2.0",
    )
    p.add_argument(
        "--registry",
        help="file://PATH, hf://OWNER/REPO or mlflow://MODEL_NAME "
        "(default: publish.registry of the run's config)",
    )
    p.add_argument(
        "--tag-commit",
        metavar="SHA",
        help="the commit the release tag points at; "
        "the run must be trained there (default: $GITHUB_SHA on a tag build)",
    )


def _registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry",
        help="file://PATH, hf://OWNER/REPO or mlflow://MODEL_NAME "
        "(default: publish.registry of --config)",
    )
    p.add_argument(
        "--config",
        default="configs/recipe.yaml",
        help="config whose publish.registry is the default (default: %(default)s)",
    )


@command("registry list", "commands:registry_list", "List the published versions")
def _(p):
    _registry_args(p)


@command("registry show", "commands:registry_show", "Print a version's index: files, hashes, run")
def _(p):
    p.add_argument("version", help="vX.Y.Z, or `latest` (the highest non-pre-release)")
    _registry_args(p)


@command(
    "registry pull",
    "commands:registry_pull",
    "Download a version into a new directory, re-verifying every file's sha256",
)
def _(p):
    p.add_argument("version", help="vX.Y.Z, or `latest` (the highest non-pre-release)")
    p.add_argument("dest", help="a new or empty directory")
    _registry_args(p)


@command(
    "report",
    "commands:report",
    "Markdown + PNG report of a run: loss, metrics, data and config diffs vs a baseline",
)
def _(p):
    p.add_argument("run_dir", help="a finished run, e.g. runs/<id>")
    p.add_argument(
        "--baseline",
        help="a run directory, a release version (vX.Y.Z) or none "
        "(default: the latest release in the registry)",
    )
    p.add_argument(
        "--registry",
        help="registry URI for a version baseline (default: publish.registry of the run's config)",
    )
    p.add_argument("--out", help="output directory (default: RUN_DIR/report)")
    p.add_argument(
        "--figures-url",
        metavar="URL",
        help="link the figures under this URL instead of beside report.md",
    )


@command(
    "history",
    "commands:history",
    "Static HTML page over every published version: metrics, pins, reproduce/drill status",
)
def _(p):
    p.add_argument(
        "--registry", help="registry URI (default: publish.registry of configs/recipe.yaml)"
    )
    p.add_argument("--out", default="site", help="output directory (default: %(default)s)")


@command(
    "launch",
    "commands:launch",
    "Train here (local) or as a SkyPilot managed job on the image pinned in image.lock (sky)",
)
def _(p):
    _config_args(p)
    p.add_argument(
        "--backend",
        choices=["local", "sky"],
        help="where to train (default: the config's launch.backend)",
    )
    p.add_argument(
        "--run-uri",
        metavar="URI",
        help="where the run is written: local: a path or URL for ft train --out; sky: "
        "s3://bucket/path (default: <artifact store>/<config>-<UTC time>)",
    )
    p.add_argument(
        "--fetch",
        metavar="DIR",
        help="sky: once the job succeeded, download its run into DIR (as ft fetch)",
    )
    p.add_argument(
        "cmd",
        nargs="*",
        metavar="-- COMMAND",
        help="run this instead of ft train (sky: on the same image and machines)",
    )


@command(
    "image check",
    "commands:image_check",
    "Fail unless image.lock pins an image built from this uv.lock and Dockerfile",
)
def _(p):
    pass


@command(
    "image build-args",
    "commands:image_build_args",
    "Print the KEY=VALUE build args for `docker build` of the training image",
)
def _(p):
    p.add_argument(
        "--latest-base",
        action="store_true",
        help="build on the newest image of the base tag, not the pinned digest "
        "(a deliberate base bump; record its digest afterwards)",
    )


@command(
    "image record",
    "commands:image_record",
    "Write image.lock for an image built and pushed from this checkout",
)
def _(p):
    p.add_argument("--name", help="image name without tag (default: the one in image.lock)")
    p.add_argument("--digest", required=True, help="the pushed image's digest, sha256:<64 hex>")
    p.add_argument(
        "--base-digest",
        required=True,
        help="the digest of the base image it was built on, sha256:<64 hex>",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ft",
        description="Reproducible fine-tuning: config -> data -> train -> reproduce "
        "-> publish. Every command reads configs/ and writes nothing half-done.",
    )
    groups = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parents: dict[str, argparse._SubParsersAction] = {}
    for name, (target, help, add_args) in COMMANDS.items():
        head, _, sub = name.partition(" ")
        if not sub:
            leaf = groups.add_parser(head, help=help, description=help)
        else:
            if head not in parents:
                group = groups.add_parser(head, help=f"{head} commands")
                parents[head] = group.add_subparsers(
                    dest="subcommand", metavar="SUBCOMMAND", required=True
                )
            leaf = parents[head].add_parser(sub, help=help, description=help)
        add_args(leaf)
        leaf.set_defaults(target=target)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _stage(args.target)(args) or 0
    except UserError as e:
        print(f"error: {e.format()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ft registry show v1 | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
