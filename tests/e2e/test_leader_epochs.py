"""Leader epochs (issue 18, KIP-320): one epoch per partition (Sluice's
logs live in shared storage and never diverge), told alike by Metadata,
ListOffsets and OffsetForLeaderEpoch:

* OffsetForLeaderEpoch v2-v4 (raw protocol): the partition's epoch ends at
  the log end; an unknown partition, a newer current epoch
  (UNKNOWN_LEADER_EPOCH) and an older requested epoch answer as Kafka does.
* Fetch and ListOffsets with a newer `current_leader_epoch` get
  UNKNOWN_LEADER_EPOCH; with the partition's epoch they are served.
* librdkafka commits offsets with the leader epoch and resumes from them;
  a seek with a leader epoch is validated through OffsetForLeaderEpoch and
  goes on without an error or a reset.
"""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

import kafka_wire as kw
from helpers import create_topic, make_producer
from s3_server import metric

API_OFFSET_FOR_LEADER_EPOCH = 23
UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_LEADER_EPOCH = 3, 75


def offset_for_leader_epoch(conn, topic, partition, leader_epoch, current=-1, version=2):
    flex = version >= 4
    w = kw.Writer()
    if version >= 3:
        w.int32(-1)  # replica_id: a consumer
    w.array_len(1, flex).string(topic, flex).array_len(1, flex)
    w.int32(partition).int32(current).int32(leader_epoch)
    if flex:
        w.tags().tags().tags()
    r = conn.request(API_OFFSET_FOR_LEADER_EPOCH, version, w.getvalue(), flexible_header=flex, timeout=5)
    if flex:
        r.skip_tags()
    r.int32()  # throttle
    assert r.array_len(flex) == 1
    assert r.string(flex) == topic
    assert r.array_len(flex) == 1
    err, part, epoch, end = r.int16(), r.int32(), r.int32(), r.int64()
    assert part == partition
    return err, epoch, end


def _seed(broker, n=20):
    topic = f"epochs-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, partitions=1)
    p = make_producer(broker.bootstrap)
    for i in range(n):
        p.produce(topic, b"v%d" % i, key=b"k%d" % i, partition=0)
    assert p.flush(30) == 0
    return topic


def test_offset_for_leader_epoch(broker):
    topic = _seed(broker)
    with kw.WireConnection("127.0.0.1", broker.kafka_port) as conn:
        conn.api_versions()
        epoch = 0  # what Metadata and ListOffsets tell (checked below)
        for v in (2, 3, 4):
            assert offset_for_leader_epoch(conn, topic, 0, epoch, version=v) == (0, epoch, 20), v
            assert offset_for_leader_epoch(conn, topic, 0, epoch, current=epoch, version=v) == (0, epoch, 20)
        # A newer current epoch than the partition's: the client knows more.
        assert offset_for_leader_epoch(conn, topic, 0, epoch, current=epoch + 1)[0] == UNKNOWN_LEADER_EPOCH
        # An epoch before the first: none, no offset.
        assert offset_for_leader_epoch(conn, topic, 0, epoch - 1) == (0, -1, -1)
        assert offset_for_leader_epoch(conn, topic, 7, epoch)[0] == UNKNOWN_TOPIC_OR_PARTITION
        assert offset_for_leader_epoch(conn, "no-such-topic", 0, epoch)[0] == UNKNOWN_TOPIC_OR_PARTITION

        # Fetch and ListOffsets check the current epoch too.
        res = conn.fetch(topic, 0, 0, version=12, current_leader_epoch=epoch + 1)
        assert res.error_code == UNKNOWN_LEADER_EPOCH, res.error_code
        res = conn.fetch(topic, 0, 0, version=12, current_leader_epoch=epoch)
        assert res.error_code == 0 and res.high_watermark == 20
        lo = conn.list_offsets(topic, 0, -1, version=6, current_leader_epoch=epoch + 1)
        assert lo.error_code == UNKNOWN_LEADER_EPOCH, lo
        lo = conn.list_offsets(topic, 0, -1, version=6, current_leader_epoch=epoch)
        assert (lo.error_code, lo.offset, lo.leader_epoch) == (0, 20, epoch), lo


def test_librdkafka_validates_committed_positions(broker):
    topic = _seed(broker, 10)
    group = f"g-{uuid.uuid4().hex[:6]}"
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "broker.address.family": "v4"}
    c = Consumer(conf)
    c.subscribe([topic])
    got = []
    try:
        while len(got) < 5:
            for m in c.consume(10, timeout=1.0):
                assert m.error() is None, m.error()
                got.append(m)
                if len(got) == 5:
                    break
        c.commit(message=got[-1], asynchronous=False)
        committed = c.committed([TopicPartition(topic, 0)], timeout=10)[0]
        assert committed.offset == 5 and committed.leader_epoch == 0, committed
    finally:
        c.close()
    # A new member resumes from the committed offset and its epoch.
    c = Consumer(conf)
    c.subscribe([topic])
    rest = []
    try:
        for _ in range(40):
            for m in c.consume(10, timeout=0.5):
                assert m.error() is None, m.error()
                rest.append(m.offset())
            if len(rest) >= 5:
                break
    finally:
        c.close()
    assert rest == [5, 6, 7, 8, 9], rest

    # A seek with a leader epoch is validated (OffsetForLeaderEpoch) before
    # fetching, and goes on without an error or a reset.
    before = metric(broker, "sluice_requests_total", api="OffsetForLeaderEpoch") or 0
    c = Consumer({**conf, "group.id": group + "-seek"})
    seen = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        for m in c.consume(1, timeout=5.0):
            assert m.error() is None, m.error()
        c.seek(TopicPartition(topic, 0, 7, leader_epoch=0))
        for _ in range(20):
            for m in c.consume(10, timeout=0.5):
                assert m.error() is None, m.error()
                seen.append(m.offset())
            if seen and seen[-1] == 9:
                break
    finally:
        c.close()
    assert seen[:3] == [7, 8, 9], seen
    after = metric(broker, "sluice_requests_total", api="OffsetForLeaderEpoch") or 0
    assert after > before, "librdkafka did not validate the position"
