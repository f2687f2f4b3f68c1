"""Kafka transactions in a three-broker cluster (one PostgreSQL catalog, one
moto bucket; see cluster.py). "Through broker i" means a client pinned to
broker i (its zone in client.id) or a raw connection to broker i.
librdkafka's transaction manager only uses a coordinator it knows from
Metadata, so a pinned transactional producer is pinned to its coordinator.

* commit and abort through every broker: an unpinned transactional
  producer commits 600 records and aborts 300 on six partitions;
  read_committed consumers pinned to each broker read exactly the 600
  committed, read_uncommitted ones all 900; raw ListOffsets
  (read_committed) through every broker answers LSO == HWM, the same
  everywhere, and raw read_committed Fetches through every broker return
  every batch (data and markers) with exactly the aborted transaction
  listed;
* the last stable offset agrees while a transaction is open: a transaction
  produced through one broker and plain records through another after it;
  raw ListOffsets and Fetch (read_committed) through every broker answer
  the transaction's first offset, below the high watermark, within a few
  seconds; after the commit LSO == HWM everywhere;
* exactly-once consume-transform-produce with the group's and the
  transaction's coordinators on different brokers (names picked with raw
  FindCoordinator key types 0 and 1): 1000 inputs in transactions of 100,
  every third aborted and rewound; the output read_committed holds each
  input exactly once, and the group's committed offsets equal the input
  high watermarks through the broker that coordinates neither, the group's
  coordinator and the transaction's coordinator;
* the transaction coordinator killed with SIGKILL while a transaction
  (transaction.timeout.ms=6000, 50 records flushed) is open: a survivor
  coordinates the id within ~20 s, the transaction is aborted
  (DescribeTransactions through a survivor), read_committed through the
  survivors never reads its records and reads the plain records produced
  after the kill; a new producer with the same transactional.id commits
  through the survivors (raw Fetches list only the aborted transaction,
  never the committed one of the same producer id); the restarted broker
  reads the same;
* KIP-890 through every broker: a transactional batch for a partition not
  added to the transaction gets INVALID_TXN_STATE from whichever broker
  takes it, one for the added partition is accepted, and once the
  transaction is committed the same epoch's next batch gets
  INVALID_TXN_STATE as well;
* NOT_COORDINATOR: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn and
  EndTxn for a transactional id through a broker that does not coordinate
  it answer 16;
* DescribeTransactions answers every id through any broker; each broker's
  ListTransactions lists the ids it coordinates, and the union over the
  brokers is every id.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import cluster
import eos
import helpers
import kafka_wire as kw
from test_transactions import (
    RC,
    RU,
    Acks,
    add_parts,
    by_partition,
    end,
    flush,
    init_txn,
    recs,
    send,
    txn_producer,
)

cluster_env = cluster.cluster_env
cluster3 = cluster.cluster3

pytestmark = pytest.mark.e2e_timeout(120)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(fn, pred, timeout: float, what: str, every: float = 0.1):
    """Call fn until pred(value) holds; returns (value, seconds waited)."""
    start = time.monotonic()
    value = fn()
    while not pred(value):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not reached within {timeout}s, last value {value!r}")
        time.sleep(every)
        value = fn()
    return value, time.monotonic() - start


def wire(c: cluster.Cluster, i: int) -> kw.WireConnection:
    return kw.WireConnection("127.0.0.1", c[i].kafka_port, timeout=15.0)


def topics_seen(c: cluster.Cluster, i: int) -> dict:
    md = AdminClient({"bootstrap.servers": c[i].bootstrap}).list_topics(timeout=10)
    return {n: len(t.partitions) for n, t in md.topics.items() if not n.startswith("__")}


def make_topic(c: cluster.Cluster, name: str, partitions: int, brokers=None) -> None:
    """Create through broker 0, then wait until every (given) broker lists it."""
    helpers.create_topic(c[0].bootstrap, name, partitions)
    for i in brokers if brokers is not None else range(len(c)):
        wait_until(lambda i=i: topics_seen(c, i).get(name), lambda n: n == partitions, 10,
                   f"{name} with {partitions} partitions on broker {i}")


def coordinator_via(c: cluster.Cluster, i: int, key: str, key_type: int) -> int:
    """The index of key's coordinator as broker i answers FindCoordinator."""
    with wire(c, i) as conn:
        res = kw.find_coordinator_for(conn, key, key_type)
    assert res.error_code == 0, f"FindCoordinator({key!r}, key type {key_type}) through broker {i}: {res}"
    idx = res.node_id - 1
    assert 0 <= idx < len(c) and c[idx].kafka_port == res.port, (
        f"FindCoordinator({key!r}, key type {key_type}) through broker {i} names node {res.node_id} "
        f"port {res.port}; brokers' ports {[b.kafka_port for b in c.brokers]}"
    )
    return idx


