"""The real database servers and fingerprints the dump/restore tests stand on (issue 13).

Before Amber's own database dumps are tested against them, these tests show the ground holds:
each server starts and stops cleanly, holds the data it was given, its fingerprint changes when
one value does (so a test built on it can fail), and is reproduced exactly by a logical
dump/restore done by hand with the database's own tools. pgbench's invariant is shown to hold
for a dump taken while transactions commit. No password ever appears in a process's arguments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import dbservers
from dbdata import (
    mariadb_fill,
    mariadb_fingerprint,
    mariadb_sql,
    pg_consistent,
    pg_create_db,
    pg_fill,
    pg_fingerprint,
    pg_writers,
    psql,
    redis_cli,
    redis_fill,
    redis_fingerprint,
    run,
)
from dbservers import Server
from polling import wait_for

PGBENCH_TABLES = {"public.pgbench_accounts", "public.pgbench_branches",
                  "public.pgbench_history", "public.pgbench_tellers"}


def _processes() -> Iterator[tuple[int, int, list[bytes]]]:
    """Every process on the machine: pid, session id, arguments (those that vanish while read
    are skipped)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may contain anything.
        fields = stat[stat.rindex(")") + 2:].split()
        yield int(entry.name), int(fields[3]), cmdline.split(b"\0")


def _secrets_in_arguments(*servers: Server) -> list[str]:
    """Processes whose arguments contain one of the servers' passwords (there must be none)."""
    found = []
    for pid, _, argv in _processes():
        for server in servers:
            if any(server.password.encode() in arg for arg in argv):
                found.append(f"{pid}: {argv[0]!r} holds the {server.kind} password")
    return found


def _session_members(sid: int) -> list[int]:
    return [pid for pid, session, _ in _processes() if session == sid]


def _answers(server: Server) -> bool:
    """Whether the server answers a trivial query from its own client, given ``server``'s
    password."""
    probe = {"postgres": ["psql", "-X", "-w", *server.args(), "-d", "postgres", "-c", "SELECT 1"],
             "mariadb": ["mariadb", *server.args(), "-e", "SELECT 1"],
             "redis": ["redis-cli", *server.args(), "PING"]}[server.kind]
    result = subprocess.run(probe, env=server.env(), capture_output=True, text=True)
    return result.returncode == 0 and (server.kind != "redis" or result.stdout.strip() == "PONG")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("start", [dbservers.postgres, dbservers.mariadb, dbservers.redis],
                         ids=["postgres", "mariadb", "redis"])
def test_a_server_runs_with_secrets_out_of_sight_and_leaves_nothing_behind(
        start: Callable[[Path], contextlib.AbstractContextManager[Server]],
        tmp_path: Path) -> None:
    """Each server answers on its port while the block runs, refuses a wrong password (so tests
    exercise real authentication, as a backup's credentials will), with its password in no
    process's arguments; afterwards no process of its session is left and the port is closed
    (a server outliving its test would hold ports and files and skew later timings)."""
    with start(tmp_path / "server") as server:
        assert server.host == "127.0.0.1"
        assert _port_open(server.port)
        assert _session_members(server.pid)
        assert _secrets_in_arguments(server) == []
        assert _answers(server)
        assert not _answers(dataclasses.replace(server, password="not-the-password"))
        data_dir = server.data_dir
        assert data_dir.is_dir()
    assert _session_members(server.pid) == []
    assert not _port_open(server.port)
    if server.kind == "postgres" and os.geteuid() == 0:
        assert not data_dir.exists()  # the private cluster directory is removed


