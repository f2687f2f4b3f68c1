"""Cluster mode under faults: the catalog (PostgreSQL) or the bucket
unavailable, a broker killed between its PUT and its commit. Producers get
retriable errors and nothing is acknowledged until it is durable; what a
failed commit left in the bucket is garbage collected.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Producer

import cluster
import helpers
import kafka_wire as kw
import s3_server

cluster_env = cluster.cluster_env

pytestmark = pytest.mark.e2e_timeout(300)

KAFKA_STORAGE_ERROR = 56
# A short grace so that orphaned objects go quickly; flushes give up after
# half of it.
FAULT_ARGS = ["--gc-grace-ms", "4000", "--maintenance-interval-ms", "500"]


@pytest.fixture
def faulty3(broker_factory, cluster_env) -> cluster.Cluster:
    return cluster.make_cluster(
        broker_factory, cluster_env, args=FAULT_ARGS, env={"SLUICE_FAULT_INJECTION": "1"}
    ).start()


def wait_for(what, pred, timeout=30.0, every=0.2):
    return s3_server.wait_for(pred, timeout, what, interval=every)


def raw_produce(b, topic: str, value: bytes, timeout: float = 30.0):
    with kw.WireConnection("127.0.0.1", b.kafka_port, timeout=timeout) as conn:
        batch = kw.build_record_batch([kw.Record(key=None, value=value)])
        return conn.produce(topic, 0, batch, timeout=timeout)


def bucket_data(c: cluster.Cluster) -> set:
    return {k for k in c.moto.objects(c.bucket, "cluster/data/")}


def catalog_objects(pg, c: cluster.Cluster) -> set:
    db = c.catalog_url.rsplit("/", 1)[1]
    return {f"cluster/{k}" for (k,) in pg.query("SELECT key FROM objects", db=db)}


def produce_stream(bootstrap: str, topic: str, stop: threading.Event, acked: dict, errors: list):
    """Idempotent producer sending numbered records until `stop`."""
    p = Producer({
        "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
        "linger.ms": 5, "message.timeout.ms": 120000,
    })
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err is None:
                acked[(msg.partition(), msg.offset())] = msg.value()
            else:
                errors.append(err)

    n = 0
    while not stop.is_set():
        try:
            p.produce(topic, value=f"r{n}".encode(), partition=n % 3, on_delivery=on_delivery)
            n += 1
        except BufferError:
            pass
        p.poll(0.002)
    assert p.flush(120) == 0, "everything was delivered once the fault was gone"
    return n


def check_readback(c: cluster.Cluster, topic: str, acked: dict, sent: int):
    got = helpers.consume_all(c[0].bootstrap, topic, range(3), expected=sent)
    back = {(m.partition, m.offset): m.value for m in got}
    lost = [pos for pos, v in acked.items() if back.get(pos) != v]
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}"
    values = [m.value for m in got]
    assert len(values) == len(set(values)) == sent, f"{len(values)} read, {len(set(values))} distinct, {sent} sent"


def ride_out_an_outage(c: cluster.Cluster, what: str, break_it, mend_it, via: int):
    """An idempotent producer streams through the cluster while `break_it()`
    takes shared storage away: a produce through broker `via` gets a
    retriable error in time, nothing is acknowledged meanwhile, and after
    `mend_it()` every record arrives once, none acknowledged is lost."""
    t = f"{what}-{uuid.uuid4().hex[:6]}"
    helpers.create_topic(c[0].bootstrap, t, partitions=3)
    wait_for("the topic everywhere", lambda: all(
        t in helpers.admin_client(b.bootstrap).list_topics(timeout=10).topics for b in c.brokers
    ))
    acked, errors = {}, []
    stop = threading.Event()
    result = {}
    th = threading.Thread(
        target=lambda: result.setdefault("sent", produce_stream(c.bootstrap, t, stop, acked, errors)),
        daemon=True,
    )
    th.start()
    wait_for("records acknowledged before the outage", lambda: len(acked) > 300)
    break_it()
    try:
        started = time.monotonic()
        r = raw_produce(c[via], t, b"during-outage", timeout=60)
        assert r.error_code == KAFKA_STORAGE_ERROR, r
        assert time.monotonic() - started < 30
        frozen = len(acked)
        time.sleep(2.0)
        assert len(acked) == frozen, f"nothing is acknowledged during the outage ({what})"
    finally:
        mend_it()
    wait_for("acknowledgements again", lambda: len(acked) > frozen + 300, timeout=60)
    stop.set()
    th.join(150)
    assert not errors, errors[:3]
    check_readback(c, t, acked, result["sent"])


def test_catalog_down_gives_retriable_errors_and_loses_nothing(faulty3, cluster_env):
    pg, _ = cluster_env
    ride_out_an_outage(
        faulty3, "pgdown", lambda: pg.stop(mode="immediate"), pg.start, via=1
    )


def test_bucket_down_gives_retriable_errors_and_loses_nothing(faulty3):
    def set_all(mode):
        for b in faulty3.brokers:
            s3_server.set_fault(b, mode)

    ride_out_an_outage(
        faulty3, "s3down", lambda: set_all("fail"), lambda: set_all("off"), via=2
    )


def test_objects_of_failed_commits_and_killed_brokers_are_collected(faulty3, cluster_env):
    pg, _ = cluster_env
    t = f"orphans-{uuid.uuid4().hex[:6]}"
    helpers.create_topic(faulty3[0].bootstrap, t, partitions=1)
    assert raw_produce(faulty3[1], t, b"committed").error_code == 0
    before = bucket_data(faulty3)
    pg.stop(mode="immediate")
    try:
        # Broker 3's flush is written to the bucket; its commit cannot be:
        # the request fails, and the broker is killed while retrying.
        r = raw_produce(faulty3[2], t, b"never-committed", timeout=60)
        assert r.error_code == KAFKA_STORAGE_ERROR, r
        orphans = wait_for("the failed flush's object", lambda: bucket_data(faulty3) - before)
        conn = kw.WireConnection("127.0.0.1", faulty3[1].kafka_port, timeout=60)
        conn.send_request(0, conn.pick_version(0, 3, 9), kw.encode_produce_body(
            conn.pick_version(0, 3, 9), t, 0, kw.build_record_batch([kw.Record(key=None, value=b"killed")]), -1, 30000,
        ))
        wait_for("the killed broker's object", lambda: len(bucket_data(faulty3) - before) > len(orphans))
        faulty3[1].kill9()
        conn.close()
        # Counted while the catalog is still down: once it is back, the
        # maintainer may collect the first orphan before a later listing.
        orphans = bucket_data(faulty3) - before
        assert len(orphans) >= 2
    finally:
        pg.start()
    # The maintainer (broker 1) deletes them once the grace has passed;
    # committed data stays.
    wait_for(
        "the orphaned objects to be deleted",
        lambda: not (bucket_data(faulty3) & orphans),
        timeout=60,
    )
    assert bucket_data(faulty3) <= catalog_objects(pg, faulty3), "only catalog objects remain"
    got = helpers.consume_all(faulty3[0].bootstrap, t, [0])
    assert [m.value for m in got] == [b"committed"], "nothing unacknowledged appeared"
