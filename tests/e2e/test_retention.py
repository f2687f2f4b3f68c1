"""Retention, DeleteRecords and topic deletion on the object layer (local
file:// object store under DATA_DIR/objects, fast maintenance passes).

* retention.ms (topic config and the broker default --log-retention-ms):
  index rows whose newest record is too old go, the log start moves to the
  first kept offset, their objects are deleted; the rest stays readable.
* retention.bytes: old rows go until the partition fits the limit;
  retention.ms set later with IncrementalAlterConfigs applies too; the
  documented -1 values of the broker flags are accepted.
* DeleteRecords through confluent-kafka's AdminClient: low watermark moves,
  fetches below it get OFFSET_OUT_OF_RANGE, consumers reset; survives a
  restart, also when the deleted data was not uploaded yet, and leaves no
  index rows (or objects) of deleted records behind once it is uploaded.
* cleanup.policy=compact: retention never deletes (not by retention.ms nor
  retention.bytes, nor the broker default); compact,delete does.
* Deleting a topic deletes its objects (upload and compacted) after the GC
  grace period, and leaves other topics alone.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from helpers import admin_client, consume_all, create_topic
from kafka_wire import WireConnection
import s3_server
from s3_server import (
    catalog_query,
    make_consumer,
    make_producer,
    local_objects,
    object_store_broker,
    partition_offsets,
    produce_indexed,
    segments_of,
    topic_id,
    wait_for,
    wait_uploaded,
)

sluice_bin = s3_server.sluice_bin

OFFSET_OUT_OF_RANGE = 1
DAY_MS = 24 * 3600 * 1000

FAST_MAINTENANCE = [
    "--maintenance-interval-ms", "500",
    "--upload-interval-ms", "50",
    "--gc-grace-ms", "500",
]


def _broker(broker_factory, *extra):
    return object_store_broker(broker_factory, args=FAST_MAINTENANCE + list(extra))


def _objects_dir(b):
    return b.data_dir / "objects"


def _produce_rounds(b, topic, rounds, make):
    """Produce `rounds` rounds of make(round) messages, each round uploaded
    (its own index rows) before the next. Returns (msgs, acked)."""
    producer = make_producer(b.bootstrap, **{"linger.ms": 5})
    msgs, acked = [], []
    for r in range(rounds):
        batch = make(r)
        acked += produce_indexed(producer, topic, batch, timeout=60)
        msgs += batch
        ends = {}
        for p, o in acked:
            ends[p] = max(ends.get(p, 0), o + 1)
        wait_uploaded(b.data_dir, topic, ends, timeout=30, interval=0.02)
    return msgs, acked


def _watermarks(b, topic, partition):
    c = make_consumer(b.bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def _list_earliest(b, topic, partition):
    admin = admin_client(b.bootstrap)
    tp = TopicPartition(topic, partition)
    res = admin.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=10)
    return res[tp].result(timeout=15).offset


def _wire_earliest(b, topic, partition):
    with WireConnection("127.0.0.1", b.kafka_port) as w:
        r = w.list_offsets(topic, partition, -2)
        assert r.error_code == 0, f"ListOffsets earliest {topic}[{partition}]: error {r.error_code}"
        return r.offset


def _consume_from(b, topic, partition, offset, expected, reset="earliest", timeout=30):
    """Assign at `offset`; return the messages read (until `expected` or EOF)."""
    c = make_consumer(b.bootstrap, **{"auto.offset.reset": reset})
    out = []
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(out) < expected:
            for m in c.consume(500, timeout=0.5):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        if len(out) >= expected:
                            break
                        continue
                    raise AssertionError(f"consume error from {topic}[{partition}]@{offset}: {m.error()!r}")
                out.append(m)
        return out
    finally:
        c.close()


# ---------------------------------------------------------------------------
# retention.ms
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(180)
def test_retention_by_time(broker_factory):
    b = _broker(broker_factory, "--log-retention-ms", str(3600 * 1000))
    now = int(time.time() * 1000)
    old_ts = now - 2 * DAY_MS
    topics = {
        "ret-time": {"retention.ms": str(3600 * 1000)},  # topic config
        "ret-time-default": {},  # broker default --log-retention-ms
        "ret-time-forever": {"retention.ms": "-1"},  # kept forever
    }
    for t, cfg in topics.items():
        create_topic(b.bootstrap, t, 1, config=cfg)

    n_old_rounds, n_new_rounds, per_round = 4, 2, 150
    produced = {}
    old_keys = {}
    for t in topics:
        def make_old(r, t=t):
            return [
                {"partition": 0, "key": f"old-{r}-{j}".encode(), "value": f"{t} old {r}/{j}".encode() * 8,
                 "timestamp": old_ts + r * 1000 + j}
                for j in range(per_round)
            ]

        def make_new(r, t=t):
            return [
                {"partition": 0, "key": f"new-{r}-{j}".encode(), "value": f"{t} new {r}/{j}".encode() * 8}
                for j in range(per_round)
            ]

        msgs_old, acked_old = _produce_rounds(b, t, n_old_rounds, make_old)
        old_keys[t] = {r[4] for r in segments_of(b.data_dir, t) if r[2] < len(msgs_old)}
        msgs_new, acked_new = _produce_rounds(b, t, n_new_rounds, make_new)
        produced[t] = (msgs_old + msgs_new, acked_old + acked_new)
    n_old = n_old_rounds * per_round
    n_total = (n_old_rounds + n_new_rounds) * per_round

    for t in ("ret-time", "ret-time-default"):
        wait_for(
            lambda t=t: _watermarks(b, t, 0)[0] == n_old,
            30,
            f"{t}: low watermark to move to {n_old} (the first record newer than retention.ms)",
            describe=lambda t=t: f"watermarks {_watermarks(b, t, 0)}, catalog {partition_offsets(b.data_dir, t)}",
        )
        assert _watermarks(b, t, 0) == (n_old, n_total)
        assert _list_earliest(b, t, 0) == n_old
        assert _wire_earliest(b, t, 0) == n_old
        assert partition_offsets(b.data_dir, t)[0][0] == n_old
        rows = segments_of(b.data_dir, t)
        assert rows and rows[0][1] == n_old, f"{t}: index rows after retention start at {rows[:1]}"
        assert all(r[3] >= now for r in rows), f"{t}: an index row of old records survived: {rows}"
        # The objects that held only old records are deleted (after the GC grace).
        assert old_keys[t], f"{t}: no objects held the old records?"
        wait_for(
            lambda t=t: not (old_keys[t] & set(local_objects(_objects_dir(b)))),
            30,
            f"{t}: objects of expired records to be deleted",
            describe=lambda t=t: f"still there: {sorted(old_keys[t] & set(local_objects(_objects_dir(b))))}",
        )
        known = {k for (k,) in catalog_query(b.data_dir, "SELECT key FROM objects")}
        assert not (old_keys[t] & known), f"{t}: expired objects still in the catalog"
        # The rest is readable; a fetch below the log start is out of range.
        msgs, acked = produced[t]
        got = _consume_from(b, t, 0, 0, n_total - n_old)
        assert [m.offset() for m in got] == list(range(n_old, n_total)), (
            f"{t}: read offsets {got[0].offset() if got else None}..{got[-1].offset() if got else None} "
            f"({len(got)}), expected {n_old}..{n_total - 1}"
        )
        for m in got:
            assert m.value() == msgs[m.offset()]["value"], f"{t}: value at {m.offset()} differs"
        with WireConnection("127.0.0.1", b.kafka_port) as w:
            r = w.fetch(t, 0, 0)
            assert r.error_code == OFFSET_OUT_OF_RANGE, f"{t}: fetch at 0 answered error {r.error_code}"

    # retention.ms=-1 keeps everything even though the broker default would expire it.
    assert _watermarks(b, "ret-time-forever", 0) == (0, n_total)
    got = consume_all(b.bootstrap, "ret-time-forever", [0], expected=n_total, timeout=30)
    assert [m.offset for m in got] == list(range(n_total))
    for t in ("ret-time-forever",):
        still = set(local_objects(_objects_dir(b)))
        assert old_keys[t] <= still, f"{t}: objects of a keep-forever topic were deleted"

    # The log start survives a restart.
    assert b.stop() == 0
    b.restart()
    for t in ("ret-time", "ret-time-default"):
        assert _watermarks(b, t, 0) == (n_old, n_total), f"{t} after restart"
    assert _watermarks(b, "ret-time-forever", 0) == (0, n_total)


# ---------------------------------------------------------------------------
# retention.bytes
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(180)
def test_retention_by_bytes(broker_factory):
    b = _broker(broker_factory)
    topic, limit = "ret-bytes", 150_000
    create_topic(b.bootstrap, topic, 1, config={"retention.bytes": str(limit)})
    control = "ret-bytes-unlimited"
    create_topic(b.bootstrap, control, 1)

    rounds, per_round, size = 16, 40, 1000

    def make(r):
        return [
            {"partition": 0, "key": f"{r}-{j}".encode(), "value": bytes([r % 251]) * (size - 8) + f"{r:04d}{j:04d}".encode()}
            for j in range(per_round)
        ]

    msgs, acked = _produce_rounds(b, topic, rounds, make)
    _produce_rounds(b, control, rounds, make)
    total = rounds * per_round

    def trimmed():
        rows = segments_of(b.data_dir, topic)
        kept = sum(r[6] for r in rows)
        return rows if rows and kept <= limit + max(r[6] for r in rows) and _watermarks(b, topic, 0)[0] > 0 else None

    wait_for(trimmed, 30, f"{topic} to be trimmed to about {limit} bytes",
             describe=lambda: f"rows {[(r[1], r[2], r[6]) for r in segments_of(b.data_dir, topic)]}")
    time.sleep(1.5)  # more maintenance passes must not trim further
    rows = segments_of(b.data_dir, topic)
    kept = sum(r[6] for r in rows)
    biggest = max(r[6] for r in rows)
    low, high = _watermarks(b, topic, 0)
    print(f"retention.bytes={limit}: kept {kept} bytes in {len(rows)} rows (largest {biggest}), "
          f"log start {low} of {high}")
    assert high == total
    assert low == rows[0][1], f"low watermark {low} is not the first kept row's base {rows[0][1]}"
    assert low == partition_offsets(b.data_dir, topic)[0][0]
    # Whole rows go; what stays is the limit give or take one row (Kafka keeps
    # at least retention.bytes, never deleting a segment that would take it below).
    assert limit - biggest < kept <= limit + biggest, (
        f"{kept} bytes kept in {len(rows)} rows (largest {biggest}) for retention.bytes={limit}"
    )
    # Retention deleted old rows only; the newest records are all there.
    got = _consume_from(b, topic, 0, low, total - low)
    assert [m.offset() for m in got] == list(range(low, total))
    for m in got:
        assert m.value() == msgs[m.offset()]["value"]
    # The untouched topic still has everything.
    assert _watermarks(b, control, 0) == (0, total)

    # Objects that held only deleted rows go away; the others stay.
    def referenced():
        return {k for (k,) in catalog_query(b.data_dir, "SELECT DISTINCT object_key FROM segments")}

    wait_for(
        lambda: set(local_objects(_objects_dir(b))) == referenced(),
        20,
        "exactly the referenced objects to remain",
        describe=lambda: f"store {sorted(local_objects(_objects_dir(b)))}, referenced {sorted(referenced())}",
    )
    assert len(referenced()) < 2 * rounds, "no object was deleted"


@pytest.mark.e2e_timeout(120)
def test_retention_ms_set_later_with_incremental_alter_configs(broker_factory):
    """A topic kept forever gets retention.ms through IncrementalAlterConfigs;
    the next maintenance passes apply it."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    b = _broker(broker_factory, "--log-retention-ms=-1")
    topic = "ret-altered"
    create_topic(b.bootstrap, topic, 1)
    old_ts = int(time.time() * 1000) - 2 * DAY_MS
    old = lambda r: [{"partition": 0, "value": b"old %d/%d" % (r, j), "timestamp": old_ts + j} for j in range(100)]  # noqa: E731
    new = lambda r: [{"partition": 0, "value": b"new %d/%d" % (r, j)} for j in range(100)]  # noqa: E731
    _produce_rounds(b, topic, 3, old)
    _produce_rounds(b, topic, 1, new)
    time.sleep(1.5)  # maintenance passes: nothing expires without a retention
    assert _watermarks(b, topic, 0) == (0, 400)

    admin = admin_client(b.bootstrap)
    res = ConfigResource(
        ConfigResource.Type.TOPIC, topic,
        incremental_configs=[ConfigEntry("retention.ms", str(3600 * 1000),
                                         incremental_operation=AlterConfigOpType.SET)],
    )
    admin.incremental_alter_configs([res])[res].result(timeout=20)
    wait_for(lambda: _watermarks(b, topic, 0) == (300, 400), 20,
             "the altered retention.ms to move the log start to 300",
             describe=lambda: f"watermarks {_watermarks(b, topic, 0)}")
    got = _consume_from(b, topic, 0, 0, 100)
    assert [m.value() for m in got] == [b"new 0/%d" % j for j in range(100)]


