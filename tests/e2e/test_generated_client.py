"""A Python client generated from openapi.yaml (openapi-python-client, offline, into tmp_path)
runs the seed flow against `booking-gateway serve --sandbox`: availability -> create ->
confirm -> read. The generated code is never committed; this is how another team gets it."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from service.config import SANDBOX_TOKEN
from tests.conftest import JOHN
from tests.contract import SPEC_PATH
from tests.dates import at, meeting_day
from tests.e2e.process import Process, start

pytestmark = pytest.mark.e2e

PACKAGE = "booking_gateway_client"
# The same configuration the README gives other teams.
GENERATOR_CONFIG = f"""\
project_name_override: booking-gateway-client
package_name_override: {PACKAGE}
post_hooks: []
content_type_overrides:
  application/yaml: text/plain
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Process]:
    process = start(["serve", "--sandbox"], tmp_path)
    yield process
    process.stop()


@pytest.fixture
def client_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Generate the client from openapi.yaml into tmp_path and import it from there."""
    config = tmp_path / "client-config.yaml"
    config.write_text(GENERATOR_CONFIG)
    root = tmp_path / "generated"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(SPEC_PATH),
            "--meta",
            "none",
            "--config",
            str(config),
            "--output-path",
            str(root / PACKAGE),
            "--fail-on-warning",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    monkeypatch.syspath_prepend(str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def load(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_seed_flow_through_the_generated_client(
    client_package: ModuleType, served: Process
) -> None:
    get_availability = load("api.availability.get_availability")
    bookings = {n: load(f"api.bookings.{n}") for n in ("create_booking", "confirm_booking")}
    get_booking = load("api.bookings.get_booking")
    get_operation = load("api.operations.get_operation")
    models = load("models")

    # Bodies are typed models, not Any (the trap of a oneOf between two `required` lists).
    hints = typing.get_type_hints(bookings["create_booking"].sync)
    assert hints["body"] is models.BookingRequest

    client = client_package.AuthenticatedClient(base_url=served.url, token=SANDBOX_TOKEN)
    with client:
        # 1. When is John Doe free for an hour on two days next week (Paris)?
        first, second = meeting_day(), meeting_day() + timedelta(days=1)
        answer = get_availability.sync(
            client=client,
            participants=JOHN,
            duration=60,
            from_=first,
            to=second,
            timezone="Europe/Paris",
        )
        assert isinstance(answer, models.Availability), answer
        assert answer.complete is True
        assert [p.id for p in answer.participants] == [JOHN]
        assert answer.slots[0].start == at(first, "00:00", "Europe/Paris")
        # 2. Choose one: 10:00-11:00 on the first day.
        chosen = next(s for s in answer.slots if s.start.hour == 10)

        # 3. Create the event (vyteme), safely retryable.
        request = models.BookingRequest(
            organizer=JOHN,
            title="Meeting with Quentin Tarantino",
            start=chosen.start,
            end=chosen.end,
            timezone="Europe/Paris",
            invitees=[
                models.InviteeRequest(
                    email="quentin.tarantino@hollywood.com", full_name="Quentin Tarantino"
                )
            ],
            place=models.PlaceRequest(name="Place for the meeting."),
        )
        created = bookings["create_booking"].sync_detailed(
            client=client, body=request, idempotency_key="seed-flow-1"
        )
        assert created.status_code == 201, created.content
        booking = created.parsed
        assert isinstance(booking, models.Booking)
        assert booking.status == models.BookingStatus.REQUESTED and booking.version == 1
        assert (booking.start, booking.end) == (chosen.start, chosen.end)
        assert created.headers["Location"] == f"/v1/bookings/{booking.id}"
        replay = bookings["create_booking"].sync_detailed(
            client=client, body=request, idempotency_key="seed-flow-1"
        )
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.parsed == booking

        # 4. Confirm it, then read it back.
        confirmed = bookings["confirm_booking"].sync(client=client, booking_id=booking.id)
        assert isinstance(confirmed, models.Booking)
        assert (confirmed.status, confirmed.version) == (models.BookingStatus.CONFIRMED, 2)
        read = get_booking.sync(client=client, booking_id=booking.id)
        assert read == confirmed

        # Errors come back typed as problems.
        missing = get_booking.sync(client=client, booking_id="0" * 24)
        assert isinstance(missing, models.Problem)
        assert (missing.status, missing.type_) == (404, "/problems/not-found")
        taken = bookings["create_booking"].sync(client=client, body=request)
        assert isinstance(taken, models.Problem) and taken.type_ == "/problems/slot-unavailable"

        # The same flow, asynchronously: 202 with an operation to follow.
        later = models.BookingRequest(
            organizer=JOHN,
            title="Follow-up",
            start=at(second, "15:00", "Europe/Paris"),
            duration=30,
            timezone="Europe/Paris",
            invitees=request.invitees,
        )
        accepted = bookings["create_booking"].sync_detailed(
            client=client, body=later, prefer="respond-async"
        )
        assert accepted.status_code == 202, accepted.content
        operation = accepted.parsed
        assert isinstance(operation, models.Operation)
        assert accepted.headers["Location"] == f"/v1/operations/{operation.id}"
        deadline = time.monotonic() + 15
        while operation.status == models.OperationStatus.PENDING:
            assert time.monotonic() < deadline, operation
            time.sleep(0.1)
            operation = get_operation.sync(client=client, operation_id=operation.id)
            assert isinstance(operation, models.Operation)
        assert operation.status == models.OperationStatus.SUCCEEDED, operation.last_error
        made = get_booking.sync(client=client, booking_id=operation.booking_id)
        assert isinstance(made, models.Booking) and made.title == "Follow-up"
