"""OTLP ingest (issue 19), with the OpenTelemetry Python SDK's own exporters.

* OTLP/HTTP (protobuf): GenAI spans (a chat inference, a tool call under an
  agent invocation, a plain span) across several traces. `otlp_spans` holds
  one record per trace keyed by its trace id in hex (the Collector Kafka
  exporter's `partition_traces_by_id`), each decoding with
  `opentelemetry-proto` into exactly the spans sent (names, ids,
  attributes, resource), a trace's records on one partition. The GenAI spans
  also appear on `ai.inference` / `ai.tool_call` as events valid against
  the shipped JSON contracts, with their spans' trace and span ids, the
  tenant and classification from the resource, and unmapped attributes kept
  in `attributes`; `invoke_agent` and plain spans make no event.
* OTLP/gRPC with gzip: spans and logs; OTLP/HTTP: metrics. The log record
  and the counter come back from `otlp_logs` / `otlp_metrics`.
* `--otlp-encoding otlp_json`: the stored values are OTLP/JSON (hex ids,
  camelCase).
* Bad input: a body that is not protobuf (400 with a google.rpc.Status), a
  JSON body that is not an export request (400), another content type (415),
  a body past `--otlp-max-body-bytes` (413), gzip that does not inflate
  (400), a GenAI span its contract refuses (200 with partial_success naming
  the field; the span itself stored); with auto-create off, a missing topic
  is 404. The broker keeps serving.
* A burst past `--otlp-max-inflight-bytes`: 200 or 429 with Retry-After,
  accepted requests stored whole, refused ones not at all.
* With the authorizer on, OTLP/HTTP and OTLP/gRPC senders need a user's
  Basic credentials (401 / UNAUTHENTICATED) and Write on the topics
  (403 / PERMISSION_DENIED).
"""

from __future__ import annotations

import gzip
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jsonschema
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from helpers import consume_all
from sluice_proc import free_port

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts" / "json"
PARTS = 3

pytestmark = pytest.mark.e2e_timeout(120)


def otlp_broker(broker_factory, name="otlp", extra=()):
    http, grpc = free_port(), free_port()
    b = broker_factory(
        name,
        settings={"otlp_http_listen": f"127.0.0.1:{http}", "otlp_grpc_listen": f"127.0.0.1:{grpc}"},
        extra_args=["--num-partitions", str(PARTS), *extra],
    )
    b.otlp_http, b.otlp_grpc = http, grpc
    return b


def resource(service: str) -> Resource:
    return Resource.create({
        "service.name": service,
        "service.version": "1.2.3",
        "tenant.id": "acme",
        "data.classification": "confidential",
    })


def make_genai_traces(tracer, n_traces: int) -> dict:
    """n agent runs, each: invoke_agent > chat + execute_tool, plus a plain
    span. Returns {span_id hex: (trace_id hex, name, attributes)}."""
    sent = {}

    def note(span, attrs):
        ctx = span.get_span_context()
        sent[f"{ctx.span_id:016x}"] = (f"{ctx.trace_id:032x}", span.name, attrs)

    for i in range(n_traces):
        agent_attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}
        with tracer.start_as_current_span("invoke_agent planner", attributes=agent_attrs) as agent:
            note(agent, agent_attrs)
            chat_attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.usage.input_tokens": 100 + i,
                "gen_ai.usage.output_tokens": 20 + i,
                "gen_ai.response.finish_reasons": ["stop"],
                "app.experiment": f"exp-{i}",
            }
            with tracer.start_as_current_span("chat gpt-4o", attributes=chat_attrs) as chat:
                note(chat, chat_attrs)
            tool_attrs = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "web_search",
                "gen_ai.tool.call.id": f"call-{i}",
                "gen_ai.tool.type": "function",
            }
            with tracer.start_as_current_span("execute_tool web_search", attributes=tool_attrs) as tool:
                note(tool, tool_attrs)
                if i % 2:
                    tool.set_status(Status(StatusCode.ERROR, "rate limited"))
            with tracer.start_as_current_span("plain work", attributes={"k": i}) as plain:
                note(plain, {"k": i})
    return sent


