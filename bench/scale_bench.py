#!/usr/bin/env python3
"""Sluice cluster benchmark: scale out, broker loss and drain under load (issue 16).

Starts one PostgreSQL server (tests/e2e/pg_server.py), then for every
latency model of --models (`none`, `s3-standard`: the definitions of
bench/cluster_bench.py) a fresh database, a fresh shared file:// store and
three cluster brokers (`sluice serve --catalog postgres://... --broker-id
1..3 --rack zone-0..2 --lease-ms L`, fault injection on). A steady load
runs through all of it: one confluent-kafka producer process at a fixed
rate (--rate msgs/s of --size bytes, acks=all, idempotent, unpinned, so
every broker takes writes) and one unpinned consumer process tailing the
topic. Under that load:

  1. scale out  a fourth broker (--broker-id 4 --rack zone-3) is started.
                Measured from starting its process: (a) its /healthz
                answering, (b) the first produce acknowledged through it (a
                client pinned with zone=zone-3 in client.id, which Metadata
                gives broker 4 alone, producing one record in a retry loop),
                (c) the first fetch served through it (a consumer pinned the
                same way reading that record), then every broker listing it
                and the steady (unpinned) load writing through it. The
                store is listed before and after (keys and sizes) and the new
                objects are set against each broker's
                sluice_objects_written_total / sluice_upload_bytes_total /
                flush PUT deltas: the new broker should write only flush
                objects holding its own new produce data, and nothing should
                be copied (AutoMQ publishes ~1.5 s of partition reassignment
                for a move; Sluice has no reassignment to do);
  2. loss       kill -9 of one of the original brokers: per partition it led,
                the gap between the steady producer's last acknowledgement
                before and first after (max and median), next to the lease
                (a killed broker leaves Metadata when its lease runs out);
  3. drain      SIGTERM to another original broker (it gives its lease up at
                once): the same gap, which should be far below the lease;
  4. check      after the load, everything is read back: every acknowledged
                (partition, offset) must hold its value, nothing twice.

Prints a table per model, PASS/MISS lines (no data copied by the new broker;
no acknowledged record lost; drain gap < lease), a summary, and with --json
FILE every figure. Exit status: 0 when every phase completed and every
expectation held; 1 on a failure (a broker died unexpectedly, did not exit
on SIGTERM, a client error, a lost or duplicated record, a bounded wait ran
out) or a MISS; 2 on a usage problem. Every wait is bounded; brokers,
clients and PostgreSQL are stopped on every path.

Needs confluent-kafka and PostgreSQL (scripts/install-test-deps.sh). See
bench/README.md ("scale_bench").
"""

from __future__ import annotations

import argparse
import bisect
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from array import array
from pathlib import Path

import cluster_bench as cb
from cluster_bench import HDR, MODELS, BenchError, info

# AutoMQ's published figure for moving a partition between brokers.
AUTOMQ_REASSIGN_S = 1.5
AUTOMQ_SOURCE = ("AutoMQ docs, 'Partition Reassignment in Seconds': only the data still in "
                 "the WAL is uploaded, then the partition moves, 'typically within about 1.5 "
                 "seconds' (https://docs.automq.com/automq/architecture/technical-advantage/"
                 "partition-reassignment-in-seconds)")

NEW_ID = 4                      # the broker the scale-out starts (zone-3)
LOOKBACK_NS = 2_000_000_000     # an outage's last ack before it is looked for this far back
BASELINE_NS = 5_000_000_000     # normal ack gaps are taken over this long before an event
OLD_RECORD_SLACK_MS = 2000      # a new flush object may hold records this much older
TRAILER = struct.Struct(">I8s")  # object trailer: footer length (u32be), magic
BATCH_BASE_TS = struct.Struct(">q")  # a v2 record batch's baseTimestamp, at byte 27


def mono_ms(t_ns: int, t0_ns: int) -> float:
    return (t_ns - t0_ns) / 1e6


# ----------------------------------------------------------------------------
# The steady producer (a separate process, as cluster_bench's workers)
# ----------------------------------------------------------------------------

def steady_producer(cfg: dict, ready, go_q, stop, last_ack, counters, out_path: str) -> None:
    """Sends cfg['rate'] msgs/s (token bucket on the monotonic clock) from
    the time go_q gives until `stop` is set, round-robin over the
    partitions; every value is HDR (0, seq, send time) + one filler. Keeps
    each partition's latest acknowledgement time in last_ack (shared), and
    writes one record per acknowledgement: (seq, partition, offset,
    send_ns, ack_ns)."""
    from confluent_kafka import Producer

    topic, partitions, rate = cfg["topic"], cfg["partitions"], cfg["rate"]
    acks = array("q")
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
        part = msg.partition()
        acks.extend((seq, part, msg.offset(), send_ns, now))
        last_ack[part] = now

    def on_error(err):
        if len(client_errors) < 200:
            client_errors.append(f"{time.monotonic_ns()} {err}")

    p = Producer({
        "bootstrap.servers": cfg["bootstrap"],
        "client.id": "scale-bench-producer",       # no zone: every live broker
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": cfg["linger_ms"],
        "socket.nagle.disable": True,
        "topic.metadata.refresh.interval.ms": cfg["metadata_refresh_ms"],
        "queue.buffering.max.messages": 10_000_000,
        "queue.buffering.max.kbytes": 2 * 1024 * 1024,
        "message.timeout.ms": int(cfg["drain_timeout"] * 1000),
        "on_delivery": on_delivery,
        "error_cb": on_error,
    })
    p.list_topics(topic, timeout=10)
    filler = os.urandom(cfg["size"] - HDR.size)
    ready.set()
    t_start = go_q.get(timeout=120)
    period = 1e9 / rate
    produce, poll, mono = p.produce, p.poll, time.monotonic_ns
    parent, give_up = os.getppid(), time.monotonic() + cfg["max_s"]
    seq, buffer_full, last_count = 0, 0, 0
    while not stop.is_set():
        if os.getppid() != parent or time.monotonic() > give_up:
            sys.exit(3)  # the benchmark died or forgot us: never linger
        now = mono()
        due = int((now - t_start) / period) + 1 if now >= t_start else 0
        while seq < due:
            try:
                produce(topic, HDR.pack(0, seq, mono()) + filler, partition=seq % partitions)
            except BufferError:
                buffer_full += 1
                break
            seq += 1
        if now - last_count > 100_000_000:
            counters[0], counters[1], last_count = seq, len(acks) // 5, now
        poll(min(0.05, max(0.001, (t_start + seq * period - mono()) / 1e9)))
    t_stop = mono()
    deadline = time.monotonic() + cfg["drain_timeout"]
    left = len(p)
    while left and time.monotonic() < deadline:
        left = p.flush(0.2)
    counters[0], counters[1] = seq, len(acks) // 5
    with open(out_path + ".bin", "wb") as f:
        acks.tofile(f)
    with open(out_path + ".json", "w") as f:
        json.dump({"sent": seq, "acked": len(acks) // 5, "unacknowledged": left,
                   "t_start_ns": t_start, "t_stop_ns": t_stop,
                   "delivery_errors": errors, "delivery_error_count": error_count[0],
                   "client_errors": client_errors, "buffer_full": buffer_full,
                   "filler": filler.hex()}, f)


