"""Path sources pinned by content: JSONL, Parquet and Arrow directories, on disk and in a
bucket on the real S3 server (SeaweedFS, tests/s3_server.py).

    uv run pytest tests/test_sources.py -q

Same rows give the same split hash whatever the format or place; a changed byte, a
missing object and missing credentials each end in one line naming the config file,
the key and the fix, with nothing written.
"""

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from s3_server import BUCKET, _bucket_fs
from test_data import EVAL_SHA256, TRAIN_SHA256, TRAIN_SOURCE_SHA256, snapshot

RECIPE = "configs/recipe.yaml"
ROWS = [
    {
        "messages": [
            {"role": "user", "content": f"Reverse the words: w{i} x{i % 7}"},
            {"role": "assistant", "content": f"x{i % 7} w{i}"},
        ]
    }
    for i in range(5000)
]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def jsonl_bytes(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def parquet_bytes(rows, tmp: Path) -> bytes:
    path = tmp / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=1000)
    return path.read_bytes()


def arrow_dir(rows, root: Path) -> Path:
    """A directory laid out as `datasets.save_to_disk` lays it out: Arrow IPC stream files
    listed in state.json, plus dataset_info.json."""
    root.mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    names = []
    for shard, start in enumerate(range(0, len(rows), 2000)):
        name = f"data-{shard:05d}-of-00003.arrow"
        with pa.OSFile(str(root / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table.slice(start, 2000), max_chunksize=700)
        names.append(name)
    (root / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names]}))
    (root / "dataset_info.json").write_text("{}")
    return root


