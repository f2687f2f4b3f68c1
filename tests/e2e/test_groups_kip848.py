"""KIP-848's consumer group protocol (`group.protocol=consumer`) against a real
broker: confluent-kafka 2.16 (librdkafka 2.16) consumers and the raw
ConsumerGroupHeartbeat (68) / ConsumerGroupDescribe (69) APIs.

Brokers run with `--group-consumer-heartbeat-interval-ms 1000` (HB_MS) so
reconciliations take about a second per step.

* test_members_join_and_leave_incrementally: two consumers (threads, one
  Consumer each, manual synchronous commits of explicit offsets after each
  batch, `enable.auto.commit=false`) share a 6-partition topic with 6000
  records produced up front and 3000 more produced while they run; a third
  joins mid-way (the first two each revoke only the one partition that
  moves to it) and the first close()s mid-way. At each stable point the
  members' assignment() are disjoint, cover the 6 partitions evenly and
  match ConsumerGroupDescribe (via AdminClient describe_consumer_groups,
  group type CONSUMER, state Stable, assignor uniform). Every record is
  consumed (union over the consumers), each (partition, offset) at most
  twice and with the value the producer was told; no partition is ever held
  by two consumers at once (per partition, the on_assign..on_revoke
  intervals of different consumers never overlap, and each record was
  processed inside its consumer's interval); the committed offsets end at
  the high watermarks.
* test_no_stop_the_world_when_a_member_joins: consumer A reads a busy topic;
  B joins. A keeps its kept partitions throughout (it only ever revokes the
  partitions that move, its assignment never goes empty) and its
  consumption never pauses longer than 2 heartbeat intervals (measured),
  overall and per kept partition.
* test_regex_subscription_follows_new_topics: `^rx-<uuid>-.*`: records of
  rx-<uuid>-a are read; rx-<uuid>-b created later is assigned and read
  within 15 s; topics that do not match are never assigned nor read;
  ConsumerGroupDescribe shows the member's regex and no subscribed names.
* test_range_assignor: `group.remote.assignor=range`, two members, 5
  partitions: contiguous ranges [0,1,2] / [3,4], the larger one to the
  member with the smaller id; ConsumerGroupDescribe (AdminClient and raw)
  names the assignor `range`.
* test_session_timeout_moves_partitions_of_a_killed_member: broker with
  `--group-consumer-session-timeout-ms 6000`; of two member processes one is
  killed with SIGKILL (no leave heartbeat): within 12 s the survivor owns
  every partition and reads everything produced afterwards; the
  committed offsets end at the high watermarks.
* test_classic_and_consumer_groups_side_by_side: a classic group and a
  consumer-protocol group (both with auto commit) on one topic each read
  every record once and commit up to the high watermarks; a raw classic
  JoinGroup for the consumer group's id while it has a member gets
  INCONSISTENT_GROUP_PROTOCOL (23) and does not disturb it.
* test_raw_heartbeat_and_describe: raw ConsumerGroupHeartbeat v1 and
  ConsumerGroupDescribe v1: join (member id, epoch, heartbeat interval,
  assignment by topic id), a second member's incremental join step by step
  (the first is told to revoke while keeping its epoch, moves to the new
  epoch once it reports them gone, the second then gets them; Reconciling,
  then Stable), describe fields (state, epochs, assignor, member id/epoch/
  client id/subscription, assignment and target assignment with topic id
  and name); UNKNOWN_MEMBER_ID (25), FENCED_MEMBER_EPOCH (110),
  UNSUPPORTED_ASSIGNOR (112), INVALID_REGULAR_EXPRESSION (128) and
  GROUP_ID_NOT_FOUND (69); leaving (epoch -1) gives the partitions back and
  the last leave empties the group.
* test_committed_offsets_survive_restart: a consumer-protocol consumer
  processes part of a topic committing after each batch; after a SIGTERM
  restart of the broker the committed offsets are unchanged
  (list_consumer_group_offsets) and a new consumer of the group starts each
  partition exactly at them (committed() agrees) and reads on to the end:
  nothing before the last commit is read again, nothing is skipped.
"""

from __future__ import annotations

import struct
import threading
import time
import uuid
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Tuple

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

import kafka_wire as kw
from helpers import admin_client, base_conf, create_topic, make_producer, produce_all
from test_groups_member import Member, group_offsets, unique_values, wait_for, watermarks

HB_MS = 1000
HB_S = HB_MS / 1000

API_JOIN_GROUP = 11
API_CONSUMER_GROUP_HEARTBEAT = 68
API_CONSUMER_GROUP_DESCRIBE = 69

UNKNOWN_MEMBER_ID = 25
INCONSISTENT_GROUP_PROTOCOL = 23
GROUP_ID_NOT_FOUND = 69
FENCED_MEMBER_EPOCH = 110
UNSUPPORTED_ASSIGNOR = 112
INVALID_REGULAR_EXPRESSION = 128


def kip_broker(broker_factory, name: str = "broker", extra: Optional[list] = None):
    args = ["--group-consumer-heartbeat-interval-ms", str(HB_MS)] + list(extra or [])
    return broker_factory(name, extra_args=args)


