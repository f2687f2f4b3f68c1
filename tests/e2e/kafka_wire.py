"""A small raw Kafka wire-protocol client for the end-to-end tests.

Written from the Kafka protocol guide: request framing (int32 size prefix),
request headers v1/v2, response headers v0/v1, the primitive types (fixed-width
big-endian ints, unsigned varints, zig-zag varints, (compact) strings/bytes,
(compact) arrays, tagged fields), the v2 record batch format with CRC-32C, and
the few APIs the raw-socket tests need: ApiVersions, Metadata, InitProducerId
and Produce.

Every socket operation has a timeout; nothing here can block forever.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19
API_INIT_PRODUCER_ID = 22

# First flexible ("compact") version of each API we speak.
FLEXIBLE_FROM = {
    API_PRODUCE: 9,
    API_FETCH: 12,
    API_LIST_OFFSETS: 6,
    API_METADATA: 9,
    API_API_VERSIONS: 3,
    API_CREATE_TOPICS: 5,
    API_INIT_PRODUCER_ID: 2,
}

# Error codes used by the tests.
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
UNSUPPORTED_VERSION = 35
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_RECORD = 87

# ---------------------------------------------------------------------------
# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, table driven.
# ---------------------------------------------------------------------------


def _make_crc32c_table() -> list:
    poly = 0x82F63B78
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of data (optionally continuing from a previous crc value)."""
    table = _CRC32C_TABLE
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "crc32c self-check failed"

# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------


def uvarint(n: int) -> bytes:
    if n < 0:
        raise ValueError("uvarint must be >= 0")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n: int) -> bytes:
    """Zig-zag signed varint (used for int32 varint and int64 varlong)."""
    return uvarint((n << 1) ^ (n >> 63))


class Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def raw(self, b: bytes) -> "Writer":
        self.buf += b
        return self

    def int8(self, v: int) -> "Writer":
        self.buf += struct.pack(">b", v)
        return self

    def bool(self, v: bool) -> "Writer":
        return self.int8(1 if v else 0)

    def int16(self, v: int) -> "Writer":
        self.buf += struct.pack(">h", v)
        return self

    def int32(self, v: int) -> "Writer":
        self.buf += struct.pack(">i", v)
        return self

    def uint32(self, v: int) -> "Writer":
        self.buf += struct.pack(">I", v)
        return self

    def int64(self, v: int) -> "Writer":
        self.buf += struct.pack(">q", v)
        return self

    def uvarint(self, v: int) -> "Writer":
        self.buf += uvarint(v)
        return self

    def varint(self, v: int) -> "Writer":
        self.buf += varint(v)
        return self

    def string(self, s: Optional[str], compact: bool = False) -> "Writer":
        """STRING / NULLABLE_STRING, or COMPACT_(NULLABLE_)STRING."""
        if s is None:
            if compact:
                return self.uvarint(0)
            return self.int16(-1)
        b = s.encode("utf-8")
        if compact:
            self.uvarint(len(b) + 1)
        else:
            self.int16(len(b))
        self.buf += b
        return self

    def bytes_(self, b: Optional[bytes], compact: bool = False) -> "Writer":
        """BYTES / NULLABLE_BYTES (int32 length), or COMPACT_(NULLABLE_)BYTES."""
        if b is None:
            if compact:
                return self.uvarint(0)
            return self.int32(-1)
        if compact:
            self.uvarint(len(b) + 1)
        else:
            self.int32(len(b))
        self.buf += b
        return self

    def array_len(self, n: Optional[int], compact: bool = False) -> "Writer":
        if n is None:
            return self.uvarint(0) if compact else self.int32(-1)
        return self.uvarint(n + 1) if compact else self.int32(n)

    def tags(self, compact: bool = True) -> "Writer":
        """Empty tagged-field section (only in flexible versions)."""
        if compact:
            self.uvarint(0)
        return self

    def uuid(self, b: bytes) -> "Writer":
        assert len(b) == 16
        self.buf += b
        return self

    def getvalue(self) -> bytes:
        return bytes(self.buf)


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


class DecodeError(Exception):
    pass


class Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(
                f"need {n} bytes at {self.pos}, have {len(self.data) - self.pos}"
            )
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def _unpack(self, fmt: str, n: int):
        return struct.unpack(fmt, self.take(n))[0]

    def int8(self) -> int:
        return self._unpack(">b", 1)

    def bool(self) -> bool:
        return self.int8() != 0

    def int16(self) -> int:
        return self._unpack(">h", 2)

    def int32(self) -> int:
        return self._unpack(">i", 4)

    def uint32(self) -> int:
        return self._unpack(">I", 4)

    def int64(self) -> int:
        return self._unpack(">q", 8)

    def uvarint(self) -> int:
        shift = 0
        result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise DecodeError("varint too long")

    def varint(self) -> int:
        u = self.uvarint()
        return (u >> 1) ^ -(u & 1)

    def string(self, compact: bool = False) -> Optional[str]:
        if compact:
            n = self.uvarint() - 1
        else:
            n = self.int16()
        if n < 0:
            return None
        return self.take(n).decode("utf-8")

    def bytes_(self, compact: bool = False) -> Optional[bytes]:
        if compact:
            n = self.uvarint() - 1
        else:
            n = self.int32()
        if n < 0:
            return None
        return self.take(n)

    def array_len(self, compact: bool = False) -> int:
        """Returns -1 for a null array."""
        if compact:
            return self.uvarint() - 1
        return self.int32()

    def uuid(self) -> bytes:
        return self.take(16)

    def skip_tags(self) -> dict:
        """Read a tagged-field section; returns {tag: raw bytes}."""
        out = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            size = self.uvarint()
            out[tag] = self.take(size)
        return out


# ---------------------------------------------------------------------------
# Record batches (magic v2)
# ---------------------------------------------------------------------------


@dataclass
class Record:
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Sequence = ()  # sequence of (str, Optional[bytes])
    timestamp_delta: int = 0
    offset_delta: Optional[int] = None  # defaults to the record's index


