"""Object store outages (local file:// store behind the broker's fault
injection wrapper, `SLUICE_FAULT_INJECTION=1`, `POST /v1/debug/faults`).

While a producer streams 1 KiB messages (acks=all):

* (a) every object store request fails for 30 s: once
  --max-unuploaded-bytes of data waits for upload, produce requests wait
  (the producer's ack rate collapses, or it sees retriable errors); no more
  than that budget is acknowledged during the outage; the broker's RSS stays
  bounded; after recovery every acknowledged message is readable at its
  acknowledged offset;
* (b) requests hang ("drop") for ~12 s, then recover: the same guarantees;
  and again for 38 s, past the broker's 30 s request timeout (timed-out
  uploads are retried);
* (c) the broker is killed with SIGKILL during an outage and restarted
  without faults: the backlog (replayed from the WAL) is uploaded, the WAL
  shrinks, and every acknowledged message reads back.

Also: tail consumers keep reading while object reads hang or fail; the
backlog gauge counts a replayed WAL; a smaller --max-unuploaded-bytes after
a restart is enforced; SIGTERM with producers held back exits promptly.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections import defaultdict

import pytest
from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

from helpers import assert_contiguous_offsets, create_topic
import s3_server
from s3_server import (
    client_conf,
    dir_bytes,
    make_consumer,
    make_producer,
    metric,
    metric_samples,
    object_store_broker,
    partition_offsets,
    rss_mib,
    set_fault,
    wait_for,
)

sluice_bin = s3_server.sluice_bin

MiB = 1024 * 1024
MAX_UNUPLOADED = 16 * MiB
RSS_LIMIT_MIB = MAX_UNUPLOADED / MiB + 300
PARTITIONS = 3
MSG_SIZE = 1024
RATE = 6000  # messages/s the producer aims for (about 6 MB/s)

BROKER_ARGS = [
    "--max-unuploaded-bytes", str(MAX_UNUPLOADED),
    "--tail-cache-bytes", str(32 * MiB),
    "--block-cache-bytes", str(32 * MiB),
]

_BLOB = random.Random(7).randbytes(8192)


def value_of(seq: int) -> bytes:
    start = (seq * 7) % 4096
    return seq.to_bytes(8, "big") + _BLOB[start : start + MSG_SIZE - 8]


class StreamingProducer:
    """A confluent-kafka producer in its own thread, producing numbered 1 KiB
    messages at about RATE/s until stopped; every delivery report is kept
    with the time it arrived."""

    def __init__(self, bootstrap: str, topic: str, rate: int = RATE, max_outstanding: int = 20000):
        conf = client_conf(bootstrap)
        conf.update(
            {
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 180000,
                "queue.buffering.max.messages": 200000,
            }
        )
        self.producer = Producer(conf)
        self.topic = topic
        self.rate = rate
        self.max_outstanding = max_outstanding
        self.sent = 0
        self.acked = {}  # seq -> (partition, offset)
        self.ack_times = []  # (monotonic time, seq)
        self.errors = []  # (monotonic time, seq, KafkaError)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streaming-producer", daemon=True)
        self.failure = None

    def _report(self, seq):
        def cb(err, msg):
            now = time.monotonic()
            if err is None:
                self.acked[seq] = (msg.partition(), msg.offset())
                self.ack_times.append((now, seq))
            else:
                self.errors.append((now, seq, err))

        return cb

    def outstanding(self) -> int:
        return self.sent - len(self.acked) - len(self.errors)

    def _run(self):
        try:
            started = time.monotonic()
            while not self._stop.is_set():
                due = int((time.monotonic() - started) * self.rate)
                if self.sent >= due or self.outstanding() >= self.max_outstanding:
                    self.producer.poll(0.005)
                    continue
                seq = self.sent
                try:
                    self.producer.produce(
                        self.topic, key=str(seq).encode(), value=value_of(seq), on_delivery=self._report(seq)
                    )
                except BufferError:
                    self.producer.poll(0.05)
                    continue
                self.sent += 1
                if self.sent % 200 == 0:
                    self.producer.poll(0)
            self.producer.poll(0)
        except Exception as e:  # surfaced by stop()
            self.failure = e

    def start(self) -> "StreamingProducer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "producer thread did not stop"
        if self.failure is not None:
            raise AssertionError(f"producer thread failed: {self.failure!r}")

    def flush(self, timeout: float) -> int:
        return self.producer.flush(timeout)

    def acks_between(self, t0: float, t1: float) -> int:
        return sum(1 for t, _ in list(self.ack_times) if t0 < t <= t1)


class Monitor:
    """Samples the broker's upload backlog, RSS and liveness in a thread."""

    def __init__(self, broker, interval: float = 0.25):
        self.broker = broker
        self.interval = interval
        self.samples = []  # (monotonic, backlog bytes, rss MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.died = False

    def _run(self):
        while not self._stop.is_set():
            if not self.broker.is_alive():
                self.died = True
                return
            try:
                backlog = metric(self.broker, "sluice_upload_backlog_bytes")
                rss = rss_mib(self.broker)
                self.samples.append((time.monotonic(), backlog, rss))
            except Exception:
                pass
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def window(self, t0, t1):
        return [s for s in self.samples if t0 <= s[0] <= t1]

    def max_rss(self):
        return max((s[2] for s in self.samples), default=0.0)


