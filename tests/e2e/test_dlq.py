"""Dead-letter topics end to end: `sluice dlq inspect` and `sluice dlq replay`
against a real broker, with records carrying Kafka Connect
(`__connect.errors.*`, string values) and Spring Kafka (`kafka_dlt-*`, binary
big-endian numbers) failure context, produced by confluent-kafka and read back
with confluent-kafka.

What replay must do: re-produce each record to its original topic and
partition (or `--to`), key, value and the non-context headers byte-identical
and in order, the context headers dropped; remember what it replayed so a
second run replays nothing unless `--again`; `--dry-run` produces nothing;
`--original-topic` / `--error-contains` filter.
"""

from __future__ import annotations

import json
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pytest

from helpers import consume_all, create_topic, make_producer
from test_observability import get_json, parse_table, run_cli, scrape

DLQ = "orders-dlq"


@dataclass
class DeadLetter:
    """One record we put into a dead-letter topic, and what we expect."""

    kind: str  # connect | spring
    key: Optional[bytes]
    value: Optional[bytes]
    other_headers: List[Tuple[str, Optional[bytes]]]  # kept on replay, in order
    context_headers: List[Tuple[str, bytes]]  # dropped on replay
    original_topic: str
    original_partition: int
    original_offset: int
    exception_class: str
    exception_message: str
    original_timestamp: Optional[int] = None
    connector: Optional[str] = None
    stage: Optional[str] = None
    consumer_group: Optional[str] = None
    dlq_partition: int = -1
    dlq_offset: int = -1
    extra: dict = field(default_factory=dict)

    def headers(self) -> list:
        # Context headers interleaved with the others, as real producers do
        # (the original record's headers first, then the failure context).
        return list(self.other_headers) + list(self.context_headers)


def connect_record(rng, topic, partition, offset, value, key=b"", other=None, exc="org.apache.kafka.connect.errors.DataException", msg="Converting byte[] to Kafka Connect data failed due to serialization error") -> DeadLetter:
    ctx = [
        ("__connect.errors.topic", topic.encode()),
        ("__connect.errors.partition", str(partition).encode()),
        ("__connect.errors.offset", str(offset).encode()),
        ("__connect.errors.connector.name", b"orders-sink"),
        ("__connect.errors.task.id", b"0"),
        ("__connect.errors.stage", b"VALUE_CONVERTER"),
        ("__connect.errors.class.name", b"io.confluent.connect.avro.AvroConverter"),
        ("__connect.errors.exception.class.name", exc.encode()),
        ("__connect.errors.exception.message", msg.encode()),
        ("__connect.errors.exception.stacktrace", b"org.apache.kafka.connect.errors.DataException: ...\n\tat x.y(Z.java:1)\n"),
    ]
    return DeadLetter(
        kind="connect",
        key=key,
        value=value,
        other_headers=other if other is not None else [("trace-id", rng.randbytes(16)), ("content-type", b"application/json")],
        context_headers=ctx,
        original_topic=topic,
        original_partition=partition,
        original_offset=offset,
        exception_class=exc,
        exception_message=msg,
        connector="orders-sink",
        stage="VALUE_CONVERTER",
    )


def spring_record(rng, topic, partition, offset, value, key=b"", other=None, exc="org.springframework.kafka.listener.ListenerExecutionFailedException", msg="Listener failed; nested exception is java.lang.IllegalStateException: no such customer", ts=None) -> DeadLetter:
    ts = ts if ts is not None else int(time.time() * 1000) - 3_600_000
    ctx = [
        ("kafka_dlt-exception-fqcn", exc.encode()),
        ("kafka_dlt-exception-cause-fqcn", b"java.lang.IllegalStateException"),
        ("kafka_dlt-exception-message", msg.encode()),
        ("kafka_dlt-exception-stacktrace", b"java.lang.IllegalStateException: no such customer\n\tat a.b(C.java:9)\n"),
        ("kafka_dlt-original-topic", topic.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", offset)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", ts)),
        ("kafka_dlt-original-timestamp-type", b"CreateTime"),
        ("kafka_dlt-original-consumer-group", b"orders-service"),
    ]
    return DeadLetter(
        kind="spring",
        key=key,
        value=value,
        other_headers=other if other is not None else [("__TypeId__", b"com.example.orders.OrderCreated"), ("b3", rng.randbytes(8))],
        context_headers=ctx,
        original_topic=topic,
        original_partition=partition,
        original_offset=offset,
        exception_class=exc,
        exception_message=msg,
        original_timestamp=ts,
        consumer_group="orders-service",
    )


