"""Durability: every acknowledged message survives kill -9 (and a clean
SIGTERM restart) at its acknowledged offset with its value."""

from __future__ import annotations

import time

import pytest

from helpers import (
    assert_contiguous_offsets,
    consume_all,
    create_topic,
    make_producer,
    produce_all,
)


PARTITIONS = 3
def value_of(i: int) -> bytes:
    return b"crash-%08d-" % i + bytes((i * 7 + j) % 251 for j in range(70))


def read_log(bootstrap, topic, partitions, expected=None):
    got = consume_all(bootstrap, topic, partitions, expected=expected, timeout=120)
    log = {}
    for m in got:
        assert (m.partition, m.offset) not in log, f"offset {m.partition}/{m.offset} read twice"
        log[(m.partition, m.offset)] = m.value
    assert_contiguous_offsets(log.keys(), "log after restart")
    return log


@pytest.mark.e2e_timeout(300)
def test_kill9_mid_stream_keeps_every_acked_message(broker):
    topic = "crash-stream"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    producer = make_producer(
        broker.bootstrap,
        **{
            "linger.ms": 5,
            "message.timeout.ms": 45000,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,
        },
    )
    acked = []  # (partition, offset, value)
    failed = []

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value()))
        else:
            failed.append(err)

    # Three kill -9s at different points of one continuous stream; the same
    # producer carries on against each restarted broker.
    kill_points = [12_000, 27_000, 41_000]
    extra_after_kill = 3_000
    i = 0
    kills = []  # (messages produced, acks received) at each kill
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and len(kills) < len(kill_points):
        if i - len(acked) > 20_000:  # keep the backlog bounded
            producer.poll(0.01)
            continue
        try:
            producer.produce(topic, key=b"%d" % i, value=value_of(i), on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.05)
            continue
        i += 1
        if i % 200 == 0:
            producer.poll(0)
        if len(acked) >= kill_points[len(kills)]:
            broker.kill9()  # mid-stream: requests are in flight right now
            kills.append((i, len(acked)))
            for _ in range(extra_after_kill):  # queued while the broker is down
                producer.produce(topic, key=b"%d" % i, value=value_of(i), on_delivery=on_delivery)
                i += 1
            producer.poll(0)
            broker.restart()
    assert len(kills) == len(kill_points), f"only {len(kills)} kills within 150 s ({len(acked)} acks)"

    left = producer.flush(90)  # what is still queued is retried against the restarted broker
    print(f"produced {i}; (produced, acked) at each kill -9: {kills}; {len(acked)} acked, "
          f"{len(failed)} failed, {left} left")
    # The restarted broker takes the rest: librdkafka retries what was in flight.
    assert left == 0 and not failed, f"{left} undelivered, {len(failed)} failed: {failed[:3]}"
    assert len(acked) == i, f"{len(acked)} acks for {i} messages"
    positions = [(p, o) for p, o, _ in acked]
    assert len(set(positions)) == len(positions), "two acknowledged messages share one offset"

    log = read_log(broker.bootstrap, topic, range(PARTITIONS))
    lost = [(p, o) for p, o, v in acked if (p, o) not in log]
    changed = [(p, o) for p, o, v in acked if (p, o) in log and log[(p, o)] != v]
    assert not lost, (
        f"{len(lost)} of {len(acked)} acknowledged messages missing after kill -9 "
        f"(kills at {kills}), first {lost[:10]}"
    )
    assert not changed, f"{len(changed)} acknowledged offsets hold another value, first {changed[:10]}"


@pytest.mark.e2e_timeout(240)
def test_kill9_right_after_acks_twice(broker):
    """All data acked (flushed), then kill -9, restart, kill -9 again during
    further produce, restart: the log is whole, compressed batches too."""
    topic = "crash-flushed"
    create_topic(broker.bootstrap, topic, 2)
    first = produce_all(
        make_producer(broker.bootstrap, **{"compression.type": "zstd"}),
        topic,
        ({"key": b"a%d" % i, "value": value_of(i)} for i in range(10_000)),
    )
    broker.kill9()
    broker.restart()
    log = read_log(broker.bootstrap, topic, range(2), expected=len(first))
    for d in first:
        assert log.get((d.partition, d.offset)) == d.value, f"{d.partition}/{d.offset} lost or changed"
    assert len(log) == len(first)

    second = produce_all(
        make_producer(broker.bootstrap, **{"compression.type": "lz4"}),
        topic,
        ({"key": b"b%d" % i, "value": value_of(100_000 + i)} for i in range(5_000)),
    )
    broker.kill9()
    broker.restart()
    log = read_log(broker.bootstrap, topic, range(2), expected=len(first) + len(second))
    for d in first + second:
        assert log.get((d.partition, d.offset)) == d.value, f"{d.partition}/{d.offset} lost or changed"
    assert len(log) == len(first) + len(second)


