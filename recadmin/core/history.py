"""Who a change-history record names. An admin request's user is a person; an API request's
`request.user` is the API key's client (DRF sets it on the Django request too), which is not a
user row: such changes are recorded without a user, like those of tasks and the shell."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model


def history_user(request: Any = None, **kwargs: Any) -> Any:
    user = getattr(request, "user", None)
    return user if isinstance(user, get_user_model()) else None
