"""`ft config` and `ft base`: the config and the base model it pins."""

import sys
from argparse import Namespace

from .spec import CONFIG, Command, arg, config_files, config_of, overrides


def config_validate(args: Namespace) -> int:
    from pathlib import Path

    from ..config import DEFAULT_CONFIG, load_config

    every = sorted(str(p) for p in Path("configs").glob("*.yaml")) or [DEFAULT_CONFIG]
    for path in args.configs or every:
        cfg = load_config(path, args.overrides)
        print(f"ok  {path}  config sha256 {cfg.hash()}")
    return 0


def config_show(args: Namespace) -> int:
    from ..config import dump_yaml, reference_markdown

    if args.doc:
        sys.stdout.write(reference_markdown())
        return 0
    cfg = config_of(args)
    sys.stdout.write(f"# resolved {args.config}  sha256 {cfg.hash()}\n" + dump_yaml(cfg.resolved()))
    return 0


def base_init_tiny(args: Namespace) -> int:
    from ..model.tiny import init_tiny

    digest = init_tiny(args.out, args.variant)
    print(f"built {args.out}  sha256 {digest}")
    return 0


def base_init_small(args: Namespace) -> int:
    from ..model.tiny import init_tiny

    digest = init_tiny(args.out, "small")
    print(f"built {args.out}  sha256 {digest}")
    return 0


def base_hash(args: Namespace) -> int:
    from pathlib import Path

    from ..errors import UserError
    from ..util.hashing import sha256_tree

    if not Path(args.path, "config.json").is_file():
        raise UserError(
            "not a model directory (no config.json)",
            file=args.path,
            fix="pass the directory that holds config.json and the weights",
        )
    print(sha256_tree(args.path))
    return 0


COMMANDS = {
    "config validate": Command(
        config_validate,
        "Validate configs; print their hashes",
        (
            config_files("config to validate (repeatable; default: every configs/*.yaml)"),
            overrides("dotted override applied to each config (repeatable)"),
        ),
    ),
    "config show": Command(
        config_show,
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
        base_init_tiny,
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
        base_init_small,
        "Build the embedded small base model (~38M parameters) deterministically (offline)",
        (arg("--out", default="base/small-llama", help="directory (default: %(default)s)"),),
    ),
    "base hash": Command(base_hash, "Print the content hash of a model directory", (arg("path"),)),
}
