"""Run `booking-gateway` as a real process on a free loopback port, for e2e tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import attrs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.define
class Process:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback only
                return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{url} did not come up:\n{log.read_text()}")


def start(
    args: list[str],
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/livez",
    name: str = "gateway",
) -> Process:
    """Start `python -m service <args>` with PORT set to a free port; wait until it answers.

    A literal "{port}" in `args` is replaced by that port (for `sandbox --port`).
    """
    port = free_port()
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PORT": str(port),
        "STORE_URL": f"sqlite:///{tmp_path}/{name}.sqlite3",
        "LOG_FORMAT": "json",
        # Webhook receivers of the tests listen on 127.0.0.1.
        "CALLBACK_DENY_NETWORKS": "none",
        **(env or {}),
    }
    port = int(full_env["PORT"])
    log = tmp_path / f"{name}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", *(a.replace("{port}", str(port)) for a in args)],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + ready_path, proc, log)
    return Process(proc=proc, url=url, log=log)
