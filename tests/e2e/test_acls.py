"""Kafka ACL authorization (`--authorizer acl`), with real clients.

One broker per module serves a SASL_PLAINTEXT listener (clients log in with
SCRAM-SHA-256) and an SSL listener that needs a client certificate
(`--tls-client-ca`), with `--authorizer acl --super-users User:admin`; users
admin, alice, bob and carol come from `sluice users` before the first start.
Topic, group and principal names are unique per test, so tests share it.

* ACL admin APIs: admin creates, describes (filtered by principal, by
  resource with LITERAL and MATCH patterns, by resource type) and deletes
  ACLs through the AdminClient; alice gets CLUSTER_AUTHORIZATION_FAILED for
  CreateAcls, DeleteAcls and (raw protocol, v1-v3) DescribeAcls and changes
  or sees nothing.
* Each operation refused with Kafka's exact error code, then allowed once
  the ACL is granted: produce (29), fetch with assign (29), a group
  subscription without Read on the group (30), CreateTopics (29),
  DeleteTopics (29), DescribeConfigs (29), IncrementalAlterConfigs (29),
  CreatePartitions (29); InitProducerId without any Write (31) and an
  idempotent producer once Write is granted.
* Prefixed patterns (Read on `llm.` prefixed) and deny beating allow (a
  literal Deny on `llm.secret` wins over the prefixed Allow).
* The super user needs no ACL at all; a `User:*` rule applies to everyone.
* Metadata lists only the topics a principal may Describe; a hidden topic
  asked for by name answers TOPIC_AUTHORIZATION_FAILED.
* A group member without Read on the group (Describe only) is refused with
  GROUP_AUTHORIZATION_FAILED on join and on commit, Read on the topic
  notwithstanding.
* `sluice acls add|list --json|remove` on the running broker's catalog take
  effect within 5 s; bad input (unknown operation, principal without
  `User:`, no resource) exits non-zero naming the problem.
* Mutual TLS: the principal is `User:` + the certificate subject in RFC 2253
  order (`User:CN=alice,O=Sluice tests`), distinct from SASL's `User:alice`.
* A second broker with `--allow-everyone-if-no-acl-found`: a topic no ACL
  names is open to everyone; once a rule names it, only that rule counts.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

import kafka_wire as kw
import tls_certs
from sluice_proc import SluiceBroker, free_port

pytestmark = pytest.mark.e2e_timeout(120)

USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "b0b-secret", "carol": "carol-secret"}
CERT_PRINCIPAL = "User:CN=alice,O=Sluice tests"
OP_TIMEOUT = 15.0  # seconds, for one admin call / flush
CLI_PROPAGATION_S = 5.0  # a running broker reloads ACLs every 2 s

TOPIC_AUTHZ = KafkaError.TOPIC_AUTHORIZATION_FAILED  # 29
GROUP_AUTHZ = KafkaError.GROUP_AUTHORIZATION_FAILED  # 30
CLUSTER_AUTHZ = KafkaError.CLUSTER_AUTHORIZATION_FAILED  # 31

LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER
Op = AclOperation


def uid() -> str:
    return uuid.uuid4().hex[:8]


# ---------------------------------------------------------------------------
# The broker
# ---------------------------------------------------------------------------


def run_cli(sluice_bin, *args, check=True):
    return subprocess.run([str(sluice_bin), *args], capture_output=True, text=True,
                          timeout=60, check=check)


class AclBroker:
    """A SASL_PLAINTEXT + mutual-TLS SSL broker with the ACL authorizer on."""

    def __init__(self, broker: SluiceBroker, sluice_bin, certs, extra=()):
        self.b = broker
        self.sluice_bin = sluice_bin
        self.certs = certs
        for name, password in USERS.items():
            run_cli(sluice_bin, "users", "--data-dir", str(broker.data_dir), "add", name,
                    "--password", password)
        self.sasl_port = broker.kafka_port  # wait_ready probes this port
        self.ssl_port = free_port()
        i = broker.argv.index("--listen")
        del broker.argv[i:i + 2]
        broker.argv += [
            "--listeners", f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.ssl_port}",
            "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
            "--tls-client-ca", str(certs.ca),
            "--authorizer", "acl", "--super-users", "User:admin", *extra,
        ]
        broker.start()
        self._admin = AdminClient(self.conf("admin"))

    def conf(self, user: str, **kw) -> dict:
        c = {
            "bootstrap.servers": f"127.0.0.1:{self.sasl_port}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": user,
            "sasl.password": USERS[user],
            "socket.timeout.ms": 10000,
            "broker.address.family": "v4",
        }
        c.update(kw)
        return c

    def mtls_conf(self, **kw) -> dict:
        c = {
            "bootstrap.servers": f"127.0.0.1:{self.ssl_port}",
            "security.protocol": "SSL",
            "ssl.ca.location": str(self.certs.ca),
            "ssl.certificate.location": str(self.certs.client_cert),
            "ssl.key.location": str(self.certs.client_key),
            "socket.timeout.ms": 10000,
            "broker.address.family": "v4",
        }
        c.update(kw)
        return c

    def admin(self, user: str = "admin") -> AdminClient:
        return self._admin if user == "admin" else AdminClient(self.conf(user))

    # -- acting as the super user ------------------------------------------

    def grant(self, *bindings: AclBinding) -> None:
        futs = self._admin.create_acls(list(bindings), request_timeout=OP_TIMEOUT)
        for b, f in futs.items():
            assert f.result(timeout=OP_TIMEOUT) is None, b

    def create_topic(self, name: str, partitions: int = 1) -> None:
        f = self._admin.create_topics([NewTopic(name, partitions, 1)], request_timeout=OP_TIMEOUT)[name]
        f.result(timeout=OP_TIMEOUT)

    def seed(self, topic: str, values: list, partitions: int = 1) -> None:
        """Create topic (as admin) and write values to partition 0."""
        self.create_topic(topic, partitions)
        assert produce(self.conf("admin"), topic, values) == [None] * len(values)

    def read(self, topic: str, n: int) -> list:
        """Read the first n values of partition 0 as admin."""
        errs, got = consume(self.conf("admin"), topic, f"admin-read-{uid()}", want=n)
        assert not errs and len(got) == n, (errs, got)
        return got


def allow(restype, name, principal, op, pattern=LITERAL, host="*") -> AclBinding:
    return AclBinding(restype, name, pattern, principal, host, op, ALLOW)


def deny(restype, name, principal, op, pattern=LITERAL, host="*") -> AclBinding:
    return AclBinding(restype, name, pattern, principal, host, op, DENY)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return tls_certs.make_certs(tmp_path_factory.mktemp("acl-certs"))


@pytest.fixture(scope="module")
def acl_broker(sluice_bin, certs, tmp_path_factory):
    b = SluiceBroker(sluice_bin, tmp_path_factory.mktemp("acl-broker"), name="acl")
    ab = None
    try:
        ab = AclBroker(b, sluice_bin, certs)
        yield ab
    finally:
        rc = b.stop() if b.proc is not None else 0
        assert rc == 0, f"acl broker exited with code {rc} after SIGTERM\n{b.log_tail()}"


@pytest.fixture
def acl(request, acl_broker):
    """The module's broker; its log is attached to a failing test's report."""
    request.node._sluice_brokers = [acl_broker.b]
    acl_broker.b.assert_alive("before the test")
    yield acl_broker
    acl_broker.b.assert_alive("after the test")


# ---------------------------------------------------------------------------
# Bounded client helpers
# ---------------------------------------------------------------------------


def produce(conf: dict, topic: str, values: list, partition: int = 0, **extra) -> list:
    """Produce values; returns each record's delivery error (None = delivered)."""
    results = {}
    p = Producer({**conf, "message.timeout.ms": 5000, "linger.ms": 5, **extra})
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=partition,
                  on_delivery=lambda e, m, i=i: results.__setitem__(i, e))
    left = p.flush(OP_TIMEOUT)
    assert left == 0, f"{left} records neither delivered nor failed within {OP_TIMEOUT}s"
    return [results.get(i) for i in range(len(values))]


