"""Observability end to end: /metrics (kafka-exporter families, event age,
Burrow status, DLQ depth, broker internals), the JSON admin API, the CLI
views, and the shipped Prometheus alert rules and Grafana dashboard.

Every test runs a real `sluice serve` (conftest fixtures) and talks to it with
confluent-kafka, plain HTTP and the `sluice` CLI. Values are checked exactly
where the broker can know them exactly (offsets, lag); event ages, which
depend on the scrape time, are bracketed by the client's clock read just
before and just after the scrape, plus a small tolerance.

Needs: prometheus-client (pip), PyYAML (pip), promtool (Debian `prometheus`).
A missing tool fails the test that needs it; nothing is skipped.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

import kafka_wire as kw
from helpers import base_conf, create_topic, make_producer
from sluice_proc import REPO_ROOT

try:  # a missing parser must fail the tests that need it, not skip them
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:  # pragma: no cover - reported by _need_parser()
    text_string_to_metric_families = None
    _PARSER_IMPORT_ERROR = e
else:
    _PARSER_IMPORT_ERROR = None

ALERTS_YML = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
GRAFANA_JSON = REPO_ROOT / "deploy" / "grafana" / "sluice.json"

HTTP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0
# Event-age tolerance (seconds) on top of the scrape's own time bracket.
AGE_TOL = 2.0


# ---------------------------------------------------------------------------
# Small helpers (HTTP, scraping, producing, committing)
# ---------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def http_get(broker, path: str, timeout: float = HTTP_TIMEOUT) -> Tuple[int, str, str]:
    """(status, content-type, body) of GET path on the broker's HTTP listener;
    HTTP error statuses are returned, not raised."""
    url = f"http://127.0.0.1:{broker.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode("utf-8", "replace")


def get_json(broker, path: str, expect_status: int = 200):
    status, ctype, body = http_get(broker, path)
    assert status == expect_status, f"GET {path}: status {status} (expected {expect_status}), body {body[:500]!r}"
    assert "application/json" in ctype, f"GET {path}: content-type {ctype!r}, body {body[:200]!r}"
    try:
        return json.loads(body)
    except ValueError as e:
        raise AssertionError(f"GET {path}: body is not JSON ({e}): {body[:500]!r}")


def _need_parser():
    if text_string_to_metric_families is None:
        pytest.fail(
            f"prometheus_client is not importable ({_PARSER_IMPORT_ERROR}); "
            "pip install prometheus-client (scripts/install-test-deps.sh)",
            pytrace=False,
        )


Key = Tuple[str, Tuple[Tuple[str, str], ...]]


class Scrape:
    """One parsed /metrics page."""

    def __init__(self, text: str, t_before_ms: int, t_after_ms: int) -> None:
        _need_parser()
        self.text = text
        self.t_before_ms = t_before_ms
        self.t_after_ms = t_after_ms
        self.families = list(text_string_to_metric_families(text))
        self.samples: Dict[Key, float] = {}
        self.family_of: Dict[str, object] = {}
        self.duplicates: List[Key] = []
        for fam in self.families:
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                if key in self.samples:
                    self.duplicates.append(key)
                self.samples[key] = s.value
                self.family_of[s.name] = fam

    def names(self) -> set:
        return {k[0] for k in self.samples}

    def select(self, name: str, **labels) -> Dict[Tuple[Tuple[str, str], ...], float]:
        """All samples of `name` whose labels include `labels`."""
        out = {}
        for (n, lab), v in self.samples.items():
            if n != name:
                continue
            d = dict(lab)
            if all(d.get(k) == str(v2) for k, v2 in labels.items()):
                out[lab] = v
        return out

    def one(self, name: str, **labels) -> float:
        got = self.select(name, **labels)
        assert len(got) == 1, (
            f"expected exactly one sample {name}{labels}, found {len(got)}: {got}\n"
            f"--- lines of {name} ---\n" + "\n".join(self.lines(name))
        )
        return next(iter(got.values()))

    def lines(self, name: str) -> List[str]:
        return [l for l in self.text.splitlines() if l.startswith(name + "{") or l.startswith(name + " ")]

    def label_names(self, name: str) -> set:
        return {frozenset(k for k, _ in lab) for (n, lab) in self.samples if n == name}


def scrape(broker, path: str = "/metrics") -> Scrape:
    t0 = now_ms()
    status, ctype, body = http_get(broker, path)
    t1 = now_ms()
    assert status == 200, f"GET /metrics: status {status}: {body[:500]!r}"
    assert ctype.startswith("text/plain"), f"GET /metrics content-type {ctype!r}"
    return Scrape(body, t0, t1)


def produce_one_per_batch(
    bootstrap: str,
    topic: str,
    partition: int,
    timestamps: Iterable[int],
    value_prefix: bytes = b"v",
    headers: Optional[list] = None,
) -> List[int]:
    """Produce one record per request (one batch each, flushed before the
    next) with explicit CreateTime timestamps; returns the offsets."""
    p = make_producer(bootstrap, **{"linger.ms": 0, "batch.num.messages": 1})
    offsets: List[int] = []
    errors: list = []

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            offsets.append(msg.offset())

    for i, ts in enumerate(timestamps):
        p.produce(
            topic,
            partition=partition,
            key=b"k%d" % i,
            value=value_prefix + b"-%d" % i,
            timestamp=int(ts),
            headers=headers,
            on_delivery=cb,
        )
        left = p.flush(15)
        assert left == 0, f"produce to {topic}[{partition}] not delivered within 15 s"
    assert not errors, f"delivery errors on {topic}[{partition}]: {errors}"
    return offsets


def read_timestamps(bootstrap: str, topic: str, partition: int, count: int, timeout: float = 30.0) -> Dict[int, Tuple[int, int]]:
    """offset -> (timestamp type, timestamp) of the first `count` records."""
    c = Consumer(
        {
            **base_conf(bootstrap),
            "group.id": "obs-ts-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 100,
        }
    )
    out: Dict[int, Tuple[int, int]] = {}
    try:
        c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, f"consume {topic}[{partition}]: {m.error()!r}"
            out[m.offset()] = m.timestamp()
    finally:
        c.close()
    assert len(out) >= count, f"read {len(out)} of {count} records of {topic}[{partition}] within {timeout}s"
    return out


class Committer:
    """A confluent-kafka consumer used only to commit chosen offsets for a
    group (simple commits, no subscription)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.group = group
        self.c = Consumer(
            {
                **base_conf(bootstrap),
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            }
        )

    def commit(self, offsets: Dict[Tuple[str, int], int]) -> float:
        """Commit synchronously; returns the wall time (s) of the commit."""
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        t = time.time()
        res = self.c.commit(offsets=tps, asynchronous=False)
        bad = [tp for tp in (res or []) if tp.error is not None]
        assert not bad, f"group {self.group}: commit errors {bad}"
        return t

    def close(self) -> None:
        self.c.close()


