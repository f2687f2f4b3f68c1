"""The object-storage layer against a real S3-compatible server (moto_server
on 127.0.0.1, started by the `moto_s3` fixture of s3_server.py).

* 200,000 messages (keys, headers) round-trip byte-identical through a broker
  restarted with nothing of its data dir left but the catalog and the WAL,
  so the data can only come from the bucket.
* Compaction reduces the object count while every offset stays readable.
* A missing bucket or an unreachable endpoint stop `sluice serve` at start-up.
* Objects under data/ and compacted/ the catalog does not know are deleted
  at start-up; other keys are left alone.
* The block cache (catch-up reads) and the tail cache stay within their
  configured budgets.
"""

from __future__ import annotations

import shutil
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from helpers import assert_contiguous_offsets, consume_all, create_topic, payloads
import s3_server
from s3_server import (
    assert_rows_contiguous,
    make_consumer,
    make_producer,
    catalog_query,
    metric,
    metric_samples,
    object_store_broker,
    partition_offsets,
    produce_indexed,
    segments_of,
    topic_id,
    wait_for,
    wait_uploaded,
)

# Fixtures from s3_server.py (a private binary copy, the moto server, a bucket).
sluice_bin = s3_server.sluice_bin
moto_s3 = s3_server.moto_s3
s3_bucket = s3_server.s3_bucket

PARTITIONS = 3
MiB = 1024 * 1024


def _messages(n: int, seed: int, lo: int, hi: int) -> list:
    values = payloads(seed, n, lo, hi)
    msgs = []
    for i, v in enumerate(values):
        msgs.append(
            {
                "key": f"key-{i % 7919}".encode(),
                "value": v,
                "headers": [
                    ("idx", str(i).encode()),
                    ("bin", bytes([i % 256, 0, 255 - i % 256])),
                    ("idx", b"dup-" + str(i).encode()),
                ],
            }
        )
    return msgs


def _check_consumed(consumed, msgs, acked, what: str) -> None:
    """Every acked message exactly once, byte-identical, at its acked offset."""
    where = {a: i for i, a in enumerate(acked)}
    assert len(where) == len(acked), f"{what}: two messages were acked at the same offset"
    seen = set()
    for m in consumed:
        pos = (m.partition, m.offset)
        assert pos not in seen, f"{what}: offset {pos} consumed twice"
        seen.add(pos)
        i = where.get(pos)
        assert i is not None, f"{what}: consumed {pos}, which no delivery report named"
        want = msgs[i]
        assert m.key == want["key"], f"{what}: key at {pos}: {m.key!r} != {want['key']!r}"
        assert m.value == want["value"], (
            f"{what}: value at {pos} differs (len {len(m.value or b'')} vs {len(want['value'])})"
        )
        assert m.headers == want["headers"], f"{what}: headers at {pos}: {m.headers!r} != {want['headers']!r}"
    missing = sorted(set(where) - seen)
    assert not missing, f"{what}: {len(missing)} acked messages not consumed, first {missing[:5]}"


def _hw(acked) -> dict:
    ends = {}
    for p, o in acked:
        ends[p] = max(ends.get(p, 0), o + 1)
    return ends


