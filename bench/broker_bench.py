#!/usr/bin/env python3
"""Sluice broker benchmark.

Starts a Sluice broker, then in one run measures:

  1. the disk's own fsync'd sequential write bandwidth and small-append fsync
     latency, on the filesystem that holds the broker's data directory;
  2. produce throughput (acks=all, linger.ms=20) through a librdkafka-based
     load generator, plus the load generator's own CPU use;
  3. consume throughput of the same data, from the beginning, all partitions;
  4. single-message produce latency (acks=all, linger.ms=0), p50/p99;
  5. broker CPU-seconds per GiB produced and per GiB consumed (/proc/PID/stat).

Each figure is printed next to its target with PASS/MISS. See bench/README.md.

Dependencies: confluent-kafka (pip) and kcat (Debian package), both only
needed for the load generator/consumer variants that use them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import os as _os

# The brokers started here need no OTLP receivers (their default ports would
# collide between brokers); older builds ignore the variables.
_os.environ.setdefault("SLUICE_OTLP_HTTP_LISTEN", "off")
_os.environ.setdefault("SLUICE_OTLP_GRPC_LISTEN", "off")

MiB = 1024 * 1024
GiB = 1024 * MiB
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

REPO = Path(__file__).resolve().parent.parent

# Targets.
PRODUCE_DISK_RATIO_TARGET = 0.85     # produce >= 85% of disk fsync'd seq bandwidth
CONSUME_PRODUCE_RATIO_TARGET = 2.0   # consume >= 2x produce
CPU_PER_GIB_PRODUCE_TARGET = 0.5     # broker CPU-s per GiB produced
CPU_PER_GIB_CONSUME_TARGET = 0.3     # broker CPU-s per GiB consumed
LATENCY_FSYNC_FACTOR = 1.5           # p99 <= 1.5 x fsync p99 + 0.5 ms
LATENCY_SLACK_MS = 0.5
SATURATED_CORE_FRACTION = 0.90       # client process CPU/wall >= 0.9 = saturated a core


class BenchError(Exception):
    """A failure that aborts the benchmark (broker misbehaviour, bad data, ...)."""

    def __init__(self, phase: str, message: str):
        super().__init__(f"[{phase}] {message}")
        self.phase = phase
        self.message = message


# ----------------------------------------------------------------------------
# Small utilities
# ----------------------------------------------------------------------------

def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid: int | str) -> float:
    """utime+stime of a whole process (all threads, living and dead), seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_broker_idle(pid: int | str, timeout: float, below: float = 0.03) -> float:
    """Waits until the process uses less than `below` of a core over a second;
    returns how long that took (at most `timeout`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        c0 = proc_cpu_seconds(pid)
        time.sleep(1.0)
        if proc_cpu_seconds(pid) - c0 < below:
            break
    return time.monotonic() - t0


def thread_cpu_seconds(pid: int | str) -> dict[int, float]:
    """CPU time per living thread of a process, seconds. Uses the nanosecond
    run time from /proc/PID/task/TID/schedstat, or utime+stime from .../stat
    where schedstat is missing."""
    out: dict[int, float] = {}
    task_dir = f"/proc/{pid}/task"
    try:
        tids = os.listdir(task_dir)
    except FileNotFoundError:
        return out
    for tid in tids:
        try:
            try:
                with open(f"{task_dir}/{tid}/schedstat", "rb") as f:
                    out[int(tid)] = int(f.read().split()[0]) / 1e9
                continue
            except (FileNotFoundError, IndexError, ValueError):
                pass
            with open(f"{task_dir}/{tid}/stat", "rb") as f:
                data = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = data[data.rindex(b")") + 2:].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def machine_cpu_jiffies() -> tuple[int, int]:
    """(idle incl. iowait, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts[:8]]  # user nice system idle iowait irq softirq steal
    return vals[3] + vals[4], sum(vals)


def proc_rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except FileNotFoundError:
        return None
    return None


class CpuWindow:
    """CPU accounting for one phase: broker, machine, and optionally the load
    generator (this process or a child process)."""

    def __init__(self, broker_pid: int):
        self.broker_pid = broker_pid
        self.t0 = time.perf_counter()
        self.broker0 = proc_cpu_seconds(broker_pid)
        self.idle0, self.total0 = machine_cpu_jiffies()

    def finish(self) -> dict:
        wall = time.perf_counter() - self.t0
        broker = proc_cpu_seconds(self.broker_pid) - self.broker0
        idle1, total1 = machine_cpu_jiffies()
        dt = max(1, total1 - self.total0)
        idle_cores = (idle1 - self.idle0) / dt * NCPU
        return {
            "wall_s": wall,
            "broker_cpu_s": broker,
            "broker_cores": broker / wall if wall > 0 else 0.0,
            "machine_idle_cores": idle_cores,
        }


