"""Security in cluster mode: ACLs, SASL users, quotas and HTTP Basic auth
across three `sluice serve` processes sharing one PostgreSQL catalog and one
S3 bucket (moto), with real clients.

Every broker runs `--authorizer acl --super-users User:admin` and a single
SASL_PLAINTEXT listener (`--listeners` instead of `--listen`; the advertised
address is the listener's). User `admin` is created with `sluice users
--catalog URL` before the first start, `alice`, `bob` and `carol` while the
cluster runs. One cluster serves the module; topic and group names are
unique per test. "Through broker i" means a client whose bootstrap is broker
i and whose `client.id` names broker i's zone (Metadata then lists broker i
only), so every request but a group's (which go to its coordinator) reaches
broker i; /metrics' `sluice_requests_total` confirms where admin requests
and JoinGroups went.

* Users created once log in (SCRAM-SHA-256 and -512, PLAIN) through every
  broker; a wrong password or an unknown user is refused everywhere.
* An ACL created with the AdminClient through broker 0 is enforced by broker
  2 within 1.5 s (alice's raw Produce there: 29 before, 0 after; the delay is
  printed); DescribeAcls through every broker lists the same rules;
  DeleteAcls through broker 1 takes the right away on every broker within
  1.5 s.
* A group whose coordinator is each broker in turn, consumed through
  another broker: without Read on the group the coordinator refuses the
  JoinGroup with GROUP_AUTHORIZATION_FAILED; with Read every record is read
  and the offsets committed.
* A broker a producer was using is SIGKILLed: the producer carries on
  through the others with the same ACLs; a rule granted while the broker is
  down is enforced by it right after its restart, and so are the others.
* HTTP: every broker's admin API answers 401 (with the Basic challenge)
  without or with wrong credentials, 200 for the super user; alice's
  `/v1/topics` is trimmed the same on every broker, including to a rule
  added with `sluice acls --catalog` while running. A user deleted with
  `sluice users --catalog` is refused by every broker (SASL and HTTP).
* A `producer_byte_rate` quota set with `sluice quotas --catalog` holds on
  each broker (Kafka's quotas are per broker): two producers of the same
  user, through brokers 1 and 2 at once, are each held near the quota.
* The AdminClient through any broker: Metadata for a zone-pinned client
  names as controller a broker it lists (librdkafka sends the ACL and topic
  admin requests to the controller), and CreateAcls, DescribeAcls,
  DeleteAcls and CreateTopics work through brokers 1 and 2.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid

import pytest
import requests
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import cluster
import kafka_wire as kw
from helpers import Flood, run_floods
from sluice_proc import SluiceBroker
from test_acls import (
    GROUP,
    LITERAL,
    TOPIC,
    Op,
    acl_filter,
    allow,
    consume,
    describe,
    keys,
    produce,
    produce_code,
)

cluster_env = cluster.cluster_env

pytestmark = pytest.mark.e2e_timeout(150)

USERS = {"admin": "admin-s3cret", "alice": "alice-s3cret", "bob": "bob-s3cret", "carol": "carol-s3cret"}
OP_TIMEOUT = 15.0  # one admin call / flush / HTTP request
PROPAGATION_S = 1.5  # an ACL change reaches every broker (PostgreSQL notification)
CLI_PROPAGATION_S = 5.0  # what `sluice acls` / `sluice users` write (2 s reload at worst)

TOPIC_AUTHZ = KafkaError.TOPIC_AUTHORIZATION_FAILED  # 29
GROUP_AUTHZ = KafkaError.GROUP_AUTHORIZATION_FAILED  # 30
SASL_AUTH_FAILED = 58
MIB = 1024 * 1024


def uid() -> str:
    return uuid.uuid4().hex[:8]


# ---------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------


class SecureCluster:
    """Three brokers with the ACL authorizer and one SASL_PLAINTEXT listener."""

    def __init__(self, sluice_bin, workdir, env) -> None:
        self.sluice_bin = sluice_bin

        def factory(name, start=False, extra_args=()):
            return SluiceBroker(sluice_bin, workdir / name, name=name, extra_args=list(extra_args))

        self.c = cluster.make_cluster(
            factory, env, size=3, args=["--authorizer", "acl", "--super-users", "User:admin"])
        self.catalog = self.c.catalog_url
        for b in self.c.brokers:
            i = b.argv.index("--listen")
            del b.argv[i:i + 2]
            # The advertised address defaults to the listener's.
            b.argv += ["--listeners", f"SASL_PLAINTEXT://127.0.0.1:{b.kafka_port}"]
        self.cli("users", "add", "admin", "--password", USERS["admin"])
        for b in self.c.brokers:
            b.start()
        self.wait_members()
        self._admins = {}

    def __getitem__(self, i: int) -> SluiceBroker:
        return self.c[i]

    @property
    def brokers(self):
        return self.c.brokers

    # -- CLI ----------------------------------------------------------------

    def cli(self, group: str, *args, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(self.sluice_bin), group, "--catalog", self.catalog, *args]
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if check:
            assert cp.returncode == 0, f"{argv} exited {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
        return cp

    # -- client settings ------------------------------------------------------

    @staticmethod
    def sasl(user: str, password=None, mechanism: str = "SCRAM-SHA-256") -> dict:
        return {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": USERS[user] if password is None else password,
            "socket.timeout.ms": 10000,
            "socket.connection.setup.timeout.ms": 10000,
            "broker.address.family": "v4",
        }

    def pinned(self, i: int, user: str, **kw) -> dict:
        """Cluster.pinned: every broker bootstraps, broker i's zone."""
        return {**self.c.pinned(i), **self.sasl(user), **kw}

    def only(self, i: int, user: str, mechanism: str = "SCRAM-SHA-256", **kw) -> dict:
        """Broker i alone: its zone and only it to bootstrap from."""
        return {"bootstrap.servers": self.c[i].bootstrap, "client.id": f"e2e-sec,zone={self.c.zone(i)}",
                **self.sasl(user, mechanism=mechanism), **kw}

    def admin(self, i: int) -> AdminClient:
        if i not in self._admins:
            self._admins[i] = AdminClient(self.only(i, "admin"))
        return self._admins[i]

    # -- acting as the super user --------------------------------------------

    def wait_members(self, n: int = 3, timeout: float = 30.0) -> None:
        """Until every running broker's Metadata (unpinned) lists n brokers."""
        deadline = time.monotonic() + timeout
        for b in self.c.brokers:
            if not b.is_alive():
                continue
            a = AdminClient({"bootstrap.servers": b.bootstrap, **self.sasl("admin")})
            while True:
                got = sorted(a.list_topics(timeout=10).brokers)
                if len(got) == n:
                    break
                assert time.monotonic() < deadline, f"{b.name} lists brokers {got}, not {n}"
                time.sleep(0.2)

    def create_topic(self, name: str, partitions: int = 1, via: int = 0) -> None:
        fut = self.admin(via).create_topics([NewTopic(name, partitions, 1)], request_timeout=OP_TIMEOUT)[name]
        fut.result(timeout=OP_TIMEOUT)
        for i in range(3):
            if self.c[i].is_alive():
                eventually(lambda i=i: name in self.admin(i).list_topics(timeout=OP_TIMEOUT).topics,
                           5, f"{name} in broker {i}'s metadata")

    def grant(self, *bindings, via: int = 0) -> None:
        for b, f in self.admin(via).create_acls(list(bindings), request_timeout=OP_TIMEOUT).items():
            assert f.result(timeout=OP_TIMEOUT) is None, b

    # -- observation -----------------------------------------------------------

    def http(self, i: int, path: str, user=None, password=None, method="GET") -> requests.Response:
        auth = None if user is None else (user, USERS.get(user, "") if password is None else password)
        return requests.request(method, f"http://127.0.0.1:{self.c[i].http_port}{path}", auth=auth,
                                timeout=OP_TIMEOUT)

    def api_count(self, i: int, api: str) -> float:
        """sluice_requests_total{api=...} of broker i (0 if never counted)."""
        r = self.http(i, "/metrics", user="admin")
        assert r.status_code == 200, (r.status_code, r.text[:200])
        m = re.search(r'^sluice_requests_total\{api="%s"\} (\S+)$' % re.escape(api), r.text, re.M)
        return float(m.group(1)) if m else 0.0

    def wire(self, i: int, user: str = "admin") -> kw.WireConnection:
        """A raw connection to broker i, logged in as user (PLAIN)."""
        conn = kw.WireConnection("127.0.0.1", self.c[i].kafka_port, timeout=10)
        try:
            conn.api_versions()
            err = sasl_plain(conn, user, USERS[user])
            assert err == 0, f"{user} could not log in through broker {i}: error {err}"
        except BaseException:
            conn.close()
            raise
        return conn

    def coordinator(self, group: str) -> int:
        """The index of group's coordinator; every broker must agree."""
        answers = set()
        for i in range(3):
            with self.wire(i) as conn:
                err, node, _host, port = conn.find_coordinator(group)
                assert err == 0, f"FindCoordinator({group}) through broker {i}: error {err}"
                answers.add((node, port))
        assert len(answers) == 1, f"brokers disagree on {group}'s coordinator: {answers}"
        node, port = answers.pop()
        assert self.c[node - 1].kafka_port == port, (node, port)
        return node - 1