def _fault_broker(broker_factory):
    b = object_store_broker(
        broker_factory, args=BROKER_ARGS, env={"SLUICE_FAULT_INJECTION": "1"}
    )
    create_topic(b.bootstrap, "stream", PARTITIONS)
    return b


def _read_back(b, topic: str, acked: dict, timeout: float = 120.0) -> None:
    """Every acknowledged message is readable at its acknowledged offset
    with its exact value; offsets are contiguous from 0."""
    ends = defaultdict(int)
    for p, o in acked.values():
        ends[p] = max(ends[p], o + 1)
    c = make_consumer(b.bootstrap, **{"enable.partition.eof": False, "fetch.max.bytes": 8 * MiB})
    got = {}
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        pos = defaultdict(int)
        deadline = time.monotonic() + timeout
        while any(pos[p] < e for p, e in ends.items()):
            assert time.monotonic() < deadline, (
                f"reading back timed out at positions {dict(pos)}, acknowledged ends {dict(ends)}"
            )
            for m in c.consume(5000, timeout=0.5):
                if m.error() is not None:
                    raise AssertionError(f"consume error: {m.error()!r}")
                got[(m.partition(), m.offset())] = m.value()
                pos[m.partition()] = max(pos[m.partition()], m.offset() + 1)
    finally:
        c.close()
    assert_contiguous_offsets(got.keys(), "read back after the outage")
    bad = []
    for seq, at in acked.items():
        v = got.get(at)
        if v != value_of(seq):
            bad.append((seq, at, None if v is None else v[:8]))
    assert not bad, (
        f"{len(bad)} of {len(acked)} acknowledged messages not readable at their offsets; "
        f"first (seq, (partition, offset), first 8 bytes found): {bad[:5]}"
    )


def _wait_drained(b, timeout: float = 60.0) -> None:
    wait_for(
        lambda: metric(b, "sluice_upload_backlog_bytes") == 0,
        timeout,
        "the upload backlog to drain",
        interval=0.25,
        describe=lambda: f"metrics {metric_samples(b, 'sluice_upload')}",
    )


