#!/usr/bin/env python3
"""Sluice cluster benchmark: produce and end-to-end latency (issue 15).

Starts one PostgreSQL server (tests/e2e/pg_server.py), then for every flush
interval of --flush-interval-ms (a comma-separated list) three cluster
brokers (`sluice serve --catalog postgres://... --object-store <shared>
--broker-id 1..3 --rack zone-0..2 --flush-interval-ms I`, fault injection
on) on a fresh database and a fresh shared store, and for every latency
model of --models:

  1. model      POST /v1/debug/faults on every broker: `none` (no added
                latency) or `s3-standard` (each PUT and GET waits a lognormal
                time, p50 100 ms / p99 200 ms: AWS gives "roughly 100-200
                milliseconds" as the latency of small S3 requests);
  2. topic      a new topic (--partitions, 6) created with the AdminClient;
                re-created under another name until the partitions' leaders
                (a hash of the topic id) are spread evenly over the brokers,
                so all three take writes;
  3. load       confluent-kafka producer process(es) at a FIXED rate (--rate
                msgs/s of --size bytes, paced by a token bucket on the
                monotonic clock, acks=all, linger.ms 5, unpinned) and tail
                consumer process(es) (unpinned, assigned at the partitions'
                end offsets), for --warmup + --duration seconds; every value
                carries its producer, sequence number and send time;
  4. measure    over the --duration window: produce latency (produce() to
                delivery report) and end-to-end latency (send time to the
                consumer receiving it), p50/p99; from the brokers' /metrics
                deltas: object PUTs/s, flushes/s, catalog commits/s, the
                PUT/commit/flush p50/p99 (histograms, bucket resolution);
                PostgreSQL's own transactions/s; and the CPU of every process
                of the benchmark and of the machine (/proc), so that a MISS
                caused by CPU saturation is visible;
  5. check      every sent message is acknowledged and received exactly once
                at the offset its delivery report gave, with no gaps.

Each figure is printed next to its target with PASS/MISS, then a final table
(and --json FILE with every figure). Exit status: 0 when every run completed
and all data came back (missed targets included, unless --strict); 1 on a
failure (broker died or did not exit on SIGTERM, client error, lost,
duplicated or misplaced messages, a stall); 2 on a usage problem.

Needs confluent-kafka and PostgreSQL (scripts/install-test-deps.sh); with
--store s3 also moto[server] and boto3. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from array import array
from pathlib import Path

import os as _os

# The brokers started here need no OTLP receivers (their default ports would
# collide between brokers); older builds ignore the variables.
_os.environ.setdefault("SLUICE_OTLP_HTTP_LISTEN", "off")
_os.environ.setdefault("SLUICE_OTLP_GRPC_LISTEN", "off")

REPO = Path(__file__).resolve().parent.parent
E2E = REPO / "tests" / "e2e"
DEFAULT_BIN = REPO / "target" / "fast" / "sluice"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

# Latency models: the fault-injection body, the PUT p99 the produce target
# uses, and where the figures come from.
S3_SOURCE = ("AWS, Amazon S3 User Guide, 'Best practices design patterns: optimizing Amazon S3 "
             "performance': latency-sensitive applications 'can achieve consistent small object "
             "latencies (and first-byte-out latencies for larger objects) of roughly 100-200 "
             "milliseconds' (https://docs.aws.amazon.com/AmazonS3/latest/userguide/"
             "optimizing-performance.html); read here as p50 100 ms, p99 200 ms (AWS names no "
             "percentile)")
MODELS = {
    "none": {
        "fault": {"mode": "off"},
        "put_p50_ms": 0.0, "put_p99_ms": 0.0,
        "about": "no added latency: the shared store's own (a file PUT on tmpfs is a memory copy)",
    },
    "s3-standard": {
        "fault": {"mode": "latency", "put_p50_ms": 100, "put_p99_ms": 200,
                  "get_p50_ms": 100, "get_p99_ms": 200},
        "put_p50_ms": 100.0, "put_p99_ms": 200.0,
        "about": "each PUT and GET waits lognormal(p50 100 ms, p99 200 ms); " + S3_SOURCE,
    },
}

# Targets (issue 15).
PRODUCE_SLACK_MS = 20.0            # produce p99 <= interval + PUT p99 + commit p99 + 20 ms
E2E_SLACK_MS = 50.0                # end-to-end p99 <= produce p99 + 50 ms
S3_PRODUCE_P99_MS = 250.0          # under s3-standard: produce p99 < 250 ms
RATE_TOLERANCE = 0.98              # achieved rate >= 98% of --rate, else the load was short
SATURATED_CORE_FRACTION = 0.90     # a client process at >= 0.9 cores saturated its core
IDLE_CORES_BUSY = 0.25             # machine idle below this: CPU-bound on this machine

# Every message value starts with: producer index (u32), sequence (u64),
# send time (i64, CLOCK_MONOTONIC ns: one clock for every process of the
# machine).
HDR = struct.Struct("<IQq")

# The producers keep sending this long after the measured window, so the
# window's last messages see the same load as its first ones.
TAIL_S = 1.0


class BenchError(Exception):
    """A failure that aborts the benchmark (broker misbehaviour, bad data, ...)."""

    def __init__(self, phase: str, message: str):
        super().__init__(f"[{phase}] {message}")
        self.phase = phase
        self.message = message


T0 = time.monotonic()


def info(msg: str) -> None:
    print(f"{time.monotonic() - T0:7.1f}s {msg}", flush=True)


# ----------------------------------------------------------------------------
# Small utilities
# ----------------------------------------------------------------------------

def percentile(sorted_values, pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def fmt_ms(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "inf"
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms"


def proc_cpu_seconds(pid: int) -> float | None:
    """utime+stime of a whole process (all threads), seconds; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds per living thread of a process (schedstat, ns resolution)."""
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                out[int(tid)] = int(f.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def machine_cpu() -> dict[str, int]:
    """Jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = parts
    return {"idle": idle + iowait, "iowait": iowait, "steal": steal, "irq": irq + softirq,
            "total": sum(parts)}


def all_processes_cpu() -> dict[int, tuple[str, float]]:
    """{pid: (comm, utime+stime seconds)} of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.index(b"(") + 1:data.rindex(b")")].decode("utf-8", "replace")
        fields = data[data.rindex(b")") + 2:].split()
        out[int(entry)] = (comm, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def busy_compilers() -> list[str]:
    """Other CPU-heavy processes (e.g. a cargo build) that would skew results."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in ("rustc", "cargo", "cc1", "cc1plus", "ld", "lld", "mold", "clippy-driver",
                    "pytest"):
            found.append(f"{comm}({pid})")
    return found


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    import socket

    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def set_pdeathsig() -> None:
    """Child side of Popen: die with SIGKILL if the benchmark dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def http_json(url: str, body: dict | None = None, timeout: float = 10.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode())


# ----------------------------------------------------------------------------
# Prometheus metrics
# ----------------------------------------------------------------------------

def parse_metrics(text: str) -> dict:
    """{(name, frozenset(labels)): value} of the sluice_* samples."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("sluice_"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = []
        for part in filter(None, rest.rstrip("}").split(",")):
            k, _, v = part.partition("=")
            labels.append((k.strip(), v.strip().strip('"')))
        try:
            out[(name, frozenset(labels))] = float(value)
        except ValueError:
            pass
    return out


def mdelta(after: dict, before: dict, name: str, **labels) -> float:
    """Increase of the sum of `name`'s samples whose labels include `labels`."""
    want = {(k, str(v)) for k, v in labels.items()}
    return sum(v - before.get(key, 0.0) for key, v in after.items()
               if key[0] == name and want <= key[1])


def hist_quantile(pairs: list, name: str, q: float, **labels) -> dict:
    """The q-quantile (ms) of a Prometheus histogram's observations between
    two snapshots, summed over brokers (`pairs` = [(after, before), ...]):
    linear interpolation inside the bucket it falls in, as PromQL's
    histogram_quantile does. The buckets double (from 50 us), so the true
    value can be anywhere in [lo_ms, hi_ms]: bucket resolution."""
    want = {(k, str(v)) for k, v in labels.items()}
    cum: dict[float, float] = {}
    for after, before in pairs:
        for key, v in after.items():
            if key[0] == name + "_bucket" and want <= key[1]:
                le = float(dict(key[1])["le"])
                cum[le] = cum.get(le, 0.0) + v - before.get(key, 0.0)
    total = cum.get(float("inf"), 0.0)
    if total <= 0:
        return {"ms": float("nan"), "lo_ms": float("nan"), "hi_ms": float("nan"), "count": 0}
    rank = q * total
    lo, lo_cum = 0.0, 0.0
    for le in sorted(cum):
        if cum[le] >= rank:
            if math.isinf(le):
                return {"ms": lo * 1000, "lo_ms": lo * 1000, "hi_ms": float("inf"),
                        "count": total}
            frac = (rank - lo_cum) / (cum[le] - lo_cum) if cum[le] > lo_cum else 1.0
            return {"ms": (lo + (le - lo) * frac) * 1000, "lo_ms": lo * 1000,
                    "hi_ms": le * 1000, "count": total}
        lo, lo_cum = le, cum[le]
    return {"ms": float("nan"), "lo_ms": float("nan"), "hi_ms": float("nan"), "count": total}