@pytest.fixture(scope="module")
def secure_cluster(sluice_bin, cluster_env, tmp_path_factory):
    sc = None
    try:
        sc = SecureCluster(sluice_bin, tmp_path_factory.mktemp("sec-cluster"), cluster_env)
        for user in ("alice", "bob", "carol"):
            # Created while the cluster runs, once, in the shared catalog.
            sc.cli("users", "add", user, "--password", USERS[user])
        yield sc
    finally:
        if sc is not None:
            sc._admins.clear()  # no client left retrying stopped brokers
            problems = []
            for b in sc.brokers:
                if b.is_alive():
                    rc = b.stop()
                    if rc != 0:
                        problems.append(f"{b.name} exited with code {rc} after SIGTERM\n{b.log_tail()}")
                else:
                    b._close_log()
            assert not problems, "\n".join(problems)


@pytest.fixture
def sec(request, secure_cluster):
    """The module's cluster; its logs are attached to a failing test."""
    request.node._sluice_brokers = secure_cluster.brokers
    for b in secure_cluster.brokers:
        b.assert_alive("before the test")
    yield secure_cluster
    for b in secure_cluster.brokers:
        b.assert_alive("after the test")


# ---------------------------------------------------------------------------
# Bounded helpers
# ---------------------------------------------------------------------------


