#!/usr/bin/env python3
"""Sluice catch-up benchmark: tail reads vs catch-up reads from objects.

For each object store (`--store file|s3|both`; s3 is an S3-compatible server
started by this script on 127.0.0.1: moto_server, or s3s-fs with
`--s3-server s3s-fs`), in one run:

  1. produce      --bytes (default 1 GiB) of 1 KiB messages over several
                  partitions (acks=all, idempotent), measuring the acked rate;
  2. upload       wait until the broker has uploaded everything (catalog);
  3. settle       wait until background compaction is idle, print the object
                  counts (data/ upload objects, compacted/ objects);
  4. baseline     a steady producer (--tail-rate msgs/s) and a tail consumer
                  (its own group, keeps up) run for --baseline-s; the tail
                  consumer measures every message's end-to-end latency (the
                  producer's send time, carried in the value next to the
                  record timestamp, to receipt);
  4b. control    (--control-s, default 5) while both keep running, one
                  busy loop per CPU in the SCHED_IDLE class, touching no disk,
                  network or broker: what any background CPU work costs the
                  tail on this machine, whatever the broker does;
  5. catch-up     while both keep running, a new consumer group reads the
                  whole topic from the earliest offset up to the high
                  watermark of that moment; with a small --tail-cache-bytes
                  the old data is only in objects; its rate is measured and
                  every produced record is checked (offset <-> sequence);
                  --catchup-rounds N repeats this with a new group each
                  time (the rate is the median round's, the tail p99 is
                  over all rounds);
  6. report       catch-up rate / produce rate (target >= 3x), tail p99
                  during catch-up vs baseline (target <= +20 %), object store
                  request counts, object counts, read sources, broker RSS.

Each phase shows progress. The final table prints PASS/MISS per target and
the exact command. Exit status: 0 when the run completed (targets missed
included, unless --strict), 1 on a failure (broker died, wrong data, a phase
stalled), 2 on a usage problem.

Needs confluent-kafka; for --store s3 also boto3 and moto[server]
(scripts/install-test-deps.sh installs them). The default --catchup-client
native also needs cargo and Debian's librdkafka-dev and pkg-config, which the
test setup does not install; bench/reader is built on first use, and so is
s3s-fs (`cargo install s3s-fs`, into target/tools) for `--s3-server s3s-fs`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import random
import shlex
import shutil
import signal
import socket
import sqlite3
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

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BIN = REPO / "target" / "fast" / "sluice"

CATCHUP_RATIO_TARGET = 3.0  # catch-up rate >= 3x produce rate
TAIL_P99_GROWTH_TARGET = 0.20  # tail p99 during catch-up <= baseline p99 * 1.2

T0 = time.monotonic()


class BenchError(Exception):
    def __init__(self, phase: str, message: str):
        super().__init__(f"[{phase}] {message}")
        self.phase = phase


def info(msg: str) -> None:
    print(f"{time.monotonic() - T0:7.1f}s {msg}", flush=True)


def free_port() -> int:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def percentile(values: list, pct: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(pct / 100.0 * (len(v) - 1)))))
    return v[k]


class Ticker:
    """Prints a progress line at most every `every` seconds."""

    def __init__(self, every: float = 2.0):
        self.every = every
        self.last = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            return True
        return False


# ---------------------------------------------------------------------------
# S3-compatible server (moto_server or s3s-fs)
# ---------------------------------------------------------------------------


S3S_FS_VERSION = "0.14.1"  # the newest that builds with rustc 1.95
S3S_FS_BIN = REPO / "target" / "tools" / "bin" / "s3s-fs"


def build_s3s_fs() -> Path:
    """s3s-fs (an S3 server over a directory, in Rust), installed into
    target/tools on first use."""
    if S3S_FS_BIN.exists():
        return S3S_FS_BIN
    if shutil.which("cargo") is None:
        raise BenchError("s3s-fs", "cargo is needed to install s3s-fs")
    info(f"[s3s-fs   ] installing s3s-fs {S3S_FS_VERSION} into target/tools (a few minutes, once)")
    r = subprocess.run(["cargo", "install", "s3s-fs", "--version", S3S_FS_VERSION, "--features", "binary",
                        "--locked", "--quiet", "--root", str(S3S_FS_BIN.parent.parent)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0 or not S3S_FS_BIN.exists():
        raise BenchError("s3s-fs", f"cargo install s3s-fs failed:\n{r.stdout[-3000:]}")
    return S3S_FS_BIN


class S3Server:
    """moto_server (Python; keeps objects in memory and copies a whole
    object for each ranged GET) or s3s-fs (Rust; objects are files in the
    scratch dir, on the broker's disk, read through the page cache)."""

    REGION = "us-east-1"
    KEY = "sluice-bench"
    SECRET = "sluice-bench-secret"

    def __init__(self, workdir: Path, kind: str, storage_dir: Path, nice: int):
        self.kind = kind
        self.nice = nice
        self.port = free_port()
        self.log_path = workdir / f"{kind}.log"
        # Where the server keeps objects (s3s-fs's root; moto's spill files
        # via TMPDIR): not on the broker's disk by default, see --s3-dir.
        self.storage = Path(tempfile.mkdtemp(prefix="sluice-bench-s3-", dir=storage_dir))
        self.proc = None
        self.bucket = f"sluice-bench-{uuid.uuid4().hex[:8]}"
        self.prefix = "bench"

    @property
    def tag(self) -> str:
        return f"[{self.kind:<9}]"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list:
        if self.kind == "s3s-fs":
            return [str(build_s3s_fs()), "--host", "127.0.0.1", "--port", str(self.port),
                    "--access-key", self.KEY, "--secret-key", self.SECRET, str(self.storage)]
        if importlib.util.find_spec("moto") is None:
            raise BenchError("moto", "missing Python module moto; install with: bash scripts/install-test-deps.sh")
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def start(self) -> None:
        if importlib.util.find_spec("boto3") is None:
            raise BenchError(self.kind, "missing Python module boto3; install with: bash scripts/install-test-deps.sh")
        argv = self.argv()
        self._log = open(self.log_path, "wb")
        info(f"{self.tag} starting: {shlex.join(argv)} (log {self.log_path})")
        nice = self.nice
        env = {**os.environ, "TMPDIR": str(self.storage)}
        info(f"{self.tag} objects kept in {self.storage}" + (f", nice {nice}" if nice else ""))
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     preexec_fn=(lambda: os.setpriority(os.PRIO_PROCESS, 0, nice)) if nice else None)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise BenchError(self.kind, f"{self.kind} exited with code {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=1):
                    break
            except urllib.error.HTTPError:
                break  # it answers (an unsigned request may be refused)
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(self.kind, f"{self.kind} did not answer within 30 s")
            time.sleep(0.1)
        self.client.create_bucket(Bucket=self.bucket)
        info(f"{self.tag} ready on {self.endpoint}, bucket {self.bucket}")

    @property
    def client(self):
        if not hasattr(self, "_client"):
            import boto3

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint, region_name=self.REGION,
                aws_access_key_id=self.KEY, aws_secret_access_key=self.SECRET,
            )
        return self._client

    def calibrate(self) -> dict:
        """The server's own speed: 1 MiB ranged GETs from an 8 MiB and a
        64 MiB object (moto copies the whole object for every ranged GET, so
        large objects read slowly), single stream, outside the broker's
        prefix."""
        out = {}
        for size in (8 * MiB, 64 * MiB):
            key = f"calibration/{size // MiB}MiB"
            self.client.put_object(Bucket=self.bucket, Key=key, Body=random.Random(size).randbytes(size))
            n, t0 = 0, time.monotonic()
            for off in range(0, min(size, 16 * MiB), MiB):
                body = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={off}-{off + MiB - 1}")["Body"]
                n += len(body.read())
            out[f"range_get_{size // MiB}MiB_object"] = n / (time.monotonic() - t0)
            self.client.delete_object(Bucket=self.bucket, Key=key)
        info(f"{self.tag} calibration, 1 MiB ranged GETs, one stream: "
             + ", ".join(f"{k.split('_')[2]} object {v / MiB:.0f} MiB/s" for k, v in out.items()))
        return out

    def env(self) -> dict:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.REGION,
            "AWS_ACCESS_KEY_ID": self.KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET,
            "AWS_ALLOW_HTTP": "true",
        }

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def listing(self) -> dict:
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
            for o in page.get("Contents", []):
                out[o["Key"][len(self.prefix) + 1:]] = o["Size"]
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()
        shutil.rmtree(self.storage, ignore_errors=True)


