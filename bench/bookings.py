"""Bookings: create and confirm through the gateway, minus the sandbox's own latency.

Each round books one hour for John Doe through the gateway (``POST /v1/bookings`` with an
Idempotency-Key and the default availability check, then ``POST /v1/bookings/{id}/confirm``),
and then makes the same upstream calls the gateway makes, straight to the sandbox: the fresh
``GET /v2/slots`` and ``POST /v2/events`` of a create, ``POST /v2/events/{id}/confirm`` of a
confirm. Rounds alternate, so both see the sandbox in the same state. The difference is the
gateway's overhead: validation, holds, idempotency, store writes, outbox, logging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp

from bench import harness
from bench.harness import AUTH, VYTE_AUTH, Call, Server, ms, percentile

ORGANIZER = "5f3feb7821046c3bb9327e6a"  # John Doe: free around the clock in the seed
ZONE = "Europe/Paris"
GATEWAY_FIRST = harness.midnight(harness.monday_in(26) + timedelta(days=1))
DIRECT_FIRST = harness.midnight(harness.monday_in(40))
INVITEES = [{"full_name": "Quentin Tarantino", "email": "quentin.tarantino@hollywood.com"}]


def _vyte_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def _ok(session: aiohttp.ClientSession, call: Call, expect: int) -> harness.Answer:
    answer = await harness.send(session, call, want_json=True)
    if answer.status != expect:
        raise RuntimeError(f"{call.method} {call.url} answered {answer.status}: {answer.data}")
    return answer


async def _through_gateway(
    session: aiohttp.ClientSession, gateway: Server, index: int, start: datetime
) -> tuple[float, float]:
    body = {
        "organizer": ORGANIZER,
        "title": f"Bench booking {index}",
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
        "timezone": ZONE,
        "invitees": INVITEES,
        "place": {"name": "Place for the meeting."},
    }
    headers = {**AUTH, "Idempotency-Key": f"bench-{index}"}
    created = await _ok(session, Call("POST", gateway.url + "/v1/bookings", headers, body), 201)
    confirm_url = f"{gateway.url}/v1/bookings/{created.data['id']}/confirm"
    confirmed = await _ok(session, Call("POST", confirm_url, AUTH), 200)
    return created.seconds, confirmed.seconds


async def _direct(
    session: aiohttp.ClientSession, sandbox: Server, index: int, start: datetime
) -> tuple[float, float]:
    """The upstream calls of one create and one confirm, timed as the gateway would see them."""
    end = start + timedelta(hours=1)
    zone = ZoneInfo(ZONE)
    query = {
        "duration": "60",
        "from": start.astimezone(zone).date().isoformat(),
        "to": end.astimezone(zone).date().isoformat(),
        "timezone": ZONE,
        "users": ORGANIZER,
    }
    event: dict[str, Any] = {
        "title": f"Bench direct {index}",
        "created_by": {"user": ORGANIZER},
        "dates": [{"date": _vyte_time(start), "end_date": _vyte_time(end), "all_day": False}],
        "invitees": [{**i, "phone": None} for i in INVITEES],
        "places": [{"name": "Place for the meeting.", "address": None}],
        "messages": [],
        "timezone": ZONE,
        "vyteme": True,
    }
    started = time.perf_counter()
    await _ok(session, Call("GET", f"{sandbox.url}/v2/slots?{urlencode(query)}", VYTE_AUTH), 200)
    created = await _ok(session, Call("POST", sandbox.url + "/v2/events", VYTE_AUTH, event), 201)
    create_seconds = time.perf_counter() - started
    confirm_url = f"{sandbox.url}/v2/events/{created.data['_id']}/confirm"
    confirmed = await _ok(session, Call("POST", confirm_url, VYTE_AUTH), 200)
    return create_seconds, confirmed.seconds


async def measure(rounds: int) -> dict[str, float]:
    gateway_create: list[float] = []
    gateway_confirm: list[float] = []
    direct_create: list[float] = []
    direct_confirm: list[float] = []
    with harness.stack() as running:
        async with harness.client(4) as session:
            for index in range(-3, rounds):  # three unrecorded rounds warm both paths up
                offset = timedelta(hours=2 * (index + 3))
                gw = await _through_gateway(session, running.gateway, index, GATEWAY_FIRST + offset)
                up = await _direct(session, running.sandbox, index, DIRECT_FIRST + offset)
                if index >= 0:
                    gateway_create.append(gw[0])
                    gateway_confirm.append(gw[1])
                    direct_create.append(up[0])
                    direct_confirm.append(up[1])
    headline: dict[str, float] = {}
    rows = []
    for name, through, direct in (
        ("create", gateway_create, direct_create),
        ("confirm", gateway_confirm, direct_confirm),
    ):
        p50 = percentile(through, 50) - percentile(direct, 50)
        p99 = percentile(through, 99) - percentile(direct, 99)
        rows.append(
            (
                name,
                ms(percentile(through, 50)),
                ms(percentile(through, 99)),
                ms(percentile(direct, 50)),
                ms(percentile(direct, 99)),
                f"**{ms(p50)}**",
                f"**{ms(p99)}**",
                f"{percentile(through, 50) / percentile(direct, 50):.1f}",
            )
        )
        headline[f"{name}_overhead_p50_ms"] = p50 * 1e3
        headline[f"{name}_overhead_p99_ms"] = p99 * 1e3
    print(
        harness.table(
            (
                "operation",
                "gateway p50 ms",
                "gateway p99 ms",
                "sandbox alone p50 ms",
                "sandbox alone p99 ms",
                "overhead p50 ms",
                "overhead p99 ms",
                "gateway / sandbox (p50)",
            ),
            rows,
            "l",
        )
    )
    print()
    print(
        f"{rounds} bookings, one at a time; 'sandbox alone' is GET /v2/slots + POST /v2/events"
        " for a create and POST /v2/events/{id}/confirm for a confirm, sent by the benchmark"
        " client. Overhead = gateway - sandbox alone, per percentile."
    )
    return headline


def run(quick: bool = False) -> dict[str, float]:
    print("## 4. Bookings (gateway overhead on create and confirm)\n")
    return asyncio.run(measure(20 if quick else 400))


def main(argv: Sequence[str] | None = None) -> None:
    harness.quick_cli(run, __doc__, argv)


if __name__ == "__main__":
    main()