def fmt_hq(h: dict) -> str:
    if not h or not h.get("count"):
        return "n/a"
    return f"{fmt_ms(h['ms'])} ({h['lo_ms']:g}-{h['hi_ms']:g})"


# ----------------------------------------------------------------------------
# Brokers
# ----------------------------------------------------------------------------

class Broker:
    def __init__(self, binary: Path, index: int, workdir: Path, catalog_url: str, store_url: str,
                 env: dict, args: argparse.Namespace, interval_ms: int, ports: tuple[int, int]):
        self.index = index
        self.broker_id = index + 1
        self.zone = f"zone-{index}"
        self.data_dir = workdir / f"broker{self.broker_id}"
        self.log_path = workdir / f"broker{self.broker_id}.log"
        self.port, self.http_port = ports
        self.env = env
        self.cmdline = [
            str(binary), "serve",
            "--data-dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.port}",
            "--http-listen", f"127.0.0.1:{self.http_port}",
            "--catalog", catalog_url,
            "--object-store", store_url,
            "--broker-id", str(self.broker_id),
            "--rack", self.zone,
            "--lease-ms", str(args.lease_ms),
            "--flush-interval-ms", str(interval_ms),
            "--flush-bytes", str(args.flush_bytes),
            *args.broker_arg,
        ]
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.exit_code: int | None = None
        self.stop_note = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmdline, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env,
                                     preexec_fn=set_pdeathsig)

    def wait_healthy(self, deadline: float) -> None:
        last = "no attempt"
        while time.monotonic() < deadline:
            self.check("startup")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1.0) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.05)
        raise BenchError("startup", f"broker {self.broker_id}: {self.url}/healthz did not answer "
                                    f"200 in time (last: {last}); log {self.log_path}")

    def live_brokers(self) -> list[int]:
        body = http_json(self.url + "/v1/cluster", timeout=5)
        return sorted(b["broker_id"] for b in body.get("brokers", []))

    def metrics(self) -> dict:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            return parse_metrics(r.read().decode())

    def set_fault(self, body: dict) -> None:
        try:
            http_json(self.url + "/v1/debug/faults", body, timeout=10)
        except urllib.error.HTTPError as e:
            raise BenchError("model", f"broker {self.broker_id}: POST /v1/debug/faults {body} "
                                      f"answered {e.code}: {e.read()[:300]!r} (is "
                                      f"SLUICE_FAULT_INJECTION=1 honoured by this build?)")

    def check(self, phase: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(phase, f"broker {self.broker_id} exited unexpectedly with code "
                                    f"{self.proc.returncode}; log {self.log_path}")

    def signal_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            saved = self.save_stacks()
            self.stop_note = (f"did not exit within {timeout:.0f}s of SIGTERM; sent SIGKILL "
                              f"(threads: {saved}; log {self.log_path})")
            self.proc.kill()
            self.proc.wait()
        self.exit_code = self.proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None

    def save_stacks(self) -> str:
        """Writes the thread states of a hung broker (kernel wait channel of
        every thread, and gdb's backtraces if gdb is installed) next to its
        log; returns the file's path."""
        path = self.log_path.with_name(self.log_path.stem + "-stuck-threads.txt")
        pid = self.pid
        with open(path, "w") as f:
            f.write(f"broker {self.broker_id} pid {pid}, {time.strftime('%H:%M:%S')}, "
                    f"still running after SIGTERM\n\n")
            for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
                try:
                    comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                    wchan = Path(f"/proc/{pid}/task/{tid}/wchan").read_text().strip()
                    state = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1] \
                        .split()[0]
                except OSError:
                    continue
                f.write(f"thread {tid} {comm:<16} state {state} wchan {wchan}\n")
            f.flush()
            if shutil.which("gdb"):
                f.write("\n--- gdb: thread apply all bt ---\n")
                f.flush()
                try:
                    subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx",
                                    "-ex", "thread apply all bt"], stdout=f,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=60)
                except subprocess.TimeoutExpired:
                    f.write("\n(gdb timed out after 60 s)\n")
        return str(path)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Cluster:
    """Three brokers on one database and one shared store, for one interval."""

    def __init__(self, brokers: list[Broker]):
        self.brokers = brokers

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def start(self, timeout: float) -> float:
        t0 = time.monotonic()
        for b in self.brokers:
            b.start()
        deadline = t0 + timeout
        for b in self.brokers:
            b.wait_healthy(deadline)
        n = len(self.brokers)
        want = [b.broker_id for b in self.brokers]
        for b in self.brokers:
            last = None
            while True:
                b.check("startup")
                try:
                    last = b.live_brokers()
                except (urllib.error.URLError, OSError, ValueError) as e:
                    last = str(e)
                if last == want:
                    break
                if time.monotonic() > deadline:
                    raise BenchError("startup", f"broker {b.broker_id} lists brokers {last} in "
                                                f"/v1/cluster, not all {n} ({want}) within "
                                                f"{timeout:.0f}s; log {b.log_path}")
                time.sleep(0.1)
        return time.monotonic() - t0

    def check(self, phase: str) -> None:
        for b in self.brokers:
            b.check(phase)

    def stop(self, timeout: float = 20.0) -> list[str]:
        """SIGTERM to every broker at once, then wait (bounded); returns problems."""
        for b in self.brokers:
            b.signal_stop()
        problems = []
        for b in self.brokers:
            was_dead = b.proc is not None and b.proc.returncode is not None
            b.wait_stopped(timeout)
            if b.stop_note:
                problems.append(f"broker {b.broker_id} {b.stop_note}")
            elif was_dead:
                problems.append(f"broker {b.broker_id} had already exited (code {b.exit_code})")
            elif b.exit_code not in (0, None):
                problems.append(f"broker {b.broker_id} exited with code {b.exit_code} after "
                                f"SIGTERM")
        return problems

    def metrics(self) -> list[dict]:
        return [b.metrics() for b in self.brokers]


# ----------------------------------------------------------------------------
# Topics
# ----------------------------------------------------------------------------

def create_balanced_topic(cluster: Cluster, prefix: str, partitions: int,
                          attempts: int = 30, timeout: float = 30.0) -> tuple[str, dict, int]:
    """Creates a topic whose partitions' leaders are spread evenly over the
    brokers (leaders follow a hash of the random topic id, so a topic of 6
    partitions leaves a broker without any about a quarter of the time);
    topics that are not are deleted and another name tried. Returns (name,
    {partition: leader id}, attempts used). Every broker's metadata must show
    the topic with those leaders."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    ids = [b.broker_id for b in cluster.brokers]
    acceptable = None
    for attempt in range(1, attempts + 1):
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        try:
            admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                                operation_timeout=timeout,
                                request_timeout=timeout)[name].result(timeout=timeout)
        except Exception as e:
            raise BenchError("topic", f"CreateTopics({name}, {partitions}) failed: "
                                      f"{type(e).__name__}: {e}")
        leaders = wait_leaders(cluster, name, partitions, timeout)
        counts = [sum(1 for lead in leaders.values() if lead == i) for i in ids]
        if max(counts) - min(counts) <= 1 and (min(counts) > 0 or partitions < len(ids)):
            return name, leaders, attempt
        if min(counts) > 0 and acceptable is None:
            acceptable = (name, leaders)
        else:
            try:
                admin.delete_topics([name], operation_timeout=timeout)[name].result(timeout)
            except Exception as e:
                raise BenchError("topic", f"DeleteTopics({name}) failed: {type(e).__name__}: {e}")
    if acceptable is not None:
        return acceptable[0], acceptable[1], attempts
    raise BenchError("topic", f"no topic of {partitions} partitions in {attempts} attempts had "
                              f"a leader on every broker")


def wait_leaders(cluster: Cluster, topic: str, partitions: int, timeout: float) -> dict:
    """{partition: leader} once every broker's Metadata agrees on it."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    last = "no metadata"
    while time.monotonic() < deadline:
        seen = []
        for b in cluster.brokers:
            try:
                md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(topic, timeout=5)
            except Exception as e:
                last = f"broker {b.broker_id}: {e}"
                break
            t = md.topics.get(topic)
            if t is None or t.error is not None or len(t.partitions) != partitions or \
                    any(p.leader < 0 or p.error is not None for p in t.partitions.values()):
                last = f"broker {b.broker_id}: {t.error if t else 'missing'}"
                break
            seen.append({p: pm.leader for p, pm in t.partitions.items()})
        else:
            if all(s == seen[0] for s in seen):
                return seen[0]
            last = f"brokers disagree on leaders: {seen}"
        time.sleep(0.1)
    raise BenchError("topic", f"topic {topic} not ready in every broker's metadata within "
                              f"{timeout:.0f}s ({last})")


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"cluster-bench-wm-{os.getpid()}",
                  "enable.auto.commit": False})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                for p in range(partitions)]
    except Exception as e:
        raise BenchError("check", f"ListOffsets on {topic} failed: {type(e).__name__}: {e}")
    finally:
        c.close()


