"""Chaos in a cluster (issue 16, must-show 1): three brokers on PostgreSQL and
moto carry two idempotent acks=all producers and two consumer groups (one
with dynamic members, one with static members) while, on a fixed schedule,

* a broker is killed with SIGKILL every 30 s and started again,
* one is paused with SIGSTOP past its lease and resumed,
* a fourth broker joins and is later drained with SIGTERM.

Then the ledger of every acknowledged record is checked against the log and
the groups: nothing lost, nothing duplicated, every group's committed
offsets only moved forward and end at the high watermarks, and each group
consumed every record at least once. The counts are printed.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import defaultdict
from typing import Dict, List, Set, Tuple

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import cluster
import helpers

cluster_env = cluster.cluster_env

pytestmark = pytest.mark.e2e_timeout(480)

PARTITIONS = 6
PRODUCERS = 2
RATE_PER_PRODUCER = 120  # records per second
MEMBERS_PER_GROUP = 2
# Seconds after the load starts. A SIGKILL every 30 s, rotating over the
# three original brokers, each started again 1 s later.
SCHEDULE = [
    (10, "kill", 0),
    (22, "pause", 1),
    (40, "kill", 2),
    (48, "add", 3),
    (70, "kill", 1),
    (85, "drain", 3),
    (100, "kill", 0),
]
LOAD_SECONDS = 110


class Ledger:
    """What the producers were told and what each group was given."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.acked: Dict[Tuple[int, int], bytes] = {}
        self.errors: List[str] = []
        self.consumed: Dict[str, Set[Tuple[int, int]]] = defaultdict(set)
        self.deliveries: Dict[str, int] = defaultdict(int)
        self.mismatched: List[str] = []
        self.consumer_errors: List[str] = []

    def on_delivery(self, err, msg) -> None:
        with self.lock:
            if err is None:
                self.acked[(msg.partition(), msg.offset())] = msg.value()
            else:
                self.errors.append(str(err))


def produce_loop(bootstrap: str, topic: str, n: int, ledger: Ledger, stop: threading.Event) -> None:
    p = Producer({
        "bootstrap.servers": bootstrap,
        "client.id": f"chaos-producer-{n}",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 180000,
        "topic.metadata.refresh.interval.ms": 2000,
    })
    seq = 0
    interval = 1.0 / RATE_PER_PRODUCER
    next_at = time.monotonic()
    while not stop.is_set():
        value = b"chaos-%d-%08d-" % (n, seq) + b"v" * 200
        while True:
            try:
                p.produce(topic, value=value, partition=seq % PARTITIONS, on_delivery=ledger.on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        with ledger.lock:
            ledger.sent += 1
        seq += 1
        next_at += interval
        p.poll(max(0.0, next_at - time.monotonic()))
    left = p.flush(150)
    if left:
        with ledger.lock:
            ledger.errors.append(f"producer {n}: {left} records not delivered within 150 s of the end")


def consume_loop(bootstrap: str, topic: str, group: str, member: int, static: bool, ledger: Ledger,
                 stop: threading.Event) -> None:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": f"chaos-{group}-{member}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 500,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "topic.metadata.refresh.interval.ms": 2000,
    }
    if static:
        conf["group.instance.id"] = f"{group}-member-{member}"
    c = Consumer(conf)
    c.subscribe([topic])
    try:
        while not stop.is_set():
            for m in c.consume(num_messages=500, timeout=0.3):
                err = m.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF and not err.retriable():
                        with ledger.lock:
                            ledger.consumer_errors.append(f"{group}/{member}: {err}")
                    continue
                with ledger.lock:
                    ledger.consumed[group].add((m.partition(), m.offset()))
                    ledger.deliveries[group] += 1
                    want = ledger.acked.get((m.partition(), m.offset()))
                    if want is not None and want != m.value():
                        ledger.mismatched.append(f"{group} {m.partition()}@{m.offset()}")
    finally:
        c.close()  # commits what was consumed


class CommitWatch:
    """Samples each group's committed offsets (OffsetFetch through whichever
    broker answers) and records every time one went backwards."""

    def __init__(self, c: cluster.Cluster, topic: str, groups: List[str]) -> None:
        self.c = c
        self.topic = topic
        self.groups = groups
        self.last: Dict[str, Dict[int, int]] = {g: {} for g in groups}
        self.backwards: List[str] = []
        self.samples = 0
        self.failed = 0

    def sample(self) -> None:
        bootstrap = self.c.bootstrap
        for g in self.groups:
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": g, "enable.auto.commit": False})
            try:
                got = c.committed([TopicPartition(self.topic, p) for p in range(PARTITIONS)], timeout=5)
            except Exception:  # a broker going away mid-request: the next sample retries
                self.failed += 1
                continue
            finally:
                c.close()
            self.samples += 1
            for tp in got:
                if tp.error is not None or tp.offset < 0:
                    continue
                before = self.last[g].get(tp.partition, -1)
                if tp.offset < before:
                    self.backwards.append(f"{g}[{tp.partition}] {before} -> {tp.offset}")
                self.last[g][tp.partition] = max(before, tp.offset)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            self.sample()