def pb_value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [pb_value(x) for x in v.array_value.values]
    return getattr(v, kind)


def stored_spans(bootstrap: str, topic: str, expected_records=None) -> tuple:
    recs = consume_all(bootstrap, topic, range(PARTS), expected=expected_records, timeout=60)
    spans, by_key = {}, {}
    for r in recs:
        req = trace_service_pb2.ExportTraceServiceRequest.FromString(r.value)
        traces = set()
        for rs in req.resource_spans:
            res = {kv.key: pb_value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    traces.add(s.trace_id.hex())
                    spans[s.span_id.hex()] = (s.trace_id.hex(), s.name,
                                              {kv.key: pb_value(kv.value) for kv in s.attributes}, res)
        assert len(traces) == 1, f"one record holds spans of {len(traces)} traces"
        trace = traces.pop()
        assert r.key == trace.encode(), f"record key {r.key!r} is not its trace id {trace}"
        by_key.setdefault(trace, set()).add(r.partition)
    return spans, by_key


def events(bootstrap: str, topic: str, expected: int) -> list:
    recs = consume_all(bootstrap, topic, range(PARTS), expected=expected, timeout=60)
    return [json.loads(r.value) for r in recs]


def test_genai_spans_over_http(broker_factory):
    b = otlp_broker(broker_factory)
    provider = TracerProvider(resource=resource("agent-svc"))
    provider.add_span_processor(SimpleSpanProcessor(
        HttpSpanExporter(endpoint=f"http://127.0.0.1:{b.otlp_http}/v1/traces", timeout=10)))
    sent = make_genai_traces(provider.get_tracer("e2e"), 6)
    assert provider.force_flush(20_000)
    provider.shutdown()

    # SimpleSpanProcessor exports span by span: one record per span.
    spans, by_key = stored_spans(b.bootstrap, "otlp_spans", expected_records=len(sent))
    assert set(spans) == set(sent), (len(spans), len(sent))
    for sid, (trace, name, attrs) in sent.items():
        got_trace, got_name, got_attrs, res = spans[sid]
        assert (got_trace, got_name) == (trace, name)
        assert got_attrs == {k: (list(v) if isinstance(v, list) else v) for k, v in attrs.items()}, (
            got_attrs, attrs)
        assert res["service.name"] == "agent-svc" and res["tenant.id"] == "acme"
    assert len(by_key) == 6 and all(len(p) == 1 for p in by_key.values()), (
        f"a trace's records on several partitions: {by_key}")

    inference = json.loads((CONTRACTS / "inference.json").read_text())
    tool_call = json.loads((CONTRACTS / "tool_call.json").read_text())
    inf = events(b.bootstrap, "ai.inference", 6)
    tools = events(b.bootstrap, "ai.tool_call", 6)
    assert len(inf) == 6 and len(tools) == 6, (len(inf), len(tools))
    chats = {sid: v for sid, v in sent.items() if v[2].get("gen_ai.operation.name") == "chat"}
    for e in inf:
        jsonschema.validate(e, inference)
        g = e["governance"]
        trace, _, attrs = chats[g["span_id"]]
        assert g["trace_id"] == trace
        assert (g["tenant_id"], g["classification"]) == ("acme", "CONFIDENTIAL")
        # The SDK adds service.instance.id to its resources itself.
        res = spans[g["span_id"]][3]
        assert g["producer"] == {"service": "agent-svc", "instance": res.get("service.instance.id"),
                                 "version": "1.2.3"}, g["producer"]
        assert e["gen_ai_usage_input_tokens"] == attrs["gen_ai.usage.input_tokens"]
        assert e["gen_ai_request_model"] == "gpt-4o" and e["gen_ai_response_finish_reasons"] == ["stop"]
        assert e["attributes"] == {"app.experiment": attrs["app.experiment"]}
    tool_spans = {sid: v for sid, v in sent.items() if v[2].get("gen_ai.operation.name") == "execute_tool"}
    statuses = set()
    for e in tools:
        jsonschema.validate(e, tool_call)
        trace, _, attrs = tool_spans[e["governance"]["span_id"]]
        assert e["governance"]["trace_id"] == trace
        assert e["gen_ai_tool_call_id"] == attrs["gen_ai.tool.call.id"]
        statuses.add(e["status"])
    assert statuses == {"OK", "ERROR"}, statuses


def test_grpc_gzip_spans_and_logs_and_http_metrics(broker_factory):
    b = otlp_broker(broker_factory)
    provider = TracerProvider(resource=resource("grpc-svc"))
    provider.add_span_processor(SimpleSpanProcessor(GrpcSpanExporter(
        endpoint=f"127.0.0.1:{b.otlp_grpc}", insecure=True, compression=__import__("grpc").Compression.Gzip,
        timeout=10)))
    sent = make_genai_traces(provider.get_tracer("e2e-grpc"), 2)
    assert provider.force_flush(20_000)
    provider.shutdown()
    spans, _ = stored_spans(b.bootstrap, "otlp_spans", expected_records=len(sent))
    assert set(spans) == set(sent)
    assert len(events(b.bootstrap, "ai.inference", 2)) == 2

    lp = LoggerProvider(resource=resource("grpc-svc"))
    lp.add_log_record_processor(SimpleLogRecordProcessor(
        GrpcLogExporter(endpoint=f"127.0.0.1:{b.otlp_grpc}", insecure=True, timeout=10)))
    log = logging.getLogger(f"otlp-e2e-{uuid.uuid4().hex[:6]}")
    log.propagate = False
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))
    log.warning("guardrail blocked a prompt for tenant %s", "acme")
    assert lp.force_flush(20_000)
    lp.shutdown()
    recs = consume_all(b.bootstrap, "otlp_logs", range(PARTS), expected=1, timeout=60)
    bodies = [lr.body.string_value
              for r in recs
              for rl in logs_service_pb2.ExportLogsServiceRequest.FromString(r.value).resource_logs
              for sl in rl.scope_logs for lr in sl.log_records]
    assert bodies == ["guardrail blocked a prompt for tenant acme"], bodies

    reader = PeriodicExportingMetricReader(
        HttpMetricExporter(endpoint=f"http://127.0.0.1:{b.otlp_http}/v1/metrics", timeout=10),
        export_interval_millis=600_000)
    mp = MeterProvider(resource=resource("grpc-svc"), metric_readers=[reader])
    mp.get_meter("e2e").create_counter("gen_ai.client.token.usage.total").add(42, {"gen_ai.token.type": "input"})
    assert mp.force_flush(20_000)
    mp.shutdown()
    recs = consume_all(b.bootstrap, "otlp_metrics", range(PARTS), expected=1, timeout=60)
    points = [(m.name, dp.as_int)
              for r in recs
              for rm in metrics_service_pb2.ExportMetricsServiceRequest.FromString(r.value).resource_metrics
              for sm in rm.scope_metrics for m in sm.metrics for dp in m.sum.data_points]
    assert ("gen_ai.client.token.usage.total", 42) in points, points


