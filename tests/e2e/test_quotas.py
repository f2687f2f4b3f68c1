"""Client quotas (issue 17), with real clients.

* Two confluent-kafka producers log in as different users over
  SASL_PLAINTEXT; alice produces flat out with `producer_byte_rate`
  5 MiB/s (set with `sluice quotas alter`), bob at a paced 40 MiB/s. Past
  her first burst of credit her acknowledged rate is within ±15% of the
  quota (the broker's meters are token buckets, so she is held at it every
  second, not in ten-second bursts and trickles), and bob keeps at least
  90% of the rate he reaches alone (measured in the same run). The broker
  counts the throttles in /metrics.
* `consumer_byte_rate`: a consumer of a user with a 2 MiB/s quota reads a
  44 MiB backlog: its first ten seconds of credit at once, the rest at the
  quota (the whole read takes what that predicts, -20% to +50%), and every
  record.
* DescribeClientQuotas and AlterClientQuotas over the wire (kafka_wire):
  set, describe (exact, default and "any" matches, strict), remove; refused
  with CLUSTER_AUTHORIZATION_FAILED for a user without the cluster rights;
  bad keys and values answer INVALID_REQUEST.
* `sluice quotas describe --json` and bad CLI input.
"""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import kafka_wire as kw
from helpers import Flood, run_floods, sasl_conf

