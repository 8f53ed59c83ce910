"""What `ft publish` trusts of a reproduction: the verdict, recomputed from hashes.

`read_verification` reads the record `ft reproduce` wrote (RUN_DIR/verification.json, staged
so that what is checked is what gets pushed); `check_verdict` never trusts its `passed` or
`equal`: it re-hashes the reproduction the record names and compares every output again
(docs/decisions/0015). Both raise a UserError naming the file and the fix.
"""

import json
from pathlib import Path

from ..closure.compare import record_path
from ..closure.manifest import output_files
from ..closure.segments import chain_entry, intervals
from ..errors import UserError
from ..util.hashing import copy_hashing
from ..util.records import read_json


def read_verification(run_dir: Path, staging: Path) -> dict:
    """The record `ft reproduce` wrote (staged); it must say the reproduction passed."""
    path = record_path(
        run_dir,
        missing="this run was never reproduced",
        fix=f"run `ft reproduce {run_dir}` first; publish needs it to pass",
    )
    copy_hashing(path, staging / path.name)
    try:
        record = json.loads((staging / path.name).read_text())
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise UserError(
            "verification.json is not a record written by `ft reproduce`",
            file=str(path),
            fix=f"run `ft reproduce {run_dir}` again",
        )
    if record.get("passed") is not True:
        raise UserError(
            f"`ft reproduce` did not pass: {record.get('reason')}",
            file=str(path),
            fix=f"fix the cause, run `ft reproduce {run_dir}` until it passes, then publish",
        )
    check_complete(record, str(path))  # a drill's K-of-N sample passes, but verifies nothing
    if (
        not isinstance(record.get("compared"), list)
        or not record.get("manifest_sha256")
        or not record.get("reproduce_md_sha256")
    ):
        raise UserError(
            "verification.json lacks the compared hashes",
            file=str(path),
            fix=f"run `ft reproduce {run_dir}` again with this version of ft",
        )
    return record


# The inputs a reproduction must share with the run it reproduces (outputs are compared apart).
PINS = ("seed", "config_sha256", "data", "base_model", "git")


def check_verdict(run_dir: Path, manifest: dict, record: dict) -> None:
    """Recompute the verdict from hashes; `passed`/`equal` in the record are never trusted.

    The record must belong to this run (its run id and manifest hash) and name the
    reproduction it saw (RUN_DIR/reproduce/manifest.json by sha256; for a segments
    verification, the last interval's manifest under reproduce/segments/). That reproduction's
    files must hash as its own manifest says, its pins must be this run's, and every
    output must compare equal again, here, from those hashes (or, in tolerance mode,
    from the files within the declared bounds).
    """
    from ..closure.compare import compare
    from ..util.hashing import sha256_file

    where = str(run_dir / "verification.json")
    again = f"run `ft reproduce {run_dir}` again"
    if record.get("run_id") != manifest["run_id"]:
        raise UserError(
            f"the record is for run {record.get('run_id')!r}, not {manifest['run_id']!r}",
            file=where,
            fix=again,
        )
    # A full replay leaves its outputs in reproduce/; a segments verification (complete:
    # check_record ran first) in its last interval's folder. The place follows from the
    # strategy and the manifest's chain, never from a path in the record.
    repro_dir = run_dir / "reproduce"
    if record.get("strategy") == "segments":
        from ..closure.segments import reproduction_dir

        repro_dir = reproduction_dir(run_dir, manifest)
    repro_manifest = repro_dir / "manifest.json"
    want = record.get("reproduction_manifest_sha256")
    if not isinstance(want, str) or not repro_manifest.is_file():
        raise UserError(
            "no reproduction to check the record against (reproduce/manifest.json and its "
            "sha256 in the record are both needed)",
            file=where,
            fix=f"{again}; keep RUN_DIR/reproduce/ until the run is published",
        )
    if sha256_file(repro_manifest) != want:
        raise UserError(
            "reproduce/manifest.json is not the reproduction this record was written for",
            file=str(repro_manifest),
            fix=again,
        )
    fresh = read_json(repro_manifest)
    for key in PINS:
        if fresh.get(key) != manifest.get(key):
            raise UserError(
                f"the reproduction was made from other inputs than the run ({key} differs)",
                file=str(repro_manifest),
                fix=again,
            )
    actual = output_files(repro_dir)
    for name in sorted(set(fresh.get("outputs") or {}) | set(actual)):
        if (fresh.get("outputs") or {}).get(name) != actual.get(name):
            raise UserError(
                f"{name} of the reproduction does not match its manifest",
                file=str(repro_dir / name),
                fix=again,
            )
    recomputed = {c["file"]: c for c in compare(run_dir, repro_dir, manifest)}
    claimed = {c.get("file"): c for c in record.get("compared") or [] if isinstance(c, dict)}
    for name, entry in sorted(recomputed.items()):
        if not entry["equal"]:
            raise UserError(
                f"{name} was not reproduced: sha256 {str(entry['actual'])[:16]} in the "
                f"reproduction, {str(entry['expected'])[:16]} in manifest.json",
                file=str(run_dir / name),
                fix=again + " and make it pass",
            )
        said = claimed.get(name, {})
        if (said.get("expected"), said.get("actual")) != (entry["expected"], entry["actual"]):
            raise UserError(
                f"the record's hashes for {name} are not the ones recomputed from the reproduction",
                file=where,
                fix=again,
            )
    if claimed.keys() != recomputed.keys():
        raise UserError(
            "the record compared other files than the reproduction holds",
            file=where,
            fix=again,
        )