# ---------------------------------------------------------------------------
# DeleteRecords
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(180)
def test_delete_records_through_admin_client(broker_factory):
    b = _broker(broker_factory)
    topic = "delete-records"
    create_topic(b.bootstrap, topic, 2)
    per_round = 250

    def make(r):
        return [
            {"partition": p, "key": f"{p}-{r}-{j}".encode(), "value": f"p{p} r{r} j{j}".encode() * 5}
            for p in (0, 1)
            for j in range(per_round)
        ]

    msgs, acked = _produce_rounds(b, topic, 4, make)
    where = {a: i for i, a in enumerate(acked)}
    n = 4 * per_round
    assert _watermarks(b, topic, 0) == (0, n) and _watermarks(b, topic, 1) == (0, n)

    admin = admin_client(b.bootstrap)
    futs = admin.delete_records(
        [TopicPartition(topic, 0, 300), TopicPartition(topic, 1, -1)],
        request_timeout=15, operation_timeout=15,
    )
    lows = {tp.partition: f.result(timeout=20).low_watermark for tp, f in futs.items()}
    assert lows == {0: 300, 1: n}, f"DeleteRecords answered low watermarks {lows}"
    assert _watermarks(b, topic, 0) == (300, n)
    assert _watermarks(b, topic, 1) == (n, n)
    assert _list_earliest(b, topic, 0) == 300
    assert _wire_earliest(b, topic, 0) == 300
    assert partition_offsets(b.data_dir, topic) == {0: (300, n), 1: (n, n)}
    rows = segments_of(b.data_dir, topic)
    p0 = [r for r in rows if r[0] == 0]
    assert p0 and p0[0][1] <= 300 <= p0[0][2], f"partition 0 rows after DeleteRecords(300): {p0[:3]}"
    assert not [r for r in rows if r[0] == 1], "partition 1 still has index rows after DeleteRecords(-1)"

    # A fetch below the log start: OFFSET_OUT_OF_RANGE, with the new log start.
    with WireConnection("127.0.0.1", b.kafka_port) as w:
        r = w.fetch(topic, 0, 100)
        assert r.error_code == OFFSET_OUT_OF_RANGE, f"fetch at 100 answered error {r.error_code}"
        if r.log_start_offset != -1:
            assert r.log_start_offset == 300, r
        r = w.fetch(topic, 0, 300)
        assert r.error_code == 0 and r.records, f"fetch at the new log start: {r}"

    # A consumer that must not reset sees the error; one that may reset lands on 300.
    c = make_consumer(b.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 100)])
        err = None
        deadline = time.monotonic() + 20
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is not None, f"consumed offset {m.offset()} below the log start"
            if m.error().code() != KafkaError._PARTITION_EOF:
                err = m.error()
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, f"got {err!r}"
        assert "out of range" in err.str().lower(), err.str()
    finally:
        c.close()
    got = _consume_from(b, topic, 0, 100, n - 300)
    assert [m.offset() for m in got] == list(range(300, n))
    for m in got:
        assert m.value() == msgs[where[(0, m.offset())]]["value"]

    # Beyond the high watermark: OFFSET_OUT_OF_RANGE; below the log start: no-op.
    fut = admin.delete_records([TopicPartition(topic, 0, n + 5)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        list(fut.values())[0].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE, ei.value
    fut = admin.delete_records([TopicPartition(topic, 0, 200)], request_timeout=15)
    assert list(fut.values())[0].result(timeout=20).low_watermark == 300
    assert _watermarks(b, topic, 0) == (300, n)

    # Persisted: the same after a restart, and new records continue the offsets.
    assert b.stop() == 0
    b.restart()
    assert _watermarks(b, topic, 0) == (300, n)
    assert _watermarks(b, topic, 1) == (n, n)
    more = produce_indexed(make_producer(b.bootstrap), topic,
                           [{"partition": 1, "value": b"after restart"}])
    assert more == [(1, n)]
    got = _consume_from(b, topic, 1, 0, 1)
    assert [(m.offset(), m.value()) for m in got] == [(n, b"after restart")]


# ---------------------------------------------------------------------------
# Topic deletion
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(180)
def test_deleted_topic_objects_are_removed(broker_factory):
    b = _broker(broker_factory, "--compaction-min-bytes", "1")
    doomed, survivor = "doomed", "survivor"
    create_topic(b.bootstrap, doomed, 2)

    def make(r):
        return [
            {"partition": p, "key": f"{r}-{j}".encode(), "value": f"r{r} j{j} ".encode() * 20}
            for p in (0, 1)
            for j in range(100)
        ]

    _produce_rounds(b, doomed, 6, make)
    tid = topic_id(b.data_dir, doomed).replace("-", "")
    store = _objects_dir(b)
    wait_for(
        lambda: any(k.startswith(f"compacted/{tid}/") for k in local_objects(store)),
        30, f"{doomed} to be compacted",
        describe=lambda: f"objects {sorted(local_objects(store))}",
    )
    doomed_keys = {r[4] for r in segments_of(b.data_dir, doomed)} | {
        k for (k,) in catalog_query(b.data_dir, "SELECT key FROM objects")
    }
    assert doomed_keys
    # Only now does the other topic get data, so no object holds both.
    create_topic(b.bootstrap, survivor, 2)
    s_msgs, s_acked = _produce_rounds(b, survivor, 3, make)

    admin = admin_client(b.bootstrap)
    admin.delete_topics([doomed], operation_timeout=15, request_timeout=15)[doomed].result(timeout=20)

    def doomed_gone():
        left = set(local_objects(store))
        return not (doomed_keys & left) and not any(k.startswith(f"compacted/{tid}/") for k in left)

    wait_for(doomed_gone, 30, f"objects of the deleted topic {doomed} to be deleted",
             describe=lambda: f"left: {sorted(doomed_keys & set(local_objects(store)))}")
    for table in ("segments", "partitions"):
        rows = catalog_query(b.data_dir, f"SELECT count(*) FROM {table} WHERE replace(topic_id, '-', '') = ?", (tid,))
        assert rows[0][0] == 0, f"catalog {table} still has rows of the deleted topic"
    known = {k for (k,) in catalog_query(b.data_dir, "SELECT key FROM objects")}
    assert not (doomed_keys & known), "catalog still lists objects of the deleted topic"

    got = consume_all(b.bootstrap, survivor, [0, 1], expected=len(s_msgs), timeout=30)
    assert len(got) == len(s_msgs), f"survivor: {len(got)} of {len(s_msgs)} messages after the deletion"
    where = {a: i for i, a in enumerate(s_acked)}
    for m in got:
        assert m.value == s_msgs[where[(m.partition, m.offset)]]["value"]

    # A topic re-created under the same name starts empty.
    create_topic(b.bootstrap, doomed, 1)
    assert _watermarks(b, doomed, 0) == (0, 0)
    produce_indexed(make_producer(b.bootstrap), doomed, [{"partition": 0, "value": b"reborn"}])
    got = consume_all(b.bootstrap, doomed, [0], expected=1, timeout=20)
    assert [(m.offset, m.value) for m in got] == [(0, b"reborn")]


@pytest.mark.e2e_timeout(120)
def test_delete_records_before_upload_leaves_nothing_below_log_start(broker_factory):
    """DeleteRecords on data still waiting for upload (object store down):
    once the data is uploaded, no index row lies wholly below the log start
    and the objects holding only deleted records are collected."""
    from s3_server import set_fault

    b = object_store_broker(
        broker_factory, args=FAST_MAINTENANCE, env={"SLUICE_FAULT_INJECTION": "1"}
    )
    topic = "delete-before-upload"
    create_topic(b.bootstrap, topic, 2)
    set_fault(b, "fail")
    msgs = [
        {"partition": p, "key": f"{p}-{j}".encode(), "value": f"p{p} #{j} ".encode() * 20}
        for p in (0, 1)
        for j in range(500)
    ]
    acked = produce_indexed(make_producer(b.bootstrap), topic, msgs, timeout=60)
    assert partition_offsets(b.data_dir, topic).get(0, (0, 0))[1] == 0, "uploaded despite the outage"
    admin = admin_client(b.bootstrap)
    futs = admin.delete_records(
        [TopicPartition(topic, 0, -1), TopicPartition(topic, 1, 300)], request_timeout=15
    )
    lows = {tp.partition: f.result(timeout=20).low_watermark for tp, f in futs.items()}
    assert lows == {0: 500, 1: 300}, lows
    set_fault(b, "off")
    wait_uploaded(b.data_dir, topic, {0: 500, 1: 500}, timeout=30)
    time.sleep(2.5)  # a few maintenance passes (500 ms) and the GC grace (500 ms)

    starts = {p: s for p, (s, _) in partition_offsets(b.data_dir, topic).items()}
    assert starts == {0: 500, 1: 300}, f"log starts in the catalog: {starts}"
    rows = segments_of(b.data_dir, topic)
    below = [(r[0], r[1], r[2], r[4]) for r in rows if r[2] < starts[r[0]]]
    assert not below, (
        f"{len(below)} index rows lie wholly below the log start after the upload "
        f"(partition, base, last, object): {below[:5]}; deleted records stay stored"
    )
    referenced = {k for (k,) in catalog_query(b.data_dir, "SELECT DISTINCT object_key FROM segments")}
    stored = set(local_objects(_objects_dir(b)))
    assert stored == referenced, f"objects no live record needs are still stored: {sorted(stored - referenced)}"
    got = _consume_from(b, topic, 1, 0, 200)
    where = {a: i for i, a in enumerate(acked)}
    assert [m.offset() for m in got] == list(range(300, 500))
    for m in got:
        assert m.value() == msgs[where[(1, m.offset())]]["value"]


@pytest.mark.e2e_timeout(120)
def test_delete_records_survives_restart_before_upload(broker_factory):
    """DeleteRecords on data that is only in the WAL (not uploaded yet),
    then a clean restart: the log start must stay where DeleteRecords put it."""
    b = object_store_broker(broker_factory, args=["--upload-interval-ms", "600000"])
    topic = "delete-then-restart"
    create_topic(b.bootstrap, topic, 1)
    msgs = [{"partition": 0, "value": f"record {j}".encode()} for j in range(500)]
    produce_indexed(make_producer(b.bootstrap), topic, msgs, timeout=60)
    assert partition_offsets(b.data_dir, topic).get(0, (0, 0))[1] == 0, "uploaded already"
    admin = admin_client(b.bootstrap)
    fut = admin.delete_records([TopicPartition(topic, 0, 300)], request_timeout=15)
    assert list(fut.values())[0].result(timeout=20).low_watermark == 300
    assert _watermarks(b, topic, 0) == (300, 500)
    assert partition_offsets(b.data_dir, topic)[0][0] == 300, "log start not in the catalog"

    assert b.stop() == 0
    b.restart()
    low_high = _watermarks(b, topic, 0)
    with WireConnection("127.0.0.1", b.kafka_port) as w:
        r = w.fetch(topic, 0, 0)
    assert low_high == (300, 500) and r.error_code == OFFSET_OUT_OF_RANGE, (
        f"after a restart the watermarks are {low_high} (expected (300, 500)) and a fetch at "
        f"offset 0 answers error {r.error_code} with {len(r.records or b'')} record bytes: "
        f"records deleted by DeleteRecords are readable again; catalog {partition_offsets(b.data_dir, topic)}"
    )



@pytest.mark.e2e_timeout(60)
def test_retention_flags_take_minus_one_as_documented(broker_factory):
    """`sluice serve --help` documents -1 for --log-retention-ms (keep
    forever) and --log-retention-bytes (no limit); written the usual way,
    as a separate argument, the broker must accept it."""
    b = object_store_broker(
        broker_factory, args=["--log-retention-ms", "-1", "--log-retention-bytes", "-1"], start=False
    )
    b.start(wait=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and b.proc.poll() is None:
        time.sleep(0.1)
    assert b.proc.poll() is None, (
        f"sluice serve --log-retention-ms -1 --log-retention-bytes -1 exited with code "
        f"{b.proc.returncode}:\n{b.log_tail()}"
    )
    b.wait_ready()


# ---------------------------------------------------------------------------
# cleanup.policy
# ---------------------------------------------------------------------------


def test_compacted_topics_are_not_deleted_by_retention(broker_factory):
    """A compact-only topic keeps everything however old or large (Kafka
    Connect's internal topics and keyed state live in such topics); a
    compact,delete topic is subject to retention like a delete topic. The
    old records carry timestamps a day in the past, the broker default
    retention is one hour."""
    b = _broker(broker_factory, "--log-retention-ms", str(3600 * 1000))
    old = int(time.time() * 1000) - DAY_MS
    topics = {
        "compact-only": {"cleanup.policy": "compact", "retention.ms": "1000", "retention.bytes": "1"},
        "compact-default-retention": {"cleanup.policy": "compact"},
        "compact-and-delete": {"cleanup.policy": "compact,delete", "retention.ms": "1000"},
    }
    for t, cfg in topics.items():
        create_topic(b.bootstrap, t, partitions=1, config=cfg)
    for t in topics:
        _produce_rounds(b, t, 3, lambda r: [
            {"key": b"k%d" % n, "value": b"%s-%d-%d" % (t.encode(), r, n), "timestamp": old + r * 10 + n}
            for n in range(10)
        ])
    wait_for(lambda: _watermarks(b, "compact-and-delete", 0)[0] == 30, 30,
             "compact,delete: retention to remove the day-old records")
    # Several more maintenance passes (500 ms each) for the others.
    time.sleep(2.0)
    for t in ("compact-only", "compact-default-retention"):
        assert _watermarks(b, t, 0) == (0, 30), f"{t}: retention deleted records of a compacted topic"
        got = consume_all(b.bootstrap, t, [0], expected=30)
        assert [m.offset for m in got] == list(range(30)), t
    # After a restart too.
    assert b.stop() == 0
    b.restart()
    assert _watermarks(b, "compact-only", 0) == (0, 30)


def test_compacted_topics_refuse_records_without_a_key(broker_factory):
    """As Kafka does: INVALID_RECORD for a batch holding a keyless record on
    a compacted topic, nothing of it stored; keyed records and keyless ones
    on a delete topic are accepted."""
    b = _broker(broker_factory)
    create_topic(b.bootstrap, "compact-keys", partitions=1, config={"cleanup.policy": "compact,delete"})
    create_topic(b.bootstrap, "delete-keys", partitions=1)
    p = make_producer(b.bootstrap, **{"linger.ms": 0, "retries": 0})
    results = []

    def report(err, msg):
        results.append(err)

    p.produce("compact-keys", key=b"k1", value=b"v1", on_delivery=report)
    p.flush(15)
    p.produce("compact-keys", value=b"no key", on_delivery=report)
    p.flush(15)
    p.produce("delete-keys", value=b"no key is fine here", on_delivery=report)
    p.flush(15)
    assert results[0] is None and results[2] is None, results
    assert results[1] is not None and results[1].code() == KafkaError.INVALID_RECORD, results[1]
    assert _watermarks(b, "compact-keys", 0) == (0, 1), "the refused record was stored"
