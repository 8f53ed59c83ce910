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
    p.add_argument("--config", default="configs/recipe.yaml", help="YAML config (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set train.lr=2e-4 (repeatable)")


@command("config validate", "commands:config_validate", "Validate configs; print their hashes")
def _(p):
    p.add_argument("--config", dest="configs", action="append", metavar="PATH",
                   help="config to validate (repeatable; default: every configs/*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override applied to each config (repeatable)")


@command("config show", "commands:config_show", "Print the resolved config (defaults filled in)")
def _(p):
    _config_args(p)


@command("base init-tiny", "commands:base_init_tiny",
         "Build the embedded tiny base model deterministically (offline)")
def _(p):
    p.add_argument("--out", default="base/tiny-llama", help="directory (default: %(default)s)")


@command("base hash", "commands:base_hash", "Print the content hash of a model directory")
def _(p):
    p.add_argument("path")


@command("data build", "commands:data_build",
         "Run sources through the filters; write the training set and data.lock")
def _(p):
    _config_args(p)


@command("data check", "commands:data_check", "Fail if data or filters changed but data.lock did not")
def _(p):
    _config_args(p)


@command("train", "commands:train", "Train a LoRA adapter: data -> model -> train -> eval -> manifest")
def _(p):
    _config_args(p)
    p.add_argument("--out", help="run directory (default: runs/<config>-<UTC time>), or a URL "
                   "(s3://bucket/runs/x): trained in runs/.staging/, mirrored there")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last complete checkpoint")


@command("reproduce", "commands:reproduce",
         "Re-run a run's REPRODUCE.md from a clean checkout and compare its outputs")
def _(p):
    p.add_argument("run_dir", help="a finished run, e.g. runs/<id>")


@command("diff", "commands:diff", "Explain which pinned inputs and outputs differ between two runs")
def _(p):
    p.add_argument("run_a")
    p.add_argument("run_b")


@command("plan", "commands:plan",
         "Markdown: what this branch changes for training (configs, data) against a base ref")
def _(p):
    p.add_argument("--base", default="origin/main", help="base ref (default: %(default)s)")
    p.add_argument("--config", dest="configs", action="append", metavar="PATH",
                   help="config to compare (repeatable; default: every configs/*.yaml)")
    p.add_argument("--out", help="write the Markdown here instead of stdout")


@command("fetch", "commands:fetch",
         "Download a finished run from a URL (s3://...) and re-verify every output hash")
def _(p):
    p.add_argument("run_url", help="the run's --out URL, e.g. s3://bucket/runs/<id>")
    p.add_argument("dest", help="a new local directory, e.g. runs/<id>")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ft", description="Reproducible fine-tuning: config -> data -> train -> reproduce "
        "-> publish. Every command reads configs/ and writes nothing half-done.")
    groups = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parents: dict[str, argparse._SubParsersAction] = {}
    for name, (target, help, add_args) in COMMANDS.items():
        head, _, sub = name.partition(" ")
        if not sub:
            leaf = groups.add_parser(head, help=help, description=help)
        else:
            if head not in parents:
                group = groups.add_parser(head, help=f"{head} commands")
                parents[head] = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND",
                                                     required=True)
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


if __name__ == "__main__":
    sys.exit(main())
