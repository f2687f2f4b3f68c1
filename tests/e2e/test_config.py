"""Configuration: each setting takes effect whether given as a flag, a TOML key
in --config FILE, or a SLUICE_* environment variable; defaults; --help; the
startup log line."""

from __future__ import annotations

import subprocess
import time

import pytest

import kafka_wire as kw
from sluice_proc import SETTINGS, free_port
from helpers import admin_client, create_topic, make_producer, produce_all, topic_partition_count

MODES = ["flags", "toml", "env"]
DEFAULT_MESSAGE_MAX_BYTES = 1048588


def wire(broker, timeout=10.0):
    return kw.WireConnection("127.0.0.1", broker.kafka_port, timeout=timeout)


def run_help(sluice_bin, *args):
    proc = subprocess.run(
        [str(sluice_bin), *args, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30
    )
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def test_help_mentions_every_flag(sluice_bin):
    rc, top = run_help(sluice_bin)
    assert rc == 0, f"sluice --help exit {rc}:\n{top}"
    assert "serve" in top, f"`sluice --help` does not mention the serve command:\n{top}"
    rc, serve = run_help(sluice_bin, "serve")
    assert rc == 0, f"sluice serve --help exit {rc}:\n{serve}"
    missing = [flag for flag, _, _ in SETTINGS.values() if flag not in serve]
    if "--config" not in serve:
        missing.append("--config")
    assert not missing, f"`sluice serve --help` does not mention {missing}:\n{serve}"


@pytest.mark.parametrize("mode", MODES)
def test_settings_take_effect(broker_factory, tmp_path, mode):
    """listen, http_listen, advertise, data_dir, num_partitions and
    message_max_bytes, all given through one mechanism."""
    data_dir = tmp_path / f"custom-data-{mode}"
    adv_port = free_port()
    b = broker_factory(
        f"cfg-{mode}",
        mode=mode,
        settings={
            "listen": f"127.0.0.1:{free_port()}",
            "http_listen": f"127.0.0.1:{free_port()}",
            "advertise": f"localhost:{adv_port}",
            "data_dir": str(data_dir),
            "auto_create_topics_enable": True,
            "num_partitions": 4,
            "message_max_bytes": 5000,
        },
    )
    # (listen and http_listen are proven by the fixture: /healthz answered and
    # the Kafka port accepted on the ports given through this mode.)
    with wire(b) as c:
        md = c.metadata([], allow_auto_topic_creation=False)
        assert [(h, p) for _, h, p in md.brokers] == [("localhost", adv_port)], (
            f"advertised address via {mode}: {md.brokers}"
        )

        # num_partitions applies to auto-created topics.
        md = c.metadata(["auto-made"], allow_auto_topic_creation=True)
        t = md.topics.get("auto-made")
        assert t is not None and t.error_code in (kw.NONE, 5), f"auto-create via metadata: {t}"
        for _ in range(50):
            t = c.metadata(["auto-made"], allow_auto_topic_creation=False).topics["auto-made"]
            if t.error_code == kw.NONE and t.partitions:
                break
            time.sleep(0.1)
        assert t.error_code == kw.NONE, f"auto-created topic: {t}"
        assert len(t.partitions) == 4, f"num_partitions=4 via {mode}: topic has {len(t.partitions)}"

        # message_max_bytes: a batch of exactly the limit passes, one byte more fails.
        r = c.produce("auto-made", 0, kw.batch_with_total_size(5000))
        assert r.error_code == kw.NONE, f"5000-byte batch with message_max_bytes=5000 via {mode}: {r}"
        r = c.produce("auto-made", 0, kw.batch_with_total_size(5001))
        assert r.error_code == kw.MESSAGE_TOO_LARGE, (
            f"5001-byte batch with message_max_bytes=5000 via {mode}: {r}"
        )

    # data_dir: the broker keeps its data there.
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files, f"nothing written under data_dir {data_dir} given via {mode}"

    # One log line names the listen address and the data dir.
    listen = b.settings["listen"]
    lines = [ln for ln in b.log_text().splitlines() if listen in ln and str(data_dir) in ln]
    assert lines, f"no log line names both {listen} and {data_dir}:\n{b.log_tail(5000)}"


@pytest.mark.parametrize("mode", MODES)
def test_auto_create_disabled(broker_factory, mode):
    b = broker_factory(f"noauto-{mode}", mode=mode, settings={"auto_create_topics_enable": False})
    with wire(b) as c:
        for _ in range(2):
            md = c.metadata(["no-such-topic"], allow_auto_topic_creation=True)
            t = md.topics.get("no-such-topic")
            assert t is not None, f"metadata response lacks the requested topic: {md.topics}"
            assert t.error_code == kw.UNKNOWN_TOPIC_OR_PARTITION, (
                f"auto_create_topics_enable=false via {mode}: topic error {t.error_code}"
            )
    admin = admin_client(b.bootstrap)
    assert topic_partition_count(admin, "no-such-topic") is None, "topic was auto-created anyway"
    # Explicit creation still works.
    create_topic(admin, "explicit", 2)


def test_defaults(broker):
    """No settings: auto-create on, 1 partition, message.max.bytes 1048588."""
    with wire(broker, timeout=30) as c:
        md = c.metadata(["auto-default"], allow_auto_topic_creation=True)
        for _ in range(50):
            t = c.metadata(["auto-default"], allow_auto_topic_creation=False).topics["auto-default"]
            if t.error_code == kw.NONE and t.partitions:
                break
            time.sleep(0.1)
        assert t.error_code == kw.NONE, f"default auto-create: {t} (first answer {md.topics})"
        assert len(t.partitions) == 1, f"default num_partitions: {len(t.partitions)}"
        assert [(h, p) for _, h, p in md.brokers] == [("127.0.0.1", broker.kafka_port)], md.brokers
        r = c.produce("auto-default", 0, kw.batch_with_total_size(DEFAULT_MESSAGE_MAX_BYTES))
        assert r.error_code == kw.NONE, f"batch of exactly {DEFAULT_MESSAGE_MAX_BYTES} bytes: {r}"
        r = c.produce("auto-default", 0, kw.batch_with_total_size(DEFAULT_MESSAGE_MAX_BYTES + 1))
        assert r.error_code == kw.MESSAGE_TOO_LARGE, f"batch of {DEFAULT_MESSAGE_MAX_BYTES + 1} bytes: {r}"

    # A producer writing to an unknown topic auto-creates it too.
    produce_all(make_producer(broker.bootstrap), "auto-by-producer", ({"value": b"x"} for _ in range(10)), timeout=60)
    assert topic_partition_count(admin_client(broker.bootstrap), "auto-by-producer") == 1


def test_listen_via_env_with_flags_absent(broker_factory):
    """SLUICE_LISTEN alone decides the Kafka port; clients work on it."""
    b = broker_factory("env-listen", mode="env")
    assert b.env["SLUICE_LISTEN"] == f"127.0.0.1:{b.kafka_port}"
    assert "--listen" not in b.argv
    produce_all(make_producer(b.bootstrap), "env-topic", ({"value": b"v%d" % i} for i in range(100)), timeout=60)