def run_cli(sluice_bin: Path, *args: str, timeout: float = CLI_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
    argv = [str(sluice_bin), *args]
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"`{' '.join(argv)}` did not finish within {timeout}s; output so far: {e.stdout!r} {e.stderr!r}")
    if check:
        assert cp.returncode == 0, (
            f"`{' '.join(argv)}` exited {cp.returncode}\nstdout:\n{cp.stdout}\nstderr:\n{cp.stderr}"
        )
    return cp


def parse_table(text: str, first_header: str) -> List[Dict[str, str]]:
    """Rows of the column-aligned table whose header line starts with
    `first_header`: each cell starts at its header's column (cells may hold
    spaces, e.g. "876.0 B")."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.split()[:1] == [first_header]:
            starts = [m.start() for m in re.finditer(r"\S+", line)]
            header = line.split()
            rows = []
            for row in lines[i + 1 :]:
                if not row.strip():
                    break
                for s in starts[1:]:
                    assert s <= len(row) and row[s - 1] == " ", (
                        f"row {row!r} is not aligned with header {line!r}"
                    )
                bounds = starts[1:] + [None]
                cells = [row[a:b].strip() for a, b in zip(starts, bounds)]
                rows.append(dict(zip(header, cells)))
            return rows
    raise AssertionError(f"no table with header {first_header!r} in output:\n{text}")


def age_bounds(scr: Scrape, ts_ms: int) -> Tuple[float, float]:
    """Allowed range for 'now - ts' in seconds at the time of the scrape."""
    return (scr.t_before_ms - ts_ms) / 1000.0 - AGE_TOL, (scr.t_after_ms - ts_ms) / 1000.0 + AGE_TOL


# ---------------------------------------------------------------------------
# 1. Exact lag and event age
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(180)
def test_lag_and_lag_seconds_are_exact(broker, sluice_bin):
    topic = "lag-exact"
    group = "lag-exact-g"
    create_topic(broker.bootstrap, topic, 4)
    base = now_ms()
    counts = {0: 10, 1: 5, 2: 7, 3: 3}
    # Distinct, known CreateTime timestamps per partition: now-600 s + i s,
    # shifted by 100 s per partition so a wrong partition shows.
    ts = {p: [base - 600_000 - p * 100_000 + i * 1000 for i in range(n)] for p, n in counts.items()}
    for p, n in counts.items():
        offs = produce_one_per_batch(broker.bootstrap, topic, p, ts[p], value_prefix=b"p%d" % p)
        assert offs == list(range(n)), f"{topic}[{p}] offsets {offs}"
    # The broker must have kept our timestamps (else the age check is moot).
    for p, n in counts.items():
        got = read_timestamps(broker.bootstrap, topic, p, n)
        for o in range(n):
            assert got[o] == (1, ts[p][o]), f"{topic}[{p}]@{o}: timestamp {got[o]}, sent CreateTime {ts[p][o]}"

    committed = {0: 4, 1: 5, 2: 0}  # p1 caught up, p3 never committed
    c = Committer(broker.bootstrap, group)
    try:
        c.commit({(topic, p): o for p, o in committed.items()})
    finally:
        c.close()

    scr = scrape(broker)
    assert not scr.duplicates, f"duplicate series on /metrics: {scr.duplicates[:5]}"
    lag_seconds = {}
    for p, off in committed.items():
        lab = dict(consumergroup=group, topic=topic, partition=p)
        assert scr.one("kafka_consumergroup_current_offset", **lab) == off
        lag = scr.one("kafka_consumergroup_lag", **lab)
        assert lag == counts[p] - off, f"partition {p}: lag {lag}, expected hw {counts[p]} - committed {off}"
        ls = scr.one("kafka_consumergroup_lag_seconds", **lab)
        lag_seconds[p] = ls
        if off >= counts[p]:
            assert ls == 0, f"partition {p} is caught up but lag_seconds is {ls}"
        else:
            lo, hi = age_bounds(scr, ts[p][off])
            assert lo <= ls <= hi, (
                f"partition {p}: lag_seconds {ls}, expected now - ts(offset {off}) = "
                f"{(scr.t_before_ms - ts[p][off]) / 1000:.3f}..{(scr.t_after_ms - ts[p][off]) / 1000:.3f} (±{AGE_TOL})"
            )
        assert scr.one("kafka_topic_partition_current_offset", topic=topic, partition=p) == counts[p]
        assert scr.one("kafka_topic_partition_oldest_offset", topic=topic, partition=p) == 0
    # Lag series exist only for committed partitions.
    for fam in ("kafka_consumergroup_lag", "kafka_consumergroup_lag_seconds", "kafka_consumergroup_current_offset"):
        assert scr.select(fam, consumergroup=group, partition=3) == {}, f"{fam} has a series for uncommitted partition 3"
        assert len(scr.select(fam, consumergroup=group)) == 3, scr.lines(fam)
    assert scr.one("kafka_topic_partition_current_offset", topic=topic, partition=3) == 3
    assert scr.one("kafka_topic_partitions", topic=topic) == 4
    assert scr.one("kafka_brokers") == 1
    # Sums and max are consistent with the per-partition values.
    assert scr.one("kafka_consumergroup_lag_sum", consumergroup=group, topic=topic) == sum(
        counts[p] - o for p, o in committed.items()
    )
    assert scr.one("kafka_consumergroup_current_offset_sum", consumergroup=group, topic=topic) == sum(committed.values())
    mx = scr.one("kafka_consumergroup_lag_seconds_max", consumergroup=group)
    assert mx == max(lag_seconds.values()), f"lag_seconds_max {mx} != max of partitions {lag_seconds}"
    lo, hi = age_bounds(scr, ts[2][0])  # p2 committed at 0 holds the oldest uncommitted record
    assert lo <= mx <= hi, f"lag_seconds_max {mx} not in [{lo}, {hi}]"
    assert scr.one("kafka_consumergroup_members", consumergroup=group) == 0

    # The JSON view agrees.
    t0 = now_ms()
    g = get_json(broker, f"/v1/groups/{group}")
    t1 = now_ms()
    assert g["group"] == group
    assert g["total_lag"] == sum(counts[p] - o for p, o in committed.items()), g
    parts = {(x["topic"], x["partition"]): x for x in g["partitions"]}
    assert set(parts) == {(topic, p) for p in committed}, f"partitions in /v1/groups: {sorted(parts)}"
    for p, off in committed.items():
        x = parts[(topic, p)]
        assert x["current_offset"] == off and x["log_end_offset"] == counts[p] and x["lag"] == counts[p] - off, x
        if off >= counts[p]:
            assert x["lag_seconds"] == 0, x
        else:
            exp_lo = (t0 - ts[p][off]) / 1000 - AGE_TOL
            exp_hi = (t1 - ts[p][off]) / 1000 + AGE_TOL
            assert exp_lo <= x["lag_seconds"] <= exp_hi, f"partition {p}: {x}, expected {exp_lo}..{exp_hi}"
    assert abs(g["max_lag_seconds"] - max(x["lag_seconds"] for x in g["partitions"])) < 1e-6, g

    # Catch p0 up: lag and age drop to 0; then one new record 30 s old.
    c = Committer(broker.bootstrap, group)
    try:
        c.commit({(topic, 0): counts[0]})
        scr = scrape(broker)
        lab = dict(consumergroup=group, topic=topic, partition=0)
        assert scr.one("kafka_consumergroup_lag", **lab) == 0
        assert scr.one("kafka_consumergroup_lag_seconds", **lab) == 0
        ts_new = now_ms() - 30_000
        offs = produce_one_per_batch(broker.bootstrap, topic, 0, [ts_new])
        assert offs == [counts[0]]
        scr = scrape(broker)
        assert scr.one("kafka_consumergroup_lag", **lab) == 1
        ls = scr.one("kafka_consumergroup_lag_seconds", **lab)
        lo, hi = age_bounds(scr, ts_new)
        assert lo <= ls <= hi, f"after one new record 30 s old: lag_seconds {ls}, expected {lo}..{hi}"
    finally:
        c.close()


@pytest.mark.e2e_timeout(120)
def test_lag_and_lag_seconds_after_a_restart(broker):
    """Committed offsets survive a restart and event ages are then read back
    from stored data (no in-memory tail): same lag, same record timestamps."""
    topic = "lag-restart"
    group = "lag-restart-g"
    create_topic(broker.bootstrap, topic, 2)
    base = now_ms() - 1_800_000
    ts = {p: [base + p * 200_000 + i * 1000 for i in range(8)] for p in (0, 1)}
    for p in (0, 1):
        produce_one_per_batch(broker.bootstrap, topic, p, ts[p])
    c = Committer(broker.bootstrap, group)
    try:
        c.commit({(topic, 0): 3, (topic, 1): 6})
    finally:
        c.close()
    before = scrape(broker)
    rc = broker.stop()
    assert rc == 0, f"broker exited {rc} on SIGTERM"
    broker.restart()
    after = scrape(broker)
    for p, off in ((0, 3), (1, 6)):
        lab = dict(consumergroup=group, topic=topic, partition=p)
        for scr, when in ((before, "before restart"), (after, "after restart")):
            assert scr.one("kafka_consumergroup_lag", **lab) == 8 - off, when
            assert scr.one("kafka_consumergroup_current_offset", **lab) == off, when
            ls = scr.one("kafka_consumergroup_lag_seconds", **lab)
            lo, hi = age_bounds(scr, ts[p][off])
            assert lo <= ls <= hi, f"partition {p} {when}: lag_seconds {ls}, expected {lo}..{hi}"
    assert after.one("kafka_topic_partition_current_offset", topic=topic, partition=1) == 8


@pytest.mark.e2e_timeout(120)
def test_lag_seconds_of_a_record_inside_a_batch_uses_that_record(broker):
    """A 5-record batch (one raw Produce request) whose records are 10 s
    apart; committing into its middle gives the age of the first
    uncommitted record (issue 19: the batch is decoded), not the batch's
    first timestamp, which would be 20 s older."""
    topic = "lag-batch"
    group = "lag-batch-g"
    create_topic(broker.bootstrap, topic, 1)
    first_ts = now_ms() - 300_000
    recs = [kw.Record(key=b"k%d" % i, value=b"v%d" % i, timestamp_delta=i * 10_000) for i in range(5)]
    with kw.WireConnection("127.0.0.1", broker.kafka_port, timeout=15) as conn:
        res = conn.produce(topic, 0, kw.build_record_batch(recs, base_timestamp=first_ts))
    assert res.error_code == 0 and res.base_offset == 0, res
    c = Committer(broker.bootstrap, group)
    try:
        c.commit({(topic, 0): 2})
    finally:
        c.close()
    scr = scrape(broker)
    lab = dict(consumergroup=group, topic=topic, partition=0)
    assert scr.one("kafka_consumergroup_lag", **lab) == 3
    ls = scr.one("kafka_consumergroup_lag_seconds", **lab)
    lo, hi = age_bounds(scr, first_ts + 20_000)
    assert lo <= ls <= hi, f"lag_seconds {ls}, expected record 2's age {lo}..{hi} (the batch's first: +20 s)"


# ---------------------------------------------------------------------------
# 2. Burrow statuses from a scripted committer
# ---------------------------------------------------------------------------

# Per scenario, per tick (about 1 s apart): records to produce before the
# commit, and the offset to commit (None: no commit). Every topic starts with
# 20 records. See the module docstring of crates/observe/src/burrow.rs for the
# rules; expected statuses in comments.
INITIAL = 20
TICKS = 6
SCENARIOS = {
    # lag reaches 0 at tick 2, then the group stays caught up; 3 more records
    # at the end make the current lag 3 > 0, still OK (a zero lag in window).
    "ok": dict(produce=[0] * TICKS, commit=[5, 10, 20, 20, 20, 20], status="OK"),
    # offset moves and the lag shrinks every commit (never 0): OK.
    "shrink": dict(produce=[1] * TICKS, commit=[2, 6, 10, 14, 18, 22], status="OK"),
    # offset moves, but the lag grows every commit: WARN.
    "warn": dict(produce=[5] * TICKS, commit=[1, 2, 3, 4, 5, 6], status="WARN"),
    # same offset committed again and again while records keep coming: STALL.
    "stall": dict(produce=[2] * TICKS, commit=[3] * TICKS, status="STALL"),
    # two commits 1 s apart (lag shrinking), then silence for > 4 s: STOP.
    "stop": dict(produce=[0] * TICKS, commit=[2, 4, None, None, None, None], status="STOP"),
    # the committed offset goes backwards (15 -> 8): REWIND.
    "rewind": dict(produce=[0] * TICKS, commit=[5, 10, 15, 8, 12, 14], status="REWIND"),
}
# Groups committing several scenarios' partitions: the group rollup.
MIXED = {"mix-warn": (["warn", "shrink"], "WARN"), "mix-err": (["warn", "stall", "shrink"], "ERR")}
GROUP_OF_STATUS = {"OK": "OK", "WARN": "WARN", "STOP": "ERR", "STALL": "ERR", "REWIND": "ERR"}


@pytest.mark.e2e_timeout(180)
def test_burrow_statuses_from_a_scripted_committer(broker, sluice_bin):
    topics = {name: f"burrow-{name}" for name in SCENARIOS}
    for t in topics.values():
        create_topic(broker.bootstrap, t, 1)
    producer = make_producer(broker.bootstrap, **{"linger.ms": 0})
    hw = {name: 0 for name in SCENARIOS}

    def produce(name: str, n: int) -> None:
        for i in range(n):
            producer.produce(topics[name], partition=0, value=b"x" * 50)
        assert producer.flush(15) == 0, f"produce to {topics[name]} not delivered"
        hw[name] += n

    for name in SCENARIOS:
        produce(name, INITIAL)

    committers = {name: Committer(broker.bootstrap, f"g-{name}") for name in SCENARIOS}
    committers.update({g: Committer(broker.bootstrap, f"g-{g}") for g in MIXED})
    # (group key, scenario) -> list of (time, offset, lag at commit)
    history: Dict[Tuple[str, str], list] = defaultdict(list)
    stop_seen_ok = None
    try:
        tick_start = time.monotonic()
        for tick in range(TICKS):
            # Keep a steady ~1 s cadence.
            delay = tick_start + tick * 1.0 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for name, sc in SCENARIOS.items():
                produce(name, sc["produce"][tick])
            for name, sc in SCENARIOS.items():
                off = sc["commit"][tick]
                if off is None:
                    continue
                t = committers[name].commit({(topics[name], 0): off})
                history[(name, name)].append((t, off, hw[name] - off))
            for g, (names, _) in MIXED.items():
                offs = {(topics[n], 0): SCENARIOS[n]["commit"][tick] for n in names}
                t = committers[g].commit(offs)
                for n in names:
                    history[(g, n)].append((t, SCENARIOS[n]["commit"][tick], hw[n] - SCENARIOS[n]["commit"][tick]))
            if tick == 1:
                # Two commits with a shrinking lag, just now: not stopped yet.
                d = get_json(broker, "/v1/groups/g-stop")
                stop_seen_ok = d["partitions"][0]["status"]
        last_commit = time.time()
        # ok: new records arrive after the group caught up.
        produce("ok", 3)
        # The STOP scenario's last commit was at tick 1; its window spans ~1 s.
        # Everything is read well inside the other scenarios' 5 s span.
        t_read = time.time()
        scr = scrape(broker, "/metrics?detail=partition")
        groups = {g: get_json(broker, f"/v1/groups/g-{g}") for g in list(SCENARIOS) + list(MIXED)}
        t_done = time.time()
    finally:
        for c in committers.values():
            c.close()
        producer.flush(5)

    assert t_done - last_commit < 3.5, (
        f"reading the statuses took until {t_done - last_commit:.1f}s after the last commit; "
        "the 5 s window would expire (test machine too slow)"
    )
    stop_last = history[("stop", "stop")][-1][0]
    assert t_read - stop_last > 2 * (stop_last - history[("stop", "stop")][0][0]) + 0.5, "STOP precondition"
    assert stop_seen_ok == "OK", f"g-stop right after its 2nd commit (lag shrinking) was {stop_seen_ok}, expected OK"

    problems = []
    for name, sc in SCENARIOS.items():
        g = f"g-{name}"
        d = groups[name]
        parts = d["partitions"]
        assert len(parts) == 1, d
        want = sc["status"]
        if parts[0]["status"] != want:
            problems.append(f"{g}: /v1/groups partition status {parts[0]['status']}, expected {want}; history {history[(name, name)]}; {parts[0]}")
        if d["status"] != GROUP_OF_STATUS[want]:
            problems.append(f"{g}: /v1/groups group status {d['status']}, expected {GROUP_OF_STATUS[want]}")
        got = scr.select("sluice_consumergroup_partition_status", consumergroup=g, topic=topics[name], partition=0)
        statuses = {dict(lab)["status"]: v for lab, v in got.items()}
        if statuses != {want: 1.0}:
            problems.append(f"{g}: sluice_consumergroup_partition_status {statuses}, expected {{{want!r}: 1}}")
        counts = {dict(lab)["status"]: v for lab, v in scr.select("sluice_consumergroup_partitions", consumergroup=g).items()}
        expected_counts = {st: (1.0 if st == want else 0.0) for st in ("OK", "WARN", "STOP", "STALL", "REWIND")}
        if counts != expected_counts:
            problems.append(f"{g}: sluice_consumergroup_partitions {counts}, expected {expected_counts}")
        gs = {dict(lab)["status"]: v for lab, v in scr.select("sluice_consumergroup_status", consumergroup=g).items()}
        if gs != {GROUP_OF_STATUS[want]: 1.0}:
            problems.append(f"{g}: sluice_consumergroup_status {gs}, expected {{{GROUP_OF_STATUS[want]!r}: 1}}")
        # The reported lag is the current one.
        exp_lag = hw[name] - sc["commit"][max(i for i in range(TICKS) if sc["commit"][i] is not None)]
        if parts[0]["lag"] != exp_lag:
            problems.append(f"{g}: lag {parts[0]['lag']}, expected {exp_lag}")
    for g, (names, want) in MIXED.items():
        d = groups[g]
        if d["status"] != want:
            problems.append(f"g-{g}: group status {d['status']} expected {want}; partitions {d['partitions']}")
        gs = {dict(lab)["status"]: v for lab, v in scr.select("sluice_consumergroup_status", consumergroup=f"g-{g}").items()}
        if gs != {want: 1.0}:
            problems.append(f"g-{g}: sluice_consumergroup_status {gs}, expected {{{want!r}: 1}}")
        per = {p["topic"]: p["status"] for p in d["partitions"]}
        for n in names:
            if per.get(topics[n]) != SCENARIOS[n]["status"]:
                problems.append(f"g-{g}: partition {topics[n]} status {per.get(topics[n])}, expected {SCENARIOS[n]['status']}")

    # Lag trend: slope of the lag over the commit window, records per second.
    for name, sign in (("warn", 1), ("shrink", -1)):
        h = history[(name, name)]
        expected = (h[-1][2] - h[0][2]) / (h[-1][0] - h[0][0])
        assert expected * sign > 0
        rate = scr.one("sluice_consumergroup_lag_rate", consumergroup=f"g-{name}", topic=topics[name], partition=0)
        rate_sum = scr.one("sluice_consumergroup_topic_lag_rate", consumergroup=f"g-{name}", topic=topics[name])
        trend = groups[name]["partitions"][0]["trend"]
        for what, v in (("sluice_consumergroup_lag_rate", rate), ("sluice_consumergroup_topic_lag_rate", rate_sum),
                        ("/v1 trend", trend)):
            if not (abs(v - expected) <= 0.15 * abs(expected)):
                problems.append(f"g-{name}: {what} {v}, expected about {expected:.3f} records/s from commits {h}")
    assert not problems, "Burrow status problems:\n  " + "\n  ".join(problems)

    # The CLI shows the same statuses.
    out = run_cli(sluice_bin, "groups", "--http", f"127.0.0.1:{broker.http_port}", "describe", "g-rewind").stdout
    rows = parse_table(out, "GROUP")
    assert [r["STATUS"] for r in rows] == ["REWIND"], out


# ---------------------------------------------------------------------------
# 3. The whole page parses; families, label names, types and values
# ---------------------------------------------------------------------------

GAUGE, COUNTER, HISTOGRAM = "gauge", "counter", "histogram"
# sample name -> (family type, label names)
EXPECTED_SERIES = {
    "kafka_brokers": (GAUGE, set()),
    "kafka_topic_partitions": (GAUGE, {"topic"}),
    "kafka_topic_partition_current_offset": (GAUGE, {"topic", "partition"}),
    "kafka_topic_partition_oldest_offset": (GAUGE, {"topic", "partition"}),
    "kafka_consumergroup_members": (GAUGE, {"consumergroup"}),
    "kafka_consumergroup_current_offset": (GAUGE, {"consumergroup", "topic", "partition"}),
    "kafka_consumergroup_current_offset_sum": (GAUGE, {"consumergroup", "topic"}),
    "kafka_consumergroup_lag": (GAUGE, {"consumergroup", "topic", "partition"}),
    "kafka_consumergroup_lag_sum": (GAUGE, {"consumergroup", "topic"}),
    "kafka_consumergroup_lag_seconds": (GAUGE, {"consumergroup", "topic", "partition"}),
    "kafka_consumergroup_lag_seconds_max": (GAUGE, {"consumergroup"}),
    "sluice_consumergroup_partitions": (GAUGE, {"consumergroup", "status"}),
    "sluice_consumergroup_status": (GAUGE, {"consumergroup", "status"}),
    "sluice_consumergroup_topic_lag_rate": (GAUGE, {"consumergroup", "topic"}),
    "sluice_dlq_records": (GAUGE, {"topic"}),
    "sluice_dlq_oldest_record_age_seconds": (GAUGE, {"topic"}),
    "sluice_requests_total": (COUNTER, {"api"}),
    "sluice_request_duration_seconds_bucket": (HISTOGRAM, {"api", "le"}),
    "sluice_request_duration_seconds_sum": (HISTOGRAM, {"api"}),
    "sluice_request_duration_seconds_count": (HISTOGRAM, {"api"}),
    "sluice_topic_bytes_in_total": (COUNTER, {"topic"}),
    "sluice_topic_bytes_out_total": (COUNTER, {"topic"}),
    "sluice_topic_records_in_total": (COUNTER, {"topic"}),
    "sluice_topic_records_out_total": (COUNTER, {"topic"}),
    "sluice_connections": (GAUGE, set()),
    "sluice_connections_accepted_total": (COUNTER, set()),
    "sluice_wal_fsync_duration_seconds_bucket": (HISTOGRAM, {"le"}),
    "sluice_wal_fsync_duration_seconds_sum": (HISTOGRAM, set()),
    "sluice_wal_fsync_duration_seconds_count": (HISTOGRAM, set()),
    "sluice_wal_bytes_total": (COUNTER, set()),
    "sluice_object_store_requests_total": (COUNTER, {"op", "outcome"}),
    "sluice_object_store_request_duration_seconds_bucket": (HISTOGRAM, {"op", "le"}),
    "sluice_object_store_request_duration_seconds_sum": (HISTOGRAM, {"op"}),
    "sluice_object_store_request_duration_seconds_count": (HISTOGRAM, {"op"}),
    "sluice_objects_written_total": (COUNTER, set()),
    "sluice_upload_bytes_total": (COUNTER, set()),
    "sluice_upload_backlog_bytes": (GAUGE, set()),
    "sluice_fetch_reads_total": (COUNTER, {"source"}),
    "sluice_memory_bytes": (GAUGE, {"kind"}),
}
# Per-partition Burrow status and lag rate: only on /metrics?detail=partition
# (or with the broker setting metrics_partition_detail).
DETAIL_SERIES = {
    "sluice_consumergroup_partition_status": (GAUGE, {"consumergroup", "topic", "partition", "status"}),
    "sluice_consumergroup_lag_rate": (GAUGE, {"consumergroup", "topic", "partition"}),
}
# Kafka Connect / Spring / custom dead-letter topic naming conventions.
DLQ_TOPICS = ["orders-dlq", "orders.dlq", "orders_dlq", "orders-dlt", "orders.DLT", "dlq.orders"]
NOT_DLQ_TOPICS = ["orders", "dlqueue", "dlq"]

# A group id with characters that need escaping in the text format.
WEIRD_GROUP = 'we"ird\\group\nname-é'


def populate(broker, dlq_topics=DLQ_TOPICS) -> dict:
    """A broker with produce, fetch, committed offsets (normal and oddly
    named group), an active member and dead-letter topics. Returns facts."""
    facts: dict = {"dlq": {}}
    create_topic(broker.bootstrap, "orders", 2)
    for t in NOT_DLQ_TOPICS[1:]:
        create_topic(broker.bootstrap, t, 1)
    p = make_producer(broker.bootstrap)
    for i in range(40):
        p.produce("orders", partition=i % 2, key=b"o%d" % i, value=b"order-%d" % i)
    assert p.flush(15) == 0
    dlq_ts = now_ms() - 120_000
    for i, t in enumerate(dlq_topics):
        create_topic(broker.bootstrap, t, 1)
        n = i + 1
        produce_one_per_batch(broker.bootstrap, t, 0, [dlq_ts + j * 1000 for j in range(n)])
        facts["dlq"][t] = (n, dlq_ts)
    # Fetch something (records_out, bytes_out, fetch reads).
    got = read_timestamps(broker.bootstrap, "orders", 0, 20)
    assert len(got) >= 20
    c = Committer(broker.bootstrap, "obs-group")
    try:
        c.commit({("orders", 0): 5, ("orders", 1): 20})
    finally:
        c.close()
    c = Committer(broker.bootstrap, WEIRD_GROUP)
    try:
        c.commit({("orders", 0): 7})
    finally:
        c.close()
    return facts


def wait_for_series(broker, names: Iterable[str], timeout: float = 20.0, path: str = "/metrics") -> Scrape:
    """Scrape until all sample names appear (uploads are asynchronous)."""
    names = set(names)
    deadline = time.monotonic() + timeout
    while True:
        scr = scrape(broker, path)
        missing = names - scr.names()
        if not missing or time.monotonic() > deadline:
            return scr
        time.sleep(0.5)


@pytest.mark.e2e_timeout(180)
def test_metrics_page_parses_with_the_expected_families(broker):
    facts = populate(broker)
    scr = wait_for_series(broker, EXPECTED_SERIES)
    assert not scr.duplicates, f"duplicate series: {scr.duplicates[:10]}"
    detailed = wait_for_series(broker, list(EXPECTED_SERIES) + list(DETAIL_SERIES), path="/metrics?detail=partition")
    assert not detailed.duplicates, f"duplicate series: {detailed.duplicates[:10]}"

    problems = []
    for page, expected in ((scr, EXPECTED_SERIES), (detailed, {**EXPECTED_SERIES, **DETAIL_SERIES})):
        missing = sorted(set(expected) - page.names())
        if missing:
            problems.append(f"missing from /metrics: {missing}")
        for name, (typ, labels) in expected.items():
            if name not in page.names():
                continue
            fam = page.family_of[name]
            if fam.type != typ:
                problems.append(f"{name}: family {fam.name} has TYPE {fam.type}, expected {typ}")
            got = page.label_names(name)
            if got != {frozenset(labels)}:
                problems.append(f"{name}: label names {sorted(map(sorted, got))}, expected {sorted(labels)}")
    extra = sorted(set(DETAIL_SERIES) & scr.names())
    if extra:
        problems.append(f"per-partition detail families on the default page: {extra}")
    assert not problems, "\n".join(problems)

    status, ctype, body = http_get(broker, "/metrics?detail=everything")
    assert status == 400 and "application/json" in ctype, (status, ctype, body[:300])
    assert "detail" in json.loads(body)["message"], body[:300]

    # Values that are known exactly.
    assert scr.one("kafka_brokers") == 1
    assert scr.one("sluice_topic_records_in_total", topic="orders") == 40
    assert scr.one("sluice_topic_bytes_in_total", topic="orders") > 0
    assert scr.one("sluice_topic_records_out_total", topic="orders") >= 20
    assert scr.one("sluice_topic_bytes_out_total", topic="orders") > 0
    assert scr.one("sluice_connections_accepted_total") >= 1
    assert scr.one("sluice_wal_bytes_total") > 0
    assert scr.one("sluice_objects_written_total") >= 1
    for api in ("Produce", "Fetch", "OffsetCommit", "Metadata"):
        n = scr.one("sluice_requests_total", api=api)
        assert n >= 1, f"sluice_requests_total{{api={api!r}}} = {n}"
        cnt = scr.one("sluice_request_duration_seconds_count", api=api)
        assert cnt >= 1, f"request duration count for {api} is {cnt}"
    assert sum(scr.select("sluice_fetch_reads_total").values()) >= 1

    # Histograms: cumulative buckets, +Inf bucket == count.
    for hist in ("sluice_request_duration_seconds", "sluice_wal_fsync_duration_seconds", "sluice_object_store_request_duration_seconds"):
        by_series: Dict[tuple, list] = defaultdict(list)
        for lab, v in scr.select(hist + "_bucket").items():
            d = dict(lab)
            le = d.pop("le")
            by_series[tuple(sorted(d.items()))].append((math.inf if le == "+Inf" else float(le), v))
        assert by_series, f"{hist}: no buckets"
        for rest, buckets in by_series.items():
            buckets.sort()
            vals = [v for _, v in buckets]
            assert vals == sorted(vals), f"{hist}{dict(rest)}: buckets not cumulative {buckets}"
            assert buckets[-1][0] == math.inf, f"{hist}{dict(rest)}: no +Inf bucket"
            count = scr.one(hist + "_count", **dict(rest))
            assert buckets[-1][1] == count, f"{hist}{dict(rest)}: +Inf bucket {buckets[-1][1]} != count {count}"

    # DLQ depth and age; non-DLQ topics are not listed.
    for t, (n, ts0) in facts["dlq"].items():
        assert scr.one("sluice_dlq_records", topic=t) == n, f"sluice_dlq_records{{topic={t!r}}}"
        age = scr.one("sluice_dlq_oldest_record_age_seconds", topic=t)
        lo, hi = age_bounds(scr, ts0)
        assert lo <= age <= hi, f"sluice_dlq_oldest_record_age_seconds{{topic={t!r}}} = {age}, expected {lo}..{hi}"
    for t in NOT_DLQ_TOPICS:
        assert scr.select("sluice_dlq_records", topic=t) == {}, f"{t} is not a dead-letter topic: {scr.lines('sluice_dlq_records')}"

    # A group id that needs escaping round-trips through the text format.
    assert scr.one("kafka_consumergroup_lag", consumergroup=WEIRD_GROUP, topic="orders", partition=0) == 20 - 7
    assert scr.one("kafka_consumergroup_current_offset", consumergroup="obs-group", topic="orders", partition=1) == 20


@pytest.mark.e2e_timeout(120)
def test_promtool_lints_the_metrics_page(broker):
    """promtool's linter on the live page: only the two `_sum` names that
    kafka-exporter compatibility requires may be reported."""
    promtool = _promtool()
    populate(broker)
    scr = wait_for_series(broker, ["sluice_objects_written_total"])
    cp = subprocess.run([promtool, "check", "metrics"], input=scr.text, capture_output=True, text=True, timeout=60)
    allowed = {
        "kafka_consumergroup_current_offset_sum",  # kafka-exporter's name
        "kafka_consumergroup_lag_sum",  # kafka-exporter's name
    }
    problems = []
    for line in (cp.stdout + cp.stderr).splitlines():
        if not line.strip():
            continue
        first = line.split()[0]
        if first in allowed and "should not have \"_sum\" suffix" in line:
            continue
        problems.append(line)
    assert not problems, "promtool check metrics reported:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------
# 4. Alert rules and dashboard
# ---------------------------------------------------------------------------


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: apt-get install -y prometheus (Debian package; "
            "scripts/install-test-deps.sh)",
            pytrace=False,
        )
    return path


PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "inf", "nan", "atan2",
}
PROMQL_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
# Series Prometheus itself makes, not the broker.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def metric_names_in_expr(expr: str) -> set:
    """Metric names a PromQL expression selects: identifiers that are not
    functions/aggregations (followed by '('), keywords, label names inside
    {...} or by/without/on/ignoring/group_x(...), strings, durations or
    numbers."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)", s):
        name = m.group(1)
        if re.match(r"\s*\(", s[m.end():]):
            continue  # function call or aggregation
        if name.lower() in PROMQL_KEYWORDS or name in PROMQL_AGGREGATIONS:
            continue
        names.add(name)
    return names


