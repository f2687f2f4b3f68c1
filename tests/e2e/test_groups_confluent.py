"""Consumer groups with confluent-kafka (librdkafka 2.16) against a real broker.

Members run in their own processes (test_groups_member.py) so one can be
killed with SIGKILL, i.e. without a LeaveGroup.

* test_group_lifecycle[range|cooperative-sticky]: three members share a
  6-partition topic; every partition is assigned exactly once (each member's
  consumer.assignment() and AdminClient describe_consumer_groups agree).
  Members process and commit each message synchronously. Then one member
  close()s (its partitions move at once, well inside the session timeout),
  and one is killed -9 mid-stream (its partitions move after the session
  timeout). Every produced value is processed; every value is committed at
  most once; a value is never committed only if it was the killed member's
  last one; the final committed offsets are the high watermarks.
* test_member_joins_stable_group[range|cooperative-sticky]: a third member
  joins a Stable two-member group: assigned without the initial rebalance
  delay; eager members revoke everything, cooperative-sticky members only
  the partitions that move (their assignment never goes empty); afterwards
  every value is committed exactly once.
* test_stalled_member_expires_during_rebalance (roundrobin assignor): a
  SIGSTOPped member is dropped at its session timeout while the group
  rebalances for a newcomer (not after the 300 s rebalance timeout), and
  rejoins when thawed.
* test_restarted_consumer_resumes_at_committed_offset: offsets committed at
  a different position per partition; a new process with the same group.id
  starts each partition exactly there (== its own committed()), and reads on
  to the end without gaps.
* test_join_rejections: session.timeout.ms 1000 and 1800000 are accepted,
  999 and 1800001 fail with INVALID_SESSION_TIMEOUT; a member whose assignor
  the group does not use fails with INCONSISTENT_GROUP_PROTOCOL and does not
  disturb the group.
"""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import KafkaError, TopicPartition

from helpers import admin_client, create_topic, make_consumer, make_producer, produce_all
from test_groups_member import (
    Member,
    describe_group,
    described_assignment,
    exact_cover,
    group_offsets,
    unique_values,
    wait_for,
    watermarks,
)

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 1000
# The killed member's partitions must move once the broker notices the
# missing heartbeats: at most the session timeout after its last heartbeat,
# plus the survivor's next heartbeat (which learns of the rebalance) and a
# JoinGroup/SyncGroup round; 1 s of slack for this 2-core machine.
KILL_MOVE_LIMIT_S = SESSION_TIMEOUT_MS / 1000 + 2 * HEARTBEAT_MS / 1000 + 1.0
# After a clean LeaveGroup the rebalance starts at once: survivors learn of it
# on their next heartbeat. Far below the session timeout.
LEAVE_MOVE_LIMIT_S = 2 * HEARTBEAT_MS / 1000 + 1.5


def _member_conf(strategy: str) -> dict:
    return {
        "partition.assignment.strategy": strategy,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_MS,
    }


def _check_describe(admin, group, members, strategy, topic, timeout=20.0):
    """describe_consumer_groups: Stable, the live members, each member's
    assignment equal to what its consumer.assignment() says, exact cover."""
    expected = {m.member_id(): m.assignment() for m in members}
    last = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        desc = describe_group(admin, group)
        got = described_assignment(desc)
        last = (str(desc.state), desc.partition_assignor, got)
        if (
            str(desc.state).endswith("STABLE")
            and desc.partition_assignor == strategy
            and got == expected
        ):
            assert exact_cover(got.values(), topic, PARTITIONS)
            return desc
        time.sleep(0.3)
    raise AssertionError(
        f"describe_consumer_groups({group!r}) never matched the members' own view within "
        f"{timeout}s\n  expected Stable, assignor {strategy!r}, assignment {expected}\n"
        f"  last seen (state, assignor, assignment): {last}"
    )


def _settled(members, topic, sizes):
    """Condition: the members' assignments exactly cover the topic, with these sizes."""
    def cond():
        asg = [m.assignment() for m in members]
        if any(a is None for a in asg):
            return False
        return sorted(len(a) for a in asg) == sorted(sizes) and exact_cover(asg, topic, PARTITIONS)
    return cond


