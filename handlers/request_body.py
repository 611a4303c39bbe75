"""What both TorchServe handlers do first with a request: its body as a JSON object.

Packed into every .mar beside the handler (recadmin.modelops.archive.HANDLER_HELPERS), so at the
archive root it is the top-level module `request_body`; from the repository, `handlers.request_body`.
Imports nothing but the standard library.
"""

from __future__ import annotations

import json
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
