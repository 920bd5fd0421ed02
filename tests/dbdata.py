"""Realistic data in the real servers of ``dbservers``, and fingerprints a restore must reproduce
exactly (imported by name; pytest puts tests/ on the path).

A fingerprint is computed by the database itself over every row (or key) in a fixed order, so
two databases have equal fingerprints only when they hold the same data: a dump that lost a
row, a blob byte, a microsecond or a trailing space shows. Everything runs through the
databases' own command-line clients, the passwords in the environment (``Server.env``) and
never in an argument: ``run`` refuses any command line that contains one.
"""

from __future__ import annotations

import json
import signal
import subprocess
from dataclasses import dataclass

from dbservers import Server

#: A fingerprint of a SQL database: per table, its row count and an MD5 of its rows in key order.
Fingerprint = dict[str, tuple[int, str]]


def run(server: Server, argv: list[str], *, input: str | bytes | None = None,
        text: bool = True, timeout: float = 300) -> str:
    """Run a client of ``server`` with its password in the environment; return its standard
    output, or fail with its standard error. A password in ``argv`` is refused: anyone on the
    machine can read a process's arguments."""
    if any(server.password in arg for arg in argv):
        raise AssertionError(f"{argv[0]}: the password must not be passed as an argument")
    result = subprocess.run(argv, input=input, env=server.env(), capture_output=True,
                            text=text, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {result.returncode}: {result.stderr!s}")
    return str(result.stdout) if text else result.stdout.decode(errors="replace")


# --- PostgreSQL -----------------------------------------------------------------------------------


def psql(server: Server, db: str, sql: str) -> list[list[str]]:
    """Run ``sql`` (one or more statements, from standard input) in database ``db``; the rows of
    its output, fields split at tabs (unaligned, tuples only)."""
    out = run(server, ["psql", "-X", "-w", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                       *server.args(), "-d", db, "-f", "-"], input=sql)
    return [line.split("\t") for line in out.splitlines() if line]


def pg_create_db(server: Server, db: str) -> None:
    """An empty database ``db`` (a fresh one to restore into, for instance)."""
    psql(server, "postgres", f'CREATE DATABASE "{db}";')


def pg_fill(server: Server, db: str, scale: int = 2) -> None:
    """Create ``db`` and fill it with pgbench's TPC-B-like schema: 100,000 accounts per unit of
    ``scale``, with tellers, branches, an empty history and primary keys (``pgbench -i``)."""
    pg_create_db(server, db)
    run(server, ["pgbench", *server.args(), "-i", "-q", "-s", str(scale), db])


def pg_fingerprint(server: Server, db: str) -> Fingerprint:
    """Every user table of ``db`` (``schema.table``): its row count and the MD5 of its rows'
    text forms in primary-key order (in whole-row order for a table without a primary key,
    such as pgbench_history), computed by the server in one statement, so one snapshot."""
    tables = psql(server, db, """
        SELECT format('%I.%I', n.nspname, c.relname),
               coalesce((SELECT string_agg(format('t.%I', a.attname), ', ' ORDER BY k.ord)
                         FROM pg_index i
                         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                         WHERE i.indrelid = c.oid AND i.indisprimary), '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%'
        ORDER BY 1;
    """)
    if not tables:
        return {}
    selects = []
    for name, order in tables:
        literal = name.replace("'", "''")
        selects.append(f"SELECT '{literal}', count(*), coalesce(md5(string_agg(t::text, E'\\n' "
                       f"ORDER BY {order or 't::text'})), md5('')) FROM {name} t")
    rows = psql(server, db, "\nUNION ALL\n".join(selects) + ";")
    return {name: (int(count), digest) for name, count, digest in rows}


def pg_balances(server: Server, db: str) -> tuple[int, int, int, int]:
    """pgbench's four sums, in one statement (so one snapshot): accounts' abalance, history's
    delta, tellers' tbalance, branches' bbalance."""
    [row] = psql(server, db, """
        SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts),
               (SELECT coalesce(sum(delta), 0) FROM pgbench_history),
               (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers),
               (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches);
    """)
    a, h, t, b = (int(v) for v in row)
    return a, h, t, b


def pg_consistent(server: Server, db: str) -> bool:
    """pgbench's invariant: every transaction adds the same delta to an account, a teller, a
    branch and the history, so the four sums are equal in any transaction-consistent copy,
    and a dump that mixes moments (tables copied at different times) breaks it."""
    return len(set(pg_balances(server, db))) == 1


@dataclass
class PgWriter:
    """pgbench clients running TPC-B-like transactions in the background (``pg_writers``)."""

    process: subprocess.Popen[str]
    server: Server

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> str:
        """Stop the clients now (if they still run) and return pgbench's output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            out, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return out

    def wait(self, timeout: float = 120) -> str:
        """Let the run end by itself (its ``-T``); its output, or a failure if pgbench failed."""
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.stop()
        if self.process.returncode != 0:
            raise RuntimeError(f"pgbench exited with {self.process.returncode}: {out}")
        return out

    def __enter__(self) -> PgWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pg_writers(server: Server, db: str, seconds: int, clients: int = 2) -> PgWriter:
    """Start ``pgbench -c CLIENTS -T SECONDS`` against ``db`` (filled by ``pg_fill``) and return
    at once: a dump taken meanwhile sees transactions committing, as in production. Use the
    handle as a context manager, or call ``stop``/``wait``."""
    argv = ["pgbench", *server.args(), "-n", "-c", str(clients), "-j", str(clients),
            "-T", str(seconds), db]
    if any(server.password in arg for arg in argv):
        raise AssertionError("pgbench: the password must not be passed as an argument")
    process = subprocess.Popen(argv, env=server.env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return PgWriter(process, server)


# --- MariaDB --------------------------------------------------------------------------------------


def mariadb_sql(server: Server, sql: str, db: str | None = None) -> list[list[str]]:
    """Run ``sql`` (statements on standard input) with the ``mariadb`` client; the rows of its
    batch output (tab-separated, no column names)."""
    out = run(server, ["mariadb", *server.args(), "--batch", "--skip-column-names",
                       *([db] if db else [])], input=sql)
    return [line.split("\t") for line in out.splitlines() if line]


def mariadb_fill(server: Server, db: str, rows: int = 1000) -> None:
    """Create ``db`` with a shop's tables: ``rows`` customers (int key, UTF-8 names, NULLs,
    DECIMAL balances, DATETIME(6)), two orders each (BIGINT key, text, a BLOB holding every
    kind of byte a dump must escape: NUL, CR, LF, quotes, backslash) and three order lines per
    order (a composite key). Rows are made by the server (the SEQUENCE engine), deterministic
    functions of their key, so two fills with the same arguments are equal."""
    orders = 2 * rows
    mariadb_sql(server, f"""
        CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
        USE `{db}`;
        CREATE TABLE customers (
            id INT PRIMARY KEY,
            name VARCHAR(100) NOT NULL,
            email TEXT NULL,
            balance DECIMAL(12, 2) NOT NULL,
            created DATETIME(6) NOT NULL
        ) ENGINE=InnoDB;
        CREATE TABLE orders (
            id BIGINT PRIMARY KEY,
            customer_id INT NOT NULL,
            amount DECIMAL(10, 2) NOT NULL,
            note TEXT NULL,
            placed DATETIME NOT NULL,
            payload BLOB NOT NULL,
            KEY (customer_id)
        ) ENGINE=InnoDB;
        CREATE TABLE order_lines (
            order_id BIGINT NOT NULL,
            line INT NOT NULL,
            sku CHAR(12) NOT NULL,
            qty SMALLINT NOT NULL,
            price DECIMAL(8, 3) NOT NULL,
            PRIMARY KEY (order_id, line)
        ) ENGINE=InnoDB;
        INSERT INTO customers
        SELECT seq, CONCAT('Customer ', seq, ' Ærøskøbing ☃'),
               IF(seq % 7 = 0, NULL, CONCAT('c', seq, '@example.test')),
               ((seq * 7919) % 10000000) / 100,
               TIMESTAMP('2024-01-01 00:00:00') + INTERVAL seq * 3607 SECOND
                   + INTERVAL seq * 13 MICROSECOND
        FROM seq_1_to_{rows};
        INSERT INTO orders
        SELECT seq, (seq - 1) % {rows} + 1, ((seq * 137) % 100000) / 100,
               IF(seq % 5 = 0, NULL, CONCAT(REPEAT('note ', seq % 20), 'it''s "quoted" \\\\ ')),
               TIMESTAMP('2024-06-01 12:00:00') + INTERVAL seq * 61 SECOND,
               CONCAT(UNHEX(SHA2(seq, 512)), UNHEX('000D0A27225C1A'), UNHEX(MD5(seq)))
        FROM seq_1_to_{orders};
        INSERT INTO order_lines
        SELECT o.seq, l.seq, CONCAT('SKU-', LPAD(o.seq * 3 + l.seq, 8, '0')),
               (o.seq + l.seq) % 9 + 1, ((o.seq * 31 + l.seq * 7) % 100000) / 1000
        FROM seq_1_to_{orders} o CROSS JOIN seq_1_to_3 l;
    """)


_BINARY_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}


def mariadb_fingerprint(server: Server, db: str) -> Fingerprint:
    """Every base table of ``db``: its row count and the MD5 of its rows in primary-key order,
    each row every column's ``QUOTE`` (binary columns in hex), computed by the server in one
    statement with ``group_concat_max_len`` raised so nothing is cut."""
    columns = mariadb_sql(server, f"""
        SELECT c.table_name, c.column_name, c.data_type,
               IFNULL(k.ordinal_position, 0)
        FROM information_schema.columns c
        JOIN information_schema.tables t
          ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        LEFT JOIN information_schema.key_column_usage k
          ON k.table_schema = c.table_schema AND k.table_name = c.table_name
         AND k.column_name = c.column_name AND k.constraint_name = 'PRIMARY'
        WHERE c.table_schema = '{db}' AND t.table_type = 'BASE TABLE'
        ORDER BY c.table_name, c.ordinal_position;
    """)
    tables: dict[str, tuple[list[str], list[tuple[int, str]]]] = {}
    for table, column, data_type, key_position in columns:
        exprs, keys = tables.setdefault(table, ([], []))
        quoted = f"`{column}`"
        exprs.append(f"IFNULL(HEX({quoted}), 'NULL')" if data_type in _BINARY_TYPES
                     else f"QUOTE({quoted})")
        if int(key_position):
            keys.append((int(key_position), quoted))
    if not tables:
        return {}
    selects = []
    for table, (exprs, keys) in sorted(tables.items()):
        row = f"CONCAT_WS(',', {', '.join(exprs)})"
        order = ", ".join(k for _, k in sorted(keys)) or row
        selects.append(f"SELECT '{table}', COUNT(*), IFNULL(MD5(GROUP_CONCAT({row} "
                       f"ORDER BY {order} SEPARATOR '\\n')), MD5('')) FROM `{db}`.`{table}`")
    rows = mariadb_sql(server, "SET SESSION group_concat_max_len = 4294967295;\n"
                       + "\nUNION ALL\n".join(selects) + ";")
    return {table: (int(count), digest) for table, count, digest in rows}


# --- Redis ----------------------------------------------------------------------------------------


def redis_cli(server: Server, *args: str) -> str:
    """One command through ``redis-cli`` (raw output); an error reply fails."""
    out = run(server, ["redis-cli", *server.args(), "--raw", *args])
    if out.startswith(("ERR", "WRONGTYPE", "NOAUTH", "LOADING")):
        raise RuntimeError(f"redis: {out.strip()}")
    return out


def _resp(*parts: str | bytes) -> bytes:
    """One command in the Redis protocol (what ``redis-cli --pipe`` sends as it is)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def redis_fill(server: Server, keys: int = 500, prefix: str = "amber") -> None:
    """``keys`` keys of every kind in turn: strings (binary: NUL, CR, LF, non-UTF-8 bytes),
    hashes, lists, sets and sorted sets (fractional scores), deterministic in ``prefix`` and the
    key's number; sent in one ``redis-cli --pipe``."""
    commands = []
    for i in range(keys):
        key = f"{prefix}:{i:06d}"
        kind = i % 5
        if kind == 0:
            value = f"value {i} ünïcødé ".encode() + bytes([i % 256, 0, 13, 10, 0xFF])
            commands.append(_resp("SET", f"{key}:str", value))
        elif kind == 1:
            commands.append(_resp("HSET", f"{key}:hash", "name", f"item {i}", "price",
                                  f"{i * 1.25:.2f}", "tags", "a,b\tc"))
        elif kind == 2:
            commands.append(_resp("RPUSH", f"{key}:list", *(f"e{i}-{j}" for j in range(i % 7 + 1)),
                                  "dup", "dup"))
        elif kind == 3:
            commands.append(_resp("SADD", f"{key}:set", *(f"m{(i * j) % 97}" for j in range(5))))
        else:
            pairs: list[str] = []
            for j in range(4):
                pairs += [f"{(i * 7 + j) / 8}", f"p{j}"]
            commands.append(_resp("ZADD", f"{key}:zset", *pairs))
    out = run(server, ["redis-cli", *server.args(), "--pipe"], input=b"".join(commands),
              text=False)
    if "errors: 0," not in out:
        raise RuntimeError(f"redis-cli --pipe: {out.strip()}")