# ----------------------------------------------------------------------------
# Worker processes (separate interpreters, so one client's GIL does not
# delay another's timestamps)
# ----------------------------------------------------------------------------

def producer_worker(cfg: dict, ready, go_q, counters, out_path: str) -> None:
    """Sends cfg['rate'] msgs/s from t_start (CLOCK_MONOTONIC ns, from go_q)
    until t_end, a token bucket on the clock: each loop sends every message
    due by now, then sleeps in poll() (which serves delivery reports) until
    the next one is due. Writes one record per delivery report:
    (seq, partition, offset, send_ns, ack_ns, scheduled_ns)."""
    from confluent_kafka import Producer

    idx, nprod, rate = cfg["index"], cfg["producers"], cfg["rate"]
    partitions, topic = cfg["partitions"], cfg["topic"]
    acks = array("q")
    errors: list[str] = []
    client_errors: list[str] = []
    sched = {}

    def on_delivery(err, msg):
        now = time.monotonic_ns()
        _, seq, send_ns = HDR.unpack_from(msg.value(), 0)
        if err is not None:
            errors.append(f"seq {seq} partition {msg.partition()}: {err}")
            return
        acks.extend((seq, msg.partition(), msg.offset(), send_ns, now, sched.pop(seq, 0)))

    p = Producer({
        "bootstrap.servers": cfg["bootstrap"],
        "client.id": f"cluster-bench-producer-{idx}",
        "acks": "all",
        "linger.ms": cfg["linger_ms"],
        "enable.idempotence": False,
        "socket.nagle.disable": True,
        "queue.buffering.max.messages": 10_000_000,
        "queue.buffering.max.kbytes": 2 * 1024 * 1024,
        "message.timeout.ms": int(cfg["drain_timeout"] * 1000),
        **({"max.in.flight.requests.per.connection": cfg["max_in_flight"]}
           if cfg["max_in_flight"] else {}),
        "on_delivery": on_delivery,
        "error_cb": lambda err: client_errors.append(str(err)),
    })
    p.list_topics(topic, timeout=10)
    filler = os.urandom(cfg["size"] - HDR.size)
    ready.set()
    t_start = go_q.get(timeout=120)
    t_end = t_start + int(cfg["send_s"] * 1e9)
    period = 1e9 / rate
    produce, poll, mono = p.produce, p.poll, time.monotonic_ns
    seq = 0
    buffer_full = 0
    while mono() < t_start:
        poll(min(0.01, max(0.001, (t_start - mono()) / 1e9)))
    last_count = mono()
    while True:
        now = mono()
        if now >= t_end:
            break
        due = int((now - t_start) / period) + 1
        while seq < due:
            send_ns = mono()
            try:
                produce(topic, HDR.pack(idx, seq, send_ns) + filler,
                        partition=(seq * nprod + idx) % partitions)
            except BufferError:
                buffer_full += 1
                poll(0.001)
                break
            sched[seq] = t_start + int(seq * period)
            seq += 1
        if now - last_count > 200_000_000:
            counters[0] = seq
            counters[1] = len(acks) // 6
            last_count = now
        wait = (t_start + seq * period - mono()) / 1e9
        poll(min(0.05, max(0.001, wait)))
    counters[0] = seq
    deadline = time.monotonic() + cfg["drain_timeout"]
    left = len(p)
    while left and time.monotonic() < deadline:
        left = p.flush(0.2)
        counters[1] = len(acks) // 6
    counters[1] = len(acks) // 6
    with open(out_path + ".bin", "wb") as f:
        acks.tofile(f)
    with open(out_path + ".json", "w") as f:
        json.dump({"sent": seq, "acked": len(acks) // 6, "unacknowledged": left,
                   "delivery_errors": errors[:50], "delivery_error_count": len(errors),
                   "client_errors": client_errors[:50], "buffer_full": buffer_full}, f)


def consumer_worker(cfg: dict, ready, stop, ends_q, counters, out_path: str) -> None:
    """Reads its share of the partitions from the given start offsets (the
    partitions' end when the load starts) and records, per message:
    (partition, offset, producer, seq, send_ns, recv_ns, value size). Stops
    once `stop` is set and every partition reached the end offset from
    ends_q, or drain_timeout after `stop`."""
    from confluent_kafka import Consumer, TopicPartition

    idx, ncons = cfg["index"], cfg["consumers"]
    topic = cfg["topic"]
    mine = [p for p in range(cfg["partitions"]) if p % ncons == idx]
    client_errors: list[str] = []
    c = Consumer({
        "bootstrap.servers": cfg["bootstrap"],
        "client.id": f"cluster-bench-consumer-{idx}",
        # Required by the client even with assign(); nothing is committed.
        "group.id": f"cluster-bench-{os.getpid()}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.wait.max.ms": cfg["fetch_wait_max_ms"],
        "socket.nagle.disable": True,
        "error_cb": lambda err: client_errors.append(str(err)),
    })
    c.list_topics(topic, timeout=10)
    c.assign([TopicPartition(topic, p, cfg["start_offsets"][p]) for p in mine])
    recs = array("q")
    errors: list[str] = []
    nxt = {p: cfg["start_offsets"][p] for p in mine}
    # A few polls: connections up and fetches at the end before the load.
    t_ready = time.monotonic() + 1.0
    poll, consume, mono = c.poll, c.consume, time.monotonic_ns

    def take(msgs, t):
        for m in msgs:
            e = m.error()
            if e is not None:
                errors.append(f"partition {m.partition()}: {e}")
                continue
            v = m.value()
            pidx, seq, send_ns = HDR.unpack_from(v, 0)
            part, off = m.partition(), m.offset()
            recs.extend((part, off, pidx, seq, send_ns, t, len(v)))
            if off + 1 > nxt.get(part, 0):
                nxt[part] = off + 1

    ends = None
    stop_deadline = None
    n = 0
    parent = os.getppid()
    give_up = time.monotonic() + cfg["max_s"]
    while True:
        if os.getppid() != parent or time.monotonic() > give_up:
            sys.exit(3)  # the benchmark died or forgot us: never linger
        # poll() returns as soon as one message is there (consume(n, t)
        # waits for n messages or t); then take what else is queued.
        m = poll(0.05)
        if m is not None:
            t = mono()
            take([m], t)
            take(consume(num_messages=10_000, timeout=0), t)
            n += 1
            if (n & 63) == 0:
                counters[0] = len(recs) // 7
        if not ready.is_set() and time.monotonic() >= t_ready:
            ready.set()
        if stop.is_set():
            if ends is None:
                try:
                    ends = ends_q.get(timeout=0.01)
                    stop_deadline = time.monotonic() + cfg["drain_timeout"]
                except queue.Empty:
                    continue
            if all(nxt[p] >= ends[p] for p in mine) or time.monotonic() > stop_deadline:
                break
    counters[0] = len(recs) // 7
    c.close()
    with open(out_path + ".bin", "wb") as f:
        recs.tofile(f)
    with open(out_path + ".json", "w") as f:
        json.dump({"partitions": mine, "received": len(recs) // 7, "errors": errors[:50],
                   "error_count": len(errors), "client_errors": client_errors[:50],
                   "reached": {str(p): nxt[p] for p in mine},
                   "ends": {str(p): ends[p] for p in mine} if ends else None}, f)


# ----------------------------------------------------------------------------
# CPU accounting over a window
# ----------------------------------------------------------------------------

class CpuSnapshot:
    def __init__(self, groups: dict[str, list[int]], threads_of: list[int]):
        self.t = time.monotonic()
        self.machine = machine_cpu()
        self.groups = {g: {pid: proc_cpu_seconds(pid) for pid in pids} for g, pids in groups.items()}
        self.threads = {pid: thread_cpu_seconds(pid) for pid in threads_of}
        self.everyone = all_processes_cpu()


