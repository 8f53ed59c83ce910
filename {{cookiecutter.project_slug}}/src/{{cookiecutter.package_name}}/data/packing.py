"""Sequence packing (`data.packing: true`): consecutive examples share one training row.

    uv run ft train --config configs/smoke.yaml --set data.packing=true

Examples are packed in dataset order, next-fit: a row takes the next example while it fits
in max_seq_len tokens, else a new row starts (an example is never split; each is already
cut to max_seq_len). The rows are a pure function of the examples, so the sampler draws
row indices from (seed, step) exactly as it draws examples, and a resume continues the
same order. Nothing is stored: packing is a view over the token store (or the in-memory
examples), computed from their lengths when the run starts.

Each packed row carries `position_ids` restarting at 0 for every example. The loss passes
them instead of an attention mask, and transformers then builds a block-diagonal causal
mask (or calls flash-attention's variable-length kernel), so no token attends across
examples. The first token of each example is never a target: the last token of the one
before it does not learn to predict it. A packed row's loss is therefore the sum of its
examples' losses alone, up to float rounding (tests/test_compute.py checks it).
"""

import numpy as np

from .loader import IGNORE_INDEX


def lengths(examples) -> np.ndarray:
    """Token count of every example; from the store's offsets without reading tokens."""
    offsets = getattr(examples, "offsets", None)
    if offsets is not None:
        return np.diff(np.asarray(offsets, dtype=np.int64))
    return np.fromiter((len(e["input_ids"]) for e in examples), dtype=np.int64)


def row_starts(sizes: np.ndarray, max_len: int) -> np.ndarray:
    """Index of the first example of every row, then len(sizes): next-fit, in order."""
    starts, used = [0] if len(sizes) else [], 0
    for i, n in enumerate(sizes.tolist()):
        if used and used + n > max_len:
            starts.append(i)
            used = 0
        used += n
    return np.asarray([*starts, len(sizes)], dtype=np.int64)


class Packed:
    """Examples as packed rows: row i -> {input_ids, labels, position_ids}."""

    def __init__(self, examples, max_len: int):
        self.examples = examples
        self.starts = row_starts(lengths(examples), max_len)

    def __len__(self) -> int:
        return max(0, len(self.starts) - 1)

    def __getitem__(self, index: int) -> dict:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for j in range(int(self.starts[index]), int(self.starts[index + 1])):
            example = self.examples[j]
            ids += example["input_ids"]
            labels += [IGNORE_INDEX, *example["labels"][1:]]
            positions += range(len(example["input_ids"]))
        return {"input_ids": ids, "labels": labels, "position_ids": positions}
