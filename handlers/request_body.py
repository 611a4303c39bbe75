"""What both TorchServe handlers do with a batch: each request's body as a JSON object, parsed by the
handler, a bad request failing alone with its own 400 answer.

Packed into every .mar beside the handler (recadmin.modelops.archive.HANDLER_HELPERS), so at the
archive root it is the top-level module `request_body`; from the repository, `handlers.request_body`.
Imports the standard library, and orjson where the worker's Python has it (recadmin's environment
does; the stock TorchServe image does not, and then the standard library's json does the work).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the stock TorchServe image
    orjson = None  # type: ignore[assignment]


def request_object(row: Any, *, needs: str) -> dict[str, Any]:
    """The JSON object of one request of a TorchServe batch (its "data" or "body": bytes, text or
    already decoded); ValueError, the handler's 400, otherwise. `needs` completes the message
    'The request must be a JSON object with ...' (e.g. '"candidates"')."""
    body = row.get("data", row.get("body")) if isinstance(row, dict) else row
    if isinstance(body, bytes | bytearray):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError("The request body is not UTF-8 JSON.") from exc
    if isinstance(body, str):
        try:
            body = orjson.loads(body) if orjson is not None else json.loads(body)
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError too
            raise ValueError(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"The request must be a JSON object with {needs}.")
    return body


def parse_batch(data: list[Any], parse: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
    """`parse` applied to each request of the batch; a request it refuses (ValueError) becomes
    {"error": message}, its own 400, so it does not sink the good ones. ValueError with the first
    message when every request is bad (e.g. a batch of one): the handler's 400 for the batch."""
    parsed: list[dict[str, Any]] = []
    for row in data:
        try:
            parsed.append(parse(row))
        except ValueError as exc:
            parsed.append({"error": str(exc)})
    errors = [p["error"] for p in parsed if "error" in p]
    if errors and len(errors) == len(parsed):
        raise ValueError(errors[0])
    return parsed


def error_answer(context: Any, index: int, message: str) -> dict[str, Any]:
    """The answer of the batch's request `index` that `parse_batch` refused: its own 400 (only in a
    batch that also has good requests; a batch of bad ones fails whole in preprocess)."""
    if context is not None:
        context.set_response_status(400, message, index)
    return {"code": 400, "type": "PredictionException", "message": message}


def is_id(value: Any) -> bool:
    """An item id in a request: a non-empty string or an integer (not a bool)."""
    return (isinstance(value, str) and value != "") or (isinstance(value, int) and not isinstance(value, bool))


def json_answer(context: Any, index: int, value: Any) -> bytes:
    """The answer of the batch's request `index` as compact JSON bytes, typed application/json.
    Bytes leave the worker as they are; a list or dict TorchServe would encode itself with
    json.dumps(indent=2), which for a list of 500 items takes longer than the handler's whole work
    and makes the body a third larger."""
    if context is not None:
        context.set_response_content_type(index, "application/json")
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":")).encode()
