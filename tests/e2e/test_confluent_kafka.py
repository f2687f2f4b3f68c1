"""confluent-kafka (librdkafka) against a real sluice broker: compressed
produce/consume round trips, ListOffsets in its client forms, and the admin
APIs (CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
IncrementalAlterConfigs, DescribeCluster)."""

from __future__ import annotations

import random
import time
import urllib.request

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from helpers import (
    OP_TIMEOUT,
    admin_client,
    assert_contiguous_offsets,
    consume_all,
    create_topic,
    make_consumer,
    make_producer,
    payloads,
    produce_all,
    topic_partition_count,
    wait_topic,
)

N_MESSAGES = 100_000
PARTITIONS = 3
CODECS = ["gzip", "snappy", "lz4", "zstd"]


def kafka_error_of(excinfo) -> KafkaError:
    err = excinfo.value.args[0]
    assert isinstance(err, KafkaError), f"expected a KafkaError, got {err!r}"
    return err


def message_headers(i: int, codec: str):
    return [
        ("idx", b"%d" % i),
        ("codec", codec.encode()),
        ("bin", bytes([i % 256, 0, 255, (i >> 8) % 256])),
        ("empty", b""),
        ("null", None),
    ]


# ---------------------------------------------------------------------------
# Round trip per codec, plus ListOffsets on the data it wrote
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(300)
@pytest.mark.parametrize("codec", CODECS)
def test_roundtrip_compressed_100k(broker, codec):
    topic = f"roundtrip-{codec}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    values = payloads(seed=100 + CODECS.index(codec), count=N_MESSAGES)
    base_ts = int(time.time() * 1000) - 600_000  # explicit, distinct, increasing

    def gen():
        for i in range(N_MESSAGES):
            yield {
                "key": b"key-%06d" % i,
                "value": values[i],
                "headers": message_headers(i, codec),
                "timestamp": base_ts + i,
            }

    producer = make_producer(
        broker.bootstrap,
        **{"compression.type": codec, "linger.ms": 20, "batch.num.messages": 10000},
    )
    deliveries = produce_all(producer, topic, gen())

    delivered_counts = assert_contiguous_offsets(
        ((d.partition, d.offset) for d in deliveries), "delivery reports"
    )
    assert sum(delivered_counts.values()) == N_MESSAGES
    assert sorted(delivered_counts) == list(range(PARTITIONS)), f"partitions used: {delivered_counts}"
    by_index = {int(d.key[4:]): d for d in deliveries}
    assert len(by_index) == N_MESSAGES

    consumed = consume_all(broker.bootstrap, topic, range(PARTITIONS), expected=N_MESSAGES, timeout=150)
    assert len(consumed) == N_MESSAGES, (
        f"consumed {len(consumed)} of {N_MESSAGES} messages ({codec})"
    )
    consumed_counts = assert_contiguous_offsets(
        ((m.partition, m.offset) for m in consumed), "consumed"
    )
    assert consumed_counts == delivered_counts

    mismatches = []
    for m in consumed:
        i = int(m.key[4:])
        d = by_index[i]
        problems = []
        if (m.partition, m.offset) != (d.partition, d.offset):
            problems.append(f"at {m.partition}/{m.offset}, acked at {d.partition}/{d.offset}")
        if m.key != b"key-%06d" % i:
            problems.append(f"key {m.key!r}")
        if m.value != values[i]:
            problems.append(f"value differs ({len(m.value or b'')} vs {len(values[i])} bytes)")
        if m.headers != message_headers(i, codec):
            problems.append(f"headers {m.headers!r}")
        if (m.timestamp_type, m.timestamp) != (TIMESTAMP_CREATE_TIME, base_ts + i):
            problems.append(f"timestamp {(m.timestamp_type, m.timestamp)} != create-time {base_ts + i}")
        if problems:
            mismatches.append(f"message {i}: " + "; ".join(problems))
    assert not mismatches, f"{len(mismatches)} mismatching messages, first: {mismatches[:5]}"

    # --- ListOffsets through the consumer API -----------------------------
    by_partition = {}
    for m in consumed:
        by_partition.setdefault(m.partition, []).append(m)
    for p, msgs in by_partition.items():
        msgs.sort(key=lambda m: m.offset)
        order = [int(m.key[4:]) for m in msgs]
        if order != sorted(order):
            k = next(j for j in range(1, len(order)) if order[j] < order[j - 1])
            raise AssertionError(
                f"partition {p}: log is not in produce order (one producer, no retries): "
                f"offset {msgs[k - 1].offset} holds message {order[k - 1]}, "
                f"offset {msgs[k].offset} holds message {order[k]}"
            )

    consumer = make_consumer(broker.bootstrap)
    try:
        for p, n in delivered_counts.items():
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=OP_TIMEOUT, cached=False
            )
            assert (low, high) == (0, n), f"watermarks of partition {p}: {(low, high)}, expected (0, {n})"

        rng = random.Random(7)
        for _ in range(40):
            p = rng.choice(sorted(by_partition))
            m = rng.choice(by_partition[p])
            res = consumer.offsets_for_times([TopicPartition(topic, p, m.timestamp)], timeout=OP_TIMEOUT)
            assert res[0].error is None, f"offsets_for_times error: {res[0].error}"
            assert res[0].offset == m.offset, (
                f"offsets_for_times({p}, ts={m.timestamp}) = {res[0].offset}, expected {m.offset}"
            )
            # A timestamp between two messages maps to the later one.
            if m.offset > 0:
                prev = by_partition[p][m.offset - 1]
                if m.timestamp - prev.timestamp > 1:
                    res = consumer.offsets_for_times(
                        [TopicPartition(topic, p, prev.timestamp + 1)], timeout=OP_TIMEOUT
                    )
                    assert res[0].offset == m.offset, (
                        f"offsets_for_times({p}, ts={prev.timestamp + 1}) = {res[0].offset}, "
                        f"expected {m.offset}"
                    )
        for p in by_partition:
            res = consumer.offsets_for_times([TopicPartition(topic, p, 0)], timeout=OP_TIMEOUT)
            assert res[0].offset == 0, f"offsets_for_times({p}, ts=0) = {res[0].offset}, expected 0"
            after = by_partition[p][-1].timestamp + 1
            res = consumer.offsets_for_times([TopicPartition(topic, p, after)], timeout=OP_TIMEOUT)
            assert res[0].offset == -1, (
                f"offsets_for_times({p}, ts after the last message) = {res[0].offset}, expected -1 (end)"
            )
    finally:
        consumer.close()

    # --- ListOffsets through the AdminClient API --------------------------
    admin = admin_client(broker.bootstrap)
    for spec_name, spec, expect in [
        ("earliest", OffsetSpec.earliest(), lambda p: 0),
        ("latest", OffsetSpec.latest(), lambda p: delivered_counts[p]),
    ]:
        futs = admin.list_offsets(
            {TopicPartition(topic, p): spec for p in delivered_counts}, request_timeout=OP_TIMEOUT
        )
        for tp, fut in futs.items():
            info = fut.result(timeout=OP_TIMEOUT + 5)
            assert info.offset == expect(tp.partition), (
                f"list_offsets {spec_name} partition {tp.partition}: {info.offset}, "
                f"expected {expect(tp.partition)}"
            )
    targets = {}
    for p, msgs in by_partition.items():
        m = msgs[len(msgs) // 2]
        targets[p] = m
    futs = admin.list_offsets(
        {TopicPartition(topic, p): OffsetSpec.for_timestamp(m.timestamp) for p, m in targets.items()},
        request_timeout=OP_TIMEOUT,
    )
    for tp, fut in futs.items():
        info = fut.result(timeout=OP_TIMEOUT + 5)
        m = targets[tp.partition]
        assert info.offset == m.offset, (
            f"list_offsets for_timestamp({m.timestamp}) partition {tp.partition}: "
            f"{info.offset}, expected {m.offset}"
        )
        assert info.timestamp == m.timestamp, (
            f"list_offsets for_timestamp partition {tp.partition}: timestamp {info.timestamp}, "
            f"expected {m.timestamp}"
        )


# ---------------------------------------------------------------------------
# Admin APIs
# ---------------------------------------------------------------------------


def test_create_topics_validate_only_creates_nothing(broker):
    admin = admin_client(broker.bootstrap)
    futs = admin.create_topics(
        [NewTopic("validate-me", num_partitions=3, replication_factor=1)],
        validate_only=True,
        request_timeout=OP_TIMEOUT,
    )
    assert futs["validate-me"].result(timeout=OP_TIMEOUT + 5) is None
    assert topic_partition_count(admin, "validate-me") is None, (
        "validate_only CreateTopics created the topic"
    )
    # validate_only must still validate.
    futs = admin.create_topics(
        [NewTopic("validate-bad", num_partitions=1, replication_factor=1, config={"retention.ms": "abc"})],
        validate_only=True,
        request_timeout=OP_TIMEOUT,
    )
    with pytest.raises(KafkaException) as ei:
        futs["validate-bad"].result(timeout=OP_TIMEOUT + 5)
    assert kafka_error_of(ei).code() == KafkaError.INVALID_CONFIG, f"got {kafka_error_of(ei)!r}"
    # ...and a real create afterwards works.
    create_topic(admin, "validate-me", 3)


def test_create_topic_invalid_config_and_duplicate(broker):
    admin = admin_client(broker.bootstrap)
    futs = admin.create_topics(
        [NewTopic("bad-config", num_partitions=1, replication_factor=1, config={"retention.ms": "abc"})],
        request_timeout=OP_TIMEOUT,
    )
    with pytest.raises(KafkaException) as ei:
        futs["bad-config"].result(timeout=OP_TIMEOUT + 5)
    assert kafka_error_of(ei).code() == KafkaError.INVALID_CONFIG, f"got {kafka_error_of(ei)!r}"
    assert topic_partition_count(admin, "bad-config") is None, "topic with invalid config was created"

    create_topic(admin, "dup", 2)
    futs = admin.create_topics([NewTopic("dup", num_partitions=2, replication_factor=1)], request_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        futs["dup"].result(timeout=OP_TIMEOUT + 5)
    assert kafka_error_of(ei).code() == KafkaError.TOPIC_ALREADY_EXISTS, f"got {kafka_error_of(ei)!r}"


def test_delete_topics(broker):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, "doomed", 2)
    produce_all(make_producer(broker.bootstrap), "doomed", ({"value": b"v%d" % i} for i in range(100)), timeout=60)
    futs = admin.delete_topics(["doomed"], request_timeout=OP_TIMEOUT, operation_timeout=OP_TIMEOUT)
    assert futs["doomed"].result(timeout=OP_TIMEOUT + 5) is None
    deadline = time.monotonic() + 15
    while topic_partition_count(admin, "doomed") is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert topic_partition_count(admin, "doomed") is None, "deleted topic still listed in metadata"
    # Its series leave /metrics with it.
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert 'topic="doomed"' not in metrics, [m for m in metrics.splitlines() if 'topic="doomed"' in m][:5]

    futs = admin.delete_topics(["never-existed"], request_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        futs["never-existed"].result(timeout=OP_TIMEOUT + 5)
    assert kafka_error_of(ei).code() == KafkaError.UNKNOWN_TOPIC_OR_PART, f"got {kafka_error_of(ei)!r}"

    # A topic re-created under the same name starts empty.
    create_topic(admin, "doomed", 1)
    got = consume_all(broker.bootstrap, "doomed", [0], timeout=30)
    assert got == [], f"re-created topic still holds {len(got)} old messages"


def test_create_partitions(broker):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, "growing", 3)
    first = produce_all(
        make_producer(broker.bootstrap),
        "growing",
        ({"value": b"old-%d" % i, "partition": i % 3} for i in range(300)),
        timeout=60,
    )
    futs = admin.create_partitions([NewPartitions("growing", 5)], request_timeout=OP_TIMEOUT)
    assert futs["growing"].result(timeout=OP_TIMEOUT + 5) is None
    wait_topic(admin, "growing", 5)

    # Fresh producer so its metadata includes the new partitions.
    second = produce_all(
        make_producer(broker.bootstrap),
        "growing",
        ({"value": b"new-%d" % i, "partition": 3 + i % 2} for i in range(200)),
        timeout=60,
    )
    got = consume_all(broker.bootstrap, "growing", range(5), expected=500, timeout=60)
    counts = assert_contiguous_offsets(((m.partition, m.offset) for m in got), "consumed")
    assert counts == {0: 100, 1: 100, 2: 100, 3: 100, 4: 100}, counts
    want = {(d.partition, d.offset): d.value for d in first + second}
    have = {(m.partition, m.offset): m.value for m in got}
    assert have == want

    # Shrinking is not allowed.
    futs = admin.create_partitions([NewPartitions("growing", 2)], request_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        futs["growing"].result(timeout=OP_TIMEOUT + 5)
    assert kafka_error_of(ei).code() == KafkaError.INVALID_PARTITIONS, f"got {kafka_error_of(ei)!r}"
    assert topic_partition_count(admin, "growing") == 5


def describe_topic_config(admin, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    futs = admin.describe_configs([res], request_timeout=OP_TIMEOUT)
    (fut,) = futs.values()
    return fut.result(timeout=OP_TIMEOUT + 5)


def test_describe_and_incremental_alter_configs(broker):
    admin = admin_client(broker.bootstrap)
    create_topic(admin, "configured", 1, config={"retention.ms": "123456"})

    entries = describe_topic_config(admin, "configured")
    assert "retention.ms" in entries, f"describe_configs returned {sorted(entries)}"
    assert entries["retention.ms"].value == "123456", entries["retention.ms"]

    res = ConfigResource(
        ResourceType.TOPIC,
        "configured",
        incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    futs = admin.incremental_alter_configs([res], request_timeout=OP_TIMEOUT)
    for fut in futs.values():
        fut.result(timeout=OP_TIMEOUT + 5)
    entries = describe_topic_config(admin, "configured")
    assert entries["retention.ms"].value == "7200000", entries["retention.ms"]

    # validate_only changes nothing.
    dry = ConfigResource(
        ResourceType.TOPIC,
        "configured",
        incremental_configs=[
            ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for fut in admin.incremental_alter_configs([dry], validate_only=True, request_timeout=OP_TIMEOUT).values():
        fut.result(timeout=OP_TIMEOUT + 5)
    entries = describe_topic_config(admin, "configured")
    assert entries["retention.ms"].value == "7200000", f"validate_only changed the config: {entries['retention.ms']}"

    # Unknown topic.
    with pytest.raises(KafkaException) as ei:
        describe_topic_config(admin, "no-such-topic")
    assert kafka_error_of(ei).code() == KafkaError.UNKNOWN_TOPIC_OR_PART, f"got {kafka_error_of(ei)!r}"

    # An invalid value is rejected and leaves the config unchanged.
    bad = ConfigResource(
        ResourceType.TOPIC,
        "configured",
        incremental_configs=[
            ConfigEntry("retention.ms", "not-a-number", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    futs = admin.incremental_alter_configs([bad], request_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        for fut in futs.values():
            fut.result(timeout=OP_TIMEOUT + 5)
    assert kafka_error_of(ei).code() == KafkaError.INVALID_CONFIG, f"got {kafka_error_of(ei)!r}"
    entries = describe_topic_config(admin, "configured")
    assert entries["retention.ms"].value == "7200000", entries["retention.ms"]


def test_describe_cluster(broker):
    admin = admin_client(broker.bootstrap)
    desc = admin.describe_cluster(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT + 5)
    assert desc.cluster_id, f"empty cluster id: {desc!r}"
    # One broker, or every broker of a cluster (SLUICE_E2E_CLUSTER).
    expected = sorted(("127.0.0.1", b.kafka_port) for b in getattr(broker, "brokers", [broker]))
    assert sorted((n.host, n.port) for n in desc.nodes) == expected, f"nodes: {desc.nodes}"
    lowest = min(n.id for n in desc.nodes)
    assert desc.controller is not None and desc.controller.id == lowest, desc.controller


def test_invalid_topic_names_and_partition_counts_rejected(broker):
    """Kafka's topic-name rules (legal chars [a-zA-Z0-9._-], at most 249, not
    '.' or '..'): names that could escape the data dir must never be created."""
    admin = admin_client(broker.bootstrap)
    bad_names = ["../escape", "a/b", "..", ".", "x" * 250, "sp ace", "t\u00e9st"]
    futs = admin.create_topics(
        [NewTopic(n, num_partitions=1, replication_factor=1) for n in bad_names], request_timeout=OP_TIMEOUT
    )
    for name, fut in futs.items():
        with pytest.raises(KafkaException) as ei:
            fut.result(timeout=OP_TIMEOUT + 5)
        assert kafka_error_of(ei).code() == KafkaError.TOPIC_EXCEPTION, (
            f"CreateTopics {name!r}: {kafka_error_of(ei)!r}, expected INVALID_TOPIC_EXCEPTION"
        )
    listed = set(admin.list_topics(timeout=OP_TIMEOUT).topics)
    assert not listed & set(bad_names), f"invalid topics created: {listed & set(bad_names)}"
    escaped = [
        p for p in broker.workdir.parent.rglob("*")
        if "escape" in p.name and broker.data_dir not in p.parents
    ]
    assert not escaped, f"files outside the data dir: {escaped}"

    good = "Good.name_with-all-legal.chars-" + "y" * 218  # 249 characters
    assert len(good) == 249
    create_topic(admin, good, 1)

    futs = admin.create_topics([NewTopic("zero-parts", num_partitions=0, replication_factor=1)],
                               request_timeout=OP_TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        futs["zero-parts"].result(timeout=OP_TIMEOUT + 5)
    assert kafka_error_of(ei).code() == KafkaError.INVALID_PARTITIONS, f"got {kafka_error_of(ei)!r}"