def test_postgres_fingerprint_changes_with_one_value_and_survives_pg_dump_restore(
        pg_server: Server, tmp_path: Path) -> None:
    """pgbench's tables at scale 2 fingerprint the same after ``pg_dump -Fc`` and
    ``pg_restore`` into a fresh database; one changed balance or one deleted row changes it."""
    pg_fill(pg_server, "fp_src", scale=2)
    before = pg_fingerprint(pg_server, "fp_src")
    assert set(before) == PGBENCH_TABLES
    assert before["public.pgbench_accounts"][0] == 200_000
    assert before["public.pgbench_tellers"][0] == 20
    assert before["public.pgbench_branches"][0] == 2

    dump = tmp_path / "fp_src.dump"
    run(pg_server, ["pg_dump", *pg_server.args(), "-w", "-Fc", "-f", str(dump), "fp_src"])
    pg_create_db(pg_server, "fp_copy")
    run(pg_server, ["pg_restore", *pg_server.args(), "-w", "--exit-on-error", "-d", "fp_copy",
                    str(dump)])
    assert pg_fingerprint(pg_server, "fp_copy") == before

    psql(pg_server, "fp_copy", "UPDATE pgbench_accounts SET abalance = 1 WHERE aid = 4242;")
    changed = pg_fingerprint(pg_server, "fp_copy")
    assert changed["public.pgbench_accounts"][0] == 200_000
    assert changed["public.pgbench_accounts"][1] != before["public.pgbench_accounts"][1]
    assert changed["public.pgbench_tellers"] == before["public.pgbench_tellers"]

    psql(pg_server, "fp_copy", "DELETE FROM pgbench_tellers WHERE tid = 7;")
    assert pg_fingerprint(pg_server, "fp_copy")["public.pgbench_tellers"][0] == 19


def test_pg_consistent_holds_for_a_dump_taken_while_pgbench_writes(
        pg_server: Server, tmp_path: Path) -> None:
    """A ``pg_dump`` taken while two pgbench clients commit transactions restores to a database
    whose four balances agree (pg_dump reads one snapshot), holding part of the history; one
    changed teller balance breaks the invariant, so the check can fail."""
    pg_fill(pg_server, "tpcb", scale=1)

    def history() -> int:
        return int(psql(pg_server, "tpcb", "SELECT count(*) FROM pgbench_history;")[0][0])

    with pg_writers(pg_server, "tpcb", seconds=5) as writers:
        wait_for(lambda: history() > 200, timeout=20, message="pgbench transactions")
        assert _secrets_in_arguments(pg_server) == []  # pgbench and the backends
        dump = tmp_path / "tpcb.dump"
        run(pg_server, ["pg_dump", *pg_server.args(), "-w", "-Fc", "-f", str(dump), "tpcb"])
        assert writers.running(), "the dump must be taken while transactions commit"
        output = writers.wait()
    assert "number of failed transactions: 0" in output
    assert pg_consistent(pg_server, "tpcb")

    pg_create_db(pg_server, "tpcb_copy")
    run(pg_server, ["pg_restore", *pg_server.args(), "-w", "--exit-on-error", "-d", "tpcb_copy",
                    str(dump)])
    copied = int(psql(pg_server, "tpcb_copy", "SELECT count(*) FROM pgbench_history;")[0][0])
    assert 0 < copied < history()
    assert pg_consistent(pg_server, "tpcb_copy")

    psql(pg_server, "tpcb_copy", "UPDATE pgbench_tellers SET tbalance = tbalance + 1 "
                                 "WHERE tid = 1;")
    assert not pg_consistent(pg_server, "tpcb_copy")