@pytest.mark.e2e_timeout(150)
@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_group_lifecycle(broker, tmp_path, strategy):
    topic = f"grp-{strategy}"
    group = f"group-{strategy}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    admin = admin_client(broker.bootstrap)
    producer = make_producer(broker.bootstrap)

    conf = _member_conf(strategy)
    members = {
        name: Member(tmp_path, name, broker.bootstrap, group, [topic], conf=conf) for name in ("a", "b", "c")
    }
    everyone = list(members.values())
    a, b, c = members["a"], members["b"], members["c"]
    try:
        # -- 1. three members: every partition assigned exactly once ----------
        trio = [a, b, c]
        wait_for(_settled(trio, topic, [2, 2, 2]), 30, "3 members with 2 partitions each", everyone)
        desc = _check_describe(admin, group, trio, strategy, topic)
        assert len(desc.members) == 3
        assert len({m.member_id() for m in trio}) == 3

        # -- 2. produce, everyone processes + commits --------------------------
        sent = {}  # value -> (partition, offset)

        def produce(tag, n):
            ds = produce_all(producer, topic, unique_values(tag, n, PARTITIONS))
            for d in ds:
                sent[d.value.decode()] = (d.partition, d.offset)

        def committed_values():
            return {e["v"] for m in everyone for e in m.of("commit")}

        produce("p1", 600)
        wait_for(lambda: set(sent) <= committed_values(), 60, "phase-1 values all committed", everyone)

        # -- 3. c leaves cleanly: its partitions move well within the session timeout
        t_close = c.close()
        duo = [a, b]
        t_moved = wait_for(_settled(duo, topic, [3, 3]), 20, "a and b owning 3 partitions each", everyone)
        leave_move = t_moved - t_close
        assert leave_move <= LEAVE_MOVE_LIMIT_S, (
            f"after member c's clean close() (LeaveGroup) its partitions took {leave_move:.2f}s "
            f"to move; expected <= {LEAVE_MOVE_LIMIT_S}s (session timeout is "
            f"{SESSION_TIMEOUT_MS} ms: a LeaveGroup must not wait for it)"
        )
        _check_describe(admin, group, duo, strategy, topic)

        # -- 4. kill -9 b mid-stream ------------------------------------------
        b_parts = {p for (_, p) in b.assignment()}
        # b pauses before each commit, so the kill -9 below lands mid-stream.
        b.send("delay 8")
        produce("p2", 600)
        b_base = len(b.of("commit"))
        wait_for(lambda: len(b.of("commit")) - b_base >= 40, 30, "b committing phase-2 values", everyone)
        t_kill = b.kill9()
        b_done = {e["v"] for e in b.of("commit") if e["v"].startswith("p2-")}
        b_share = {v for v, (p, _) in sent.items() if v.startswith("p2-") and p in b_parts}
        assert b_done < b_share, "b finished its phase-2 share before the kill; the kill was not mid-stream"
        t_moved = wait_for(
            lambda: a.assignment() == [(topic, p) for p in range(PARTITIONS)],
            KILL_MOVE_LIMIT_S + 20,
            "a owning all 6 partitions after b was killed",
            [a],
        )
        kill_move = t_moved - t_kill
        assert kill_move <= KILL_MOVE_LIMIT_S, (
            f"b was killed -9 (no LeaveGroup); its partitions reached a after {kill_move:.2f}s, "
            f"expected <= {KILL_MOVE_LIMIT_S}s (session.timeout.ms={SESSION_TIMEOUT_MS}, "
            f"heartbeat.interval.ms={HEARTBEAT_MS})"
        )
        _check_describe(admin, group, [a], strategy, topic)

        # -- 5. more data; a alone finishes everything ------------------------
        produce("p3", 300)
        hwm = watermarks(broker.bootstrap, topic, PARTITIONS)
        assert sum(hwm.values()) == len(sent) == 1500

        def all_committed():
            offs = group_offsets(admin, group)
            return all(offs.get((topic, p)) == hwm[p] for p in range(PARTITIONS))

        wait_for(all_committed, 60, f"committed offsets == high watermarks {hwm}", [a],
                 interval=0.5, diag=lambda: f"group offsets {group_offsets(admin, group)}")

        # -- checks -----------------------------------------------------------
        for m in everyone:
            m.refresh()
        errors = [(m.name, e) for m in everyone for e in m.of("error")]
        assert not errors, f"consume errors: {errors[:5]}"

        processed = Counter(e["v"] for m in everyone for e in m.of("msg"))
        unexpected = set(processed) - set(sent)
        assert not unexpected, f"values nobody produced were consumed: {sorted(unexpected)[:10]}"
        missing = set(sent) - set(processed)
        assert not missing, f"{len(missing)} produced values never processed, e.g. {sorted(missing)[:10]}"

        # Each message's position must be the one the producer was told.
        wrong_pos = [
            (e["v"], (e["p"], e["o"]), sent[e["v"]])
            for m in everyone
            for e in m.of("msg")
            if (e["p"], e["o"]) != sent[e["v"]]
        ]
        assert not wrong_pos, f"messages at unexpected (partition, offset): {wrong_pos[:5]}"

        commits = Counter(e["v"] for m in everyone for e in m.of("commit"))
        twice = {v: n for v, n in commits.items() if n > 1}
        assert not twice, (
            f"{len(twice)} values committed more than once (a new owner restarted before a "
            f"committed offset): {sorted(twice.items())[:10]}"
        )
        # A value nobody committed can only be the killed member's last message
        # of a partition (killed between the commit and recording it).
        b_last = {}
        for e in b.of("msg"):
            b_last[e["p"]] = e["v"]
        never = set(sent) - set(commits)
        assert never <= set(b_last.values()), (
            f"values processed but never committed: {sorted(never - set(b_last.values()))[:10]}"
        )

        # Duplicates: only after a commit boundary that was not passed.
        dup = {v for v, n in processed.items() if n > 1}
        b_uncommitted = {e["v"] for e in b.of("msg")} - {e["v"] for e in b.of("commit")}
        failed = {e["v"] for m in everyone for e in m.of("commit_failed")}
        bad_dup = dup - b_uncommitted - failed - set(b_last.values())
        assert not bad_dup, f"values processed twice although committed: {sorted(bad_dup)[:10]}"

        # Per partition, the committed offsets form 1..hwm (gaps only at b's last message).
        by_part = defaultdict(list)
        for m in everyone:
            for e in m.of("commit"):
                by_part[e["p"]].append(e["o"])
        for p in range(PARTITIONS):
            offs = sorted(by_part[p])
            holes = sorted(set(range(1, hwm[p] + 1)) - set(offs))
            allowed = {sent[v][1] + 1 for v in b_last.values() if sent[v][0] == p}
            assert set(holes) <= allowed, f"partition {p}: committed offsets skip {holes[:10]}"

        print(
            f"\n[{strategy}] leave->moved {leave_move:.2f}s, kill->moved {kill_move:.2f}s, "
            f"duplicates {len(dup)}, commit failures {len(failed)}"
        )
    finally:
        for m in everyone:
            m.stop()
        producer.flush(5)


