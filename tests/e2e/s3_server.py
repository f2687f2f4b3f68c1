"""Helpers and fixtures for the object-storage end-to-end tests.

* `MotoServer`: a real S3-compatible server (`python -m moto.server`, from
  the `moto[server]` package) on a free 127.0.0.1 port, with a boto3 client.
  Fixtures: `moto_s3` (one server per test module, stopped at teardown) and
  `s3_bucket` (a fresh bucket per test).
* `sluice_bin`: overrides conftest's fixture with a private copy of the
  broker binary, so a rebuild of target/fast/sluice during a run does not
  change (or break) the binary under test.
* Broker variants: `object_store_broker()` builds a broker through
  conftest's `broker_factory` with extra flags and an S3 environment that
  only contains what the test sets (no AWS_* leaking in from the caller).
* Observation: Prometheus text parsing (`scrape`, `metric`), the SQLite
  catalog (`catalog_query`), object listings (local or S3), fault control
  (`set_fault`) and `wait_for`.

Test modules bind the fixtures they use at module level, e.g.
`moto_s3 = s3_server.moto_s3`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import pytest

import helpers
from sluice_proc import SluiceBroker, _set_pdeathsig, check_sluice_bin, free_port

MOTO_READY_TIMEOUT_S = 30.0
INSTALL_HINT = "install it with: bash scripts/install-test-deps.sh"

# Credentials moto accepts (it does not check them).
S3_REGION = "us-east-1"
S3_ACCESS_KEY = "sluice-e2e"
S3_SECRET_KEY = "sluice-e2e-secret"


# ---------------------------------------------------------------------------
# moto S3 server
# ---------------------------------------------------------------------------


class MotoServer:
    """`moto_server` on 127.0.0.1:<free port>, logging to workdir/moto.log."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = self.workdir / "moto.log"
        self.proc: Optional[subprocess.Popen] = None
        self._log_fh = None
        self._client = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoServer":
        for mod in ("moto.server", "boto3", "flask"):
            try:
                found = importlib.util.find_spec(mod) is not None
            except ImportError:
                found = False
            if not found:
                pytest.fail(f"Python module {mod} not installed; {INSTALL_HINT}", pytrace=False)
        self._log_fh = open(self.log_path, "ab", buffering=0)
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self._log_fh.write(f"===== [e2e] {' '.join(argv)}\n".encode())
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            preexec_fn=_set_pdeathsig,
        )
        deadline = time.monotonic() + MOTO_READY_TIMEOUT_S
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"moto_server exited with code {self.proc.returncode} at start-up\n"
                    f"--- moto log ---\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=1.0) as resp:
                    if resp.status == 200:
                        return self
                    last = f"GET / answered {resp.status}"
            except urllib.error.HTTPError as e:
                last = f"GET / answered {e.code}"
            except (OSError, urllib.error.URLError) as e:
                last = str(e)
            time.sleep(0.1)
        self.stop()
        pytest.fail(
            f"moto_server not ready within {MOTO_READY_TIMEOUT_S:.0f}s (last: {last})\n"
            f"--- moto log ---\n{self.log_tail()}",
            pytrace=False,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def log_tail(self, limit: int = 20_000) -> str:
        try:
            text = self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return "<no moto log>"
        return text[-limit:]

    # -- S3 access ---------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=S3_REGION,
                aws_access_key_id=S3_ACCESS_KEY,
                aws_secret_access_key=S3_SECRET_KEY,
                config=Config(retries={"max_attempts": 3}, connect_timeout=10, read_timeout=60),
            )
        return self._client

    def env(self) -> Dict[str, str]:
        """Environment that points a broker's `s3://` store at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": S3_REGION,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_ALLOW_HTTP": "true",
        }

    def create_bucket(self, name: Optional[str] = None) -> str:
        name = name or f"sluice-e2e-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> Dict[str, int]:
        """{key: size} of every object under prefix."""
        out: Dict[str, int] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"]] = o["Size"]
        return out

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=body)

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_s3) -> str:
    return moto_s3.create_bucket()


@pytest.fixture(scope="session")
def sluice_bin(tmp_path_factory) -> Path:
    """A private copy of the broker binary for this session."""
    src = check_sluice_bin()
    dst = tmp_path_factory.mktemp("bin") / "sluice"
    shutil.copy2(src, dst)
    os.chmod(dst, 0o755)
    return dst


# ---------------------------------------------------------------------------
# Brokers with object-store settings
# ---------------------------------------------------------------------------


def object_store_broker(
    broker_factory,
    name: str = "broker",
    object_store: Optional[str] = None,
    args: Iterable[str] = (),
    env: Optional[Dict[str, str]] = None,
    start: bool = True,
) -> SluiceBroker:
    """A broker with `--object-store` (if given) and extra flags; the AWS_*
    variables of the test process are dropped and `env` added."""
    extra_args = list(args)
    if object_store is not None:
        extra_args = ["--object-store", object_store] + extra_args
    b = broker_factory(name, start=False, extra_args=extra_args)
    b.env = {k: v for k, v in b.env.items() if not k.startswith("AWS_")}
    b.env.update(env or {})
    if start:
        b.start()
    return b


# ---------------------------------------------------------------------------
# Observation
# ---------------------------------------------------------------------------


def http_get(broker: SluiceBroker, path: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}{path}", timeout=timeout) as r:
        return r.read().decode()


def scrape(broker: SluiceBroker) -> List[Tuple[str, Dict[str, str], float]]:
    """Every sample of GET /metrics as (name, labels, value)."""
    out = []
    for line in http_get(broker, "/metrics").splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        labels: Dict[str, str] = {}
        if "{" in head:
            name, _, rest = head.partition("{")
            body = rest.rstrip("}")
            # Label values here never contain commas or quotes.
            for part in filter(None, body.split(",")):
                k, _, v = part.partition("=")
                labels[k.strip()] = v.strip().strip('"')
        else:
            name = head
        out.append((name, labels, float(value)))
    return out


def metric(broker: SluiceBroker, name: str, **labels) -> Optional[float]:
    """Sum of the samples of `name` whose labels include `labels`; None if
    no such sample exists."""
    total = None
    for n, l, v in scrape(broker):
        if n == name and all(l.get(k) == str(val) for k, val in labels.items()):
            total = (total or 0.0) + v
    return total


def metric_samples(broker: SluiceBroker, prefix: str) -> List[str]:
    return [
        f"{n}{{{','.join(f'{k}={v}' for k, v in sorted(l.items()))}}} {v:g}"
        for n, l, v in scrape(broker)
        if n.startswith(prefix)
    ]


def catalog_query(data_dir: Path, sql: str, params: tuple = ()) -> list:
    """Rows of a query on DATA_DIR/catalog.db (the broker may be running)."""
    path = Path(data_dir) / "catalog.db"
    assert path.is_file(), f"no catalog at {path}"
    conn = sqlite3.connect(str(path), timeout=10.0)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def topic_id(data_dir: Path, topic: str) -> str:
    rows = catalog_query(data_dir, "SELECT id FROM topics WHERE name = ?", (topic,))
    assert rows, f"topic {topic!r} is not in the catalog"
    return rows[0][0]


def local_objects(root: Path) -> Dict[str, int]:
    """{key: size} of the files under a file:// object store root."""
    root = Path(root)
    out: Dict[str, int] = {}
    if not root.is_dir():
        return out
    for p in root.rglob("*"):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = p.stat().st_size
    return out


