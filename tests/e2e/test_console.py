"""The web console (issue 20) in a real headless Chromium (Debian's
`chromium`, driven by Python Playwright with that executable: Playwright
never downloads a browser here).

* Every page (overview, topics, a topic, groups, a group, dead letters, a
  dead-letter topic, schemas, a subject) loads with no console error and
  no page error, has one <h1>, labels on its inputs, and keyboard focus
  reaches the navigation; screenshots of each land in
  target/test-artifacts/console/.
* Message browser: Avro records produced with confluent-kafka's
  AvroSerializer (and JSON Schema and Protobuf ones with its JSONSerializer
  and ProtobufSerializer) against the
  broker's registry show their decoded field values, a header and the
  trace id of their `traceparent`, searched by offset and by time.
* A lagging group shows the lag and lag seconds that /metrics has
  (kafka_consumergroup_lag / kafka_consumergroup_lag_seconds).
* An offset reset through the page: the preview changes nothing, the
  confirmation applies it (checked with the admin API).
* A DLQ replay through the page: the dry run produces nothing, the
  confirmation lands the records on the target topic (read back with a
  consumer).
* With --http-auth basic: /, /ui/ and the assets are 401 with a Basic
  challenge without credentials; with them the console works. Under the
  ACL authorizer the message browser needs Read on the topic (403, shown
  in the page, for a user who may only Describe it).
* Schemas: a diff between two versions and a compatibility check of pasted
  text.

In the cluster pass (SLUICE_E2E_CLUSTER=3) the pages run against a
three-broker cluster: a group's page on a broker that does not coordinate
it names the coordinator and refuses a reset there; lag is compared with
the coordinator's /metrics.

Needs: chromium (Debian), playwright (pip); scripts/install-test-deps.sh
installs both. A missing one fails the tests, never skips them.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Producer

from helpers import base_conf, consume_all, create_topic
from sluice_proc import REPO_ROOT
from test_observability import Committer, get_json, scrape

try:  # a missing Playwright must fail the tests, not skip them
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
except ImportError as e:  # pragma: no cover - reported by the fixture
    sync_playwright = None
    PlaywrightError = Exception
    _PW_IMPORT_ERROR = e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "target" / "test-artifacts" / "console"
WAIT_MS = 15_000  # every wait in the browser is bounded by this
HTTP_TIMEOUT = 10.0
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

pytestmark = pytest.mark.e2e_timeout(180)

AVRO_INFERENCE = json.dumps({
    "type": "record", "name": "Inference", "namespace": "e2e.console",
    "fields": [
        {"name": "model", "type": "string"},
        {"name": "input_tokens", "type": "long"},
        {"name": "tool", "type": ["null", "string"], "default": None},
    ],
})
JSON_FEEDBACK = json.dumps({
    "type": "object", "title": "Feedback",
    "properties": {"rating": {"type": "integer"}, "comment": {"type": "string"}},
    "required": ["rating"],
})


# ---------------------------------------------------------------------------
# Browser
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    if sync_playwright is None:
        pytest.fail(f"playwright is not importable ({_PW_IMPORT_ERROR}); run scripts/install-test-deps.sh",
                    pytrace=False)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (Debian package chromium); run scripts/install-test-deps.sh",
                    pytrace=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        yield browser
        browser.close()
    finally:
        pw.stop()


class Tab:
    """A page in a fresh context (1366x768) that records console errors and
    page errors."""

    def __init__(self, browser, base: str, credentials=None):
        kw = {"viewport": {"width": 1366, "height": 768}}
        if credentials:
            kw["http_credentials"] = {"username": credentials[0], "password": credentials[1]}
        self.ctx = browser.new_context(**kw)
        self.ctx.set_default_timeout(WAIT_MS)
        self.page = self.ctx.new_page()
        self.base = base
        self.errors: list = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text} at {m.location}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def open(self, path: str, heading: str):
        resp = self.page.goto(self.base + path, wait_until="load", timeout=WAIT_MS)
        assert resp is not None and resp.status == 200, f"GET {path}: {resp and resp.status}"
        self.page.wait_for_selector(f"h1:has-text({json.dumps(heading)})", timeout=WAIT_MS)
        return resp

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def no_errors(self, where: str) -> None:
        assert not self.errors, f"{where}: errors in the browser:\n" + "\n".join(self.errors)

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture
def tab_factory(chromium):
    tabs = []

    def make(broker, credentials=None) -> Tab:
        t = Tab(chromium, f"http://127.0.0.1:{broker.http_port}", credentials)
        tabs.append(t)
        return t

    yield make
    for t in tabs:
        t.close()


# ---------------------------------------------------------------------------
# Data helpers
# ---------------------------------------------------------------------------


def http(broker, method: str, path: str, body=None, auth=None):
    """(status, headers, parsed JSON or text) of a request to the HTTP side."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{broker.http_port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth:
        import base64

        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:
            status, headers, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, headers, json.loads(text)
    except ValueError:
        return status, headers, text


