#!/usr/bin/env python3
"""Cost of produce-time schema validation.

Starts a Sluice broker, installs the AI inference contract through the
registry on the broker's HTTP port, pre-encodes Avro inference events (the
wire format: magic byte 0, 4-byte schema id, Avro body) from
contracts/examples/inference.valid.json, then produces the same events with
librdkafka (acks=all) to two topics:

  plain      no validation;
  validated  confluent.value.schema.validation=true, sluice.validation.mode=content.

Each topic is measured `--rounds` times, alternating; the best round of each
counts. Target (issue 6): validated throughput >= 50% of plain.

`--format json` measures the plain-JSON path instead (issue 19): TensorZero
model-inference records (plain JSON, no schema id) checked against the
contract of contracts/tensorzero/ (`sluice.value.format=json`), same target.

Dependencies: confluent-kafka and fastavro (pip).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import os as _os

# The brokers started here need no OTLP receivers (their default ports would
# collide between brokers); older builds ignore the variables.
_os.environ.setdefault("SLUICE_OTLP_HTTP_LISTEN", "off")
_os.environ.setdefault("SLUICE_OTLP_GRPC_LISTEN", "off")

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.5


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_json(url: str, method: str = "GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/vnd.schemaregistry.v1+json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


class Broker:
    def __init__(self, binary: Path, workdir: Path):
        self.kafka_port, self.http_port = free_port(), free_port()
        self.log = open(workdir / "broker.log", "wb")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--data-dir", str(workdir / "data"),
             "--listen", f"127.0.0.1:{self.kafka_port}",
             "--http-listen", f"127.0.0.1:{self.http_port}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1)
                socket.create_connection(("127.0.0.1", self.kafka_port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"broker exited early, see {workdir / 'broker.log'}")
                time.sleep(0.1)
        raise SystemExit("broker not ready within 30 s")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def install_inference_contract(url: str) -> int:
    env = (REPO / "contracts/avro/envelope.avsc").read_text()
    http_json(f"{url}/subjects/ai.sluice.Envelope/versions", "POST", {"schema": env})
    version = http_json(f"{url}/subjects/ai.sluice.Envelope", "POST", {"schema": env})["version"]
    text = (REPO / "contracts/avro/inference.avsc").read_text()
    body = {"schema": text, "references": [
        {"name": "ai.sluice.Envelope", "subject": "ai.sluice.Envelope", "version": version}]}
    return http_json(f"{url}/subjects/ai.inference-value/versions", "POST", body)["id"]


def encode_events(schema_id: int, n: int) -> list[bytes]:
    import fastavro

    env = json.loads((REPO / "contracts/avro/envelope.avsc").read_text())
    named: dict = {}
    fastavro.parse_schema(env, named_schemas=named)
    schema = fastavro.parse_schema(
        json.loads((REPO / "contracts/avro/inference.avsc").read_text()), named_schemas=named)
    base = json.loads((REPO / "contracts/examples/inference.valid.json").read_text())
    header = b"\x00" + schema_id.to_bytes(4, "big")
    out = []
    for i in range(n):
        ev = dict(base)
        ev["governance"] = dict(base["governance"], event_id=str(uuid.UUID(int=i)),
                                event_time=base["governance"]["event_time"] + i)
        ev["gen_ai_usage_input_tokens"] = 100 + i % 1000
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, ev)
        out.append(header + buf.getvalue())
    return out


def create_topic(bootstrap: str, name: str, partitions: int, config: dict) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(name, partitions, 1, config=config)])[name]
    fut.result(timeout=30)


def produce(bootstrap: str, topic: str, values: list[bytes]) -> tuple[float, int]:
    """Seconds to produce and have acknowledged all values; failed count."""
    from confluent_kafka import Producer

    failed = [0]

    def on_delivery(err, _msg):
        if err is not None:
            failed[0] += 1

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                  "batch.size": 1_000_000, "queue.buffering.max.messages": 2_000_000,
                  "compression.type": "none", "enable.idempotence": False})
    start = time.perf_counter()
    for v in values:
        while True:
            try:
                p.produce(topic, v, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    if p.flush(300) != 0:
        raise SystemExit(f"{topic}: produce did not finish")
    return time.perf_counter() - start, failed[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(REPO / "target/fast/sluice"))
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--format", choices=["avro", "json"], default="avro")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="registry-bench-", dir=REPO / "target"))
    broker = Broker(Path(args.bin), work)
    try:
        if args.format == "json":
            subject = "bench-tensorzero_model_inference-value"
            http_json(f"{broker.url}/subjects/{subject}/versions", "POST", {
                "schemaType": "JSON",
                "schema": (REPO / "contracts/tensorzero/model_inference.json").read_text()})
            values = [json.dumps({
                "id": str(uuid.UUID(int=i)), "inference_id": str(uuid.UUID(int=i + 1)),
                "raw_request": '{"messages":[{"role":"user","content":"summarise the ticket"}]}',
                "raw_response": '{"choices":[{"message":{"content":"The customer asks for a refund."}}]}',
                "input_messages": [{"role": "user", "content": "summarise the ticket"}],
                "output": "The customer asks for a refund.", "model_name": "gpt-4o-mini",
                "model_provider_name": "openai", "input_tokens": 100 + i % 1000, "output_tokens": 20,
                "response_time_ms": 500, "cached": False}).encode() for i in range(args.messages)]
            size = sum(len(v) for v in values) / len(values)
            print(f"{args.messages} plain-JSON TensorZero model inference records of {size:.0f} bytes")
            configs = {
                "plain": {},
                "validated": {"sluice.value.format": "json", "sluice.value.schema.subject": subject},
            }
        else:
            schema_id = install_inference_contract(broker.url)
            values = encode_events(schema_id, args.messages)
            size = sum(len(v) for v in values) / len(values)
            print(f"schema id {schema_id}; {args.messages} Avro inference events of {size:.0f} bytes")
            configs = {
                "plain": {},
                "validated": {"confluent.value.schema.validation": "true", "sluice.validation.mode": "content"},
            }
        best: dict[str, float] = {}
        for r in range(args.rounds):
            for name, cfg in configs.items():
                topic = f"bench-{name}-{r}"
                create_topic(broker.bootstrap, topic, args.partitions, cfg)
                if name == "validated" and args.format == "avro":
                    http_json(f"{broker.url}/subjects/{topic}-value/versions", "POST", {
                        "schema": (REPO / "contracts/avro/inference.avsc").read_text(),
                        "references": [{"name": "ai.sluice.Envelope", "subject": "ai.sluice.Envelope", "version": 1}],
                    })
                secs, failed = produce(broker.bootstrap, topic, values)
                if failed:
                    raise SystemExit(f"{topic}: {failed} records refused")
                rate = args.messages / secs
                best[name] = max(best.get(name, 0.0), rate)
                print(f"round {r} {name:>9}: {rate:,.0f} records/s, {rate * size / 1e6:.1f} MB/s")
        ratio = best["validated"] / best["plain"]
        status = "PASS" if ratio >= TARGET_RATIO else "MISS"
        print(f"validated/plain = {ratio:.2f} (target >= {TARGET_RATIO}) {status}")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "messages": args.messages, "record_bytes": size, "plain_rps": best["plain"],
                "validated_rps": best["validated"], "ratio": ratio, "status": status}, indent=2))
        return 0 if status == "PASS" else 1
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
