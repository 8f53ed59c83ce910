"""Rows -> token tensors -> batches, in an order fixed by the seed alone.

The order of examples is a stream of seeded permutations (one per epoch), cut
into micro-batches of `train.batch_size` rows; each process takes its slice of
every micro-batch. The order is computed in the main process, so it does not
depend on `num_workers`, and it is a pure function of (seed, step), so a resume
continues exactly where the checkpoint left off.
"""

from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..train.determinism import derive, worker_init

IGNORE_INDEX = -100


def encode_rows(cfg, rows: list[dict], tokenizer) -> list[dict]:
    """Token ids and labels for rows of `cfg.data.row_format` (chat: data/chat.py)."""
    if cfg.data.row_format == "chat":
        from .chat import encode_chat

        return encode_chat(rows, tokenizer, cfg.data.max_seq_len, cfg.data.loss_on, cfg._path)
    return encode(rows, tokenizer, cfg.data.max_seq_len)


def encode(rows: list[dict], tokenizer, max_len: int) -> list[dict]:
    """Prompt/response rows: prompt tokens are context (label -100); response and EOS learned."""
    out = []
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for row in rows:
        prompt = bos + tokenizer(row["prompt"] + "\n", add_special_tokens=False)["input_ids"]
        answer = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
        answer = answer + [tokenizer.eos_token_id]
        ids = (prompt + answer)[:max_len]
        labels = ([IGNORE_INDEX] * len(prompt) + answer)[:max_len]
        out.append({"input_ids": ids, "labels": labels})
    return out


class Collate:
    """Right-pad a list of examples into tensors (a class, so workers can pickle it)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, examples: list[dict]) -> dict:
        width = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[i, :n] = torch.tensor(e["input_ids"])
            labels[i, :n] = torch.tensor(e["labels"])
            mask[i, :n] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if "position_ids" in examples[0]:  # packed rows (data/packing.py); padding: its own run
            positions = torch.zeros((len(examples), width), dtype=torch.long)
            for i, e in enumerate(examples):
                n = len(e["position_ids"])
                positions[i, :n] = torch.tensor(e["position_ids"])
                positions[i, n:] = torch.arange(width - n)
            batch["position_ids"] = positions
        return batch


class StepSampler(Sampler):
    """Yields this process's share of micro-batch `start`, `start + 1`, ... `stop - 1`."""

    def __init__(
        self,
        n_rows: int,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        world: int = 1,
    ):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world} processes")
        self.n, self.batch, self.seed = n_rows, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world

    def _epoch(self, epoch: int) -> np.ndarray:
        rng = np.random.Generator(np.random.PCG64(derive(self.seed, f"data-order-{epoch}")))
        return rng.permutation(self.n)

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        epoch, perm = None, np.empty(0, dtype=np.int64)  # perm: the order of `epoch`
        for micro in range(self.start, self.stop):
            chunk = []
            for pos in range(micro * self.batch, (micro + 1) * self.batch):
                if pos // self.n != epoch:
                    epoch = pos // self.n
                    perm = self._epoch(epoch)
                chunk.append(int(perm[pos % self.n]))
            yield chunk[self.rank :: self.world]


class Examples(Protocol):
    """What train_loader reads by index: a list of examples, or a packed view of them."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> dict: ...


def train_loader(
    examples: Examples,
    *,
    pad_id: int,
    batch_size: int,
    seed: int,
    start: int,
    stop: int,
    num_workers: int,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    # A generator of our own: DataLoader draws its worker base seed from it, never from
    # the global torch stream that dropout uses.
    generator = torch.Generator().manual_seed(derive(seed, f"loader-rank{rank}"))
    return DataLoader(
        examples,  # type: ignore[arg-type]  # map-style (__getitem__, __len__); stub wants Dataset
        batch_sampler=StepSampler(len(examples), batch_size, seed, start, stop, rank, world),
        collate_fn=Collate(pad_id),
        num_workers=num_workers,
        worker_init_fn=worker_init,
        generator=generator,
        persistent_workers=False,
    )
