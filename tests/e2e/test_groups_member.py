"""Shared code of the consumer-group tests (test_groups_*.py); no tests here.

1. Run as a script, this file is a *group member*: a confluent-kafka consumer
   in its own process (so a test can kill -9 it) that subscribes to topics and
   reports everything it does as JSON lines in an events file:

     start / subscribed           process up, subscribe() called
     assign / revoke / lost       rebalance callbacks (partitions)
     committed                    consumer.committed() for newly assigned partitions
     assignment                   consumer.assignment() changed (+ memberid())
     msg                          a message was processed (partition, offset, value)
     commit / commit_failed       synchronous commit of that message returned / raised
     rdlog                        selected librdkafka debug lines (e.g. JOINGROUP; "*": all)
     error                        a consume error
     closed                       close() returned

   Each line is written with one write() and carries time.monotonic(), which
   is CLOCK_MONOTONIC and so comparable with the test process's clock. The
   member reads commands on stdin: "close" (close() and exit 0) or
   "committed" (report committed offsets of the current assignment) or
   "delay MS" (pause MS ms between processing a message and committing it).

2. Imported by the tests: `Member` starts and watches such a process, plus
   small helpers (unique values, group/offset queries, waiting).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

MEMBER_SCRIPT = Path(__file__).resolve()

# ---------------------------------------------------------------------------
# The member process
# ---------------------------------------------------------------------------


class _Emitter:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.lock = threading.Lock()

    def __call__(self, ev: str, **fields) -> None:
        fields["ev"] = ev
        fields["t"] = time.monotonic()
        line = (json.dumps(fields, separators=(",", ":")) + "\n").encode()
        with self.lock:
            os.write(self.fd, line)  # one write: a kill -9 never leaves half a line


class _RdLogHandler(logging.Handler):
    """Forwards librdkafka log lines whose facility is in `facilities`."""

    def __init__(self, emit: _Emitter, facilities: Iterable[str]) -> None:
        super().__init__(logging.DEBUG)
        self.emit_ev = emit
        self.facilities = tuple(facilities)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        fac = msg.split(" ", 1)[0]
        if fac in self.facilities or "*" in self.facilities:
            self.emit_ev("rdlog", fac=fac, msg=msg)


def _parts(tps) -> List[List]:
    return sorted([tp.topic, tp.partition] for tp in tps)


def member_main(cfg: dict) -> int:
    emit = _Emitter(cfg["out"])
    emit("start", pid=os.getpid())
    conf = {
        "bootstrap.servers": cfg["bootstrap"],
        "group.id": cfg["group"],
        "broker.address.family": "v4",
        "socket.timeout.ms": 10000,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.wait.max.ms": 100,
    }
    conf.update(cfg.get("conf", {}))
    kwargs = {}
    facilities = cfg.get("rdlog") or []
    if facilities:
        conf["debug"] = "cgrp"
        logger = logging.getLogger(f"member-{os.getpid()}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(_RdLogHandler(emit, facilities))
        kwargs["logger"] = logger
    consumer = Consumer(conf, **kwargs)

    commit_each = cfg.get("commit", "each") == "each"
    delay = cfg.get("delay_ms", 0) / 1000.0
    report_committed = cfg.get("report_committed", True)

    commands: List[str] = []
    cmd_lock = threading.Lock()

    def read_stdin():
        for line in sys.stdin:
            with cmd_lock:
                commands.append(line.strip())
        with cmd_lock:
            commands.append("eof")

    threading.Thread(target=read_stdin, daemon=True).start()

    def report_committed_for(partitions):
        if not partitions:
            return
        try:
            got = consumer.committed(list(partitions), timeout=10)
            emit(
                "committed",
                offsets=[[tp.topic, tp.partition, tp.offset] for tp in got],
                errors=[str(tp.error) for tp in got if tp.error is not None],
            )
        except KafkaException as e:
            emit("committed", offsets=None, errors=[str(e)])

    def on_assign(c, partitions):
        emit("assign", parts=_parts(partitions))
        if report_committed:
            report_committed_for(partitions)

    def on_revoke(c, partitions):
        emit("revoke", parts=_parts(partitions))

    def on_lost(c, partitions):
        emit("lost", parts=_parts(partitions))

    consumer.subscribe(cfg["topics"], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    emit("subscribed")

    last_assignment = None
    while True:
        with cmd_lock:
            cmds, commands[:] = list(commands), []
        for cmd in cmds:
            if cmd == "committed":
                report_committed_for(consumer.assignment())
            elif cmd.startswith("delay "):
                delay = int(cmd.split()[1]) / 1000.0
            elif cmd in ("close", "eof"):
                consumer.close()
                emit("closed")
                return 0
        msg = consumer.poll(0.1)
        assignment = _parts(consumer.assignment())
        if assignment != last_assignment:
            emit("assignment", parts=assignment, member_id=consumer.memberid())
            last_assignment = assignment
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                emit("error", code=err.code(), name=err.name(), text=str(err))
            continue
        value = msg.value().decode("utf-8", "replace") if msg.value() is not None else None
        emit("msg", topic=msg.topic(), p=msg.partition(), o=msg.offset(), v=value)
        if delay:
            time.sleep(delay)
        if commit_each:
            try:
                res = consumer.commit(message=msg, asynchronous=False)
                errs = [str(tp.error) for tp in res or [] if tp.error is not None]
                if errs:
                    emit("commit_failed", p=msg.partition(), o=msg.offset() + 1, v=value, err=errs)
                else:
                    emit("commit", p=msg.partition(), o=msg.offset() + 1, v=value)
            except KafkaException as e:
                emit("commit_failed", p=msg.partition(), o=msg.offset() + 1, v=value, err=str(e))


# ---------------------------------------------------------------------------
# Test side
# ---------------------------------------------------------------------------


def _pdeathsig():
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Member:
    """A member process (see the module doc) and the events it reported."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        bootstrap: str,
        group: str,
        topics: List[str],
        conf: Optional[dict] = None,
        commit: str = "each",
        delay_ms: int = 0,
        rdlog: Optional[List[str]] = None,
    ) -> None:
        self.name = name
        self.out = workdir / f"member-{name}.jsonl"
        self.stderr_path = workdir / f"member-{name}.stderr"
        self.out.write_bytes(b"")
        cfg = {
            "bootstrap": bootstrap,
            "group": group,
            "topics": topics,
            "out": str(self.out),
            "conf": conf or {},
            "commit": commit,
            "delay_ms": delay_ms,
            "rdlog": rdlog or [],
        }
        self._stderr = open(self.stderr_path, "wb")
        self.spawned_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(MEMBER_SCRIPT), json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
            preexec_fn=_pdeathsig,
        )
        self.events: List[dict] = []
        self._pos = 0
        self.killed = False

    # -- events --------------------------------------------------------------

    def refresh(self) -> List[dict]:
        with open(self.out, "rb") as f:
            f.seek(self._pos)
            data = f.read()
        end = data.rfind(b"\n")
        if end < 0:
            return self.events
        self._pos += end + 1
        for line in data[: end + 1].splitlines():
            self.events.append(json.loads(line))
        return self.events

    def of(self, *kinds: str) -> List[dict]:
        return [e for e in self.events if e["ev"] in kinds]

    def assignment(self) -> Optional[List[Tuple[str, int]]]:
        """The last consumer.assignment() the member reported (None before any)."""
        a = self.of("assignment")
        return [tuple(p) for p in a[-1]["parts"]] if a else None

    def member_id(self) -> Optional[str]:
        a = [e for e in self.of("assignment") if e.get("member_id")]
        return a[-1]["member_id"] if a else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, n: int = 3000) -> str:
        try:
            return self.stderr_path.read_bytes()[-n:].decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        evs = self.refresh()
        kinds: Dict[str, int] = {}
        for e in evs:
            kinds[e["ev"]] = kinds.get(e["ev"], 0) + 1
        state = "running" if self.alive() else f"exited rc={self.proc.returncode}"
        errs = [e for e in evs if e["ev"] in ("error", "commit_failed")][-5:]
        return (
            f"member {self.name} ({state}): events {kinds}, assignment {self.assignment()}, "
            f"last errors {errs}, stderr: {self.stderr_tail(800)!r}"
        )

    # -- control -------------------------------------------------------------

    def send(self, cmd: str) -> None:
        self.proc.stdin.write((cmd + "\n").encode())
        self.proc.stdin.flush()

    def close(self, timeout: float = 30.0) -> float:
        """Ask for a clean close(); returns the time the command was sent."""
        t = time.monotonic()
        self.send("close")
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"member {self.name}: close() did not return within {timeout}s; "
                                 + self.describe())
        self.refresh()
        assert rc == 0 and self.of("closed"), f"member {self.name} close failed: {self.describe()}"
        return t

    def kill9(self) -> float:
        t = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.killed = True
        self.refresh()
        return t

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self._stderr.close()


