"""Kafka transactions (KIP-98) on one embedded broker, with confluent-kafka's
transactional API and on the raw wire (kafka_wire):

* commit and abort across three partitions: read_committed reads exactly the
  committed records, read_uncommitted every record; the commit/abort markers
  take one offset each and never surface as records;
* two transactional producers and a plain one interleaved on one partition:
  the LSO is the first offset of the earliest open transaction, and
  read_committed reads the committed and plain records in offset order;
* the last stable offset: an open transaction holds back read_committed
  readers (consumers, raw Fetch, ListOffsets / AdminClient.list_offsets with
  READ_COMMITTED) while read_uncommitted reads on; a commit releases them;
* zombie fencing: a second producer with the same transactional.id fences
  the first, whose commit fails fatally and whose records are aborted;
* exactly-once consume-transform-produce (group offsets sent with the
  transaction, every third transaction aborted and the consumer rewound):
  each input record lands exactly once, committed offsets end at the input
  high watermarks;
* transaction.timeout.ms: the broker aborts a transaction that runs too
  long, bumps the epoch, and the producer's commit fails;
* kill -9: a committed transaction stays visible, an open one stays open
  (DescribeTransactions, LSO) until its timeout or a new InitProducerId of
  its transactional id aborts it;
* raw wire: FindCoordinator (key type 1), InitProducerId epochs and
  INVALID_TRANSACTION_TIMEOUT, DescribeTransactions / ListTransactions
  (states, filters, TRANSACTIONAL_ID_NOT_FOUND), PRODUCER_FENCED /
  INVALID_PRODUCER_EPOCH for a stale epoch, INVALID_TXN_STATE for a
  partition never added (KIP-890), INVALID_PRODUCER_ID_MAPPING for an unknown
  transactional id, AddOffsetsToTxn + TxnOffsetCommit, Fetch v4+ with
  read_committed answering `aborted_transactions` and `last_stable_offset`,
  and the control batches themselves.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Optional

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec

import eos
import kafka_wire as kw
from helpers import admin_client, base_conf, consume_all, create_topic, make_consumer, make_producer

RC, RU = "read_committed", "read_uncommitted"
STATES = {"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"}


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------
# confluent-kafka helpers
# ---------------------------------------------------------------------------


def txn_producer(bootstrap: str, tid: str, timeout_ms: int = 60000, **conf) -> Producer:
    """A transactional producer. socket.timeout.ms and message.timeout.ms are
    left to librdkafka, which derives them from transaction.timeout.ms."""
    c = {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "socket.connection.setup.timeout.ms": 10000,
        "transactional.id": tid,
        "transaction.timeout.ms": timeout_ms,
        "linger.ms": 5,
    }
    c.update(conf)
    return Producer(c)


class Acks:
    """Delivery callback collecting (partition, offset, value) per message."""

    def __init__(self) -> None:
        self.ok: list = []
        self.failed: list = []

    def __call__(self, err, msg) -> None:
        if err is None:
            self.ok.append((msg.partition(), msg.offset(), msg.value()))
        else:
            self.failed.append((err, msg.partition(), msg.value()))

    def check(self, n: int, what: str) -> list:
        assert not self.failed, f"{what}: {len(self.failed)} failed deliveries, first {self.failed[0]}"
        assert len(self.ok) == n, f"{what}: {len(self.ok)} delivery reports for {n} messages"
        return sorted(self.ok)


def send(p: Producer, topic: str, values, acks: Acks, partition=None, keys=None, timeout: float = 60.0) -> None:
    """Produce values (partition: an int, or a function of the index)."""
    deadline = time.monotonic() + timeout
    for i, v in enumerate(values):
        kwargs = {"value": v, "on_delivery": acks}
        part = partition(i) if callable(partition) else partition
        if part is not None:
            kwargs["partition"] = part
        if keys is not None:
            kwargs["key"] = keys[i]
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.05)
                assert time.monotonic() < deadline, "producer queue stayed full"
        if i % 200 == 0:
            p.poll(0)


def flush(p: Producer, what: str, timeout: float = 30.0) -> None:
    left = p.flush(timeout)
    assert left == 0, f"{what}: {left} messages not delivered within {timeout}s"


def read(bootstrap: str, topic: str, partitions, isolation: str, expected: Optional[int] = None,
         timeout: float = 60.0) -> list:
    """Every record from the beginning to the end (the LSO for read_committed)
    as (partition, offset, value), in the order consumed."""
    got = consume_all(bootstrap, topic, list(partitions), expected=expected, timeout=timeout,
                      consumer_conf={"isolation.level": isolation})
    return [(m.partition, m.offset, m.value) for m in got]


def by_partition(records: list) -> list:
    """Records sorted by (partition, offset) -- consumption order within a
    partition is kept, so a sort only regroups partitions."""
    return sorted(records, key=lambda r: (r[0], r[1]))


def admin_latest(bootstrap: str, topic: str, partition: int, isolation: IsolationLevel) -> int:
    admin = admin_client(bootstrap)
    futs = admin.list_offsets({TopicPartition(topic, partition): OffsetSpec.latest()},
                              isolation_level=isolation, request_timeout=15)
    (fut,) = futs.values()
    return fut.result(timeout=20).offset


def raises_kafka(fn: Callable, what: str) -> KafkaError:
    try:
        fn()
    except KafkaException as e:
        return e.args[0]
    raise AssertionError(f"{what} succeeded; it must fail")


# ---------------------------------------------------------------------------
# Raw-wire helpers
# ---------------------------------------------------------------------------


def wire(broker) -> kw.WireConnection:
    return kw.WireConnection("127.0.0.1", broker.kafka_port, timeout=15.0)


def lso_hwm(broker, topic: str, partition: int) -> tuple:
    """(ListOffsets latest READ_COMMITTED, ListOffsets latest READ_UNCOMMITTED)."""
    with wire(broker) as c:
        rc = kw.list_offsets_isolated(c, topic, partition, -1, kw.ISOLATION_READ_COMMITTED)
        ru = kw.list_offsets_isolated(c, topic, partition, -1, kw.ISOLATION_READ_UNCOMMITTED)
    assert rc.error_code == 0 and ru.error_code == 0, f"ListOffsets errors: {rc}, {ru}"
    return rc.offset, ru.offset


def wait_for(fn: Callable, pred: Callable, timeout: float, what: str, every: float = 0.2):
    """Call fn until pred(value) holds; returns (value, seconds waited)."""
    start = time.monotonic()
    value = fn()
    while not pred(value):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not reached within {timeout}s, last value {value!r}")
        time.sleep(every)
        value = fn()
    return value, time.monotonic() - start


def expect_offsets(broker, topic: str, partition: int, expected: tuple, timeout: float = 5.0) -> None:
    """(LSO, HWM) must be `expected` (markers may be written just after the
    EndTxn answer, so a few seconds are allowed)."""
    wait_for(lambda: lso_hwm(broker, topic, partition), lambda v: v == expected, timeout,
             f"{topic}[{partition}] (LSO, HWM) == {expected}")


def wait_stable(broker, topic: str, partition: int, hwm: int, timeout: float = 15.0) -> float:
    """Wait until LSO == high watermark == hwm; returns the seconds waited."""
    _, waited = wait_for(lambda: lso_hwm(broker, topic, partition), lambda v: v == (hwm, hwm),
                         timeout, f"{topic}[{partition}] (LSO, HWM) == ({hwm}, {hwm})")
    return waited


RETRIABLE = (kw.CONCURRENT_TRANSACTIONS, kw.COORDINATOR_LOAD_IN_PROGRESS)


def init_txn(conn, tid: str, timeout_ms: int = 60000, version: Optional[int] = None,
             wait: float = 15.0) -> kw.InitProducerIdResult:
    """InitProducerId for a transactional id, retried (as clients do) while
    the coordinator answers CONCURRENT_TRANSACTIONS / LOAD_IN_PROGRESS."""
    deadline = time.monotonic() + wait
    while True:
        res = kw.init_producer_id_txn(conn, tid, timeout_ms, version)
        if res.error_code in RETRIABLE and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        return res


def add_parts(conn, tid: str, pid: int, epoch: int, topics: dict, version: Optional[int] = None,
              wait: float = 15.0) -> dict:
    """AddPartitionsToTxn, retried while every partition answers a retriable code."""
    deadline = time.monotonic() + wait
    while True:
        res = kw.add_partitions_to_txn(conn, tid, pid, epoch, topics, version)
        if res and all(e in RETRIABLE for e in res.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        return res


def end(conn, tid: str, pid: int, epoch: int, commit: bool, version: Optional[int] = None,
        wait: float = 15.0) -> int:
    deadline = time.monotonic() + wait
    while True:
        err = kw.end_txn(conn, tid, pid, epoch, commit, version)
        if err in RETRIABLE and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        return err


def recs(tag: str, n: int) -> list:
    return [kw.Record(key=b"%s-%d" % (tag.encode(), i), value=b"value-%s-%d" % (tag.encode(), i)) for i in range(n)]


def plain_batch(tag: str, n: int) -> bytes:
    return kw.build_record_batch(recs(tag, n))


def describe_one(conn, tid: str) -> kw.TxnDescription:
    (d,) = kw.describe_transactions(conn, [tid])
    assert d.transactional_id == tid, d
    return d


def wait_state(broker, tid: str, states: set, timeout: float = 15.0) -> kw.TxnDescription:
    def get():
        with wire(broker) as c:
            return describe_one(c, tid)

    d, _ = wait_for(get, lambda d: d.error_code == 0 and d.state in states, timeout,
                    f"DescribeTransactions({tid}) in state {sorted(states)}")
    return d


# ---------------------------------------------------------------------------
# confluent-kafka
# ---------------------------------------------------------------------------


def test_commit_and_abort_across_partitions(broker):
    """1000 records committed across 3 partitions, then 500 aborted: read_committed
    reads exactly the 1000, read_uncommitted all 1500; each partition has a
    commit marker right after its committed records and an abort marker at
    its end, neither of which surfaces as a record."""
    bs = broker.bootstrap
    topic = uniq("txn-basic")
    create_topic(bs, topic, 3)
    p = txn_producer(bs, uniq("tid-basic"))
    p.init_transactions(30)

    committed = [b"committed-%04d" % i for i in range(1000)]
    aborted = [b"aborted-%04d" % i for i in range(500)]
    acks_c, acks_a = Acks(), Acks()

    p.begin_transaction()
    send(p, topic, committed, acks_c, partition=lambda i: i % 3)
    flush(p, "committed transaction")
    p.commit_transaction(60)
    c_recs = acks_c.check(1000, "committed transaction")

    p.begin_transaction()
    send(p, topic, aborted, acks_a, partition=lambda i: i % 3)
    flush(p, "aborted transaction")  # written to the log before the abort
    p.abort_transaction(60)
    a_recs = acks_a.check(500, "aborted transaction")

    n_c = {q: sum(1 for r in c_recs if r[0] == q) for q in range(3)}
    n_a = {q: sum(1 for r in a_recs if r[0] == q) for q in range(3)}
    for q in range(3):
        offs_c = [r[1] for r in c_recs if r[0] == q]
        offs_a = [r[1] for r in a_recs if r[0] == q]
        # The commit marker takes offset n_c; the aborted records follow it.
        assert offs_c == list(range(n_c[q])), f"partition {q}: committed offsets {offs_c[:5]}..{offs_c[-3:]}"
        assert offs_a == list(range(n_c[q] + 1, n_c[q] + 1 + n_a[q])), (
            f"partition {q}: aborted records at {offs_a[:3]}..{offs_a[-3:]}, expected from {n_c[q] + 1} "
            f"(one offset for the commit marker at {n_c[q]})"
        )
        hwm = n_c[q] + n_a[q] + 2
        # expected: n_c committed + commit marker + n_a aborted + abort marker
        expect_offsets(broker, topic, q, (hwm, hwm))

    got_rc = read(bs, topic, range(3), RC, expected=1000)
    bad = [r for r in got_rc if not r[2].startswith(b"committed-")]
    assert not bad, f"read_committed read {len(bad)} records not committed, first {bad[:3]}"
    assert by_partition(got_rc) == c_recs, (
        f"read_committed read {len(got_rc)} records, expected the 1000 committed ones "
        f"(per partition {n_c}); first read {got_rc[:3]}"
    )

    got_ru = read(bs, topic, range(3), RU, expected=1500)
    assert by_partition(got_ru) == sorted(c_recs + a_recs), (
        f"read_uncommitted read {len(got_ru)} records, expected 1500 (committed and aborted, "
        f"markers skipped); values outside both: "
        f"{[r for r in got_ru if r not in set(c_recs + a_recs)][:3]}"
    )


def test_interleaved_transactions_and_plain_records(broker):
    """Two transactional producers and a plain one take turns on partition 0;
    the LSO is the first offset of the earliest open transaction; T1 aborts,
    T2 commits; read_committed reads T2's and the plain records in offset
    order, read_uncommitted everything."""
    bs = broker.bootstrap
    topic = uniq("txn-interleaved")
    create_topic(bs, topic, 1)
    t1 = txn_producer(bs, uniq("tid-t1"))
    t2 = txn_producer(bs, uniq("tid-t2"))
    plain = make_producer(bs, **{"linger.ms": 0})
    t1.init_transactions(30)
    t2.init_transactions(30)
    a1, a2, ap = Acks(), Acks(), Acks()
    t1.begin_transaction()
    t2.begin_transaction()
    for rnd in range(5):
        send(t1, topic, [b"t1-%d-%d" % (rnd, i) for i in range(10)], a1, partition=0)
        flush(t1, f"t1 round {rnd}")
        send(plain, topic, [b"plain-%d-%d" % (rnd, i) for i in range(10)], ap, partition=0)
        flush(plain, f"plain round {rnd}")
        send(t2, topic, [b"t2-%d-%d" % (rnd, i) for i in range(10)], a2, partition=0)
        flush(t2, f"t2 round {rnd}")
        if rnd == 0:
            first_t1 = min(o for _, o, _ in a1.ok)
            first_t2 = min(o for _, o, _ in a2.ok)
    assert (first_t1, first_t2) == (0, 20), f"first offsets of T1, T2: {first_t1}, {first_t2}"
    assert lso_hwm(broker, topic, 0) == (0, 150), (
        f"(LSO, HWM) with T1 and T2 open: {lso_hwm(broker, topic, 0)}, expected (0, 150)"
    )

    t1.abort_transaction(30)
    # The abort marker is at 150; T2 (first offset 20) is now the earliest open one.
    expect_offsets(broker, topic, 0, (20, 151))
    send(plain, topic, [b"plain-after-%d" % i for i in range(10)], ap, partition=0)
    flush(plain, "plain after the abort")
    t2.commit_transaction(30)
    expect_offsets(broker, topic, 0, (162, 162))

    r1, r2, rp = a1.check(50, "T1"), a2.check(50, "T2"), ap.check(60, "plain")
    expected_rc = sorted(r2 + rp, key=lambda r: r[1])
    got_rc = read(bs, topic, [0], RC, expected=len(expected_rc))
    assert got_rc == expected_rc, (
        f"read_committed read {len(got_rc)} records, expected {len(expected_rc)} (T2 + plain in offset "
        f"order); T1 records read: {sum(1 for r in got_rc if r[2].startswith(b't1-'))}; "
        f"first difference at {next((i for i, (a, b) in enumerate(zip(got_rc, expected_rc)) if a != b), None)}"
    )
    expected_ru = sorted(r1 + r2 + rp, key=lambda r: r[1])
    got_ru = read(bs, topic, [0], RU, expected=160)
    assert got_ru == expected_ru, f"read_uncommitted read {len(got_ru)} records, expected 160 in offset order"
    markers = sorted(set(range(162)) - {r[1] for r in expected_ru})
    assert markers == [150, 161], f"offsets without a record (markers): {markers}"


def test_last_stable_offset(broker):
    """An open transaction holds read_committed readers at its first offset
    (consumer, raw Fetch, ListOffsets, AdminClient) while plain records after
    it are read by read_uncommitted; the commit releases everything."""
    bs = broker.bootstrap
    topic = uniq("txn-lso")
    create_topic(bs, topic, 1)
    plain = make_producer(bs, **{"linger.ms": 0})
    ap, at = Acks(), Acks()
    send(plain, topic, [b"before-%d" % i for i in range(10)], ap, partition=0)
    flush(plain, "plain before")
    t = txn_producer(bs, uniq("tid-lso"))
    t.init_transactions(30)
    t.begin_transaction()
    send(t, topic, [b"txn-%d" % i for i in range(5)], at, partition=0)
    flush(t, "open transaction")
    send(plain, topic, [b"after-%d" % i for i in range(10)], ap, partition=0)
    flush(plain, "plain after")
    assert sorted(o for _, o, _ in at.ok) == list(range(10, 15)), f"transaction offsets {at.ok}"

    assert lso_hwm(broker, topic, 0) == (10, 25), f"(LSO, HWM) {lso_hwm(broker, topic, 0)}, expected (10, 25)"
    assert admin_latest(bs, topic, 0, IsolationLevel.READ_COMMITTED) == 10
    assert admin_latest(bs, topic, 0, IsolationLevel.READ_UNCOMMITTED) == 25
    with wire(broker) as c:
        for v in sorted({4, c.pick_version(kw.API_FETCH, 4, 12)}):
            f = kw.fetch_isolated(c, topic, 0, 0, kw.ISOLATION_READ_COMMITTED, version=v)
            assert (f.error_code, f.high_watermark, f.last_stable_offset) == (0, 25, 10), (
                f"Fetch v{v} read_committed: error {f.error_code}, HWM {f.high_watermark}, "
                f"LSO {f.last_stable_offset}; expected (0, 25, 10)"
            )
            batches = kw.decode_record_batches(f.records or b"")
            ends = [b.base_offset + b.last_offset_delta for b in batches]
            assert batches and max(ends) < 10, f"Fetch v{v} read_committed returned batches ending at {ends} (LSO 10)"
            f = kw.fetch_isolated(c, topic, 0, 0, kw.ISOLATION_READ_UNCOMMITTED, version=v)
            batches = kw.decode_record_batches(f.records or b"")
            assert max(b.base_offset + b.last_offset_delta for b in batches) == 24, "read_uncommitted Fetch"

    # A tailing read_committed consumer stops at the LSO...
    tail = make_consumer(bs, **{"isolation.level": RC, "group.id": uniq("lso-tail")})
    tail.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    seen, eof = [], False
    try:
        deadline = time.monotonic() + 30
        while not eof and time.monotonic() < deadline:
            for m in tail.consume(100, timeout=0.5):
                if m.error() is not None:
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    eof = True
                    continue
                seen.append((m.offset(), m.value()))
        assert eof, f"read_committed consumer reached no EOF within 30s ({len(seen)} records)"
        quiet_until = time.monotonic() + 2.0
        while time.monotonic() < quiet_until:
            for m in tail.consume(100, timeout=0.3):
                if m.error() is None:
                    seen.append((m.offset(), m.value()))
        assert seen == [(i, b"before-%d" % i) for i in range(10)], (
            f"read_committed consumer with a transaction open at offset 10: read {len(seen)} records, "
            f"offsets {[o for o, _ in seen]}"
        )
        got_ru = read(bs, topic, [0], RU, expected=25)
        assert [r[1] for r in got_ru] == list(range(25)), f"read_uncommitted offsets {[r[1] for r in got_ru]}"

        t.commit_transaction(30)
        expect_offsets(broker, topic, 0, (26, 26))
        assert admin_latest(bs, topic, 0, IsolationLevel.READ_COMMITTED) == 26

        # ... and reads on after the commit.
        deadline = time.monotonic() + 30
        while len(seen) < 25 and time.monotonic() < deadline:
            for m in tail.consume(100, timeout=0.5):
                if m.error() is None:
                    seen.append((m.offset(), m.value()))
        expected = ([(i, b"before-%d" % i) for i in range(10)] + [(10 + i, b"txn-%d" % i) for i in range(5)]
                    + [(15 + i, b"after-%d" % i) for i in range(10)])
        assert seen == expected, f"tailing read_committed consumer after the commit: offsets {[o for o, _ in seen]}"
    finally:
        tail.close()
    got_rc = read(bs, topic, [0], RC, expected=25)
    assert [(o, v) for _, o, v in got_rc] == expected, f"read_committed after commit: {len(got_rc)} records"


def test_zombie_producer_is_fenced(broker):
    """Producer B's init_transactions with A's transactional.id fences A:
    A's commit fails fatally, A's records are aborted, B commits."""
    bs = broker.bootstrap
    topic = uniq("txn-zombie")
    create_topic(bs, topic, 1)
    tid = uniq("tid-zombie")
    a = txn_producer(bs, tid)
    a.init_transactions(30)
    aa, ab = Acks(), Acks()
    a.begin_transaction()
    send(a, topic, [b"zombie-%d" % i for i in range(20)], aa, partition=0)
    flush(a, "A's records")
    aa.check(20, "A")
    with wire(broker) as c:
        d_a = describe_one(c, tid)
    assert (d_a.error_code, d_a.state) == (0, "Ongoing"), d_a

    b = txn_producer(bs, tid)
    b.init_transactions(30)
    with wire(broker) as c:
        d_b = describe_one(c, tid)
    assert d_b.producer_id == d_a.producer_id and d_b.producer_epoch > d_a.producer_epoch, (
        f"after B's InitProducerId: {d_b}; A had {d_a}"
    )
    # A's transaction was aborted: its abort marker is at 20.
    expect_offsets(broker, topic, 0, (21, 21))

    err = raises_kafka(lambda: a.commit_transaction(15), "the fenced producer's commit")
    fenced_codes = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)
    assert err.fatal() or err.code() in fenced_codes, (
        f"fenced producer's commit failed with {err!r} (fatal={err.fatal()}), expected a fatal/fenced error"
    )

    b.begin_transaction()
    send(b, topic, [b"b-%d" % i for i in range(30)], ab, partition=0)
    flush(b, "B's records")
    b.commit_transaction(30)
    rb = ab.check(30, "B")
    assert [o for _, o, _ in rb] == list(range(21, 51)), f"B's offsets {[o for _, o, _ in rb][:3]}.."
    expect_offsets(broker, topic, 0, (52, 52))

    got = read(bs, topic, [0], RC, expected=30)
    assert got == rb, (
        f"read_committed read {len(got)} records, expected B's 30; zombie records read: "
        f"{sum(1 for r in got if r[2].startswith(b'zombie-'))}"
    )
    got_ru = read(bs, topic, [0], RU, expected=50)
    assert len(got_ru) == 50 and sum(1 for r in got_ru if r[2].startswith(b"zombie-")) == 20, (
        f"read_uncommitted: {len(got_ru)} records"
    )


@pytest.mark.e2e_timeout(240)
def test_exactly_once_consume_transform_produce(broker):
    """2000 input records through a read_committed group consumer and a
    transactional producer, batches of up to 100, offsets sent with each
    transaction, every third transaction aborted and the consumer rewound:
    the output holds each input record exactly once, and the group's
    committed offsets are the input high watermarks."""
    bs = broker.bootstrap
    src, dst = uniq("eos-in"), uniq("eos-out")
    create_topic(bs, src, 3)
    create_topic(bs, dst, 3)
    n = 2000
    keys = [b"in-%05d" % i for i in range(n)]
    inputs = {k: b"payload-%05d-" % i + bytes(range(i % 50)) for i, k in enumerate(keys)}
    plain = make_producer(bs)
    ai = Acks()
    send(plain, src, [inputs[k] for k in keys], ai, partition=lambda i: i % 3, keys=keys)
    flush(plain, "input")
    ai.check(n, "input")
    hwms = {q: lso_hwm(broker, src, q)[1] for q in range(3)}
    assert sum(hwms.values()) == n, f"input high watermarks {hwms}"

    group = uniq("eos-group")
    stats = eos.consume_transform_produce(bs, txn_producer(bs, uniq("eos-tid")), src, dst, group, n,
                                          within_s=180)
    eos.check_output(bs, dst, range(3), inputs)
    out_ru = consume_all(bs, dst, range(3), expected=len(stats.acked), timeout=90,
                         consumer_conf={"isolation.level": RU})
    assert len(out_ru) == len(stats.acked) > n, (
        f"read_uncommitted output: {len(out_ru)} records, {len(stats.acked)} acknowledged (aborted ones included)"
    )

    check = Consumer({**base_conf(bs), "group.id": group, "isolation.level": RC, "enable.auto.commit": False})
    try:
        committed = check.committed([TopicPartition(src, q) for q in range(3)], timeout=30)
    finally:
        check.close()
    got = {tp.partition: tp.offset for tp in committed}
    assert got == hwms, f"group {group} committed offsets {got}, input high watermarks {hwms}"


@pytest.mark.e2e_timeout(420)
def test_exactly_once_100k_through_a_kill9(broker):
    """Issue 18, must-show 2: 100,000 input records through a
    consume-transform-produce loop (read_committed group consumer,
    transactional producer, batches of up to 1000 with their offsets sent in
    the transaction, about one transaction in eight aborted and the consumer
    rewound) while the broker is killed with SIGKILL, at whatever point the
    loop has reached once it has committed 40,000, and restarted. Whatever
    the loop sees fail (a commit whose answer was lost, a fenced producer) it
    aborts if it can and starts over with a new consumer and a new producer
    of the same transactional.id, from the group's committed offsets. A
    read_committed reader of the output then finds every input record
    exactly once.

    The clients run with metadata.recovery.strategy=none. With librdkafka's
    default (rebootstrap), losing the only broker makes it decommission that
    broker's handle while its coordinator cache still points at it, and the
    next send_offsets_to_transaction waits for that dead handle forever,
    ignoring its timeout (librdkafka issues 5511 and 5456, open in 2.16;
    reproduced here, and against any single-broker Kafka alike). A cluster
    keeps other brokers up, so no re-bootstrap happens there."""
    import random
    import threading

    bs = broker.bootstrap
    src, dst = uniq("eos100k-in"), uniq("eos100k-out")
    parts, n = 4, 100_000
    create_topic(bs, src, parts)
    create_topic(bs, dst, parts)
    plain = make_producer(bs, **{"linger.ms": 20, "batch.num.messages": 2000})
    ai = Acks()
    send(plain, src, [b"%06d" % i for i in range(n)], ai, partition=lambda i: i % parts)
    flush(plain, "input", timeout=120)
    assert len(ai.ok) == n and not ai.failed, (len(ai.ok), ai.failed[:3])
    hwms = {q: lso_hwm(broker, src, q)[1] for q in range(parts)}
    assert sum(hwms.values()) == n, hwms
    del plain

    group, tid = uniq("eos100k-group"), uniq("eos100k-tid")
    rng = random.Random(18)
    progress = {"committed": 0, "killed": False, "restarted": False, "sessions": 0, "aborts": 0,
                "failures": []}
    deadline = time.monotonic() + 360
    no_rebootstrap = {"metadata.recovery.strategy": "none"}

    test_over = threading.Event()

    def kill_and_restart():
        # Both from one thread that outlives the loop: the loop's thread may
        # be blocked inside librdkafka while the broker is down, and a broker
        # started by a thread dies when that thread ends (PR_SET_PDEATHSIG).
        while time.monotonic() < deadline and progress["committed"] < 40_000:
            time.sleep(0.01)
        broker.kill9()
        progress["killed"] = True
        time.sleep(0.5)
        try:
            broker.restart()
            progress["restarted"] = True
        except Exception as e:  # seen by the loop's deadline assertion
            progress["failures"].append(f"restart: {e}"[:300])
        test_over.wait(420)

    k = threading.Thread(target=kill_and_restart, daemon=True)
    k.start()
    try:
        _eos_100k_loop(broker, src, dst, parts, hwms, group, tid, rng, progress, deadline,
                       no_rebootstrap)
    finally:
        test_over.set()
        k.join(30)


def _eos_100k_loop(broker, src, dst, parts, hwms, group, tid, rng, progress, deadline,
                   no_rebootstrap):
    bs, n = broker.bootstrap, sum(hwms.values())

    def done(consumer) -> bool:
        committed = consumer.committed([TopicPartition(src, q) for q in range(parts)], timeout=30)
        return {tp.partition: tp.offset for tp in committed} == hwms

    finished = False
    while not finished:
        assert time.monotonic() < deadline, f"EOS loop not done in time: {progress}"
        progress["sessions"] += 1
        consumer = Consumer({**base_conf(bs), "group.id": group, "enable.auto.commit": False,
                             "auto.offset.reset": "earliest", "isolation.level": RC,
                             "fetch.wait.max.ms": 100, **no_rebootstrap})
        producer = txn_producer(bs, tid, 30000, **{"linger.ms": 20, **no_rebootstrap})
        try:
            producer.init_transactions(30)
            consumer.subscribe([src])
            idle_since = time.monotonic()
            while True:
                assert time.monotonic() < deadline, f"EOS loop not done in time: {progress}"
                msgs = [m for m in consumer.consume(num_messages=1000, timeout=1.0) if m.error() is None]
                if not msgs:
                    if consumer.assignment() and time.monotonic() - idle_since > 2 and done(consumer):
                        finished = True
                        break
                    continue
                idle_since = time.monotonic()
                producer.begin_transaction()
                for m in msgs:
                    while True:
                        try:
                            producer.produce(dst, value=b"%d:%d" % (m.partition(), m.offset()),
                                             partition=m.partition())
                            break
                        except BufferError:
                            producer.poll(0.05)
                if rng.random() < 0.125:
                    producer.abort_transaction(15)
                    progress["aborts"] += 1
                    eos.rewind(consumer)
                    continue
                producer.send_offsets_to_transaction(
                    consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 15)
                producer.commit_transaction(15)
                progress["committed"] += len(msgs)
        except (KafkaException, KafkaError) as e:  # the kill, seen from the loop
            progress["failures"].append(str(e)[:200])
            try:
                producer.abort_transaction(10)
            except Exception:
                pass
        finally:
            try:
                consumer.close()
            except Exception:
                pass
    print(f"EOS through a kill -9: {progress['sessions']} sessions, {progress['aborts']} aborted "
          f"transactions, {progress['committed']} records in committed transactions "
          f"(re-processing after failures included); failures seen: {progress['failures'][:3]}")
    assert progress["killed"] and progress["restarted"], progress
    assert progress["aborts"] >= 5, progress

    out = consume_all(bs, dst, range(parts), expected=n, timeout=180, idle_after_eof=2.0,
                      consumer_conf={"isolation.level": RC})
    seen = [m.value for m in out]
    dups = len(seen) - len(set(seen))
    want = {b"%d:%d" % (q, o) for q in range(parts) for o in range(hwms[q])}
    missing = want - set(seen)
    assert dups == 0 and not missing and len(seen) == n, (
        f"read_committed output: {len(seen)} records for {n} inputs, {dups} duplicates, "
        f"{len(missing)} missing (first {sorted(missing)[:3]})"
    )


@pytest.mark.e2e_timeout(90)
def test_transaction_timeout_aborts(broker):
    """transaction.timeout.ms=3000: the broker aborts the open transaction on
    its own (marker written, epoch bumped), the producer's late commit fails,
    and plain records written afterwards are read by read_committed."""
    bs = broker.bootstrap
    topic = uniq("txn-timeout")
    create_topic(bs, topic, 1)
    tid = uniq("tid-timeout")
    t = txn_producer(bs, tid, timeout_ms=3000)
    t.init_transactions(30)
    at = Acks()
    t.begin_transaction()
    send(t, topic, [b"doomed-%d" % i for i in range(20)], at, partition=0)
    flush(t, "doomed transaction")
    at.check(20, "doomed transaction")
    started = time.monotonic()
    with wire(broker) as c:
        before = describe_one(c, tid)
    assert (before.error_code, before.state, before.timeout_ms) == (0, "Ongoing", 3000), before
    assert lso_hwm(broker, topic, 0) == (0, 20), f"(LSO, HWM) with the transaction open: {lso_hwm(broker, topic, 0)}"

    time.sleep(6.0)
    after = wait_state(broker, tid, {"CompleteAbort"}, timeout=10)
    print(f"broker aborted the transaction by {time.monotonic() - started:.1f}s: {after}")
    assert after.producer_id == before.producer_id and after.producer_epoch > before.producer_epoch, (
        f"epoch not bumped by the timeout abort: before {before}, after {after}"
    )
    waited = wait_stable(broker, topic, 0, 21, timeout=10)
    err = raises_kafka(lambda: t.commit_transaction(20), "commit after the transaction timed out")
    print(f"late commit failed with {err!r} (fatal={err.fatal()}, abortable={err.txn_requires_abort()}); "
          f"LSO caught up after {waited:.1f}s more")

    plain = make_producer(bs, **{"linger.ms": 0})
    ap = Acks()
    send(plain, topic, [b"later-%d" % i for i in range(10)], ap, partition=0)
    flush(plain, "plain after the timeout")
    rp = ap.check(10, "plain")
    assert [o for _, o, _ in rp] == list(range(21, 31)), f"plain offsets {rp}"
    got = read(bs, topic, [0], RC, expected=10)
    assert got == rp, (
        f"read_committed read {len(got)} records, expected the 10 plain ones; timed-out records read: "
        f"{sum(1 for r in got if r[2].startswith(b'doomed-'))}"
    )
    assert len(read(bs, topic, [0], RU, expected=30)) == 30


@pytest.mark.e2e_timeout(180)
def test_transactions_survive_kill9(broker):
    """kill -9 with one transaction committed and two open: after the
    restart the committed one is read, the open ones are still open
    (DescribeTransactions, LSO); one is aborted by its 5 s timeout, the other
    by a new InitProducerId of its transactional id; read_committed never
    reads their records, and plain records written after the restart are
    read once the LSO passes them."""
    bs = broker.bootstrap
    topic_a, topic_b = uniq("kill-a"), uniq("kill-b")
    create_topic(bs, topic_a, 2)
    create_topic(bs, topic_b, 1)

    # A (librdkafka, 5 s timeout): 100 committed, 50 left open.
    tid_a = uniq("tid-kill-a")
    a = txn_producer(bs, tid_a, timeout_ms=5000)
    a.init_transactions(30)
    ac, ao = Acks(), Acks()
    a.begin_transaction()
    send(a, topic_a, [b"committed-%d" % i for i in range(100)], ac, partition=lambda i: i % 2)
    flush(a, "A committed")
    a.commit_transaction(30)
    rc_a = ac.check(100, "A committed")
    a.begin_transaction()
    send(a, topic_a, [b"open-%d" % i for i in range(50)], ao, partition=lambda i: i % 2)
    flush(a, "A open")
    ao.check(50, "A open")

    # B (raw wire, 60 s timeout): plain 0-4, transactional 5-11, plain 12-15.
    tid_b = uniq("tid-kill-b")
    with wire(broker) as c:
        assert c.produce(topic_b, 0, plain_batch("p1", 5)).error_code == 0
        init_b = init_txn(c, tid_b, 60000)
        assert init_b.error_code == 0, init_b
        pid_b, ep_b = init_b.producer_id, init_b.producer_epoch
        assert add_parts(c, tid_b, pid_b, ep_b, {topic_b: [0]}) == {(topic_b, 0): 0}
        r = kw.produce_txn(c, topic_b, 0, kw.txn_batch(recs("b", 7), pid_b, ep_b, 0), tid_b)
        assert (r.error_code, r.base_offset) == (0, 5), r
        assert c.produce(topic_b, 0, plain_batch("p2", 4)).error_code == 0
        before_b = describe_one(c, tid_b)
        assert (before_b.state, before_b.start_time_ms > 0) == ("Ongoing", True), before_b
    assert lso_hwm(broker, topic_b, 0) == (5, 16)

    broker.kill9()
    broker.restart()
    restarted = time.monotonic()

    # Plain records after the restart, behind A's open transaction.
    plain = make_producer(bs, **{"linger.ms": 0})
    ap = Acks()
    send(plain, topic_a, [b"after-%d" % i for i in range(20)], ap, partition=lambda i: i % 2)
    flush(plain, "plain after restart")
    rp = ap.check(20, "plain after restart")

    with wire(broker) as c:
        d = describe_one(c, tid_b)
        assert (d.error_code, d.state, d.producer_id, d.producer_epoch, d.topics, d.timeout_ms) == (
            0, "Ongoing", pid_b, ep_b, {topic_b: [0]}, 60000), f"open transaction B after kill -9: {d}"
        # Its timeout still runs from when it began, not from the restart.
        assert d.start_time_ms == before_b.start_time_ms, (
            f"B's transaction_start_time_ms {before_b.start_time_ms} before kill -9, {d.start_time_ms} after"
        )
    assert lso_hwm(broker, topic_b, 0) == (5, 16), f"topic B (LSO, HWM) after restart: {lso_hwm(broker, topic_b, 0)}"
    with wire(broker) as c:
        again = init_txn(c, tid_b, 60000)
        assert again.error_code == 0 and again.producer_id == pid_b and again.producer_epoch > ep_b, (
            f"InitProducerId of B's id after restart: {again} (was pid {pid_b} epoch {ep_b})"
        )
    wait_stable(broker, topic_b, 0, 17)
    got_b = read(bs, topic_b, [0], RC, expected=9)
    assert [(o, v) for _, o, v in got_b] == (
        [(i, b"value-p1-%d" % i) for i in range(5)] + [(12 + i, b"value-p2-%d" % i) for i in range(4)]
    ), f"topic B read_committed after the fencing abort: {got_b}"

    # A's open transaction is aborted by its timeout.
    hwm_a = {}
    for q in range(2):
        n_q = sum(1 for r in rc_a if r[0] == q) + sum(1 for r in ao.ok if r[0] == q) + sum(1 for r in rp if r[0] == q)
        hwm_a[q] = n_q + 2  # commit marker + abort marker
        wait_stable(broker, topic_a, q, hwm_a[q], timeout=30)
    print(f"A's open transaction aborted {time.monotonic() - restarted:.1f}s after the restart; HWMs {hwm_a}")
    d = wait_state(broker, tid_a, {"CompleteAbort"}, timeout=10)
    expected = by_partition(rc_a + rp)
    got = read(bs, topic_a, range(2), RC, expected=120)
    assert by_partition(got) == expected, (
        f"read_committed after kill -9: {len(got)} records, expected 100 committed + 20 plain; "
        f"open-transaction records read: {sum(1 for r in got if r[2].startswith(b'open-'))}"
    )
    got_ru = read(bs, topic_a, range(2), RU, expected=170)
    assert len(got_ru) == 170, f"read_uncommitted after kill -9: {len(got_ru)} records, expected 170"


# ---------------------------------------------------------------------------
# Raw wire
# ---------------------------------------------------------------------------


def test_wire_coordinator_and_producer_ids(broker):
    """FindCoordinator (key type 1) answers this broker; InitProducerId with a
    transactional id keeps the producer id and bumps the epoch; a timeout over
    900000 ms is refused with INVALID_TRANSACTION_TIMEOUT."""
    tid = uniq("wire-coord")
    with wire(broker) as c:
        md = c.metadata([])
        assert len(md.brokers) == 1, md.brokers
        node = md.brokers[0][0]
        for v in sorted({1, c.pick_version(kw.API_FIND_COORDINATOR, 1, 4)}):
            res = kw.find_coordinator_for(c, tid, kw.COORDINATOR_KEY_TRANSACTION, version=v)
            assert (res.error_code, res.node_id, res.port) == (0, node, broker.kafka_port), (
                f"FindCoordinator v{v} (transaction): {res}"
            )
        first = init_txn(c, tid, 60000)
        assert first.error_code == 0 and first.producer_id >= 0 and first.producer_epoch >= 0, first
        d = describe_one(c, tid)
        assert (d.error_code, d.state, d.producer_id, d.producer_epoch, d.timeout_ms, d.topics) == (
            0, "Empty", first.producer_id, first.producer_epoch, 60000, {}), f"after InitProducerId: {d}"
        listed = kw.list_transactions(c, state_filters=["Empty"])
        assert (tid, first.producer_id, "Empty") in listed.transactions, f"ListTransactions Empty: {listed}"
        second = init_txn(c, tid, 60000)
        assert second.error_code == 0, second
        assert second.producer_id == first.producer_id and second.producer_epoch > first.producer_epoch, (
            f"InitProducerId twice for {tid}: {first} then {second}"
        )
        for v in (0, c.pick_version(kw.API_INIT_PRODUCER_ID, 0, 4)):
            res = kw.init_producer_id_txn(c, uniq("wire-too-long"), 900001, version=v)
            assert res.error_code == kw.INVALID_TRANSACTION_TIMEOUT, f"InitProducerId v{v} timeout 900001: {res}"
        ok = init_txn(c, uniq("wire-max"), 900000)
        assert ok.error_code == 0, f"InitProducerId with the largest timeout (900000): {ok}"
        idem = c.init_producer_id()
        assert idem.error_code == 0 and idem.producer_id not in (first.producer_id, ok.producer_id), idem


def test_wire_describe_and_list_transactions(broker):
    """DescribeTransactions of an ongoing, a committed and an unknown id;
    ListTransactions filtered by state, producer id, duration and pattern."""
    topic = uniq("wire-desc")
    create_topic(broker.bootstrap, topic, 2)
    suffix = uuid.uuid4().hex[:8]
    tid_ong, tid_done, tid_none = f"wirelistong{suffix}", f"wirelistdone{suffix}", f"wirelistnone{suffix}"
    t0 = time.time() * 1000
    with wire(broker) as c:
        rng = c.negotiated()
        assert kw.API_DESCRIBE_TRANSACTIONS in rng and rng[kw.API_DESCRIBE_TRANSACTIONS].max_version >= 0
        lt = rng.get(kw.API_LIST_TRANSACTIONS)
        assert lt is not None and (lt.min_version, lt.max_version) == (0, 2), f"ListTransactions versions {lt}"

        ong = init_txn(c, tid_ong, 60000)
        assert ong.error_code == 0, ong
        assert add_parts(c, tid_ong, ong.producer_id, ong.producer_epoch, {topic: [0, 1]}) == {
            (topic, 0): 0, (topic, 1): 0}
        for q in (0, 1):
            r = kw.produce_txn(c, topic, q, kw.txn_batch(recs("ong", 3), ong.producer_id, ong.producer_epoch, 0),
                               tid_ong)
            assert r.error_code == 0, r

        done = init_txn(c, tid_done, 30000)
        assert done.error_code == 0, done
        assert add_parts(c, tid_done, done.producer_id, done.producer_epoch, {topic: [0]}) == {(topic, 0): 0}
        r = kw.produce_txn(c, topic, 0, kw.txn_batch(recs("done", 2), done.producer_id, done.producer_epoch, 0),
                           tid_done)
        assert r.error_code == 0, r
        assert end(c, tid_done, done.producer_id, done.producer_epoch, True) == 0

        d = describe_one(c, tid_ong)
        assert (d.error_code, d.state, d.producer_id, d.producer_epoch, d.timeout_ms, d.topics) == (
            0, "Ongoing", ong.producer_id, ong.producer_epoch, 60000, {topic: [0, 1]}), f"ongoing: {d}"
        assert t0 - 5000 <= d.start_time_ms <= time.time() * 1000 + 5000, (
            f"transaction_start_time_ms {d.start_time_ms}, test started at {t0:.0f}"
        )
    d = wait_state(broker, tid_done, {"CompleteCommit"})
    assert (d.producer_id, d.timeout_ms) == (done.producer_id, 30000), f"committed: {d}"

    with wire(broker) as c:
        (unknown,) = kw.describe_transactions(c, [tid_none])
        assert (unknown.transactional_id, unknown.error_code) == (tid_none, kw.TRANSACTIONAL_ID_NOT_FOUND), unknown
        many = {x.transactional_id: x for x in kw.describe_transactions(c, [tid_ong, tid_done, tid_none])}
        assert set(many) == {tid_ong, tid_done, tid_none}, f"DescribeTransactions of three ids: {many}"
        assert (many[tid_ong].error_code, many[tid_ong].state) == (0, "Ongoing"), many[tid_ong]
        assert (many[tid_done].error_code, many[tid_done].state) == (0, "CompleteCommit"), many[tid_done]
        assert many[tid_none].error_code == kw.TRANSACTIONAL_ID_NOT_FOUND, many[tid_none]

        def listing(**kw_args):
            res = kw.list_transactions(c, **kw_args)
            assert res.error_code == 0, f"ListTransactions {kw_args}: error {res.error_code}"
            assert all(s in STATES for _, _, s in res.transactions), f"state names: {res.transactions}"
            return res, {t: (p, s) for t, p, s in res.transactions if t.startswith("wirelist") and t.endswith(suffix)}

        _, mine = listing()
        assert mine == {tid_ong: (ong.producer_id, "Ongoing"), tid_done: (done.producer_id, "CompleteCommit")}, mine
        _, mine = listing(state_filters=["Ongoing"])
        assert mine == {tid_ong: (ong.producer_id, "Ongoing")}, f"state filter Ongoing: {mine}"
        _, mine = listing(state_filters=["CompleteCommit"])
        assert mine == {tid_done: (done.producer_id, "CompleteCommit")}, f"state filter CompleteCommit: {mine}"
        _, mine = listing(state_filters=["Ongoing", "CompleteCommit"])
        assert set(mine) == {tid_ong, tid_done}, f"two state filters: {mine}"
        res, mine = listing(producer_id_filters=[done.producer_id])
        assert mine == {tid_done: (done.producer_id, "CompleteCommit")}, f"producer id filter: {mine}"
        assert all(p == done.producer_id for _, p, _ in res.transactions), res.transactions
        res, mine = listing(state_filters=["NoSuchState"])
        assert res.unknown_state_filters == ["NoSuchState"] and mine == {}, (
            f"unknown state filter: unknown_state_filters {res.unknown_state_filters}, listed {mine}"
        )
        time.sleep(1.0)
        _, mine = listing(version=1, duration_filter_ms=500)
        assert tid_ong in mine, f"duration filter 500 ms (ongoing for > 1 s): {mine}"
        _, mine = listing(version=1, duration_filter_ms=3_600_000)
        assert tid_ong not in mine, f"duration filter 1 h: {mine}"
        _, mine = listing(version=2, transactional_id_pattern=f"^wirelistong{suffix}$")
        assert mine == {tid_ong: (ong.producer_id, "Ongoing")}, f"pattern filter: {mine}"

        assert end(c, tid_ong, ong.producer_id, ong.producer_epoch, True) == 0
    wait_state(broker, tid_ong, {"CompleteCommit"})


def test_wire_fencing_and_txn_state_errors(broker):
    """Stale epochs after a second InitProducerId: AddPartitionsToTxn and
    EndTxn get PRODUCER_FENCED (or INVALID_PRODUCER_EPOCH), Produce gets
    INVALID_PRODUCER_EPOCH; a transactional batch for a partition never added
    gets INVALID_TXN_STATE; EndTxn of an unknown id gets
    INVALID_PRODUCER_ID_MAPPING; the new epoch commits."""
    topic = uniq("wire-fence")
    create_topic(broker.bootstrap, topic, 2)
    tid = uniq("wire-fence")
    fenced = (kw.PRODUCER_FENCED, kw.INVALID_PRODUCER_EPOCH)
    with wire(broker) as c:
        init0 = init_txn(c, tid)
        assert init0.error_code == 0, init0
        pid, e0 = init0.producer_id, init0.producer_epoch

        # A transactional batch with no transaction begun at all.
        r = kw.produce_txn(c, topic, 0, kw.txn_batch(recs("none", 2), pid, e0, 0), tid)
        assert r.error_code == kw.INVALID_TXN_STATE, f"transactional produce before AddPartitionsToTxn: {r}"

        assert add_parts(c, tid, pid, e0, {topic: [0]}, version=0) == {(topic, 0): 0}
        r = kw.produce_txn(c, topic, 0, kw.txn_batch(recs("e0", 3), pid, e0, 0), tid)
        assert (r.error_code, r.base_offset) == (0, 0), r
        # Partition 1 was never added to this transaction (KIP-890).
        r = kw.produce_txn(c, topic, 1, kw.txn_batch(recs("stray", 2), pid, e0, 0), tid)
        assert r.error_code == kw.INVALID_TXN_STATE, f"transactional produce to a partition not added: {r}"
        assert lso_hwm(broker, topic, 1) == (0, 0), "the refused batch was written"

        init1 = init_txn(c, tid)
        assert init1.error_code == 0, init1
        assert init1.producer_id == pid and init1.producer_epoch > e0, f"second InitProducerId: {init1}, first {init0}"
        e1 = init1.producer_epoch

        for v in sorted({0, c.pick_version(kw.API_ADD_PARTITIONS_TO_TXN, 0, 3)}):
            res = kw.add_partitions_to_txn(c, tid, pid, e0, {topic: [1]}, version=v)
            assert set(res) == {(topic, 1)} and res[(topic, 1)] in fenced, (
                f"AddPartitionsToTxn v{v} with the stale epoch {e0} (current {e1}): {res}"
            )
        r = kw.produce_txn(c, topic, 0, kw.txn_batch(recs("late", 2), pid, e0, 3), tid)
        assert r.error_code == kw.INVALID_PRODUCER_EPOCH, f"produce with the stale epoch {e0}: {r}"
        for v in sorted({0, c.pick_version(kw.API_END_TXN, 0, 3)}):
            err = kw.end_txn(c, tid, pid, e0, True, version=v)
            assert err in fenced, f"EndTxn v{v} commit with the stale epoch {e0}: error {err}"
        for v in sorted({0, c.pick_version(kw.API_END_TXN, 0, 3)}):
            err = kw.end_txn(c, uniq("wire-nobody"), 123456789, 0, True, version=v)
            assert err == kw.INVALID_PRODUCER_ID_MAPPING, f"EndTxn v{v} for an unknown transactional id: {err}"

        # The current epoch runs a whole transaction on both partitions.
        assert add_parts(c, tid, pid, e1, {topic: [0, 1]}) == {(topic, 0): 0, (topic, 1): 0}
        for q in (0, 1):
            r = kw.produce_txn(c, topic, q, kw.txn_batch(recs(f"e1p{q}", 4), pid, e1, 0), tid)
            assert r.error_code == 0, f"produce with the current epoch to {q}: {r}"
        assert end(c, tid, pid, e1, True) == 0

    # Partition 0: e0's 3 records, the fencing abort marker, e1's 4, commit marker.
    wait_stable(broker, topic, 0, 9)
    wait_stable(broker, topic, 1, 5)
    with wire(broker) as c:
        f = kw.fetch_isolated(c, topic, 0, 0, kw.ISOLATION_READ_COMMITTED)
        assert f.error_code == 0 and (pid, 0) in (f.aborted_transactions or []), (
            f"read_committed Fetch after the fencing abort: aborted_transactions {f.aborted_transactions}"
        )
    got = read(broker.bootstrap, topic, range(2), RC, expected=8)
    assert sorted((q, v) for q, _, v in got) == sorted(
        [(0, b"value-e1p0-%d" % i) for i in range(4)] + [(1, b"value-e1p1-%d" % i) for i in range(4)]
    ), f"read_committed after fencing: {got}"


def test_wire_txn_offset_commit(broker):
    """AddOffsetsToTxn + TxnOffsetCommit: offsets of an aborted transaction are
    never committed; those of a committed one are."""
    topic = uniq("wire-offsets")
    create_topic(broker.bootstrap, topic, 1)
    group = uniq("wire-offsets-group")
    tid = uniq("wire-offsets")

    def committed_offset():
        cons = Consumer({**base_conf(broker.bootstrap), "group.id": group, "isolation.level": RU,
                         "enable.auto.commit": False})
        try:
            (tp,) = cons.committed([TopicPartition(topic, 0)], timeout=15)
            return tp.offset
        finally:
            cons.close()

    with wire(broker) as c:
        assert c.produce(topic, 0, plain_batch("src", 10)).error_code == 0
        init = init_txn(c, tid)
        assert init.error_code == 0, init
        pid, ep = init.producer_id, init.producer_epoch
        for commit, off in ((False, 7), (True, 5)):
            err = kw.add_offsets_to_txn(c, tid, pid, ep, group)
            deadline = time.monotonic() + 15
            while err in RETRIABLE and time.monotonic() < deadline:
                time.sleep(0.1)
                err = kw.add_offsets_to_txn(c, tid, pid, ep, group)
            assert err == 0, f"AddOffsetsToTxn: {err}"
            res = kw.txn_offset_commit(c, tid, group, pid, ep, {(topic, 0): off})
            assert res == {(topic, 0): 0}, f"TxnOffsetCommit: {res}"
            assert end(c, tid, pid, ep, commit) == 0
            if not commit:
                wait_state(broker, tid, {"CompleteAbort"})
                assert committed_offset() < 0, "offset of an aborted transaction was committed"
    wait_state(broker, tid, {"CompleteCommit"})
    value, _ = wait_for(committed_offset, lambda v: v == 5, 10, "committed offset of the committed transaction")
    assert value == 5


def test_wire_fetch_read_committed_aborted_transactions(broker):
    """Fetch v4+ read_committed answers the LSO and the aborted transactions
    (producer id, first offset) in the fetched range; the control batches are
    transactional control batches with an abort / commit record."""
    topic = uniq("wire-fetch")
    create_topic(broker.bootstrap, topic, 1)
    tid1, tid2, tid3 = uniq("wire-f1"), uniq("wire-f2"), uniq("wire-f3")
    with wire(broker) as c:
        assert c.produce(topic, 0, plain_batch("a", 3)).base_offset == 0
        t1 = init_txn(c, tid1)
        assert add_parts(c, tid1, t1.producer_id, t1.producer_epoch, {topic: [0]}) == {(topic, 0): 0}
        r = kw.produce_txn(c, topic, 0, kw.txn_batch(recs("t1", 4), t1.producer_id, t1.producer_epoch, 0), tid1)
        assert (r.error_code, r.base_offset) == (0, 3), r
        assert end(c, tid1, t1.producer_id, t1.producer_epoch, False) == 0  # abort marker at 7
        wait_stable(broker, topic, 0, 8)
        assert c.produce(topic, 0, plain_batch("b", 2)).base_offset == 8
        t2 = init_txn(c, tid2)
        assert add_parts(c, tid2, t2.producer_id, t2.producer_epoch, {topic: [0]}) == {(topic, 0): 0}
        r = kw.produce_txn(c, topic, 0, kw.txn_batch(recs("t2", 3), t2.producer_id, t2.producer_epoch, 0), tid2)
        assert (r.error_code, r.base_offset) == (0, 10), r
        assert end(c, tid2, t2.producer_id, t2.producer_epoch, True) == 0  # commit marker at 13
        wait_stable(broker, topic, 0, 14)

        versions = sorted({4, 5, c.pick_version(kw.API_FETCH, 4, 12)})
        for v in versions:
            f = kw.fetch_isolated(c, topic, 0, 0, kw.ISOLATION_READ_COMMITTED, version=v)
            assert (f.error_code, f.high_watermark, f.last_stable_offset) == (0, 14, 14), (
                f"Fetch v{v} read_committed: error {f.error_code}, HWM {f.high_watermark}, LSO {f.last_stable_offset}"
            )
            ab = f.aborted_transactions or []
            assert (t1.producer_id, 3) in ab and not any(p == t2.producer_id for p, _ in ab), (
                f"Fetch v{v} read_committed from 0: aborted_transactions {f.aborted_transactions}, expected "
                f"({t1.producer_id}, 3) and nothing of the committed producer {t2.producer_id}"
            )
            f8 = kw.fetch_isolated(c, topic, 0, 8, kw.ISOLATION_READ_COMMITTED, version=v)
            assert (t1.producer_id, 3) not in (f8.aborted_transactions or []), (
                f"Fetch v{v} from 8 lists the transaction aborted at 3..7: {f8.aborted_transactions}"
            )

        # The log itself: data batches and two control batches.
        f = kw.fetch_isolated(c, topic, 0, 0, kw.ISOLATION_READ_UNCOMMITTED)
        batches = kw.decode_record_batches(f.records or b"")
        assert all(b.crc_ok for b in batches), "batch CRC"
        data = [(rec.offset, b.producer_id if b.attributes & kw.ATTR_TRANSACTIONAL else -1)
                for b in batches if not b.attributes & kw.ATTR_CONTROL for rec in b.records]
        assert data == [(0, -1), (1, -1), (2, -1)] + [(o, t1.producer_id) for o in range(3, 7)] + [
            (8, -1), (9, -1)] + [(o, t2.producer_id) for o in range(10, 13)], f"data records {data}"
        control = [b for b in batches if b.attributes & kw.ATTR_CONTROL]
        summary = [(b.base_offset, b.attributes & 0x30, b.producer_id, len(b.records),
                    [kw.decode_control_record(r) for r in b.records]) for b in control]
        assert summary == [
            (7, 0x30, t1.producer_id, 1, [(0, kw.CONTROL_ABORT)]),
            (13, 0x30, t2.producer_id, 1, [(0, kw.CONTROL_COMMIT)]),
        ], f"control batches (offset, attributes, producer id, records, (version, type)): {summary}"
        for b in control:
            v = b.records[0].value
            assert v is not None and len(v) >= 6 and v[:2] == b"\x00\x00", f"control record value {v!r}"

        # An open transaction: read_committed stops at its first offset.
        t3 = init_txn(c, tid3)
        assert add_parts(c, tid3, t3.producer_id, t3.producer_epoch, {topic: [0]}) == {(topic, 0): 0}
        r = kw.produce_txn(c, topic, 0, kw.txn_batch(recs("t3", 2), t3.producer_id, t3.producer_epoch, 0), tid3)
        assert (r.error_code, r.base_offset) == (0, 14), r
        assert c.produce(topic, 0, plain_batch("c", 1)).base_offset == 16
        f = kw.fetch_isolated(c, topic, 0, 10, kw.ISOLATION_READ_COMMITTED)
        assert (f.high_watermark, f.last_stable_offset) == (17, 14), (
            f"open transaction at 14: HWM {f.high_watermark}, LSO {f.last_stable_offset}"
        )
        ends = [b.base_offset + b.last_offset_delta for b in kw.decode_record_batches(f.records or b"")]
        assert ends and max(ends) < 14, f"read_committed Fetch returned batches ending at {ends} (LSO 14)"
        assert end(c, tid3, t3.producer_id, t3.producer_epoch, False) == 0
        wait_stable(broker, topic, 0, 18)
        f = kw.fetch_isolated(c, topic, 0, 14, kw.ISOLATION_READ_COMMITTED)
        assert (t3.producer_id, 14) in (f.aborted_transactions or []), (
            f"aborted_transactions from 14 after aborting the transaction at 14: {f.aborted_transactions}"
        )
    got = read(broker.bootstrap, topic, [0], RC, expected=9)
    assert [o for _, o, _ in got] == [0, 1, 2, 8, 9, 10, 11, 12, 16], f"read_committed offsets {[o for _, o, _ in got]}"