def eventually(check, timeout: float, what: str, every: float = 0.05) -> float:
    """Call check() until it returns True, at most timeout seconds; returns
    the time taken."""
    start = time.monotonic()
    while True:
        last = check()
        if last is True:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")
        time.sleep(every)


def sasl_plain(conn: kw.WireConnection, user: str, password: str) -> int:
    """SaslHandshake + SaslAuthenticate (PLAIN): the login's error code."""
    r = conn.request(17, 1, kw.Writer().string("PLAIN").getvalue(), timeout=5)
    err = r.int16()
    if err:
        return err
    token = b"\0" + user.encode() + b"\0" + password.encode()
    r = conn.request(36, 0, kw.Writer().bytes_(token).getvalue(), timeout=5)
    return r.int16()


def plain_login_code(port: int, user: str, password: str) -> int:
    with kw.WireConnection("127.0.0.1", port, timeout=10) as conn:
        conn.api_versions()
        try:
            return sasl_plain(conn, user, password)
        except (kw.ConnectionClosed, OSError):
            return -1  # closed without an answer


def raw_produce(conn: kw.WireConnection, topic: str) -> int:
    """One record to partition 0 over a logged-in raw connection: its error code."""
    batch = kw.build_record_batch([kw.Record(key=None, value=b"probe-" + uid().encode())])
    return conn.produce(topic, 0, batch, acks=-1, timeout=10).error_code


API_DESCRIBE_ACLS, API_DELETE_ACLS = 29, 31