def wait_for(
    cond: Callable[[], bool],
    timeout: float,
    what: str,
    members: Iterable[Member] = (),
    interval: float = 0.1,
    diag: Optional[Callable[[], str]] = None,
) -> float:
    """Poll `cond` (after refreshing the members' events) until true; returns
    the time it became true. Fails with every member's state otherwise, or as
    soon as a member that was not killed died."""
    members = list(members)
    deadline = time.monotonic() + timeout
    while True:
        for m in members:
            m.refresh()
        if cond():
            return time.monotonic()
        for m in members:
            if not m.alive() and not m.killed and not m.of("closed"):
                raise AssertionError(f"while waiting for {what}: {m.describe()}")
        if time.monotonic() > deadline:
            extra = diag() if diag else ""
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}\n"
                + "\n".join(m.describe() for m in members)
                + (f"\n{extra}" if extra else "")
            )
        time.sleep(interval)


def exact_cover(assignments: Iterable[Optional[List[Tuple[str, int]]]], topic: str, partitions: int) -> bool:
    seen: List[Tuple[str, int]] = []
    for a in assignments:
        if a is None:
            return False
        seen.extend(a)
    return sorted(seen) == [(topic, p) for p in range(partitions)]


def group_offsets(admin, group: str, timeout: float = 20.0) -> Dict[Tuple[str, int], int]:
    """AdminClient list_consumer_group_offsets (OffsetFetch for all partitions)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    futs = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=timeout)
    res = futs[group].result(timeout=timeout + 5)
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions}


def describe_group(admin, group: str, timeout: float = 20.0):
    futs = admin.describe_consumer_groups([group], request_timeout=timeout)
    return futs[group].result(timeout=timeout + 5)


def described_assignment(desc) -> Dict[str, List[Tuple[str, int]]]:
    return {
        m.member_id: sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions)
        for m in desc.members
    }


def watermarks(bootstrap: str, topic: str, partitions: int) -> Dict[int, int]:
    """High watermark of each partition."""
    from helpers import make_consumer

    c = make_consumer(bootstrap)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def unique_values(tag: str, n: int, partitions: int, start: int = 0) -> List[dict]:
    """Produce kwargs: value f"{tag}-{i}" to partition i % partitions."""
    return [{"value": f"{tag}-{i:06d}".encode(), "partition": i % partitions} for i in range(start, start + n)]


if __name__ == "__main__":
    sys.exit(member_main(json.loads(sys.argv[1])))