def coordinator(c: cluster.Cluster, key: str, key_type: int = kw.COORDINATOR_KEY_TRANSACTION,
                through=None) -> int:
    """key's coordinator; every broker asked (default: every live one) must agree."""
    through = [i for i in range(len(c)) if c[i].is_alive()] if through is None else list(through)
    answers = {i: coordinator_via(c, i, key, key_type) for i in through}
    assert len(set(answers.values())) == 1, (
        f"brokers disagree on the coordinator of {key!r} (key type {key_type}): {answers}"
    )
    return answers[through[0]]


def lso_hwm(c: cluster.Cluster, i: int, topic: str, partition: int) -> tuple:
    """(ListOffsets latest read_committed, latest read_uncommitted) through broker i."""
    with wire(c, i) as conn:
        rc = kw.list_offsets_isolated(conn, topic, partition, -1, kw.ISOLATION_READ_COMMITTED)
        ru = kw.list_offsets_isolated(conn, topic, partition, -1, kw.ISOLATION_READ_UNCOMMITTED)
    assert rc.error_code == 0 and ru.error_code == 0, f"ListOffsets through broker {i}: {rc}, {ru}"
    return rc.offset, ru.offset


def expect_lso_hwm(c: cluster.Cluster, brokers, topic: str, partition: int, expected: tuple,
                   timeout: float = 10.0) -> dict:
    """(LSO, HWM) of topic[partition] must become `expected` through each
    broker; returns {broker: seconds waited}."""
    waited = {}
    for i in brokers:
        _, waited[i] = wait_until(lambda i=i: lso_hwm(c, i, topic, partition), lambda v: v == expected, timeout,
                                  f"{topic}[{partition}] (LSO, HWM) through broker {i} == {expected}")
    return waited


def read_via(c: cluster.Cluster, i: int, topic: str, partitions, isolation: str, expected=None,
             timeout: float = 60.0) -> list:
    """Every record (partition, offset, value) read from the beginning up to
    the end (the LSO for read_committed) by a consumer pinned to broker i."""
    got = helpers.consume_all(
        c[i].bootstrap, topic, list(partitions), expected=expected, timeout=timeout,
        consumer_conf={"client.id": f"e2e,zone={c.zone(i)}", "isolation.level": isolation},
    )
    return [(m.partition, m.offset, m.value) for m in got]


def fetch_summary(c: cluster.Cluster, i: int, topic: str, partitions) -> dict:
    """For failure messages: per partition, a raw read_committed Fetch from 0
    through broker i: (HWM, LSO, aborted_transactions, [(base offset, last
    offset, producer id, epoch, control?)] of the batches returned)."""
    out = {}
    for q in partitions:
        try:
            with wire(c, i) as conn:
                f = kw.fetch_isolated(conn, topic, q, 0, kw.ISOLATION_READ_COMMITTED)
            batches = [(b.base_offset, b.base_offset + b.last_offset_delta, b.producer_id, b.producer_epoch,
                        bool(b.attributes & kw.ATTR_CONTROL)) for b in kw.decode_record_batches(f.records or b"")]
            out[q] = (f.high_watermark, f.last_stable_offset, f.aborted_transactions, batches)
        except Exception as e:  # a diagnostic must not hide the failure
            out[q] = f"fetch failed: {e!r}"
    return out


