"""The API's one JSON parser: bounded in size, depth, rows and content.

- A body over DATA_UPLOAD_MAX_MEMORY_SIZE is refused (413) before it is read whole.
- Nesting deep enough to exhaust the parser's recursion (50,000 `[`) is a 400, never a 500.
- A JSON list body, and the list under the view's `json_rows_field` in an object body
  (`{"events": [...]}`), is decoded element by element and refused (400) as soon as it has more rows
  than the view's `json_max_rows`: a 33 MB batch never becomes 33 MB of Python objects past the limit.
  A view that names the members an object body may have (`json_object_fields`, besides the rows
  field) gets any other member refused (400 naming it) before its value is decoded: one event with a
  huge list under an unknown key is not parsed whole either.
- Text the database cannot store (NUL, lone surrogates), numbers past what it stores (integers of 19
  digits and more, non-finite floats) are a 400 naming the field. Views that check rows one by one
  (events: one bad row must not sink a batch) set `json_rows_checked_by_view = True` and get the
  finding in `request.parser_context["suspect_text"]` instead; they call `json_value_problem` per row.
The content check runs only when a cheap scan of the raw bytes finds something suspect.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from recadmin.core.errors import ApplicationError, ValidationError

# Integers the database's bigint holds; a JSON integer beyond is refused wherever it appears.
MAX_INTEGER = 2**63 - 1
MAX_DEPTH = 64

_SUSPECT = re.compile(rb"\\u0000|\\u[dD][89abcdefABCDEF]|[0-9]{19}|[eE][+-]?[0-9]{3}")
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class PayloadTooLarge(ApplicationError):
    status_code = 413
    default_message = "Request body too large."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def bytes_suspect(raw: bytes) -> bool:
    return _SUSPECT.search(raw) is not None


def text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "NUL characters are not allowed."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "Lone surrogate characters (invalid Unicode) are not allowed."
    return None


def printable_key(key: str) -> str:
    """A member's name as an error may show it: lone surrogates as `\\udXXX` escapes (the answer is
    UTF-8; the name as sent could not be encoded, and the 400 would become a 500)."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def json_value_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first thing in a parsed JSON value the database cannot store: (path, message), or None."""
    problem = _value_problem(value, path)
    # Made printable once, on the path returned (not on every key walked: bulk bodies have many).
    return (printable_key(problem[0]), problem[1]) if problem is not None else None


def _value_problem(value: Any, path: str) -> tuple[str, str] | None:
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        current, where, depth = stack.pop()
        if isinstance(current, str):
            problem = text_problem(current)
            if problem:
                return where or "body", problem
        elif isinstance(current, bool) or current is None:
            continue
        elif isinstance(current, int):
            if abs(current) > MAX_INTEGER:
                return where or "body", f"Number out of range (at most {MAX_INTEGER} in absolute value)."
        elif isinstance(current, float):
            if not math.isfinite(current):
                return where or "body", "Number out of range."
        elif isinstance(current, (dict, list)):
            if depth >= MAX_DEPTH:
                return where or "body", f"Nested more than {MAX_DEPTH} levels deep."
            if isinstance(current, dict):
                for key, item in current.items():
                    child = f"{where}.{key}" if where else key
                    problem = text_problem(key)
                    if problem:
                        return child, problem
                    stack.append((item, child, depth + 1))
            else:
                for index, item in enumerate(current):
                    stack.append((item, f"{where}[{index}]", depth + 1))
    return None


def _read_bounded(stream: Any) -> bytes:
    if stream is None:
        return b""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None:
        return bytes(stream.read())
    raw = bytes(stream.read(limit + 1))
    if len(raw) > limit:
        raise PayloadTooLarge(
            f"Request body too large: at most {limit} bytes.",
            extra={"fields": {"body": [f"At most {limit} bytes."]}, "max_bytes": limit},
        )
    return raw


def _skip_whitespace(text: str, position: int) -> int:
    return _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]