def encode_record(rec: Record, index: int) -> bytes:
    body = Writer()
    body.int8(0)  # record attributes (unused)
    body.varint(rec.timestamp_delta)
    body.varint(index if rec.offset_delta is None else rec.offset_delta)
    if rec.key is None:
        body.varint(-1)
    else:
        body.varint(len(rec.key)).raw(rec.key)
    if rec.value is None:
        body.varint(-1)
    else:
        body.varint(len(rec.value)).raw(rec.value)
    body.varint(len(rec.headers))
    for hk, hv in rec.headers:
        hkb = hk.encode("utf-8")
        body.varint(len(hkb)).raw(hkb)
        if hv is None:
            body.varint(-1)
        else:
            body.varint(len(hv)).raw(hv)
    b = body.getvalue()
    return varint(len(b)) + b


# Size of the record-batch header, from baseOffset up to and including the
# record count: 8+4+4+1+4+2+4+8+8+8+2+4+4.
RECORD_BATCH_OVERHEAD = 61


def build_record_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    base_timestamp: Optional[int] = None,
    max_timestamp: Optional[int] = None,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    attributes: int = 0,
    partition_leader_epoch: int = -1,
    magic: int = 2,
    corrupt_crc: bool = False,
    record_count: Optional[int] = None,
) -> bytes:
    """Encode an uncompressed v2 record batch (compression bits = 0)."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    recs = b"".join(encode_record(r, i) for i, r in enumerate(records))
    last_offset_delta = max(len(records) - 1, 0)
    if max_timestamp is None:
        max_timestamp = base_timestamp + max(
            (r.timestamp_delta for r in records), default=0
        )
    after_crc = (
        Writer()
        .int16(attributes)
        .int32(last_offset_delta)
        .int64(base_timestamp)
        .int64(max_timestamp)
        .int64(producer_id)
        .int16(producer_epoch)
        .int32(base_sequence)
        .int32(len(records) if record_count is None else record_count)
        .raw(recs)
        .getvalue()
    )
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    # batchLength counts everything after the batchLength field itself.
    batch_length = 4 + 1 + 4 + len(after_crc)
    return (
        Writer()
        .int64(base_offset)
        .int32(batch_length)
        .int32(partition_leader_epoch)
        .int8(magic)
        .uint32(crc)
        .raw(after_crc)
        .getvalue()
    )


def batch_with_total_size(total: int, **kw) -> bytes:
    """A one-record batch whose encoded size is exactly `total` bytes."""
    guess = max(total - RECORD_BATCH_OVERHEAD - 20, 0)
    for vlen in range(max(guess - 20, 0), guess + 40):
        size = RECORD_BATCH_OVERHEAD + len(encode_record(Record(key=b"k", value=b"\0" * vlen), 0))
        if size == total:
            b = build_record_batch([Record(key=b"k", value=b"x" * vlen)], **kw)
            assert len(b) == total
            return b
    raise ValueError(f"cannot build a batch of exactly {total} bytes")


# ---------------------------------------------------------------------------
# Connection
# ---------------------------------------------------------------------------


class ConnectionClosed(Exception):
    pass


@dataclass
class ApiRange:
    api_key: int
    min_version: int
    max_version: int


@dataclass
class ApiVersionsResult:
    error_code: int
    apis: dict  # api_key -> ApiRange
    throttle_time_ms: int = 0


class WireConnection:
    """One TCP connection speaking raw Kafka frames."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 10.0,
        client_id: Optional[str] = "sluice-e2e-wire",
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.client_id = client_id
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._corr = 0
        self._versions: Optional[dict] = None

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "WireConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- framing -----------------------------------------------------------

    def next_correlation_id(self) -> int:
        self._corr += 1
        return self._corr

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)

    def _recv_exact(self, n: int, timeout: Optional[float]) -> bytes:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        chunks = []
        got = 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"timed out waiting for {n - got} more bytes")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(n - got, 1 << 20))
            except ConnectionResetError as e:
                raise ConnectionClosed(f"connection reset: {e}") from e
            if not chunk:
                raise ConnectionClosed(
                    f"peer closed the connection after {got} of {n} bytes"
                )
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def recv_frame(self, timeout: Optional[float] = None) -> bytes:
        size = struct.unpack(">i", self._recv_exact(4, timeout))[0]
        if size < 0 or size > 256 * 1024 * 1024:
            raise DecodeError(f"bad response frame size {size}")
        return self._recv_exact(size, timeout)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True if the peer closes (EOF/reset) within timeout, discarding any data."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True

    # -- requests ----------------------------------------------------------

    @staticmethod
    def is_flexible(api_key: int, version: int) -> bool:
        first = FLEXIBLE_FROM.get(api_key)
        return first is not None and version >= first

    def encode_request(
        self,
        api_key: int,
        version: int,
        body: bytes,
        correlation_id: int,
        flexible_header: Optional[bool] = None,
    ) -> bytes:
        if flexible_header is None:
            flexible_header = self.is_flexible(api_key, version)
        w = Writer().int16(api_key).int16(version).int32(correlation_id)
        # client_id is a (non-compact) nullable string in header v1 and v2.
        w.string(self.client_id)
        if flexible_header:
            w.tags()
        return w.getvalue() + body

    def send_request(
        self,
        api_key: int,
        version: int,
        body: bytes,
        flexible_header: Optional[bool] = None,
    ) -> int:
        corr = self.next_correlation_id()
        self.send_frame(
            self.encode_request(api_key, version, body, corr, flexible_header)
        )
        return corr

    def request(
        self,
        api_key: int,
        version: int,
        body: bytes,
        flexible_header: Optional[bool] = None,
        timeout: Optional[float] = None,
    ) -> Reader:
        """Send one request, read its response, check the correlation id and
        return a Reader positioned at the start of the response body."""
        corr = self.send_request(api_key, version, body, flexible_header)
        frame = self.recv_frame(timeout)
        r = Reader(frame)
        got = r.int32()
        if got != corr:
            raise DecodeError(f"correlation id mismatch: sent {corr}, got {got}")
        # ApiVersions responses always use response header v0.
        if api_key != API_API_VERSIONS and self.is_flexible(api_key, version):
            r.skip_tags()
        return r

    # -- ApiVersions -------------------------------------------------------

    def api_versions(self, version: int = 3) -> ApiVersionsResult:
        flexible = version >= 3
        body = Writer()
        if flexible:
            body.string("sluice-e2e", compact=True)
            body.string("1.0", compact=True)
            body.tags()
        r = self.request(API_API_VERSIONS, version, body.getvalue())
        return parse_api_versions_body(r, version)

    def negotiated(self) -> dict:
        if self._versions is None:
            res = self.api_versions(3)
            if res.error_code == UNSUPPORTED_VERSION:
                res = self.api_versions(0)
            if res.error_code != NONE:
                raise AssertionError(f"ApiVersions failed with error {res.error_code}")
            self._versions = res.apis
        return self._versions

    def pick_version(self, api_key: int, lo: int, hi: int) -> int:
        """Highest version in [lo, hi] that the broker advertises."""
        rng = self.negotiated().get(api_key)
        if rng is None:
            raise AssertionError(f"broker does not advertise API key {api_key}")
        v = min(hi, rng.max_version)
        if v < max(lo, rng.min_version):
            raise AssertionError(
                f"no common version for API {api_key}: broker "
                f"{rng.min_version}-{rng.max_version}, client {lo}-{hi}"
            )
        return v

    # -- Metadata ----------------------------------------------------------

    def metadata(
        self,
        topics: Optional[Iterable[str]],
        allow_auto_topic_creation: bool = False,
        version: Optional[int] = None,
    ) -> "MetadataResult":
        if version is None:
            version = self.pick_version(API_METADATA, 4, 12)
        flex = version >= 9
        w = Writer()
        if topics is None:
            w.array_len(None, flex)
        else:
            topics = list(topics)
            w.array_len(len(topics), flex)
            for t in topics:
                if version >= 10:
                    w.uuid(b"\x00" * 16)
                w.string(t, flex)
                if flex:
                    w.tags()
        if version >= 4:
            w.bool(allow_auto_topic_creation)
        if 8 <= version <= 10:
            w.bool(False)  # include_cluster_authorized_operations
        if version >= 8:
            w.bool(False)  # include_topic_authorized_operations
        if flex:
            w.tags()
        r = self.request(API_METADATA, version, w.getvalue())
        res = parse_metadata_body(r, version)
        expect_end(r, f"Metadata v{version} response")
        return res

    # -- InitProducerId ----------------------------------------------------

    def init_producer_id(
        self, transactional_id: Optional[str] = None, version: Optional[int] = None
    ) -> "InitProducerIdResult":
        if version is None:
            version = self.pick_version(API_INIT_PRODUCER_ID, 0, 4)
        flex = version >= 2
        w = Writer()
        w.string(transactional_id, flex)
        w.int32(60000)  # transaction_timeout_ms
        if version >= 3:
            w.int64(-1)  # producer_id
            w.int16(-1)  # producer_epoch
        if flex:
            w.tags()
        r = self.request(API_INIT_PRODUCER_ID, version, w.getvalue())
        res = InitProducerIdResult(
            throttle_time_ms=r.int32(),
            error_code=r.int16(),
            producer_id=r.int64(),
            producer_epoch=r.int16(),
        )
        if flex:
            r.skip_tags()
        expect_end(r, f"InitProducerId v{version} response")
        return res

    # -- FindCoordinator ---------------------------------------------------

    def find_coordinator(self, group: str) -> tuple:
        """FindCoordinator v0 for a group: (error code, node id, host, port)."""
        r = self.request(10, 0, Writer().string(group).getvalue())
        return (r.int16(), r.int32(), r.string(), r.int32())

    # -- Produce -----------------------------------------------------------

    def produce(
        self,
        topic: str,
        partition: int,
        records: Optional[bytes],
        acks: int = -1,
        timeout_ms: int = 10000,
        version: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> "ProducePartitionResult":
        """Produce one record set to one partition; return its partition result."""
        if version is None:
            version = self.pick_version(API_PRODUCE, 3, 12)
        body = encode_produce_body(version, topic, partition, records, acks, timeout_ms)
        r = self.request(API_PRODUCE, version, body, timeout=timeout)
        topics = parse_produce_body(r, version)
        expect_end(r, f"Produce v{version} response")
        assert len(topics) == 1, f"expected 1 topic in produce response, got {topics}"
        name, parts = topics[0]
        assert name == topic, f"produce response topic {name!r} != {topic!r}"
        assert len(parts) == 1, f"expected 1 partition in produce response: {parts}"
        assert parts[0].partition == partition
        return parts[0]


    # -- Fetch -------------------------------------------------------------

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        version: Optional[int] = None,
        max_wait_ms: int = 100,
        min_bytes: int = 1,
        max_bytes: int = 50 * 1024 * 1024,
        partition_max_bytes: int = 10 * 1024 * 1024,
        timeout: Optional[float] = None,
        current_leader_epoch: int = -1,
    ) -> "FetchPartitionResult":
        if version is None:
            version = self.pick_version(API_FETCH, 4, 12)
        flex = version >= 12
        w = Writer()
        w.int32(-1)  # replica_id
        w.int32(max_wait_ms)
        w.int32(min_bytes)
        w.int32(max_bytes)
        w.int8(0)  # isolation_level READ_UNCOMMITTED
        if version >= 7:
            w.int32(0)  # session_id
            w.int32(-1)  # session_epoch: full fetch, no session
        w.array_len(1, flex)
        w.string(topic, flex)
        w.array_len(1, flex)
        w.int32(partition)
        if version >= 9:
            w.int32(current_leader_epoch)
        w.int64(offset)
        if version >= 12:
            w.int32(-1)  # last_fetched_epoch
        if version >= 5:
            w.int64(-1)  # log_start_offset (followers only)
        w.int32(partition_max_bytes)
        if flex:
            w.tags()  # partition
            w.tags()  # topic
        if version >= 7:
            w.array_len(0, flex)  # forgotten topics
        if version >= 11:
            w.string("", flex)  # rack_id
        if flex:
            w.tags()
        r = self.request(API_FETCH, version, w.getvalue(), timeout=timeout)
        res = parse_fetch_body(r, version)
        expect_end(r, f"Fetch v{version} response")
        assert res.topic == topic, f"fetch response topic {res.topic!r}"
        assert res.partition == partition, f"fetch response partition {res.partition}"
        return res

    # -- ListOffsets -------------------------------------------------------

    def list_offsets(
        self, topic: str, partition: int, timestamp: int, version: Optional[int] = None,
        current_leader_epoch: int = -1,
    ) -> "ListOffsetsResult":
        """timestamp: -1 latest, -2 earliest, or a timestamp in ms."""
        if version is None:
            version = self.pick_version(API_LIST_OFFSETS, 1, 6)
        flex = version >= 6
        w = Writer()
        w.int32(-1)  # replica_id
        if version >= 2:
            w.int8(0)  # isolation_level
        w.array_len(1, flex)
        w.string(topic, flex)
        w.array_len(1, flex)
        w.int32(partition)
        if version >= 4:
            w.int32(current_leader_epoch)
        w.int64(timestamp)
        if flex:
            w.tags()
            w.tags()
            w.tags()
        r = self.request(API_LIST_OFFSETS, version, w.getvalue())
        if version >= 2:
            r.int32()  # throttle
        n_topics = r.array_len(flex)
        assert n_topics == 1, f"ListOffsets v{version}: {n_topics} topics"
        name = r.string(flex)
        assert name == topic, f"ListOffsets v{version}: topic {name!r}"
        n_parts = r.array_len(flex)
        assert n_parts == 1, f"ListOffsets v{version}: {n_parts} partitions"
        res = ListOffsetsResult(partition=r.int32(), error_code=r.int16(), timestamp=r.int64(), offset=r.int64())
        if version >= 4:
            res.leader_epoch = r.int32()
        if flex:
            r.skip_tags()
            r.skip_tags()
            r.skip_tags()
        expect_end(r, f"ListOffsets v{version} response")
        return res


