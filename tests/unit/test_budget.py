"""The request budget: a deadline set for the code inside, the tighter one kept, reset after."""

from __future__ import annotations

import pytest

from service.budget import budget, remaining


def test_a_budget_holds_inside_and_ends_with_its_block() -> None:
    assert remaining(99.0) == 99.0
    with budget(5.0):
        assert 4.0 < remaining(99.0) <= 5.0
        with budget(60.0):  # a looser budget inside keeps the tighter one
            assert remaining(99.0) <= 5.0
        with budget(1.0):
            assert remaining(99.0) <= 1.0
        assert 1.0 < remaining(99.0) <= 5.0
    assert remaining(99.0) == 99.0


def test_a_budget_ends_when_its_block_raises() -> None:
    with pytest.raises(RuntimeError), budget(2.0):
        raise RuntimeError("boom")
    assert remaining(99.0) == 99.0
