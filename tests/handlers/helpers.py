"""Shared assertions of the handler tests."""

from __future__ import annotations

from typing import Any

import pytest


def assert_same_answers(left: list[Any], right: list[Any]) -> None:
    """Equal lists of {"item","score"} up to float noise: a row padded to another width in a
    batch may differ in the last digit."""
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert {r["item"]: pytest.approx(r["score"], abs=1e-4) for r in a} == {r["item"]: r["score"] for r in b}