def wire_key(b) -> tuple:
    """An AclBinding as the wire's (resource type, name, pattern, principal,
    host, operation, permission)."""
    return (b.restype.value, b.name, b.resource_pattern_type.value, b.principal, b.host,
            b.operation.value, b.permission_type.value)


def _write_filter(w: kw.Writer, restype: int, name, pattern: int, principal=None) -> None:
    w.int8(restype).string(name).int8(pattern).string(principal).string(None).int8(1).int8(1)


def raw_describe_acls(conn: kw.WireConnection, restype: int, name, pattern: int, principal=None) -> set:
    """DescribeAcls v1 (operation and permission ANY): the rules as wire_key tuples."""
    w = kw.Writer()
    _write_filter(w, restype, name, pattern, principal)
    r = conn.request(API_DESCRIBE_ACLS, 1, w.getvalue(), timeout=10)
    r.int32()
    err, msg = r.int16(), r.string()
    assert err == 0, f"DescribeAcls: error {err} {msg}"
    out = set()
    for _ in range(r.array_len()):
        rt, rn, pt = r.int8(), r.string(), r.int8()
        for _ in range(r.array_len()):
            out.add((rt, rn, pt, r.string(), r.string(), r.int8(), r.int8()))
    return out


def raw_delete_acls(conn: kw.WireConnection, restype: int, name, pattern: int, principal=None) -> set:
    """DeleteAcls v1 with one filter: the rules it deleted as wire_key tuples."""
    w = kw.Writer().array_len(1)
    _write_filter(w, restype, name, pattern, principal)
    r = conn.request(API_DELETE_ACLS, 1, w.getvalue(), timeout=10)
    r.int32()
    n = r.array_len()
    assert n == 1, f"DeleteAcls: {n} filter results for 1 filter"
    err, msg = r.int16(), r.string()
    assert err == 0, f"DeleteAcls: error {err} {msg}"
    out = set()
    for _ in range(r.array_len()):
        e, m = r.int16(), r.string()
        assert e == 0, f"DeleteAcls match: error {e} {m}"
        out.add((r.int8(), r.string(), r.int8(), r.string(), r.string(), r.int8(), r.int8()))
    return out


# ---------------------------------------------------------------------------
# 1. Users and ACLs across the brokers
# ---------------------------------------------------------------------------


