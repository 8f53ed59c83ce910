"""`ft history` over three releases in a local registry, rendered by headless Chromium;
`ft report` against a release pulled from that registry.

    bash scripts/install-chromium.sh     # once: the browser tests skip without it
    uv run pytest tests/test_history.py -q

The releases are three real smoke runs (tests/report_runs.py): `base`, `variant` (one
filter tightened) and `lr` (another learning rate). They enter the registry through the
registry's own `publish` API, NOT through `ft publish`: these tests render releases,
and `ft reproduce` (which `ft publish` requires) would retrain each run once more; the
gate itself is tested in tests/test_publish.py. So the records the page shows are
written here by hand and say so: v0.1.0 carries a passing verification.json and v0.2.0 a
failing one, both with `"synthetic_for_test": true`; v0.3.0 none.
"""

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest
import report_runs

# Trains real runs in `ft` processes: not part of the quick suite (`-m "not slow"`).
pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
VERSIONS = ("v0.1.0", "v0.2.0", "v0.3.0")
PNG = b"\x89PNG\r\n\x1a\n"
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is absent: run scripts/install-chromium.sh (Debian packages "
    "chromium and chromium-driver)",
)


@pytest.fixture(scope="session")
def runs(tmp_path_factory, tiny_base) -> dict[str, Path]:
    return report_runs.runs(tmp_path_factory, tiny_base, "base", "variant", "lr")


def _sha256(path: Path) -> str:
    return report_runs.mod("util.hashing").sha256_file(path)


@pytest.fixture(scope="module")
def registry(runs, tmp_path_factory) -> str:
    """Three releases published through the registry API (see the module docstring)."""
    uri = (tmp_path_factory.mktemp("registry") / "registry").as_uri()
    reg = report_runs.mod("publish.registries").open_registry(uri)
    scratch = tmp_path_factory.mktemp("records")
    for version, name in zip(VERSIONS, ("base", "variant", "lr"), strict=True):
        run = runs[name]
        manifest = json.loads((run / "manifest.json").read_text())
        files = {n: run / n for n in manifest["outputs"]}
        files |= {n: run / n for n in ("manifest.json", "REPRODUCE.md")}
        if version in ("v0.1.0", "v0.2.0"):
            passed = version == "v0.1.0"
            record = {
                "synthetic_for_test": True,
                "passed": passed,
                "mode": "exact",
                "reason": None if passed else "adapter bytes differ",
                "finished_at": "2026-01-01T00:00:00+00:00",
                "manifest_sha256": _sha256(run / "manifest.json"),
                "reproduce_md_sha256": _sha256(run / "REPRODUCE.md"),
                "compared": [
                    {"file": n, "expected": h, "actual": h, "equal": passed}
                    for n, h in sorted(manifest["outputs"].items())
                ],
            }
            files["verification.json"] = scratch / version / "verification.json"
            files["verification.json"].parent.mkdir()
            files["verification.json"].write_text(json.dumps(record))
        meta = {"run_id": manifest["run_id"], "manifest_sha256": _sha256(run / "manifest.json")}
        reg.publish(version, files, meta)
    assert reg.versions() == list(VERSIONS)
    return uri


@pytest.fixture(scope="module")
def site(runs, registry, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    with report_runs.in_project(runs["base"].parents[1]):
        assert (
            report_runs.mod("cli").main(["history", "--registry", registry, "--out", str(out)]) == 0
        )
    return out


def test_history_files_are_self_contained(runs, site):
    assert sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()) == [
        "index.html",
        *[f"reproduce/{v}.md" for v in VERSIONS],
    ]
    for version, name in zip(VERSIONS, ("base", "variant", "lr"), strict=True):
        assert (site / "reproduce" / f"{version}.md").read_bytes() == (
            runs[name] / "REPRODUCE.md"
        ).read_bytes()
    page = (site / "index.html").read_text()
    # Nothing is fetched at view time: every src is a data: URI, every href stays here.
    sources = re.findall(r'\ssrc="([^"]*)"', page)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    for src in sources:
        png = base64.b64decode(src.removeprefix("data:image/png;base64,"))
        assert png[:8] == PNG and len(png) > 5000
    hrefs = re.findall(r'\shref="([^"]*)"', page)
    assert sorted(hrefs) == sorted(f"reproduce/{v}.md" for v in VERSIONS)
    assert "<script" not in page and "<link" not in page and "@import" not in page


