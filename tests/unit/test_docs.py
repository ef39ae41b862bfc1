"""docs/: the configuration page names every variable the code reads, the problem table
matches the spec's registry, links between pages resolve, and the Python webhook check in
docs/webhooks.md accepts what the gateway signs and refuses anything else."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.domain.signatures import signature_header
from tests.contract import spec_document

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def code_block(page: str, language: str) -> str:
    (block,) = re.findall(rf"```{language}\n(.*?)```", (DOCS / page).read_text(), re.S)
    return str(block)


def test_every_variable_the_code_reads_is_documented() -> None:
    source = (ROOT / "service" / "config.py").read_text()
    read = set(re.findall(r'get\(\s*"([A-Z][A-Z0-9_]+)"', source))
    assert {"STORE_URL", "API_TOKENS", "WEBHOOK_SECRET"} <= read  # the pattern still finds them
    documented = set(
        re.findall(r"^\| `([A-Z][A-Z0-9_*]+)` \|", (DOCS / "configuration.md").read_text(), re.M)
    )
    assert read - documented == set()


def test_the_problem_table_is_the_registry() -> None:
    registry = spec_document()["components"]["schemas"]["Problem"]["x-problem-types"]
    rows = re.findall(r"^\| `/problems/([a-z-]+)` \| (\d+)", (DOCS / "api.md").read_text(), re.M)
    assert {slug: int(status) for slug, status in rows} == {
        slug: entry["status"] for slug, entry in registry.items()
    }


def test_links_between_pages_resolve() -> None:
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), (page.name, target)
    readme = (ROOT / "README.md").read_text()
    assert "docs/" in readme


SECRET = "whsec_" + base64.b64encode(b"a secret of thirty-two bytes....").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the secret before the rotation").decode()
BODY = '{"type":"booking.confirmed","timestamp":"2030-01-01T10:00:00+00:00","data":{"id":"x"}}'


def signed(body: str, *secrets: str, at: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if at is None else at
    keys = [base64.b64decode(s.removeprefix("whsec_")) for s in secrets]
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(keys, "msg_1", timestamp, body),
    }


@pytest.fixture(scope="module")
def verify_webhook() -> Callable[..., dict[str, Any]]:
    namespace: dict[str, Any] = {}
    exec(compile(code_block("webhooks.md", "python"), "docs/webhooks.md", "exec"), namespace)  # noqa: S102 - the page's own snippet
    verify: Callable[..., dict[str, Any]] = namespace["verify_webhook"]
    return verify


def test_the_python_snippet_accepts_what_the_gateway_signs(
    verify_webhook: Callable[..., dict[str, Any]],
) -> None:
    assert (
        verify_webhook(SECRET, signed(BODY, SECRET), BODY.encode())["type"] == "booking.confirmed"
    )
    # During a rotation the gateway signs with both: either secret verifies.
    rotation = signed(BODY, OLD_SECRET, SECRET)
    assert verify_webhook(SECRET, rotation, BODY.encode())["data"] == {"id": "x"}
    assert verify_webhook(OLD_SECRET, rotation, BODY.encode())["data"] == {"id": "x"}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (signed(BODY, SECRET), BODY.replace("confirmed", "cancelled")),  # tampered body
        (signed(BODY, OLD_SECRET), BODY),  # another secret
        (signed(BODY, SECRET, at=int(time.time()) - 3600), BODY),  # replayed an hour later
        ({**signed(BODY, SECRET), "webhook-signature": ""}, BODY),  # unsigned
        ({**signed(BODY, SECRET), "webhook-id": "msg_2"}, BODY),  # id not the signed one
    ],
)
def test_the_python_snippet_refuses_anything_else(
    verify_webhook: Callable[..., dict[str, Any]], headers: dict[str, str], body: str
) -> None:
    with pytest.raises(ValueError, match="webhook"):
        verify_webhook(SECRET, headers, body.encode())
