"""Identity-bound governance (issue 17), with real clients.

Users have a tenant (`sluice users add NAME --tenant T`, `sluice users
tenant NAME T`). A topic with `sluice.governance.tenant.binding=true` takes
from a user only records whose `tenant-id` header is that user's tenant,
and `sluice.governance.producer.identity.header` names a header the broker
writes the producing principal into, replacing whatever the client sent:

* alice (tenant acme) writes acme records; her forged identity header is
  replaced by `User:alice`; an idempotent, lz4-compressed producer's
  records land once each, stamped.
* A record for another tenant, without `tenant-id`, or from a user without
  a tenant is refused with INVALID_RECORD (`reject`), or dead-lettered with
  `sluice.dlq.reason=tenant_mismatch` (`dlq`) while the good records land.
* Bad config values are refused with INVALID_CONFIG.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from helpers import sasl_conf

USERS = {"alice": ("alice-pw", "acme"), "bob": ("bob-pw", "globex"), "carol": ("carol-pw", None)}
IDENTITY = "producer-identity"


def cli(sluice_bin, data_dir, *args, check=True):
    return subprocess.run([str(sluice_bin), *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60, check=check)


@pytest.fixture
def gb(broker_factory, sluice_bin):
    b = broker_factory("identity", start=False)
    for name, (pw, tenant) in USERS.items():
        extra = ["--tenant", tenant] if tenant and name != "bob" else []
        cli(sluice_bin, b.data_dir, "users", "add", name, "--password", pw, *extra)
    # bob's tenant through the other command.
    cli(sluice_bin, b.data_dir, "users", "tenant", "bob", "globex")
    listed = cli(sluice_bin, b.data_dir, "users", "list").stdout
    assert "acme" in listed and "globex" in listed, listed
    i = b.argv.index("--listen")
    del b.argv[i:i + 2]
    b.argv += ["--listeners", f"SASL_PLAINTEXT://127.0.0.1:{b.kafka_port}"]
    b.start()
    return b


def conf(b, user, **extra):
    return sasl_conf(f"127.0.0.1:{b.kafka_port}", user, USERS[user][0], "SCRAM-SHA-512", **extra)


def create(b, topic, on_failure="reject"):
    admin = AdminClient(conf(b, "alice"))
    f = admin.create_topics([NewTopic(topic, 1, 1, config={
        "sluice.governance.tenant.binding": "true",
        "sluice.governance.producer.identity.header": IDENTITY,
        "sluice.validation.on_failure": on_failure,
    })], request_timeout=15)[topic]
    f.result(timeout=15)


def produce(b, user, topic, records, **extra):
    """records: (value, headers); returns the delivery errors (None for ok)."""
    results = []
    p = Producer(conf(b, user, **{"linger.ms": 5, "message.timeout.ms": 15000, **extra}))
    for v, h in records:
        p.produce(topic, v, headers=h, partition=0, on_delivery=lambda e, m: results.append(e))
    assert p.flush(30) == 0
    return results


def read_all(b, topic, n, timeout=20.0):
    c = Consumer(conf(b, "alice", **{"group.id": f"g-{uuid.uuid4().hex[:6]}",
                                     "enable.auto.commit": False}))
    got = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            for m in c.consume(100, timeout=0.5):
                assert m.error() is None, m.error()
                got.append((m.value(), dict((k, v) for k, v in (m.headers() or []))))
    finally:
        c.close()
    return got


def test_tenant_binding_and_identity_stamp(gb):
    topic = f"ai.inference-{uuid.uuid4().hex[:6]}"
    create(gb, topic)
    ok = produce(gb, "alice", topic, [
        (b"a1", [("tenant-id", b"acme")]),
        (b"a2", [("tenant-id", b"acme"), (IDENTITY, b"User:bob")]),  # a forgery
    ])
    assert ok == [None, None], ok
    for user, headers, what in [
        ("alice", [("tenant-id", b"globex")], "another tenant"),
        ("alice", [], "no tenant-id"),
        ("carol", [("tenant-id", b"acme")], "a user without a tenant"),
        ("bob", [("tenant-id", b"acme")], "bob for acme"),
    ]:
        errs = produce(gb, user, topic, [(b"bad", headers)])
        assert errs[0] is not None and errs[0].code() == KafkaError.INVALID_RECORD, (what, errs)
    got = read_all(gb, topic, 2)
    assert [v for v, _ in got] == [b"a1", b"a2"], got
    assert all(h[IDENTITY] == b"User:alice" for _, h in got), got
    assert all(list(h).count(IDENTITY) == 1 for _, h in got)

    # An idempotent, lz4-compressed producer: each record lands once, stamped.
    n = 500
    errs = produce(gb, "bob", topic, [(b"g%d" % i, [("tenant-id", b"globex")]) for i in range(n)],
                   **{"enable.idempotence": True, "compression.type": "lz4", "linger.ms": 20})
    assert errs == [None] * n, [e for e in errs if e][:3]
    got = read_all(gb, topic, 2 + n)
    assert [v for v, _ in got[2:]] == [b"g%d" % i for i in range(n)], "lost, doubled or reordered"
    assert all(h[IDENTITY] == b"User:bob" for _, h in got[2:])


def test_tenant_mismatch_dead_lettered(gb):
    topic = f"ai.tool_call-{uuid.uuid4().hex[:6]}"
    create(gb, topic, on_failure="dlq")
    errs = produce(gb, "alice", topic, [
        (b"good-1", [("tenant-id", b"acme")]),
        (b"stray", [("tenant-id", b"globex")]),
        (b"good-2", [("tenant-id", b"acme")]),
    ])
    assert errs == [None, None, None], errs
    got = read_all(gb, topic, 2)
    assert [v for v, _ in got] == [b"good-1", b"good-2"], got
    assert all(h[IDENTITY] == b"User:alice" for _, h in got)
    dead = read_all(gb, f"{topic}-dlq", 1)
    assert len(dead) == 1 and dead[0][0] == b"stray", dead
    h = dead[0][1]
    assert h["sluice.dlq.reason"] == b"tenant_mismatch", h
    assert b"User:alice" in h["sluice.dlq.message"] and b"acme" in h["sluice.dlq.message"], h


def test_bad_identity_configs_are_refused(gb):
    admin = AdminClient(conf(gb, "alice"))
    for cfg in [{"sluice.governance.tenant.binding": "maybe"}]:
        t = f"bad-{uuid.uuid4().hex[:6]}"
        f = admin.create_topics([NewTopic(t, 1, 1, config=cfg)], request_timeout=15)[t]
        with pytest.raises(KafkaException) as e:
            f.result(timeout=15)
        assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value