@pytest.mark.e2e_timeout(240)
def test_round_trip_200k_from_bucket_after_wiping_data_dir(broker_factory, moto_s3, s3_bucket):
    prefix = "cluster-a/sluice"
    b = object_store_broker(
        broker_factory, object_store=f"s3://{s3_bucket}/{prefix}", env=moto_s3.env()
    )
    topic = "s3-roundtrip"
    create_topic(b.bootstrap, topic, PARTITIONS)

    n = 200_000
    msgs = _messages(n, seed=4, lo=180, hi=220)
    producer = make_producer(b.bootstrap, **{"linger.ms": 20})
    acked = produce_indexed(producer, topic, msgs, timeout=150)
    ends = _hw(acked)
    assert sorted(ends) == list(range(PARTITIONS)), f"keys did not spread over partitions: {ends}"
    assert_contiguous_offsets(acked, "delivery reports")

    # Everything reaches the bucket; the index covers every offset.
    wait_uploaded(b.data_dir, topic, ends, timeout=60)
    rows = segments_of(b.data_dir, topic)
    assert_rows_contiguous(rows, {p: 0 for p in ends}, ends, "index rows before restart")
    listed = moto_s3.objects(s3_bucket, prefix + "/")
    data_keys = {k for k in listed if k.startswith(prefix + "/data/") or k.startswith(prefix + "/compacted/")}
    assert data_keys, f"no objects under s3://{s3_bucket}/{prefix}/ after upload: {sorted(listed)[:20]}"
    for r in rows:
        assert f"{prefix}/{r[4]}" in listed, f"index row {r} names an object missing from the bucket"
    # Batched uploads: far fewer objects than produce requests.
    assert len(data_keys) < 200, f"{len(data_keys)} objects for {n} messages: uploads are not batched"
    puts = metric(b, "sluice_object_store_requests_total", op="put", outcome="ok")
    assert puts and puts >= 1, f"no successful PUTs counted: {metric_samples(b, 'sluice_object')}"

    assert b.stop() == 0, f"broker did not exit 0 on SIGTERM\n{b.log_tail()}"

    # Keep only the catalog and the WAL.
    kept = []
    for entry in b.data_dir.iterdir():
        if entry.name.startswith("catalog.db") or entry.name == "wal":
            kept.append(entry.name)
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    assert "catalog.db" in kept, f"no catalog.db in {b.data_dir}: {kept}"
    assert not (b.data_dir / "objects").exists()

    b.restart()
    for p, end in ends.items():
        assert partition_offsets(b.data_dir, topic)[p][1] == end

    consumed = consume_all(b.bootstrap, topic, range(PARTITIONS), expected=n, timeout=120)
    assert len(consumed) == n, f"consumed {len(consumed)} of {n} after the restart"
    _check_consumed(consumed, msgs, acked, "after restart")

    object_reads = metric(b, "sluice_fetch_reads_total", source="object")
    assert object_reads and object_reads > 0, (
        "reads after the restart did not come from objects: "
        f"{metric_samples(b, 'sluice_fetch_reads_total')}"
    )
    # Everything was uploaded before the stop, so the restarted broker has no
    # memory tail at all: not a single read may have been served from memory.
    tail_reads = metric(b, "sluice_fetch_reads_total", source="tail") or 0
    assert tail_reads == 0, (
        f"{tail_reads:g} reads served from the memory tail after a restart with everything uploaded: "
        f"{metric_samples(b, 'sluice_fetch_reads_total')}"
    )
    # The restarted broker's block cache starts empty: its first lookups miss,
    # and every read from objects looks up at least one row.
    hits = metric(b, "sluice_block_cache_lookups_total", outcome="hit") or 0
    misses = metric(b, "sluice_block_cache_lookups_total", outcome="miss") or 0
    assert misses > 0 and hits + misses >= object_reads, (
        f"block cache lookups (hit {hits:g}, miss {misses:g}) do not cover {object_reads:g} reads from objects: "
        f"{metric_samples(b, 'sluice_block_cache')}"
    )
    gets = metric(b, "sluice_object_store_requests_total", op="get", outcome="ok")
    assert gets and gets > 0, f"no GETs against the bucket: {metric_samples(b, 'sluice_object_store')}"
    # Nothing was re-uploaded from anywhere but the bucket: the keys are the same.
    after = moto_s3.objects(s3_bucket, prefix + "/")
    for r in segments_of(b.data_dir, topic):
        assert f"{prefix}/{r[4]}" in after, f"index row {r} names an object missing from the bucket"