def committed_log(c: cluster.Cluster, i: int, topic: str, partition: int, timeout: float = 20.0) -> tuple:
    """Raw read_committed Fetches through broker i from offset 0 up to the
    LSO: (the offsets the returned batches cover, in order; the union of the
    answers' aborted_transactions; any answer listing one twice)."""
    covered, aborted, doubled = [], set(), []
    offset, deadline = 0, time.monotonic() + timeout
    with wire(c, i) as conn:
        while True:
            f = kw.fetch_isolated(conn, topic, partition, offset, kw.ISOLATION_READ_COMMITTED)
            assert f.error_code == 0, (
                f"read_committed Fetch of {topic}[{partition}] at {offset} through broker {i}: {f}"
            )
            listed = f.aborted_transactions or []
            if len(listed) != len(set(listed)):
                doubled.append((offset, listed))
            aborted |= set(listed)
            for b in kw.decode_record_batches(f.records or b""):
                last = b.base_offset + b.last_offset_delta
                if last >= offset:
                    covered.extend(range(max(b.base_offset, offset), last + 1))
                    offset = last + 1
            if offset >= f.last_stable_offset:
                return covered, aborted, doubled
            assert time.monotonic() < deadline, (
                f"read_committed Fetches of {topic}[{partition}] through broker {i} stuck at {offset} "
                f"(LSO {f.last_stable_offset}, HWM {f.high_watermark})"
            )


def check_committed_log(c: cluster.Cluster, i: int, topic: str, partition: int, hwm: int, aborted: set) -> None:
    """A read_committed reader through broker i is given every batch (data
    and markers) from 0 to the HWM, and exactly the aborted transactions
    `aborted` ((producer id, first offset)), none listed twice."""
    covered, got, doubled = committed_log(c, i, topic, partition)
    assert covered == list(range(hwm)), (
        f"read_committed Fetches of {topic}[{partition}] through broker {i} returned batches covering "
        f"{len(covered)} offsets, missing {sorted(set(range(hwm)) - set(covered))[:20]}, expected 0..{hwm - 1}"
    )
    assert got == aborted and not doubled, (
        f"read_committed Fetches of {topic}[{partition}] through broker {i}: aborted_transactions {sorted(got)}, "
        f"expected {sorted(aborted)}; answers listing one twice: {doubled}"
    )


def describe_via(c: cluster.Cluster, i: int, tids) -> dict:
    with wire(c, i) as conn:
        got = kw.describe_transactions(conn, list(tids))
    return {d.transactional_id: d for d in got}


def committed_via(c: cluster.Cluster, i: int, group: str, topic: str, partitions) -> dict:
    """A consumer of `group` bootstrapped through broker i alone (and pinned
    to it): its committed() offsets."""
    cons = Consumer({
        **helpers.base_conf(c[i].bootstrap),
        "client.id": f"e2e,zone={c.zone(i)}",
        "group.id": group,
        "enable.auto.commit": False,
        "isolation.level": RC,
    })
    try:
        got = cons.committed([TopicPartition(topic, q) for q in partitions], timeout=30)
    finally:
        cons.close()
    for tp in got:
        assert tp.error is None, f"committed() through broker {i}: {tp}"
    return {tp.partition: tp.offset for tp in got}


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_commit_and_abort_read_through_every_broker(cluster3):
    """600 committed and 300 aborted records on six partitions (an unpinned
    transactional producer): read_committed through each broker reads the
    600, read_uncommitted the 900; LSO == HWM through every broker."""
    c = cluster3
    topic = uniq("ctxn-every")
    make_topic(c, topic, 6)
    tid = uniq("ctid-every")
    p = txn_producer(c.bootstrap, tid)
    p.init_transactions(30)
    ac, aa = Acks(), Acks()
    p.begin_transaction()
    send(p, topic, [b"committed-%d" % i for i in range(600)], ac, partition=lambda i: i % 6)
    flush(p, "committed transaction")
    p.commit_transaction(30)
    p.begin_transaction()
    send(p, topic, [b"aborted-%d" % i for i in range(300)], aa, partition=lambda i: i % 6)
    flush(p, "aborted transaction")
    p.abort_transaction(30)
    c_recs, a_recs = ac.check(600, "committed"), aa.check(300, "aborted")
    for q in range(6):
        offs_c = [o for pq, o, _ in c_recs if pq == q]
        offs_a = [o for pq, o, _ in a_recs if pq == q]
        assert offs_c == list(range(100)) and offs_a == list(range(101, 151)), (
            f"partition {q}: committed at {offs_c[:3]}..{offs_c[-3:]}, aborted at {offs_a[:3]}..{offs_a[-3:]}; "
            f"expected 0..99, commit marker at 100, 101..150"
        )

    # 100 committed + commit marker + 50 aborted + abort marker per partition.
    for q in range(6):
        expect_lso_hwm(c, range(3), topic, q, (152, 152))
    offsets = {(i, q): lso_hwm(c, i, topic, q) for i in range(3) for q in range(6)}
    assert set(offsets.values()) == {(152, 152)}, f"(LSO, HWM) per (broker, partition): {offsets}"
    pid = describe_via(c, 0, [tid])[tid].producer_id
    for i in range(3):
        for q in range(6):
            check_committed_log(c, i, topic, q, 152, {(pid, 101)})

    for i in range(3):
        got = read_via(c, i, topic, range(6), RC, expected=600)
        bad = [r for r in got if not r[2].startswith(b"committed-")]
        assert not bad and by_partition(got) == c_recs, (
            f"read_committed through broker {i}: {len(got)} records, expected the 600 committed; "
            f"{len(bad)} not committed, first {bad[:3]}; "
            f"raw Fetch read_committed through broker {i}: {fetch_summary(c, i, topic, range(6))}"
        )
        got_ru = read_via(c, i, topic, range(6), RU, expected=900)
        assert by_partition(got_ru) == sorted(c_recs + a_recs), (
            f"read_uncommitted through broker {i}: {len(got_ru)} records, expected 900"
        )