def test_users_and_acls_reach_every_broker(sec):
    tag = uid()
    t = f"xacl-{tag}"
    sec.create_topic(t, via=0)

    # Users created once log in through every broker, with each mechanism.
    for i in range(3):
        for user, mech in [("admin", "SCRAM-SHA-256"), ("alice", "SCRAM-SHA-256"),
                           ("alice", "SCRAM-SHA-512"), ("bob", "PLAIN")]:
            md = AdminClient(sec.only(i, user, mechanism=mech)).list_topics(timeout=OP_TIMEOUT)
            assert sorted(md.brokers) == [i + 1], f"{user}/{mech} through broker {i}: brokers {sorted(md.brokers)}"
        assert plain_login_code(sec[i].kafka_port, "alice", USERS["alice"]) == 0
        assert plain_login_code(sec[i].kafka_port, "alice", "not-" + USERS["alice"]) == SASL_AUTH_FAILED, i
        assert plain_login_code(sec[i].kafka_port, "mallory", "pw") == SASL_AUTH_FAILED, i

    # Nobody but admin may write yet, on any broker.
    for i in range(3):
        assert produce_code(sec.only(i, "alice"), t) == TOPIC_AUTHZ, f"alice wrote through broker {i} without an ACL"

    alice_write = allow(TOPIC, t, "User:alice", Op.WRITE)
    bob_read = allow(TOPIC, t, "User:bob", Op.READ)
    with sec.wire(2, "alice") as conn2:
        assert raw_produce(conn2, t) == TOPIC_AUTHZ
        before = sec.api_count(0, "CreateAcls")
        sec.grant(alice_write, bob_read, via=0)
        took = eventually(lambda: raw_produce(conn2, t) == 0, 10, "alice's Produce through broker 2 after CreateAcls")
    print(f"CreateAcls through broker 0 enforced by broker 2 after {took:.3f}s")
    assert sec.api_count(0, "CreateAcls") >= before + 1, "the CreateAcls did not go through broker 0"
    assert took <= PROPAGATION_S, f"broker 2 enforced the new ACL only after {took:.2f}s"
    assert produce(sec.only(2, "alice"), t, [b"via-2"]) == [None]

    # DescribeAcls through every broker lists the same rules (raw protocol:
    # see the last test for the AdminClient through brokers 1 and 2).
    both = {wire_key(alice_write), wire_key(bob_read)}
    for i in range(3):
        with sec.wire(i) as conn:
            assert raw_describe_acls(conn, 2, t, 3) == both, f"DescribeAcls({t}) through broker {i}"
            assert wire_key(alice_write) in raw_describe_acls(conn, 1, None, 1, "User:alice"), i
    assert keys(describe(sec.admin(0), acl_filter(TOPIC, t, LITERAL))) == keys([alice_write, bob_read])

    # DeleteAcls through broker 1 takes the right away everywhere.
    conns = [sec.wire(i, "alice") for i in range(3)]
    try:
        for i, conn in enumerate(conns):
            assert raw_produce(conn, t) == 0, f"alice refused through broker {i} before DeleteAcls"
        with sec.wire(1) as admin1:
            assert raw_delete_acls(admin1, 2, t, 3, "User:alice") == {wire_key(alice_write)}
        start = time.monotonic()
        delays = {}
        for i, conn in enumerate(conns):
            eventually(lambda conn=conn: raw_produce(conn, t) == TOPIC_AUTHZ, 10,
                       f"alice refused through broker {i} after DeleteAcls")
            delays[i] = time.monotonic() - start
    finally:
        for conn in conns:
            conn.close()
    print("DeleteAcls through broker 1 enforced after " + ", ".join(f"broker {i}: {d:.3f}s" for i, d in delays.items()))
    assert max(delays.values()) <= PROPAGATION_S, f"DeleteAcls enforced after {delays}"
    for i in range(3):
        assert produce_code(sec.only(i, "alice"), t) == TOPIC_AUTHZ, i
        with sec.wire(i) as conn:
            assert raw_describe_acls(conn, 2, t, 3) == {wire_key(bob_read)}, f"DescribeAcls({t}) through broker {i}"


# ---------------------------------------------------------------------------
# 2. Group ACLs on every coordinator
# ---------------------------------------------------------------------------


def test_group_acls_whichever_broker_coordinates(sec):
    tag = uid()
    t = f"xgrp-{tag}"
    values = [b"g-%d" % n for n in range(6)]
    sec.create_topic(t)
    assert produce(sec.only(0, "admin"), t, values) == [None] * len(values)

    # One group per coordinator.
    groups = {}
    for n in range(60):
        g = f"xgrp-{tag}-{n}"
        groups.setdefault(sec.coordinator(g), g)
        if len(groups) == 3:
            break
    assert sorted(groups) == [0, 1, 2], f"60 groups all on brokers {sorted(groups)}"

    # Read on the topic; Describe (not Read) on the groups, so FindCoordinator
    # passes and the coordinator's JoinGroup is what must refuse.
    sec.grant(allow(TOPIC, t, "User:alice", Op.READ),
              *[allow(GROUP, g, "User:alice", Op.DESCRIBE) for g in groups.values()])

    def coordinator_answers(i, g):
        with sec.wire(i, "alice") as conn:
            return conn.find_coordinator(g)[0] == 0

    for coord, g in sorted(groups.items()):
        via = (coord + 1) % 3
        eventually(lambda: all(coordinator_answers(i, g) for i in range(3)), 5,
                   f"alice's FindCoordinator({g}) on every broker")
        joins = sec.api_count(coord, "JoinGroup")
        errs, got = consume(sec.pinned(via, "alice"), t, g, subscribe=True, secs=15)
        assert (errs, got) == ([GROUP_AUTHZ], []), \
            f"group {g} (coordinator broker {coord}) through broker {via} without Read on the group"
        assert sec.api_count(coord, "JoinGroup") > joins, f"no JoinGroup reached {g}'s coordinator, broker {coord}"

        sec.grant(allow(GROUP, g, "User:alice", Op.READ))
        deadline = time.monotonic() + 20
        attempts = []
        while True:
            errs, got = consume(sec.pinned(via, "alice"), t, g, subscribe=True, want=len(values),
                                secs=15, commit=True)
            attempts.append(errs)
            if errs != [GROUP_AUTHZ] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (errs, got) == ([], values), \
            f"group {g} (coordinator broker {coord}) through broker {via} with Read: attempts {attempts}"
        print(f"group {g}: coordinator broker {coord}, consumed through broker {via}; "
              f"{len(attempts)} attempt(s) after the Read grant")
        # The commit is there, read through a third broker.
        c = Consumer({**sec.pinned((coord + 2) % 3, "alice"), "group.id": g, "enable.auto.commit": False})
        try:
            (tp,) = c.committed([TopicPartition(t, 0)], timeout=OP_TIMEOUT)
        finally:
            c.close()
        assert tp.error is None and tp.offset == len(values), tp