class ChildCpuSampler:
    """Samples per-thread CPU of a child process while it runs (the last sample
    before it exits is kept; total process CPU comes from wait4's rusage)."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid = pid
        self.interval = interval
        self.threads: dict[int, float] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            snap = thread_cpu_seconds(self.pid)
            for tid, v in snap.items():
                if v >= self.threads.get(tid, 0.0):
                    self.threads[tid] = v
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()

    def busiest_thread_s(self) -> float:
        return max(self.threads.values(), default=0.0)


class Progress:
    """One line per phase with a progress count. Rewrites the line in place on
    a terminal; otherwise prints a line every few seconds."""

    def __init__(self, phase: str, total: int, unit: str):
        self.phase = phase
        self.total = total
        self.unit = unit
        self.tty = sys.stdout.isatty()
        self.t0 = time.perf_counter()
        self.last_print = 0.0
        self.last_n = -1
        self.interval = 0.2 if self.tty else 2.0
        self._emit(0, "", force=True)

    def _emit(self, n: int, extra: str, force: bool = False, final: bool = False) -> None:
        now = time.perf_counter()
        if not force:
            if now - self.last_print < self.interval:
                return
            # Off a terminal, repeat an unchanged count only every 10 s.
            if not self.tty and n == self.last_n and now - self.last_print < 10.0:
                return
        self.last_print = now
        self.last_n = n
        pct = 100.0 * n / self.total if self.total else 100.0
        line = (f"[{self.phase:<9}] {n:>{len(str(self.total))}}/{self.total} {self.unit} "
                f"({pct:5.1f}%) {now - self.t0:6.1f}s {extra}").rstrip()
        if self.tty:
            end = "\n" if final else ""
            sys.stdout.write("\r\x1b[2K" + line + end)
        else:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def update(self, n: int, extra: str = "") -> None:
        self._emit(n, extra)

    def done(self, n: int, extra: str = "") -> None:
        self._emit(n, extra, force=True, final=True)


def info(msg: str) -> None:
    print(msg, flush=True)


def fmt_ms(x: float) -> str:
    return f"{x:.3f} ms" if x < 10 else f"{x:.1f} ms"


# ----------------------------------------------------------------------------
# Broker process
# ----------------------------------------------------------------------------

class Broker:
    def __init__(self, binary: Path, data_dir: Path, log_path: Path, extra_args: list[str]):
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.exit_code: int | None = None
        self.stop_note = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def cmdline(self) -> list[str]:
        return [str(self.binary), "serve",
                "--data-dir", str(self.data_dir),
                "--listen", f"127.0.0.1:{self.port}",
                "--http-listen", f"127.0.0.1:{self.http_port}", *self.extra_args]

    def start(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        info(f"[broker   ] starting: {' '.join(self.cmdline)}")
        info(f"[broker   ] log: {self.log_path}")
        self.proc = subprocess.Popen(self.cmdline, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        deadline = time.monotonic() + timeout
        last_err = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("startup", f"broker exited with code {self.proc.returncode} "
                                            f"before {url} answered 200")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as r:
                    if r.status == 200:
                        info(f"[broker   ] healthy (pid {self.proc.pid}) after "
                             f"{timeout - (deadline - time.monotonic()):.2f}s; "
                             f"kafka {self.bootstrap}, http 127.0.0.1:{self.http_port}")
                        return
                    last_err = f"HTTP {r.status}"
            except urllib.error.HTTPError as e:
                last_err = f"HTTP {e.code}"
            except (urllib.error.URLError, ConnectionError, OSError) as e:
                last_err = str(e)
            time.sleep(0.05)
        raise BenchError("startup", f"{url} did not answer 200 within {timeout:.0f}s "
                                    f"(last: {last_err})")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self, phase: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(phase, f"broker exited unexpectedly with code {self.proc.returncode}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stop_note = f"did not exit within {timeout:.0f}s of SIGTERM; sent SIGKILL"
                self.proc.kill()
                self.proc.wait()
        else:
            self.stop_note = "was already dead before SIGTERM"
        self.exit_code = self.proc.returncode
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# ----------------------------------------------------------------------------
# Phase 1: disk
# ----------------------------------------------------------------------------

def filesystem_of(path: Path) -> dict:
    out = subprocess.run(["df", "-PT", str(path)], capture_output=True, text=True, check=True).stdout
    parts = out.strip().splitlines()[-1].split()
    return {"device": parts[0], "fstype": parts[1], "mount": parts[-1],
            "avail_gib": int(parts[4]) * 1024 / GiB}


def disk_phase(dirpath: Path, seq_mib: int, chunk_kib: int, fsync_iters: int,
               append_kib: int, runs: int = 1) -> dict:
    dirpath.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(chunk_kib * 1024)
    nchunks = seq_mib * 1024 // chunk_kib
    # (a) sequential write into a new file, fsync after each chunk; `runs`
    # passes, the median is the figure (virtual disks vary a lot pass to pass).
    rates: list[float] = []
    for run in range(runs):
        path = dirpath / f"seq-{run}.bin"
        label = "disk-seq" if runs == 1 else f"disk-seq{run + 1}"
        prog = Progress(label, seq_mib, "MiB written+fsynced")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            t0 = time.perf_counter()
            for i in range(nchunks):
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
                if i % 8 == 0:
                    prog.update((i + 1) * chunk_kib // 1024)
            elapsed = time.perf_counter() - t0
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)
        rates.append(nchunks * chunk_kib / 1024 / elapsed)
        prog.done(seq_mib, f"-> {rates[-1]:.1f} MiB/s")
    seq_mib_s = statistics.median(rates)

    # (b) fsync latency of small appends.
    path = dirpath / "append.bin"
    small = os.urandom(append_kib * 1024)
    lat: list[float] = []
    prog = Progress("disk-sync", fsync_iters, f"{append_kib} KiB appends+fsync")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        for i in range(fsync_iters):
            t0 = time.perf_counter()
            os.write(fd, small)
            os.fsync(fd)
            lat.append((time.perf_counter() - t0) * 1000.0)
            if i % 50 == 0:
                prog.update(i + 1)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    lat.sort()
    res = {
        "seq_write_mib": seq_mib,
        "seq_chunk_kib": chunk_kib,
        "seq_write_mib_s": seq_mib_s,
        "seq_write_runs_mib_s": rates,
        "fsync_iterations": fsync_iters,
        "fsync_append_kib": append_kib,
        "fsync_p50_ms": percentile(lat, 50),
        "fsync_p99_ms": percentile(lat, 99),
        "fsync_max_ms": lat[-1],
        "fsync_mean_ms": statistics.fmean(lat),
    }
    prog.done(fsync_iters, f"-> p50 {res['fsync_p50_ms']:.3f} ms, p99 {res['fsync_p99_ms']:.3f} ms")
    return res


# ----------------------------------------------------------------------------
# Topics
# ----------------------------------------------------------------------------

def create_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                            replication_factor=1)],
                                  operation_timeout=timeout, request_timeout=timeout)
    try:
        futures[topic].result(timeout=timeout)
    except Exception as e:  # KafkaException or timeout
        raise BenchError("topics", f"CreateTopics({topic}, partitions={partitions}) failed: "
                                   f"{type(e).__name__}: {e}")
    deadline = time.monotonic() + timeout
    last = "no metadata"
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(topic, timeout=5)
            t = md.topics.get(topic)
            if t is not None and t.error is None and len(t.partitions) == partitions and \
                    all(p.leader >= 0 and p.error is None for p in t.partitions.values()):
                return
            last = (f"topic error={t.error if t else 'missing'}, "
                    f"partitions={len(t.partitions) if t else 0}")
        except Exception as e:
            last = str(e)
        time.sleep(0.1)
    raise BenchError("topics", f"topic {topic} not ready in metadata within {timeout:.0f}s ({last})")


# ----------------------------------------------------------------------------
# Phase 2: produce
# ----------------------------------------------------------------------------

PRODUCER_THROUGHPUT_CONF = {
    "acks": "all",
    "linger.ms": 20,
    "queue.buffering.max.messages": 10_000_000,
    "queue.buffering.max.kbytes": 4 * 1024 * 1024,   # 4 GiB: never blocks
    "compression.type": "none",
    "enable.idempotence": False,
}


def produce_python(bootstrap: str, topic: str, partitions: int, messages: int, size: int,
                   broker: Broker, stall_timeout: float) -> dict:
    from confluent_kafka import KafkaException, Producer

    errors: list[str] = []

    def on_error(err):
        errors.append(f"client error: {err}")

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"delivery failed (partition {msg.partition()}): {err}")

    conf = {"bootstrap.servers": bootstrap, **PRODUCER_THROUGHPUT_CONF,
            "delivery.report.only.error": True, "error_cb": on_error,
            "on_delivery": on_delivery}
    p = Producer(conf)
    # Warm up: fetch metadata so connections exist before the clock starts.
    try:
        p.list_topics(topic, timeout=10)
    except KafkaException as e:
        raise BenchError("produce", f"metadata request failed: {e}")
    payload = os.urandom(size)
    per_part = [0] * partitions

    prog = Progress("produce", messages, "msgs acked")
    me = os.getpid()
    threads0 = thread_cpu_seconds(me)
    cpu0 = time.process_time()
    win = CpuWindow(broker.pid)
    t0 = time.perf_counter()
    produce = p.produce
    poll = p.poll
    i = 0
    while i < messages:
        part = i % partitions
        try:
            produce(topic, payload, partition=part)
        except BufferError:
            poll(0.01)
            continue
        per_part[part] += 1
        i += 1
        if (i & 4095) == 0:
            poll(0)
            prog.update(i - len(p), "queued/in flight: %d" % len(p))
            if (i & 65535) == 0:
                broker.check_alive("produce")
    last_outstanding = len(p)
    last_change = time.monotonic()
    while True:
        outstanding = p.flush(0.1)
        if outstanding == 0:
            break
        if outstanding != last_outstanding:
            last_outstanding = outstanding
            last_change = time.monotonic()
        elif time.monotonic() - last_change > stall_timeout:
            raise BenchError("produce", f"no delivery progress for {stall_timeout:.0f}s; "
                                        f"{outstanding} of {messages} messages unacknowledged; "
                                        f"client errors: {errors[:5]}")
        broker.check_alive("produce")
        prog.update(messages - outstanding, f"in flight: {outstanding}")
    elapsed = time.perf_counter() - t0
    cpu = win.finish()
    gen_cpu = time.process_time() - cpu0
    threads1 = thread_cpu_seconds(me)
    busiest = max((v - threads0.get(tid, 0.0) for tid, v in threads1.items()), default=0.0)
    del p
    delivery_errors = [e for e in errors if e.startswith("delivery")]
    if delivery_errors:
        raise BenchError("produce", f"{len(delivery_errors)} delivery failures, first: "
                                    f"{delivery_errors[0]}")
    prog.done(messages, f"-> {messages * size / MiB / elapsed:.1f} MiB/s")
    return {
        "generator": "python confluent-kafka Producer (in-process)",
        "elapsed_s": elapsed,
        "per_partition": per_part,
        "client_errors": errors[:20],
        "gen_cpu_s": gen_cpu,
        "gen_busiest_thread_s": busiest,
        **cpu,
    }


def _kcat_conf_args(conf: dict) -> list[str]:
    args = []
    for k, v in conf.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        args += ["-X", f"{k}={v}"]
    return args


def produce_kcat(bootstrap: str, topic: str, partitions: int, messages: int, size: int,
                 broker: Broker, stall_timeout: float, scratch: Path) -> dict:
    kcat = shutil.which("kcat")
    if not kcat:
        raise BenchError("produce", "kcat not found (apt-get install -y kcat)")
    # Newline-delimited input file; printable payloads (no newline bytes).
    shm = Path("/dev/shm")
    use_shm = shm.is_dir() and filesystem_of(shm)["fstype"] == "tmpfs"
    input_dir = shm if use_shm else scratch
    fd, input_path = tempfile.mkstemp(prefix="sluice-bench-", suffix=".txt", dir=input_dir)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    try:
        with os.fdopen(fd, "wb") as f:
            block = bytearray()
            for _ in range(min(messages, 1024)):
                block += bytes(alphabet[b & 63] for b in os.urandom(size)) + b"\n"
            full, rest = divmod(messages, 1024)
            for _ in range(full):
                f.write(block)
            f.write(block[: rest * (size + 1)])
            f.flush()
            if not use_shm:
                os.fsync(f.fileno())
        cmd = [kcat, "-P", "-b", bootstrap, "-t", topic, "-q",
               *_kcat_conf_args(PRODUCER_THROUGHPUT_CONF)]
        # Warm the page cache for the input file.
        with open(input_path, "rb") as f:
            while f.read(8 * MiB):
                pass
        prog = Progress("produce", messages, "msgs read by kcat")
        win = CpuWindow(broker.pid)
        t0 = time.perf_counter()
        with open(input_path, "rb") as stdin:
            proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        sampler = ChildCpuSampler(proc.pid)
        stderr_chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()),
                                  daemon=True)
        reader.start()
        last_pos, last_change = -1, time.monotonic()
        rusage = None
        while True:
            wpid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if wpid == proc.pid:
                rusage = ru
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            pos = 0
            try:
                with open(f"/proc/{proc.pid}/fdinfo/0") as f:
                    pos = int(f.readline().split()[1])
            except (FileNotFoundError, ValueError, IndexError):
                pass
            if pos != last_pos:
                last_pos, last_change = pos, time.monotonic()
            elif time.monotonic() - last_change > stall_timeout + 60:
                proc.kill()
                raise BenchError("produce", f"kcat made no progress for {stall_timeout + 60:.0f}s")
            broker.check_alive("produce")
            prog.update(pos // (size + 1), "(acks counted at kcat exit)")
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        cpu = win.finish()
        sampler.stop()
        reader.join(5)
        stderr = b"".join(stderr_chunks).decode("utf-8", "replace")
        if proc.returncode != 0 or "fail" in stderr.lower() or "error" in stderr.lower():
            raise BenchError("produce", f"kcat -P exited {proc.returncode}; stderr: "
                                        f"{stderr.strip()[-2000:]}")
        prog.done(messages, f"-> {messages * size / MiB / elapsed:.1f} MiB/s")
        return {
            "generator": "kcat -P (stdin from file)",
            "elapsed_s": elapsed,
            "per_partition": None,   # kcat uses the random partitioner
            "client_errors": [],
            "gen_cpu_s": rusage.ru_utime + rusage.ru_stime,
            "gen_busiest_thread_s": sampler.busiest_thread_s(),
            "kcat_input": "tmpfs" if use_shm else str(scratch),
            **cpu,
        }
    finally:
        os.unlink(input_path)


# ----------------------------------------------------------------------------
# Phase 3: consume
# ----------------------------------------------------------------------------

CONSUMER_CONF = {
    "fetch.message.max.bytes": 8 * MiB,     # a.k.a. max.partition.fetch.bytes
    "fetch.max.bytes": 64 * MiB,
    "queued.max.messages.kbytes": 256 * 1024,
    "fetch.wait.max.ms": 100,
}


def consume_python(bootstrap: str, topic: str, partitions: int, expected: int, size: int,
                   broker: Broker, stall_timeout: float) -> dict:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    errors: list[str] = []
    conf = {"bootstrap.servers": bootstrap,
            # Required by the Python client even with assign(); never used to
            # commit (no consumer-group support needed).
            "group.id": f"sluice-bench-{os.getpid()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "error_cb": lambda err: errors.append(str(err)),
            **CONSUMER_CONF}
    c = Consumer(conf)
    # Warm up: without metadata for the topic, librdkafka defers the offset
    # lookup of assigned partitions by its retry interval (~0.5 s).
    try:
        c.list_topics(topic, timeout=10)
    except Exception as e:
        raise BenchError("consume", f"metadata request failed: {type(e).__name__}: {e}")
    count = 0
    nbytes = 0
    per_part = [0] * partitions
    eof: set[int] = set()
    bad_sizes = 0
    early_eof: list[int] = []
    PARTITION_EOF = KafkaError._PARTITION_EOF

    prog = Progress("consume", expected, "msgs consumed")
    me = os.getpid()
    threads0 = thread_cpu_seconds(me)
    cpu0 = time.process_time()
    win = CpuWindow(broker.pid)
    t0 = time.perf_counter()
    t_last = t0
    t_first = None
    cpu_last = cpu0
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    last_progress = time.monotonic()
    consume = c.consume
    while len(eof) < partitions:
        # consume() returns when it has num_messages or after timeout, so a
        # short timeout keeps t_last within ~10 ms of the last arrival.
        batch = consume(num_messages=10_000, timeout=0.01)
        if batch:
            got = 0
            for m in batch:
                e = m.error()
                if e is None:
                    n = len(m)
                    nbytes += n
                    if n != size:
                        bad_sizes += 1
                    per_part[m.partition()] += 1
                    got += 1
                elif e.code() == PARTITION_EOF:
                    eof.add(m.partition())
                else:
                    raise BenchError("consume", f"fetch error on partition {m.partition()}: {e}")
            if got:
                count += got
                t_last = time.perf_counter()
                cpu_last = time.process_time()
                if t_first is None:
                    t_first = t_last
                last_progress = time.monotonic()
            if len(eof) == partitions and count < expected:
                # Every partition reported end-of-log short of what was acked:
                # keep polling (the high watermark may lag) until stall-timeout.
                early_eof.append(count)
                eof.clear()
        if time.monotonic() - last_progress > stall_timeout:
            raise BenchError("consume", f"no messages for {stall_timeout:.0f}s after {count} of "
                                        f"{expected}; all partitions reported end-of-log at "
                                        f"counts {early_eof[:5]}; partitions at EOF now: "
                                        f"{sorted(eof)}; per partition: {per_part}; "
                                        f"client errors: {errors[:5]}")
        if count > expected:
            break
        prog.update(count)
        broker.check_alive("consume")
    elapsed = t_last - t0
    cpu = win.finish()
    cpu["wall_s"] = elapsed  # the consumer's rate counts until the last message
    gen_cpu = cpu_last - cpu0
    threads1 = thread_cpu_seconds(me)
    busiest = max((v - threads0.get(tid, 0.0) for tid, v in threads1.items()), default=0.0)
    c.close()
    prog.done(count, f"-> {count * size / MiB / elapsed:.1f} MiB/s" if elapsed > 0 else "")
    return {
        "consumer": "python confluent-kafka Consumer with assign()",
        "elapsed_s": elapsed,
        "first_message_s": (t_first - t0) if t_first is not None else None,
        "messages": count,
        "bytes": nbytes,
        "bad_sizes": bad_sizes,
        "per_partition": per_part,
        "client_errors": errors[:20],
        "consumer_cpu_s": gen_cpu,
        "consumer_busiest_thread_s": busiest,
        **cpu,
    }


def consume_kcat(bootstrap: str, topic: str, partitions: int, expected: int, size: int,
                 broker: Broker, stall_timeout: float) -> dict:
    kcat = shutil.which("kcat")
    if not kcat:
        raise BenchError("consume", "kcat not found (apt-get install -y kcat)")
    # -c N: exit as soon as the N-th message arrives (else -e: at end of log);
    # buffered output (-u, a write per message, halves kcat's rate). Messages
    # beyond N would go unseen here; main() checks the watermarks for that.
    cmd = [kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
           "-c", str(expected), "-f", r"%p %S\n", *_kcat_conf_args(CONSUMER_CONF)]
    prog = Progress("consume", expected, "msgs consumed")
    win = CpuWindow(broker.pid)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = ChildCpuSampler(proc.pid)
    stderr_chunks: list[bytes] = []
    err_reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()),
                                  daemon=True)
    err_reader.start()
    count = 0
    nbytes = 0
    bad_sizes = 0
    per_part = [0] * partitions
    state = {"last": time.monotonic()}

    def watchdog():
        while proc.poll() is None:
            if time.monotonic() - state["last"] > stall_timeout:
                proc.kill()
                return
            time.sleep(0.2)

    threading.Thread(target=watchdog, daemon=True).start()
    for line in proc.stdout:
        state["last"] = time.monotonic()
        part_s, _, size_s = line.partition(b" ")
        part = int(part_s)
        n = int(size_s)
        if 0 <= part < partitions:
            per_part[part] += 1
        count += 1
        nbytes += n
        if n != size:
            bad_sizes += 1
        if (count & 1023) == 0:
            prog.update(count)
    _, status, rusage = os.wait4(proc.pid, 0)
    # From spawn to exit, which -c makes follow the last message at once; this
    # includes kcat's start and metadata round trip (a few ms).
    t_end = time.perf_counter()
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = t_end - t0
    cpu = win.finish()
    cpu["wall_s"] = elapsed
    sampler.stop()
    err_reader.join(5)
    stderr = b"".join(stderr_chunks).decode("utf-8", "replace")
    if proc.returncode != 0:
        raise BenchError("consume", f"kcat -C exited {proc.returncode} after {count} of "
                                    f"{expected} messages (killed if stalled "
                                    f"{stall_timeout:.0f}s); stderr: {stderr.strip()[-2000:]}")
    prog.done(count, f"-> {count * size / MiB / elapsed:.1f} MiB/s")
    return {
        "consumer": "kcat -C -e -o beginning -c N (all partitions)",
        "elapsed_s": elapsed,
        "messages": count,
        "bytes": nbytes,
        "bad_sizes": bad_sizes,
        "per_partition": per_part,
        "client_errors": [stderr.strip()[-2000:]] if stderr.strip() else [],
        "consumer_cpu_s": rusage.ru_utime + rusage.ru_stime,
        "consumer_busiest_thread_s": sampler.busiest_thread_s(),
        **cpu,
    }


def watermarks(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int]]:
    """(low, high) watermark of every partition, asked of the broker (ListOffsets)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sluice-bench-wm-{os.getpid()}",
                  "enable.auto.commit": False})
    try:
        return [tuple(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                              cached=False)) for p in range(partitions)]
    except Exception as e:
        raise BenchError("consume", f"watermark query (ListOffsets) failed: "
                                    f"{type(e).__name__}: {e}")
    finally:
        c.close()


