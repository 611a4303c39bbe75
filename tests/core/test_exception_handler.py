from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import path
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from recadmin.core.errors import Conflict, ValidationError


class _Input(serializers.Serializer):
    price = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0)
    tags = serializers.ListField(child=serializers.CharField(max_length=3))


class _View(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    def post(self, request):  # type: ignore[no-untyped-def]
        mode = request.query_params.get("mode")
        if mode == "app":
            raise ValidationError("Scene 'nope' does not exist.", field="scene")
        if mode == "conflict":
            raise Conflict("Already promoted.", extra={"version": 3})
        if mode == "django":
            raise DjangoValidationError({"slug": ["Enter a valid slug."]})
        _Input(data=request.data).is_valid(raise_exception=True)
        return Response({"ok": True})


urlpatterns = [path("t", _View.as_view())]


@pytest.fixture(autouse=True)
def _urls(settings):  # type: ignore[no-untyped-def]
    settings.ROOT_URLCONF = __name__


def test_serializer_errors_name_the_field_in_message_and_extra() -> None:
    response = APIClient().post("/t", {"price": -1, "tags": ["ok"]}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["message"].startswith("Validation error: price:")
    assert "price" in body["extra"]["fields"]


def test_nested_errors_name_the_path() -> None:
    response = APIClient().post("/t", {"price": 1, "tags": ["ok", "toolong"]}, format="json")
    assert response.status_code == 400
    assert "tags" in response.json()["message"]


def test_malformed_json_is_a_400_not_a_500() -> None:
    response = APIClient().post("/t", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("Malformed request body")


def test_application_errors_keep_their_status_and_extra() -> None:
    app = APIClient().post("/t?mode=app", {}, format="json")
    assert app.status_code == 400
    assert app.json() == {
        "message": "Scene 'nope' does not exist.",
        "extra": {"fields": {"scene": ["Scene 'nope' does not exist."]}},
    }
    conflict = APIClient().post("/t?mode=conflict", {}, format="json")
    assert conflict.status_code == 409
    assert conflict.json()["extra"] == {"version": 3}


def test_django_validation_errors_are_rendered_as_field_errors() -> None:
    response = APIClient().post("/t?mode=django", {}, format="json")
    assert response.status_code == 400
    assert response.json()["extra"]["fields"] == {"slug": ["Enter a valid slug."]}