def _outage(broker_factory, mode: dict, seconds: float):
    """Stream, inject `mode` for `seconds`, recover, and check everything."""
    b = _fault_broker(broker_factory)
    prod = StreamingProducer(b.bootstrap, "stream").start()
    mon = Monitor(b).start()
    try:
        time.sleep(5)
        b.assert_alive("before the outage")
        base_rate = prod.acks_between(time.monotonic() - 4, time.monotonic()) / 4
        assert base_rate > RATE * 0.5, f"producer reached only {base_rate:.0f} msg/s before the outage"

        assert set_fault(b, **mode)["mode"] == mode["mode"]
        t_fail = time.monotonic()
        time.sleep(seconds)
        b.assert_alive("during the outage")
        t_off = time.monotonic()
        assert set_fault(b, "off")["mode"] == "off"

        outage = mon.window(t_fail, t_off)
        peak_backlog = max((s[1] or 0 for s in outage), default=0)
        acked_in_outage = prod.acks_between(t_fail + 0.5, t_off)
        stalled = prod.acks_between(t_off - seconds / 3, t_off) / (seconds / 3)
        summary = (
            f"baseline {base_rate:.0f} acks/s; during the {seconds:.0f}s outage: {acked_in_outage} acks, "
            f"{stalled:.0f} acks/s over its last third, peak backlog {peak_backlog / MiB:.1f} MiB, "
            f"max RSS {mon.max_rss():.0f} MiB; producer errors so far {len(prod.errors)}"
        )
        print(summary)
        # The budget filled up, and no more than the budget was acknowledged.
        assert peak_backlog >= MAX_UNUPLOADED * 0.75, f"backlog never approached the limit: {summary}"
        assert peak_backlog <= MAX_UNUPLOADED + MiB, f"backlog exceeded --max-unuploaded-bytes: {summary}"
        assert acked_in_outage * MSG_SIZE <= MAX_UNUPLOADED + MiB, (
            f"more acknowledged during the outage than --max-unuploaded-bytes allows: {summary}"
        )
        assert stalled < base_rate * 0.1, f"producers were not slowed down: {summary}"
        if mode["mode"] == "fail" or seconds > 30:
            # Failed PUTs, or PUTs that hung past the broker's 30 s request timeout.
            put_errors = metric(b, "sluice_object_store_requests_total", op="put", outcome="error") or 0
            assert put_errors > 0, f"no failed PUTs counted: {metric_samples(b, 'sluice_object_store_requests')}"

        # Recovery: acks flow again, the backlog drains.
        wait_for(
            lambda: prod.acks_between(t_off, time.monotonic()) > RATE,
            60,
            "acknowledgements to resume after the outage",
        )
        t_recover = time.monotonic()
        time.sleep(3)
        prod.stop()
        left = prod.flush(120)
        assert left == 0, f"{left} messages undelivered 120 s after recovery"
        _wait_drained(b)
        hw = {p: o for p, (_, o) in partition_offsets(b.data_dir, "stream").items()}
        assert sum(hw.values()) >= len(prod.acked), f"uploaded ends {hw} < {len(prod.acked)} acks"
        mon.stop()
        b.assert_alive("after the outage")
        assert mon.max_rss() < RSS_LIMIT_MIB, f"broker RSS reached {mon.max_rss():.0f} MiB: {summary}"
        non_retriable = [e for _, _, e in prod.errors if not e.retriable()]
        assert not non_retriable, f"non-retriable producer errors: {non_retriable[:5]} ({summary})"
        print(f"recovered {t_recover - t_off:.1f}s after the fault was cleared; "
              f"{len(prod.acked)} acked of {prod.sent} sent, {len(prod.errors)} delivery errors")
        _read_back(b, "stream", prod.acked)
    finally:
        prod._stop.set()
        mon.stop()
        try:
            set_fault(b, "off")
        except Exception:
            pass


@pytest.mark.e2e_timeout(200)
def test_30s_failure_outage_backpressure_and_recovery(broker_factory):
    _outage(broker_factory, {"mode": "fail"}, 30)


@pytest.mark.e2e_timeout(150)
def test_hanging_requests_then_recovery(broker_factory):
    _outage(broker_factory, {"mode": "drop"}, 12)


@pytest.mark.e2e_timeout(200)
def test_hanging_requests_past_the_request_timeout(broker_factory):
    """Requests hang longer than the broker's 30 s request timeout: the
    uploader times them out, retries, and recovers once the store answers."""
    _outage(broker_factory, {"mode": "drop"}, 38)


