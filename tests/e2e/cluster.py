"""A Sluice cluster for the end-to-end tests: several `sluice serve`
processes (own ports and data directories) sharing one PostgreSQL catalog
(`pg_server.PostgresServer`) and one S3 bucket (`s3_server.MotoServer`).

* Broker `i` has id `i + 1` and zone `zone-i`. A client whose `client.id`
  says `zone=zone-i` is given only broker `i` in Metadata, so it produces
  and fetches through that broker alone: that is how a test sends traffic
  "through" one broker (`Cluster.pinned(i)` gives the client settings).
  Unpinned clients spread partitions over every live broker.
* Short leases (`lease_ms`, default 3 s) so that a killed broker's
  partitions and groups move within seconds.
* Fixtures: `cluster_env` (module: one PostgreSQL and one moto server) and
  `cluster3` (per test: a fresh database, bucket and three brokers).
  Test modules bind them with `cluster_env = cluster.cluster_env` etc.
"""

from __future__ import annotations

import time
from typing import Dict, Iterable, List, Optional

import pytest

import pg_server
import s3_server
from s3_server import object_store_broker
from sluice_proc import SluiceBroker

DEFAULT_LEASE_MS = 3000


class Cluster:
    def __init__(
        self,
        broker_factory,
        catalog_url: str,
        moto: "s3_server.MotoServer",
        bucket: str,
        size: int = 3,
        lease_ms: int = DEFAULT_LEASE_MS,
        args: Iterable[str] = (),
        env: Optional[Dict[str, str]] = None,
    ) -> None:
        self.catalog_url = catalog_url
        self.moto = moto
        self.bucket = bucket
        self.lease_ms = lease_ms
        self._factory = broker_factory
        self._args = list(args)
        self._env = {**moto.env(), **(env or {})}
        self.brokers: List[SluiceBroker] = []
        for _ in range(size):
            self.add_broker()

    def add_broker(self) -> SluiceBroker:
        """One more broker (not started): id len(brokers) + 1, its own zone."""
        i = len(self.brokers)
        b = object_store_broker(
            self._factory,
            name=f"b{i}",
            object_store=f"s3://{self.bucket}/cluster",
            args=[
                "--catalog", self.catalog_url,
                "--broker-id", str(i + 1),
                "--rack", self.zone(i),
                "--lease-ms", str(self.lease_ms),
                *self._args,
            ],
            env=dict(self._env),
            start=False,
        )
        self.brokers.append(b)
        return b

    @staticmethod
    def zone(i: int) -> str:
        return f"zone-{i}"

    def start(self) -> "Cluster":
        for b in self.brokers:
            b.start()
        self.wait_members(len(self.brokers))
        return self

    def __getitem__(self, i: int) -> SluiceBroker:
        return self.brokers[i]

    def __len__(self) -> int:
        return len(self.brokers)

    @property
    def bootstrap(self) -> str:
        """Every broker (clients pick any, then follow Metadata)."""
        return ",".join(b.bootstrap for b in self.brokers if b.proc and b.proc.poll() is None)

    def pinned(self, i: int, **conf) -> dict:
        """librdkafka settings that send a client's produce and fetch
        requests through broker i: its zone in client.id makes Metadata name
        only broker i. Every broker is a bootstrap server, so the client can
        still ask another one for Metadata when broker i is gone (then its
        zone has no broker and it is given the others)."""
        return {
            "bootstrap.servers": ",".join(b.bootstrap for b in self.brokers),
            "client.id": f"e2e,zone={self.zone(i)}",
            **conf,
        }

    def live_ids(self, through: int) -> List[int]:
        """Broker ids DescribeCluster-style, read from one broker's HTTP side."""
        import json

        body = s3_server.http_get(self.brokers[through], "/v1/cluster")
        return sorted(b["broker_id"] for b in json.loads(body)["brokers"])

    def wait_members(self, n: int, timeout: float = 30.0) -> None:
        """Until every running broker's Metadata lists `n` brokers."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        running = [b for b in self.brokers if b.proc and b.proc.poll() is None]
        last = None
        for b in running:
            admin = AdminClient({"bootstrap.servers": b.bootstrap})
            while True:
                md = admin.list_topics(timeout=10)
                last = sorted(md.brokers)
                if len(md.brokers) == n:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{b.name} lists brokers {last}, not {n}")
                time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    """One PostgreSQL server and one moto server for a test module."""
    pg = pg_server.PostgresServer(tmp_path_factory.mktemp("pg"))
    moto = s3_server.MotoServer(tmp_path_factory.mktemp("moto"))
    try:
        pg.start()
    except pg_server.PostgresError as e:
        pytest.fail(str(e), pytrace=False)
    moto.start()
    try:
        yield pg, moto
    finally:
        moto.stop()
        pg.close()


def make_cluster(broker_factory, cluster_env, size: int = 3, **kw) -> Cluster:
    pg, moto = cluster_env
    return Cluster(broker_factory, pg.create_database(), moto, moto.create_bucket(), size=size, **kw)


@pytest.fixture
def cluster3(broker_factory, cluster_env) -> Cluster:
    """Three running brokers on a fresh database and bucket."""
    return make_cluster(broker_factory, cluster_env).start()


# ---------------------------------------------------------------------------
# The single-broker suite against a cluster (SLUICE_E2E_CLUSTER=N)
# ---------------------------------------------------------------------------


class ClusterAsBroker:
    """Stands in for the `broker` fixture's SluiceBroker: `bootstrap` names
    every broker (clients spread their partitions over them), raw-protocol
    tests talk to broker 0, and kill -9 / restart / stop act on the whole
    cluster (its state is only in PostgreSQL and the shared objects)."""

    def __init__(self, brokers: List[SluiceBroker]) -> None:
        self.brokers = brokers

    def __getattr__(self, name):
        # Ports, name, data_dir, log_path, proc...: broker 0's.
        return getattr(self.brokers[0], name)

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def start(self, wait: bool = True) -> "ClusterAsBroker":
        for b in self.brokers:
            b.start(wait=wait)
        return self

    def stop(self, timeout: float = 10.0) -> int:
        codes = [b.stop(timeout) for b in self.brokers]
        return next((c for c in codes if c != 0), 0)

    def kill9(self):
        out = None
        for b in self.brokers:
            out = b.kill9()
        return out

    def restart(self, wait: bool = True) -> "ClusterAsBroker":
        for b in self.brokers:
            if b.proc is not None and b.proc.poll() is None:
                b.stop()
        return self.start(wait=wait)

    def assert_alive(self, context: str = "") -> None:
        for b in self.brokers:
            b.assert_alive(context)

    def log_tail(self, limit: int = 40_000) -> str:
        return "\n".join(f"--- {b.name} ---\n{b.log_tail(limit // len(self.brokers))}" for b in self.brokers)


def cluster_size_from_env() -> int:
    import os

    raw = os.environ.get("SLUICE_E2E_CLUSTER", "").strip()
    return int(raw) if raw else 0


def start_cluster_as_broker(broker_factory, pg: "pg_server.PostgresServer", shared_dir) -> ClusterAsBroker:
    """N brokers on a fresh database and a shared object folder."""
    n = cluster_size_from_env()
    url = pg.create_database()
    brokers = [
        broker_factory(
            f"b{i}",
            start=False,
            extra_args=[
                "--catalog", url,
                "--object-store", f"file://{shared_dir}",
                "--broker-id", str(i + 1),
                "--lease-ms", str(DEFAULT_LEASE_MS),
            ],
        )
        for i in range(n)
    ]
    return ClusterAsBroker(brokers).start()
