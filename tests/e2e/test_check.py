"""`booking-gateway check` as a real process: exit 0 on a good setup, non-zero naming the cause
(wrong Vyte key, unreachable Vyte, unreachable store, a bad setting), never printing a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from service.sandbox import SANDBOX_API_KEY
from tests.e2e.process import Process, free_port, start

if TYPE_CHECKING:
    from tests.tls_redis import TLSRedisServer

pytest_plugins = ("tests.tls_redis",)
pytestmark = pytest.mark.e2e

TOKEN = "check-test-token-5521"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = start(
        ["sandbox", "--port", "{port}"],
        tmp_path_factory.mktemp("sandbox"),
        {},
        "/_sandbox/stats",
        "sandbox",
    )
    yield process
    process.stop()


def run_check(tmp_path: Path, env: dict[str, str], *flags: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "service", "check", *flags],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == "", done.stderr
    return done.returncode, done.stdout.splitlines()


def good_env(tmp_path: Path, sandbox: Process) -> dict[str, str]:
    return {
        "VYTE_BASE_URL": sandbox.url,
        "VYTE_API_KEY": SANDBOX_API_KEY,
        "API_TOKENS": f"crm:{TOKEN}",
        "STORE_URL": f"sqlite:///{tmp_path}/check.sqlite3",
        "VYTE_TIMEOUT": "1",
        "REQUEST_BUDGET": "2",
    }


def line_of(lines: list[str], name: str) -> str:
    (line,) = [x for x in lines if x.startswith(name + ":")]
    return line


def test_a_good_setup_passes_every_check(tmp_path: Path, sandbox: Process) -> None:
    status, lines = run_check(tmp_path, good_env(tmp_path, sandbox))
    assert status == 0, lines
    assert [x.split(":", 1)[0] for x in lines] == ["settings", "store", "vyte"]
    assert all(": ok" in x for x in lines), lines
    assert sandbox.url + "/v2/auth/test" in line_of(lines, "vyte")


def test_a_wrong_vyte_key_is_named(tmp_path: Path, sandbox: Process) -> None:
    wrong = "not-the-sandbox-key-8812"
    status, lines = run_check(tmp_path, {**good_env(tmp_path, sandbox), "VYTE_API_KEY": wrong})
    assert status != 0
    vyte = line_of(lines, "vyte")
    assert "FAIL" in vyte and "refused VYTE_API_KEY (HTTP 401)" in vyte and "fix:" in vyte
    assert line_of(lines, "store").startswith("store: ok")
    assert wrong not in "\n".join(lines)


def test_an_unreachable_vyte_is_named(tmp_path: Path, sandbox: Process) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    status, lines = run_check(tmp_path, {**good_env(tmp_path, sandbox), "VYTE_BASE_URL": nowhere})
    assert status != 0
    vyte = line_of(lines, "vyte")
    assert vyte.startswith(f"vyte: FAIL: cannot reach {nowhere}/v2/auth/test"), vyte
    assert "VYTE_BASE_URL" in vyte


def test_an_init_container_may_start_through_a_vyte_outage_but_not_a_wrong_key(
    tmp_path: Path, sandbox: Process
) -> None:
    nowhere = {**good_env(tmp_path, sandbox), "VYTE_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    status, lines = run_check(tmp_path, nowhere, "--allow-vyte-outage")
    assert status == 0, lines
    assert line_of(lines, "vyte").startswith("vyte: WARN: cannot reach")
    wrong = {**good_env(tmp_path, sandbox), "VYTE_API_KEY": "not-the-sandbox-key-8812"}
    status, lines = run_check(tmp_path, wrong, "--allow-vyte-outage")
    assert status != 0
    assert line_of(lines, "vyte").startswith("vyte: FAIL: ")


def test_an_unreachable_store_is_named_without_its_password(
    tmp_path: Path, sandbox: Process
) -> None:
    port = free_port()
    env = {
        **good_env(tmp_path, sandbox),
        "STORE_URL": f"redis://:pw-4417-secret@127.0.0.1:{port}/0",
    }
    status, lines = run_check(tmp_path, env)
    assert status != 0
    store = line_of(lines, "store")
    assert store.startswith(f"store: FAIL: cannot use redis://127.0.0.1:{port}/0"), store
    assert "STORE_URL" in store
    assert line_of(lines, "vyte").startswith("vyte: ok")
    assert "pw-4417-secret" not in "\n".join(lines)


def test_bad_settings_are_named_and_the_rest_is_still_checked(
    tmp_path: Path, sandbox: Process
) -> None:
    env = {**good_env(tmp_path, sandbox), "PORT": "70000", "PUBLIC_URL": "http://gw.example.com"}
    del env["API_TOKENS"]
    status, lines = run_check(tmp_path, env)
    assert status != 0
    assert line_of(lines, "setting API_TOKENS") == (
        "setting API_TOKENS: FAIL: required unless --sandbox; fix: set API_TOKENS"
    )
    assert "https" in line_of(lines, "setting PUBLIC_URL")
    assert line_of(lines, "setting PORT").startswith("setting PORT: FAIL: must be between")
    # The same problems as `serve` refuses to start with.
    serve = subprocess.run(
        [sys.executable, "-m", "service", "serve"],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert serve.returncode != 0
    for name in ("API_TOKENS", "PUBLIC_URL", "PORT"):
        assert f"  {name}: " in serve.stderr
    assert line_of(lines, "store").startswith("store: ok")
    assert line_of(lines, "vyte").startswith("vyte: ok")


def test_a_tls_store_passes_and_its_password_stays_out(
    tmp_path: Path, sandbox: Process, tls_redis_server: TLSRedisServer
) -> None:
    from tests.tls_redis import PASSWORD

    env = {**good_env(tmp_path, sandbox), "STORE_URL": tls_redis_server.url()}
    status, lines = run_check(tmp_path, env)
    assert status == 0, lines
    assert line_of(lines, "store") == (
        f"store: ok (rediss://127.0.0.1:{tls_redis_server.port}/0 answers)"
    )
    without_ca = tls_redis_server.url(ssl_ca_certs="")
    status, lines = run_check(tmp_path, {**env, "STORE_URL": without_ca})
    assert status != 0
    store = line_of(lines, "store")
    assert store.startswith("store: FAIL: cannot use rediss://127.0.0.1"), store
    assert "certificate" in store.lower()
    for line in lines:
        assert PASSWORD not in line and "pass%40word" not in line