def test_metric_name_extractor_self_check():
    e = 'histogram_quantile(0.99, sum by (le, api) (rate(foo_bucket{api!="x",le=~"1.*"}[5m]))) > 0.5 and on (api) bar_total offset 1h or absent(baz) unless sum without(job) (qux) * 1e3'
    assert metric_names_in_expr(e) == {"foo_bucket", "bar_total", "baz", "qux"}
    assert metric_names_in_expr('up{job="sluice"} == 0 or absent(kafka_brokers)') == {"up", "kafka_brokers"}
    assert metric_names_in_expr("sum by (consumergroup) (delta(x[15m])) > 0 and y > 512 * 1024") == {"x", "y"}


def alert_exprs() -> List[Tuple[str, str]]:
    try:
        import yaml
    except ImportError as e:
        pytest.fail(f"PyYAML not importable ({e}): pip install PyYAML", pytrace=False)
    doc = yaml.safe_load(ALERTS_YML.read_text())
    out = []
    for g in doc["groups"]:
        for r in g["rules"]:
            out.append((r.get("alert") or r.get("record"), r["expr"]))
    assert out, f"no rules in {ALERTS_YML}"
    return out


def grafana_exprs() -> List[Tuple[str, str]]:
    doc = json.loads(GRAFANA_JSON.read_text())
    out = []

    def walk(o, where):
        if isinstance(o, dict):
            title = o.get("title", where)
            for t in o.get("targets", []) or []:
                if isinstance(t, dict) and t.get("expr"):
                    out.append((str(title), t["expr"]))
            for k, v in o.items():
                if k != "targets":
                    walk(v, title)
        elif isinstance(o, list):
            for x in o:
                walk(x, where)

    walk(doc, "dashboard")
    assert out, f"no target expressions in {GRAFANA_JSON}"
    return out


