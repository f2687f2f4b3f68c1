"""Static group membership (group.instance.id, KIP-345) with confluent-kafka.

Two static members share a 4-partition topic that a background producer keeps
writing to. Member "a" is killed -9 (no LeaveGroup) and a new process with the
same group.instance.id starts at once, well within session.timeout.ms=10000:

* it gets exactly the partitions "a" had, and its JoinGroup response carries
  the generation the group already had (no rebalance: no new generation);
* it consumes its first message within RESUME_LIMIT_S of subscribe(), i.e.
  without the 3 s initial rebalance delay or a session timeout;
* it starts each partition at the committed offset (== its committed());
* the other member sees no rebalance at all (no assign/revoke callback, no
  new JoinGroup, heartbeats stay on the same generation), also after the old
  session of "a" would have expired (kill + session timeout + 2 s);
* describe_consumer_groups shows both members Stable with their instance ids;
* then the other member is killed too and removed by group.instance.id with a
  batched LeaveGroup (v3+, kafka-python's remove_group_members): its
  partitions move to the restarted member at once; an unknown instance id
  gets UNKNOWN_MEMBER_ID.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from kafka import KafkaAdminClient
from kafka.admin import MemberToRemove
from kafka.errors import NoError, UnknownMemberIdError

from helpers import admin_client, create_topic, make_producer
from test_groups_member import Member, describe_group, described_assignment, exact_cover, wait_for

PARTITIONS = 4
SESSION_TIMEOUT_MS = 10000
RESUME_LIMIT_S = 2.0

JOIN_RE = re.compile(r"JoinGroup response: GenerationId (-?\d+)")
HB_RE = re.compile(r"Heartbeat for group \"[^\"]+\" generation id (-?\d+)")


def generations(member, regex, since=0.0):
    return [
        int(mo.group(1))
        for e in member.of("rdlog")
        if e["t"] >= since
        for mo in [regex.search(e["msg"])]
        if mo
    ]


class BackgroundProducer:
    """Produces one message to every partition every 50 ms until stopped."""

    def __init__(self, bootstrap, topic):
        self.producer = make_producer(bootstrap, **{"linger.ms": 0})
        self.topic = topic
        self.stop_flag = threading.Event()
        self.errors = []
        self.count = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        def cb(err, msg):
            if err is not None:
                self.errors.append(err)

        while not self.stop_flag.is_set():
            for p in range(PARTITIONS):
                self.producer.produce(self.topic, value=b"s-%07d" % self.count, partition=p, on_delivery=cb)
                self.count += 1
            self.producer.poll(0)
            time.sleep(0.05)
        self.producer.flush(10)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(15)


@pytest.mark.e2e_timeout(120)
def test_static_member_restart_keeps_assignment_without_rebalance(broker, tmp_path):
    topic = "static-topic"
    group = "static-group"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    admin = admin_client(broker.bootstrap)
    feeder = BackgroundProducer(broker.bootstrap, topic)

    def member(name, instance):
        return Member(
            tmp_path, name, broker.bootstrap, group, [topic],
            conf={
                "group.instance.id": instance,
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": 1000,
            },
            rdlog=["JOINGROUP", "HEARTBEAT"],
        )

    a = member("a", "inst-a")
    b = member("b", "inst-b")
    a2 = None
    try:
        wait_for(
            lambda: a.assignment() and b.assignment()
            and len(a.assignment()) == 2 and len(b.assignment()) == 2
            and exact_cover([a.assignment(), b.assignment()], topic, PARTITIONS),
            30, "a and b owning 2 partitions each", [a, b],
        )
        # Both consuming and committing on every partition they own.
        t0 = time.monotonic()

        def committing(m):
            return {e["p"] for e in m.of("commit") if e["t"] > t0} == {p for _, p in m.assignment()}

        wait_for(lambda: committing(a) and committing(b), 15, "a and b committing on all partitions", [a, b])
        a_gens = generations(a, JOIN_RE)
        b_gens = generations(b, JOIN_RE)
        gen = b_gens[-1]
        assert gen > 0 and a_gens[-1] == gen, f"JoinGroup generations a {a_gens}, b {b_gens}"
        a_parts = a.assignment()
        b_parts = b.assignment()
        b_callbacks = len(b.of("assign", "revoke", "lost"))
        b_joins = len(b_gens)
        old_a_id = a.member_id()

        # -- kill -9 a, restart it with the same group.instance.id -----------
        t_kill = a.kill9()
        a_last_commit = {}
        for e in a.of("commit"):
            a_last_commit[e["p"]] = e["o"]
        a2 = member("a2", "inst-a")
        wait_for(lambda: a2.of("msg"), 20, "the restarted static member's first message", [a2, b])
        t_sub = a2.of("subscribed")[0]["t"]
        t_first = a2.of("msg")[0]["t"]
        resume = t_first - t_sub
        print(f"\nstatic rejoin: first message {resume:.2f}s after subscribe(), "
              f"{t_first - t_kill:.2f}s after the kill")
        assert a2.assignment() == a_parts, (
            f"restarted static member got {a2.assignment()}, the killed one had {a_parts}"
        )
        a2_gens = generations(a2, JOIN_RE)
        assert a2_gens and a2_gens[-1] == gen, (
            f"restarted static member's JoinGroup responses carried generations {a2_gens}; "
            f"the group was at generation {gen} (a static rejoin must not start a new one)"
        )
        assert resume <= RESUME_LIMIT_S, (
            f"restarted static member got its first message {resume:.2f}s after subscribe(); "
            f"expected <= {RESUME_LIMIT_S}s (no rebalance, no initial delay)"
        )

        # It resumed at the committed offsets.
        committed = {}
        for e in a2.of("committed"):
            assert not e["errors"], e
            for _, p, o in e["offsets"]:
                committed[p] = o
        assert set(committed) == {p for _, p in a_parts}, committed
        wait_for(lambda: len({e["p"] for e in a2.of("msg")}) == len(a_parts), 10,
                 "a2 consuming all its partitions", [a2])
        first = {}
        for e in a2.of("msg"):
            first.setdefault(e["p"], e["o"])
        assert first == committed, f"a2 first offsets {first} != committed() {committed}"
        for p, o in committed.items():
            # a's last recorded commit, or one more if it was killed between
            # the commit and recording it.
            assert a_last_commit[p] <= o <= a_last_commit[p] + 1, (
                f"partition {p}: committed {o}, a's last recorded commit {a_last_commit.get(p)}"
            )

        # -- past the old session's expiry: still no rebalance ----------------
        t_after = t_kill + SESSION_TIMEOUT_MS / 1000 + 2.0
        wait_for(lambda: time.monotonic() >= t_after, 30, "the old session's expiry", [a2, b])
        t_check = time.monotonic()
        wait_for(lambda: any(e["t"] > t_check for e in a2.of("msg"))
                 and any(e["t"] > t_check for e in b.of("msg")),
                 10, "both still consuming after the old session expired", [a2, b])
        assert len(b.of("assign", "revoke", "lost")) == b_callbacks, (
            f"the other member saw rebalance callbacks: {b.of('assign', 'revoke', 'lost')}"
        )
        assert b.assignment() == b_parts
        assert len(generations(b, JOIN_RE)) == b_joins, (
            f"the other member re-joined: JoinGroup generations {generations(b, JOIN_RE)}"
        )
        hb = generations(b, HB_RE, since=t_kill)
        assert hb and set(hb) == {gen}, f"the other member's heartbeats since the kill: generations {hb}"
        assert not a2.of("revoke", "lost"), a2.of("revoke", "lost")
        assert a2.assignment() == a_parts
        assert not a2.of("error") and not b.of("error"), (a2.of("error"), b.of("error"))
        assert not a2.of("commit_failed") and not b.of("commit_failed"), (
            a2.of("commit_failed"), b.of("commit_failed"))

        desc = describe_group(admin, group)
        assert str(desc.state).endswith("STABLE"), desc.state
        got = described_assignment(desc)
        assert got == {a2.member_id(): a_parts, b.member_id(): b_parts}, (
            f"describe: {got}; a2 {a2.member_id()} {a_parts}, b {b.member_id()} {b_parts}"
        )
        assert a2.member_id() != old_a_id
        instances = {m.member_id: m.group_instance_id for m in desc.members}
        assert instances == {a2.member_id(): "inst-a", b.member_id(): "inst-b"}, instances

        # -- batched LeaveGroup (v3+, by group.instance.id) --------------------
        # b dies for good; an operator removes it by instance id (kafka-python's
        # remove_group_members sends one LeaveGroup with a member list), so its
        # partitions move now rather than after its session timeout.
        b.kill9()
        t_remove = time.monotonic()
        kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap.split(","), request_timeout_ms=20000)
        try:
            res = kp.remove_group_members(group, [
                MemberToRemove(group_instance_id="inst-b"),
                MemberToRemove(group_instance_id="inst-nobody"),
            ])
        finally:
            kp.close()
        # kafka-python keys each result by the response's member id, or its
        # instance id when the member id is empty.
        b_id = b.member_id()
        got = {("inst-b" if k == b_id else k): e for k, e in res.items()}
        assert got == {"inst-b": NoError, "inst-nobody": UnknownMemberIdError}, (
            f"LeaveGroup for instances inst-b (member {b_id}) and inst-nobody (unknown): {res}"
        )
        t_moved = wait_for(lambda: a2.assignment() == [(topic, p) for p in range(PARTITIONS)],
                           SESSION_TIMEOUT_MS / 1000, "a2 owning all partitions after inst-b was removed", [a2])
        assert t_moved - t_remove < SESSION_TIMEOUT_MS / 1000 / 2, (
            f"partitions of the removed member took {t_moved - t_remove:.2f}s to move"
        )
        desc = describe_group(admin, group)
        assert [m.group_instance_id for m in desc.members] == ["inst-a"], desc.members
        assert not feeder.errors, feeder.errors[:3]
    finally:
        feeder.stop()
        for m in (a, b, a2):
            if m is not None:
                m.stop()
