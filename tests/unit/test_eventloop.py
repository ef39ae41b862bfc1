"""`serve`'s loop: uvloop when it imports, asyncio's own when it does not."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from service import eventloop


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_serve_runs_on_uvloop() -> None:
    assert eventloop.run(_loop_type()) is uvloop.Loop


def test_without_uvloop_asyncio_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    loop_type = eventloop.run(_loop_type())
    assert loop_type is not uvloop.Loop
    assert issubclass(loop_type, asyncio.BaseEventLoop)
