"""Handlers behind `ft` subcommands: parse nothing, decide nothing.

Each one turns parsed arguments into a call of the stage function that does the
work, and prints the result for a person. cli.py imports this module to build
`ft --help`, so every import here, the config schema's included, is made inside
the handler that needs it.
"""

import json
import sys


def _load(args):
    from .config import load_config

    return load_config(args.config, args.overrides)


def config_validate(args) -> int:
    from pathlib import Path

    from .config import DEFAULT_CONFIG, load_config

    every = sorted(str(p) for p in Path("configs").glob("*.yaml")) or [DEFAULT_CONFIG]
    for path in args.configs or every:
        cfg = load_config(path, args.overrides)
        print(f"ok  {path}  config sha256 {cfg.hash()}")
    return 0


def config_show(args) -> int:
    from .config import dump_yaml, reference_markdown

    if args.doc:
        sys.stdout.write(reference_markdown())
        return 0
    cfg = _load(args)
    sys.stdout.write(f"# resolved {args.config}  sha256 {cfg.hash()}\n" + dump_yaml(cfg.resolved()))
    return 0


def base_init_tiny(args) -> int:
    from .model.tiny import init_tiny

    digest = init_tiny(args.out, args.variant)
    print(f"built {args.out}  sha256 {digest}")
    return 0


def base_init_small(args) -> int:
    from .model.tiny import init_tiny

    digest = init_tiny(args.out, "small")
    print(f"built {args.out}  sha256 {digest}")
    return 0


def base_hash(args) -> int:
    from pathlib import Path

    from .errors import UserError
    from .util.hashing import sha256_tree

    if not Path(args.path, "config.json").is_file():
        raise UserError(
            "not a model directory (no config.json)",
            file=args.path,
            fix="pass the directory that holds config.json and the weights",
        )
    print(sha256_tree(args.path))
    return 0


def _print_lock(lock: dict) -> None:
    for split, info in lock["splits"].items():
        steps = "  ".join(f"{s['filter']} {s['rows_in']}->{s['rows_out']}" for s in info["steps"])
        print(
            f"{split:5} {info['rows_in']} rows in  {steps}  => {info['rows']} rows  "
            f"sha256 {info['sha256']}"
        )


def data_build(args) -> int:
    from .data.build import build
    from .data.progress import Progress

    cfg = _load(args)
    lock = build(cfg, progress=Progress.on_terminal() if args.progress else None)
    _print_lock(lock)
    print(f"wrote {cfg.data.out_dir}/ and {cfg.data.lock}")
    return 0


def data_check(args) -> int:
    from .data.build import check

    cfg = _load(args)
    lock = check(cfg)
    _print_lock(lock)
    print(f"ok  {cfg.data.lock} matches the sources and filters")
    return 0


