"""Data at scale: `ft data build` rows/s and peak RSS from 10k to 10M rows against `datasets`,
`ft train` start-up with a cold and a warm token store, and S3 (SeaweedFS) vs local reads.

Runs with a baked repo's interpreter, from anywhere:

    /tmp/bake/my-finetune/.venv/bin/python bench/data_scale.py --project /tmp/bake/my-finetune \
        --sizes 10000,100000,1000000,10000000

Writes bench/results/<date>-data-scale.json and the "Data at scale" section of
docs/benchmarks.md (the rest of that page is bench/run.py's). Sources are synthetic chat
rows (a user prompt, an assistant response; ~2% exact duplicates, ~1% with a TODO, ~1%
empty responses), written to a JSONL file by a generator (never held in memory; the file
is the pinned source), then:

- ft: `ft data build` over the shipped filter chain (5 filters incl. dedupe);
- datasets: `load_dataset("json")` then `map`/`filter` with the same five functions
  (dedupe as a `filter` over a set of 16-byte digests), then `to_json`; both in their own
  process, peak RSS from wait4.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_timed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
MARK = "<!-- bench/data_scale.py: the section below is rendered by it -->"

DATASETS_ARM = r'''
import hashlib, json, re, sys
import datasets
path, out, cache = sys.argv[1:4]
spaces = re.compile(r"\s+")
ds = datasets.load_dataset("json", data_files=path, split="train", cache_dir=cache)
ds = ds.map(lambda r: {k: spaces.sub(" ", v).strip() if isinstance(v, str) else v
                       for k, v in r.items()})
ds = ds.filter(lambda r: bool(r["prompt"]) and bool(r["response"]))
ds = ds.filter(lambda r: len(r["prompt"]) + len(r["response"]) <= 256)
ds = ds.filter(lambda r: "todo" not in (r["prompt"] + "\n" + r["response"]).lower())
seen = set()
def first(r):
    key = hashlib.blake2b(json.dumps([r["prompt"], r["response"]]).encode(),
                          digest_size=16).digest()
    if key in seen:
        return False
    seen.add(key)
    return True
ds = ds.filter(first)
ds.to_json(out)
print(len(ds))
'''


def generate(path: Path, n: int) -> str:
    """Write n synthetic chat rows; return the file's sha256 (computed as written)."""
    h = hashlib.sha256()
    words = ["amber", "falcon", "river", "stone", "cedar", "lumen", "quartz", "harbor"]
    with open(path, "wb") as f:
        block = []
        for i in range(n):
            j = i if i % 50 else i - 1  # ~2% exact duplicates of the previous row
            a, b = words[j % 8], words[(j // 8) % 8]
            prompt = f"  Reverse the words:  {a} {b} {j}\t"
            response = "" if i % 97 == 0 else (f"TODO {j}" if i % 89 == 0 else f"{j} {b} {a}")
            block.append(json.dumps({"prompt": prompt, "response": response}) + "\n")
            if len(block) == 10_000:
                data = "".join(block).encode()
                f.write(data)
                h.update(data)
                block = []
        data = "".join(block).encode()
        f.write(data)
        h.update(data)
    return h.hexdigest()


def row_sets(work: Path) -> list[str]:
    """The rows are prompt/response (the figures since the first run are over that format,
    while the recipe now ships chat rows): set the format, and an eval source in it."""
    ev = work / "eval-rows.jsonl"
    sha = generate(ev, 100)
    return ["data.row_format=prompt_response", f"data.sources.1.path={ev}",
            f"data.sources.1.sha256={sha}"]


def ft_build(project: Path, source: str, sha: str, work: Path, env: dict,
             extra: tuple[str, ...] = ()) -> dict:
    sets = [*row_sets(work.parent), f"data.sources.0.path={source}", f"data.sources.0.sha256={sha}",
            f"data.lock={work / 'data.lock'}", f"data.out_dir={work / 'build'}", *extra]
    cmd = [str(project / ".venv/bin/ft"), "data", "build"] + [a for s in sets for a in ("--set", s)]
    return run_timed(cmd, cwd=project, env=env)


def figure_build(project: Path, sizes: list[int], work: Path, env: dict,
                 datasets_max: int = 1_000_000, no_filters: bool = False) -> list[dict]:
    rows = []
    for n in sizes:
        src = work / f"rows-{n}.jsonl"
        t = time.perf_counter()
        sha = generate(src, n)
        gen_s = time.perf_counter() - t
        ft = ft_build(project, str(src), sha, work / f"ft-{n}", env)
        lock = json.loads((work / f"ft-{n}" / "data.lock").read_text())
        kept = lock["splits"]["train"]["rows"]
        entry = {"rows": n, "bytes": src.stat().st_size, "generate_s": round(gen_s, 1),
                 "ft": {"wall_s": round(ft["wall_s"], 2), "rows_per_s": round(n / ft["wall_s"]),
                        "maxrss_mb": round(ft["maxrss_mb"], 1), "kept": kept}}
        if no_filters:  # the flat part: the same rows with no filters (no dedupe set)
            bare = ft_build(project, str(src), sha, work / f"ft-nofilters-{n}", env,
                            ("data.filters=[]",))
            entry["ft_no_filters"] = {"wall_s": round(bare["wall_s"], 2),
                                      "rows_per_s": round(n / bare["wall_s"]),
                                      "maxrss_mb": round(bare["maxrss_mb"], 1)}
            shutil.rmtree(work / f"ft-nofilters-{n}" / "build", ignore_errors=True)
        if n <= datasets_max:  # datasets at 10M: its Arrow cache alone is several GB of disk
            cache = work / f"hf-cache-{n}"
            ds = run_timed([str(project / ".venv/bin/python"), "-c", DATASETS_ARM, str(src),
                            str(work / f"ds-{n}.jsonl"), str(cache)], cwd=work, env=env)
            entry["datasets"] = {"wall_s": round(ds["wall_s"], 2),
                                 "rows_per_s": round(n / ds["wall_s"]),
                                 "maxrss_mb": round(ds["maxrss_mb"], 1),
                                 "kept": int(ds["stdout"].split()[-1])}
            shutil.rmtree(cache, ignore_errors=True)
            (work / f"ds-{n}.jsonl").unlink(missing_ok=True)
        entry["measured_utc"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
        entry["load"] = round(os.getloadavg()[0], 1)
        print(json.dumps(entry), flush=True)
        rows.append(entry)
        if n > 1_000_000:
            src.unlink()
        shutil.rmtree(work / f"ft-{n}" / "build", ignore_errors=True)
    return rows


def figure_startup(project: Path, work: Path, env: dict, n: int) -> dict:
    """`ft train` for one step: cold (store built) and warm (store reused), n rows and 1k."""
    out = {}
    for rows in (1000, n):
        src = work / f"rows-{rows}.jsonl"
        sha = generate(src, rows)
        lock = work / f"start-{rows}.lock"
        sets = [*row_sets(work), f"data.sources.0.path={src}", f"data.sources.0.sha256={sha}",
                f"data.lock={lock}", f"data.out_dir={work / f'start-{rows}'}"]
        args = [a for s in sets for a in ("--set", s)]
        run_timed([str(project / ".venv/bin/ft"), "data", "build", "--config",
                   "configs/smoke.yaml", *args], cwd=project, env=env)
        for phase in ("cold", "warm"):
            run_dir = work / f"run-{rows}-{phase}"
            r = run_timed([str(project / ".venv/bin/ft"), "train", "--config",
                           "configs/smoke.yaml", *args, "--set", "train.max_steps=1",
                           "--out", str(run_dir)], cwd=project, env=env)
            out[f"{rows}-{phase}"] = {"wall_s": round(r["wall_s"], 2),
                                      "maxrss_mb": round(r["maxrss_mb"], 1)}
            shutil.rmtree(run_dir, ignore_errors=True)
            print(json.dumps({f"{rows}-{phase}": out[f"{rows}-{phase}"]}), flush=True)
    return out


def figure_s3(project: Path, work: Path, env: dict, n: int) -> dict:
    sys.path.insert(0, str(project / "tests"))
    from s3_server import BUCKET, _bucket_fs, seaweedfs

    src = work / f"rows-{n}.jsonl"
    sha = generate(src, n) if not src.exists() else hashlib.sha256(src.read_bytes()).hexdigest()
    size = src.stat().st_size
    out = {"rows": n, "bytes": size}
    server = work / "seaweedfs"
    shutil.rmtree(server, ignore_errors=True)
    server.mkdir()
    with seaweedfs(server) as s3env:
        fs = _bucket_fs(s3env)
        fs.put_file(str(src), f"{BUCKET}/bench/rows.jsonl")
        url = f"s3://{BUCKET}/bench/rows.jsonl"
        full = env | s3env
        for name, where in (("local", str(src)), ("s3", url)):
            read = run_timed([str(project / ".venv/bin/ft"), "data", "hash", where],
                             cwd=project, env=full)
            assert json.loads(read["stdout"])["sha256"] == sha
            build = ft_build(project, where, sha, work / f"s3-{name}", full)
            out[name] = {"hash_wall_s": round(read["wall_s"], 2),
                         "hash_mb_per_s": round(size / 1e6 / read["wall_s"], 1),
                         "build_wall_s": round(build["wall_s"], 2),
                         "build_rows_per_s": round(n / build["wall_s"])}
            print(json.dumps({name: out[name]}), flush=True)
    out["ratio_hash"] = round(out["s3"]["hash_mb_per_s"] / out["local"]["hash_mb_per_s"], 2)
    out["ratio_build"] = round(out["s3"]["build_rows_per_s"] / out["local"]["build_rows_per_s"], 2)
    return out


def render(res: dict) -> str:
    lines = [MARK, "", "## Data at scale (bench/data_scale.py)", "",
             f"- **Date**: {res['date']}; **commands**: "
             + "; ".join(f"`{c}`" for c in res.get("commands", [res["command"]])),
             f"- **Machine**: {res['machine']}. **Load**: other work shared these 2 cores "
             f"throughout (last command: load average {res['load'][0]:.1f} before, "
             f"{res['load'][1]:.1f} after; per row below): absolute rows/s are low and noisy; "
             "ratios within one size are the figures to read, and one repetition each was all "
             "the time allowed.",
             "- Rows: synthetic prompt/response rows (chat-shaped, ~60 bytes of text), the "
             "shipped 5-filter chain; datasets arm: same functions as `map`/`filter`.", ""]
    if "build" in res:
        lines += ["| rows | measured (UTC), load | source MB | ft rows/s | ft peak RSS MB | "
                  "ft, no filters: rows/s, peak RSS MB | datasets rows/s | "
                  "datasets peak RSS MB | ft/datasets throughput |", "| --- " * 9 + "|"]
        for e in res["build"]:
            ds, bare = e.get("datasets"), e.get("ft_no_filters")
            when = (f"{e['measured_utc'][11:]}, {e['load']}" if "measured_utc" in e
                    else "first run")
            same_run = ds and not ds.get("earlier")  # a ratio only of arms run side by side
            lines.append(
                f"| {e['rows']:,} | {when} | {e['bytes'] / 1e6:,.0f} | "
                f"{e['ft']['rows_per_s']:,} | {e['ft']['maxrss_mb']:,.0f} | "
                + (f"{bare['rows_per_s']:,}, {bare['maxrss_mb']:,.0f} | " if bare else "— | ")
                + (f"{ds['rows_per_s']:,} | {ds['maxrss_mb']:,.0f} | " if ds else
                   "not run | not run | ")
                + (f"{e['ft']['rows_per_s'] / ds['rows_per_s']:.2f}× |" if same_run else "— |"))
        lines += ["", "Peak RSS of the ft column includes the dedupe digest set (~100 bytes per "
                  "distinct row); the no-filters column is the same build without it.", ""]
    if "startup" in res:
        s = res["startup"]
        lines += ["`ft train` with `train.max_steps=1` (process start to exit: imports, data, "
                  "token store, one step, eval on the shipped 105 eval rows, save), smoke "
                  "config:", "", "| train rows | store | wall s | peak RSS MB |",
                  "| --- | --- | --- | --- |"]
        for k, v in s.items():
            rows, phase = k.split("-")
            lines.append(f"| {int(rows):,} | {phase} | {v['wall_s']} | {v['maxrss_mb']:,.0f} |")
        lines.append("")
    if "s3" in res:
        s = res["s3"]
        lines += [f"Reading a {s['bytes'] / 1e6:,.0f} MB JSONL object from SeaweedFS on "
                  "127.0.0.1 vs the same file on local disk (`ft data hash`: read + sha256; "
                  "`ft data build`: read + parse + filters + write):", "",
                  "| source | hash MB/s | build rows/s |", "| --- | --- | --- |",
                  f"| local | {s['local']['hash_mb_per_s']} | {s['local']['build_rows_per_s']:,} |",
                  f"| s3 | {s['s3']['hash_mb_per_s']} | {s['s3']['build_rows_per_s']:,} |",
                  f"| s3 / local | {s['ratio_hash']}× | {s['ratio_build']}× |", ""]
    lines += [f"- {note}" for note in res.get("notes", [])]
    return "\n".join(lines) + "\n"


def write_doc(res: dict) -> None:
    """Replace this script's section: from MARK to the next section's marker (or the end)."""
    text = DOC.read_text()
    head, _, rest = text.partition(MARK)
    tail = rest[rest.index("\n<!-- ") + 1 :] if "\n<!-- " in rest else ""
    DOC.write_text(head.rstrip("\n") + "\n\n" + render(res) + ("\n" + tail if tail else ""))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", type=Path, help="a baked repo with its .venv (required to measure)")
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--only", default="build,startup,s3")
    p.add_argument("--datasets-max", type=int, default=1_000_000,
                   help="largest size the datasets arm runs at (its Arrow cache costs disk)")
    p.add_argument("--no-filters", action="store_true",
                   help="also build each size with data.filters=[] (RSS without the dedupe set)")
    p.add_argument("--startup-rows", type=int, default=1_000_000)
    p.add_argument("--work", type=Path, default=Path("/tmp/ft-data-scale"))
    p.add_argument("--render", type=Path, help="re-render the docs section from a result file")
    args = p.parse_args()
    if args.render:
        write_doc(json.loads(args.render.read_text()))
        return 0
    if args.project is None:
        p.error("--project is required to measure")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                        "OMP_NUM_THREADS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    date = datetime.now(UTC).date().isoformat()
    path = ROOT / "bench" / "results" / f"{date}-data-scale.json"
    res = json.loads(path.read_text()) if path.is_file() else {}
    uname = os.uname()
    command = " ".join(["python", *sys.argv]).replace(str(ROOT) + "/", "")
    res["commands"] = [*res.get("commands", [])[-3:], command]
    res |= {"date": date, "command": command,
            "machine": f"{os.cpu_count()} CPUs, {uname.sysname} {uname.release}, "
                       f"Python {sys.version.split()[0]}"}
    load = os.getloadavg()[0]
    only = args.only.split(",")
    if "build" in only:
        fresh = figure_build(args.project, [int(x) for x in args.sizes.split(",")], work, env,
                             args.datasets_max, args.no_filters)
        old = {e["rows"]: e for e in res.get("build", [])}
        for e in fresh:  # an arm not measured now keeps its earlier figure, marked as such
            if "datasets" not in e and "datasets" in old.get(e["rows"], {}):
                e["datasets"] = old[e["rows"]]["datasets"] | {"earlier": True}
            old[e["rows"]] = e
        res["build"] = [old[n] for n in sorted(old)]
    if "startup" in only:
        res["startup"] = figure_startup(args.project, work, env, args.startup_rows)
    if "s3" in only:
        res["s3"] = figure_s3(args.project, work, env, args.startup_rows)
    res["load"] = [load, os.getloadavg()[0]]
    path.write_text(json.dumps(res, indent=1) + "\n")
    write_doc(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