@pytest.mark.e2e_timeout(240)
def test_sigterm_restart_keeps_all_data(broker):
    topic = "clean-restart"
    create_topic(broker.bootstrap, topic, 3)
    first = produce_all(
        make_producer(broker.bootstrap),
        topic,
        ({"key": b"k%d" % i, "value": value_of(i), "headers": [("h", b"%d" % i)]} for i in range(20_000)),
    )
    counts = assert_contiguous_offsets(((d.partition, d.offset) for d in first), "acks")

    t0 = time.monotonic()
    rc = broker.stop()
    assert rc == 0, f"SIGTERM exit code {rc}"
    assert time.monotonic() - t0 < 10
    assert any(broker.data_dir.rglob("*")), f"data dir {broker.data_dir} is empty after shutdown"

    broker.restart()
    log = read_log(broker.bootstrap, topic, range(3), expected=len(first))
    assert len(log) == len(first)
    for d in first:
        assert log[(d.partition, d.offset)] == d.value

    # Appends continue at the next offsets after the restart.
    second = produce_all(
        make_producer(broker.bootstrap),
        topic,
        ({"value": value_of(50_000 + i), "partition": i % 3} for i in range(300)),
    )
    for p in range(3):
        offs = sorted(d.offset for d in second if d.partition == p)
        assert offs == list(range(counts[p], counts[p] + 100)), (
            f"partition {p}: offsets after restart {offs[:3]}..., expected to start at {counts[p]}"
        )


@pytest.mark.e2e_timeout(180)
@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_topic_catalog_survives_restart(broker, how):
    """Topics, partition counts, topic configs and deletions persist."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, ResourceType

    from helpers import admin_client, topic_partition_count

    admin = admin_client(broker.bootstrap)
    create_topic(admin, "keep-a", 2, config={"retention.ms": "111111"})
    create_topic(admin, "keep-b", 1)
    create_topic(admin, "gone", 1)
    admin.create_partitions([NewPartitions("keep-b", 4)], request_timeout=30)["keep-b"].result(timeout=35)
    res = ConfigResource(ResourceType.TOPIC, "keep-b", incremental_configs=[
        ConfigEntry("retention.ms", "222222", incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res], request_timeout=30).values():
        f.result(timeout=35)
    admin.delete_topics(["gone"], request_timeout=30)["gone"].result(timeout=35)
    data = produce_all(make_producer(broker.bootstrap), "keep-b",
                       ({"value": b"b%d" % i, "partition": i % 4} for i in range(400)))

    if how == "sigterm":
        assert broker.stop() == 0
    else:
        broker.kill9()
    broker.restart()

    admin = admin_client(broker.bootstrap)
    assert topic_partition_count(admin, "keep-a") == 2
    assert topic_partition_count(admin, "keep-b") == 4
    assert topic_partition_count(admin, "gone") is None, "deleted topic is back after restart"

    def config_of(topic):
        futs = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=30)
        return {k: e.value for k, e in next(iter(futs.values())).result(timeout=35).items()}

    assert config_of("keep-a").get("retention.ms") == "111111"
    assert config_of("keep-b").get("retention.ms") == "222222"
    log = read_log(broker.bootstrap, "keep-b", range(4), expected=400)
    assert log == {(d.partition, d.offset): d.value for d in data}


@pytest.mark.e2e_timeout(180)
def test_sigterm_with_active_clients(broker):
    """SIGTERM while a producer streams and a consumer tails: the broker exits
    0 within 10 s, and every message acknowledged before it went down is there
    after a restart."""
    import threading

    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from helpers import make_consumer

    topic = "busy-shutdown"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    acked = []
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value()))

    producer = make_producer(broker.bootstrap, **{"linger.ms": 5, "message.timeout.ms": 5000})
    consumer = make_consumer(broker.bootstrap)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])

    def tail():
        while not stop.is_set():
            consumer.consume(num_messages=1000, timeout=0.2)

    tailer = threading.Thread(target=tail, daemon=True)
    tailer.start()
    try:
        i = 0
        deadline = time.monotonic() + 60
        while len(acked) < 20_000:
            assert time.monotonic() < deadline, f"only {len(acked)} acks within 60 s"
            try:
                producer.produce(topic, value=value_of(i), on_delivery=on_delivery)
                i += 1
            except BufferError:
                producer.poll(0.05)
            if i % 200 == 0 or i - len(acked) > 20_000:
                producer.poll(0)
        # Still producing and consuming: now ask the broker to stop.
        t0 = time.monotonic()
        broker.proc.send_signal(15)
        for _ in range(2000):
            try:
                producer.produce(topic, value=value_of(i), on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            producer.poll(0)
        rc = broker.proc.wait(timeout=max(10 - (time.monotonic() - t0), 0.1))
        assert rc == 0, f"exit code {rc} after SIGTERM with active clients"
        producer.flush(10)  # the rest fails or times out: only acks matter
    finally:
        stop.set()
        tailer.join(timeout=10)
        consumer.close()

    broker.restart()
    log = read_log(broker.bootstrap, topic, range(PARTITIONS))
    lost = [(p, o) for p, o, v in acked if log.get((p, o)) != v]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged messages lost or changed, first {lost[:5]}"