def test_last_stable_offset_agrees_on_every_broker(cluster3):
    """A transaction open on partition 0 (produced through its coordinator)
    with plain records after it (through another broker): ListOffsets and Fetch
    (read_committed) through every broker answer LSO = the transaction's
    first offset < HWM; after the commit LSO == HWM everywhere."""
    c = cluster3
    topic = uniq("ctxn-lso")
    make_topic(c, topic, 1)
    tid = uniq("ctid-lso")
    # librdkafka's transaction manager only talks to a coordinator it knows
    # from Metadata, so a producer pinned to a broker must be pinned to its
    # transaction coordinator; the plain records go through another broker.
    k = coordinator(c, tid)
    plain = Producer(c.pinned((k + 1) % 3, **{"acks": "all", "linger.ms": 0, "broker.address.family": "v4"}))
    ap, at = Acks(), Acks()
    send(plain, topic, [b"before-%d" % i for i in range(10)], ap, partition=0)
    flush(plain, "plain before")
    t = txn_producer(c.bootstrap, tid, **c.pinned(k))
    t.init_transactions(30)
    t.begin_transaction()
    send(t, topic, [b"txn-%d" % i for i in range(5)], at, partition=0)
    flush(t, "open transaction")
    send(plain, topic, [b"after-%d" % i for i in range(10)], ap, partition=0)
    flush(plain, "plain after")
    assert sorted(o for _, o, _ in at.ok) == list(range(10, 15)), f"transaction offsets {at.ok}"
    assert sorted(o for _, o, _ in ap.ok) == list(range(10)) + list(range(15, 25)), f"plain offsets {ap.ok}"

    waited = expect_lso_hwm(c, range(3), topic, 0, (10, 25), timeout=5)
    print(f"LSO 10 / HWM 25 through the brokers after {waited}")
    for i in range(3):
        with wire(c, i) as conn:
            f = kw.fetch_isolated(conn, topic, 0, 0, kw.ISOLATION_READ_COMMITTED)
        assert (f.error_code, f.high_watermark, f.last_stable_offset) == (0, 25, 10), (
            f"Fetch read_committed through broker {i}: error {f.error_code}, HWM {f.high_watermark}, "
            f"LSO {f.last_stable_offset}; expected (0, 25, 10)"
        )
        ends = [b.base_offset + b.last_offset_delta for b in kw.decode_record_batches(f.records or b"")]
        assert ends and max(ends) < 10, f"Fetch read_committed through broker {i}: batches ending at {ends} (LSO 10)"
        got = read_via(c, i, topic, [0], RC, expected=10)
        assert [(o, v) for _, o, v in got] == [(o, b"before-%d" % o) for o in range(10)], (
            f"read_committed through broker {i} with the transaction open at 10: offsets {[o for _, o, _ in got]}"
        )

    t.commit_transaction(30)
    waited = expect_lso_hwm(c, range(3), topic, 0, (26, 26), timeout=5)
    print(f"LSO == HWM == 26 through the brokers after {waited}")
    expected = sorted(ap.ok + at.ok, key=lambda r: r[1])
    for i in range(3):
        got = read_via(c, i, topic, [0], RC, expected=25)
        assert got == expected, f"read_committed through broker {i} after the commit: offsets {[o for _, o, _ in got]}"


