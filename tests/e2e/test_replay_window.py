"""Window replay (issue 19): `sluice replay TOPIC --from --to --into`
(and `POST /v1/replays`, `GET /v1/replays/{id}`, `DELETE` to stop) copies
the records of a time or offset window (end exclusive) into another topic,
keys, values, headers and timestamps byte-identical plus the
`sluice.replay.window` / `sluice.replay.source` provenance headers, with a
header filter, a partition choice and a rate limit. Must-show 4: a
20-minute window out of two hours, stopped at about half and resumed, is
copied exactly once, in order per partition; run again it copies nothing;
`--again` copies it anew. Bad requests answer 404/400 and the CLI names the
problem.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import datetime, timezone

import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

T0 = 1_764_979_200_000  # 2025-12-06T00:00:00Z


def topics(broker, *names, partitions=2):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        f.result(timeout=15)


def fill(broker, topic, n=200, size=100):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, b"%05d" % i + b"x" * size, key=b"k%d" % i, partition=i % 2, timestamp=T0 + i * 1000,
                  headers=[("tenant-id", b"a" if i % 3 == 0 else b"b"), ("i", b"%d" % i)])
    assert p.flush(30) == 0


def read_all(broker, topic, partitions=(0, 1), idle=1.5, timeout=20.0):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    got, eof = [], set()
    try:
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(eof) < len(partitions):
            for m in c.consume(100, timeout=0.5):
                if m.error():
                    eof.add(m.partition())
                    continue
                got.append(m)
    finally:
        c.close()
    return got


def replay(sluice_bin, broker, *args, check=True):
    return subprocess.run([str(sluice_bin), "replay", *args, "--http", f"127.0.0.1:{broker.http_port}"],
                          capture_output=True, text=True, timeout=120, check=check)


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def test_time_window_with_filter(broker, sluice_bin):
    src, dst = f"src-{uuid.uuid4().hex[:6]}", f"dst-{uuid.uuid4().hex[:6]}"
    topics(broker, src, dst)
    fill(broker, src)
    cp = replay(sluice_bin, broker, src, "--from", iso(T0 + 50_000), "--to", str(T0 + 150_000),
                "--into", dst, "--filter", "tenant-id=a")
    assert "written" in cp.stdout, cp.stdout
    want = {i for i in range(50, 150) if i % 3 == 0}
    got = read_all(broker, dst)
    idx = sorted(int(dict(m.headers())["i"]) for m in got)
    assert idx == sorted(want), idx
    src_by_i = {int(dict(m.headers())["i"]): m for m in read_all(broker, src)}
    for m in got:
        i = int(dict(m.headers())["i"])
        s = src_by_i[i]
        provenance = m.headers()[-2:]
        assert provenance[0][0] == "sluice.replay.window" and provenance[0][1].startswith(b"__sluice.replay.")
        assert provenance[1] == ("sluice.replay.source", f"{src}/{s.partition()}/{s.offset()}".encode())
        assert (m.key(), m.value(), m.headers()[:-2], m.timestamp()[1]) == \
            (s.key(), s.value(), s.headers(), s.timestamp()[1]), i


def test_offset_window_partitions_and_rate(broker, sluice_bin):
    src, dst = f"src-{uuid.uuid4().hex[:6]}", f"dst-{uuid.uuid4().hex[:6]}"
    topics(broker, src, dst)
    fill(broker, src, n=200, size=1000)
    started = time.monotonic()
    replay(sluice_bin, broker, src, "--from", "10", "--to", "60", "--partitions", "0", "--into", dst,
           "--max-rate", "0.1")
    elapsed = time.monotonic() - started
    got = read_all(broker, dst)
    # Partition 0 holds the even records; offsets 10..59 there are i = 20..118.
    assert sorted(int(dict(m.headers())["i"]) for m in got) == list(range(20, 120, 2))
    # 50 records of ~1 KB at 0.1 MB/s: at least ~0.4 s.
    assert elapsed >= 0.4, elapsed


def test_replay_api_errors(broker, sluice_bin):
    base = f"http://127.0.0.1:{broker.http_port}/v1/replays"
    r = requests.post(base, json={"topic": "nope", "from": {"offset": 0}, "to": {"offset": 1}, "into": "x"},
                      timeout=10)
    assert r.status_code == 404 and r.json()["message"], r.text
    r = requests.post(base, json={"topic": "nope"}, timeout=10)
    assert r.status_code == 400, r.text
    r = requests.get(f"{base}/no-such-id", timeout=10)
    assert r.status_code == 404, r.text
    cp = replay(sluice_bin, broker, "x", "--from", "yesterday", "--to", "5", "--into", "y", check=False)
    assert cp.returncode != 0 and "--from" in cp.stderr, cp.stderr


def test_window_stopped_resumed_and_not_repeated(broker, sluice_bin):
    """Must-show 4: two hours of records (one a second over two
    partitions), a 20-minute window replayed at a limited rate, stopped at
    about half through the API, resumed by running the same command: the
    target holds exactly the window, each record once, in source order per
    partition. The same command again copies nothing; --again copies it
    anew."""
    src, dst = f"src-{uuid.uuid4().hex[:6]}", f"dst-{uuid.uuid4().hex[:6]}"
    topics(broker, src, dst)
    fill(broker, src, n=7200, size=1000)
    lo, hi = T0 + 3000 * 1000, T0 + 4200 * 1000  # records 3000..4199
    want = set(range(3000, 4200))
    base = f"http://127.0.0.1:{broker.http_port}/v1/replays"
    body = {"topic": src, "from": {"time_ms": lo}, "to": {"time_ms": hi}, "into": dst,
            "max_rate_bytes": 400_000}
    r = requests.post(base, json=body, timeout=10)
    assert r.status_code == 202, r.text
    run = r.json()
    deadline = time.monotonic() + 60
    while True:
        st = requests.get(f"{base}/{run['id']}", timeout=10).json()
        if st["records_written"] >= len(want) * 0.4 or st["state"] != "running":
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    assert st["state"] == "running", f"finished before it could be stopped: {st}"
    requests.delete(f"{base}/{run['id']}", timeout=10).raise_for_status()
    while st["state"] in ("running", "stopping"):
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
        st = requests.get(f"{base}/{run['id']}", timeout=10).json()
    assert st["state"] == "stopped", st
    first = st["records_written"]
    assert 0 < first < len(want), st

    cp = replay(sluice_bin, broker, src, "--from", iso(lo), "--to", str(hi), "--into", dst,
                "--max-rate", "0.4")
    assert "resuming window" in cp.stderr, cp.stderr
    got = read_all(broker, dst, timeout=60)
    idx = [int(dict(m.headers())["i"]) for m in got]
    assert len(idx) == len(want) and set(idx) == want, (
        f"{len(idx)} records for a window of {len(want)}: {len(idx) - len(set(idx))} duplicates, "
        f"{len(want - set(idx))} missing")
    # In order per source partition within each target partition.
    for tp in (0, 1):
        for sp in (0, 1):
            seq = [int(dict(m.headers())["sluice.replay.source"].decode().rsplit("/", 1)[1])
                   for m in got if m.partition() == tp
                   and dict(m.headers())["sluice.replay.source"].decode().split("/")[1] == str(sp)]
            assert seq == sorted(seq), (tp, sp)

    cp = replay(sluice_bin, broker, src, "--from", iso(lo), "--to", str(hi), "--into", dst)
    assert "0 of 0 records read written" in cp.stdout, cp.stdout
    assert len(read_all(broker, dst)) == len(want)
    cp = replay(sluice_bin, broker, src, "--from", iso(lo), "--to", str(hi), "--into", dst, "--again")
    assert f"{len(want)} of {len(want)} records read written" in cp.stdout, cp.stdout
    assert len(read_all(broker, dst, timeout=60)) == 2 * len(want)
