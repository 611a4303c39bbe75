"""Background work of experiments: Thompson sampling's reallocation every few minutes."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from recadmin.celery import app

ALLOCATION_EVERY_SECONDS = 300.0


@shared_task(name="recadmin.experiments.tasks.update_allocations", ignore_result=True, acks_late=True)
def update_allocations() -> int:
    """Recompute the weights of every running Thompson-sampling experiment from its per-customer sums."""
    from recadmin.experiments.services import experiment_allocations_update_running

    return experiment_allocations_update_running()


@app.on_after_finalize.connect
def _schedule(sender: Any, **kwargs: Any) -> None:
    # Copied into django-celery-beat's tables by its scheduler: visible and tunable in the admin.
    sender.add_periodic_task(
        ALLOCATION_EVERY_SECONDS, update_allocations.s(), name="experiments: Thompson sampling reallocation"
    )