@pytest.mark.e2e_timeout(180)
def test_compaction_reduces_objects_and_keeps_every_offset(broker_factory, moto_s3, s3_bucket):
    prefix = "compaction"
    b = object_store_broker(
        broker_factory,
        object_store=f"s3://{s3_bucket}/{prefix}",
        env=moto_s3.env(),
        args=[
            "--maintenance-interval-ms", "1000",
            "--compaction-min-bytes", "1",
            "--gc-grace-ms", "500",
            "--upload-interval-ms", "50",
        ],
    )
    topic = "s3-compaction"
    create_topic(b.bootstrap, topic, PARTITIONS)
    tid = topic_id(b.data_dir, topic).replace("-", "")

    def store_objects():
        keys = moto_s3.objects(s3_bucket, prefix + "/")
        data = [k for k in keys if k.startswith(f"{prefix}/data/")]
        comp = [k for k in keys if k.startswith(f"{prefix}/compacted/")]
        return data, comp

    rounds, per_partition = 60, 40
    msgs, acked = [], []
    producer = make_producer(b.bootstrap, **{"linger.ms": 0})
    peak = 0
    for r in range(rounds):
        batch = []
        for p in range(PARTITIONS):
            for j in range(per_partition):
                i = len(msgs) + len(batch)
                batch.append(
                    {
                        "partition": p,
                        "key": f"r{r}-p{p}-{j}".encode(),
                        "value": f"round {r} partition {p} message {j} #{i} ".encode() * 4,
                        "headers": [("round", str(r).encode())],
                    }
                )
        acked += produce_indexed(producer, topic, batch, timeout=30)
        msgs += batch
        # Let this round become its own upload object(s).
        wait_uploaded(b.data_dir, topic, _hw(acked), timeout=30, interval=0.02)
        if r % 10 == 9:
            data, comp = store_objects()
            peak = max(peak, len(data) + len(comp))
    ends = _hw(acked)
    assert ends == {p: rounds * per_partition for p in range(PARTITIONS)}, ends
    data, comp = store_objects()
    at_end = len(data) + len(comp)
    peak = max(peak, at_end)

    def compacted_enough():
        data, comp = store_objects()
        known = {k for (k,) in catalog_query(b.data_dir, "SELECT key FROM objects")}
        listed = {k[len(prefix) + 1:] for k in data + comp}
        # Compacted objects exist, few data objects are left and GC is done.
        if len(comp) >= PARTITIONS and len(data) <= PARTITIONS and listed == known:
            return data, comp
        return None

    data, comp = wait_for(
        compacted_enough,
        60,
        "compaction + garbage collection",
        interval=0.5,
        describe=lambda: (
            f"store: data={len(store_objects()[0])} compacted={len(store_objects()[1])}, "
            f"catalog objects={catalog_query(b.data_dir, 'SELECT count(*) FROM objects')}"
        ),
    )
    written = metric(b, "sluice_objects_written_total") or 0
    uploads = int(written) - len(comp)  # compacted objects are never rewritten here
    total = len(data) + len(comp)
    summary = (
        f"{uploads} upload objects written, {len(comp)} compacted objects; store now holds "
        f"{total} (data {len(data)}), {at_end} when producing ended, peak seen {peak}"
    )
    assert uploads >= rounds, f"expected at least one upload per round: {summary}"
    assert total * 2 < uploads, f"compaction did not reduce the object count enough: {summary}"
    assert total <= at_end, f"object count grew after producing ended: {summary}"
    for k in comp:
        rest = k[len(prefix) + 1:]
        parts = rest.split("/")
        assert parts[0] == "compacted" and parts[1] == tid and parts[2] in {str(p) for p in range(PARTITIONS)}, (
            f"unexpected compacted object key {k!r} (topic id {tid})"
        )
    rows = segments_of(b.data_dir, topic)
    assert_rows_contiguous(rows, {p: 0 for p in ends}, ends, "index rows after compaction")
    for p in range(PARTITIONS):
        n_rows = sum(1 for r in rows if r[0] == p)
        assert n_rows * 2 <= rounds, f"partition {p} still has {n_rows} index rows for {rounds} uploads"
    compacted_rows = [r for r in rows if r[4].startswith("compacted/")]
    assert compacted_rows, f"no index row points at a compacted object: {rows[:10]}"
    for r in compacted_rows:
        assert r[4].split("/")[2] == str(r[0]), f"row of partition {r[0]} in another partition's object: {r}"

    consumed = consume_all(b.bootstrap, topic, range(PARTITIONS), expected=len(msgs), timeout=60)
    assert_contiguous_offsets([(m.partition, m.offset) for m in consumed], "after compaction")
    assert len(consumed) == len(msgs), f"consumed {len(consumed)} of {len(msgs)}"
    _check_consumed(consumed, msgs, acked, "after compaction")

    # And once more after a restart (catalog state only, empty tail).
    assert b.stop() == 0
    b.restart()
    consumed = consume_all(b.bootstrap, topic, range(PARTITIONS), expected=len(msgs), timeout=60)
    assert len(consumed) == len(msgs), f"consumed {len(consumed)} of {len(msgs)} after restart"
    _check_consumed(consumed, msgs, acked, "after compaction and restart")