@pytest.mark.e2e_timeout(200)
def test_kill9_during_outage_then_backlog_uploads(broker_factory):
    b = _fault_broker(broker_factory)
    prod = StreamingProducer(b.bootstrap, "stream").start()
    mon = Monitor(b).start()
    try:
        time.sleep(3)
        backlog, acked_before = _fail_until_backlog_full(b, prod, settle=2)
        catalog_before = partition_offsets(b.data_dir, "stream")
        mon.stop()
        assert mon.max_rss() < RSS_LIMIT_MIB, f"broker RSS reached {mon.max_rss():.0f} MiB"
        b.kill9()
        wal_before = dir_bytes(b.data_dir / "wal")
        ends = defaultdict(int)
        for p, o in acked_before.values():
            ends[p] = max(ends[p], o + 1)
        print(f"killed with a backlog of {backlog / MiB:.1f} MiB; {len(acked_before)} acked; "
              f"WAL {wal_before / MiB:.1f} MiB; catalog {catalog_before}; acked ends {dict(ends)}")
        assert any(catalog_before[p][1] < e for p, e in ends.items()), (
            f"nothing acknowledged was waiting for upload at the kill: {catalog_before} vs {dict(ends)}"
        )

        # Restart without fault injection; the replayed backlog is uploaded.
        b.env.pop("SLUICE_FAULT_INJECTION", None)
        b.restart()
        wait_for(
            lambda: all(partition_offsets(b.data_dir, "stream")[p][1] >= e for p, e in ends.items()),
            60,
            "the WAL backlog to be uploaded after the restart",
            describe=lambda: f"catalog {partition_offsets(b.data_dir, 'stream')}, acked ends {dict(ends)}",
        )
        _wait_drained(b)
        wal_after = wait_for(
            lambda: (lambda n: n if n < wal_before - backlog / 2 else None)(dir_bytes(b.data_dir / "wal")),
            30,
            "the WAL to shrink after the backlog was uploaded",
            describe=lambda: f"WAL {dir_bytes(b.data_dir / 'wal')} bytes, before {wal_before}",
        )
        print(f"after restart: WAL {wal_after / MiB:.1f} MiB, catalog {partition_offsets(b.data_dir, 'stream')}")
        # The producer's retries may land after the restart; all it got acked reads back.
        left = prod.flush(60)
        assert left == 0, f"{left} messages still undelivered 60 s after the restart"
        _read_back(b, "stream", prod.acked)
        assert set(acked_before.items()) <= set(prod.acked.items())
    finally:
        prod._stop.set()
        mon.stop()


def _fail_until_backlog_full(b, prod, settle: float):
    """Fails every object store request until the upload backlog nears
    --max-unuploaded-bytes, waits `settle` s, stops the producer. Returns
    (backlog bytes, acknowledged messages)."""
    set_fault(b, "fail")
    wait_for(
        lambda: (metric(b, "sluice_upload_backlog_bytes") or 0) >= MAX_UNUPLOADED * 0.75,
        30,
        "the upload backlog to fill during the outage",
        describe=lambda: f"metrics {metric_samples(b, 'sluice_upload')}",
    )
    time.sleep(settle)
    backlog = metric(b, "sluice_upload_backlog_bytes")
    prod.stop()
    prod.producer.poll(0.5)
    return backlog, dict(prod.acked)


def _kill_with_backlog(b):
    """Stream until an outage has filled the upload budget, then SIGKILL.
    Returns (acked messages, backlog bytes at the kill)."""
    prod = StreamingProducer(b.bootstrap, "stream").start()
    try:
        time.sleep(2)
        backlog, acked = _fail_until_backlog_full(b, prod, settle=1)
        b.kill9()
        return acked, backlog
    finally:
        prod._stop.set()


def _restart_with(b, extra_args, fault_injection: bool):
    b.argv = b.argv + list(extra_args)
    if not fault_injection:
        b.env.pop("SLUICE_FAULT_INJECTION", None)
    b.restart()


