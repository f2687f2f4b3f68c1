"""Malformed and hostile input on raw sockets. After each case a confluent-kafka
client that was connected before (the canary) must still produce and consume,
and the broker process must still be alive."""

from __future__ import annotations

import random
import socket
import struct

import pytest

import kafka_wire as kw
from helpers import Canary, create_topic


@pytest.fixture
def canary(broker):
    c = Canary(broker.bootstrap)
    yield c
    c.close()


def connect(broker, timeout=10.0) -> kw.WireConnection:
    return kw.WireConnection("127.0.0.1", broker.kafka_port, timeout=timeout)


def still_healthy(broker, canary, context):
    broker.assert_alive(context)
    # A fresh raw connection works too.
    with connect(broker) as c:
        res = c.api_versions(0)
        assert res.error_code == kw.NONE, f"ApiVersions v0 after {context}: error {res.error_code}"
    canary.check(context)
    broker.assert_alive(context)


def closed_or_answered(conn: kw.WireConnection, corr: int, timeout: float = 5.0) -> str:
    """The broker may either close the connection or answer with an error
    frame carrying our correlation id; anything else fails."""
    try:
        frame = conn.recv_frame(timeout=timeout)
    except kw.ConnectionClosed:
        return "closed"
    except socket.timeout:
        raise AssertionError(f"broker neither answered nor closed within {timeout}s")
    got = struct.unpack(">i", frame[:4])[0]
    assert got == corr, f"answer carries correlation id {got}, expected {corr}"
    return "answered"


