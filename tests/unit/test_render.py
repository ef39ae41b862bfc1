"""Answer bodies: orjson writes the standard library's compact JSON; refusals still render."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from service.http import render

# The trees answers are made of: text (any, non-ASCII included), 64-bit integers, booleans,
# None, lists and objects with text keys.
_LEAVES = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.none(),
)
_TREES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_TREES)
def test_the_same_json_as_the_standard_library(tree: Any) -> None:
    rendered = render.dumps(tree)
    assert json.loads(rendered) == tree
    # Byte for byte the compact form, once non-ASCII text is written as UTF-8.
    compact = json.dumps(tree, separators=(",", ":"), ensure_ascii=False).encode()
    assert rendered == compact


def test_what_orjson_refuses_still_renders() -> None:
    huge = {"n": 2**70, "keys": {1: "one"}}
    assert json.loads(render.dumps(huge)) == {"n": 2**70, "keys": {"1": "one"}}


def test_the_response_is_utf8_json() -> None:
    response = render.json_response({"name": "Zoë"}, status=201, headers={"X-A": "b"})
    assert response.status == 201
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["X-A"] == "b"
    assert response.body == '{"name":"Zoë"}'.encode()
