"""Plain-JSON contracts (issue 19): `sluice.value.format=json` with
`sluice.value.schema.subject` (and optionally `sluice.value.schema.version`)
checks schemaless JSON values (what the TensorZero gateway writes, seed 004)
against a registered JSON Schema at produce time, under the same
`sluice.validation.on_failure` rules as the Confluent-framed path:

* valid JSON lands; a value of the wrong shape, or not JSON at all, is
  refused with INVALID_RECORD (`reject`) or dead-lettered with
  `sluice.dlq.reason=decode_failed` (`dlq`) while the good ones land;
  tombstones pass;
* a pinned version checks against that version, not the latest;
* a subject that does not exist refuses the records (`no_json_schema`);
* bad configs are refused with INVALID_CONFIG.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

SCHEMA_V1 = {
    "type": "object",
    "properties": {
        "inference_id": {"type": "string"},
        "model_name": {"type": "string"},
        "input_tokens": {"type": "integer"},
    },
    "required": ["inference_id", "model_name"],
}
SCHEMA_V2 = {**SCHEMA_V1, "required": ["inference_id", "model_name", "input_tokens"]}


def register(b, subject, schema):
    r = requests.post(f"http://127.0.0.1:{b.http_port}/subjects/{subject}/versions",
                      json={"schemaType": "JSON", "schema": json.dumps(schema)}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def create(b, topic, **config):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    f = admin.create_topics([NewTopic(topic, 1, 1, config=config)], request_timeout=15)[topic]
    f.result(timeout=15)


def produce(b, topic, values):
    out = []
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0, "message.timeout.ms": 15000})
    for v in values:
        p.produce(topic, v, key=b"k", partition=0, on_delivery=lambda e, m: out.append(e))
        p.flush(15)
    return [None if e is None else e.code() for e in out]


def read(b, topic, n, timeout=15.0):
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    got = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            for m in c.consume(50, timeout=0.5):
                assert m.error() is None, m.error()
                got.append((m.value(), dict(m.headers() or [])))
    finally:
        c.close()
    return got


GOOD = json.dumps({"inference_id": "i-1", "model_name": "gpt", "input_tokens": 12}).encode()
NO_TOKENS = json.dumps({"inference_id": "i-2", "model_name": "gpt"}).encode()
WRONG_TYPE = json.dumps({"inference_id": 7, "model_name": "gpt"}).encode()
NOT_JSON = b"\x00\x00\x00\x00\x01{not json"


def test_plain_json_values_are_checked(broker):
    topic = f"tensorzero_model_inference-{uuid.uuid4().hex[:6]}"
    subject = f"{topic}-value"
    register(broker, subject, SCHEMA_V1)
    create(broker, topic, **{"sluice.value.format": "json", "sluice.value.schema.subject": subject})
    codes = produce(broker, topic, [GOOD, NO_TOKENS, WRONG_TYPE, NOT_JSON, None])
    assert codes == [None, None, KafkaError.INVALID_RECORD, KafkaError.INVALID_RECORD, None], codes
    got = read(broker, topic, 3)
    assert [v for v, _ in got] == [GOOD, NO_TOKENS, None], got

    # The latest version is the contract unless one is pinned (v2, stricter,
    # needs the subject's compatibility check off).
    r = requests.put(f"http://127.0.0.1:{broker.http_port}/config/{subject}",
                     json={"compatibility": "NONE"}, timeout=10)
    assert r.status_code == 200, r.text
    register(broker, subject, SCHEMA_V2)
    assert produce(broker, topic, [NO_TOKENS]) == [KafkaError.INVALID_RECORD]
    pinned = f"pinned-{uuid.uuid4().hex[:6]}"
    create(broker, pinned, **{"sluice.value.format": "json", "sluice.value.schema.subject": subject,
                              "sluice.value.schema.version": "1"})
    assert produce(broker, pinned, [NO_TOKENS, GOOD]) == [None, None]


def test_plain_json_dead_letters(broker):
    topic = f"tensorzero_chat_inference-{uuid.uuid4().hex[:6]}"
    subject = f"{topic}-value"
    register(broker, subject, SCHEMA_V1)
    create(broker, topic, **{"sluice.value.format": "json", "sluice.value.schema.subject": subject,
                             "sluice.validation.on_failure": "dlq"})
    assert produce(broker, topic, [GOOD, WRONG_TYPE, NO_TOKENS]) == [None, None, None]
    assert [v for v, _ in read(broker, topic, 2)] == [GOOD, NO_TOKENS]
    dead = read(broker, f"{topic}-dlq", 1)
    assert len(dead) == 1 and dead[0][0] == WRONG_TYPE, dead
    assert dead[0][1]["sluice.dlq.reason"] == b"decode_failed", dead[0][1]


def test_missing_subject_and_bad_configs(broker):
    topic = f"nosubject-{uuid.uuid4().hex[:6]}"
    create(broker, topic, **{"sluice.value.format": "json",
                             "sluice.value.schema.subject": "never-registered-value"})
    assert produce(broker, topic, [GOOD]) == [KafkaError.INVALID_RECORD]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for cfg in [
        {"sluice.value.format": "json"},
        {"sluice.value.format": "xml"},
        {"sluice.value.format": "json", "sluice.value.schema.subject": "s",
         "confluent.value.schema.validation": "true"},
        {"sluice.value.format": "json", "sluice.value.schema.subject": "s",
         "sluice.value.schema.version": "zero"},
    ]:
        t = f"bad-{uuid.uuid4().hex[:6]}"
        f = admin.create_topics([NewTopic(t, 1, 1, config=cfg)], request_timeout=15)[t]
        with pytest.raises(KafkaException) as e:
            f.result(timeout=15)
        assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, (cfg, e.value)


def test_tensorzero_contracts_install_and_bind(broker, sluice_bin):
    """`sluice schemas install --tensorzero --topic-prefix P` registers the
    JSON Schema contracts of the gateway's three topics and binds them; a
    client set up as the gateway (lz4, batch 1000, linger 10 ms) writes
    valid records of each kind, and a malformed one is refused."""
    import subprocess
    prefix = f"tz{uuid.uuid4().hex[:4]}"
    # An existing topic keeps its other configs when bound.
    create(broker, f"{prefix}_chat_inference", **{"retention.ms": "3600000"})
    cp = subprocess.run([str(sluice_bin), "schemas", "install", "--tensorzero", "--topic-prefix", prefix,
                         "--http", f"127.0.0.1:{broker.http_port}"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    for kind in ("model_inference", "chat_inference", "json_inference"):
        assert f"{prefix}_{kind}" in cp.stdout and f"{prefix}_{kind}-value" in cp.stdout, cp.stdout
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(ConfigResource.Type.TOPIC, f"{prefix}_chat_inference")
    cfg = admin.describe_configs([res])[res].result(timeout=15)
    assert cfg["sluice.value.format"].value == "json"
    assert cfg["sluice.value.schema.subject"].value == f"{prefix}_chat_inference-value"
    assert cfg["retention.ms"].value == "3600000"

    records = {
        "model_inference": {"id": "m-1", "inference_id": "i-1", "raw_request": "{}", "raw_response": "{}",
                            "input_messages": [{"role": "user", "content": "hi"}], "output": "hello",
                            "model_name": "gpt-4", "model_provider_name": "openai", "input_tokens": 100,
                            "output_tokens": 200, "response_time_ms": 500, "cached": False},
        "chat_inference": {"id": "i-1", "function_name": "chat_function", "variant_name": "variant_a",
                           "episode_id": "e-1", "input": {"messages": []}, "output": [{"type": "text"}],
                           "processing_time_ms": 123, "tags": {"key": "value"}},
        "json_inference": {"id": "i-2", "function_name": "extract", "variant_name": "v", "episode_id": "e-1",
                           "input": {}, "output": {"raw": "{}", "parsed": {}}, "output_schema": {},
                           "processing_time_ms": 5, "tags": {}},
    }
    gateway = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "lz4",
                        "batch.num.messages": 1000, "linger.ms": 10, "request.timeout.ms": 5000})
    errs = []
    for kind, rec in records.items():
        for i in range(50):
            gateway.produce(f"{prefix}_{kind}", json.dumps({**rec, "id": f"{rec['id']}-{i}"}).encode(),
                            key=f"{rec['id']}-{i}".encode(), on_delivery=lambda e, m: errs.append(e))
    assert gateway.flush(30) == 0
    assert errs == [None] * 150, [e for e in errs if e][:3]
    bad = {k: v for k, v in records["chat_inference"].items() if k != "episode_id"}
    assert produce(broker, f"{prefix}_chat_inference", [json.dumps(bad).encode()]) == [KafkaError.INVALID_RECORD]
