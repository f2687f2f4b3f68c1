"""The HTTP side behind Sluice users and ACLs (issue 17), end to end.

Brokers run with `--authorizer acl --super-users User:admin` (so the HTTP
side defaults to `--http-auth basic`), a SASL_PLAINTEXT Kafka listener, and
users `admin`, `alice`, `bob` created with `sluice users` before the first
start; ACLs come from `sluice acls add` (before the start, and once while
running, which the broker picks up within seconds).

* Schema registry with Confluent's own `SchemaRegistryClient`
  (`basic.auth.user.info`): alice, with Write on topic `orders`, registers
  and reads `orders-value`; `payments-value` is 403, no or wrong credentials
  401; schemas by id are readable by any user; a prefixed Describe ACL lets
  her read but not register; subjects that name no topic need the cluster;
  the admin (super user) may do everything; `get_subjects()` lists only
  what the caller may describe.
* Admin API with `requests`: 401 with a JSON body and `WWW-Authenticate:
  Basic realm="sluice"`; `/healthz` open; `/metrics` and `/v1/cluster` need
  the cluster; `/v1/topics` and `/v1/groups` trimmed to what the caller may
  describe; group describe / delete / reset-offsets need Describe / Delete
  / Read on the group; a DLQ's records need Read on the dead-letter topic,
  its replay also Write on the target; an ACL added while running takes
  effect.
* `--http-metrics-open` leaves only `/metrics` open; `--http-auth basic`
  without the authorizer lets any valid user do anything.
* The CLIs (`sluice groups list`, `sluice cluster status`) send
  `SLUICE_HTTP_USER` / `SLUICE_HTTP_PASSWORD`.
* `--http-tls true`: HTTPS with the test CA (urllib, requests, and the
  SchemaRegistryClient with `ssl.ca.location`); plain HTTP to it fails.
* Bad input: malformed Authorization headers are 401 (never 500), a 1 MB
  garbage replay body gets a 4xx, and the broker keeps answering.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import warnings

import pytest
import requests

warnings.filterwarnings("ignore", category=DeprecationWarning)

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.error import SchemaRegistryError  # noqa: E402

import tls_certs  # noqa: E402

pytestmark = pytest.mark.e2e_timeout(120)

USERS = {"admin": "admin-pw", "alice": "pw", "bob": "b0b:with colon"}
HTTP_TIMEOUT = 10.0
CLI_TIMEOUT = 60.0
ACL_RELOAD_S = 5.0
REALM = 'Basic realm="sluice"'

AVRO_ORDER = json.dumps({
    "type": "record", "name": "Order", "namespace": "e2e",
    "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}],
})
AVRO_PAYMENT = json.dumps({
    "type": "record", "name": "Payment", "namespace": "e2e",
    "fields": [{"name": "id", "type": "string"}, {"name": "cents", "type": "long"}],
})
AVRO_MISC = json.dumps({
    "type": "record", "name": "Misc", "namespace": "e2e",
    "fields": [{"name": "note", "type": "string"}],
})
AVRO_SHARED = json.dumps({
    "type": "record", "name": "Shared", "namespace": "e2e",
    "fields": [{"name": "what", "type": "string"}],
})


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _cli_env(user=None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    if user is not None:
        env["SLUICE_HTTP_USER"] = user
        env["SLUICE_HTTP_PASSWORD"] = USERS.get(user, "not-the-password")
    return env


def sluice(sluice_bin, *args, user=None, password=None, check=True) -> subprocess.CompletedProcess:
    env = _cli_env(user)
    if password is not None:
        env["SLUICE_HTTP_PASSWORD"] = password
    argv = [str(sluice_bin), *args]
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                            stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`{' '.join(argv)}` did not finish within {CLI_TIMEOUT}s: {e}")
    if check:
        assert cp.returncode == 0, (
            f"`{' '.join(argv)}` exited {cp.returncode}\nstdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
        )
    return cp


def add_acl(sluice_bin, data_dir, *rule) -> None:
    sluice(sluice_bin, "acls", "--data-dir", str(data_dir), "add", *rule)


class AuthBroker:
    """A broker with users admin/alice/bob, a SASL_PLAINTEXT Kafka listener
    on its Kafka port, and (by default) the ACL authorizer with admin as
    super user. `acls` is a list of `sluice acls add` argument lists."""

    def __init__(self, broker_factory, sluice_bin, acls=(), extra=(), authorizer=True,
                 https_ca=None, name="auth"):
        self.sluice_bin = sluice_bin
        self.b = broker_factory(name, start=False)
        for user, password in USERS.items():
            sluice(sluice_bin, "users", "--data-dir", str(self.b.data_dir), "add", user,
                   "--password", password)
        for rule in acls:
            add_acl(sluice_bin, self.b.data_dir, *rule)
        i = self.b.argv.index("--listen")
        del self.b.argv[i:i + 2]
        self.b.argv += ["--listeners", f"SASL_PLAINTEXT://127.0.0.1:{self.b.kafka_port}"]
        if authorizer:
            self.b.argv += ["--authorizer", "acl", "--super-users", "User:admin"]
        self.b.argv += list(extra)
        self.https_ca = https_ca
        if https_ca is None:
            self.b.start()
        else:
            # wait_ready() polls plain HTTP; with --http-tls poll over HTTPS.
            self.b.start(wait=False)
            self._wait_ready_https()

    def _wait_ready_https(self, timeout: float = 30.0) -> None:
        ctx = ssl.create_default_context(cafile=str(self.https_ca))
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while time.monotonic() < deadline:
            self.b.assert_alive("while starting with --http-tls")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1.0, context=ctx) as r:
                    if r.status == 200:
                        socket.create_connection(("127.0.0.1", self.b.kafka_port), timeout=1.0).close()
                        return
                    last = f"status {r.status}"
            except (OSError, urllib.error.URLError) as e:
                last = str(e)
            time.sleep(0.1)
        raise AssertionError(f"HTTPS broker not ready within {timeout}s (last: {last})\n"
                             f"--- broker log ---\n{self.b.log_tail()}")

    @property
    def url(self) -> str:
        scheme = "https" if self.https_ca else "http"
        return f"{scheme}://127.0.0.1:{self.b.http_port}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.b.http_port}"

    def req(self, method, path, user=None, password=None, headers=None, data=None,
            json_body=None) -> requests.Response:
        auth = None
        if user is not None:
            auth = (user, USERS.get(user, "") if password is None else password)
        kw = {"verify": str(self.https_ca)} if self.https_ca else {}
        return requests.request(method, self.url + path, auth=auth, headers=headers, data=data,
                                json=json_body, timeout=HTTP_TIMEOUT, **kw)

    def get(self, path, user=None, **kw) -> requests.Response:
        return self.req("GET", path, user=user, **kw)

    def sr(self, user=None, password=None, **conf) -> SchemaRegistryClient:
        c = {"url": self.url, "timeout": HTTP_TIMEOUT, "max.retries": 0}
        if user is not None:
            c["basic.auth.user.info"] = f"{user}:{USERS.get(user, '') if password is None else password}"
        if self.https_ca:
            c["ssl.ca.location"] = str(self.https_ca)
        c.update(conf)
        return SchemaRegistryClient(c)

    def kafka_conf(self, user="admin") -> dict:
        return {
            "bootstrap.servers": self.b.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": user,
            "sasl.password": USERS[user],
        }

    def produce(self, topic, records, user="admin") -> None:
        """records: (key, value, headers) tuples, to partition 0, acks=all."""
        errors = []
        p = Producer({**self.kafka_conf(user), "acks": "all", "linger.ms": 5,
                      "message.timeout.ms": 20000})
        for k, v, h in records:
            p.produce(topic, key=k, value=v, headers=h, partition=0,
                      on_delivery=lambda e, m: e and errors.append(e))
        assert p.flush(30) == 0, f"records to {topic} not delivered within 30 s"
        assert not errors, f"produce to {topic} failed: {errors[:3]}"

    def commit(self, group, topic, offset, user="admin") -> None:
        """Commit `offset` for `group` on topic partition 0 (no membership)."""
        c = Consumer({**self.kafka_conf(user), "group.id": group, "enable.auto.commit": False,
                      "session.timeout.ms": 6000})
        try:
            c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        finally:
            c.close()


def assert_error(r: requests.Response, code: int, what: str = "") -> dict:
    what = what or f"{r.request.method} {r.request.path_url}"
    assert r.status_code == code, (
        f"{what}: status {r.status_code} (expected {code}), body {r.text[:500]!r}"
    )
    assert "application/json" in r.headers.get("Content-Type", ""), (
        f"{what}: content-type {r.headers.get('Content-Type')!r}, body {r.text[:200]!r}"
    )
    body = r.json()
    assert body.get("error_code") == code, f"{what}: error_code in {body!r}"
    assert isinstance(body.get("message"), str) and body["message"].strip(), f"{what}: message in {body!r}"
    if code == 401:
        assert r.headers.get("WWW-Authenticate") == REALM, (
            f"{what}: WWW-Authenticate {r.headers.get('WWW-Authenticate')!r}"
        )
    else:
        assert "WWW-Authenticate" not in r.headers, f"{what}: challenge on a {code}"
    return body


def assert_ok(r: requests.Response, code: int = 200, what: str = "") -> requests.Response:
    what = what or f"{r.request.method} {r.request.path_url}"
    assert r.status_code == code, f"{what}: status {r.status_code} (expected {code}), body {r.text[:500]!r}"
    return r


def sr_error(fn, status: int, what: str) -> SchemaRegistryError:
    try:
        got = fn()
    except SchemaRegistryError as e:
        assert e.http_status_code == status, (
            f"{what}: HTTP {e.http_status_code} (expected {status}): {e}"
        )
        assert e.error_code == status, f"{what}: error_code {e.error_code}: {e}"
        assert isinstance(e.error_message, str) and e.error_message.strip(), f"{what}: {e}"
        return e
    raise AssertionError(f"{what}: expected HTTP {status}, got a result: {got!r}")


def names(items, key) -> set:
    return {i[key] for i in items}


def wait_until(fn, what: str, timeout: float = ACL_RELOAD_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = fn()
        if ok:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s (last: {last})")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return tls_certs.make_certs(tmp_path_factory.mktemp("http-certs"))


# ---------------------------------------------------------------------------
# 1. Schema registry
# ---------------------------------------------------------------------------


def test_registry_follows_topic_acls(broker_factory, sluice_bin):
    ab = AuthBroker(broker_factory, sluice_bin, acls=[
        ["--allow-principal", "User:alice", "--operation", "Write", "--topic", "orders"],
        ["--allow-principal", "User:alice", "--operation", "Describe", "--topic", "shared.",
         "--resource-pattern-type", "prefixed"],
    ])

    # alice registers under the topic she may write, and reads it back by id
    # and by subject through a fresh client (no cache).
    alice = ab.sr("alice")
    oid = alice.register_schema("orders-value", Schema(AVRO_ORDER, "AVRO"))
    assert isinstance(oid, int) and oid > 0
    assert alice.register_schema("orders-value", Schema(AVRO_ORDER, "AVRO")) == oid
    reader = ab.sr("alice")
    assert json.loads(reader.get_schema(oid).schema_str) == json.loads(AVRO_ORDER)
    latest = reader.get_latest_version("orders-value")
    assert (latest.schema_id, latest.version, latest.subject) == (oid, 1, "orders-value")
    assert json.loads(latest.schema.schema_str) == json.loads(AVRO_ORDER)
    assert reader.get_versions("orders-value") == [1]
    assert reader.lookup_schema("orders-value", Schema(AVRO_ORDER, "AVRO")).schema_id == oid

    # ... but not under a topic she has no rights on, nor a subject that
    # names no topic (the cluster's).
    e = sr_error(lambda: ab.sr("alice").register_schema("payments-value", Schema(AVRO_PAYMENT, "AVRO")),
                 403, "alice registers payments-value")
    assert "alice" in e.error_message
    sr_error(lambda: ab.sr("alice").register_schema("misc", Schema(AVRO_MISC, "AVRO")),
             403, "alice registers subject misc (cluster Alter)")

    # No credentials, a wrong password, an unknown user: 401.
    sr_error(lambda: ab.sr().get_subjects(), 401, "get_subjects without credentials")
    sr_error(lambda: ab.sr().register_schema("orders-value", Schema(AVRO_ORDER, "AVRO")), 401,
             "register without credentials")
    sr_error(lambda: ab.sr("alice", "wrong").get_subjects(), 401, "get_subjects with a wrong password")
    sr_error(lambda: ab.sr("alice", "wrong").get_schema(oid), 401, "get_schema with a wrong password")
    sr_error(lambda: ab.sr("mallory", "pw").get_subjects(), 401, "get_subjects as an unknown user")

    # The admin (super user) may do everything.
    admin = ab.sr("admin")
    pid = admin.register_schema("payments-value", Schema(AVRO_PAYMENT, "AVRO"))
    mid = admin.register_schema("misc", Schema(AVRO_MISC, "AVRO"))
    sid = admin.register_schema("shared.events-value", Schema(AVRO_SHARED, "AVRO"))
    tmp = admin.register_schema("scratch-value", Schema(AVRO_MISC, "AVRO"))
    assert len({oid, pid, mid, sid}) == 4 and tmp == mid
    assert sorted(admin.get_subjects()) == sorted(
        ["orders-value", "payments-value", "misc", "shared.events-value", "scratch-value"])
    assert admin.get_latest_version("orders-value").schema_id == oid
    assert admin.delete_subject("scratch-value") == [1]
    assert "scratch-value" not in admin.get_subjects()

    # alice lists only what she may describe; bob (no ACLs) nothing.
    assert sorted(ab.sr("alice").get_subjects()) == ["orders-value", "shared.events-value"]
    assert ab.sr("bob").get_subjects() == []

    # Schemas by id: any authenticated user (deserializers need them).
    assert json.loads(ab.sr("bob").get_schema(pid).schema_str) == json.loads(AVRO_PAYMENT)
    assert json.loads(ab.sr("alice").get_schema(mid).schema_str) == json.loads(AVRO_MISC)
    # ... but the subjects they are under only where the user may describe them.
    assert assert_ok(ab.get("/schemas", user="bob")).json() == []
    assert assert_ok(ab.get(f"/schemas/ids/{pid}/subjects", user="bob")).json() == []
    assert assert_ok(ab.get(f"/schemas/ids/{pid}/versions", user="bob")).json() == []
    assert {x["subject"] for x in assert_ok(ab.get("/schemas", user="alice")).json()} == {
        "orders-value", "shared.events-value"}
    assert assert_ok(ab.get(f"/schemas/ids/{pid}/subjects", user="admin")).json() == ["payments-value"]

    # By subject: Describe on the topic (a prefixed ACL counts), else 403.
    assert ab.sr("alice").get_latest_version("shared.events-value").schema_id == sid
    sr_error(lambda: ab.sr("alice").register_schema("shared.events-value", Schema(AVRO_ORDER, "AVRO")),
             403, "alice registers under a topic she may only describe")
    sr_error(lambda: ab.sr("alice").get_latest_version("payments-value"), 403,
             "alice reads payments-value")
    sr_error(lambda: ab.sr("alice").get_latest_version("misc"), 403, "alice reads misc")
    sr_error(lambda: ab.sr("bob").get_latest_version("orders-value"), 403, "bob reads orders-value")
    sr_error(lambda: ab.sr("alice").delete_subject("payments-value"), 403, "alice deletes payments-value")
    assert "payments-value" in admin.get_subjects()

    # Per-subject config: read with Describe, change with Write.
    assert_error(ab.req("PUT", "/config/payments-value", user="alice",
                        json_body={"compatibility": "NONE"}), 403)
    assert_ok(ab.req("PUT", "/config/orders-value", user="alice", json_body={"compatibility": "NONE"}))
    assert_error(ab.req("PUT", "/config", user="alice", json_body={"compatibility": "NONE"}), 403)
    assert_ok(ab.get("/config", user="bob"))

    # The raw answers carry the JSON error shape too.
    assert_error(ab.get("/subjects"), 401)
    assert_error(ab.get("/subjects/payments-value/versions", user="alice"), 403)


# ---------------------------------------------------------------------------
# 2. Admin API
# ---------------------------------------------------------------------------


def connect_dead_letter(i: int) -> tuple:
    return (b"k%d" % i, b"bad value %d" % i, [
        ("trace", b"t%d" % i),
        ("__connect.errors.topic", b"orders"),
        ("__connect.errors.partition", b"0"),
        ("__connect.errors.offset", b"%d" % i),
        ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
        ("__connect.errors.exception.message", b"boom %d" % i),
    ])


def test_admin_api_needs_credentials_and_acls(broker_factory, sluice_bin):
    ab = AuthBroker(broker_factory, sluice_bin, acls=[
        ["--allow-principal", "User:alice", "--operation", "Write", "--topic", "orders"],
        ["--allow-principal", "User:alice", "--operation", "Read", "--topic", "orders-dlq"],
        ["--allow-principal", "User:alice", "--operation", "Describe", "--group", "g-visible"],
        ["--allow-principal", "User:alice", "--operation", "Read", "--group", "g-reset"],
        ["--allow-principal", "User:alice", "--operation", "Read", "--group", "g-reset-payments"],
        ["--allow-principal", "User:bob", "--operation", "Delete", "--group", "g-del"],
    ])
    ab.produce("orders", [(b"o%d" % i, b"order %d" % i, None) for i in range(3)])
    ab.produce("payments", [(b"p%d" % i, b"payment %d" % i, None) for i in range(3)])
    ab.produce("orders-dlq", [connect_dead_letter(i) for i in range(2)])
    ab.produce("payments-dlq", [connect_dead_letter(i) for i in range(2)])
    for g in ("g-visible", "g-hidden", "g-del"):
        ab.commit(g, "orders", 2)
    ab.commit("g-reset", "orders-dlq", 2)
    ab.commit("g-reset-payments", "payments", 2)

    # No credentials: 401 with the JSON body and the challenge, on every route.
    for method, path in [
        ("GET", "/v1/topics"), ("GET", "/v1/topics/orders"), ("GET", "/v1/groups"),
        ("GET", "/v1/groups/g-visible"), ("DELETE", "/v1/groups/g-del"),
        ("POST", "/v1/groups/g-visible/reset-offsets"), ("GET", "/v1/cluster"),
        ("GET", "/metrics"), ("GET", "/v1/dlq/orders-dlq/records"),
        ("POST", "/v1/dlq/orders-dlq/replay"), ("GET", "/subjects"), ("GET", "/no/such/path"),
    ]:
        body = assert_error(ab.req(method, path), 401, f"{method} {path} without credentials")
        assert "authentication" in body["message"].lower(), body
    # A wrong password or an unknown user is the same 401.
    assert_error(ab.get("/v1/topics", user="alice", password="wr0ng-Secret-4711"), 401)
    assert_error(ab.get("/v1/topics", user="admin", password="pw"), 401)
    assert_error(ab.get("/v1/topics", user="mallory", password="pw"), 401)

    # /healthz is open.
    r = assert_ok(ab.get("/healthz"))
    assert r.json() == {"status": "ok"}

    # /metrics and /v1/cluster need the cluster.
    body = assert_error(ab.get("/metrics", user="alice"), 403)
    assert "User:alice" in body["message"], body
    assert_error(ab.get("/v1/cluster", user="alice"), 403)
    r = assert_ok(ab.get("/metrics", user="admin"))
    assert "# TYPE" in r.text
    assert_ok(ab.get("/v1/cluster", user="admin"))

    # Topic lists are trimmed to what the caller may describe.
    everything = {"orders", "payments", "orders-dlq", "payments-dlq"}
    assert everything <= names(assert_ok(ab.get("/v1/topics", user="admin")).json(), "topic")
    assert names(assert_ok(ab.get("/v1/topics", user="alice")).json(), "topic") == {"orders", "orders-dlq"}
    assert assert_ok(ab.get("/v1/topics", user="bob")).json() == []
    assert assert_ok(ab.get("/v1/topics/orders", user="alice")).json()["topic"] == "orders"
    assert_error(ab.get("/v1/topics/payments", user="alice"), 403)
    # ... without telling a missing topic from a forbidden one.
    assert_error(ab.get("/v1/topics/no-such-topic", user="alice"), 403)
    assert_error(ab.get("/v1/topics/no-such-topic", user="admin"), 404)

    # Groups: Describe to see, Delete to delete, Read to reset.
    assert {"g-visible", "g-hidden", "g-del"} <= names(assert_ok(ab.get("/v1/groups", user="admin")).json(), "group")
    # (Read implies Describe, as in Kafka.)
    assert names(assert_ok(ab.get("/v1/groups", user="alice")).json(), "group") == {"g-visible", "g-reset", "g-reset-payments"}
    # Delete implies Describe, as in Kafka.
    assert names(assert_ok(ab.get("/v1/groups", user="bob")).json(), "group") == {"g-del"}
    assert assert_ok(ab.get("/v1/groups/g-visible", user="alice")).json()["group"] == "g-visible"
    assert_error(ab.get("/v1/groups/g-hidden", user="alice"), 403)
    assert_error(ab.req("DELETE", "/v1/groups/g-visible", user="alice"), 403)
    assert_error(ab.req("POST", "/v1/groups/g-visible/reset-offsets", user="alice",
                        json_body={"to": "earliest"}), 403)
    # Resetting commits offsets: Read on each topic too (alice may not read payments).
    body = assert_error(ab.req("POST", "/v1/groups/g-reset-payments/reset-offsets", user="alice",
                               json_body={"to": "earliest", "execute": True}), 403)
    assert "payments" in body["message"], body
    # alice may read orders-dlq.
    plan = assert_ok(ab.req("POST", "/v1/groups/g-reset/reset-offsets", user="alice",
                            json_body={"to": "earliest"})).json()
    assert [(p["topic"], p["current_offset"], p["new_offset"]) for p in plan] == [("orders-dlq", 2, 0)]
    assert_ok(ab.get("/v1/groups/g-del", user="bob"))
    assert_error(ab.req("DELETE", "/v1/groups/g-visible", user="bob"), 403)
    assert_ok(ab.req("DELETE", "/v1/groups/g-del", user="bob"), 204)
    assert_error(ab.get("/v1/groups/g-del", user="admin"), 404)
    assert_ok(ab.get("/v1/groups/g-visible", user="admin"))  # still there after alice's 403

    # DLQ: Read on the dead-letter topic to inspect; a replay also Write on its target.
    page = assert_ok(ab.get("/v1/dlq/orders-dlq/records", user="alice")).json()
    assert "payments" not in json.dumps(page)
    body = assert_error(ab.get("/v1/dlq/payments-dlq/records", user="alice"), 403)
    assert "payments-dlq" in body["message"], body
    assert_ok(ab.get("/v1/dlq/payments-dlq/records", user="admin"))
    replay = {"partition": 0, "from_offset": 0, "max_records": 10, "dry_run": True}
    assert_error(ab.req("POST", "/v1/dlq/payments-dlq/replay", user="alice",
                        json_body={**replay, "to": "orders"}), 403)
    assert_error(ab.req("POST", "/v1/dlq/orders-dlq/replay", user="alice",
                        json_body={**replay, "to": "payments"}), 403)
    # Replaying into whatever the records name needs the cluster.
    assert_error(ab.req("POST", "/v1/dlq/orders-dlq/replay", user="alice", json_body=replay), 403)
    assert_ok(ab.req("POST", "/v1/dlq/orders-dlq/replay", user="alice",
                     json_body={**replay, "to": "orders"}))
    assert_ok(ab.req("POST", "/v1/dlq/orders-dlq/replay", user="alice",
                     json_body={**replay, "original_topic": "orders"}))
    # A duplicated "to" must not let the allowed target stand in for another.
    r = ab.req("POST", "/v1/dlq/orders-dlq/replay", user="alice",
               headers={"Content-Type": "application/json"},
               data=json.dumps(replay)[:-1] + ', "to": "orders", "to": "payments"}')
    assert 400 <= r.status_code < 500, f"duplicated 'to': {r.status_code} {r.text[:300]!r}"
    assert_error(ab.req("POST", "/v1/dlq/orders-dlq/replay", user="admin",
                        json_body={**replay, "to": "orders", "dry_run": "yes"}), 400)

    # The API's own 4xx keep their meaning for an authorized caller.
    assert_error(ab.get("/v1/no-such-endpoint", user="bob"), 404)

    # An ACL added while the broker runs takes effect within seconds.
    add_acl(sluice_bin, ab.b.data_dir, "--allow-principal", "User:alice", "--operation", "Describe",
            "--group", "g-hidden")

    def hidden_visible():
        r = ab.get("/v1/groups/g-hidden", user="alice")
        return r.status_code == 200, (r.status_code, r.text[:200])

    wait_until(hidden_visible, "alice's new Describe ACL on g-hidden did not take effect")
    assert names(assert_ok(ab.get("/v1/groups", user="alice")).json(), "group") == {
        "g-visible", "g-hidden", "g-reset", "g-reset-payments"}
    ab.b.assert_alive("after the admin API checks")
    assert "wr0ng-Secret-4711" not in ab.b.log_text(), "a wrong password was logged"


# ---------------------------------------------------------------------------
# 3. --http-metrics-open, --http-auth basic without the authorizer
# ---------------------------------------------------------------------------


def test_metrics_open_leaves_only_metrics_open(broker_factory, sluice_bin):
    ab = AuthBroker(broker_factory, sluice_bin, extra=["--http-metrics-open"])
    r = assert_ok(ab.get("/metrics"))
    assert "# TYPE" in r.text and "text/plain" in r.headers.get("Content-Type", "")
    assert_ok(ab.get("/metrics", user="alice"))
    assert_error(ab.get("/v1/topics"), 401)
    assert_error(ab.get("/v1/cluster"), 401)
    assert_error(ab.get("/subjects"), 401)
    assert_error(ab.get("/v1/cluster", user="alice"), 403)
    assert_ok(ab.get("/healthz"))


def test_basic_auth_without_authorizer(broker_factory, sluice_bin):
    ab = AuthBroker(broker_factory, sluice_bin, authorizer=False, extra=["--http-auth", "basic"])
    for path in ("/metrics", "/v1/cluster", "/v1/topics", "/v1/groups", "/subjects"):
        assert_error(ab.get(path), 401, f"GET {path} without credentials")
        assert_error(ab.get(path, user="bob", password="wrong"), 401, f"GET {path} wrong password")
        assert_ok(ab.get(path, user="bob"), what=f"GET {path} as bob")
    sid = ab.sr("bob").register_schema("anything-value", Schema(AVRO_MISC, "AVRO"))
    assert ab.sr("alice").get_latest_version("anything-value").schema_id == sid
    assert ab.sr("alice").get_subjects() == ["anything-value"]
    assert_ok(ab.get("/healthz"))


# ---------------------------------------------------------------------------
# 4. CLIs through the API
# ---------------------------------------------------------------------------


def test_cli_sends_http_credentials(broker_factory, sluice_bin):
    ab = AuthBroker(broker_factory, sluice_bin, acls=[
        ["--allow-principal", "User:alice", "--operation", "Describe", "--group", "g-alice"],
    ])
    ab.produce("orders", [(b"k", b"v", None)])
    ab.commit("g-alice", "orders", 1)
    ab.commit("g-other", "orders", 1)
    http = ["--http", ab.hostport]

    cp = sluice(sluice_bin, "groups", "list", *http, check=False)
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0, f"groups list without credentials succeeded: {out}"
    assert "401" in out or "authentication" in out.lower(), out
    cp = sluice(sluice_bin, "groups", "list", *http, user="admin", password="wrong", check=False)
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0 and ("401" in out or "authentication" in out.lower()), out

    out = sluice(sluice_bin, "groups", "list", *http, user="admin").stdout
    assert "g-alice" in out and "g-other" in out, out
    out = sluice(sluice_bin, "groups", "list", *http, user="alice").stdout
    assert "g-alice" in out and "g-other" not in out, out
    # alice may describe the group but not the topic: its offsets are left
    # out (as Kafka's OffsetFetch leaves them out); admin sees them.
    out = sluice(sluice_bin, "groups", "describe", "g-alice", *http, user="alice").stdout
    assert "orders" not in out, out
    out = sluice(sluice_bin, "groups", "describe", "g-alice", *http, user="admin").stdout
    assert "orders" in out, out

    cp = sluice(sluice_bin, "cluster", "status", *http, user="alice", check=False)
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0 and ("403" in out or "may not" in out), out
    sluice(sluice_bin, "cluster", "status", *http, user="admin")
    cp = sluice(sluice_bin, "cluster", "status", *http, check=False)
    assert cp.returncode != 0, cp.stdout + cp.stderr


# ---------------------------------------------------------------------------
# 5. HTTPS
# ---------------------------------------------------------------------------


def test_http_tls(broker_factory, sluice_bin, certs):
    ab = AuthBroker(
        broker_factory, sluice_bin, https_ca=certs.ca,
        acls=[["--allow-principal", "User:alice", "--operation", "Write", "--topic", "orders"]],
        extra=["--http-tls", "true", "--tls-cert", str(certs.server_cert),
               "--tls-key", str(certs.server_key)],
    )
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    with urllib.request.urlopen(f"{ab.url}/healthz", timeout=HTTP_TIMEOUT, context=ctx) as r:
        assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    # Credentials and ACLs apply as over plain HTTP.
    assert_error(ab.get("/v1/topics"), 401)
    assert_error(ab.get("/metrics", user="alice"), 403)
    assert_ok(ab.get("/metrics", user="admin"))

    # A client that does not trust the CA refuses the certificate.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{ab.url}/healthz", timeout=HTTP_TIMEOUT)
    # Plain HTTP to the HTTPS port gets no HTTP answer.
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(f"http://{ab.hostport}/healthz", timeout=HTTP_TIMEOUT)

    # Confluent's client over HTTPS with the CA and basic auth.
    alice = ab.sr("alice")
    oid = alice.register_schema("orders-value", Schema(AVRO_ORDER, "AVRO"))
    assert json.loads(ab.sr("alice").get_schema(oid).schema_str) == json.loads(AVRO_ORDER)
    assert ab.sr("alice").get_latest_version("orders-value").schema_id == oid
    sr_error(lambda: ab.sr("alice").register_schema("payments-value", Schema(AVRO_PAYMENT, "AVRO")),
             403, "alice registers payments-value over HTTPS")
    sr_error(lambda: ab.sr().get_subjects(), 401, "no credentials over HTTPS")
    assert ab.sr("admin").get_subjects() == ["orders-value"]

    # The CLIs over HTTPS: a URL for --http, SLUICE_HTTP_CA for the CA.
    env = {**_cli_env("admin"), "SLUICE_HTTP_CA": str(certs.ca)}
    cp = subprocess.run([str(sluice_bin), "groups", "list", "--http", ab.url], env=env,
                        capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert cp.returncode == 0 and "GROUP" in cp.stdout, cp.stderr
    env.pop("SLUICE_HTTP_CA")
    cp = subprocess.run([str(sluice_bin), "groups", "list", "--http", ab.url], env=env,
                        capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert cp.returncode != 0 and "certificate" in cp.stderr.lower(), cp.stderr

    # The plain-HTTP attempt and the untrusted client did not hurt the listener.
    with urllib.request.urlopen(f"{ab.url}/healthz", timeout=HTTP_TIMEOUT, context=ctx) as r:
        assert r.status == 200
    ab.b.assert_alive("after HTTPS checks")


# ---------------------------------------------------------------------------
# 6. Bad input
# ---------------------------------------------------------------------------


def test_malformed_credentials_and_bodies(broker_factory, sluice_bin):
    ab = AuthBroker(broker_factory, sluice_bin, acls=[
        ["--allow-principal", "User:alice", "--operation", "Read", "--topic", "x"],
    ])

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    bad_headers = {
        "not base64": "Basic !!!not*base64!!!",
        "truncated base64": "Basic " + b64(b"alice:pw")[:-3],
        "no colon": "Basic " + b64(b"alicepw"),
        "empty user": "Basic " + b64(b":pw"),
        "empty token": "Basic ",
        "scheme only": "Basic",
        "bearer": "Bearer " + b64(b"alice:pw"),
        "digest": 'Digest username="alice", realm="sluice"',
        "not utf-8": "Basic " + b64(b"\xff\xfe:\xc3\x28"),
        "trailing junk": "Basic " + b64(b"alice:pw") + " extra",
        "wrong password": "Basic " + b64(b"alice:pw "),
        "nul bytes": "Basic " + b64(b"alice\x00:pw"),
        "long": "Basic " + b64(b"alice:" + b"p" * 6000),
    }
    for what, value in bad_headers.items():
        for path in ("/v1/topics", "/subjects", "/metrics"):
            r = ab.get(path, headers={"Authorization": value})
            assert_error(r, 401, f"GET {path} with Authorization {what!r}")
    # Non-ASCII bytes in the header value.
    r = requests.get(f"{ab.url}/v1/topics", timeout=HTTP_TIMEOUT,
                     headers={"Authorization": "Basic \xe9\xe9\xe9".encode("latin-1")})
    assert_error(r, 401, "Authorization with non-ASCII bytes")
    # The right credentials still work (a lower-case scheme too).
    assert_ok(ab.get("/v1/topics", headers={"Authorization": "Basic " + b64(b"alice:pw")}))
    assert_ok(ab.get("/v1/topics", headers={"Authorization": "basic " + b64(b"alice:pw")}))

    # 1 MB of garbage as a DLQ replay body: a 4xx, whoever sends it.
    garbage = os.urandom(1_000_000)
    for user, ctype in [("admin", "application/json"), ("admin", None),
                        ("alice", "application/json"), ("bob", "application/octet-stream")]:
        headers = {"Content-Type": ctype} if ctype else {}
        r = ab.req("POST", "/v1/dlq/x/replay", user=user, headers=headers, data=garbage)
        assert 400 <= r.status_code < 500, (
            f"1 MB garbage replay body as {user} ({ctype}): {r.status_code} {r.text[:300]!r}"
        )
        if user == "bob":
            assert_error(r, 403)
    # Over the replay body cap (1 MiB): refused as too large (or 4xx), not a 500.
    r = ab.req("POST", "/v1/dlq/x/replay", user="admin",
               headers={"Content-Type": "application/json"}, data=b"{" * (3 << 20))
    assert 400 <= r.status_code < 500, f"3 MiB replay body: {r.status_code} {r.text[:300]!r}"
    # Garbage JSON that names an allowed target still fails in the handler.
    r = ab.req("POST", "/v1/dlq/x/replay", user="alice",
               headers={"Content-Type": "application/json"},
               data=b'{"to": "x", "partition": "zero"}')
    assert 400 <= r.status_code < 500, f"bad replay JSON: {r.status_code} {r.text[:300]!r}"

    r = assert_ok(ab.get("/healthz"))
    assert r.json() == {"status": "ok"}
    assert_ok(ab.get("/v1/topics", user="admin"))
    ab.b.assert_alive("after malformed credentials and bodies")


def test_users_through_the_http_admin_api(broker_factory, sluice_bin):
    """`sluice users --http` manages a running broker's users; the HTTP
    side needs Describe (list) or Alter (add, delete) on the cluster."""
    ab = AuthBroker(broker_factory, sluice_bin)
    http = ["--http", ab.hostport]
    cp = sluice(sluice_bin, "users", *http, "add", "carol", "--password", "carol-pw", user="alice",
                check=False)
    assert cp.returncode != 0 and "may not Alter Cluster" in cp.stderr, cp.stderr
    out = sluice(sluice_bin, "users", *http, "add", "carol", "--password", "carol-pw",
                 "--mechanism", "SCRAM-SHA-512", user="admin").stdout
    assert "carol: SCRAM-SHA-512 credential stored" in out, out
    listed = json.loads(sluice(sluice_bin, "users", *http, "list", "--json", user="admin").stdout)
    assert set(listed) == {"admin", "alice", "bob", "carol"} and len(listed["carol"]) == 1, listed
    assert_error(ab.get("/v1/users", user="alice"), 403)
    # The new user logs in on the Kafka listener and on the HTTP side.
    p = Producer({**ab.kafka_conf(), "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "carol",
                  "sasl.password": "carol-pw", "message.timeout.ms": 10000})
    errs = []
    p.produce("carol-topic", b"x", on_delivery=lambda e, m: e and errs.append(e))
    assert p.flush(15) == 0
    assert errs and errs[0].code() == 29, errs  # logged in, but no Write ACL
    assert assert_ok(ab.get("/v1/topics", user="carol", password="carol-pw")).json() == []
    # Bad input names the problem.
    body = assert_error(ab.req("PUT", "/v1/users/dave", user="admin", json_body={"password": ""}), 400)
    assert "password" in body["message"], body
    body = assert_error(ab.req("PUT", "/v1/users/dave", user="admin",
                               json_body={"password": "x", "iterations": 10}), 400)
    assert "iterations" in body["message"], body
    out = sluice(sluice_bin, "users", *http, "delete", "carol", user="admin").stdout
    assert "1 credential(s) deleted" in out, out
    cp = sluice(sluice_bin, "users", *http, "delete", "carol", user="admin", check=False)
    assert cp.returncode != 0 and "no such user" in cp.stderr, cp.stderr
    # (An HTTP login is remembered for 30 s; a new Kafka login fails at once.)
    errs = []
    p = Producer({**ab.kafka_conf(), "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "carol",
                  "sasl.password": "carol-pw", "message.timeout.ms": 3000, "error_cb": errs.append})
    p.produce("carol-topic", b"x")
    p.flush(5)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errs), errs[:3]
