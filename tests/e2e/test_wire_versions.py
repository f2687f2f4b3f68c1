"""Raw protocol at every advertised version: Produce, Fetch, ListOffsets,
Metadata and InitProducerId responses must decode exactly (no missing or
trailing bytes) at each version the broker lists in ApiVersions, and carry the
right data. Clients only ever use one version each; this covers the rest."""

from __future__ import annotations

import time

import pytest

import kafka_wire as kw
from helpers import create_topic

OFFSET_OUT_OF_RANGE = 1


def connect(broker, timeout=10.0) -> kw.WireConnection:
    return kw.WireConnection("127.0.0.1", broker.kafka_port, timeout=timeout)


def versions(conn, api_key, lo, hi):
    rng = conn.negotiated()[api_key]
    vs = list(range(max(lo, rng.min_version), min(hi, rng.max_version) + 1))
    assert vs, f"no version of API {api_key} in {lo}-{hi}; broker offers {rng}"
    return vs


def sample_records(tag: bytes, n: int):
    out = []
    for j in range(n):
        key = None if j == 1 else b"%s-k%d" % (tag, j)
        value = None if j == 2 else b"%s-value-%d-" % (tag, j) + bytes(range(256))
        headers = [("tag", tag), ("j", b"%d" % j)] + ([("nullh", None)] if j == 0 else [])
        out.append(kw.Record(key=key, value=value, headers=headers, timestamp_delta=j))
    return out


def test_produce_every_version(broker):
    create_topic(broker.bootstrap, "produce-versions", 1)
    with connect(broker) as c:
        expected = 0
        for v in versions(c, kw.API_PRODUCE, 3, 12):
            batch = kw.build_record_batch(sample_records(b"v%d" % v, 3))
            r = c.produce("produce-versions", 0, batch, version=v)
            assert (r.error_code, r.base_offset) == (kw.NONE, expected), f"Produce v{v}: {r}"
            if v >= 5:
                assert r.log_start_offset == 0, f"Produce v{v}: log_start_offset {r.log_start_offset}"
            expected += 3
        assert c.list_offsets("produce-versions", 0, -1).offset == expected


def test_produce_acks_zero_sends_no_response(broker):
    create_topic(broker.bootstrap, "acks0", 1)
    with connect(broker) as c:
        v = c.pick_version(kw.API_PRODUCE, 3, 12)
        body = kw.encode_produce_body(
            v, "acks0", 0, kw.build_record_batch([kw.Record(b"k", b"fire-and-forget")]), acks=0
        )
        c.send_request(kw.API_PRODUCE, v, body)
        # The next frame on this connection must answer the next request.
        md = c.metadata(["acks0"])
        assert md.topics["acks0"].error_code == kw.NONE
        deadline = time.monotonic() + 10
        while c.list_offsets("acks0", 0, -1).offset != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.list_offsets("acks0", 0, -1).offset == 1, "acks=0 produce was not appended"