#: Computed in the server (EVAL): keys sorted; each key's name, type and value with every string
#: length-prefixed (so no two different contents serialise alike), hash fields and set members
#: sorted, lists in order, sorted sets in score order with their scores; one SHA-1 over it all.
_FINGERPRINT_LUA = """
local function enc(s) return #s .. ':' .. s end
local keys = redis.call('KEYS', '*')
table.sort(keys)
local parts, types = {}, {}
for _, k in ipairs(keys) do
  local t = redis.call('TYPE', k)['ok']
  types[t] = (types[t] or 0) + 1
  local items
  if t == 'string' then
    items = {redis.call('GET', k)}
  elseif t == 'hash' then
    local flat = redis.call('HGETALL', k)
    local fields = {}
    for i = 1, #flat, 2 do fields[#fields + 1] = enc(flat[i]) .. enc(flat[i + 1]) end
    table.sort(fields)
    items = fields
  elseif t == 'list' then
    items = redis.call('LRANGE', k, 0, -1)
  elseif t == 'set' then
    items = redis.call('SMEMBERS', k)
    table.sort(items)
  elseif t == 'zset' then
    items = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  else
    items = {redis.call('DUMP', k)}
  end
  local value = {}
  for i, v in ipairs(items) do value[i] = enc(v) end
  parts[#parts + 1] = enc(k) .. enc(t) .. #items .. '[' .. table.concat(value) .. ']'
end
return cjson.encode({dbsize = redis.call('DBSIZE'), keys = #keys, types = types,
                     digest = redis.sha1hex(table.concat(parts, '\\n'))})
"""


def redis_fingerprint(server: Server) -> dict[str, object]:
    """DBSIZE, the number of keys of each type, and a digest of every key's name, type and
    value (see ``_FINGERPRINT_LUA``), all from one script, so one moment of the server."""
    result = json.loads(redis_cli(server, "EVAL", _FINGERPRINT_LUA, "0"))
    if not isinstance(result, dict):
        raise RuntimeError(f"unexpected fingerprint: {result!r}")
    return result