# What the group protocol answers while a member joins; librdkafka handles
# them but still reports them as consumer events (as in test_cluster.py).
ROUTINE_GROUP_ERRORS = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


@pytest.mark.e2e_timeout(180)
def test_exactly_once_with_coordinators_on_different_brokers(cluster3):
    """The group's and the transaction's coordinators are different brokers:
    1000 inputs in transactions of up to 100 (offsets sent with each, every
    third aborted and rewound) land exactly once; the committed offsets are
    the input high watermarks through the broker that coordinates neither as
    well as through both coordinators."""
    c = cluster3
    suffix = uuid.uuid4().hex[:8]
    group = f"ceos-group-{suffix}"
    g = coordinator(c, group, kw.COORDINATOR_KEY_GROUP)
    tid = None
    for n in range(60):
        cand = f"ceos-tid-{suffix}-{n}"
        if coordinator(c, cand, kw.COORDINATOR_KEY_TRANSACTION) != g:
            tid = cand
            break
    assert tid is not None, f"60 transactional ids all hash to the group's coordinator {g}"
    t = coordinator(c, tid)
    neither = ({0, 1, 2} - {g, t}).pop()
    print(f"group coordinator: broker {g}, transaction coordinator: broker {t}, neither: broker {neither}")

    src, dst = uniq("ceos-in"), uniq("ceos-out")
    make_topic(c, src, 3)
    make_topic(c, dst, 3)
    n_in = 1000
    keys = [b"in-%04d" % i for i in range(n_in)]
    inputs = {k: b"payload-%04d" % i for i, k in enumerate(keys)}
    plain = Producer({**helpers.base_conf(c.bootstrap), "acks": "all", "linger.ms": 5})
    ai = Acks()
    send(plain, src, [inputs[k] for k in keys], ai, partition=lambda i: i % 3, keys=keys)
    flush(plain, "input")
    ai.check(n_in, "input")
    hwms = {q: len([i for i in range(n_in) if i % 3 == q]) for q in range(3)}
    for q in range(3):
        waited = expect_lso_hwm(c, range(3), src, q, (hwms[q], hwms[q]), timeout=10)
        print(f"input partition {q}: HWM {hwms[q]} through the brokers after {waited}")

    eos.consume_transform_produce(c.bootstrap, txn_producer(c.bootstrap, tid), src, dst, group, n_in,
                                  tolerated=ROUTINE_GROUP_ERRORS)
    eos.check_output(c.bootstrap, dst, range(3), inputs, timeout=60)

    for i, role in ((neither, "coordinates neither"), (g, "the group's coordinator"),
                    (t, "the transaction's coordinator")):
        got = committed_via(c, i, group, src, range(3))
        assert got == hwms, (
            f"group {group}'s committed offsets through broker {i} ({role}): {got}, input high watermarks {hwms}"
        )