# ---------------------------------------------------------------------------
# Broker
# ---------------------------------------------------------------------------


class Broker:
    def __init__(self, binary: Path, workdir: Path, args: list, env: dict):
        self.binary = binary
        self.data_dir = workdir / "data"
        self.log_path = workdir / "broker.log"
        self.port = free_port()
        self.http_port = free_port()
        self.args = args
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "AWS_"))}
        self.env.update(env)
        self.proc = None
        self.rss_peak_mib = 0.0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def argv(self) -> list:
        return [str(self.binary), "serve", "--data-dir", str(self.data_dir),
                "--listen", self.bootstrap, "--http-listen", f"127.0.0.1:{self.http_port}", *self.args]

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        env_note = " ".join(f"{k}={v}" for k, v in sorted(self.env.items()) if k.startswith("AWS_"))
        info(f"[broker   ] starting: {(env_note + ' ') if env_note else ''}{shlex.join(self.argv)}")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + 30
        while True:
            self.check("startup")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise BenchError("startup", "broker not healthy within 30 s")
            time.sleep(0.05)
        info(f"[broker   ] ready (pid {self.proc.pid}), log {self.log_path}")

    def check(self, phase: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(phase, f"broker exited with code {self.proc.returncode}; log tail:\n{self.log_tail()}")

    def rss_mib(self) -> float:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        v = int(line.split()[1]) / 1024.0
                        self.rss_peak_mib = max(self.rss_peak_mib, v)
                        return v
        except OSError:
            pass
        return 0.0

    def cpu_s(self) -> float:
        """User + system CPU seconds of the broker process so far."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return 0.0

    def metrics(self) -> dict:
        """{(name, frozenset(labels)): value} of the sluice_* samples."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if not line.startswith("sluice_"):
                continue
            head, _, value = line.rpartition(" ")
            name, _, rest = head.partition("{")
            labels = []
            for part in filter(None, rest.rstrip("}").split(",")):
                k, _, v = part.partition("=")
                labels.append((k, v.strip('"')))
            try:
                out[(name, frozenset(labels))] = float(value)
            except ValueError:
                pass
        return out

    def catalog(self, sql: str, params: tuple = ()) -> list:
        conn = sqlite3.connect(str(self.data_dir / "catalog.db"), timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                info("[broker   ] did not exit within 20 s of SIGTERM; killed")
        self._log.close()
        return self.proc.returncode

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def msum(m: dict, name: str, **labels) -> float:
    want = set((k, str(v)) for k, v in labels.items())
    return sum(v for (n, ls), v in m.items() if n == name and want <= ls)


def hist_quantile(after: dict, before: dict, name: str, q: float, **labels) -> float:
    """The q-quantile (ms) of a Prometheus histogram's observations between
    two snapshots: the upper bound of the bucket it falls in (buckets double,
    so this is within 2x)."""
    want = set((k, str(v)) for k, v in labels.items())
    cum = {}
    for (n, ls), v in after.items():
        if n == name + "_bucket" and want <= ls:
            le = float(dict(ls)["le"])
            cum[le] = cum.get(le, 0) + v - before.get((n, ls), 0)
    if not cum or cum.get(float("inf"), 0) <= 0:
        return float("nan")
    total = cum[float("inf")]
    for le in sorted(cum):
        if cum[le] >= q * total:
            return le * 1000
    return float("inf")


def broker_latencies(after: dict, before: dict) -> dict:
    """p50/p99 (ms, bucket bounds) of the broker's own timings in a window:
    WAL group commits and Produce/Fetch request handling."""
    out = {}
    for key, name, labels in (("wal_commit", "sluice_wal_fsync_duration_seconds", {}),
                              ("produce", "sluice_request_duration_seconds", {"api": "Produce"}),
                              ("fetch", "sluice_request_duration_seconds", {"api": "Fetch"})):
        out[key] = (hist_quantile(after, before, name, 0.5, **labels), hist_quantile(after, before, name, 0.99, **labels))
    return out


def requests_by_op(m: dict) -> dict:
    out = {}
    for (n, ls), v in m.items():
        if n == "sluice_object_store_requests_total":
            d = dict(ls)
            out[f"{d.get('op')}/{d.get('outcome')}"] = v
    return out


def delta(after: dict, before: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(after) | set(before)) if after.get(k, 0) - before.get(k, 0)}


# ---------------------------------------------------------------------------
# Worker processes (separate processes, so the GIL of one client does not
# slow down the others)
# ---------------------------------------------------------------------------


def _conf(bootstrap: str) -> dict:
    return {"bootstrap.servers": bootstrap, "broker.address.family": "v4", "socket.timeout.ms": 30000}


def steady_producer(bootstrap, topic, partitions, rate, size, stop, counter, out_path):
    """Produces `rate` msgs/s; value = send time ns (8) | seq (8) | filler.
    Records (ack time ns, ack latency ns) for every message into out_path."""
    from confluent_kafka import Producer

    p = Producer({**_conf(bootstrap), "acks": "all", "linger.ms": 1, "message.timeout.ms": 60000})
    filler = random.Random(2).randbytes(size - 16)
    errors = []
    acks = array("q")

    def cb(err, msg):
        if err is not None:
            errors.append(str(err))
            return
        now = time.time_ns()
        acks.append(now)
        acks.append(now - int.from_bytes(msg.value()[:8], "big"))

    # Sends what is due every 2 ms and sleeps in poll() in between: a loop
    # per message would spin a core and compete with what it measures.
    tick = 0.002
    seq = 0
    start = time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate)
        while seq < due:
            now_ns = time.time_ns()
            try:
                p.produce(topic, partition=seq % partitions,
                          value=now_ns.to_bytes(8, "big") + seq.to_bytes(8, "big") + filler,
                          timestamp=now_ns // 1_000_000, on_delivery=cb)
            except BufferError:
                break
            seq += 1
        counter.value = seq
        p.poll(max(tick, start + (seq + 1) / rate - time.monotonic()))
    p.flush(30)
    with open(out_path, "wb") as f:
        acks.tofile(f)
    if errors:
        print(f"steady producer: {len(errors)} delivery errors, first {errors[0]}", flush=True)


def idle_spinner() -> None:
    """The control phase's load: a busy loop in the SCHED_IDLE class (the
    lowest CPU priority there is), with no system calls."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    while True:
        pass


def control_phase(ctx, seconds: float, broker) -> tuple:
    """Runs one idle_spinner per CPU for `seconds`; returns the window (ns)
    and the broker's latency histograms over it."""
    spinners = [ctx.Process(target=idle_spinner, name="control", daemon=True) for _ in range(os.cpu_count() or 1)]
    info(f"[control  ] {len(spinners)} SCHED_IDLE busy loops for {seconds:.0f}s (no disk, no network)")
    for sp in spinners:
        sp.start()
    time.sleep(1.0)  # the loops have started (spawned interpreters) before the window opens
    m0 = broker.metrics()
    w0 = time.time_ns()
    try:
        while time.time_ns() - w0 < seconds * 1e9:
            broker.check("control")
            time.sleep(0.2)
        w1 = time.time_ns()
        latencies = broker_latencies(broker.metrics(), m0)
    finally:
        for sp in spinners:
            sp.kill()
            sp.join(5)
    return (w0, w1), latencies


def tail_consumer(bootstrap, topic, group, stop, ready, out_path, counter):
    """A group member reading from the latest offset; records (receive time
    ns, latency ns) for every message into out_path."""
    from confluent_kafka import Consumer

    c = Consumer({**_conf(bootstrap), "group.id": group, "auto.offset.reset": "latest",
                  "enable.auto.commit": True, "fetch.wait.max.ms": 100})
    c.subscribe([topic])
    samples = array("q")
    n = 0
    try:
        while not stop.is_set():
            # poll() returns as soon as a message is there (consume(n, t)
            # would wait for n messages or t seconds, adding latency).
            m = c.poll(0.1)
            if m is None or m.error() is not None:
                continue
            now = time.time_ns()
            v = m.value()
            sent = int.from_bytes(v[:8], "big")
            samples.append(now)
            samples.append(now - sent)
            n += 1
            if n == 1:
                ready.set()
            if n % 100 == 0:
                counter.value = n
    finally:
        c.close()
        with open(out_path, "wb") as f:
            samples.tofile(f)


def catchup_consumer(bootstrap, topic, group, targets, produced_ends, partitions, size, progress, result, stop,
                     ident=0, nice=0):
    """One member of a new consumer group (subscribe) reading from the
    earliest offset. For every partition it is given it reads up to
    `targets[p]`, checks each record (offsets follow each other with no gap;
    produce-phase offset o of partition p holds seq o*N+p and `size` bytes)
    and reports ("done", p, ns) when it gets there; ("bytes", ident, bytes,
    messages) every 0.5 s. Runs until `stop` is set."""
    from confluent_kafka import Consumer, KafkaError

    if nice and os.getpriority(os.PRIO_PROCESS, 0) < nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    c = Consumer({**_conf(bootstrap), "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "max.partition.fetch.bytes": 8 * MiB,
                  "fetch.max.bytes": 64 * MiB, "queued.max.messages.kbytes": 262144,
                  # librdkafka pauses a partition's fetches for this long once
                  # its local queue is full (default 1 s): a consumer slower
                  # than the broker would then idle in 1 s steps.
                  "fetch.queue.backoff.ms": 5})
    c.subscribe([topic])
    nxt = [0] * partitions  # next offset expected per partition
    first_ns = None
    first_cpu = 0.0
    nbytes = msgs = 0
    bad, errors = [], []
    timeline = []  # (ns since the epoch, bytes so far) every ~0.25 s
    last_report = last_sample = 0
    EOF_CODE = KafkaError._PARTITION_EOF
    try:
        while not stop.is_set():
            batch = c.consume(10000, timeout=0.1)
            if batch and first_ns is None:
                first_ns = time.time_ns()
                first_cpu = time.process_time()
            for m in batch:
                err = m.error()
                if err is not None:
                    if err.code() != EOF_CODE:
                        errors.append(str(err))
                    continue
                p, o = m.partition(), m.offset()
                if o < nxt[p] or o >= targets[p]:
                    continue  # read again after a rebalance (counted once), or past the target
                if o > nxt[p] and len(bad) < 10:
                    bad.append(("gap", p, nxt[p], o))
                v = m.value()
                nbytes += len(v)
                msgs += 1
                if o < produced_ends[p] and (len(v) != size or int.from_bytes(v[:8], "big") != o * partitions + p):
                    if len(bad) < 10:
                        bad.append(("record", p, o, len(v), int.from_bytes(v[:8], "big")))
                nxt[p] = o + 1
                if o + 1 == targets[p]:
                    progress.put(("done", p, time.time_ns()))
            t_ns = time.time_ns()
            if t_ns - last_report > 500_000_000:
                last_report = t_ns
                progress.put(("bytes", ident, nbytes, msgs))
            if first_ns is not None and t_ns - last_sample >= 250_000_000:
                last_sample = t_ns
                timeline.append((t_ns, nbytes))
        timeline.append((time.time_ns(), nbytes))
        cpu = time.process_time() - first_cpu if first_ns is not None else 0.0
    finally:
        c.close()
    result.put({"ident": ident, "first_ns": first_ns, "cpu_s": cpu, "bytes": nbytes, "messages": msgs,
                "bad": bad, "errors": errors[:10], "timeline": timeline})


READER_DIR = REPO / "bench" / "reader"
READER_BIN = READER_DIR / "target" / "release" / "sluice-catchup-reader"


def build_reader() -> None:
    """Builds the native catch-up reader (needs Debian's librdkafka-dev)."""
    info("[bench    ] building the native catch-up reader (bench/reader, librdkafka)")
    r = subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", str(READER_DIR / "Cargo.toml")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("setup", "building bench/reader failed (apt-get install librdkafka-dev pkg-config?):\n"
                         + r.stderr[-2000:])