def encode_produce_body(
    version: int,
    topic: str,
    partition: int,
    records: Optional[bytes],
    acks: int = -1,
    timeout_ms: int = 10000,
    transactional_id: Optional[str] = None,
) -> bytes:
    flex = version >= 9
    w = Writer()
    w.string(transactional_id, flex)
    w.int16(acks)
    w.int32(timeout_ms)
    w.array_len(1, flex)
    w.string(topic, flex)
    w.array_len(1, flex)
    w.int32(partition)
    w.bytes_(records, flex)
    if flex:
        w.tags()  # partition
        w.tags()  # topic
        w.tags()  # request
    return w.getvalue()


# ---------------------------------------------------------------------------
# Response bodies
# ---------------------------------------------------------------------------


def parse_api_versions_body(r: Reader, version: int) -> ApiVersionsResult:
    """Parse an ApiVersions response body.

    An UNSUPPORTED_VERSION answer is always in the v0 layout whatever version
    was asked, so the caller decides the layout by the version it expects.
    """
    err = r.int16()
    # UNSUPPORTED_VERSION answers use the v0 layout whatever was asked.
    flex = version >= 3 and err != UNSUPPORTED_VERSION
    if err == UNSUPPORTED_VERSION:
        version = 0
    apis = {}
    n = r.array_len(flex)
    for _ in range(max(n, 0)):
        k, lo, hi = r.int16(), r.int16(), r.int16()
        if flex:
            r.skip_tags()
        apis[k] = ApiRange(k, lo, hi)
    throttle = 0
    if version >= 1 and r.remaining() >= 4:
        throttle = r.int32()
    if flex and r.remaining():
        r.skip_tags()
    return ApiVersionsResult(err, apis, throttle)


