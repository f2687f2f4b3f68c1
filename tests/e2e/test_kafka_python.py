"""kafka-python (pure Python client) against a real sluice broker.

The client's broker-version auto-detection (ApiVersions) must work: no
explicit api_version is passed. Its producer is idempotent by default, so
InitProducerId is exercised as well."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from helpers import assert_contiguous_offsets, create_topic, payloads

N_MESSAGES = 10_000


@pytest.mark.e2e_timeout(240)
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_kafka_python_roundtrip(broker, compression):
    topic = f"kafka-python-{compression or 'none'}"
    create_topic(broker.bootstrap, topic, 3)
    values = payloads(seed=300, count=N_MESSAGES)
    base_ts = int(time.time() * 1000) - 300_000

    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap.split(","),
        acks="all",
        compression_type=compression,
        linger_ms=10,
        request_timeout_ms=15000,
        max_block_ms=30000,
        delivery_timeout_ms=60000,
        bootstrap_timeout_ms=20000,
    )
    try:
        detected = producer.config["api_version"]
        assert detected is not None and detected >= (0, 11), (
            f"kafka-python detected broker version {detected}; headers need >= 0.11"
        )
        futures = [
            producer.send(
                topic,
                key=b"kp-%05d" % i,
                value=values[i],
                headers=[("i", b"%d" % i), ("src", b"kafka-python")],
                timestamp_ms=base_ts + i,
            )
            for i in range(N_MESSAGES)
        ]
        producer.flush(timeout=90)
        metas = [f.get(timeout=30) for f in futures]
    finally:
        producer.close(timeout=10)

    counts = assert_contiguous_offsets(((m.partition, m.offset) for m in metas), "producer acks")
    assert sum(counts.values()) == N_MESSAGES
    acked = {(m.partition, m.offset): i for i, m in enumerate(metas)}

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=20000,
        fetch_max_wait_ms=200,
        bootstrap_timeout_ms=20000,
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(counts)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        got = []
        deadline = time.monotonic() + 90
        while len(got) < N_MESSAGES and time.monotonic() < deadline:
            for _tp, recs in consumer.poll(timeout_ms=1000, max_records=5000).items():
                got.extend(recs)
        end = consumer.end_offsets(parts, timeout_ms=20000)
    finally:
        consumer.close()

    assert len(got) == N_MESSAGES, f"kafka-python consumed {len(got)} of {N_MESSAGES}"
    assert {tp.partition: off for tp, off in end.items()} == counts, f"end offsets {end} vs {counts}"
    bad = []
    per_part = defaultdict(list)
    for r in got:
        per_part[r.partition].append(r.offset)
        i = acked.get((r.partition, r.offset))
        if i is None:
            bad.append(f"unexpected record at {r.partition}/{r.offset}")
            continue
        if r.key != b"kp-%05d" % i or r.value != values[i]:
            bad.append(f"{r.partition}/{r.offset}: key/value differ (key {r.key!r})")
        if list(r.headers) != [("i", b"%d" % i), ("src", b"kafka-python")]:
            bad.append(f"{r.partition}/{r.offset}: headers {r.headers!r}")
        if r.timestamp != base_ts + i or r.timestamp_type != 0:
            bad.append(f"{r.partition}/{r.offset}: timestamp {r.timestamp} type {r.timestamp_type}")
    assert not bad, f"{len(bad)} bad records, first: {bad[:5]}"
    for p, offs in per_part.items():
        assert offs == list(range(counts[p])), f"partition {p}: consumed offsets not in order 0..n-1"
