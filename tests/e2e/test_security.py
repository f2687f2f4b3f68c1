"""TLS and SASL on the Kafka listeners (issue 17), with real clients.

One broker serves four listeners at once (PLAINTEXT, SSL, SASL_PLAINTEXT,
SASL_SSL; certificates from a throwaway CA made with openssl; users created
with `sluice users` before the broker's first start):

* confluent-kafka produces and consumes byte-identical records over SSL,
  over SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and over
  SASL_SSL; kcat (librdkafka 2.0.2) over SASL_SSL and SSL; a client set up
  like the TensorZero gateway of seed 004 writes its three topics.
* A wrong password or an unknown user fails with SASL_AUTHENTICATION_FAILED
  while other clients go on; failures are counted in /metrics.
* Requests before authentication, garbage instead of a TLS handshake,
  malformed SASL messages and clients that never authenticate get their
  connection closed (within the authentication timeout), and the broker
  keeps serving.
* Mutual TLS: a client certificate signed by --tls-client-ca is needed.
* `sluice users add|list|delete`, and the same users through KIP-554's
  AlterUserScramCredentials / DescribeUserScramCredentials (AdminClient).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

import kafka_wire as kw
import s3_server
import tls_certs
from sluice_proc import free_port

USERS = {"alice": "alice-secret", "bob": "b0b, with=odd chars"}
SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
SASL_AUTHENTICATION_FAILED = 58


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return tls_certs.make_certs(tmp_path_factory.mktemp("certs"))


def users(sluice_bin, data_dir, *args, check=True):
    return subprocess.run(
        [str(sluice_bin), "users", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=60, check=check,
    )


class SecureBroker:
    """A broker with one listener per security protocol."""

    def __init__(self, broker_factory, sluice_bin, certs, extra=()):
        self.b = broker_factory("secure", start=False)
        for name, password in USERS.items():
            users(sluice_bin, self.b.data_dir, "add", name, "--password", password)
        self.ports = {p: free_port() for p in ("SSL", "SASL_PLAINTEXT", "SASL_SSL")}
        self.ports["PLAINTEXT"] = self.b.kafka_port
        i = self.b.argv.index("--listen")
        del self.b.argv[i:i + 2]
        spec = ",".join(f"{p}://127.0.0.1:{port}" for p, port in self.ports.items())
        self.b.argv += [
            "--listeners", spec,
            "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key), *extra,
        ]
        self.certs = certs
        self.b.start()

    def conf(self, protocol, mechanism=None, user="alice", password=None, **kw):
        c = {
            "bootstrap.servers": f"127.0.0.1:{self.ports[protocol]}",
            "security.protocol": protocol,
        }
        if protocol.endswith("SSL"):
            c["ssl.ca.location"] = str(self.certs.ca)
        if mechanism:
            c.update({
                "sasl.mechanism": mechanism,
                "sasl.username": user,
                "sasl.password": USERS.get(user, "") if password is None else password,
            })
        c.update(kw)
        return c


@pytest.fixture
def secure(broker_factory, sluice_bin, certs):
    return SecureBroker(broker_factory, sluice_bin, certs)


def produce_and_consume(conf: dict, topic: str, n: int = 200) -> None:
    """Produce n keyed records with headers through conf, read them back
    through conf, compare byte for byte."""
    sent = [
        (b"k%d" % i, uuid.uuid4().bytes * (1 + i % 5) + b"\x00\xff" + b"%d" % i, [("h", b"v%d" % i)])
        for i in range(n)
    ]
    errors = []
    p = Producer({**conf, "acks": "all", "linger.ms": 5})
    for k, v, h in sent:
        p.produce(topic, key=k, value=v, headers=h, partition=0,
                  on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0, f"undelivered over {conf['security.protocol']}"
    assert not errors, errors[:3]
    c = Consumer({**conf, "group.id": f"g-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    got = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                assert m.error() is None, m.error()
                got.append((m.key(), m.value(), m.headers()))
    finally:
        c.close()
    assert got == sent, f"{len(got)} of {n} read back, or not byte-identical"


@pytest.mark.parametrize(
    "protocol,mechanism,user",
    [
        ("SSL", None, None),
        ("SASL_PLAINTEXT", "PLAIN", "alice"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-256", "bob"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512", "alice"),
        ("SASL_SSL", "SCRAM-SHA-512", "bob"),
        ("SASL_SSL", "PLAIN", "bob"),
    ],
)
def test_clients_produce_and_consume_over_each_protocol(secure, protocol, mechanism, user):
    conf = secure.conf(protocol, mechanism, user=user or "alice")
    produce_and_consume(conf, f"sec-{protocol.lower()}-{uuid.uuid4().hex[:6]}")


def test_kcat_over_sasl_ssl_and_ssl(secure, tmp_path):
    for protocol, extra in [
        ("SASL_SSL", ["-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=alice",
                      "-X", f"sasl.password={USERS['alice']}"]),
        ("SSL", []),
    ]:
        topic = f"kcat-{protocol.lower()}-{uuid.uuid4().hex[:6]}"
        base = ["kcat", "-b", f"127.0.0.1:{secure.ports[protocol]}", "-X", f"security.protocol={protocol}",
                "-X", f"ssl.ca.location={secure.certs.ca}", *extra]
        lines = [f"line-{i}-{uuid.uuid4().hex}" for i in range(50)]
        subprocess.run(base + ["-P", "-t", topic, "-p", "0"], input="\n".join(lines) + "\n",
                       text=True, check=True, timeout=60, capture_output=True)
        out = subprocess.run(base + ["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q"],
                             text=True, check=True, timeout=60, capture_output=True).stdout
        assert out.split("\n")[:-1] == lines, f"kcat over {protocol}: {out[:200]!r}"


def test_tensorzero_gateway_configuration_writes_its_topics(secure):
    """Seed 004's gateway: SASL PLAIN, lz4, batch.num.messages 1000,
    linger.ms 10, request.timeout.ms 5000, three topics."""
    conf = secure.conf(
        "SASL_PLAINTEXT", "PLAIN",
        **{"compression.type": "lz4", "batch.num.messages": 1000, "linger.ms": 10,
           "request.timeout.ms": 5000},
    )
    p = Producer(conf)
    topics = ["tensorzero_model_inference", "tensorzero_chat_inference", "tensorzero_json_inference"]
    errors = []
    for t in topics:
        for i in range(300):
            body = {"inference_id": str(uuid.uuid4()), "episode_id": str(uuid.uuid4()), "n": i,
                    "output": "x" * (i % 50)}
            p.produce(t, value=json.dumps(body).encode(), on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and not errors, errors[:3]
    c = Consumer({**conf, "group.id": "tz-check", "auto.offset.reset": "earliest"})
    try:
        for t in topics:
            md = c.list_topics(t, timeout=10).topics[t]
            total = 0
            for part in md.partitions:
                lo, hi = c.get_watermark_offsets(TopicPartition(t, part), timeout=10)
                total += hi - lo
            assert total == 300, f"{t}: {total} records"
    finally:
        c.close()


def test_wrong_credentials_fail_and_others_are_still_served(secure):
    failures = []
    for user, password in [("alice", "Wr0ng-Passw0rd"), ("nobody", "x")]:
        for mechanism in ["PLAIN", "SCRAM-SHA-256"]:
            errs = []
            p = Producer({
                **secure.conf("SASL_PLAINTEXT", mechanism, user=user, password=password),
                "error_cb": errs.append, "message.timeout.ms": 3000,
            })
            p.produce("sec-denied", b"x")
            p.flush(5)
            auth = [e for e in errs if e.code() == KafkaError._AUTHENTICATION]
            assert auth, f"{mechanism} {user}: expected an authentication error, got {errs[:3]}"
            assert "invalid credentials" in auth[0].str() or "Authentication failed" in auth[0].str(), auth[0]
            failures.append(auth[0])
    # Meanwhile the broker serves everyone else, on every listener.
    produce_and_consume(secure.conf("SASL_SSL", "SCRAM-SHA-512"), f"sec-after-{uuid.uuid4().hex[:6]}", n=20)
    produce_and_consume(secure.conf("PLAINTEXT"), f"sec-plain-{uuid.uuid4().hex[:6]}", n=20)
    assert (s3_server.metric(secure.b, "sluice_sasl_authentication_failures_total") or 0) >= 4
    log = secure.b.log_text()
    assert "Wr0ng-Passw0rd" not in log and USERS["alice"] not in log, "a password was logged"


def sasl_handshake(conn, mechanism: str):
    r = conn.request(SASL_HANDSHAKE, 1, kw.Writer().string(mechanism).getvalue(), timeout=5)
    err = r.int16()
    mechanisms = [r.string() for _ in range(r.array_len())]
    return err, mechanisms


def sasl_authenticate(conn, token: bytes):
    r = conn.request(SASL_AUTHENTICATE, 0, kw.Writer().bytes_(token).getvalue(), timeout=5)
    return r.int16(), r.string()


def test_bad_input_closes_only_its_connection(secure):
    port = secure.ports["SASL_PLAINTEXT"]
    # A request before authentication.
    with kw.WireConnection("127.0.0.1", port) as conn:
        conn.api_versions()  # allowed
        conn.send_request(3, 1, kw.Writer().array_len(0).getvalue())  # Metadata
        assert conn.wait_closed(5), "Metadata before authentication must close the connection"
    # An unknown mechanism, then a malformed PLAIN token.
    with kw.WireConnection("127.0.0.1", port) as conn:
        err, offered = sasl_handshake(conn, "GSSAPI")
        assert err == 33 and set(offered) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}, (err, offered)
    with kw.WireConnection("127.0.0.1", port) as conn:
        assert sasl_handshake(conn, "PLAIN")[0] == 0
        err, msg = sasl_authenticate(conn, b"\xff\xfe garbage")
        assert err == SASL_AUTHENTICATION_FAILED, (err, msg)
        assert conn.wait_closed(5)
    # A malformed SCRAM client-first message.
    with kw.WireConnection("127.0.0.1", port) as conn:
        assert sasl_handshake(conn, "SCRAM-SHA-256")[0] == 0
        err, msg = sasl_authenticate(conn, b"n,,r=only-a-nonce")
        assert err == SASL_AUTHENTICATION_FAILED and "malformed" in (msg or ""), (err, msg)
        assert conn.wait_closed(5)
    # Garbage instead of a TLS handshake.
    s = socket.create_connection(("127.0.0.1", secure.ports["SSL"]), timeout=5)
    s.sendall(b"\x00" * 7 + b"GET / HTTP/1.1\r\n\r\n" * 50)
    s.settimeout(5)
    closed = False
    try:
        # A TLS alert may come first; then the broker must close (EOF), not hang.
        for _ in range(10):
            if s.recv(4096) == b"":
                closed = True
                break
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        pass
    s.close()
    assert closed, "garbage instead of a TLS handshake did not close the connection"
    # A client that connects and never authenticates is closed within the
    # authentication timeout (10 s), on the SASL and the TLS listeners.
    silent = [socket.create_connection(("127.0.0.1", secure.ports[p]), timeout=5)
              for p in ("SASL_PLAINTEXT", "SASL_SSL", "SSL")]
    started = time.monotonic()
    for s in silent:
        s.settimeout(20)
        try:
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
        s.close()
    assert time.monotonic() - started < 16, "silent connections were not closed in time"
    secure.b.assert_alive("after bad input")
    produce_and_consume(secure.conf("SASL_SSL", "PLAIN"), f"sec-ok-{uuid.uuid4().hex[:6]}", n=10)


def test_mutual_tls_needs_a_client_certificate_from_the_ca(broker_factory, sluice_bin, certs):
    sb = SecureBroker(broker_factory, sluice_bin, certs, extra=["--tls-client-ca", str(certs.ca)])
    ok = sb.conf("SSL", **{"ssl.certificate.location": str(certs.client_cert),
                           "ssl.key.location": str(certs.client_key)})
    produce_and_consume(ok, f"mtls-{uuid.uuid4().hex[:6]}", n=20)
    for name, extra in [
        ("no certificate", {}),
        ("a certificate of another CA", {"ssl.certificate.location": str(certs.rogue_cert),
                                         "ssl.key.location": str(certs.rogue_key)}),
    ]:
        errs, delivered = [], []
        p = Producer({**sb.conf("SSL", **extra), "error_cb": errs.append, "message.timeout.ms": 3000})
        p.produce("mtls-denied", b"x", on_delivery=lambda e, m: delivered.append(e is None))
        p.flush(6)
        assert delivered == [False], f"{name}: the record was delivered ({delivered})"
        assert errs, f"{name}: no connection error reported"
    assert (s3_server.metric(sb.b, "sluice_tls_handshake_failures_total") or 0) >= 2


def test_users_cli(secure, sluice_bin):
    b = secure.b
    listed = json.loads(users(sluice_bin, b.data_dir, "list", "--json").stdout)
    assert set(listed) == {"alice", "bob"} and len(listed["alice"]) == 2, listed
    r = users(sluice_bin, b.data_dir, "add", "carol", "--password", "c", "--mechanism", "SCRAM-SHA-1", check=False)
    assert r.returncode != 0 and "unknown mechanism" in r.stderr, r.stderr
    r = users(sluice_bin, b.data_dir, "add", "carol", "--password", "c", "--iterations", "10", check=False)
    assert r.returncode != 0 and "iterations" in r.stderr, r.stderr
    users(sluice_bin, b.data_dir, "add", "carol", "--password", "carol-pw", "--mechanism", "SCRAM-SHA-256")
    # The running broker sees a new user at its next login.
    conf = secure.conf("SASL_PLAINTEXT", "SCRAM-SHA-256", user="carol", password="carol-pw")
    produce_and_consume(conf, f"carol-{uuid.uuid4().hex[:6]}", n=5)
    users(sluice_bin, b.data_dir, "delete", "carol")
    r = users(sluice_bin, b.data_dir, "delete", "carol", check=False)
    assert r.returncode != 0 and "no such user" in r.stderr
    errs = []
    p = Producer({**conf, "error_cb": errs.append, "message.timeout.ms": 3000})
    p.produce("carol-gone", b"x")
    p.flush(5)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errs), errs[:3]


def test_kip554_user_scram_credentials_through_the_admin_client(secure):
    """AlterUserScramCredentials / DescribeUserScramCredentials (KIP-554)
    manage the same users as `sluice users`."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialDeletion, UserScramCredentialUpsertion)
    admin = AdminClient(secure.conf("SASL_PLAINTEXT", "SCRAM-SHA-512"))
    dave = UserScramCredentialUpsertion("dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192),
                                        b"dave-pw")
    dave512 = UserScramCredentialUpsertion("dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                           b"dave-pw")
    for f in admin.alter_user_scram_credentials([dave], request_timeout=10).values():
        assert f.result(timeout=10) is None
    for f in admin.alter_user_scram_credentials([dave512], request_timeout=10).values():
        assert f.result(timeout=10) is None
    # A user named twice in one request is refused (DUPLICATE_RESOURCE).
    futs = admin.alter_user_scram_credentials([dave, dave512], request_timeout=10)
    with pytest.raises(KafkaException) as e:
        futs["dave"].result(timeout=10)
    assert e.value.args[0].code() == KafkaError.DUPLICATE_RESOURCE
    # Iterations out of range: UNACCEPTABLE_CREDENTIAL.
    weak = UserScramCredentialUpsertion("erin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"pw")
    with pytest.raises(KafkaException) as e:
        admin.alter_user_scram_credentials([weak], request_timeout=10)["erin"].result(timeout=10)
    assert e.value.args[0].code() == KafkaError.UNACCEPTABLE_CREDENTIAL

    described = admin.describe_user_scram_credentials(["dave"], request_timeout=10)["dave"].result(timeout=10)
    infos = sorted((i.mechanism, i.iterations) for i in described.scram_credential_infos)
    assert infos == [(ScramMechanism.SCRAM_SHA_256, 8192), (ScramMechanism.SCRAM_SHA_512, 4096)], infos
    everyone = admin.describe_user_scram_credentials(request_timeout=10).result(timeout=10)
    assert {"alice", "bob", "dave"} <= set(everyone), everyone
    with pytest.raises(KafkaException) as e:
        admin.describe_user_scram_credentials(["nobody"], request_timeout=10)["nobody"].result(timeout=10)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND

    # The new user logs in with both mechanisms and with PLAIN.
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
        conf = secure.conf("SASL_PLAINTEXT", mech, user="dave", password="dave-pw")
        produce_and_consume(conf, f"dave-{mech.lower()}-{uuid.uuid4().hex[:6]}", n=3)

    gone = UserScramCredentialDeletion("dave", ScramMechanism.SCRAM_SHA_256)
    for f in admin.alter_user_scram_credentials([gone], request_timeout=10).values():
        assert f.result(timeout=10) is None
    with pytest.raises(KafkaException) as e:
        admin.alter_user_scram_credentials([gone], request_timeout=10)["dave"].result(timeout=10)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
    errs = []
    p = Producer({**secure.conf("SASL_PLAINTEXT", "SCRAM-SHA-256", user="dave", password="dave-pw"),
                  "error_cb": errs.append, "message.timeout.ms": 3000})
    p.produce("dave-gone", b"x")
    p.flush(5)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errs), errs[:3]


def test_logins_expire_and_clients_reauthenticate(broker_factory, sluice_bin, certs):
    """KIP-368 (--sasl-session-lifetime-ms): librdkafka re-authenticates on
    its connection before the login's lifetime runs out and keeps producing;
    once its user is deleted, the next re-authentication fails and nothing
    more is delivered."""
    sb = SecureBroker(broker_factory, sluice_bin, certs, extra=["--sasl-session-lifetime-ms", "2000"])
    users(sluice_bin, sb.b.data_dir, "add", "dave", "--password", "dave-pw")
    delivered, errors = [], []
    p = Producer({**sb.conf("SASL_SSL", "SCRAM-SHA-256", user="dave", password="dave-pw"),
                  "message.timeout.ms": 4000, "error_cb": errors.append})

    def report(err, msg):
        delivered.append(err is None)

    t = f"reauth-{uuid.uuid4().hex[:6]}"
    deadline = time.monotonic() + 7
    while time.monotonic() < deadline:
        p.produce(t, b"x", on_delivery=report)
        p.poll(0.05)
    p.flush(10)
    assert delivered and all(delivered), f"{delivered.count(False)} of {len(delivered)} failed across re-authentications"
    assert not [e for e in errors if e.code() == KafkaError._AUTHENTICATION], errors[:3]
    log = sb.b.log_text()
    assert "expired without re-authentication" not in log, "the client was cut off instead of re-authenticating"

    users(sluice_bin, sb.b.data_dir, "delete", "dave")
    delivered.clear()
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        p.produce(t, b"y", on_delivery=report)
        p.poll(0.05)
    p.flush(10)
    assert delivered.count(False) > 0 and delivered[-1] is False, \
        f"a deleted user kept producing: {delivered.count(True)} delivered after the deletion"


def test_loadgen_and_scorecard_over_sasl_ssl(secure, sluice_bin, tmp_path):
    """The librdkafka tools take the client's security settings as -X
    properties, as kcat does: SCRAM over TLS works, a wrong password is a
    clear failure."""
    props = []
    for k, v in secure.conf("SASL_SSL", "SCRAM-SHA-256").items():
        if k != "bootstrap.servers":
            props += ["-X", f"{k}={v}"]
    bootstrap = f"127.0.0.1:{secure.ports['SASL_SSL']}"
    summary = tmp_path / "summary.json"
    p = subprocess.run(
        [str(sluice_bin), "loadgen", "--bootstrap", bootstrap, "--rate", "200", "--duration", "2",
         "--topics-prefix", "seclg", "--summary-json", str(summary), *props],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    s = json.loads(summary.read_text())
    assert s["records"] == 400 and s["delivered"] == 400
    got = sum(t["records"] for t in s["topics"])
    assert got == 400

    p = subprocess.run(
        [str(sluice_bin), "scorecard", "--bootstrap", bootstrap, "--checks", "freshness,durability",
         "--rate", "100", "--duration", "3", *props],
        capture_output=True, text=True, timeout=180,
    )
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout
    assert "durability" in p.stdout and "FAIL" not in p.stdout

    bad = [x.replace(f"sasl.password={USERS['alice']}", "sasl.password=wrong") for x in props]
    began = time.monotonic()
    p = subprocess.run(
        [str(sluice_bin), "loadgen", "--bootstrap", bootstrap, "--rate", "10", "--duration", "1",
         "--topics-prefix", "seclg", *bad, "-X", "message.timeout.ms=5000"],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode != 0
    # Refused at the first login, not after a timeout.
    assert "error: the broker refused the login" in p.stderr, p.stderr[-2000:]
    assert time.monotonic() - began < 20, time.monotonic() - began
