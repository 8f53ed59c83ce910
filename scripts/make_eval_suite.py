"""Regenerate the embedded eval suite shipped in the generated repo (template maintainers only).

    python scripts/make_eval_suite.py

Writes {{cookiecutter.project_slug}}/data/suites/tasks.jsonl: prompt -> reference rows in the
embedded task format, each with a `segment` field, from a fixed seed, with words the
training set never uses (a held-out vocabulary), so the suite measures the skill, not recall:
- `lookup`: the last word of a short list (easy: one word, copied);
- `arithmetic`: two-number addition (the answer is not in the prompt);
- `hard`: reversing five words (a long, ordered output: the segment regressions show in first).
The output is committed; its sha256 is pinned under eval.suites in the generated configs.
"""

import json
import random
from pathlib import Path

OUT = (
    Path(__file__).resolve().parent.parent
    / "{{cookiecutter.project_slug}}"
    / "data"
    / "suites"
    / "tasks.jsonl"
)
WORDS = (  # noqa: SIM905 - not in scripts/make_dataset.py's vocabulary
    "amber basket copper dragon engine falcon glacier hammer island jungle lantern "
    "magnet nickel oyster parrot quartz ribbon shadow timber velvet walnut yellow"
).split()
ROWS_PER_SEGMENT = 8


def lookup(rng: random.Random) -> dict:
    words = rng.sample(WORDS, rng.randint(2, 4))
    return {"prompt": f"Last word of: {' '.join(words)}", "response": words[-1]}


def arithmetic(rng: random.Random) -> dict:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return {"prompt": f"Add {a} and {b}.", "response": str(a + b)}


def hard(rng: random.Random) -> dict:
    words = rng.sample(WORDS, 5)
    return {"prompt": f"Reverse the words: {' '.join(words)}", "response": " ".join(words[::-1])}


def main() -> None:
    rng = random.Random(15)
    rows = []
    for segment, make in (("lookup", lookup), ("arithmetic", arithmetic), ("hard", hard)):
        rows += [make(rng) | {"segment": segment} for _ in range(ROWS_PER_SEGMENT)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


if __name__ == "__main__":
    main()
