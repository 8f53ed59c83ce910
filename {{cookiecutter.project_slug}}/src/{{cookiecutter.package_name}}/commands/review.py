"""`ft plan`, `ft report`, `ft gate`, `ft migrate`, `ft retrain`, `ft drill`, `ft history`:
reading runs and releases for a person (review/); none of them publishes (the drill trains)."""

from argparse import Namespace

from .spec import REGISTRY, RUN_DIR, Command, arg, config_file, config_files


def plan(args: Namespace) -> int:
    from ..review.plan import main

    return main(args.base, args.configs, args.out)


def report(args: Namespace) -> int:
    from ..review.report import main

    return main(args.run_dir, args.baseline, args.registry, args.out, args.figures_url)


def gate(args: Namespace) -> int:
    from ..review.gates import main

    return main(args.run_dir, args.baseline, args.registry, args.out)


def migrate(args: Namespace) -> int:
    from ..review.migrate import main

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


def retrain(args: Namespace) -> int:
    from ..review.drill import main

    return main(args.release_dir, args.out, args.gates_out)


def drill_submit(args: Namespace) -> int:
    from ..ops.runner import artifact_store
    from ..review.drill_sky import submit

    return submit(args.release_dir, artifact_store(args.store), args.label, args.segments)


def drill_collect(args: Namespace) -> int:
    from ..ops.runner import artifact_store
    from ..review.drill_sky import collect

    store = artifact_store(args.store)
    return collect(args.release_dir, store, args.label, args.segments, args.out, args.gates_out)


def history(args: Namespace) -> int:
    from ..review.history import main

    return main(args.registry, args.out)


_DRILL = (
    arg("release_dir", help="a pulled release (ft registry pull latest runs/drill)"),
    arg("--label", required=True, help="names the drill's jobs and bucket folders"),
    arg(
        "--segments",
        type=int,
        default=1,
        metavar="K",
        help="checkpoint intervals of the release's run to replay (default: %(default)s)",
    ),
    arg("--store", help="the artifact store, e.g. s3://bucket/runs (default: $FT_ARTIFACT_STORE)"),
)


COMMANDS = {
    "plan": Command(
        plan,
        "Markdown: what this branch changes for training (configs, data) against a base ref",
        (
            arg("--base", default="origin/main", help="base ref (default: %(default)s)"),
            config_files("config to compare (repeatable; default: every configs/*.yaml)"),
            arg("--out", help="write the Markdown here instead of stdout"),
        ),
    ),
    "report": Command(
        report,
        "Markdown + PNG report of a run: loss, metrics, data and config diffs vs a baseline",
        (
            RUN_DIR,
            arg(
                "--baseline",
                help="a run directory, a release version (vX.Y.Z) or none "
                "(default: the latest release in the registry)",
            ),
            REGISTRY,
            arg("--out", help="output directory (default: RUN_DIR/report)"),
            arg(
                "--figures-url",
                metavar="URL",
                help="link the figures under this URL instead of beside report.md",
            ),
        ),
    ),
    "gate": Command(
        gate,
        "Check a run's eval gates against a baseline release; exit 1 if any fails",
        (
            RUN_DIR,
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
        migrate,
        "Move the recipe to another base model: edit model.base, write migration.md "
        "(tokenizer drift per split and suite, parameter and architecture change)",
        (
            config_file("config to edit (default: %(default)s)"),
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
        retrain,
        "Drill: train a release's config on this checkout's pipeline and check its gates",
        (
            arg("release_dir", help="a pulled release (ft registry pull latest runs/drill)"),
            arg("--out", default="runs/retrain", help="the new run (default: %(default)s)"),
            arg("--gates-out", metavar="FILE", help="also write the gate table here"),
        ),
    ),
    "drill submit": Command(
        drill_submit,
        "Drill a SkyPilot-trained release without waiting: submit its spot-check interval "
        "jobs and its re-training on today's pipeline as managed jobs, then return",
        (*_DRILL,),
    ),
    "drill collect": Command(
        drill_collect,
        "Once a drill's jobs ended: recompute its spot check from the bucket, fetch the "
        "re-trained run and check the release's gates against it",
        (
            *_DRILL,
            arg("--out", default="runs/retrain", help="the fetched re-trained run"),
            arg("--gates-out", metavar="FILE", help="also write the gate table here"),
        ),
    ),
    "history": Command(
        history,
        "Static HTML page over every published version: metrics, pins, reproduce/drill status",
        (REGISTRY, arg("--out", default="site", help="output directory (default: %(default)s)")),
    ),
}
