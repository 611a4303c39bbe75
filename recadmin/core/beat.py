"""Beat's scheduler for recadmin: code-registered entries are defaults, the admin's tuning wins.

django-celery-beat's `DatabaseScheduler.setup_schedule` writes every `app.conf.beat_schedule` entry
(the apps' `add_periodic_task` calls) into its `PeriodicTask` row with `update_or_create`: an interval
an operator tuned in the admin (Thompson reallocation from 300 s to 60 s) was put back to the code's
value at every start of beat or of the in-process scheduler. Here a code entry creates its row when
the row does not exist yet; an existing row keeps its schedule and `enabled` (the admin owns them),
while what only the code knows (task, args, kwargs, routing, expiry) still follows the code.
A changed default in code therefore reaches new installations only; an existing one keeps what it
has until someone edits the row (or deletes it: the next start creates it again with the default).

Used by `celery beat` (`CELERY_BEAT_SCHEDULER`, compose) and by `recadmin.core.scheduler`. Import
only once Django is set up (it imports django-celery-beat's models).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import transaction
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.utils.json import dumps
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# The fields of a row that the admin owns once the row exists.
ADMIN_OWNED_FIELDS = ("interval", "crontab", "solar", "clocked", "enabled")


class CodeDefaultEntry(ModelEntry):
    @classmethod
    def from_entry(cls, name: str, app: Any = None, **entry: Any) -> CodeDefaultEntry:
        with transaction.atomic():
            row = PeriodicTask._default_manager.select_for_update().filter(name=name).first()
            if row is None:
                row, _ = PeriodicTask._default_manager.get_or_create(name=name, defaults=cls._unpack_fields(**entry))
                return cls(row, app=app)
            # Unpacked without its schedule: to_model_schedule would create schedule rows for nothing.
            fields = cls._unpack_fields(**entry, _keep_schedule=True)
            changed = [field for field, value in fields.items() if getattr(row, field) != value]
            if changed:
                for field in changed:
                    setattr(row, field, fields[field])
                # Saving bumps beat's change stamp (a full reload everywhere): only when needed.
                row.save(update_fields=changed)
        return cls(row, app=app)

    @classmethod
    def _unpack_fields(
        cls,
        schedule: Any,
        args: Any = None,
        kwargs: Any = None,
        relative: Any = None,
        options: Any = None,
        _keep_schedule: bool = False,
        **entry: Any,
    ) -> dict[str, Any]:
        options = dict(options or {})
        # `add_periodic_task(..., options={"expires": 50})` nests them (its keyword arguments are the
        # options), and `expires` in seconds is dropped by the base class (its rows know only
        # expire_seconds): short periodic tasks never expired under beat.
        options.update(options.pop("options", None) or {})
        expires = options.pop("expires", None)
        if isinstance(expires, int | float) and options.get("expire_seconds") is None:
            options["expire_seconds"] = int(expires)
        if _keep_schedule:
            entry.update(args=dumps(args or []), kwargs=dumps(kwargs or {}), **cls._unpack_options(**options))
            return {field: value for field, value in entry.items() if field not in ADMIN_OWNED_FIELDS}
        fields: dict[str, Any] = super()._unpack_fields(
            schedule, args=args, kwargs=kwargs, relative=relative, options=options, **entry
        )
        return fields


class TunableDatabaseScheduler(DatabaseScheduler):
    """beat's DatabaseScheduler whose code-registered entries do not overwrite the admin's tuning."""

    Entry = CodeDefaultEntry

    # While the broker is down, beat's base class logs "Message Error" with the formatted stack and a
    # chained traceback for every due entry (38 tracebacks, ~900 lines in a 20 s Redis outage,
    # measured with bench/faults.py): one line when sending starts failing and one when it works again.
    _broker_down_since: float | None = None

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:  # beat must keep ticking, as the base class does
            if not _is_broker_outage(exc):
                logger.exception("beat: could not send %s (%s)", entry.name, entry.task)
                return
            if self._broker_down_since is None:
                self._broker_down_since = time.monotonic()
                logger.warning("beat: the broker does not answer (%s); due tasks are skipped until it does", _root(exc))
            return
        if self._broker_down_since is not None:
            down = time.monotonic() - self._broker_down_since
            logger.warning("beat: the broker answers again after %.1f s; due tasks are sent", down)
            self._broker_down_since = None


_OUTAGES = (KombuOperationalError, RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def _is_broker_outage(exc: BaseException) -> bool:
    """A connection failure anywhere in the chain (celery wraps it in SchedulingError, kombu in
    OperationalError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _OUTAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
