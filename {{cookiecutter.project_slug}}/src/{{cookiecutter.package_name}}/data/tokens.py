"""The token store: the training set tokenized once, memory-mapped by every later run.

    uv run ft train     # first run with these pins: streams the data, builds the store
    uv run ft train     # later runs: hash the sources against their pins, map the store

A store is keyed by everything its bytes depend on: the split hashes in data.lock, the
tokenizer's content hash, the chat template's hash, max_seq_len, packing, the row format
and loss_on, and the code of `loader.encode` and data/chat.py. A change to any of them is
another key, so another store is built;
nothing is ever updated in place. Per split it holds three flat files, written as the
pipeline streams (bounded memory at any size):

    <split>.tokens   int32, every example's token ids, end to end
    <split>.mask     uint8, 1 where the token is learned (its label is the token itself)
    <split>.offsets  int64, n + 1 example boundaries

plus meta.json with the key's inputs and each file's sha256. The store's own hash (over
those file hashes) goes into the run's manifest. A store is built in a temp directory and
renamed into place once data.lock matched, so a half-built store is never seen. On reuse
every file is hashed again against meta.json (sequential reads at sha256 speed) before
training starts; a reproduction in a clean checkout has no store and rebuilds it, so a
tampered store cannot pass the reproduce gate either.

The sampler is unchanged: it draws row indices from (seed, step), and the store serves
row i as the same {input_ids, labels} lists that tokenizing in memory gives.
"""

import hashlib
import inspect
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..config import Config
from ..errors import UserError
from ..util.hashing import sha256_file, sha256_json, write_atomic
from . import chat, loader
from . import lock as lock_file
from .build import check
from .lock import SPLITS

STORE_SCHEMA = 1
IGNORE_INDEX = loader.IGNORE_INDEX
FILES = {"tokens": np.int32, "mask": np.uint8, "offsets": np.int64}


def store_key(cfg: Config, lock: dict, tokenizer, base_pins: dict) -> dict:
    """Everything the store's bytes depend on (its sha256 names the store)."""
    template = getattr(tokenizer, "chat_template", None)
    tok_hash = (
        base_pins.get("tokenizer_sha256")
        or hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
    )
    return {
        "schema": STORE_SCHEMA,
        "splits": {s: lock["splits"][s]["sha256"] for s in SPLITS},
        "tokenizer_sha256": tok_hash,
        "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest()
        if isinstance(template, str)
        else None,
        "max_seq_len": cfg.data.max_seq_len,
        "packing": bool(getattr(cfg.data, "packing", False)),
        "row_format": cfg.data.row_format,
        "loss_on": cfg.data.loss_on,
        "encode_sha256": hashlib.sha256(
            (inspect.getsource(loader.encode) + inspect.getsource(chat)).encode()
        ).hexdigest(),
    }


class TokenSplit:
    """One split of a store, memory-mapped: row i -> {input_ids, labels} as encode gives."""

    def __init__(self, root: Path, split: str):
        self.root, self.split = Path(root), split
        self._open()

    def _open(self) -> None:
        def mapped(name):
            path = self.root / f"{self.split}.{name}"
            if path.stat().st_size == 0:
                return np.zeros(0, dtype=FILES[name])
            return np.memmap(path, dtype=FILES[name], mode="r")

        self.tokens, self.mask, self.offsets = (mapped(n) for n in FILES)

    def __getstate__(self):  # DataLoader workers reopen the maps instead of copying them
        return {"root": self.root, "split": self.split}

    def __setstate__(self, state):
        self.root, self.split = state["root"], state["split"]
        self._open()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        ids = self.tokens[start:stop].astype(np.int64)
        labels = np.where(self.mask[start:stop] == 1, ids, IGNORE_INDEX)
        return {"input_ids": ids.tolist(), "labels": labels.tolist()}


