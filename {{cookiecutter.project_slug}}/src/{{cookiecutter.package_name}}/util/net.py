"""Fail in seconds when a server is down, instead of after a client's retry budget.

    check_reachable("http://127.0.0.1:5000", what="the MLflow server", key="MLFLOW_TRACKING_URI",
                    fix="start the server or point MLFLOW_TRACKING_URI at it")

MLflow retries a refused connection with exponential backoff for minutes, and
huggingface_hub waits on its own timeouts, before either says the server is not
there. A TCP connect with a short timeout answers the same question at once; the
clients' own retries still cover a server that is up but briefly failing.
"""

import os
import socket
from urllib.parse import urlsplit

from ..errors import UserError

PROBE_TIMEOUT_S = float(os.environ.get("FT_PROBE_TIMEOUT_S", "3"))


def tcp_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if a TCP connection to the URL's host and port opens within `timeout`; else why not.
    Only the transport is probed: no request is sent, so no credential leaves the process."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # not a network URL (file store, databricks profile...): nothing to probe
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as e:
        return e.strerror or type(e).__name__


def check_reachable(url: str, *, what: str, key: str, fix: str) -> None:
    """Raise a one-line UserError when `url` cannot be reached."""
    why = tcp_reachable(url)
    if why is not None:
        parts = urlsplit(url)  # shown without any user:password@ it may carry
        port = f":{parts.port}" if parts.port else ""
        shown = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
        raise UserError(f"cannot reach {what} at {shown} ({why})", key=key, fix=fix)


def cap_mlflow_retries() -> None:
    """Bound MLflow's HTTP retries for ft's own calls (its default backoff runs for minutes);
    a value the user exported wins."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
