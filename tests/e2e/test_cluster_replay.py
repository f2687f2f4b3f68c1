"""Dead-letter replays in a cluster run exactly once (issue 16): one replay
per dead-letter partition at a time across the brokers (a second one is
refused with 409 while the first runs), and a broker killed with SIGKILL in
the middle of a replay leaves neither lost nor duplicated records: its
pending batches are produced again by another broker (the target's
idempotence check recognises the ones that had landed) and the replay log
records every dead-letter record once.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka import Producer, TopicPartition

import cluster
import helpers
import s3_server

cluster_env = cluster.cluster_env

pytestmark = pytest.mark.e2e_timeout(240)

TARGET_PARTITIONS = 6
RECORDS = 600


def post(broker, path: str, body: dict, timeout: float = 60.0):
    """(status, parsed JSON body)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{broker.http_port}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode() or "{}")


def target_values(c: cluster.Cluster, topic: str) -> list:
    consumer = helpers.make_consumer(c.bootstrap)
    try:
        ends = [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=20, cached=False)[1]
            for p in range(TARGET_PARTITIONS)
        ]
    finally:
        consumer.close()
    got = helpers.consume_all(c.bootstrap, topic, range(TARGET_PARTITIONS), expected=sum(ends))
    return [m.value for m in got]


def high_watermarks(c: cluster.Cluster, topic: str) -> int:
    consumer = helpers.make_consumer(c[1].bootstrap)
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in range(TARGET_PARTITIONS)
        )
    finally:
        consumer.close()


def test_a_replay_killed_in_the_middle_is_finished_once(broker_factory, cluster_env):
    pg, _ = cluster_env
    c = cluster.make_cluster(broker_factory, cluster_env, env={"SLUICE_FAULT_INJECTION": "1"}).start()
    suffix = uuid.uuid4().hex[:6]
    target, dlq = f"orders-{suffix}", f"orders-{suffix}.dlq"
    helpers.create_topic(c[0].bootstrap, target, partitions=TARGET_PARTITIONS)
    helpers.create_topic(c[0].bootstrap, dlq, partitions=1)
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
    values = [b"dead-%04d-" % n + uuid.uuid4().hex.encode() for n in range(RECORDS)]
    msgs = [
        {
            "value": v,
            "partition": 0,
            "headers": [
                ("__connect.errors.topic", target.encode()),
                ("__connect.errors.partition", str(n % TARGET_PARTITIONS).encode()),
                ("__connect.errors.offset", str(n).encode()),
                ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
                ("keep", b"%d" % n),
            ],
        }
        for n, v in enumerate(values)
    ]
    helpers.produce_all(p, dlq, msgs)

    # Broker 1 replays slowly: each of its PUTs waits 700 ms, so the six
    # target batches land one by one over several seconds.
    s3_server.set_fault(c[0], "delay", delay_ms=700)
    outcome = {}

    def slow_replay():
        try:
            outcome["first"] = post(c[0], f"/v1/dlq/{dlq}/replay", {"partition": 0, "from_offset": 0, "max_records": 10000})
        except Exception as e:  # the broker is killed under it
            outcome["first"] = ("killed", repr(e))

    t = threading.Thread(target=slow_replay, daemon=True)
    t.start()
    s3_server.wait_for(lambda: high_watermarks(c, target) > 0, 30, "the first replayed batch to land")
    status, body = post(c[1], f"/v1/dlq/{dlq}/replay", {"partition": 0, "from_offset": 0, "max_records": 10000})
    assert status == 409, f"a second replay of the partition while one runs: {status} {body}"
    landed = high_watermarks(c, target)
    assert landed < RECORDS, "the replay finished before the kill; slow it down more"
    c[0].kill9()
    t.join(30)
    assert outcome["first"][0] == "killed", outcome

    # Another broker finishes the interrupted batches once broker 1's lease
    # (and with it the replay job) has run out.
    db = c.catalog_url.rsplit("/", 1)[1]
    s3_server.wait_for(
        lambda: int(pg.query("SELECT COUNT(*) FROM dlq_replay_pending", db=db)[0][0]) == 0,
        c.lease_ms / 1000 + 30,
        "the interrupted replay to be finished by another broker",
    )
    got = target_values(c, target)
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} records replayed twice"
    assert sorted(got) == sorted(values), f"{len(set(values) - set(got))} dead-letter records not replayed"

    # The replay log knows each record once: a new replay replays nothing.
    status, body = post(c[2], f"/v1/dlq/{dlq}/replay", {"partition": 0, "from_offset": 0, "max_records": 10000})
    assert status == 200, body
    assert body["replayed"] == 0 and body["skipped_already_replayed"] == RECORDS, body
    rows = pg.query(
        "SELECT COUNT(*), COUNT(DISTINCT dlq_offset) FROM dlq_replays WHERE dlq_topic = %s" % pg_literal(dlq), db=db
    )
    assert rows[0] == (str(RECORDS), str(RECORDS)), rows
    print(f"replay killed after {landed} of {RECORDS} records landed; finished by another broker, "
          f"{len(got)} in the target, 0 duplicated")


def pg_literal(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"