@pytest.mark.e2e_timeout(180)
def test_transaction_coordinator_failover(cluster3):
    """SIGKILL of a transactional id's coordinator with its transaction
    open: a survivor coordinates the id, aborts the transaction, the LSO
    moves past it on the survivors; a new producer with the same
    transactional.id commits; the restarted broker reads the same."""
    c = cluster3
    topic = uniq("ctxn-failover")
    make_topic(c, topic, 2)
    tid = uniq("ctid-failover")
    k = coordinator(c, tid)
    survivors = [i for i in range(3) if i != k]
    print(f"transaction coordinator of {tid}: broker {k}")

    old = txn_producer(c.bootstrap, tid, timeout_ms=6000)
    old.init_transactions(30)
    ao = Acks()
    old.begin_transaction()
    send(old, topic, [b"open-%d" % i for i in range(50)], ao, partition=lambda i: i % 2)
    flush(old, "open transaction")
    ao.check(50, "open transaction")
    before = describe_via(c, survivors[0], [tid])[tid]
    assert (before.error_code, before.state, before.topics) == (0, "Ongoing", {topic: [0, 1]}), (
        f"DescribeTransactions through broker {survivors[0]} before the kill: {before}"
    )
    for q in range(2):
        expect_lso_hwm(c, range(3), topic, q, (0, 25), timeout=5)

    c[k].kill9()
    killed = time.monotonic()

    # Plain records through a survivor, behind the open transaction.
    plain = Producer(c.pinned(survivors[0], **{"acks": "all", "linger.ms": 0, "broker.address.family": "v4",
                                                "message.timeout.ms": 30000}))
    ap = Acks()
    send(plain, topic, [b"plain-%d" % i for i in range(20)], ap, partition=lambda i: i % 2)
    flush(plain, "plain after the kill", timeout=40)
    rp = ap.check(20, "plain after the kill")

    def new_coordinator():
        try:
            return coordinator(c, tid, through=survivors)
        except (AssertionError, OSError, kw.ConnectionClosed) as e:
            return f"{e}"

    now_k, took = wait_until(new_coordinator, lambda v: isinstance(v, int) and v in survivors, 20,
                             f"a survivor coordinating {tid}", every=0.2)
    print(f"broker {now_k} coordinates {tid} {time.monotonic() - killed:.1f}s after the kill")

    def aborted(d):
        return d.error_code == 0 and d.state != "Ongoing" and (
            d.state == "CompleteAbort" or d.producer_epoch > before.producer_epoch)

    for i in survivors:
        d, _ = wait_until(lambda i=i: describe_via(c, i, [tid])[tid], aborted,
                          max(1.0, 20 - (time.monotonic() - killed)),
                          f"DescribeTransactions({tid}) through broker {i}: aborted (was {before})")
        assert d.producer_id == before.producer_id, f"through broker {i}: {d}, before the kill {before}"
    print(f"transaction aborted {time.monotonic() - killed:.1f}s after the kill: {d}")

    # 25 open + abort marker + 10 plain per partition, stable on the survivors.
    for q in range(2):
        expect_lso_hwm(c, survivors, topic, q, (36, 36), timeout=max(1.0, 25 - (time.monotonic() - killed)))
    # The markers are written: the abort is complete.
    for i in survivors:
        wait_until(lambda i=i: describe_via(c, i, [tid])[tid],
                   lambda d: (d.error_code, d.state) == (0, "CompleteAbort"),
                   10, f"DescribeTransactions({tid}) through broker {i}: CompleteAbort")
    for i in survivors:
        got = read_via(c, i, topic, range(2), RC, expected=20)
        assert by_partition(got) == rp, (
            f"read_committed through broker {i} after the failover: {len(got)} records, expected the 20 plain; "
            f"open-transaction records read: {sum(1 for r in got if r[2].startswith(b'open-'))}; "
            f"raw Fetch read_committed through broker {i}: {fetch_summary(c, i, topic, range(2))}"
        )
        got_ru = read_via(c, i, topic, range(2), RU, expected=70)
        assert len(got_ru) == 70, f"read_uncommitted through broker {i}: {len(got_ru)} records, expected 70"
    del old

    # A new producer with the same transactional.id, through the survivors.
    new = txn_producer(",".join(c[i].bootstrap for i in survivors), tid)
    new.init_transactions(30)
    an = Acks()
    new.begin_transaction()
    send(new, topic, [b"new-%d" % i for i in range(30)], an, partition=lambda i: i % 2)
    flush(new, "new producer")
    new.commit_transaction(30)
    rn = an.check(30, "new producer")
    for q in range(2):
        expect_lso_hwm(c, survivors, topic, q, (52, 52))
        for i in survivors:
            check_committed_log(c, i, topic, q, 52, {(before.producer_id, 0)})
    expected = by_partition(rp + rn)
    for i in survivors:
        got = read_via(c, i, topic, range(2), RC, expected=50)
        assert by_partition(got) == expected, (
            f"read_committed through broker {i} after the new producer's commit: {len(got)} records, expected 50; "
            f"read {[(q, o, v) for q, o, v in by_partition(got)]}; "
            f"raw Fetch read_committed through broker {i}: {fetch_summary(c, i, topic, range(2))}"
        )
        d = describe_via(c, i, [tid])[tid]
        assert (d.error_code, d.state, d.producer_id) == (0, "CompleteCommit", before.producer_id) and (
            d.producer_epoch > before.producer_epoch), f"DescribeTransactions through broker {i}: {d}"

    c[k].restart()
    c.wait_members(3)
    for q in range(2):
        expect_lso_hwm(c, [k], topic, q, (52, 52))
        check_committed_log(c, k, topic, q, 52, {(before.producer_id, 0)})
    got = read_via(c, k, topic, range(2), RC, expected=50)
    assert by_partition(got) == expected, (
        f"read_committed through the restarted broker {k}: {len(got)} records, expected 50; "
        f"open-transaction records read: {sum(1 for r in got if r[2].startswith(b'open-'))}; "
        f"raw Fetch read_committed through broker {k}: {fetch_summary(c, k, topic, range(2))}"
    )


