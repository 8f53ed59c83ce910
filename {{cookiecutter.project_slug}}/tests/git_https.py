"""A git remote over HTTPS for tests: `git http-backend` (git's own smart-HTTP server) behind
a TLS server on 127.0.0.1 with a self-signed certificate made by `openssl`.

SkyPilot accepts only https:// and ssh workdir URLs and checks one before submitting (a GET of
`<url>/info/refs?service=git-upload-pack`, then `git ls-remote`), and its VMs clone with git
over the same URL, so tests/test_sky_standin.py serves its bare remote this way. Clients trust
the certificate through REQUESTS_CA_BUNDLE (requests) and GIT_SSL_CAINFO (git).
"""

import base64
import hmac
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass(frozen=True)
class Remote:
    url: str  # https://127.0.0.1:PORT/<owner>/<name>.git
    bare: Path  # the bare repository it serves: push here
    cafile: Path  # the certificate to trust


def _certificate(where: Path) -> tuple[Path, Path]:
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _handler(root: Path, token: str | None) -> type[BaseHTTPRequestHandler]:
    class GitHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def log_message(self, format: str, *args) -> None:  # quiet
            pass

        def _authorised(self) -> bool:
            """A private repository: the token as the user name of HTTP basic auth."""
            if token is None:
                return True
            kind, _, sent = self.headers.get("Authorization", "").partition(" ")
            try:
                user = base64.b64decode(sent).decode().partition(":")[0]
            except ValueError:
                return False
            return kind == "Basic" and hmac.compare_digest(user, token)

        def _cgi(self) -> None:
            if not self._authorised():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "REMOTE_ADDR": self.client_address[0],
            }
            out = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True
            ).stdout
            sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
            head, _, payload = out.partition(sep)
            status, headers = 200, []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return GitHandler


@contextmanager
def https_remote(
    where: Path, name: str = "example-org/example-finetune", token: str | None = None
) -> Iterator[Remote]:
    """An empty bare repository `<name>.git` under `where`, served over HTTPS until exit;
    with `token`, only to requests that send it (a private repository)."""
    bare = where / "git" / f"{name}.git"
    bare.parent.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    cert, key = _certificate(where)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(where / "git", token))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield Remote(f"https://127.0.0.1:{port}/{name}.git", bare, cert)
    finally:
        server.shutdown()
        server.server_close()
