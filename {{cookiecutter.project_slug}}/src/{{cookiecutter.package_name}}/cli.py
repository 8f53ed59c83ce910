"""`ft`: one subcommand per pipeline stage.

    uv run ft --help

COMMANDS maps each command name straight to its handler function in commands/ (one
module per stage), with its help line and its arguments. Handlers import their stage
module only when they run, so `ft --help` answers without loading torch, transformers
or peft. tests/test_cli.py checks that the map and the handlers agree.
"""

import argparse
import errno
import os
import sys

from .commands import COMMANDS
from .errors import UserError


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
    code = errno.errorcode.get(e.errno or 0, "")
    where = str(e.filename) + (f" -> {e.filename2}" if e.filename2 else "")
    return UserError(
        e.strerror or str(e),
        file=where,
        fix=FS_FIXES.get(code, "check the path and the filesystem, then run the command again"),
    )


if __name__ == "__main__":
    sys.exit(main())
