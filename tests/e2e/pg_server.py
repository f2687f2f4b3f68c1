"""A real PostgreSQL server for the end-to-end tests and the benchmarks.

* `PostgresServer(workdir)`: initdb + `postgres` on a free 127.0.0.1 port,
  with its data dir in a private /tmp/sluice-pg-* directory (removed by
  `close()`) and its log in workdir/postgres.log. `stop()` / `start()` keep
  the data dir and the port (for fault tests), `kill()` SIGKILLs the server.
  Queries go through the `psql` client of the same installation, so no
  Python driver is needed.
* Fixtures (bottom of the file): `postgres` (one server per test module,
  closed at teardown) and `pg_database` (a fresh database per test; yields
  its URL). Test modules bind them at module level, e.g.
  `postgres = pg_server.postgres`.

The class never calls into pytest, so a benchmark can use it after
`sys.path.insert(0, "<repo>/tests/e2e")` (sluice_proc, which it imports,
does import pytest: install-test-deps.sh installs it).

The binaries are the newest /usr/lib/postgresql/<ver>/bin (Debian's layout,
installed by scripts/install-test-deps.sh) or $SLUICE_PG_BINDIR.

PostgreSQL refuses to run as root: as root, initdb and postgres run as the
`postgres` system user (created by Debian's package), which owns the
private /tmp directory. The log file is opened here and handed to the
server as its stdout/stderr, so that user needs no access to workdir
(pytest's tmp dirs are mode 0700).

The server is a direct child of this process (not daemonized by pg_ctl),
started with a parent-death signal: if the Python process dies, even with
SIGKILL, the postmaster gets SIGKILL and its backends exit. Note that the
signal follows the *thread* that called start(): start servers from the
main thread (or one that outlives them).
"""

from __future__ import annotations

import atexit
import csv
import glob
import io
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from sluice_proc import _set_pdeathsig, free_port

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
INITDB_TIMEOUT_S = 60.0
PSQL_TIMEOUT_S = 60.0
LOG_TAIL_BYTES = 20_000

INSTALL_HINT = "run bash scripts/install-test-deps.sh"
PG_LIB = "/usr/lib/postgresql"
SUPERUSER = "postgres"
# Private dirs: BASE_PARENT/BASE_PREFIX*/{pgdata,sock,OWNER_FILE}.
BASE_PARENT = "/tmp"
BASE_PREFIX = "sluice-pg-"
OWNER_FILE = "owner.pid"
DEFAULT_DB = "sluice"

# Shutdown modes of the postmaster (what pg_ctl -m sends).
STOP_SIGNALS = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}

# Server settings on top of the port / socket / data dir. Durability stays
# at PostgreSQL's defaults (spelled out so nobody "optimizes" them away);
# the rest keeps a server small and quick to start on a 2-core machine.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "huge_pages": "off",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    # No parallel query (pointless on 2 cores, and it needs /dev/shm space)
    # and no JIT compilation (it adds seconds to the first costly query).
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
    "logging_collector": "off",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    "TimeZone": "UTC",
}


class PostgresError(RuntimeError):
    pass


def find_bindir() -> Path:
    """$SLUICE_PG_BINDIR, else the newest /usr/lib/postgresql/<ver>/bin
    holding initdb, postgres and psql."""
    override = os.environ.get("SLUICE_PG_BINDIR")
    if override:
        candidates = [Path(override)]
    else:

        def version(d: str) -> Tuple[int, ...]:
            name = Path(d).parent.name
            try:
                return tuple(int(p) for p in name.split("."))
            except ValueError:
                return (-1,)

        candidates = [Path(d) for d in sorted(glob.glob(f"{PG_LIB}/*/bin"), key=version, reverse=True)]
    for d in candidates:
        if all(os.access(d / prog, os.X_OK) for prog in ("initdb", "postgres", "psql")):
            return d
    where = override or f"{PG_LIB}/*/bin"
    raise PostgresError(f"initdb, postgres and psql not found under {where}: {INSTALL_HINT}")


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _children_of(pid: int) -> List[int]:
    """Pids whose parent is `pid` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm (field 2) may contain spaces; the fields after it do not.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def _gone(pid: int) -> bool:
    """True if pid has exited (a zombie counts: this machine's pid 1 may
    reap orphans late)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] in ("Z", "X")