def cpu_window(a: CpuSnapshot, b: CpuSnapshot) -> dict:
    wall = b.t - a.t
    out: dict = {"wall_s": wall, "cores": {}}
    ours = 0.0
    for g, pids in b.groups.items():
        s = 0.0
        for pid, v in pids.items():
            v0 = a.groups.get(g, {}).get(pid)
            if v is None:
                continue
            s += v - (v0 if v0 is not None else 0.0)
        out["cores"][g] = s / wall
        ours += s
    dt = max(1, b.machine["total"] - a.machine["total"])
    frac = lambda k: (b.machine[k] - a.machine[k]) / dt * NCPU  # noqa: E731
    out["machine_idle_cores"] = frac("idle")
    out["machine_iowait_cores"] = frac("iowait")
    out["machine_steal_cores"] = frac("steal")
    busy = NCPU - out["machine_idle_cores"] - out["machine_steal_cores"]
    out["machine_busy_cores"] = busy
    out["other_cores"] = max(0.0, busy - ours / wall)
    out["machine_irq_cores"] = frac("irq")
    # Who the rest was: every other process's CPU over the window.
    mine = {pid for pids in b.groups.values() for pid in pids}
    others = []
    for pid, (comm, v) in b.everyone.items():
        if pid in mine:
            continue
        v0 = a.everyone.get(pid, (comm, 0.0))[1]
        if v - v0 > 0:
            others.append((v - v0, f"{comm}({pid})"))
    others.sort(reverse=True)
    out["other_processes"] = [(name, s / wall) for s, name in others[:8]]
    busiest = {}
    for pid, th in b.threads.items():
        th0 = a.threads.get(pid, {})
        busiest[pid] = max((v - th0.get(tid, 0.0) for tid, v in th.items()), default=0.0) / wall
    out["busiest_thread_cores"] = busiest
    return out


# ----------------------------------------------------------------------------
# One configuration: interval x model
# ----------------------------------------------------------------------------