# ----------------------------------------------------------------------------
# Phase 4: single-message latency
# ----------------------------------------------------------------------------

def latency_phase(bootstrap: str, topic: str, iters: int, warmup: int, size: int,
                  broker: Broker, timeout: float) -> dict:
    from confluent_kafka import Producer

    errors: list[str] = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                  "socket.nagle.disable": True, "enable.idempotence": False,
                  "error_cb": lambda err: errors.append(str(err))})
    p.list_topics(topic, timeout=10)
    payload = os.urandom(size)
    state = {"done": False, "err": None}

    def on_delivery(err, msg):
        state["done"] = True
        state["err"] = err

    lat: list[float] = []
    prog = Progress("latency", iters, "msgs (1 in flight)")
    for i in range(warmup + iters):
        state["done"] = False
        t0 = time.perf_counter()
        p.produce(topic, payload, partition=0, on_delivery=on_delivery)
        deadline = t0 + timeout
        while not state["done"]:
            p.poll(0.5)
            if not state["done"] and time.perf_counter() > deadline:
                broker.check_alive("latency")
                raise BenchError("latency", f"message {i} not acknowledged within {timeout:.0f}s; "
                                            f"client errors: {errors[:5]}")
        dt = (time.perf_counter() - t0) * 1000.0
        if state["err"] is not None:
            raise BenchError("latency", f"delivery of message {i} failed: {state['err']}")
        if i >= warmup:
            lat.append(dt)
            prog.update(i - warmup + 1, f"last {dt:.3f} ms")
    p.flush(10)
    lat.sort()
    res = {
        "iterations": iters,
        "warmup": warmup,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "p999_ms": percentile(lat, 99.9),
        "max_ms": lat[-1],
        "mean_ms": statistics.fmean(lat),
    }
    prog.done(iters, f"-> p50 {res['p50_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms")
    return res


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------

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
        if comm in ("rustc", "cargo", "cc1", "cc1plus", "ld", "lld", "mold", "clippy-driver"):
            found.append(f"{comm}({pid})")
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--bin", type=Path, default=REPO / "target" / "fast" / "sluice",
                    help="sluice broker binary")
    ap.add_argument("--data-dir-parent", type=Path, default=REPO / "target",
                    help="a scratch dir is created here for the disk test and the broker's "
                         "data; must be on the real disk (not tmpfs)")
    ap.add_argument("--messages", type=int, default=200_000, help="messages to produce")
    ap.add_argument("--size", type=int, default=1024, help="message value size, bytes")
    ap.add_argument("--partitions", type=int, default=3, help="partitions of the topic")
    ap.add_argument("--generator", choices=["python", "kcat"], default="python",
                    help="produce load generator (both librdkafka)")
    ap.add_argument("--consumer", choices=["python", "kcat"], default="kcat",
                    help="consumer used for the consume phase (both librdkafka)")
    ap.add_argument("--disk-mib", type=int, default=256, help="disk seq write size, MiB")
    ap.add_argument("--disk-runs", type=int, default=3,
                    help="sequential-write passes; the median is the reference")
    ap.add_argument("--fsync-iters", type=int, default=2000, help="small fsync'd appends")
    ap.add_argument("--latency-iters", type=int, default=2000, help="single-message produces")
    ap.add_argument("--latency-warmup", type=int, default=100,
                    help="single-message produces before measuring")
    ap.add_argument("--stall-timeout", type=float, default=60.0,
                    help="fail a phase after this many seconds without progress")
    ap.add_argument("--start-timeout", type=float, default=30.0,
                    help="seconds to wait for /healthz")
    ap.add_argument("--broker-arg", action="append", default=[],
                    help="extra argument appended to 'sluice serve' (repeatable)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dir (data + log)")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 if any target is missed (default: only failures exit non-zero)")
    ap.add_argument("--skip-disk", action="store_true",
                    help="skip the disk test (targets depending on it show n/a)")
    args = ap.parse_args(argv)
    if min(args.messages, args.size, args.partitions, args.disk_runs, args.disk_mib,
           args.fsync_iters, args.latency_iters) <= 0:
        ap.error("counts and sizes must be positive")
    return args


