"""Schema registry, produce-time validation and AI contracts, end to end.

The registry is served on the broker's HTTP listener (same port as
/healthz). Confluent's own Python client (`confluent_kafka.schema_registry`:
SchemaRegistryClient and the Avro / JSON Schema / Protobuf serializers)
talks to it unchanged; produce-time validation is driven with raw Produce
requests (kafka_wire) so the per-record errors of the response can be read.

Needs, besides confluent-kafka: httpx authlib cachetools attrs fastavro
jsonschema protobuf googleapis-common-protos (pip; confluent-kafka's
`schemaregistry` extra cannot be installed as a whole here).

SLUICE_REGISTRY_URL=http://host:port points the pure REST tests at another
registry (for instance `cargo run -p sluice-registry --example serve`); the
tests that produce or restart always use the broker under test.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning)

from confluent_kafka.schema_registry import (  # noqa: E402
    Schema,
    SchemaReference,
    SchemaRegistryClient,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer  # noqa: E402
from confluent_kafka.schema_registry.error import SchemaRegistryError  # noqa: E402
from confluent_kafka.schema_registry.json_schema import (  # noqa: E402
    JSONDeserializer,
    JSONSerializer,
)
from confluent_kafka.schema_registry.protobuf import (  # noqa: E402
    ProtobufDeserializer,
    ProtobufSerializer,
)
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

import kafka_wire as kw  # noqa: E402
from helpers import consume_all, create_topic, make_producer, produce_all  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "contracts"
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
INVALID_RECORD = 87
LEVELS = [
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
]


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


def broker_url(broker) -> str:
    return f"http://127.0.0.1:{broker.http_port}"


@pytest.fixture
def sr_url(broker) -> str:
    return os.environ.get("SLUICE_REGISTRY_URL") or broker_url(broker)


@pytest.fixture
def sr(sr_url) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": sr_url})


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def http(url: str, method: str = "GET", body=None):
    """(status, parsed JSON body, content type) of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", CONTENT_TYPE)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw, status, ct = resp.read(), resp.status, resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        raw, status, ct = e.read(), e.code, e.headers.get("Content-Type", "")
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode("utf-8", "replace")
    return status, parsed, ct


def expect_error(fn, status: int, code: int):
    with pytest.raises(SchemaRegistryError) as ei:
        fn()
    assert (ei.value.http_status_code, ei.value.error_code) == (status, code), ei.value
    return ei.value


def avro_record(name: str, fields: list) -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "sluice.test", "fields": fields})


def json_object(props: dict, required=(), closed=True, title="T") -> str:
    s = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": title,
        "type": "object",
        "properties": props,
        "required": list(required),
    }
    if closed:
        s["additionalProperties"] = False
    return json.dumps(s)