USERS = {"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
MIB = 1024 * 1024
QUOTA = 5 * MIB
BOB_RATE = 8 * QUOTA
CLUSTER_AUTHORIZATION_FAILED, INVALID_REQUEST = 31, 42


def cli(sluice_bin, data_dir, *args, check=True):
    return subprocess.run([str(sluice_bin), *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60, check=check)


@pytest.fixture
def qbroker(broker_factory, sluice_bin):
    b = broker_factory("quotas", start=False)
    for name, pw in USERS.items():
        cli(sluice_bin, b.data_dir, "users", "add", name, "--password", pw)
    i = b.argv.index("--listen")
    del b.argv[i:i + 2]
    b.argv += ["--listeners", f"SASL_PLAINTEXT://127.0.0.1:{b.kafka_port}",
               "--authorizer", "acl", "--super-users", "User:admin",
               "--allow-everyone-if-no-acl-found"]
    b.start()
    return b


def conf(b, user, **extra):
    return sasl_conf(f"127.0.0.1:{b.kafka_port}", user, USERS[user], **extra)


def test_producer_byte_rate_holds_one_user_and_spares_the_other(qbroker, sluice_bin):
    topic = f"q-{uuid.uuid4().hex[:6]}"
    # Bob is paced at 8x alice's quota (flat out he would write tens of GB
    # to this machine's disk in a minute): first alone, for his figure.
    solo = Flood(conf(qbroker, "bob"), topic, rate=BOB_RATE)
    t0 = run_floods([solo], 8)
    bob_alone = solo.rate_between(t0 + 2, t0 + 8)
    assert not solo.errors, solo.errors[:3]

    cli(sluice_bin, qbroker.data_dir, "quotas", "alter", "--user", "alice",
        "--add-config", f"producer_byte_rate={QUOTA}")
    out = json.loads(cli(sluice_bin, qbroker.data_dir, "quotas", "describe", "--json").stdout)
    assert out == [{"entity": {"user": "alice"}, "quotas": {"producer_byte_rate": QUOTA}}], out
    time.sleep(3)  # the broker reloads quotas every 2 s

    # Alice flat out, bob paced as before.
    alice = Flood(conf(qbroker, "alice"), topic)
    bob = Flood(conf(qbroker, "bob"), topic, rate=BOB_RATE)
    t0 = run_floods([alice, bob], 34)
    assert not alice.errors and not bob.errors, (alice.errors[:3], bob.errors[:3])
    # Past the first window (11 s), alice is held at her quota.
    alice_rate = alice.rate_between(t0 + 14, t0 + 34)
    bob_rate = bob.rate_between(t0 + 14, t0 + 34)
    print(f"bob alone {bob_alone / MIB:.1f} MiB/s (paced at {BOB_RATE / MIB:.0f}); with alice "
          f"throttled: alice {alice_rate / MIB:.2f} MiB/s (quota {QUOTA / MIB:.0f}), bob {bob_rate / MIB:.1f} MiB/s")
    assert alice_rate <= 1.15 * QUOTA, f"alice at {alice_rate / MIB:.2f} MiB/s: not held"
    assert alice_rate >= 0.85 * QUOTA, f"alice at {alice_rate / MIB:.2f} MiB/s: throttled too hard"
    assert bob_alone >= 0.9 * BOB_RATE, f"bob alone only reached {bob_alone / MIB:.1f} MiB/s"
    assert bob_rate >= 0.9 * bob_alone, f"bob slowed from {bob_alone / MIB:.1f} to {bob_rate / MIB:.1f} MiB/s"

    req = urllib.request.Request(f"http://127.0.0.1:{qbroker.http_port}/metrics", headers={
        "Authorization": "Basic " + base64.b64encode(b"admin:" + USERS["admin"].encode()).decode()})
    with urllib.request.urlopen(req, timeout=10) as r:
        metrics = r.read().decode()
    line = [x for x in metrics.splitlines()
            if x.startswith('sluice_quota_throttles_total{quota="producer_byte_rate"}')]
    assert line and float(line[0].split()[-1]) > 0, line


def test_consumer_byte_rate(qbroker, sluice_bin):
    topic = f"qc-{uuid.uuid4().hex[:6]}"
    n, size = 2800, 16 * 1024  # 44 MiB backlog
    p = Producer(conf(qbroker, "admin", **{"linger.ms": 5}))
    for i in range(n):
        p.produce(topic, b"%08d" % i + b"y" * (size - 8), partition=0)
        if i % 200 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    cli(sluice_bin, qbroker.data_dir, "quotas", "alter", "--user", "carol",
        "--add-config", f"consumer_byte_rate={2 * MIB}")
    time.sleep(3)
    c = Consumer(conf(qbroker, "carol", **{"group.id": f"g-{uuid.uuid4().hex[:6]}",
                                           "enable.auto.commit": False}))
    got, marks = 0, []
    seen = set()
    start = time.monotonic()
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        while got < n and time.monotonic() - start < 60:
            for m in c.consume(100, timeout=0.5):
                assert m.error() is None, m.error()
                seen.add(m.value()[:8])
                got += 1
            marks.append((time.monotonic(), got))
    finally:
        c.close()
    assert got == n and len(seen) == n, f"read {got} of {n}"
    elapsed = marks[-1][0] - start
    rate = n * size / elapsed
    print(f"carol read {n * size / MIB:.0f} MiB in {elapsed:.1f} s: {rate / MIB:.2f} MiB/s (quota 2)")
    # The bucket's credit (ten seconds of the quota) comes at once, the
    # rest at the quota.
    expected = (n * size - 10 * 2 * MIB) / (2 * MIB)
    assert 0.8 * expected <= elapsed <= 1.5 * expected, (
        f"carol read the backlog in {elapsed:.1f} s; at her quota after her credit: {expected:.1f} s")


API_SASL_HANDSHAKE, API_SASL_AUTHENTICATE = 17, 36
API_DESCRIBE_CLIENT_QUOTAS, API_ALTER_CLIENT_QUOTAS = 48, 49


def quota_entry(user=None, client=None, user_default=False):
    entity = []
    if user is not None or user_default:
        entity.append({"entity_type": "user", "entity_name": user})
    if client is not None:
        entity.append({"entity_type": "client-id", "entity_name": client})
    return entity


def _entity(w: kw.Writer, entity) -> None:
    w.array_len(len(entity))
    for c in entity:
        w.string(c["entity_type"]).string(c["entity_name"])


def _read_entity(r: kw.Reader):
    return [{"entity_type": r.string(), "entity_name": r.string()} for _ in range(r.array_len())]


def encode_alter(body) -> bytes:
    """AlterClientQuotas v0."""
    w = kw.Writer().array_len(len(body["entries"]))
    for e in body["entries"]:
        _entity(w, e["entity"])
        w.array_len(len(e["ops"]))
        for op in e["ops"]:
            w.string(op["key"]).raw(struct.pack(">d", op["value"])).bool(op["remove"])
    return w.bool(body["validate_only"]).getvalue()


def decode_alter(r: kw.Reader):
    r.int32()
    entries = []
    for _ in range(r.array_len()):
        code, msg = r.int16(), r.string()
        entries.append({"error_code": code, "error_message": msg, "entity": _read_entity(r)})
    return {"entries": entries}


def encode_describe(body) -> bytes:
    """DescribeClientQuotas v0."""
    w = kw.Writer().array_len(len(body["components"]))
    for c in body["components"]:
        w.string(c["entity_type"]).int8(c["match_type"]).string(c["match"])
    return w.bool(body["strict"]).getvalue()


def decode_describe(r: kw.Reader):
    r.int32()
    code, msg = r.int16(), r.string()
    n = r.array_len()
    entries = []
    for _ in range(max(n, 0)):
        entity = _read_entity(r)
        values = []
        for _ in range(r.array_len()):
            key = r.string()
            values.append({"key": key, "value": struct.unpack(">d", r.take(8))[0]})
        entries.append({"entity": entity, "values": values})
    return {"error_code": code, "error_message": msg, "entries": entries}


def test_client_quota_apis(qbroker, sluice_bin):
    def call(user, api, body):
        with kw.WireConnection("127.0.0.1", qbroker.kafka_port) as conn:
            conn.api_versions()
            r = conn.request(API_SASL_HANDSHAKE, 1, kw.Writer().string("PLAIN").getvalue(), timeout=5)
            assert r.int16() == 0
            token = b"\0" + user.encode() + b"\0" + USERS[user].encode()
            r = conn.request(API_SASL_AUTHENTICATE, 0, kw.Writer().bytes_(token).getvalue(), timeout=5)
            assert r.int16() == 0, "PLAIN login failed"
            if api == "AlterClientQuotas":
                return decode_alter(conn.request(API_ALTER_CLIENT_QUOTAS, 0, encode_alter(body), timeout=10))
            return decode_describe(conn.request(API_DESCRIBE_CLIENT_QUOTAS, 0, encode_describe(body), timeout=10))

    # Alter: set alice's and the default user's quotas, in one request.
    resp = call("admin", "AlterClientQuotas", {
        "entries": [
            {"entity": quota_entry("alice"), "ops": [
                {"key": "producer_byte_rate", "value": 1048576.0, "remove": False},
                {"key": "consumer_byte_rate", "value": 2097152.0, "remove": False}]},
            {"entity": quota_entry(user_default=True), "ops": [
                {"key": "request_percentage", "value": 50.0, "remove": False}]},
            {"entity": quota_entry("bob"), "ops": [
                {"key": "no_such_quota", "value": 1.0, "remove": False}]},
            {"entity": quota_entry("bob"), "ops": [
                {"key": "producer_byte_rate", "value": -5.0, "remove": False}]},
        ],
        "validate_only": False,
    })
    codes = [e["error_code"] for e in resp["entries"]]
    assert codes == [0, 0, INVALID_REQUEST, INVALID_REQUEST], resp

    def describe(components, strict=False):
        r = call("admin", "DescribeClientQuotas", {"components": components, "strict": strict})
        assert r["error_code"] == 0, r
        return {
            tuple((e["entity_type"], e["entity_name"]) for e in entry["entity"]):
                {v["key"]: v["value"] for v in entry["values"]}
            for entry in r["entries"]
        }

    assert describe([{"entity_type": "user", "match_type": 0, "match": "alice"}]) == {
        (("user", "alice"),): {"producer_byte_rate": 1048576.0, "consumer_byte_rate": 2097152.0}}
    assert describe([{"entity_type": "user", "match_type": 1, "match": None}]) == {
        (("user", None),): {"request_percentage": 50.0}}
    assert set(describe([{"entity_type": "user", "match_type": 2, "match": None}])) == {
        (("user", "alice"),)}
    assert describe([{"entity_type": "client-id", "match_type": 2, "match": None}], strict=True) == {}

    # Remove one key.
    resp = call("admin", "AlterClientQuotas", {
        "entries": [{"entity": quota_entry("alice"), "ops": [
            {"key": "consumer_byte_rate", "value": 0.0, "remove": True}]}],
        "validate_only": False,
    })
    assert resp["entries"][0]["error_code"] == 0, resp
    assert describe([{"entity_type": "user", "match_type": 0, "match": "alice"}]) == {
        (("user", "alice"),): {"producer_byte_rate": 1048576.0}}

    # Without the cluster rights (once a rule names the cluster, the
    # broker's --allow-everyone-if-no-acl-found no longer opens it).
    cli(sluice_bin, qbroker.data_dir, "acls", "add", "--allow-principal", "User:bob",
        "--operation", "Describe", "--cluster")
    time.sleep(3)
    r = call("carol", "DescribeClientQuotas", {"components": [], "strict": False})
    assert r["error_code"] == CLUSTER_AUTHORIZATION_FAILED, r
    r = call("carol", "AlterClientQuotas", {
        "entries": [{"entity": quota_entry("carol"), "ops": [
            {"key": "producer_byte_rate", "value": 1e9, "remove": False}]}],
        "validate_only": False,
    })
    assert r["entries"][0]["error_code"] == CLUSTER_AUTHORIZATION_FAILED, r


def test_quotas_cli_bad_input(qbroker, sluice_bin):
    for args, needle in [
        (["alter", "--user", "x", "--add-config", "bogus_rate=5"], "unknown quota"),
        (["alter", "--user", "x", "--add-config", "producer_byte_rate=fast"], "not a number"),
        (["alter", "--user", "x", "--add-config", "producer_byte_rate=0"], "positive"),
        (["alter", "--add-config", "producer_byte_rate=5"], "name the entity"),
        (["alter", "--user", "x"], "nothing to change"),
    ]:
        cp = cli(sluice_bin, qbroker.data_dir, "quotas", *args, check=False)
        assert cp.returncode != 0 and needle in cp.stderr, (args, cp.stderr)
