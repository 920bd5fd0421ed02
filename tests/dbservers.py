"""Real database servers on loopback for the dump/restore tests: PostgreSQL, MariaDB and Redis,
each started from the machine's own binaries on a free port in a directory of its own, waited for
until it answers an authenticated query, and stopped (killed if it will not stop) when the block
ends, so nothing is left running (imported by name; pytest puts tests/ on the path).

Application-consistent backups are only worth what a restore reproduces, and only a real server
shows what its own dump tools and data files really do; fakes would agree with whatever we wrote.

Secrets never appear in a process's arguments (``/proc/PID/cmdline`` is world-readable): servers
get their passwords from files of mode 0600, clients from the environment that ``Server.env``
returns (``PGPASSWORD``, ``MYSQL_PWD``, ``REDISCLI_AUTH``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: The unprivileged OS user PostgreSQL runs as when the tests run as root (it refuses root).
PG_OS_USER = "amber-test"
#: The superuser every server is given (Redis has only the password).
DB_USER = "amber"
#: Where ``redis(tmp)`` keeps its data: put a ``dump.rdb`` here before starting to load it.
REDIS_DATA = "data"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Server:
    """A running server: where it listens, whom it accepts, where its files are."""

    kind: str  # "postgres", "mariadb" or "redis"
    host: str
    port: int
    user: str
    password: str = field(repr=False)  # kept out of assertion messages and logs
    data_dir: Path
    log: Path
    pid: int

    def env(self) -> dict[str, str]:
        """The environment a client of this server runs in: the caller's, plus the password in
        the variable the server's own clients read (and, for PostgreSQL, where to connect)."""
        env = dict(os.environ)
        if self.kind == "postgres":
            env.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user,
                       PGPASSWORD=self.password, PGDATABASE="postgres", PGCONNECT_TIMEOUT="10")
        elif self.kind == "mariadb":
            env["MYSQL_PWD"] = self.password
        else:
            env["REDISCLI_AUTH"] = self.password
        return env

    def args(self) -> list[str]:
        """The connection arguments of this server's command-line clients (``psql``/``pg_dump``,
        ``mariadb``/``mariadb-dump``, ``redis-cli``), passwords excepted. MariaDB's start with
        ``--no-defaults`` (it must come first) so the machine's /etc/mysql cannot interfere."""
        if self.kind == "postgres":
            return ["-h", self.host, "-p", str(self.port), "-U", self.user]
        if self.kind == "mariadb":
            return ["--no-defaults", "--protocol=TCP", "-h", self.host, "-P", str(self.port),
                    "-u", self.user, "--default-character-set=utf8mb4"]
        return ["-h", self.host, "-p", str(self.port), "--no-auth-warning"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _secret_file(path: Path, text: str, owner: int | None = None) -> Path:
    """Write ``text`` to ``path`` readable by its owner only (created so: never world-readable,
    even for an instant)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if owner is not None:
        os.chown(path, owner, -1)
    return path


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _process(argv: list[str], log: Path, *, user: str | None = None,
             cwd: Path | None = None, stop_signal: int = signal.SIGTERM,
             ) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in a session of its own, output to ``log``; on leaving, ``stop_signal`` to
    it, then SIGKILL to its whole process group if it has not exited within STOP_TIMEOUT (a
    PostgreSQL backend or a stuck shutdown must not outlive the test)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                                user=user, group=_gid(user) if user else None,
                                extra_groups=[] if user else None)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT)
        # Whatever is left of the group (children of a server that died or would not stop).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _gid(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, what: str,
                probe: list[str], env: dict[str, str]) -> None:
    """Poll ``probe`` (a client command) until it succeeds; fail at once, with the server's log,
    if the server exits first, and after START_TIMEOUT otherwise."""
    deadline = time.monotonic() + START_TIMEOUT
    last = ""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting:\n"
                               f"{_tail(log)}")
        result = subprocess.run(probe, env=env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=30)
        if result.returncode == 0:
            return
        last = (result.stderr or result.stdout).strip()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {START_TIMEOUT:.0f} s "
                               f"(last: {last}):\n{_tail(log)}")
        time.sleep(0.1)


# --- PostgreSQL -----------------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    """A PostgreSQL server program (initdb, postgres): they are not on PATH on Debian; the
    newest installed major version's are taken."""
    found = shutil.which(name)
    if found and name not in ("initdb", "postgres"):
        return found
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True):
        if (bindir / name).exists():
            return str(bindir / name)
    if found:
        return found
    raise FileNotFoundError(f"PostgreSQL's {name} is not installed")