# ----------------------------------------------------------------------------
# The shared store
# ----------------------------------------------------------------------------

def list_store(root: Path) -> dict[str, int]:
    """{key: size} of every file under the file store's directory."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                out[os.path.relpath(path, root)] = os.stat(path).st_size
            except FileNotFoundError:
                continue  # deleted while listed
    return out


def read_footer(path: Path) -> dict | None:
    """An object's JSON footer (`chunk* footer footer_len:u32be magic`)
    plus the baseTimestamp of each chunk's first batch; None if unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        flen, magic = TRAILER.unpack_from(data, len(data) - TRAILER.size)
        if magic != b"SLUICEO1":
            return None
        footer = json.loads(data[len(data) - TRAILER.size - flen:len(data) - TRAILER.size])
        footer["overhead"] = flen + TRAILER.size
        footer["first_ts"] = [BATCH_BASE_TS.unpack_from(data, c["position"] + 27)[0]
                              for c in footer.get("chunks", []) if c.get("length", 0) >= 35]
        return footer
    except (OSError, ValueError, struct.error):
        return None


def store_delta(root: Path, before: dict, after: dict, m0: dict, m1: dict, window_wall_ms: int,
                committed: set, committed_later: set) -> dict:
    """What appeared in the store between two listings, set against each
    broker's metric deltas (m0/m1: {broker_id: metrics}, taken so that every
    new object's PUT is inside the metrics window: metrics, listing ...
    listing, metrics)."""
    new = {k: v for k, v in after.items() if k not in before}
    gone = [k for k in before if k not in after]
    changed = [k for k in before if k in after and after[k] != before[k]]
    kinds: dict[str, dict] = {}
    unexplained: list[str] = []
    footers_overhead, oldest_ms = [], None
    uncommitted: list[str] = []
    for key, size in sorted(new.items()):
        name = key.rsplit("/", 1)[-1]
        if ".tmp-" in name:
            kind = "in-progress PUT (temporary file)"
        elif key.startswith("data/"):
            kind = "data (flush objects)"
            foot = read_footer(root / key)
            if foot is None:
                unexplained.append(f"{key} ({size} B): no object footer")
            else:
                footers_overhead.append(foot["overhead"])
                if foot.get("offsets_assigned", True):
                    unexplained.append(f"{key} ({size} B): offsets assigned, not a flush object")
                for ts in foot["first_ts"]:
                    age = window_wall_ms - ts
                    oldest_ms = age if oldest_ms is None else max(oldest_ms, age)
                    if age > OLD_RECORD_SLACK_MS:
                        unexplained.append(f"{key} ({size} B): holds a record {age / 1000:.1f}s "
                                           f"older than the window")
                        break
        elif key.startswith("compacted/"):
            kind = "compacted (upkeep's compaction)"
        else:
            kind = "other"
            unexplained.append(f"{key} ({size} B): not an object key Sluice writes")
        if kind.startswith(("data", "compacted")) and key not in committed:
            uncommitted.append(key)
            if key not in committed_later:
                unexplained.append(f"{key} ({size} B): not in the catalog's object index")
        k = kinds.setdefault(kind, {"objects": 0, "bytes": 0})
        k["objects"] += 1
        k["bytes"] += size
    for key in changed:
        unexplained.append(f"{key}: size changed {before[key]} -> {after[key]} B")
    per = {}
    for bid, after_m in m1.items():
        before_m = m0.get(bid, {})
        d = lambda name, **kw: cb.mdelta(after_m, before_m, name, **kw)  # noqa: E731
        per[bid] = {
            "objects_written": d("sluice_objects_written_total"),
            "upload_bytes": d("sluice_upload_bytes_total"),
            "flush_puts": d("sluice_flush_duration_seconds_count", stage="put"),
            "bytes_in": d("sluice_topic_bytes_in_total"),
            "produce_requests": d("sluice_requests_total", api="Produce"),
            "gets": d("sluice_object_store_requests_total", op="get"),
        }
        per[bid]["other_puts"] = per[bid]["objects_written"] - per[bid]["flush_puts"]
    tot = {k: sum(p[k] for p in per.values()) for k in next(iter(per.values()))}
    data = kinds.get("data (flush objects)", {"objects": 0, "bytes": 0})
    comp = kinds.get("compacted (upkeep's compaction)", {"objects": 0, "bytes": 0})
    if data["objects"] > tot["flush_puts"]:
        unexplained.append(f"{data['objects']} new flush objects but {tot['flush_puts']:.0f} "
                           f"flush PUTs counted by the brokers")
    if comp["objects"] > tot["other_puts"]:
        unexplained.append(f"{comp['objects']} new compacted objects but {tot['other_puts']:.0f} "
                           f"non-flush PUTs counted by the brokers")
    if data["bytes"] + comp["bytes"] > tot["upload_bytes"]:
        unexplained.append(f"{data['bytes'] + comp['bytes']:,} B of new objects but "
                           f"{tot['upload_bytes']:,.0f} B uploaded by the brokers")
    return {"new_objects": len(new), "new_bytes": sum(new.values()), "gone_objects": len(gone),
            "gone_bytes": sum(before[k] for k in gone), "changed": changed, "kinds": kinds,
            "per_broker": {str(k): v for k, v in per.items()}, "totals": tot,
            "footer_overhead_max": max(footers_overhead, default=0),
            "oldest_record_in_new_flush_objects_ms": oldest_ms,
            "uncommitted_at_listing": len(uncommitted), "unexplained": unexplained}


def catalog_objects(pg, dbname: str) -> set:
    try:
        return {r[0] for r in pg.query("SELECT key FROM objects", db=dbname)}
    except Exception as e:
        raise BenchError("store", f"reading the catalog's object index: {e}")


# ----------------------------------------------------------------------------
# Probes through one broker (zone pinning)
# ----------------------------------------------------------------------------

def pinned_conf(b: cb.Broker, **extra) -> dict:
    """A client that only ever talks to broker b: bootstrap b alone, and its
    zone in client.id, so b's Metadata names b alone once b is live."""
    return {"bootstrap.servers": b.bootstrap, "client.id": f"scale-bench-probe,zone={b.zone}",
            "socket.nagle.disable": True, "reconnect.backoff.ms": 10,
            "reconnect.backoff.max.ms": 100, "retry.backoff.ms": 20,
            "retry.backoff.max.ms": 100, **extra}


def only_through(client, b: cb.Broker, topic: str) -> str | None:
    """None when the client's Metadata names b alone and the topic's
    partition 0 is led by b; else why not."""
    try:
        md = client.list_topics(topic, timeout=1.0)
    except Exception as e:
        return f"metadata: {e}"
    t = md.topics.get(topic)
    if sorted(md.brokers) != [b.broker_id]:
        return f"metadata names brokers {sorted(md.brokers)}"
    if t is None or t.error is not None or 0 not in t.partitions or \
            t.partitions[0].leader != b.broker_id:
        return f"topic {topic}: {t.error if t is not None else 'missing'}"
    return None