@dataclass
class InitProducerIdResult:
    throttle_time_ms: int
    error_code: int
    producer_id: int
    producer_epoch: int


@dataclass
class ProducePartitionResult:
    partition: int
    error_code: int
    base_offset: int
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    record_errors: list = field(default_factory=list)
    error_message: Optional[str] = None


def parse_produce_body(r: Reader, version: int) -> list:
    flex = version >= 9
    topics = []
    for _ in range(r.array_len(flex)):
        name = r.string(flex)
        parts = []
        for _ in range(r.array_len(flex)):
            p = ProducePartitionResult(
                partition=r.int32(), error_code=r.int16(), base_offset=r.int64()
            )
            if version >= 2:
                p.log_append_time_ms = r.int64()
            if version >= 5:
                p.log_start_offset = r.int64()
            if version >= 8:
                for _ in range(max(r.array_len(flex), 0)):
                    idx = r.int32()
                    msg = r.string(flex)
                    if flex:
                        r.skip_tags()
                    p.record_errors.append((idx, msg))
                p.error_message = r.string(flex)
            if flex:
                r.skip_tags()
            parts.append(p)
        if flex:
            r.skip_tags()
        topics.append((name, parts))
    if version >= 1:
        r.int32()  # throttle_time_ms
    if flex:
        r.skip_tags()
    return topics


@dataclass
class MetadataPartition:
    error_code: int
    partition: int
    leader: int


@dataclass
class MetadataTopic:
    error_code: int
    name: Optional[str]
    partitions: list


@dataclass
class MetadataResult:
    brokers: list  # (node_id, host, port)
    cluster_id: Optional[str]
    controller_id: int
    topics: dict  # name -> MetadataTopic