def produce_dead_letters(broker, topic: str, records: List[DeadLetter], partitions: int) -> None:
    """Produce in list order, round-robin over the DLQ partitions; fills in
    dlq_partition / dlq_offset."""
    p = make_producer(broker.bootstrap, **{"linger.ms": 0})
    results: Dict[int, Tuple] = {}

    def cb(i):
        def f(err, msg):
            results[i] = (err, msg.partition(), msg.offset())
        return f

    for i, r in enumerate(records):
        p.produce(topic, key=r.key, value=r.value, headers=r.headers(), partition=i % partitions, on_delivery=cb(i))
        assert p.flush(15) == 0, "dead letter not delivered"
    for i, r in enumerate(records):
        err, part, off = results[i]
        assert err is None, f"dead letter {i}: {err}"
        r.dlq_partition, r.dlq_offset = part, off


def end_offsets(broker, topic: str) -> Dict[int, int]:
    d = get_json(broker, f"/v1/topics/{topic}")
    return {x["partition"]: x["log_end_offset"] for x in d["partition_details"]}


def read_topic(broker, topic: str) -> list:
    parts = sorted(end_offsets(broker, topic))
    total = sum(end_offsets(broker, topic).values())
    return consume_all(broker.bootstrap, topic, parts, expected=total, timeout=60)


def summary(out: str) -> Dict[str, int]:
    rows = parse_table(out, "SCANNED")
    assert len(rows) == 1, out
    return {k: int(v) for k, v in rows[0].items()}


def replay(sluice_bin, broker, *args, check=True):
    return run_cli(sluice_bin, "dlq", "--http", f"127.0.0.1:{broker.http_port}", "replay", DLQ, *args, check=check)


def check_replayed(records: List[DeadLetter], got: list, topic: Optional[str], since: Dict[int, int], where: str, expect_partition=True) -> None:
    """Records consumed from `topic` at offsets >= since[partition] must be
    exactly `records`, each byte-identical (minus context headers), at its
    original partition, in DLQ order per DLQ partition."""
    fresh = [m for m in got if m.offset >= since.get(m.partition, 0)]
    by_value = {}
    for m in fresh:
        assert m.value not in by_value, f"{where}: value replayed twice: {m.value[:40]!r}"
        by_value[m.value] = m
    want_values = {r.value for r in records}
    extra = [m for m in fresh if m.value not in want_values]
    assert not extra, f"{where}: {len(extra)} unexpected records, first {extra[0]}"
    missing = [r for r in records if r.value not in by_value]
    assert not missing, f"{where}: {len(missing)} of {len(records)} records not replayed, first: {missing[0].kind} {missing[0].original_topic}/{missing[0].original_partition}"
    for r in records:
        m = by_value[r.value]
        tag = f"{where}: dead letter {r.dlq_partition}@{r.dlq_offset} ({r.kind})"
        if expect_partition:
            assert m.partition == r.original_partition, f"{tag}: landed in partition {m.partition}, original {r.original_partition}"
        assert m.key == r.key, f"{tag}: key {m.key!r} != {r.key!r}"
        assert m.value == r.value, tag
        got_headers = list(m.headers or [])
        assert got_headers == list(r.other_headers), (
            f"{tag}: headers {got_headers!r}\n expected (context dropped) {r.other_headers!r}"
        )
    # Order per target partition follows DLQ order for records of one DLQ partition.
    for p in {m.partition for m in fresh}:
        seq = [m for m in sorted(fresh, key=lambda m: m.offset) if m.partition == p]
        pos = {r.value: (r.dlq_partition, r.dlq_offset) for r in records}
        for dp in {pos[m.value][0] for m in seq}:
            offs = [pos[m.value][1] for m in seq if pos[m.value][0] == dp]
            assert offs == sorted(offs), f"{where}: partition {p} has DLQ partition {dp} records out of order: {offs}"


def standard_dead_letters(seed: int = 5) -> Tuple[List[DeadLetter], List[DeadLetter]]:
    """(orders records, payments records)."""
    rng = random.Random(seed)

    def val(n=None):
        # binary, not valid UTF-8, unique
        return b"\xff\xfe" + rng.randbytes(n or rng.randint(20, 300))

    orders = [
        connect_record(rng, "orders", 2, 17, val(), key=b"order-17"),
        spring_record(rng, "orders", 1, 42, val(), key=b"order-42"),
        connect_record(rng, "orders", 0, 1234, val(), key=None),  # null key
        spring_record(rng, "orders", 2, 9_876_543_210, val(), key=rng.randbytes(12)),
        connect_record(rng, "orders", 1, 3, val(200_000), key=b"big"),  # 200 KB value
        spring_record(rng, "orders", 0, 7, val(), key=b"k7", other=[]),  # only context headers
        connect_record(rng, "orders", 2, 12_345_678, val(), key=b"k8", other=[("empty", b""), ("bin", bytes(range(256)))]),
        spring_record(rng, "orders", 1, 8, val(), key=b"k9", exc="org.apache.kafka.common.errors.SerializationException", msg="Can't deserialize data"),
    ]
    payments = [
        connect_record(rng, "payments", 1, 5, val(), key=b"pay-5", exc="org.apache.kafka.connect.errors.ConnectException", msg="Table payments is missing"),
        spring_record(rng, "payments", 0, 6, val(), key=b"pay-6"),
    ]
    return orders, payments