def pinned_produce(b: cb.Broker, topic: str, value: bytes, deadline: float):
    """Produces one record through broker b alone, retrying until it is
    acknowledged. Returns (ack time ns, offset, attempts)."""
    from confluent_kafka import Producer

    p = Producer(pinned_conf(b, acks="all", **{"linger.ms": 0, "message.timeout.ms": 2000}))
    attempts, last = 0, "no attempt"
    try:
        while time.monotonic() < deadline:
            b.check("scale-out")
            why = only_through(p, b, topic)
            if why is not None:
                last = why
                time.sleep(0.01)
                continue
            attempts += 1
            got: dict = {}
            p.produce(topic, value, partition=0, on_delivery=lambda err, msg: got.update(
                err=err, offset=msg.offset(), t=time.monotonic_ns()))
            p.flush(max(0.1, min(3.0, deadline - time.monotonic())))
            if got.get("err") is None and "t" in got:
                return got["t"], got["offset"], attempts
            last = f"delivery: {got.get('err', 'no report')}"
    finally:
        p.flush(1)
    raise BenchError("scale-out", f"no produce acknowledged through broker {b.broker_id} in time "
                                  f"({attempts} attempts; last: {last}); log {b.log_path}")


def pinned_fetch(b: cb.Broker, topic: str, offset: int, value: bytes, deadline: float) -> int:
    """Reads the record at `offset` through broker b alone; its receipt time (ns)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(pinned_conf(b, **{"group.id": f"scale-bench-probe-{os.getpid()}",
                                   "enable.auto.commit": False, "fetch.wait.max.ms": 100}))
    last = "no attempt"
    try:
        while time.monotonic() < deadline:
            why = only_through(c, b, topic)
            if why is None:
                break
            last = why
            time.sleep(0.01)
        else:
            raise BenchError("scale-out", f"consumer metadata never named broker {b.broker_id} "
                                          f"alone ({last})")
        c.assign([TopicPartition(topic, 0, offset)])
        while time.monotonic() < deadline:
            b.check("scale-out")
            m = c.poll(0.05)
            if m is None:
                continue
            if m.error() is not None:
                last = str(m.error())
                continue
            if m.offset() == offset:
                t = time.monotonic_ns()
                if m.value() != value:
                    raise BenchError("scale-out", f"the record at {topic}/0@{offset} read "
                                                  f"through broker {b.broker_id} is not the one "
                                                  f"produced")
                return t
        raise BenchError("scale-out", f"no fetch served through broker {b.broker_id} in time "
                                      f"(last: {last}); log {b.log_path}")
    finally:
        c.close()


def poll_healthz(b: cb.Broker, deadline: float) -> int:
    while time.monotonic() < deadline:
        b.check("scale-out")
        try:
            with urllib.request.urlopen(b.url + "/healthz", timeout=0.5) as r:
                if r.status == 200:
                    return time.monotonic_ns()
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.01)
    raise BenchError("scale-out", f"broker {b.broker_id}'s /healthz did not answer 200 in time; "
                                  f"log {b.log_path}")


def cluster_view(b: cb.Broker) -> dict:
    """{broker_id: jobs} from b's GET /v1/cluster."""
    body = cb.http_json(b.url + "/v1/cluster", timeout=2)
    return {x["broker_id"]: x.get("jobs", []) for x in body.get("brokers", [])}


def upkeep_holder(b: cb.Broker):
    try:
        return next((bid for bid, jobs in cluster_view(b).items() if "storage-upkeep" in jobs),
                    None)
    except (urllib.error.URLError, OSError, ValueError):
        return None


# ----------------------------------------------------------------------------
# Gaps in the producer's acknowledgements
# ----------------------------------------------------------------------------

def ack_gap(times: list[int], t_event: int, t_until: int):
    """The largest gap between consecutive acknowledgements of one partition
    that ends after t_event and starts at most LOOKBACK before it and before
    t_until: (gap ns, last ack before, first ack after) or None."""
    best = None
    j = max(1, bisect.bisect_left(times, t_event - LOOKBACK_NS))
    for k in range(j, len(times)):
        a, b = times[k - 1], times[k]
        if a > t_until:
            break
        if b > t_event and (best is None or b - a > best[0]):
            best = (b - a, a, b)
    return best


def normal_gap_ms(ack_times: dict, parts, t_event: int) -> float:
    """The largest gap between consecutive acks of these partitions in the
    BASELINE before t_event (ms): what a gap looks like without an event."""
    worst = 0
    for p in parts:
        ts = ack_times.get(p, [])
        lo = bisect.bisect_left(ts, t_event - BASELINE_NS)
        hi = bisect.bisect_left(ts, t_event - 200_000_000)
        for k in range(max(lo, 1), hi):
            worst = max(worst, ts[k] - ts[k - 1])
    return worst / 1e6


def gap_figures(ack_times: dict, ev: dict, partitions: int) -> dict:
    parts = ev["partitions"]
    per, resume = {}, {}
    for p in parts:
        g = ack_gap(ack_times.get(p, []), ev["t_ns"], ev["t_done_ns"])
        if g is not None:
            per[p] = g[0] / 1e6
            resume[p] = (g[2] - ev["t_ns"]) / 1e6
    others = [p for p in range(partitions) if p not in parts]
    other_gaps = [g[0] / 1e6 for p in others
                  for g in [ack_gap(ack_times.get(p, []), ev["t_ns"], ev["t_done_ns"])] if g]
    vals = sorted(per.values())
    return {"gap_ms_by_partition": {str(p): v for p, v in per.items()},
            "resume_ms_by_partition": {str(p): v for p, v in resume.items()},
            "gap_max_ms": vals[-1] if vals else None,
            "gap_median_ms": statistics.median(vals) if vals else None,
            "resume_max_ms": max(resume.values()) if resume else None,
            "other_partitions_gap_max_ms": max(other_gaps) if other_gaps else None,
            "normal_gap_max_ms": normal_gap_ms(ack_times, range(partitions), ev["t_ns"]),
            "partitions_without_gap": [p for p in parts if p not in per]}


# ----------------------------------------------------------------------------
# One model
# ----------------------------------------------------------------------------

class Run:
    """The processes of one model's run, so that teardown finds them all."""

    def __init__(self):
        self.brokers: list[cb.Broker] = []   # every broker started
        self.cluster = cb.Cluster([])        # the ones that should be running
        self.procs: list = []                # client processes
        self.stopped: set[int] = set()       # ids stopped on purpose

    def teardown(self, stop_timeout: float) -> list[str]:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
                if p.is_alive():
                    p.kill()
                    p.join(5)
        problems = self.cluster.stop(stop_timeout)
        for b in self.brokers:  # e.g. a broker killed on purpose: close its log
            if b.broker_id in self.stopped and b.proc is not None and b.proc.poll() is None:
                b.proc.kill()
            b.wait_stopped(5)
        self.cluster = cb.Cluster([])
        return problems


