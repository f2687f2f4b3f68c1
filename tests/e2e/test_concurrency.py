"""Several clients at once: parallel producers on the same partitions while a
consumer tails the topic; large messages near the size limit."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

import kafka_wire as kw
from helpers import (
    assert_contiguous_offsets,
    consume_all,
    create_topic,
    make_consumer,
    make_producer,
    produce_all,
)

PARTITIONS = 3


@pytest.mark.e2e_timeout(240)
def test_parallel_producers_with_tailing_consumer(broker):
    topic = "parallel"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    n_producers, per_producer = 4, 15_000
    total = n_producers * per_producer

    # The consumer starts before any data exists and must see everything as
    # it arrives.
    tailed = []
    tail_errors = []
    stop = threading.Event()

    def tail():
        c = make_consumer(broker.bootstrap, **{"enable.partition.eof": False})
        try:
            c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
            while not stop.is_set() and len(tailed) < total:
                for m in c.consume(num_messages=5000, timeout=0.2):
                    if m.error() is not None:
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            tail_errors.append(m.error())
                        continue
                    tailed.append((m.partition(), m.offset(), m.key()))
        finally:
            c.close()

    results = {}
    errors = {}

    def produce(pid):
        try:
            p = make_producer(broker.bootstrap, **{"linger.ms": 2, "compression.type": ["none", "lz4", "zstd", "gzip"][pid]})
            results[pid] = produce_all(
                p,
                topic,
                ({"key": b"p%d-%06d" % (pid, i), "value": b"x" * (50 + i % 100)} for i in range(per_producer)),
                timeout=150,
            )
        except BaseException as e:  # reported below
            errors[pid] = e

    tailer = threading.Thread(target=tail, daemon=True)
    tailer.start()
    threads = [threading.Thread(target=produce, args=(i,), daemon=True) for i in range(n_producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a producer thread did not finish"
    assert not errors, f"producer failures: {errors}"

    deliveries = [d for ds in results.values() for d in ds]
    assert len(deliveries) == total
    assert_contiguous_offsets(((d.partition, d.offset) for d in deliveries), "parallel acks")

    deadline = time.monotonic() + 60
    while len(tailed) < total and time.monotonic() < deadline and tailer.is_alive():
        time.sleep(0.2)
    stop.set()
    tailer.join(timeout=20)
    assert not tail_errors, f"tailing consumer errors: {tail_errors[:3]}"
    assert len(tailed) == total, f"tailing consumer saw {len(tailed)} of {total}"
    acked = {(d.partition, d.offset): d.key for d in deliveries}
    assert {(p, o): k for p, o, k in tailed} == acked, "tailing consumer saw other data than was acked"

    # Each producer's messages keep their order within a partition.
    per = defaultdict(list)
    for p, o, k in sorted(tailed):
        per[(p, k[:2])].append(int(k[3:]))
    for (p, who), seq in per.items():
        assert seq == sorted(seq), f"partition {p}: producer {who!r} reordered"


@pytest.mark.e2e_timeout(180)
def test_large_messages_near_the_limit(broker):
    topic = "large"
    create_topic(broker.bootstrap, topic, 1)
    sizes = [900_000, 1, 0, 500_000, 1_000_000, 10]
    values = [bytes((i * 31 + j) % 256 for j in range(min(n, 256))) * (n // 256) + b"z" * (n % 256) for i, n in enumerate(sizes)]
    assert [len(v) for v in values] == sizes
    p = make_producer(broker.bootstrap, **{"linger.ms": 0, "message.max.bytes": 1_048_576})
    deliveries = produce_all(p, topic, ({"key": b"%d" % i, "value": v} for i, v in enumerate(values)), timeout=60)
    assert [d.offset for d in sorted(deliveries, key=lambda d: int(d.key))] == list(range(len(sizes)))
    got = consume_all(broker.bootstrap, topic, [0], expected=len(sizes), timeout=60)
    assert [(m.key, m.value) for m in got] == [(b"%d" % i, v) for i, v in enumerate(values)]


def test_pipelined_produce_requests_keep_their_order(broker):
    """Kafka protocol guide: on a single TCP connection requests are processed
    in the order they are sent. Clients pipeline produce requests (librdkafka
    keeps up to 1M in flight, the idempotent producer 5), so a broker that
    appends them concurrently reorders a partition's data."""
    create_topic(broker.bootstrap, "pipelined", 1)
    big = kw.build_record_batch([kw.Record(b"big", b"x" * 1_000_000)])
    small = kw.build_record_batch([kw.Record(b"small", b"y")])
    with kw.WireConnection("127.0.0.1", broker.kafka_port, timeout=30) as c:
        v = c.pick_version(kw.API_PRODUCE, 3, 12)
        sent = []
        for _ in range(5):
            for name, batch in (("big", big), ("small-1", small), ("small-2", small)):
                corr = c.send_request(kw.API_PRODUCE, v, kw.encode_produce_body(v, "pipelined", 0, batch))
                sent.append((corr, name))
        answers = []
        for corr, name in sent:
            r = kw.Reader(c.recv_frame())
            got = r.int32()
            assert got == corr, f"responses out of order: expected correlation id {corr}, got {got}"
            if v >= 9:
                r.skip_tags()
            (_, parts), = kw.parse_produce_body(r, v)
            assert parts[0].error_code == kw.NONE, parts[0]
            answers.append((name, parts[0].base_offset))
    offsets = [o for _, o in answers]
    assert offsets == list(range(len(sent))), (
        f"pipelined produce requests were appended out of send order: {answers}"
    )
