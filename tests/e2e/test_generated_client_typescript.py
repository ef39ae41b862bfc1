"""TypeScript clients from openapi.yaml: openapi-typescript types used through openapi-fetch,
and openapi-generator's typescript-fetch client. Both outputs and a seed-flow script for each
(tests/e2e/typescript/) pass `tsc --strict --noEmit`; the scripts are then compiled and run
with node against `booking-gateway serve --sandbox`. Skipped without node, the npm packages
or a Java runtime (failed instead with REQUIRE_GENERATORS=1, as in CI)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import SANDBOX_TOKEN
from tests.contract import SPEC_PATH
from tests.e2e.generators import (
    NODE_BIN,
    TYPESCRIPT_DIR,
    node_tool,
    openapi_generator,
    run,
)
from tests.e2e.process import Process, start

pytestmark = pytest.mark.e2e

TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "target": "es2022",
        "module": "node16",
        "moduleResolution": "node16",
        "lib": ["es2022", "dom"],
        "types": [],
        "outDir": "out",
    },
    "include": ["*.ts", "fetch/**/*.ts"],
}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Process]:
    process = start(["serve", "--sandbox"], tmp_path)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both generated clients and the flow scripts, in one TypeScript project."""
    tmp_path = tmp_path_factory.mktemp("typescript")
    tsc, openapi_typescript = node_tool("tsc"), node_tool("openapi-typescript")
    generator = openapi_generator()
    root = tmp_path / "ts"
    shutil.copytree(TYPESCRIPT_DIR, root)
    (root / "node_modules").symlink_to(NODE_BIN.parent)
    run([openapi_typescript, SPEC_PATH, "--output", root / "schema.d.ts"], cwd=root)
    run(
        [generator, "generate", "-g", "typescript-fetch", "-i", SPEC_PATH, "-o", root / "fetch"],
        cwd=root,
    )
    (root / "tsconfig.json").write_text(json.dumps(TSCONFIG, indent=2))
    run([tsc, "--strict", "--noEmit", "-p", root], cwd=root)
    return root


def test_generated_types_say_what_the_contract_says(project: Path) -> None:
    schema = (project / "schema.d.ts").read_text()
    fetch_client = project / "fetch"
    # No client method for a webhook (they are callbacks), no model from a `not`.
    assert sorted(p.name for p in (fetch_client / "apis").glob("*Api.ts")) == [
        "AvailabilityApi.ts",
        "BookingsApi.ts",
        "DeliveriesApi.ts",
        "HealthApi.ts",
        "OperationsApi.ts",
        "SubscriptionsApi.ts",
        "VyteApi.ts",
    ]
    assert not (fetch_client / "models" / "BookingRequestNot.ts").exists()
    # The default server is the service's own default address.
    assert 'BASE_PATH = "http://127.0.0.1:8080"' in (fetch_client / "runtime.ts").read_text()
    # Fields the gateway fills in stay optional in the request type.
    request = schema.split("BookingRequest: {", 1)[1].split("\n        };", 1)[0]
    assert "timezone?: string;" in request and "check_availability?: boolean;" in request


def test_flows_run_against_the_service(project: Path, served: Process) -> None:
    run([NODE_BIN / "tsc", "-p", project], cwd=project)
    node = shutil.which("node")
    assert node is not None
    env = {**os.environ, "BASE_URL": served.url, "TOKEN": SANDBOX_TOKEN}
    for script in ("openapi_fetch_flow", "typescript_fetch_flow"):
        output = run([node, project / "out" / f"{script}.js"], project, timeout=120, env=env)
        assert output.strip().endswith("flow ok"), (script, output)