def broker_event(kind: str, victim: cb.Broker, run: Run, parts: list[int], last_ack,
                 args, check_load) -> dict:
    """kill -9 (kind "kill") or SIGTERM ("drain") one broker under the load;
    waits (bounded) until the survivors dropped it from /v1/cluster and every
    partition it led was acknowledged again after that."""
    survivors = [b for b in run.cluster.brokers if b is not victim]
    holder_before = upkeep_holder(survivors[0])
    run.cluster.brokers = survivors
    run.stopped.add(victim.broker_id)
    phase = "loss" if kind == "kill" else "drain"
    cpu_s = cb.proc_cpu_seconds(victim.pid)  # its CPU for the load's accounting
    t_event = time.monotonic_ns()
    if kind == "kill":
        victim.proc.kill()
        bound = 2 * args.lease_ms / 1000 + args.phase_timeout
    else:
        victim.signal_stop()
        bound = args.stop_timeout + args.phase_timeout
    deadline = time.monotonic() + bound
    t_exit = t_drop = None
    while True:
        now = time.monotonic_ns()
        if t_exit is None and victim.proc.poll() is not None:
            t_exit = now
        if t_exit is None and kind == "drain" and (now - t_event) / 1e9 > args.stop_timeout:
            victim.wait_stopped(0.1)  # saves its threads, then SIGKILL
            if victim.stop_note:
                raise BenchError(phase, f"broker {victim.broker_id} {victim.stop_note}")
            continue
        if t_drop is None:
            try:
                if victim.broker_id not in cluster_view(survivors[0]):
                    t_drop = now
            except (urllib.error.URLError, OSError, ValueError):
                pass
        if t_exit is not None and t_drop is not None and \
                all(last_ack[p] > max(t_exit, t_drop) for p in parts):
            break
        if time.monotonic() > deadline:
            waiting = [p for p in parts if last_ack[p] <= max(t_exit or 0, t_drop or 0)]
            raise BenchError(phase, f"after {bound:.0f}s: broker {victim.broker_id} exited "
                                    f"{t_exit is not None}, dropped from /v1/cluster "
                                    f"{t_drop is not None}, partitions without a new ack "
                                    f"{waiting} (logs: {', '.join(str(b.log_path) for b in survivors)})")
        run.cluster.check(phase)
        check_load(phase)
        time.sleep(0.02)
    t_done = time.monotonic_ns()
    victim.wait_stopped(5)
    if kind == "drain" and victim.exit_code != 0:
        raise BenchError(phase, f"broker {victim.broker_id} exited with code {victim.exit_code} "
                                f"after SIGTERM; log {victim.log_path}")
    return {"kind": kind, "broker_id": victim.broker_id, "partitions": parts,
            "cpu_s": cpu_s, "t_ns": t_event, "t_done_ns": t_done,
            "exit_ms": mono_ms(t_exit, t_event), "exit_code": victim.exit_code,
            "dropped_from_cluster_ms": mono_ms(t_drop, t_event),
            "all_partitions_acked_again_ms": mono_ms(t_done, t_event),
            "upkeep_holder_before": holder_before, "upkeep_holder_after": upkeep_holder(survivors[0]),
            "log": str(victim.log_path)}


def pick_victim(leaders: dict, exclude: set) -> tuple[int, list[int]]:
    """The original broker (1..3, not excluded) leading the most partitions."""
    counts = {bid: sorted(p for p, lead in leaders.items() if lead == bid)
              for bid in (1, 2, 3) if bid not in exclude}
    bid = max(counts, key=lambda k: (len(counts[k]), -k))
    return bid, counts[bid]


