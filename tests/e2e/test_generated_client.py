"""A Python client generated from openapi.yaml (openapi-python-client, offline, into tmp_path)
runs the seed flow (tests/e2e/seed_flow.py) against `booking-gateway serve --sandbox`. The
generated code is never committed; this is how another team gets it."""

from __future__ import annotations

import importlib
import subprocess
import sys
import typing
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from service.config import SANDBOX_TOKEN
from tests.contract import SPEC_PATH
from tests.e2e.process import Process, start
from tests.e2e.seed_flow import Answer, BookingView, run_seed_flow

pytestmark = pytest.mark.e2e

PACKAGE = "booking_gateway_client"
# The same configuration docs/clients.md gives other teams: the document is YAML text.
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


class OpenApiPythonClientFlow:
    """The seed flow's calls, through openapi-python-client's typed functions and models."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.models = load("models")
        self.api = {
            name: load(f"api.{tag}.{name}")
            for tag, name in [
                ("health", "get_open_api_document"),
                ("availability", "get_availability"),
                ("bookings", "create_booking"),
                ("bookings", "get_booking"),
                ("bookings", "confirm_booking"),
                ("bookings", "cancel_booking"),
                ("bookings", "reschedule_booking"),
                ("bookings", "list_bookings"),
                ("operations", "get_operation"),
            ]
        }

    def answer(self, response: Any) -> Answer:
        headers = {k.lower(): v for k, v in response.headers.items()}
        parsed, models = response.parsed, self.models
        if isinstance(parsed, models.Problem):
            assert parsed.status == response.status_code
            return Answer(response.status_code, headers, problem=(parsed.status, parsed.type_))
        if isinstance(parsed, models.Operation):
            assert isinstance(parsed.status, models.OperationStatus)
            booking_id = parsed.booking_id if isinstance(parsed.booking_id, str) else None
            operation = (parsed.id, parsed.status.value, booking_id)
            return Answer(response.status_code, headers, operation=operation)
        assert isinstance(parsed, models.Booking), response
        return Answer(response.status_code, headers, booking=self.view(parsed))

    def view(self, parsed: Any) -> BookingView:
        assert isinstance(parsed.status, self.models.BookingStatus)
        return BookingView(
            parsed.id, parsed.status.value, parsed.version, parsed.title, parsed.start, parsed.end
        )

    def openapi_document(self) -> str:
        text = self.api["get_open_api_document"].sync(client=self.client)
        assert isinstance(text, str)
        return text

    def availability(
        self, participant: str, first: date, last: date, timezone: str, duration: int
    ) -> list[tuple[datetime, datetime]]:
        answer = self.api["get_availability"].sync(
            client=self.client,
            participants=participant,
            duration=duration,
            from_=first,
            to=last,
            timezone=timezone,
        )
        assert isinstance(answer, self.models.Availability), answer
        assert answer.complete is True
        assert [p.id for p in answer.participants] == [participant]
        return [(slot.start, slot.end) for slot in answer.slots]

    def create(
        self,
        body: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        respond_async: bool = False,
    ) -> Answer:
        models = self.models
        request = models.BookingRequest(
            organizer=body["organizer"],
            title=body["title"],
            start=body["start"],
            end=body["end"],
            timezone=body["timezone"],
            invitees=[models.InviteeRequest(**i) for i in body["invitees"]],
            place=models.PlaceRequest(**body["place"]),
        )
        extra = {"idempotency_key": idempotency_key} if idempotency_key else {}
        if respond_async:
            extra["prefer"] = "respond-async"
        return self.answer(
            self.api["create_booking"].sync_detailed(client=self.client, body=request, **extra)
        )

    def operation(self, operation_id: str) -> Answer:
        call = self.api["get_operation"].sync_detailed
        return self.answer(call(client=self.client, operation_id=operation_id))

    def get(self, booking_id: str) -> Answer:
        call = self.api["get_booking"].sync_detailed
        return self.answer(call(client=self.client, booking_id=booking_id))

    def confirm(self, booking_id: str) -> Answer:
        call = self.api["confirm_booking"].sync_detailed
        return self.answer(call(client=self.client, booking_id=booking_id))

    def cancel(self, booking_id: str) -> Answer:
        call = self.api["cancel_booking"].sync_detailed
        return self.answer(call(client=self.client, booking_id=booking_id))

    def reschedule(self, booking_id: str, start: datetime, end: datetime) -> Answer:
        call = self.api["reschedule_booking"].sync_detailed
        body = self.models.RescheduleRequest(start=start, end=end)
        return self.answer(call(client=self.client, booking_id=booking_id, body=body))

    def listing(self, limit: int, cursor: str | None) -> tuple[list[BookingView], str | None]:
        extra = {"cursor": cursor} if cursor is not None else {}
        page = self.api["list_bookings"].sync(client=self.client, limit=limit, **extra)
        assert isinstance(page, self.models.BookingList), page
        following = page.next_cursor if isinstance(page.next_cursor, str) else None
        return [self.view(b) for b in page.bookings], following


def test_seed_flow_through_openapi_python_client(
    client_package: ModuleType, served: Process
) -> None:
    models = load("models")
    create_booking = load("api.bookings.create_booking")
    # Bodies are typed models, not Any (the trap of a oneOf between two `required` lists);
    # 201 and 202 are typed apart.
    hints = typing.get_type_hints(create_booking.sync_detailed)
    assert hints["body"] is models.BookingRequest
    parsed = set(typing.get_args(typing.get_type_hints(create_booking._parse_response)["return"]))
    assert {models.Booking, models.Operation, models.Problem} <= parsed
    # Fields the gateway fills in are optional in the request model.
    minimal = models.BookingRequest(
        organizer="x@example.com", title="t", start=datetime.now(UTC), invitees=[]
    )
    assert "timezone" not in minimal.to_dict() and "check_availability" not in minimal.to_dict()

    client = client_package.AuthenticatedClient(base_url=served.url, token=SANDBOX_TOKEN)
    with client:
        run_seed_flow(OpenApiPythonClientFlow(client), "openapi-python-client")
