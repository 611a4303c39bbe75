"""The Celery broker transport: kombu's Redis transport, made to survive losing Redis mid-task.

With celery 5.7 / kombu 5.7, a worker that loses Redis while a late-acknowledged task runs exits
("Unrecoverable error: AttributeError: 'NoneType' object has no attribute 'hostname'") instead of
reconnecting. On the connection error the consumer first calls `Connection.collect()`: closing the
default channel there fails early (draining its pending BRPOP raises the connection error, which is
ignored), so the channel stays open, and then the transport is detached (`transport.client = None`).
The consumer's following `connection.close()` closes that channel again; now it gets as far as
restoring its unacknowledged messages, which builds a new connection pool from
`self.connection.client`, now None. The AttributeError is not a connection error, so nothing
ignores it and the worker stops (reproduced in tests/faults/test_celery_broker.py).

The channel here remembers its connection parameters, so a late restore connects like the channel
did: to a Redis that is back, the messages are restored at once; to one still down, it is a
connection error, which the closing code ignores (the messages stay in Redis's unacked set, restored
after the visibility timeout) and the worker reconnects as it should.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        remembered: dict[bool, dict[str, Any]] = self.__dict__.setdefault("_recadmin_connparams", {})
        if self.connection.client is None:  # the transport was detached by Connection.collect()
            if asynchronous not in remembered:
                raise redis.exceptions.ConnectionError("The broker connection is closed.")
            return dict(remembered[asynchronous])
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        remembered[asynchronous] = dict(params)
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