# A member joining a Stable group: the group is not empty, so no initial
# rebalance delay; the old members learn of the rebalance on their next
# heartbeat. Cooperative-sticky needs a second round after the revocation.
JOIN_STABLE_LIMIT_S = {"range": 2 * HEARTBEAT_MS / 1000 + 1.5, "cooperative-sticky": 3 * HEARTBEAT_MS / 1000 + 2.0}


@pytest.mark.e2e_timeout(90)
@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_member_joins_stable_group(broker, tmp_path, strategy):
    topic = f"grp-join-{strategy}"
    group = f"group-join-{strategy}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    admin = admin_client(broker.bootstrap)
    producer = make_producer(broker.bootstrap)
    conf = _member_conf(strategy)
    a = Member(tmp_path, "a", broker.bootstrap, group, [topic], conf=conf)
    b = Member(tmp_path, "b", broker.bootstrap, group, [topic], conf=conf)
    c = None
    try:
        wait_for(_settled([a, b], topic, [3, 3]), 30, "a and b owning 3 partitions each", [a, b])
        produce_all(producer, topic, unique_values("j1", 120, PARTITIONS))
        wait_for(lambda: len(a.of("commit")) + len(b.of("commit")) == 120, 30, "120 commits", [a, b])
        before = {"a": set(a.assignment()), "b": set(b.assignment())}
        n_before = {m.name: len(m.events) for m in (a, b)}

        c = Member(tmp_path, "c", broker.bootstrap, group, [topic], conf=conf)
        t_moved = wait_for(_settled([a, b, c], topic, [2, 2, 2]), 30, "a, b, c owning 2 partitions each", [a, b, c])
        t_sub = c.of("subscribed")[0]["t"]
        join_time = t_moved - t_sub
        print(f"\n[{strategy}] third member assigned {join_time:.2f}s after subscribe()")
        assert join_time <= JOIN_STABLE_LIMIT_S[strategy], (
            f"a member joining a Stable group was assigned {join_time:.2f}s after subscribe(); expected "
            f"<= {JOIN_STABLE_LIMIT_S[strategy]}s (no initial rebalance delay for a non-empty group)"
        )
        _check_describe(admin, group, [a, b, c], strategy, topic)

        for m in (a, b):
            later = m.events[n_before[m.name]:]
            kept = before[m.name] & set(m.assignment())
            revoked = {tuple(p) for e in later if e["ev"] == "revoke" for p in e["parts"]}
            if strategy == "cooperative-sticky":
                # Incremental: only partitions that moved are revoked; the kept
                # ones are never taken away, the assignment never goes empty.
                assert revoked == before[m.name] - set(m.assignment()), (
                    f"{m.name}: revoked {sorted(revoked)}, had {sorted(before[m.name])}, now {m.assignment()}"
                )
                emptied = [e for e in later if e["ev"] == "assignment" and not e["parts"]]
                assert not emptied, f"{m.name}'s assignment went empty during an incremental rebalance"
                assert len(kept) == 2, f"{m.name} kept {sorted(kept)} of {sorted(before[m.name])}"
            else:
                assert revoked == before[m.name], f"{m.name}: eager revoke of {sorted(revoked)}"

        # Everyone consumes the next batch; nothing is committed twice.
        produce_all(producer, topic, unique_values("j2", 120, PARTITIONS))
        wait_for(lambda: sum(len(m.of("commit")) for m in (a, b, c)) >= 240, 30, "240 commits", [a, b, c])
        time.sleep(0.5)
        commits = Counter(e["v"] for m in (a, b, c) for e in m.refresh() if e["ev"] == "commit")
        assert sum(commits.values()) == 240 and len(commits) == 240, (
            f"{sum(commits.values())} commits of {len(commits)} distinct values, expected 240 once each"
        )
        assert {e["v"] for e in c.of("commit")} and all(v.startswith("j2-") for v in (e["v"] for e in c.of("commit")))
    finally:
        for m in (a, b, c):
            if m is not None:
                m.stop()
        producer.flush(5)


