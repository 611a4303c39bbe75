"""What the service modules share: the workers bound, the TorchServe adapter, the default model
name of a kind. Imports no sibling module, so every topic can import it without a cycle."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from recadmin.modelops.models import ModelKind

MAX_WORKERS = 16


def torchserve_client() -> Any:
    # Imported here so that importing services (admin, API) stays cheap; the adapter itself is
    # torch-free.
    from recadmin.modelops.torchserve import get_client

    return get_client()


def model_name_default(*, kind: str) -> str:
    """The model name a run or schedule of `kind` trains when none is given: the ranking stage has
    its own (serving asks TorchServe for RANKER_MODEL_NAME), every retrieval kind the recommender."""
    return settings.RANKER_MODEL_NAME if kind == ModelKind.RANKER else settings.RECOMMENDER_MODEL_NAME
