#!/usr/bin/env python3
"""OTLP ingest against Kafka produce of the same bytes (issue 19, must-show 5).

Starts one Sluice broker with its OTLP receivers and pre-builds export
requests of GenAI spans (an agent run per trace: a chat span, a tool call,
a plain span, with realistic attributes; `--spans-per-request` spans per
request, several traces each). Then, in alternating rounds:

  http   OTLP/HTTP protobuf POSTs (keep-alive, `--senders` threads);
  grpc   OTLP/gRPC Export calls (`--senders` threads);
  kafka  confluent-kafka (acks=all) producing exactly the records the OTLP
         path writes to otlp_spans (one record per trace, keyed by its trace
         id) to a plain topic: the same bytes through the Kafka protocol.

For each it reports spans per second and the broker's CPU time per span
(utime+stime from /proc/PID/stat, so the senders' own cost is not in it)
and the ratios of the OTLP paths to Kafka. `--genai` keeps the GenAI
mapping on (its events are extra writes to ai.inference and ai.tool_call;
off by default, so the comparison is like for like). The senders are Python
on the same two cores: spans/s is bounded by them, the CPU per span is the
broker's own figure.

    python3 bench/otlp_bench.py [--requests 300] [--spans-per-request 60] [--rounds 3] [--json FILE]

Dependencies: confluent-kafka, opentelemetry-proto, grpcio (pip).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kv(span_or_res, key, value):
    a = span_or_res.attributes.add()
    a.key = key
    if isinstance(value, bool):
        a.value.bool_value = value
    elif isinstance(value, int):
        a.value.int_value = value
    elif isinstance(value, float):
        a.value.double_value = value
    else:
        a.value.string_value = value


def build_requests(n: int, spans_per_request: int, seed: int = 19) -> list:
    """Export requests of agent runs (3 spans per trace)."""
    import random

    rng = random.Random(seed)
    out = []
    for r in range(n):
        req = trace_service_pb2.ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        for k, v in [("service.name", "agent-gateway"), ("service.version", "2.3.1"),
                     ("tenant.id", f"tenant-{r % 7}"), ("data.classification", "confidential"),
                     ("deployment.environment", "prod")]:
            kv(rs.resource, k, v)
        ss = rs.scope_spans.add()
        ss.scope.name = "opentelemetry.instrumentation.openai"
        t0 = 1_767_225_600_000_000_000 + r * 1_000_000_000
        for t in range(max(1, spans_per_request // 3)):
            trace_id = rng.randbytes(16)
            for kind in ("chat", "execute_tool", "plain"):
                s = ss.spans.add()
                s.trace_id, s.span_id = trace_id, rng.randbytes(8)
                s.start_time_unix_nano = t0 + t * 1000
                s.end_time_unix_nano = s.start_time_unix_nano + rng.randint(50, 4000) * 1_000_000
                s.kind = 3
                if kind == "chat":
                    s.name = "chat gpt-4o"
                    for k, v in [("gen_ai.operation.name", "chat"), ("gen_ai.provider.name", "openai"),
                                 ("gen_ai.request.model", "gpt-4o"), ("gen_ai.response.model", "gpt-4o-2024-08-06"),
                                 ("gen_ai.request.temperature", 0.2), ("gen_ai.request.max_tokens", 1024),
                                 ("gen_ai.usage.input_tokens", rng.randint(100, 4000)),
                                 ("gen_ai.usage.output_tokens", rng.randint(10, 800)),
                                 ("gen_ai.response.id", f"chatcmpl-{rng.getrandbits(48):x}"),
                                 ("gen_ai.conversation.id", f"conv-{rng.getrandbits(32):x}")]:
                        kv(s, k, v)
                elif kind == "execute_tool":
                    s.name = "execute_tool web_search"
                    for k, v in [("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", "web_search"),
                                 ("gen_ai.tool.call.id", f"call_{rng.getrandbits(40):x}"),
                                 ("gen_ai.tool.type", "function")]:
                        kv(s, k, v)
                else:
                    s.name = "retrieve documents"
                    kv(s, "db.system", "pgvector")
                    kv(s, "db.query.text", "SELECT id FROM docs ORDER BY embedding <-> $1 LIMIT 8")
        out.append(req)
    return out


def per_trace_records(req) -> list:
    """(key, value) per trace, as the broker writes them to otlp_spans."""
    by = {}
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                by.setdefault(s.trace_id, []).append((rs, ss, s))
    recs = []
    for tid, items in by.items():
        r = trace_service_pb2.ExportTraceServiceRequest()
        rs_out = r.resource_spans.add()
        rs_out.resource.CopyFrom(items[0][0].resource)
        ss_out = rs_out.scope_spans.add()
        ss_out.scope.CopyFrom(items[0][1].scope)
        for _, _, s in items:
            ss_out.spans.add().CopyFrom(s)
        recs.append((tid.hex().encode(), r.SerializeToString()))
    return recs


class Broker:
    def __init__(self, binary: Path, genai: bool):
        self.dir = Path(tempfile.mkdtemp(prefix="sluice-otlp-bench-"))
        self.kafka, self.http, self.otlp_http, self.otlp_grpc = (free_port() for _ in range(4))
        argv = [str(binary), "serve", "--data-dir", str(self.dir / "data"),
                "--listen", f"127.0.0.1:{self.kafka}", "--http-listen", f"127.0.0.1:{self.http}",
                "--otlp-http-listen", f"127.0.0.1:{self.otlp_http}",
                "--otlp-grpc-listen", f"127.0.0.1:{self.otlp_grpc}", "--num-partitions", "3"]
        if not genai:
            argv += ["--otlp-genai-inference-topic", "off"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        self.log = open(self.dir / "broker.log", "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"broker not ready; log in {self.dir}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_http(b: Broker, bodies: list, senders: int) -> None:
    chunks = [bodies[i::senders] for i in range(senders)]
    errors = []

    def send(chunk):
        c = http.client.HTTPConnection("127.0.0.1", b.otlp_http, timeout=60)
        for body in chunk:
            c.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                errors.append(r.status)
        c.close()

    ts = [threading.Thread(target=send, args=(ch,)) for ch in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:5]


def run_grpc(b: Broker, reqs: list, senders: int) -> None:
    chunks = [reqs[i::senders] for i in range(senders)]

    def send(chunk):
        with grpc.insecure_channel(f"127.0.0.1:{b.otlp_grpc}",
                                   options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
            stub = trace_service_pb2_grpc.TraceServiceStub(ch)
            for r in chunk:
                stub.Export(r, timeout=60)

    ts = [threading.Thread(target=send, args=(ch,)) for ch in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def run_kafka(b: Broker, records: list, topic: str) -> None:
    p = Producer({"bootstrap.servers": f"127.0.0.1:{b.kafka}", "acks": "all", "linger.ms": 5,
                  "broker.address.family": "v4", "queue.buffering.max.kbytes": 1 << 20})
    failed = []

    def done(err, _msg):
        if err is not None:
            failed.append(err)

    for key, value in records:
        while True:
            try:
                p.produce(topic, value=value, key=key, on_delivery=done)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    assert p.flush(120) == 0 and not failed, failed[:3]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(REPO / "target" / "fast" / "sluice"))
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--spans-per-request", type=int, default=60)
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--genai", action="store_true", help="keep the GenAI mapping on")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()

    reqs = build_requests(a.requests, a.spans_per_request)
    bodies = [r.SerializeToString() for r in reqs]
    records = [rec for r in reqs for rec in per_trace_records(r)]
    spans = sum(len(ss.spans) for r in reqs for rs in r.resource_spans for ss in rs.scope_spans)
    mib = sum(len(v) for _, v in records) / 2**20
    print(f"{a.requests} export requests, {spans} spans, {len(records)} per-trace records, "
          f"{mib:.1f} MiB as records; {a.senders} senders; GenAI mapping {'on' if a.genai else 'off'}")

    b = Broker(Path(a.binary), a.genai)
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{b.kafka}"})
    for f in admin.create_topics([NewTopic("kafka_spans", 3, 1)]).values():
        f.result(30)
    # Warm-up: topics created, connections made.
    run_http(b, bodies[:5], 1)
    run_grpc(b, reqs[:5], 1)
    run_kafka(b, records[:50], "kafka_spans")
    results = {"http": [], "grpc": [], "kafka": []}
    try:
        for rnd in range(a.rounds):
            for path in ("http", "grpc", "kafka"):
                c0, t0 = cpu_seconds(b.proc.pid), time.monotonic()
                if path == "http":
                    run_http(b, bodies, a.senders)
                elif path == "grpc":
                    run_grpc(b, reqs, a.senders)
                else:
                    run_kafka(b, records, "kafka_spans")
                wall, cpu = time.monotonic() - t0, cpu_seconds(b.proc.pid) - c0
                results[path].append({"spans_per_s": spans / wall, "broker_cpu_us_per_span": cpu / spans * 1e6,
                                      "wall_s": wall})
                print(f"round {rnd + 1} {path:5s}: {spans / wall:9.0f} spans/s, "
                      f"broker {cpu / spans * 1e6:6.2f} CPU-us/span ({wall:.2f} s)")
    finally:
        b.stop()

    med = {p: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for p, rs in results.items()}
    print("\npath   spans/s (median)  broker CPU-us/span  vs kafka (rate, CPU)")
    for p in ("http", "grpc", "kafka"):
        m = med[p]
        print(f"{p:5s}  {m['spans_per_s']:15.0f}  {m['broker_cpu_us_per_span']:18.2f}  "
              f"{m['spans_per_s'] / med['kafka']['spans_per_s']:.2f}x, "
              f"{m['broker_cpu_us_per_span'] / max(med['kafka']['broker_cpu_us_per_span'], 1e-9):.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "spans": spans, "median": med,
                                            "rounds": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