def run_model(args, ctx, pg, binary: Path, scratch: Path, model: str, base_env: dict,
              store_dirs: list, run: Run, res: dict) -> None:
    """One model's run; fills `res` as it goes (a failure leaves what was measured)."""
    spec = MODELS[model]
    tag = f"[{model}]"
    res.update(model=model, model_spec=spec, lease_ms=args.lease_ms,
               metadata_refresh_ms=args.metadata_refresh_ms)
    workdir = scratch / model
    workdir.mkdir()
    dbname = f"sb_{model.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    catalog_url = pg.create_database(dbname)
    store_dir = Path(tempfile.mkdtemp(prefix="sluice-scale-bench-store-", dir=args.store_dir))
    store_dirs.append(store_dir)
    store_url = f"file://{store_dir}"
    ports = cb.free_ports(8)
    run.brokers = [cb.Broker(binary, i, workdir, catalog_url, store_url, base_env, args,
                             args.flush_interval_ms, (ports[2 * i], ports[2 * i + 1]))
                   for i in range(4)]
    run.cluster = cb.Cluster(run.brokers[:3])
    res.update(catalog=catalog_url, store=store_url,
               broker_logs=[str(b.log_path) for b in run.brokers])
    info(f"{tag} starting brokers 1-3 (zone-0..2, --lease-ms {args.lease_ms}); catalog "
         f"{catalog_url}, store {store_url}, logs {workdir}/broker*.log")
    took = run.cluster.start(args.start_timeout)
    for b in run.cluster.brokers:
        b.set_fault(spec["fault"])
    info(f"{tag} brokers up after {took:.1f}s; latency model {json.dumps(spec['fault'])}")
    bootstrap3 = run.cluster.bootstrap

    # Topics: the load's (leaders spread over the three) and the probe's.
    topic, leaders3, _ = cb.create_balanced_topic(run.cluster, f"scale-bench-{model}",
                                                  args.partitions, attempts=8)
    from confluent_kafka.admin import AdminClient, NewTopic

    probe_topic = f"scale-bench-probe-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap3})
    try:
        admin.create_topics([NewTopic(probe_topic, 1, 1)],
                            operation_timeout=30)[probe_topic].result(30)
    except Exception as e:
        raise BenchError("topic", f"CreateTopics({probe_topic}) failed: {e}")
    cb.wait_leaders(run.cluster, probe_topic, 1, 30)
    res.update(topic=topic, probe_topic=probe_topic,
               leaders_3={str(p): lead for p, lead in sorted(leaders3.items())})
    info(f"{tag} topic {topic}: {args.partitions} partitions, leaders {dict(sorted(leaders3.items()))}")

    # Load: the tailing consumer (cluster_bench's), then the steady producer.
    start_offsets = [0] * args.partitions
    max_s = 600 + 4 * args.drain_timeout
    cons_out, prod_out = str(workdir / "consumer"), str(workdir / "producer")
    stop_c, ends_q, c_counters, c_ready = ctx.Event(), ctx.Queue(), ctx.Array("q", 1, lock=False), \
        ctx.Event()
    common = {"bootstrap": bootstrap3, "topic": topic, "partitions": args.partitions,
              "size": args.size, "drain_timeout": args.drain_timeout, "max_s": max_s}
    consumer = ctx.Process(target=cb.consumer_worker, name="consumer", daemon=True,
                           args=({**common, "index": 0, "consumers": 1,
                                  "fetch_wait_max_ms": args.fetch_wait_max_ms,
                                  "start_offsets": start_offsets},
                                 c_ready, stop_c, ends_q, c_counters, cons_out))
    stop_p, go_q, p_counters, p_ready = ctx.Event(), ctx.Queue(), ctx.Array("q", 2, lock=False), \
        ctx.Event()
    last_ack = ctx.Array("q", args.partitions, lock=False)
    producer = ctx.Process(target=steady_producer, name="producer", daemon=True,
                           args=({**common, "rate": args.rate, "linger_ms": args.linger_ms,
                                  "metadata_refresh_ms": args.metadata_refresh_ms},
                                 p_ready, go_q, stop_p, last_ack, p_counters, prod_out))
    for p in (consumer, producer):
        p.start()
        run.procs.append(p)

    def check_load(phase):
        for p in (consumer, producer):
            if not p.is_alive():
                raise BenchError(phase, f"{p.name} process exited with code {p.exitcode}")

    def wait(seconds, phase):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))
            run.cluster.check(phase)
            check_load(phase)

    deadline = time.monotonic() + 60
    for p, rd in ((consumer, c_ready), (producer, p_ready)):
        while not rd.wait(0.2):
            check_load("load")
            if time.monotonic() > deadline:
                raise BenchError("load", f"{p.name} not ready within 60s")
    t_load = time.monotonic_ns() + 100_000_000
    go_q.put(t_load)
    groups = {f"broker{b.broker_id}": [b.pid] for b in run.cluster.brokers}
    groups.update({"postgres": cb.descendants(pg.pid), "producer": [producer.pid],
                   "consumer": [consumer.pid], "bench (this process)": [os.getpid()]})
    cpu0 = cb.CpuSnapshot(groups, [producer.pid, consumer.pid])
    busy = set(cb.busy_compilers())
    info(f"{tag} load: {args.rate} msgs/s x {args.size} B, acks=all, idempotent, unpinned; "
         f"{args.warmup:g}s warm-up")
    wait(args.warmup, "warm-up")

    # 1. Scale out.
    b4 = run.brokers[NEW_ID - 1]
    m0 = {b.broker_id: b.metrics() for b in run.cluster.brokers}
    objs0 = list_store(store_dir)
    wall0_ms = int(time.time() * 1000)
    t0 = time.monotonic_ns()
    b4.start()
    groups[f"broker{NEW_ID}"] = [b4.pid]
    dl = time.monotonic() + args.phase_timeout
    t_a = poll_healthz(b4, dl)
    b4.set_fault(spec["fault"])
    t_model = time.monotonic_ns()
    run.cluster.brokers.append(b4)
    value = f"probe {model} {uuid.uuid4().hex}".encode()
    t_b, probe_offset, attempts = pinned_produce(b4, probe_topic, value, dl)
    t_c = pinned_fetch(b4, probe_topic, probe_offset, value, dl)
    info(f"{tag} scale-out: broker {NEW_ID} /healthz {mono_ms(t_a, t0):.0f} ms, first produce "
         f"through it {mono_ms(t_b, t0):.0f} ms ({attempts} attempt(s)), first fetch "
         f"{mono_ms(t_c, t0):.0f} ms after its start")
    want = [1, 2, 3, NEW_ID]
    t_members = None
    while t_members is None:
        try:
            if all(b.live_brokers() == want for b in run.cluster.brokers):
                t_members = time.monotonic_ns()
                break
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() > dl:
            raise BenchError("scale-out", f"not every broker lists brokers {want} in time")
        time.sleep(0.02)
    leaders4 = cb.wait_leaders(run.cluster, topic, args.partitions, 30)
    b4_parts = sorted(p for p, lead in leaders4.items() if lead == NEW_ID)
    probe_requests = cb.mdelta(b4.metrics(), {}, "sluice_requests_total", api="Produce")
    t_d = None
    if b4_parts:
        d_end = time.monotonic() + args.metadata_refresh_ms / 1000 + 10
        while time.monotonic() < d_end:
            if cb.mdelta(b4.metrics(), {}, "sluice_requests_total", api="Produce") > probe_requests:
                t_d = time.monotonic_ns()
                break
            run.cluster.check("scale-out")
            time.sleep(0.1)
    wait(args.settle, "scale-out")
    objs1 = list_store(store_dir)
    m1 = {b.broker_id: b.metrics() for b in run.cluster.brokers}
    t1 = time.monotonic_ns()
    committed = catalog_objects(pg, dbname)
    wait(2, "scale-out")
    committed_later = catalog_objects(pg, dbname)
    sd = store_delta(store_dir, objs0, objs1, m0, m1, wall0_ms, committed, committed_later)
    nb = sd["per_broker"][str(NEW_ID)]
    copied = nb["other_puts"] > 0 or nb["upload_bytes"] > \
        nb["bytes_in"] + nb["objects_written"] * max(sd["footer_overhead_max"], 1)
    res["scale_out"] = {
        "healthz_ms": mono_ms(t_a, t0), "model_applied_ms": mono_ms(t_model, t0),
        "first_produce_ms": mono_ms(t_b, t0), "produce_attempts": attempts,
        "first_fetch_ms": mono_ms(t_c, t0), "listed_by_all_ms": mono_ms(t_members, t0),
        "steady_load_through_new_ms": mono_ms(t_d, t0) if t_d else None,
        "new_broker_partitions": b4_parts,
        "leaders_4": {str(p): lead for p, lead in sorted(leaders4.items())},
        "window_s": (t1 - t0) / 1e9, "store": sd,
        "new_broker_wrote_only_its_produce_data": not copied,
        "no_data_copied": not copied and not sd["unexplained"],
    }
    info(f"{tag} store over the {res['scale_out']['window_s']:.1f}s scale-out window: "
         f"{sd['new_objects']} new objects ({sd['new_bytes']:,} B), unexplained "
         f"{len(sd['unexplained'])}")

    # 2. Broker loss: kill -9 the original broker leading the most partitions.
    victim_id, parts = pick_victim(leaders4, set())
    info(f"{tag} kill -9 broker {victim_id} (leads partitions {parts}); lease {args.lease_ms} ms")
    loss = broker_event("kill", run.brokers[victim_id - 1], run, parts, last_ack, args,
                        check_load)
    info(f"{tag} broker {victim_id} out of /v1/cluster after {loss['dropped_from_cluster_ms']:.0f}"
         f" ms; its partitions acknowledged again by {loss['all_partitions_acked_again_ms']:.0f} ms")
    wait(args.settle, "loss")

    # 3. Drain: SIGTERM another original broker.
    leaders_now = cb.wait_leaders(run.cluster, topic, args.partitions, 30)
    drain_id, dparts = pick_victim(leaders_now, {victim_id})
    info(f"{tag} SIGTERM broker {drain_id} (leads partitions {dparts})")
    drain = broker_event("drain", run.brokers[drain_id - 1], run, dparts, last_ack, args,
                         check_load)
    info(f"{tag} broker {drain_id} exited after {drain['exit_ms']:.0f} ms (code "
         f"{drain['exit_code']}), out of /v1/cluster after {drain['dropped_from_cluster_ms']:.0f} "
         f"ms")
    drain["leaders_before"] = {str(p): lead for p, lead in sorted(leaders_now.items())}
    res["loss"], res["drain"] = loss, drain
    wait(args.tail, "tail")
    groups["postgres"] = cb.descendants(pg.pid)  # with broker 4's backends
    cpu1 = cb.CpuSnapshot(groups, [producer.pid, consumer.pid])
    busy |= set(cb.busy_compilers())
    for ev in (loss, drain):  # the brokers gone: their CPU when they were stopped
        pid = run.brokers[ev["broker_id"] - 1].pid
        cpu1.groups[f"broker{ev['broker_id']}"][pid] = ev["cpu_s"]

    # 4. Stop the load, read everything back.
    stop_p.set()
    producer.join(args.drain_timeout + 30)
    if producer.is_alive() or producer.exitcode != 0:
        raise BenchError("drain", f"producer did not finish its deliveries (exit "
                                  f"{producer.exitcode})")
    survivors = run.cluster.bootstrap
    ends = cb.high_watermarks(survivors, topic, args.partitions)
    stop_c.set()
    ends_q.put(ends)
    consumer.join(args.drain_timeout + 30)
    if consumer.is_alive() or consumer.exitcode != 0:
        raise BenchError("drain", f"tailing consumer did not reach the end offsets {ends} "
                                  f"(exit {consumer.exitcode})")
    run.cluster.check("check")
    res["cpu"] = cb.cpu_window(cpu0, cpu1)
    res["cpu"].pop("busiest_thread_cores", None)
    res["busy_processes"] = sorted(busy)

    with open(prod_out + ".json") as f:
        pmeta = json.load(f)
    raw = array("q")
    with open(prod_out + ".bin", "rb") as f:
        raw.frombytes(f.read())
    acked: dict = {}
    ack_times: dict[int, list[int]] = {}
    dup_acks = 0
    for j in range(0, len(raw), 5):
        seq, part, off, send_ns, ack_ns = raw[j:j + 5]
        if (part, off) in acked:
            dup_acks += 1
        acked[(part, off)] = (seq, send_ns)
        ack_times.setdefault(part, []).append(ack_ns)
    for ts in ack_times.values():
        ts.sort()
    res["load"] = {"sent": pmeta["sent"], "acked": len(raw) // 5,
                   "achieved_msgs_s": pmeta["sent"] / ((pmeta["t_stop_ns"] - pmeta["t_start_ns"])
                                                       / 1e9),
                   "buffer_full": pmeta["buffer_full"],
                   "producer_client_errors": pmeta["client_errors"][:20]}
    loss.update(gap_figures(ack_times, loss, args.partitions))
    drain.update(gap_figures(ack_times, drain, args.partitions))

    filler = bytes.fromhex(pmeta["filler"])
    log, verify_errors = read_back(survivors, topic, ends, filler, args.drain_timeout)
    res["check"] = check_data(args, pmeta, acked, dup_acks, log, verify_errors, ends,
                              cons_out)
    info(f"{tag} data: sent {pmeta['sent']:,}, acked {len(acked):,}, in the log "
         f"{sum(ends):,}: lost {res['check']['lost']}, duplicates {res['check']['duplicates']}")