def data_gc(args) -> int:
    from pathlib import Path

    from .data.tokens import gc

    cfg = _load(args)
    stores = Path(cfg.data.out_dir) / "tokens"
    removed = gc(stores, args.keep, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path, size in removed:
        print(f"{verb} {path} ({size / 1e6:,.1f} MB)")
    total = sum(size for _, size in removed)
    print(f"{verb} {len(removed)} token store(s), {total / 1e6:,.1f} MB, under {stores}")
    return 0


def data_hash(args) -> int:
    from .data.sources import describe

    print(json.dumps(describe(args.path), indent=2))
    return 0


def train(args) -> int:
    from .ops.runner import require_shared_store
    from .train.recipe import main

    require_shared_store(args.out or "runs", key="--out")
    main(
        args.config,
        args.overrides,
        args.out,
        args.resume,
        args.segment,
        args.chain,
        break_lock=args.break_lock,
    )
    return 0


def reproduce(args) -> int:
    from .closure.reproduce import main

    if args.parallel is not None and args.parallel < 1:
        from .errors import UserError

        raise UserError("--parallel must be at least 1", key="--parallel", fix="pass 1 or more")
    if args.full and args.segments:
        from .errors import UserError

        raise UserError(
            "--full and --segments exclude each other", key="--full", fix="pass one of them"
        )
    if args.collect:
        from .errors import UserError
        from .ops.runner import require_shared_store

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


def diff(args) -> int:
    from .closure.diff import main

    return main(args.run_a, args.run_b)


def plan(args) -> int:
    from .review.plan import main

    return main(args.base, args.configs, args.out)


def fetch(args) -> int:
    from .ops.fetch import fetch
    from .ops.runner import require_shared_store

    require_shared_store(args.run_url, key="run_url")
    fetch(args.run_url, args.dest, checkpoints=args.checkpoints)
    return 0


def publish(args) -> int:
    from .ops.runner import require_shared_registry
    from .publish.gate import main

    if args.registry:  # refused before anything is read; the default is checked when resolved
        require_shared_registry(args.registry, key="--registry")
    return main(args.run_dir, args.version, args.registry, args.tag_commit)


def _registry_uri(args) -> str:
    from .publish.registries import resolve_registry

    return resolve_registry(args.registry, shared=True)


def registry_list(args) -> int:
    from .publish.versions import list_versions

    return list_versions(_registry_uri(args))


def registry_show(args) -> int:
    from .publish.versions import show_version

    return show_version(_registry_uri(args), args.version)


def registry_verify(args) -> int:
    from .publish.attest import verify

    return verify(_registry_uri(args), args.version, args.repo)


def registry_pull(args) -> int:
    from .publish.versions import pull_version

    return pull_version(_registry_uri(args), args.version, args.dest)


def generate(args) -> int:
    from .publish.generate import main

    text = main(args.artifact, args.prompt, args.messages, args.max_new_tokens, args.registry)
    print(text)
    return 0


def export(args) -> int:
    from .publish.export import main

    record = main(args.artifact, args.merged, args.registry)
    print(f"exported {args.merged}: {len(record['files'])} files (record in export.json)")
    return 0


def report(args) -> int:
    from .review.report import main

    return main(args.run_dir, args.baseline, args.registry, args.out, args.figures_url)


def gate(args) -> int:
    from .review.gates import main

    return main(args.run_dir, args.baseline, args.registry, args.out)


def migrate(args) -> int:
    from .review.migrate import main

    return main(
        args.config,
        hub_id=args.hub_id,
        revision=args.revision,
        tokenizer_revision=args.tokenizer_revision,
        path=args.path,
        sha256=args.sha256,
        build=args.build,
        out=args.out,
    )


def retrain(args) -> int:
    from .review.drill import main

    return main(args.release_dir, args.out, args.gates_out)


def history(args) -> int:
    from .review.history import main

    return main(args.registry, args.out)


def launch(args) -> int:
    from .ops.launch import main

    return main(
        args.config,
        args.overrides,
        backend=args.backend,
        run_uri=args.run_uri,
        fetch=args.fetch,
        command=args.cmd,
        detach=args.detach,
    )


def jobs_ended(args) -> int:
    from .ops.jobs import ended

    for job in ended(args.minutes):
        print(f"{job.commit}\t{job.state}\t{job.job_id}\t{job.status}\t{job.name}")
    return 0


def image_check(args) -> int:
    from .ops.image import check, reference

    lock = check()
    print(
        f"ok  {reference(lock)}  built from commit {lock['commit'][:12]}; "
        "uv.lock and Dockerfile unchanged since"
    )
    return 0


def image_build_args(args) -> int:
    from .ops.image import build_args

    for key, value in build_args(latest_base=args.latest_base).items():
        print(f"{key}={value}")
    return 0


def image_record(args) -> int:
    from .ops.image import record, reference

    lock = record(args.name, args.digest, args.base_digest)
    print(
        f"wrote image.lock: {reference(lock)} on {lock['base']}@{lock['base_digest']}, "
        f"built from commit {lock['commit'][:12]}"
    )
    return 0


def doctor(args) -> int:
    from .ops.doctor import main

    return main(args.workflow, args.config, args.backend)


def release_resolve(args) -> int:
    import os

    from .errors import UserError
    from .ops.inputs import resolve_run
    from .ops.runner import require_shared_store

    store = args.store or os.environ.get("FT_ARTIFACT_STORE")
    if not store:
        raise UserError(
            "no artifact store",
            key="--store",
            fix="pass --store s3://bucket/runs or set FT_ARTIFACT_STORE",
        )
    require_shared_store(store, key="--store")
    url, commit = resolve_run(store, args.commit)
    print(f"run of {commit[:12]} (same training inputs)", file=sys.stderr)
    print(url)
    return 0
