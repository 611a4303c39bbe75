"""Embedded mode's SQLite under concurrent writers (the served-log drain, event ingestion and the
metrics refresh run in threads of one process): found by the simulated traffic, where the minute's
refresh failed with "database is locked" and the experiment report stayed empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Two threads, each a transaction that reads, pauses, then writes: with deferred transactions both
# hold a read lock when they try to write and SQLite refuses one at once, whatever the timeout.
SCRIPT = """
import threading, time
import django
django.setup()
from django.conf import settings
from django.db import connection, connections, transaction

assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, who TEXT)")
    cursor.execute("PRAGMA journal_mode")
    print("journal", cursor.fetchone()[0])
errors = []

def writer(who):
    try:
        for _ in range(3):
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT COUNT(*) FROM probe")
                    time.sleep(0.2)
                    cursor.execute("INSERT INTO probe (who) VALUES (%s)", [who])
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        connections.close_all()

threads = [threading.Thread(target=writer, args=(str(i),)) for i in range(3)]
for t in threads: t.start()
for t in threads: t.join()
with connection.cursor() as cursor:
    cursor.execute("SELECT COUNT(*) FROM probe")
    print("rows", cursor.fetchone()[0])
print("errors", errors)
"""


def _run(tmp_path: Path, **extra_env: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="recadmin.settings",
        RECADMIN_VAR_DIR=str(tmp_path),
        SECRET_KEY="test-only",
        **extra_env,
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_concurrent_read_then_write_transactions_wait_instead_of_failing(tmp_path: Path) -> None:
    out = _run(tmp_path)

    assert "journal wal" in out
    assert "rows 9" in out
    assert "errors []" in out