def test_promtool_check_rules_passes():
    promtool = _promtool()
    cp = subprocess.run([promtool, "check", "rules", str(ALERTS_YML)], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, f"promtool check rules failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}"
    assert "SUCCESS" in cp.stdout, cp.stdout
    n = len(alert_exprs())
    assert f"{n} rules found" in cp.stdout, f"promtool saw a different number of rules than {n}:\n{cp.stdout}"


@pytest.mark.e2e_timeout(180)
def test_alerts_and_dashboard_reference_only_exported_metrics(broker):
    populate(broker)
    scr = wait_for_series(broker, EXPECTED_SERIES)
    exported = scr.names()
    problems = []
    for source, exprs in (("alerts.yml", alert_exprs()), ("sluice.json", grafana_exprs())):
        seen = set()
        for what, expr in exprs:
            names = metric_names_in_expr(expr)
            assert names, f"{source} {what}: no metric name found in {expr!r}"
            seen |= names
            for n in sorted(names - exported - PROMETHEUS_OWN):
                problems.append(f"{source} [{what}] uses {n}, which /metrics does not export (expr: {expr})")
        assert seen, source
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# 5. Admin API: topics, groups with a live member, errors
# ---------------------------------------------------------------------------


@pytest.mark.e2e_timeout(120)
def test_topics_api_matches_what_was_produced(broker):
    counts = {"api-a": {0: 4, 1: 0, 2: 9}, "api-b": {0: 2}}
    for t, parts in counts.items():
        create_topic(broker.bootstrap, t, len(parts))
    p = make_producer(broker.bootstrap)
    for t, parts in counts.items():
        for part, n in parts.items():
            for i in range(n):
                p.produce(t, partition=part, key=b"k", value=b"y" * 100)
    assert p.flush(15) == 0

    listing = get_json(broker, "/v1/topics")
    assert isinstance(listing, list), listing
    by_name = {x["topic"]: x for x in listing}
    for t, parts in counts.items():
        assert t in by_name, f"{t} missing from /v1/topics: {sorted(by_name)}"
        x = by_name[t]
        assert x["partitions"] == len(parts), x
        assert x["messages"] == sum(parts.values()), x
    scr = scrape(broker)
    for t, parts in counts.items():
        d = get_json(broker, f"/v1/topics/{t}")
        assert d["topic"] == t and d["partitions"] == len(parts) and d["messages"] == sum(parts.values()), d
        for k in ("size_bytes", "bytes_in_per_sec", "records_in_per_sec", "bytes_out_per_sec", "configs"):
            assert k in d, f"/v1/topics/{t} lacks {k}: {d}"
        det = {x["partition"]: x for x in d["partition_details"]}
        assert sorted(det) == sorted(parts), d["partition_details"]
        for part, n in parts.items():
            x = det[part]
            assert x["log_start_offset"] == 0 and x["log_end_offset"] == n, x
            if n == 0:
                assert x["size_bytes"] == 0, x
            else:
                # at least one record's worth of batch header + 100-byte value
                assert x["size_bytes"] >= 100 * n, x
            assert scr.one("kafka_topic_partition_current_offset", topic=t, partition=part) == n
        assert d["size_bytes"] == sum(x["size_bytes"] for x in d["partition_details"]), d
        assert d["size_bytes"] <= scr.one("sluice_topic_bytes_in_total", topic=t), d
        assert scr.one("sluice_topic_records_in_total", topic=t) == sum(parts.values())

    for path, what in (("/v1/topics/no-such-topic", "topic"), ("/v1/groups/no-such-group", "group")):
        err = get_json(broker, path, expect_status=404)
        assert err.get("error_code") == 404, f"GET {path}: {err}"
        assert isinstance(err.get("message"), str) and "no-such" in err["message"], f"GET {path}: {err}"


@pytest.mark.e2e_timeout(120)
def test_topic_throughput_rates(broker):
    """Produce ~200 records/s of ~1 KB for 8 s; /v1/topics/{t} reports rates
    of that order."""
    t = "rate-topic"
    create_topic(broker.bootstrap, t, 1)
    time.sleep(2.5)  # let the rate sampler see the topic at zero
    p = make_producer(broker.bootstrap, **{"linger.ms": 5})
    rate, secs, size = 200, 8.0, 1000
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < secs:
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            p.produce(t, value=b"r" * size)
            sent += 1
        p.poll(0)
        time.sleep(0.01)
    assert p.flush(15) == 0
    d = get_json(broker, f"/v1/topics/{t}")
    rin = d["records_in_per_sec"]
    bin_ = d["bytes_in_per_sec"]
    assert 0.5 * rate <= rin <= 1.3 * rate, f"records_in_per_sec {rin}, produced {rate}/s for {secs}s: {d}"
    assert 0.5 * rate * size <= bin_ <= 1.5 * rate * (size + 100), f"bytes_in_per_sec {bin_}: {d}"


def _wait_assignment(consumer: Consumer, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.poll(0.2)
        a = consumer.assignment()
        if a:
            return a
    raise AssertionError(f"no partitions assigned within {timeout}s")


@pytest.mark.e2e_timeout(180)
def test_group_with_a_live_member_and_the_cli_views(broker, sluice_bin):
    topic = "live"
    group = "live-g"
    create_topic(broker.bootstrap, topic, 2)
    base = now_ms() - 900_000
    for part in (0, 1):
        produce_one_per_batch(broker.bootstrap, topic, part, [base + part * 60_000 + i * 1000 for i in range(6)])
    cons = Consumer(
        {
            **base_conf(broker.bootstrap),
            "group.id": group,
            "client.id": "obs-live-client",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
        }
    )
    try:
        cons.subscribe([topic])
        assigned = _wait_assignment(cons)
        assert sorted(tp.partition for tp in assigned) == [0, 1], assigned
        res = cons.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 6)], asynchronous=False)
        assert all(tp.error is None for tp in res), res
        member_id = cons.memberid()
        assert member_id, "consumer has no member id"

        t0 = now_ms()
        d = get_json(broker, f"/v1/groups/{group}")
        t1 = now_ms()
        assert d["state"] == "Stable", d
        assert len(d["members"]) == 1, d
        parts = {x["partition"]: x for x in d["partitions"]}
        assert sorted(parts) == [0, 1], d
        for part, committed in ((0, 2), (1, 6)):
            x = parts[part]
            assert x["consumer_id"] == member_id, x
            assert x["client_id"] == "obs-live-client", x
            assert x["host"] and "127.0.0.1" in x["host"], x
            assert x["lag"] == 6 - committed, x
        exp_lo, exp_hi = (t0 - base - 2000) / 1000 - AGE_TOL, (t1 - base - 2000) / 1000 + AGE_TOL
        assert exp_lo <= parts[0]["lag_seconds"] <= exp_hi, (parts[0], exp_lo, exp_hi)
        assert parts[1]["lag_seconds"] == 0, parts[1]
        scr = scrape(broker)
        assert scr.one("kafka_consumergroup_members", consumergroup=group) == 1

        # sluice groups describe: LAG-SECONDS and STATUS columns.
        t0 = now_ms()
        out = run_cli(sluice_bin, "groups", "--http", f"127.0.0.1:{broker.http_port}", "describe", group).stdout
        t1 = now_ms()
        header = next(l for l in out.splitlines() if l.startswith("GROUP"))
        assert header.split() == [
            "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
            "LAG-SECONDS", "STATUS", "CONSUMER-ID", "HOST", "CLIENT-ID",
        ], header
        rows = {int(r["PARTITION"]): r for r in parse_table(out, "GROUP")}
        assert sorted(rows) == [0, 1], out
        r0 = rows[0]
        assert (r0["GROUP"], r0["TOPIC"], r0["CURRENT-OFFSET"], r0["LOG-END-OFFSET"], r0["LAG"]) == (group, topic, "2", "6", "4"), out
        ls = float(r0["LAG-SECONDS"])
        lo, hi = (t0 - base - 2000) / 1000 - AGE_TOL, (t1 - base - 2000) / 1000 + AGE_TOL
        assert lo <= ls <= hi, f"LAG-SECONDS {ls}, expected {lo}..{hi}\n{out}"
        assert float(rows[1]["LAG-SECONDS"]) == 0 and rows[1]["LAG"] == "0", out
        for r in rows.values():
            assert r["STATUS"] == "OK", out
            assert r["CONSUMER-ID"] == member_id and r["CLIENT-ID"] == "obs-live-client", out

        # sluice top --once: topic and group with its lag and status.
        out = run_cli(sluice_bin, "top", "--http", f"127.0.0.1:{broker.http_port}", "--once", timeout=30).stdout
        trows = {r["TOPIC"]: r for r in parse_table(out, "TOPIC")}
        assert topic in trows, out
        assert trows[topic]["MESSAGES"] == "12" and trows[topic]["PARTITIONS"] == "2", out
        grows = {r["GROUP"]: r for r in parse_table(out, "GROUP")}
        assert group in grows, out
        g = grows[group]
        assert g["LAG"] == "4" and g["STATUS"] == "OK" and g["MEMBERS"] == "1" and g["STATE"] == "Stable", out
        assert float(g["LAG-SECONDS"]) >= (t0 - base - 2000) / 1000 - AGE_TOL, out
    finally:
        cons.close()

    # After the member left, the group has no members.
    deadline = time.monotonic() + 20
    while True:
        d = get_json(broker, f"/v1/groups/{group}")
        if len(d["members"]) == 0:
            break
        assert time.monotonic() < deadline, f"member still listed 20 s after close: {d}"
        time.sleep(0.3)
    scr = scrape(broker)
    assert scr.one("kafka_consumergroup_members", consumergroup=group) == 0
    assert scr.one("kafka_consumergroup_lag", consumergroup=group, topic=topic, partition=0) == 4