def catchup_consumer_native(bootstrap, topic, group, targets, produced_ends, partitions, size, progress, result,
                            stop, ident=0, nice=0):
    """The same group member as catchup_consumer, run by bench/reader (compiled
    code over librdkafka, so the client's CPU does not crowd out the broker's
    on a small machine). Translates its stdout lines into the same progress
    and result messages; stops it by closing its stdin."""
    import threading

    argv = [str(READER_BIN), bootstrap, topic, group, str(size),
            ",".join(str(targets[p]) for p in range(partitions)),
            ",".join(str(produced_ends[p]) for p in range(partitions))]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: os.setpriority(os.PRIO_PROCESS, 0, nice)) if nice else None)
    end, bad, errors, timeline = {}, [], [], []

    def pump():
        for line in proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            f = rest.split()
            if kind == "bytes":
                progress.put(("bytes", ident, int(f[0]), int(f[1])))
            elif kind == "done":
                progress.put(("done", int(f[0]), int(f[1])))
            elif kind == "sample":
                timeline.append((int(f[0]), int(f[1])))
            elif kind == "bad":
                bad.append(rest)
            elif kind == "error":
                errors.append(rest)
            elif kind == "end":
                end.update(first_ns=int(f[0]) or None, cpu_s=float(f[1]), bytes=int(f[2]), messages=int(f[3]))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while not stop.wait(0.2):
        if proc.poll() is not None:
            break
    proc.stdin.close()
    proc.wait(60)
    reader.join(10)
    if not end:
        raise SystemExit(f"catch-up reader exited with {proc.returncode} without a result")
    result.put({"ident": ident, **end, "bad": bad[:10], "errors": errors[:10], "timeline": timeline})


# ---------------------------------------------------------------------------
# One store
# ---------------------------------------------------------------------------


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(_conf(bootstrap))
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = admin.list_topics(timeout=10).topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        time.sleep(0.1)
    raise BenchError("setup", f"topic {topic} not visible with {partitions} partitions")


def watermarks(bootstrap: str, topic: str, partitions: int) -> dict:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**_conf(bootstrap), "group.id": "bench-watermarks"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                for p in range(partitions)}
    finally:
        c.close()


def object_counts(broker: Broker, s3) -> dict:
    """Objects in the store by prefix (listing), and in the catalog."""
    if s3 is not None:
        listing = s3.listing()
    else:
        root = broker.data_dir / "objects"
        listing = {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}
    out = {"data": 0, "compacted": 0, "data_bytes": 0, "compacted_bytes": 0}
    for k, size in listing.items():
        head = k.split("/", 1)[0]
        if head in ("data", "compacted"):
            out[head] += 1
            out[head + "_bytes"] += size
    out["catalog_objects"] = broker.catalog("SELECT count(*) FROM objects")[0][0]
    out["referenced"] = broker.catalog("SELECT count(DISTINCT object_key) FROM segments")[0][0]
    return out


