"""Background work of events: the complementary items computed from purchase sequences."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from recadmin.celery import app

COMPLEMENTS_EVERY_SECONDS = 1800.0


@shared_task(name="recadmin.events.tasks.refresh_complements", ignore_result=True, acks_late=True)
def refresh_complements() -> dict[str, int]:
    from recadmin.events.complements import complements_refresh

    return complements_refresh()


@app.on_after_finalize.connect
def _schedule(sender: Any, **kwargs: Any) -> None:
    sender.add_periodic_task(
        COMPLEMENTS_EVERY_SECONDS,
        refresh_complements.s(),
        name="events: refresh complementary items",
        options={"expires": COMPLEMENTS_EVERY_SECONDS / 2},
    )