@pytest.mark.e2e_timeout(150)
@pytest.mark.parametrize("mode", ["drop", "fail"])
def test_tail_reads_continue_while_object_reads_are_down(broker_factory, mode):
    """With the object store down, a catch-up reader (data only in objects)
    stalls or gets retriable errors, but a separate tail consumer keeps
    getting new records promptly; after recovery the catch-up completes."""
    from s3_server import produce_indexed, wait_uploaded

    b = object_store_broker(
        broker_factory,
        args=BROKER_ARGS[:2] + ["--tail-cache-bytes", str(MiB), "--block-cache-bytes", str(MiB)],
        env={"SLUICE_FAULT_INJECTION": "1"},
    )
    topic = "history"
    create_topic(b.bootstrap, topic, PARTITIONS)
    old = [{"partition": i % PARTITIONS, "value": value_of(i)} for i in range(15000)]
    old_acked = produce_indexed(make_producer(b.bootstrap), topic, old, timeout=60)
    ends = defaultdict(int)
    for p, o in old_acked:
        ends[p] = max(ends[p], o + 1)
    wait_uploaded(b.data_dir, topic, dict(ends), timeout=30)

    set_fault(b, mode)
    catchup = make_consumer(b.bootstrap, **{"enable.partition.eof": False})
    catchup.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    tail = make_consumer(b.bootstrap, **{"enable.partition.eof": False})
    tail.assign([TopicPartition(topic, p, ends[p]) for p in range(PARTITIONS)])
    caught, catchup_errors = {}, []
    try:
        producer = make_producer(b.bootstrap, **{"linger.ms": 0})
        t_out = time.monotonic()
        new = [{"partition": i % PARTITIONS, "value": b"new-%d" % i} for i in range(300)]
        new_acked = produce_indexed(producer, topic, new, timeout=30)
        got = {}
        deadline = time.monotonic() + 15
        while len(got) < len(new) and time.monotonic() < deadline:
            for m in catchup.consume(1000, timeout=0.05):
                if m.error() is not None:
                    catchup_errors.append(m.error())
                else:
                    caught[(m.partition(), m.offset())] = m.value()
            for m in tail.consume(1000, timeout=0.2):
                assert m.error() is None, f"tail consumer error during the outage: {m.error()!r}"
                got[(m.partition(), m.offset())] = m.value()
        took = time.monotonic() - t_out
        print(f"{mode}: tail consumer got {len(got)}/{len(new)} new records in {took:.1f}s; catch-up read "
              f"{len(caught)} old records meanwhile, {len(catchup_errors)} errors "
              f"({set(str(e.code()) for e in catchup_errors)})")
        assert len(got) == len(new), (
            f"tail consumer got only {len(got)} of {len(new)} new records within 15 s while object reads "
            f"were down ({mode}); catch-up read {len(caught)} old records"
        )
        for i, at in enumerate(new_acked):
            assert got[at] == new[i]["value"]
        assert len(caught) < len(old), "the catch-up reader never touched the object store?"

        set_fault(b, "off")
        deadline = time.monotonic() + 60
        want = len(old) + len(new)
        while len(caught) < want and time.monotonic() < deadline:
            for m in catchup.consume(5000, timeout=0.5):
                if m.error() is not None:
                    catchup_errors.append(m.error())
                else:
                    caught[(m.partition(), m.offset())] = m.value()
        assert len(caught) == want, f"catch-up read {len(caught)} of {want} records after recovery"
        for i, at in enumerate(old_acked):
            assert caught[at] == old[i]["value"], f"old record {i} at {at} differs"
        fatal = [e for e in catchup_errors if e.fatal()]
        assert not fatal, f"fatal consumer errors: {fatal[:3]}"
    finally:
        catchup.close()
        tail.close()
        set_fault(b, "off")


@pytest.mark.e2e_timeout(150)
def test_backlog_gauge_after_restart_counts_the_replayed_wal(broker_factory):
    """After a restart the WAL's not-yet-uploaded data is the upload backlog:
    sluice_upload_backlog_bytes must say so before the first upload."""
    b = _fault_broker(broker_factory)
    acked, backlog = _kill_with_backlog(b)
    # A long upload interval leaves time to look before the first upload.
    _restart_with(b, ["--upload-interval-ms", "6000"], fault_injection=False)
    gauge = metric(b, "sluice_upload_backlog_bytes")
    unuploaded = metric(b, "sluice_memory_bytes", kind="unuploaded")
    uploaded_yet = metric(b, "sluice_objects_written_total") or 0
    print(f"killed with backlog {backlog / MiB:.1f} MiB; after restart: sluice_upload_backlog_bytes={gauge}, "
          f"sluice_memory_bytes{{kind=unuploaded}}={unuploaded}, objects written {uploaded_yet}")
    assert uploaded_yet == 0, "the first upload happened before the check; the check proves nothing"
    assert unuploaded and unuploaded >= backlog * 0.9, (
        f"replayed unuploaded bytes {unuploaded} vs backlog at the kill {backlog}"
    )
    assert gauge is not None and gauge >= unuploaded * 0.9, (
        f"sluice_upload_backlog_bytes={gauge} right after a restart that replayed "
        f"{unuploaded:.0f} unuploaded bytes from the WAL (backlog at the kill: {backlog:.0f})"
    )
    _wait_drained(b, timeout=30)
    _read_back(b, "stream", acked)


