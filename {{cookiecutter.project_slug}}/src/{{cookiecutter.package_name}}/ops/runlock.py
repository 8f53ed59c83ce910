"""One writer per run URL: a lease object that `ft train --out URL` holds while it writes.

A local run directory is locked with flock(2) (ops/store.py `lock_run_dir`); a run under
a URL is written from a staging directory on whichever machine trains it, so two
`ft train --resume --out s3://.../run` on two machines (or one machine) would both push
checkpoints. The lease is the object `<URL>/.ft-lock` (docs/decisions/0016):

- **acquire**: create it only if absent. S3 (AWS since 2024, SeaweedFS): a conditional PUT
  (`If-None-Match: *`), which the store decides atomically; file://: create under flock on
  the run directory. A lease that exists is taken over only when it is stale (its holder
  ran on this host and is dead, or it was not renewed for its `ttl_s`) or on `--break-lock`,
  by a replace conditional on the stale lease's ETag (`If-Match`), so of two contenders
  exactly one wins. A lease that missed two renewals (older than ttl/2) is watched until it
  expires (a preempted VM's replacement resumes without an error); a renewal meanwhile
  means its holder lives, and the contender is refused.
- **renew**: a daemon thread rewrites it every ttl/4, again conditional on the ETag it
  last wrote, and so does every commit (a checkpoint's marker, the outputs, the
  manifest) just before it writes; a renewal that finds another holder marks the lease
  lost, and the run stops with an error instead of committing.
- **release**: removed (conditionally) when the run ends, however it ends; a killed
  process leaves it, and the next `--resume` takes it over as stale.

Other fsspec stores (gs://, az://, ...) have no conditional write through fsspec: the
lease is written, then read back after SETTLE_S, which narrows but does not close the race
between two contenders that both saw no lease (the ADR says so).
"""

import hashlib
import json
import os
import socket
import sys
import threading
import time
from contextlib import suppress
from datetime import UTC, datetime

from ..errors import UserError

LEASE = ".ft-lock"
TTL_S = 120.0  # a lease not renewed for this long is stale (the holder renews every ttl/4)
SETTLE_S = 1.0  # stores without conditional writes: wait this long, then read the lease back
RETRIES = 3  # a lease that changes while we decide: look again, then give up
LAPSING = 0.5  # a lease older than this part of its ttl missed two renewals: wait for it to lapse
POLL_S = 2.0


def _pid_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is told
    apart from the process that wrote a lease; None where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return started is None or _pid_start(pid) in (None, started)


def _precondition_failed(e: BaseException) -> bool:
    """s3fs turns HTTP 412 into FileExistsError (If-None-Match) or OSError(EINVAL) (If-Match)."""
    if isinstance(e, FileExistsError):
        return True
    cause = getattr(e, "__cause__", None)
    response = getattr(cause, "response", None) or {}
    error = response.get("Error", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in ("PreconditionFailed", "412") or status == 412


class _S3Objects:
    """The lease on S3: conditional PUT and DELETE; the token is the ETag."""

    def __init__(self, fs, path: str):
        self.fs, self.path = fs, path
        self.bucket, self.key, _ = fs.split_path(path)

    def create(self, data: bytes) -> str | None:
        try:
            return self.fs.pipe_file(self.path, data, mode="create")["ETag"]
        except OSError as e:
            if _precondition_failed(e):
                return None
            raise

    def read(self) -> tuple[bytes, str] | None:
        # ETag first, then the bytes: if the lease changes in between, the bytes are newer
        # than the token, and a replace conditional on the older token fails safely.
        try:
            self.fs.invalidate_cache(self.path)
            token = self.fs.info(self.path)["ETag"]
            return self.fs.cat_file(self.path), token
        except FileNotFoundError:
            return None

    def replace(self, data: bytes, token: str) -> str | None:
        try:
            return self.fs.pipe_file(self.path, data, IfMatch=token)["ETag"]
        except (OSError, FileNotFoundError) as e:
            if isinstance(e, FileNotFoundError) or _precondition_failed(e):
                return None
            raise

    def delete(self, token: str) -> None:
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=token)
        except (OSError, FileNotFoundError) as e:
            if not (isinstance(e, FileNotFoundError) or _precondition_failed(e)):
                raise
        self.fs.invalidate_cache(self.path)