def test_chaos_loses_and_duplicates_nothing(broker_factory, cluster_env):
    c = cluster.make_cluster(broker_factory, cluster_env).start()
    topic = f"chaos-{uuid.uuid4().hex[:6]}"
    helpers.create_topic(c[0].bootstrap, topic, partitions=PARTITIONS)
    bootstrap = c.bootstrap  # the three originals; the fourth is found through Metadata
    groups = {f"chaos-dynamic-{topic}": False, f"chaos-static-{topic}": True}
    ledger = Ledger()
    stop_producers, stop_consumers, stop_watch = threading.Event(), threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=produce_loop, args=(bootstrap, topic, n, ledger, stop_producers), daemon=True)
        for n in range(PRODUCERS)
    ]
    consumers = [
        threading.Thread(target=consume_loop, args=(bootstrap, topic, g, m, static, ledger, stop_consumers),
                         daemon=True)
        for g, static in groups.items() for m in range(MEMBERS_PER_GROUP)
    ]
    watch = CommitWatch(c, topic, list(groups))
    watcher = threading.Thread(target=watch.run, args=(stop_watch,), daemon=True)
    events: List[str] = []
    drained = set()
    try:
        for t in consumers + threads + [watcher]:
            t.start()
        t0 = time.monotonic()
        for at, what, i in SCHEDULE:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            started = time.monotonic()
            if what == "kill":
                c[i].kill9()
                time.sleep(1.0)
                c[i].start()
            elif what == "pause":
                c[i].proc.send_signal(signal.SIGSTOP)
                time.sleep(c.lease_ms / 1000 + 2)
                c[i].proc.send_signal(signal.SIGCONT)
            elif what == "add":
                c.add_broker().start()
                c.wait_members(4, timeout=30)
            elif what == "drain":
                rc = c[i].stop(timeout=30)
                assert rc == 0, f"broker {i + 1} drained with exit code {rc}"
                drained.add(i)
            events.append(f"{at:>4}s {what} broker {i + 1} ({time.monotonic() - started:.1f}s)")
            for j, b in enumerate(c.brokers):
                if j not in drained:
                    b.assert_alive(f"after {what} of broker {i + 1}")
        time.sleep(max(0.0, t0 + LOAD_SECONDS - time.monotonic()))
        stop_producers.set()
        for t in threads:
            t.join(180)
            assert not t.is_alive(), "a producer did not finish within 180 s"
        acked = dict(ledger.acked)
        # Each group catches up with every acknowledged record.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with ledger.lock:
                behind = {g: len(set(acked) - ledger.consumed[g]) for g in groups}
            if not any(behind.values()):
                break
            time.sleep(0.5)
        stop_consumers.set()
        for t in consumers:
            t.join(60)
            assert not t.is_alive(), "a consumer did not close within 60 s"
        watch.sample()
    finally:
        stop_producers.set()
        stop_consumers.set()
        stop_watch.set()
        watcher.join(30)

    # The log, read back through the brokers still running.
    ends = {}
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    assert len(admin.list_topics(timeout=10).brokers) == 3
    probe = helpers.make_consumer(c.bootstrap)
    try:
        for p in range(PARTITIONS):
            ends[p] = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=20, cached=False)
    finally:
        probe.close()
    log = helpers.consume_all(c.bootstrap, topic, range(PARTITIONS), expected=sum(h - lo for lo, h in ends.values()))
    in_log = {(m.partition, m.offset): m.value for m in log}
    values = [m.value for m in log]
    lost = [pos for pos, v in acked.items() if in_log.get(pos) != v]
    duplicated = len(values) - len(set(values))
    unacked = len(set(values) - set(acked.values()))
    holes = [p for p, (lo, h) in ends.items() if sorted(o for (q, o) in in_log if q == p) != list(range(lo, h))]

    lines = [
        f"chaos: {ledger.sent} sent, {len(acked)} acknowledged, {len(ledger.errors)} delivery errors, "
        f"{len(log)} in the log, {len(lost)} lost, {duplicated} duplicated, {unacked} in the log unacknowledged",
    ]
    for g in groups:
        got = ledger.consumed[g]
        lines.append(
            f"  {g}: {len(got & set(acked))}/{len(acked)} acknowledged records consumed, "
            f"{ledger.deliveries[g]} deliveries ({ledger.deliveries[g] - len(got)} redelivered), "
            f"committed {sum(watch.last[g].values())} of {sum(h for _, h in ends.values())}"
        )
    lines.append(
        f"  commit samples {watch.samples} ({watch.failed} failed while a broker was away), "
        f"{len(watch.backwards)} went backwards"
    )
    lines += [f"  {e}" for e in events]
    print("\n".join(lines))

    assert not ledger.errors, ledger.errors[:5]
    assert not ledger.consumer_errors, ledger.consumer_errors[:5]
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}"
    assert duplicated == 0, f"{duplicated} records are in the log twice"
    assert unacked == 0, f"{unacked} records in the log were never acknowledged"
    assert not holes, f"partitions {holes} have holes"
    assert not ledger.mismatched, ledger.mismatched[:5]
    assert not watch.backwards, f"committed offsets went backwards: {watch.backwards[:5]}"
    for g in groups:
        missing = set(acked) - ledger.consumed[g]
        assert not missing, f"{g} never consumed {len(missing)} records, e.g. {sorted(missing)[:5]}"
        for p, (_, h) in ends.items():
            assert watch.last[g].get(p) == h, f"{g}[{p}] committed {watch.last[g].get(p)}, high watermark {h}"