def test_kip890_check_through_every_broker(cluster3):
    """Partition 0 only added to the transaction: a transactional batch for
    partition 1 is refused with INVALID_TXN_STATE through every broker, one
    for partition 0 accepted; after the commit the same epoch's next batch
    for partition 0 is refused with INVALID_TXN_STATE through every broker."""
    c = cluster3
    topic = uniq("ctxn-kip890")
    make_topic(c, topic, 2)
    tid = uniq("ctid-kip890")
    k = coordinator(c, tid)
    with wire(c, k) as conn:
        init = init_txn(conn, tid)
        assert init.error_code == 0, f"InitProducerId through the coordinator {k}: {init}"
        pid, ep = init.producer_id, init.producer_epoch
        assert add_parts(conn, tid, pid, ep, {topic: [0]}) == {(topic, 0): 0}

    seq = 0
    for i in range(3):
        with wire(c, i) as conn:
            r = kw.produce_txn(conn, topic, 1, kw.txn_batch(recs(f"stray{i}", 2), pid, ep, 0), tid)
            assert r.error_code == kw.INVALID_TXN_STATE, (
                f"transactional batch to partition 1 (not added) through broker {i}: {r}, expected 48"
            )
            r = kw.produce_txn(conn, topic, 0, kw.txn_batch(recs(f"via{i}", 3), pid, ep, seq), tid)
            assert (r.error_code, r.base_offset) == (0, seq), (
                f"transactional batch to partition 0 (added) through broker {i}, sequence {seq}: {r}"
            )
            seq += 3
    expect_lso_hwm(c, range(3), topic, 1, (0, 0), timeout=5)
    expect_lso_hwm(c, range(3), topic, 0, (0, 9), timeout=5)

    with wire(c, k) as conn:
        assert end(conn, tid, pid, ep, True) == 0
    expect_lso_hwm(c, range(3), topic, 0, (10, 10))

    for i in range(3):
        with wire(c, i) as conn:
            r = kw.produce_txn(conn, topic, 0, kw.txn_batch(recs(f"late{i}", 2), pid, ep, seq), tid)
        assert r.error_code == kw.INVALID_TXN_STATE, (
            f"transactional batch (epoch {ep}, sequence {seq}) to partition 0 after the commit through broker {i}: "
            f"{r}, expected 48"
        )
    for i in range(3):
        assert lso_hwm(c, i, topic, 0) == (10, 10), f"a refused batch was written: broker {i}"
        assert lso_hwm(c, i, topic, 1) == (0, 0), f"a refused batch was written: broker {i}"
    got = read_via(c, 2, topic, range(2), RC, expected=9)
    assert [(q, o, v) for q, o, v in got] == [
        (0, 3 * i + j, b"value-via%d-%d" % (i, j)) for i in range(3) for j in range(3)
    ], f"read_committed: {got}"


def test_not_coordinator_answers(cluster3):
    """InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn and EndTxn for a
    transactional id through a broker that does not coordinate it answer
    NOT_COORDINATOR (16); its coordinator serves them."""
    c = cluster3
    topic = uniq("ctxn-notcoord")
    make_topic(c, topic, 1)
    tid = uniq("ctid-notcoord")
    k = coordinator(c, tid)
    others = [i for i in range(3) if i != k]
    for i in others:
        with wire(c, i) as conn:
            res = kw.init_producer_id_txn(conn, tid, 60000)
        assert res.error_code == kw.NOT_COORDINATOR, (
            f"InitProducerId({tid}) through broker {i} (coordinator {k}): {res}, expected 16"
        )
    with wire(c, k) as conn:
        init = init_txn(conn, tid)
    assert init.error_code == 0, f"InitProducerId through the coordinator {k}: {init}"
    pid, ep = init.producer_id, init.producer_epoch
    for i in others:
        with wire(c, i) as conn:
            res = kw.init_producer_id_txn(conn, tid, 60000)
            assert res.error_code == kw.NOT_COORDINATOR, f"second InitProducerId through broker {i}: {res}"
            parts = kw.add_partitions_to_txn(conn, tid, pid, ep, {topic: [0]})
            assert parts == {(topic, 0): kw.NOT_COORDINATOR}, f"AddPartitionsToTxn through broker {i}: {parts}"
            err = kw.add_offsets_to_txn(conn, tid, pid, ep, uniq("ctxn-group"))
            assert err == kw.NOT_COORDINATOR, f"AddOffsetsToTxn through broker {i}: {err}"
            err = kw.end_txn(conn, tid, pid, ep, True)
            assert err == kw.NOT_COORDINATOR, f"EndTxn through broker {i}: {err}"
    with wire(c, k) as conn:
        assert add_parts(conn, tid, pid, ep, {topic: [0]}) == {(topic, 0): 0}
        r = kw.produce_txn(conn, topic, 0, kw.txn_batch(recs("coord", 2), pid, ep, 0), tid)
        assert r.error_code == 0, r
        assert end(conn, tid, pid, ep, True) == 0
    expect_lso_hwm(c, range(3), topic, 0, (3, 3))


