"""openapi-generator's `python` client, generated from openapi.yaml into tmp_path, compiles and
runs the seed flow (tests/e2e/seed_flow.py) against `booking-gateway serve --sandbox`; and
`openapi-generator validate` finds nothing to say about the spec. Skipped without a Java
runtime (failed instead with REQUIRE_GENERATORS=1, as in CI)."""

from __future__ import annotations

import compileall
import importlib
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from service.config import SANDBOX_TOKEN
from tests.contract import SPEC_PATH
from tests.e2e.generators import openapi_generator, run
from tests.e2e.process import Process, start
from tests.e2e.seed_flow import Answer, BookingView, run_seed_flow

pytestmark = pytest.mark.e2e

PACKAGE = "booking_gateway_og_client"
NO_DOCS_OR_TESTS = "apiTests=false,modelTests=false,apiDocs=false,modelDocs=false"


def test_openapi_generator_validate_has_nothing_to_say(tmp_path: Path) -> None:
    output = run([openapi_generator(), "validate", "-i", SPEC_PATH], cwd=tmp_path)
    assert "No validation issues detected." in output, output


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Process]:
    process = start(["serve", "--sandbox"], tmp_path)
    yield process
    process.stop()


@pytest.fixture
def og_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    root = tmp_path / "og-python"
    run(
        [
            openapi_generator(),
            "generate",
            "-i",
            SPEC_PATH,
            "-g",
            "python",
            "-o",
            root,
            "--package-name",
            PACKAGE,
            "--global-property",
            NO_DOCS_OR_TESTS,
        ],
        cwd=tmp_path,
    )
    # No client method for a webhook (they are callbacks), and every file compiles.
    api_modules = {p.stem for p in (root / PACKAGE / "api").glob("*_api.py")}
    assert "default_api" not in api_modules, api_modules
    assert compileall.compile_dir(root / PACKAGE, quiet=1, force=True)
    monkeypatch.syspath_prepend(str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


class OpenApiGeneratorFlow:
    """The seed flow's calls, through openapi-generator's typed API classes and models."""

    def __init__(self, package: Any, api_client: Any) -> None:
        self.package = package
        self.health = package.HealthApi(api_client)
        self.availability_api = package.AvailabilityApi(api_client)
        self.bookings = package.BookingsApi(api_client)
        self.operations = package.OperationsApi(api_client)

    def call(self, method: Any, **arguments: Any) -> Answer:
        package = self.package
        try:
            response = method(**arguments)
        except package.ApiException as err:
            problem = err.data
            assert isinstance(problem, package.Problem), err
            assert problem.status == err.status
            headers = {k.lower(): v for k, v in (err.headers or {}).items()}
            return Answer(err.status, headers, problem=(problem.status, problem.type))
        headers = {k.lower(): v for k, v in (response.headers or {}).items()}
        data, status = response.data, response.status_code
        # The API class is annotated with the 201 type, but each status is parsed as its own.
        if status == 202:
            assert isinstance(data, package.Operation), data
        if isinstance(data, package.Operation):
            # An inline enum is a validated str here (a component enum is a class).
            assert isinstance(data.status, str)
            return Answer(status, headers, operation=(data.id, data.status, data.booking_id))
        assert isinstance(data, package.Booking), data
        return Answer(status, headers, booking=self.view(data))

    def view(self, data: Any) -> BookingView:
        assert isinstance(data.status, self.package.BookingStatus)
        return BookingView(
            data.id, data.status.value, data.version, data.title, data.start, data.end
        )

    def openapi_document(self) -> str:
        # The generated deserializer knows JSON and text/*, not application/yaml: the raw
        # answer is the way to the text.
        raw = self.health.get_open_api_document_without_preload_content()
        assert raw.status == 200 and raw.headers["Content-Type"] == "application/yaml"
        return str(raw.data.decode())

    def availability(
        self, participant: str, first: date, last: date, timezone: str, duration: int
    ) -> list[tuple[datetime, datetime]]:
        answer = self.availability_api.get_availability(
            participants=participant,
            duration=duration,
            var_from=first,
            to=last,
            timezone=timezone,
        )
        assert isinstance(answer, self.package.Availability), answer
        assert answer.complete is True
        assert [p.id for p in answer.participants] == [participant]
        return [(slot.start, slot.end) for slot in answer.slots or []]

    def create(
        self,
        body: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        respond_async: bool = False,
    ) -> Answer:
        package = self.package
        request = package.BookingRequest(
            organizer=body["organizer"],
            title=body["title"],
            start=body["start"],
            end=body["end"],
            timezone=body["timezone"],
            invitees=[package.InviteeRequest(**i) for i in body["invitees"]],
            place=package.PlaceRequest(**body["place"]),
        )
        return self.call(
            self.bookings.create_booking_with_http_info,
            booking_request=request,
            idempotency_key=idempotency_key,
            prefer="respond-async" if respond_async else None,
        )

    def operation(self, operation_id: str) -> Answer:
        return self.call(self.operations.get_operation_with_http_info, operation_id=operation_id)

    def get(self, booking_id: str) -> Answer:
        return self.call(self.bookings.get_booking_with_http_info, booking_id=booking_id)

    def confirm(self, booking_id: str) -> Answer:
        return self.call(self.bookings.confirm_booking_with_http_info, booking_id=booking_id)

    def cancel(self, booking_id: str) -> Answer:
        return self.call(self.bookings.cancel_booking_with_http_info, booking_id=booking_id)

    def reschedule(self, booking_id: str, start: datetime, end: datetime) -> Answer:
        return self.call(
            self.bookings.reschedule_booking_with_http_info,
            booking_id=booking_id,
            reschedule_request=self.package.RescheduleRequest(start=start, end=end),
        )

    def listing(self, limit: int, cursor: str | None) -> tuple[list[BookingView], str | None]:
        page = self.bookings.list_bookings(limit=limit, cursor=cursor)
        assert isinstance(page, self.package.BookingList), page
        return [self.view(b) for b in page.bookings], page.next_cursor


def test_seed_flow_through_openapi_generator_python(og_package: Any, served: Process) -> None:
    # The default server is the service's default address; a caller points it elsewhere.
    assert og_package.Configuration().host == "http://127.0.0.1:8080"
    # No model comes out of schema keywords that are not data (BookingRequest's old `not`).
    assert not hasattr(og_package, "BookingRequestNot")
    minimal = og_package.BookingRequest.from_dict(
        {"organizer": "x@example.com", "title": "t", "start": "2030-01-01T10:00:00Z"}
        | {"invitees": [{"email": "x@example.com"}], "duration": 30}
    )
    assert minimal is not None and "timezone" not in minimal.to_dict()
    configuration = og_package.Configuration(host=served.url, access_token=SANDBOX_TOKEN)
    with og_package.ApiClient(configuration) as api_client:
        run_seed_flow(OpenApiGeneratorFlow(og_package, api_client), "openapi-generator")
