"""Committed offsets are durable, and the group admin APIs.

* test_committed_offsets_survive_kill9: offsets (with metadata) committed by
  a group member, by a standalone assign()+commit() consumer and by
  kafka-python; the broker is
  killed -9 right after the commits were acknowledged and restarted on the
  same data dir: Consumer.committed() and AdminClient
  list_consumer_group_offsets return the same offsets and metadata, as does
  one multi-group OffsetFetch (v8+) for both groups (kafka-python admin).
* test_list_and_describe_groups: list_consumer_groups shows each group with
  its state (Stable with a member, Empty after it left, Empty + simple for a
  group with only offsets), the states filter works; describe agrees.
* test_delete_groups: DeleteGroups removes an empty group and its offsets
  (also after a kill -9 + restart), fails with NON_EMPTY_GROUP on an active
  group (whose offsets stay), GROUP_ID_NOT_FOUND on an unknown one.
* test_active_group_survives_broker_kill9: members committing every message
  ride through a kill -9 + restart of the broker; nothing lost, no value
  committed twice.
* test_offset_delete: OffsetDelete (kafka-python's admin delete_group_offsets;
  confluent-kafka's Python AdminClient has no binding for it) removes the
  offsets of a topic the active group is not subscribed to, refuses with
  GROUP_SUBSCRIBED_TO_TOPIC for the subscribed topic until the group is
  empty, and its effect survives a kill -9.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KpTopicPartition
from kafka.structs import OffsetAndMetadata
from kafka.errors import GroupIdNotFoundError, GroupSubscribedToTopicError, NoError

from helpers import admin_client, create_topic, make_consumer, make_producer, produce_all
from test_groups_member import describe_group, group_offsets, unique_values

OFFSET_INVALID = -1001


def _produce(bootstrap, topic, partitions, per_partition):
    producer = make_producer(bootstrap)
    produce_all(producer, topic, unique_values(topic, partitions * per_partition, partitions))
    producer.flush(5)


def _commit(consumer, offsets, metadata=None):
    tps = [
        TopicPartition(t, p, o, metadata) if metadata else TopicPartition(t, p, o)
        for (t, p), o in offsets.items()
    ]
    res = consumer.commit(offsets=tps, asynchronous=False)
    errs = [tp for tp in res if tp.error is not None]
    assert not errs, f"commit errors: {errs}"


def _committed(consumer, keys):
    got = consumer.committed([TopicPartition(t, p) for t, p in keys], timeout=15)
    errs = [tp for tp in got if tp.error is not None]
    assert not errs, f"committed() errors: {errs}"
    return {(tp.topic, tp.partition): (tp.offset, tp.metadata) for tp in got}


def _member(bootstrap, group, topics, expect_partitions, timeout=30.0):
    """A subscribed in-process consumer, returned once it owns its partitions."""
    c = make_consumer(bootstrap, **{"group.id": group, "enable.partition.eof": False})
    c.subscribe(topics)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c.poll(0.2)
        if len(c.assignment()) == expect_partitions:
            return c
    c.close()
    raise AssertionError(f"consumer of group {group!r} not assigned {expect_partitions} partitions in {timeout}s")


def _groups(admin, **kw):
    res = admin.list_consumer_groups(request_timeout=20, **kw).result(timeout=25)
    assert not res.errors, f"list_consumer_groups errors: {res.errors}"
    return {g.group_id: g for g in res.valid}


def _full_offsets(admin, group):
    """group_offsets, with the metadata too."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    futs = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=20)
    res = futs[group].result(timeout=25)
    errs = [tp for tp in res.topic_partitions if tp.error is not None]
    assert not errs, f"list_consumer_group_offsets({group!r}) errors: {errs}"
    return {(tp.topic, tp.partition): (tp.offset, tp.metadata) for tp in res.topic_partitions}