def check_complete(record: dict, where: str) -> None:
    """A segments record that replayed a sample is a drill's spot check, never a release's
    verification (UserError)."""
    seg = record.get("segments")
    if record.get("strategy") == "segments" and not (isinstance(seg, dict) and seg.get("complete")):
        replayed = len(seg.get("replayed") or []) if isinstance(seg, dict) else 0
        total = seg.get("intervals") if isinstance(seg, dict) else "?"
        raise UserError(
            f"the verification replayed {replayed} of {total} checkpoint intervals: "
            "a spot check, not a verification",
            file=where,
            fix="run `ft reproduce RUN --segments all` (or a full replay) before publishing",
        )


def check_record(record: dict, manifest: dict, where: str) -> None:
    """A segments verification must cover every interval of this manifest's chain, and
    every recorded hash must equal the manifest's and the replayed one (UserError if not).
    The outputs of the last interval are `record["compared"]`, checked as for a full replay."""
    if record.get("strategy") != "segments":
        return
    fix = "run `ft reproduce RUN --segments all` (or a full replay) again"
    found = intervals(manifest)
    seg = record.get("segments") or {}
    entries = {e.get("index"): e for e in record.get("intervals") or []}
    if not found or sorted(entries) != [iv.index for iv in found] or not seg.get("complete"):
        raise UserError(
            f"the verification replayed {len(entries)} of {len(found)} checkpoint intervals: "
            "a spot check, not a verification",
            file=where,
            fix=fix,
        )
    for iv in found:
        e = entries[iv.index]
        pairs = [(e.get("start"), chain_entry(manifest, iv.start)["sha256"])]
        if not iv.last:
            pairs.append((e.get("end"), chain_entry(manifest, iv.stop)["sha256"]))
        for side, recorded in pairs:
            if (
                not isinstance(side, dict)
                or side.get("expected") != recorded
                or side.get("actual") != recorded
            ):
                raise UserError(
                    f"{iv.name}: the verification's checkpoint hashes do not match "
                    "manifest.json's chain",
                    file=where,
                    fix=fix,
                )
        if e.get("steps") != [iv.start, iv.stop] or e.get("exit_code") != 0:
            raise UserError(f"{iv.name} did not replay cleanly", file=where, fix=fix)
