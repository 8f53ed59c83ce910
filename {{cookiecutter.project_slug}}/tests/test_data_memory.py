"""Bounded memory: `ft data build` streams 1M rows under a data-segment limit that a
pipeline holding the split (as the list-based one did) cannot stay under.

    uv run pytest tests/test_data_memory.py -q     # ~20-50 s: marked slow

The limit is the kernel's (RLIMIT_DATA: heap and anonymous mappings, so shared libraries do
not count), set in the child before it starts. Figures (rows/s, peak RSS from 10k to 10M
rows) are the template's bench/data_scale.py, not this test.
"""

import hashlib
import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROWS = 1_000_000
LIMIT_MB = 256  # streaming needs ~140 MB here (dedupe's digests included); holding ~520 MB


def _limit():
    limit = LIMIT_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _generate(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for start in range(0, ROWS, 20_000):
            block = "".join(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": f" Reverse the words:  w{i} x{i % 7} "},
                            {"role": "assistant", "content": f"x{i % 7} w{i}"},
                        ]
                    }
                )
                + "\n"
                for i in range(start, start + 20_000)
            ).encode()
            f.write(block)
            h.update(block)
    return h.hexdigest()


def _run(code: str, work: Path) -> subprocess.CompletedProcess:
    script = work / "build_under_limit.py"  # a file: data.lock hashes the filters' source
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        preexec_fn=_limit,
        timeout=600,
        cwd=work,
    )


BUILD = """
import sys
from {pkg}.config import load_config
from {pkg}.data import build, filters

def hold(rows):
    '''Hold the whole split in a list, as the list-based pipeline did.'''
    return list(rows)

filters.FILTERS["hold"] = filters.Filter("hold", "dataset", hold)
cfg = load_config("configs/recipe.yaml", [
    "data.filters=[{{name: {name}}}]",
    "data.sources.0.path=rows.jsonl",
    "data.sources.0.sha256={sha}",
])
lock = build.build(cfg)
print(lock["splits"]["train"]["rows"])
"""


def test_a_million_rows_stream_under_a_limit_that_holding_them_exceeds(pkg, data_workdir):
    sha = _generate(data_workdir / "rows.jsonl")
    streamed = _run(BUILD.format(pkg=pkg.__name__, name="dedupe", sha=sha), data_workdir)
    assert streamed.returncode == 0, streamed.stderr[-2000:]
    assert streamed.stdout.split()[-1] == str(ROWS)
    lock = json.loads(Path("data.lock").read_text())
    assert lock["sources"][0]["rows"] == ROWS
    train = Path("data/build/train.jsonl")
    assert hashlib.sha256(train.read_bytes()).hexdigest() == lock["splits"]["train"]["sha256"]
    held = _run(BUILD.format(pkg=pkg.__name__, name="hold", sha=sha), data_workdir)
    assert held.returncode != 0 and "MemoryError" in held.stderr