def run_config(args, ctx, cluster: Cluster, pg, dbname: str, interval_ms: int, model: str,
               workdir: Path, extra_groups: dict) -> dict:
    spec = MODELS[model]
    res: dict = {"interval_ms": interval_ms, "model": model, "model_spec": spec,
                 "brokers": len(cluster.brokers)}
    tag = f"[{interval_ms}ms/{model}]"

    # 1. model
    for b in cluster.brokers:
        b.set_fault(spec["fault"])
    info(f"{tag} latency model on every broker: {json.dumps(spec['fault'])}")

    # 2. topic
    topic, leaders, attempts = create_balanced_topic(cluster, f"cluster-bench-{model}",
                                                     args.partitions)
    per_broker = {b.broker_id: sorted(p for p, lead in leaders.items() if lead == b.broker_id)
                  for b in cluster.brokers}
    res.update(topic=topic, leaders={str(k): v for k, v in leaders.items()},
               partitions_per_broker={str(k): v for k, v in per_broker.items()},
               topic_attempts=attempts)
    info(f"{tag} topic {topic}: partitions by leader {per_broker} (attempt {attempts})")
    start_offsets = high_watermarks(cluster.bootstrap, topic, args.partitions)

    # 3. load: consumers first (at the end offsets), then producers
    common = {"bootstrap": cluster.bootstrap, "topic": topic, "partitions": args.partitions,
              "size": args.size, "drain_timeout": args.drain_timeout}
    procs: list = []
    cons = []
    stop = ctx.Event()
    ends_q = ctx.Queue()
    for i in range(args.consumers):
        counters = ctx.Array("q", 1, lock=False)
        rd = ctx.Event()
        out = str(workdir / f"{model}-consumer{i}")
        p = ctx.Process(target=consumer_worker, name=f"consumer{i}", daemon=True,
                        args=({**common, "index": i, "consumers": args.consumers,
                               "fetch_wait_max_ms": args.fetch_wait_max_ms,
                               "max_s": (args.warmup + args.duration + TAIL_S +
                                         3 * args.drain_timeout + 300),
                               "start_offsets": start_offsets}, rd, stop, ends_q, counters, out))
        p.start()
        procs.append(p)
        cons.append((p, rd, counters, out))
    prods = []
    go_q = ctx.Queue()
    send_s = args.warmup + args.duration + TAIL_S
    for i in range(args.producers):
        counters = ctx.Array("q", 2, lock=False)
        rd = ctx.Event()
        out = str(workdir / f"{model}-producer{i}")
        p = ctx.Process(target=producer_worker, name=f"producer{i}", daemon=True,
                        args=({**common, "index": i, "producers": args.producers,
                               "rate": args.rate / args.producers, "linger_ms": args.linger_ms,
                               "max_in_flight": args.max_in_flight,
                               "send_s": send_s}, rd, go_q, counters, out))
        p.start()
        procs.append(p)
        prods.append((p, rd, counters, out))
    try:
        deadline = time.monotonic() + 60
        for p, rd, _, _ in cons + prods:
            while not rd.wait(0.2):
                if not p.is_alive():
                    raise BenchError("load", f"{p.name} exited with code {p.exitcode} before "
                                             f"it was ready")
                if time.monotonic() > deadline:
                    raise BenchError("load", f"{p.name} not ready within 60s")
                cluster.check("load")
        t_start = time.monotonic_ns() + 200_000_000
        for _ in prods:
            go_q.put(t_start)
        ws = t_start + int(args.warmup * 1e9)
        we = ws + int(args.duration * 1e9)
        info(f"{tag} load: {args.rate} msgs/s x {args.size} B from {args.producers} producer(s), "
             f"{args.consumers} consumer(s); {args.warmup:g}s warm-up, {args.duration:g}s "
             f"measured")

        groups = {f"broker{b.broker_id}": [b.pid] for b in cluster.brokers}
        groups["postgres"] = descendants(pg.pid)
        groups["producers"] = [p.pid for p, *_ in prods]
        groups["consumers"] = [p.pid for p, *_ in cons]
        groups["bench (this process)"] = [os.getpid()]
        groups.update(extra_groups)
        client_pids = [p.pid for p, *_ in prods + cons]

        def sleep_until(t_ns: int, phase: str) -> None:
            last_print = time.monotonic()
            while True:
                left = (t_ns - time.monotonic_ns()) / 1e9
                if left <= 0:
                    return
                time.sleep(min(0.5, left))
                cluster.check(phase)
                for p in procs:
                    if not p.is_alive():
                        raise BenchError(phase, f"{p.name} exited with code {p.exitcode}")
                if time.monotonic() - last_print >= 5:
                    last_print = time.monotonic()
                    sent = sum(c[0] for _, _, c, _ in prods)
                    acked = sum(c[1] for _, _, c, _ in prods)
                    recv = sum(c[0] for _, _, c, _ in cons)
                    el = (time.monotonic_ns() - t_start) / 1e9
                    info(f"{tag}   t={el:5.1f}s sent {sent:,} acked {acked:,} received {recv:,}")

        def snapshot():
            cpu = CpuSnapshot(groups, client_pids)
            m = cluster.metrics()
            try:
                xacts = int(pg.query("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                     "WHERE datname = current_database()", db=dbname)[0][0])
            except Exception:
                xacts = None
            return cpu, m, xacts, time.monotonic()

        sleep_until(ws, "warm-up")
        groups["postgres"] = descendants(pg.pid)  # its backends for the brokers exist now
        cpu0, m0, x0, s0 = snapshot()
        busy0 = busy_compilers()
        sleep_until(we, "measure")
        cpu1, m1, x1, s1 = snapshot()
        busy1 = busy_compilers()
        info(f"{tag} window closed; draining")

        # Producers stop TAIL_S after the window and wait for their acks.
        deadline = time.monotonic() + TAIL_S + args.drain_timeout + 30
        for p, *_ in prods:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                raise BenchError("drain", f"{p.name} still running {args.drain_timeout:.0f}s "
                                          f"after the load ended")
            if p.exitcode != 0:
                raise BenchError("drain", f"{p.name} exited with code {p.exitcode}")
        cluster.check("drain")
        ends = high_watermarks(cluster.bootstrap, topic, args.partitions)
        stop.set()
        for _ in cons:
            ends_q.put(ends)
        deadline = time.monotonic() + args.drain_timeout + 30
        for p, *_ in cons:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                raise BenchError("drain", f"{p.name} did not reach the end offsets {ends} "
                                          f"within {args.drain_timeout:.0f}s")
            if p.exitcode != 0:
                raise BenchError("drain", f"{p.name} exited with code {p.exitcode}")
        cluster.check("drain")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
                if p.is_alive():
                    p.kill()
                    p.join(5)

    # 4. figures
    window_s = (s1 - s0)
    res["window"] = {"warmup_s": args.warmup, "duration_s": args.duration,
                     "metrics_window_s": window_s}
    res["busy_processes"] = sorted(set(busy0) | set(busy1))
    prod_meta, acks = [], {}
    for i, (_, _, _, out) in enumerate(prods):
        with open(out + ".json") as f:
            prod_meta.append(json.load(f))
        a = array("q")
        with open(out + ".bin", "rb") as f:
            a.frombytes(f.read())
        for j in range(0, len(a), 6):
            acks[(i, a[j])] = (a[j + 1], a[j + 2], a[j + 3], a[j + 4], a[j + 5])
    cons_meta, recs = [], array("q")
    for _, _, _, out in cons:
        with open(out + ".json") as f:
            cons_meta.append(json.load(f))
        with open(out + ".bin", "rb") as f:
            recs.frombytes(f.read())
    res["producers"] = prod_meta
    res["consumers"] = cons_meta

    # 5. checks: every acknowledged message received exactly once, at its
    # offset, nothing else in the log, no gaps.
    sent = sum(m["sent"] for m in prod_meta)
    problems = []
    for i, m in enumerate(prod_meta):
        if m["delivery_error_count"]:
            problems.append(f"producer {i}: {m['delivery_error_count']} delivery errors, first: "
                            f"{m['delivery_errors'][:3]}")
        if m["unacknowledged"]:
            problems.append(f"producer {i}: {m['unacknowledged']} messages never acknowledged")
    for i, m in enumerate(cons_meta):
        if m["error_count"]:
            problems.append(f"consumer {i}: {m['error_count']} errors, first: {m['errors'][:3]}")
    seen: dict = {}
    dups, unknown, misplaced, bad_size = 0, 0, 0, 0
    offsets: dict[int, list[int]] = {}
    recv_ns: dict = {}
    for j in range(0, len(recs), 7):
        part, off, pidx, seq, _send, t, size = recs[j:j + 7]
        offsets.setdefault(part, []).append(off)
        key = (pidx, seq)
        if size != args.size:
            bad_size += 1
        if key in seen:
            dups += 1
            continue
        seen[key] = (part, off)
        recv_ns[key] = t
        a = acks.get(key)
        if a is None:
            unknown += 1
        elif (a[0], a[1]) != (part, off):
            misplaced += 1
    lost = sum(1 for k in acks if k not in seen)
    gaps = []
    for p in range(args.partitions):
        offs = sorted(offsets.get(p, []))
        expect = list(range(start_offsets[p], ends[p]))
        if offs != expect:
            gaps.append(f"partition {p}: received {len(offs)} offsets "
                        f"{offs[:1]}..{offs[-1:]}, log has [{start_offsets[p]}, {ends[p]})")
    in_log = sum(ends[p] - start_offsets[p] for p in range(args.partitions))
    res["messages"] = {"sent": sent, "acked": len(acks), "received": len(recs) // 7,
                       "unique_received": len(seen), "in_log": in_log, "duplicates": dups,
                       "lost": lost, "unknown": unknown, "misplaced": misplaced,
                       "bad_size": bad_size, "offset_problems": gaps}
    if dups:
        problems.append(f"{dups} messages received more than once")
    if lost:
        problems.append(f"{lost} acknowledged messages never received")
    if unknown:
        problems.append(f"{unknown} received messages were never acknowledged")
    if misplaced:
        problems.append(f"{misplaced} messages received at another (partition, offset) than "
                        f"their delivery report gave")
    if bad_size:
        problems.append(f"{bad_size} values of a size other than {args.size}")
    if in_log != len(acks):
        problems.append(f"the log holds {in_log} records by its watermarks but {len(acks)} "
                        f"were acknowledged")
    problems.extend(gaps)
    res["problems"] = problems
    info(f"{tag} messages: sent {sent:,}, acked {len(acks):,}, received {len(recs) // 7:,} "
         f"({len(seen):,} distinct), in the log {in_log:,}: "
         + ("all exactly once" if not problems else "PROBLEMS"))

    # Latencies of the messages sent in the window.
    prod_lat, e2e_lat, lag, ack_after = [], [], [], []
    by_broker: dict[int, list[float]] = {}
    in_window = 0
    for key, (part, _off, send_ns, ack_ns, sched_ns) in acks.items():
        if not (ws <= send_ns < we):
            continue
        in_window += 1
        pl = (ack_ns - send_ns) / 1e6
        prod_lat.append(pl)
        by_broker.setdefault(leaders.get(part, -1), []).append(pl)
        if sched_ns:
            lag.append((send_ns - sched_ns) / 1e6)
        t = recv_ns.get(key)
        if t is not None:
            e2e_lat.append((t - send_ns) / 1e6)
            ack_after.append((ack_ns - t) / 1e6)
    prod_lat.sort()
    e2e_lat.sort()
    lag.sort()
    ack_after.sort()
    achieved = in_window / args.duration
    res["load"] = {"target_msgs_s": args.rate, "achieved_msgs_s": achieved,
                   "achieved_mib_s": achieved * args.size / 2**20,
                   "short": achieved < RATE_TOLERANCE * args.rate,
                   "send_lag_p50_ms": percentile(lag, 50), "send_lag_p99_ms": percentile(lag, 99),
                   "send_lag_max_ms": lag[-1] if lag else float("nan"),
                   "buffer_full": sum(m["buffer_full"] for m in prod_meta)}
    res["produce_ms"] = {"n": len(prod_lat), "p50": percentile(prod_lat, 50),
                         "p99": percentile(prod_lat, 99), "p999": percentile(prod_lat, 99.9),
                         "max": prod_lat[-1] if prod_lat else float("nan")}
    # Positive: the producer heard of its message's commit after a consumer
    # had already read it (the acknowledgement was held somewhere).
    res["ack_after_receipt_ms"] = {"p50": percentile(ack_after, 50),
                                   "p99": percentile(ack_after, 99),
                                   "max": ack_after[-1] if ack_after else float("nan")}
    res["produce_p99_by_broker_ms"] = {str(k): percentile(sorted(v), 99)
                                       for k, v in sorted(by_broker.items())}
    res["e2e_ms"] = {"n": len(e2e_lat), "p50": percentile(e2e_lat, 50),
                     "p99": percentile(e2e_lat, 99), "p999": percentile(e2e_lat, 99.9),
                     "max": e2e_lat[-1] if e2e_lat else float("nan")}

    # Broker metrics over the window.
    pairs = list(zip(m1, m0))
    per = []
    for b, (a, z) in zip(cluster.brokers, pairs):
        per.append({
            "broker_id": b.broker_id,
            "flushes": mdelta(a, z, "sluice_flush_duration_seconds_count", stage="total"),
            "commits": mdelta(a, z, "sluice_flush_duration_seconds_count", stage="commit"),
            "flush_puts": mdelta(a, z, "sluice_flush_duration_seconds_count", stage="put"),
            "puts": mdelta(a, z, "sluice_object_store_requests_total", op="put"),
            "put_errors": mdelta(a, z, "sluice_object_store_requests_total", op="put",
                                 outcome="error"),
            "gets": mdelta(a, z, "sluice_object_store_requests_total", op="get"),
            "produce_requests": mdelta(a, z, "sluice_request_duration_seconds_count",
                                       api="Produce"),
            "fetch_reads_tail": mdelta(a, z, "sluice_fetch_reads_total", source="tail"),
            "fetch_reads_object": mdelta(a, z, "sluice_fetch_reads_total", source="object"),
        })
    res["per_broker"] = per
    tot = {k: sum(p[k] for p in per) for k in per[0] if k != "broker_id"}
    nb = len(cluster.brokers)
    rates = {
        "puts_s": tot["puts"] / window_s,
        "put_errors": tot["put_errors"],
        "gets_s": tot["gets"] / window_s,
        "fetch_reads_tail_s": tot["fetch_reads_tail"] / window_s,
        "fetch_reads_object_s": tot["fetch_reads_object"] / window_s,
        "flushes_s": tot["flushes"] / window_s,
        "flushes_s_per_broker": tot["flushes"] / window_s / nb,
        "commits_s": tot["commits"] / window_s,
        "commits_per_flush": tot["commits"] / tot["flushes"] if tot["flushes"] else float("nan"),
        "flush_rate_ceiling_s": nb * 1000.0 / interval_ms,
        "produce_requests_s": tot["produce_requests"] / window_s,
        "messages_per_flush": in_window / tot["flushes"] if tot["flushes"] else float("nan"),
        "pg_xacts_s": (x1 - x0) / window_s if x0 is not None and x1 is not None else None,
    }
    res["rates"] = rates
    h = lambda name, q, **kw: hist_quantile(pairs, name, q, **kw)  # noqa: E731
    res["broker_ms"] = {
        "put_p50": h("sluice_object_store_request_duration_seconds", 0.5, op="put"),
        "put_p99": h("sluice_object_store_request_duration_seconds", 0.99, op="put"),
        "commit_p50": h("sluice_flush_duration_seconds", 0.5, stage="commit"),
        "commit_p99": h("sluice_flush_duration_seconds", 0.99, stage="commit"),
        "flush_total_p50": h("sluice_flush_duration_seconds", 0.5, stage="total"),
        "flush_total_p99": h("sluice_flush_duration_seconds", 0.99, stage="total"),
        "produce_request_p50": h("sluice_request_duration_seconds", 0.5, api="Produce"),
        "produce_request_p99": h("sluice_request_duration_seconds", 0.99, api="Produce"),
    }

    cpu = cpu_window(cpu0, cpu1)
    cpu["busiest_thread_cores"] = {
        ("producer" if pid in groups["producers"] else "consumer") + f" {pid}": v
        for pid, v in cpu["busiest_thread_cores"].items()}
    res["cpu"] = cpu

    # Targets.
    commit_p99 = res["broker_ms"]["commit_p99"]["ms"]
    bound = interval_ms + spec["put_p99_ms"] + commit_p99 + PRODUCE_SLACK_MS
    res["targets"] = {
        "produce_p99_bound_ms": bound,
        "produce_p99_ok": res["produce_ms"]["p99"] <= bound,
        "e2e_p99_bound_ms": res["produce_ms"]["p99"] + E2E_SLACK_MS,
        "e2e_p99_ok": res["e2e_ms"]["p99"] <= res["produce_ms"]["p99"] + E2E_SLACK_MS,
        # One transaction per flush, and so at most brokers x the flush rate
        # the interval allows (a window of D s holds at most D/interval + 1
        # flushes per broker).
        # (A flush's commit and its total are observed microseconds apart:
        # a snapshot between them counts one commit without its flush, so
        # one per broker is allowed at the window's edge.)
        "catalog_ok": (tot["commits"] <= tot["flushes"] + nb and
                       tot["commits"] <= nb * (window_s * 1000.0 / interval_ms + 1)),
    }
    if model == "s3-standard":
        res["targets"]["s3_produce_p99_ok"] = res["produce_ms"]["p99"] < S3_PRODUCE_P99_MS
    return res


# ----------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------

def status(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def config_rows(r: dict) -> list[dict]:
    rows: list[dict] = []

    def row(figure, value, target="", st="", key=None):
        rows.append({"figure": figure, "value": value, "target": target, "status": st, "key": key})

    spec = MODELS[r["model"]]
    ld, pm, em, rt, bm, tg, cpu = (r["load"], r["produce_ms"], r["e2e_ms"], r["rates"],
                                   r["broker_ms"], r["targets"], r["cpu"])
    row("load achieved", f"{ld['achieved_msgs_s']:,.0f} msgs/s ({ld['achieved_mib_s']:.2f} MiB/s); "
        f"send lag p99 {fmt_ms(ld['send_lag_p99_ms'])}",
        f">= {RATE_TOLERANCE:.0%} of {ld['target_msgs_s']:,} msgs/s",
        "SHORT" if ld["short"] else "ok", key="load")
    m = r["messages"]
    row("messages sent / acked / received once", f"{m['sent']:,} / {m['acked']:,} / "
        f"{m['unique_received']:,} (dups {m['duplicates']}, lost {m['lost']})",
        "all, exactly once", "PASS" if not r["problems"] else "FAIL", key="exactly_once")
    row("produce latency p50 / p99", f"{fmt_ms(pm['p50'])} / {fmt_ms(pm['p99'])} "
        f"(max {fmt_ms(pm['max'])})",
        f"p99 <= {fmt_ms(tg['produce_p99_bound_ms'])}", status(tg["produce_p99_ok"]),
        key="produce_p99")
    row("  = interval + model PUT p99 + commit p99 + 20",
        f"{r['interval_ms']} + {spec['put_p99_ms']:g} + {fmt_ms(bm['commit_p99']['ms'])} + "
        f"{PRODUCE_SLACK_MS:g} ms", "commit p99: broker histogram, bucket resolution "
        f"[{bm['commit_p99']['lo_ms']:g}, {bm['commit_p99']['hi_ms']:g}] ms")
    row("  produce p99 by leader broker", ", ".join(
        f"b{k} {fmt_ms(v)}" for k, v in r["produce_p99_by_broker_ms"].items()))
    aa = r["ack_after_receipt_ms"]
    row("  ack after the consumer had it p50 / p99", f"{fmt_ms(aa['p50'])} / {fmt_ms(aa['p99'])}",
        "(delivery report time - consumer receipt)")
    row("end-to-end latency p50 / p99", f"{fmt_ms(em['p50'])} / {fmt_ms(em['p99'])} "
        f"(max {fmt_ms(em['max'])})",
        f"p99 <= produce p99 + 50 ms ({fmt_ms(tg['e2e_p99_bound_ms'])})", status(tg["e2e_p99_ok"]),
        key="e2e_p99")
    if "s3_produce_p99_ok" in tg:
        row("produce p99 under s3-standard", fmt_ms(pm["p99"]), f"< {S3_PRODUCE_P99_MS:g} ms",
            status(tg["s3_produce_p99_ok"]), key="s3_produce_p99")
    row("catalog transactions/s (flush commits)",
        f"{rt['commits_s']:.1f}/s = {rt['commits_per_flush']:.2f} per flush",
        f"<= {r['brokers']} x {rt['flushes_s_per_broker']:.1f} flushes/s, and <= "
        f"{rt['flush_rate_ceiling_s']:.0f}/s ({r['brokers']} x 1000/{r['interval_ms']})",
        status(tg["catalog_ok"]), key="catalog_tps")
    if rt["pg_xacts_s"] is not None:
        row("  PostgreSQL transactions/s (all, pg_stat_database)", f"{rt['pg_xacts_s']:.1f}/s",
            "(leases, change feed, reads too; ~1 s stats lag)")
    row("flushes/s (all brokers)", f"{rt['flushes_s']:.1f}/s (per broker " + ", ".join(
        f"b{p['broker_id']} {p['flushes'] / r['window']['metrics_window_s']:.1f}"
        for p in r["per_broker"]) + f"); {rt['messages_per_flush']:.1f} msgs/flush")
    row("object PUTs/s / GETs/s", f"{rt['puts_s']:.1f} / {rt['gets_s']:.1f} "
        f"(PUT errors {rt['put_errors']:.0f})")
    row("partition reads/s from memory / from objects", f"{rt['fetch_reads_tail_s']:.1f} / "
        f"{rt['fetch_reads_object_s']:.1f}", "tail reads come from memory",
        "ok" if rt["fetch_reads_object_s"] == 0 else "OBJECT-READS")
    row("PUT p50 / p99 (broker histogram)", f"{fmt_hq(bm['put_p50'])} / {fmt_hq(bm['put_p99'])}",
        f"model: p50 {spec['put_p50_ms']:g} / p99 {spec['put_p99_ms']:g} ms", model_check(r),
        key="put_model")
    row("commit p50 / p99 (broker histogram)",
        f"{fmt_hq(bm['commit_p50'])} / {fmt_hq(bm['commit_p99'])}")
    row("flush sealed->answered p50 / p99", f"{fmt_hq(bm['flush_total_p50'])} / "
        f"{fmt_hq(bm['flush_total_p99'])}")
    row("Produce request p50 / p99 (broker)", f"{fmt_hq(bm['produce_request_p50'])} / "
        f"{fmt_hq(bm['produce_request_p99'])}")
    c = cpu["cores"]
    brokers = sum(v for k, v in c.items() if k.startswith("broker"))
    row("CPU cores over the window", f"brokers {brokers:.2f} (" + ", ".join(
        f"{v:.2f}" for k, v in c.items() if k.startswith("broker")) + f"), postgres "
        f"{c.get('postgres', 0):.2f}, producers {c.get('producers', 0):.2f}, consumers "
        f"{c.get('consumers', 0):.2f}, bench {c.get('bench (this process)', 0):.2f}"
        + (f", moto {c['moto']:.2f}" if "moto" in c else "")
        + f", other {cpu['other_cores']:.2f}",
        f"machine idle {cpu['machine_idle_cores']:.2f} of {NCPU} (steal "
        f"{cpu['machine_steal_cores']:.2f})",
        "CPU-BOUND" if cpu["machine_idle_cores"] < IDLE_CORES_BUSY else "ok", key="cpu")
    top = ", ".join(f"{n} {v:.2f}" for n, v in cpu["other_processes"][:4] if v >= 0.01)
    row("  other CPU: top processes / irq+softirq", (top or "none") +
        f" / {cpu['machine_irq_cores']:.2f}")
    busiest = max(cpu["busiest_thread_cores"].values(), default=0.0)
    client_max = max(c.get("producers", 0) / max(1, len(r["producers"])),
                     c.get("consumers", 0) / max(1, len(r["consumers"])))
    row("  busiest client thread / client process", f"{busiest:.0%} / {client_max:.2f} cores",
        f"saturated if >= {SATURATED_CORE_FRACTION:.1f}",
        "SATURATED" if max(busiest, client_max) >= SATURATED_CORE_FRACTION else "ok")
    return rows


def model_check(r: dict) -> str:
    """Whether the measured PUT latency shows the model (bucket bounds)."""
    bm, spec = r["broker_ms"], MODELS[r["model"]]
    p50, p99 = bm["put_p50"], bm["put_p99"]
    if not p50.get("count"):
        return "n/a"
    if spec["put_p99_ms"] == 0:
        return "ok" if p99["hi_ms"] <= 25.6 else "CHECK"
    ok50 = p50["lo_ms"] <= spec["put_p50_ms"] * 1.25 and p50["hi_ms"] >= spec["put_p50_ms"] * 0.8
    ok99 = p99["lo_ms"] <= spec["put_p99_ms"] * 1.25 and p99["hi_ms"] >= spec["put_p99_ms"] * 0.8
    return "applied" if ok50 and ok99 else "CHECK"


def print_rows(title: str, rows: list[dict]) -> None:
    headers = ("figure", "value", "target", "status")
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in headers]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    print(line)
    for r in rows:
        print("  ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths)).rstrip())
    print(line, flush=True)


def summary_table(results: list[dict]) -> list[list[str]]:
    head = ["interval", "model", "rate msgs/s", "produce p50/p99 ms", "e2e p50/p99 ms",
            "PUTs/s", "commits/s", "flushes/s", "PUT p99 model/meas ms", "commit p99 ms",
            "bound ms", "produce", "e2e", "catalog", "<250ms", "CPU brk/pg/cli/idle"]
    out = [head]
    for r in results:
        if "targets" not in r:
            continue
        tg, pm, em, rt, bm, c = (r["targets"], r["produce_ms"], r["e2e_ms"], r["rates"],
                                 r["broker_ms"], r["cpu"])
        cores = c["cores"]
        out.append([
            f"{r['interval_ms']} ms", r["model"],
            f"{r['load']['achieved_msgs_s']:,.0f}" + (" SHORT" if r["load"]["short"] else ""),
            f"{pm['p50']:.1f} / {pm['p99']:.1f}", f"{em['p50']:.1f} / {em['p99']:.1f}",
            f"{rt['puts_s']:.1f}", f"{rt['commits_s']:.1f}", f"{rt['flushes_s']:.1f}",
            f"{MODELS[r['model']]['put_p99_ms']:g} / {bm['put_p99']['ms']:.1f}",
            f"{bm['commit_p99']['ms']:.2f}", f"{tg['produce_p99_bound_ms']:.1f}",
            status(tg["produce_p99_ok"]), status(tg["e2e_p99_ok"]), status(tg["catalog_ok"]),
            status(tg["s3_produce_p99_ok"]) if "s3_produce_p99_ok" in tg else "-",
            f"{sum(v for k, v in cores.items() if k.startswith('broker')):.2f}/"
            f"{cores.get('postgres', 0):.2f}/"
            f"{cores.get('producers', 0) + cores.get('consumers', 0):.2f}/"
            f"{c['machine_idle_cores']:.2f}",
        ])
    return out


def print_grid(grid: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in grid) for i in range(len(grid[0]))]
    print("  ".join(h.ljust(w) for h, w in zip(grid[0], widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in grid[1:]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------

def parse_list(s: str, conv, what: str) -> list:
    try:
        out = [conv(x.strip()) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad {what} list: {s!r}")
    if not out:
        raise argparse.ArgumentTypeError(f"empty {what} list")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--bin", type=Path, default=DEFAULT_BIN,
                    help="sluice binary (copied to the scratch dir before use)")
    ap.add_argument("--scratch-parent", type=Path, default=REPO / "target",
                    help="the scratch dir (broker data dirs, logs, client records, the "
                         "PostgreSQL log) is created here")
    ap.add_argument("--store", choices=["file", "s3"], default="file",
                    help="shared object store: file:// on --store-dir, or s3:// on a moto "
                         "server this script starts")
    ap.add_argument("--store-dir", type=Path, default=Path("/dev/shm"),
                    help="where the file store's directory (one per interval) is created")
    ap.add_argument("--flush-interval-ms", default="50",
                    help="comma-separated flush intervals; the brokers restart for each")
    ap.add_argument("--models", default="none,s3-standard",
                    help=f"comma-separated latency models, of: {', '.join(MODELS)}")
    ap.add_argument("--rate", type=int, default=2000, help="messages per second (all producers)")
    ap.add_argument("--size", type=int, default=1024, help="message value size, bytes")
    ap.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds of load first")
    ap.add_argument("--partitions", type=int, default=6, help="partitions of the topic")
    ap.add_argument("--producers", type=int, default=1, help="producer processes")
    ap.add_argument("--consumers", type=int, default=1,
                    help="consumer processes (the partitions are split between them)")
    ap.add_argument("--linger-ms", type=int, default=5, help="producers' linger.ms")
    ap.add_argument("--max-in-flight", type=int, default=0,
                    help="producers' max.in.flight.requests.per.connection (0: librdkafka's "
                         "default, 1000000); a diagnostic, not for recorded runs")
    ap.add_argument("--fetch-wait-max-ms", type=int, default=500,
                    help="consumers' fetch.wait.max.ms (librdkafka's default)")
    ap.add_argument("--flush-bytes", type=int, default=4 * 1024 * 1024,
                    help="brokers' --flush-bytes")
    ap.add_argument("--lease-ms", type=int, default=10000, help="brokers' --lease-ms")
    ap.add_argument("--broker-arg", action="append", default=[],
                    help="extra argument for 'sluice serve' (repeatable)")
    ap.add_argument("--start-timeout", type=float, default=30.0,
                    help="seconds for the brokers to be healthy and see each other")
    ap.add_argument("--drain-timeout", type=float, default=60.0,
                    help="seconds for the last acks and the consumers to catch up after the load")
    ap.add_argument("--json", type=Path, help="also write every figure as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dir (and the store)")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when a target is missed, not only on a failure")
    args = ap.parse_args(argv)
    try:
        args.intervals = parse_list(args.flush_interval_ms, int, "interval")
        args.model_list = parse_list(args.models, str, "model")
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    for m in args.model_list:
        if m not in MODELS:
            ap.error(f"unknown model {m!r} (known: {', '.join(MODELS)})")
    if min(args.intervals) <= 0:
        ap.error("flush intervals must be positive")
    if args.size < HDR.size:
        ap.error(f"--size must be at least {HDR.size} bytes (the header)")
    if min(args.rate, args.partitions, args.producers, args.consumers) <= 0 or \
            args.duration <= 0 or args.warmup < 0:
        ap.error("rates, counts and durations must be positive")
    if args.consumers > args.partitions:
        ap.error("more consumers than partitions")
    return args


def shut_down(run, pg, failure, stop_timeout: float):
    """The `finally` of a cluster benchmark with a `Run` of processes: with
    Ctrl-C and SIGTERM held off, every process of `run` is stopped (a
    problem doing so becomes the failure if there was none) and PostgreSQL
    is closed. Returns the failure."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        probs = run.teardown(stop_timeout)
        if probs:
            info(f"[shutdown] {'; '.join(probs)}")
            if failure is None:
                failure = BenchError("shutdown", "; ".join(probs))
        if pg is not None:
            try:
                pg.close()
            except Exception as e:
                info(f"[shutdown] PostgreSQL: {e}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    return failure


def conclude(args, results: dict, failure, scratch, store_dirs, ok_line: str,
             keep: bool = False) -> None:
    """The end of a run, shared by the cluster benchmarks: the failure (and
    what is kept for a look) or the result line; the JSON file; the scratch
    and store dirs removed unless the run failed or `keep` (or --keep)."""
    if failure is not None:
        results["failure"] = {"phase": failure.phase, "error": failure.message}
        print(f"\nFAILED in phase '{failure.phase}': {failure.message}", file=sys.stderr)
        print(f"scratch dir kept: {scratch} (broker logs, PostgreSQL log, client records)",
              file=sys.stderr)
        if store_dirs:
            print(f"store dir(s) kept: {', '.join(map(str, store_dirs))}", file=sys.stderr)
    else:
        info(ok_line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
        info(f"results written to {args.json}")
    if failure is None and not keep and not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
        for sd in store_dirs:
            shutil.rmtree(sd, ignore_errors=True)
    elif failure is None:
        info(f"scratch dir kept: {scratch}; store dir(s) {', '.join(map(str, store_dirs))}")


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python3 bench/cluster_bench.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
                     "ok": False, "runs": []}
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
    sys.path.insert(0, str(E2E))
    try:
        import pg_server
    except ImportError as e:
        print(f"error: cannot import tests/e2e/pg_server.py: {e} (scripts/install-test-deps.sh)",
              file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    args.scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="cluster-bench-", dir=args.scratch_parent))
    binary = scratch / "sluice"
    shutil.copy2(args.bin, binary)
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["models"] = {m: MODELS[m] for m in args.model_list}
    results["env"] = {"host": platform.node(), "kernel": platform.release(), "cpus": NCPU,
                      "python": platform.python_version(), "client": client,
                      "loadavg": os.getloadavg(), "bin": str(args.bin),
                      "bin_mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                 time.gmtime(args.bin.stat().st_mtime)),
                      "scratch": str(scratch)}
    info(f"sluice cluster benchmark: intervals {args.intervals} ms, models {args.model_list}, "
         f"{args.rate} msgs/s x {args.size} B, {args.partitions} partitions, {args.warmup:g}s + "
         f"{args.duration:g}s per run; {client}; {NCPU} CPUs; loadavg "
         f"{os.getloadavg()[0]:.2f}")
    info(f"[setup] binary {args.bin} (built {results['env']['bin_mtime']}) copied to {binary}; "
         f"scratch {scratch}")
    busy = busy_compilers()
    if busy:
        info(f"WARNING: build/test processes are running ({', '.join(busy[:6])}): the machine's "
             f"2 cores are shared, figures will be skewed")
        results["env"]["busy_processes"] = busy

    ctx = mp.get_context("spawn")
    failure: BenchError | None = None
    phase = "setup"
    pg = None
    moto = None
    cluster: Cluster | None = None
    store_dirs: list[Path] = []
    stop_problems: list[str] = []
    try:
        phase = "postgres"
        pg = pg_server.PostgresServer(scratch / "postgres")
        try:
            pg.start()
        except pg_server.PostgresError as e:
            raise BenchError("postgres", str(e))
        info(f"[setup] PostgreSQL on 127.0.0.1:{pg.port} (pid {pg.pid}), data in {pg.data_dir}, "
             f"log {pg.log_path}")
        extra_groups: dict = {}
        base_env = {k: v for k, v in os.environ.items()
                    if not k.startswith("AWS_") and not k.startswith("SLUICE_")}
        base_env["SLUICE_FAULT_INJECTION"] = "1"
        if args.store == "s3":
            phase = "moto"
            import s3_server
            moto = s3_server.MotoServer(scratch / "moto")
            try:
                moto.start()
            except BaseException as e:  # pytest.fail raises an OutcomeException
                if isinstance(e, (KeyboardInterrupt, Interrupted)):
                    raise
                raise BenchError("moto", f"moto_server did not start: {e}")
            base_env.update(moto.env())
            extra_groups["moto"] = [moto.proc.pid]
            info(f"[setup] moto S3 server at {moto.endpoint} (pid {moto.proc.pid})")

        for interval in args.intervals:
            phase = f"interval {interval} ms: startup"
            dbname = f"cb_{interval}_{uuid.uuid4().hex[:8]}"
            catalog_url = pg.create_database(dbname)
            if args.store == "s3":
                bucket = moto.create_bucket()
                store_url = f"s3://{bucket}/cluster"
            else:
                sd = Path(tempfile.mkdtemp(prefix="sluice-cluster-bench-store-",
                                           dir=args.store_dir))
                store_dirs.append(sd)
                store_url = f"file://{sd}"
            workdir = scratch / f"interval-{interval}ms"
            workdir.mkdir()
            ports = free_ports(6)
            cluster = Cluster([Broker(binary, i, workdir, catalog_url, store_url, base_env, args,
                                      interval, (ports[2 * i], ports[2 * i + 1]))
                               for i in range(3)])
            info(f"[{interval}ms] starting 3 brokers: --flush-interval-ms {interval}, catalog "
                 f"{catalog_url}, store {store_url}; logs {workdir}/broker*.log")
            took = cluster.start(args.start_timeout)
            info(f"[{interval}ms] brokers healthy and each lists all 3 after {took:.1f}s (pids "
                 f"{[b.pid for b in cluster.brokers]})")
            try:
                for model in args.model_list:
                    phase = f"interval {interval} ms, model {model}"
                    r = {"interval_ms": interval, "model": model, "store": store_url,
                         "catalog": catalog_url,
                         "broker_logs": [str(b.log_path) for b in cluster.brokers]}
                    results["runs"].append(r)
                    r.update(run_config(args, ctx, cluster, pg, dbname, interval, model, workdir,
                                        extra_groups))
                    print_rows(f"== flush interval {interval} ms, model {model} "
                               f"(window {r['window']['metrics_window_s']:.1f}s) ==",
                               config_rows(r))
                    if r["problems"]:
                        raise BenchError("check", "; ".join(r["problems"][:6]) +
                                         f" (broker logs: {', '.join(r['broker_logs'])})")
            finally:
                phase = f"interval {interval} ms: shutdown"
                probs = cluster.stop()
                codes = [b.exit_code for b in cluster.brokers]
                info(f"[{interval}ms] brokers stopped with SIGTERM, exit codes {codes}")
                stop_problems.extend(f"[{interval} ms] {p}" for p in probs)
                cluster = None
            if stop_problems:
                raise BenchError("shutdown", "; ".join(stop_problems))
            if args.store == "file" and not args.keep:
                shutil.rmtree(store_dirs[-1], ignore_errors=True)
    except BenchError as e:
        failure = e
    except (KeyboardInterrupt, Interrupted) as e:
        failure = BenchError(phase, f"interrupted ({e})")
    except Exception as e:
        import traceback

        traceback.print_exc()
        failure = BenchError(phase, f"{type(e).__name__}: {e}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if cluster is not None:
            probs = cluster.stop()
            if probs:
                info(f"[shutdown] {'; '.join(probs)}")
                stop_problems.extend(probs)
        if moto is not None:
            moto.stop()
        if pg is not None:
            try:
                pg.close()
            except Exception as e:
                info(f"[shutdown] PostgreSQL: {e}")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    if failure is None and stop_problems:
        failure = BenchError("shutdown", "; ".join(stop_problems))

    busy_end = busy_compilers()
    if busy_end:
        info(f"WARNING: build/test processes were running at the end ({', '.join(busy_end[:6])})")
        results["env"]["busy_processes_end"] = busy_end

    done = [r for r in results["runs"] if "targets" in r]
    for r in done:
        r["table"] = config_rows(r)
    if done:
        print("\nSUMMARY (latencies over the measured window; CPU in cores: brokers / postgres / "
              "clients / machine idle)")
        grid = summary_table(done)
        print_grid(grid)
        results["summary"] = grid
        print(f"\nmodel s3-standard: {MODELS['s3-standard']['about']}")
        print("PUT and commit p99 are from the brokers' histograms (buckets double from 50 us), "
              "interpolated within their bucket: bucket resolution.")
    notes = []
    for r in done:
        tag = f"{r['interval_ms']} ms/{r['model']}"
        if r["load"]["short"]:
            notes.append(f"{tag}: the producer reached only {r['load']['achieved_msgs_s']:,.0f} "
                         f"of {args.rate:,} msgs/s: the Python client could not keep up; its "
                         f"latencies are at that lower load")
        if r["cpu"]["machine_idle_cores"] < IDLE_CORES_BUSY:
            notes.append(f"{tag}: only {r['cpu']['machine_idle_cores']:.2f} of {NCPU} cores idle "
                         f"over the window: figures are CPU-bound on this machine")
        if r["cpu"]["other_cores"] > 0.2:
            top = ", ".join(f"{n} {v:.2f}" for n, v in r["cpu"]["other_processes"][:4]
                            if v >= 0.01)
            notes.append(f"{tag}: CPU outside the benchmark's processes: "
                         f"{r['cpu']['other_cores']:.2f} cores over the window (top: "
                         f"{top or 'none'}; irq+softirq {r['cpu']['machine_irq_cores']:.2f}; "
                         f"processes that ended inside the window, e.g. a build's compilers, "
                         f"are not itemized)" + (f"; seen at the window's edges: "
                                                 f"{', '.join(r['busy_processes'][:4])}"
                                                 if r["busy_processes"] else ""))
        if model_check(r) == "CHECK":
            notes.append(f"{tag}: the measured PUT latency does not look like the model's")
    for n in notes:
        print(f"note: {n}")
    results["notes"] = notes

    missed = [f"{r['interval_ms']} ms/{r['model']}: {row['figure']}" for r in done
              for row in r["table"] if row["status"] in ("MISS", "SHORT")]
    if failure is None:
        results["ok"] = True
        results["missed"] = missed
    conclude(args, results, failure, scratch, store_dirs,
             "result: every run completed, every message exactly once; " +
             (f"missed: {'; '.join(missed)}" if missed else "all targets met"))
    if failure is not None:
        return 1
    if args.strict and results.get("missed"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