@pytest.mark.e2e_timeout(90)
def test_stalled_member_expires_during_rebalance(broker, tmp_path):
    """b is frozen (SIGSTOP: no heartbeats, no rejoin) when c joins. The
    rebalance cannot wait for b's rebalance timeout (librdkafka sends
    max.poll.interval.ms = 300 s): b's session keeps running while the group
    prepares the rebalance, so it expires and a + c are assigned within the
    session timeout. Thawed (SIGCONT), b rejoins as a fresh member."""
    topic, group = "grp-stall", "group-stall"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    admin = admin_client(broker.bootstrap)
    conf = _member_conf("roundrobin")
    a = Member(tmp_path, "a", broker.bootstrap, group, [topic], conf=conf)
    b = Member(tmp_path, "b", broker.bootstrap, group, [topic], conf=conf)
    c = None
    try:
        wait_for(_settled([a, b], topic, [3, 3]), 30, "a and b owning 3 partitions each", [a, b])
        _check_describe(admin, group, [a, b], "roundrobin", topic)
        b_id = b.member_id()
        b.proc.send_signal(signal.SIGSTOP)
        t_stop = time.monotonic()
        c = Member(tmp_path, "c", broker.bootstrap, group, [topic], conf=conf)
        t_done = wait_for(_settled([a, c], topic, [3, 3]), 40, "a and c owning 3 partitions each", [a, c])
        took = t_done - t_stop
        print(f"\nstalled member: a + c assigned {took:.2f}s after b froze")
        assert took <= KILL_MOVE_LIMIT_S + 2, (
            f"with b frozen, the rebalance for c completed {took:.2f}s after b stopped heartbeating; "
            f"expected about the session timeout ({SESSION_TIMEOUT_MS} ms), not the 300 s rebalance timeout"
        )
        desc = describe_group(admin, group)
        assert b_id not in described_assignment(desc) and len(desc.members) == 2, described_assignment(desc)

        b.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: b.member_id() != b_id and _settled([a, b, c], topic, [2, 2, 2])(), 40,
                 "b back as a new member, 2 partitions each", [a, b, c])
        _check_describe(admin, group, [a, b, c], "roundrobin", topic)
    finally:
        b.proc.send_signal(signal.SIGCONT)
        for m in (a, b, c):
            if m is not None:
                m.stop()


