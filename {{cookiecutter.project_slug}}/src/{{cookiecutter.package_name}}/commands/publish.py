"""`ft publish`, `ft registry`, and what a release is used for: `ft generate`, `ft export`."""

from argparse import Namespace

from .spec import ARTIFACT, REGISTRY, VERSION, Command, arg


def publish(args: Namespace) -> int:
    from ..ops.runner import require_shared_registry
    from ..publish.gate import main

    if args.registry:  # refused before anything is read; the default is checked when resolved
        require_shared_registry(args.registry, key="--registry")
    return main(args.run_dir, args.version, args.registry, args.tag_commit)


def _registry_uri(args: Namespace) -> str:
    from ..publish.registries import resolve_registry

    return resolve_registry(args.registry, shared=True)


def registry_list(args: Namespace) -> int:
    from ..publish.versions import list_versions

    return list_versions(_registry_uri(args))


def registry_show(args: Namespace) -> int:
    from ..publish.versions import show_version

    return show_version(_registry_uri(args), args.version)


def registry_pull(args: Namespace) -> int:
    from ..publish.versions import pull_version

    return pull_version(_registry_uri(args), args.version, args.dest)


def registry_verify(args: Namespace) -> int:
    from ..publish.attest import verify

    return verify(_registry_uri(args), args.version, args.repo)


def generate(args: Namespace) -> int:
    from ..publish.generate import main

    text = main(args.artifact, args.prompt, args.messages, args.max_new_tokens, args.registry)
    print(text)
    return 0


def export(args: Namespace) -> int:
    from ..publish.export import main

    record = main(args.artifact, args.merged, args.registry)
    print(f"exported {args.merged}: {len(record['files'])} files (record in export.json)")
    return 0


COMMANDS = {
    "publish": Command(
        publish,
        "Push a reproduced run to the registry as an immutable version (refused unless "
        "`ft reproduce` passed for exactly these files)",
        (
            arg("run_dir", help="a finished run with a passing verification.json"),
            arg(
                "--version",
                required=True,
                help="release version, vMAJOR.MINOR.PATCH[-PRERELEASE], e.g. v1.2.0",
            ),
            REGISTRY,
            arg(
                "--tag-commit",
                metavar="SHA",
                help="the commit the release tag points at; "
                "the run must be trained there (default: $GITHUB_SHA on a tag build)",
            ),
        ),
    ),
    "registry list": Command(registry_list, "List the published versions", (REGISTRY,)),
    "registry show": Command(
        registry_show, "Print a version's index: files, hashes, run", (VERSION, REGISTRY)
    ),
    "registry pull": Command(
        registry_pull,
        "Download a version into a new directory, re-verifying every file's sha256",
        (VERSION, arg("dest", help="a new or empty directory"), REGISTRY),
    ),
    "registry verify": Command(
        registry_verify,
        "Check a version against the release's signed attestation (needs `gh` and GitHub)",
        (
            VERSION,
            arg("--repo", help="OWNER/NAME that released it (default: the origin remote)"),
            REGISTRY,
        ),
    ),
    "generate": Command(
        generate,
        "Greedy, deterministic text from a run's or a release's adapter",
        (
            ARTIFACT,
            arg("--prompt", help="one user prompt"),
            arg("--messages", metavar="FILE", help='JSON list of {"role", "content"} turns'),
            arg("--max-new-tokens", type=int, default=64, help="budget (default: %(default)s)"),
            REGISTRY,
        ),
    ),
    "export": Command(
        export,
        "Merge the adapter into its base and write a plain transformers model",
        (
            ARTIFACT,
            arg("--merged", required=True, metavar="OUT", help="a new or empty directory"),
            REGISTRY,
        ),
    ),
}