def _after_member(text: str, position: int, close: str) -> tuple[int, bool]:
    """After an array element or object member: past a `,` to the next one (False), or past the
    closing bracket (True); anything else is the error json.loads gives."""
    position = _skip_whitespace(text, position)
    if text.startswith(",", position):
        return _skip_whitespace(text, position + 1), False
    if text.startswith(close, position):
        return position + 1, True
    raise ValueError(f"Expecting ',' delimiter or '{close}': char {position}")


def _decode_rows(text: str, start: int, max_rows: int, field: str) -> tuple[list[Any], int]:
    """The JSON array at `text[start]`, one element at a time; refused as soon as it passes `max_rows`.
    Returns the rows and the position just after the closing `]`."""
    rows: list[Any] = []
    position = _skip_whitespace(text, start + 1)
    if text.startswith("]", position):
        return rows, position + 1
    while True:
        row, position = _decoder.raw_decode(text, position)
        rows.append(row)
        if len(rows) > max_rows:
            raise ValidationError(f"At most {max_rows} {field} per request (the body has more).", field=field)
        position, closed = _after_member(text, position, "]")
        if closed:
            return rows, position


def _decode_object(
    text: str, start: int, max_rows: int, field: str, known: frozenset[str] | None = None
) -> tuple[dict[str, Any], int]:
    """The JSON object at `text[start]`, member by member; the list under `field` (`{"events": [...]}`)
    is counted while it is decoded, like a list body, so the object form is bounded in memory too.
    With `known`, a member neither `field` nor in it is refused before its value is decoded.
    Returns the object and the position just after the closing `}`."""
    data: dict[str, Any] = {}
    position = _skip_whitespace(text, start + 1)
    if text.startswith("}", position):
        return data, position + 1
    while True:
        if not text.startswith('"', position):
            raise ValueError(f"Expecting property name enclosed in double quotes: char {position}")
        key, position = _decoder.raw_decode(text, position)
        if known is not None and key != field and key not in known:
            name = printable_key(key)
            accepted = ", ".join(sorted({field, *known}))
            raise ValidationError(f"{name}: unknown field; accepted: {accepted}.", field=name)
        position = _skip_whitespace(text, position)
        if not text.startswith(":", position):
            raise ValueError(f"Expecting ':' delimiter: char {position}")
        position = _skip_whitespace(text, position + 1)
        if key == field and text.startswith("[", position):
            data[key], position = _decode_rows(text, position, max_rows, field)
        else:
            data[key], position = _decoder.raw_decode(text, position)
        position, closed = _after_member(text, position, "}")
        if closed:
            return data, position


def _decode_bounded(text: str, max_rows: int, field: str, known: frozenset[str] | None = None) -> Any:
    """A list body, or an object body with its rows under `field`: rows counted while decoding.
    Anything else (one event, a number) is decoded whole: it has no rows to count."""
    start = _skip_whitespace(text, 0)
    data: Any
    if text.startswith("[", start):
        data, end = _decode_rows(text, start, max_rows, field)
    elif text.startswith("{", start):
        data, end = _decode_object(text, start, max_rows, field, known)
    else:
        return _decoder.decode(text)
    if _skip_whitespace(text, end) != len(text):
        raise ValueError(f"Extra data: char {end}")
    return data


class SafeJSONParser(JSONParser):
    """Drop-in for DRF's JSONParser (settings DEFAULT_PARSER_CLASSES); json.loads on the raw bytes."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        parser_context = parser_context if parser_context is not None else {}
        raw = _read_bounded(stream)
        view = parser_context.get("view")
        max_rows = getattr(view, "json_max_rows", None)
        try:
            text = raw.decode("utf-8")
            if max_rows is not None:
                known = getattr(view, "json_object_fields", None)
                data = _decode_bounded(
                    text,
                    int(max_rows),
                    str(getattr(view, "json_rows_field", "rows")),
                    None if known is None else frozenset(known),
                )
            else:
                data = _decoder.decode(text)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply") from exc
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise ParseError(f"JSON parse error - {exc}") from exc
        suspect = bytes_suspect(raw)
        parser_context["suspect_text"] = suspect
        if suspect and not getattr(view, "json_rows_checked_by_view", False):
            problem = json_value_problem(data)
            if problem is not None:
                raise ValidationError(f"{problem[0]}: {problem[1]}", field=problem[0])
        return data