def kip_conf(bootstrap: str, group: str, **extra) -> dict:
    """A consumer of the consumer protocol. session.timeout.ms,
    heartbeat.interval.ms and partition.assignment.strategy must not be set."""
    c = base_conf(bootstrap)
    c.update(
        {
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    c.update(extra)
    return c


def topic_id_bytes(admin: AdminClient, topic: str) -> bytes:
    from confluent_kafka import TopicCollection

    d = admin.describe_topics(TopicCollection([topic]), request_timeout=20)[topic].result(timeout=25)
    u = d.topic_id
    return struct.pack(">qq", u.get_most_significant_bits(), u.get_least_significant_bits())


# ---------------------------------------------------------------------------
# Consumers and producers in threads
# ---------------------------------------------------------------------------


class Reader(threading.Thread):
    """One Consumer in its own thread. Records what it processed (with the
    time), the rebalance callbacks (assign at callback start, revoke/lost at
    callback end) and assignment() samples after each consume()."""

    def __init__(self, name: str, conf: dict, topics: List[str], batch: int = 100,
                 per_record_s: float = 0.0, commit: bool = True,
                 report_committed: bool = False, until=None):
        super().__init__(name=f"reader-{name}", daemon=True)
        self.label = name
        self.conf = conf
        self.topics = topics
        self.batch = batch
        self.per_record_s = per_record_s
        self.commit = commit
        self.report_committed = report_committed
        self.until = until
        self.committed_reports: List[List[Tuple[str, int, int]]] = []
        self.records: List[Tuple[float, str, int, int, Optional[bytes]]] = []
        self.events: List[Tuple[str, float, frozenset]] = []
        self.samples: List[Tuple[float, frozenset]] = []
        self.errors: List[str] = []
        self.commit_failures: List[str] = []
        self.committed_to: Dict[Tuple[str, int], int] = {}
        self.member_id: Optional[str] = None
        self.stop_evt = threading.Event()
        self.exc: Optional[BaseException] = None
        self.subscribed_at: Optional[float] = None
        self.closed_at: Optional[float] = None

    # -- views for the test thread --
    def assignment(self) -> frozenset:
        return self.samples[-1][1] if self.samples else frozenset()

    def count(self) -> int:
        return len(self.records)

    def describe(self) -> str:
        state = "running" if self.is_alive() else "stopped"
        return (f"reader {self.label} ({state}): {len(self.records)} records, assignment "
                f"{sorted(self.assignment())}, member {self.member_id}, errors {self.errors[-3:]}, "
                f"commit failures {self.commit_failures[-3:]}, exception {self.exc!r}")

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.exc = e

    def _run(self) -> None:
        c = Consumer(self.conf)

        def parts(ps):
            return frozenset((tp.topic, tp.partition) for tp in ps)

        def on_assign(cons, ps):
            self.events.append(("assign", time.monotonic(), parts(ps)))
            if self.report_committed and ps:
                got = cons.committed(list(ps), timeout=10)
                self.committed_reports.append([(tp.topic, tp.partition, tp.offset) for tp in got])

        def on_revoke(cons, ps):
            self.events.append(("revoke", time.monotonic(), parts(ps)))

        def on_lost(cons, ps):
            self.events.append(("lost", time.monotonic(), parts(ps)))

        c.subscribe(self.topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        self.subscribed_at = time.monotonic()
        try:
            while not self.stop_evt.is_set():
                msgs = c.consume(num_messages=self.batch, timeout=0.2)
                now = time.monotonic()
                offsets: Dict[Tuple[str, int], int] = {}
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            self.errors.append(f"{err.name()}: {err}")
                        continue
                    self.records.append((now, m.topic(), m.partition(), m.offset(), m.value()))
                    key = (m.topic(), m.partition())
                    offsets[key] = max(offsets.get(key, 0), m.offset() + 1)
                if offsets and self.per_record_s:
                    time.sleep(self.per_record_s * len(msgs))
                if offsets and self.commit:
                    tps = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
                    try:
                        res = c.commit(offsets=tps, asynchronous=False)
                        bad = [f"{tp.topic}[{tp.partition}]@{tp.offset}: {tp.error}" for tp in res or []
                               if tp.error is not None]
                        if bad:
                            self.commit_failures.extend(bad)
                        else:
                            for k, o in offsets.items():
                                self.committed_to[k] = o
                    except KafkaException as e:
                        self.commit_failures.append(f"{sorted(offsets.items())}: {e}")
                self.samples.append((time.monotonic(), parts(c.assignment())))
                self.member_id = c.memberid()
                if self.until is not None and self.until(self):
                    break
        finally:
            c.close()
            self.closed_at = time.monotonic()
            self.events.append(("closed", self.closed_at, frozenset()))

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_evt.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.describe()}: did not stop (close()) within {timeout}s"

    def hold_intervals(self) -> Dict[Tuple[str, int], List[Tuple[float, float]]]:
        """Per partition, [on_assign start, on_revoke end] intervals (open ones
        end when close() returned, or now)."""
        opened: Dict[Tuple[str, int], float] = {}
        out: Dict[Tuple[str, int], List[Tuple[float, float]]] = defaultdict(list)
        for kind, t, ps in list(self.events):
            if kind == "assign":
                for tp in ps:
                    opened.setdefault(tp, t)
            elif kind in ("revoke", "lost"):
                for tp in ps:
                    if tp in opened:
                        out[tp].append((opened.pop(tp), t))
        end = self.closed_at if self.closed_at is not None else time.monotonic()
        for tp, t in opened.items():
            out[tp].append((t, end))
        return out


class Pacer(threading.Thread):
    """Produces `rate` records/s (values f"{tag}-{i:06d}", partition i % n)
    until stopped or `total` were produced; keeps the delivery reports."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, tag: str, rate: float,
                 total: Optional[int] = None):
        super().__init__(name=f"pacer-{tag}", daemon=True)
        self.p = make_producer(bootstrap, **{"linger.ms": 5})
        self.topic, self.n, self.tag, self.rate, self.total = topic, partitions, tag, rate, total
        self.sent: Dict[bytes, Tuple[int, int]] = {}
        self.errors: List[str] = []
        self.stop_evt = threading.Event()
        self.produced = 0

    def run(self) -> None:
        def done(err, msg):
            if err is not None:
                self.errors.append(str(err))
            else:
                self.sent[msg.value()] = (msg.partition(), msg.offset())

        start = time.monotonic()
        i = 0
        while not self.stop_evt.is_set() and (self.total is None or i < self.total):
            if i > self.rate * (time.monotonic() - start):
                self.p.poll(0.01)
                continue
            self.p.produce(self.topic, value=f"{self.tag}-{i:06d}".encode(), partition=i % self.n,
                           on_delivery=done)
            i += 1
            self.p.poll(0)
        self.produced = i
        left = self.p.flush(30)
        if left:
            self.errors.append(f"{left} records undelivered after 30 s")
        self.p = None  # destroyed here, not left retrying a stopped broker

    def finish(self, timeout: float = 60.0) -> Dict[bytes, Tuple[int, int]]:
        """Waits for `total` records (or stops now if there is no total)."""
        if self.total is None:
            self.stop_evt.set()
        self.join(timeout)
        assert not self.is_alive(), "producer thread did not finish"
        assert not self.errors, f"producer errors: {self.errors[:5]}"
        assert len(self.sent) == self.produced, f"{len(self.sent)} acks for {self.produced} records"
        return self.sent


def wait_until(cond, timeout: float, what: str, readers=(), diag=None, interval: float = 0.1) -> float:
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return time.monotonic()
        for r in readers:
            if r.exc is not None or (not r.is_alive() and not r.stop_evt.is_set()):
                raise AssertionError(f"while waiting for {what}: {r.describe()}")
        if time.monotonic() > deadline:
            extra = diag() if diag else ""
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}\n"
                + "\n".join(r.describe() for r in readers) + (f"\n{extra}" if extra else "")
            )
        time.sleep(interval)


def all_parts(topic: str, n: int) -> frozenset:
    return frozenset((topic, p) for p in range(n))


def cover(readers, topic: str, n: int, sizes: List[int]) -> bool:
    asg = [r.assignment() for r in readers]
    union = frozenset().union(*asg)
    return (sum(len(a) for a in asg) == len(union) and union == all_parts(topic, n)
            and sorted(len(a) for a in asg) == sorted(sizes))


def wait_stable(readers, topic: str, n: int, sizes: List[int], timeout: float, what: str) -> float:
    """The readers' assignments are disjoint, cover the topic with these
    sizes, and stay so over 2 heartbeat intervals. Returns when that began."""
    deadline = time.monotonic() + timeout
    while True:
        t = wait_until(lambda: cover(readers, topic, n, sizes), max(deadline - time.monotonic(), 0.1),
                       what, readers)
        snapshot = [r.assignment() for r in readers]
        held = True
        until = time.monotonic() + 2 * HB_S
        while time.monotonic() < until:
            if [r.assignment() for r in readers] != snapshot:
                held = False
                break
            time.sleep(0.1)
        if held:
            return t
        assert time.monotonic() < deadline, f"{what}: assignments kept changing"


def describe_group(admin: AdminClient, group: str):
    futs = admin.describe_consumer_groups([group], request_timeout=20)
    return futs[group].result(timeout=25)


def check_described(admin: AdminClient, group: str, readers, assignor: str, timeout: float = 15.0):
    """AdminClient describe_consumer_groups (ConsumerGroupDescribe): a
    consumer-protocol group, Stable, these members with these assignments."""
    expected = {r.member_id: sorted(r.assignment()) for r in readers}
    last = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = describe_group(admin, group)
        got = {m.member_id: sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions)
               for m in d.members}
        target = {m.member_id: sorted((tp.topic, tp.partition) for tp in m.target_assignment.topic_partitions)
                  if m.target_assignment else None for m in d.members}
        last = (str(d.type), str(d.state), d.partition_assignor, got, target)
        if (str(d.type).endswith("CONSUMER") and str(d.state).endswith("STABLE")
                and d.partition_assignor == assignor and got == expected and target == expected):
            return d
        time.sleep(0.3)
    raise AssertionError(
        f"describe_consumer_groups({group!r}) never showed a Stable consumer group with assignor "
        f"{assignor!r} and assignments (= targets) {expected}; last (type, state, assignor, "
        f"assignment, target): {last}"
    )


# ---------------------------------------------------------------------------
# Raw protocol
# ---------------------------------------------------------------------------


def flex_request(conn: kw.WireConnection, api: int, version: int, body: bytes) -> kw.Reader:
    r = conn.request(api, version, body, flexible_header=True)
    r.skip_tags()  # response header v1
    return r


def heartbeat(conn, group: str, member_id: str, epoch: int, topics: Optional[List[str]] = None,
              regex: Optional[str] = None, assignor: Optional[str] = None,
              owned: Optional[Dict[bytes, List[int]]] = None, rebalance_timeout_ms: int = 30000,
              instance_id: Optional[str] = None, version: int = 1) -> dict:
    """ConsumerGroupHeartbeat v0/v1; `None` fields are sent as null
    (unchanged). Returns the decoded response."""
    w = kw.Writer()
    w.string(group, True).string(member_id, True).int32(epoch)
    w.string(instance_id, True).string(None, True).int32(rebalance_timeout_ms)
    if topics is None:
        w.array_len(None, True)
    else:
        w.array_len(len(topics), True)
        for t in topics:
            w.string(t, True)
    if version >= 1:
        w.string(regex, True)
    w.string(assignor, True)
    if owned is None:
        w.array_len(None, True)
    else:
        w.array_len(len(owned), True)
        for tid, ps in owned.items():
            w.uuid(tid)
            w.array_len(len(ps), True)
            for p in ps:
                w.int32(p)
            w.tags()
    w.tags()
    r = flex_request(conn, API_CONSUMER_GROUP_HEARTBEAT, version, w.getvalue())
    out = {"throttle": r.int32(), "error": r.int16(), "message": r.string(True),
           "member_id": r.string(True), "epoch": r.int32(), "interval": r.int32(), "assignment": None}
    if r.int8() >= 0:
        asg = {}
        for _ in range(max(r.array_len(True), 0)):
            tid = r.uuid()
            asg[tid] = sorted(r.int32() for _ in range(max(r.array_len(True), 0)))
            r.skip_tags()
        r.skip_tags()
        out["assignment"] = asg
    r.skip_tags()
    kw.expect_end(r, f"ConsumerGroupHeartbeat v{version} response")
    return out


def _described_assignment(r: kw.Reader) -> Dict[Tuple[bytes, str], List[int]]:
    out = {}
    for _ in range(max(r.array_len(True), 0)):
        tid, name = r.uuid(), r.string(True)
        out[(tid, name)] = sorted(r.int32() for _ in range(max(r.array_len(True), 0)))
        r.skip_tags()
    r.skip_tags()
    return out


def describe_raw(conn, groups: List[str], version: int = 1) -> List[dict]:
    """ConsumerGroupDescribe v0/v1."""
    w = kw.Writer().array_len(len(groups), True)
    for g in groups:
        w.string(g, True)
    w.bool(False).tags()
    r = flex_request(conn, API_CONSUMER_GROUP_DESCRIBE, version, w.getvalue())
    r.int32()  # throttle
    out = []
    for _ in range(max(r.array_len(True), 0)):
        g = {"error": r.int16(), "message": r.string(True), "group_id": r.string(True),
             "state": r.string(True), "epoch": r.int32(), "assignment_epoch": r.int32(),
             "assignor": r.string(True), "members": []}
        for _ in range(max(r.array_len(True), 0)):
            m = {"member_id": r.string(True), "instance_id": r.string(True), "rack_id": r.string(True),
                 "epoch": r.int32(), "client_id": r.string(True), "client_host": r.string(True),
                 "topics": [r.string(True) for _ in range(max(r.array_len(True), 0))],
                 "regex": r.string(True)}
            m["assignment"] = _described_assignment(r)
            m["target"] = _described_assignment(r)
            if version >= 1:
                m["member_type"] = r.int8()
            r.skip_tags()
            g["members"].append(m)
        r.int32()  # authorized operations
        r.skip_tags()
        out.append(g)
    r.skip_tags()
    kw.expect_end(r, f"ConsumerGroupDescribe v{version} response")
    return out


def join_group_classic(conn, group: str, topics: List[str]) -> dict:
    """A classic JoinGroup v5 (consumer protocol type, range)."""
    meta = kw.Writer().int16(0).int32(len(topics))
    for t in topics:
        meta.string(t)
    meta.bytes_(None)
    w = kw.Writer().string(group).int32(10000).int32(30000).string("").string(None).string("consumer")
    w.int32(1).string("range").bytes_(meta.getvalue())
    r = conn.request(API_JOIN_GROUP, 5, w.getvalue(), flexible_header=False)
    out = {"throttle": r.int32(), "error": r.int16(), "generation": r.int32(),
           "protocol": r.string(), "leader": r.string(), "member_id": r.string()}
    out["members"] = [(r.string(), r.string(), r.bytes_()) for _ in range(max(r.int32(), 0))]
    kw.expect_end(r, "JoinGroup v5 response")
    return out


def wire(broker) -> kw.WireConnection:
    return kw.WireConnection("127.0.0.1", broker.kafka_port, client_id="kip848-wire")


# ---------------------------------------------------------------------------
# 1. joins and leaves: incremental, nothing lost, never two owners at once
# ---------------------------------------------------------------------------


def check_exclusive(readers) -> None:
    """No partition held by two readers at once; every record processed by a
    reader inside one of its hold intervals of that partition."""
    holds = {r.label: r.hold_intervals() for r in readers}
    overlaps = []
    for i, a in enumerate(readers):
        for b in readers[i + 1:]:
            for tp, ivs in holds[a.label].items():
                for (s1, e1) in ivs:
                    for (s2, e2) in holds[b.label].get(tp, []):
                        if s1 < e2 and s2 < e1:
                            overlaps.append((tp, a.label, round(s1, 3), round(e1, 3), b.label, round(s2, 3),
                                             round(e2, 3)))
    assert not overlaps, f"partitions held by two consumers at the same time: {overlaps[:5]}"
    outside = []
    for r in readers:
        for (t, topic, p, o, _v) in r.records:
            if not any(s <= t <= e for s, e in holds[r.label].get((topic, p), [])):
                outside.append((r.label, topic, p, o, round(t, 3)))
    assert not outside, (
        f"{len(outside)} records processed while the consumer did not hold the partition, e.g. {outside[:5]}; "
        f"holds {{r: {{tp: ivs}}}}: { {k: dict(v) for k, v in holds.items()} }"
    )


@pytest.mark.e2e_timeout(150)
def test_members_join_and_leave_incrementally(broker_factory):
    broker = kip_broker(broker_factory)
    topic, group, n = "kip-join-leave", "kip-join-leave-g", 6
    create_topic(broker.bootstrap, topic, n)
    admin = admin_client(broker.bootstrap)
    sent: Dict[bytes, Tuple[int, int]] = {}
    for d in produce_all(make_producer(broker.bootstrap), topic, unique_values("a", 6000, n)):
        sent[d.value] = (d.partition, d.offset)

    def reader(name):
        # ~500 records/s each: the up-front records last several seconds.
        return Reader(name, kip_conf(broker.bootstrap, group, **{"client.id": f"kip-{name}"}), [topic],
                      batch=50, per_record_s=0.002)

    a, b, c = reader("a"), reader("b"), reader("c")
    readers = [a, b, c]
    pacer = Pacer(broker.bootstrap, topic, n, "b", rate=250, total=3000)
    try:
        a.start()
        b.start()
        wait_stable([a, b], topic, n, [3, 3], 30, "a and b owning 3 partitions each")
        check_described(admin, group, [a, b], "uniform")
        assert a.count() + b.count() < 6000, "the up-front records were all read before the first stable point"

        pacer.start()
        wait_until(lambda: a.count() + b.count() >= 1500, 30, "1500 records read by a and b", [a, b])
        before = {r.label: (len(r.events), r.assignment()) for r in (a, b)}
        c.start()
        t_c = wait_stable([a, b, c], topic, n, [2, 2, 2], 30, "a, b, c owning 2 partitions each")
        print(f"\nthird member settled {t_c - c.subscribed_at:.2f}s after subscribe()")
        check_described(admin, group, [a, b, c], "uniform")
        for r in (a, b):
            idx, had = before[r.label]
            later = r.events[idx:]
            revoked = {tp for kind, _, ps in later if kind in ("revoke", "lost") for tp in ps}
            assert len(had) == 3 and revoked == had - r.assignment() and len(revoked) == 1, (
                f"{r.label} had {sorted(had)}, now {sorted(r.assignment())}; while c joined it was told "
                f"{[(k, sorted(p)) for k, _, p in later]} (incremental: revoke only the one that moves)"
            )

        wait_until(lambda: c.count() >= 200, 30, "c reading 200 records", readers)
        kept = {r.label: set(r.assignment()) for r in (b, c)}
        a_had = set(a.assignment())
        a.stop()  # close(): leaves the group
        wait_stable([b, c], topic, n, [3, 3], 20, "b and c owning 3 partitions each after a's close()")
        # A member leaving moves only its own partitions (sticky).
        for r in (b, c):
            now = set(r.assignment())
            assert kept[r.label] <= now and now - kept[r.label] <= a_had, (
                f"{r.label} had {sorted(kept[r.label])}, now {sorted(now)}; a had {sorted(a_had)}"
            )
        check_described(admin, group, [b, c], "uniform")

        for k, v in pacer.finish().items():
            sent[k] = v
        hwm = watermarks(broker.bootstrap, topic, n)
        assert sum(hwm.values()) == len(sent) == 9000, f"high watermarks {hwm}, {len(sent)} acknowledged"

        def read_all():
            seen = {(p, o) for r in readers for (_, _, p, o, _) in r.records}
            return len(seen) == 9000

        wait_until(read_all, 60, "all 9000 records read", [b, c])
        wait_until(lambda: group_offsets(admin, group) == {(topic, p): hwm[p] for p in range(n)}, 30,
                   f"committed offsets == high watermarks {hwm}", [b, c],
                   diag=lambda: f"committed: {group_offsets(admin, group)}")
    finally:
        for r in readers:
            if r.is_alive():
                r.stop_evt.set()
        for r in readers:
            if r.is_alive():
                r.join(30)
        if pacer.is_alive():
            pacer.stop_evt.set()
            pacer.join(30)

    for r in readers:
        assert r.exc is None, r.describe()
        assert not r.errors, f"{r.label}: consume errors {r.errors[:5]}"
        assert not r.commit_failures, f"{r.label}: commit failures {r.commit_failures[:5]}"

    wrong = [(r.label, p, o, v, sent.get(v)) for r in readers for (_, _, p, o, v) in r.records
             if sent.get(v) != (p, o)]
    assert not wrong, f"records read with a value the producer did not put there: {wrong[:5]}"
    seen = Counter((p, o) for r in readers for (_, _, p, o, _) in r.records)
    assert set(seen) == set(sent.values()), (
        f"{len(set(sent.values()) - set(seen))} records never consumed, e.g. "
        f"{sorted(set(sent.values()) - set(seen))[:10]}"
    )
    thrice = {k: v for k, v in seen.items() if v > 2}
    assert not thrice, f"records processed more than twice: {sorted(thrice.items())[:10]}"
    check_exclusive(readers)
    dups = sum(1 for v in seen.values() if v == 2)
    print(f"records read twice (after a move): {dups}; per reader "
          f"{ {r.label: r.count() for r in readers} }")


# ---------------------------------------------------------------------------
# 2. no stop-the-world
# ---------------------------------------------------------------------------


def max_gap(times: List[float], t0: float, t1: float) -> float:
    ts = sorted(t for t in times if t0 <= t <= t1)
    if not ts:
        return t1 - t0
    pts = [t0] + ts + [t1]
    return max(y - x for x, y in zip(pts, pts[1:]))


@pytest.mark.e2e_timeout(90)
def test_no_stop_the_world_when_a_member_joins(broker_factory):
    broker = kip_broker(broker_factory)
    topic, group, n = "kip-busy", "kip-busy-g", 4
    create_topic(broker.bootstrap, topic, n)
    pacer = Pacer(broker.bootstrap, topic, n, "busy", rate=400)
    a = Reader("a", kip_conf(broker.bootstrap, group), [topic], batch=100)
    b = Reader("b", kip_conf(broker.bootstrap, group), [topic], batch=100)
    try:
        pacer.start()
        a.start()
        wait_stable([a], topic, n, [4], 30, "a owning all 4 partitions")
        wait_until(lambda: a.count() >= 1200, 20, "a reading steadily", [a])
        a_events_before = len(a.events)
        t_join = time.monotonic()
        b.start()
        t_stable = wait_stable([a, b], topic, n, [2, 2], 30, "a and b owning 2 partitions each")
        time.sleep(2 * HB_S)
        t_end = time.monotonic()
    finally:
        for r in (a, b):
            r.stop_evt.set()
        pacer.stop_evt.set()
        for r in (a, b):
            r.join(30)
        pacer.join(30)
    for r in (a, b):
        assert r.exc is None and not r.errors, r.describe()

    later = [e for e in a.events[a_events_before:] if e[1] <= t_end]  # not close()'s revocation
    kept = set([asg for t, asg in a.samples if t <= t_end][-1])
    revoked = {tp for kind, _, ps in later if kind in ("revoke", "lost") for tp in ps}
    assert revoked == all_parts(topic, n) - kept, (
        f"a revoked {sorted(revoked)} while b joined and kept {sorted(kept)}: only the moved partitions "
        f"may be revoked (events {[(k, sorted(p)) for k, _, p in later]})"
    )
    assert not [e for e in later if e[0] == "lost"], f"a lost partitions: {later}"
    # a's assignment samples never went empty.
    empty = [t for t, asg in a.samples if t >= t_join and not asg]
    assert not empty, f"a's assignment() was empty {len(empty)} times during b's join"

    window = (t_join - 1.0, t_end)
    gap = max_gap([t for (t, *_r) in a.records], *window)
    per_kept = {tp: max_gap([t for (t, tt, p, _o, _v) in a.records if (tt, p) == tp], *window) for tp in kept}
    print(f"\nb assigned {t_stable - t_join:.2f}s after subscribe(); a's longest pause {gap:.3f}s "
          f"overall, per kept partition { {p: round(g, 3) for (_, p), g in per_kept.items()} }")
    limit = 2 * HB_S
    assert gap <= limit, (
        f"consumer a did not receive records for {gap:.2f}s while b joined (limit {limit}s = 2 heartbeat "
        f"intervals): a stop-the-world rebalance"
    )
    assert all(g <= limit for g in per_kept.values()), (
        f"a's kept partitions paused while b joined: longest gaps {per_kept} (limit {limit}s)"
    )
    assert b.count() > 0, "b never read anything"


# ---------------------------------------------------------------------------
# 3. regex subscriptions
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(90)
def test_regex_subscription_follows_new_topics(broker_factory):
    broker = kip_broker(broker_factory)
    u = uuid.uuid4().hex[:8]
    ta, tb = f"rx-{u}-a", f"rx-{u}-b"
    others = [f"zz-rx-{u}-c", f"rx-{u}"]  # no match: wrong prefix; no dash after the id
    admin = admin_client(broker.bootstrap)
    create_topic(admin, ta, 3)
    for t in others:
        create_topic(admin, t, 1)
    producer = make_producer(broker.bootstrap)
    produce_all(producer, ta, unique_values("a", 300, 3))
    for t in others:
        produce_all(producer, t, unique_values("x", 50, 1))

    group = f"rx-g-{u}"
    r = Reader("rx", kip_conf(broker.bootstrap, group), [f"^rx-{u}-.*"], commit=True)
    try:
        r.start()
        wait_until(lambda: sum(1 for x in r.records if x[1] == ta) >= 300, 30, f"300 records of {ta}", [r])

        with wire(broker) as conn:
            d = describe_raw(conn, [group])[0]
        assert d["error"] == 0 and len(d["members"]) == 1, f"describe: {d}"
        m = d["members"][0]
        assert m["regex"] is not None and f"rx-{u}-" in m["regex"] and m["topics"] == [], (
            f"ConsumerGroupDescribe member subscription: names {m['topics']}, regex {m['regex']!r}"
        )
        assert {name for (_, name) in m["target"]} == {ta}, f"target assignment {m['target']}"

        t_create = time.monotonic()
        create_topic(admin, tb, 2)
        produce_all(producer, tb, unique_values("b", 200, 2))
        t_read = wait_until(lambda: sum(1 for x in r.records if x[1] == tb) >= 200, 15,
                            f"200 records of the later topic {tb} within 15 s", [r])
        print(f"\n{tb}: read {t_read - t_create:.2f}s after it was created")
        wait_until(lambda: r.assignment() == all_parts(ta, 3) | all_parts(tb, 2), 10,
                   "assignment = both matching topics", [r])
        time.sleep(2 * HB_S)
        with wire(broker) as conn:
            m = describe_raw(conn, [group])[0]["members"][0]
        assert {name: ps for (_, name), ps in m["assignment"].items()} == {ta: [0, 1, 2], tb: [0, 1]}, (
            f"described assignment {m['assignment']}"
        )
    finally:
        r.stop()
    assert r.exc is None and not r.errors and not r.commit_failures, r.describe()
    assigned_topics = {tp[0] for _, _, ps in r.events for tp in ps} | {tp[0] for _, asg in r.samples for tp in asg}
    assert assigned_topics == {ta, tb}, f"topics ever assigned: {sorted(assigned_topics)}"
    read_topics = Counter(x[1] for x in r.records)
    assert dict(read_topics) == {ta: 300, tb: 200}, f"records read per topic: {dict(read_topics)}"


# ---------------------------------------------------------------------------
# 4. range assignor
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(60)
def test_range_assignor(broker_factory):
    broker = kip_broker(broker_factory)
    topic, group, n = "kip-range", "kip-range-g", 5
    create_topic(broker.bootstrap, topic, n)
    admin = admin_client(broker.bootstrap)
    rs = [Reader(x, kip_conf(broker.bootstrap, group, **{"group.remote.assignor": "range"}), [topic])
          for x in ("a", "b")]
    try:
        for r in rs:
            r.start()
        wait_stable(rs, topic, n, [3, 2], 30, "two range members with 3 and 2 partitions")
        check_described(admin, group, rs, "range")
        with wire(broker) as conn:
            d = describe_raw(conn, [group])[0]
        assert (d["error"], d["state"], d["assignor"]) == (0, "Stable", "range"), f"raw describe: {d}"
    finally:
        for r in rs:
            r.stop()
    for r in rs:
        assert r.exc is None and not r.errors, r.describe()
    by_id = sorted((r.member_id, sorted(p for _, p in r.assignment())) for r in rs)
    for mid, ps in by_id:
        assert ps == list(range(ps[0], ps[0] + len(ps))), f"member {mid}: partitions {ps} not contiguous"
    assert [ps for _, ps in by_id] == [[0, 1, 2], [3, 4]], (
        f"range assignment by member id order: {by_id}; expected [0, 1, 2] for the smaller id, [3, 4]"
    )


# ---------------------------------------------------------------------------
# 5. session timeout
# ---------------------------------------------------------------------------

SESSION_MS = 6000


@pytest.mark.e2e_timeout(120)
def test_session_timeout_moves_partitions_of_a_killed_member(broker_factory, tmp_path):
    broker = kip_broker(broker_factory, extra=["--group-consumer-session-timeout-ms", str(SESSION_MS)])
    topic, group, n = "kip-session", "kip-session-g", 4
    create_topic(broker.bootstrap, topic, n)
    admin = admin_client(broker.bootstrap)
    producer = make_producer(broker.bootstrap)
    conf = {"group.protocol": "consumer"}
    s = Member(tmp_path, "survivor", broker.bootstrap, group, [topic], conf=conf)
    v = Member(tmp_path, "victim", broker.bootstrap, group, [topic], conf=conf)
    members = [s, v]
    sent = {}
    try:
        def settled():
            asg = [m.assignment() for m in members]
            return (all(a is not None and len(a) == 2 for a in asg)
                    and sorted(asg[0] + asg[1]) == [(topic, p) for p in range(n)])

        wait_for(settled, 30, "survivor and victim owning 2 partitions each", members)
        for d in produce_all(producer, topic, unique_values("s1", 400, n)):
            sent[d.value.decode()] = (d.partition, d.offset)
        wait_for(lambda: {e["v"] for m in members for e in m.of("commit")} >= set(sent), 30,
                 "phase-1 records committed", members)
        v_parts = set(v.assignment())

        t_kill = v.kill9()
        for d in produce_all(producer, topic, unique_values("s2", 400, n)):
            sent[d.value.decode()] = (d.partition, d.offset)
        t_moved = wait_for(lambda: s.assignment() == [(topic, p) for p in range(n)], 30,
                           "the survivor owning all 4 partitions", [s])
        moved = t_moved - t_kill
        print(f"\nkilled member's partitions moved after {moved:.2f}s (session timeout {SESSION_MS} ms)")
        assert moved <= 12.0, (
            f"the SIGKILLed member's partitions {sorted(v_parts)} reached the survivor after {moved:.2f}s, "
            f"expected <= 12 s with --group-consumer-session-timeout-ms {SESSION_MS}"
        )
        assert moved >= SESSION_MS / 1000 - 1.0, f"partitions moved after {moved:.2f}s, before the session timeout"

        hwm = watermarks(broker.bootstrap, topic, n)
        wait_for(lambda: {e["v"] for e in s.of("msg")} >= {k for k in sent if k.startswith("s2-")}, 30,
                 "the survivor reading every phase-2 record", [s])
        wait_for(lambda: group_offsets(admin, group) == {(topic, p): hwm[p] for p in range(n)}, 30,
                 f"committed offsets == high watermarks {hwm}", [s],
                 diag=lambda: f"committed {group_offsets(admin, group)}")
        d = describe_group(admin, group)
        assert [m.member_id for m in d.members] == [s.member_id()], (
            f"described members {[m.member_id for m in d.members]}, survivor {s.member_id()}"
        )
    finally:
        for m in members:
            m.stop()
    s.refresh()
    errors = [e for m in members for e in m.of("error", "commit_failed")]
    assert not errors, f"member errors: {errors[:5]}"
    processed = {e["v"] for m in members for e in m.of("msg")}
    assert processed >= set(sent), f"never processed: {sorted(set(sent) - processed)[:10]}"


# ---------------------------------------------------------------------------
# 6. classic and consumer groups side by side
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(90)
def test_classic_and_consumer_groups_side_by_side(broker_factory):
    broker = kip_broker(broker_factory)
    topic, n = "kip-side", 4
    g_classic, g_kip = "side-classic", "side-consumer"
    create_topic(broker.bootstrap, topic, n)
    admin = admin_client(broker.bootstrap)
    producer = make_producer(broker.bootstrap)
    sent = {d.value: (d.partition, d.offset) for d in produce_all(producer, topic, unique_values("s", 2000, n))}
    auto = {"enable.auto.commit": True, "auto.commit.interval.ms": 500}
    classic_conf = {**base_conf(broker.bootstrap), "group.id": g_classic, "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 100, **auto}
    classic = Reader("classic", classic_conf, [topic], commit=False)
    kip = Reader("consumer", kip_conf(broker.bootstrap, g_kip, **auto), [topic], commit=False)
    readers = [classic, kip]
    try:
        for r in readers:
            r.start()
        wait_until(lambda: classic.count() >= 2000 and kip.count() >= 2000, 40, "both groups reading 2000",
                   readers)
        wait_until(lambda: kip.assignment() == all_parts(topic, n), 10, "the consumer member owning all", readers)

        with wire(broker) as conn:
            j = join_group_classic(conn, g_kip, [topic])
        assert j["error"] == INCONSISTENT_GROUP_PROTOCOL, (
            f"classic JoinGroup v5 for consumer group {g_kip!r} (1 member): {j}, expected error "
            f"INCONSISTENT_GROUP_PROTOCOL (23)"
        )
        d = describe_group(admin, g_kip)
        assert [m.member_id for m in d.members] == [kip.member_id] and str(d.state).endswith("STABLE"), (
            f"after the refused JoinGroup: {d.state}, members {[m.member_id for m in d.members]}"
        )
        dc = describe_group(admin, g_classic)
        assert str(dc.type).endswith("CLASSIC") and len(dc.members) == 1, (
            f"classic group described as {dc.type} with {len(dc.members)} members"
        )

        for dlv in produce_all(producer, topic, unique_values("t", 400, n)):
            sent[dlv.value] = (dlv.partition, dlv.offset)
        hwm = watermarks(broker.bootstrap, topic, n)
        want = {(topic, p): hwm[p] for p in range(n)}
        for g in (g_classic, g_kip):
            wait_until(lambda: group_offsets(admin, g) == want, 30, f"group {g} committed {want}", readers,
                       diag=lambda: f"committed: {group_offsets(admin, g)}")
        assert kip.assignment() == all_parts(topic, n), f"consumer member's assignment {sorted(kip.assignment())}"
    finally:
        for r in readers:
            r.stop()
    for r in readers:
        assert r.exc is None and not r.errors, r.describe()
        got = Counter((p, o) for (_, _, p, o, _) in r.records)
        assert set(got) == set(sent.values()), (
            f"{r.label} group: {len(set(sent.values()) - set(got))} records missing"
        )
        assert max(got.values()) == 1, f"{r.label} group read records twice: {[k for k, c in got.items() if c > 1][:5]}"


# ---------------------------------------------------------------------------
# 7. raw ConsumerGroupHeartbeat / ConsumerGroupDescribe
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(60)
def test_raw_heartbeat_and_describe(broker_factory):
    broker = kip_broker(broker_factory)
    topic, group = "kip-wire", "kip-wire-g"
    admin = admin_client(broker.bootstrap)
    create_topic(admin, topic, 4)
    tid = topic_id_bytes(admin, topic)
    m1, m2 = f"m1-{uuid.uuid4().hex}", f"m2-{uuid.uuid4().hex}"
    with wire(broker) as conn:
        # -- m1 joins alone: everything -----------------------------------
        h = heartbeat(conn, group, m1, 0, topics=[topic], owned={})
        assert (h["error"], h["member_id"], h["interval"]) == (0, m1, HB_MS), f"join m1: {h}"
        e1 = h["epoch"]
        assert e1 >= 1 and h["assignment"] == {tid: [0, 1, 2, 3]}, f"join m1: {h}"

        d = describe_raw(conn, [group])[0]
        assert (d["error"], d["group_id"], d["state"], d["epoch"], d["assignment_epoch"], d["assignor"]) == (
            0, group, "Stable", e1, e1, "uniform"), f"describe after m1 joined: {d}"
        assert len(d["members"]) == 1, d
        m = d["members"][0]
        assert (m["member_id"], m["epoch"], m["client_id"], m["topics"], m["regex"]) == (
            m1, e1, "kip848-wire", [topic], None), f"described member: {m}"
        assert m["client_host"] and "127.0.0.1" in m["client_host"], f"client host {m['client_host']!r}"
        assert m["assignment"] == {(tid, topic): [0, 1, 2, 3]} == m["target"], f"described member: {m}"

        # -- m2 joins: nothing free yet -----------------------------------
        h2 = heartbeat(conn, group, m2, 0, topics=[topic], owned={})
        assert h2["error"] == 0 and h2["epoch"] > e1 and h2["assignment"] in ({}, {tid: []}), (
            f"join m2 while m1 holds everything: {h2}"
        )
        e2 = h2["epoch"]
        d = describe_raw(conn, [group])[0]
        assert (d["state"], d["epoch"], d["assignment_epoch"]) == ("Reconciling", e2, e2), f"describe: {d}"
        targets = {x["member_id"]: x["target"].get((tid, topic), []) for x in d["members"]}
        assert sorted(len(t) for t in targets.values()) == [2, 2] and set(targets[m1]).isdisjoint(targets[m2]), (
            f"targets {targets}"
        )

        # -- m1 is told to revoke, keeping its epoch ----------------------
        h = heartbeat(conn, group, m1, e1, owned={tid: [0, 1, 2, 3]})
        assert h["error"] == 0 and h["epoch"] == e1, f"m1 revoking: {h}"
        kept = (h["assignment"] or {}).get(tid)
        assert kept == targets[m1], f"m1 told to keep {kept}, its target is {targets[m1]}: {h}"
        # m2 cannot have them before m1 reports them gone.
        h = heartbeat(conn, group, m2, e2, owned={})
        assert h["error"] == 0 and h["assignment"] is None, f"m2 before m1 released: {h}"
        # m1 reports them gone: it moves to the group epoch.
        h = heartbeat(conn, group, m1, e1, owned={tid: kept})
        assert (h["error"], h["epoch"], h["assignment"]) == (0, e2, None), f"m1 after revoking: {h}"
        # m2 gets the released partitions.
        h = heartbeat(conn, group, m2, e2, owned={})
        assert (h["error"], h["epoch"]) == (0, e2) and h["assignment"] == {tid: targets[m2]}, f"m2: {h}"
        d = describe_raw(conn, [group])[0]
        assert d["state"] == "Stable", f"describe after reconciliation: {d}"
        got = {x["member_id"]: (x["epoch"], x["assignment"], x["target"]) for x in d["members"]}
        assert got == {m1: (e2, {(tid, topic): kept}, {(tid, topic): kept}),
                       m2: (e2, {(tid, topic): targets[m2]}, {(tid, topic): targets[m2]})}, f"members: {got}"

        # -- errors ---------------------------------------------------------
        h = heartbeat(conn, group, "ghost-member", 3)
        assert h["error"] == UNKNOWN_MEMBER_ID, f"unknown member, epoch 3: {h}"
        h = heartbeat(conn, group, m1, e2 + 5)
        assert h["error"] == FENCED_MEMBER_EPOCH, f"m1 with epoch {e2 + 5} (its epoch is {e2}): {h}"
        h = heartbeat(conn, group, f"m3-{uuid.uuid4().hex}", 0, topics=[topic], assignor="no-such-assignor")
        assert h["error"] == UNSUPPORTED_ASSIGNOR, f"server assignor 'no-such-assignor': {h}"
        h = heartbeat(conn, group, f"m4-{uuid.uuid4().hex}", 0, topics=[], regex="rx-(")
        assert h["error"] == INVALID_REGULAR_EXPRESSION, f"regex 'rx-(': {h}"
        d = describe_raw(conn, [group])[0]
        assert sorted(x["member_id"] for x in d["members"]) == sorted([m1, m2]) and d["epoch"] == e2, (
            f"refused heartbeats changed the group: {d}"
        )
        unknown = describe_raw(conn, ["no-such-group-kip848", group])
        assert [(g["group_id"], g["error"]) for g in unknown] == [("no-such-group-kip848", GROUP_ID_NOT_FOUND),
                                                                  (group, 0)], f"describe: {unknown}"
        d0 = describe_raw(conn, [group], version=0)[0]
        assert (d0["state"], len(d0["members"])) == ("Stable", 2), f"ConsumerGroupDescribe v0: {d0}"

        # -- leaving --------------------------------------------------------
        h = heartbeat(conn, group, m2, -1)
        assert (h["error"], h["epoch"]) == (0, -1), f"m2 leaving: {h}"
        h = heartbeat(conn, group, m1, e2, owned={tid: kept})
        assert h["error"] == 0 and h["epoch"] > e2 and h["assignment"] == {tid: [0, 1, 2, 3]}, (
            f"m1 after m2 left: {h}"
        )
        h = heartbeat(conn, group, m1, -1)
        assert (h["error"], h["epoch"]) == (0, -1), f"m1 leaving: {h}"
        d = describe_raw(conn, [group])[0]
        assert (d["error"], d["state"], d["members"]) == (0, "Empty", []), f"describe after both left: {d}"


# ---------------------------------------------------------------------------
# 8. committed offsets across a restart
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(90)
def test_committed_offsets_survive_restart(broker_factory):
    broker = kip_broker(broker_factory)
    topic, group, n = "kip-restart", "kip-restart-g", 3
    create_topic(broker.bootstrap, topic, n)
    # Small batches, small fetches: the partitions are read side by side.
    produce_all(make_producer(broker.bootstrap, **{"batch.num.messages": 20}), topic,
                unique_values("r", 1500, n))
    hwm = watermarks(broker.bootstrap, topic, n)

    def some_of_each(r):
        per = Counter(p for (_, _, p, _, _) in r.records)
        return len(per) == n and min(per.values()) >= 100

    first = Reader("first", kip_conf(broker.bootstrap, group, **{"max.partition.fetch.bytes": 2048}), [topic],
                   batch=40, per_record_s=0.002, until=some_of_each)
    first.start()
    first.join(60)
    assert not first.is_alive(), f"{first.describe()}: did not stop after reading 100 of each partition"
    assert first.exc is None and not first.errors and not first.commit_failures, first.describe()
    processed_max = {p: max((o for (_, _, pp, o, _) in first.records if pp == p), default=-1) for p in range(n)}
    committed = {p: first.committed_to.get((topic, p)) for p in range(n)}
    assert committed == {p: processed_max[p] + 1 for p in range(n)}, (
        f"last commits {committed} vs processed up to {processed_max} (each partition must have some)"
    )
    assert sum(committed.values()) == first.count() < 1500, f"committed {committed}, read {first.count()}"
    admin = admin_client(broker.bootstrap)
    want = {(topic, p): c for p, c in committed.items()}
    assert group_offsets(admin, group) == want, f"committed before the restart: {group_offsets(admin, group)}"

    print(f"\ncommitted before the restart {committed}, high watermarks {hwm}")
    rc = broker.stop()
    assert rc == 0, f"broker exited with {rc} after SIGTERM"
    broker.restart()
    admin = admin_client(broker.bootstrap)
    after = group_offsets(admin, group)
    assert after == want, f"committed offsets after the restart {after}, before {want}"

    second = Reader("second", kip_conf(broker.bootstrap, group), [topic], batch=200, report_committed=True)
    try:
        second.start()
        left = sum(hwm[p] - committed[p] for p in range(n))
        wait_until(lambda: second.count() >= left, 40, f"{left} records after the restart", [second])
        time.sleep(1.0)
    finally:
        second.stop()
    assert second.exc is None and not second.errors and not second.commit_failures, second.describe()
    reported = {}
    for tps in second.committed_reports:
        for t, p, o in tps:
            reported[p] = o
    assert reported == committed, f"committed() in the new consumer {reported}, committed before {committed}"
    by_part = defaultdict(list)
    for (_, _, p, o, _) in second.records:
        by_part[p].append(o)
    for p in range(n):
        assert by_part[p] == list(range(committed[p], hwm[p])), (
            f"partition {p}: after the restart read {len(by_part[p])} offsets "
            f"{by_part[p][:3]}..{by_part[p][-3:]}, expected {committed[p]}..{hwm[p] - 1} (the last commit)"
        )
    assert group_offsets(admin, group) == {(topic, p): hwm[p] for p in range(n)}
