"""`ft data`: build and check the training set, hash a source, collect old token stores."""

import json
from argparse import Namespace

from .spec import CONFIG, Command, arg, config_of


def _print_lock(lock: dict) -> None:
    for split, info in lock["splits"].items():
        steps = "  ".join(f"{s['filter']} {s['rows_in']}->{s['rows_out']}" for s in info["steps"])
        print(
            f"{split:5} {info['rows_in']} rows in  {steps}  => {info['rows']} rows  "
            f"sha256 {info['sha256']}"
        )


def data_build(args: Namespace) -> int:
    from ..data.build import build
    from ..data.progress import Progress

    cfg = config_of(args)
    lock = build(cfg, progress=Progress.on_terminal() if args.progress else None)
    _print_lock(lock)
    print(f"wrote {cfg.data.out_dir}/ and {cfg.data.lock}")
    return 0


def data_check(args: Namespace) -> int:
    from ..data.build import check

    cfg = config_of(args)
    lock = check(cfg)
    _print_lock(lock)
    print(f"ok  {cfg.data.lock} matches the sources and filters")
    return 0


def data_gc(args: Namespace) -> int:
    from pathlib import Path

    from ..data.tokens import gc

    cfg = config_of(args)
    stores = Path(cfg.data.out_dir) / "tokens"
    removed = gc(stores, args.keep, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path, size in removed:
        print(f"{verb} {path} ({size / 1e6:,.1f} MB)")
    total = sum(size for _, size in removed)
    print(f"{verb} {len(removed)} token store(s), {total / 1e6:,.1f} MB, under {stores}")
    return 0


def data_hash(args: Namespace) -> int:
    from ..data.sources import describe

    print(json.dumps(describe(args.path), indent=2))
    return 0


COMMANDS = {
    "data build": Command(
        data_build,
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
        data_check, "Fail if data or filters changed but data.lock did not", CONFIG
    ),
    "data gc": Command(
        data_gc,
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
        data_hash,
        "Print the pins (sha256, size, ETag) of a data file, directory or bucket object",
        (arg("path", help="a local path or a URL: s3://, gs://, az://, https://"),),
    ),
}