def evaluate(r: dict) -> list[dict]:
    """Build the result table rows: figure, value, target, status."""
    rows: list[dict] = []

    def row(name, value, target="", status="", key=None):
        rows.append({"figure": name, "value": value, "target": target, "status": status,
                     "key": key})

    disk = r.get("disk")
    prod = r.get("produce")
    cons = r.get("consume")
    lat = r.get("latency")

    if disk:
        runs = disk.get("seq_write_runs_mib_s", [])
        row("disk seq write, fsync per %d KiB" % disk["seq_chunk_kib"],
            f"{disk['seq_write_mib_s']:.1f} MiB/s" +
            (f" (median of {', '.join('%.0f' % x for x in runs)})" if len(runs) > 1 else ""),
            "(reference)")
        row("disk fsync p50 / p99 (%d KiB append)" % disk["fsync_append_kib"],
            f"{fmt_ms(disk['fsync_p50_ms'])} / {fmt_ms(disk['fsync_p99_ms'])}", "(reference)")

    if prod:
        mib_s = prod["mib_s"]
        value = f"{mib_s:.1f} MiB/s, {prod['msgs_s']:,.0f} msg/s"
        if disk:
            ratio = mib_s / disk["seq_write_mib_s"]
            prod["disk_ratio"] = ratio
            value += f" ({ratio:.0%} of disk)"
            target = (f">= {PRODUCE_DISK_RATIO_TARGET:.0%} of disk "
                      f"({PRODUCE_DISK_RATIO_TARGET * disk['seq_write_mib_s']:.1f} MiB/s)")
            if ratio >= PRODUCE_DISK_RATIO_TARGET:
                status = "PASS"
            elif prod["gen_saturated"]:
                status = "GEN-BOUND"
            else:
                status = "MISS"
        else:
            target, status = "(no disk figure)", "n/a"
        row("produce throughput", value, target, status, key="produce_vs_disk")
        row("  load generator CPU (%s)" % prod["generator_short"],
            f"{prod['gen_cores']:.2f} cores total, busiest thread "
            f"{prod['gen_busiest_thread_cores']:.0%} of a core",
            "saturated if >= %.1f cores" % SATURATED_CORE_FRACTION,
            "SATURATED" if prod["gen_saturated"] else "ok")
        row("  broker CPU / machine idle while producing",
            f"{prod['broker_cores']:.2f} cores / {prod['machine_idle_cores']:.2f} of {NCPU} idle",
            "", "")

    if cons:
        value = f"{cons['mib_s']:.1f} MiB/s, {cons['msgs_s']:,.0f} msg/s"
        if prod:
            ratio = cons["mib_s"] / prod["mib_s"]
            cons["produce_ratio"] = ratio
            value += f" ({ratio:.2f}x produce)"
            status = "PASS" if ratio >= CONSUME_PRODUCE_RATIO_TARGET else "MISS"
            if status == "MISS" and cons["consumer_saturated"]:
                status = "CONS-BOUND"
            row("consume throughput", value, f">= {CONSUME_PRODUCE_RATIO_TARGET:.0f}x produce",
                status, key="consume_vs_produce")
        row("  consumer CPU (%s)" % cons["consumer_short"],
            f"{cons['consumer_cores']:.2f} cores total, busiest thread "
            f"{cons['consumer_busiest_thread_cores']:.0%} of a core",
            "saturated if >= %.1f cores" % SATURATED_CORE_FRACTION,
            "SATURATED" if cons["consumer_saturated"] else "ok")
        if cons.get("first_message_s") is not None:
            row("  consume: first message after", f"{cons['first_message_s'] * 1000:.0f} ms",
                "", "")
        row("  messages consumed / produced", f"{cons['messages']:,} / {prod['messages']:,}",
            "equal", "PASS" if cons["messages"] == prod["messages"] else "FAIL")

    if lat:
        value = f"{fmt_ms(lat['p50_ms'])} / {fmt_ms(lat['p99_ms'])}"
        if disk:
            bound = LATENCY_FSYNC_FACTOR * disk["fsync_p99_ms"] + LATENCY_SLACK_MS
            lat["p99_bound_ms"] = bound
            row("produce latency p50 / p99 (1 msg)", value,
                f"p99 <= 1.5 x fsync p99 + 0.5 ms ({fmt_ms(bound)})",
                "PASS" if lat["p99_ms"] <= bound else "MISS", key="latency_p99")
        else:
            row("produce latency p50 / p99 (1 msg)", value, "(no disk figure)", "n/a")

    if prod:
        v = prod["broker_cpu_s_per_gib"]
        row("broker CPU per GiB produced", f"{v:.3f} s/GiB ({prod['broker_cpu_s']:.2f} s)",
            f"<= {CPU_PER_GIB_PRODUCE_TARGET} s/GiB",
            "PASS" if v <= CPU_PER_GIB_PRODUCE_TARGET else "MISS", key="cpu_produce")
    if cons:
        v = cons["broker_cpu_s_per_gib"]
        row("broker CPU per GiB consumed", f"{v:.3f} s/GiB ({cons['broker_cpu_s']:.2f} s)",
            f"<= {CPU_PER_GIB_CONSUME_TARGET} s/GiB",
            "PASS" if v <= CPU_PER_GIB_CONSUME_TARGET else "MISS", key="cpu_consume")
    return rows