# ---------------------------------------------------------------------------
# 3. A killed broker and its restart
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(150)
def test_acls_hold_through_a_killed_broker(sec):
    tag = uid()
    ta, tb, tc = f"xkill-a-{tag}", f"xkill-b-{tag}", f"xkill-c-{tag}"
    for t in (ta, tb, tc):
        sec.create_topic(t)
    sec.grant(allow(TOPIC, ta, "User:alice", Op.WRITE))
    victim = 1

    results = {}
    p = Producer(sec.pinned(victim, "alice", **{"message.timeout.ms": 30000, "linger.ms": 5}))

    def send(topic, key):
        p.produce(topic, value=key.encode(), partition=0,
                  on_delivery=lambda e, m, key=key: results.__setitem__(key, e))

    def flush(timeout=40.0):
        left = p.flush(timeout)
        assert left == 0, f"{left} records neither delivered nor failed within {timeout}s"

    eventually(lambda: produce_code(sec.only(victim, "alice"), ta) is None, 5, "alice's grant on broker 1")
    produced = sec.api_count(victim, "Produce")
    send(ta, "before")
    flush()
    assert results["before"] is None, results
    assert sec.api_count(victim, "Produce") > produced, "the producer did not write through broker 1"

    sec[victim].kill9()
    try:
        _while_killed_and_after(sec, victim, send, flush, results, ta, tb, tc, tag)
    finally:
        if not sec[victim].is_alive():  # leave the module's cluster whole
            sec[victim].restart()
            sec.wait_members(3)


def _while_killed_and_after(sec, victim, send, flush, results, ta, tb, tc, tag):
    killed = time.monotonic()
    # A rule granted while broker 1 is down (through broker 0).
    sec.grant(allow(TOPIC, tc, "User:alice", Op.WRITE), via=0)
    send(ta, "outage-a")
    send(tb, "outage-b")
    flush()
    print(f"producer of broker {victim} failed over in {time.monotonic() - killed:.1f}s")
    assert results["outage-a"] is None, results
    assert results["outage-b"] is not None and results["outage-b"].code() == TOPIC_AUTHZ, results

    sec[victim].restart()
    sec.wait_members(3)
    with sec.wire(victim, "alice") as conn:
        got = {t: raw_produce(conn, t) for t in (ta, tb, tc)}
    assert got == {ta: 0, tb: TOPIC_AUTHZ, tc: 0}, f"broker {victim} right after its restart: {got}"
    for t, want in [(ta, None), (tb, TOPIC_AUTHZ), (tc, None)]:
        assert produce_code(sec.only(victim, "alice"), t) == want, t
    # The producer that was using it goes on.
    send(ta, "after")
    send(tc, "after-c")
    flush()
    assert results["after"] is None and results["after-c"] is None, results
    # Every record is there once (the probes aside).
    want = [b"before", b"outage-a", b"after"]
    c = Consumer({**sec.only(0, "admin"), "group.id": f"xkill-read-{tag}", "enable.auto.commit": False})
    got = []
    try:
        c.assign([TopicPartition(ta, 0, 0)])
        deadline = time.monotonic() + 15
        while len(got) < len(want) and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            assert m.error() is None, m.error()
            if not m.value().startswith(b"probe-"):
                got.append(m.value())
    finally:
        c.close()
    assert got == want, got