@pytest.mark.e2e_timeout(90)
def test_restarted_consumer_resumes_at_committed_offset(broker, tmp_path):
    topic = "grp-resume"
    group = "group-resume"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    producer = make_producer(broker.bootstrap)
    produce_all(producer, topic, unique_values("r", 600, PARTITIONS))
    hwm = watermarks(broker.bootstrap, topic, PARTITIONS)
    assert all(v == 100 for v in hwm.values()), hwm

    # First consumer: subscribes, reads, commits a different offset per partition.
    target = {p: 7 + 13 * p for p in range(PARTITIONS)}
    first = make_consumer(broker.bootstrap, **{"group.id": group, "enable.partition.eof": False})
    try:
        first.subscribe([topic])
        seen = set()
        deadline = time.monotonic() + 30
        while len(seen) < PARTITIONS and time.monotonic() < deadline:
            m = first.poll(0.2)
            if m is not None and m.error() is None:
                seen.add(m.partition())
        assert len(seen) == PARTITIONS, f"first consumer got messages of partitions {seen} only"
        res = first.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in target.items()], asynchronous=False
        )
        assert all(tp.error is None for tp in res), res
        got = first.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        assert {tp.partition: tp.offset for tp in got} == target
    finally:
        first.close()

    # A new process with the same group.id.
    m = Member(tmp_path, "restarted", broker.bootstrap, group, [topic], commit="none")
    try:
        want = sum(hwm[p] - target[p] for p in range(PARTITIONS))
        wait_for(lambda: len(m.of("msg")) >= want, 40, f"{want} messages in the new process", [m])
        time.sleep(1.0)
        m.refresh()
        reported = {}
        for e in m.of("committed"):
            assert not e["errors"], f"committed() failed in the new process: {e}"
            for t, p, o in e["offsets"]:
                reported[p] = o
        assert reported == target, f"committed() in the new process: {reported}, committed before: {target}"
        by_part = defaultdict(list)
        for e in m.of("msg"):
            by_part[e["p"]].append(e["o"])
        first_offsets = {p: offs[0] for p, offs in by_part.items()}
        assert first_offsets == target, (
            f"first offset per partition {first_offsets} != committed offsets {target}"
        )
        for p, offs in by_part.items():
            assert offs == list(range(target[p], hwm[p])), (
                f"partition {p}: read {len(offs)} offsets {offs[:3]}..{offs[-3:]}, "
                f"expected {target[p]}..{hwm[p] - 1}"
            )
    finally:
        m.stop()


@pytest.mark.e2e_timeout(60)
def test_join_rejections(broker):
    topic = "grp-reject"
    create_topic(broker.bootstrap, topic, 2)
    producer = make_producer(broker.bootstrap)
    produce_all(producer, topic, unique_values("x", 10, 2))
    producer.flush(5)
    del producer

    cases = {
        # group: (conf, expected error code or None = joins and consumes)
        "st-999": ({"session.timeout.ms": 999, "heartbeat.interval.ms": 300}, KafkaError.INVALID_SESSION_TIMEOUT),
        "st-1000": ({"session.timeout.ms": 1000, "heartbeat.interval.ms": 300}, None),
        "st-1800000": ({"session.timeout.ms": 1800000, "max.poll.interval.ms": 1800000}, None),
        "st-1800001": ({"session.timeout.ms": 1800001, "max.poll.interval.ms": 1800001}, KafkaError.INVALID_SESSION_TIMEOUT),
    }
    consumers = {}
    try:
        for g, (conf, _) in cases.items():
            c = make_consumer(broker.bootstrap, **{"group.id": g, "enable.partition.eof": False, **conf})
            c.subscribe([topic])
            consumers[g] = c
        outcome = {g: None for g in cases}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(v is None for v in outcome.values()):
            for g, c in consumers.items():
                m = c.poll(0.05)
                if m is None or outcome[g] is not None:
                    continue
                outcome[g] = m.error().code() if m.error() is not None else "message"
        want = {g: (code if code is not None else "message") for g, (_, code) in cases.items()}
        assert outcome == want, (
            f"first poll() result per group (session.timeout.ms in the name): {outcome}, expected {want}"
        )
    finally:
        for c in consumers.values():
            c.close()

    # Assignor mismatch: the group uses range; a roundrobin-only member is refused.
    first = make_consumer(broker.bootstrap, **{"group.id": "mixed", "enable.partition.eof": False,
                                                "partition.assignment.strategy": "range"})
    second = make_consumer(broker.bootstrap, **{"group.id": "mixed", "enable.partition.eof": False,
                                                 "partition.assignment.strategy": "roundrobin"})
    try:
        first.subscribe([topic])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(first.assignment()) < 2:
            first.poll(0.2)
        assert len(first.assignment()) == 2, f"range member never got both partitions: {first.assignment()}"
        second.subscribe([topic])
        err = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and err is None:
            m = second.poll(0.2)
            first.poll(0)
            if m is not None and m.error() is not None:
                err = m.error()
        assert err is not None and err.code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL, (
            f"roundrobin member joining a range group: {err!r}, expected INCONSISTENT_GROUP_PROTOCOL"
        )
        assert not second.assignment()
        first.poll(0.5)
        assert len(first.assignment()) == 2, f"the range member lost partitions: {first.assignment()}"
    finally:
        second.close()
        first.close()
