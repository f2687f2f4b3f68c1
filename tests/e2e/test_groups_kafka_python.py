"""Consumer groups with kafka-python 3.0 (pure-Python client, its own
implementation of JoinGroup/SyncGroup/Heartbeat/OffsetCommit/OffsetFetch).

The first KafkaConsumer(group_id=...) subscribes, processes part of the
data, commits (commit() = positions of the records returned so far) and
close()s. A second consumer with the same group_id (after the first left)
starts every partition exactly at the first one's committed offset and reads
the rest: together they see every message exactly once. kafka-python's admin
client then sees the final committed offsets (OffsetFetch) and the group
(ListGroups / DescribeGroups)."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from helpers import create_topic, make_producer, produce_all
from test_groups_member import unique_values

PARTITIONS = 3
N = 600
FIRST_SHARE = 250


def _consumer(bootstrap, group, topic):
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        request_timeout_ms=30000,
        fetch_max_wait_ms=100,
    )


def _read(consumer, want, timeout):
    """Poll until `want` records were returned (never more: max_records)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=200, max_records=min(50, want - len(out)))
        for recs in batch.values():
            out.extend(recs)
    return out


@pytest.mark.e2e_timeout(120)
def test_kafka_python_group_resume(broker):
    topic = "kp-group-topic"
    group = "kp-group"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    producer = make_producer(broker.bootstrap)
    deliveries = produce_all(producer, topic, unique_values("kp", N, PARTITIONS))
    sent = {d.value: (d.partition, d.offset) for d in deliveries}
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    # -- first consumer: process FIRST_SHARE records, commit, close ----------
    c1 = _consumer(broker.bootstrap, group, topic)
    try:
        got1 = _read(c1, FIRST_SHARE, 40)
        assert len(got1) == FIRST_SHARE, f"first consumer got {len(got1)} of {FIRST_SHARE} records"
        assert c1.assignment() == set(tps), f"first consumer's assignment {c1.assignment()}"
        c1.commit()
        last = defaultdict(lambda: -1)
        for r in got1:
            last[r.partition] = max(last[r.partition], r.offset)
        committed1 = {tp.partition: c1.committed(tp) for tp in tps}
        # kafka-python commits the position of every assigned partition; a
        # partition no record was returned from sits at 0.
        expect1 = {p: last[p] + 1 for p in range(PARTITIONS)}
        assert committed1 == expect1, (
            f"committed() after commit(): {committed1}, records processed up to {dict(last)}"
        )
    finally:
        c1.close(autocommit=False)

    # -- second consumer: same group, resumes at the committed offsets -------
    c2 = _consumer(broker.bootstrap, group, topic)
    try:
        got2 = _read(c2, N - FIRST_SHARE, 40)
        extra = _read(c2, 1, 1.5)
        assert not extra, f"second consumer got more than the rest: {extra[:3]}"
        assert len(got2) == N - FIRST_SHARE, (
            f"second consumer got {len(got2)} records, expected the remaining {N - FIRST_SHARE}"
        )
        first2 = {}
        for r in got2:
            first2.setdefault(r.partition, r.offset)
        resumed = {p: o for p, o in committed1.items() if o < N // PARTITIONS}
        assert first2 == resumed, (
            f"second consumer's first offset per partition {first2} != committed {committed1}"
        )
        seen2 = {tp.partition: c2.committed(tp) for tp in tps}
        assert seen2 == committed1, f"second consumer's committed(): {seen2}, first committed {committed1}"
        c2.commit()
        final = {tp.partition: c2.committed(tp) for tp in tps}
        assert final == {p: N // PARTITIONS for p in range(PARTITIONS)}, f"final committed {final}"
    finally:
        c2.close(autocommit=False)

    values1 = [r.value for r in got1]
    values2 = [r.value for r in got2]
    both = set(values1) & set(values2)
    assert not both, f"{len(both)} records read by both consumers, e.g. {sorted(both)[:5]}"
    assert len(set(values1 + values2)) == len(values1 + values2) == N
    assert set(values1 + values2) == set(sent)
    wrong = [(r.value, (r.partition, r.offset)) for r in got1 + got2 if sent[r.value] != (r.partition, r.offset)]
    assert not wrong, f"records at unexpected positions: {wrong[:5]}"

    # -- kafka-python's admin client sees the group and its offsets ----------
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap.split(","), request_timeout_ms=30000)
    try:
        offsets = admin.list_group_offsets(group)[group]
        assert {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic} == {
            p: N // PARTITIONS for p in range(PARTITIONS)
        }, offsets
        groups = {g["group_id"]: g for g in admin.list_groups()}
        assert group in groups, groups
        assert groups[group]["protocol_type"] == "consumer" and groups[group]["group_state"] == "Empty", groups
        desc = admin.describe_groups([group])[group]
        assert desc["error"] is None and desc["group_state"] == "Empty" and not desc["members"], desc
    finally:
        admin.close()