def parse_metadata_body(r: Reader, version: int) -> MetadataResult:
    flex = version >= 9
    if version >= 3:
        r.int32()  # throttle
    brokers = []
    for _ in range(r.array_len(flex)):
        node, host, port = r.int32(), r.string(flex), r.int32()
        if version >= 1:
            r.string(flex)  # rack
        if flex:
            r.skip_tags()
        brokers.append((node, host, port))
    cluster_id = r.string(flex) if version >= 2 else None
    controller = r.int32() if version >= 1 else -1
    topics = {}
    for _ in range(r.array_len(flex)):
        err = r.int16()
        name = r.string(flex)
        if version >= 10:
            r.uuid()
        if version >= 1:
            r.bool()  # is_internal
        parts = []
        for _ in range(r.array_len(flex)):
            perr, pidx, leader = r.int16(), r.int32(), r.int32()
            if version >= 7:
                r.int32()  # leader_epoch
            for _ in range(max(r.array_len(flex), 0)):  # replicas
                r.int32()
            for _ in range(max(r.array_len(flex), 0)):  # isr
                r.int32()
            if version >= 5:
                for _ in range(max(r.array_len(flex), 0)):  # offline
                    r.int32()
            if flex:
                r.skip_tags()
            parts.append(MetadataPartition(perr, pidx, leader))
        if version >= 8:
            r.int32()  # topic_authorized_operations
        if flex:
            r.skip_tags()
        topics[name] = MetadataTopic(err, name, sorted(parts, key=lambda p: p.partition))
    if 8 <= version <= 10:
        r.int32()  # cluster_authorized_operations
    if flex:
        r.skip_tags()
    return MetadataResult(brokers, cluster_id, controller, topics)


def expect_end(r: Reader, what: str) -> None:
    if r.remaining():
        raise DecodeError(f"{what}: {r.remaining()} unexpected trailing bytes")


@dataclass
class ListOffsetsResult:
    partition: int
    error_code: int
    timestamp: int
    offset: int
    leader_epoch: int = -1


@dataclass
class FetchPartitionResult:
    topic: str
    partition: int
    error_code: int
    high_watermark: int
    last_stable_offset: int = -1
    log_start_offset: int = -1
    records: Optional[bytes] = None
    top_error_code: int = 0


def parse_fetch_body(r: Reader, version: int) -> FetchPartitionResult:
    """Parse a Fetch response for one topic with one partition."""
    flex = version >= 12
    r.int32()  # throttle
    top_err = 0
    if version >= 7:
        top_err = r.int16()
        r.int32()  # session_id
    n_topics = r.array_len(flex)
    assert n_topics == 1, f"Fetch v{version}: {n_topics} topics in response"
    topic = r.string(flex)
    n_parts = r.array_len(flex)
    assert n_parts == 1, f"Fetch v{version}: {n_parts} partitions in response"
    res = FetchPartitionResult(
        topic=topic, partition=r.int32(), error_code=r.int16(), high_watermark=r.int64()
    )
    res.top_error_code = top_err
    res.last_stable_offset = r.int64()
    if version >= 5:
        res.log_start_offset = r.int64()
    n_aborted = r.array_len(flex)
    for _ in range(max(n_aborted, 0)):
        r.int64()
        r.int64()
        if flex:
            r.skip_tags()
    if version >= 11:
        r.int32()  # preferred_read_replica
    res.records = r.bytes_(flex)
    if flex:
        r.skip_tags()  # partition
        r.skip_tags()  # topic
        r.skip_tags()  # response
    return res


@dataclass
class DecodedRecord:
    offset: int
    timestamp: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: list


@dataclass
class DecodedBatch:
    base_offset: int
    last_offset_delta: int
    crc_ok: bool
    attributes: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: list


def decode_record_batches(data: bytes) -> list:
    """Decode uncompressed v2 record batches; a trailing partial batch (as a
    size-limited fetch may return) is ignored."""
    out = []
    pos = 0
    while len(data) - pos >= RECORD_BATCH_OVERHEAD:
        base_offset, batch_len = struct.unpack(">qi", data[pos : pos + 12])
        end = pos + 12 + batch_len
        if end > len(data):
            break
        if batch_len < RECORD_BATCH_OVERHEAD - 12:
            raise DecodeError(f"record batch at {pos} has impossible length {batch_len}")
        r = Reader(data[pos:end], 12)
        r.int32()  # partition leader epoch
        magic = r.int8()
        if magic != 2:
            raise DecodeError(f"record batch magic {magic} at offset {base_offset}")
        crc = r.uint32()
        crc_ok = crc32c(data[pos + 21 : end]) == crc
        attributes = r.int16()
        last_offset_delta = r.int32()
        base_ts = r.int64()
        r.int64()  # max timestamp
        pid, epoch, seq = r.int64(), r.int16(), r.int32()
        count = r.int32()
        if attributes & 0x07:
            raise DecodeError(f"compressed batch (attributes {attributes:#x}) not supported here")
        records = []
        for _ in range(count):
            length = r.varint()
            rr = Reader(r.take(length))
            rr.int8()
            ts_delta = rr.varint()
            off_delta = rr.varint()
            klen = rr.varint()
            key = rr.take(klen) if klen >= 0 else None
            vlen = rr.varint()
            value = rr.take(vlen) if vlen >= 0 else None
            headers = []
            for _ in range(rr.varint()):
                hk = rr.take(rr.varint()).decode("utf-8")
                hl = rr.varint()
                headers.append((hk, rr.take(hl) if hl >= 0 else None))
            expect_end(rr, "record")
            records.append(DecodedRecord(base_offset + off_delta, base_ts + ts_delta, key, value, headers))
        expect_end(r, f"record batch at offset {base_offset}")
        out.append(
            DecodedBatch(base_offset, last_offset_delta, crc_ok, attributes, pid, epoch, seq, records)
        )
        pos = end
    return out


# ---------------------------------------------------------------------------
# Transactions (test_transactions.py): FindCoordinator for a transactional
# id, InitProducerId with a transaction timeout, AddPartitionsToTxn,
# AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions,
# ListTransactions, a transactional Produce, and Fetch / ListOffsets with an
# isolation level (Fetch answering `aborted_transactions`).  Module-level
# functions taking a WireConnection; the flexible request/response headers
# are handled here (FLEXIBLE_FROM is left as it was).
# ---------------------------------------------------------------------------