def produce_code(conf: dict, topic: str, **extra):
    """Produce one record: None if delivered, else its error code."""
    (err,) = produce(conf, topic, [b"probe-" + uid().encode()], **extra)
    return None if err is None else err.code()


def consume(conf: dict, topic: str, group: str, *, subscribe: bool = False, want: int = 0,
            secs: float = 10.0, stop_on_error: bool = True, commit: bool = False):
    """Poll a consumer of partition 0 (assign at offset 0, or subscribe from
    the earliest offset) for at most secs: returns (error codes, values).
    Stops at want values, or at the first error with stop_on_error."""
    c = Consumer({**conf, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    errs, got = [], []
    try:
        if subscribe:
            c.subscribe([topic])
        else:
            c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline and (want == 0 or len(got) < want):
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                errs.append(m.error().code())
                if stop_on_error:
                    break
                continue
            got.append(m.value())
        if commit and got:
            c.commit(asynchronous=False)
    finally:
        c.close()
    return errs, got


def result_code(fut, timeout: float = OP_TIMEOUT):
    """An admin future's outcome: None on success, else the Kafka error code."""
    try:
        fut.result(timeout=timeout)
        return None
    except KafkaException as e:
        return e.args[0].code()


def eventually(check, timeout: float, what: str) -> float:
    """Call check() until it returns True, at most timeout seconds (the last
    attempt may start just before the deadline); returns the time taken."""
    start = time.monotonic()
    last = None
    while True:
        last = check()
        if last is True:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")
        time.sleep(0.2)


def binding_key(b) -> tuple:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)


def keys(bindings) -> set:
    return {binding_key(b) for b in bindings}


def acl_filter(restype=ResourceType.ANY, name=None, pattern=ResourcePatternType.ANY,
               principal=None) -> AclBindingFilter:
    return AclBindingFilter(restype, name, pattern, principal, None, Op.ANY, AclPermissionType.ANY)


def describe(admin: AdminClient, flt: AclBindingFilter) -> list:
    return admin.describe_acls(flt, request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)


# -- raw protocol (for what librdkafka does not surface) -----------------------

API_SASL_HANDSHAKE, API_SASL_AUTHENTICATE, API_DESCRIBE_ACLS = 17, 36, 29


def raw_login(conn: kw.WireConnection, user: str) -> None:
    r = conn.request(API_SASL_HANDSHAKE, 1, kw.Writer().string("PLAIN").getvalue(), timeout=5)
    assert r.int16() == 0
    token = b"\0" + user.encode() + b"\0" + USERS[user].encode()
    r = conn.request(API_SASL_AUTHENTICATE, 0, kw.Writer().bytes_(token).getvalue(), timeout=5)
    assert r.int16() == 0, "PLAIN login failed"


def raw_describe_acls(port: int, user: str, version: int):
    """DescribeAcls (match everything) as user: (error_code, resource count)."""
    flex = version >= 2
    w = kw.Writer()
    w.int8(1).string(None, compact=flex).int8(1)  # resource ANY, any name, pattern ANY
    w.string(None, compact=flex).string(None, compact=flex).int8(1).int8(1)  # principal, host, op ANY, perm ANY
    if flex:
        w.tags()
    with kw.WireConnection("127.0.0.1", port) as conn:
        conn.api_versions()
        raw_login(conn, user)
        r = conn.request(API_DESCRIBE_ACLS, version, w.getvalue(), flexible_header=flex, timeout=5)
        if flex:
            r.skip_tags()  # response header v1
        r.int32()  # throttle
        err = r.int16()
        r.string(compact=flex)  # error message
        return err, r.array_len(compact=flex)


def raw_init_producer_id(port: int, user: str) -> int:
    with kw.WireConnection("127.0.0.1", port) as conn:
        conn.api_versions()
        raw_login(conn, user)
        return conn.init_producer_id().error_code


# ---------------------------------------------------------------------------
# 1. The ACL admin APIs
# ---------------------------------------------------------------------------


def test_acl_admin_apis_create_describe_delete(acl):
    tag = uid()
    p1, p2 = f"User:acl1-{tag}-a", f"User:acl1-{tag}-b"  # principals nobody logs in as
    orders = f"acl1-{tag}.orders"
    b_read = allow(TOPIC, orders, p1, Op.READ)
    b_prefix = allow(TOPIC, f"acl1-{tag}.", p2, Op.WRITE, pattern=PREFIXED)
    b_other = allow(TOPIC, f"acl1-{tag}.other", p1, Op.DESCRIBE)
    b_noprefix = allow(TOPIC, f"acl1-{tag}.z", p1, Op.READ, pattern=PREFIXED)
    b_group = allow(GROUP, f"acl1-{tag}-g", p1, Op.READ)
    b_cluster = allow(CLUSTER, "kafka-cluster", p2, Op.DESCRIBE)
    b_deny_host = deny(TOPIC, orders, p2, Op.READ, host="10.0.0.1")
    b_wildcard = deny(TOPIC, "*", p2, Op.ALTER)
    mine = [b_read, b_prefix, b_other, b_noprefix, b_group, b_cluster, b_deny_host, b_wildcard]
    admin = acl.admin()
    acl.grant(*mine)

    # By principal.
    assert keys(describe(admin, acl_filter(principal=p1))) == keys([b_read, b_other, b_noprefix, b_group])
    assert keys(describe(admin, acl_filter(principal=p2))) == keys([b_prefix, b_cluster, b_deny_host, b_wildcard])
    # By resource: MATCH is every rule that applies to the topic (its literal
    # rules, the literal wildcard and the prefixes of its name).
    assert keys(describe(admin, acl_filter(TOPIC, orders, ResourcePatternType.MATCH))) == \
        keys([b_read, b_deny_host, b_prefix, b_wildcard])
    assert keys(describe(admin, acl_filter(TOPIC, orders, LITERAL))) == keys([b_read, b_deny_host])
    assert keys(describe(admin, acl_filter(TOPIC, f"acl1-{tag}.", PREFIXED))) == keys([b_prefix])
    assert keys(describe(admin, acl_filter(GROUP, None, principal=p1))) == keys([b_group])
    assert keys(describe(admin, acl_filter(CLUSTER, principal=p2))) == keys([b_cluster])

    # alice (no rights on the cluster) may neither change nor list ACLs.
    alice = acl.admin("alice")
    futs = alice.create_acls([allow(TOPIC, orders, "User:alice", Op.ALL)], request_timeout=OP_TIMEOUT)
    assert [result_code(f) for f in futs.values()] == [CLUSTER_AUTHZ]
    futs = alice.delete_acls([acl_filter(principal=p1)], request_timeout=OP_TIMEOUT)
    assert [result_code(f) for f in futs.values()] == [CLUSTER_AUTHZ]
    # librdkafka drops DescribeAcls' top-level error code (it returns an empty
    # list), so the code is checked on the wire, at every version served.
    assert describe(alice, acl_filter()) == [], "DescribeAcls leaked rules to alice"
    for version in (1, 2, 3):
        assert raw_describe_acls(acl.sasl_port, "alice", version) == (CLUSTER_AUTHZ, 0), version
    assert keys(describe(admin, acl_filter(principal=p1))) == keys([b_read, b_other, b_noprefix, b_group]), \
        "alice's refused DeleteAcls removed rules"
    assert describe(admin, acl_filter(principal="User:alice", name=orders, restype=TOPIC)) == [], \
        "alice's refused CreateAcls created a rule"

    # Delete: one filter per principal; each answers the rules it removed.
    futs = admin.delete_acls([acl_filter(principal=p1), acl_filter(TOPIC, principal=p2)],
                             request_timeout=OP_TIMEOUT)
    deleted = {f.principal: keys(fut.result(timeout=OP_TIMEOUT)) for f, fut in futs.items()}
    assert deleted == {p1: keys([b_read, b_other, b_noprefix, b_group]),
                       p2: keys([b_prefix, b_deny_host, b_wildcard])}
    assert describe(admin, acl_filter(principal=p1)) == []
    assert keys(describe(admin, acl_filter(principal=p2))) == keys([b_cluster])
    (fut,) = admin.delete_acls([acl_filter(CLUSTER, principal=p2)], request_timeout=OP_TIMEOUT).values()
    assert keys(fut.result(timeout=OP_TIMEOUT)) == keys([b_cluster])
    assert describe(admin, acl_filter(principal=p2)) == []


# ---------------------------------------------------------------------------
# 2. Each operation: refused with its code, allowed after the grant
# ---------------------------------------------------------------------------


def test_produce_and_fetch_refused_then_allowed(acl):
    tag = uid()
    t = f"op-{tag}"
    acl.seed(t, [b"seed-0", b"seed-1", b"seed-2"])
    alice = acl.conf("alice")

    # Produce: no ACL (the topic is not even described) and Describe only.
    assert produce_code(alice, t) == TOPIC_AUTHZ
    acl.grant(allow(TOPIC, t, "User:alice", Op.DESCRIBE))
    assert produce_code(alice, t) == TOPIC_AUTHZ
    acl.grant(allow(TOPIC, t, "User:alice", Op.WRITE))
    assert produce(alice, t, [b"alice-0", b"alice-1"]) == [None, None]

    # Fetch with assign: alice may use the group and Describe the topic, but
    # not Read it.
    g = f"op-fetch-{tag}"
    acl.grant(allow(GROUP, g, "User:alice", Op.READ))
    errs, got = consume(alice, t, g)
    assert (errs, got) == ([TOPIC_AUTHZ], []), "Fetch without Read on the topic"
    acl.grant(allow(TOPIC, t, "User:alice", Op.READ))
    errs, got = consume(alice, t, g, want=5)
    assert (errs, got) == ([], [b"seed-0", b"seed-1", b"seed-2", b"alice-0", b"alice-1"])

    # An idempotent producer: InitProducerId needs IdempotentWrite on the
    # cluster or Write on some topic; carol has neither, alice has Write.
    assert raw_init_producer_id(acl.sasl_port, "carol") == CLUSTER_AUTHZ
    assert raw_init_producer_id(acl.sasl_port, "alice") == 0
    assert produce(alice, t, [b"idem-0", b"idem-1"], **{"enable.idempotence": True, "acks": "all"}) == [None, None]
    assert acl.read(t, 7)[5:] == [b"idem-0", b"idem-1"]


def test_group_subscription_refused_then_allowed(acl):
    tag = uid()
    t, g = f"grp-{tag}", f"grp-{tag}"
    values = [b"g-%d" % i for i in range(5)]
    acl.seed(t, values)
    alice = acl.conf("alice")
    acl.grant(allow(TOPIC, t, "User:alice", Op.READ))
    # No ACL on the group: FindCoordinator (Describe) is refused already.
    errs, got = consume(alice, t, g, subscribe=True)
    assert (errs, got) == ([GROUP_AUTHZ], []), "subscribe without Read on the group"
    acl.grant(allow(GROUP, g, "User:alice", Op.READ))
    errs, got = consume(alice, t, g, subscribe=True, want=5, secs=20, commit=True)
    assert (errs, got) == ([], values)
    # The commit landed: OffsetFetch (Describe on the group) sees it.
    c = Consumer({**alice, "group.id": g, "enable.auto.commit": False})
    try:
        (tp,) = c.committed([TopicPartition(t, 0)], timeout=OP_TIMEOUT)
    finally:
        c.close()
    assert tp.error is None and tp.offset == 5, tp


def test_admin_operations_refused_then_allowed(acl):
    tag = uid()
    t, new = f"adm-{tag}", f"adm-new-{tag}"
    acl.create_topic(t)
    alice = acl.admin("alice")

    def created(name: str) -> bool:
        return name in acl.admin().list_topics(timeout=OP_TIMEOUT).topics

    # CreateTopics needs Create on the cluster or the topic.
    assert result_code(alice.create_topics([NewTopic(new, 1, 1)], request_timeout=OP_TIMEOUT)[new]) == TOPIC_AUTHZ
    assert not created(new)
    acl.grant(allow(TOPIC, new, "User:alice", Op.CREATE))
    assert result_code(alice.create_topics([NewTopic(new, 2, 1)], request_timeout=OP_TIMEOUT)[new]) is None
    assert len(acl.admin().list_topics(timeout=OP_TIMEOUT).topics[new].partitions) == 2

    # DescribeConfigs.
    res = ConfigResource(ConfigResource.Type.TOPIC, t)
    (fut,) = alice.describe_configs([res], request_timeout=OP_TIMEOUT).values()
    assert result_code(fut) == TOPIC_AUTHZ
    acl.grant(allow(TOPIC, t, "User:alice", Op.DESCRIBE_CONFIGS))
    (fut,) = alice.describe_configs([res], request_timeout=OP_TIMEOUT).values()
    configs = fut.result(timeout=OP_TIMEOUT)
    assert "retention.ms" in configs and "cleanup.policy" in configs, sorted(configs)[:10]

    # IncrementalAlterConfigs.
    alter = ConfigResource(ConfigResource.Type.TOPIC, t, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    (fut,) = alice.incremental_alter_configs([alter], request_timeout=OP_TIMEOUT).values()
    assert result_code(fut) == TOPIC_AUTHZ
    acl.grant(allow(TOPIC, t, "User:alice", Op.ALTER_CONFIGS))
    (fut,) = alice.incremental_alter_configs([alter], request_timeout=OP_TIMEOUT).values()
    assert result_code(fut) is None
    (fut,) = alice.describe_configs([res], request_timeout=OP_TIMEOUT).values()
    assert fut.result(timeout=OP_TIMEOUT)["retention.ms"].value == "3600000"

    # CreatePartitions needs Alter.
    assert result_code(alice.create_partitions([NewPartitions(t, 3)], request_timeout=OP_TIMEOUT)[t]) == TOPIC_AUTHZ
    acl.grant(allow(TOPIC, t, "User:alice", Op.ALTER))
    assert result_code(alice.create_partitions([NewPartitions(t, 3)], request_timeout=OP_TIMEOUT)[t]) is None
    assert len(acl.admin().list_topics(timeout=OP_TIMEOUT).topics[t].partitions) == 3

    # DeleteTopics needs Delete.
    assert result_code(alice.delete_topics([t], request_timeout=OP_TIMEOUT)[t]) == TOPIC_AUTHZ
    assert created(t)
    acl.grant(allow(TOPIC, t, "User:alice", Op.DELETE))
    assert result_code(alice.delete_topics([t], request_timeout=OP_TIMEOUT)[t]) is None
    eventually(lambda: not created(t), 10, f"{t} gone from metadata")


# ---------------------------------------------------------------------------
# 3. Prefixed patterns; deny beats allow
# ---------------------------------------------------------------------------


def test_prefixed_allow_and_literal_deny(acl):
    tag = uid()
    prefix = f"llm{tag}."
    a, secret, other = f"{prefix}a", f"{prefix}secret", f"other{tag}.a"
    for t in (a, secret, other):
        acl.seed(t, [t.encode()])
    bob = acl.conf("bob")
    g = f"bob-{tag}"
    acl.grant(allow(GROUP, g, "User:bob", Op.READ),
              allow(TOPIC, prefix, "User:bob", Op.READ, pattern=PREFIXED))
    assert consume(bob, a, g, want=1) == ([], [a.encode()])
    # other.a is not under the prefix: not even described (the subscription
    # reports it; an assign-only consumer would just wait for metadata).
    assert consume(bob, other, g, subscribe=True) == ([TOPIC_AUTHZ], [])
    # Before the deny, the prefix covers llm.secret too.
    assert consume(bob, secret, g, want=1) == ([], [secret.encode()])
    acl.grant(deny(TOPIC, secret, "User:bob", Op.READ))
    # Kafka: only ALLOW rules imply Describe; a DENY rule matches its own
    # operation (or All). Deny Read leaves the prefix's implied Describe, so
    # bob still sees the topic, and its Fetch is what is refused.
    md = acl.admin("bob").list_topics(secret, timeout=OP_TIMEOUT).topics[secret]
    assert md.error is None, f"Deny Read on {secret} also denied Describe: {md.error}"
    assert consume(bob, secret, g) == ([TOPIC_AUTHZ], [])
    # ... and only llm.secret.
    assert consume(bob, a, g, want=1) == ([], [a.encode()])
    # Read does not imply Write.
    assert produce_code(bob, a) == TOPIC_AUTHZ


# ---------------------------------------------------------------------------
# 4. Super users; User:*
# ---------------------------------------------------------------------------


def test_super_user_needs_no_acl_and_wildcard_principal_applies_to_all(acl):
    tag = uid()
    t, g = f"su-{tag}", f"su-{tag}"
    admin_conf = acl.conf("admin")
    admin = acl.admin()
    assert describe(admin, acl_filter(TOPIC, t, ResourcePatternType.MATCH)) == []
    # Auto-created by its first record (Create on the cluster), written, read
    # through a group with a commit, configured, grown and deleted.
    values = [b"su-%d" % i for i in range(4)]
    assert produce(admin_conf, t, values) == [None] * 4
    assert consume(admin_conf, t, g, subscribe=True, want=4, secs=20, commit=True) == ([], values)
    res = ConfigResource(ConfigResource.Type.TOPIC, t)
    (fut,) = admin.describe_configs([res], request_timeout=OP_TIMEOUT).values()
    assert "retention.ms" in fut.result(timeout=OP_TIMEOUT)
    assert result_code(admin.create_partitions([NewPartitions(t, 2)], request_timeout=OP_TIMEOUT)[t]) is None
    assert raw_init_producer_id(acl.sasl_port, "admin") == 0
    assert result_code(admin.delete_topics([t], request_timeout=OP_TIMEOUT)[t]) is None

    # User:* with Write on one topic: alice, bob and the certificate's
    # principal all write; nobody gains anything on another topic.
    w, elsewhere = f"star-{tag}", f"star-other-{tag}"
    acl.create_topic(w)
    acl.create_topic(elsewhere)
    acl.grant(allow(TOPIC, w, "User:*", Op.WRITE))
    for name, conf in [("alice", acl.conf("alice")), ("bob", acl.conf("bob")), ("mtls", acl.mtls_conf())]:
        assert produce(conf, w, [name.encode()]) == [None], name
        assert produce_code(conf, elsewhere) == TOPIC_AUTHZ, name
    assert sorted(acl.read(w, 3)) == [b"alice", b"bob", b"mtls"]


# ---------------------------------------------------------------------------
# 5. Metadata hides what may not be described
# ---------------------------------------------------------------------------


def test_metadata_lists_only_describable_topics(acl):
    tag = uid()
    topics = [f"md-{tag}-{i}" for i in range(3)]
    for t in topics:
        acl.create_topic(t)
    acl.grant(allow(TOPIC, topics[1], "User:alice", Op.DESCRIBE))
    alice = acl.admin("alice")
    md = alice.list_topics(timeout=OP_TIMEOUT)
    assert [t for t in topics if t in md.topics] == [topics[1]]
    assert md.topics[topics[1]].error is None and len(md.topics[topics[1]].partitions) == 1
    # Asked for by name, a hidden topic answers TOPIC_AUTHORIZATION_FAILED
    # (exactly what an unknown one the principal may not create answers).
    hidden = alice.list_topics(topics[0], timeout=OP_TIMEOUT).topics[topics[0]]
    assert hidden.error is not None and hidden.error.code() == TOPIC_AUTHZ, hidden.error
    assert not hidden.partitions
    # bob sees none of them; admin sees all three.
    md_bob = acl.admin("bob").list_topics(timeout=OP_TIMEOUT)
    assert [t for t in topics if t in md_bob.topics] == []
    md_admin = acl.admin().list_topics(timeout=OP_TIMEOUT)
    assert [t for t in topics if t in md_admin.topics] == topics


# ---------------------------------------------------------------------------
# 6. A group member without Read on the group
# ---------------------------------------------------------------------------


def test_group_without_read_is_refused_on_join_and_commit(acl):
    tag = uid()
    t, g = f"nog-{tag}", f"nog-{tag}"
    acl.seed(t, [b"x0", b"x1"])
    bob = acl.conf("bob")
    # Read on the topic; Describe (not Read) on the group, so FindCoordinator
    # passes and JoinGroup is what is refused.
    acl.grant(allow(TOPIC, t, "User:bob", Op.READ), allow(GROUP, g, "User:bob", Op.DESCRIBE))
    errs, got = consume(bob, t, g, subscribe=True, secs=10)
    assert (errs, got) == ([GROUP_AUTHZ], []), "JoinGroup without Read on the group"
    c = Consumer({**bob, "group.id": g, "enable.auto.commit": False})
    try:
        with pytest.raises(KafkaException) as e:
            c.commit(offsets=[TopicPartition(t, 0, 1)], asynchronous=False)
        assert e.value.args[0].code() == GROUP_AUTHZ, e.value
        # OffsetFetch needs Describe only; nothing was committed.
        (tp,) = c.committed([TopicPartition(t, 0)], timeout=OP_TIMEOUT)
        assert tp.error is None and tp.offset < 0, tp
    finally:
        c.close()


# ---------------------------------------------------------------------------
# 7. The sluice acls CLI on a running broker
# ---------------------------------------------------------------------------


def test_acls_cli_changes_a_running_broker(acl):
    tag = uid()
    t = f"cli-{tag}"
    acl.create_topic(t)
    alice = acl.conf("alice")
    base = ["acls", "--data-dir", str(acl.b.data_dir)]
    rule = ["--allow-principal", "User:alice", "--operation", "Write", "--topic", t]
    assert produce_code(alice, t) == TOPIC_AUTHZ

    r = run_cli(acl.sluice_bin, *base, "add", *rule)
    assert "1 rule(s) added" in r.stdout, r.stdout
    took = eventually(lambda: produce_code(alice, t) is None, CLI_PROPAGATION_S, "alice writes after `acls add`")
    print(f"acls add took effect after {took:.1f}s")
    listed = json.loads(run_cli(acl.sluice_bin, *base, "list", "--topic", t, "--json").stdout)
    assert listed == [{"resource_type": "Topic", "resource_name": t, "pattern_type": "LITERAL",
                       "principal": "User:alice", "host": "*", "operation": "Write",
                       "permission": "ALLOW"}], listed
    by_principal = json.loads(run_cli(acl.sluice_bin, *base, "list", "--principal", "User:alice", "--json").stdout)
    assert [x for x in by_principal if x["resource_name"] == t] == listed
    # What the CLI wrote, the broker answers through DescribeAcls too.
    assert keys(describe(acl.admin(), acl_filter(TOPIC, t, LITERAL))) == \
        keys([allow(TOPIC, t, "User:alice", Op.WRITE)])

    r = run_cli(acl.sluice_bin, *base, "remove", *rule)
    assert "1 rule(s) removed" in r.stdout, r.stdout
    assert json.loads(run_cli(acl.sluice_bin, *base, "list", "--topic", t, "--json").stdout) == []
    took = eventually(lambda: produce_code(alice, t) == TOPIC_AUTHZ, CLI_PROPAGATION_S,
                      "alice refused after `acls remove`")
    print(f"acls remove took effect after {took:.1f}s")

    # `remove --topic T` alone removes every rule on T.
    run_cli(acl.sluice_bin, *base, "add", "--allow-principal", "User:bob", "--consumer", "--topic", t)
    assert len(json.loads(run_cli(acl.sluice_bin, *base, "list", "--topic", t, "--json").stdout)) == 2
    run_cli(acl.sluice_bin, *base, "remove", "--topic", t)
    assert json.loads(run_cli(acl.sluice_bin, *base, "list", "--topic", t, "--json").stdout) == []

    # Bad input: non-zero exit, the problem named, nothing written.
    for args, words in [
        (["--allow-principal", "User:alice", "--operation", "Frobnicate", "--topic", t], ["Frobnicate", "operation"]),
        (["--allow-principal", "alice", "--operation", "Read", "--topic", t], ["alice", "User:"]),
        (["--allow-principal", "User:alice", "--operation", "Read"], ["--topic"]),
    ]:
        r = run_cli(acl.sluice_bin, *base, "add", *args, check=False)
        assert r.returncode != 0, (args, r.stdout)
        assert all(w in r.stderr for w in words), (args, r.stderr)
    assert json.loads(run_cli(acl.sluice_bin, *base, "list", "--topic", t, "--json").stdout) == []


# ---------------------------------------------------------------------------
# 8. The mutual-TLS principal
# ---------------------------------------------------------------------------


def test_mutual_tls_principal_is_the_certificate_subject(acl):
    tag = uid()
    t, denied = f"mtls-{tag}", f"mtls-denied-{tag}"
    acl.create_topic(t)
    acl.create_topic(denied)
    mtls = acl.mtls_conf()
    assert produce_code(mtls, t) == TOPIC_AUTHZ
    acl.grant(allow(TOPIC, t, CERT_PRINCIPAL, Op.WRITE), allow(TOPIC, t, CERT_PRINCIPAL, Op.DESCRIBE))
    values = [b"cert-%d" % i for i in range(5)]
    assert produce(mtls, t, values) == [None] * 5
    assert acl.read(t, 5) == values
    assert produce_code(mtls, denied) == TOPIC_AUTHZ
    # The certificate's principal is not SASL's User:alice, nor the reverse.
    assert produce_code(acl.conf("alice"), t) == TOPIC_AUTHZ
    acl.grant(allow(TOPIC, denied, "User:alice", Op.WRITE))
    assert produce_code(mtls, denied) == TOPIC_AUTHZ


# ---------------------------------------------------------------------------
# 9. --allow-everyone-if-no-acl-found
# ---------------------------------------------------------------------------


def test_allow_everyone_if_no_acl_found(broker_factory, sluice_bin, certs):
    ab = AclBroker(broker_factory("open", start=False), sluice_bin, certs,
                   extra=["--allow-everyone-if-no-acl-found"])
    tag = uid()
    t, untouched = f"open-{tag}", f"open-untouched-{tag}"
    ab.create_topic(t)
    ab.create_topic(untouched)
    bob, alice = ab.conf("bob"), ab.conf("alice")
    assert produce(bob, t, [b"bob-0"]) == [None]
    assert consume(bob, t, f"bob-{tag}", want=1) == ([], [b"bob-0"])
    # A rule naming the topic (for alice only): bob is no longer "no ACL found".
    ab.grant(allow(TOPIC, t, "User:alice", Op.WRITE))
    assert produce_code(bob, t) == TOPIC_AUTHZ
    assert produce(alice, t, [b"alice-0"]) == [None]
    assert ab.read(t, 2) == [b"bob-0", b"alice-0"]
    # A topic no rule names stays open; the named one is hidden from bob.
    assert produce(bob, untouched, [b"still-open"]) == [None]
    md = ab.admin("bob").list_topics(timeout=OP_TIMEOUT)
    assert t not in md.topics and untouched in md.topics


def test_user_admin_apis_need_the_cluster(acl):
    """KIP-554's user APIs need Describe / Alter on the cluster (raw
    protocol: confluent-kafka 2.16's binding aborts the client process,
    munmap_chunk(): invalid pointer, on a refused alteration in this
    module's sequence; the allowed path is in test_security)."""
    API_DESCRIBE_USER_SCRAM = 50

    def describe_users(user: str) -> int:
        w = kw.Writer().uvarint(0).tags()  # users: null (everyone), no tags
        with kw.WireConnection("127.0.0.1", acl.sasl_port) as conn:
            conn.api_versions()
            raw_login(conn, user)
            r = conn.request(API_DESCRIBE_USER_SCRAM, 0, w.getvalue(), flexible_header=True, timeout=5)
            r.skip_tags()
            r.int32()
            return r.int16()

    assert describe_users("alice") == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert describe_users("admin") == 0