def produce(bootstrap: str, topic: str, records, partition: int = 0) -> None:
    """records: (key, value, headers, timestamp_ms or None)."""
    p = Producer({**base_conf(bootstrap), "linger.ms": 0})
    errors = []
    for key, value, headers, ts in records:
        kw = {"timestamp": ts} if ts else {}
        p.produce(topic, key=key, value=value, headers=headers or [], partition=partition,
                  on_delivery=lambda err, msg: err and errors.append(err), **kw)
    left = p.flush(20)
    assert left == 0 and not errors, f"produce to {topic}: {left} undelivered, errors {errors}"


def registry_client(broker):
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient({"url": f"http://127.0.0.1:{broker.http_port}", "timeout": HTTP_TIMEOUT})


def protobuf_tool_call(sr, topic: str, tool: str, latency_ms: int) -> bytes:
    """A ToolCall value in Confluent's Protobuf wire format, serialized by
    confluent-kafka's ProtobufSerializer (which registers its schema)."""
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="e2e_console_tool.proto", package="e2e.console", syntax="proto3")
    m = fdp.message_type.add(name="ToolCall")
    F = descriptor_pb2.FieldDescriptorProto
    m.field.add(name="tool_name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    m.field.add(name="latency_ms", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("e2e.console.ToolCall"))
    ser = ProtobufSerializer(cls, sr, {"use.deprecated.format": False})
    return ser(cls(tool_name=tool, latency_ms=latency_ms), SerializationContext(topic, MessageField.VALUE))


def coordinator_and_others(broker, group: str):
    """(the broker coordinating `group`, the other brokers). Alone, the
    broker itself; for the cluster stand-in (SLUICE_E2E_CLUSTER), the member
    whose admin API says it coordinates the group: its /metrics carries the
    group's lag, and offsets are reset through it."""
    members = getattr(broker, "brokers", None)
    if not members:
        return broker, []
    home = [b for b in members if get_json(b, f"/v1/groups/{group}")["coordinator"]["this"]]
    assert len(home) == 1, f"{len(home)} brokers say they coordinate {group}"
    return home[0], [b for b in members if b is not home[0]]


def cell_texts(tab: Tab, selector: str) -> list:
    return [c.inner_text().strip() for c in tab.page.query_selector_all(selector)]


# ---------------------------------------------------------------------------
# (a) every page loads cleanly
# ---------------------------------------------------------------------------


def test_every_page_loads_without_errors(broker, tab_factory):
    create_topic(broker.bootstrap, "events", 2)
    create_topic(broker.bootstrap, "events-dlq", 1)
    produce(broker.bootstrap, "events", [(b"k%d" % i, b'{"n": %d}' % i, None, None) for i in range(5)])
    produce(broker.bootstrap, "events-dlq", [(b"k", b"bad", [("__connect.errors.topic", b"events"),
                                                             ("__connect.errors.exception.message", b"boom")], None)])
    c = Committer(broker.bootstrap, "events-g")
    try:
        c.commit({("events", 0): 2})
    finally:
        c.close()
    sr = registry_client(broker)
    from confluent_kafka.schema_registry import Schema

    sr.register_schema("events-value", Schema(AVRO_INFERENCE, "AVRO"))

    # The shell, its redirect and the assets' content types and cache header.
    status, headers, _ = http(broker, "GET", "/ui/topics/anything")
    assert status == 200 and headers["content-type"].startswith("text/html"), (status, dict(headers))
    for asset, ctype in (("app.css", "text/css"), ("core.js", "text/javascript")):
        status, headers, _ = http(broker, "GET", f"/ui/assets/{asset}")
        assert status == 200 and headers["content-type"].startswith(ctype), (asset, status, dict(headers))
        assert "max-age" in headers.get("cache-control", ""), dict(headers)
    assert http(broker, "GET", "/ui/assets/nope.js")[0] == 404

    tab = tab_factory(broker)
    pages = [
        ("/", "Overview", "overview", '[data-field="topics"]'),
        ("/ui/topics", "Topics", "topics", 'td[data-field="topic"] a'),
        ("/ui/topics/events", "Topic events", "topic", 'td[data-field="log-end"]'),
        ("/ui/groups", "Consumer groups", "groups", 'td[data-field="group"] a'),
        ("/ui/groups/events-g", "Group events-g", "group", 'td[data-field="lag"]'),
        ("/ui/dlq", "Dead letters", "dlq", 'a[href="/ui/dlq/events-dlq"]'),
        ("/ui/dlq/events-dlq", "Dead letters in events-dlq", "dlq-topic", 'td[data-field="error"]'),
        ("/ui/schemas", "Schemas", "schemas", 'td[data-field="subject"] a'),
        ("/ui/schemas/events-value", "Subject events-value", "subject", 'pre[data-field="schema"]'),
    ]
    for path, heading, shot, ready in pages:
        tab.open(path, heading)
        tab.page.wait_for_selector(ready, timeout=WAIT_MS)
        assert tab.page.locator("h1").count() == 1, f"{path}: not one <h1>"
        # Every input, select and textarea has a <label> naming it.
        unlabelled = tab.page.evaluate(
            """() => [...document.querySelectorAll('main input, main select, main textarea')]
                 .filter(e => !(e.labels && e.labels.length)).map(e => e.name || e.outerHTML)"""
        )
        assert not unlabelled, f"{path}: inputs without a label: {unlabelled}"
        tab.shot(shot)
        tab.no_errors(path)

    # The topic page names its registry subject.
    tab.open("/ui/topics/events", "Topic events")
    tab.page.wait_for_selector('a[href="/ui/schemas/events-value"]', timeout=WAIT_MS)
    tab.no_errors("topic subjects")

    # The broker keeps its recent throughput, a point every two seconds: the
    # records written above show in the API's history (bytes in > 0). In a
    # cluster each broker counts what passes through it: the one the
    # producer used shows them.
    members = getattr(broker, "brokers", None) or [broker]
    deadline = time.monotonic() + 15
    while True:
        histories = [(m, get_json(m, "/v1/overview")["history"]) for m in members]
        busy = [(m, h) for m, h in histories
                if len(h) >= 3 and any(p["bytes_in_per_sec"] > 0 for p in h)]
        if busy:
            break
        assert time.monotonic() < deadline, f"no throughput in the overview's history: {histories}"
        time.sleep(0.5)
    home, history = busy[0]
    times = [p["time_ms"] for p in history]
    assert times == sorted(times) and abs(times[-1] / 1000 - time.time()) < 30, times[-5:]

    # The overview's throughput chart starts from that history: on its first
    # draw it already has several points (a live series alone would have one
    # per two-second poll).
    ov_tab = tab if home is broker else tab_factory(home)
    ov_tab.open("/ui/", "Overview")
    ov_tab.page.wait_for_selector("svg.chart path", state="attached", timeout=WAIT_MS)
    first_draw = ov_tab.page.get_attribute("svg.chart path", "d")
    assert first_draw.count("L") >= 2, f"throughput chart not seeded from the history: {first_draw!r}"
    ov_tab.no_errors("overview")

    # Overview numbers are the API's.
    tab.open("/ui/", "Overview")
    tab.page.wait_for_selector('[data-field="topics"]')
    tab.page.wait_for_selector("svg.chart path", state="attached", timeout=WAIT_MS)
    ov = get_json(broker, "/v1/overview")
    assert tab.page.inner_text('[data-field="topics"]').strip() == str(ov["topics"]) == "2"
    assert tab.page.inner_text('[data-field="brokers"]').strip() == str(len(ov["cluster"]["brokers"]))

    # Keyboard: Tab reaches the skip link, then the navigation; Enter on a
    # nav link routes without reloading.
    tab.page.keyboard.press("Tab")
    tab.page.keyboard.press("Tab")
    tab.page.keyboard.press("Tab")
    focused = tab.page.evaluate("() => document.activeElement && document.activeElement.getAttribute('href')")
    assert focused == "/ui/", f"third Tab should reach the first nav link, focus is on {focused!r}"
    tab.page.keyboard.press("Tab")
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_selector('h1:has-text("Topics")', timeout=WAIT_MS)
    assert tab.page.url.endswith("/ui/topics")
    tab.no_errors("keyboard navigation")


# ---------------------------------------------------------------------------
# (b) decoded messages
# ---------------------------------------------------------------------------


def test_message_browser_decodes_through_the_registry(broker, tab_factory):
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic, jtopic = "inferences", "feedback"
    create_topic(broker.bootstrap, topic, 1)
    create_topic(broker.bootstrap, jtopic, 1)
    sr = registry_client(broker)
    avro = AvroSerializer(sr, AVRO_INFERENCE)
    base = int(time.time() * 1000) - 60_000
    recs = []
    for i in range(6):
        v = {"model": f"gpt-console-{i}", "input_tokens": 1000 + i, "tool": "search" if i % 2 else None}
        recs.append((b"user-%d" % i, avro(v, SerializationContext(topic, MessageField.VALUE)),
                     [("traceparent", TRACEPARENT.encode()), ("tenant", b"acme")], base + i * 10_000))
    produce(broker.bootstrap, topic, recs)
    js = JSONSerializer(JSON_FEEDBACK, sr)
    produce(broker.bootstrap, jtopic, [(b"f1", js({"rating": 4, "comment": "console-json-ok"},
                                                  SerializationContext(jtopic, MessageField.VALUE)), None, None)])

    # The API itself.
    page = get_json(broker, f"/v1/topics/{topic}/messages?partition=0&offset=0&limit=3")
    assert [r["offset"] for r in page["records"]] == [0, 1, 2] and page["next_offset"] == 3, page
    r0 = page["records"][0]
    assert r0["value"]["format"] == "avro" and r0["value"]["value"]["model"] == "gpt-console-0", r0
    assert r0["trace_id"] == TRACE_ID and r0["key"]["value"] == "user-0", r0
    by_time = get_json(broker, f"/v1/topics/{topic}/messages?timestamp={base + 35_000}&limit=10")
    assert [r["offset"] for r in by_time["records"]] == [4, 5], by_time
    for bad in ("partition=x", "offset=-1", "limit=100000", "offset=1&timestamp=1"):
        status, _, body = http(broker, "GET", f"/v1/topics/{topic}/messages?{bad}")
        assert status == 400 and body.get("error_code") == 400 and body.get("message"), (bad, status, body)
    status, _, body = http(broker, "GET", "/v1/topics/nope/messages")
    assert status == 404 and body["error_code"] == 404, body

    tab = tab_factory(broker)
    tab.open(f"/ui/topics/{topic}", f"Topic {topic}")
    tab.page.get_by_label("Offset", exact=True).fill("0")
    tab.page.get_by_role("button", name="Show messages").click()
    tab.page.wait_for_selector('td[data-field="value"]:has-text("gpt-console-5")', timeout=WAIT_MS)
    values = cell_texts(tab, 'td[data-field="value"]')
    assert len(values) == 6, values
    for i, v in enumerate(values):
        assert f"gpt-console-{i}" in v and str(1000 + i) in v and "avro" in v, v
    assert "search" in values[1]
    headers = cell_texts(tab, 'td[data-field="headers"]')
    assert all("tenant" in h and "acme" in h for h in headers), headers
    traces = cell_texts(tab, 'td[data-field="trace-id"]')
    assert traces == [TRACE_ID] * 6, traces
    assert cell_texts(tab, 'td[data-field="key"]')[0].endswith("user-0")
    tab.shot("messages-by-offset")

    # Paging: 4 a page, then the next page.
    offsets_js = "() => [...document.querySelectorAll('td[data-field=\"offset\"]')].map(e => e.textContent).join(',')"
    tab.page.get_by_label("Limit").fill("4")
    tab.page.get_by_role("button", name="Show messages").click()
    tab.page.wait_for_function(offsets_js + " === '0,1,2,3'", timeout=WAIT_MS)
    tab.page.get_by_role("button", name="Next page").click()
    tab.page.wait_for_function(offsets_js + " === '4,5'", timeout=WAIT_MS)
    assert tab.page.get_by_role("button", name="Next page").is_disabled()

    # Search by time.
    tab.page.get_by_label("Search").select_option("timestamp")
    tab.page.get_by_label("Time", exact=True).fill(str(base + 35_000))
    tab.page.get_by_role("button", name="Show messages").click()
    tab.page.wait_for_function(
        "() => [...document.querySelectorAll('td[data-field=\"offset\"]')].map(e => e.textContent).join(',') === '4,5'",
        timeout=WAIT_MS)
    tab.shot("messages-by-time")

    # JSON Schema records decode too.
    tab.open(f"/ui/topics/{jtopic}", f"Topic {jtopic}")
    tab.page.get_by_role("button", name="Show messages").click()
    tab.page.wait_for_selector('td[data-field="value"]:has-text("console-json-ok")', timeout=WAIT_MS)
    assert "json_schema" in cell_texts(tab, 'td[data-field="value"]')[0]

    # And Protobuf ones (a message class built from a descriptor, as
    # generated code would hold it).
    ptopic = "tool-calls"
    create_topic(broker.bootstrap, ptopic, 1)
    produce(broker.bootstrap, ptopic, [(b"p1", protobuf_tool_call(sr, ptopic, "web_search", 42), None, None)])
    tab.open(f"/ui/topics/{ptopic}", f"Topic {ptopic}")
    tab.page.get_by_role("button", name="Show messages").click()
    tab.page.wait_for_selector('td[data-field="value"]:has-text("web_search")', timeout=WAIT_MS)
    pv = cell_texts(tab, 'td[data-field="value"]')[0]
    assert "protobuf" in pv and '"latency_ms": 42' in pv, pv
    tab.no_errors("message browser")


# ---------------------------------------------------------------------------
# (c) lag and lag seconds as /metrics has them
# ---------------------------------------------------------------------------


def test_group_page_shows_the_lag_of_metrics(broker, tab_factory):
    topic, group = "lagging", "lagging-g"
    create_topic(broker.bootstrap, topic, 2)
    old = int(time.time() * 1000) - 120_000
    for p, n in ((0, 8), (1, 5)):
        produce(broker.bootstrap, topic, [(None, b"v%d" % i, None, old + i * 1000) for i in range(n)], partition=p)
    c = Committer(broker.bootstrap, group)
    try:
        c.commit({(topic, 0): 3, (topic, 1): 5})
    finally:
        c.close()
    broker, _ = coordinator_and_others(broker, group)
    tab = tab_factory(broker)
    tab.open(f"/ui/groups/{group}", f"Group {group}")
    row0 = f'tr[data-topic="{topic}"][data-partition="0"]'
    tab.page.wait_for_selector(f'{row0} td[data-field="lag"]', timeout=WAIT_MS)
    # Read the page and /metrics close together; lag seconds grows by one
    # second a second, and the page refreshes every 2 s.
    tab.page.wait_for_timeout(500)
    shown = {}
    for p in (0, 1):
        row = f'tr[data-topic="{topic}"][data-partition="{p}"]'
        shown[p] = (tab.page.inner_text(f'{row} td[data-field="lag"]').strip(),
                    float(tab.page.inner_text(f'{row} td[data-field="lag-seconds"]').strip()))
    scr = scrape(broker)
    for p in (0, 1):
        lab = {"consumergroup": group, "topic": topic, "partition": str(p)}
        lag = scr.one("kafka_consumergroup_lag", **lab)
        ls = scr.one("kafka_consumergroup_lag_seconds", **lab)
        assert shown[p][0] == str(int(lag)), f"partition {p}: page lag {shown[p][0]}, /metrics {lag}"
        assert abs(shown[p][1] - ls) <= 4.0, f"partition {p}: page lag seconds {shown[p][1]}, /metrics {ls}"
    assert shown[0][0] == "5" and shown[0][1] > 100, shown
    assert shown[1] == ("0", 0.0), shown
    total = tab.page.inner_text('[data-field="total-lag"]').strip()
    assert total == "5", total
    tab.page.wait_for_selector("svg.chart circle", timeout=WAIT_MS)
    tab.shot("group-lag")
    tab.no_errors("group page")

    # The lag at each recent commit (Burrow's window) seeds the trend chart.
    status, _, detail = http(broker, "GET", f"/v1/groups/{group}")
    assert status == 200
    by_p = {p["partition"]: p for p in detail["partitions"]}
    assert [c[1] for c in by_p[0]["commits"]] == [5], by_p[0]
    assert [c[1] for c in by_p[1]["commits"]] == [0], by_p[1]
    assert abs(by_p[0]["commits"][0][0] - time.time() * 1000) < 120_000

    # The group list shows who is falling behind: the same lag (summed over
    # partitions) and the largest lag seconds, laggards first.
    tab.open("/ui/groups", "Consumer groups")
    row = f'tr:has(td[data-field="group"] a:text-is("{group}"))'
    tab.page.wait_for_selector(f'{row} td[data-field="total_lag"]', timeout=WAIT_MS)
    listed_lag = tab.page.inner_text(f'{row} td[data-field="total_lag"]').strip()
    listed_age = float(tab.page.inner_text(f'{row} td[data-field="max_lag_seconds"]').strip())
    listed_status = tab.page.inner_text(f'{row} td[data-field="status"]').strip()
    scr = scrape(broker)
    assert listed_lag == str(int(scr.one("kafka_consumergroup_lag_sum", consumergroup=group, topic=topic)))
    ls0 = scr.one("kafka_consumergroup_lag_seconds", consumergroup=group, topic=topic, partition="0")
    assert abs(listed_age - ls0) <= 4.0, (listed_age, ls0)
    assert listed_status in ("OK", "WARN", "ERR")
    tab.shot("groups-lag")
    tab.no_errors("groups list")


# ---------------------------------------------------------------------------
# (d) offset reset: preview, then confirm
# ---------------------------------------------------------------------------


def test_offset_reset_through_the_page(broker, tab_factory):
    topic, group = "resettable", "resettable-g"
    create_topic(broker.bootstrap, topic, 2)
    for p in (0, 1):
        produce(broker.bootstrap, topic, [(None, b"v", None, None)] * 6, partition=p)
    c = Committer(broker.bootstrap, group)
    try:
        c.commit({(topic, 0): 6, (topic, 1): 4})
    finally:
        c.close()

    def committed():
        g = get_json(broker, f"/v1/groups/{group}")
        return {x["partition"]: x["current_offset"] for x in g["partitions"]}

    assert committed() == {0: 6, 1: 4}
    broker, others = coordinator_and_others(broker, group)
    for other in others:
        # In a cluster, another broker's page shows the group's offsets, names
        # its coordinator, and a reset there is refused with that name.
        t = tab_factory(other)
        t.open(f"/ui/groups/{group}", f"Group {group}")
        t.page.wait_for_selector('[data-field="coordinated-elsewhere"]', timeout=WAIT_MS)
        t.page.wait_for_selector(f'tr[data-topic="{topic}"][data-partition="1"] td[data-field="lag"]:text-is("2")',
                                 timeout=WAIT_MS)
        t.page.get_by_role("button", name="Preview reset").click()
        t.page.wait_for_selector('.reset-out .error:has-text("coordinated by broker")', timeout=WAIT_MS)
        t.shot("group-reset-elsewhere")
        assert committed() == {0: 6, 1: 4}
    tab = tab_factory(broker)
    tab.open(f"/ui/groups/{group}", f"Group {group}")
    tab.page.get_by_label("Reset to").select_option("offset")
    tab.page.get_by_label("Offset or time").fill("2")
    tab.page.get_by_role("button", name="Preview reset").click()
    tab.page.wait_for_selector('button:has-text("Confirm reset")', timeout=WAIT_MS)
    assert cell_texts(tab, '.reset-out td[data-field="new-offset"]') == ["2", "2"]
    assert committed() == {0: 6, 1: 4}, "the preview changed the offsets"
    tab.shot("group-reset-preview")
    tab.page.get_by_role("button", name="Confirm reset").click()
    tab.page.wait_for_selector('.reset-out .ok:has-text("Offsets reset for 2 partition")', timeout=WAIT_MS)
    assert committed() == {0: 2, 1: 2}
    # The page shows the new lag after its refresh.
    tab.page.wait_for_function(
        f"""() => {{ const c = document.querySelector('tr[data-topic="{topic}"][data-partition="0"] td[data-field="lag"]');
                   return c && c.textContent.trim() === '4'; }}""", timeout=WAIT_MS)
    tab.shot("group-reset-done")
    tab.no_errors("offset reset")


# ---------------------------------------------------------------------------
# (e) DLQ replay: dry run, then confirm
# ---------------------------------------------------------------------------


def test_dlq_replay_through_the_page(broker, tab_factory):
    dlq, target = "payments-dlq", "payments-fixed"
    create_topic(broker.bootstrap, dlq, 1)
    create_topic(broker.bootstrap, "payments", 1)
    create_topic(broker.bootstrap, target, 1)
    recs = []
    for i in range(4):
        msg = b"timeout talking to ledger" if i % 2 == 0 else b"schema mismatch"
        recs.append((b"pay-%d" % i, b'{"amount": %d}' % (100 + i), [
            ("trace", b"t%d" % i),
            ("__connect.errors.topic", b"payments"),
            ("__connect.errors.partition", b"0"),
            ("__connect.errors.offset", str(10 + i).encode()),
            ("__connect.errors.exception.class.name", b"org.example.PaymentError"),
            ("__connect.errors.exception.message", msg),
        ], None))
    produce(broker.bootstrap, dlq, recs)
    tab = tab_factory(broker)
    tab.open(f"/ui/dlq/{dlq}", f"Dead letters in {dlq}")
    tab.page.wait_for_selector('td[data-field="error"]:has-text("timeout talking to ledger")', timeout=WAIT_MS)
    assert cell_texts(tab, 'td[data-field="original"]')[0] == "payments[0]@10"
    tab.page.get_by_label("Replay to topic").fill(target)
    tab.page.get_by_label("Only errors containing").fill("timeout")
    tab.page.get_by_role("button", name="Preview replay").click()
    tab.page.wait_for_selector('.replay-out p:has-text("Dry run")', timeout=WAIT_MS)
    assert "2 match" in tab.page.inner_text(".replay-out p")
    assert get_json(broker, f"/v1/topics/{target}")["messages"] == 0, "the dry run produced records"
    tab.shot("dlq-replay-preview")
    tab.page.get_by_role("button", name="Confirm replay").click()
    tab.page.wait_for_selector('[data-field="replayed-count"]:has-text("Replayed 2 record")', timeout=WAIT_MS)
    got = consume_all(broker.bootstrap, target, [0], expected=2, timeout=30)
    values = sorted(m.value for m in got)
    assert values == [b'{"amount": 100}', b'{"amount": 102}'], values
    tab.page.wait_for_selector('td[data-field="replayed"]:has-text("yes")', timeout=WAIT_MS)
    tab.shot("dlq-replay-done")
    tab.no_errors("dlq replay")


# ---------------------------------------------------------------------------
# Schemas: diff and compatibility check
# ---------------------------------------------------------------------------


def test_schema_diff_and_compatibility_check(broker, tab_factory):
    from confluent_kafka.schema_registry import Schema

    sr = registry_client(broker)
    v1 = json.loads(AVRO_INFERENCE)
    v2 = json.loads(AVRO_INFERENCE)
    v2["fields"].append({"name": "latency_ms", "type": "long", "default": 0})
    sr.register_schema("calls-value", Schema(json.dumps(v1), "AVRO"))
    sr.register_schema("calls-value", Schema(json.dumps(v2), "AVRO"))
    tab = tab_factory(broker)
    tab.open("/ui/schemas/calls-value", "Subject calls-value")
    tab.page.wait_for_selector('pre[data-field="schema"]:has-text("latency_ms")', timeout=WAIT_MS)
    tab.page.get_by_role("button", name="Show diff").click()
    tab.page.wait_for_selector("pre.diff .add", timeout=WAIT_MS)
    added = cell_texts(tab, "pre.diff .add")
    assert any("latency_ms" in a for a in added), added
    assert not cell_texts(tab, "pre.diff .del") or all("latency_ms" not in d for d in cell_texts(tab, "pre.diff .del"))
    # A new required field without a default is not backward compatible.
    bad = json.loads(json.dumps(v2))
    bad["fields"].append({"name": "required_now", "type": "string"})
    tab.page.get_by_label("Schema text").fill(json.dumps(bad))
    tab.page.get_by_role("button", name="Check compatibility").click()
    tab.page.wait_for_selector('[data-field="compatible"]', timeout=WAIT_MS)
    assert tab.page.inner_text('[data-field="compatible"]').startswith("Not compatible")
    reasons = tab.page.inner_text('[data-field="compat-messages"]')
    assert "required_now" in reasons, reasons
    good = json.loads(json.dumps(v2))
    good["fields"].append({"name": "optional_now", "type": "string", "default": ""})
    tab.page.get_by_label("Schema text").fill(json.dumps(good))
    tab.page.get_by_role("button", name="Check compatibility").click()
    tab.page.wait_for_selector('[data-field="compatible"]:has-text("Compatible")', timeout=WAIT_MS)
    assert "null" not in tab.page.inner_text("#s-c + form + div"), tab.page.inner_text("#s-c + form + div")
    tab.shot("schema-diff-compat")
    tab.no_errors("schemas")


# ---------------------------------------------------------------------------
# (f) behind --http-auth
# ---------------------------------------------------------------------------


def test_console_needs_credentials_with_http_auth(broker_factory, sluice_bin, tab_factory):
    b = broker_factory("auth", start=False)
    cp = subprocess.run([str(sluice_bin), "users", "--data-dir", str(b.data_dir), "add", "ops", "--password", "ops-pw"],
                        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    b.argv += ["--http-auth", "basic"]
    b.start()
    for path in ("/", "/ui/", "/ui/topics", "/ui/assets/core.js", "/v1/overview", "/v1/topics/x/messages"):
        status, headers, body = http(b, "GET", path)
        assert status == 401, f"GET {path} without credentials: {status}"
        assert headers.get("www-authenticate", "").startswith("Basic"), dict(headers)
        assert http(b, "GET", path, auth=("ops", "wrong"))[0] == 401, path
    assert http(b, "GET", "/ui/", auth=("ops", "ops-pw"))[0] == 200

    # The browser without credentials gets the 401.
    # Headless Chromium, with no credentials to answer the challenge, ends
    # the navigation with ERR_INVALID_AUTH_CREDENTIALS (or shows the 401).
    anon = tab_factory(b)
    try:
        resp = anon.page.goto(anon.base + "/ui/", timeout=WAIT_MS)
        assert resp is not None and resp.status == 401, resp and resp.status
    except PlaywrightError as e:
        assert "ERR_INVALID_AUTH_CREDENTIALS" in str(e), e
    assert anon.page.locator("nav").count() == 0, "the console showed without credentials"
    # With them, the pages and their API calls work.
    create_topic(b.bootstrap, "secured", 1)
    produce(b.bootstrap, "secured", [(b"k", b"secret-value", None, None)])
    tab = tab_factory(b, credentials=("ops", "ops-pw"))
    tab.open("/", "Overview")
    tab.page.wait_for_selector('[data-field="topics"]:has-text("1")', timeout=WAIT_MS)
    tab.open("/ui/topics/secured", "Topic secured")
    tab.page.get_by_role("button", name="Show messages").click()
    tab.page.wait_for_selector('td[data-field="value"]:has-text("secret-value")', timeout=WAIT_MS)
    tab.shot("auth-topic")
    tab.no_errors("console with --http-auth")


def test_message_browser_needs_read_on_the_topic(broker_factory, sluice_bin, tab_factory):
    """Under the ACL authorizer the browser's records need Read on the topic:
    alice, who may only Describe it, gets 403 (and the page says so); the
    super user sees the records."""
    from test_http_auth import USERS, AuthBroker

    ab = AuthBroker(broker_factory, sluice_bin, name="acl", acls=[
        ["--allow-principal", "User:alice", "--operation", "Describe", "--topic", "orders"],
    ])
    ab.produce("orders", [(b"k", b"order-visible-to-admin", None)])
    assert ab.get("/v1/topics/orders/messages", user="alice").status_code == 403
    assert ab.get("/v1/topics/orders", user="alice").status_code == 200
    r = ab.get("/v1/topics/orders/messages", user="admin")
    assert r.status_code == 200 and r.json()["records"][0]["value"]["value"] == "order-visible-to-admin", r.text

    alice = tab_factory(ab.b, credentials=("alice", USERS["alice"]))
    alice.open("/ui/topics/orders", "Topic orders")
    alice.page.get_by_role("button", name="Show messages").click()
    alice.page.wait_for_selector('.messages [role="alert"]:has-text("may not Read")', timeout=WAIT_MS)
    assert alice.page.locator('td[data-field="value"]').count() == 0
    alice.shot("acl-denied")
    admin = tab_factory(ab.b, credentials=("admin", USERS["admin"]))
    admin.open("/ui/topics/orders", "Topic orders")
    admin.page.get_by_role("button", name="Show messages").click()
    admin.page.wait_for_selector('td[data-field="value"]:has-text("order-visible-to-admin")', timeout=WAIT_MS)
    admin.no_errors("console as the super user")