def test_truncated_frame_then_close(broker, canary):
    with connect(broker) as c:
        # Length prefix says 100 bytes, only 10 arrive, then the client goes away.
        c.send_raw(struct.pack(">i", 100) + b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x00")
    with connect(broker) as c:
        # Truncated inside the 4-byte length prefix itself.
        c.send_raw(b"\x00\x00")
    still_healthy(broker, canary, "truncated frame")


@pytest.mark.parametrize("prefix", [0x7FFFFFFF, 0x40000000, 0x80000000, 0xFFFFFFFF],
                         ids=["2GiB-1", "1GiB", "int32-min", "minus-1"])
def test_oversize_or_negative_length_prefix_closes_connection(broker, canary, prefix):
    rss_before = broker.rss_kib()
    with connect(broker) as c:
        c.send_raw(struct.pack(">I", prefix) + b"\x00\x12\x00\x00")
        assert c.wait_closed(timeout=5.0), (
            f"broker kept the connection open after length prefix 0x{prefix:08x}"
        )
    rss_after = broker.rss_kib()
    assert rss_after - rss_before < 256 * 1024, (
        f"broker RSS grew from {rss_before} KiB to {rss_after} KiB after a 0x{prefix:08x} length prefix"
    )
    still_healthy(broker, canary, f"length prefix 0x{prefix:08x}")


def test_corrupt_crc_gets_corrupt_message(broker, canary):
    create_topic(broker.bootstrap, "crc", 1)
    with connect(broker) as c:
        good = kw.build_record_batch([kw.Record(b"k", b"good")])
        r = c.produce("crc", 0, good)
        assert (r.error_code, r.base_offset) == (kw.NONE, 0), r
        bad = kw.build_record_batch([kw.Record(b"k", b"bad value")], corrupt_crc=True)
        r = c.produce("crc", 0, bad)
        assert r.error_code == kw.CORRUPT_MESSAGE, f"corrupt CRC answered with {r}"
        # A payload byte flipped after the CRC was computed.
        flipped = bytearray(kw.build_record_batch([kw.Record(b"k", b"flip me")]))
        flipped[-3] ^= 0x01
        r = c.produce("crc", 0, bytes(flipped))
        assert r.error_code == kw.CORRUPT_MESSAGE, f"flipped payload byte answered with {r}"
        # Nothing was appended: the next good batch lands at offset 1.
        r = c.produce("crc", 0, good)
        assert (r.error_code, r.base_offset) == (kw.NONE, 1), f"after corrupt batches: {r}"
    still_healthy(broker, canary, "corrupt CRC")


def test_unknown_api_key(broker, canary):
    with connect(broker) as c:
        corr = c.send_request(999, 0, b"")
        how = closed_or_answered(c, corr)
    still_healthy(broker, canary, f"unknown API key 999 ({how})")


def test_unsupported_api_versions_version_answers_v0_layout(broker, canary):
    with connect(broker) as c:
        # v99 with a v2 (flexible) header and v3-style body, as a newer client would send.
        body = kw.Writer().string("e2e", compact=True).string("9", compact=True).tags().getvalue()
        corr = c.send_request(kw.API_API_VERSIONS, 99, body, flexible_header=True)
        frame = c.recv_frame(timeout=5)
        r = kw.Reader(frame)
        assert r.int32() == corr
        res = kw.parse_api_versions_body(r, 0)
        assert res.error_code == kw.UNSUPPORTED_VERSION, f"ApiVersions v99: error {res.error_code}"
        assert r.remaining() == 0, f"{r.remaining()} trailing bytes after the v0 layout"
        apis = res.apis
        assert kw.API_API_VERSIONS in apis, f"advertised keys: {sorted(apis)}"
        av = apis[kw.API_API_VERSIONS]
        assert av.min_version == 0 and av.max_version >= 3, av
        assert apis[kw.API_PRODUCE].max_version >= 3, apis[kw.API_PRODUCE]
        assert apis[kw.API_FETCH].max_version >= 4, apis[kw.API_FETCH]
        for k in (kw.API_METADATA, kw.API_LIST_OFFSETS, kw.API_CREATE_TOPICS, kw.API_INIT_PRODUCER_ID,
                  20, 37, 32, 44, 60):
            assert k in apis, f"API key {k} not advertised: {sorted(apis)}"
        # Like Kafka, the connection stays usable: the client retries lower.
        for v in (0, 1, 2, 3):
            res = c.api_versions(v)
            assert res.error_code == kw.NONE, f"ApiVersions v{v} on the same connection: {res.error_code}"
            assert res.apis.keys() == apis.keys()
    still_healthy(broker, canary, "ApiVersions v99")


def test_unsupported_version_of_other_api(broker, canary):
    with connect(broker) as c:
        corr = c.send_request(kw.API_METADATA, 99, b"\x00\x00\x00\x00\x01", flexible_header=False)
        how = closed_or_answered(c, corr)
    with connect(broker) as c:
        # Produce v0..v2 (message format v0/v1) are below the supported range.
        body = kw.Writer().int16(1).int32(1000).int32(0).getvalue()
        corr = c.send_request(kw.API_PRODUCE, 0, body, flexible_header=False)
        how2 = closed_or_answered(c, corr)
    still_healthy(broker, canary, f"Metadata v99 ({how}), Produce v0 ({how2})")


def test_random_bytes(broker, canary):
    rng = random.Random(1234)
    for n in (1, 7, 64, 4096, 65536):
        with connect(broker) as c:
            try:
                c.send_raw(rng.randbytes(n))
                c.wait_closed(timeout=0.5)
            except OSError:
                pass  # the broker may reset the connection mid-send
        broker.assert_alive(f"after {n} random bytes")
    # Random payload inside a well-formed frame with a valid header.
    for api_key, version in ((0, 7), (1, 11), (3, 9), (19, 5), (22, 1), (18, 3)):
        with connect(broker) as c:
            try:
                c.send_request(api_key, version, rng.randbytes(200))
                c.wait_closed(timeout=0.5)
            except OSError:
                pass
        broker.assert_alive(f"after random body for API {api_key} v{version}")
    still_healthy(broker, canary, "random bytes")


def test_message_larger_than_max_gets_message_too_large(broker, canary):
    create_topic(broker.bootstrap, "big", 1)
    with connect(broker, timeout=30) as c:
        ok = kw.build_record_batch([kw.Record(b"k", b"x" * 1_000_000)])
        r = c.produce("big", 0, ok)
        assert (r.error_code, r.base_offset) == (kw.NONE, 0), f"1,000,000-byte record: {r}"
        big = kw.build_record_batch([kw.Record(b"k", b"x" * 1_100_000)])
        r = c.produce("big", 0, big)
        assert r.error_code == kw.MESSAGE_TOO_LARGE, f"{len(big)}-byte batch: {r}"
        r = c.produce("big", 0, kw.build_record_batch([kw.Record(b"k", b"small")]))
        assert (r.error_code, r.base_offset) == (kw.NONE, 1), f"after the rejected batch: {r}"
    still_healthy(broker, canary, "message too large")


def test_produce_to_unknown_partition(broker, canary):
    create_topic(broker.bootstrap, "one-part", 1)
    with connect(broker) as c:
        batch = kw.build_record_batch([kw.Record(b"k", b"v")])
        for partition in (1, 7, 2**31 - 1, -1):
            r = c.produce("one-part", partition, batch)
            assert r.error_code == kw.UNKNOWN_TOPIC_OR_PARTITION, f"partition {partition}: {r}"
    still_healthy(broker, canary, "unknown partition")


def test_many_concurrent_bad_connections(broker, canary):
    """Many half-open connections at once must not stop service."""
    conns = []
    try:
        for i in range(200):
            c = connect(broker)
            c.send_raw(struct.pack(">i", 50) + b"\x00" * (i % 40))
            conns.append(c)
        canary.check("200 half-open connections")
    finally:
        for c in conns:
            c.close()
    still_healthy(broker, canary, "200 half-open connections")


def test_auto_create_never_creates_invalid_topic_names(broker, canary):
    """Metadata and Produce may auto-create topics; names that are not legal
    Kafka topic names (and could escape the data dir) must be refused."""
    bad = ["../meta-escape", "a/b", "..", ".", "x" * 250, "nul\x00byte", "back\\slash"]
    with connect(broker) as c:
        md = c.metadata(bad, allow_auto_topic_creation=True)
        for name in bad:
            t = md.topics.get(name)
            assert t is not None, f"metadata answer lacks {name!r}: {sorted(md.topics)}"
            assert t.error_code in (17, kw.UNKNOWN_TOPIC_OR_PARTITION), (
                f"metadata auto-create of {name!r}: error {t.error_code}, expected 17 (INVALID_TOPIC_EXCEPTION)"
            )
        batch = kw.build_record_batch([kw.Record(b"k", b"v")])
        for name in ("../produce-escape", "p/q", ".."):
            r = c.produce(name, 0, batch)
            assert r.error_code in (17, kw.UNKNOWN_TOPIC_OR_PARTITION), f"produce to {name!r}: {r}"
        listed = c.metadata(None).topics
        assert not set(listed) & set(bad + ["../produce-escape", "p/q"]), f"invalid topics exist: {sorted(listed)}"
    outside = [
        p for p in broker.workdir.parent.rglob("*")
        if "escape" in p.name and broker.data_dir not in p.parents
    ]
    assert not outside, f"files created outside the data dir: {outside}"
    still_healthy(broker, canary, "invalid auto-create names")
