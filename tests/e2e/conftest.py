"""Fixtures that run a real `sluice serve` process for each test.

* The binary is $SLUICE_BIN, default <repo>/target/fast/sluice.  If it is
  missing every test FAILS (never skips) with a hint to build it.
* Each broker gets free 127.0.0.1 ports and a fresh data dir under the test's
  tmp_path; its stdout+stderr go to a log file that is attached to the report
  of a failing test.
* Readiness: GET /healthz answers 200 and the Kafka port accepts a TCP
  connection, within 30 s; otherwise the test fails with the broker log.
* Teardown: SIGTERM, and the broker must exit with code 0 within 10 s.
* `broker.kill9()` / `broker.restart()` restart on the same data dir and ports.
* A per-test watchdog (SIGALRM) fails a test that runs too long, so nothing
  hangs forever; a hard faulthandler exit backs it up.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
from pathlib import Path
from typing import Optional

import pytest

from sluice_proc import BrokerError, SluiceBroker, check_sluice_bin

DEFAULT_TEST_TIMEOUT_S = 240.0


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e_timeout(seconds): per-test watchdog timeout (default 240 s)"
    )


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sluice_bin() -> Path:
    return check_sluice_bin()


@pytest.fixture
def broker_factory(request, sluice_bin, tmp_path):
    """Call it to make (and by default start) a broker; all are stopped with
    SIGTERM at teardown and must exit 0 within 10 s."""
    brokers: list = []
    request.node._sluice_brokers = brokers

    def make(name: Optional[str] = None, start: bool = True, **kw) -> SluiceBroker:
        name = name or f"broker{len(brokers)}"
        b = SluiceBroker(sluice_bin, tmp_path / name, name=name, **kw)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make

    problems = []
    for b in brokers:
        if b.proc is None:
            continue
        if b.proc.poll() is not None:
            # Stopped or killed by the test itself: that is the test's business.
            b._close_log()
            continue
        try:
            rc = b.stop()
        except BrokerError as e:
            problems.append(str(e))
            continue
        if rc != 0:
            problems.append(
                f"{b.name} exited with code {rc} after SIGTERM (expected 0)\n"
                f"--- broker log ---\n{b.log_tail()}"
            )
    if problems:
        pytest.fail("broker shutdown problems:\n" + "\n\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def cluster_postgres(tmp_path_factory):
    """One PostgreSQL server for the suite run against a cluster
    (SLUICE_E2E_CLUSTER=N); each test gets a fresh database."""
    import pg_server

    pg = pg_server.PostgresServer(tmp_path_factory.mktemp("cluster-pg"))
    try:
        pg.start()
    except pg_server.PostgresError as e:
        pytest.fail(str(e), pytrace=False)
    yield pg
    pg.close()


@pytest.fixture
def broker(request, broker_factory, tmp_path):
    """A broker; with SLUICE_E2E_CLUSTER=N set, a cluster of N brokers
    sharing a PostgreSQL catalog and an object folder, standing in for it
    (see cluster.ClusterAsBroker)."""
    import cluster

    if cluster.cluster_size_from_env() > 0:
        pg = request.getfixturevalue("cluster_postgres")
        return cluster.start_cluster_as_broker(broker_factory, pg, tmp_path / "shared-objects")
    return broker_factory("broker")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in getattr(item, "_sluice_brokers", []):
            rep.sections.append(
                (f"sluice log: {b.name} ({b.log_path})", b.log_tail())
            )


class WatchdogTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _watchdog(request):
    """Fail a test that exceeds its time budget instead of hanging forever."""
    marker = request.node.get_closest_marker("e2e_timeout")
    limit = float(marker.args[0]) if marker else DEFAULT_TEST_TIMEOUT_S

    def on_alarm(signum, frame):
        raise WatchdogTimeout(f"test exceeded its {limit:.0f}s watchdog")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    # Backstop if Python code cannot run (stuck in C): dump stacks and exit.
    faulthandler.dump_traceback_later(limit + 90, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        faulthandler.cancel_dump_traceback_later()
