"""What both TorchServe handlers do with a batch: each request's body as a JSON object, parsed by the
handler, a bad request failing alone with its own 400 answer.

Packed into every .mar beside the handler (recadmin.modelops.archive.HANDLER_HELPERS), so at the
archive root it is the top-level module `request_body`; from the repository, `handlers.request_body`.
Imports nothing but the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


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
            body = json.loads(body)
        except ValueError as exc:
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