def test_fetch_every_version(broker):
    topic = "fetch-versions"
    create_topic(broker.bootstrap, topic, 1)
    with connect(broker) as c:
        want = []
        ts0 = int(time.time() * 1000) - 60_000
        for i in range(3):
            recs = sample_records(b"b%d" % i, 4)
            r = c.produce(topic, 0, kw.build_record_batch(recs, base_timestamp=ts0 + 100 * i))
            assert r.error_code == kw.NONE, r
            want += [(r.base_offset + j, ts0 + 100 * i + rec.timestamp_delta, rec) for j, rec in enumerate(recs)]
        init = c.init_producer_id()
        idem = sample_records(b"idem", 2)
        r = c.produce(topic, 0, kw.build_record_batch(
            idem, producer_id=init.producer_id, producer_epoch=init.producer_epoch, base_sequence=0,
            base_timestamp=ts0 + 1000))
        assert r.error_code == kw.NONE, r
        want += [(r.base_offset + j, ts0 + 1000 + rec.timestamp_delta, rec) for j, rec in enumerate(idem)]
        hw = len(want)

        for v in versions(c, kw.API_FETCH, 4, 12):
            res = c.fetch(topic, 0, 0, version=v)
            assert (res.top_error_code, res.error_code) == (kw.NONE, kw.NONE), f"Fetch v{v}: {res}"
            assert res.high_watermark == hw, f"Fetch v{v}: high watermark {res.high_watermark}, want {hw}"
            if v >= 5:
                assert res.log_start_offset == 0, f"Fetch v{v}: log_start_offset {res.log_start_offset}"
            batches = kw.decode_record_batches(res.records or b"")
            assert all(b.crc_ok for b in batches), f"Fetch v{v}: batch with a bad CRC"
            got = [(rec.offset, rec.timestamp, rec.key, rec.value, rec.headers) for b in batches for rec in b.records]
            exp = [(o, ts, rec.key, rec.value, list(rec.headers)) for o, ts, rec in want]
            assert got == exp, f"Fetch v{v}: records differ"
            last = batches[-1]
            assert (last.producer_id, last.producer_epoch, last.base_sequence) == (
                init.producer_id, init.producer_epoch, 0), (
                f"Fetch v{v}: idempotent batch header came back as pid {last.producer_id} "
                f"epoch {last.producer_epoch} seq {last.base_sequence}")

            # From the middle of a batch: the data from that offset on is there.
            res = c.fetch(topic, 0, 5, version=v)
            got = [rec.offset for b in kw.decode_record_batches(res.records or b"") for rec in b.records]
            assert [o for o in got if o >= 5] == list(range(5, hw)), f"Fetch v{v} from offset 5: {got}"

            # At the end: no records, no error; past the end: OFFSET_OUT_OF_RANGE.
            t0 = time.monotonic()
            res = c.fetch(topic, 0, hw, version=v, max_wait_ms=300)
            assert time.monotonic() - t0 < 5, f"Fetch v{v} at the end took {time.monotonic() - t0:.1f}s"
            assert res.error_code == kw.NONE and not res.records, f"Fetch v{v} at high watermark: {res}"
            res = c.fetch(topic, 0, hw + 100, version=v)
            assert res.error_code == OFFSET_OUT_OF_RANGE, f"Fetch v{v} past the end: {res}"
            res = c.fetch(topic, 7, 0, version=v)
            assert res.error_code == kw.UNKNOWN_TOPIC_OR_PARTITION, f"Fetch v{v} unknown partition: {res}"

            # KIP-74: the first batch comes back whole even if larger than the limits.
            res = c.fetch(topic, 0, 0, version=v, max_bytes=1, partition_max_bytes=1)
            assert res.error_code == kw.NONE, res
            batches = kw.decode_record_batches(res.records or b"")
            assert batches and batches[0].base_offset == 0, (
                f"Fetch v{v} with max_bytes=1 returned no complete batch ({len(res.records or b'')} bytes): "
                "a consumer could never make progress"
            )


def test_list_offsets_every_version(broker):
    topic = "list-offsets-versions"
    create_topic(broker.bootstrap, topic, 1)
    with connect(broker) as c:
        ts0 = 1_700_000_000_000
        for i in range(5):  # batches of 3 records, timestamps ts0 + 10*i + j
            recs = [kw.Record(b"k", b"v%d-%d" % (i, j), timestamp_delta=j) for j in range(3)]
            r = c.produce(topic, 0, kw.build_record_batch(recs, base_timestamp=ts0 + 10 * i))
            assert r.error_code == kw.NONE, r
        for v in versions(c, kw.API_LIST_OFFSETS, 1, 6):
            res = c.list_offsets(topic, 0, -2, version=v)
            assert (res.error_code, res.offset) == (kw.NONE, 0), f"ListOffsets v{v} earliest: {res}"
            res = c.list_offsets(topic, 0, -1, version=v)
            assert (res.error_code, res.offset) == (kw.NONE, 15), f"ListOffsets v{v} latest: {res}"
            # Exact timestamps, inside batches too.
            for i, j in ((0, 0), (1, 2), (3, 1), (4, 2)):
                res = c.list_offsets(topic, 0, ts0 + 10 * i + j, version=v)
                assert (res.error_code, res.offset, res.timestamp) == (kw.NONE, 3 * i + j, ts0 + 10 * i + j), (
                    f"ListOffsets v{v} ts={ts0 + 10 * i + j}: {res}, want offset {3 * i + j}")
            res = c.list_offsets(topic, 0, ts0 + 15, version=v)  # between batches 1 and 2
            assert (res.error_code, res.offset) == (kw.NONE, 6), f"ListOffsets v{v} between batches: {res}"
            res = c.list_offsets(topic, 0, ts0 + 1_000_000, version=v)
            assert (res.error_code, res.offset) == (kw.NONE, -1), f"ListOffsets v{v} after the end: {res}"
            res = c.list_offsets(topic, 9, -1, version=v)
            assert res.error_code == kw.UNKNOWN_TOPIC_OR_PARTITION, f"ListOffsets v{v} unknown partition: {res}"