def disk_calibration(broker: Broker, chunk: int = 512 * 1024):
    """The disk's own direct-read rate for the settled objects: every object
    under the file store read once, front to back, with O_DIRECT in `chunk`
    requests, one at a time (as the broker's disk lane issues them). The
    catch-up cannot beat this, so the report gives the catch-up rate as a
    share of it. None (with a note) when there is nothing to read there or
    the filesystem refuses O_DIRECT (tmpfs)."""
    import mmap
    buf = mmap.mmap(-1, chunk)  # page-aligned, as O_DIRECT needs
    files = sorted(p for p in (broker.data_dir / "objects").rglob("*") if p.is_file())
    if not files:
        info("[disk     ] no objects under the data directory's object store: no disk reference")
        return None
    n, t0 = 0, time.monotonic()
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except OSError as e:
            info(f"[disk     ] O_DIRECT refused on {path} ({e}): no disk reference")
            return None
        try:
            off = 0
            while True:
                got = os.preadv(fd, [buf], off)
                n += got
                off += got
                if got < chunk:
                    break
        finally:
            os.close(fd)
    secs = time.monotonic() - t0
    out = {"bytes": n, "seconds": secs, "rate": n / secs if secs > 0 else float("nan"), "chunk": chunk,
           "objects": len(files)}
    info(f"[disk     ] direct reads of the {len(files)} objects, {chunk // 1024} KiB requests, one at a time: "
         f"{n / MiB:.0f} MiB in {secs:.2f}s = {out['rate'] / MiB:.0f} MiB/s")
    return out


def fmt_counts(c: dict) -> str:
    return (f"data/ {c['data']} objects ({c['data_bytes'] / MiB:.0f} MiB), compacted/ {c['compacted']} "
            f"({c['compacted_bytes'] / MiB:.0f} MiB); catalog: {c['catalog_objects']} objects, "
            f"{c['referenced']} referenced")


def produce_phase(args, broker: Broker, topic: str) -> dict:
    from confluent_kafka import Producer

    n = args.bytes // args.size
    p = Producer({**_conf(broker.bootstrap), "acks": "all", "enable.idempotence": True, "linger.ms": 20,
                  "batch.size": 1_000_000, "queue.buffering.max.kbytes": 262144,
                  "queue.buffering.max.messages": 1_000_000, "message.timeout.ms": 300000})
    filler = random.Random(1).randbytes(args.size - 8)
    state = {"acked": 0, "errors": []}

    def cb(err, msg):
        if err is None:
            state["acked"] += 1
        elif len(state["errors"]) < 10:
            state["errors"].append(str(err))

    info(f"[produce  ] {n} messages x {args.size} B = {n * args.size / MiB:.0f} MiB over {args.partitions} partitions")
    tick = Ticker()
    t0 = time.monotonic()
    for seq in range(n):
        while True:
            try:
                p.produce(topic, partition=seq % args.partitions, value=seq.to_bytes(8, "big") + filler, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.01)
        if seq % 1000 == 0:
            p.poll(0)
            if tick.due():
                broker.check("produce")
                el = time.monotonic() - t0
                m = broker.metrics()
                info(f"[produce  ] {state['acked'] * args.size / MiB:8.0f}/{n * args.size / MiB:.0f} MiB acked, "
                     f"{state['acked'] * args.size / MiB / el:6.1f} MiB/s, upload backlog "
                     f"{msum(m, 'sluice_upload_backlog_bytes') / MiB:.0f} MiB, RSS {broker.rss_mib():.0f} MiB")
    while state["acked"] + len(state["errors"]) < n:
        p.poll(0.1)
        broker.check("produce")
        if time.monotonic() - t0 > args.phase_timeout:
            raise BenchError("produce", f"only {state['acked']} of {n} acked after {args.phase_timeout} s")
    p.flush(60)
    el = time.monotonic() - t0
    if state["errors"]:
        raise BenchError("produce", f"delivery errors: {state['errors']}")
    rate = n * args.size / el
    info(f"[produce  ] done: {n * args.size / MiB:.0f} MiB in {el:.1f}s = {rate / MiB:.1f} MiB/s "
         f"({n / el:.0f} msgs/s)")
    return {"messages": n, "bytes": n * args.size, "seconds": el, "rate": rate}


def wait_uploaded(args, broker: Broker, topic: str, ends: dict) -> float:
    t0 = time.monotonic()
    tick = Ticker()
    tid = broker.catalog("SELECT id FROM topics WHERE name = ?", (topic,))[0][0]
    while True:
        broker.check("upload")
        have = dict(broker.catalog("SELECT partition, uploaded_end FROM partitions WHERE topic_id = ?", (tid,)))
        left = {p: e - have.get(p, 0) for p, e in ends.items() if have.get(p, 0) < e}
        if not left:
            info(f"[upload   ] everything uploaded ({time.monotonic() - t0:.1f}s after producing)")
            return time.monotonic() - t0
        if tick.due():
            info(f"[upload   ] waiting: offsets not yet uploaded per partition {left}")
        if time.monotonic() - t0 > args.phase_timeout:
            raise BenchError("upload", f"not uploaded after {args.phase_timeout}s: {left}")
        time.sleep(0.2)


def settle(args, broker: Broker, s3) -> dict:
    """Wait until compaction is idle (no object written and the index rows
    unchanged for --settle-quiet-s) and garbage collection has deleted the
    objects compaction replaced (catalog objects == referenced objects)."""
    t0 = time.monotonic()
    tick = Ticker(3.0)
    last_sig, since = None, time.monotonic()
    while True:
        broker.check("settle")
        m = broker.metrics()
        sig = (msum(m, "sluice_objects_written_total"), broker.catalog("SELECT count(*), count(DISTINCT object_key) FROM segments")[0])
        if sig != last_sig:
            last_sig, since = sig, time.monotonic()
        quiet = time.monotonic() - since
        if quiet >= args.settle_quiet_s and sig[1][1] == broker.catalog("SELECT count(*) FROM objects")[0][0]:
            counts = object_counts(broker, s3)
            info(f"[settle   ] compaction idle after {time.monotonic() - t0:.1f}s: {fmt_counts(counts)}")
            return counts
        if tick.due():
            info(f"[settle   ] objects written so far {sig[0]:.0f}, index rows {sig[1][0]} in {sig[1][1]} objects "
                 f"(catalog: {broker.catalog('SELECT count(*) FROM objects')[0][0]}, the rest awaits GC); "
                 f"quiet for {quiet:.0f}/{args.settle_quiet_s:.0f}s")
        if time.monotonic() - t0 > args.phase_timeout:
            counts = object_counts(broker, s3)
            info(f"[settle   ] compaction still busy after {args.phase_timeout}s; going on: {fmt_counts(counts)}")
            return counts
        time.sleep(0.5)


