"""`ft migrate` on the two embedded bases (tiny and tiny-v2, built here by code): the drift
report names the rows that cross the context window, and its counts match a recount done
here independently, with the `tokenizers` library straight from each tokenizer.json.

    uv run pytest -q tests/test_migrate.py
"""

import json
import re
from pathlib import Path

import pytest

# The recipe with a 64-token window: some embedded rows then cross it between the two
# tokenizers. The recipe's own window holds every row.
DRIFT = "configs/drift.yaml"


@pytest.fixture(scope="module")
def tiny_v2(tmp_path_factory, pkg) -> tuple[Path, str]:
    from importlib import import_module

    out = tmp_path_factory.mktemp("tiny-v2") / "tiny-llama-v2"
    digest = import_module(f"{pkg.__name__}.model.tiny").init_tiny(out, "tiny-v2")
    return out, digest


@pytest.fixture
def migrating(workdir, tiny_v2, ft):
    import shutil

    shutil.copytree(tiny_v2[0], workdir / "base" / "tiny-llama-v2")
    text = Path("configs/recipe.yaml").read_text()
    text = re.sub(r"(?m)^  max_seq_len: \d+", "  max_seq_len: 64", text)
    # On the embedded tiny base whatever base the bake chose (a hub bake's recipe names a
    # hub model, which the offline suite cannot load): smoke.yaml's base block, verbatim.
    block = re.compile(r"(?m)^  base:\n(?:    .*\n)+")
    smoke = block.search(Path("configs/smoke.yaml").read_text())
    assert smoke is not None
    text = block.sub(smoke[0], text, count=1)
    Path(DRIFT).write_text(text)
    assert ft("data", "build", "--config", DRIFT).code == 0  # writes data/build/*.jsonl
    return workdir


