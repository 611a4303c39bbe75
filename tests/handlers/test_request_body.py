"""The handlers' request and answer JSON, with orjson (recadmin's environment) and without it (the
stock TorchServe image, where the standard library's json does the work)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers import request_body
from handlers.request_body import json_answer, parse_batch, request_object


class _Context:
    def __init__(self) -> None:
        self.content_types: dict[int, str] = {}

    def set_response_content_type(self, index: int, value: str) -> None:
        self.content_types[index] = value


@pytest.fixture(params=["orjson", "standard library"])
def json_library(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "standard library":
        monkeypatch.setattr(request_body, "orjson", None)
    return str(request.param)


ANSWER: list[dict[str, Any]] = [{"item": "sku-é1", "score": 0.125}, {"item": "sku-2", "score": -3.5}]


def test_an_answer_is_compact_json_bytes_typed_application_json(json_library: str) -> None:
    context = _Context()

    encoded = json_answer(context, 2, ANSWER)

    assert isinstance(encoded, bytes)
    assert json.loads(encoded) == ANSWER
    assert b" " not in encoded and b"\n" not in encoded
    assert context.content_types == {2: "application/json"}


@pytest.mark.parametrize(
    "body", [b'{"history": ["a"], "k": 3}', '{"history": ["a"], "k": 3}', {"history": ["a"], "k": 3}]
)
def test_a_request_body_is_read_from_bytes_text_or_an_object(json_library: str, body: Any) -> None:
    assert request_object({"body": body}, needs='"history"') == {"history": ["a"], "k": 3}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b'{"history": [', "not valid JSON"),
        (b'["a"]', 'a JSON object with "history"'),
    ],
)
def test_a_bad_request_body_is_a_value_error_naming_what_is_wrong(json_library: str, body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        request_object({"body": body}, needs='"history"')


def test_a_bad_request_in_a_batch_fails_alone_and_a_batch_of_bad_ones_fails_whole() -> None:
    def parse(row: Any) -> dict[str, Any]:
        return request_object(row, needs='"k"')

    parsed = parse_batch([{"body": b'{"k": 1}'}, {"body": b"[]"}], parse)
    assert parsed[0] == {"k": 1} and "error" in parsed[1]
    with pytest.raises(ValueError, match='"k"'):
        parse_batch([{"body": b"[]"}], parse)