def _ensure_os_user(name: str) -> None:
    """Create the system user PostgreSQL runs as, once per machine (another test session may be
    creating it at the same moment: useradd's 'already exists' is success too)."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    # a uid far from the system range, which other tests use as "no such user on the host"
    result = subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                             "--uid", "64990", "--shell", "/usr/sbin/nologin", name],
                            capture_output=True, text=True)
    if result.returncode not in (0, 9):  # 9: the name is taken
        raise RuntimeError(f"useradd {name}: {result.stderr.strip()}")
    pwd.getpwnam(name)


@contextlib.contextmanager
def postgres(tmp: Path) -> Iterator[Server]:
    """A PostgreSQL server on 127.0.0.1: a fresh cluster (UTF-8, C collation) whose superuser
    ``amber`` logs in with a password (scram-sha-256, for TCP and the socket alike).

    As root the cluster belongs to ``amber-test`` and lives in a private directory of its own
    under the system's temporary directory, removed afterwards: pytest's directories are
    root's alone (mode 0700), which that user could not enter. The log stays in ``tmp``.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    os_user: str | None = None
    if os.geteuid() == 0:
        _ensure_os_user(PG_OS_USER)
        os_user = PG_OS_USER
    home = Path(tempfile.mkdtemp(prefix="amber-pg-")) if os_user else tmp
    try:
        if os_user:
            entry = pwd.getpwnam(os_user)
            os.chown(home, entry.pw_uid, entry.pw_gid)
            home.chmod(0o700)
        data = home / "pgdata"
        password = secrets.token_urlsafe(18)
        pwfile = _secret_file(home / "pwfile", password + "\n",
                              owner=pwd.getpwnam(os_user).pw_uid if os_user else None)
        log = tmp / "postgres.log"
        init = subprocess.run([pg_bin("initdb"), "-D", str(data), "-U", DB_USER,
                               f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                               "--no-locale", "--no-sync"],
                              capture_output=True, text=True, cwd=home, user=os_user,
                              group=_gid(os_user) if os_user else None,
                              extra_groups=[] if os_user else None)
        pwfile.unlink()
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stdout}\n{init.stderr}")
        port = free_port()
        argv = [pg_bin("postgres"), "-D", str(data), "-p", str(port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={home}",
                "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=50",
                "-c", "logging_collector=off"]
        # SIGINT is PostgreSQL's fast shutdown: sessions are ended, nothing waits for clients.
        with _process(argv, log, user=os_user, cwd=home, stop_signal=signal.SIGINT) as proc:
            server = Server("postgres", "127.0.0.1", port, DB_USER, password, data, log,
                            proc.pid)
            _wait_ready(proc, log, "postgres",
                        ["psql", "-X", "-q", "-w", "-d", "postgres", "-c", "SELECT 1"],
                        server.env())
            yield server
    finally:
        if os_user:
            shutil.rmtree(home, ignore_errors=True)


# --- MariaDB --------------------------------------------------------------------------------------


@contextlib.contextmanager
def mariadb(tmp: Path) -> Iterator[Server]:
    """A MariaDB server on 127.0.0.1 with its data, socket and pid file in ``tmp``, the grant
    tables in force, and a user ``amber`` that logs in over TCP with a password and may do
    anything (a backup tool's restore creates databases and users).

    The datadir gets a root account without password on the socket only (``normal``
    authentication, so this works whoever runs the tests); the test user is created through
    that socket with the statement on standard input, never in an argument.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    data = tmp / "data"
    sock = tmp / "mariadb.sock"
    if len(str(sock)) > 100:  # sun_path holds 108 bytes
        raise ValueError(f"socket path too long for MariaDB: {sock}")
    log = tmp / "mariadb.log"
    run_as = "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    install = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}",
                              f"--user={run_as}", "--auth-root-authentication-method=normal",
                              "--skip-test-db", "--skip-name-resolve"],
                             capture_output=True, text=True, cwd=tmp)
    if install.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed: {install.stdout}\n{install.stderr}")
    port = free_port()
    argv = ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}",
            f"--pid-file={tmp / 'mariadb.pid'}", f"--port={port}", "--bind-address=127.0.0.1",
            f"--user={run_as}", "--skip-name-resolve", "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci", "--innodb-buffer-pool-size=64M",
            "--innodb-flush-log-at-trx-commit=0",
            "--max-allowed-packet=256M", "--skip-log-bin"]
    password = secrets.token_urlsafe(18)
    with _process(argv, log) as proc:
        root_socket = ["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root"]
        _wait_ready(proc, log, "mariadbd", [*root_socket, "-e", "SELECT 1"], dict(os.environ))
        create = (f"CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{password}';\n"
                  f"GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'127.0.0.1' WITH GRANT OPTION;\n")
        done = subprocess.run(root_socket, input=create, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"creating the test user failed: {done.stderr}")
        server = Server("mariadb", "127.0.0.1", port, DB_USER, password, data, log, proc.pid)
        _wait_ready(proc, log, "mariadbd", ["mariadb", *server.args(), "-e", "SELECT 1"],
                    server.env())
        yield server


# --- Redis ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def redis(tmp: Path) -> Iterator[Server]:
    """A Redis server on 127.0.0.1 in the foreground, its data in ``tmp/data`` (a ``dump.rdb``
    already there is loaded: that is how a restored snapshot is started), password required.

    The password is in a config file of mode 0600 rather than ``--requirepass`` on the command
    line; port, dir and the rest are arguments.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    data = tmp / REDIS_DATA
    data.mkdir(exist_ok=True)
    password = secrets.token_urlsafe(18)
    conf = _secret_file(tmp / "redis.conf", f"requirepass {password}\n")
    log = tmp / "redis.log"
    port = free_port()
    argv = ["redis-server", str(conf), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(data), "--dbfilename", "dump.rdb", "--daemonize", "no",
            "--appendonly", "no", "--save", "", "--protected-mode", "yes",
            "--logfile", ""]
    with _process(argv, log) as proc:
        server = Server("redis", "127.0.0.1", port, "default", password, data, log, proc.pid)
        _wait_ready(proc, log, "redis-server",
                    ["redis-cli", *server.args(), "PING"], server.env())
        # redis-cli exits 0 on an error reply too (e.g. LOADING): ask until the answer is PONG.
        deadline = time.monotonic() + START_TIMEOUT
        while subprocess.run(["redis-cli", *server.args(), "PING"], env=server.env(),
                             capture_output=True, text=True).stdout.strip() != "PONG":
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"redis-server never answered PONG:\n{_tail(log)}")
            time.sleep(0.1)
        yield server