API_FIND_COORDINATOR = 10
API_ADD_PARTITIONS_TO_TXN = 24
API_ADD_OFFSETS_TO_TXN = 25
API_END_TXN = 26
API_TXN_OFFSET_COMMIT = 28
API_DESCRIBE_TRANSACTIONS = 65
API_LIST_TRANSACTIONS = 66

# First flexible version of each of these APIs.
TXN_FLEXIBLE_FROM = {
    API_FIND_COORDINATOR: 3,
    API_INIT_PRODUCER_ID: 2,
    API_ADD_PARTITIONS_TO_TXN: 3,
    API_ADD_OFFSETS_TO_TXN: 3,
    API_END_TXN: 3,
    API_TXN_OFFSET_COMMIT: 3,
    API_DESCRIBE_TRANSACTIONS: 0,
    API_LIST_TRANSACTIONS: 0,
}

COORDINATOR_KEY_GROUP = 0
COORDINATOR_KEY_TRANSACTION = 1

ISOLATION_READ_UNCOMMITTED = 0
ISOLATION_READ_COMMITTED = 1

# Record batch attribute bits.
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20

# Control record types (the int16 after the version in a control record's key).
CONTROL_ABORT = 0
CONTROL_COMMIT = 1

# Error codes of the transaction APIs.
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
INVALID_TRANSACTION_TIMEOUT = 50
CONCURRENT_TRANSACTIONS = 51
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
PRODUCER_FENCED = 90
TRANSACTIONAL_ID_NOT_FOUND = 105


def txn_request(conn: "WireConnection", api_key: int, version: int, body: bytes,
                timeout: Optional[float] = None) -> Reader:
    """Send a request of one of the APIs in TXN_FLEXIBLE_FROM; returns a Reader
    at the start of the response body (response header tags skipped)."""
    flex = version >= TXN_FLEXIBLE_FROM[api_key]
    r = conn.request(api_key, version, body, flexible_header=flex, timeout=timeout)
    if flex and not conn.is_flexible(api_key, version):
        r.skip_tags()  # response header v1 (request() skipped it only if it knew)
    return r


@dataclass
class CoordinatorResult:
    error_code: int
    node_id: int
    host: Optional[str]
    port: int
    error_message: Optional[str] = None


def find_coordinator_for(conn: "WireConnection", key: str, key_type: int = COORDINATOR_KEY_TRANSACTION,
                         version: Optional[int] = None) -> CoordinatorResult:
    """FindCoordinator v1-v4 for one key (v4 batches keys; one is sent)."""
    if version is None:
        version = conn.pick_version(API_FIND_COORDINATOR, 1, 4)
    flex = version >= 3
    w = Writer()
    if version <= 3:
        w.string(key, flex)
    w.int8(key_type)
    if version >= 4:
        w.array_len(1, True)
        w.string(key, True)
    if flex:
        w.tags()
    r = txn_request(conn, API_FIND_COORDINATOR, version, w.getvalue())
    r.int32()  # throttle
    if version <= 3:
        err = r.int16()
        msg = r.string(flex)
        res = CoordinatorResult(err, r.int32(), r.string(flex), r.int32(), msg)
    else:
        n = r.array_len(True)
        assert n == 1, f"FindCoordinator v{version}: {n} coordinators for one key"
        got_key = r.string(True)
        assert got_key == key, f"FindCoordinator v{version}: key {got_key!r} != {key!r}"
        node, host, port, err, msg = r.int32(), r.string(True), r.int32(), r.int16(), r.string(True)
        r.skip_tags()
        res = CoordinatorResult(err, node, host, port, msg)
    if flex:
        r.skip_tags()
    expect_end(r, f"FindCoordinator v{version} response")
    return res


def init_producer_id_txn(
    conn: "WireConnection",
    transactional_id: Optional[str],
    transaction_timeout_ms: int = 60000,
    version: Optional[int] = None,
    producer_id: int = -1,
    producer_epoch: int = -1,
) -> InitProducerIdResult:
    """InitProducerId with a transactional id and a chosen transaction timeout."""
    if version is None:
        version = conn.pick_version(API_INIT_PRODUCER_ID, 0, 4)
    flex = version >= 2
    w = Writer()
    w.string(transactional_id, flex)
    w.int32(transaction_timeout_ms)
    if version >= 3:
        w.int64(producer_id)
        w.int16(producer_epoch)
    if flex:
        w.tags()
    r = txn_request(conn, API_INIT_PRODUCER_ID, version, w.getvalue())
    res = InitProducerIdResult(
        throttle_time_ms=r.int32(), error_code=r.int16(), producer_id=r.int64(), producer_epoch=r.int16()
    )
    if flex:
        r.skip_tags()
    expect_end(r, f"InitProducerId v{version} response")
    return res


def add_partitions_to_txn(
    conn: "WireConnection",
    transactional_id: str,
    producer_id: int,
    producer_epoch: int,
    topics: dict,
    version: Optional[int] = None,
) -> dict:
    """AddPartitionsToTxn v0-v3; topics {name: [partitions]}.
    Returns {(topic, partition): error code}."""
    if version is None:
        version = conn.pick_version(API_ADD_PARTITIONS_TO_TXN, 0, 3)
    assert version <= 3, "only the v0-v3 (client) layout is encoded here"
    flex = version >= 3
    w = Writer()
    w.string(transactional_id, flex)
    w.int64(producer_id)
    w.int16(producer_epoch)
    w.array_len(len(topics), flex)
    for name, parts in topics.items():
        w.string(name, flex)
        w.array_len(len(parts), flex)
        for p in parts:
            w.int32(p)
        if flex:
            w.tags()
    if flex:
        w.tags()
    r = txn_request(conn, API_ADD_PARTITIONS_TO_TXN, version, w.getvalue())
    r.int32()  # throttle
    out = {}
    for _ in range(max(r.array_len(flex), 0)):
        name = r.string(flex)
        for _ in range(max(r.array_len(flex), 0)):
            p, err = r.int32(), r.int16()
            if flex:
                r.skip_tags()
            out[(name, p)] = err
        if flex:
            r.skip_tags()
    if flex:
        r.skip_tags()
    expect_end(r, f"AddPartitionsToTxn v{version} response")
    return out