def setup_topics(broker, dlq_partitions=2) -> Dict[str, Dict[int, int]]:
    create_topic(broker.bootstrap, "orders", 3)
    create_topic(broker.bootstrap, "payments", 2)
    create_topic(broker.bootstrap, "other", 3)
    create_topic(broker.bootstrap, DLQ, dlq_partitions)
    # Some earlier traffic in the original topics.
    p = make_producer(broker.bootstrap)
    for t, n in (("orders", 3), ("payments", 2)):
        for part in range(n):
            for i in range(5):
                p.produce(t, partition=part, key=b"orig", value=b"original-%d-%d" % (part, i))
    assert p.flush(15) == 0
    return {t: end_offsets(broker, t) for t in ("orders", "payments", "other")}


# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(180)
def test_dlq_inspect_shows_the_failure_context(broker, sluice_bin):
    setup_topics(broker)
    orders, payments = standard_dead_letters()
    records = orders + payments
    produce_dead_letters(broker, DLQ, records, partitions=2)
    http = f"127.0.0.1:{broker.http_port}"

    out = run_cli(sluice_bin, "dlq", "--http", http, "inspect", DLQ, "--json", "--limit", "100").stdout
    views = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert len(views) == len(records), out
    by_pos = {(v["partition"], v["offset"]): v for v in views}
    problems = []
    for r in records:
        v = by_pos.get((r.dlq_partition, r.dlq_offset))
        if v is None:
            problems.append(f"{r.dlq_partition}@{r.dlq_offset} not listed")
            continue
        c = v["context"]
        want = {
            "source": r.kind,
            "original_topic": r.original_topic,
            "original_partition": r.original_partition,
            "original_offset": r.original_offset,
            "original_timestamp": r.original_timestamp,
            "exception_class": r.exception_class,
            "exception_message": r.exception_message,
            "connector": r.connector,
            "stage": r.stage,
            "consumer_group": r.consumer_group,
        }
        for k, w in want.items():
            if c.get(k) != w:
                problems.append(f"{r.kind} record {r.dlq_partition}@{r.dlq_offset}: context {k} = {c.get(k)!r}, expected {w!r} (header sent: {dict(r.context_headers).get('__connect.errors.offset') or dict(r.context_headers).get('kafka_dlt-original-offset')!r})")
        names = [h[0] for h in v["headers"]]
        if names != [h[0] for h in r.other_headers]:
            problems.append(f"{r.dlq_partition}@{r.dlq_offset}: listed headers {names}, expected the non-context ones {[h[0] for h in r.other_headers]}")
        if v["replayed"] is not False:
            problems.append(f"{r.dlq_partition}@{r.dlq_offset}: replayed={v['replayed']} before any replay")
        if v["value_bytes"] != len(r.value):
            problems.append(f"{r.dlq_partition}@{r.dlq_offset}: value_bytes {v['value_bytes']} != {len(r.value)}")
    assert not problems, "sluice dlq inspect --json:\n  " + "\n  ".join(problems)

    # The table view: one row per record, the original location and the error.
    out = run_cli(sluice_bin, "dlq", "--http", http, "inspect", DLQ).stdout
    rows = parse_table(out, "PARTITION")
    assert len(rows) == len(records), out
    rows_by = {(int(x["PARTITION"]), int(x["OFFSET"])): x for x in rows}
    for r in records:
        x = rows_by[(r.dlq_partition, r.dlq_offset)]
        assert x["SOURCE"] == r.kind, x
        assert r.original_topic in x["ORIGINAL"] and str(r.original_partition) in x["ORIGINAL"], x
        assert r.exception_class.rsplit(".", 1)[-1] in x["ERROR"], x
        assert x["REPLAYED"] == "no", x
    assert f"{len(records)} of {len(records)} records shown" in out, out

    out = run_cli(sluice_bin, "dlq", "--http", http, "inspect", DLQ, "--limit", "3").stdout
    assert len(parse_table(out, "PARTITION")) == 3, out

    # Depth on /metrics and in the topics API.
    scr = scrape(broker)
    assert scr.one("sluice_dlq_records", topic=DLQ) == len(records)
    assert get_json(broker, f"/v1/topics/{DLQ}")["messages"] == len(records)

    cp = run_cli(sluice_bin, "dlq", "--http", http, "inspect", "no-such-dlq", check=False)
    assert cp.returncode != 0 and "no-such-dlq" in (cp.stdout + cp.stderr), cp


