"""Loading what a report compares: a run directory or a pulled release, and the baseline."""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...closure.manifest import check_outputs, read_manifest
from ...errors import UserError
from ...util.hashing import sha256_file


@dataclass
class Side:
    """One run of a comparison: a run directory or a pulled release."""

    label: str  # how tables name it: "this run", "`runs/x`", "v0.3.0"
    manifest: dict
    curve: list[dict] | None  # metrics.jsonl records, if the run or release carries them
    verification: dict | None
    verification_current: bool = False  # the record vouches for this very manifest.json
    reproduce_md: str | None = None


READ_OUTPUTS = ("metrics.jsonl", "eval.json")
FIGURE_SCHEMES = ("https", "http")


def check_figures_url(url: str | None) -> None:
    """Figures are linked from Markdown a browser renders: only http(s) or a relative path."""
    if url is None:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if (
        (scheme and scheme not in FIGURE_SCHEMES)
        or (scheme and not parts.netloc)
        or (not scheme and (url.strip().startswith("//") or ":" in url.split("/", 1)[0]))
    ):
        raise UserError(
            f"{url!r} is not an http(s) URL or a relative path",
            key="--figures-url",
            fix="pass https://HOST/PATH (where the figures are uploaded) or a relative path",
        )


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise UserError(
            f"not valid JSON ({e})",
            file=str(path),
            fix="restore the file the command wrote, or re-run that command",
        ) from None
    return data if isinstance(data, dict) else None


def read_curve(path: Path) -> list[dict] | None:
    """The records of a metrics.jsonl ({step, loss, lr}), or None if the file is absent."""
    if not path.is_file():
        return None
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records.append(
                {
                    "step": int(record["step"]),
                    "loss": float(record["loss"]),
                    **{k: v for k, v in record.items() if k not in ("step", "loss")},
                }
            )
        except (ValueError, KeyError, TypeError):
            raise UserError(
                f"line {n} is not a metric record with step and loss",
                file=str(path),
                fix="metrics.jsonl is written by `ft train`; restore it from the run",
            ) from None
    return records


def load_run(run_dir: str | Path, label: str | None = None) -> Side:
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    # The report reads outputs (metrics.jsonl): each must be the file the run produced.
    check_outputs(run_dir, manifest, [n for n in READ_OUTPUTS if n in manifest["outputs"]])
    verification = _read_json(run_dir / "verification.json")
    current = verification is not None and verification.get("manifest_sha256") == sha256_file(
        run_dir / "manifest.json"
    )
    reproduce_md = run_dir / "REPRODUCE.md"
    return Side(
        label=label or f"`{run_dir}`",
        manifest=manifest,
        curve=read_curve(run_dir / "metrics.jsonl"),
        verification=verification,
        verification_current=current,
        reproduce_md=reproduce_md.read_text() if reproduce_md.is_file() else None,
    )


def load_release(registry, version: str) -> Side:
    """A published version, pulled (every hash checked) into a scratch directory and read."""
    with tempfile.TemporaryDirectory(prefix="ft-report-") as tmp:
        dest = Path(tmp) / version
        registry.pull(version, dest)
        return load_run(dest, label=version)


def resolve_baseline(
    spec: str | None, registry_uri: str | None, run_dir: Path
) -> tuple[Side | None, str]:
    """(the baseline, a sentence saying what it is). `spec` is a run dir, a version, or none.

    Without a spec: the latest release in the registry that is not this very run (after
    `ft publish`, the run is the latest release, and comparing it with itself says nothing).
    """
    from ...publish.registries import VERSION, open_registry, resolve_registry

    if spec is not None and spec.lower() == "none":
        return None, "none (`--baseline none`)"
    if spec is not None and not VERSION.fullmatch(spec):
        path = Path(spec)
        if not path.is_dir():
            raise UserError(
                f"{spec!r} is neither a run directory nor a release version",
                key="--baseline",
                fix="pass runs/<id>, a version such as v1.2.0, or none",
            )
        return load_run(path), f"run `{spec}`"
    uri = resolve_registry(registry_uri, read_manifest(run_dir)["config"])
    if spec is not None:
        return load_release(open_registry(uri), spec), f"release `{spec}` from `{uri}`"
    # The default baseline is a courtesy: a PR from a fork has no registry credentials, and
    # its report must still be written, saying why it compares with nothing.
    try:
        registry = open_registry(uri)
        versions = registry.versions()
    except Exception as e:  # whatever stops us reaching the registry means no baseline
        reason = e.problem if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        return None, (
            f"none: `{uri}` is not reachable here ({reason}); a run with registry access "
            "(merge, release) compares with the latest release"
        )
    own = sha256_file(Path(run_dir) / "manifest.json")
    for version in reversed(versions):
        if (registry.show(version).get("meta") or {}).get("manifest_sha256") != own:
            return load_release(registry, version), (
                f"release `{version}`, the latest in `{uri}` other than this run"
            )
    return None, f"none: `{uri}` holds no other published version yet"


def splits(m: dict) -> list[tuple[str, dict]]:
    """The data splits, train first."""
    return sorted(m["data"]["splits"].items(), key=lambda kv: (kv[0] != "train", kv[0]))