def _wait_exit(b, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc = b.proc.poll()
        if rc is not None:
            b._close_log()
            return rc
        time.sleep(0.1)
    raise AssertionError(
        f"sluice serve still running {timeout:.0f}s after start with an unusable object store\n"
        f"--- broker log ---\n{b.log_tail()}"
    )


@pytest.mark.e2e_timeout(120)
def test_missing_bucket_fails_start_up(broker_factory, moto_s3):
    bucket = f"sluice-e2e-missing-{uuid.uuid4().hex[:10]}"
    b = object_store_broker(
        broker_factory, object_store=f"s3://{bucket}/p", env=moto_s3.env(), start=False
    )
    b.start(wait=False)
    rc = _wait_exit(b, 60)
    log = b.log_text()
    assert rc != 0, f"sluice serve exited 0 with a missing bucket\n{log}"
    assert bucket in log, f"the start-up error does not name the bucket {bucket}:\n{log}"
    assert "NoSuchBucket" in log or "bucket does not exist" in log.lower(), (
        f"the start-up error does not say the bucket is missing:\n{log}"
    )
    assert "sluice is serving" not in log, log


@pytest.mark.e2e_timeout(120)
def test_unreachable_endpoint_fails_start_up(broker_factory, moto_s3, s3_bucket):
    from sluice_proc import free_port

    dead = free_port()  # nothing listens there
    env = dict(moto_s3.env(), AWS_ENDPOINT_URL=f"http://127.0.0.1:{dead}")
    b = object_store_broker(
        broker_factory, object_store=f"s3://{s3_bucket}/p", env=env, start=False
    )
    b.start(wait=False)
    rc = _wait_exit(b, 90)
    log = b.log_text()
    assert rc != 0, f"sluice serve exited 0 with an unreachable endpoint\n{log}"
    assert f"127.0.0.1:{dead}" in log, f"the start-up error does not name the endpoint:\n{log}"
    assert "sluice is serving" not in log, log


@pytest.mark.e2e_timeout(120)
def test_orphaned_objects_are_collected_at_start_up(broker_factory, moto_s3, s3_bucket):
    prefix = "orphans"
    b = object_store_broker(
        broker_factory, object_store=f"s3://{s3_bucket}/{prefix}", env=moto_s3.env()
    )
    topic = "s3-orphans"
    create_topic(b.bootstrap, topic, 2)
    msgs = [
        {"partition": i % 2, "key": f"k{i}".encode(), "value": f"value-{i}".encode() * 10, "headers": []}
        for i in range(2000)
    ]
    producer = make_producer(b.bootstrap)
    acked = produce_indexed(producer, topic, msgs, timeout=60)
    ends = _hw(acked)
    wait_uploaded(b.data_dir, topic, ends)
    assert b.stop() == 0

    before = moto_s3.objects(s3_bucket, prefix + "/")
    known = {f"{prefix}/{k}" for (k,) in catalog_query(b.data_dir, "SELECT key FROM objects")}
    assert known and known <= set(before), f"catalog objects {known} not all in the bucket {before}"
    junk = {
        f"{prefix}/data/0000000000001-{uuid.uuid4().hex}.obj": b"junk upload",
        f"{prefix}/data/zz-not-even-a-sluice-name": b"x" * 1000,
        f"{prefix}/compacted/{uuid.uuid4().hex}/0/00000000000000000000-00000000000000000009-junk.obj": b"junk",
    }
    foreign = {
        f"{prefix}/notes/keep-me.txt": b"not sluice's",
        "elsewhere/data/0000000000001-keep.obj": b"outside the prefix",
        "top-level.txt": b"outside the prefix",
    }
    for k, v in {**junk, **foreign}.items():
        moto_s3.put(s3_bucket, k, v)

    b.restart()
    after = moto_s3.objects(s3_bucket, "")
    leftover = sorted(set(junk) & set(after))
    assert not leftover, f"orphaned objects survived the restart: {leftover}\n{b.log_tail()}"
    for k in foreign:
        assert k in after, f"{k} (not under data/ or compacted/ of this prefix) was deleted"
        assert moto_s3.get(s3_bucket, k) == foreign[k]
    for k in known:
        assert k in after, f"object {k} known to the catalog was deleted at start-up"
    consumed = consume_all(b.bootstrap, topic, range(2), expected=len(msgs), timeout=60)
    assert len(consumed) == len(msgs)
    for m in consumed:
        i = int(m.key[1:])
        assert (m.partition, m.offset) == acked[i] and m.value == msgs[i]["value"], m


def _fill(b, topic, partitions, per_partition_bytes, size=1024):
    msgs = [
        {"partition": i % partitions, "value": i.to_bytes(8, "big") + bytes([i % 251]) * (size - 8)}
        for i in range(partitions * per_partition_bytes // size)
    ]
    producer = make_producer(b.bootstrap, **{"linger.ms": 20})
    acked = produce_indexed(producer, topic, msgs, timeout=120)
    wait_uploaded(b.data_dir, topic, _hw(acked), timeout=120)
    return msgs, acked


@pytest.mark.e2e_timeout(180)
def test_block_cache_stays_within_its_budget_during_catch_up(broker_factory, moto_s3, s3_bucket):
    budget = 4 * MiB
    b = object_store_broker(
        broker_factory,
        object_store=f"s3://{s3_bucket}/cache",
        env=moto_s3.env(),
        args=["--tail-cache-bytes", str(budget), "--block-cache-bytes", str(budget),
              "--maintenance-interval-ms", "300"],
    )
    topic = "block-cache"
    create_topic(b.bootstrap, topic, PARTITIONS)
    msgs, acked = _fill(b, topic, PARTITIONS, 10 * MiB)
    seen = []

    def sample():
        v = metric(b, "sluice_memory_bytes", kind="block_cache")
        if v is not None:
            seen.append(v)

    # Read everything from the start: most of it only lives in objects.
    c = make_consumer(b.bootstrap, **{"enable.partition.eof": False})
    got = {}
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 90
        last = 0.0
        while len(got) < len(msgs) and time.monotonic() < deadline:
            for m in c.consume(2000, timeout=0.3):
                assert m.error() is None, m.error()
                got[(m.partition(), m.offset())] = m.value()
            if time.monotonic() - last > 0.3:
                last = time.monotonic()
                sample()
    finally:
        c.close()
    time.sleep(0.7)
    sample()
    assert len(got) == len(msgs), f"read {len(got)} of {len(msgs)}"
    for i, at in enumerate(acked):
        assert got[at] == msgs[i]["value"], f"message {i} at {at} differs"
    reads = metric(b, "sluice_fetch_reads_total", source="object") or 0
    assert reads > 0, f"no reads from objects: {metric_samples(b, 'sluice_fetch_reads_total')}"
    assert seen and max(seen) > 0, f"block cache never used: {seen}"
    assert max(seen) <= budget, f"block cache held up to {max(seen):.0f} bytes with a {budget} budget"


@pytest.mark.e2e_timeout(180)
def test_tail_cache_stays_within_its_budget_with_many_partitions(broker_factory, moto_s3, s3_bucket):
    """--tail-cache-bytes bounds the memory of uploaded tail data, however
    many partitions share it."""
    budget, partitions = 4 * MiB, 32
    b = object_store_broker(
        broker_factory,
        object_store=f"s3://{s3_bucket}/tail",
        env=moto_s3.env(),
        args=["--tail-cache-bytes", str(budget)],
    )
    topic = "many-partitions"
    create_topic(b.bootstrap, topic, partitions)
    _fill(b, topic, partitions, 2 * MiB)
    tail = metric(b, "sluice_memory_bytes", kind="tail_cache")
    unuploaded = metric(b, "sluice_memory_bytes", kind="unuploaded")
    assert unuploaded == 0, f"everything is uploaded, yet unuploaded={unuploaded}"
    assert tail is not None and tail <= budget + MiB, (
        f"uploaded tail data held in memory: {tail / MiB:.1f} MiB with --tail-cache-bytes "
        f"{budget / MiB:.0f} MiB over {partitions} partitions"
    )
