"""`sluice catalog migrate`: an embedded broker whose objects live in a
moto bucket is stopped, its SQLite catalog is moved into PostgreSQL, and a
three-broker cluster on the same bucket then serves every record and every
committed offset the embedded broker had, byte-identical; nothing is copied
in the bucket. Refused: a non-empty target, a WAL not yet in objects.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import cluster
import helpers
import s3_server

cluster_env = cluster.cluster_env

pytestmark = pytest.mark.e2e_timeout(300)


def migrate(sluice_bin, source_dir, target_url):
    return subprocess.run(
        [str(sluice_bin), "catalog", "migrate", "--from", f"sqlite://{source_dir}/catalog.db", "--to", target_url],
        capture_output=True, text=True, timeout=60,
    )


def read_all(bootstrap, topic, partitions, expected, client_id="e2e"):
    got = helpers.consume_all(
        bootstrap, topic, range(partitions), expected=expected, consumer_conf={"client.id": client_id}
    )
    return {(m.partition, m.offset): (m.key, m.value, m.headers) for m in got}


def test_an_embedded_broker_moves_into_a_cluster_without_copying_data(broker_factory, cluster_env, sluice_bin):
    pg, moto = cluster_env
    bucket = moto.create_bucket()
    store = f"s3://{bucket}/cluster"
    embedded = s3_server.object_store_broker(broker_factory, name="embedded", object_store=store, env=moto.env())
    topic = "moving"
    helpers.create_topic(embedded.bootstrap, topic, partitions=3)
    p = Producer({"bootstrap.servers": embedded.bootstrap, "acks": "all", "linger.ms": 5})
    msgs = [
        {"key": b"k%d" % n, "value": b"value-%d-" % n + bytes([n % 251]) * (n % 200),
         "headers": [("n", b"%d" % n)], "partition": n % 3}
        for n in range(3000)
    ]
    helpers.produce_all(p, topic, msgs)
    c = Consumer({"bootstrap.servers": embedded.bootstrap, "group.id": "mg", "enable.auto.commit": False})
    committed = [TopicPartition(topic, i, 100 * (i + 1), metadata="meta-%d" % i) for i in range(3)]
    c.commit(offsets=committed, asynchronous=False)
    c.close()
    schema = json.dumps({"type": "record", "name": "Moved", "fields": [{"name": "a", "type": "int"}]})
    req = urllib.request.Request(
        f"http://127.0.0.1:{embedded.http_port}/subjects/moving-value/versions",
        data=json.dumps({"schema": schema}).encode(), method="POST",
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        schema_id = json.loads(r.read())["id"]
    before = read_all(embedded.bootstrap, topic, 3, len(msgs))
    assert len(before) == len(msgs)
    assert embedded.stop() == 0, "a clean shutdown uploads what the WAL held"
    objects_before = moto.objects(bucket)

    target = pg.create_database()
    out = migrate(sluice_bin, embedded.data_dir, target)
    assert out.returncode == 0, out.stderr
    assert "segments" in out.stdout, out.stdout
    again = migrate(sluice_bin, embedded.data_dir, target)
    assert again.returncode != 0 and "not empty" in again.stderr, again.stderr

    c3 = cluster.Cluster(broker_factory, target, moto, bucket).start()
    for i in range(3):
        after = read_all(c3[i].bootstrap, topic, 3, len(msgs), client_id=f"e2e,zone={cluster.Cluster.zone(i)}")
        assert after == before, f"through broker {i}: the records differ"
    check = Consumer({"bootstrap.servers": c3.bootstrap, "group.id": "mg", "enable.auto.commit": False})
    try:
        got = check.committed([TopicPartition(topic, i) for i in range(3)], timeout=20)
        assert [(tp.offset, tp.metadata) for tp in got] == [(tp.offset, tp.metadata) for tp in committed]
    finally:
        check.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{c3[1].http_port}/schemas/ids/{schema_id}", timeout=10) as r:
        assert json.loads(json.loads(r.read())["schema"])["name"] == "Moved"
    # The log goes on where the embedded broker left it.
    d = helpers.produce_all(Producer({"bootstrap.servers": c3.bootstrap, "acks": "all"}), topic,
                            [{"value": b"after", "partition": 0}])
    assert d[0].offset == 1000
    # Nothing was copied: every object the embedded broker wrote is still
    # there as it was (the cluster adds its own).
    objects_after = moto.objects(bucket)
    assert all(objects_after.get(k) == size for k, size in objects_before.items()
               if k.startswith("cluster/data/") or k.startswith("cluster/compacted/"))


def test_a_wal_not_yet_in_objects_is_refused(broker_factory, cluster_env, sluice_bin):
    pg, moto = cluster_env
    bucket = moto.create_bucket()
    b = s3_server.object_store_broker(
        broker_factory, name="crashed", object_store=f"s3://{bucket}/x", env=moto.env(),
        args=["--upload-interval-ms", "600000", "--upload-bytes", "1073741824"],
    )
    helpers.create_topic(b.bootstrap, "unflushed", partitions=1)
    helpers.produce_all(Producer({"bootstrap.servers": b.bootstrap, "acks": "all"}), "unflushed",
                        [{"value": b"v%d" % n} for n in range(10)])
    b.kill9()
    out = migrate(sluice_bin, b.data_dir, pg.create_database())
    assert out.returncode != 0
    assert "write-ahead log" in out.stderr and "unflushed partition 0 from offset 0" in out.stderr, out.stderr
