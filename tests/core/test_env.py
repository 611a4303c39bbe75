from __future__ import annotations

import pytest

from recadmin.env import Env, ImproperlyConfiguredEnv, parse_database_url


def test_it_parses_postgres_urls_with_options() -> None:
    db = parse_database_url("postgres://shop:s%40cret@db.internal:6543/recs?sslmode=require")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "shop",
        "s@cret",
        "db.internal",
        "6543",
        "recs",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_it_parses_absolute_and_relative_sqlite_paths() -> None:
    assert parse_database_url("sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"
    assert parse_database_url("sqlite:///var/x.sqlite3")["NAME"].endswith("/var/x.sqlite3")


def test_it_refuses_unknown_database_schemes() -> None:
    with pytest.raises(ImproperlyConfiguredEnv, match="mysql"):
        parse_database_url("mysql://root@localhost/db")


def test_typed_getters_fail_loudly_on_bad_values() -> None:
    env = Env({"FLAG": "maybe", "N": "ten", "HOSTS": "a, b,,c"})
    with pytest.raises(ImproperlyConfiguredEnv, match="FLAG"):
        env.bool("FLAG")
    with pytest.raises(ImproperlyConfiguredEnv, match="N"):
        env.int("N", 1)
    assert env.list("HOSTS") == ["a", "b", "c"]
    assert env.int("MISSING", 7) == 7
    with pytest.raises(ImproperlyConfiguredEnv, match="REQUIRED"):
        env.str("REQUIRED")