class _DiskObjects:
    """The lease on file://: every step under flock(2) on the run directory; the token is
    the lease's sha256."""

    def __init__(self, root: str):
        self.root, self.path = root, os.path.join(root, LEASE)

    def _locked(self):
        import fcntl
        from contextlib import contextmanager

        @contextmanager
        def held():
            os.makedirs(self.root, exist_ok=True)
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

        return held()

    def _current(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def _write(self, data: bytes) -> str:
        from ..util.hashing import write_atomic

        write_atomic(self.path, data)
        return hashlib.sha256(data).hexdigest()

    def create(self, data: bytes) -> str | None:
        with self._locked():
            return None if self._current() is not None else self._write(data)

    def read(self) -> tuple[bytes, str] | None:
        with self._locked():
            data = self._current()
        return None if data is None else (data, hashlib.sha256(data).hexdigest())

    def replace(self, data: bytes, token: str) -> str | None:
        with self._locked():
            now = self._current()
            if now is None or hashlib.sha256(now).hexdigest() != token:
                return None
            return self._write(data)

    def delete(self, token: str) -> None:
        with self._locked():
            now = self._current()
            if now is not None and hashlib.sha256(now).hexdigest() == token:
                os.unlink(self.path)


class _PlainObjects(_DiskObjects):
    """Any other fsspec store: no conditional write, so write, wait SETTLE_S, read back."""

    def __init__(self, fs, path: str):
        self.fs, self.path = fs, path

    def _current(self) -> bytes | None:
        try:
            self.fs.invalidate_cache(self.path)
            return self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None

    def _settled(self, data: bytes) -> str | None:
        self.fs.pipe_file(self.path, data)
        time.sleep(SETTLE_S)
        return hashlib.sha256(data).hexdigest() if self._current() == data else None

    def create(self, data: bytes) -> str | None:
        return None if self._current() is not None else self._settled(data)

    def read(self) -> tuple[bytes, str] | None:
        data = self._current()
        return None if data is None else (data, hashlib.sha256(data).hexdigest())

    def replace(self, data: bytes, token: str) -> str | None:
        now = self._current()
        if now is None or hashlib.sha256(now).hexdigest() != token:
            return None
        return self._settled(data)

    def delete(self, token: str) -> None:
        now = self._current()
        if now is not None and hashlib.sha256(now).hexdigest() == token:
            self.fs.rm_file(self.path)


def _objects(remote):
    path = f"{remote.root}/{LEASE}"
    if remote.on_disk:
        return _DiskObjects(remote.root)
    if "s3" in (remote.fs.protocol if isinstance(remote.fs.protocol, tuple) else ()):
        return _S3Objects(remote.fs, path)
    return _PlainObjects(remote.fs, path)


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s ago" if seconds >= 0 else f"{-seconds:.0f} s in the future"


class Lease:
    """This process's claim on a run URL (ops/remote.py `RemoteDir`)."""

    def __init__(self, remote, ttl_s: float = TTL_S):
        self.remote, self.ttl_s = remote, ttl_s
        self.objects = _objects(remote)
        host, pid = socket.gethostname(), os.getpid()
        self.record = {
            "owner": f"{host}/{pid}/{time.time_ns()}",
            "host": host,
            "pid": pid,
            "pid_start": _pid_start(pid),
            "acquired_at": time.time(),
            "ttl_s": ttl_s,
        }
        self.token: str | None = None
        self.lost: dict | None = None  # the holder that took the lease from us
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        return f"{self.remote.url}/{LEASE}"

    def _data(self) -> bytes:
        self.record["renewed_at"] = time.time()
        return (json.dumps(self.record, sort_keys=True) + "\n").encode()

    def _stale(self, held: dict) -> bool:
        if time.time() - held["renewed_at"] > held["ttl_s"]:
            return True
        same_host = held["host"] == self.record["host"]
        return same_host and not _alive(held["pid"], held.get("pid_start"))

    def _lapsing(self, held: dict) -> bool:
        """Not stale yet, but not renewed for two heartbeats: its holder is most likely gone
        (a preempted VM whose replacement resumes at once). Worth waiting out."""
        age = time.time() - held["renewed_at"]
        return not self._stale(held) and age > held["ttl_s"] * LAPSING

    def _wait_out(self, held: dict, token: str) -> tuple[bytes, str] | None:
        """Watch a lapsing lease until it expires; return it as last read (None: removed).
        A renewal (another token) ends the wait at once: its holder is alive."""
        deadline = held["renewed_at"] + held["ttl_s"] + 1
        print(
            f"waiting up to {deadline - time.time():.0f} s for the lock {self.where} "
            f"({_describe(held)}) to expire",
            file=sys.stderr,
            flush=True,
        )
        while True:
            time.sleep(max(0.0, min(POLL_S, deadline - time.time())))
            found = self.objects.read()
            if found is None or found[1] != token or time.time() >= deadline:
                return found

    def acquire(self, break_lock: bool = False) -> None:
        """Hold the lease, or raise a UserError naming who holds it."""
        with self.remote.errors("taking the run's lock"):
            for _ in range(RETRIES):
                self.token = self.objects.create(self._data())
                if self.token:
                    break
                found = self.objects.read()
                if found is None:
                    continue  # released between our create and our read
                data, token = found
                held = _parse(data)
                if held is not None and not break_lock and self._lapsing(held):
                    if (found := self._wait_out(held, token)) is None:
                        continue
                    data, token = found
                    held = _parse(data)
                if held is not None and not break_lock and not self._stale(held):
                    raise UserError(
                        f"another `ft train` is writing this run (lock held by host "
                        f"{held['host']}, pid {held['pid']}, renewed "
                        f"{_ago(time.time() - held['renewed_at'])})",
                        file=self.remote.url,
                        key="--out",
                        fix="wait for it to finish (or stop it), then --resume; a dead "
                        f"holder's lock expires {held['ttl_s']:.0f} s after its last renewal "
                        "(at once on its own host); only if you know it is dead: "
                        "--resume --break-lock",
                    )
                if held is None and not break_lock:
                    raise UserError(
                        "is not a lock written by `ft train`",
                        file=self.where,
                        fix="remove the object, or resume with --break-lock",
                    )
                self.token = self.objects.replace(self._data(), token)
                if self.token:
                    what = "broke" if break_lock else "took over the stale"
                    print(f"{what} lock {self.where} ({_describe(held)})", file=sys.stderr)
                    break
            else:
                raise UserError(
                    "the run's lock kept changing while this process tried to take it",
                    file=self.where,
                    key="--out",
                    fix="another `ft train` is starting on this run; wait for it, then --resume",
                )
        self._thread = threading.Thread(target=self._heartbeat, name="ft-lease", daemon=True)
        self._thread.start()

    def renew(self) -> None:
        with self._mutex:
            if self.lost is not None or self.token is None:
                return
            token = self.objects.replace(self._data(), self.token)
            if token is None:
                found = self.objects.read()
                self.lost = (_parse(found[0]) if found else None) or {"host": "?", "pid": "?"}
                return
            self.token = token

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            with suppress(Exception):  # the store is unreachable: try again; check() decides
                self.renew()

    def check(self) -> None:
        """Before a commit (a checkpoint marker, the manifest): renew now (one conditional
        write), so a lease taken over since the last heartbeat stops us before we commit."""
        with self.remote.errors("renewing the run's lock"):
            self.renew()
        if self.lost is not None:
            raise UserError(
                f"this process lost the run's lock to another `ft train` "
                f"({_describe(self.lost)}); nothing more was written",
                file=self.remote.url,
                key="--out",
                fix="let the other process finish the run (a lock is taken over only when "
                "stale or with --break-lock; never break the lock of a live run)",
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._mutex:
            if self.token is None or self.lost is not None:
                return
            try:
                with self.remote.errors("releasing the run's lock"):
                    self.objects.delete(self.token)
            except UserError as e:  # the run's outcome stands; the lock expires by itself
                print(f"warning: {e}", file=sys.stderr)
            self.token = None


def _parse(data: bytes) -> dict | None:
    try:
        held = json.loads(data)
        if not (
            isinstance(held, dict)
            and isinstance(held.get("host"), str)
            and type(held.get("pid")) is int
            and isinstance(held.get("renewed_at"), (int, float))
            and isinstance(held.get("ttl_s"), (int, float))
        ):
            return None
        return held
    except ValueError:
        return None


def _describe(held: dict | None) -> str:
    if not held:
        return "unreadable lock"
    at = held.get("renewed_at")
    when = datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S UTC") if at else "?"
    return f"host {held.get('host')}, pid {held.get('pid')}, last renewed {when}"