@pytest.mark.e2e_timeout(90)
def test_committed_offsets_survive_kill9(broker):
    topic = "dur-topic"
    create_topic(broker.bootstrap, topic, 3)
    _produce(broker.bootstrap, topic, 3, 50)
    keys = [(topic, p) for p in range(3)]
    member_offsets = {(topic, 0): 11, (topic, 1): 23, (topic, 2): 37}
    simple_offsets = {(topic, 0): 5, (topic, 1): 48, (topic, 2): 50}

    # A group member commits (generation + member id) ...
    member = _member(broker.bootstrap, "dur-member", [topic], 3)
    # ... and a standalone consumer commits with assign() (no membership).
    simple = make_consumer(broker.bootstrap, **{"group.id": "dur-simple"})
    simple.assign([TopicPartition(t, p, 0) for t, p in keys])
    _commit(member, member_offsets, metadata="member-meta")
    _commit(simple, simple_offsets, metadata="simple-meta")
    # ... and kafka-python, whose metadata bytes are exactly the string (see below).
    kp_offsets = {(topic, 0): 1, (topic, 1): 2, (topic, 2): 3}
    kpc = KafkaConsumer(bootstrap_servers=broker.bootstrap.split(","), group_id="dur-kp", enable_auto_commit=False)
    try:
        kpc.assign([KpTopicPartition(t, p) for t, p in keys])
        kpc.commit({KpTopicPartition(t, p): OffsetAndMetadata(o, "kp-meta", -1) for (t, p), o in kp_offsets.items()})
    finally:
        kpc.close(autocommit=False)
    before = (_committed(member, keys), _committed(simple, keys))
    assert before == (
        {k: (o, "member-meta") for k, o in member_offsets.items()},
        {k: (o, "simple-meta") for k, o in simple_offsets.items()},
    ), before

    broker.kill9()
    broker.restart()
    member.close()
    simple.close()

    admin = admin_client(broker.bootstrap)
    for group, expect, meta in (
        ("dur-member", member_offsets, "member-meta"),
        ("dur-simple", simple_offsets, "simple-meta"),
    ):
        fresh = make_consumer(broker.bootstrap, **{"group.id": group})
        try:
            got = _committed(fresh, keys)
        finally:
            fresh.close()
        want = {k: (o, meta) for k, o in expect.items()}
        assert got == want, f"{group}: committed() after kill -9 + restart: {got}, before: {want}"
        listed = _full_offsets(admin, group)
        assert listed == want, f"{group}: list_consumer_group_offsets after restart: {listed}, want {want}"

    # All three groups in one OffsetFetch (v8+ multi-group), via kafka-python.
    # confluent-kafka-python sends a metadata string with its C terminator
    # (kafka-python reads 'member-meta\x00' back); kafka-python's own commit
    # shows the broker keeps the bytes unchanged.
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap.split(","), request_timeout_ms=20000)
    try:
        multi = kp.list_group_offsets({"dur-member": None, "dur-simple": None, "dur-kp": None})
    finally:
        kp.close()
    got = {g: {(tp.topic, tp.partition): (om.offset, om.metadata) for tp, om in offs.items()}
           for g, offs in multi.items()}
    for g, meta in (("dur-member", "member-meta"), ("dur-simple", "simple-meta")):
        for k, (o, m) in got.get(g, {}).items():
            if m == meta + "\x00":
                got[g][k] = (o, meta)
    assert got == {
        "dur-member": {k: (o, "member-meta") for k, o in member_offsets.items()},
        "dur-simple": {k: (o, "simple-meta") for k, o in simple_offsets.items()},
        "dur-kp": {k: (o, "kp-meta") for k, o in kp_offsets.items()},
    }, f"multi-group OffsetFetch after restart: {got}"

    groups = _groups(admin)
    for g in ("dur-member", "dur-simple", "dur-kp"):
        assert g in groups, f"{g} missing from list_consumer_groups after restart: {sorted(groups)}"
        assert groups[g].state == ConsumerGroupState.EMPTY, (g, groups[g].state)


@pytest.mark.e2e_timeout(90)
def test_list_and_describe_groups(broker):
    topic = "list-topic"
    create_topic(broker.bootstrap, topic, 2)
    _produce(broker.bootstrap, topic, 2, 5)
    admin = admin_client(broker.bootstrap)

    left = _member(broker.bootstrap, "g-left", [topic], 2)
    _commit(left, {(topic, 0): 1, (topic, 1): 2})
    left.close()
    simple = make_consumer(broker.bootstrap, **{"group.id": "g-simple"})
    simple.assign([TopicPartition(topic, 0, 0)])
    _commit(simple, {(topic, 0): 3})
    simple.close()
    stable = _member(broker.bootstrap, "g-stable", [topic], 2)
    try:
        groups = _groups(admin)
        got = {g: (groups[g].state, groups[g].is_simple_consumer_group) for g in groups}
        want = {
            "g-stable": (ConsumerGroupState.STABLE, False),
            "g-left": (ConsumerGroupState.EMPTY, False),
            "g-simple": (ConsumerGroupState.EMPTY, True),
        }
        assert got == want, f"list_consumer_groups: {got}, expected {want}"

        only_stable = _groups(admin, states={ConsumerGroupState.STABLE})
        assert set(only_stable) == {"g-stable"}, f"states={{STABLE}} filter gave {sorted(only_stable)}"
        only_empty = _groups(admin, states={ConsumerGroupState.EMPTY})
        assert set(only_empty) == {"g-left", "g-simple"}, f"states={{EMPTY}} filter gave {sorted(only_empty)}"

        d = describe_group(admin, "g-stable")
        assert d.state == ConsumerGroupState.STABLE and len(d.members) == 1, (d.state, d.members)
        assert d.members[0].member_id == stable.memberid()
        assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == [0, 1]
        assert d.partition_assignor in ("range", "roundrobin"), d.partition_assignor
        assert not d.is_simple_consumer_group
        d = describe_group(admin, "g-left")
        assert d.state == ConsumerGroupState.EMPTY and not d.members, (d.state, d.members)
        assert not d.is_simple_consumer_group
    finally:
        stable.close()

    d = describe_group(admin, "g-stable")
    assert d.state == ConsumerGroupState.EMPTY and not d.members, (
        f"after its only member closed, g-stable is {d.state} with {len(d.members)} members"
    )