def catchup_round(args, ctx, broker, topic: str, produced_ends: dict, procs: list, tail_count, rnd: int) -> dict:
    """One catch-up: a new consumer group reads the topic from the earliest
    offset up to the high watermark of its start, checking every record."""
    targets = watermarks(broker.bootstrap, topic, args.partitions)
    total_target = sum(targets.values())
    progress, result = ctx.Queue(), ctx.Queue()
    n_cu = args.catchup_consumers
    group = f"bench-catchup-{uuid.uuid4().hex[:6]}-r{rnd}"
    stop_cu = ctx.Event()
    member = catchup_consumer_native if args.catchup_client == "native" else catchup_consumer
    cus = [ctx.Process(target=member, name=f"catchup-{i}",
                       args=(broker.bootstrap, topic, group, targets, produced_ends, args.partitions,
                             args.size, progress, result, stop_cu, i, args.catchup_nice))
           for i in range(n_cu)]
    how = f"a new consumer group (subscribe, {args.catchup_client} client)" + ("" if n_cu == 1 else f" of {n_cu} member processes")
    info(f"[catch-up ] round {rnd}: {how}, from the earliest offset up to {total_target} messages "
         f"({total_target * args.size / MiB:.0f} MiB)")
    c_start = time.time_ns()
    cpu_before = broker.cpu_s()
    for cu in cus:
        cu.start()
        procs.append(cu)
        if args.catchup_nice:
            # From its first instruction (the interpreter's start-up and
            # imports too), not only once it runs os.nice() itself.
            try:
                os.setpriority(os.PRIO_PROCESS, cu.pid, args.catchup_nice)
            except OSError:
                pass
    tick = Ticker()
    finished = {}
    seen = {}
    last_bytes, last_change = -1, time.monotonic()
    while len(finished) < args.partitions:
        broker.check("catch-up")
        try:
            msg = progress.get(timeout=0.2)
        except Exception:
            msg = None
        if msg is not None and msg[0] == "done":
            finished.setdefault(msg[1], msg[2])
        elif msg is not None:
            seen[msg[1]] = msg[2]
        total_now = sum(seen.values())
        if total_now != last_bytes or msg is not None and msg[0] == "done":
            last_bytes, last_change = total_now, time.monotonic()
        if tick.due() and seen:
            el = (time.time_ns() - c_start) / 1e9
            m = broker.metrics()
            info(f"[catch-up ] {last_bytes / MiB:8.0f}/{total_target * args.size / MiB:.0f} MiB "
                 f"{last_bytes / MiB / el:7.1f} MiB/s; block cache "
                 f"{msum(m, 'sluice_memory_bytes', kind='block_cache') / MiB:.0f} MiB, tail cache "
                 f"{msum(m, 'sluice_memory_bytes', kind='tail_cache') / MiB:.0f} MiB, RSS {broker.rss_mib():.0f} MiB; "
                 f"{len(finished)}/{args.partitions} partitions done; tail received {tail_count.value}")
        if time.monotonic() - last_change > args.stall_s:
            raise BenchError("catch-up", f"no progress for {args.stall_s}s at {last_bytes} bytes")
        dead = [cu for cu in cus if not cu.is_alive()]
        if dead:
            raise BenchError("catch-up", f"catch-up consumer exited early with code {dead[0].exitcode}")
    stop_cu.set()
    done = []
    for _ in cus:
        try:
            done.append(result.get(timeout=60))
        except Exception:
            raise BenchError("catch-up", "a catch-up consumer did not report within 60 s of the end")
    got = {
        "first_ns": min(d["first_ns"] for d in done if d["first_ns"]),
        "done_ns": max(finished.values()),
        "cpu_s": sum(d["cpu_s"] for d in done),
        # Every message (produce phase and steady producer) has --size
        # bytes; records a member read twice after a rebalance are not
        # counted twice here.
        "bytes": total_target * args.size,
        "messages": sum(d["messages"] for d in done),
        "bad": [b for d in done for b in d["bad"]],
        "errors": [e for d in done for e in d["errors"]],
    }
    firsts = sorted((d["first_ns"] - c_start) / 1e9 for d in done if d["first_ns"])
    info(f"[catch-up ] first record per member, s after start: {', '.join(f'{x:.2f}' for x in firsts)}")
    timeline = rate_timeline([d["timeline"] for d in done], got["first_ns"])
    for line in timeline_chart(timeline):
        info(f"[catch-up ] {line}")
    m_after_catchup = broker.metrics()
    broker_cpu = broker.cpu_s() - cpu_before
    if got["bad"] or got["messages"] < total_target:
        raise BenchError("catch-up", f"read {got['messages']} of {total_target} messages; "
                                     f"wrong records (gap/record, partition, offset, ...): {got['bad']}; "
                                     f"errors {got['errors']}")
    c0, c1 = got["first_ns"], got["done_ns"]
    cu_rate = got["bytes"] / ((c1 - c0) / 1e9)
    info(f"[catch-up ] done: {got['bytes'] / MiB:.0f} MiB in {(c1 - c0) / 1e9:.1f}s = {cu_rate / MiB:.1f} MiB/s "
         f"(first record {(c0 - c_start) / 1e9:.1f}s after start, group join included there); "
         f"every produced record checked; consumer CPU {got['cpu_s']:.1f}s "
         f"({got['cpu_s'] / ((c1 - c0) / 1e9):.0%} of a core), broker CPU {broker_cpu:.1f}s since the consumer started")
    if got["cpu_s"] / n_cu / ((c1 - c0) / 1e9) > 0.85:
        info("[catch-up ] note: the consumer process used most of a core; the client may be the limit "
             f"(try --catchup-consumers {n_cu + 1})")
    return {"round": rnd, "window_ns": [c0, c1], "bytes": got["bytes"],
            "messages": got["messages"], "seconds": (c1 - c0) / 1e9, "consumer_cpu_s": got["cpu_s"],
            "broker_cpu_s": broker_cpu, "rate": cu_rate, "first_record_after_s": (c0 - c_start) / 1e9,
            "timeline": timeline, "metrics_after": m_after_catchup}


