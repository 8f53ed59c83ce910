"""One writer per run URL: the lease `<URL>/.ft-lock` (ops/runlock.py).

    uv run pytest tests/test_runlock.py -q

Races are real processes against the real S3 server the session starts (SeaweedFS,
tests/s3_server.py) and against file://; the takeover cases run in-process on both.
Two whole `ft train` processes on one URL: tests/test_store.py (slow).
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from s3_server import BUCKET
from test_closure import mod

RACERS = 6


@pytest.fixture(params=["file", "s3"])
def on_env(request, tmp_path, monkeypatch) -> str:
    """A fresh run URL; its credentials (S3) in this process's environment."""
    if request.param == "file":
        return (tmp_path / "bucket" / "runs" / "x").as_uri()
    for key, value in request.getfixturevalue("s3").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask a cloud for keys
    name = request.node.name.replace("[", "-").rstrip("]")
    return f"s3://{BUCKET}/locks/{name}-{time.time_ns()}"


def _lease(url: str, **kw):
    return mod("ops.runlock").Lease(mod("ops.remote").RemoteDir(url), **kw)


def _plant(url: str, **fields) -> None:
    """A lease as another process would have written it."""
    record = {"host": "other-host", "pid": 4242, "renewed_at": time.time(), "ttl_s": 120.0}
    data = (json.dumps(record | fields) + "\n").encode()
    mod("ops.remote").RemoteDir(url).put_bytes(data, mod("ops.runlock").LEASE)


RACE = """
import sys, time
from {pkg}.errors import UserError
from {pkg}.ops.runlock import Lease
from {pkg}.ops.remote import RemoteDir
url, start = sys.argv[1], float(sys.argv[2])
lease = Lease(RemoteDir(url))
while time.time() < start:
    time.sleep(0.001)
try:
    lease.acquire()
except UserError as e:
    print("refused", e, flush=True)
else:
    print("holds", flush=True)
    time.sleep(4)  # past every contender's attempt
    lease.release()
"""


def test_racing_processes_elect_exactly_one_writer(on_env):
    url = on_env
    pkg = mod("ops.runlock").__name__.split(".")[0]
    start = time.time() + 5  # every process imported and waiting: they start together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE.format(pkg=pkg), url, str(start)],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RACERS)
    ]
    results = [(p.communicate(timeout=120), p.pid) for p in procs]
    for (_, err), _pid in results:
        assert "Traceback" not in err, err
    winners = [pid for (out, _), pid in results if out.strip() == "holds"]
    assert len(winners) == 1, [out for (out, _), _ in results]
    refusals = [out.strip() for (out, _), _ in results if out.startswith("refused")]
    assert len(refusals) == RACERS - 1
    for line in refusals:
        assert len(line.splitlines()) == 1
        assert url in line and f"pid {winners[0]}" in line and "--break-lock" in line
    assert not mod("ops.remote").RemoteDir(url).fs.exists(f"{_lease(url).where}")


def test_live_leases_are_refused_stale_ones_taken_over(on_env, capfd):
    url, errors = on_env, mod("errors")
    _plant(url)  # another machine's writer, renewed just now
    with pytest.raises(errors.UserError, match="lock held by host other-host, pid 4242"):
        _lease(url).acquire()
    _plant(url, renewed_at=time.time() - 121)  # not renewed for longer than its ttl
    lease = _lease(url)
    lease.acquire()
    assert "took over the stale lock" in capfd.readouterr().err
    lease.release()

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    ).stdout.strip()
    _plant(url, host=socket.gethostname(), pid=int(dead))  # this host, process gone: stale now
    lease = _lease(url)
    lease.acquire()
    lease.release()

    _plant(url)  # live, but the user knows better
    lease = _lease(url)
    lease.acquire(break_lock=True)
    assert "broke lock" in capfd.readouterr().err
    lease.release()

    mod("ops.remote").RemoteDir(url).put_bytes(b"{not json", mod("ops.runlock").LEASE)
    with pytest.raises(errors.UserError, match="is not a lock written by `ft train`"):
        _lease(url).acquire()
    lease = _lease(url)
    lease.acquire(break_lock=True)
    lease.release()
    assert mod("ops.runlock").LEASE not in {
        p.rsplit("/", 1)[-1] for p in lease.remote.fs.find(lease.remote.root)
    }