@pytest.mark.e2e_timeout(150)
def test_restart_with_a_smaller_budget_enforces_it(broker_factory):
    """Restarted with a smaller --max-unuploaded-bytes than the replayed
    backlog: once that backlog is uploaded, a new outage may only let the
    new, smaller budget pile up."""
    b = _fault_broker(broker_factory)
    acked, backlog = _kill_with_backlog(b)
    small = 4 * MiB
    b.argv = [a if a != str(MAX_UNUPLOADED) else str(small) for a in b.argv]
    assert str(small) in b.argv
    b.restart()
    _wait_drained(b, timeout=30)
    prod = StreamingProducer(b.bootstrap, "stream").start()
    mon = Monitor(b).start()
    try:
        time.sleep(2)
        set_fault(b, "fail")
        t_fail = time.monotonic()
        time.sleep(10)
        peak = max((s[1] or 0 for s in mon.window(t_fail, time.monotonic())), default=0)
        acked_in_outage = prod.acks_between(t_fail + 0.5, time.monotonic())
        print(f"backlog at the kill {backlog / MiB:.1f} MiB; restarted with a {small / MiB:.0f} MiB budget; "
              f"new outage: peak backlog {peak / MiB:.1f} MiB, {acked_in_outage} acks")
        assert peak <= small + MiB, (
            f"--max-unuploaded-bytes {small} not enforced after a restart that replayed "
            f"{backlog / MiB:.1f} MiB: the backlog reached {peak / MiB:.1f} MiB"
        )
        assert acked_in_outage * MSG_SIZE <= small + MiB, (
            f"{acked_in_outage} KiB acknowledged during the outage with a {small / MiB:.0f} MiB budget"
        )
        set_fault(b, "off")
        prod.stop()
        assert prod.flush(60) == 0
        _wait_drained(b)
        # Both producers number their messages from 0: check each one's acks.
        _read_back(b, "stream", acked)
        _read_back(b, "stream", prod.acked)
    finally:
        prod._stop.set()
        mon.stop()
        try:
            set_fault(b, "off")
            # Let held-back produce requests finish before the teardown's SIGTERM.
            _wait_drained(b, timeout=20)
        except Exception:
            pass


@pytest.mark.e2e_timeout(150)
def test_sigterm_while_producers_wait_for_the_upload_budget(broker_factory):
    """SIGTERM during an outage with producers held back by backpressure:
    the broker exits 0 within the usual 10 s, and a restart (store healthy
    again) keeps every acknowledged message."""
    b = _fault_broker(broker_factory)
    prod = StreamingProducer(b.bootstrap, "stream").start()
    try:
        time.sleep(2)
        set_fault(b, "fail")
        wait_for(
            lambda: (metric(b, "sluice_upload_backlog_bytes") or 0) >= MAX_UNUPLOADED * 0.75,
            30,
            "the upload backlog to fill during the outage",
        )
        time.sleep(3)  # produce requests are now waiting for the budget
        assert prod.outstanding() > 0
        t = time.monotonic()
        b.proc.send_signal(signal.SIGTERM)
        try:
            rc = b.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            b.proc.kill()
            b.proc.wait(10)
            raise AssertionError(f"broker still running 40 s after SIGTERM\n{b.log_tail(3000)}")
        took = time.monotonic() - t
        b._close_log()
        prod.stop()
        print(f"exit code {rc} {took:.1f}s after SIGTERM with {prod.outstanding()} messages waiting")
        assert rc == 0 and took <= 10, (
            f"SIGTERM with producers waiting for the upload budget: exit code {rc} after {took:.1f}s "
            f"(expected 0 within 10 s)\n{b.log_tail(3000)}"
        )
    finally:
        prod._stop.set()
    acked = dict(prod.acked)
    b.env.pop("SLUICE_FAULT_INJECTION", None)
    b.restart()
    _wait_drained(b)
    _read_back(b, "stream", acked)