def run_store(args, store: str, workdir: Path) -> dict:
    ctx = mp.get_context("spawn")
    res = {"store": store}
    s3 = None
    workdir.mkdir(parents=True, exist_ok=True)
    binary = workdir / "sluice"
    shutil.copy2(args.bin, binary)
    broker_args = [
        "--tail-cache-bytes", str(args.tail_cache_bytes),
        "--block-cache-bytes", str(args.block_cache_bytes),
        "--maintenance-interval-ms", str(args.maintenance_ms),
        "--gc-grace-ms", str(args.gc_grace_ms),
        *args.broker_arg,
    ]
    env = {}
    if store == "s3":
        s3 = S3Server(workdir, args.s3_server, args.s3_dir or workdir, args.s3_nice)
        res["s3_server"] = args.s3_server
        res["s3_storage"] = str(s3.storage)
        res["s3_nice"] = args.s3_nice
        s3.start()
        res["s3_calibration"] = s3.calibrate()
        broker_args = ["--object-store", s3.url] + broker_args
        env = s3.env()
    broker = Broker(binary, workdir, broker_args, env)
    res["broker_command"] = shlex.join(broker.argv)
    procs = []
    try:
        broker.start()
        topic = "catchup"
        create_topic(broker.bootstrap, topic, args.partitions)

        # 1. produce
        res["produce"] = produce_phase(args, broker, topic)
        produced_ends = watermarks(broker.bootstrap, topic, args.partitions)
        expect = {p: (res["produce"]["messages"] - p + args.partitions - 1) // args.partitions for p in range(args.partitions)}
        if produced_ends != expect:
            raise BenchError("produce", f"high watermarks {produced_ends} != expected {expect}")
        m_after_produce = broker.metrics()

        # 2. upload, 3. settle
        res["upload_wait_s"] = wait_uploaded(args, broker, topic, produced_ends)
        res["objects_settled"] = settle(args, broker, s3)
        disk = disk_calibration(broker) if s3 is None else None
        if disk is not None and disk["rate"] > 0:
            res["disk_calibration"] = disk
        m_settled = broker.metrics()
        res["requests_produce_and_settle"] = requests_by_op(m_settled)

        # 4. baseline: steady producer + tail consumer
        stop_prod, stop_tail, ready = ctx.Event(), ctx.Event(), ctx.Event()
        prod_count, tail_count = ctx.Value("q", 0), ctx.Value("q", 0)
        lat_path = workdir / "tail-latencies.bin"
        ack_path = workdir / "ack-latencies.bin"
        tail = ctx.Process(target=tail_consumer, name="tail",
                           args=(broker.bootstrap, topic, f"bench-tail-{uuid.uuid4().hex[:6]}", stop_tail, ready,
                                 str(lat_path), tail_count))
        tail.start()
        procs.append(tail)
        time.sleep(1.0)
        prod = ctx.Process(target=steady_producer, name="steady",
                           args=(broker.bootstrap, topic, args.partitions, args.tail_rate, args.size, stop_prod,
                                 prod_count, str(ack_path)))
        prod.start()
        procs.append(prod)
        t_wait = time.monotonic()
        while not ready.is_set():
            broker.check("baseline")
            if time.monotonic() - t_wait > 60:
                raise BenchError("baseline", "the tail consumer received nothing within 60 s")
            time.sleep(0.1)
        time.sleep(args.warmup_s)
        info(f"[baseline ] tail consumer receiving; steady producer at {args.tail_rate} msgs/s "
             f"({args.tail_rate * args.size / MiB:.1f} MiB/s); measuring for {args.baseline_s:.0f}s")
        m_baseline_start = broker.metrics()
        b0 = time.time_ns()
        base_cpu0 = broker.cpu_s()
        tick = Ticker()
        while time.time_ns() - b0 < args.baseline_s * 1e9:
            broker.check("baseline")
            if tick.due():
                info(f"[baseline ] produced {prod_count.value}, tail received {tail_count.value}, "
                     f"RSS {broker.rss_mib():.0f} MiB")
            time.sleep(0.2)
        b1 = time.time_ns()
        res["broker_cpu_baseline"] = (broker.cpu_s() - base_cpu0) / ((b1 - b0) / 1e9)
        info(f"[baseline ] broker CPU {res['broker_cpu_baseline']:.0%} of a core for the steady traffic")
        control = None
        if args.control_s > 0:
            control, control_latency = control_phase(ctx, args.control_s, broker)
            time.sleep(args.round_gap_s)
        m_before_catchup = broker.metrics()

        # 5. catch-up rounds (the first reads into memory the broker has
        # not touched yet; later ones find its read buffers warm)
        rounds = []
        for rnd in range(1, args.catchup_rounds + 1):
            if rnd > 1:
                time.sleep(args.round_gap_s)
            rounds.append(catchup_round(args, ctx, broker, topic, produced_ends, procs, tail_count, rnd))
        m_after_catchup = rounds[-1]["metrics_after"]
        med = sorted(rounds, key=lambda r: r["rate"])[(len(rounds) - 1) // 2]
        cu_rate, (c0, c1) = med["rate"], med["window_ns"]
        res["catchup_timeline"] = med["timeline"]
        res["catchup_window_ns"] = [r["window_ns"] for r in rounds]
        # A few more seconds of tail traffic after catch-up.
        time.sleep(2)
        stop_prod.set()
        prod.join(60)
        time.sleep(1)
        stop_tail.set()
        tail.join(60)
        windows = [tuple(r["window_ns"]) for r in rounds]
        tail_lat, ack_lat = Latencies(lat_path), Latencies(ack_path)
        base, during = tail_lat.within([(b0, b1)]), tail_lat.within(windows)
        a_base, a_during = ack_lat.within([(b0, b1)]), ack_lat.within(windows)
        for r in rounds:
            own = [tuple(r["window_ns"])]
            r["tail_p99_ms"] = percentile(tail_lat.within(own), 99)
            r["ack_p99_ms"] = percentile(ack_lat.within(own), 99)
        if len(rounds) > 1:
            for r in rounds:
                info(f"[report   ] round {r['round']}: catch-up {r['rate'] / MiB:.0f} MiB/s in {r['seconds']:.1f}s, "
                     f"tail p99 {r['tail_p99_ms']:.1f} ms, ack p99 {r['ack_p99_ms']:.1f} ms")
        if control is not None:
            c_tail, c_acks = tail_lat.within([control]), ack_lat.within([control])
            res["control"] = {"seconds": args.control_s, "window_ns": list(control), "tail_n": len(c_tail),
                              "tail_p50_ms": percentile(c_tail, 50), "tail_p99_ms": percentile(c_tail, 99),
                              "ack_p99_ms": percentile(c_acks, 99), "broker_latency": control_latency}
        res["acks"] = {"baseline_p50_ms": percentile(a_base, 50), "baseline_p99_ms": percentile(a_base, 99),
                       "during_p50_ms": percentile(a_during, 50), "during_p99_ms": percentile(a_during, 99)}
        res["tail"] = {
            "rate_msgs": args.tail_rate,
            "baseline_n": len(base), "baseline_p50_ms": percentile(base, 50), "baseline_p99_ms": percentile(base, 99),
            "baseline_max_ms": max(base) if base else float("nan"),
            "during_n": len(during), "during_p50_ms": percentile(during, 50), "during_p99_ms": percentile(during, 99),
            "during_max_ms": max(during) if during else float("nan"),
            "received": len(tail_lat.lat), "produced": prod_count.value,
        }
        if len(during) < 50:
            info(f"[report   ] warning: only {len(during)} tail samples during the catch-up window "
                 f"(catch-up took {(c1 - c0) / 1e9:.1f}s); the comparison is weak")
        res["tail_spikes"] = spikes(tail_lat.at, tail_lat.lat, b0, windows[0][0], windows[-1][1])
        for line in res["tail_spikes"]:
            info(f"[report   ] tail latency spike: {line}")
        keep = ("round", "bytes", "messages", "seconds", "consumer_cpu_s", "broker_cpu_s", "rate",
                "first_record_after_s", "tail_p99_ms", "ack_p99_ms")
        res["catchup"] = {k: med[k] for k in keep}
        res["catchup_rounds"] = [{k: r[k] for k in keep} for r in rounds]
        res["broker_latency_baseline"] = broker_latencies(m_before_catchup, m_baseline_start)
        res["broker_latency_catchup"] = broker_latencies(m_after_catchup, m_before_catchup)
        res["requests_during_catchup"] = delta(requests_by_op(m_after_catchup), requests_by_op(m_before_catchup))
        res["requests_total"] = requests_by_op(m_after_catchup)
        reads = {}
        for src in ("tail", "object"):
            reads[src] = msum(m_after_catchup, "sluice_fetch_reads_total", source=src) - \
                msum(m_before_catchup, "sluice_fetch_reads_total", source=src)
        res["fetch_reads_during_catchup"] = reads
        res["cache_during_catchup"] = {
            f"{name}/{outcome}": msum(m_after_catchup, metric, outcome=outcome) - msum(m_before_catchup, metric, outcome=outcome)
            for name, metric, outcomes in (("block cache", "sluice_block_cache_lookups_total", ("hit", "miss")),
                                           ("read buffers", "sluice_read_buffers_total", ("reused", "fresh")))
            for outcome in outcomes}
        res["read_buffer_mib_during_catchup"] = {
            outcome: (msum(m_after_catchup, "sluice_read_buffer_bytes_total", outcome=outcome)
                      - msum(m_before_catchup, "sluice_read_buffer_bytes_total", outcome=outcome)) / MiB
            for outcome in ("reused", "fresh")}
        res["objects_written_total"] = msum(m_after_catchup, "sluice_objects_written_total")
        res["objects_written_during_produce"] = msum(m_after_produce, "sluice_objects_written_total")
        res["objects_end"] = object_counts(broker, s3)
        res["memory_end"] = {dict(ls).get("kind"): v for (n, ls), v in m_after_catchup.items() if n == "sluice_memory_bytes"}
        res["rss_peak_mib"] = broker.rss_peak_mib
        res["ratio"] = cu_rate / res["produce"]["rate"]
        bp99 = res["tail"]["baseline_p99_ms"]
        res["p99_growth"] = res["tail"]["during_p99_ms"] / bp99 - 1 if bp99 == bp99 and bp99 > 0 else float("nan")
        return res
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
        rc = broker.stop()
        res["broker_exit"] = rc
        if s3 is not None:
            s3.stop()


class Latencies:
    """The (time ns, latency ns) pairs a client process wrote, read once."""

    def __init__(self, path: Path):
        samples = array("q")
        with open(path, "rb") as f:
            samples.frombytes(f.read())
        self.at, self.lat = samples[0::2], samples[1::2]

    def within(self, windows: list) -> list:
        """The latencies in ms of the samples taken within any of the
        (start ns, end ns) windows."""
        return [l / 1e6 for t, l in zip(self.at, self.lat) if any(w0 <= t <= w1 for w0, w1 in windows)]


def rate_timeline(timelines: list, t0: int, bucket_s: float = 0.5) -> list:
    """MiB/s per `bucket_s` from t0, summed over the consumers' (ns, bytes
    so far) samples (each consumer's bytes spread evenly between samples)."""
    bucket_ns = int(bucket_s * 1e9)
    out: dict = {}
    for tl in timelines:
        prev_t, prev_b = t0, 0
        for t, b in tl:
            if t <= prev_t:
                prev_b = b
                continue
            span, moved = t - prev_t, b - prev_b
            at = prev_t
            while at < t:
                k = (at - t0) // bucket_ns
                edge = min(t, t0 + (k + 1) * bucket_ns)
                out[k] = out.get(k, 0.0) + moved * (edge - at) / span
                at = edge
            prev_t, prev_b = t, b
    n = max(out) + 1 if out else 0
    return [out.get(k, 0.0) / MiB / bucket_s for k in range(n)]


def timeline_chart(rates: list, bucket_s: float = 0.5, width: int = 50) -> list:
    """A bar per bucket of the catch-up rate."""
    top = max(rates, default=0.0)
    lines = ["rate over the catch-up (MiB/s per %.1f s):" % bucket_s]
    for k, r in enumerate(rates):
        bar = "#" * (round(r / top * width) if top > 0 else 0)
        lines.append(f"  {k * bucket_s:5.1f}s {r:7.1f} {bar}")
    return lines


def spikes(recv, lat, b0: int, c0: int, c1: int, limit: int = 8) -> list:
    """The worst 100 ms windows of tail latency, placed relative to the
    baseline start and the catch-up window."""
    buckets = {}
    for r, l in zip(recv, lat):
        if r < b0:
            continue
        k = (r - b0) // 100_000_000
        if l > buckets.get(k, 0):
            buckets[k] = l
    worst = sorted(buckets.items(), key=lambda kv: -kv[1])[:limit]
    out = []
    for k, l in sorted(worst):
        t = b0 + k * 100_000_000
        where = "during catch-up" if c0 <= t <= c1 else ("before catch-up" if t < c0 else "after catch-up")
        out.append(f"{l / 1e6:6.1f} ms at {(t - b0) / 1e9:5.1f}s after the baseline start ({where}, "
                   f"{time.strftime('%H:%M:%S', time.gmtime(t / 1e9))}.{(t // 10**8) % 10} UTC)")
    return out


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(results: list, command: str, args) -> bool:
    all_ok = True
    rows = []
    for r in results:
        s = r["store"]
        if "catchup" not in r:
            rows.append((s, "run", "FAILED", "", r.get("error", "")))
            all_ok = False
            continue
        pr, cu, t = r["produce"], r["catchup"], r["tail"]
        ratio_ok = r["ratio"] >= CATCHUP_RATIO_TARGET
        p99_ok = r["p99_growth"] <= TAIL_P99_GROWTH_TARGET
        all_ok &= ratio_ok and p99_ok
        rows += [
            (s, "produce rate", f"{pr['rate'] / MiB:.1f} MiB/s", "", f"{pr['bytes'] / MiB:.0f} MiB in {pr['seconds']:.1f}s"),
            (s, "catch-up rate", f"{cu['rate'] / MiB:.1f} MiB/s", "",
             f"{cu['bytes'] / MiB:.0f} MiB in {cu['seconds']:.1f}s; consumer CPU {cu['consumer_cpu_s'] / cu['seconds']:.0%}, "
             f"broker CPU {cu['broker_cpu_s']:.1f}s"),
            *([(s, "catch-up rounds", ", ".join(f"{x['rate'] / MiB:.0f}" for x in r["catchup_rounds"]) + " MiB/s", "",
                "each round's rate (the median above); tail p99 per round: "
                + ", ".join(f"{x['tail_p99_ms']:.1f}" for x in r["catchup_rounds"]) + " ms")]
              if len(r["catchup_rounds"]) > 1 else []),
            (s, "catch-up / produce", f"{r['ratio']:.2f}x", f">= {CATCHUP_RATIO_TARGET:.0f}x", verdict(ratio_ok)),
            *([(s, "catch-up / disk direct read", f"{cu['rate'] / r['disk_calibration']['rate']:.0%}", "",
                f"the disk read the same objects at {r['disk_calibration']['rate'] / MiB:.0f} MiB/s in this run "
                f"({r['disk_calibration']['chunk'] // 1024} KiB O_DIRECT requests, one at a time): the ceiling")]
              if "disk_calibration" in r else []),
            (s, "catch-up / steady produce", f"{cu['rate'] / (t['rate_msgs'] * args.size):.0f}x", "",
             "how much faster than the live traffic a lagging group catches up (context, not the target)"),
            (s, "tail p50 before/during", f"{t['baseline_p50_ms']:.2f} / {t['during_p50_ms']:.2f} ms", "", ""),
            (s, "tail p99 before/during", f"{t['baseline_p99_ms']:.2f} / {t['during_p99_ms']:.2f} ms",
             f"<= +{TAIL_P99_GROWTH_TARGET:.0%}", f"{verdict(p99_ok)} ({r['p99_growth']:+.0%})"),
            *([(s, "tail p99, idle CPU load", f"{r['control']['tail_p99_ms']:.2f} ms",
                "", f"control ({r['control']['tail_p99_ms'] / t['baseline_p99_ms'] - 1:+.0%}; ack p99 "
                f"{r['control']['ack_p99_ms']:.2f} ms): {r['control']['seconds']:.0f}s of SCHED_IDLE busy loops, "
                "one per CPU, no catch-up")]
              if "control" in r else []),
            (s, "tail samples before/during", f"{t['baseline_n']} / {t['during_n']}", "", f"at {t['rate_msgs']} msgs/s"),
            (s, "produce ack p50/p99 before", f"{r['acks']['baseline_p50_ms']:.2f} / {r['acks']['baseline_p99_ms']:.2f} ms",
             "", "steady producer, acks=all"),
            (s, "produce ack p50/p99 during", f"{r['acks']['during_p50_ms']:.2f} / {r['acks']['during_p99_ms']:.2f} ms",
             "", "catch-up window"),
            *[(s, f"broker {k} p50/p99 before/during",
               f"{b[0]:g}/{b[1]:g} -> {d[0]:g}/{d[1]:g} ms", "",
               "bucket upper bounds (x2 steps)" + ("; includes long-poll waits" if k == "fetch" else "")
               + (f"; idle CPU load {c[0]:g}/{c[1]:g} ms" if c else ""))
              for k, b, d, c in ((k, r["broker_latency_baseline"][k], r["broker_latency_catchup"][k],
                                  r.get("control", {}).get("broker_latency", {}).get(k))
                                 for k in r["broker_latency_baseline"])],
            (s, "broker CPU, steady traffic", f"{r['broker_cpu_baseline']:.0%} of a core", "", "baseline window"),
            (s, "objects after settle", fmt_counts(r["objects_settled"]), "", ""),
            (s, "objects written total", f"{r['objects_written_total']:.0f}", "",
             f"{r['objects_written_during_produce']:.0f} during produce"),
            (s, "store requests (all)", ", ".join(f"{k}={v:.0f}" for k, v in r["requests_total"].items()), "", ""),
            (s, "store requests (catch-up)", ", ".join(f"{k}={v:.0f}" for k, v in r["requests_during_catchup"].items()), "", ""),
            (s, "fetch reads (catch-up)", ", ".join(f"{k}={v:.0f}" for k, v in r["fetch_reads_during_catchup"].items()), "", ""),
            (s, "caches (catch-up)", ", ".join(f"{k}={v:.0f}" for k, v in r["cache_during_catchup"].items()), "",
             "block cache lookups; buffers for direct reads"
             + (" ({reused:.0f} MiB reused, {fresh:.0f} MiB fresh: new memory)".format(**r["read_buffer_mib_during_catchup"])
                if "read_buffer_mib_during_catchup" in r else "")),
            (s, "broker RSS peak", f"{r['rss_peak_mib']:.0f} MiB", "", ""),
        ]
        if "s3_calibration" in r:
            rows.append((s, f"{r['s3_server']} ranged GET (1 stream)",
                         ", ".join(f"{k.split('_')[2]} objects {v / MiB:.0f} MiB/s" for k, v in r["s3_calibration"].items()),
                         "", f"the server's own limit; objects in {r['s3_storage']}, nice {r['s3_nice']}"))
    widths = [max(len(str(row[i])) for row in rows + [("store", "figure", "value", "target", "result")]) for i in range(5)]
    print()
    print("=" * 100)
    head = ("store", "figure", "value", "target", "result")
    print("  ".join(str(h).ljust(w) for h, w in zip(head, widths)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print("=" * 100)
    print(f"settings: {args.bytes / MiB:.0f} MiB of {args.size} B messages, {args.partitions} partitions, "
          f"tail cache {args.tail_cache_bytes / MiB:.0f} MiB, block cache {args.block_cache_bytes / MiB:.0f} MiB, "
          f"steady rate {args.tail_rate} msgs/s, baseline {args.baseline_s:.0f}s, "
          f"maintenance {args.maintenance_ms} ms, gc grace {args.gc_grace_ms} ms")
    if args.bytes < GiB:
        print(f"note: --bytes {args.bytes} is below the 1 GiB of the issue's benchmark")
    print("note: store requests during the catch-up window include the steady producer's uploads and "
          "background compaction (one ranged GET per index row it merges), not only catch-up reads")
    for r in results:
        if "broker_command" in r:
            print(f"broker ({r['store']}): {r['broker_command']}")
    print(f"command: {command}")
    return all_ok


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--bin", type=Path, default=Path(os.environ.get("SLUICE_BIN", DEFAULT_BIN)), help="broker binary")
    ap.add_argument("--store", choices=["file", "s3", "both"], default="both")
    ap.add_argument("--s3-server", choices=["moto", "s3s-fs"], default="moto",
                    help="the S3-compatible server for --store s3 (s3s-fs is installed with cargo on first use)")
    shm = Path("/dev/shm")
    ap.add_argument("--s3-dir", type=Path, default=shm if shm.is_dir() else None,
                    help="where the S3 server keeps objects (default /dev/shm: a remote store does not share the "
                         "broker's disk; moto spilling objects to /tmp on the WAL's disk made WAL syncs wait up "
                         "to 138 ms); the scratch dir when there is no /dev/shm")
    ap.add_argument("--s3-nice", type=int, default=0,
                    help="nice value of the S3 server (a remote service; here it shares the broker's cores)")
    ap.add_argument("--bytes", type=int, default=GiB, help="bytes (message values) to produce in phase 1")
    ap.add_argument("--size", type=int, default=1024, help="message value size")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--tail-rate", type=int, default=2000, help="steady producer rate, msgs/s")
    ap.add_argument("--baseline-s", type=float, default=20.0)
    ap.add_argument("--warmup-s", type=float, default=3.0, help="tail traffic before the baseline window")
    ap.add_argument("--catchup-consumers", type=int, default=1,
                    help="members (processes) of the catch-up consumer group")
    ap.add_argument("--catchup-rounds", type=int, default=1,
                    help="catch-ups one after another, each by a new group; the rate is the median round's, "
                         "the tail p99 is over all rounds' windows (the first round reads into memory the "
                         "broker has not touched yet); the broker's own counters cover all rounds and the "
                         "group joins and gaps between them")
    ap.add_argument("--round-gap-s", type=float, default=3.0, help="tail traffic alone between rounds")
    ap.add_argument("--control-s", type=float, default=5.0,
                    help="seconds of the control phase before the catch-up (one SCHED_IDLE busy loop per CPU, "
                         "nothing else): the tail's cost of any background CPU work here; 0 skips it")
    ap.add_argument("--catchup-client", choices=["native", "python"], default="native",
                    help="catch-up group member: bench/reader (librdkafka from compiled code) or "
                         "confluent-kafka in Python (~2.4 CPU-s per GiB of 1 KiB records on the client)")
    ap.add_argument("--catchup-nice", type=int, default=0,
                    help="nice value of the catch-up consumer processes (a batch job that would run on "
                         "other machines; here it shares the broker's cores)")
    ap.add_argument("--tail-cache-bytes", type=int, default=16 * MiB)
    ap.add_argument("--block-cache-bytes", type=int, default=256 * MiB)
    ap.add_argument("--maintenance-ms", type=int, default=5000, help="broker --maintenance-interval-ms")
    ap.add_argument("--gc-grace-ms", type=int, default=10000, help="broker --gc-grace-ms")
    ap.add_argument("--settle-quiet-s", type=float, default=12.0,
                    help="compaction counts as idle after this long without new objects or index changes")
    ap.add_argument("--phase-timeout", type=float, default=900.0)
    ap.add_argument("--stall-s", type=float, default=60.0, help="fail the catch-up after this long without progress")
    ap.add_argument("--broker-arg", action="append", default=[], help="extra sluice serve argument (repeatable)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="scratch dir (default: a new dir under <repo>/target; removed unless --keep or failure)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    a = ap.parse_args(argv)
    if a.size < 16:
        ap.error("--size must be at least 16")
    if not a.bin.is_file():
        print(f"broker binary {a.bin} not found (cargo build --profile fast -p sluice, or --bin)", file=sys.stderr)
        sys.exit(2)
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("confluent_kafka") is None:
        print("confluent-kafka is not installed (bash scripts/install-test-deps.sh)", file=sys.stderr)
        return 2
    command = shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["catchup_bench.py", *argv])
    parent = REPO / "target"
    parent.mkdir(exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="catchup-bench-", dir=parent))
    info(f"[bench    ] scratch dir {workdir}; binary {args.bin}; {os.cpu_count()} CPUs")
    busy = [p for p in os.popen("ps -eo comm=").read().split() if p in ("rustc", "cargo", "cc1", "ld")]
    if busy:
        info(f"[bench    ] warning: compilers running ({', '.join(sorted(set(busy)))}): figures will be skewed")
    if args.catchup_client == "native":
        try:
            build_reader()
        except BenchError as e:
            print(e, file=sys.stderr)
            return 1
    stores = ["file", "s3"] if args.store == "both" else [args.store]
    results = []
    failed = False
    for store in stores:
        info(f"[bench    ] ===== store: {store} =====")
        try:
            results.append(run_store(args, store, workdir / store))
        except BenchError as e:
            failed = True
            info(f"[bench    ] FAILED: {e}")
            results.append({"store": store, "error": str(e)})
        except KeyboardInterrupt:
            info("[bench    ] interrupted")
            return 1
    ok = report(results, command, args)
    if args.json:
        args.json.write_text(json.dumps({"command": command, "results": results}, indent=2, default=str))
        info(f"[bench    ] results written to {args.json}")
    if failed or args.keep:
        info(f"[bench    ] scratch dir kept: {workdir}")
    elif args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        return 1
    return 1 if (args.strict and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
