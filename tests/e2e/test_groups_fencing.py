"""Zombie fencing: a member the group has moved on from cannot commit.

Two confluent-kafka members share a topic; one is killed -9 and, once its
session expired, the survivor owns every partition in a new generation. A
zombie (a stalled process coming back) would still send requests with its
old member id and generation. Those are sent here on the wire (OffsetCommit
v2, Heartbeat v0, with kafka_wire's framing), with the ids the members'
own JoinGroup responses reported:

* OffsetCommit with the dead member's id and old generation: UNKNOWN_MEMBER_ID
* OffsetCommit with the survivor's id but the old generation: ILLEGAL_GENERATION
* OffsetCommit with no member id / generation -1 on the active group:
  UNKNOWN_MEMBER_ID (only an Empty group takes such "simple" commits)
* Heartbeat with the dead member's id: UNKNOWN_MEMBER_ID
* the survivor's id and current generation: accepted (checks the encoding);

and the group's committed offsets are unchanged by the rejected commits.
"""

from __future__ import annotations

import re

import pytest

from helpers import admin_client, create_topic, make_producer, produce_all
from kafka_wire import Reader, WireConnection, Writer
from test_groups_member import Member, group_offsets, unique_values, wait_for

PARTITIONS = 4
SESSION_TIMEOUT_MS = 6000
API_OFFSET_COMMIT = 8
API_HEARTBEAT = 12
ERR_NONE, ERR_ILLEGAL_GENERATION, ERR_UNKNOWN_MEMBER_ID = 0, 22, 25

JOIN_RE = re.compile(r"JoinGroup response: GenerationId (\d+),.* my MemberId ([^,]+),")


def last_join(member):
    """(generation, member id) of the member's last successful JoinGroup."""
    found = [
        (int(mo.group(1)), mo.group(2))
        for e in member.of("rdlog")
        for mo in [JOIN_RE.search(e["msg"])]
        if mo
    ]
    assert found, f"no JoinGroup response logged by member {member.name}"
    return found[-1]


def offset_commit_v2(conn, group, generation, member_id, topic, offsets):
    """OffsetCommit v2; returns {partition: error_code}."""
    w = Writer().string(group).int32(generation).string(member_id).int64(-1)
    w.array_len(1).string(topic).array_len(len(offsets))
    for p, o in offsets.items():
        w.int32(p).int64(o).string("fencing-test")
    r: Reader = conn.request(API_OFFSET_COMMIT, 2, w.getvalue())
    out = {}
    for _ in range(r.array_len()):
        r.string()
        for _ in range(r.array_len()):
            p = r.int32()
            out[p] = r.int16()
    assert r.remaining() == 0, "trailing bytes in OffsetCommit v2 response"
    return out


def heartbeat_v0(conn, group, generation, member_id):
    r = conn.request(API_HEARTBEAT, 0, Writer().string(group).int32(generation).string(member_id).getvalue())
    return r.int16()


@pytest.mark.e2e_timeout(90)
def test_expired_member_is_fenced(broker, tmp_path):
    topic = "fence-topic"
    group = "fence-group"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    producer = make_producer(broker.bootstrap)
    produce_all(producer, topic, unique_values("f", 200, PARTITIONS))
    producer.flush(5)
    del producer
    admin = admin_client(broker.bootstrap)
    conf = {"session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 1000}
    zombie = Member(tmp_path, "zombie", broker.bootstrap, group, [topic], conf=conf, rdlog=["JOINGROUP"])
    survivor = Member(tmp_path, "survivor", broker.bootstrap, group, [topic], conf=conf, rdlog=["JOINGROUP"])
    try:
        wait_for(lambda: zombie.assignment() and survivor.assignment()
                 and len(zombie.assignment()) == 2 and len(survivor.assignment()) == 2,
                 30, "2 partitions each", [zombie, survivor])
        wait_for(lambda: len(zombie.of("commit")) + len(survivor.of("commit")) == 200, 30,
                 "all 200 messages committed", [zombie, survivor])
        old_gen, zombie_id = last_join(zombie)
        gen_s, survivor_id = last_join(survivor)
        assert gen_s == old_gen and zombie_id != survivor_id

        zombie.kill9()
        wait_for(lambda: survivor.assignment() == [(topic, p) for p in range(PARTITIONS)],
                 SESSION_TIMEOUT_MS / 1000 + 15, "the survivor owning every partition", [survivor])
        new_gen, same_id = last_join(survivor)
        assert same_id == survivor_id and new_gen > old_gen, (old_gen, new_gen)
        before = group_offsets(admin, group)
        assert before == {(topic, p): 50 for p in range(PARTITIONS)}, before

        bogus = {p: 7 for p in range(PARTITIONS)}
        # The group's coordinator (a cluster's brokers answer NOT_COORDINATOR
        # for groups of another).
        with WireConnection("127.0.0.1", broker.kafka_port) as finder:
            err, _, host, port = finder.find_coordinator(group)
            assert err == 0, f"FindCoordinator error {err}"
        with WireConnection(host, port) as conn:
            cases = [
                ("dead member, old generation", old_gen, zombie_id, ERR_UNKNOWN_MEMBER_ID),
                ("live member, old generation", old_gen, survivor_id, ERR_ILLEGAL_GENERATION),
                ("no member, generation -1, active group", -1, "", ERR_UNKNOWN_MEMBER_ID),
            ]
            got = {what: offset_commit_v2(conn, group, gen, mid, topic, bogus) for what, gen, mid, _ in cases}
            want = {what: {p: code for p in bogus} for what, _, _, code in cases}
            hb = heartbeat_v0(conn, group, old_gen, zombie_id)
            ok = offset_commit_v2(conn, group, new_gen, survivor_id, topic, {0: 50})
        assert got == want, f"OffsetCommit error codes per partition: {got}, expected {want}"
        assert hb == ERR_UNKNOWN_MEMBER_ID, f"Heartbeat of the expired member: error {hb}, expected 25"
        assert ok == {0: ERR_NONE}, f"OffsetCommit by the current member and generation: {ok}"
        after = group_offsets(admin, group)
        assert after == before, f"committed offsets changed by rejected commits: {before} -> {after}"
        assert survivor.assignment() == [(topic, p) for p in range(PARTITIONS)]
    finally:
        zombie.stop()
        survivor.stop()
