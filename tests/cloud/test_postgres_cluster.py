"""The tests' own PostgreSQL: a throwaway cluster on a socket, never a server already running."""

from __future__ import annotations

import psycopg

from roadsense.harness.postgres import RunningPostgres


def test_the_cluster_is_ours_on_a_socket_without_tcp(postgres: RunningPostgres) -> None:
    url = postgres.create_database()
    with psycopg.connect(url) as conn:
        settings = conn.execute(
            "SELECT current_setting('listen_addresses'), current_setting('data_directory'), "
            "current_setting('unix_socket_directories')"
        ).fetchone()
        assert settings == ("", str(postgres.root / "data"), str(postgres.root))
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
        assert conn.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
    # Each database is new and empty.
    with psycopg.connect(postgres.create_database()) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