def test_history_rows_show_pins_and_status(runs, site):
    page = (site / "index.html").read_text()
    rows = {v: row for row in page.split("<tr>") for v in VERSIONS if f'id="{v}"' in row}
    assert set(rows) == set(VERSIONS)
    for version, name in zip(VERSIONS, ("base", "variant", "lr"), strict=True):
        manifest = json.loads((runs[name] / "manifest.json").read_text())
        row = rows[version]
        assert manifest["git"]["commit"][:12] in row
        assert manifest["data"]["splits"]["train"]["sha256"][:12] in row
        assert manifest["environment"]["uv_lock_sha256"][:12] in row
        assert report_runs.mod("review.report.format").fmt(manifest["metrics"]["eval_loss"]) in row
    assert '<span class="badge pass">passed</span>' in rows["v0.1.0"]  # its verification
    assert '<span class="badge fail">failed</span>' in rows["v0.2.0"]  # its verification
    assert "adapter bytes differ" in rows["v0.2.0"]
    assert rows["v0.3.0"].count('class="badge none"') == 1  # no record
    assert "drill" not in page  # the drill reports in its issue (ADR 0023)
    # Newest first.
    assert page.index('id="v0.3.0"') < page.index('id="v0.2.0"') < page.index('id="v0.1.0"')


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_chromium
def test_history_renders_in_headless_chromium(site, tmp_path):
    url = (site / "index.html").as_uri()
    shot = tmp_path / "history.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900", url)
    assert shot.is_file(), done.stderr[-2000:]
    import matplotlib.image

    assert shot.read_bytes()[:8] == PNG
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (900, 1200)
    colours = {tuple(p) for p in pixels.reshape(-1, pixels.shape[2])[::53].tolist()}
    assert len(colours) > 50, "the screenshot is (nearly) blank"

    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for version in VERSIONS:
        assert f'id="{version}"' in dom.stdout and f"reproduce/{version}.md" in dom.stdout
    assert dom.stdout.count("data:image/png;base64,") == 2


def test_report_against_a_release_from_the_registry(runs, registry, tmp_path, ft, monkeypatch):
    """A version baseline is pulled (hash-checked); its published metrics.jsonl is overlaid."""
    monkeypatch.chdir(runs["base"].parents[1])
    out = tmp_path / "vs-release"
    result = ft(
        "report", "runs/variant", "--baseline", "v0.1.0", "--registry", registry, "--out", out
    )
    assert result.code == 0, result.err
    md = (out / "report.md").read_text()
    assert f"Baseline: release `v0.1.0` from `{registry}`." in md
    assert "| baseline v0.1.0 | `" in md  # the release's own loss curve, as a sparkline
    assert "| `data.filters.2.params.limit` | `256` | `64` |" in md
    assert "- baseline: ✅ passed (exact mode)" in md


def test_default_baseline_is_the_latest_other_release(runs, registry, tmp_path, ft, monkeypatch):
    monkeypatch.chdir(runs["base"].parents[1])
    for run, expected in (("runs/variant", "v0.3.0"), ("runs/lr", "v0.2.0")):
        out = tmp_path / Path(run).name
        result = ft("report", run, "--registry", registry, "--out", out)
        assert result.code == 0, result.err
        md = (out / "report.md").read_text()
        # runs/lr is v0.3.0 itself: comparing it with itself would say nothing.
        assert (
            f"Baseline: release `{expected}`, the latest in `{registry}` other than this run." in md
        )


def test_history_of_an_empty_registry_and_a_foreign_out(runs, tmp_path, ft, monkeypatch):
    monkeypatch.chdir(runs["base"].parents[1])
    out = tmp_path / "empty-site"
    result = ft("history", "--registry", (tmp_path / "none").as_uri(), "--out", out)
    assert result.code == 0, result.err
    assert "No published version yet" in (out / "index.html").read_text()
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "keep.md").write_text("keep")
    ft("history", "--registry", (tmp_path / "none").as_uri(), "--out", foreign).user_error(
        str(foreign), "--out"
    )
    assert (foreign / "keep.md").read_text() == "keep"