@pytest.mark.e2e_timeout(240)
def test_dlq_replay_moves_records_back_byte_identical_once(broker, sluice_bin, tmp_path):
    before = setup_topics(broker)
    orders, payments = standard_dead_letters()
    records = orders + payments
    produce_dead_letters(broker, DLQ, records, partitions=2)
    n = len(records)
    http = f"127.0.0.1:{broker.http_port}"

    # --dry-run: shows the plan, produces nothing.
    out = replay(sluice_bin, broker, "--dry-run").stdout
    s = summary(out)
    assert s == {"SCANNED": n, "MATCHED": n, "REPLAYED": 0, "ALREADY-REPLAYED": 0, "FAILED": 0}, out
    plan = parse_table(out, "PARTITION")
    assert len(plan) == n, out
    for r in records:
        row = [x for x in plan if (int(x["PARTITION"]), int(x["OFFSET"])) == (r.dlq_partition, r.dlq_offset)]
        assert len(row) == 1 and row[0]["TARGET-TOPIC"] == r.original_topic and int(row[0]["TARGET-PARTITION"]) == r.original_partition, (r, out)
    for t in ("orders", "payments", "other"):
        assert end_offsets(broker, t) == before[t], f"--dry-run produced into {t}"

    # --original-topic payments: only those.
    rep1 = tmp_path / "replay-payments.jsonl"
    s = summary(replay(sluice_bin, broker, "--original-topic", "payments", "--report", str(rep1)).stdout)
    assert s == {"SCANNED": n, "MATCHED": len(payments), "REPLAYED": len(payments), "ALREADY-REPLAYED": 0, "FAILED": 0}, s
    assert end_offsets(broker, "orders") == before["orders"], "--original-topic payments produced into orders"
    check_replayed(payments, read_topic(broker, "payments"), "payments", before["payments"], "after --original-topic payments")

    # Everything: the orders records now, payments already done.
    rep2 = tmp_path / "replay-all.jsonl"
    s = summary(replay(sluice_bin, broker, "--report", str(rep2)).stdout)
    assert s == {"SCANNED": n, "MATCHED": n, "REPLAYED": len(orders), "ALREADY-REPLAYED": len(payments), "FAILED": 0}, s
    got_orders = read_topic(broker, "orders")
    check_replayed(orders, got_orders, "orders", before["orders"], "after replay")
    got_payments = read_topic(broker, "payments")
    check_replayed(payments, got_payments, "payments", before["payments"], "payments after the full replay (no duplicates)")

    # The reports say where each record went.
    consumed = {(t, m.partition, m.offset): m for t, ms in (("orders", got_orders), ("payments", got_payments)) for m in ms}
    src = {(r.dlq_partition, r.dlq_offset): r for r in records}
    for rep, subset in ((rep1, payments), (rep2, orders)):
        lines = [json.loads(l) for l in rep.read_text().splitlines() if l.strip()]
        assert len(lines) == len(subset), f"{rep.name}: {len(lines)} lines for {len(subset)} replayed records"
        assert {(x["partition"], x["offset"]) for x in lines} == {(r.dlq_partition, r.dlq_offset) for r in subset}, lines
        for x in lines:
            r = src[(x["partition"], x["offset"])]
            assert x["error"] is None and x["target_topic"] == r.original_topic and x["target_partition"] == r.original_partition, x
            m = consumed.get((x["target_topic"], x["target_partition"], x["target_offset"]))
            assert m is not None and m.value == r.value, f"{rep.name}: {x} does not point at the replayed record"

    # The dead letters stay where they are.
    assert scrape(broker).one("sluice_dlq_records", topic=DLQ) == n
    views = [json.loads(l) for l in run_cli(sluice_bin, "dlq", "--http", http, "inspect", DLQ, "--json").stdout.splitlines() if l.strip()]
    assert len(views) == n and all(v["replayed"] is True for v in views), [v["replayed"] for v in views]

    # A second run replays nothing.
    after = {t: end_offsets(broker, t) for t in ("orders", "payments")}
    s = summary(replay(sluice_bin, broker).stdout)
    assert s == {"SCANNED": n, "MATCHED": n, "REPLAYED": 0, "ALREADY-REPLAYED": n, "FAILED": 0}, s
    for t in ("orders", "payments"):
        assert end_offsets(broker, t) == after[t], f"second replay produced into {t}"

    # --again replays everything once more.
    s = summary(replay(sluice_bin, broker, "--again").stdout)
    assert s == {"SCANNED": n, "MATCHED": n, "REPLAYED": n, "ALREADY-REPLAYED": 0, "FAILED": 0}, s
    check_replayed(orders, read_topic(broker, "orders"), "orders", after["orders"], "after --again")
    check_replayed(payments, read_topic(broker, "payments"), "payments", after["payments"], "payments after --again")