def post(url: str, body: bytes, content_type: str, encoding=None):
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def one_span_request(tenant=True, op="execute_tool", tool_call_id=True) -> bytes:
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    if tenant:
        for k, v in [("tenant.id", "acme"), ("data.classification", "internal")]:
            a = rs.resource.attributes.add()
            a.key, a.value.string_value = k, v
    s = rs.scope_spans.add().spans.add()
    s.trace_id, s.span_id, s.name = bytes(range(16)), bytes(range(8)), "tool"
    for k, v in [("gen_ai.operation.name", op), ("gen_ai.tool.name", "search")] + (
            [("gen_ai.tool.call.id", "c1")] if tool_call_id else []):
        a = s.attributes.add()
        a.key, a.value.string_value = k, v
    return req.SerializeToString()


def test_otlp_json_encoding_and_bad_input(broker_factory):
    b = otlp_broker(broker_factory, extra=["--otlp-encoding", "otlp_json", "--otlp-max-body-bytes", "4096"])
    url = f"http://127.0.0.1:{b.otlp_http}/v1/traces"

    status, ct, body = post(url, one_span_request(), "application/x-protobuf")
    assert status == 200 and ct == "application/x-protobuf", (status, ct, body)
    ok = trace_service_pb2.ExportTraceServiceResponse.FromString(body)
    assert not ok.HasField("partial_success"), ok
    rec = consume_all(b.bootstrap, "otlp_spans", range(PARTS), expected=1, timeout=60)[0]
    stored = json.loads(rec.value)
    span = stored["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == bytes(range(16)).hex() and span["spanId"] == bytes(range(8)).hex(), span

    # Not protobuf: 400 with a google.rpc.Status (protobuf, like the request).
    status, ct, body = post(url, b"\xff\xff\xff garbage", "application/x-protobuf")
    assert status == 400 and ct == "application/x-protobuf", (status, ct)
    from google.rpc import status_pb2
    st = status_pb2.Status.FromString(body)
    assert st.code == 3 and "protobuf" in st.message, st
    status, ct, body = post(url, b'{"resourceSpans": 5}', "application/json")
    assert status == 400 and json.loads(body)["code"] == 3, (status, body)
    status, _, body = post(url, b"x", "text/plain")
    assert status == 415 and b"content type" in body, (status, body)
    status, _, body = post(url, b"\x00" * 8192, "application/x-protobuf")
    assert status == 413, (status, body)
    status, _, body = post(url, b"not gzip at all", "application/x-protobuf", encoding="gzip")
    assert status == 400 and b"gzip" in body, (status, body)
    big = gzip.compress(b"\x00" * 100_000)
    status, _, body = post(url, big, "application/x-protobuf", encoding="gzip")
    assert status == 413, (status, body)

    # A GenAI span its contract refuses: stored on otlp_spans, the event
    # refused, the sender told in partial_success.
    status, _, body = post(url, one_span_request(tool_call_id=False), "application/x-protobuf")
    assert status == 200, (status, body)
    resp = trace_service_pb2.ExportTraceServiceResponse.FromString(body)
    assert resp.partial_success.rejected_spans == 0
    assert "gen_ai_tool_call_id" in resp.partial_success.error_message, resp
    assert len(consume_all(b.bootstrap, "otlp_spans", range(PARTS), expected=2, timeout=60)) == 2
    assert len(consume_all(b.bootstrap, "ai.tool_call", range(PARTS), expected=1, timeout=60)) == 1
    b.assert_alive("after bad OTLP input")


def test_missing_topic_without_auto_create(broker_factory):
    b = otlp_broker(broker_factory, extra=["--auto-create-topics-enable", "false"])
    status, ct, body = post(f"http://127.0.0.1:{b.otlp_http}/v1/traces", one_span_request(),
                            "application/x-protobuf")
    assert status == 404, (status, body)
    from google.rpc import status_pb2
    assert "otlp_spans" in status_pb2.Status.FromString(body).message
    # gRPC answers NOT_FOUND, which OTLP exporters do not retry.
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
    with grpc.insecure_channel(f"127.0.0.1:{b.otlp_grpc}") as ch:
        stub = trace_service_pb2_grpc.TraceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.Export(trace_service_pb2.ExportTraceServiceRequest.FromString(one_span_request()), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value
    time.sleep(0.2)
    b.assert_alive("after refused exports")


def test_otlp_under_http_auth(broker_factory, sluice_bin):
    """With --authorizer acl (and so --http-auth basic), OTLP senders need a
    Sluice user's Basic credentials (401 / UNAUTHENTICATED without) and Write
    on the topics (403 / PERMISSION_DENIED without)."""
    import base64

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    from test_http_auth import USERS, add_acl, sluice

    http, grpc_port = free_port(), free_port()
    b = broker_factory("otlp-auth", start=False)
    for flag in ("--otlp-http-listen", "--otlp-grpc-listen"):
        i = b.argv.index(flag)
        del b.argv[i:i + 2]
    for user, password in USERS.items():
        sluice(sluice_bin, "users", "--data-dir", str(b.data_dir), "add", user, "--password", password)
    add_acl(sluice_bin, b.data_dir, "--allow-principal", "User:alice", "--operation", "Write",
            "--topic", "otlp_spans")
    add_acl(sluice_bin, b.data_dir, "--allow-principal", "User:alice", "--operation", "Write",
            "--topic", "ai.", "--resource-pattern-type", "prefixed")
    b.argv += ["--otlp-http-listen", f"127.0.0.1:{http}", "--otlp-grpc-listen", f"127.0.0.1:{grpc_port}",
               "--authorizer", "acl", "--super-users", "User:admin"]
    b.start()

    url = f"http://127.0.0.1:{http}/v1/traces"

    def basic(user):
        return "Basic " + base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()

    def send(user=None):
        headers = {"Content-Type": "application/x-protobuf"}
        if user:
            headers["Authorization"] = basic(user)
        req = urllib.request.Request(url, data=one_span_request(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    assert send()[0] == 401
    status, body = send("bob")
    assert status == 403 and b"otlp_spans" in body, (status, body)
    status, body = send("alice")
    assert status == 200, (status, body)
    assert not trace_service_pb2.ExportTraceServiceResponse.FromString(body).HasField("partial_success")

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
        stub = trace_service_pb2_grpc.TraceServiceStub(ch)
        req = trace_service_pb2.ExportTraceServiceRequest.FromString(one_span_request())
        with pytest.raises(grpc.RpcError) as e:
            stub.Export(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, e.value
        with pytest.raises(grpc.RpcError) as e:
            stub.Export(req, timeout=10, metadata=[("authorization", basic("bob"))])
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value
        stub.Export(req, timeout=10, metadata=[("authorization", basic("alice"))])


def test_busy_receiver_answers_429(broker_factory):
    """Bounded memory under a burst: with room for one ~900 KiB request in
    flight, twelve senders at once get 200 or 429 with Retry-After (the
    OTLP exporters retry those), every accepted request is stored whole
    and nothing of a refused one is."""
    import threading

    b = otlp_broker(broker_factory, extra=["--otlp-max-body-bytes", str(1 << 20),
                                           "--otlp-max-inflight-bytes", str(1 << 20)])
    url = f"http://127.0.0.1:{b.otlp_http}/v1/traces"

    def body(n: int) -> bytes:
        req = trace_service_pb2.ExportTraceServiceRequest()
        ss = req.resource_spans.add().scope_spans.add()
        for j in range(900):
            s = ss.spans.add()
            s.trace_id, s.span_id, s.name = n.to_bytes(16, "big"), (j + 1).to_bytes(8, "big"), "big"
            a = s.attributes.add()
            a.key, a.value.string_value = "payload", "x" * 1000
        return req.SerializeToString()

    results, lock = [], threading.Lock()

    def sender(k: int):
        for r in range(4):
            n = k * 100 + r
            req = urllib.request.Request(url, data=body(n), method="POST",
                                         headers={"Content-Type": "application/x-protobuf"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    out = (n, resp.status, None)
            except urllib.error.HTTPError as e:
                out = (n, e.code, e.headers.get("Retry-After"))
            with lock:
                results.append(out)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = [s for _, s, _ in results]
    assert len(results) == 48 and set(statuses) <= {200, 429}, statuses
    busy = [r for r in results if r[1] == 429]
    assert busy and all(r[2] == "1" for r in busy), f"no 429 with Retry-After among {statuses}"
    accepted = {n for n, s, _ in results if s == 200}
    assert accepted, statuses
    recs = consume_all(b.bootstrap, "otlp_spans", range(PARTS), expected=len(accepted), timeout=60)
    stored = {int.from_bytes(bytes.fromhex(r.key.decode()), "big") for r in recs}
    assert len(recs) == len(accepted) and stored == accepted, (len(recs), len(accepted))
    for r in recs:
        req = trace_service_pb2.ExportTraceServiceRequest.FromString(r.value)
        assert len(req.resource_spans[0].scope_spans[0].spans) == 900
    b.assert_alive("after a burst of large OTLP requests")
