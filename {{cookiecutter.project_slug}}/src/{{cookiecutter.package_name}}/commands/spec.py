"""What a command is (handler, help line, arguments as data) and the arguments several share.

Each stage module here (config.py, data.py, ...) lists its commands in a `COMMANDS` dict
beside the handlers they name; cli.py builds the parser from them.
"""

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Arg = tuple[tuple[str, ...], dict[str, Any]]


def arg(*flags: str, **options: Any) -> Arg:
    """One `add_argument(*flags, **options)`, kept as data until the parser is built."""
    return flags, options


@dataclass(frozen=True)
class Command:
    run: Callable[[argparse.Namespace], int]
    help: str
    args: tuple[Arg, ...] = ()


def config_file(help: str = "YAML config (default: %(default)s)") -> Arg:
    """--config PATH, one config."""
    return arg("--config", default="configs/recipe.yaml", help=help)


def config_files(help: str) -> Arg:
    """--config PATH, repeatable, into `args.configs`."""
    return arg("--config", dest="configs", action="append", metavar="PATH", help=help)


def overrides(help: str = "dotted override, e.g. --set train.lr=2e-4 (repeatable)") -> Arg:
    """--set KEY=VALUE, repeatable, into `args.overrides`."""
    return arg(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


CONFIG = (config_file(), overrides())
# One registry per repo, resolved the same way by every command (docs/publish.md).
REGISTRY = arg(
    "--registry",
    help="file://PATH, hf://OWNER/REPO or mlflow://MODEL_NAME "
    "(default: $FT_REGISTRY, else publish.registry of configs/recipe.yaml)",
)
VERSION = arg("version", help="vX.Y.Z, or `latest` (the highest non-pre-release)")
ARTIFACT = arg("artifact", metavar="RUN_DIR|VERSION", help="runs/<id>, or a release version")
RUN_DIR = arg("run_dir", help="a finished run, e.g. runs/<id>")


def config_of(args: argparse.Namespace):
    """The config that --config and --set name, validated (imported only when a command runs)."""
    from ..config import load_config

    return load_config(args.config, args.overrides)
