"""Cluster mode: three `sluice serve` processes sharing one PostgreSQL
catalog and one S3 bucket (moto). Clients are pinned to one broker with
`zone=` in their client.id (see cluster.py), so "through broker i" means
every request of that client went to broker i.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

import cluster
import helpers
import kafka_wire as kw

cluster_env = cluster.cluster_env
cluster3 = cluster.cluster3

pytestmark = pytest.mark.e2e_timeout(300)


def topic_name(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:8]}"


def wait_for(what: str, pred, timeout: float = 20.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def topics_seen(c: cluster.Cluster, i: int) -> dict:
    md = AdminClient({"bootstrap.servers": c[i].bootstrap}).list_topics(timeout=10)
    return {n: len(t.partitions) for n, t in md.topics.items() if not n.startswith("__")}


def records(consumed) -> dict:
    """(partition, offset) -> (key, value, headers) of consumed messages."""
    return {(m.partition, m.offset): (m.key, m.value, m.headers) for m in consumed}


def test_topics_created_through_one_broker_are_seen_through_the_others(cluster3):
    t = topic_name("admin")
    admin0 = AdminClient({"bootstrap.servers": cluster3[0].bootstrap})
    helpers.create_topic(admin0, t, partitions=6)
    created = time.monotonic()
    for i in (1, 2):
        wait_for(f"{t} on broker {i}", lambda i=i: topics_seen(cluster3, i).get(t) == 6, timeout=5)
    took = time.monotonic() - created
    assert took < 1.0, f"the other brokers saw the new topic after {took:.2f}s (client polling included)"
    # A second create through another broker is refused: it exists.
    admin2 = AdminClient({"bootstrap.servers": cluster3[2].bootstrap})
    fut = admin2.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)])[t]
    with pytest.raises(Exception) as e:
        fut.result(timeout=10)
    assert "already exists" in str(e.value).lower() or "TOPIC_ALREADY_EXISTS" in str(e.value)
    # Partitions and configs changed through one broker reach the others.
    admin1 = AdminClient({"bootstrap.servers": cluster3[1].bootstrap})
    admin1.create_partitions([NewPartitions(t, 8)])[t].result(timeout=10)
    wait_for("8 partitions on broker 2", lambda: topics_seen(cluster3, 2).get(t) == 8, timeout=5)
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        t,
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for fut in admin1.incremental_alter_configs([res]).values():
        fut.result(timeout=10)

    def retention_on_2():
        desc = admin2.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, t)])
        configs = list(desc.values())[0].result(timeout=10)
        return configs["retention.ms"].value == "3600000"

    wait_for("the config change on broker 2", retention_on_2, timeout=5)
    # Deleted through broker 2, gone from the others.
    admin2.delete_topics([t])[t].result(timeout=10)
    for i in (0, 1):
        wait_for(f"{t} gone from broker {i}", lambda i=i: t not in topics_seen(cluster3, i), timeout=5)


def test_produce_through_each_broker_consume_through_the_others(cluster3):
    t = topic_name("through")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=6)
    for i in range(3):
        wait_for(f"{t} on broker {i}", lambda i=i: topics_seen(cluster3, i).get(t) == 6, timeout=5)
    sent = {}
    per_broker = 3000
    for i in range(3):
        p = Producer(cluster3.pinned(i, **{"linger.ms": 5, "acks": "all"}))
        msgs = [
            {
                "key": f"k{i}-{n % 97}".encode(),
                "value": f"broker{i}-{n}-".encode() + bytes([n % 256]) * (n % 300),
                "headers": [("via", str(i).encode()), ("n", str(n).encode())],
                "partition": n % 6,
            }
            for n in range(per_broker)
        ]
        for d in helpers.produce_all(p, t, msgs, timeout=120):
            sent[(d.partition, d.offset)] = (d.key, d.value)
    assert len(sent) == 3 * per_broker, "every acknowledged record has its own offset"
    helpers.assert_contiguous_offsets(sent.keys(), "acknowledged offsets")
    for i in range(3):
        got = helpers.consume_all(
            cluster3[i].bootstrap,
            t,
            range(6),
            expected=len(sent),
            consumer_conf={"client.id": f"e2e,zone={cluster.Cluster.zone(i)}"},
        )
        back = records(got)
        assert len(got) == len(back) == len(sent), f"through broker {i}: {len(got)} read"
        for pos, (k, v) in sent.items():
            assert back[pos][0] == k and back[pos][1] == v, f"through broker {i}: {pos} differs"
        headers = {pos: dict(h) for pos, (_, _, h) in back.items()}
        assert all("via" in h and "n" in h for h in headers.values())


def test_kcat_produces_and_consumes_through_different_brokers(cluster3):
    import subprocess

    t = topic_name("kcat")
    helpers.create_topic(cluster3[1].bootstrap, t, partitions=6)
    lines = [f"key{n}:value-{n}-{'x' * (n % 50)}" for n in range(2000)]
    subprocess.run(
        ["kcat", "-b", cluster3[1].bootstrap, "-X", f"client.id=kcat,zone={cluster.Cluster.zone(1)}",
         "-P", "-t", t, "-K:", "-z", "lz4"],
        input=("\n".join(lines) + "\n").encode(), check=True, timeout=60,
    )
    out = subprocess.run(
        ["kcat", "-b", cluster3[2].bootstrap, "-X", f"client.id=kcat,zone={cluster.Cluster.zone(2)}",
         "-C", "-t", t, "-o", "beginning", "-e", "-f", "%k:%s\n"],
        capture_output=True, check=True, timeout=60,
    )
    got = sorted(out.stdout.decode().splitlines())
    assert got == sorted(lines)


def test_kill9_loses_no_acknowledged_record(cluster3):
    t = topic_name("kill9")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=6)
    wait_for(f"{t} on broker 1", lambda: topics_seen(cluster3, 1).get(t) == 6, timeout=5)
    acked = {}
    errors = []
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err is None:
                acked[(msg.partition(), msg.offset())] = msg.value()
            else:
                errors.append(err)

    # Broker 1 takes the stream and is killed in the middle of it.
    p = Producer(cluster3.pinned(1, **{
        "acks": "all", "linger.ms": 2, "message.timeout.ms": 8000, "retries": 0,
    }))
    stop = time.monotonic() + 4.0
    n = 0
    killed_at = None
    while time.monotonic() < stop:
        p.produce(t, value=f"m{n}".encode(), partition=n % 6, on_delivery=on_delivery)
        n += 1
        if n % 50 == 0:
            p.poll(0)
            time.sleep(0.005)
        if killed_at is None and time.monotonic() > stop - 2.5 and len(acked) > 200:
            cluster3[1].kill9()
            killed_at = len(acked)
    p.flush(20)
    assert killed_at is not None and killed_at > 200, "the broker was killed mid-stream"
    assert acked, "some records were acknowledged"
    # Every acknowledged record is there at its acknowledged offset, read
    # through each surviving broker.
    for i in (0, 2):
        got = records(helpers.consume_all(
            cluster3[i].bootstrap, t, range(6),
            consumer_conf={"client.id": f"e2e,zone={cluster.Cluster.zone(i)}"},
        ))
        missing = [pos for pos, v in acked.items() if got.get(pos, (None, None))[1] != v]
        assert not missing, f"through broker {i}: {len(missing)} acknowledged records lost, e.g. {missing[:5]}"


def test_idempotent_producer_continues_through_another_broker(cluster3):
    t = topic_name("idem")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=3)
    wait_for(f"{t} on broker 2", lambda: topics_seen(cluster3, 2).get(t) == 3, timeout=5)
    delivered = []
    failed = []
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            (failed if err else delivered).append((msg.partition(), msg.offset(), msg.value()))

    # Pinned to broker 2; once it is gone its zone has no broker, so the
    # client is given the others and carries on (retrying what was in flight).
    p = Producer(cluster3.pinned(2, **{
        "enable.idempotence": True, "acks": "all", "linger.ms": 2,
        "message.timeout.ms": 120000, "max.in.flight.requests.per.connection": 5,
    }))
    total = 6000
    for n in range(total):
        while True:
            try:
                p.produce(t, value=f"seq-{n}".encode(), partition=n % 3, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        if n % 100 == 0:
            p.poll(0)
            time.sleep(0.01)
        if n == total // 2:
            cluster3[2].kill9()
    assert p.flush(120) == 0, "every message was delivered in the end"
    assert not failed, f"{len(failed)} failed deliveries, e.g. {failed[:3]}"
    got = helpers.consume_all(cluster3[0].bootstrap, t, range(3), expected=total)
    values = [m.value.decode() for m in got]
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} duplicates"
    assert set(values) == {f"seq-{n}" for n in range(total)}, "no gaps"
    # Per partition, the producer's order is the log's order.
    by_part = defaultdict(list)
    for m in sorted(got, key=lambda m: (m.partition, m.offset)):
        by_part[m.partition].append(int(m.value.decode().split("-")[1]))
    for part, seqs in by_part.items():
        assert seqs == sorted(seqs), f"partition {part} out of order"
    helpers.assert_contiguous_offsets([(m.partition, m.offset) for m in got], "idempotent stream")


def test_consumer_group_spread_over_the_brokers_consumes_everything_once(cluster3):
    t = topic_name("group")
    group = f"g-{uuid.uuid4().hex[:6]}"
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=6)
    for i in range(3):
        wait_for(f"{t} on broker {i}", lambda i=i: topics_seen(cluster3, i).get(t) == 6, timeout=5)
    consumers = [
        Consumer(cluster3.pinned(i, **{
            "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "session.timeout.ms": 10000, "fetch.wait.max.ms": 100,
        }))
        for i in range(3)
    ]
    assigned = [set() for _ in consumers]

    def on_assign(i):
        def cb(c, parts):
            assigned[i] = {p.partition for p in parts}
        return cb

    for i, c in enumerate(consumers):
        c.subscribe([t], on_assign=on_assign(i))
    got = [[] for _ in consumers]
    stop = threading.Event()
    # What the group protocol itself answers while members come and go; the
    # client handles them (librdkafka still reports them as events).
    routine = {
        KafkaError._PARTITION_EOF,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.ILLEGAL_GENERATION,
    }

    def run(i):
        c = consumers[i]
        while not stop.is_set():
            for m in c.consume(num_messages=500, timeout=0.2):
                if m.error():
                    if m.error().code() not in routine:
                        got[i].append(("error", str(m.error())))
                    continue
                got[i].append((m.partition(), m.offset(), m.value()))
                c.commit(message=m, asynchronous=False)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(3)]
    for th in threads:
        th.start()
    try:
        wait_for(
            "the three members to share the six partitions",
            lambda: sum(len(a) for a in assigned) == 6 and all(assigned),
            timeout=60,
        )
        total = 1800
        p = Producer({"bootstrap.servers": cluster3.bootstrap, "acks": "all", "linger.ms": 5})
        helpers.produce_all(p, t, [{"value": f"v{n}".encode(), "partition": n % 6} for n in range(total)])
        wait_for("everything consumed", lambda: sum(len(g) for g in got) >= total, timeout=60)
        time.sleep(1.0)
    finally:
        stop.set()
        for th in threads:
            th.join(10)
        for c in consumers:
            c.close()
    errors = [e for g in got for e in g if e[0] == "error"]
    assert not errors, errors[:3]
    seen = [(p, o) for g in got for (p, o, _) in g]
    assert len(seen) == len(set(seen)) == total, f"{len(seen)} consumed, {len(set(seen))} distinct, {total} produced"
    # Each member read only its own partitions.
    for i, g in enumerate(got):
        assert {p for (p, _, _) in g} <= assigned[i]
    # The commits are in the catalog: a new member of the group starts at the end.
    late = Consumer({"bootstrap.servers": cluster3.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = late.committed([TopicPartition(t, p) for p in range(6)], timeout=20)
        assert sum(tp.offset for tp in committed) == total
    finally:
        late.close()


# ---------------------------------------------------------------------------
# Wire-level checks
# ---------------------------------------------------------------------------

API_HEARTBEAT = 12
NOT_COORDINATOR = 16
UNKNOWN_MEMBER_ID = 25


def heartbeat_error(conn: kw.WireConnection, group: str) -> int:
    """Heartbeat v0 for a member the group does not know: its error code."""
    w = kw.Writer().string(group).int32(1).string("nobody")
    return conn.request(API_HEARTBEAT, 0, w.getvalue()).int16()


def test_group_requests_reach_only_the_coordinator(cluster3):
    for n in range(5):
        group = f"wire-group-{n}"
        answers = set()
        for b in cluster3.brokers:
            with kw.WireConnection("127.0.0.1", b.kafka_port) as conn:
                err, node, host, port = conn.find_coordinator(group)
                assert err == 0
                answers.add((node, host, port))
        assert len(answers) == 1, f"brokers disagree on {group}'s coordinator: {answers}"
        node, _, port = answers.pop()
        for b in cluster3.brokers:
            with kw.WireConnection("127.0.0.1", b.kafka_port) as conn:
                err = heartbeat_error(conn, group)
            want = UNKNOWN_MEMBER_ID if b.kafka_port == port else NOT_COORDINATOR
            assert err == want, f"{group} via {b.name} (coordinator {node}): error {err}"


def test_a_batch_retried_through_another_broker_keeps_its_offsets(cluster3):
    t = topic_name("retry")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=1)
    wait_for(f"{t} on broker 2", lambda: topics_seen(cluster3, 2).get(t) == 1, timeout=5)
    with kw.WireConnection("127.0.0.1", cluster3[0].kafka_port) as c0, kw.WireConnection(
        "127.0.0.1", cluster3[2].kafka_port
    ) as c2:
        init = c0.init_producer_id()
        pid, epoch = init.producer_id, init.producer_epoch

        def batch(seq, n, tag):
            recs = [kw.Record(key=b"%s%d" % (tag, j), value=b"v") for j in range(n)]
            return kw.build_record_batch(recs, producer_id=pid, producer_epoch=epoch, base_sequence=seq)

        a = batch(0, 5, b"a")
        assert c0.produce(t, 0, a).base_offset == 0
        b = batch(5, 3, b"b")
        assert c0.produce(t, 0, b).base_offset == 5
        # The same batches again through another broker: their offsets.
        for again, at in ((a, 0), (b, 5)):
            r = c2.produce(t, 0, again)
            assert (r.error_code, r.base_offset) == (kw.NONE, at), r
        r = c2.produce(t, 0, batch(10, 1, b"gap"))
        assert r.error_code == kw.OUT_OF_ORDER_SEQUENCE_NUMBER, r
        r = c2.produce(t, 0, batch(8, 2, b"c"))
        assert (r.error_code, r.base_offset) == (kw.NONE, 8), r
    got = helpers.consume_all(cluster3[1].bootstrap, t, [0], expected=10)
    assert [m.offset for m in got] == list(range(10)), "no duplicate, no gap"


def test_zones_and_leaders_in_metadata(cluster3):
    t = topic_name("spread")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=30)
    md = AdminClient({"bootstrap.servers": cluster3[1].bootstrap}).list_topics(t, timeout=10)
    assert sorted(md.brokers) == [1, 2, 3]
    leaders = {p.leader for p in md.topics[t].partitions.values()}
    assert leaders == {1, 2, 3}, f"leaders spread over the live brokers: {leaders}"
    # The same leaders whichever broker answers.
    md0 = AdminClient({"bootstrap.servers": cluster3[0].bootstrap}).list_topics(t, timeout=10)
    assert {p.id: p.leader for p in md0.topics[t].partitions.values()} == {
        p.id: p.leader for p in md.topics[t].partitions.values()
    }
    for i in range(3):
        admin = AdminClient({"bootstrap.servers": cluster3[0].bootstrap, "client.id": f"x,zone={cluster.Cluster.zone(i)}"})
        mdz = admin.list_topics(t, timeout=10)
        assert list(mdz.brokers) == [i + 1], f"zone {i} sees {sorted(mdz.brokers)}"
        assert {p.leader for p in mdz.topics[t].partitions.values()} == {i + 1}
    # A zone without brokers gets them all.
    admin = AdminClient({"bootstrap.servers": cluster3[0].bootstrap, "client.id": "x,zone=elsewhere"})
    assert sorted(admin.list_topics(t, timeout=10).brokers) == [1, 2, 3]


def test_client_rack_fetches_from_a_broker_of_its_zone(cluster3):
    import s3_server

    t = topic_name("rack")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=6)
    p = Producer({"bootstrap.servers": cluster3.bootstrap, "acks": "all"})
    helpers.produce_all(p, t, [{"value": b"r%d" % n, "partition": n % 6} for n in range(600)])
    got = helpers.consume_all(
        cluster3[0].bootstrap, t, range(6), expected=600,
        consumer_conf={"client.rack": cluster.Cluster.zone(1)},
    )
    assert len(got) == 600
    out = [s3_server.metric(b, "sluice_topic_bytes_out_total", topic=t) or 0 for b in cluster3.brokers]
    assert out[1] > 0 and out[0] == 0 and out[2] == 0, f"bytes fetched per broker: {out}"


def test_a_commit_wakes_long_polls_on_other_brokers(cluster3):
    t = topic_name("wake")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=1)
    wait_for(f"{t} on broker 2", lambda: topics_seen(cluster3, 2).get(t) == 1, timeout=5)
    c = Consumer(cluster3.pinned(2, **{
        "group.id": "wake", "auto.offset.reset": "latest", "fetch.wait.max.ms": 5000,
        "enable.auto.commit": False,
    }))
    c.assign([TopicPartition(t, 0, -1)])
    p = Producer(cluster3.pinned(0, **{"acks": "all", "linger.ms": 0}))
    try:
        c.consume(timeout=2.0)  # the first fetch is in flight
        lat = []
        for n in range(20):
            sent = time.monotonic()
            p.produce(t, value=b"%d" % n)
            p.flush(10)
            msgs = []
            while not msgs and time.monotonic() - sent < 10:
                msgs = [m for m in c.consume(timeout=0.5) if not m.error()]
            assert msgs, "the record never arrived"
            lat.append(time.monotonic() - sent)
        lat.sort()
        # Far below the 5 s long poll: the other broker's commit woke it.
        assert lat[len(lat) // 2] < 1.0, f"produce-to-consume through two brokers: {lat}"
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Joining a cluster
# ---------------------------------------------------------------------------


def test_broker_ids_are_allocated_by_the_catalog_and_kept(broker_factory, cluster_env):
    import json

    import s3_server

    pg, moto = cluster_env
    url = pg.create_database()
    bucket = moto.create_bucket()
    b = s3_server.object_store_broker(
        broker_factory, name="auto", object_store=f"s3://{bucket}/c",
        args=["--catalog", url], env=moto.env(),
    )
    first = json.loads(s3_server.http_get(b, "/v1/cluster"))["broker_id"]
    assert first > 1000, "allocated ids stay above the hand-set range"
    assert (b.data_dir / "broker.id").read_text().strip() == str(first)
    b.stop()
    b.start()
    assert json.loads(s3_server.http_get(b, "/v1/cluster"))["broker_id"] == first


def test_a_cluster_broker_needs_the_shared_store(broker_factory, cluster_env):
    import s3_server
    from sluice_proc import BrokerError

    pg, moto = cluster_env
    url = pg.create_database()

    def refused(name, args, env=None):
        b = s3_server.object_store_broker(broker_factory, name=name, args=args, env=env, start=False)
        with pytest.raises(BrokerError):
            b.start()
        return b.log_tail()

    log = refused("nostore", ["--catalog", url])
    assert "object store" in log and "cluster" in log, log
    # The first broker binds the catalog to its bucket; another bucket is refused.
    first = moto.create_bucket()
    s3_server.object_store_broker(
        broker_factory, name="first", object_store=f"s3://{first}/c",
        args=["--catalog", url, "--broker-id", "1"], env=moto.env(),
    )
    other = moto.create_bucket()
    log = refused(
        "other", ["--catalog", url, "--object-store", f"s3://{other}/c", "--broker-id", "2"], moto.env()
    )
    assert "not this cluster's object store" in log, log


def test_schemas_registered_through_one_broker_are_served_by_the_others(cluster3):
    import json
    import urllib.request

    def call(i, method, path, body=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{cluster3[i].http_port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    schema = {"schema": json.dumps({"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"}]})}
    sid = call(0, "POST", "/subjects/a-value/versions", schema)["id"]
    wait_for("the schema on broker 2", lambda: call(2, "GET", "/subjects") == ["a-value"], timeout=5)
    assert json.loads(call(1, "GET", f"/schemas/ids/{sid}")["schema"])["name"] == "A"
    # Registrations racing through different brokers get distinct ids.
    ids = {}

    def register(i):
        s = {"schema": json.dumps({"type": "record", "name": f"R{i}", "fields": [{"name": "y", "type": "long"}]})}
        ids[i] = call(i, "POST", f"/subjects/r{i}-value/versions", s)["id"]

    threads = [threading.Thread(target=register, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert len(set(ids.values()) | {sid}) == 4, f"ids {ids}, first {sid}"
    for i in range(3):
        wait_for(
            f"every subject on broker {i}",
            lambda i=i: sorted(call(i, "GET", "/subjects")) == ["a-value", "r0-value", "r1-value", "r2-value"],
            timeout=5,
        )


def test_cluster_status_shows_brokers_leases_groups_and_jobs(cluster3, sluice_bin):
    import json
    import subprocess

    group = "status-group"
    t = topic_name("status")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=1)
    c = Consumer({"bootstrap.servers": cluster3.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(t, 0, 0)], asynchronous=False)
    finally:
        c.close()
    with kw.WireConnection("127.0.0.1", cluster3[1].kafka_port) as conn:
        _, coordinator, _, _ = conn.find_coordinator(group)
    http = f"127.0.0.1:{cluster3[2].http_port}"
    out = subprocess.run(
        [str(sluice_bin), "cluster", "status", "--http", http, "--json"],
        capture_output=True, check=True, timeout=30,
    )
    view = json.loads(out.stdout)
    assert view["mode"] == "cluster" and view["broker_id"] == 3
    brokers = {b["broker_id"]: b for b in view["brokers"]}
    assert sorted(brokers) == [1, 2, 3]
    assert [b["rack"] for b in view["brokers"]] == ["zone-0", "zone-1", "zone-2"]
    assert all(0 <= b["lease_age_ms"] < cluster3.lease_ms for b in brokers.values()), brokers
    holders = [i for i, b in brokers.items() if group in b["groups"]]
    assert holders == [coordinator], f"{group} under {holders}, FindCoordinator says {coordinator}"
    for job in ["storage-upkeep", "cluster-metrics"]:
        holders = [i for i, b in brokers.items() if job in b["jobs"]]
        assert len(holders) == 1, f"{job} held by {holders}: {brokers}"
    table = subprocess.run(
        [str(sluice_bin), "cluster", "status", "--http", http],
        capture_output=True, check=True, timeout=30, text=True,
    ).stdout
    assert "LEASE-AGE" in table and "zone-1" in table and "3*" in table, table


def test_a_paused_broker_loses_its_lease_and_rejoins_under_a_new_epoch(cluster3):
    import json
    import signal

    import s3_server

    def view(i):
        return json.loads(s3_server.http_get(cluster3[i], "/v1/cluster"))

    epoch_before = {b["broker_id"]: b["epoch"] for b in view(0)["brokers"]}[2]
    t = topic_name("paused")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=1)
    cluster3[1].proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(
            "the others to drop the paused broker",
            lambda: [b["broker_id"] for b in view(0)["brokers"]] == [1, 3],
            timeout=cluster3.lease_ms / 1000 + 5,
        )
        md = AdminClient({"bootstrap.servers": cluster3[2].bootstrap}).list_topics(timeout=10)
        assert sorted(md.brokers) == [1, 3], "Metadata leaves the paused broker out"
    finally:
        cluster3[1].proc.send_signal(signal.SIGCONT)
    wait_for(
        "the broker to rejoin",
        lambda: [b["broker_id"] for b in view(0)["brokers"]] == [1, 2, 3],
        timeout=15,
    )
    epoch_after = {b["broker_id"]: b["epoch"] for b in view(1)["brokers"]}[2]
    assert epoch_after > epoch_before, (epoch_before, epoch_after)
    # It writes again, under its new epoch.
    p = Producer(cluster3.pinned(1, **{"acks": "all"}))
    d = helpers.produce_all(p, t, [{"value": b"after-pause"}], timeout=30)
    assert d[0].offset == 0


def test_sigterm_drains_a_broker_without_losing_anything(cluster3):
    import json

    import s3_server

    t = topic_name("drain")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=6)
    wait_for(f"{t} on broker 2", lambda: topics_seen(cluster3, 2).get(t) == 6, timeout=5)
    acked, errors = {}, []
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err is None:
                acked[(msg.partition(), msg.offset())] = msg.value()
            else:
                errors.append(err)

    p = Producer({
        "bootstrap.servers": cluster3.bootstrap, "enable.idempotence": True, "acks": "all",
        "linger.ms": 5, "message.timeout.ms": 60000,
    })
    n = 0
    stopped_at = None
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        p.produce(t, value=f"d{n}".encode(), partition=n % 6, on_delivery=on_delivery)
        n += 1
        p.poll(0.001)
        if stopped_at is None and time.monotonic() > deadline - 4:
            started = time.monotonic()
            assert cluster3[1].stop() == 0, "a drained broker exits cleanly"
            stopped_at = time.monotonic() - started
            # Gone from the cluster at once (it gave its lease up), not
            # after its lease ran out (3 s).
            wait_for(
                "the others to drop the drained broker",
                lambda: 2 not in [
                    b["broker_id"]
                    for b in json.loads(s3_server.http_get(cluster3[0], "/v1/cluster"))["brokers"]
                ],
                timeout=1.0,
                every=0.05,
            )
    assert p.flush(60) == 0
    assert not errors, errors[:3]
    assert stopped_at < 10, f"drain took {stopped_at:.1f}s"
    got = helpers.consume_all(cluster3[2].bootstrap, t, range(6), expected=n)
    back = {(m.partition, m.offset): m.value for m in got}
    assert all(back.get(pos) == v for pos, v in acked.items()), "every acknowledged record is there"
    values = [m.value for m in got]
    assert len(values) == len(set(values)) == n, f"{len(values)} read, {n} sent"


def test_the_upkeep_job_moves_when_its_holder_goes(cluster3):
    import json

    import s3_server

    def holders(through):
        view = json.loads(s3_server.http_get(cluster3[through], "/v1/cluster"))
        return [b["broker_id"] for b in view["brokers"] if "storage-upkeep" in b["jobs"]]

    first = wait_for("an upkeep holder", lambda: holders(0), timeout=10)
    assert len(first) == 1, first
    gone = first[0] - 1
    assert cluster3[gone].stop() == 0
    survivor = next(i for i in range(3) if i != gone)
    taken = wait_for(
        "another broker to take the upkeep job",
        lambda: [h for h in holders(survivor) if h != first[0]],
        timeout=cluster3.lease_ms / 1000 + 5,
    )
    assert len(taken) == 1 and taken[0] != first[0], taken
    assert s3_server.metric(cluster3[taken[0] - 1], "sluice_storage_upkeep_holder") == 1


def test_cluster_wide_metric_families_come_from_one_broker(cluster3):
    """A Prometheus scraping every broker sees each series once: topic and
    broker-count families from the holder of the cluster-metrics job, a
    group's families from its coordinator; when the holder goes, another
    broker takes the families over."""
    import s3_server

    t = topic_name("metrics-once")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=3)
    p = Producer({"bootstrap.servers": cluster3.bootstrap, "acks": "all"})
    helpers.produce_all(p, t, [{"value": b"m%d" % n, "partition": n % 3} for n in range(30)])
    group = "metrics-once-group"
    c = Consumer({"bootstrap.servers": cluster3.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(t, n, 4) for n in range(3)], asynchronous=False)
    finally:
        c.close()
    with kw.WireConnection("127.0.0.1", cluster3[0].kafka_port) as conn:
        _, coordinator, _, _ = conn.find_coordinator(group)

    def exporters(brokers, name, **labels):
        return [i for i in brokers if s3_server.metric(cluster3[i], name, **labels) is not None]

    def settled(brokers):
        topic = exporters(brokers, "kafka_topic_partition_current_offset", topic=t)
        holders = [i for i in brokers if s3_server.metric(cluster3[i], "sluice_cluster_metrics_holder") == 1]
        return topic if len(topic) == 1 and topic == holders else None

    everyone = range(3)
    [holder] = wait_for("one exporter of the topic families", lambda: settled(everyone), timeout=10)
    assert s3_server.metric(cluster3[holder], "kafka_topic_partition_current_offset", topic=t) == 30
    assert s3_server.metric(cluster3[holder], "kafka_brokers") == 3
    assert exporters(everyone, "kafka_brokers") == [holder]
    lag = exporters(everyone, "kafka_consumergroup_lag", consumergroup=group)
    assert lag == [coordinator - 1], f"{group}'s lag from brokers {lag}, coordinator is {coordinator}"
    assert s3_server.metric(cluster3[coordinator - 1], "kafka_consumergroup_lag", consumergroup=group) == 18
    # Every broker still exports its own families.
    assert all(s3_server.metric(cluster3[i], "sluice_cluster_live_brokers") == 3 for i in everyone)

    cluster3[holder].kill9()
    rest = [i for i in everyone if i != holder]
    [taken] = wait_for(
        "another broker to take the cluster-wide families",
        lambda: settled(rest),
        timeout=cluster3.lease_ms / 1000 + 10,
    )
    assert taken != holder
    assert s3_server.metric(cluster3[taken], "kafka_brokers") == 2


def test_static_members_keep_their_assignment_when_the_coordinator_dies(cluster3, tmp_path):
    """Two static members (group.instance.id) of a group whose coordinator
    is killed with SIGKILL: the group moves to another broker within the
    lease, the members find it, and each keeps the partitions it had."""
    from test_groups_member import Member, exact_cover, wait_for as member_wait

    t = topic_name("static-failover")
    group = f"static-failover-{uuid.uuid4().hex[:6]}"
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=4)
    p = Producer({"bootstrap.servers": cluster3.bootstrap})
    helpers.produce_all(p, t, [{"value": b"s%d" % n, "partition": n % 4} for n in range(40)])

    def member(name):
        return Member(
            tmp_path, name, cluster3.bootstrap, group, [t],
            conf={"group.instance.id": f"inst-{name}", "session.timeout.ms": 15000,
                  "heartbeat.interval.ms": 1000},
        )

    a, b = member("a"), member("b")
    try:
        member_wait(
            lambda: a.assignment() and b.assignment() and len(a.assignment()) == 2
            and exact_cover([a.assignment(), b.assignment()], t, 4),
            30, "a and b owning 2 partitions each", [a, b],
        )
        before = {"a": sorted(a.assignment()), "b": sorted(b.assignment())}
        with kw.WireConnection("127.0.0.1", cluster3[0].kafka_port) as conn:
            _, coordinator, _, _ = conn.find_coordinator(group)
        killed = coordinator - 1
        cluster3[killed].kill9()
        survivor = next(i for i in range(3) if i != killed)

        def moved():
            with kw.WireConnection("127.0.0.1", cluster3[survivor].kafka_port) as conn:
                err, node, _, _ = conn.find_coordinator(group)
            return err == 0 and node != coordinator and node

        wait_for("the group to move", moved, timeout=cluster3.lease_ms / 1000 + 10)
        # The members heartbeat to the new coordinator and keep their partitions.
        produced_after = time.monotonic()
        helpers.produce_all(p, t, [{"value": b"after%d" % n, "partition": n % 4} for n in range(40)])
        def consuming(m):
            parts = {q for _, q in m.assignment() or []}
            return parts and parts <= {e["p"] for e in m.of("msg") if e["t"] > produced_after}

        member_wait(lambda: consuming(a) and consuming(b), 30,
                    "both members consuming their partitions after the move", [a, b])
        after = {"a": sorted(a.assignment()), "b": sorted(b.assignment())}
        assert after == before, f"assignment before the coordinator died {before}, after {after}"
    finally:
        for m in (a, b):
            if m.alive():
                m.kill9()


def test_every_broker_answers_for_every_group(cluster3):
    """GET /v1/groups and /v1/groups/{g} through any broker cover every
    group of the cluster, with the same committed offsets, lag and lag
    seconds (those of groups another broker coordinates come from the
    catalog and the shared log ends) and the coordinator FindCoordinator
    names. An offset reset or a delete through a broker that does not
    coordinate the group is refused with 421, naming the coordinator: a
    commit there would pass by the coordinator's cache of offsets."""
    import json
    import urllib.error
    import urllib.request

    t = topic_name("anygroup")
    helpers.create_topic(cluster3[0].bootstrap, t, partitions=2)
    helpers.produce_all(
        helpers.make_producer(cluster3.bootstrap),
        t,
        ({"value": b"v%d" % i, "partition": i % 2} for i in range(20)),
        timeout=60,
    )
    groups = [f"anygroup-{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]
    coordinator = {}
    for g in groups:
        c = Consumer({"bootstrap.servers": cluster3.bootstrap, "group.id": g, "enable.auto.commit": False})
        try:
            c.commit(offsets=[TopicPartition(t, 0, 3), TopicPartition(t, 1, 7)], asynchronous=False)
        finally:
            c.close()
        with kw.WireConnection("127.0.0.1", cluster3[0].kafka_port) as conn:
            err, node, _, _ = conn.find_coordinator(g)
        assert err == 0, err
        coordinator[g] = node
    assert len(set(coordinator.values())) > 1, f"all six groups on one broker: {coordinator}"

    def call(i, method, path, body=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{cluster3[i].http_port}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    for i in range(3):
        me = i + 1
        status, listed = call(i, "GET", "/v1/groups")
        assert status == 200, listed
        by_name = {g["group"]: g for g in listed}
        for g in groups:
            row = by_name.get(g)
            assert row is not None, f"broker {me} does not list {g}: {sorted(by_name)}"
            assert row["coordinator"]["broker_id"] == coordinator[g], (me, row)
            assert row["coordinator"]["this"] == (coordinator[g] == me), (me, row)
            assert row["total_lag"] == 10 and row["max_lag_seconds"] > 0, (me, row)
            assert (row["state"] == "Unknown") == (coordinator[g] != me), (me, row)

            status, d = call(i, "GET", f"/v1/groups/{g}")
            assert status == 200, (me, d)
            got = {(p["partition"], p["current_offset"], p["lag"]) for p in d["partitions"]}
            assert got == {(0, 3, 7), (1, 7, 3)}, (me, g, d["partitions"])
            assert all(p["lag_seconds"] > 0 for p in d["partitions"]), (me, d["partitions"])
            assert d["coordinator"]["broker_id"] == coordinator[g], (me, d)

            status, plan = call(i, "POST", f"/v1/groups/{g}/reset-offsets", {"to": "earliest", "execute": False})
            if coordinator[g] == me:
                assert status == 200 and {r["new_offset"] for r in plan} == {0}, (me, plan)
            else:
                assert status == 421, (me, status, plan)
                assert f"coordinated by broker {coordinator[g]}" in plan["message"], plan
                status, body = call(i, "DELETE", f"/v1/groups/{g}")
                assert status == 421, (me, status, body)
    status, body = call(0, "GET", "/v1/groups/no-such-group")
    assert status == 404, body