# ---------------------------------------------------------------------------
# 4. The HTTP admin API on every broker
# ---------------------------------------------------------------------------


def test_http_auth_and_trimming_on_every_broker(sec):
    tag = uid()
    seen, hidden, later = f"xhttp-seen-{tag}", f"xhttp-hidden-{tag}", f"xhttp-later-{tag}"
    for t in (seen, hidden, later):
        sec.create_topic(t)
    sec.grant(allow(TOPIC, seen, "User:alice", Op.DESCRIBE))

    def names(r) -> set:
        assert r.status_code == 200, (r.status_code, r.text[:300])
        return {x["topic"] for x in r.json()}

    def alice_topics(i) -> set:
        return names(sec.http(i, "/v1/topics", user="alice"))

    for i in range(3):
        assert sec.http(i, "/healthz").status_code == 200
        for path in ("/v1/topics", "/v1/cluster", "/v1/groups", "/metrics"):
            r = sec.http(i, path)
            assert r.status_code == 401, f"broker {i} GET {path} without credentials: {r.status_code}"
            assert r.headers.get("WWW-Authenticate") == 'Basic realm="sluice"', r.headers
            assert sec.http(i, path, user="alice", password="wrong").status_code == 401, (i, path)
            assert sec.http(i, path, user="admin").status_code == 200, (i, path)
        r = sec.http(i, "/v1/cluster", user="admin")
        assert sorted(b["broker_id"] for b in r.json()["brokers"]) == [1, 2, 3], r.json()
        assert sec.http(i, "/v1/cluster", user="alice").status_code == 403, i
        assert {seen, hidden, later} <= names(sec.http(i, "/v1/topics", user="admin")), i
        eventually(lambda i=i: seen in alice_topics(i), PROPAGATION_S, f"{seen} for alice on broker {i}")
    lists = [alice_topics(i) for i in range(3)]
    assert lists[0] == lists[1] == lists[2], f"alice's /v1/topics differ between brokers: {lists}"
    assert seen in lists[0] and hidden not in lists[0] and later not in lists[0], lists[0]
    for i in range(3):
        assert sec.http(i, f"/v1/topics/{hidden}", user="alice").status_code == 403, i

    # A rule added with the CLI while the cluster runs reaches every broker.
    sec.cli("acls", "add", "--allow-principal", "User:alice", "--operation", "Describe", "--topic", later)
    start = time.monotonic()
    for i in range(3):
        eventually(lambda i=i: later in alice_topics(i), CLI_PROPAGATION_S, f"{later} for alice on broker {i}")
    print(f"`sluice acls add` seen by every broker's HTTP side after {time.monotonic() - start:.2f}s")
    lists = [alice_topics(i) for i in range(3)]
    assert lists[0] == lists[1] == lists[2], lists
    assert {seen, later} <= lists[0] and hidden not in lists[0], lists[0]

    # A user deleted once with the CLI can log in nowhere (Kafka, HTTP).
    # (Not logged in over HTTP before: a broker remembers a successful HTTP
    # login for 30 s, by design, see http_auth.rs.)
    for i in range(3):
        assert plain_login_code(sec[i].kafka_port, "carol", USERS["carol"]) == 0, i
    sec.cli("users", "delete", "carol")
    start = time.monotonic()
    for i in range(3):
        eventually(lambda i=i: plain_login_code(sec[i].kafka_port, "carol", USERS["carol"]) == SASL_AUTH_FAILED,
                   CLI_PROPAGATION_S, f"carol refused on broker {i}")
        eventually(lambda i=i: sec.http(i, "/v1/topics", user="carol").status_code == 401,
                   CLI_PROPAGATION_S, f"carol's HTTP refused on broker {i}")
    print(f"`sluice users delete` refused by every broker after {time.monotonic() - start:.2f}s")


