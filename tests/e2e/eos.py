"""The exactly-once consume-transform-produce loop the transaction tests
share (embedded in test_transactions.py, across brokers in
test_cluster_transactions.py): a read_committed group consumer, a
transactional producer, batches with their offsets sent in the transaction,
every few transactions aborted and the consumer rewound, as confluent-kafka's
EOS example does. `check_output` then reads the output back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer

from helpers import base_conf, consume_all


def rewind(consumer: Consumer) -> None:
    """Back to the group's last committed positions."""
    committed = consumer.committed(consumer.assignment(), timeout=30)
    for tp in committed:
        assert tp.error is None, f"committed(): {tp}"
        if tp.offset < 0:
            tp.offset = OFFSET_BEGINNING
        consumer.seek(tp)


@dataclass
class LoopStats:
    batches: int = 0
    commits: int = 0
    aborts: int = 0
    committed_records: int = 0
    routine_errors: list = field(default_factory=list)
    acked: list = field(default_factory=list)
    failed: list = field(default_factory=list)

    def __call__(self, err, msg) -> None:  # the producer's delivery callback
        (self.acked if err is None else self.failed).append((err, msg.partition(), msg.offset()))


def consume_transform_produce(bootstrap: str, producer: Producer, src: str, dst: str, group: str,
                              n: int, *, batch: int = 100, abort_every: int = 3,
                              within_s: float = 120.0, tolerated=frozenset()) -> LoopStats:
    """Runs until n input records are in committed transactions. Each output
    record is the input's key and b"out:" + its value, on the same
    partition. Consumer errors other than the `tolerated` codes fail."""
    consumer = Consumer({
        **base_conf(bootstrap),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 100,
    })
    producer.init_transactions(30)
    consumer.subscribe([src])
    s = LoopStats()
    deadline = time.monotonic() + within_s
    try:
        producer.begin_transaction()
        while s.committed_records < n:
            assert time.monotonic() < deadline, f"EOS loop not done within {within_s}s: {s}"
            data = []
            while len(data) < batch and time.monotonic() < deadline:
                msgs = consumer.consume(num_messages=batch - len(data), timeout=1.0)
                for m in msgs:
                    if m.error() is not None:
                        assert m.error().code() in tolerated, f"consume error {m.error()!r}"
                        s.routine_errors.append(m.error().code())
                        continue
                    data.append(m)
                if not msgs and data:
                    break
            if not data:
                continue
            for m in data:
                producer.produce(dst, key=m.key(), value=b"out:" + m.value(), partition=m.partition(),
                                 on_delivery=s)
            s.batches += 1
            if s.batches % abort_every == 0:
                left = producer.flush(30)
                assert left == 0, f"batch {s.batches} (to be aborted): {left} messages not delivered"
                producer.abort_transaction(30)
                rewind(consumer)
                s.aborts += 1
            else:
                producer.send_offsets_to_transaction(
                    consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
                )
                producer.commit_transaction(30)
                s.commits += 1
                s.committed_records += len(data)
            producer.begin_transaction()
    finally:
        consumer.close()
    print(f"EOS loop: {s.batches} batches, {s.commits} committed, {s.aborts} aborted, "
          f"{s.committed_records} records; group events {s.routine_errors}")
    assert s.committed_records == n, f"{s.committed_records} records committed for {n} inputs (duplicates read)"
    assert s.aborts >= 3, f"only {s.aborts} aborted transactions: the abort path was hardly exercised"
    assert not s.failed, f"{len(s.failed)} output deliveries failed, first {s.failed[0]}"
    return s


def check_output(bootstrap: str, dst: str, partitions, inputs: dict, timeout: float = 90.0) -> None:
    """A read_committed reader of dst finds each input (key -> value) exactly
    once, transformed."""
    n = len(inputs)
    out = consume_all(bootstrap, dst, list(partitions), expected=n, timeout=timeout,
                      consumer_conf={"isolation.level": "read_committed"})
    out_keys = [m.key for m in out]
    dups = len(out_keys) - len(set(out_keys))
    assert dups == 0 and len(out) == n and set(out_keys) == set(inputs), (
        f"read_committed output: {len(out)} records for {n} inputs, {dups} duplicated keys, "
        f"{len(set(inputs) - set(out_keys))} inputs missing"
    )
    wrong = [m.key for m in out if m.value != b"out:" + inputs[m.key]]
    assert not wrong, f"{len(wrong)} output values differ, first {wrong[:3]}"