def print_table(rows: list[dict]) -> None:
    headers = ("figure", "value", "target", "status")
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in headers]
    line = "  ".join("-" * w for w in widths)
    print()
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    print(line)
    for r in rows:
        print("  ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths)).rstrip())
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ok": False}
    binary = args.bin.resolve()
    results["config"] = {
        "bin": str(binary), "messages": args.messages, "size": args.size,
        "partitions": args.partitions, "generator": args.generator, "consumer": args.consumer,
        "producer_conf": PRODUCER_THROUGHPUT_CONF, "consumer_conf": CONSUMER_CONF,
        "disk_mib": args.disk_mib, "disk_runs": args.disk_runs,
        "fsync_iters": args.fsync_iters,
        "latency_iters": args.latency_iters,
    }
    try:
        import confluent_kafka
        ck_version = f"confluent-kafka {confluent_kafka.version()[0]}, " \
                     f"librdkafka {confluent_kafka.libversion()[0]}"
    except ImportError:
        print("error: confluent-kafka is not installed (pip install confluent-kafka)",
              file=sys.stderr)
        return 2
    kcat_path = shutil.which("kcat")
    results["env"] = {
        "host": platform.node(), "kernel": platform.release(), "cpus": NCPU,
        "python": platform.python_version(), "client": ck_version,
        "kcat": kcat_path, "loadavg": os.getloadavg(),
    }
    if not binary.is_file():
        print(f"error: broker binary {binary} does not exist (build it, or pass --bin)",
              file=sys.stderr)
        return 2
    if (args.generator == "kcat" or args.consumer == "kcat") and not kcat_path:
        print("error: kcat is not installed (apt-get install -y kcat)", file=sys.stderr)
        return 2

    info(f"sluice benchmark: {args.messages:,} x {args.size} B to {args.partitions} partitions; "
         f"{ck_version}; {NCPU} CPUs; loadavg {os.getloadavg()[0]:.2f}")
    busy = busy_compilers()
    if busy:
        info(f"WARNING: compiler/build processes are running ({', '.join(busy[:6])}); "
             f"CPU and throughput figures will be skewed")
        results["env"]["busy_processes"] = busy

    args.data_dir_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="sluice-bench-", dir=args.data_dir_parent))
    fs = filesystem_of(scratch)
    results["env"]["filesystem"] = fs
    info(f"[setup    ] scratch dir {scratch} on {fs['device']} ({fs['fstype']}, mounted at "
         f"{fs['mount']}, {fs['avail_gib']:.1f} GiB free)")
    if fs["fstype"] in ("tmpfs", "ramfs", "devtmpfs"):
        info(f"WARNING: {scratch} is on {fs['fstype']}, not a real disk: the disk and "
             f"fsync figures are meaningless. Use --data-dir-parent on a disk.")
        results["env"]["not_a_disk"] = True
    need_gib = (args.disk_mib * MiB + 2 * args.messages * (args.size + 100)) / GiB
    if fs["avail_gib"] < need_gib + 0.5:
        info(f"WARNING: only {fs['avail_gib']:.1f} GiB free; about {need_gib:.1f} GiB needed")

    broker = Broker(binary, scratch / "data", scratch / "broker.log", args.broker_arg)
    results["broker"] = {"cmd": broker.cmdline, "log": str(broker.log_path)}
    failure: BenchError | None = None
    phase = "disk"
    try:
        # 1. disk (before the broker starts, so nothing else touches the disk)
        if not args.skip_disk:
            results["disk"] = disk_phase(scratch / "disk-test", args.disk_mib, 1024,
                                         args.fsync_iters, 4, args.disk_runs)
            shutil.rmtree(scratch / "disk-test", ignore_errors=True)

        phase = "startup"
        broker.start(args.start_timeout)
        results["broker"]["pid"] = broker.pid

        phase = "topics"
        topic = "bench-throughput"
        lat_topic = "bench-latency"
        create_topic(broker.bootstrap, topic, args.partitions)
        create_topic(broker.bootstrap, lat_topic, 1)
        info(f"[topics   ] created {topic} ({args.partitions} partitions) and {lat_topic} (1)")

        # 2. produce
        phase = "produce"
        total_bytes = args.messages * args.size
        if args.generator == "python":
            prod = produce_python(broker.bootstrap, topic, args.partitions, args.messages,
                                  args.size, broker, args.stall_timeout)
            prod["generator_short"] = "python"
        else:
            prod = produce_kcat(broker.bootstrap, topic, args.partitions, args.messages,
                                args.size, broker, args.stall_timeout, scratch)
            prod["generator_short"] = "kcat"
        prod["messages"] = args.messages
        prod["bytes"] = total_bytes
        prod["mib_s"] = total_bytes / MiB / prod["elapsed_s"]
        prod["msgs_s"] = args.messages / prod["elapsed_s"]
        prod["gen_cores"] = prod["gen_cpu_s"] / prod["elapsed_s"]
        prod["gen_busiest_thread_cores"] = prod["gen_busiest_thread_s"] / prod["elapsed_s"]
        prod["gen_saturated"] = prod["gen_cores"] >= SATURATED_CORE_FRACTION
        prod["broker_cpu_s_per_gib"] = prod["broker_cpu_s"] / (total_bytes / GiB)
        prod["broker_rss_mib_after"] = proc_rss_mib(broker.pid)
        results["produce"] = prod
        broker.check_alive("produce")

        # Uploads and compaction of what was just produced run in the
        # background; wait for them, so the consume figures are the fetch
        # path's own cost.
        phase = "settle"
        settle_s = wait_broker_idle(broker.pid, timeout=120.0)
        results["settle_s"] = settle_s
        info(f"[settle   ] broker idle {settle_s:.1f}s after the produce (uploads, compaction)")

        # 3. consume
        phase = "consume"
        if args.consumer == "python":
            cons = consume_python(broker.bootstrap, topic, args.partitions, args.messages,
                                  args.size, broker, args.stall_timeout)
            cons["consumer_short"] = "python"
        else:
            cons = consume_kcat(broker.bootstrap, topic, args.partitions, args.messages,
                                args.size, broker, args.stall_timeout)
            cons["consumer_short"] = "kcat"
        el = cons["elapsed_s"]
        cons["mib_s"] = cons["bytes"] / MiB / el if el > 0 else 0.0
        cons["msgs_s"] = cons["messages"] / el if el > 0 else 0.0
        cons["consumer_cores"] = cons["consumer_cpu_s"] / el if el > 0 else 0.0
        cons["consumer_busiest_thread_cores"] = \
            cons["consumer_busiest_thread_s"] / el if el > 0 else 0.0
        cons["consumer_saturated"] = cons["consumer_cores"] >= SATURATED_CORE_FRACTION
        cons["broker_cpu_s_per_gib"] = \
            cons["broker_cpu_s"] / (cons["bytes"] / GiB) if cons["bytes"] else float("inf")
        results["consume"] = cons
        if cons["messages"] != args.messages:
            raise BenchError("consume", f"consumed {cons['messages']} messages but produced "
                                        f"{args.messages}; per partition consumed: "
                                        f"{cons['per_partition']}, produced: "
                                        f"{prod.get('per_partition')}")
        if prod.get("per_partition") and cons["per_partition"] != prod["per_partition"]:
            raise BenchError("consume", f"per-partition counts differ: consumed "
                                        f"{cons['per_partition']}, produced "
                                        f"{prod['per_partition']}")
        wm = watermarks(broker.bootstrap, topic, args.partitions)
        cons["watermarks"] = wm
        in_log = [hi - lo for lo, hi in wm]
        if sum(in_log) != args.messages:
            raise BenchError("consume", f"the log holds {sum(in_log)} messages by its "
                                        f"watermarks {wm}, but {args.messages} were produced")
        if in_log != cons["per_partition"]:
            raise BenchError("consume", f"per-partition counts consumed {cons['per_partition']} "
                                        f"differ from the watermarks {wm}")
        if cons["bad_sizes"]:
            raise BenchError("consume", f"{cons['bad_sizes']} messages had a value size other "
                                        f"than {args.size}")
        broker.check_alive("consume")

        # 4. latency
        phase = "latency"
        results["latency"] = latency_phase(broker.bootstrap, lat_topic, args.latency_iters,
                                           args.latency_warmup, args.size, broker,
                                           args.stall_timeout)
        broker.check_alive("latency")
        results["broker"]["rss_mib_end"] = proc_rss_mib(broker.pid)
    except BenchError as e:
        failure = e
    except KeyboardInterrupt:
        failure = BenchError(phase, "interrupted")
    except Exception as e:  # unexpected client-side exception: report with phase
        import traceback
        traceback.print_exc()
        failure = BenchError(phase, f"{type(e).__name__}: {e}")
    finally:
        phase_at_stop = "shutdown"
        broker.stop()
        results["broker"]["exit_code"] = broker.exit_code
        results["broker"]["stop_note"] = broker.stop_note

    if broker.exit_code is not None:
        note = f" ({broker.stop_note})" if broker.stop_note else ""
        info(f"[broker   ] stopped with SIGTERM, exit code {broker.exit_code}{note}")
    if failure is None and broker.stop_note:
        failure = BenchError(phase_at_stop, f"broker {broker.stop_note}")

    busy_end = busy_compilers()
    if busy_end:
        info(f"WARNING: compiler/build processes were running at the end of the run "
             f"({', '.join(busy_end[:6])}); CPU and throughput figures may be skewed")
        results["env"]["busy_processes_end"] = busy_end

    rows = evaluate(results)
    results["table"] = rows
    if rows:
        print_table(rows)

    if failure is not None:
        results["failure"] = {"phase": failure.phase, "error": failure.message,
                              "broker_log_tail": broker.log_tail(60)}
        print(f"\nFAILED in phase '{failure.phase}': {failure.message}", file=sys.stderr)
        print(f"--- broker log tail ({broker.log_path}) ---", file=sys.stderr)
        print(broker.log_tail(40), file=sys.stderr)
        print("--- end of broker log ---", file=sys.stderr)
    else:
        results["ok"] = True
        missed = [r["figure"] for r in rows if r["status"] in ("MISS", "GEN-BOUND", "CONS-BOUND",
                                                                 "FAIL")]
        results["missed"] = missed
        info("\nresult: all phases completed; " +
             (f"targets missed: {', '.join(m.strip() for m in missed)}" if missed
              else "all targets met"))
        p = results.get("produce")
        if p and p["machine_idle_cores"] < 0.25:
            info(f"note: the machine's CPUs were busy while producing (only "
                 f"{p['machine_idle_cores']:.2f} of {NCPU} cores idle; broker "
                 f"{p['broker_cores']:.2f}, load generator {p['gen_cores']:.2f} cores): the "
                 f"produce figure is CPU-bound on this machine")
        if results.get("produce", {}).get("gen_saturated"):
            p = results["produce"]
            info(f"note: the load generator saturated a core ({p['gen_cores']:.2f} cores of "
                 f"CPU per second of wall time); broker used {p['broker_cores']:.2f} "
                 f"cores, {p['machine_idle_cores']:.2f} of {NCPU} cores were idle")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
        info(f"results written to {args.json}")

    if args.keep or failure is not None:
        # keep the log (and data, for debugging) on failure
        info(f"scratch dir kept: {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)

    if failure is not None:
        return 1
    if args.strict and results.get("missed"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
