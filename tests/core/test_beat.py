"""Beat's scheduler against a broker that goes away: one line per change, not a traceback per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.schedules import schedule

from recadmin.core.beat import CodeDefaultEntry, TunableDatabaseScheduler
from tests.fixtures.services import RestartableRedis

pytestmark = pytest.mark.django_db


def test_a_broker_outage_is_logged_once_when_it_starts_and_once_when_it_ends(tmp_path: Path, caplog: Any) -> None:
    server = RestartableRedis(tmp_path)  # its port is chosen now, the server started later
    app = Celery("beat-outage", broker=server.url, set_as_current=False)
    app.conf.broker_connection_timeout = 0.5
    app.conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1}
    entry = CodeDefaultEntry.from_entry(
        "beat outage probe", app=app, schedule=schedule(60), task="recadmin.beat_outage_probe"
    )
    scheduler = TunableDatabaseScheduler(app=app, lazy=True)

    with caplog.at_level("INFO", logger="recadmin.core.beat"):
        for _ in range(3):  # three due entries while nothing listens on the broker's port
            scheduler.apply_entry(entry)
        server.start()
        try:
            scheduler.apply_entry(entry)
            queued = redis.Redis(host="127.0.0.1", port=server.port).llen("celery")
        finally:
            server.stop()

    lines = [record for record in caplog.records if record.name == "recadmin.core.beat"]
    assert [record.getMessage().split(" (")[0].split(" after")[0] for record in lines] == [
        "beat: the broker does not answer",
        "beat: the broker answers again",
    ]
    assert "Traceback" not in caplog.text
    assert queued == 1  # the entry due after the outage reached the queue


def test_an_error_that_is_not_an_outage_is_still_logged_with_its_traceback(caplog: Any) -> None:
    app = Celery("beat-error", broker="memory://", set_as_current=False)
    entry = CodeDefaultEntry.from_entry("beat error probe", app=app, schedule=schedule(60), task="recadmin.probe")
    scheduler = TunableDatabaseScheduler(app=app, lazy=True)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("bad arguments")

    scheduler.apply_async = broken  # type: ignore[method-assign]
    with caplog.at_level("INFO", logger="recadmin.core.beat"):
        scheduler.apply_entry(entry)
    [record] = [record for record in caplog.records if record.name == "recadmin.core.beat"]
    assert "could not send beat error probe" in record.getMessage()
    assert "ValueError: bad arguments" in caplog.text