@pytest.mark.e2e_timeout(180)
def test_dlq_replay_to_another_topic_and_filters(broker, sluice_bin):
    before = setup_topics(broker)
    orders, payments = standard_dead_letters(seed=11)
    rng = random.Random(3)
    # A record without any failure context: no original topic to go back to.
    bare = DeadLetter(
        kind="none", key=b"bare", value=b"\x00bare" + rng.randbytes(30), other_headers=[("x", b"y")], context_headers=[],
        original_topic="", original_partition=-1, original_offset=-1, exception_class="", exception_message="",
    )
    records = orders + payments + [bare]
    produce_dead_letters(broker, DLQ, records, partitions=2)
    n = len(records)

    # --error-contains matches the exception class or message.
    s = summary(replay(sluice_bin, broker, "--error-contains", "DataException", "--dry-run").stdout)
    n_data = sum(1 for r in records if "DataException" in r.exception_class + " " + r.exception_message)
    assert n_data == 4
    assert s == {"SCANNED": n, "MATCHED": n_data, "REPLAYED": 0, "ALREADY-REPLAYED": 0, "FAILED": 0}, s
    s = summary(replay(sluice_bin, broker, "--error-contains", "Table payments is missing", "--dry-run").stdout)
    assert s["MATCHED"] == 1, s

    # --to other: every record (including the bare one) goes to `other`,
    # nothing to the original topics.
    s = summary(replay(sluice_bin, broker, "--to", "other").stdout)
    assert s == {"SCANNED": n, "MATCHED": n, "REPLAYED": n, "ALREADY-REPLAYED": 0, "FAILED": 0}, s
    check_replayed(records, read_topic(broker, "other"), "other", before["other"], "--to other", expect_partition=False)
    assert end_offsets(broker, "orders") == before["orders"]
    assert end_offsets(broker, "payments") == before["payments"]

    # Without --to the bare record cannot be replayed: FAILED, non-zero exit;
    # and the rest were already replayed (to `other`).
    cp = replay(sluice_bin, broker, "--again", check=False)
    s = summary(cp.stdout)
    assert s == {"SCANNED": n, "MATCHED": n, "REPLAYED": n - 1, "ALREADY-REPLAYED": 0, "FAILED": 1}, cp.stdout
    assert cp.returncode != 0, "a replay with failures must exit non-zero"
    check_replayed(orders, read_topic(broker, "orders"), "orders", before["orders"], "--again to the originals")


@pytest.mark.e2e_timeout(120)
def test_dlq_replay_keeps_duplicate_header_keys_and_null_header_values(broker, sluice_bin):
    """Kafka headers are an ordered list; keys may repeat and values may be
    null. Replay must keep them exactly."""
    before = setup_topics(broker, dlq_partitions=1)
    rng = random.Random(21)
    recs = [
        spring_record(rng, "orders", 1, 50, b"dup-headers-1", key=b"d1",
                      other=[("hop", b"svc-a"), ("hop", b"svc-b"), ("hop", b"svc-c"), ("tenant", b"t1")]),
        connect_record(rng, "orders", 2, 51, b"null-header-2", key=b"d2",
                       other=[("nullable", None), ("tenant", b"t2"), ("nullable", b"")]),
    ]
    produce_dead_letters(broker, DLQ, recs, partitions=1)
    # The DLQ itself holds what we sent.
    stored = read_topic(broker, DLQ)
    for r, m in zip(recs, sorted(stored, key=lambda m: m.offset)):
        assert list(m.headers) == r.headers(), f"broker changed the dead letter's headers: {m.headers}"
    s = summary(replay(sluice_bin, broker).stdout)
    assert s["REPLAYED"] == 2 and s["FAILED"] == 0, s
    check_replayed(recs, read_topic(broker, "orders"), "orders", before["orders"], "duplicate/null headers")