@pytest.mark.e2e_timeout(90)
def test_delete_groups(broker):
    topic = "del-topic"
    create_topic(broker.bootstrap, topic, 2)
    _produce(broker.bootstrap, topic, 2, 5)
    admin = admin_client(broker.bootstrap)
    keys = [(topic, 0), (topic, 1)]

    empty = _member(broker.bootstrap, "del-empty", [topic], 2)
    _commit(empty, {(topic, 0): 4, (topic, 1): 5})
    empty.close()
    active = _member(broker.bootstrap, "del-active", [topic], 2)
    try:
        _commit(active, {(topic, 0): 2, (topic, 1): 3})
        futs = admin.delete_consumer_groups(["del-empty", "del-active", "del-missing"], request_timeout=20)
        futs["del-empty"].result(timeout=25)
        for g, code in (("del-active", KafkaError.NON_EMPTY_GROUP), ("del-missing", KafkaError.GROUP_ID_NOT_FOUND)):
            with pytest.raises(KafkaException) as ei:
                futs[g].result(timeout=25)
            err = ei.value.args[0]
            assert err.code() == code, f"delete_consumer_groups({g!r}): {err!r}, expected {KafkaError(code).name()}"

        groups = _groups(admin)
        assert "del-empty" not in groups, f"deleted group still listed: {groups['del-empty']}"
        assert groups["del-active"].state == ConsumerGroupState.STABLE, groups["del-active"].state
        assert group_offsets(admin, "del-empty") in ({}, {k: OFFSET_INVALID for k in keys})
        assert group_offsets(admin, "del-active") == {(topic, 0): 2, (topic, 1): 3}
        assert active.assignment(), "the active member lost its assignment"
    finally:
        active.close()

    # The deletion is durable.
    broker.kill9()
    broker.restart()
    # A new AdminClient: librdkafka 2.16's admin client, after re-bootstrapping
    # from a dead broker, keeps the decommissioned coordinator handle and never
    # sends FindCoordinator/OffsetFetch again (client side; seen in its debug log).
    admin = admin_client(broker.bootstrap)
    groups = _groups(admin)
    assert "del-empty" not in groups, "deleted group is back after kill -9 + restart"
    fresh = make_consumer(broker.bootstrap, **{"group.id": "del-empty"})
    try:
        got = _committed(fresh, keys)
    finally:
        fresh.close()
    assert got == {k: (OFFSET_INVALID, None) for k in keys} or all(o == OFFSET_INVALID for o, _ in got.values()), (
        f"offsets of the deleted group after restart: {got}"
    )
    assert group_offsets(admin, "del-active") == {(topic, 0): 2, (topic, 1): 3}

    # Now empty, del-active can be deleted too.
    admin.delete_consumer_groups(["del-active"], request_timeout=20)["del-active"].result(timeout=25)
    assert "del-active" not in _groups(admin)