def test_metadata_every_version(broker):
    create_topic(broker.bootstrap, "md-a", 2)
    create_topic(broker.bootstrap, "md-b", 3)
    with connect(broker) as c:
        for v in versions(c, kw.API_METADATA, 0, 12):
            md = c.metadata(["md-a", "md-b"], version=v)
            # One broker, or every broker of a cluster (SLUICE_E2E_CLUSTER).
            expected = sorted(("127.0.0.1", b.kafka_port) for b in getattr(broker, "brokers", [broker]))
            assert sorted((h, p) for _, h, p in md.brokers) == expected, f"Metadata v{v}: {md.brokers}"
            nodes = {node for node, _, _ in md.brokers}
            for name, n in (("md-a", 2), ("md-b", 3)):
                t = md.topics.get(name)
                assert t is not None and t.error_code == kw.NONE, f"Metadata v{v} {name}: {t}"
                assert [p.partition for p in t.partitions] == list(range(n)), f"Metadata v{v} {name}: {t}"
                assert all(p.leader in nodes and p.error_code == kw.NONE for p in t.partitions), t
            if v >= 1:
                assert md.controller_id == min(nodes), f"Metadata v{v}: controller {md.controller_id}"
                # null topic list = all topics
                all_md = c.metadata(None, version=v)
                assert {"md-a", "md-b"} <= set(all_md.topics), f"Metadata v{v} all topics: {sorted(all_md.topics)}"
            if v >= 4:
                md = c.metadata(["md-missing"], allow_auto_topic_creation=False, version=v)
                assert md.topics["md-missing"].error_code == kw.UNKNOWN_TOPIC_OR_PARTITION, (
                    f"Metadata v{v} unknown topic without auto-create: {md.topics['md-missing']}")


def test_init_producer_id_every_version(broker):
    with connect(broker) as c:
        seen = set()
        for v in versions(c, kw.API_INIT_PRODUCER_ID, 0, 4):
            res = c.init_producer_id(version=v)
            assert res.error_code == kw.NONE and res.producer_id >= 0 and res.producer_epoch >= 0, (
                f"InitProducerId v{v}: {res}")
            seen.add((res.producer_id, res.producer_epoch))
        assert len(seen) == len(versions(c, kw.API_INIT_PRODUCER_ID, 0, 4)), "producer ids were reused"


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions_each_version(broker, version):
    with connect(broker) as c:
        res = c.api_versions(version)
        assert res.error_code == kw.NONE, f"ApiVersions v{version}: {res.error_code}"
        assert res.apis[kw.API_API_VERSIONS].max_version >= 3
        for k, rng in res.apis.items():
            assert 0 <= rng.min_version <= rng.max_version, f"API {k}: {rng}"


def test_empty_partition_offsets_and_fetch(broker):
    create_topic(broker.bootstrap, "empty", 1)
    with connect(broker) as c:
        for v in versions(c, kw.API_LIST_OFFSETS, 1, 6):
            for ts, want in ((-2, 0), (-1, 0), (1_700_000_000_000, -1)):
                res = c.list_offsets("empty", 0, ts, version=v)
                assert (res.error_code, res.offset) == (kw.NONE, want), f"ListOffsets v{v} ts={ts} on empty: {res}"
        res = c.fetch("empty", 0, 0, max_wait_ms=100)
        assert (res.error_code, res.high_watermark) == (kw.NONE, 0) and not res.records, res


def test_null_client_id(broker):
    """The request header's client_id is a nullable string; null is legal."""
    create_topic(broker.bootstrap, "null-client", 1)
    with kw.WireConnection("127.0.0.1", broker.kafka_port, client_id=None) as c:
        assert c.api_versions(3).error_code == kw.NONE
        assert c.api_versions(0).error_code == kw.NONE
        r = c.produce("null-client", 0, kw.build_record_batch([kw.Record(b"k", b"v")]))
        assert (r.error_code, r.base_offset) == (kw.NONE, 0), r
        assert c.metadata(["null-client"]).topics["null-client"].error_code == kw.NONE
