"""The PostgreSQL test server itself (pg_server.py): fixtures, queries and
errors through psql, data surviving a clean restart and a SIGKILL on the
same port, and clean-up. Needs no sluice binary."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import pg_server
from pg_server import PostgresError, PostgresServer

postgres = pg_server.postgres
pg_database = pg_server.pg_database


def _dbname(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.mark.e2e_timeout(120)
def test_database_survives_stop_and_kill(postgres, pg_database):
    db = _dbname(pg_database)
    assert pg_database == f"postgres://postgres@127.0.0.1:{postgres.port}/{db}"
    assert postgres.query("SELECT current_database(), current_user", db=db) == [(db, "postgres")]
    assert postgres.query("SHOW fsync; SHOW max_connections", db=db) == [("on",), ("200",)]

    postgres.query(
        "CREATE TABLE t (id int PRIMARY KEY, v text);"
        "INSERT INTO t VALUES (1, 'tab\tcomma, \"quote\" and\nnewline'), (2, NULL), (3, '')",
        db=db,
    )
    rows = [("1", 'tab\tcomma, "quote" and\nnewline'), ("2", ""), ("3", "")]
    assert postgres.query("SELECT id, v FROM t ORDER BY id", db=db) == rows

    # Errors raise with the server's message; later statements do not run.
    with pytest.raises(PostgresError, match="duplicate key"):
        postgres.query(
            "INSERT INTO t VALUES (4, 'x'); INSERT INTO t VALUES (1, 'dup'); INSERT INTO t VALUES (5, 'y')",
            db=db,
        )
    rows.append(("4", "x"))
    assert postgres.query("SELECT id, v FROM t ORDER BY id", db=db) == rows
    with pytest.raises(PostgresError, match="does not exist"):
        postgres.query("SELECT 1", db="no_such_db")

    # Clean stop and start: same port, same data, URL still valid.
    port, url = postgres.port, postgres.url(db)
    postgres.stop()
    assert not postgres.is_running()
    with pytest.raises(PostgresError):
        postgres.query("SELECT 1", db=db, timeout=15)
    postgres.start()
    assert (postgres.port, postgres.url(db)) == (port, url)
    assert postgres.query("SELECT id, v FROM t ORDER BY id", db=db) == rows

    # SIGKILL (postmaster and backends) and crash recovery: committed rows stay.
    postgres.query("INSERT INTO t VALUES (6, 'before kill')", db=db)
    rows.append(("6", "before kill"))
    pid = postgres.pid
    postgres.kill()
    assert not postgres.is_running()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    postgres.start()
    assert postgres.port == port and postgres.pid != pid
    assert postgres.query("SELECT id, v FROM t ORDER BY id", db=db) == rows
    assert "automatic recovery in progress" in postgres.log_text()


def test_pg_database_is_fresh_per_test(postgres, pg_database):
    db = _dbname(pg_database)
    assert postgres.query("SELECT count(*) FROM pg_tables WHERE tablename = 't'", db=db) == [("0",)]
    # The default database exists too.
    assert postgres.query("SELECT current_database()") == [("sluice",)]


@pytest.mark.e2e_timeout(120)
def test_standalone_context_manager(tmp_path):
    """The way a benchmark uses it: no fixtures; close() leaves nothing behind."""
    with PostgresServer(tmp_path / "pg") as pg:
        assert pg.query("SELECT 1 + 1") == [("2",)]
        base, pid = pg.base, pg.pid
        assert base.is_dir() and (tmp_path / "pg" / "pgdata").resolve() == pg.data_dir
        if os.geteuid() == 0:
            assert base.stat().st_uid == pg._user.pw_uid
    assert not base.exists()
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped
    assert "database system is shut down" in (tmp_path / "pg" / "postgres.log").read_text()