def _sweep_stale() -> None:
    """Delete the private dirs of servers whose Python process died without
    close() (SIGKILL, faulthandler's exit): the postmaster died with it
    (parent-death signal), only its files are left."""
    for d in glob.glob(os.path.join(BASE_PARENT, BASE_PREFIX + "*")):
        try:
            owner = int(Path(d, OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if _gone(owner):
            shutil.rmtree(d, ignore_errors=True)


_LIVE: "weakref.WeakSet[PostgresServer]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for server in list(_LIVE):
        try:
            server.close()
        except Exception:
            pass


class PostgresServer:
    """One PostgreSQL server on 127.0.0.1:<free port>.

    `start()` runs initdb the first time (superuser `postgres`, trust auth,
    UTF8, C locale) and creates the database `sluice`; later starts reuse
    the data dir and the port. `close()` stops the server and deletes the
    data dir; the log stays in workdir/postgres.log.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "postgres.log"
        self.port: Optional[int] = None
        self.bindir: Optional[Path] = None
        self.base: Optional[Path] = None  # private dir: pgdata/, sock/
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self._user: Optional[pwd.struct_passwd] = None
        self._log_fh = None
        self._default_db_created = False
        _LIVE.add(self)

    # -- paths and identity -------------------------------------------------

    @property
    def data_dir(self) -> Path:
        assert self.base is not None, "not started yet"
        return self.base / "pgdata"

    @property
    def socket_dir(self) -> Path:
        assert self.base is not None, "not started yet"
        return self.base / "sock"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def url(self, dbname: str = DEFAULT_DB) -> str:
        assert self.port is not None, "not started yet"
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _run_as(self) -> dict:
        """Popen arguments that drop root to the postgres user."""
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", PGCONNECT_TIMEOUT="10", PGAPPNAME="sluice-e2e")
        if self._user is not None:
            env.update(HOME=self._user.pw_dir, USER=self._user.pw_name, LOGNAME=self._user.pw_name)
        return env

    # -- lifecycle ------------------------------------------------------------

    def _prepare(self) -> None:
        """First start: binaries, user, private dir, initdb."""
        self.bindir = find_bindir()
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise PostgresError(
                    f"running as root and there is no '{SUPERUSER}' system user to run "
                    f"PostgreSQL as (Debian's postgresql package creates it): {INSTALL_HINT}"
                ) from None
        # A short path under /tmp: traversable by the postgres user (pytest's
        # tmp dirs are not) and short enough for the Unix socket path limit.
        _sweep_stale()
        self.base = Path(tempfile.mkdtemp(prefix=BASE_PREFIX, dir=BASE_PARENT))
        (self.base / OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.socket_dir.mkdir()
        if self._user is not None:
            for p in (self.base, self.socket_dir):
                os.chown(p, self._user.pw_uid, self._user.pw_gid)
        link = self.workdir / "pgdata"
        if link.is_symlink():
            link.unlink()
        if not link.exists():
            link.symlink_to(self.data_dir)
        self.port = free_port()

        argv = [
            str(self.bindir / "initdb"),
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "-A", "trust",
            "-E", "UTF8",
            "--locale=C",
            # Only initdb skips its final fsync (a crash mid-initdb fails the
            # test anyway); the server itself runs with fsync on.
            "--no-sync",
            "--no-instructions",
        ]
        self._log(f"initdb as {self._user.pw_name if self._user else 'current user'}: {' '.join(argv)}")
        try:
            rc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_fh,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=str(self.base),
                timeout=INITDB_TIMEOUT_S,
                preexec_fn=_set_pdeathsig,
                **self._run_as(),
            ).returncode
        except subprocess.TimeoutExpired:
            raise PostgresError(
                f"initdb did not finish within {INITDB_TIMEOUT_S:.0f}s\n"
                f"--- postgres log ---\n{self.log_tail()}"
            ) from None
        if rc != 0:
            raise PostgresError(f"initdb failed with exit code {rc}\n--- postgres log ---\n{self.log_tail()}")

    def start(self) -> "PostgresServer":
        """Start the server (initdb on the first call, at most 60 s) and
        wait until it accepts connections, at most 30 s."""
        assert not self.is_running(), "already running"
        if self._log_fh is None:
            self._log_fh = open(self.log_path, "ab", buffering=0)
        t0 = time.monotonic()
        if self.base is None:
            try:
                self._prepare()
            except BaseException:
                if self.base is not None:
                    shutil.rmtree(self.base, ignore_errors=True)
                    self.base = None
                raise
        self.starts += 1
        argv = [
            str(self.bindir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-k", str(self.socket_dir),
        ]
        for key, value in SERVER_SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        self._log(f"start #{self.starts}: {' '.join(argv)}")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env=self._env(),
            cwd=str(self.base),
            preexec_fn=_set_pdeathsig,
            **self._run_as(),
        )
        try:
            self._wait_ready(time.monotonic() + START_TIMEOUT_S)
            if not self._default_db_created:
                self.create_database(DEFAULT_DB)
                self._default_db_created = True
        except BaseException:
            self._kill_all()
            raise
        self._log(f"ready after {time.monotonic() - t0:.2f}s (pid {self.proc.pid}, port {self.port})")
        return self

    def _wait_ready(self, deadline: float) -> None:
        """Until postmaster.pid names our process as ready and the port
        accepts a TCP connection (a kill leaves a stale "ready" file)."""
        pidfile = self.data_dir / "postmaster.pid"
        last = "no attempt yet"
        while True:
            if self.proc.poll() is not None:
                raise PostgresError(
                    f"postgres exited with code {self.proc.returncode} at start-up\n"
                    f"--- postgres log ---\n{self.log_tail()}"
                )
            try:
                lines = pidfile.read_text().splitlines()
            except OSError as e:
                lines = []
                last = f"postmaster.pid: {e.strerror}"
            if len(lines) >= 8 and lines[0].strip() == str(self.proc.pid):
                if lines[7].strip() == "ready":
                    try:
                        socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                        return
                    except OSError as e:
                        last = f"port {self.port}: {e}"
                else:
                    last = f"postmaster status {lines[7].strip()!r}"
            elif lines:
                last = f"postmaster.pid names pid {lines[0].strip()}, not {self.proc.pid}"
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"postgres not ready within {START_TIMEOUT_S:.0f}s (last: {last})\n"
                    f"--- postgres log ---\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """Shut the server down ("smart", "fast" or "immediate", as pg_ctl
        -m) and wait for it, at most 30 s; the data dir and port are kept
        for start(). On timeout the server is killed and PostgresError
        raised."""
        if not self.is_running():
            return
        sig = STOP_SIGNALS[mode]
        self._log(f"stop ({mode}: {signal.Signals(sig).name})")
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._kill_all()
            raise PostgresError(
                f"postgres did not stop ({mode}) within {STOP_TIMEOUT_S:.0f}s (killed)\n"
                f"--- postgres log ---\n{self.log_tail()}"
            ) from None
        self._log(f"stopped with exit code {self.proc.returncode}")

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, like a crash of the
        database host (minus the page cache); the next start() runs crash
        recovery. Returns once every one of them has exited."""
        assert self.is_running(), "postgres not running"
        self._log("kill (SIGKILL to the postmaster and its children)")
        self._kill_all()

    def _kill_all(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pm = self.proc.pid
        # Freeze the postmaster so it forks no new child while we list them.
        try:
            os.kill(pm, signal.SIGSTOP)
        except ProcessLookupError:
            pass
        children = _children_of(pm)
        self.proc.kill()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        # A new postmaster refuses to start while old backends still hold
        # the shared memory segment.
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in children):
            if time.monotonic() > deadline:
                raise PostgresError(f"postgres children {children} still alive 10s after SIGKILL")
            time.sleep(0.02)

    def close(self) -> None:
        """Stop the server (killing it if need be) and delete its data dir."""
        try:
            if self.is_running():
                try:
                    self.stop()
                except PostgresError:
                    pass
        finally:
            self._kill_all()
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None
                self._default_db_created = False
            if self._log_fh is not None:
                self._log_fh.close()
                self._log_fh = None
            _LIVE.discard(self)

    def __enter__(self) -> "PostgresServer":
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- SQL through psql ---------------------------------------------------

    def psql(self, sql: str, db: str = DEFAULT_DB, timeout: float = PSQL_TIMEOUT_S) -> str:
        """Run sql with psql (statement by statement, autocommit, stopping
        at the first error) and return its output: the rows of every
        statement as headerless CSV. See query()."""
        assert self.port is not None, "not started yet"
        argv = [
            str(self.bindir / "psql"),
            "-X",  # no ~/.psqlrc
            "-q",  # no command tags
            "-t",  # rows only
            "--csv",  # quoted where needed: values may hold tabs, commas, newlines
            "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1",
            "-p", str(self.port),
            "-U", SUPERUSER,
            "-d", db,
            "-f", "-",
        ]
        try:
            r = subprocess.run(
                argv,
                input=sql.encode(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env(),
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise PostgresError(f"psql did not finish within {timeout:.0f}s: {sql[:500]}") from None
        if r.returncode != 0:
            raise PostgresError(
                f"psql -d {db} failed (exit {r.returncode}): "
                f"{r.stderr.decode('utf-8', 'replace').strip()}\n--- sql ---\n{sql[:2000]}"
            )
        return r.stdout.decode("utf-8")

    def query(self, sql: str, db: str = DEFAULT_DB, timeout: float = PSQL_TIMEOUT_S) -> List[Tuple[str, ...]]:
        """Rows of every statement in sql, each a tuple of text values
        (NULL reads as ''). Any error raises PostgresError with psql's
        message; statements after it are not run."""
        out = self.psql(sql, db=db, timeout=timeout)
        # psql -t --csv writes no blank lines of its own: an empty line is
        # one column holding '' or NULL (csv.reader reads it as []).
        return [tuple(row) or ("",) for row in csv.reader(io.StringIO(out, newline=""))]

    def create_database(self, name: Optional[str] = None) -> str:
        """CREATE DATABASE name (default: a fresh unique name); returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        self.query(f"CREATE DATABASE {_quote_ident(name)}", db="postgres")
        return self.url(name)

    # -- observation ----------------------------------------------------------

    def _log(self, line: str) -> None:
        if self._log_fh is not None:
            self._log_fh.write(f"===== [e2e] {time.strftime('%H:%M:%S')} {line}\n".encode())

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return "<no postgres log>"

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        text = self.log_text()
        if len(text) > limit:
            return f"... ({len(text) - limit} earlier chars cut) ...\n" + text[-limit:]
        return text


# ---------------------------------------------------------------------------
# pytest fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """One PostgreSQL server per test module, closed at teardown."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    try:
        server.start()
    except PostgresError as e:
        server.close()
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_database(postgres) -> str:
    """URL of a fresh, uniquely named database on the module's server
    (started again first if an earlier test left it stopped or killed)."""
    if not postgres.is_running():
        postgres.start()
    return postgres.create_database()


# ---------------------------------------------------------------------------
# Command line: a server for tests outside pytest (the Rust catalog tests)
# ---------------------------------------------------------------------------


def _serve_main(argv: List[str]) -> int:
    """`python3 pg_server.py serve WORKDIR`: starts a server, prints its
    `sluice` database URL on one line, and stops it when stdin closes (the
    caller exiting, or closing the pipe)."""
    if len(argv) != 2 or argv[0] != "serve":
        print("usage: pg_server.py serve WORKDIR", file=sys.stderr)
        return 2
    with PostgresServer(Path(argv[1])) as pg:
        print(pg.url(), flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(_serve_main(sys.argv[1:]))