def dir_bytes(path: Path) -> int:
    path = Path(path)
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def set_fault(broker: SluiceBroker, mode: str, **extra) -> dict:
    body = json.dumps({"mode": mode, **extra}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{broker.http_port}/v1/debug/faults",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        raise AssertionError(
            f"POST /v1/debug/faults {body!r} answered {e.code}: {e.read()[:500]!r}"
        ) from None


def rss_mib(broker: SluiceBroker) -> float:
    return broker.rss_kib() / 1024.0


def wait_for(
    cond: Callable[[], object],
    timeout: float,
    what: str,
    interval: float = 0.2,
    describe: Optional[Callable[[], str]] = None,
):
    """Poll cond() until it returns something truthy (returned); otherwise
    fail naming `what` (and describe()'s text, if given)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            extra = f"; {describe()}" if describe else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Clients whose librdkafka logs go to Python logging (shown with a failing
# test) instead of stderr, so clients of brokers killed on purpose do not
# flood the output with reconnect errors.
# ---------------------------------------------------------------------------

CLIENT_LOG = logging.getLogger("sluice.e2e.librdkafka")


def make_producer(bootstrap: str, **conf):
    return helpers.make_producer(bootstrap, logger=CLIENT_LOG, **conf)


def make_consumer(bootstrap: str, **conf):
    return helpers.make_consumer(bootstrap, logger=CLIENT_LOG, **conf)


def client_conf(bootstrap: str) -> dict:
    return dict(helpers.base_conf(bootstrap), logger=CLIENT_LOG)


# ---------------------------------------------------------------------------
# Producing with per-message bookkeeping
# ---------------------------------------------------------------------------


def produce_indexed(producer, topic: str, messages: List[dict], timeout: float = 180.0) -> List[Tuple[int, int]]:
    """Produce messages[i] (Producer.produce kwargs) and return, for every i,
    the acknowledged (partition, offset). Fails on any delivery error."""
    acked: List[Optional[Tuple[int, int]]] = [None] * len(messages)
    errors: List[tuple] = []

    def report(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                acked[i] = (msg.partition(), msg.offset())

        return cb

    deadline = time.monotonic() + timeout
    for i, kw in enumerate(messages):
        while True:
            try:
                producer.produce(topic, on_delivery=report(i), **kw)
                break
            except BufferError:
                producer.poll(0.05)
                if time.monotonic() > deadline:
                    raise AssertionError(f"producer queue stayed full until the timeout ({i} queued)")
        if i % 1000 == 0:
            producer.poll(0)
    left = producer.flush(max(deadline - time.monotonic(), 1.0))
    assert left == 0, f"{left} of {len(messages)} messages undelivered after {timeout:.0f}s"
    assert not errors, f"{len(errors)} delivery errors, first: message {errors[0][0]}: {errors[0][1]!r}"
    missing = [i for i, a in enumerate(acked) if a is None]
    assert not missing, f"{len(missing)} messages without a delivery report, first {missing[:5]}"
    return acked  # type: ignore[return-value]


def partition_offsets(data_dir: Path, topic: str) -> Dict[int, Tuple[int, int]]:
    """{partition: (log_start, uploaded_end)} from the catalog."""
    tid = topic_id(data_dir, topic)
    rows = catalog_query(
        data_dir,
        "SELECT partition, log_start, uploaded_end FROM partitions WHERE topic_id = ?",
        (tid,),
    )
    return {p: (s, e) for p, s, e in rows}


def wait_uploaded(
    data_dir: Path, topic: str, ends: Dict[int, int], timeout: float = 60.0, interval: float = 0.1
) -> None:
    """Wait until the catalog says every partition is uploaded up to ends[p]."""

    def done():
        have = partition_offsets(data_dir, topic)
        return all(have.get(p, (0, 0))[1] >= e for p, e in ends.items())

    wait_for(
        done,
        timeout,
        f"uploads of {topic} to reach {ends}",
        interval=interval,
        describe=lambda: f"catalog partitions: {partition_offsets(data_dir, topic)}",
    )


def segments_of(data_dir: Path, topic: str) -> list:
    """(partition, base_offset, last_offset, max_timestamp, object_key, position, length) rows."""
    tid = topic_id(data_dir, topic)
    return catalog_query(
        data_dir,
        "SELECT partition, base_offset, last_offset, max_timestamp, object_key, position, length "
        "FROM segments WHERE topic_id = ? ORDER BY partition, base_offset",
        (tid,),
    )


def assert_rows_contiguous(rows: list, starts: Dict[int, int], ends: Dict[int, int], what: str) -> None:
    """Index rows of each partition cover [starts[p], ends[p]) without gaps or overlaps."""
    by_part: Dict[int, list] = {}
    for r in rows:
        by_part.setdefault(r[0], []).append(r)
    for p, end in ends.items():
        rs = by_part.get(p, [])
        assert rs, f"{what}: partition {p} has no index rows (expected up to {end})"
        nxt = None
        for r in rs:
            if nxt is not None:
                assert r[1] == nxt, f"{what}: partition {p} rows jump from {nxt} to {r[1]}: {r}"
            nxt = r[2] + 1
        assert rs[0][1] <= starts.get(p, 0), f"{what}: partition {p} rows start at {rs[0][1]}"
        assert nxt == end, f"{what}: partition {p} rows end at {nxt}, expected {end}"
