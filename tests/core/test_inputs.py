from __future__ import annotations

from typing import Any

import pytest
from rest_framework import serializers

from recadmin.core.errors import FieldErrors, ValidationError
from recadmin.core.inputs import validated_input


class _Input(serializers.Serializer):
    name = serializers.CharField(max_length=5)
    slug = serializers.CharField(read_only=True)
    limit = serializers.IntegerField(required=False)


def _refusal(data: Any, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        validated_input(_Input, data, **kwargs)
    return caught.value


def test_it_returns_the_validated_data() -> None:
    assert validated_input(_Input, {"name": "shoe", "limit": "3"}) == {"name": "shoe", "limit": 3}


def test_it_names_every_unknown_member_and_lists_the_accepted_ones() -> None:
    refused = _refusal({"name": "shoe", "limt": 3, "colour": "red"})
    assert refused.extra["fields"] == {"colour": ["unknown field"], "limt": ["unknown field"]}
    assert refused.message == "colour: unknown field; accepted: name, limit."


def test_a_read_only_field_is_refused_with_the_reason_given() -> None:
    refused = _refusal({"name": "shoe", "slug": "x"}, partial=True, reason="unknown or read-only field")
    assert refused.extra["fields"] == {"slug": ["unknown or read-only field"]}


@pytest.mark.parametrize("body", [[{"name": "shoe"}], "shoe", None])
def test_it_refuses_a_body_that_is_not_an_object(body: Any) -> None:
    assert _refusal(body).extra["fields"] == {"body": ["The body must be a JSON object."]}


def test_the_serializers_own_findings_still_count() -> None:
    with pytest.raises(serializers.ValidationError) as caught:
        validated_input(_Input, {"name": "too long a name"})
    assert "name" in caught.value.detail


def test_nested_unknown_members_carry_their_path_and_non_objects_are_left_to_the_serializer() -> None:
    errors = FieldErrors()
    errors.add_unknown({"a": 1, "b": 2}, ["a"], prefix="variants[0].")
    errors.add_unknown(["not", "an", "object"], ["a"], prefix="guardrails.")
    errors.add_unknown(None, ["a"])
    assert errors.fields == {"variants[0].b": ["unknown field"]}
    with pytest.raises(ValidationError, match=r"^variants\[0\]\.b: unknown field$"):
        errors.raise_if_any()
