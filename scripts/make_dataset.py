"""Regenerate the embedded dataset shipped in the generated repo (template maintainers only).

    python scripts/make_dataset.py

Writes {{cookiecutter.project_slug}}/data/raw/:
- {train,eval}.jsonl: prompt/response rows, short instruction -> answer over six
  string and arithmetic tasks;
- chat-{train,eval}.jsonl: the chat split the default recipe trains on, rows of
  `messages` (an optional system turn, then one to three user/assistant exchanges
  over the same tasks).
Each file comes from a fixed seed, with a few deliberately messy rows (extra white
space, empty answers, duplicates, over-long rows, placeholder text) so that every
default filter has something to remove. The output is committed; its sha256 is
pinned in the generated configs. The prompt/response files are unchanged by the
chat split: their generators and seeds come first and are left as they were.
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


SYSTEMS = (
    "You are a careful assistant. Answer with the result only.",
    "Answer tersely.",
)


def conversation(rng: random.Random) -> dict:
    """An optional system turn, then one to three user/assistant exchanges."""
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    for _ in range(rng.randint(1, 3)):
        row = task(rng)
        messages.append({"role": "user", "content": row["prompt"]})
        messages.append({"role": "assistant", "content": row["response"]})
    return {"messages": messages}


def mess_chat(rng: random.Random, row: dict, rows: list[dict]) -> dict:
    """The chat counterpart of `mess`: the same kinds of defects, in the last turn."""
    roll = rng.random()
    messages = [dict(m) for m in row["messages"]]
    last = messages[-1]
    if roll < 0.04:
        last["content"] = f"  {last['content']}\n"
        messages[-2]["content"] = f"{messages[-2]['content']}   "
    elif roll < 0.06:
        last["content"] = ""
    elif roll < 0.10 and rows:
        return json.loads(json.dumps(rng.choice(rows)))
    elif roll < 0.12:
        messages[-2]["content"] += " " + " ".join(rng.choices(WORDS, k=120))
    elif roll < 0.13:
        last["content"] = "TODO fill in"
    else:
        return row
    return {"messages": messages}


def chat_split(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    rows: list[dict] = []
    for _ in range(n):
        rows.append(mess_chat(rng, conversation(rng), rows))
    return rows


def write(name: str, rows: list[dict]) -> None:
    with open(OUT / f"{name}.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, seed, n in (("train", 1, 1200), ("eval", 2, 120)):
        write(name, split(seed, n))
    for name, seed, n in (("chat-train", 3, 1200), ("chat-eval", 4, 120)):
        write(name, chat_split(seed, n))


if __name__ == "__main__":
    main()
