"""The log cleaner of compacted topics (issue 18, must-show 1), with
confluent-kafka against one broker on the local object store with fast
maintenance passes:

* `cleanup.policy=compact`, small `segment.ms`, `min.compaction.lag.ms=0`:
  100 keys x 20 versions plus tombstones for 10 keys; after the cleaner
  runs, a consumer from the earliest offset reads exactly the latest value
  of each of the 90 live keys (and the 10 tombstones, until
  `delete.retention.ms`), in offset order, with gaps; offsets never change;
  fewer bytes are stored; the tombstones go once `delete.retention.ms` has
  passed; `retention.ms=1000` deletes nothing; the cleaner's counters are
  in /metrics.
* `min.compaction.lag.ms` keeps recent records out of the cleaner's reach.
* A restart and a `kill -9` while cleaning change nothing a reader sees.
* Transactions: aborted records are removed, an open transaction holds the
  cleaner back at the last stable offset, read_committed readers see each
  key's committed value.
"""

from __future__ import annotations

import time
import urllib.request
import uuid

from helpers import consume_all, create_topic
import s3_server
from s3_server import (
    local_objects,
    make_producer,
    object_store_broker,
    produce_indexed,
    segments_of,
    wait_for,
    wait_uploaded,
)

sluice_bin = s3_server.sluice_bin

FAST = ["--maintenance-interval-ms", "300", "--upload-interval-ms", "50", "--gc-grace-ms", "500"]
KEYS, VERSIONS, DELETED = 100, 20, 10


def _broker(broker_factory):
    return object_store_broker(broker_factory, args=FAST)


