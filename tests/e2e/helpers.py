"""confluent-kafka helpers shared by the end-to-end tests.

Every operation here is bounded by a timeout.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, List, Optional

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

OP_TIMEOUT = 30.0  # seconds, for single admin/metadata operations


def base_conf(bootstrap: str) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": 10000,
        "socket.connection.setup.timeout.ms": 10000,
        "broker.address.family": "v4",
    }


# ---------------------------------------------------------------------------
# Admin
# ---------------------------------------------------------------------------


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient(base_conf(bootstrap))


def create_topic(
    bootstrap_or_admin,
    name: str,
    partitions: int = 1,
    config: Optional[dict] = None,
    timeout: float = OP_TIMEOUT,
) -> None:
    """Create a topic and wait until metadata shows all its partitions."""
    admin = (
        admin_client(bootstrap_or_admin)
        if isinstance(bootstrap_or_admin, str)
        else bootstrap_or_admin
    )
    futs = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=timeout,
        operation_timeout=timeout,
    )
    futs[name].result(timeout=timeout + 5)
    wait_topic(admin, name, partitions, timeout=timeout)


def topic_partition_count(admin: AdminClient, name: str, timeout: float = OP_TIMEOUT) -> Optional[int]:
    """Number of partitions per metadata, or None if the topic is not listed."""
    md = admin.list_topics(timeout=timeout)
    t = md.topics.get(name)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def wait_topic(admin: AdminClient, name: str, partitions: int, timeout: float = OP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = topic_partition_count(admin, name, timeout=10)
        if seen == partitions:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"topic {name!r} has {seen} partitions in metadata after {timeout}s, expected {partitions}"
    )


# ---------------------------------------------------------------------------
# Produce
# ---------------------------------------------------------------------------


@dataclass
class Delivery:
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    error: Optional[KafkaError]


def make_producer(bootstrap: str, **conf) -> Producer:
    c = base_conf(bootstrap)
    c.update(
        {
            "acks": "all",
            "linger.ms": 10,
            "message.timeout.ms": 60000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    c.update(conf)
    return Producer(c)


def produce_all(
    producer: Producer,
    topic: str,
    messages: Iterable[dict],
    timeout: float = 180.0,
) -> List[Delivery]:
    """Produce dicts of Producer.produce kwargs (key, value, headers, timestamp,
    partition); return one Delivery per message once all are reported."""
    deliveries: List[Delivery] = []

    def on_delivery(err, msg):
        deliveries.append(
            Delivery(
                partition=msg.partition(),
                offset=msg.offset(),
                key=msg.key(),
                value=msg.value(),
                error=err,
            )
        )

    deadline = time.monotonic() + timeout
    n = 0
    for kwargs in messages:
        while True:
            try:
                producer.produce(topic, on_delivery=on_delivery, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
                if time.monotonic() > deadline:
                    raise AssertionError("producer queue stayed full until the timeout")
        n += 1
        if n % 1000 == 0:
            producer.poll(0)
    left = max(deadline - time.monotonic(), 1.0)
    remaining = producer.flush(left)
    assert remaining == 0, f"{remaining} of {n} messages still undelivered after {timeout}s"
    assert len(deliveries) == n, f"{len(deliveries)} delivery reports for {n} messages"
    errors = [d for d in deliveries if d.error is not None]
    assert not errors, (
        f"{len(errors)} of {n} deliveries failed, first: {errors[0].error!r} "
        f"(partition {errors[0].partition}, key {errors[0].key!r})"
    )
    return deliveries


def assert_contiguous_offsets(pairs: Iterable, what: str) -> dict:
    """pairs of (partition, offset): each partition's offsets must be exactly
    0..n-1 with no gaps and no duplicates. Returns {partition: n}."""
    by_part = defaultdict(list)
    for p, o in pairs:
        by_part[p].append(o)
    counts = {}
    for p, offs in sorted(by_part.items()):
        offs.sort()
        n = len(offs)
        if offs != list(range(n)):
            dups = n - len(set(offs))
            missing = sorted(set(range(offs[-1] + 1)) - set(offs))[:10]
            raise AssertionError(
                f"{what}: partition {p} offsets not contiguous from 0: {n} offsets, "
                f"min {offs[0]}, max {offs[-1]}, {dups} duplicates, first missing {missing}"
            )
        counts[p] = n
    return counts


# ---------------------------------------------------------------------------
# Consume
# ---------------------------------------------------------------------------


@dataclass
class Consumed:
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Optional[list]
    timestamp_type: int
    timestamp: int


def make_consumer(bootstrap: str, **conf) -> Consumer:
    c = base_conf(bootstrap)
    c.update(
        {
            # Consumer groups are not implemented by the broker: partitions are
            # assigned by hand and nothing is committed.
            "group.id": "sluice-e2e-assign",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        }
    )
    c.update(conf)
    return Consumer(c)


def consume_all(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    expected: Optional[int] = None,
    timeout: float = 120.0,
    idle_after_eof: float = 3.0,
    consumer_conf: Optional[dict] = None,
) -> List[Consumed]:
    """Read the given partitions from the beginning until every partition hit
    EOF and (if given) `expected` messages were read, or the timeout."""
    partitions = list(partitions)
    consumer = make_consumer(bootstrap, **(consumer_conf or {}))
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: List[Consumed] = []
        eof = set()
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.consume(num_messages=10000, timeout=0.5)
            for m in batch:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                        continue
                    raise AssertionError(
                        f"consume error on {topic}[{m.partition()}]: {err!r} "
                        f"after {len(out)} messages"
                    )
                ts_type, ts = m.timestamp()
                out.append(
                    Consumed(
                        partition=m.partition(),
                        offset=m.offset(),
                        key=m.key(),
                        value=m.value(),
                        headers=m.headers(),
                        timestamp_type=ts_type,
                        timestamp=ts,
                    )
                )
            if batch:
                last_progress = time.monotonic()
            if len(eof) == len(partitions):
                if expected is None or len(out) >= expected:
                    break
                if time.monotonic() - last_progress > idle_after_eof:
                    break
        return out
    finally:
        consumer.close()


# ---------------------------------------------------------------------------
# Canary: a client that must keep working while the broker is abused.
# ---------------------------------------------------------------------------


class Canary:
    """A long-lived confluent-kafka producer + consumer on their own topic.

    check() produces one fresh message and reads it back through the same
    (already connected) consumer."""

    def __init__(self, bootstrap: str, topic: str = "canary") -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        create_topic(bootstrap, topic, 1)
        self.producer = make_producer(bootstrap, **{"linger.ms": 0})
        self.consumer = make_consumer(bootstrap, **{"enable.partition.eof": False})
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.count = 0
        self.check("initial")

    def check(self, context: str, timeout: float = 20.0) -> None:
        self.count += 1
        value = f"canary-{self.count}-{random.random()}".encode()
        errors = []
        self.producer.produce(
            self.topic, value=value, key=b"canary", on_delivery=lambda e, m: errors.append(e)
        )
        left = self.producer.flush(timeout)
        assert left == 0, f"canary ({context}): produce not delivered within {timeout}s"
        assert errors == [None], f"canary ({context}): delivery error {errors}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.consumer.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                raise AssertionError(f"canary ({context}): consume error {m.error()!r}")
            if m.value() == value:
                return
        raise AssertionError(f"canary ({context}): produced message not consumed within {timeout}s")

    def close(self) -> None:
        try:
            self.consumer.close()
        except KafkaException:
            pass
        self.producer.flush(5)


def payloads(
    seed: int, count: int, lo: int = 60, hi: int = 140, forbidden: bytes = b""
) -> List[bytes]:
    """`count` pseudo-random binary payloads of lo..hi bytes, none containing a
    byte of `forbidden` (those bytes are remapped)."""
    rng = random.Random(seed)
    sizes = [rng.randint(lo, hi) for _ in range(count)]
    blob = rng.randbytes(sum(sizes))
    if forbidden:
        allowed = [b for b in range(256) if b not in forbidden]
        table = bytes(b if b not in forbidden else allowed[b % len(allowed)] for b in range(256))
        blob = blob.translate(table)
    out = []
    pos = 0
    for n in sizes:
        out.append(blob[pos : pos + n])
        pos += n
    return out


class Flood:
    """A producer writing `size`-byte records to `topic` through `conf` in
    a thread (`run_floods`), flat out or paced at `rate` bytes/s; keeps
    (time, acknowledged bytes) samples for rate measurements. On stop the
    unsent queue is purged, so stopping is quick; purge reports are not
    counted as errors."""

    def __init__(self, conf: dict, topic: str, size: int = 16 * 1024, queue_kbytes: int = 32 * 1024,
                 rate: Optional[float] = None):
        self.rate = rate
        self.p = Producer({**conf, "linger.ms": 5, "acks": "all",
                           "queue.buffering.max.kbytes": queue_kbytes})
        self.topic, self.size = topic, size
        self.acked = 0
        self.errors: list = []
        self.samples: list = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        value = b"x" * self.size
        purged = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)

        def done(err, msg):
            if err is None:
                self.acked += len(msg.value())
            elif err.code() not in purged:
                self.errors.append(err)

        last = start = time.monotonic()
        self.samples.append((last, 0))
        produced = 0
        while not self.stop.is_set():
            if self.rate is not None and produced > self.rate * (time.monotonic() - start):
                self.p.poll(0.005)
                continue
            try:
                self.p.produce(self.topic, value, on_delivery=done)
                produced += len(value)
            except BufferError:
                self.p.poll(0.05)
            self.p.poll(0)
            now = time.monotonic()
            if now - last >= 0.25:
                self.samples.append((now, self.acked))
                last = now
        self.p.purge()
        self.p.flush(10)
        self.samples.append((time.monotonic(), self.acked))

    def rate_between(self, t0: float, t1: float) -> float:
        """Bytes per second acknowledged between monotonic times t0 and t1."""
        def at(t):
            return min(self.samples, key=lambda s: abs(s[0] - t))
        (a, x), (b, y) = at(t0), at(t1)
        return (y - x) / (b - a)


def run_floods(floods: List["Flood"], seconds: float) -> float:
    """Runs the floods together for `seconds`; returns when they started."""
    for f in floods:
        f.t.start()
    start = time.monotonic()
    time.sleep(seconds)
    for f in floods:
        f.stop.set()
    for f in floods:
        f.t.join(30)
        assert not f.t.is_alive(), "a producer did not stop"
    return start


def sasl_conf(bootstrap: str, user: str, password: str, mechanism: str = "SCRAM-SHA-256", **extra) -> dict:
    """A SASL_PLAINTEXT client configuration."""
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        "broker.address.family": "v4",
        **extra,
    }
