"""Cluster upkeep killed in the middle: the broker holding the
`storage-upkeep` job is slowed down (every object request waits) so that a
compaction, retention or garbage-collection pass is under way, then killed
with SIGKILL and started again. Afterwards every offset between each
partition's log start and high watermark reads back with the value that was
acknowledged for it, and, once the garbage collector has had its grace, the
bucket holds no data object that no index row references.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import Producer, TopicPartition

import cluster
import helpers
import s3_server

cluster_env = cluster.cluster_env

pytestmark = pytest.mark.e2e_timeout(300)

GRACE_MS = 2000
UPKEEP_ARGS = [
    "--maintenance-interval-ms", "300",
    "--gc-grace-ms", str(GRACE_MS),
    "--compaction-min-bytes", "65536",
    "--flush-interval-ms", "20",
]
# What each job needs to have work to do.
TOPIC_CONFIGS = {
    "compaction": {},
    "retention": {"retention.bytes": "150000"},
    "garbage-collection": {"retention.ms": "3000"},
}


def holder(c: cluster.Cluster) -> int:
    """Index of the broker holding the upkeep job."""

    def find():
        for b in c.brokers:
            if b.proc is None or b.proc.poll() is not None:
                continue
            view = json.loads(s3_server.http_get(b, "/v1/cluster"))
            held = [x["broker_id"] for x in view["brokers"] if "storage-upkeep" in x["jobs"]]
            if held:
                return held[0]
        return None

    return s3_server.wait_for(find, 15, "an upkeep holder") - 1


def bucket_objects(c: cluster.Cluster) -> set:
    return {
        k for k in c.moto.objects(c.bucket, "cluster/")
        if k.startswith("cluster/data/") or k.startswith("cluster/compacted/")
    }


def referenced(pg, c: cluster.Cluster) -> set:
    db = c.catalog_url.rsplit("/", 1)[1]
    return {f"cluster/{k}" for (k,) in pg.query("SELECT DISTINCT object_key FROM segments", db=db)}


def in_progress(c: cluster.Cluster, i: int, job: str, before: dict) -> bool:
    """Whether the slowed-down holder is visibly in the middle of `job`."""
    b = c[i]
    if job == "compaction":
        gets = s3_server.metric(b, "sluice_object_store_requests_total", op="get") or 0
        return gets > before["gets"]
    if job == "retention":
        trimmed = s3_server.metric(b, "kafka_topic_partition_oldest_offset", topic=before["topic"])
        return (trimmed or 0) > 0
    # Garbage collection: some objects gone from the bucket, not all yet.
    return len(before["objects"] - bucket_objects(c)) > 0


def watermarks(c: cluster.Cluster, topic: str, part: int) -> tuple:
    consumer = helpers.make_consumer(c.bootstrap)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=20, cached=False)
    finally:
        consumer.close()


def settled_watermarks(c: cluster.Cluster, topic: str, part: int) -> tuple:
    """The watermarks once the log start has stopped moving for 2 s (the
    restarted or new upkeep holder finished its retention pass)."""
    last = {"w": None, "since": time.monotonic()}

    def stable():
        w = watermarks(c, topic, part)
        if w != last["w"]:
            last["w"], last["since"] = w, time.monotonic()
        return w if time.monotonic() - last["since"] >= 2.0 else None

    return s3_server.wait_for(stable, 60, f"{topic}[{part}]'s log start to settle", interval=0.3)


@pytest.mark.parametrize("job", ["compaction", "retention", "garbage-collection"])
def test_a_kill_in_the_middle_of_upkeep_loses_and_leaks_nothing(broker_factory, cluster_env, job):
    pg, _ = cluster_env
    c = cluster.make_cluster(
        broker_factory, cluster_env, args=UPKEEP_ARGS, env={"SLUICE_FAULT_INJECTION": "1"}
    ).start()
    t = f"upkeep-{uuid.uuid4().hex[:6]}"
    helpers.create_topic(c[0].bootstrap, t, partitions=3, config=TOPIC_CONFIGS[job])
    i = holder(c)
    # Slow the holder down first, so its next pass takes seconds.
    s3_server.set_fault(c[i], "delay", delay_ms=250)
    acked = {}
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 2})
    for round_ in range(20):
        msgs = [{"value": b"%d-%d-" % (round_, n) + b"x" * 900, "partition": n % 3} for n in range(150)]
        for d in helpers.produce_all(p, t, msgs):
            acked[(d.partition, d.offset)] = d.value
    before = {
        "gets": s3_server.metric(c[i], "sluice_object_store_requests_total", op="get") or 0,
        "topic": t,
        "objects": bucket_objects(c),
    }
    if job == "garbage-collection":
        time.sleep(3.5)  # the records pass retention.ms: their objects become garbage
    s3_server.wait_for(lambda: in_progress(c, i, job, before), 60, f"{job} under way on the holder")
    c[i].kill9()
    c[i].start()
    # A holder (maybe another) finishes the work; then everything reads back
    # and, after the grace, nothing unreferenced is left in the bucket.
    for part in range(3):
        start, end = settled_watermarks(c, t, part)
        got = helpers.consume_all(c.bootstrap, t, [part], expected=end - start)
        offsets = [m.offset for m in got]
        # Retention may still move the log start while this reads (it is
        # allowed to); what it may not do is leave a hole or lose a record
        # that is still inside the log.
        start_after, end_after = watermarks(c, t, part)
        assert end_after == end, f"partition {part}: high watermark moved {end} -> {end_after}"
        if start_after == end and not offsets:
            continue  # retention removed everything (retention.ms passed): nothing to read
        assert offsets and offsets[0] <= start_after, (
            f"partition {part}: the log starts at {start_after} but the first record read is {offsets[:1]}"
        )
        assert offsets == list(range(offsets[0], end)), (
            f"partition {part}: offsets {offsets[0]}..{end} expected, got {offsets[:3]}...{offsets[-3:]} ({len(offsets)})"
        )
        for m in got:
            assert acked.get((part, m.offset)) == m.value, f"partition {part} offset {m.offset} differs"
    s3_server.wait_for(
        lambda: bucket_objects(c) <= referenced(pg, c),
        30,
        "the bucket to hold only referenced objects",
        describe=lambda: f"unreferenced: {sorted(bucket_objects(c) - referenced(pg, c))[:5]}",
    )
