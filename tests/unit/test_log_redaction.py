"""The redactor's one-search fast path removes exactly what its patterns remove, no less."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.logging import _SECRET_SHAPES, _SHAPE_TRIGGERS, REDACTED, Redactor

SECRETS = ["s3cret-value", "K3y+With.Dots", "abcd"]

# Text built from the pieces every pattern looks for, in any case and order, with noise between.
_PIECES = st.sampled_from(
    [
        "Bearer ",
        "bearer\t",
        "BEARER  ",
        "xbearer ",
        "whsec_",
        "whsec",
        "/v1/vyte/webhooks/",
        "/v1/vyte/webhooks/{token}",
        "/v1/vyte/webhook/",
        *SECRETS,
        "s3cret",
        "ABCD",
        "tok_0123456789",
        "?",
        "/",
        " ",
        '"',
        ",",
        "é",
    ]
)
_TEXT = st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=12).map("".join)


def _scrub_every_pattern(text: str) -> str:
    """What `scrub` did before the fast path: every substitution, always."""
    known = re.compile("|".join(map(re.escape, sorted(SECRETS, key=len, reverse=True))))
    text = known.sub(REDACTED, text)
    for pattern, replacement in _SECRET_SHAPES:
        text = pattern.sub(replacement, text)
    return text


@given(_TEXT)
@settings(max_examples=500)
@example("x bearer\ttok_0123456789 y")
@example("BEARER  abcdefgh12, Bearer short")
@example('{"hook": "/v1/vyte/webhooks/tok_9?x=1", "tmpl": "/v1/vyte/webhooks/{token}"}')
@example("whsec_QUJD and K3y+With.Dots and ABCD and abcd")
def test_the_fast_path_changes_nothing_the_patterns_would_change(text: str) -> None:
    assert Redactor(SECRETS).scrub(text) == _scrub_every_pattern(text)


def test_each_trigger_precedes_a_pattern_match() -> None:
    # One trigger per shape, in order: a shape can only match where its trigger does.
    assert len(_SHAPE_TRIGGERS) == len(_SECRET_SHAPES)
    samples = ["Bearer abcdefgh12", "whsec_QUJD", "/v1/vyte/webhooks/tok_9"]
    for trigger, (pattern, _), sample in zip(_SHAPE_TRIGGERS, _SECRET_SHAPES, samples, strict=True):
        assert pattern.search(sample) is not None
        assert re.search(trigger, sample) is not None


def test_keys_are_judged_the_same_the_second_time() -> None:
    redact = Redactor(SECRETS)
    for _ in range(2):
        event = redact(None, "info", {"api_key": "x", "caller": "alpha", "status": 200})
        assert event == {"api_key": REDACTED, "caller": "alpha", "status": 200}


_KEYS = st.sampled_from(
    ["event", "path", "route", "request_id", "caller", "token", "api_key", "detail", "_record"]
)
_VALUES = st.one_of(
    _TEXT,
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(_TEXT, max_size=2),
    st.dictionaries(st.sampled_from(["authorization", "note"]), _TEXT, max_size=2),
    st.binary(max_size=8),
)


@given(st.dictionaries(_KEYS, _VALUES, max_size=8))
@settings(max_examples=500)
@example({"event": "request", "path": "/v1/vyte/webhooks/tok_9", "status": 401})
@example({"event": "bearer", "detail": "abcdefgh12"})  # a trigger across two joined texts
@example({"event": "request", "token": None, "caller": "alpha"})
def test_the_whole_event_check_redacts_as_each_field_would(event: dict[str, object]) -> None:
    """An event the one-search check passes as clean is the one every field leaves alone."""
    field_by_field = {
        k: v if k.startswith("_") else Redactor(SECRETS)._value(k, v) for k, v in event.items()
    }
    assert Redactor(SECRETS)(None, "info", dict(event)) == field_by_field


def test_an_event_with_nothing_secret_is_returned_as_it_came() -> None:
    event = {
        "event": "request",
        "path": "/livez",
        "status": 200,
        "duration_ms": 0.1,
        "caller": None,
    }
    assert Redactor(SECRETS)(None, "info", dict(event)) == event
    assert Redactor(SECRETS)._clean(event)
    assert not Redactor(SECRETS)._clean({**event, "path": "/x?key=s3cret-value"})
    assert not Redactor(SECRETS)._clean({**event, "token": "anything"})