def _metric(b, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return None


def _fill(b, topic):
    """100 keys x 20 versions (one upload per version), then tombstones for
    the first 10 keys. Returns {key: (offset, value or None)} of the latest
    record of each key."""
    p = make_producer(b.bootstrap, **{"linger.ms": 5})
    latest = {}
    end = 0
    for v in range(VERSIONS):
        msgs = [{"key": b"key-%03d" % k, "value": b"v%02d-of-key-%03d" % (v, k) + b"." * 200,
                 "partition": 0} for k in range(KEYS)]
        acked = produce_indexed(p, topic, msgs, timeout=60)
        for m, (_, off) in zip(msgs, acked):
            latest[m["key"]] = (off, m["value"])
        end = max(o for _, o in acked) + 1
        wait_uploaded(b.data_dir, topic, {0: end}, timeout=30, interval=0.02)
    tomb = [{"key": b"key-%03d" % k, "value": None, "partition": 0} for k in range(DELETED)]
    acked = produce_indexed(p, topic, tomb, timeout=60)
    for m, (_, off) in zip(tomb, acked):
        latest[m["key"]] = (off, None)
    end = max(o for _, o in acked) + 1
    wait_uploaded(b.data_dir, topic, {0: end}, timeout=30, interval=0.02)
    return latest, end


def _read(b, topic):
    got = consume_all(b.bootstrap, topic, [0], timeout=60, idle_after_eof=0.5)
    return [(m.offset, m.key, m.value) for m in got]


def _bytes_stored(b, topic):
    return sum(r[6] for r in segments_of(b.data_dir, topic))


def test_cleaner_keeps_the_latest_value_per_key(broker_factory):
    b = _broker(broker_factory)
    topic = f"compact-{uuid.uuid4().hex[:6]}"
    # Tombstones live 6 s: long enough to see them, short enough to wait.
    create_topic(b.bootstrap, topic, partitions=1, config={
        "cleanup.policy": "compact", "segment.ms": "100", "min.compaction.lag.ms": "0",
        "min.cleanable.dirty.ratio": "0.1", "delete.retention.ms": "6000", "retention.ms": "1000",
    })
    started = time.time()
    latest, end = _fill(b, topic)
    produced = sum(len(v) for _, v in latest.values() if v) * VERSIONS

    live = {k: v for k, v in latest.items() if v[1] is not None}
    want_with_tombstones = sorted((off, k, v) for k, (off, v) in latest.items())

    def cleaned():
        return _read(b, topic) == want_with_tombstones

    wait_for(cleaned, 60, "a consumer from the earliest offset to read only the latest value per key")
    got = _read(b, topic)
    assert len(got) == KEYS, len(got)
    assert [o for o, _, _ in got] == sorted(o for o, _, _ in got), "not in offset order"
    assert got[-1][0] == end - 1, "offsets changed"
    # The latest versions are the last round and the tombstones: the gap
    # runs from the log start (0, which does not move) to the first live
    # key's last version (the deleted keys' last versions went too).
    assert got[0][0] == (VERSIONS - 1) * KEYS + DELETED, "the older versions were not removed"
    after = _bytes_stored(b, topic)
    assert after < produced / 5, f"{produced} bytes produced, {after} stored after cleaning"
    # The replaced objects are collected: one object holds the partition.
    wait_for(lambda: len(local_objects(b.data_dir / "objects")) <= 2, 30,
             "the objects the cleaner replaced to be collected")
    # retention.ms=1000 on a compact topic deletes nothing: the log start stays.
    lo, hi = s3_server.partition_offsets(b.data_dir, topic)[0]
    assert (lo, hi) == (0, end), (lo, hi)
    assert _metric(b, "sluice_cleaner_records_removed_total") >= KEYS * (VERSIONS - 1)
    assert _metric(b, "sluice_cleaner_runs_total") >= 1

    # The tombstones go once delete.retention.ms has passed.
    want_live = sorted((off, k, v) for k, (off, v) in live.items())
    wait_for(lambda: _read(b, topic) == want_live, 60 - (time.time() - started) + 30,
             "the tombstones to disappear after delete.retention.ms")
    assert len(want_live) == KEYS - DELETED

    # A restart changes nothing a reader sees.
    assert b.stop() == 0
    b.restart()
    assert _read(b, topic) == want_live


def test_min_compaction_lag_keeps_recent_records(broker_factory):
    b = _broker(broker_factory)
    topic = f"lag-{uuid.uuid4().hex[:6]}"
    create_topic(b.bootstrap, topic, partitions=1, config={
        "cleanup.policy": "compact", "segment.ms": "100",
        "min.compaction.lag.ms": str(3600 * 1000), "min.cleanable.dirty.ratio": "0.01",
    })
    p = make_producer(b.bootstrap, **{"linger.ms": 5})
    msgs = [{"key": b"k%d" % (i % 5), "value": b"v%d" % i, "partition": 0} for i in range(50)]
    produce_indexed(p, topic, msgs, timeout=60)
    wait_uploaded(b.data_dir, topic, {0: 50}, timeout=30, interval=0.02)
    time.sleep(2.0)  # several maintenance passes
    assert [o for o, _, _ in _read(b, topic)] == list(range(50)), "cleaned within the lag"


def test_kill_during_cleaning_changes_nothing_a_reader_sees(broker_factory):
    b = _broker(broker_factory)
    topic = f"kill-{uuid.uuid4().hex[:6]}"
    create_topic(b.bootstrap, topic, partitions=1, config={
        "cleanup.policy": "compact", "segment.ms": "100", "min.compaction.lag.ms": "0",
        "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": str(3600 * 1000),
    })
    latest, end = _fill(b, topic)
    want = sorted((off, k, v) for k, (off, v) in latest.items())
    # Kill it at a few moments while the cleaner is (likely) at work: what a
    # reader sees is always either the whole log's latest values plus older
    # versions not yet cleaned, never a lost latest value or a moved offset.
    for delay in (0.05, 0.3):
        time.sleep(delay)
        b.kill9()
        b.restart()
        got = _read(b, topic)
        offsets = {o for o, _, _ in got}
        assert all(o in offsets for o, _, _ in want), "a latest value was lost"
        by_offset = {o: (k, v) for o, k, v in got}
        assert all(by_offset[o] == (k, v) for o, k, v in want), "a record changed"
    wait_for(lambda: _read(b, topic) == want, 60, "the cleaner to finish after the restarts")


def test_cleaner_respects_transactions(broker_factory):
    """Aborted transactions' records go, an open transaction holds the
    cleaner back (it cleans nothing at or past the last stable offset, so a
    later abort cannot leave a key without its committed value), markers
    stay, and read_committed readers see the committed value of each key."""
    from confluent_kafka import Producer

    b = _broker(broker_factory)
    topic = f"compact-txn-{uuid.uuid4().hex[:6]}"
    create_topic(b.bootstrap, topic, partitions=1, config={
        "cleanup.policy": "compact", "segment.ms": "100", "min.compaction.lag.ms": "0",
        "min.cleanable.dirty.ratio": "0.01",
    })
    plain = make_producer(b.bootstrap, **{"linger.ms": 5})
    keys = [b"k%d" % i for i in range(10)]
    produce_indexed(plain, topic, [{"key": k, "value": b"c1", "partition": 0} for k in keys], timeout=60)

    def txn_producer(name):
        p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": f"{name}-{topic}",
                      "transaction.timeout.ms": 120000, "linger.ms": 5})
        p.init_transactions(30)
        p.begin_transaction()
        return p

    aborting = txn_producer("aborting")
    for k in keys[:5]:
        aborting.produce(topic, key=k, value=b"aborted", partition=0)
    assert aborting.flush(30) == 0
    aborting.abort_transaction(30)
    produce_indexed(plain, topic, [{"key": k, "value": b"c2", "partition": 0} for k in keys[5:]],
                    timeout=60)
    opened = txn_producer("open")
    for k in keys:
        opened.produce(topic, key=k, value=b"open", partition=0)
    assert opened.flush(30) == 0

    def read(iso):
        got = consume_all(b.bootstrap, topic, [0], timeout=30, idle_after_eof=0.5,
                          consumer_conf={"isolation.level": iso})
        return [(m.key, m.value) for m in got]

    def cleaned():
        values = read("read_uncommitted")
        return b"aborted" not in [v for _, v in values] and \
            (keys[5], b"c1") not in values
    wait_for(cleaned, 60, "the cleaner to remove the aborted records and the replaced values")
    uncommitted = read("read_uncommitted")
    assert [(k, b"open") for k in keys] == [x for x in uncommitted if x[1] == b"open"], \
        "the open transaction's records were cleaned"
    committed = dict(read("read_committed"))
    assert committed == {**{k: b"c1" for k in keys[:5]}, **{k: b"c2" for k in keys[5:]}}, committed

    opened.commit_transaction(30)
    final = read("read_committed")
    assert dict(final) == {k: b"open" for k in keys}, final