def _count(base: Path, chat: bool):
    """Tokens per row as training encodes it: the chat template's rendering of the row's
    messages (a suite row is one user and one assistant turn), or BOS, prompt + newline,
    response, EOS. Counted with `tokenizers` straight from tokenizer.json."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tok = Tokenizer.from_file(str(base / "tokenizer.json"))
    template = AutoTokenizer.from_pretrained(base)

    def count(row: dict) -> int:
        if chat:
            messages = row.get("messages") or [
                {"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row["response"]},
            ]
            text = template.apply_chat_template(messages, tokenize=False)
            return len(tok.encode(text, add_special_tokens=False).ids)
        prompt = tok.encode(row["prompt"] + "\n", add_special_tokens=False).ids
        response = tok.encode(row["response"], add_special_tokens=False).ids
        return 1 + len(prompt) + len(response) + 1

    return count


def _rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_drift_report_counts_match_an_independent_recount(migrating, tiny_v2, ft):
    import yaml

    chat = yaml.safe_load(Path(DRIFT).read_text())["data"].get("row_format") == "chat"
    before = _count(migrating / "base" / "tiny-llama", chat)
    after = _count(migrating / "base" / "tiny-llama-v2", chat)
    sets = {
        "split train": _rows("data/build/train.jsonl"),
        "split eval": _rows("data/build/eval.jsonl"),
        "suite tasks": _rows("data/suites/tasks.jsonl"),
    }
    result = ft(
        "migrate", "--config", DRIFT, "--path", "base/tiny-llama-v2",
        "--sha256", tiny_v2[1], "--build", "tiny-v2",
    )  # fmt: skip
    assert result.code == 0, result.err
    report = Path("migration.md").read_text()
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in report.splitlines()]
    table = {c[0]: c[1:] for c in cells if len(c) == 7 and c[0].startswith(("split", "suite"))}
    named = re.findall(r"(?m)^\| (split \w+|suite \w+) \| (\d+) \| (\d+) → (\d+) \| now", report)
    total_crossing = 0
    for name, rows in sets.items():
        a = [before(r) for r in rows]
        b = [after(r) for r in rows]
        over = f"{sum(n > 64 for n in a)} → {sum(n > 64 for n in b)}"
        now_over = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x <= 64 < y]
        now_fit = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if y <= 64 < x]
        lost = f"{sum(max(0, n - 64) for n in a)} → {sum(max(0, n - 64) for n in b)}"
        count, over_col, over_n, fit_n, lost_col, _ = table[name]
        assert (int(count), over_col, int(over_n), int(fit_n), lost_col) == (
            len(rows), over, len(now_over), len(now_fit), lost,
        ), name  # fmt: skip
        changes = sorted(y - x for x, y in zip(a, b, strict=True))
        assert table[name][5].startswith(f"{changes[0]:+d} / "), name
        assert table[name][5].split(" (")[0].endswith(f" / {changes[-1]:+d}"), name
        total_crossing += len(now_over) + len(now_fit)
        for row_name, i, x, y in named:  # each named row: its index and both counts
            if row_name == name:
                assert (int(x), int(y)) == (a[int(i)], b[int(i)])
                assert int(i) in now_over + now_fit
    assert total_crossing > 0, "the two bases must move some embedded row across the window"
    assert len(named) == min(25, total_crossing)
    assert f"{total_crossing} row(s) cross the 64-token window" in result.out
    # The parameter count and vocabulary change are reported; special tokens are the same.
    assert "Parameters: 139,584 → " in report and "vocab_size 512 → 300" in report
    assert re.search(r"\| special tokens \| .* \| same \|", report)


def test_the_config_is_edited_to_the_new_base_and_still_validates(migrating, tiny_v2, ft, pkg):
    old_text = Path(DRIFT).read_text()
    args = ["--path", "base/tiny-llama-v2", "--sha256", tiny_v2[1], "--build", "tiny-v2"]
    assert ft("migrate", "--config", DRIFT, *args).code == 0
    cfg = pkg.config.load_config(DRIFT)
    base = cfg.model.base
    assert (base.path, base.sha256, base.build) == ("base/tiny-llama-v2", tiny_v2[1], "tiny-v2")
    # Only the base block moved: every other line (and its comment) is as it was.
    new_text = Path(DRIFT).read_text()
    drop = re.compile(r"(?m)^    (path|sha256|build):.*\n")
    assert drop.sub("", new_text) == drop.sub("", old_text)
    # Migrating again to the same base is refused; so is a wrong hash, naming the flag.
    ft("migrate", "--config", DRIFT, *args).user_error(DRIFT, "model.base", "already")
    bad = ["--path", "base/tiny-llama-v2", "--sha256", "0" * 64]
    ft("migrate", "--config", DRIFT, *bad).user_error("--path", "content hash")


def test_migrate_needs_a_pinned_new_base(data_workdir, ft):
    ft("migrate", "--hub-id", "org/model", "--revision", "main").user_error("--revision", "40-hex")
    ft("migrate", "--path", "base/x").user_error("sha256")
    ft("migrate").user_error("--hub-id")


def test_plan_of_a_base_change_carries_the_drift_section(migrating, tiny_v2, ft):
    import shutil
    import subprocess

    from conftest import ROOT

    (migrating / ".github" / "workflows").mkdir(parents=True)
    shutil.copy2(ROOT / ".github" / "workflows" / "train.yml", migrating / ".github" / "workflows")
    Path(".gitignore").write_text("base/\ndata/build/\nmigration.md\n")

    def git(*args: str) -> None:
        ident = ["-c", "user.name=t", "-c", "user.email=t@localhost"]
        subprocess.run(["git", *ident, *args], check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "on the tiny base")
    args = ["--path", "base/tiny-llama-v2", "--sha256", tiny_v2[1], "--build", "tiny-v2"]
    assert ft("migrate", "--config", DRIFT, *args).code == 0
    plan = ft("plan", "--base", "main", "--config", DRIFT)
    assert plan.code == 0, plan.err
    assert f"### Base model change in `{DRIFT}`" in plan.out
    section = plan.out.split("### Base model change")[1]
    report = Path("migration.md").read_text()
    table = report.split("## Tokenizer drift")[1].split("## Tokenizer\n")[0]
    # The same drift, recomputed by the plan (it does not read migration.md).
    assert table.strip() in section
    assert "#### Model" in section and "vocab_size 512 → 300" in section
