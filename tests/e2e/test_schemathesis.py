"""Schemathesis against `booking-gateway serve --sandbox`: every operation of openapi.yaml, every
check but `positive_data_acceptance`, zero failures.

`positive_data_acceptance` stays off because the contract itself answers 400/422 to
schema-valid requests that break cross-field rules (`end` before `start`, neither `end` nor
`duration`) or name people Vyte does not know. Nothing else is excluded.

The run uses the spec as tests/contract.py checks answers against it: every object closed and
no `default` response, so an undeclared member or status still fails here although clients
are told to expect both (see `checked_document`).

The configuration is pinned here: a schemathesis.toml written to tmp_path and passed with
--config-file, the run started in tmp_path with a minimal environment, so no schemathesis.toml,
SCHEMATHESIS_* variable or example database in the tree changes what runs.

Two runs, each against a fresh process: the examples, coverage and fuzzing phases, then the
stateful phase alone. The request examples in the spec book seeded sandbox people on free
slots, and a slot can be booked once per process: on a fresh one the stateful phase creates
real bookings and follows the links from them (read, confirm, cancel), so the lifecycle checks
(ensure_resource_availability, use_after_free) run on real resources.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.config import SANDBOX_TOKEN
from tests.contract import checked_document, spec_document, spec_operations
from tests.e2e.process import Process, start

pytestmark = pytest.mark.e2e

HOOK_TOKEN = "schemathesis-hook-token"
SERVICE_ENV = {
    # Lets the inbound Vyte hook be exercised past its 404.
    "VYTE_WEBHOOK_TOKEN": HOOK_TOKEN,
    # Failed deliveries show up quickly, so retryDelivery meets real ones.
    "WEBHOOK_RETRY_SCHEDULE": "0.1,0.2",
    "RETRY_BASE": "0.1",
    "RETRY_CAP": "0.5",
}
CONFIG = f"""
seed = 20201001
workers = 1
color = false
continue-on-failure = true
request-timeout = 20

[cache]
enabled = false

[generation]
max-examples = 100
database = "none"

[checks]
positive_data_acceptance.enabled = false

[phases.stateful]
max-steps = 25

[parameters]
"path.token" = "{HOOK_TOKEN}"
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Process]:
    process = start(["serve", "--sandbox"], tmp_path, SERVICE_ENV)
    yield process
    process.stop()


def run_schemathesis(tmp_path: Path, url: str, phases: str) -> dict[str, Any]:
    """Run the CLI with the pinned configuration; return its JSON report and its events."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    # Answers are checked as strictly as the other tests check them: no undeclared member,
    # no status the spec does not list (clients get `default` and open objects instead).
    spec = tmp_path / "checked-openapi.json"
    spec.write_text(json.dumps(checked_document(), default=str))
    report = tmp_path / "report"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        str(spec),
        "--url",
        url,
        "--header",
        f"Authorization: Bearer {SANDBOX_TOKEN}",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--phases",
        phases,
        "--report",
        "json,ndjson",
        "--report-json-path",
        str(report / "run.json"),
        "--report-ndjson-path",
        str(report / "events.ndjson"),
        "--output-sanitize",
        "false",
    ]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "NO_COLOR": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20000:]
    summary: dict[str, Any] = json.loads((report / "run.json").read_text())
    assert summary["failures"] == [] and summary["errors"] == [], output[-20000:]
    assert summary["operations"]["selected"] == len(spec_operations())
    assert summary["operations"]["errored"] == 0
    for phase in phases.split(","):
        assert summary["phases"][phase]["status"] == "success", (phase, output[-20000:])
    summary["events"] = [
        json.loads(line) for line in (report / "events.ndjson").read_text().splitlines() if line
    ]
    return summary


def operation_of(method: str, path: str) -> str:
    """The operationId answering `method path` (a path the spec does not have: "unrouted")."""
    for template, item in spec_document()["paths"].items():
        pattern = re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in item:
            return str(item[method.lower()]["operationId"])
    return "unrouted"


def stateful_outcomes(events: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    """(operationId and status, e.g. "getBooking 200") and (check name) counts, stateful only."""
    calls: Counter[str] = Counter()
    checks: Counter[str] = Counter()
    for event in events:
        finished = event.get("ScenarioFinished")
        if finished is None or finished.get("phase") != "stateful":
            continue
        recorder = finished.get("recorder", {})
        for interaction in recorder.get("interactions", {}).values():
            response = interaction.get("response")
            if response is None:
                continue
            request = interaction["request"]
            path = "/" + request["uri"].split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
            calls[f"{operation_of(request['method'], path)} {response['status_code']}"] += 1
        for results in recorder.get("checks", {}).values():
            checks.update(r["name"] for r in results if r["status"] == "success")
    return calls, checks


def test_examples_coverage_and_fuzzing_find_nothing(tmp_path: Path, served: Process) -> None:
    run_schemathesis(tmp_path, served.url, "examples,coverage,fuzzing")


def test_stateful_phase_walks_real_resources(tmp_path: Path, served: Process) -> None:
    summary = run_schemathesis(tmp_path, served.url, "stateful")
    calls, checks = stateful_outcomes(summary["events"])
    reached = {c for c in calls if c.endswith((" 200", " 201", " 202", " 204"))}
    # Real bookings were created and then read, confirmed or cancelled through the links.
    assert "createBooking 201" in reached, calls
    assert "getBooking 200" in reached, calls
    assert {"confirmBooking 200", "cancelBooking 200"} & reached, calls
    # Subscriptions were created and deleted, async operations followed.
    assert {"createSubscription 201", "deleteSubscription 204"} <= reached, calls
    assert "getOperation 200" in reached, calls
    assert checks["ensure_resource_availability"] > 0 and checks["use_after_free"] > 0, checks