def add_offsets_to_txn(
    conn: "WireConnection", transactional_id: str, producer_id: int, producer_epoch: int,
    group_id: str, version: Optional[int] = None,
) -> int:
    """AddOffsetsToTxn v0-v3; returns the error code."""
    if version is None:
        version = conn.pick_version(API_ADD_OFFSETS_TO_TXN, 0, 3)
    flex = version >= 3
    w = Writer().string(transactional_id, flex).int64(producer_id).int16(producer_epoch)
    w.string(group_id, flex)
    if flex:
        w.tags()
    r = txn_request(conn, API_ADD_OFFSETS_TO_TXN, version, w.getvalue())
    r.int32()  # throttle
    err = r.int16()
    if flex:
        r.skip_tags()
    expect_end(r, f"AddOffsetsToTxn v{version} response")
    return err


def txn_offset_commit(
    conn: "WireConnection", transactional_id: str, group_id: str, producer_id: int,
    producer_epoch: int, offsets: dict, version: Optional[int] = None,
    generation_id: int = -1, member_id: str = "", group_instance_id: Optional[str] = None,
) -> dict:
    """TxnOffsetCommit v0-v3; offsets {(topic, partition): offset}.
    Returns {(topic, partition): error code}."""
    if version is None:
        version = conn.pick_version(API_TXN_OFFSET_COMMIT, 0, 3)
    flex = version >= 3
    w = Writer().string(transactional_id, flex).string(group_id, flex)
    w.int64(producer_id).int16(producer_epoch)
    if version >= 3:
        w.int32(generation_id).string(member_id, True).string(group_instance_id, True)
    by_topic: dict = {}
    for (t, p), off in offsets.items():
        by_topic.setdefault(t, []).append((p, off))
    w.array_len(len(by_topic), flex)
    for t, parts in by_topic.items():
        w.string(t, flex)
        w.array_len(len(parts), flex)
        for p, off in parts:
            w.int32(p).int64(off)
            if version >= 2:
                w.int32(-1)  # committed_leader_epoch
            w.string(None, flex)  # committed_metadata
            if flex:
                w.tags()
        if flex:
            w.tags()
    if flex:
        w.tags()
    r = txn_request(conn, API_TXN_OFFSET_COMMIT, version, w.getvalue())
    r.int32()  # throttle
    out = {}
    for _ in range(max(r.array_len(flex), 0)):
        name = r.string(flex)
        for _ in range(max(r.array_len(flex), 0)):
            p, err = r.int32(), r.int16()
            if flex:
                r.skip_tags()
            out[(name, p)] = err
        if flex:
            r.skip_tags()
    if flex:
        r.skip_tags()
    expect_end(r, f"TxnOffsetCommit v{version} response")
    return out


def end_txn(
    conn: "WireConnection", transactional_id: str, producer_id: int, producer_epoch: int,
    committed: bool, version: Optional[int] = None, timeout: Optional[float] = None,
) -> int:
    """EndTxn v0-v3 (commit or abort); returns the error code."""
    if version is None:
        version = conn.pick_version(API_END_TXN, 0, 3)
    flex = version >= 3
    w = Writer().string(transactional_id, flex).int64(producer_id).int16(producer_epoch).bool(committed)
    if flex:
        w.tags()
    r = txn_request(conn, API_END_TXN, version, w.getvalue(), timeout=timeout)
    r.int32()  # throttle
    err = r.int16()
    if version >= 5:
        r.int64()
        r.int16()
    if flex:
        r.skip_tags()
    expect_end(r, f"EndTxn v{version} response")
    return err


@dataclass
class TxnDescription:
    error_code: int
    transactional_id: str
    state: Optional[str]
    timeout_ms: int
    start_time_ms: int
    producer_id: int
    producer_epoch: int
    topics: dict  # topic -> sorted list of partitions


def describe_transactions(conn: "WireConnection", transactional_ids: Sequence[str]) -> list:
    """DescribeTransactions v0; one TxnDescription per id, in answer order."""
    w = Writer().array_len(len(transactional_ids), True)
    for t in transactional_ids:
        w.string(t, True)
    w.tags()
    r = txn_request(conn, API_DESCRIBE_TRANSACTIONS, 0, w.getvalue())
    r.int32()  # throttle
    out = []
    for _ in range(max(r.array_len(True), 0)):
        err, tid, state = r.int16(), r.string(True), r.string(True)
        timeout_ms, start, pid, epoch = r.int32(), r.int64(), r.int64(), r.int16()
        topics = {}
        for _ in range(max(r.array_len(True), 0)):
            name = r.string(True)
            parts = [r.int32() for _ in range(max(r.array_len(True), 0))]
            r.skip_tags()
            topics.setdefault(name, []).extend(parts)
        r.skip_tags()
        out.append(TxnDescription(err, tid, state, timeout_ms, start, pid, epoch,
                                  {k: sorted(v) for k, v in topics.items()}))
    r.skip_tags()
    expect_end(r, "DescribeTransactions v0 response")
    return out


@dataclass
class TxnListing:
    error_code: int
    unknown_state_filters: list
    transactions: list  # (transactional_id, producer_id, state)