class _Builder:
    """Appends encoded chunks of each split to the store's files in a temp directory."""

    def __init__(self, tmp: Path, tokenizer, cfg: Config):
        self.tmp, self.tokenizer, self.cfg = tmp, tokenizer, cfg
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.files = {
            (s, n): open(tmp / f"{s}.{n}", "wb")  # noqa: SIM115 - closed in finish/discard
            for s in SPLITS
            for n in FILES
        }
        self.ends = dict.fromkeys(SPLITS, 0)
        for s in SPLITS:
            self.files[(s, "offsets")].write(np.zeros(1, dtype=np.int64).tobytes())

    def add(self, split: str, rows: list[dict]) -> None:
        examples = loader.encode_rows(self.cfg, rows, self.tokenizer)
        ids = [np.asarray(e["input_ids"], dtype=np.int64) for e in examples]
        labels = [np.asarray(e["labels"], dtype=np.int64) for e in examples]
        for i, lab in zip(ids, labels, strict=True):
            learned = lab != IGNORE_INDEX
            if len(i) != len(lab) or not np.array_equal(lab[learned], i[learned]):
                raise ValueError("encode gave labels that are not the tokens or -100")
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        offsets = self.ends[split] + np.cumsum(lengths)
        self.ends[split] = int(offsets[-1]) if len(offsets) else self.ends[split]
        flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        mask = np.concatenate([lab != IGNORE_INDEX for lab in labels]) if labels else flat
        self.files[(split, "tokens")].write(flat.astype(np.int32).tobytes())
        self.files[(split, "mask")].write(mask.astype(np.uint8).tobytes())
        self.files[(split, "offsets")].write(offsets.astype(np.int64).tobytes())

    def finish(self, key: dict, root: Path) -> None:
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        hashes = {p.name: sha256_file(p) for p in sorted(self.tmp.iterdir())}
        meta = {"key": key, "files": hashes, "sha256": sha256_json(hashes)}
        write_atomic(self.tmp / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if root.exists():  # another process finished the same store first: same bytes
            shutil.rmtree(self.tmp)
            return
        os.replace(self.tmp, root)

    def discard(self) -> None:
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _lock_matches_config(cfg: Config, lock: dict) -> bool:
    """The config's pins are the ones data.lock records (no data is read)."""
    from .build import resolve_filters

    try:
        filters = [
            {"name": f.name, "params": p, "code_sha256": f.code_sha256}
            for f, p in resolve_filters(cfg)
        ]
    except UserError:
        return False
    sources = []
    for s in cfg.data.sources:
        entry: dict[str, str | None] = {"name": s.name, "split": s.split}
        entry |= {"path": s.path, "sha256": s.sha256} if s.path else {}
        entry |= {"hub_id": s.hub_id, "revision": s.revision} if s.hub_id else {}
        sources.append(entry)
    recorded = [{k: v for k, v in s.items() if k != "rows"} for s in lock.get("sources", [])]
    return recorded == sources and lock.get("filters") == filters


def _verify(root: Path) -> dict:
    meta = json.loads((root / "meta.json").read_text())
    for name, digest in meta["files"].items():
        actual = sha256_file(root / name)
        if actual != digest:
            raise UserError(
                f"{name} has sha256 {actual} but its meta.json records {digest}: "
                "the token store was changed after it was built",
                file=str(root),
                fix=f"delete {root} (the next run rebuilds it)",
            )
    if sha256_json(meta["files"]) != meta["sha256"]:
        raise UserError(
            "meta.json's store hash does not match its file hashes",
            file=str(root / "meta.json"),
            fix=f"delete {root} (the next run rebuilds it)",
        )
    return meta


def training_examples(cfg: Config, tokenizer, base_pins: dict):
    """(data lock, train examples, eval examples, store pins or None) for `ft train`.

    With data.token_store (the default), examples come from the memory-mapped store for
    these pins, built on the first run by the same streaming pass that checks data.lock.
    Without it, every row is tokenized into memory on every run (the same examples).
    """
    if not cfg.data.token_store:
        rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
        lock = check(cfg, sink=lambda split, chunk: rows[split].extend(chunk))
        encoded = [loader.encode_rows(cfg, rows[s], tokenizer) for s in SPLITS]
        return lock, *encoded, None
    committed = lock_file.read(cfg.data.lock)
    stores = Path(cfg.data.out_dir) / "tokens"
    if _lock_matches_config(cfg, committed) and "splits" in committed:
        key = store_key(cfg, committed, tokenizer, base_pins)
        root = stores / sha256_json(key)[:24]
        if (root / "meta.json").is_file():
            meta = _verify(root)
            if meta["key"] == key:
                _verify_sources(cfg)  # the store stands for the pinned bytes: check they still are
                _used(root)
                return committed, *(TokenSplit(root, s) for s in SPLITS), _pins(root, meta)
    # Cold: one streaming pass checks every source against data.lock and fills the store.
    tmp = stores / f".building-{os.getpid()}"
    builder = _Builder(tmp, tokenizer, cfg)
    try:
        lock = check(cfg, sink=builder.add)
    except BaseException:
        builder.discard()
        raise
    key = store_key(cfg, lock, tokenizer, base_pins)
    root = stores / sha256_json(key)[:24]
    builder.finish(key, root)
    _used(root)
    meta = _verify(root)
    return lock, *(TokenSplit(root, s) for s in SPLITS), _pins(root, meta)


def _verify_sources(cfg: Config) -> None:
    """Every path source hashed (not parsed) against its pin: a warm store skips the
    streaming pass, not the check that the data under it is the data the config pins.
    Hub sources are pinned by revision and read through `datasets` only on a cold build."""
    from .sources import Source

    for i, spec in enumerate(cfg.data.sources):
        if spec.path is not None:
            Source(spec, i, cfg._path).verify()


def _pins(root: Path, meta: dict) -> dict:
    return {"path": root.as_posix(), "sha256": meta["sha256"], "key": meta["key"]}


def _used(root: Path) -> None:
    """Mark a store as used now (its directory's mtime; no byte of it changes): `ft data gc`
    keeps the most recently used ones."""
    os.utime(root)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gc(stores: Path, keep: int, dry_run: bool = False) -> list[tuple[Path, int]]:
    """`ft data gc`: remove all but the `keep` most recently used stores under `stores`, and
    the temp directories of builds whose process is gone. Returns (path, bytes) removed.

    Never needed for correctness (a store's key names its inputs; a removed one is rebuilt
    by the next run that needs it); stores of old pins only take disk. A store that a
    running `ft train` maps stays readable to it after removal (unlinked files stay mapped).
    """
    if keep < 0:
        raise UserError(
            "must be 0 or more", key="--keep", fix="pass how many recent stores to keep, e.g. 2"
        )
    if not stores.is_dir():
        return []
    built, orphans = [], []
    for p in stores.iterdir():
        if p.name.startswith(".building-"):
            pid = p.name.removeprefix(".building-")
            if not (pid.isdigit() and _alive(int(pid))):
                orphans.append(p)
        elif p.is_dir() and (p / "meta.json").is_file():
            built.append(p)
    built.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    removed = []
    for p in sorted(orphans) + built[keep:]:
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        if not dry_run:
            shutil.rmtree(p)
        removed.append((p, size))
    return removed
