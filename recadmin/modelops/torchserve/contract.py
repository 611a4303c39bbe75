"""What the recommender handler (handlers/recommender_handler.py) takes and answers.

A request is a JSON object, one of:
  {"history": [shop item ids, oldest first], "k": 500, "exclude": [shop item ids]}
  {"similar_to": "<shop item id>", "k": 50, "exclude": [...]}
The answer is a list of {"item", "score"} best first (or {"items": [...]}). Serving builds its
payloads and reads the answers here, so the contract is written down once, beside the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: The handler refuses a larger k (its default `max_k`).
MAX_K = 1000


def history_request(history: Sequence[str], *, k: int, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The top k for a history (oldest first); the history and `exclude` are never among them."""
    return {"history": list(history), "k": min(int(k), MAX_K), "exclude": list(exclude)}


def similar_request(item: str, *, k: int, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The k nearest items to `item` by the model's item embeddings."""
    payload: dict[str, Any] = {"similar_to": item, "k": min(int(k), MAX_K)}
    if exclude:
        payload["exclude"] = list(exclude)
    return payload


def ranked_answer(answer: Any) -> list[tuple[str, float]] | None:
    """[(item, score), ...] best first from the handler's answer; None when it is not one."""
    if isinstance(answer, dict) and isinstance(answer.get("items"), list):
        answer = answer["items"]
    if not isinstance(answer, list):
        return None
    return [
        (str(row["item"]), float(row.get("score") or 0.0)) for row in answer if isinstance(row, dict) and "item" in row
    ]