def tree_sha256(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        h.update(f"{p.relative_to(root).as_posix()}\0{sha256(p.read_bytes())}\n".encode())
    return h.hexdigest()


def source(index: int, path: str, digest: str, **extra) -> list[str]:
    sets = [
        f"--set=data.sources.{index}.path={path}",
        f"--set=data.sources.{index}.sha256={digest}",
    ]
    return sets + [f"--set=data.sources.{index}.{k}={v}" for k, v in extra.items()]


@pytest.fixture
def s3_env(s3, monkeypatch):
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask a cloud for keys
    return s3


def put(env, key: str, data: bytes) -> str:
    _bucket_fs(env).pipe_file(f"{BUCKET}/{key}", data)
    return f"s3://{BUCKET}/{key}"


# --- one rows, three formats, two places ------------------------------------------------


def test_formats_give_the_same_split_hash(ft, data_workdir, tmp_path):
    (data_workdir / "data/raw/rows.jsonl").write_bytes(jsonl_bytes(ROWS))
    (data_workdir / "data/raw/rows.parquet").write_bytes(parquet_bytes(ROWS, tmp_path))
    arrow_dir(ROWS, data_workdir / "data/raw/rows-arrow")
    pins = {
        "data/raw/rows.jsonl": sha256(jsonl_bytes(ROWS)),
        "data/raw/rows.parquet": sha256((data_workdir / "data/raw/rows.parquet").read_bytes()),
        "data/raw/rows-arrow": tree_sha256(data_workdir / "data/raw/rows-arrow"),
    }
    hashes = set()
    for path, digest in pins.items():
        extra = {"format": "arrow"} if path.endswith("arrow") else {}
        result = ft("data", "build", *source(0, path, digest, **extra))
        assert result.code == 0, result.err
        lock = json.loads(Path("data.lock").read_text())
        assert lock["sources"][0] == {
            "name": "chat-train",
            "split": "train",
            "path": path,
            "sha256": digest,
            "rows": 5000,
        }
        hashes.add(lock["splits"]["train"]["sha256"])
    assert len(hashes) == 1


def test_arrow_directory_pin_covers_every_file(ft, data_workdir):
    root = arrow_dir(ROWS, data_workdir / "data/raw/rows-arrow")
    pin = tree_sha256(root)
    (root / "dataset_info.json").write_text('{"edited": true}')
    line = ft("data", "check", *source(0, "data/raw/rows-arrow", pin, format="arrow")).user_error(
        f"{RECIPE}: data.sources.0.sha256: data/raw/rows-arrow has sha256 {tree_sha256(root)}",
        f"but the config pins {pin}",
    )
    assert "set data.sources.0.sha256 to" in line


def test_ft_data_hash_prints_the_pins(ft, data_workdir):
    result = ft("data", "hash", "data/raw/chat-train.jsonl")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {
        "path": "data/raw/chat-train.jsonl",
        "sha256": TRAIN_SOURCE_SHA256,
        "format": "jsonl",
        "size": Path("data/raw/chat-train.jsonl").stat().st_size,
    }


# --- the bucket ---------------------------------------------------------------------------


@pytest.mark.shipped  # pins the shipped data and filters: skipped once a PR changes them
def test_bucket_jsonl_gives_the_shipped_split_hash(ft, data_workdir, s3_env):
    data = Path("data/raw/chat-train.jsonl").read_bytes()
    url = put(s3_env, "sources/train.jsonl", data)
    described = ft("data", "hash", url)
    assert described.code == 0, described.err
    pins = json.loads(described.out)
    assert pins["sha256"] == TRAIN_SOURCE_SHA256 and pins["size"] == len(data)
    result = ft("data", "build", *source(0, url, pins["sha256"], etag=pins["etag"], size=len(data)))
    assert result.code == 0, result.err
    lock = json.loads(Path("data.lock").read_text())
    assert lock["sources"][0]["path"] == url and lock["sources"][0]["sha256"] == TRAIN_SOURCE_SHA256
    assert lock["splits"]["train"]["sha256"] == TRAIN_SHA256
    assert lock["splits"]["eval"]["sha256"] == EVAL_SHA256
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in Path("data.lock").read_text()


def test_bucket_parquet_and_arrow_directory(ft, data_workdir, s3_env, tmp_path):
    jsonl = put(s3_env, "sources/rows.jsonl", jsonl_bytes(ROWS))
    parquet = parquet_bytes(ROWS, tmp_path)
    pq_url = put(s3_env, "sources/rows.parquet", parquet)
    root = arrow_dir(ROWS, tmp_path / "rows-arrow")
    for p in root.iterdir():
        put(s3_env, f"sources/rows-arrow/{p.name}", p.read_bytes())
    hashes = set()
    extra: dict[str, object]
    for url, digest, extra in (
        (jsonl, sha256(jsonl_bytes(ROWS)), {}),
        (pq_url, sha256(parquet), {}),
        (f"s3://{BUCKET}/sources/rows-arrow/", tree_sha256(root), {}),
    ):
        result = ft("data", "build", *source(0, url, digest, **extra))
        assert result.code == 0, result.err
        hashes.add(json.loads(Path("data.lock").read_text())["splits"]["train"]["sha256"])
    assert len(hashes) == 1


@pytest.mark.parametrize("offset", [200, 0], ids=["in-a-value", "breaks-the-json"])
def test_one_changed_byte_in_the_object_fails_naming_file_key_and_fix(
    ft, data_workdir, s3_env, offset
):
    data = bytearray(Path("data/raw/chat-train.jsonl").read_bytes())
    data[offset] = ord("Z") if data[offset] != ord("Z") else ord("Y")
    url = put(s3_env, f"sources/changed-{offset}.jsonl", bytes(data))
    before = snapshot()
    ft("data", "build", *source(0, url, TRAIN_SOURCE_SHA256)).user_error(
        f"{RECIPE}: data.sources.0.sha256: {url} has sha256 {sha256(bytes(data))}",
        f"but the config pins {TRAIN_SOURCE_SHA256}",
        f"set data.sources.0.sha256 to {sha256(bytes(data))}; otherwise restore the object",
    )
    assert snapshot() == before


def test_a_changed_etag_or_size_fails_before_reading(ft, data_workdir, s3_env):
    url = put(s3_env, "sources/etag.jsonl", Path("data/raw/chat-train.jsonl").read_bytes())
    ft("data", "check", *source(0, url, TRAIN_SOURCE_SHA256, etag="beef" * 8)).user_error(
        f"{RECIPE}: data.sources.0.etag: {url} has ETag",
        f"but the config pins {'beef' * 8}",
        "the object changed since it was pinned",
        f"ft data hash {url}",
    )
    ft("data", "check", *source(0, url, TRAIN_SOURCE_SHA256, size=12)).user_error(
        f"{RECIPE}: data.sources.0.size: {url} has size", "but the config pins 12"
    )


def test_a_missing_object_fails_cleanly(ft, data_workdir, s3_env):
    url = f"s3://{BUCKET}/sources/no-such-object.jsonl"
    ft("data", "build", *source(0, url, TRAIN_SOURCE_SHA256)).user_error(
        f"{RECIPE}: data.sources.0.path: data source 'chat-train' not found at {url}",
        "restore the object",
    )
    assert not Path("data/build").exists()


def test_missing_credentials_fail_cleanly(ft, data_workdir, s3_env, monkeypatch):
    url = put(s3_env, "sources/creds.jsonl", Path("data/raw/chat-train.jsonl").read_bytes())
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    ft("data", "check", *source(0, url, TRAIN_SOURCE_SHA256)).user_error(
        f"{RECIPE}: data.sources.0.path: reading metadata of {url} failed: NoCredentialsError",
        "credentials in the environment (S3: AWS_ACCESS_KEY_ID",
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "someone-else")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    line = ft("data", "check", *source(0, url, TRAIN_SOURCE_SHA256)).user_error(
        f"{RECIPE}: data.sources.0.path: reading metadata of {url} failed"
    )
    assert "wrong-secret" not in line


def test_credentials_in_the_url_are_refused(ft, data_workdir):
    ft(
        "data", "check", *source(0, "s3://key:secret@bucket/x.jsonl", TRAIN_SOURCE_SHA256)
    ).user_error(f"{RECIPE}: data.sources.0.path: the URL carries credentials")