def _pipe(server: Server, producer: list[str], consumer: list[str]) -> None:
    """``producer | consumer``, both clients of ``server`` with its password in their
    environment; bytes pass untouched (the dump holds BLOBs)."""
    assert not _secrets_in_argv(server, producer + consumer)
    dump = subprocess.Popen(producer, env=server.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    load = subprocess.run(consumer, env=server.env(), stdin=dump.stdout, capture_output=True)
    assert dump.stdout is not None and dump.stderr is not None
    dump.stdout.close()
    dump_err = dump.stderr.read()
    assert dump.wait() == 0, dump_err.decode(errors="replace")
    assert load.returncode == 0, load.stderr.decode(errors="replace")


def _secrets_in_argv(server: Server, argv: list[str]) -> bool:
    return any(server.password in arg for arg in argv)


def test_mariadb_fingerprint_changes_with_one_value_and_survives_mariadb_dump(
        mariadb_server: Server) -> None:
    """A shop of 1,000 customers fingerprints the same after ``mariadb-dump
    --single-transaction | mariadb`` into a fresh database; one BLOB byte or one microsecond
    changes it."""
    mariadb_fill(mariadb_server, "shop_src", rows=1000)
    before = mariadb_fingerprint(mariadb_server, "shop_src")
    assert {table: count for table, (count, _) in before.items()} == {
        "customers": 1000, "orders": 2000, "order_lines": 6000}

    mariadb_sql(mariadb_server, "CREATE DATABASE shop_copy CHARACTER SET utf8mb4;")
    _pipe(mariadb_server,
          ["mariadb-dump", *mariadb_server.args(), "--single-transaction", "shop_src"],
          ["mariadb", *mariadb_server.args(), "shop_copy"])
    assert mariadb_fingerprint(mariadb_server, "shop_copy") == before

    mariadb_sql(mariadb_server, "UPDATE orders SET payload = CONCAT(payload, 'x') WHERE id = 7;",
                "shop_copy")
    changed = mariadb_fingerprint(mariadb_server, "shop_copy")
    assert changed["orders"][0] == 2000
    assert changed["orders"][1] != before["orders"][1]
    assert changed["customers"] == before["customers"]

    mariadb_sql(mariadb_server, "UPDATE customers SET created = created + INTERVAL 1 MICROSECOND "
                                "WHERE id = 3;", "shop_copy")
    assert mariadb_fingerprint(mariadb_server, "shop_copy")["customers"][1] \
        != before["customers"][1]


def test_redis_fingerprint_changes_with_one_value_and_survives_an_rdb_copy(
        redis_server: Server, tmp_path: Path) -> None:
    """500 keys of five types fingerprint the same in a second server started on a copy of the
    first's ``dump.rdb`` (written by SAVE); one byte of a string or one score changes it."""
    redis_cli(redis_server, "FLUSHALL")
    redis_fill(redis_server, keys=500)
    before = redis_fingerprint(redis_server)
    assert before["dbsize"] == 500
    assert before["types"] == {"string": 100, "hash": 100, "list": 100, "set": 100, "zset": 100}

    assert redis_cli(redis_server, "SAVE").strip() == "OK"
    copy_dir = tmp_path / "copy"
    (copy_dir / dbservers.REDIS_DATA).mkdir(parents=True)
    shutil.copy2(redis_server.data_dir / "dump.rdb",
                 copy_dir / dbservers.REDIS_DATA / "dump.rdb")
    with dbservers.redis(copy_dir) as copy:
        assert copy.password != redis_server.password
        assert redis_fingerprint(copy) == before

    redis_cli(redis_server, "SETRANGE", "amber:000000:str", "0", "V")
    changed = redis_fingerprint(redis_server)
    assert changed["dbsize"] == 500
    assert changed["digest"] != before["digest"]
    redis_cli(redis_server, "SETRANGE", "amber:000000:str", "0", "v")
    assert redis_fingerprint(redis_server) == before
    redis_cli(redis_server, "ZINCRBY", "amber:000004:zset", "0.125", "p1")
    assert redis_fingerprint(redis_server)["digest"] != before["digest"]


def test_clients_refuse_a_password_in_their_arguments(redis_server: Server) -> None:
    """The helpers' guard: a command line carrying the password is refused before it runs."""
    with pytest.raises(AssertionError, match="must not be passed"):
        run(redis_server, ["redis-cli", *redis_server.args(), "-a", redis_server.password,
                           "PING"])
