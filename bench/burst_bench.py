#!/usr/bin/env python3
"""Sluice cluster benchmark: a 10x produce burst against memory limits (issue 16).

Issue 16: "with brokers behind one bootstrap list, a 10x produce burst is
absorbed by backpressure and catch-up, not by memory growth: each broker's
memory stays within its configured limits."

Starts one PostgreSQL server (tests/e2e/pg_server.py), a fresh shared
file:// store (on /dev/shm) and three cluster brokers (the Broker/Cluster
helpers of bench/cluster_bench.py), each with explicit memory limits:
--max-unuploaded-bytes (bytes accepted but not yet in objects: produce
waits for this budget, which is the backpressure), --tail-cache-bytes and
--block-cache-bytes. A latency model on every broker (POST
/v1/debug/faults, fault injection on) makes every object PUT take a fixed
time, so the brokers' flush throughput (about budget / PUT time) lies below
the burst's rate but above the steady rate. Then:

  1. load      idempotent acks=all confluent-kafka producer processes,
               unpinned, bootstrap = all three brokers, at --rate msgs/s for
               --warmup + --steady seconds, then --burst-factor x --rate for
               --burst seconds, then --rate again for --catchup seconds.
               Every message's send and acknowledgement time is recorded.
  2. sample    every broker's RSS (/proc/PID/status VmRSS) every 100 ms and
               its /metrics (sluice_memory_bytes gauges, produced bytes,
               flush times) every 200 ms; the producers' queue lengths.
  3. report    per phase (steady / burst / catch-up): offered, sent and
               acknowledged msgs/s, produce latency p50/p99, bytes in flight
               to the store per broker, peak RSS per broker; baseline RSS
               (end of the steady phase), peak RSS over burst + catch-up,
               growth against max-unuploaded + tail cache + a stated slack;
               the machine's CPU (idle < 0.25 cores: CPU-BOUND).
  4. check     the topic is read back: every acknowledged record exactly
               once at the offset its acknowledgement gave, nothing else.

PASS/MISS lines: (1) each broker's RSS growth within its limits + slack;
(2) no acknowledged record lost or duplicated; (3) backpressure engaged
(a fact about the run, its precondition: without it the burst did not test
the limits); (4) catch-up: produce latency back within 1.5x the steady p99
before the end of the catch-up phase. Exit status: 0 when the run completed
and every line is PASS; 1 on a failure (broker died or did not exit on
SIGTERM, client error, a bounded wait ran out) or a MISS; 2 on a usage
problem. Every wait is bounded; brokers, clients and PostgreSQL are stopped
on every path (Ctrl-C included); the scratch dir is kept after a failure or
a MISS.

Needs confluent-kafka and PostgreSQL (scripts/install-test-deps.sh). See
bench/README.md ("Cluster burst benchmark").
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from array import array
from pathlib import Path

import cluster_bench as cb
from cluster_bench import HDR, BenchError, info
from scale_bench import read_back

MiB = 1 << 20

# The cluster write path (crates/storage/src/cluster.rs, log.rs): a produce
# request takes budget (--max-unuploaded-bytes) for its batches before they
# join the open flush, and gives it back when their flush is committed; a
# connection whose request waits for budget reads nothing more. So each byte
# holds budget for at least the flush interval (the open flush's age when
# sealed, at most) plus the PUT plus the commit, and a broker flushes at most
# budget / (PUT + interval) bytes/s. (Sealed flushes are PUT concurrently, up
# to 6, and an open flush grows past --flush-bytes while they are busy, so
# the PUT count does not bound it.)
# Observed here: an idempotent librdkafka producer has one batch per
# partition in flight while the broker takes ~1.5 s to answer (it sends the
# next once the previous is acknowledged), each at most batch.size.
CLIENT_BATCH_BYTES = 1_000_000     # librdkafka's batch.size (one partition's batch)
IDLE_CORES_BUSY = cb.IDLE_CORES_BUSY
CATCHUP_FACTOR = 1.5               # latency "back to normal": p99 <= 1.5 x steady p99
BACKPRESSURE_P99_FACTOR = 2.0      # burst p99 >= 2 x steady p99 ...
BACKPRESSURE_BUDGET_SHARE = 0.75   # ... or bytes in flight >= 75% of the budget
BIN_S = 1.0                        # catch-up: latency per 1 s of send time


# ----------------------------------------------------------------------------
# The producers (separate processes, as cluster_bench's workers)
# ----------------------------------------------------------------------------

def burst_producer(cfg: dict, ready, go_q, counters, out_path: str) -> None:
    """Sends its share (1/producers) of a piecewise-constant rate schedule
    (cfg['segments']: [(start_s, end_s, msgs/s of all producers)], from the
    CLOCK_MONOTONIC time go_q gives), round-robin over the partitions;
    every value is HDR (index, seq, send time) + the shared filler. Records
    one entry per acknowledgement (seq, partition, offset, send_ns, ack_ns)
    and every 100 ms (t_ns, sent, acked, messages in the client)."""
    from confluent_kafka import Producer

    idx, nprod = cfg["index"], cfg["producers"]
    topic, partitions = cfg["topic"], cfg["partitions"]
    acks = array("q")
    queue_samples = array("q")
    errors: list[str] = []
    error_count = [0]
    client_errors: list[str] = []

    def on_delivery(err, msg):
        now = time.monotonic_ns()
        _, seq, send_ns = HDR.unpack_from(msg.value(), 0)
        if err is not None:
            error_count[0] += 1
            if len(errors) < 50:
                errors.append(f"seq {seq} partition {msg.partition()}: {err}")
            return
        acks.extend((seq, msg.partition(), msg.offset(), send_ns, now))

    def on_error(err):
        if len(client_errors) < 200:
            client_errors.append(f"{time.monotonic_ns()} {err}")

    p = Producer({
        "bootstrap.servers": cfg["bootstrap"],
        "client.id": f"burst-bench-producer-{idx}",    # no zone=: every broker
        "acks": "all",
        "enable.idempotence": cfg["idempotence"],
        "linger.ms": cfg["linger_ms"],
        "socket.nagle.disable": True,
        "message.max.bytes": cfg["request_bytes"],
        "queue.buffering.max.messages": 10_000_000,
        "queue.buffering.max.kbytes": 4 * 1024 * 1024,
        "message.timeout.ms": cfg["message_timeout_ms"],
        "on_delivery": on_delivery,
        "error_cb": on_error,
    })
    p.list_topics(topic, timeout=10)
    filler = bytes.fromhex(cfg["filler"])
    segments = cfg["segments"]
    ready.set()
    t_start = go_q.get(timeout=120)
    end_ns = t_start + int(segments[-1][1] * 1e9)

    def due(now_ns: int) -> int:
        t = (now_ns - t_start) / 1e9
        n = 0.0
        for a, b, rate in segments:
            if t <= a:
                break
            n += (min(t, b) - a) * rate / nprod
        return int(n)

    produce, poll, mono = p.produce, p.poll, time.monotonic_ns
    parent, give_up = os.getppid(), time.monotonic() + cfg["max_s"]
    seq, buffer_full, last_sample = 0, 0, 0
    while True:
        if os.getppid() != parent or time.monotonic() > give_up:
            sys.exit(3)  # the benchmark died or forgot us: never linger
        now = mono()
        if now >= end_ns:
            break
        target = due(now) if now >= t_start else 0
        while seq < target:
            try:
                # Every producer goes round all partitions (each partition
                # gets every producer's batches).
                produce(topic, HDR.pack(idx, seq, mono()) + filler,
                        partition=(seq + idx) % partitions)
            except BufferError:
                buffer_full += 1
                break
            seq += 1
        if now - last_sample >= 100_000_000:
            n_acked = len(acks) // 5
            queue_samples.extend((now, seq, n_acked, len(p)))
            counters[0], counters[1], last_sample = seq, n_acked, now
        poll(0.001)
    t_stop = mono()
    deadline = time.monotonic() + cfg["drain_timeout"]
    left = len(p)
    while left and time.monotonic() < deadline:
        left = p.flush(0.1)
        now = mono()
        if now - last_sample >= 100_000_000:
            n_acked = len(acks) // 5
            queue_samples.extend((now, seq, n_acked, len(p)))
            counters[0], counters[1], last_sample = seq, n_acked, now
    t_drained = mono()
    counters[0], counters[1] = seq, len(acks) // 5
    queue_samples.extend((t_drained, seq, len(acks) // 5, len(p)))
    with open(out_path + ".bin", "wb") as f:
        acks.tofile(f)
    with open(out_path + "-queue.bin", "wb") as f:
        queue_samples.tofile(f)
    with open(out_path + ".json", "w") as f:
        json.dump({"sent": seq, "acked": len(acks) // 5, "unacknowledged": left,
                   "t_start_ns": t_start, "t_stop_ns": t_stop, "t_drained_ns": t_drained,
                   "delivery_errors": errors, "delivery_error_count": error_count[0],
                   "client_errors": client_errors, "buffer_full": buffer_full}, f)


# ----------------------------------------------------------------------------
# Sampling the brokers' memory
# ----------------------------------------------------------------------------

def vm_status(pid: int) -> dict:
    """VmRSS and VmHWM of a process, bytes (empty if it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def metric(m: dict, name: str, **labels) -> float:
    """Sum of `name`'s samples whose labels include `labels`."""
    want = {(k, str(v)) for k, v in labels.items()}
    return sum(v for key, v in m.items() if key[0] == name and want <= key[1])


class Sampler(threading.Thread):
    """RSS of every broker every rss_period, selected /metrics figures every
    metrics_period, until stopped. Records (t_ns, broker_id, value...)."""

    def __init__(self, brokers: list, rss_period: float, metrics_period: float):
        super().__init__(name="sampler", daemon=True)
        self.brokers = brokers
        self.rss_period, self.metrics_period = rss_period, metrics_period
        self.rss: dict[int, list[tuple[int, int]]] = {b.broker_id: [] for b in brokers}
        self.mets: dict[int, list[tuple[int, dict]]] = {b.broker_id: [] for b in brokers}
        self.errors: list[str] = []
        self._stop_ev = threading.Event()

    def stop(self) -> None:
        self._stop_ev.set()
        self.join(10)

    def run(self) -> None:
        next_m = 0.0
        while not self._stop_ev.is_set():
            t0 = time.monotonic()
            for b in self.brokers:
                v = vm_status(b.pid).get("VmRSS")
                if v is not None:
                    self.rss[b.broker_id].append((time.monotonic_ns(), v))
            if t0 >= next_m:
                next_m = t0 + self.metrics_period
                for b in self.brokers:
                    try:
                        m = b.metrics()
                    except Exception as e:  # a broker busy or gone: noted, not fatal here
                        if len(self.errors) < 20:
                            self.errors.append(f"broker {b.broker_id}: {type(e).__name__}: {e}")
                        continue
                    self.mets[b.broker_id].append((time.monotonic_ns(), {
                        "tail_cache": metric(m, "sluice_memory_bytes", kind="tail_cache"),
                        "unuploaded": metric(m, "sluice_memory_bytes", kind="unuploaded"),
                        "block_cache": metric(m, "sluice_memory_bytes", kind="block_cache"),
                        "bytes_in": metric(m, "sluice_topic_bytes_in_total"),
                        "upload_bytes": metric(m, "sluice_upload_bytes_total"),
                        "flush_sum": metric(m, "sluice_flush_duration_seconds_sum",
                                            stage="total"),
                        "flush_count": metric(m, "sluice_flush_duration_seconds_count",
                                              stage="total"),
                        "put_sum": metric(m, "sluice_flush_duration_seconds_sum", stage="put"),
                        "put_count": metric(m, "sluice_flush_duration_seconds_count",
                                            stage="put"),
                        "commit_sum": metric(m, "sluice_flush_duration_seconds_sum",
                                             stage="commit"),
                        "commit_count": metric(m, "sluice_flush_duration_seconds_count",
                                               stage="commit"),
                        "objects_written": metric(m, "sluice_objects_written_total"),
                        "produce_count": metric(m, "sluice_request_duration_seconds_count",
                                                api="Produce"),
                        "produce_sum": metric(m, "sluice_request_duration_seconds_sum",
                                              api="Produce"),
                        "upkeep_holder": metric(m, "sluice_storage_upkeep_holder"),
                    }))
            self._stop_ev.wait(max(0.0, self.rss_period - (time.monotonic() - t0)))


def in_flight_series(mets: list, window_ns: int = 1_000_000_000) -> list[tuple[int, float]]:
    """Estimated bytes in sealed flushes (Little's law over a sliding 1 s
    window: bytes acknowledged per second x mean sealed-to-answered time of
    the flushes answered in it). The cluster write path has no gauge of its
    own for the budget in use."""
    out = []
    j = 0
    for i in range(len(mets)):
        t, m = mets[i]
        while j < i and t - mets[j][0] > window_ns:
            j += 1
        if j == i:
            continue
        t0, m0 = mets[j]
        dt = (t - t0) / 1e9
        dn = m["flush_count"] - m0["flush_count"]
        if dt <= 0 or dn <= 0:
            out.append((t, 0.0))
            continue
        mean_s = (m["flush_sum"] - m0["flush_sum"]) / dn
        out.append((t, (m["bytes_in"] - m0["bytes_in"]) / dt * mean_s))
    return out


# ----------------------------------------------------------------------------
# Analysis
# ----------------------------------------------------------------------------

def pct(values: list, q: float) -> float | None:
    if not values:
        return None
    return cb.percentile(values, q)


def ms(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.0f} ms" if x >= 100 else f"{x:.1f} ms"


def mib(x) -> str:
    return "n/a" if x is None else f"{x / MiB:,.1f} MiB"


def in_range(series: list, t0: int, t1: int) -> list:
    return [v for t, v in series if t0 <= t < t1]


def flush_figures(mets: list) -> dict:
    """A broker's flushes between its first and last /metrics sample of a
    phase: flushes/s, mean size, mean PUT, commit and sealed-to-answered
    times (the histograms' sums / counts), acknowledged MiB/s."""
    if len(mets) < 2:
        return {}
    a, b = mets[0], mets[-1]
    dt = max(1e-9, (b["t"] - a["t"]) / 1e9)
    d = {k: b[k] - a[k] for k in ("flush_count", "flush_sum", "put_count", "put_sum",
                                  "commit_count", "commit_sum", "bytes_in", "produce_count",
                                  "produce_sum")}
    mean = lambda s_, c_: d[s_] / d[c_] * 1000 if d[c_] > 0 else None  # noqa: E731
    return {"flushes_s": d["flush_count"] / dt,
            "mean_flush_bytes": d["bytes_in"] / d["flush_count"] if d["flush_count"] else None,
            "put_ms": mean("put_sum", "put_count"), "commit_ms": mean("commit_sum",
                                                                        "commit_count"),
            "total_ms": mean("flush_sum", "flush_count"),
            # Little's law over the phase: bytes acknowledged per second x
            # mean sealed-to-answered time = mean bytes in sealed flushes.
            "in_flight_mean_bytes": (d["bytes_in"] / dt * d["flush_sum"] / d["flush_count"]
                                     if d["flush_count"] else None),
            "produce_requests_s": d["produce_count"] / dt,
            "produce_request_ms": mean("produce_sum", "produce_count"),
            "acked_mib_s": d["bytes_in"] / dt / MiB}


def analyse(args, res: dict, phases: list, acks: list, queue: list, sampler: Sampler,
            leaders: dict, t_load: int, t_drained: int) -> None:
    """Fills res['phases'], res['memory'], res['catchup'], res['backpressure']."""
    by_phase = []
    lat_all = []  # (send_ns, latency_ms)
    for (_pidx, _seq, part, _off, send_ns, ack_ns) in acks:
        lat_all.append((send_ns, (ack_ns - send_ns) / 1e6))
    lat_all.sort()
    ack_times = sorted(a[5] for a in acks)
    send_times = [s for s, _ in lat_all]
    inflight = {bid: in_flight_series(m) for bid, m in sampler.mets.items()}
    for name, a_s, b_s, rate in phases:
        t0, t1 = t_load + int(a_s * 1e9), t_load + int(b_s * 1e9)
        dur = b_s - a_s
        i0, i1 = bisect.bisect_left(send_times, t0), bisect.bisect_left(send_times, t1)
        lats = sorted(x for _, x in lat_all[i0:i1])
        n_acked = bisect.bisect_left(ack_times, t1) - bisect.bisect_left(ack_times, t0)
        ph = {"phase": name, "start_s": a_s, "end_s": b_s, "offered_msgs_s": rate,
              "sent_msgs_s": len(lats) / dur if dur > 0 else 0.0,
              "acked_msgs_s": n_acked / dur if dur > 0 else 0.0,
              "acked_mib_s": n_acked * args.size / dur / MiB if dur > 0 else 0.0,
              "p50_ms": pct(lats, 50), "p99_ms": pct(lats, 99),
              "max_ms": lats[-1] if lats else None, "messages": len(lats),
              "brokers": {}}
        qs = [q for q in queue if t0 <= q[0] < t1]
        ph["client_queue_max_msgs"] = max((q[1] for q in qs), default=0)
        for bid in sampler.rss:
            rss = in_range(sampler.rss[bid], t0, t1)
            mets = [{**m, "t": t} for t, m in sampler.mets[bid] if t0 <= t < t1]
            infl = in_range(inflight[bid], t0, t1)
            ph["brokers"][str(bid)] = {
                "flushes": flush_figures(mets),
                "rss_peak": max(rss, default=None),
                "rss_min": min(rss, default=None),
                "unuploaded_gauge_max": max((m["unuploaded"] for m in mets), default=None),
                "tail_cache_max": max((m["tail_cache"] for m in mets), default=None),
                "block_cache_max": max((m["block_cache"] for m in mets), default=None),
                "in_flight_1s_max": max(infl, default=None),
            }
            f = ph["brokers"][str(bid)]["flushes"]
            ph["brokers"][str(bid)]["in_flight_mean"] = f.get("in_flight_mean_bytes")
        by_phase.append(ph)
    res["phases"] = by_phase

    # Memory: baseline = the last RSS sample before the burst; peak = the
    # largest from the burst's start to the producers' last acknowledgement.
    burst_start = t_load + int(phases[1][1] * 1e9)
    # Every memory bound a broker is given: produce data not yet in objects,
    # the tail cache, the catch-up block cache, and (the upkeep holder's)
    # compaction output built in memory.
    limit = (args.max_unuploaded_mib + args.tail_cache_mib + args.block_cache_mib
             + args.compaction_max_mib) * MiB
    slack = args.slack_mib * MiB
    mem = {}
    for bid, series in sampler.rss.items():
        before = [(t, v) for t, v in series if t < burst_start]
        during = [(t, v) for t, v in series if burst_start <= t <= t_drained]
        idle = [v for t, v in series if t < t_load]
        base = before[-1][1] if before else None
        peak_t, peak = max(during, key=lambda x: x[1]) if during else (None, None)
        growth = peak - base if base is not None and peak is not None else None
        mets = [m for t, m in sampler.mets[bid] if burst_start <= t <= t_drained]
        infl = [v for t, v in inflight[bid] if burst_start <= t <= t_drained]
        mem[str(bid)] = {
            "rss_idle": idle[-1] if idle else None,
            "rss_baseline": base, "rss_peak": peak,
            "rss_peak_at_s": (peak_t - t_load) / 1e9 if peak_t else None,
            "growth": growth, "growth_from_idle": (peak - idle[-1]) if idle and peak else None,
            "limit": limit, "slack": slack,
            "within": growth is not None and growth <= limit + slack,
            "tail_cache_max": max((m["tail_cache"] for m in mets), default=None),
            "unuploaded_gauge_max": max((m["unuploaded"] for m in mets), default=None),
            "block_cache_max": max((m["block_cache"] for m in mets), default=None),
            "in_flight_1s_max": max(infl, default=None),
            "in_flight_mean_burst": by_phase[1]["brokers"][str(bid)]["in_flight_mean"],
            "upkeep_holder": max((m["upkeep_holder"] for m in mets), default=0) > 0,
            # PUTs other than flushes: the upkeep holder's compaction output
            # (built in memory, up to --compaction-max-bytes an object).
            "other_puts": ((mets[-1]["objects_written"] - mets[0]["objects_written"]) -
                           (mets[-1]["put_count"] - mets[0]["put_count"])) if mets else None,
            "samples": len(during),
            "partitions_led": sorted(p for p, lead in leaders.items() if lead == bid),
        }
    res["memory"] = mem

    # Catch-up: from the burst's end, 1 s bins of send time; the first bin
    # from which every later bin (to the catch-up phase's end) has p99 <=
    # 1.5 x the steady phase's p99.
    steady_p99 = by_phase[0]["p99_ms"]
    burst_end = t_load + int(phases[2][1] * 1e9)
    catch_end = t_load + int(phases[2][2] * 1e9)
    bins = []
    t = burst_end
    while t < catch_end:
        i0 = bisect.bisect_left(send_times, t)
        i1 = bisect.bisect_left(send_times, t + int(BIN_S * 1e9))
        lats = sorted(x for _, x in lat_all[i0:i1])
        bins.append({"from_s": (t - burst_end) / 1e9, "messages": len(lats),
                     "p99_ms": pct(lats, 99), "max_ms": lats[-1] if lats else None})
        t += int(BIN_S * 1e9)
    threshold = CATCHUP_FACTOR * steady_p99 if steady_p99 is not None else None
    back_at = None
    if threshold is not None:
        for k in range(len(bins) - 1, -1, -1):
            b = bins[k]
            if b["messages"] and b["p99_ms"] > threshold:
                break
            back_at = b["from_s"]
    # Back only counts with at least 2 s of normal latency before the end.
    ok = back_at is not None and back_at <= (phases[2][2] - phases[2][1]) - 2 * BIN_S
    # The client backlog (messages produced but not acknowledged) back to
    # the steady phase's level.
    steady_q = by_phase[0]["client_queue_max_msgs"]
    q_back = None
    for q in queue:
        if q[0] >= burst_end and q[1] <= max(steady_q * CATCHUP_FACTOR, steady_q + 100):
            q_back = (q[0] - burst_end) / 1e9
            break
    res["catchup"] = {"steady_p99_ms": steady_p99, "threshold_ms": threshold,
                      "latency_back_after_s": back_at if ok else None, "ok": ok,
                      "client_backlog_back_after_s": q_back, "bins": bins}

    # Backpressure: the burst's p99 against the steady one, and the bytes in
    # flight to the store against the budget.
    bp99 = by_phase[1]["p99_ms"]
    infl_max = max((m["in_flight_mean_burst"] or 0.0) for m in mem.values())
    req_ratio = []
    for bid in mem:
        a = by_phase[0]["brokers"][bid]["flushes"].get("produce_request_ms")
        b = by_phase[1]["brokers"][bid]["flushes"].get("produce_request_ms")
        if a and b:
            req_ratio.append(b / a)
    gauge_max = max((m["unuploaded_gauge_max"] or 0.0) for m in mem.values())
    budget = args.max_unuploaded_mib * MiB
    lat_ratio = bp99 / steady_p99 if bp99 and steady_p99 else None
    engaged_lat = lat_ratio is not None and lat_ratio >= BACKPRESSURE_P99_FACTOR
    engaged_bytes = max(infl_max, gauge_max) >= BACKPRESSURE_BUDGET_SHARE * budget
    burst_acked = by_phase[1]["acked_msgs_s"]
    res["backpressure"] = {"burst_p99_ms": bp99, "steady_p99_ms": steady_p99,
                           "p99_ratio": lat_ratio, "in_flight_mean_max": infl_max,
                           "broker_produce_ms_ratio_min": min(req_ratio, default=None),
                           "unuploaded_gauge_max": gauge_max, "budget": budget,
                           "acked_below_offered": burst_acked < 0.9 * phases[1][3],
                           "engaged": engaged_lat or engaged_bytes,
                           "by_latency": engaged_lat, "by_bytes": engaged_bytes}


def check_data(args, pmetas: list, acked: dict, dup_acks: int, log: dict, verify_errors: list,
               ends: list) -> dict:
    problems = []
    for i, pm in enumerate(pmetas):
        if pm["delivery_error_count"]:
            problems.append(f"producer {i}: {pm['delivery_error_count']} delivery errors, first: "
                            f"{pm['delivery_errors'][:3]}")
        if pm["unacknowledged"]:
            problems.append(f"producer {i}: {pm['unacknowledged']} messages never acknowledged")
    if dup_acks:
        problems.append(f"{dup_acks} acknowledgements named an already acknowledged offset")
    problems.extend(verify_errors[:5])
    lost = []
    for (part, off), (pidx, seq, send_ns) in acked.items():
        g = log.get((part, off))
        if g is None or g[0:3] != (pidx, seq, send_ns) or g[3] != args.size or not g[4]:
            lost.append((part, off))
    where: dict = {}
    for (part, off), g in log.items():
        where.setdefault((g[0], g[1]), []).append((part, off))
    dups = {k: w for k, w in where.items() if len(w) > 1}
    acked_ids = {(v[0], v[1]) for v in acked.values()}
    unacked = [k for k in where if k not in acked_ids]
    gaps = [p for p in range(len(ends))
            if sorted(o for (q, o) in log if q == p) != list(range(ends[p]))]
    if lost:
        problems.append(f"{len(lost)} acknowledged records missing or different, e.g. {lost[:5]}")
    if dups:
        problems.append(f"{len(dups)} records in the log more than once, e.g. "
                        f"{list(dups.items())[:3]}")
    if unacked:
        problems.append(f"{len(unacked)} records in the log were never acknowledged")
    if gaps:
        problems.append(f"partitions {gaps}: the offsets read are not 0..high watermark")
    return {"acked": len(acked), "in_log": sum(ends), "read_back": len(log), "lost": len(lost),
            "duplicates": len(dups), "never_acked": len(unacked), "offset_gaps": gaps,
            "problems": problems, "ok": not problems}


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------

class Run:
    """The processes of the run, so that teardown finds them all."""

    def __init__(self):
        self.cluster = cb.Cluster([])
        self.procs: list = []
        self.sampler: Sampler | None = None

    def teardown(self, stop_timeout: float) -> list[str]:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
                if p.is_alive():
                    p.kill()
                    p.join(5)
        self.procs = []
        problems = self.cluster.stop(stop_timeout)
        self.cluster = cb.Cluster([])
        return problems


def capacity(args, leaders: dict, nbrokers: int) -> dict:
    """The store's throughput for the brokers (a computed estimate), next to
    the offered rates, per broker (by the partitions each leads)."""
    hold_s = (args.put_ms + args.flush_interval_ms) / 1000.0
    budget = args.max_unuploaded_mib * MiB
    out = {"put_ms": args.put_ms, "hold_s": hold_s,
           "brokers": {}}
    rec = args.size  # payload bytes (record framing adds ~2%)
    for bid in range(1, nbrokers + 1):
        led = sum(1 for lead in leaders.values() if lead == bid)
        share = led / max(1, len(leaders))
        window = args.producers * led * CLIENT_BATCH_BYTES
        cap_budget = budget / hold_s
        cap_client = window / hold_s
        out["brokers"][str(bid)] = {
            "partitions_led": led,
            "steady_mib_s": args.rate * share * rec / MiB,
            "burst_mib_s": args.rate * args.burst_factor * share * rec / MiB,
            "budget_bound_mib_s": cap_budget / MiB,
            "client_window_bytes": window,
            "client_bound_mib_s": cap_client / MiB,
            "capacity_mib_s": min(cap_budget, cap_client) / MiB,
            "steady_demand_bytes": args.rate * share * rec * hold_s,
            "burst_demand_bytes": args.rate * args.burst_factor * share * rec * hold_s,
        }
    b = out["brokers"].values()
    out["capacity_mib_s"] = sum(x["capacity_mib_s"] for x in b)
    out["steady_mib_s"] = args.rate * rec / MiB
    out["burst_mib_s"] = args.rate * args.burst_factor * rec / MiB
    out["budget_binds"] = all(x["client_window_bytes"] > budget for x in b)
    return out


def run_bench(args, ctx, pg, binary: Path, scratch: Path, base_env: dict, store_dirs: list,
              run: Run, res: dict) -> None:
    workdir = scratch / "cluster"
    workdir.mkdir()
    dbname = f"bb_{uuid.uuid4().hex[:8]}"
    catalog_url = pg.create_database(dbname)
    store_dir = Path(tempfile.mkdtemp(prefix="sluice-burst-bench-store-", dir=args.store_dir))
    store_dirs.append(store_dir)
    store_url = f"file://{store_dir}"
    ports = cb.free_ports(6)
    brokers = [cb.Broker(binary, i, workdir, catalog_url, store_url, base_env, args,
                         args.flush_interval_ms, (ports[2 * i], ports[2 * i + 1]))
               for i in range(3)]
    run.cluster = cb.Cluster(brokers)
    res.update(catalog=catalog_url, store=store_url,
               broker_logs=[str(b.log_path) for b in brokers],
               broker_cmdline=brokers[0].cmdline[1:])
    info(f"[cluster] starting brokers 1-3 with --max-unuploaded-bytes "
         f"{args.max_unuploaded_mib} MiB, --tail-cache-bytes {args.tail_cache_mib} MiB, "
         f"--block-cache-bytes {args.block_cache_mib} MiB; catalog {catalog_url}, store "
         f"{store_url}, logs {workdir}/broker*.log")
    took = run.cluster.start(args.start_timeout)
    fault = {"mode": "latency", "put_p50_ms": args.put_ms, "put_p99_ms": args.put_ms,
             "get_p50_ms": args.get_p50_ms, "get_p99_ms": args.get_p99_ms}
    for b in brokers:
        b.set_fault(fault)
    res["fault"] = fault
    info(f"[cluster] brokers up after {took:.1f}s (pids {[b.pid for b in brokers]}); store "
         f"model on every broker: {json.dumps(fault)}")

    topic, leaders, _ = cb.create_balanced_topic(run.cluster, "burst-bench", args.partitions,
                                                 attempts=30)
    res["topic"] = topic
    res["leaders"] = {str(p): lead for p, lead in sorted(leaders.items())}
    info(f"[cluster] topic {topic}: {args.partitions} partitions, leaders "
         f"{dict(sorted(leaders.items()))}")

    cap = capacity(args, leaders, len(brokers))
    res["capacity"] = cap
    info(f"[model] every PUT takes {args.put_ms} ms; a byte holds its broker's budget from its "
         f"request's arrival to its flush's commit, at least PUT + flush interval = "
         f"{cap['hold_s']:.2f} s, so a broker flushes at most budget / {cap['hold_s']:.2f} s = "
         f"{args.max_unuploaded_mib} MiB / {cap['hold_s']:.2f} s")
    for bid, c in cap["brokers"].items():
        info(f"[model] broker {bid} ({c['partitions_led']} partitions): offered steady "
             f"{c['steady_mib_s']:.2f} MiB/s, burst {c['burst_mib_s']:.2f} MiB/s; store capacity "
             f"~{c['capacity_mib_s']:.2f} MiB/s (budget-bound {c['budget_bound_mib_s']:.2f}, "
             f"client window {c['client_window_bytes'] / MiB:.0f} MiB -> "
             f"{c['client_bound_mib_s']:.2f}); bytes the burst would keep in flight "
             f"{c['burst_demand_bytes'] / MiB:.1f} MiB vs budget {args.max_unuploaded_mib} MiB")
    info(f"[model] all brokers: steady {cap['steady_mib_s']:.2f} MiB/s < capacity "
         f"~{cap['capacity_mib_s']:.2f} MiB/s < burst {cap['burst_mib_s']:.2f} MiB/s: "
         + ("backpressure must engage during the burst"
            if cap["steady_mib_s"] < cap["capacity_mib_s"] < cap["burst_mib_s"]
            else "WARNING: the rates do not bracket the capacity"))
    if not cap["budget_binds"]:
        info("[model] WARNING: the producers' in-flight window per broker is smaller than the "
             "budget: the client's window, not the broker's budget, will bound the bytes in "
             "flight")

    # Load.
    w, s, bd, c = args.warmup, args.steady, args.burst, args.catchup
    burst_rate = args.rate * args.burst_factor
    phases = [("warm-up", 0.0, w, args.rate), ("steady", w, w + s, args.rate),
              ("burst", w + s, w + s + bd, burst_rate),
              ("catch-up", w + s + bd, w + s + bd + c, args.rate)]
    segments = [(0.0, w + s, args.rate), (w + s, w + s + bd, burst_rate),
                (w + s + bd, w + s + bd + c, args.rate)]
    filler = os.urandom(args.size - HDR.size)
    max_s = 300 + w + s + bd + c + args.drain_timeout
    prods, outs, readies, counters = [], [], [], []
    go_qs = []
    for i in range(args.producers):
        rd, gq, ctr = ctx.Event(), ctx.Queue(), ctx.Array("q", 2, lock=False)
        out = str(workdir / f"producer{i}")
        cfg = {"bootstrap": run.cluster.bootstrap, "topic": topic, "partitions": args.partitions,
               "size": args.size, "index": i, "producers": args.producers,
               "segments": segments, "filler": filler.hex(), "linger_ms": args.linger_ms,
               "request_bytes": args.request_bytes, "idempotence": not args.no_idempotence,
               "message_timeout_ms": int(args.message_timeout_s * 1000),
               "drain_timeout": args.drain_timeout, "max_s": max_s}
        p = ctx.Process(target=burst_producer, name=f"producer{i}", daemon=True,
                        args=(cfg, rd, gq, ctr, out))
        p.start()
        run.procs.append(p)
        prods.append(p)
        outs.append(out)
        readies.append(rd)
        counters.append(ctr)
        go_qs.append(gq)

    def check_load(phase, allow_exit=False):
        run.cluster.check(phase)
        for p in prods:
            if not p.is_alive() and not (allow_exit and p.exitcode == 0):
                raise BenchError(phase, f"{p.name} process exited with code {p.exitcode}")

    deadline = time.monotonic() + 60
    for p, rd in zip(prods, readies):
        while not rd.wait(0.2):
            check_load("load")
            if time.monotonic() > deadline:
                raise BenchError("load", f"{p.name} not ready within 60s")

    sampler = Sampler(brokers, args.rss_period, args.metrics_period)
    run.sampler = sampler
    sampler.start()
    time.sleep(1.0)  # idle samples before the load
    t_load = time.monotonic_ns() + 200_000_000
    for gq in go_qs:
        gq.put(t_load)
    groups = {f"broker{b.broker_id}": [b.pid] for b in brokers}
    groups.update({"postgres": cb.descendants(pg.pid), "producers": [p.pid for p in prods],
                   "bench (this process)": [os.getpid()]})
    cpu0 = cb.CpuSnapshot(groups, [p.pid for p in prods])
    busy = set(cb.busy_compilers())
    info(f"[load] {args.producers} producer(s), idempotent, acks=all, unpinned: {args.rate} "
         f"msgs/s x {args.size} B for {w:g}+{s:g}s, {burst_rate} msgs/s for {bd:g}s, "
         f"{args.rate} msgs/s for {c:g}s")
    t_end_load = t_load + int((w + s + bd + c) * 1e9)
    last_print = 0.0
    phase_names = iter(phases)
    cur = next(phase_names)
    while time.monotonic_ns() < t_end_load:
        time.sleep(0.25)
        check_load("load")
        el = (time.monotonic_ns() - t_load) / 1e9
        while el >= cur[2] and cur is not phases[-1]:
            cur = next(phase_names)
            info(f"[load] {cur[0]} from {cur[1]:g}s ({cur[3]} msgs/s)")
        if time.monotonic() - last_print >= 5.0:
            last_print = time.monotonic()
            sent = sum(ct[0] for ct in counters)
            acked = sum(ct[1] for ct in counters)
            rss = ", ".join(f"b{b.broker_id} {mib(sampler.rss[b.broker_id][-1][1])}"
                            for b in brokers if sampler.rss[b.broker_id])
            info(f"[load] t={el:5.1f}s sent {sent:,} acked {acked:,} (backlog "
                 f"{sent - acked:,}); RSS {rss}")
    cpu1 = cb.CpuSnapshot(groups, [])  # the producers exit once drained
    busy |= set(cb.busy_compilers())
    info("[drain] load over; waiting for the last acknowledgements")
    drain_deadline = time.monotonic() + args.drain_timeout + 30
    for p in prods:
        while p.is_alive() and time.monotonic() < drain_deadline:
            p.join(0.25)
            run.cluster.check("drain")
        if p.is_alive() or p.exitcode != 0:
            raise BenchError("drain", f"{p.name} did not finish its deliveries within "
                                      f"{args.drain_timeout:.0f}s (exit {p.exitcode})")
    t_drained = time.monotonic_ns()
    sampler.stop()
    run.sampler = None
    info(f"[drain] every producer done {(t_drained - t_end_load) / 1e9:.1f}s after the load")
    res["cpu"] = cb.cpu_window(cpu0, cpu1)
    res["cpu"].pop("busiest_thread_cores", None)
    res["busy_processes"] = sorted(busy)
    res["sampler_errors"] = sampler.errors
    hwm = {str(b.broker_id): vm_status(b.pid).get("VmHWM") for b in brokers}

    # Faster reads for the check: the model off.
    for b in brokers:
        b.set_fault({"mode": "off"})

    pmetas, acks, queue = [], [], []
    acked: dict = {}
    dup_acks = 0
    for i, out in enumerate(outs):
        with open(out + ".json") as f:
            pmetas.append(json.load(f))
        raw = array("q")
        with open(out + ".bin", "rb") as f:
            raw.frombytes(f.read())
        for j in range(0, len(raw), 5):
            seq, part, off, send_ns, ack_ns = raw[j:j + 5]
            if (part, off) in acked:
                dup_acks += 1
            acked[(part, off)] = (i, seq, send_ns)
            acks.append((i, seq, part, off, send_ns, ack_ns))
        qraw = array("q")
        with open(out + "-queue.bin", "rb") as f:
            qraw.frombytes(f.read())
        queue.append([tuple(qraw[j:j + 4]) for j in range(0, len(qraw), 4)])
    # Sum the producers' backlogs (messages in the client: queued or in
    # flight) at the 100 ms marks.
    merged = []
    for k in range(max(len(q) for q in queue)):
        rows = [q[min(k, len(q) - 1)] for q in queue]
        merged.append((rows[0][0], sum(r[3] for r in rows)))
    res["load"] = {"sent": sum(pm["sent"] for pm in pmetas), "acked": len(acks),
                   "buffer_full": sum(pm["buffer_full"] for pm in pmetas),
                   "producer_client_errors": [e for pm in pmetas for e in pm["client_errors"]][:20],
                   "drained_after_s": (t_drained - t_end_load) / 1e9}
    analyse(args, res, phases[1:], acks, merged, sampler, leaders, t_load, t_drained)
    for bid, v in hwm.items():
        res["memory"][bid]["vm_hwm"] = v
    res["series"] = {
        "rss": {str(bid): [((t - t_load) / 1e9, v) for t, v in s]
                for bid, s in sampler.rss.items()},
        "in_flight_1s_window_est": {str(bid): [((t - t_load) / 1e9, v) for t, v in in_flight_series(m)]
                          for bid, m in sampler.mets.items()},
        "tail_cache": {str(bid): [((t - t_load) / 1e9, m["tail_cache"]) for t, m in ms_]
                       for bid, ms_ in sampler.mets.items()},
        "client_backlog": [((t - t_load) / 1e9, n) for t, n in merged],
    }

    ends = cb.high_watermarks(run.cluster.bootstrap, topic, args.partitions)
    info(f"[check] reading back {sum(ends):,} records")
    log, verify_errors = read_back(run.cluster.bootstrap, topic, ends, filler,
                                   args.drain_timeout)
    res["check"] = check_data(args, pmetas, acked, dup_acks, log, verify_errors, ends)
    ck = res["check"]
    info(f"[check] sent {res['load']['sent']:,}, acknowledged {ck['acked']:,}, in the log "
         f"{ck['in_log']:,}, read back {ck['read_back']:,}: lost {ck['lost']}, duplicated "
         f"{ck['duplicates']}, never acknowledged {ck['never_acked']}")


# ----------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------

def verdicts(args, r: dict) -> list[tuple[str, bool, str]]:
    out = []
    for bid, m in r["memory"].items():
        out.append((f"broker {bid} memory within limits",
                    m["within"],
                    f"RSS {mib(m['rss_baseline'])} -> peak {mib(m['rss_peak'])}: growth "
                    f"{mib(m['growth'])} <= max-unuploaded {args.max_unuploaded_mib} MiB + tail "
                    f"cache {args.tail_cache_mib} MiB + block cache {args.block_cache_mib} MiB + "
                    f"compaction {args.compaction_max_mib} MiB + slack {args.slack_mib} MiB = "
                    f"{mib(m['limit'] + m['slack'])}"))
    ck = r["check"]
    out.append(("no acknowledged record lost or duplicated", ck["ok"],
                f"{ck['acked']:,} acknowledged, {ck['lost']} lost, {ck['duplicates']} duplicated, "
                f"{ck['never_acked']} never acknowledged"))
    bp = r["backpressure"]
    ratio = f"{bp['p99_ratio']:.1f}x" if bp["p99_ratio"] else "n/a"
    out.append(("backpressure engaged (the run's precondition, a fact)", bp["engaged"],
                f"burst p99 {ms(bp['burst_p99_ms'])} = {ratio} steady p99 "
                f"{ms(bp['steady_p99_ms'])}; bytes in sealed flushes during the burst (mean, "
                f"busiest broker) {mib(bp['in_flight_mean_max'])} of a {mib(bp['budget'])} budget; "
                + (f"brokers' Produce time x{bp['broker_produce_ms_ratio_min']:.1f}+ of steady; "
                   if bp["broker_produce_ms_ratio_min"] else "") +
                f"acknowledged {r['phases'][1]['acked_msgs_s']:,.0f} of "
                f"{r['phases'][1]['offered_msgs_s']:,} msgs/s offered"))
    cu = r["catchup"]
    back = cu["latency_back_after_s"]
    out.append(("catch-up", cu["ok"],
                (f"latency back within {CATCHUP_FACTOR:g} x steady p99 ({ms(cu['threshold_ms'])}) "
                 f"{back:.0f}-{back + BIN_S:.0f} s after the burst's end" if back is not None
                 else f"latency not back within {CATCHUP_FACTOR:g} x steady p99 "
                      f"({ms(cu['threshold_ms'])}) before the catch-up phase's last "
                      f"{2 * BIN_S:g} s") +
                (f"; client backlog back to its steady level after "
                 f"{cu['client_backlog_back_after_s']:.1f} s"
                 if cu["client_backlog_back_after_s"] is not None else "")))
    return out


def phase_grid(r: dict) -> list[list[str]]:
    bids = sorted(r["memory"])
    head = ["phase", "offered msgs/s", "sent msgs/s", "acked msgs/s (MiB/s)", "p50", "p99",
            "max", "client backlog max"]
    head += [f"b{b} in flight mean" for b in bids]
    head += [f"b{b} unuploaded gauge max" for b in bids]
    head += [f"b{b} peak RSS" for b in bids]
    out = [head]
    for ph in r["phases"]:
        row = [f"{ph['phase']} ({ph['end_s'] - ph['start_s']:g}s)", f"{ph['offered_msgs_s']:,}",
               f"{ph['sent_msgs_s']:,.0f}", f"{ph['acked_msgs_s']:,.0f} ({ph['acked_mib_s']:.2f})",
               ms(ph["p50_ms"]), ms(ph["p99_ms"]), ms(ph["max_ms"]),
               f"{ph['client_queue_max_msgs']:,}"]
        row += [mib(ph["brokers"][b]["in_flight_mean"]) for b in bids]
        row += [mib(ph["brokers"][b]["unuploaded_gauge_max"]) for b in bids]
        row += [mib(ph["brokers"][b]["rss_peak"]) for b in bids]
        out.append(row)
    return out


def flush_grid(r: dict) -> list[list[str]]:
    out = [["phase", "broker", "acked MiB/s", "Produce requests/s", "Produce mean",
            "flushes/s", "mean flush", "PUT mean", "commit mean", "sealed->answered mean",
            "in flight mean"]]
    for ph in r["phases"]:
        for bid, b in sorted(ph["brokers"].items()):
            f = b["flushes"]
            if not f:
                continue
            out.append([ph["phase"], bid, f"{f['acked_mib_s']:.2f}",
                        f"{f['produce_requests_s']:.1f}", ms(f["produce_request_ms"]),
                        f"{f['flushes_s']:.1f}",
                        mib(f["mean_flush_bytes"]), ms(f["put_ms"]), ms(f["commit_ms"]),
                        ms(f["total_ms"]), mib(b["in_flight_mean"])])
    return out


def memory_grid(args, r: dict) -> list[list[str]]:
    out = [["broker", "partitions", "RSS idle", "RSS baseline", "RSS peak (at)", "growth",
            "limit + slack", "VmHWM", "tail cache max", "block cache max",
            "in flight mean (burst)", "upkeep holder", "compaction PUTs"]]
    for bid, m in sorted(r["memory"].items()):
        out.append([bid, str(len(m["partitions_led"])), mib(m["rss_idle"]),
                    mib(m["rss_baseline"]),
                    f"{mib(m['rss_peak'])} ({m['rss_peak_at_s']:.1f}s)"
                    if m["rss_peak_at_s"] is not None else "n/a",
                    mib(m["growth"]), mib(m["limit"] + m["slack"]), mib(m.get("vm_hwm")),
                    mib(m["tail_cache_max"]), mib(m["block_cache_max"]),
                    mib(m["in_flight_mean_burst"]), "yes" if m["upkeep_holder"] else "no",
                    "n/a" if m["other_puts"] is None else f"{m['other_puts']:.0f}"])
    return out


def cpu_line(r: dict) -> str:
    cpu = r["cpu"]
    c = ", ".join(f"{k} {v:.2f}" for k, v in cpu["cores"].items())
    return (f"{c}, other {cpu['other_cores']:.2f}; machine idle {cpu['machine_idle_cores']:.2f} "
            f"of {cb.NCPU} (steal {cpu['machine_steal_cores']:.2f})")


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--bin", type=Path, default=cb.DEFAULT_BIN,
                    help="sluice binary (copied to the scratch dir before use)")
    ap.add_argument("--scratch-parent", type=Path, default=cb.REPO / "target",
                    help="where the scratch dir (logs, data dirs, client records) is created")
    ap.add_argument("--store-dir", type=Path, default=Path("/dev/shm"),
                    help="where the shared file store's directory is created")
    ap.add_argument("--max-unuploaded-mib", type=int, default=8,
                    help="brokers' --max-unuploaded-bytes, MiB (produce waits while this much "
                         "is not yet in objects; the broker's minimum is 1)")
    ap.add_argument("--tail-cache-mib", type=int, default=64,
                    help="brokers' --tail-cache-bytes, MiB")
    ap.add_argument("--block-cache-mib", type=int, default=32,
                    help="brokers' --block-cache-bytes, MiB (catch-up reads: none during the "
                         "load)")
    ap.add_argument("--compaction-max-mib", type=int, default=16,
                    help="brokers' --compaction-max-bytes, MiB (the upkeep holder builds each "
                         "compacted object in memory)")
    ap.add_argument("--slack-mib", type=int, default=32,
                    help="fixed allowance on top of the limits: request frames waiting for "
                         "budget, a flush's copy while its object is built, the allocator's "
                         "retained pages")
    ap.add_argument("--put-ms", type=int, default=1500,
                    help="every object PUT takes this long (fault injection latency model, "
                         "p50 = p99)")
    ap.add_argument("--get-p50-ms", type=int, default=100, help="object GETs' median latency")
    ap.add_argument("--get-p99-ms", type=int, default=200, help="object GETs' p99 latency")
    ap.add_argument("--rate", type=int, default=2000, help="steady rate, messages per second")
    ap.add_argument("--burst-factor", type=int, default=10, help="burst rate = factor x --rate")
    ap.add_argument("--size", type=int, default=1024, help="message value size, bytes")
    ap.add_argument("--producers", type=int, default=3,
                    help="producer processes, each writing every partition (each keeps about "
                         "one batch of <= 1 MB per partition in flight: with too few, the "
                         "clients' window, not the brokers' budget, bounds the bytes in flight)")
    ap.add_argument("--partitions", type=int, default=12, help="partitions of the topic")
    ap.add_argument("--warmup", type=float, default=5.0,
                    help="seconds of steady load before the measured steady phase")
    ap.add_argument("--steady", type=float, default=10.0, help="measured steady seconds")
    ap.add_argument("--burst", type=float, default=20.0, help="burst seconds")
    ap.add_argument("--catchup", type=float, default=30.0,
                    help="seconds of steady load after the burst")
    ap.add_argument("--flush-interval-ms", type=int, default=50, help="brokers' flush interval")
    ap.add_argument("--flush-bytes", type=int, default=4 * MiB, help="brokers' --flush-bytes")
    ap.add_argument("--lease-ms", type=int, default=10000, help="brokers' --lease-ms")
    ap.add_argument("--linger-ms", type=int, default=5, help="producers' linger.ms")
    ap.add_argument("--request-bytes", type=int, default=4_000_000,
                    help="producers' message.max.bytes (largest request)")
    ap.add_argument("--no-idempotence", action="store_true",
                    help="non-idempotent producers (a diagnostic, not for recorded runs)")
    ap.add_argument("--message-timeout-s", type=float, default=300.0,
                    help="producers' message.timeout.ms / 1000 (messages queue during the "
                         "burst)")
    ap.add_argument("--rss-period", type=float, default=0.1, help="RSS sampling period, s")
    ap.add_argument("--metrics-period", type=float, default=0.2,
                    help="/metrics sampling period, s")
    ap.add_argument("--broker-arg", action="append", default=[],
                    help="extra argument for 'sluice serve' (repeatable)")
    ap.add_argument("--start-timeout", type=float, default=30.0,
                    help="seconds for the brokers to be healthy and see each other")
    ap.add_argument("--drain-timeout", type=float, default=120.0,
                    help="seconds for the last acknowledgements after the load, and for the "
                         "read-back")
    ap.add_argument("--stop-timeout", type=float, default=20.0,
                    help="seconds a broker has to exit after SIGTERM")
    ap.add_argument("--json", type=Path, help="also write every figure as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dir and the store")
    args = ap.parse_args(argv)
    if args.size < HDR.size:
        ap.error(f"--size must be at least {HDR.size} bytes (the header)")
    if min(args.rate, args.burst_factor, args.partitions, args.producers, args.put_ms,
           args.max_unuploaded_mib, args.tail_cache_mib, args.flush_interval_ms) <= 0 or \
            min(args.steady, args.burst, args.catchup) <= 0 or args.warmup < 0:
        ap.error("rates, sizes, counts and durations must be positive")
    if args.partitions < 3:
        ap.error("--partitions must be at least 3 (each broker should lead some)")
    if args.catchup <= 3 * BIN_S:
        ap.error(f"--catchup must be longer than {3 * BIN_S:g}s")
    # The memory limits go to every broker.
    args.broker_arg = ["--max-unuploaded-bytes", str(args.max_unuploaded_mib * MiB),
                       "--tail-cache-bytes", str(args.tail_cache_mib * MiB),
                       "--block-cache-bytes", str(args.block_cache_mib * MiB),
                       "--compaction-max-bytes", str(args.compaction_max_mib * MiB),
                       *args.broker_arg]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python3 bench/burst_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
                     "ok": False}
    try:
        import confluent_kafka
        client = (f"confluent-kafka {confluent_kafka.version()[0]}, "
                  f"librdkafka {confluent_kafka.libversion()[0]}")
    except ImportError:
        print("error: confluent-kafka is not installed (pip install confluent-kafka)",
              file=sys.stderr)
        return 2
    if not args.bin.is_file():
        print(f"error: broker binary {args.bin} does not exist (cargo build --profile fast, "
              f"or --bin)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(cb.E2E))
    try:
        import pg_server
    except ImportError as e:
        print(f"error: cannot import tests/e2e/pg_server.py: {e} (scripts/install-test-deps.sh)",
              file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, cb._on_signal)
    signal.signal(signal.SIGINT, cb._on_signal)
    args.scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="burst-bench-", dir=args.scratch_parent))
    binary = scratch / "sluice"
    shutil.copy2(args.bin, binary)
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["env"] = {"host": platform.node(), "kernel": platform.release(), "cpus": cb.NCPU,
                      "python": platform.python_version(), "client": client,
                      "loadavg": os.getloadavg(), "bin": str(args.bin),
                      "bin_mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                 time.gmtime(args.bin.stat().st_mtime)),
                      "scratch": str(scratch)}
    info(f"sluice cluster burst benchmark: {args.rate} msgs/s x {args.size} B, burst x"
         f"{args.burst_factor} for {args.burst:g}s; limits per broker: max-unuploaded "
         f"{args.max_unuploaded_mib} MiB, tail cache {args.tail_cache_mib} MiB (+ slack "
         f"{args.slack_mib} MiB); {client}; {cb.NCPU} CPUs; loadavg {os.getloadavg()[0]:.2f}")
    info(f"[setup] binary {args.bin} (built {results['env']['bin_mtime']}) copied to {binary}; "
         f"scratch {scratch}")
    busy = cb.busy_compilers()
    if busy:
        info(f"WARNING: build/test processes are running ({', '.join(busy[:6])}): the machine's "
             f"cores are shared, figures will be skewed")
        results["env"]["busy_processes"] = busy

    ctx = mp.get_context("spawn")
    failure: BenchError | None = None
    phase = "setup"
    pg = None
    run = Run()
    store_dirs: list[Path] = []
    r: dict = {}
    results["run"] = r
    try:
        phase = "postgres"
        pg = pg_server.PostgresServer(scratch / "postgres")
        try:
            pg.start()
        except pg_server.PostgresError as e:
            raise BenchError("postgres", str(e))
        info(f"[setup] PostgreSQL on 127.0.0.1:{pg.port} (pid {pg.pid}), log {pg.log_path}")
        base_env = {k: v for k, v in os.environ.items()
                    if not k.startswith("AWS_") and not k.startswith("SLUICE_")}
        base_env["SLUICE_FAULT_INJECTION"] = "1"
        phase = "run"
        run_bench(args, ctx, pg, binary, scratch, base_env, store_dirs, run, r)
        phase = "shutdown"
        probs = run.teardown(args.stop_timeout)
        if probs:
            raise BenchError("shutdown", "; ".join(probs))
        if r["check"]["problems"]:
            raise BenchError("check", "; ".join(r["check"]["problems"][:6]) +
                             f" (broker logs: {', '.join(r['broker_logs'])})")
    except BenchError as e:
        failure = e
    except (KeyboardInterrupt, cb.Interrupted) as e:
        failure = BenchError(phase, f"interrupted ({e})")
    except Exception as e:
        import traceback

        traceback.print_exc()
        failure = BenchError(phase, f"{type(e).__name__}: {e}")
    finally:
        failure = cb.shut_down(run, pg, failure, args.stop_timeout)

    missed: list[str] = []
    notes: list[str] = []
    if "memory" in r and "check" in r:
        print("\n== phases (latency: produce() to acknowledgement, by send time; in flight: "
              "bytes in sealed flushes, mean over the phase by Little's law) ==")
        grid = phase_grid(r)
        cb.print_grid(grid)
        r["phase_table"] = grid
        print("\n== flushes per broker and phase (the brokers' histograms: sums / counts) ==")
        fgrid = flush_grid(r)
        cb.print_grid(fgrid)
        r["flush_table"] = fgrid
        print("\n== memory per broker (baseline: last sample before the burst; peak: burst "
              "start to the last acknowledgement) ==")
        mgrid = memory_grid(args, r)
        cb.print_grid(mgrid)
        r["memory_table"] = mgrid
        cap = r["capacity"]
        print(f"\nstore model: every PUT {args.put_ms} ms (GET p50/p99 {args.get_p50_ms}/"
              f"{args.get_p99_ms} ms); computed capacity ~{cap['capacity_mib_s']:.2f} MiB/s for "
              f"the 3 brokers (budget {args.max_unuploaded_mib} MiB / {cap['hold_s']:.2f} s "
              f"each) vs offered steady {cap['steady_mib_s']:.2f} MiB/s, burst "
              f"{cap['burst_mib_s']:.2f} MiB/s; acknowledged during the burst "
              f"{r['phases'][1]['acked_mib_s']:.2f} MiB/s")
        print(f"CPU cores over the load: {cpu_line(r)}")
        print()
        r["verdicts"] = {}
        for name, ok, detail in verdicts(args, r):
            r["verdicts"][name] = {"ok": ok, "detail": detail}
            print(f"{'PASS' if ok else 'MISS'} {name}: {detail}")
            if not ok:
                missed.append(name)
        if r["cpu"]["machine_idle_cores"] < IDLE_CORES_BUSY:
            notes.append(f"CPU-BOUND: only {r['cpu']['machine_idle_cores']:.2f} of {cb.NCPU} "
                         f"cores idle over the load")
        if r["cpu"]["other_cores"] > 0.2:
            top = ", ".join(f"{n} {v:.2f}" for n, v in r["cpu"]["other_processes"][:4]
                            if v >= 0.01)
            notes.append(f"CPU outside the benchmark's processes: {r['cpu']['other_cores']:.2f} "
                         f"cores (top: {top or 'none'})")
        if r["busy_processes"]:
            notes.append(f"build/test processes seen: {r['busy_processes'][:6]}")
        if all((m["unuploaded_gauge_max"] or 0) == 0 for m in r["memory"].values()):
            notes.append("sluice_memory_bytes{kind=\"unuploaded\"} stayed 0 on every broker: "
                         "in cluster mode the bytes waiting in flushes are not counted by it "
                         "(they are not in the partitions' memory); 'in flight mean' stands in")
        ph = r["phases"][1]
        if ph["sent_msgs_s"] < 0.95 * ph["offered_msgs_s"]:
            notes.append(f"the producers sent only {ph['sent_msgs_s']:,.0f} of "
                         f"{ph['offered_msgs_s']:,} msgs/s during the burst (client CPU)")
        if r["load"]["buffer_full"]:
            notes.append(f"the producers' queues were full {r['load']['buffer_full']} times")
        for bid, m in sorted(r["memory"].items()):
            if not m["within"] and m["upkeep_holder"]:
                notes.append(f"broker {bid} held the storage upkeep job: its compaction builds "
                             f"each output object (up to 64 MiB) in memory, outside "
                             f"--max-unuploaded-bytes and --tail-cache-bytes; it wrote "
                             f"{m['other_puts']:.0f} objects other than flushes in the window")
        if r.get("sampler_errors"):
            notes.append(f"/metrics samples missed: {r['sampler_errors'][:3]}")
        for n in notes:
            print(f"note: {n}")
    results["missed"] = missed
    results["notes"] = notes
    if failure is None:
        results["ok"] = not missed
    cb.conclude(args, results, failure, scratch, store_dirs,
                "result: the run completed; " + (f"MISSED: {'; '.join(missed)}" if missed
                                              else "every line PASS"),
                keep=bool(missed))
    return 1 if failure is not None or missed else 0


if __name__ == "__main__":
    sys.exit(main())