# ---------------------------------------------------------------------------
# 5. Quotas per broker
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(120)
def test_producer_byte_rate_holds_on_each_broker(sec):
    tag = uid()
    t = f"xquota-{tag}"
    quota = 2 * MIB
    sec.create_topic(t, partitions=2)
    sec.grant(allow(TOPIC, t, "User:alice", Op.WRITE))
    sec.cli("quotas", "alter", "--user", "alice", "--add-config", f"producer_byte_rate={quota}")
    try:
        time.sleep(PROPAGATION_S)
        via = (1, 2)
        produced = {i: sec.api_count(i, "Produce") for i in range(3)}
        floods = [Flood(sec.only(i, "alice"), t, queue_kbytes=4096) for i in via]
        t0 = run_floods(floods, 22)
        rates = {i: f.rate_between(t0 + 12, t0 + 22) for i, f in zip(via, floods)}
        print("alice's producers (quota %.1f MiB/s): " % (quota / MIB)
              + ", ".join(f"through broker {i}: {r / MIB:.2f} MiB/s" for i, r in rates.items()))
        for f in floods:
            assert not f.errors, f.errors[:3]
        after = {i: sec.api_count(i, "Produce") for i in range(3)}
        assert after[0] - produced[0] < 5, f"the floods produced through broker 0: {produced} -> {after}"
        for i, r in rates.items():
            assert abs(r - quota) <= 0.25 * quota, \
                f"alice through broker {i} at {r / MIB:.2f} MiB/s, quota {quota / MIB:.1f} MiB/s (per broker)"
    finally:
        sec.cli("quotas", "alter", "--user", "alice", "--delete-config", "producer_byte_rate")


# ---------------------------------------------------------------------------
# 6. The AdminClient through any broker
# ---------------------------------------------------------------------------


def test_admin_client_through_any_broker(sec):
    """librdkafka sends CreateTopics, CreateAcls, DescribeAcls, DeleteAcls...
    to the controller Metadata names, which Kafka always lists among the
    brokers of that response: an AdminClient pinned to any broker (Metadata
    lists its zone's broker only) must be able to use them."""
    tag = uid()
    t = f"xadm-{tag}"
    sec.create_topic(t)
    rule = allow(TOPIC, t, "User:bob", Op.DESCRIBE)
    sec.grant(rule)
    for i in range(3):
        md = sec.admin(i).list_topics(timeout=OP_TIMEOUT)
        assert md.controller_id in md.brokers, (
            f"Metadata through broker {i} (client.id zone={sec.c.zone(i)}) lists brokers {sorted(md.brokers)} "
            f"but names controller {md.controller_id}: the AdminClient waits for that controller forever")
    for i in range(3):
        before = sec.api_count(i, "DescribeAcls")
        assert keys(describe(sec.admin(i), acl_filter(TOPIC, t, LITERAL))) == keys([rule]), i
        assert sec.api_count(i, "DescribeAcls") > before, f"DescribeAcls did not go through broker {i}"
    # Create, describe and delete rules, and create a topic, through broker 2.
    extra = allow(TOPIC, t, "User:bob", Op.READ)
    before = sec.api_count(2, "CreateAcls")
    sec.grant(extra, via=2)
    assert sec.api_count(2, "CreateAcls") > before
    (fut,) = sec.admin(2).delete_acls([acl_filter(TOPIC, t, LITERAL, principal="User:bob")],
                                      request_timeout=OP_TIMEOUT).values()
    assert keys(fut.result(timeout=OP_TIMEOUT)) == keys([rule, extra])
    # The other brokers learn of the deletion by the catalog's notification
    # (or their 2 s reload), as Kafka's brokers learn ACL changes
    # eventually: bounded by the reload.
    for i in range(3):
        deadline = time.monotonic() + CLI_PROPAGATION_S
        while (left := describe(sec.admin(i), acl_filter(TOPIC, t, LITERAL))) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == [], (i, left)
    sec.create_topic(f"xadm-new-{tag}", partitions=2, via=1)
