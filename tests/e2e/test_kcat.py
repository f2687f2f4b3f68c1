"""Debian's kcat (librdkafka 2.0.2) against a real sluice broker.

100,000 keyed messages with headers are produced with `kcat -P` per codec and
read back with `kcat -C -e -o beginning -f ...`; payloads and keys must come
back byte-identical with the headers, in order, with contiguous offsets and
plausible timestamps."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import defaultdict

import pytest

from helpers import create_topic, payloads

N_MESSAGES = 100_000
PARTITIONS = 3
CODECS = ["gzip", "snappy", "lz4", "zstd"]
HEADERS = [("trace", "abc-123"), ("origin", "kcat-e2e")]
# kcat -P reads newline-delimited lines and splits key from value at ':'.
FORBIDDEN = b"\n\r:\x00"
CONSUME_FORMAT = "P%p O%o T%T K%K S%S H%h\\t%k%s\\n"


def kcat_bin() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat not found on PATH: run scripts/install-test-deps.sh", pytrace=False)
    return path


def run_kcat(args, input_bytes=None, timeout=180.0):
    proc = subprocess.run(
        [kcat_bin(), *args],
        input=input_bytes,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=timeout,
    )
    return proc


def parse_kcat_output(out: bytes):
    """Parse records printed with CONSUME_FORMAT; lengths make it binary-safe."""
    recs = []
    pos = 0
    while pos < len(out):
        tab = out.index(b"\t", pos)
        meta = out[pos:tab].split(b" ")
        assert len(meta) == 6, f"unexpected kcat record prefix {out[pos:tab][:200]!r}"
        fields = {f[:1]: f[1:] for f in meta}
        klen, slen = int(fields[b"K"]), int(fields[b"S"])
        start = tab + 1
        key = out[start : start + klen] if klen >= 0 else None
        start += max(klen, 0)
        value = out[start : start + slen] if slen >= 0 else None
        end = start + max(slen, 0)
        assert out[end : end + 1] == b"\n", f"record at {pos} not newline terminated"
        recs.append(
            {
                "partition": int(fields[b"P"]),
                "offset": int(fields[b"O"]),
                "timestamp": int(fields[b"T"]),
                "headers": fields[b"H"].decode("utf-8", "replace"),
                "key": key,
                "value": value,
            }
        )
        pos = end + 1
    return recs


@pytest.mark.e2e_timeout(300)
@pytest.mark.parametrize("codec", CODECS)
def test_kcat_produce_consume_100k(broker, codec):
    topic = f"kcat-{codec}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    values = payloads(seed=200 + CODECS.index(codec), count=N_MESSAGES, forbidden=FORBIDDEN)
    keys = [b"key-%06d" % i for i in range(N_MESSAGES)]
    stdin = b"".join(k + b":" + v + b"\n" for k, v in zip(keys, values))

    common = ["-b", broker.bootstrap, "-X", "broker.address.family=v4", "-t", topic]
    header_args = []
    for name, val in HEADERS:
        header_args += ["-H", f"{name}={val}"]
    t_start = int(time.time() * 1000)
    prod = run_kcat(
        ["-P", *common, "-K", ":", "-z", codec, *header_args,
         "-X", "linger.ms=20", "-X", "acks=all", "-X", "batch.num.messages=10000",
         "-X", "message.timeout.ms=60000"],
        input_bytes=stdin,
    )
    t_end = int(time.time() * 1000)
    assert prod.returncode == 0, f"kcat -P exit {prod.returncode}: {prod.stderr.decode()[-3000:]}"
    assert b"ERROR" not in prod.stderr and b"failed" not in prod.stderr.lower(), (
        f"kcat -P reported errors: {prod.stderr.decode()[-3000:]}"
    )

    cons = run_kcat(["-C", *common, "-o", "beginning", "-e", "-q", "-f", CONSUME_FORMAT])
    assert cons.returncode == 0, f"kcat -C exit {cons.returncode}: {cons.stderr.decode()[-3000:]}"
    recs = parse_kcat_output(cons.stdout)

    assert len(recs) == N_MESSAGES, f"kcat consumed {len(recs)} of {N_MESSAGES} ({codec})"
    got_keys = {r["key"] for r in recs}
    assert len(got_keys) == N_MESSAGES, f"{N_MESSAGES - len(got_keys)} duplicate keys"

    want_headers = ",".join(f"{n}={v}" for n, v in HEADERS)
    by_part = defaultdict(list)
    bad = []
    for r in recs:
        by_part[r["partition"]].append(r)
        i = int(r["key"][4:])
        if r["key"] != keys[i] or r["value"] != values[i]:
            bad.append(f"key {r['key']!r}: value differs")
        if r["headers"] != want_headers:
            bad.append(f"key {r['key']!r}: headers {r['headers']!r}")
        if not (t_start - 5000 <= r["timestamp"] <= t_end + 5000):
            bad.append(f"key {r['key']!r}: timestamp {r['timestamp']} outside [{t_start}, {t_end}]")
    assert not bad, f"{len(bad)} bad records, first: {bad[:5]}"

    assert sorted(by_part) == list(range(PARTITIONS)), f"partitions seen: {sorted(by_part)}"
    for p, rs in by_part.items():
        offsets = [r["offset"] for r in rs]
        assert sorted(offsets) == list(range(len(rs))), (
            f"partition {p}: offsets not contiguous from 0 (n={len(rs)}, max={max(offsets)})"
        )
        rs.sort(key=lambda r: r["offset"])
        idx = [int(r["key"][4:]) for r in rs]
        if idx != sorted(idx):
            k = next(j for j in range(1, len(idx)) if idx[j] < idx[j - 1])
            raise AssertionError(
                f"partition {p}: log is not in produce order (one producer, no retries): "
                f"offset {rs[k - 1]['offset']} holds message {idx[k - 1]}, "
                f"offset {rs[k]['offset']} holds message {idx[k]}"
            )
        ts = [r["timestamp"] for r in rs]
        assert ts == sorted(ts), f"partition {p}: timestamps go backwards"


def test_kcat_metadata_listing(broker):
    create_topic(broker.bootstrap, "kcat-listed", 3)
    proc = run_kcat(["-L", "-J", "-b", broker.bootstrap, "-X", "broker.address.family=v4"], timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    md = json.loads(proc.stdout)
    brokers = md["brokers"]
    # One broker, or every broker of a cluster (SLUICE_E2E_CLUSTER).
    expected = sorted(f"127.0.0.1:{b.kafka_port}" for b in getattr(broker, "brokers", [broker]))
    assert sorted(b["name"].split("/")[0] for b in brokers) == expected, brokers
    topics = {t["topic"]: t for t in md["topics"]}
    assert "kcat-listed" in topics, sorted(topics)
    parts = topics["kcat-listed"]["partitions"]
    assert sorted(p["partition"] for p in parts) == [0, 1, 2]
    ids = {b["id"] for b in brokers}
    assert all(p["leader"] in ids for p in parts), parts