@pytest.mark.e2e_timeout(90)
def test_offset_delete(broker):
    sub, other = "od-subscribed", "od-other"
    create_topic(broker.bootstrap, sub, 2)
    create_topic(broker.bootstrap, other, 2)
    _produce(broker.bootstrap, sub, 2, 10)
    group = "od-group"
    admin = admin_client(broker.bootstrap)

    # The group once consumed `other` (standalone commit), now subscribes to `sub`.
    old = make_consumer(broker.bootstrap, **{"group.id": group})
    old.assign([TopicPartition(other, 0, 0), TopicPartition(other, 1, 0)])
    _commit(old, {(other, 0): 5, (other, 1): 6})
    old.close()
    member = _member(broker.bootstrap, group, [sub], 2)
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap.split(","), request_timeout_ms=20000)
    try:
        _commit(member, {(sub, 0): 3, (sub, 1): 4})
        assert group_offsets(admin, group) == {(sub, 0): 3, (sub, 1): 4, (other, 0): 5, (other, 1): 6}

        res = kp.delete_group_offsets(group, [KpTopicPartition(other, 0), KpTopicPartition(other, 1)])
        assert {(tp.topic, tp.partition): e for tp, e in res.items()} == {
            (other, 0): NoError, (other, 1): NoError
        }, f"OffsetDelete of the unsubscribed topic: {res}"
        assert group_offsets(admin, group) == {(sub, 0): 3, (sub, 1): 4}

        res = kp.delete_group_offsets(group, [KpTopicPartition(sub, 0)])
        assert {(tp.topic, tp.partition): e for tp, e in res.items()} == {
            (sub, 0): GroupSubscribedToTopicError
        }, f"OffsetDelete of the subscribed topic while the group is active: {res}"
        assert group_offsets(admin, group) == {(sub, 0): 3, (sub, 1): 4}
    finally:
        member.close()

    try:
        res = kp.delete_group_offsets(group, [KpTopicPartition(sub, 0)])
        assert {(tp.topic, tp.partition): e for tp, e in res.items()} == {(sub, 0): NoError}, (
            f"OffsetDelete after the group became empty: {res}"
        )
        with pytest.raises(GroupIdNotFoundError):
            kp.delete_group_offsets("od-no-such-group", [KpTopicPartition(sub, 0)])
    finally:
        kp.close()

    broker.kill9()
    broker.restart()
    admin = admin_client(broker.bootstrap)  # see test_delete_groups
    assert group_offsets(admin, group) == {(sub, 1): 4}, "OffsetDelete effects after kill -9 + restart"


@pytest.mark.e2e_timeout(120)
def test_active_group_survives_broker_kill9(broker, tmp_path):
    """Two members consume and commit each message; the broker is killed -9
    mid-stream and restarted on the same data dir. The members find their
    way back (the group itself is in memory, so they rejoin), resume at the
    committed offsets and finish: every value processed, none committed
    twice (an acknowledged commit lost in the crash would show up as a
    second commit of the same value), final offsets = high watermarks."""
    from collections import Counter

    from test_groups_member import Member, wait_for, watermarks

    topic = "crash-group-topic"
    group = "crash-group"
    create_topic(broker.bootstrap, topic, 4)
    conf = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
    members = [Member(tmp_path, n, broker.bootstrap, group, [topic], conf=conf, delay_ms=5) for n in ("a", "b")]
    try:
        wait_for(lambda: all(m.assignment() and len(m.assignment()) == 2 for m in members), 30,
                 "2 partitions each", members)
        producer = make_producer(broker.bootstrap)
        produce_all(producer, topic, unique_values("c1", 800, 4))
        producer.flush(5)
        del producer
        wait_for(lambda: sum(len(m.of("commit")) for m in members) >= 150, 30, "150 commits", members)
        broker.kill9()
        acked_before = {e["v"] for m in members for e in m.refresh() if e["ev"] == "commit"}
        assert len(acked_before) < 800, "everything was committed before the crash"
        broker.restart()
        producer = make_producer(broker.bootstrap)
        produce_all(producer, topic, unique_values("c2", 200, 4))
        producer.flush(5)
        del producer
        hwm = watermarks(broker.bootstrap, topic, 4)
        assert sum(hwm.values()) == 1000, hwm
        admin = admin_client(broker.bootstrap)
        wait_for(lambda: group_offsets(admin, group) == {(topic, p): hwm[p] for p in range(4)}, 60,
                 f"committed offsets == {hwm} after the restart", members, interval=0.5,
                 diag=lambda: f"group offsets {group_offsets(admin, group)}")

        processed = {e["v"] for m in members for e in m.refresh() if e["ev"] == "msg"}
        expected = {f"c1-{i:06d}" for i in range(800)} | {f"c2-{i:06d}" for i in range(200)}
        assert processed == expected, (
            f"missing {sorted(expected - processed)[:5]}, unexpected {sorted(processed - expected)[:5]}"
        )
        commits = Counter(e["v"] for m in members for e in m.of("commit"))
        twice = sorted(v for v, n in commits.items() if n > 1)
        assert not twice, (
            f"{len(twice)} values committed twice, e.g. {twice[:5]}: commits acknowledged before the "
            f"crash ({len(acked_before)}) were not all durable"
        )
        errors = [e for m in members for e in m.of("error")]
        # Connection errors around the crash are expected; nothing else.
        assert all(e["name"] in ("_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE") for e in errors), errors[:5]
    finally:
        for m in members:
            m.stop()
