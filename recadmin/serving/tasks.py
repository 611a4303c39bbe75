"""Background work of serving: writing the served log, refreshing the trending lists."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from recadmin.celery import app

DRAIN_EVERY_SECONDS = 5.0
POPULAR_EVERY_SECONDS = 600.0


@shared_task(name="recadmin.serving.tasks.drain_served_log", ignore_result=True, acks_late=True)
def drain_served_log() -> int:
    """Bulk-insert the served pages waiting in the buffer (kicked by requests, and on a schedule)."""
    from recadmin.serving.served_log import served_log_drain

    return served_log_drain()


@shared_task(name="recadmin.serving.tasks.refresh_popular", ignore_result=True, acks_late=True)
def refresh_popular() -> dict[str, int]:
    from recadmin.serving.popular import popular_refresh

    return popular_refresh()


@shared_task(name="recadmin.serving.tasks.export_item_embeddings", ignore_result=True, acks_late=True)
def export_item_embeddings(version_id: int) -> int:
    """Cache a model version's item vectors for the MMR re-rank (imports torch: worker only)."""
    from recadmin.serving.embeddings import embeddings_export

    return embeddings_export(version_id=version_id)


@app.on_after_finalize.connect
def _schedule(sender: Any, **kwargs: Any) -> None:
    # Entries in beat_schedule are copied into django-celery-beat's tables by its scheduler, so
    # they show (and can be tuned) in the admin like the nightly training.
    sender.add_periodic_task(DRAIN_EVERY_SECONDS, drain_served_log.s(), name="serving: drain the served log")
    sender.add_periodic_task(POPULAR_EVERY_SECONDS, refresh_popular.s(), name="serving: refresh trending lists")