def framed(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def raw_produce(broker, topic: str, records: list, partition: int = 0):
    """records: (key, value, headers) tuples, all in one batch."""
    batch = kw.build_record_batch([kw.Record(key=k, value=v, headers=h) for k, v, h in records])
    with kw.WireConnection("127.0.0.1", broker.kafka_port) as c:
        return c.produce(topic, partition, batch)


def fetch_all(broker, topic: str, partition: int = 0) -> list:
    with kw.WireConnection("127.0.0.1", broker.kafka_port) as c:
        res = c.fetch(topic, partition, 0, max_wait_ms=200)
    assert res.error_code == 0, f"fetch {topic}: error {res.error_code}"
    out = []
    for b in kw.decode_record_batches(res.records or b""):
        out.extend(b.records)
    return out


def error_text(res) -> str:
    return " | ".join([m or "" for _, m in res.record_errors] + [res.error_message or ""])


def proto_message_class(package: str, name: str, fields: list):
    """A protobuf message class made at run time: fields are (name, number, type)."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}/{name.lower()}.proto", package=package, syntax="proto3"
    )
    m = fdp.message_type.add(name=name)
    for fname, number, ftype in fields:
        m.field.add(name=fname, number=number, type=ftype, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))


# ---------------------------------------------------------------------------
# REST: register, look up, evolve
# ---------------------------------------------------------------------------


def test_avro_register_lookup_evolve(sr, sr_url):
    subject = uniq("avro") + "-value"
    v1 = avro_record("User", [{"name": "id", "type": "long"}])
    v2 = avro_record("User", [{"name": "id", "type": "long"}, {"name": "name", "type": "string", "default": ""}])
    bad = avro_record("User", [{"name": "id", "type": "string"}])
    id1 = sr.register_schema(subject, Schema(v1, "AVRO"))
    assert sr.register_schema(subject, Schema(v1, "AVRO")) == id1
    id2 = sr.register_schema(subject, Schema(v2, "AVRO"))
    assert id2 != id1
    err = expect_error(lambda: sr.register_schema(subject, Schema(bad, "AVRO")), 409, 409)
    assert "incompatible" in err.error_message.lower()
    assert sr.get_versions(subject) == [1, 2]
    latest = sr.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, id2)
    assert json.loads(latest.schema.schema_str)["fields"][1]["name"] == "name"
    found = sr.lookup_schema(subject, Schema(v1, "AVRO"))
    assert (found.version, found.schema_id) == (1, id1)
    assert subject in sr.get_subjects()
    assert json.loads(sr.get_schema(id1).schema_str)["name"] == "User"
    # The same schema under another subject keeps its id.
    other = uniq("avro-other") + "-value"
    assert sr.register_schema(other, Schema(v1, "AVRO")) == id1
    assert sorted(sr.get_subjects_by_schema_id(id1)) == sorted([subject, other])
    status, body, ct = http(f"{sr_url}/subjects/{subject}/versions/1")
    assert status == 200 and ct.startswith(CONTENT_TYPE)
    assert body["id"] == id1 and "schemaType" not in body


def test_json_schema_register_lookup_evolve(sr):
    subject = uniq("json") + "-value"
    v1 = json_object({"id": {"type": "integer"}}, required=["id"])
    v2 = json_object({"id": {"type": "integer"}, "note": {"type": "string"}}, required=["id"])
    bad = json_object({"id": {"type": "string"}}, required=["id"])
    id1 = sr.register_schema(subject, Schema(v1, "JSON"))
    id2 = sr.register_schema(subject, Schema(v2, "JSON"))
    assert id1 != id2
    expect_error(lambda: sr.register_schema(subject, Schema(bad, "JSON")), 409, 409)
    latest = sr.get_latest_version(subject)
    assert latest.schema.schema_type == "JSON" and latest.version == 2
    assert sr.lookup_schema(subject, Schema(v1, "JSON")).version == 1
    assert sr.test_compatibility(subject, Schema(bad, "JSON")) is False


def test_protobuf_register_lookup_evolve(sr, sr_url):
    subject = uniq("proto") + "-value"
    v1 = 'syntax = "proto3";\npackage sluice.test;\nmessage Order {\n  int64 id = 1;\n  string sku = 2;\n}\n'
    v2 = v1.replace("string sku = 2;", "string sku = 2;\n  int32 qty = 3;")
    bad = v1.replace("string sku = 2;", "double sku = 2;")
    id1 = sr.register_schema(subject, Schema(v1, "PROTOBUF"))
    id2 = sr.register_schema(subject, Schema(v2, "PROTOBUF"))
    assert id1 != id2
    expect_error(lambda: sr.register_schema(subject, Schema(bad, "PROTOBUF")), 409, 409)
    got = sr.get_latest_version(subject)
    assert got.schema.schema_type == "PROTOBUF" and "qty" in got.schema.schema_str
    assert sr.lookup_schema(subject, Schema(v1, "PROTOBUF")).schema_id == id1
    # The descriptor form (what the Python serializer sends) is the same schema.
    ser = sr.get_latest_version(subject, fmt="serialized").schema.schema_str
    assert sr.register_schema(subject, Schema(ser, "PROTOBUF")) == id2
    status, body, _ = http(f"{sr_url}/schemas/types")
    assert status == 200 and sorted(body) == ["AVRO", "JSON", "PROTOBUF"]


def test_references_and_referenced_by(sr, sr_url):
    dep_subject = uniq("addr")
    dep = json.dumps({"type": "record", "name": "Address", "namespace": "sluice.test",
                      "fields": [{"name": "city", "type": "string"}]})
    dep_id = sr.register_schema(dep_subject, Schema(dep, "AVRO"))
    subject = uniq("person") + "-value"
    person = json.dumps({"type": "record", "name": "Person", "namespace": "sluice.test",
                         "fields": [{"name": "home", "type": "sluice.test.Address"}]})
    refs = [SchemaReference("sluice.test.Address", dep_subject, 1)]
    pid = sr.register_schema(subject, Schema(person, "AVRO", refs))
    assert pid != dep_id
    assert sr.get_referenced_by(dep_subject, 1) == [pid]
    got = sr.get_schema(pid)
    assert [r.name for r in got.references] == ["sluice.test.Address"]
    # A referenced schema cannot be deleted.
    expect_error(lambda: sr.delete_version(dep_subject, 1), 422, 42206)
    # Without the reference the schema does not parse.
    expect_error(lambda: sr.register_schema(uniq("noref"), Schema(person, "AVRO")), 422, 42201)


def test_error_codes_soft_and_permanent_delete(sr, sr_url):
    subject = uniq("del") + "-value"
    expect_error(lambda: sr.get_versions(subject), 404, 40401)
    v1 = avro_record("D", [{"name": "a", "type": "int"}])
    v2 = avro_record("D", [{"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0}])
    id1 = sr.register_schema(subject, Schema(v1, "AVRO"))
    sr.register_schema(subject, Schema(v2, "AVRO"))
    expect_error(lambda: sr.get_version(subject, 7), 404, 40402)
    expect_error(lambda: sr.get_schema(987654321), 404, 40403)
    expect_error(lambda: sr.register_schema(subject, Schema("{not avro", "AVRO")), 422, 42201)
    status, body, ct = http(f"{sr_url}/subjects/{subject}/versions/abc")
    assert (status, body["error_code"]) == (422, 42202) and ct.startswith(CONTENT_TYPE)
    status, body, _ = http(f"{sr_url}/config/{subject}", "PUT", {"compatibility": "SIDEWAYS"})
    assert (status, body["error_code"]) == (422, 42203)
    # Versions: permanent needs soft first; soft twice is refused.
    expect_error(lambda: sr.delete_version(subject, 2, permanent=True), 404, 40407)
    assert sr.delete_version(subject, 2) == 2
    expect_error(lambda: sr.delete_version(subject, 2), 404, 40406)
    assert sr.get_versions(subject) == [1]
    assert sr.get_versions(subject, deleted=True) == [1, 2]
    assert sr.delete_version(subject, 2, permanent=True) == 2
    # Subjects: the same rules.
    expect_error(lambda: sr.delete_subject(subject, permanent=True), 404, 40405)
    assert sr.delete_subject(subject) == [1]
    expect_error(lambda: sr.delete_subject(subject), 404, 40404)
    assert subject not in sr.get_subjects()
    assert subject in sr.get_subjects(deleted=True)
    # A soft-deleted schema still resolves by id (old records still decode).
    assert json.loads(sr.get_schema(id1).schema_str)["name"] == "D"
    assert sr.delete_subject(subject, permanent=True) == [1]
    assert subject not in sr.get_subjects(deleted=True)


def test_config_and_mode(sr, sr_url):
    subject = uniq("cfg") + "-value"
    assert sr.get_compatibility() in LEVELS
    expect_error(lambda: sr.get_compatibility(subject), 404, 40408)
    status, body, _ = http(f"{sr_url}/config/{subject}?defaultToGlobal=true")
    assert status == 200 and body["compatibilityLevel"] in LEVELS
    assert sr.set_compatibility(subject, "FULL_TRANSITIVE") == {"compatibility": "FULL_TRANSITIVE"}
    assert sr.get_compatibility(subject) == "FULL_TRANSITIVE"
    status, body, _ = http(f"{sr_url}/config/{subject}", "DELETE")
    assert status == 200 and body["compatibilityLevel"] == "FULL_TRANSITIVE"
    expect_error(lambda: sr.get_compatibility(subject), 404, 40408)
    assert sr.get_global_mode() == "READWRITE"
    expect_error(lambda: sr.get_mode(subject), 404, 40409)
    assert sr.update_mode(subject, "READONLY") == "READONLY"
    assert sr.get_mode(subject) == "READONLY"
    v1 = avro_record("M", [{"name": "a", "type": "int"}])
    expect_error(lambda: sr.register_schema(subject, Schema(v1, "AVRO")), 422, 42205)
    status, body, _ = http(f"{sr_url}/mode/{subject}", "PUT", {"mode": "SOMETIMES"})
    assert (status, body["error_code"]) == (422, 42204)
    assert sr.delete_mode(subject) == "READONLY"
    assert sr.register_schema(subject, Schema(v1, "AVRO")) > 0


# ---------------------------------------------------------------------------
# Compatibility: each level x each type
# ---------------------------------------------------------------------------

# Per type: (v1, full-compatible, backward-only, forward-only, breaking),
# each change a step from v1.
_CHANGES = {
    "AVRO": (
        avro_record("C", [{"name": "a", "type": "int"}]),
        avro_record("C", [{"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": "x"}]),
        avro_record("C", [{"name": "a", "type": "long"}]),
        avro_record("C", [{"name": "a", "type": "int"}, {"name": "e", "type": "string"}]),
        avro_record("C", [{"name": "a", "type": "string"}]),
    ),
    "JSON": (
        json_object({"a": {"type": "integer"}}),
        json_object({"a": {"type": "integer", "description": "the a"}}),
        json_object({"a": {"type": "integer"}, "b": {"type": "string"}}),
        json_object({"a": {"type": "integer", "maximum": 10}}),
        json_object({"a": {"type": "string"}}),
    ),
    "PROTOBUF": (
        'syntax = "proto3"; package c; message M { int32 a = 1; }',
        'syntax = "proto3"; package c; message M { int32 a = 1; string b = 2; }',
        'syntax = "proto3"; package c; message M { int32 a = 1; } message N { int32 x = 1; }',
        None,  # forward-only: remove a message (v1 = the two-message schema)
        'syntax = "proto3"; package c; message M { string a = 1; }',
    ),
}

# Accepted? for (full, backward-only, forward-only, breaking).
_EXPECT = {
    "NONE": (True, True, True, True),
    "BACKWARD": (True, True, False, False),
    "BACKWARD_TRANSITIVE": (True, True, False, False),
    "FORWARD": (True, False, True, False),
    "FORWARD_TRANSITIVE": (True, False, True, False),
    "FULL": (True, False, False, False),
    "FULL_TRANSITIVE": (True, False, False, False),
}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("schema_type", ["AVRO", "JSON", "PROTOBUF"])
def test_compatibility_table(sr, sr_url, schema_type, level):
    changes = _CHANGES[schema_type]
    for i, accepted in enumerate(_EXPECT[level]):
        subject = uniq(f"compat-{schema_type.lower()}-{i}")
        v1, v2 = changes[0], changes[i + 1]
        if v2 is None:
            v1, v2 = changes[2], changes[0]
        sr.set_compatibility(subject, level)
        sr.register_schema(subject, Schema(v1, schema_type))
        # The check endpoint agrees with registration.
        status, body, _ = http(
            f"{sr_url}/compatibility/subjects/{subject}/versions/latest?verbose=true",
            "POST",
            {"schema": v2, "schemaType": schema_type},
        )
        assert status == 200 and body["is_compatible"] is accepted, (level, i, body)
        if not accepted:
            assert body["messages"], "verbose answers name the incompatibility"
        if accepted:
            assert sr.register_schema(subject, Schema(v2, schema_type)) > 0
            assert sr.get_versions(subject) == [1, 2]
        else:
            expect_error(lambda: sr.register_schema(subject, Schema(v2, schema_type)), 409, 409)
            assert sr.get_versions(subject) == [1]


@pytest.mark.parametrize("level,third_accepted", [("BACKWARD", True), ("BACKWARD_TRANSITIVE", False)])
def test_transitive_levels_check_all_versions(sr, level, third_accepted):
    subject = uniq("transitive")
    sr.set_compatibility(subject, level)
    sr.register_schema(subject, Schema(avro_record("T", [{"name": "a", "type": "int"}]), "AVRO"))
    sr.register_schema(subject, Schema(avro_record("T", []), "AVRO"))
    v3 = Schema(avro_record("T", [{"name": "a", "type": "string", "default": "z"}]), "AVRO")
    if third_accepted:
        assert sr.register_schema(subject, v3) > 0
    else:
        expect_error(lambda: sr.register_schema(subject, v3), 409, 409)


# ---------------------------------------------------------------------------
# Serializers produce through Sluice; deserializers consume
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(180)
def test_serializers_roundtrip_through_broker(broker):
    sr = SchemaRegistryClient({"url": broker_url(broker)})
    avro_schema = avro_record("Event", [{"name": "n", "type": "long"}, {"name": "s", "type": "string"}])
    json_schema = json_object({"n": {"type": "integer"}, "s": {"type": "string"}}, required=["n"], title="Event")
    Msg = proto_message_class(
        "sluice.e2e", "Event",
        [("n", 1, descriptor_pb2.FieldDescriptorProto.TYPE_INT64),
         ("s", 2, descriptor_pb2.FieldDescriptorProto.TYPE_STRING)],
    )
    pconf = {"use.deprecated.format": False}
    cases = [
        ("avro", AvroSerializer(sr, avro_schema), AvroDeserializer(sr),
         lambda i: {"n": i, "s": f"v{i}"}, lambda o: (o["n"], o["s"])),
        ("json", JSONSerializer(json_schema, sr), JSONDeserializer(json_schema, schema_registry_client=sr),
         lambda i: {"n": i, "s": f"v{i}"}, lambda o: (o["n"], o["s"])),
        ("protobuf", ProtobufSerializer(Msg, sr, pconf), ProtobufDeserializer(Msg, pconf, sr),
         lambda i: Msg(n=i, s=f"v{i}"), lambda o: (o.n, o.s)),
    ]
    n = 50
    for name, ser, de, make, view in cases:
        topic = uniq(f"serde-{name}")
        create_topic(broker.bootstrap, topic, 1)
        ctx = SerializationContext(topic, MessageField.VALUE)
        producer = make_producer(broker.bootstrap)
        deliveries = produce_all(producer, topic, [{"value": ser(make(i), ctx)} for i in range(n)])
        assert all(d.error is None for d in deliveries), [d.error for d in deliveries if d.error]
        got = consume_all(broker.bootstrap, topic, [0], expected=n)
        assert [view(de(m.value, ctx)) for m in got] == [(i, f"v{i}") for i in range(n)]
        # The serializer registered under TopicNameStrategy.
        assert sr.get_latest_version(f"{topic}-value").version == 1


@pytest.mark.e2e_timeout(120)
def test_schemas_survive_kill9(broker):
    sr = SchemaRegistryClient({"url": broker_url(broker)})
    subject = uniq("durable") + "-value"
    sid = sr.register_schema(subject, Schema(avro_record("Dur", [{"name": "a", "type": "int"}]), "AVRO"))
    sr.set_compatibility(subject, "FULL")
    broker.kill9()
    broker.restart()
    sr2 = SchemaRegistryClient({"url": broker_url(broker)})
    got = sr2.get_latest_version(subject)
    assert (got.schema_id, got.version) == (sid, 1)
    assert sr2.get_compatibility(subject) == "FULL"
    # Ids are never reused after a restart.
    other = sr2.register_schema(uniq("durable2"), Schema(avro_record("Dur2", [{"name": "b", "type": "int"}]), "AVRO"))
    assert other > sid


# ---------------------------------------------------------------------------
# Produce-time validation
# ---------------------------------------------------------------------------

VALUE_SCHEMA = avro_record("Reading", [{"name": "sensor", "type": "string"}, {"name": "value", "type": "double"}])
OTHER_SCHEMA = avro_record("Other", [{"name": "x", "type": "int"}])


def _validated_topic(broker, sr, mode: str, on_failure: str, partitions: int = 1, extra=None):
    topic = uniq(f"val-{mode}-{on_failure}")
    config = {
        "confluent.value.schema.validation": "true",
        "sluice.validation.mode": mode,
        "sluice.validation.on_failure": on_failure,
    }
    config.update(extra or {})
    create_topic(broker.bootstrap, topic, partitions, config=config)
    if on_failure == "dlq":
        create_topic(broker.bootstrap, f"{topic}-dlq", partitions)
    good_id = sr.register_schema(f"{topic}-value", Schema(VALUE_SCHEMA, "AVRO"))
    other_id = sr.register_schema(uniq("elsewhere") + "-value", Schema(OTHER_SCHEMA, "AVRO"))
    return topic, good_id, other_id


def _good_value(schema_id: int) -> bytes:
    import io

    import fastavro

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(json.loads(VALUE_SCHEMA)), {"sensor": "s1", "value": 1.5})
    return framed(schema_id, buf.getvalue())


def _bad_values(good_id: int, other_id: int) -> list:
    """(what, payload, words one of which the broker's reason must contain)."""
    return [
        ("no magic byte", b'{"sensor": "s1"}', ["magic"]),
        ("unknown id", framed(999_999, b"\x02s1"), ["not registered", "unknown"]),
        ("id of another subject", framed(other_id, b"\x02"), ["subject"]),
        ("undecodable payload", framed(good_id, b"\x02s1\x01"), ["decode"]),
    ]


@pytest.mark.e2e_timeout(180)
def test_validation_reject_refuses_the_batch_and_names_the_record(broker):
    sr = SchemaRegistryClient({"url": broker_url(broker)})
    topic, good_id, other_id = _validated_topic(broker, sr, "content", "reject")
    good = _good_value(good_id)
    for what, bad, words in _bad_values(good_id, other_id):
        res = raw_produce(broker, topic, [(b"k0", good, []), (b"k1", bad, []), (b"k2", good, [])])
        assert res.error_code == INVALID_RECORD, f"{what}: error {res.error_code}"
        indexes = [i for i, _ in res.record_errors]
        assert 1 in indexes, f"{what}: record_errors {res.record_errors}"
        text = error_text(res).lower()
        assert any(w in text for w in words), f"{what}: {text!r}"
    # Nothing of the refused batches was stored; a clean batch is.
    assert fetch_all(broker, topic) == []
    res = raw_produce(broker, topic, [(b"k", good, []), (b"k", good, [])])
    assert res.error_code == 0
    assert len(fetch_all(broker, topic)) == 2


@pytest.mark.e2e_timeout(180)
def test_validation_id_mode_does_not_decode(broker):
    sr = SchemaRegistryClient({"url": broker_url(broker)})
    topic, good_id, other_id = _validated_topic(broker, sr, "id", "reject")
    # A registered id under the right subject passes even if the body is junk.
    assert raw_produce(broker, topic, [(None, framed(good_id, b"\xff\xff"), [])]).error_code == 0
    # Wrong subject still fails in id mode.
    res = raw_produce(broker, topic, [(None, framed(other_id, b"\x02"), [])])
    assert res.error_code == INVALID_RECORD


@pytest.mark.e2e_timeout(180)
def test_validation_dlq_keeps_good_records_and_dead_letters_bad(broker):
    sr = SchemaRegistryClient({"url": broker_url(broker)})
    topic, good_id, other_id = _validated_topic(broker, sr, "content", "dlq")
    good = _good_value(good_id)
    bads = _bad_values(good_id, other_id)
    records = [(b"g0", good, [])]
    for i, (_, bad, _) in enumerate(bads):
        records.append((f"b{i}".encode(), bad, [("origin", b"test")]))
        records.append((f"g{i + 1}".encode(), good, []))
    res = raw_produce(broker, topic, records)
    assert res.error_code == 0, f"dlq mode accepts the batch: {res}"
    stored = fetch_all(broker, topic)
    assert [r.key for r in stored] == [b"g0", b"g1", b"g2", b"g3", b"g4"]
    dead = fetch_all(broker, f"{topic}-dlq")
    assert [r.key for r in dead] == [b"b0", b"b1", b"b2", b"b3"]
    reasons = []
    for rec, (what, bad, _) in zip(dead, bads):
        h = {k: v for k, v in rec.headers}
        assert rec.value == bad, what
        assert h.get("origin") == b"test", f"{what}: the record's own headers are kept"
        assert h.get("sluice.dlq.original.topic") == topic.encode(), (what, h)
        assert h.get("sluice.dlq.original.partition") == b"0", (what, h)
        assert h.get("sluice.dlq.reason"), (what, h)
        reasons.append(h["sluice.dlq.reason"].decode())
    assert reasons == ["no_magic_byte", "unknown_schema_id", "wrong_subject", "decode_failed"]
    h = {k: v for k, v in dead[1].headers}
    assert h.get("sluice.dlq.schema.id") == b"999999"


TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.e2e_timeout(120)
def test_governance_headers_are_enforced(broker):
    topic = uniq("gov")
    create_topic(broker.bootstrap, topic, 1, config={
        "sluice.governance.required.headers": "traceparent,tenant-id",
        "sluice.governance.allowed.classifications": "public,internal",
    })
    ok = [("traceparent", TRACEPARENT), ("tenant-id", b"acme"), ("classification", b"internal")]
    assert raw_produce(broker, topic, [(None, b"anything", ok)]).error_code == 0
    cases = [
        ("missing tenant", [h for h in ok if h[0] != "tenant-id"], "tenant-id"),
        ("bad traceparent", [("traceparent", b"00-xyz-01")] + ok[1:], "traceparent"),
        ("classification not allowed", ok[:2] + [("classification", b"restricted")], "classification"),
        ("no classification", ok[:2], "classification"),
    ]
    for what, headers, word in cases:
        res = raw_produce(broker, topic, [(None, b"anything", ok), (None, b"x", headers)])
        assert res.error_code == INVALID_RECORD, what
        assert word in error_text(res).lower(), (what, error_text(res))
    assert len(fetch_all(broker, topic)) == 1


# ---------------------------------------------------------------------------
# AI contracts
# ---------------------------------------------------------------------------

KINDS = ["inference", "tool_call", "retrieval", "feedback", "guardrail_decision", "evaluation_result"]


def install_contracts(sr) -> dict:
    """Registers contracts/ the way `sluice schemas install` does (same
    subjects, idempotent); returns {subject: id}."""
    out = {}
    env = (CONTRACTS / "avro" / "envelope.avsc").read_text()
    out["ai.sluice.Envelope"] = sr.register_schema("ai.sluice.Envelope", Schema(env, "AVRO"))
    env_version = sr.lookup_schema("ai.sluice.Envelope", Schema(env, "AVRO")).version
    for kind in KINDS:
        text = (CONTRACTS / "avro" / f"{kind}.avsc").read_text()
        refs = [SchemaReference("ai.sluice.Envelope", "ai.sluice.Envelope", env_version)]
        out[f"ai.{kind}-value"] = sr.register_schema(f"ai.{kind}-value", Schema(text, "AVRO", refs))
        jtext = (CONTRACTS / "json" / f"{kind}.json").read_text()
        out[f"ai.{kind}.json-value"] = sr.register_schema(f"ai.{kind}.json-value", Schema(jtext, "JSON"))
    return out


@pytest.mark.e2e_timeout(240)
def test_ai_contracts_install_and_examples_validate(broker):
    sr = SchemaRegistryClient({"url": broker_url(broker)})
    first = install_contracts(sr)
    assert install_contracts(sr) == first, "installing twice changes nothing"
    assert all(s.startswith("ai.") for s in sr.get_subjects() if s in first)
    env_fields = {f["name"] for f in json.loads((CONTRACTS / "avro" / "envelope.avsc").read_text())["fields"]}
    assert {"event_id", "event_time", "producer", "tenant_id", "classification", "consent_scope",
            "lineage_source_event_ids", "schema_version", "trace_id", "span_id"} <= env_fields
    gov = {
        "confluent.value.schema.validation": "true",
        "sluice.validation.mode": "content",
        "sluice.governance.required.headers": "traceparent,tenant-id",
    }
    headers = [("traceparent", TRACEPARENT), ("tenant-id", b"acme")]
    for kind in KINDS:
        valid = json.loads((CONTRACTS / "examples" / f"{kind}.valid.json").read_text())
        missing = json.loads((CONTRACTS / "examples" / f"{kind}.missing-governance.json").read_text())
        # Avro: the serializer uses the installed contract (with its reference).
        topic = f"ai.{kind}"
        create_topic(broker.bootstrap, topic, 1, config=gov)
        ctx = SerializationContext(topic, MessageField.VALUE)
        ser = AvroSerializer(sr, None, conf={"auto.register.schemas": False, "use.latest.version": True})
        payload = ser(valid, ctx)
        res = raw_produce(broker, topic, [(None, payload, headers)])
        assert res.error_code == 0, f"{kind}: valid Avro example refused: {error_text(res)}"
        with pytest.raises(Exception):
            ser(missing, ctx)  # cannot even be encoded without its governance fields
        res = raw_produce(broker, topic, [(None, payload, headers[:1])])
        assert res.error_code == INVALID_RECORD, f"{kind}: missing tenant-id header accepted"
        back = AvroDeserializer(sr)(fetch_all(broker, topic)[0].value, ctx)
        assert back["governance"]["tenant_id"] == valid["governance"]["tenant_id"]
        # JSON: the broker itself refuses an event missing governance fields.
        jtopic = f"ai.{kind}.json"
        create_topic(broker.bootstrap, jtopic, 1, config=gov)
        jid = first[f"ai.{kind}.json-value"]
        good = framed(jid, json.dumps(valid).encode())
        bad = framed(jid, json.dumps(missing).encode())
        assert raw_produce(broker, jtopic, [(None, good, headers)]).error_code == 0, kind
        res = raw_produce(broker, jtopic, [(None, good, headers), (None, bad, headers)])
        assert res.error_code == INVALID_RECORD, f"{kind}: event missing governance accepted"
        assert 1 in [i for i, _ in res.record_errors], res.record_errors
