"""Regenerate the embedded dataset shipped in the generated repo (template maintainers only).

    python scripts/make_dataset.py

Writes {{cookiecutter.project_slug}}/data/raw/{train,eval}.jsonl: short instruction ->
answer rows over six string and arithmetic tasks, from a fixed seed, with a few
deliberately messy rows (extra white space, empty answers, duplicates, over-long
rows, placeholder text) so that every default filter has something to remove.
The output is committed; its sha256 is pinned in the generated configs.
"""

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "{{cookiecutter.project_slug}}" / "data" / "raw"
WORDS = (  # noqa: SIM905
    "apple river stone cloud tiger lemon piano rocket garden window silver orange "
    "forest candle bridge pepper marble violet thunder planet button castle meadow "
    "harbor jacket kettle ladder mirror needle pillow rabbit saddle tunnel wallet"
).split()


def task(rng: random.Random) -> dict:
    words = rng.sample(WORDS, rng.randint(2, 5))
    kind = rng.randrange(6)
    if kind == 0:
        return {
            "prompt": f"Reverse the words: {' '.join(words)}",
            "response": " ".join(words[::-1]),
        }
    if kind == 1:
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        return {"prompt": f"Add {a} and {b}.", "response": str(a + b)}
    if kind == 2:
        return {"prompt": f"Uppercase: {' '.join(words)}", "response": " ".join(words).upper()}
    if kind == 3:
        w = words[0]
        return {"prompt": f"Sort the letters of {w}.", "response": "".join(sorted(w))}
    if kind == 4:
        return {"prompt": f"Count the words: {' '.join(words)}", "response": str(len(words))}
    return {"prompt": f"Last word of: {' '.join(words)}", "response": words[-1]}


def mess(rng: random.Random, row: dict, rows: list[dict]) -> dict:
    roll = rng.random()
    if roll < 0.04:
        return {"prompt": f"  {row['prompt']}   ", "response": f"{row['response']}\n"}
    if roll < 0.06:
        return {"prompt": row["prompt"], "response": ""}
    if roll < 0.10 and rows:
        return dict(rng.choice(rows))
    if roll < 0.12:
        return {
            "prompt": row["prompt"] + " " + " ".join(rng.choices(WORDS, k=120)),
            "response": row["response"],
        }
    if roll < 0.13:
        return {"prompt": row["prompt"], "response": "TODO fill in"}
    return row


def split(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    rows: list[dict] = []
    for _ in range(n):
        rows.append(mess(rng, task(rng), rows))
    return rows


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, seed, n in (("train", 1, 1200), ("eval", 2, 120)):
        with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in split(seed, n))


if __name__ == "__main__":
    main()
