"""Every command against bad input: one line, exit 2, the file or key named, a fix, no debris.

    uv run pytest tests/test_bad_input.py -q

Each case sets up one mistake a user (or a damaged disk, or someone editing a bucket)
can make, runs the real `ft` entry point in this process, and asserts the CLI
contract (`FtResult.user_error`: exit 2, nothing on stdout, exactly one `error:` line
with `(fix: ...)`, no traceback, every needle in the line), then that the working
directory holds exactly what it held before: nothing half-written, nothing created.
docs/reliability.md counts these cases by class.
"""

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from release_support import make_release

SMOKE = "configs/smoke.yaml"
BAD = "configs/bad.yaml"


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    setup: Callable[[Path], None]
    needles: tuple[str, ...]


CASES: dict[str, list[tuple[str, Case]]] = {}


def case(cls: str, name: str, argv, setup=lambda w: None, needles=()) -> None:
    CASES.setdefault(cls, []).append((f"{cls}: {name}", Case(tuple(argv), setup, tuple(needles))))


def _smoke(work: Path) -> dict:
    return yaml.safe_load((work / SMOKE).read_text())


def _write_config(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        raw = _smoke(work)
        change(raw)
        (work / BAD).write_text(yaml.safe_dump(raw, sort_keys=False))

    return setup


def _write_text(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


def _mkdir(rel: str) -> Callable[[Path], None]:
    return lambda work: (work / rel).mkdir(parents=True, exist_ok=True)


def _set(path: str, value) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        node = raw
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return change


# --- 1. configs: every command that reads one ----------------------------------------------

CONFIG_COMMANDS = {
    "config validate": ("config", "validate", "--config"),
    "config show": ("config", "show", "--config"),
    "data build": ("data", "build", "--config"),
    "data check": ("data", "check", "--config"),
    "train": ("train", "--config"),
    "launch": ("launch", "--backend", "local", "--config"),
}
BAD_CONFIGS = {
    "missing file": (lambda w: None, ("not found",)),
    "a directory": (_mkdir(BAD), ("is a directory",)),
    "not UTF-8": (_write_text(BAD, b"seed: 1\nname: \xff\xfe\n"), ("not UTF-8",)),
    "invalid YAML": (_write_text(BAD, "seed: [1\n"), ("not valid YAML",)),
    "duplicate key": (_write_text(BAD, "seed: 1\nseed: 2\n"), ("duplicate key 'seed'",)),
    "not a mapping": (_write_text(BAD, "- seed\n- 1\n"), ("mapping",)),
    "unknown key": (_write_config(_set("bogus", 1)), ("bogus",)),
    "lr infinite": (_write_config(_set("train.lr", float("inf"))), ("train.lr",)),
    "lr NaN": (_write_config(_set("train.lr", float("nan"))), ("train.lr",)),
    "seed a boolean": (_write_config(_set("seed", True)), ("seed",)),
    "seed too large": (_write_config(_set("seed", 2**64)), ("seed",)),
    "seed negative": (_write_config(_set("seed", -1)), ("seed",)),
    "max_steps zero": (_write_config(_set("train.max_steps", 0)), ("train.max_steps",)),
    "unknown optimizer": (_write_config(_set("train.optimizer", "adam")), ("train.optimizer",)),
    "hub model on a branch": (
        _write_config(_set("model.base", {"hub_id": "org/m", "revision": "main"})),
        ("model.base.revision", "40-hex"),
    ),
    "registry scheme": (
        _write_config(_set("publish.registry", "s3://bucket/releases")),
        ("publish", "registry"),
    ),
    "image by tag": (_write_config(_set("launch.image", "repo/img:latest")), ("launch.image",)),
    "no data sources": (_write_config(_set("data.sources", [])), ("data.sources",)),
}
for command, argv in CONFIG_COMMANDS.items():
    for kind, (setup, needles) in BAD_CONFIGS.items():
        case("config", f"{command} / {kind}", [*argv, BAD], setup, (BAD, *needles))

# --- 2. overrides -------------------------------------------------------------------------

BAD_OVERRIDES = {
    "no equals sign": ("train.lr", ("--set", "dotted.key=value")),
    "empty key": ("=1", ("--set",)),
    "empty part": ("train..lr=1", ("--set",)),
    "list index out of range": ("data.sources.9.path=x", ("data.sources", "below")),
    "into a number": ("seed.x=1", ("seed", "not a mapping")),
    "infinite value": ("train.lr=.inf", ("train.lr",)),
}
for command in ("config validate", "config show", "data check", "train"):
    for kind, (override, needles) in BAD_OVERRIDES.items():
        argv = [*CONFIG_COMMANDS[command], SMOKE, "--set", override]
        case("override", f"{command} / {kind}", argv, needles=needles)

# --- 3. run directories and their manifest --------------------------------------------------

RUN = "runs/r"
GOOD_MANIFEST = {
    "run_id": "r",
    "outputs": {},
    "git": {"commit": "a" * 40, "dirty": False},
    "config": {"publish": {"registry": "file://./registry"}, "reproduce": {"mode": "exact"}},
    "command": {"config": SMOKE, "overrides": []},
}


def _run_with(manifest: bytes | str | None, *, extra=None) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        run = work / RUN
        run.mkdir(parents=True)
        if manifest is not None:
            data = manifest.encode() if isinstance(manifest, str) else manifest
            (run / "manifest.json").write_bytes(data)
        for name, data in (extra or {}).items():
            (run / name).write_text(data)

    return setup


def _manifest(**change) -> str:
    return json.dumps({k: v for k, v in (GOOD_MANIFEST | change).items() if v is not ...})


BAD_RUNS = {
    "no such directory": (lambda w: None, ("runs/r", "no manifest.json")),
    "a file, not a run": (_write_text(RUN, "x"), ("runs/r",)),
    "unfinished (no manifest)": (_run_with(None), ("runs/r", "no manifest.json")),
    "empty manifest": (_run_with(""), ("manifest.json", "not valid JSON")),
    "truncated manifest": (_run_with(_manifest()[:40]), ("manifest.json", "not valid JSON")),
    "manifest a list": (_run_with("[]"), ("manifest.json", "not a JSON dict")),
    "manifest not UTF-8": (_run_with(b'{"run_id": "\xff"}'), ("manifest.json", "not UTF-8")),
    "manifest with NaN": (_run_with('{"run_id": NaN}'), ("manifest.json", "NaN")),
    "manifest without outputs": (_run_with(_manifest(outputs=...)), ("manifest.json", "outputs")),
    "manifest without git": (_run_with(_manifest(git=...)), ("manifest.json", "git")),
    "outputs not an object": (_run_with(_manifest(outputs=[])), ("manifest.json", "outputs")),
    "output name escapes": (
        _run_with(_manifest(outputs={"../../etc/passwd": "0" * 64})),
        ("manifest.json", "unsafe file name"),
    ),
}
RUN_COMMANDS = {
    "reproduce": ("reproduce", RUN),
    "diff": ("diff", RUN, RUN),
    "publish": ("publish", RUN, "--version", "v1.0.0", "--registry", "file://reg"),
    "report": ("report", RUN, "--baseline", "none"),
}
for command, argv in RUN_COMMANDS.items():
    for kind, (setup, needles) in BAD_RUNS.items():
        case("run directory", f"{command} / {kind}", argv, setup, needles)

# `ft fetch` reads the same record from a store URL.
FETCH_BAD = {
    "no run at the URL": (lambda w: None, ("no manifest.json",)),
    "unfinished run": (_run_with(None, extra={"run.json": "{}"}), ("no manifest.json",)),
    "truncated manifest": (_run_with(_manifest()[:40]), ("manifest.json", "not a manifest")),
    "manifest a list": (_run_with("[]"), ("manifest.json", "not a manifest")),
    "manifest not UTF-8": (_run_with(b'{"outputs": "\xff"}'), ("manifest.json",)),
    "manifest with NaN": (_run_with('{"outputs": {}, "x": NaN}'), ("manifest.json",)),
    "outputs not an object": (_run_with(_manifest(outputs=[])), ("manifest.json",)),
    "output name escapes": (
        _run_with(_manifest(outputs={"../../planted": "0" * 64})),
        ("manifest.json", "unsafe file name"),
    ),
    "absolute output name": (
        _run_with(_manifest(outputs={"/etc/planted": "0" * 64})),
        ("manifest.json", "unsafe file name"),
    ),
}
for kind, (setup, needles) in FETCH_BAD.items():
    case("fetch", kind, ("fetch", "file://./runs/r", "fetched"), setup, needles)
case(
    "fetch",
    "destination not empty",
    ("fetch", "file://./runs/r", "configs"),
    _run_with(_manifest()),
    ("configs", "not empty"),
)
case(
    "fetch",
    "credentials in the URL",
    ("fetch", "s3://key:secret@bucket/runs/r", "fetched"),
    needles=("***@bucket", "environment"),
)
case("fetch", "unknown scheme", ("fetch", "nosuch://bucket/r", "fetched"), needles=("nosuch",))

# --- 4. run.json for a resume ----------------------------------------------------------------

RUN_JSONS: dict[str, str | bytes] = {
    "truncated run.json": '{"config": "configs/sm',
    "run.json a list": "[]",
    "run.json not UTF-8": b'{"config": "\xff"}',
    "run.json with NaN": '{"config": NaN}',
}
for kind, data in RUN_JSONS.items():
    case(
        "resume",
        kind,
        ("train", "--out", RUN, "--resume"),
        _write_text(f"{RUN}/run.json", data),
        ("runs/r/run.json",),
    )
case("resume", "nothing started", ("train", "--out", RUN, "--resume"), _mkdir(RUN), ("runs/r",))
case("resume", "no --out", ("train", "--resume"), needles=("--out",))
# (`--resume` of a finished run is a no-op that exits 0: not a bad input.)

# --- 5. data.lock ---------------------------------------------------------------------------

BAD_LOCKS = {
    "missing": (lambda w: (w / "data.lock").unlink(), ("data.lock", "ft data build")),
    "truncated": (_write_text("data.lock", '{"sources": ['), ("data.lock", "not valid JSON")),
    "not UTF-8": (_write_text("data.lock", b"\xff\xfe{}"), ("data.lock", "not UTF-8")),
    "a list": (_write_text("data.lock", "[]"), ("data.lock", "not a JSON dict")),
    "no splits": (_write_text("data.lock", "{}"), ("data.lock", "splits")),
    "a directory": (
        lambda w: ((w / "data.lock").unlink(), (w / "data.lock").mkdir()),
        ("data.lock", "directory"),
    ),
}


def _non_utf8_source(work: Path) -> None:
    """A data source whose bytes are pinned correctly but are not UTF-8 text."""
    import hashlib

    data = b'{"prompt": "a", "response": "b"}\n{"prompt": "\xff\xfe"}\n'
    (work / "data/raw/latin1.jsonl").write_bytes(data)

    def change(raw: dict) -> None:
        raw["data"]["sources"][0] |= {
            "path": "data/raw/latin1.jsonl",
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    _write_config(change)(work)


for command in ("data build", "data check"):
    case(
        "data file",
        f"{command} / not UTF-8",
        (*CONFIG_COMMANDS[command], BAD),
        _non_utf8_source,
        ("data/raw/latin1.jsonl", "not UTF-8"),
    )

for kind, (setup, needles) in BAD_LOCKS.items():
    case("data.lock", f"data check / {kind}", ("data", "check", "--config", SMOKE), setup, needles)

# --- 6. verification.json for publish ---------------------------------------------------------

PUBLISH = ("publish", RUN, "--version", "v1.0.0", "--registry", "file://reg")
for kind, (record, needles) in {
    "missing": (None, ("never reproduced",)),
    "truncated": ('{"passed": tr', ("not a record",)),
    "a list": ("[]", ("not a record",)),
    "not UTF-8": (b'{"passed": "\xff"}', ("not a record",)),
    "failed": ('{"passed": false, "reason": "2 outputs differ"}', ("2 outputs differ",)),
    "no hashes": ('{"passed": true}', ("lacks the compared hashes",)),
    "another run": (
        json.dumps(
            {"passed": True, "compared": [], "manifest_sha256": "x", "reproduce_md_sha256": "y"}
        ),
        ("manifest.json",),
    ),
}.items():
    extra = {} if record is None else {"verification.json": record}

    def setup(work, record=record, extra=extra):
        _run_with(_manifest(), extra={"REPRODUCE.md": "x"})(work)
        if isinstance(record, bytes):
            (work / RUN / "verification.json").write_bytes(record)
        elif record is not None:
            (work / RUN / "verification.json").write_text(record)

    case("verification", kind, PUBLISH, setup, ("runs/r", *needles))
for version in ("1.0.0", "v1.2", "v1.0.0+build", "latest"):
    case("publish version", version, ("publish", RUN, "--version", version), needles=("--version",))

# --- 7. registries ---------------------------------------------------------------------------

BAD_URIS = [
    "registry",
    "s3://bucket/x",
    "file://",
    "hf://owner-only",
    "hf://a/b/c",
    "mlflow://",
    "mlflow://a/b",
    "ftp://x",
]
for uri in BAD_URIS:
    for sub, extra in (("list", ()), ("show", ("v1.0.0",)), ("pull", ("v1.0.0", "pulled"))):
        argv = ("registry", sub, *extra, "--registry", uri)
        case("registry URI", f"{sub} {uri}", argv, needles=("publish.registry",))

REG = "file://./reg"


def _published(work: Path) -> Path:
    files, meta = make_release(work / "release-src")
    import importlib

    from conftest import PKG_NAME

    importlib.import_module(f"{PKG_NAME}.publish.registries").open_registry(REG).publish(
        "v1.0.0", files, meta
    )
    return work / "reg" / "versions" / "v1.0.0.json"


def _index_edit(change: Callable[[dict], None] | str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        path = _published(work)
        if isinstance(change, str):
            path.write_text(change)
        else:
            index = json.loads(path.read_text())
            change(index)
            path.write_text(json.dumps(index))

    return setup


def _rename_entry(index: dict) -> None:
    index["files"]["../escape"] = index["files"].pop("config.yaml")


BAD_INDEXES = {
    "not JSON": (_index_edit("{"), ("v1.0.0.json", "not a valid release index")),
    "another version": (
        _index_edit(lambda i: i.update(version="v2.0.0")),
        ("v1.0.0.json", "not a valid release index"),
    ),
    "unsafe name": (_index_edit(_rename_entry), ("v1.0.0.json", "unsafe file name")),
    "bad digest": (
        _index_edit(lambda i: i["files"]["config.yaml"].update(sha256="../../x")),
        ("v1.0.0.json", "config.yaml", "sha256"),
    ),
    "size not a number": (
        _index_edit(lambda i: i["files"]["config.yaml"].update(size="7")),
        ("v1.0.0.json", "config.yaml"),
    ),
}
for kind, (setup, needles) in BAD_INDEXES.items():
    for sub, extra in (("show", ("v1.0.0",)), ("pull", ("v1.0.0", "pulled"))):
        case(
            "registry index",
            f"{sub} / {kind}",
            ("registry", sub, *extra, "--registry", REG),
            setup,
            needles,
        )
for version in ("1.0", "v1", "v1.0.0+b", "v01.0.0"):
    for sub, extra in (("show", ()), ("pull", ("pulled",))):
        argv = ("registry", sub, version, *extra, "--registry", REG)
        case("registry version", f"{sub} {version}", argv, needles=("VERSION", "not a release"))
case(
    "registry version",
    "show a missing version",
    ("registry", "show", "v9.0.0", "--registry", REG),
    _published,
    ("VERSION", "no version v9.0.0"),
)
case(
    "registry version",
    "pull into a full directory",
    ("registry", "pull", "v1.0.0", "configs", "--registry", REG),
    _published,
    ("configs", "not empty"),
)
case(
    "registry version",
    "pull latest of an empty registry",
    ("registry", "pull", "latest", "pulled", "--registry", REG),
    needles=("VERSION", "no release"),
)

# --- 8. options that end up in documents and paths ------------------------------------------

for url in (
    "javascript:alert(1)",
    "JAVASCRIPT:x",
    "data:text/html,x",
    "vbscript:x",
    "//evil/x",
    "file:///etc",
):
    argv = ("report", RUN, "--baseline", "none", "--figures-url", url)
    case("figures URL", url, argv, needles=("--figures-url", "http"))
for kind, path in (("missing", "nowhere"), ("not a model", "configs")):
    case("base hash", kind, ("base", "hash", path), needles=(path, "config.json"))

# --- 9. the filesystem in the way ------------------------------------------------------------

case(
    "filesystem",
    "train --out under a file",
    ("train", "--config", SMOKE, "--out", "data.lock/run"),
    needles=("data.lock", "fix:"),
)
case(
    "filesystem",
    "train --out is a file",
    ("train", "--config", SMOKE, "--out", "data.lock"),
    needles=("data.lock",),
)
case(
    "filesystem",
    "data build out_dir under a file",
    ("data", "build", "--config", SMOKE, "--set", "data.out_dir=data.lock/build"),
    needles=("data.lock", "directory"),
)
case(
    "filesystem",
    "registry pull under a file",
    ("registry", "pull", "v1.0.0", "data.lock/pulled", "--registry", REG),
    _published,
    ("data.lock",),
)
case(
    "filesystem",
    "fetch into a file's child",
    ("fetch", "file://./runs/r", "data.lock/run"),
    _run_with(_manifest(), extra={"run.json": "{}", "REPRODUCE.md": "x"}),
    ("data.lock",),
)
case(
    "filesystem",
    "train --out through ..",
    ("train", "--config", SMOKE, "--out", "configs/new/.."),
    needles=("configs", "not empty"),
)

ALL = [c for cases in CASES.values() for c in cases]


def tree(root: Path) -> dict[str, tuple]:
    """Every path below root with its type and bytes: what a failed command must not change."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if "__pycache__" in rel:
            continue
        out[rel] = ("dir",) if p.is_dir() else ("file", p.read_bytes())
    return out


def publish_temps() -> set[str]:
    """This process's publish staging directories (others may be publishing meanwhile)."""
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"ft-publish-{os.getpid()}-*")}


def test_the_suite_is_big_enough():
    assert len(ALL) >= 150, len(ALL)


@pytest.mark.parametrize("bad", [c for _, c in ALL], ids=[name for name, _ in ALL])
def test_bad_input_is_one_clean_line(ft, data_workdir, bad):
    bad.setup(data_workdir)
    before, temps = tree(data_workdir), publish_temps()
    result = ft(*bad.argv)
    result.user_error(*bad.needles)
    assert tree(data_workdir) == before, "the failed command left files behind or changed some"
    assert publish_temps() <= temps
    assert not os.environ.get("FT_OUT")
