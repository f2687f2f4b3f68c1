"""REST produce, Confluent REST Proxy compatible (issue 19):

* v3 `POST /v3/clusters/{cluster_id}/topics/{topic}/records`: JSON, BINARY
  and STRING keys and values, headers (base64), partition_id, timestamp;
  a streamed body of several records answered one result per line; a
  keyed record lands where Kafka's murmur2 partitioner puts it (the same
  partition a librdkafka producer with `partitioner=murmur2` picks); the
  records read back byte-identical with confluent-kafka.
* v2 `POST /topics/{topic}` with the json and binary embedded formats.
* Errors: unknown cluster or topic 404, a bad record 400 (with the others of
  a streamed request still produced), schema-based formats refused, a wrong
  Content-Type 415, a record refused by the topic's JSON contract 400.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def setup(broker, partitions=4, **config):
    topic = f"rest-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1, config=config)])[topic].result(timeout=15)
    cluster_id = admin.describe_cluster(request_timeout=10).result(timeout=15).cluster_id
    return topic, cluster_id


def read(broker, topic, partition, n, timeout=15.0):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    got = []
    try:
        c.assign([TopicPartition(topic, partition, 0)])
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            for m in c.consume(50, timeout=0.5):
                assert m.error() is None, m.error()
                got.append(m)
    finally:
        c.close()
    return got


def test_v3_records(broker):
    topic, cid = setup(broker)
    url = f"http://127.0.0.1:{broker.http_port}/v3/clusters/{cid}/topics/{topic}/records"
    r = requests.post(url, json={
        "partition_id": 1,
        "headers": [{"name": "traceparent", "value": b64(b"00-abc")}, {"name": "nil"}],
        "key": {"type": "STRING", "data": "k-1"},
        "value": {"type": "JSON", "data": {"model": "gpt", "tokens": 12}},
        "timestamp": "2026-12-06T10:00:00.000Z",
    }, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["error_code"] == 200 and body["partition_id"] == 1 and body["offset"] == 0, body
    assert body["cluster_id"] == cid and body["topic_name"] == topic
    r = requests.post(url, json={"partition_id": 1, "key": {"type": "BINARY", "data": b64(b"\x00\xff")},
                                 "value": {"type": "BINARY", "data": b64(b"\x01raw\x02")}}, timeout=10)
    assert r.status_code == 200 and r.json()["offset"] == 1, r.text
    got = read(broker, topic, 1, 2)
    assert got[0].key() == b"k-1" and json.loads(got[0].value()) == {"model": "gpt", "tokens": 12}
    assert got[0].headers() == [("traceparent", b"00-abc"), ("nil", None)]
    assert got[0].timestamp()[1] == 1796551200000
    assert (got[1].key(), got[1].value()) == (b"\x00\xff", b"\x01raw\x02")

    # A streamed body: one result per record, in order; a bad one in the
    # middle fails alone.
    stream = "".join(json.dumps(x) for x in [
        {"partition_id": 2, "value": {"type": "STRING", "data": "a"}},
        {"partition_id": 2, "value": {"type": "AVRO", "data": {"x": 1}, "schema_id": 3}},
        {"partition_id": 2, "value": {"type": "STRING", "data": "b"}},
    ])
    r = requests.post(url, data=stream, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    lines = [json.loads(x) for x in r.text.splitlines() if x.strip()]
    assert [x["error_code"] for x in lines] == [200, 400, 200], lines
    assert [lines[0]["offset"], lines[2]["offset"]] == [0, 1]
    assert [m.value() for m in read(broker, topic, 2, 2)] == [b"a", b"b"]

    # Keyed records go where Kafka's murmur2 partitioner puts them.
    p = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2"})
    for key in (b"user-1", b"user-2", b"session-xyz", b"k"):
        r = requests.post(url, json={"key": {"type": "BINARY", "data": b64(key)},
                                     "value": {"type": "STRING", "data": "v"}}, timeout=10)
        assert r.status_code == 200, r.text
        got_partition = []
        p.produce(topic, b"v", key=key, on_delivery=lambda e, m: got_partition.append(m.partition()))
        p.flush(10)
        assert r.json()["partition_id"] == got_partition[0], key

    # Errors.
    bad = requests.post(url.replace(cid, "nope"), json={"value": {"type": "STRING", "data": "x"}}, timeout=10)
    assert bad.status_code == 404 and bad.json()["error_code"] == 404
    bad = requests.post(url.replace(topic, "no-such-topic"), json={"value": {"data": 1}}, timeout=10)
    assert bad.status_code == 404 and "does not exist" in bad.json()["message"]
    bad = requests.post(url, json={"partition_id": 99, "value": {"data": 1}}, timeout=10)
    assert bad.status_code == 404, bad.text
    bad = requests.post(url, data=b"{not json", timeout=10)
    assert bad.status_code == 400 and bad.json()["message"], bad.text


def test_v2_json_and_binary(broker):
    topic, _ = setup(broker, partitions=1)
    url = f"http://127.0.0.1:{broker.http_port}/topics/{topic}"
    r = requests.post(url, json={"records": [{"key": "k", "value": {"a": 1}}, {"value": [1, 2]}]},
                      headers={"Content-Type": "application/vnd.kafka.json.v2+json"}, timeout=10)
    assert r.status_code == 200, r.text
    assert [o["offset"] for o in r.json()["offsets"]] == [0, 1]
    r = requests.post(url, data=json.dumps({"records": [{"value": b64(b"\x00bin")}]}),
                      headers={"Content-Type": "application/vnd.kafka.binary.v2+json"}, timeout=10)
    assert r.status_code == 200 and r.json()["offsets"][0]["offset"] == 2, r.text
    got = read(broker, topic, 0, 3)
    assert [(m.key(), m.value()) for m in got] == [(b'"k"', b'{"a":1}'), (None, b"[1,2]"), (None, b"\x00bin")]
    r = requests.post(url, data="{}", headers={"Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 415 and r.json()["error_code"] == 415
    r = requests.post(url, data=json.dumps({"records": [{"value": "%%%"}]}),
                      headers={"Content-Type": "application/vnd.kafka.binary.v2+json"}, timeout=10)
    assert r.status_code == 422, r.text


def test_contracts_apply(broker):
    subject = f"restc-{uuid.uuid4().hex[:6]}-value"
    r = requests.post(f"http://127.0.0.1:{broker.http_port}/subjects/{subject}/versions", json={
        "schemaType": "JSON",
        "schema": json.dumps({"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}),
    }, timeout=10)
    assert r.status_code == 200, r.text
    topic, cid = setup(broker, partitions=1, **{"sluice.value.format": "json",
                                               "sluice.value.schema.subject": subject})
    url = f"http://127.0.0.1:{broker.http_port}/v3/clusters/{cid}/topics/{topic}/records"
    ok = requests.post(url, json={"value": {"type": "JSON", "data": {"id": "x"}}}, timeout=10)
    assert ok.status_code == 200, ok.text
    bad = requests.post(url, json={"value": {"type": "JSON", "data": {"id": 7}}}, timeout=10)
    assert bad.status_code == 400 and "does not decode" in bad.json()["message"], bad.text