def list_transactions(
    conn: "WireConnection",
    state_filters: Sequence[str] = (),
    producer_id_filters: Sequence[int] = (),
    version: int = 0,
    duration_filter_ms: int = -1,
    transactional_id_pattern: Optional[str] = None,
) -> TxnListing:
    """ListTransactions v0-v2 (all flexible)."""
    w = Writer().array_len(len(state_filters), True)
    for s in state_filters:
        w.string(s, True)
    w.array_len(len(producer_id_filters), True)
    for p in producer_id_filters:
        w.int64(p)
    if version >= 1:
        w.int64(duration_filter_ms)
    if version >= 2:
        w.string(transactional_id_pattern, True)
    w.tags()
    r = txn_request(conn, API_LIST_TRANSACTIONS, version, w.getvalue())
    r.int32()  # throttle
    err = r.int16()
    unknown = [r.string(True) for _ in range(max(r.array_len(True), 0))]
    txns = []
    for _ in range(max(r.array_len(True), 0)):
        tid, pid, state = r.string(True), r.int64(), r.string(True)
        r.skip_tags()
        txns.append((tid, pid, state))
    r.skip_tags()
    expect_end(r, f"ListTransactions v{version} response")
    return TxnListing(err, unknown, txns)


def produce_txn(
    conn: "WireConnection", topic: str, partition: int, records: bytes,
    transactional_id: Optional[str], version: Optional[int] = None, acks: int = -1,
) -> ProducePartitionResult:
    """Produce one (transactional) record set, with the request's
    transactional_id field set."""
    if version is None:
        version = conn.pick_version(API_PRODUCE, 3, 12)
    body = encode_produce_body(version, topic, partition, records, acks, 10000, transactional_id)
    r = conn.request(API_PRODUCE, version, body)
    topics = parse_produce_body(r, version)
    expect_end(r, f"Produce v{version} response")
    assert len(topics) == 1 and len(topics[0][1]) == 1, f"produce response: {topics}"
    return topics[0][1][0]


def txn_batch(
    records: Sequence[Record], producer_id: int, producer_epoch: int, base_sequence: int,
    transactional: bool = True,
) -> bytes:
    """A v2 record batch of an (idempotent) producer, transactional by default."""
    return build_record_batch(
        records, producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=base_sequence,
        attributes=ATTR_TRANSACTIONAL if transactional else 0,
    )


@dataclass
class FetchTxnResult:
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    aborted_transactions: Optional[list]  # [(producer_id, first_offset)], None if null
    records: Optional[bytes]
    top_error_code: int = 0


def fetch_isolated(
    conn: "WireConnection", topic: str, partition: int, offset: int,
    isolation_level: int = ISOLATION_READ_COMMITTED, version: Optional[int] = None,
    max_wait_ms: int = 100, partition_max_bytes: int = 10 * 1024 * 1024,
) -> FetchTxnResult:
    """Fetch v4-v12 of one partition with an isolation level; keeps the
    aborted transactions of the answer."""
    if version is None:
        version = conn.pick_version(API_FETCH, 4, 12)
    assert 4 <= version <= 12
    flex = version >= 12
    w = Writer()
    w.int32(-1).int32(max_wait_ms).int32(1).int32(50 * 1024 * 1024)
    w.int8(isolation_level)
    if version >= 7:
        w.int32(0).int32(-1)
    w.array_len(1, flex).string(topic, flex).array_len(1, flex)
    w.int32(partition)
    if version >= 9:
        w.int32(-1)
    w.int64(offset)
    if version >= 12:
        w.int32(-1)
    if version >= 5:
        w.int64(-1)
    w.int32(partition_max_bytes)
    if flex:
        w.tags().tags()
    if version >= 7:
        w.array_len(0, flex)
    if version >= 11:
        w.string("", flex)
    if flex:
        w.tags()
    r = conn.request(API_FETCH, version, w.getvalue())
    r.int32()  # throttle
    top_err = 0
    if version >= 7:
        top_err = r.int16()
        r.int32()  # session id
    assert r.array_len(flex) == 1, "one topic expected in the fetch answer"
    name = r.string(flex)
    assert name == topic, f"fetch answer topic {name!r}"
    assert r.array_len(flex) == 1, "one partition expected in the fetch answer"
    p, err, hwm = r.int32(), r.int16(), r.int64()
    assert p == partition, f"fetch answer partition {p}"
    lso = r.int64()
    lstart = r.int64() if version >= 5 else -1
    n = r.array_len(flex)
    aborted = None
    if n >= 0:
        aborted = []
        for _ in range(n):
            aborted.append((r.int64(), r.int64()))
            if flex:
                r.skip_tags()
    if version >= 11:
        r.int32()  # preferred read replica
    records = r.bytes_(flex)
    if flex:
        r.skip_tags()
        r.skip_tags()
        r.skip_tags()
    expect_end(r, f"Fetch v{version} response")
    return FetchTxnResult(err, hwm, lso, lstart, aborted, records, top_err)


def list_offsets_isolated(
    conn: "WireConnection", topic: str, partition: int, timestamp: int = -1,
    isolation_level: int = ISOLATION_READ_COMMITTED, version: Optional[int] = None,
) -> ListOffsetsResult:
    """ListOffsets v2-v6 with an isolation level (-1 latest, -2 earliest)."""
    if version is None:
        version = conn.pick_version(API_LIST_OFFSETS, 2, 6)
    flex = version >= 6
    w = Writer().int32(-1).int8(isolation_level)
    w.array_len(1, flex).string(topic, flex).array_len(1, flex).int32(partition)
    if version >= 4:
        w.int32(-1)
    w.int64(timestamp)
    if flex:
        w.tags().tags().tags()
    r = conn.request(API_LIST_OFFSETS, version, w.getvalue())
    r.int32()  # throttle
    assert r.array_len(flex) == 1
    assert r.string(flex) == topic
    assert r.array_len(flex) == 1
    res = ListOffsetsResult(partition=r.int32(), error_code=r.int16(), timestamp=r.int64(), offset=r.int64())
    if version >= 4:
        res.leader_epoch = r.int32()
    if flex:
        r.skip_tags()
        r.skip_tags()
        r.skip_tags()
    expect_end(r, f"ListOffsets v{version} response")
    return res


def decode_control_record(rec: DecodedRecord) -> tuple:
    """(version, type) of a control record's key; type 0 abort, 1 commit."""
    assert rec.key is not None and len(rec.key) >= 4, f"control record key {rec.key!r}"
    return struct.unpack(">hh", rec.key[:4])