def read_back(bootstrap: str, topic: str, ends: list[int], filler: bytes, timeout: float):
    """{(partition, offset): (producer, seq, send_ns, size, filler ok)} of
    the whole topic, read through the survivors; and read errors."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "client.id": "scale-bench-verify",
                  "group.id": f"scale-bench-verify-{os.getpid()}", "enable.auto.commit": False})
    got: dict = {}
    errors: list[str] = []
    nxt = {p: 0 for p in range(len(ends))}
    c.assign([TopicPartition(topic, p, 0) for p in range(len(ends)) if ends[p] > 0])
    deadline = time.monotonic() + timeout
    try:
        while any(nxt[p] < ends[p] for p in nxt) and time.monotonic() < deadline:
            for m in c.consume(num_messages=10_000, timeout=0.5):
                if m.error() is not None:
                    errors.append(str(m.error()))
                    continue
                v = m.value()
                part, off = m.partition(), m.offset()
                hdr = HDR.unpack_from(v, 0) if len(v) >= HDR.size else (-1, -1, -1)
                got[(part, off)] = (*hdr, len(v), v[HDR.size:] == filler)
                nxt[part] = max(nxt[part], off + 1)
    finally:
        c.close()
    short = {p: (nxt[p], ends[p]) for p in nxt if nxt[p] < ends[p]}
    if short:
        errors.append(f"read back stopped short after {timeout:.0f}s: {short}")
    return got, errors


def check_data(args, pmeta, acked, dup_acks, log, verify_errors, ends, cons_out) -> dict:
    problems = []
    if pmeta["delivery_error_count"]:
        problems.append(f"{pmeta['delivery_error_count']} delivery errors, first: "
                        f"{pmeta['delivery_errors'][:3]}")
    if pmeta["unacknowledged"]:
        problems.append(f"{pmeta['unacknowledged']} messages never acknowledged")
    if dup_acks:
        problems.append(f"{dup_acks} acknowledgements named an already acknowledged offset")
    problems.extend(verify_errors[:5])
    lost = []
    for (part, off), (seq, send_ns) in acked.items():
        g = log.get((part, off))
        if g is None or g[1:3] != (seq, send_ns) or g[3] != args.size or not g[4]:
            lost.append((part, off))
    seqs: dict = {}
    for (part, off), g in log.items():
        seqs.setdefault(g[1], []).append((part, off))
    dups = {s: where for s, where in seqs.items() if len(where) > 1}
    acked_seqs = {v[0] for v in acked.values()}
    unacked = [s for s in seqs if s not in acked_seqs]
    gaps = [p for p in range(len(ends)) if sorted(o for (q, o) in log if q == p) !=
            list(range(ends[p]))]
    if lost:
        problems.append(f"{len(lost)} acknowledged records missing or different, e.g. {lost[:5]}")
    if dups:
        problems.append(f"{len(dups)} records in the log more than once, e.g. "
                        f"{list(dups.items())[:3]}")
    if unacked:
        problems.append(f"{len(unacked)} records in the log were never acknowledged")
    if gaps:
        problems.append(f"partitions {gaps}: the offsets read are not 0..high watermark")
    # The tailing consumer: every acknowledged record once.
    with open(cons_out + ".json") as f:
        cmeta = json.load(f)
    recs = array("q")
    with open(cons_out + ".bin", "rb") as f:
        recs.frombytes(f.read())
    tail_seen: dict = {}
    tail_dups = 0
    for j in range(0, len(recs), 7):
        part, off, _, seq = recs[j:j + 4]
        if (part, off) in tail_seen:
            tail_dups += 1
        tail_seen[(part, off)] = seq
    tail_missing = sum(1 for k, (seq, _) in acked.items() if tail_seen.get(k) != seq)
    if cmeta["error_count"]:
        problems.append(f"tailing consumer: {cmeta['error_count']} errors, first "
                        f"{cmeta['errors'][:3]}")
    if tail_missing:
        problems.append(f"tailing consumer: {tail_missing} acknowledged records not received")
    if tail_dups:
        problems.append(f"tailing consumer: {tail_dups} records received twice")
    return {"acked": len(acked), "in_log": sum(ends), "read_back": len(log), "lost": len(lost),
            "duplicates": len(dups), "never_acked": len(unacked), "offset_gaps": gaps,
            "tail_received": len(recs) // 7, "tail_missing": tail_missing,
            "tail_duplicates": tail_dups, "tail_client_errors": cmeta["client_errors"][:10],
            "problems": problems, "ok": not problems}


# ----------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------

def ms(x) -> str:
    return "n/a" if x is None else f"{x:,.0f} ms"


def verdicts(r: dict) -> dict:
    """The stated expectations: {name: (ok, detail)}."""
    so, dr, ck = r["scale_out"], r["drain"], r["check"]
    return {
        "no data copied": (so["no_data_copied"],
                           f"broker {NEW_ID} wrote {so['store']['per_broker'][str(NEW_ID)]['objects_written']:.0f} "
                           f"objects, all flushes; {len(so['store']['unexplained'])} unexplained "
                           f"objects"),
        "no acknowledged record lost": (ck["ok"], f"{ck['acked']:,} acknowledged, {ck['lost']} "
                                                  f"lost, {ck['duplicates']} duplicated"),
        "drain gap < lease": (dr["gap_max_ms"] is not None and dr["gap_max_ms"] < r["lease_ms"],
                              f"max {ms(dr['gap_max_ms'])} vs lease {r['lease_ms']} ms"),
    }


def model_rows(r: dict) -> list[dict]:
    rows: list[dict] = []

    def row(figure, value, target="", st=""):
        rows.append({"figure": figure, "value": value, "target": target, "status": st})

    so, sd, lo, dr, ck, cpu = (r["scale_out"], r["scale_out"]["store"], r["loss"], r["drain"],
                               r["check"], r["cpu"])
    v = verdicts(r)
    st = lambda k: "PASS" if v[k][0] else "MISS"  # noqa: E731
    row("load", f"{r['load']['achieved_msgs_s']:,.0f} msgs/s; {ck['acked']:,} acknowledged")
    row(f"scale out: broker {NEW_ID} /healthz", ms(so["healthz_ms"]), "from starting its process")
    row("  first produce acked through it (zone-3)", ms(so["first_produce_ms"]),
        f"{so['produce_attempts']} attempt(s); model applied at {ms(so['model_applied_ms'])}")
    row("  first fetch served through it", ms(so["first_fetch_ms"]))
    row("  every broker lists it", ms(so["listed_by_all_ms"]))
    row("  steady load writing through it", ms(so["steady_load_through_new_ms"]),
        f"partitions {so['new_broker_partitions']}; clients refresh metadata every "
        f"{r['metadata_refresh_ms'] / 1000:g}s")
    row("  partition reassignment", f"none: first produce {ms(so['first_produce_ms'])} after "
        f"start, nothing moved", f"AutoMQ: ~{AUTOMQ_REASSIGN_S:g} s per reassignment")
    kinds = "; ".join(f"{k} {x['objects']} / {x['bytes']:,} B" for k, x in sd["kinds"].items())
    row(f"  store over the {so['window_s']:.1f}s window", f"{sd['new_objects']} new objects "
        f"({sd['new_bytes']:,} B): {kinds or 'none'}; {sd['gone_objects']} deleted")
    for bid, p in sd["per_broker"].items():
        row(f"  broker {bid} wrote", f"{p['objects_written']:.0f} objects ({p['flush_puts']:.0f} "
            f"flushes, {p['other_puts']:.0f} other), {p['upload_bytes']:,.0f} B; produced "
            f"through it {p['bytes_in']:,.0f} B; GETs {p['gets']:.0f}")
    row("  no data copied", v["no data copied"][1],
        f"broker {NEW_ID}: only flushes of its produce data; every new object explained",
        st("no data copied"))
    for u in sd["unexplained"][:10]:
        row("    unexplained", u)
    row(f"broker loss: kill -9 broker {lo['broker_id']}", f"partitions {lo['partitions']}; "
        f"upkeep holder {lo['upkeep_holder_before']} -> {lo['upkeep_holder_after']}")
    row("  out of /v1/cluster after", ms(lo["dropped_from_cluster_ms"]),
        f"lease {r['lease_ms']} ms")
    row("  ack gap max / median", f"{ms(lo['gap_max_ms'])} / {ms(lo['gap_median_ms'])}",
        f"expected ~ lease + renewal = {r['lease_ms'] * 1.25:,.0f} ms")
    row("  kill -> deliveries resumed (max)", ms(lo["resume_max_ms"]),
        f"other partitions' max gap {ms(lo['other_partitions_gap_max_ms'])}; normal max gap "
        f"{ms(lo['normal_gap_max_ms'])}")
    row(f"drain: SIGTERM broker {dr['broker_id']}", f"partitions {dr['partitions']}; exit after "
        f"{ms(dr['exit_ms'])} (code {dr['exit_code']}); out of /v1/cluster after "
        f"{ms(dr['dropped_from_cluster_ms'])}")
    row("  ack gap max / median", f"{ms(dr['gap_max_ms'])} / {ms(dr['gap_median_ms'])}",
        f"< lease {r['lease_ms']} ms", st("drain gap < lease"))
    row("  SIGTERM -> deliveries resumed (max)", ms(dr["resume_max_ms"]),
        f"other partitions' max gap {ms(dr['other_partitions_gap_max_ms'])}")
    row("acknowledged records read back", f"{ck['read_back']:,} read, {ck['lost']} lost, "
        f"{ck['duplicates']} duplicated, {ck['never_acked']} never acked; tail consumer "
        f"missed {ck['tail_missing']}, twice {ck['tail_duplicates']}", "none lost",
        st("no acknowledged record lost"))
    c = cpu["cores"]
    row("CPU cores over the load", ", ".join(f"{k} {x:.2f}" for k, x in c.items()) +
        f", other {cpu['other_cores']:.2f}", f"machine idle {cpu['machine_idle_cores']:.2f} of "
        f"{cb.NCPU} (steal {cpu['machine_steal_cores']:.2f})",
        "CPU-BOUND" if cpu["machine_idle_cores"] < cb.IDLE_CORES_BUSY else "ok")
    return rows


def summary_grid(done: list[dict]) -> list[list[str]]:
    out = [["model", "healthz", "1st produce", "1st fetch", "load via b4", "b4 wrote (flushes)",
            "unexplained", "kill gap max/med", "lease", "drain gap max/med", "lost",
            "idle cores"]]
    for r in done:
        so, lo, dr = r["scale_out"], r["loss"], r["drain"]
        p4 = so["store"]["per_broker"][str(NEW_ID)]
        out.append([r["model"], ms(so["healthz_ms"]), ms(so["first_produce_ms"]),
                    ms(so["first_fetch_ms"]), ms(so["steady_load_through_new_ms"]),
                    f"{p4['upload_bytes']:,.0f} B ({p4['flush_puts']:.0f})",
                    str(len(so["store"]["unexplained"])),
                    f"{ms(lo['gap_max_ms'])} / {ms(lo['gap_median_ms'])}", f"{r['lease_ms']} ms",
                    f"{ms(dr['gap_max_ms'])} / {ms(dr['gap_median_ms'])}",
                    str(r["check"]["lost"]), f"{r['cpu']['machine_idle_cores']:.2f}"])
    return out


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
                    help="where the shared file store's directory (one per model) is created")
    ap.add_argument("--models", default="none,s3-standard",
                    help=f"comma-separated latency models, of: {', '.join(MODELS)}")
    ap.add_argument("--lease-ms", type=int, default=3000, help="brokers' --lease-ms")
    ap.add_argument("--rate", type=int, default=1000, help="steady load, messages per second")
    ap.add_argument("--size", type=int, default=1024, help="message value size, bytes")
    ap.add_argument("--partitions", type=int, default=12, help="partitions of the load's topic")
    ap.add_argument("--flush-interval-ms", type=int, default=50, help="brokers' flush interval")
    ap.add_argument("--flush-bytes", type=int, default=4 * 1024 * 1024,
                    help="brokers' --flush-bytes")
    ap.add_argument("--linger-ms", type=int, default=5, help="producer's linger.ms")
    ap.add_argument("--metadata-refresh-ms", type=int, default=5000,
                    help="steady producer's topic.metadata.refresh.interval.ms (librdkafka's "
                         "default is 300000: the new broker would get unpinned load only then)")
    ap.add_argument("--fetch-wait-max-ms", type=int, default=500,
                    help="tailing consumer's fetch.wait.max.ms")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of load before scaling out")
    ap.add_argument("--settle", type=float, default=6.0,
                    help="seconds of load after each phase (clients' metadata settles)")
    ap.add_argument("--tail", type=float, default=3.0, help="seconds of load after the drain")
    ap.add_argument("--broker-arg", action="append", default=[],
                    help="extra argument for 'sluice serve' (repeatable)")
    ap.add_argument("--start-timeout", type=float, default=30.0,
                    help="seconds for brokers 1-3 to be healthy and see each other")
    ap.add_argument("--phase-timeout", type=float, default=60.0,
                    help="bound of each scale-out step, and added to the lease (loss) or the "
                         "stop timeout (drain) for deliveries to resume")
    ap.add_argument("--stop-timeout", type=float, default=20.0,
                    help="seconds a broker has to exit after SIGTERM")
    ap.add_argument("--drain-timeout", type=float, default=60.0,
                    help="seconds for the last acks, the consumer to catch up, the read-back")
    ap.add_argument("--json", type=Path, help="also write every figure as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dir and the stores")
    args = ap.parse_args(argv)
    args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in args.model_list:
        if m not in MODELS:
            ap.error(f"unknown model {m!r} (known: {', '.join(MODELS)})")
    if args.size < HDR.size:
        ap.error(f"--size must be at least {HDR.size} bytes (the header)")
    if min(args.rate, args.partitions, args.lease_ms, args.flush_interval_ms) <= 0 or \
            min(args.warmup, args.settle, args.tail) < 0 or not args.model_list:
        ap.error("rates, counts, intervals and durations must be positive")
    if args.partitions < 4:
        ap.error("--partitions must be at least 4 (each broker should lead some)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python3 bench/scale_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
                     "ok": False, "runs": []}
    try:
        import confluent_kafka
        client = (f"confluent-kafka {confluent_kafka.version()[0]}, "
                  f"librdkafka {confluent_kafka.libversion()[0]}")
    except ImportError:
        print("error: confluent-kafka is not installed", file=sys.stderr)
        return 2
    if not args.bin.is_file():
        print(f"error: broker binary {args.bin} does not exist", file=sys.stderr)
        return 2
    sys.path.insert(0, str(cb.E2E))
    try:
        import pg_server
    except ImportError as e:
        print(f"error: cannot import tests/e2e/pg_server.py: {e}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, cb._on_signal)
    signal.signal(signal.SIGINT, cb._on_signal)
    args.scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="scale-bench-", dir=args.scratch_parent))
    binary = scratch / "sluice"
    shutil.copy2(args.bin, binary)
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["models"] = {m: MODELS[m] for m in args.model_list}
    results["automq"] = {"reassignment_s": AUTOMQ_REASSIGN_S, "source": AUTOMQ_SOURCE}
    results["env"] = {"host": platform.node(), "kernel": platform.release(), "cpus": cb.NCPU,
                      "python": platform.python_version(), "client": client,
                      "loadavg": os.getloadavg(), "bin": str(args.bin),
                      "bin_mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                 time.gmtime(args.bin.stat().st_mtime)),
                      "scratch": str(scratch)}
    info(f"sluice scale-out / loss / drain benchmark: models {args.model_list}, lease "
         f"{args.lease_ms} ms, {args.rate} msgs/s x {args.size} B, {args.partitions} partitions; "
         f"{client}; {cb.NCPU} CPUs; loadavg {os.getloadavg()[0]:.2f}")
    info(f"[setup] binary {args.bin} copied to {binary}; scratch {scratch}")
    busy = cb.busy_compilers()
    if busy:
        info(f"WARNING: build/test processes are running ({', '.join(busy[:6])}): figures will "
             f"be skewed")

    ctx = mp.get_context("spawn")
    failure: BenchError | None = None
    phase = "setup"
    pg = None
    run = Run()
    store_dirs: list[Path] = []
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
        for model in args.model_list:
            phase = f"model {model}"
            r: dict = {"model": model}
            results["runs"].append(r)
            run_model(args, ctx, pg, binary, scratch, model, base_env, store_dirs, run, r)
            phase = f"model {model}: shutdown"
            probs = run.teardown(args.stop_timeout)
            info(f"[{model}] brokers stopped: exit codes "
                 f"{[b.exit_code for b in run.brokers]} (killed/drained: {sorted(run.stopped)})")
            run = Run()
            if probs:
                raise BenchError("shutdown", "; ".join(probs))
            cb.print_rows(f"== model {model}, lease {args.lease_ms} ms ==", model_rows(r))
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

    done = [r for r in results["runs"] if "check" in r]
    missed = []
    if done:
        print("\nSUMMARY (times from starting broker 4's process; gaps between the steady "
              "producer's acknowledgements of the stopped broker's partitions)")
        grid = summary_grid(done)
        cb.print_grid(grid)
        results["summary"] = grid
        print()
        for r in done:
            r["verdicts"] = {}
            for name, (ok, detail) in verdicts(r).items():
                r["verdicts"][name] = {"ok": ok, "detail": detail}
                print(f"{'PASS' if ok else 'MISS'} [{r['model']}] {name}: {detail}")
                if not ok:
                    missed.append(f"{r['model']}: {name}")
            so = r["scale_out"]
            print(f"     [{r['model']}] AutoMQ publishes ~{AUTOMQ_REASSIGN_S:g} s per partition "
                  f"reassignment; Sluice reassigns nothing: broker {NEW_ID} acknowledged its "
                  f"first produce {ms(so['first_produce_ms'])} after its process started")
        print(f"\nAutoMQ: {AUTOMQ_SOURCE}")
        print(f"model s3-standard: {MODELS['s3-standard']['about']}")
    for r in done:
        if r["cpu"]["machine_idle_cores"] < cb.IDLE_CORES_BUSY:
            print(f"note: [{r['model']}] only {r['cpu']['machine_idle_cores']:.2f} of {cb.NCPU} "
                  f"cores idle over the load: CPU-bound")
        if r["busy_processes"]:
            print(f"note: [{r['model']}] build/test processes seen: {r['busy_processes'][:6]}")
    results["missed"] = missed
    if failure is None:
        results["ok"] = not missed
    cb.conclude(args, results, failure, scratch, store_dirs,
                "result: every phase completed; " + (f"MISSED: {'; '.join(missed)}" if missed
                                                  else "every expectation held"),
                keep=bool(missed))
    return 1 if failure is not None or missed else 0


if __name__ == "__main__":
    sys.exit(main())