def test_describe_and_list_transactions_across_brokers(cluster3):
    """Transactional ids coordinated by each of the three brokers, some
    ongoing, some empty: DescribeTransactions through any broker describes
    all of them; ListTransactions through broker i lists exactly the ones i
    coordinates; the union is every id."""
    c = cluster3
    topic = uniq("ctxn-list")
    make_topic(c, topic, 1)
    suffix = uuid.uuid4().hex[:8]
    coord = {}
    for n in range(60):
        tid = f"clist{suffix}-{n}"
        coord[tid] = coordinator(c, tid)
        if len(coord) >= 6 and set(coord.values()) == {0, 1, 2}:
            break
    assert set(coord.values()) == {0, 1, 2}, f"ids picked and their coordinators: {coord}"
    tids = sorted(coord)
    ongoing = set(tids[::2])
    info = {}
    for tid in tids:
        with wire(c, coord[tid]) as conn:
            init = init_txn(conn, tid)
            assert init.error_code == 0, f"InitProducerId({tid}) through its coordinator: {init}"
            info[tid] = init
            if tid in ongoing:
                assert add_parts(conn, tid, init.producer_id, init.producer_epoch, {topic: [0]}) == {(topic, 0): 0}
        if tid in ongoing:
            via = (coord[tid] + 1) % 3
            with wire(c, via) as conn:
                r = kw.produce_txn(conn, topic, 0,
                                   kw.txn_batch(recs(tid, 1), init.producer_id, init.producer_epoch, 0), tid)
            assert r.error_code == 0, f"transactional produce of {tid} through broker {via}: {r}"

    unknown = f"clistnone{suffix}"
    for i in range(3):
        got = describe_via(c, i, tids + [unknown])
        assert set(got) == set(tids) | {unknown}, f"DescribeTransactions through broker {i}: ids {sorted(got)}"
        assert got[unknown].error_code == kw.TRANSACTIONAL_ID_NOT_FOUND, f"through broker {i}: {got[unknown]}"
        for tid in tids:
            d, want = got[tid], info[tid]
            state, topics = ("Ongoing", {topic: [0]}) if tid in ongoing else ("Empty", {})
            assert (d.error_code, d.state, d.producer_id, d.producer_epoch, d.topics) == (
                0, state, want.producer_id, want.producer_epoch, topics), (
                f"DescribeTransactions({tid}) through broker {i} (coordinator {coord[tid]}): {d}"
            )

    union = set()
    for i in range(3):
        with wire(c, i) as conn:
            res = kw.list_transactions(conn)
        assert res.error_code == 0, f"ListTransactions through broker {i}: {res}"
        mine = {t: (p, s) for t, p, s in res.transactions if t.startswith(f"clist{suffix}-")}
        want = {t: (info[t].producer_id, "Ongoing" if t in ongoing else "Empty") for t in tids if coord[t] == i}
        assert mine == want, f"ListTransactions through broker {i}: {mine}, expected the ids it coordinates {want}"
        union |= set(mine)
    assert union == set(tids), f"union of ListTransactions over the brokers: {sorted(union)}, ids {tids}"

    for tid in sorted(ongoing):
        with wire(c, coord[tid]) as conn:
            assert end(conn, tid, info[tid].producer_id, info[tid].producer_epoch, False) == 0
    expect_lso_hwm(c, range(3), topic, 0, (2 * len(ongoing), 2 * len(ongoing)))
