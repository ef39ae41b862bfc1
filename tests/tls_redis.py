"""A real redis-server speaking only TLS on 127.0.0.1, with a CA and certificates made by
`openssl` for the test, an ACL user with a password, and client certificates required.

Test modules load it with `pytest_plugins = ("tests.tls_redis",)` and import names from it
only under TYPE_CHECKING. Tests are skipped when redis-server or openssl is missing, or the
redis-server build has no TLS.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from tests.server_process import ServerProcess

STARTUP_TIMEOUT = 10.0
USER = "gateway"
# Characters that must be escaped in a URL's user info, so the test proves they are decoded.
PASSWORD = "tls:pass@word/42"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


class Certificates:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        _openssl(
            "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=booking-gateway test CA", cwd=directory,
        )  # fmt: skip
        extensions = {
            "server": "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            "client": "extendedKeyUsage=clientAuth\n",
        }
        for name, extension in extensions.items():
            (directory / f"{name}.ext").write_text(extension)
            _openssl(
                "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=booking-gateway test {name}", cwd=directory,
            )  # fmt: skip
            _openssl(
                "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                "-extfile", f"{name}.ext", cwd=directory,
            )  # fmt: skip

    def path(self, name: str) -> str:
        return str(self.directory / name)


class TLSRedisServer(ServerProcess):
    """One redis-server with TLS only (no plain port), ACL user USER/PASSWORD.

    It keeps its port, directory and certificates across stop() and start(). `persistent`:
    an append-only file synced on every write, so data outlives a restart.
    """

    def __init__(self, binary: str, directory: Path, *, persistent: bool = False) -> None:
        self.binary = binary
        self.directory = directory
        self.certs = Certificates(directory)
        self.port = free_port()
        self.persistent = persistent
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0, **options: str) -> str:
        """A rediss:// URL with the user, the password and the TLS options as query options;
        `options` add to or replace them (an empty value drops one)."""
        query = {
            "ssl_ca_certs": self.certs.path("ca.crt"),
            "ssl_certfile": self.certs.path("client.crt"),
            "ssl_keyfile": self.certs.path("client.key"),
            "ssl_cert_reqs": "required",
            **options,
        }
        query = {k: v for k, v in query.items() if v}
        auth = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@"
        return f"rediss://{auth}127.0.0.1:{self.port}/{db}?{urlencode(query)}"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def start(self) -> None:
        certs = self.certs
        # No one can log in as the default user ("off"), but it keeps every permission:
        # Redis 7 (any build without the fix for redis/redis#14541) replays the MULTI/EXEC
        # blocks of an append-only file as the default user and checks its ACL at EXEC, so
        # with a default user without permissions the writes of every script would be
        # dropped, with a log line only, when the server restarts.
        command = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", certs.path("server.crt"),
            "--tls-key-file", certs.path("server.key"),
            "--tls-ca-cert-file", certs.path("ca.crt"),
            "--tls-auth-clients", "yes",
            "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all",
            "--user", "default", "off", "~*", "&*", "+@all",
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "always",
            "--dir", str(self.directory),
            "--logfile", str(self.log),
            "--daemonize", "no",
        ]  # fmt: skip
        # Start-up errors (a build without TLS, a bad option) go to stderr, the rest to the log.
        with (self.directory / "stderr.log").open("wb") as stderr:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                errors = (self.directory / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited: {errors}{self._log_tail()}")
            if self._answers_ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"TLS redis-server did not answer within {STARTUP_TIMEOUT}s")

    def _answers_ping(self) -> bool:
        context = ssl.create_default_context(cafile=self.certs.path("ca.crt"))
        context.load_cert_chain(self.certs.path("client.crt"), self.certs.path("client.key"))
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
            ):
                conn.sendall(f"AUTH {USER} {PASSWORD}\r\nPING\r\n".encode())
                answer = b""
                while answer.count(b"\r\n") < 2:
                    chunk = conn.recv(64)
                    if not chunk:
                        return False
                    answer += chunk
                return answer == b"+OK\r\n+PONG\r\n"
        except OSError:
            return False


@contextlib.contextmanager
def running_tls_redis_server(*, persistent: bool = False) -> Iterator[TLSRedisServer]:
    binary = shutil.which("redis-server")
    missing = [name for name in ("redis-server", "openssl") if shutil.which(name) is None]
    if missing or binary is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"REQUIRE_REDIS=1 but {', '.join(missing)} not installed")
        pytest.skip(f"{', '.join(missing)} not installed: TLS Redis tests skipped")
    with tempfile.TemporaryDirectory(prefix="redis-tls-test-") as directory:
        server = TLSRedisServer(binary, Path(directory), persistent=persistent)
        try:
            server.start()
        except RuntimeError as err:
            text = str(err).lower()
            if "tls" in text and ("not supported" in text or "bad directive" in text):
                pytest.skip("this redis-server is built without TLS")
            raise
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def tls_redis_server() -> Iterator[TLSRedisServer]:
    """One TLS server shared by the session; tests flush the database they use."""
    with running_tls_redis_server() as server:
        yield server


@pytest.fixture
def durable_tls_redis_server() -> Iterator[TLSRedisServer]:
    """A TLS server for one test alone whose data survives a restart (as in production)."""
    with running_tls_redis_server(persistent=True) as server:
        yield server
