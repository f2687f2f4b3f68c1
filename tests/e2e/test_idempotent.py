"""Idempotent produce: raw InitProducerId + Produce with sequence numbers,
and confluent-kafka's idempotent producer (also across a broker stall that
forces it to retry in-flight batches)."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest
from confluent_kafka import TopicPartition

import kafka_wire as kw
from helpers import (
    OP_TIMEOUT,
    assert_contiguous_offsets,
    consume_all,
    create_topic,
    make_consumer,
    make_producer,
    payloads,
)


PARTITIONS = 3
def high_watermark(bootstrap: str, topic: str, partition: int) -> int:
    c = make_consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=OP_TIMEOUT, cached=False)[1]
    finally:
        c.close()


def idem_batch(pid, epoch, seq, tag, n):
    recs = [kw.Record(key=b"%s-%d" % (tag, j), value=b"value-%s-%d" % (tag, j)) for j in range(n)]
    return kw.build_record_batch(recs, producer_id=pid, producer_epoch=epoch, base_sequence=seq), recs


def test_raw_idempotent_duplicate_and_sequence_gap(broker):
    topic = "idem-raw"
    create_topic(broker.bootstrap, topic, 1)
    with kw.WireConnection("127.0.0.1", broker.kafka_port) as conn:
        init = conn.init_producer_id()
        assert init.error_code == kw.NONE, f"InitProducerId error {init.error_code}"
        assert init.producer_id >= 0 and init.producer_epoch >= 0, init
        pid, epoch = init.producer_id, init.producer_epoch

        batch_a, recs_a = idem_batch(pid, epoch, 0, b"a", 5)
        r = conn.produce(topic, 0, batch_a)
        assert (r.error_code, r.base_offset) == (kw.NONE, 0), f"first send of A: {r}"

        # The same batch again (a retry): same base offset, nothing appended.
        r = conn.produce(topic, 0, batch_a)
        assert (r.error_code, r.base_offset) == (kw.NONE, 0), f"duplicate of A: {r}"
        assert high_watermark(broker.bootstrap, topic, 0) == 5, "duplicate batch A was appended"

        batch_b, recs_b = idem_batch(pid, epoch, 5, b"b", 3)
        r = conn.produce(topic, 0, batch_b)
        assert (r.error_code, r.base_offset) == (kw.NONE, 5), f"batch B: {r}"

        # An older batch retried after a newer one was written is still a duplicate.
        r = conn.produce(topic, 0, batch_a)
        assert (r.error_code, r.base_offset) == (kw.NONE, 0), f"late duplicate of A: {r}"

        # Sequence gap: next expected sequence is 8, send 10.
        batch_gap, _ = idem_batch(pid, epoch, 10, b"gap", 2)
        r = conn.produce(topic, 0, batch_gap)
        assert r.error_code == kw.OUT_OF_ORDER_SEQUENCE_NUMBER, (
            f"batch with sequence gap (expected seq 8, sent 10): {r}"
        )
        assert high_watermark(broker.bootstrap, topic, 0) == 8, "out-of-order batch was appended"

        # The gap did not break the producer's state: sequence 8 is accepted.
        batch_d, recs_d = idem_batch(pid, epoch, 8, b"d", 4)
        r = conn.produce(topic, 0, batch_d)
        assert (r.error_code, r.base_offset) == (kw.NONE, 8), f"batch D after the gap: {r}"

    # A retry on a new connection (as after a disconnect) is still deduplicated.
    with kw.WireConnection("127.0.0.1", broker.kafka_port) as conn2:
        r = conn2.produce(topic, 0, batch_d)
        assert (r.error_code, r.base_offset) == (kw.NONE, 8), f"duplicate of D on a new connection: {r}"
        other = conn2.init_producer_id()
        assert other.error_code == kw.NONE
        assert (other.producer_id, other.producer_epoch) != (pid, epoch), (
            "two InitProducerId calls returned the same producer id and epoch"
        )

    assert high_watermark(broker.bootstrap, topic, 0) == 12
    got = consume_all(broker.bootstrap, topic, [0], expected=12, timeout=60)
    assert [(m.offset, m.key, m.value) for m in got] == [
        (i, r.key, r.value) for i, r in enumerate(recs_a + recs_b + recs_d)
    ]


def _produce_idempotent(bootstrap, topic, n, stall_pids=(), **conf):
    """Produce n messages with an idempotent producer; optionally SIGSTOP the
    broker (every broker of a cluster) for a while mid-stream so in-flight
    requests time out and are retried. Returns (values, deliveries)."""

    def signal_all(sig):
        for pid in stall_pids:
            os.kill(pid, sig)

    values = payloads(seed=400, count=n)
    client_logs = []

    class _Capture(logging.Handler):
        def emit(self, record):
            client_logs.append(record.getMessage())

    logger = logging.getLogger(f"librdkafka-idem-{time.monotonic_ns()}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(_Capture())
    p = make_producer(bootstrap, **{"enable.idempotence": True, "linger.ms": 5, "logger": logger, **conf})
    deliveries = []

    def on_delivery(err, msg):
        deliveries.append((err, msg.partition(), msg.offset(), msg.key()))

    stalled = resumed = False
    stall_end = 0.0
    try:
        for i in range(n):
            if stall_pids and not stalled and i == n // 2:
                assert p.flush(60) == 0, "first half not delivered before the stall"
                # Freeze the broker; the second half is produced into it and
                # its requests time out on the client and are retried.
                signal_all(signal.SIGSTOP)
                stalled = True
                stall_end = time.monotonic() + 6
            if stalled and not resumed and time.monotonic() >= stall_end:
                signal_all(signal.SIGCONT)
                resumed = True
            while True:
                try:
                    p.produce(topic, key=b"idem-%06d" % i, value=values[i], on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 500 == 0:
                p.poll(0)
        while stalled and not resumed and time.monotonic() < stall_end:
            p.poll(0.1)
        if stalled and not resumed:
            signal_all(signal.SIGCONT)
            resumed = True
        remaining = p.flush(120)
    finally:
        if stalled and not resumed:
            signal_all(signal.SIGCONT)
    assert remaining == 0, f"{remaining} messages undelivered"
    errors = [d for d in deliveries if d[0] is not None]
    assert not errors, f"{len(errors)} failed deliveries, first {errors[0]}"
    assert len(deliveries) == n
    return values, deliveries, client_logs


def _check_exactly_once(bootstrap, topic, n, values, deliveries):
    acked = assert_contiguous_offsets(((d[1], d[2]) for d in deliveries), "delivery reports")
    assert sum(acked.values()) == n
    got = consume_all(bootstrap, topic, range(PARTITIONS), expected=n, timeout=120)
    keys = [m.key for m in got]
    dups = len(keys) - len(set(keys))
    assert dups == 0, f"{dups} duplicated messages in the log"
    assert len(got) == n, f"log holds {len(got)} messages, produced {n}"
    assert_contiguous_offsets(((m.partition, m.offset) for m in got), "consumed")
    by_pos = {(d[1], d[2]): d[3] for d in deliveries}
    for m in got:
        i = int(m.key[5:])
        assert by_pos[(m.partition, m.offset)] == m.key, f"{m.partition}/{m.offset} holds {m.key!r}"
        assert m.value == values[i], f"value of {m.key!r} differs"
    for p in range(PARTITIONS):
        idx = [int(m.key[5:]) for m in sorted((m for m in got if m.partition == p), key=lambda m: m.offset)]
        assert idx == sorted(idx), f"partition {p}: order not preserved"


@pytest.mark.e2e_timeout(240)
def test_confluent_idempotent_producer_20k(broker):
    topic = "idem-confluent"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    n = 20_000
    values, deliveries, _ = _produce_idempotent(broker.bootstrap, topic, n)
    _check_exactly_once(broker.bootstrap, topic, n, values, deliveries)


@pytest.mark.e2e_timeout(300)
def test_confluent_idempotent_producer_retries_after_stall(broker):
    """Freeze the broker (SIGSTOP) mid-stream so librdkafka's requests time
    out and are resent; after SIGCONT the broker sees both the original and
    the retried batches and must keep exactly one copy of each."""
    topic = "idem-stall"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    n = 20_000
    values, deliveries, client_logs = _produce_idempotent(
        broker.bootstrap,
        topic,
        n,
        stall_pids=[b.pid for b in getattr(broker, "brokers", [broker])],
        **{"socket.timeout.ms": 2000, "message.timeout.ms": 120000, "retry.backoff.ms": 200},
    )
    broker.assert_alive("after SIGSTOP/SIGCONT")
    # The stall must really have made the client time out and resend.
    timeouts = [m for m in client_logs if "Timed out ProduceRequest" in m]
    assert timeouts, "no ProduceRequest timed out during the stall: the retry path was not exercised"
    _check_exactly_once(broker.bootstrap, topic, n, values, deliveries)


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_raw_idempotent_dedup_survives_restart(broker, how):
    """The ack of a written batch can be lost when the broker dies after the
    fsync; the producer then resends it to the restarted broker. The resend
    must be recognised as a duplicate, not appended a second time."""
    topic = "idem-restart"
    create_topic(broker.bootstrap, topic, 1)
    with kw.WireConnection("127.0.0.1", broker.kafka_port) as conn:
        init = conn.init_producer_id()
        assert init.error_code == kw.NONE, init
        pid, epoch = init.producer_id, init.producer_epoch
        batch_a, recs_a = idem_batch(pid, epoch, 0, b"a", 5)
        r = conn.produce(topic, 0, batch_a)
        assert (r.error_code, r.base_offset) == (kw.NONE, 0), r
        batch_b, recs_b = idem_batch(pid, epoch, 5, b"b", 3)
        r = conn.produce(topic, 0, batch_b)
        assert (r.error_code, r.base_offset) == (kw.NONE, 5), r

    if how == "kill9":
        broker.kill9()
    else:
        assert broker.stop() == 0
    broker.restart()

    with kw.WireConnection("127.0.0.1", broker.kafka_port) as conn:
        r = conn.produce(topic, 0, batch_b)
        assert (r.error_code, r.base_offset) == (kw.NONE, 5), (
            f"resend of the last batch after {how} + restart: {r} (expected a duplicate at offset 5)"
        )
        batch_c, recs_c = idem_batch(pid, epoch, 8, b"c", 2)
        r = conn.produce(topic, 0, batch_c)
        assert (r.error_code, r.base_offset) == (kw.NONE, 8), f"next sequence after restart: {r}"
        gap, _ = idem_batch(pid, epoch, 20, b"gap", 1)
        r = conn.produce(topic, 0, gap)
        assert r.error_code == kw.OUT_OF_ORDER_SEQUENCE_NUMBER, f"sequence gap after restart: {r}"
    got = consume_all(broker.bootstrap, topic, [0], expected=10, timeout=60)
    assert [(m.offset, m.value) for m in got] == [
        (i, r.value) for i, r in enumerate(recs_a + recs_b + recs_c)
    ], f"log after restart and resend: {[(m.offset, m.key) for m in got]}"


def test_raw_idempotent_producers_are_independent(broker):
    """Sequence numbers are tracked per producer id (and per partition)."""
    topic = "idem-two"
    create_topic(broker.bootstrap, topic, 2)
    with kw.WireConnection("127.0.0.1", broker.kafka_port) as conn:
        p1 = conn.init_producer_id()
        p2 = conn.init_producer_id()
        b1, _ = idem_batch(p1.producer_id, p1.producer_epoch, 0, b"p1", 4)
        b2, _ = idem_batch(p2.producer_id, p2.producer_epoch, 0, b"p2", 2)
        assert conn.produce(topic, 0, b1).base_offset == 0
        r = conn.produce(topic, 0, b2)
        assert (r.error_code, r.base_offset) == (kw.NONE, 4), f"second producer's seq 0: {r}"
        # p1's sequence 0 on the other partition is a first write, not a duplicate.
        r = conn.produce(topic, 1, b1)
        assert (r.error_code, r.base_offset) == (kw.NONE, 0), f"p1 seq 0 on partition 1: {r}"
        b1_next, _ = idem_batch(p1.producer_id, p1.producer_epoch, 4, b"p1n", 1)
        r = conn.produce(topic, 0, b1_next)
        assert (r.error_code, r.base_offset) == (kw.NONE, 6), f"p1 seq 4 after p2 wrote: {r}"
        r = conn.produce(topic, 0, b2)
        assert (r.error_code, r.base_offset) == (kw.NONE, 4), f"p2 duplicate after p1 wrote again: {r}"
    assert high_watermark(broker.bootstrap, topic, 0) == 7
    assert high_watermark(broker.bootstrap, topic, 1) == 4
