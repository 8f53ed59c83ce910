"""`ft train`, and the closure around a run: `ft reproduce`, `ft diff`, `ft fetch`."""

from argparse import Namespace

from .spec import CONFIG, RUN_DIR, Command, arg


def train(args: Namespace) -> int:
    from ..ops.runner import require_shared_store
    from ..train.recipe import main

    require_shared_store(args.out or "runs", key="--out")
    main(
        args.config,
        args.overrides,
        out=args.out,
        resume=args.resume,
        segment=args.segment,
        chain=args.chain,
        break_lock=args.break_lock,
    )
    return 0


def reproduce(args: Namespace) -> int:
    from ..closure.reproduce import main
    from ..errors import UserError

    if args.parallel is not None and args.parallel < 1:
        raise UserError("--parallel must be at least 1", key="--parallel", fix="pass 1 or more")
    if args.full and args.segments:
        raise UserError(
            "--full and --segments exclude each other", key="--full", fix="pass one of them"
        )
    if args.collect:
        from ..ops.runner import require_shared_store

        if args.full:
            raise UserError(
                "--collect gathers interval results; --full replays here",
                key="--collect",
                fix="pass one of them",
            )
        require_shared_store(args.collect, key="--collect")
    return main(
        args.run_dir,
        clean_room=args.clean_room,
        keep_env=tuple(args.keep_env),
        verbose=args.verbose,
        segments=args.segments,
        parallel=args.parallel,
        seed=args.seed,
        full=args.full,
        collect=args.collect,
    )


def diff(args: Namespace) -> int:
    from ..closure.diff import main

    return main(args.run_a, args.run_b)


def fetch(args: Namespace) -> int:
    from ..ops.fetch import fetch
    from ..ops.runner import require_shared_store

    require_shared_store(args.run_url, key="run_url")
    fetch(args.run_url, args.dest, checkpoints=args.checkpoints)
    return 0


COMMANDS = {
    "train": Command(
        train,
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
        reproduce,
        "Re-run a run's REPRODUCE.md from a clean checkout and compare its outputs",
        (
            RUN_DIR,
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
        diff,
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
    "fetch": Command(
        fetch,
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
}
