"""Celery tasks log with their task id where a request logs its request id."""

from __future__ import annotations

from typing import Any

from celery import signals

from recadmin.core.observability.context import request_id_reset, request_id_set

_TOKENS: dict[str, Any] = {}


def _prerun(task_id: str | None = None, **kwargs: Any) -> None:
    if task_id:
        _TOKENS[task_id] = request_id_set(f"task-{task_id}")


def _postrun(task_id: str | None = None, **kwargs: Any) -> None:
    token = _TOKENS.pop(task_id or "", None)
    if token is not None:
        try:
            request_id_reset(token)
        except ValueError:  # reset from another context (a task finished in another thread)
            request_id_set("-")


def connect() -> None:
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="recadmin-request-id-prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="recadmin-request-id-postrun")