def test_a_lapsing_lease_is_waited_out_and_a_renewed_one_refused(on_env, capfd):
    runlock, errors = mod("ops.runlock"), mod("errors")
    _plant(on_env, renewed_at=time.time() - 118)  # missed its renewals; expires in ~2 s
    lease = _lease(on_env)
    lease.acquire()
    assert "waiting up to 3 s for the lock" in capfd.readouterr().err
    lease.release()

    _plant(on_env, renewed_at=time.time() - 110)
    renewer = threading.Timer(1.0, _plant, (on_env,))  # its holder was alive after all
    renewer.start()
    with pytest.raises(errors.UserError, match="lock held by host other-host"):
        _lease(on_env).acquire()
    renewer.join()
    assert json.loads(mod("ops.remote").RemoteDir(on_env).read(runlock.LEASE))["pid"] == 4242


def test_a_holder_that_lost_its_lease_commits_nothing(on_env, tmp_path, monkeypatch):
    store, errors = mod("ops.store"), mod("errors")
    monkeypatch.chdir(tmp_path)
    first = store.RemoteRunLocation(on_env)
    first.lease = _lease(on_env, ttl_s=0.4)  # heartbeat every 0.1 s
    first.lease.acquire()
    written = json.loads(first.remote.read(mod("ops.runlock").LEASE))
    time.sleep(0.5)
    renewed = json.loads(first.remote.read(mod("ops.runlock").LEASE))
    assert renewed["owner"] == written["owner"] and renewed["renewed_at"] > written["renewed_at"]
    first.lease._stop.set()  # heartbeat off: the next renewal is the commit's own
    first.lease._thread.join()

    second = _lease(on_env)
    second.acquire(break_lock=True)  # e.g. someone broke the lock of a live run
    step = tmp_path / "local" / "checkpoints" / "step-00000004"
    step.mkdir(parents=True)
    (step / "state.pt").write_bytes(b"four")
    with pytest.raises(errors.UserError, match=f"lost the run's lock .*pid {second.record['pid']}"):
        first.push_checkpoint(step)
    assert first.remote.names() == set()  # not one object of the checkpoint went up
    first.release()  # does not remove the new holder's lease
    assert (
        json.loads(first.remote.read(mod("ops.runlock").LEASE))["owner"] == second.record["owner"]
    )
    second.release()


def test_break_lock_is_refused_for_a_local_run_directory(workdir, ft):
    ft("train", "--config", "configs/smoke.yaml", "--out", "runs/x", "--break-lock").user_error(
        "--break-lock", "kernel"
    )
    assert not (workdir / "runs").exists()


def test_stores_without_conditional_writes_write_then_read_back(monkeypatch, capfd):
    """gs://, az://, ...: no conditional PUT through fsspec; fsspec's in-memory store stands
    in for them (one process: the read-back is what is checked, not a race)."""
    runlock, errors = mod("ops.runlock"), mod("errors")
    monkeypatch.setattr(runlock, "SETTLE_S", 0.05)
    url = f"memory://locks/{time.time_ns()}/run"
    first = _lease(url)
    assert type(first.objects).__name__ == "_PlainObjects"
    first.acquire()
    with pytest.raises(errors.UserError, match=f"pid {os.getpid()}"):
        _lease(url).acquire()
    first.release()
    second = _lease(url)
    second.acquire()
    stolen = _lease(url)
    stolen.acquire(break_lock=True)
    with pytest.raises(errors.UserError, match="lost the run's lock"):
        second.check()
    second.release()  # lost: leaves the new holder's lease alone
    assert json.loads(second.remote.read(runlock.LEASE))["owner"] == stolen.record["owner"]
    stolen.release()
    assert not second.remote.fs.exists(f"{second.remote.root}/{runlock.LEASE}")
