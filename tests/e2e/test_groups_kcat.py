"""Consumer groups with Debian's kcat (librdkafka 2.0.2): `kcat -G group topic`.

A balanced consumer (-G) with librdkafka's default auto commit reads every
message (-e: exit at the end of all assigned partitions) and commits on its
way out; AdminClient then sees the high watermarks as the group's committed
offsets. A second `kcat -G` run with the same group after more messages were
produced reads exactly the new ones."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict

import pytest

from helpers import admin_client, create_topic, make_producer, produce_all
from test_groups_member import group_offsets, unique_values

PARTITIONS = 3
FORMAT = "%p %o %s\\n"


def kcat_bin() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat not found on PATH: run scripts/install-test-deps.sh", pytrace=False)
    return path


def kcat_group_consume(bootstrap, group, topic, timeout=60.0):
    """Run `kcat -G` until EOF on every assigned partition; [(partition, offset, value)]."""
    argv = [
        kcat_bin(), "-b", bootstrap, "-G", group, topic,
        "-e", "-q", "-f", FORMAT,
        # The first run of a new group starts at the beginning, not at the end.
        "-X", "auto.offset.reset=earliest",
        "-X", "broker.address.family=v4",
    ]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(argv)} exited with {proc.returncode}\nstderr: {proc.stderr.decode(errors='replace')[-3000:]}"
    )
    out = []
    for line in proc.stdout.decode().splitlines():
        p, o, v = line.split(" ", 2)
        out.append((int(p), int(o), v))
    return out


def _check_run(records, sent, expected_values, what):
    values = [v for _, _, v in records]
    dups = {v for v in values if values.count(v) > 1}
    assert not dups, f"{what}: values read twice: {sorted(dups)[:10]}"
    got = set(values)
    assert got == expected_values, (
        f"{what}: read {len(got)} values, expected {len(expected_values)}; "
        f"missing {sorted(expected_values - got)[:5]}, unexpected {sorted(got - expected_values)[:5]}"
    )
    wrong = [(p, o, v) for p, o, v in records if sent[v] != (p, o)]
    assert not wrong, f"{what}: records at unexpected positions: {wrong[:5]}"
    by_part = defaultdict(list)
    for p, o, _ in records:
        by_part[p].append(o)
    for p, offs in by_part.items():
        assert offs == sorted(offs), f"{what}: partition {p} out of order"


@pytest.mark.e2e_timeout(120)
def test_kcat_group_commits_and_resumes(broker):
    topic = "kcat-group-topic"
    group = "kcat-group"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    admin = admin_client(broker.bootstrap)
    producer = make_producer(broker.bootstrap)
    sent = {}

    def produce(tag, n):
        ds = produce_all(producer, topic, unique_values(tag, n, PARTITIONS))
        new = {d.value.decode(): (d.partition, d.offset) for d in ds}
        sent.update(new)
        return set(new)

    first_values = produce("kc-a", 300)
    run1 = kcat_group_consume(broker.bootstrap, group, topic)
    _check_run(run1, sent, first_values, "first kcat -G run")
    offs = group_offsets(admin, group)
    assert offs == {(topic, p): 100 for p in range(PARTITIONS)}, (
        f"committed offsets after the first kcat -G run: {offs}; expected 100 per partition "
        f"(auto commit on close)"
    )

    second_values = produce("kc-b", 150)
    run2 = kcat_group_consume(broker.bootstrap, group, topic)
    _check_run(run2, sent, second_values, "second kcat -G run (same group)")
    assert min(o for _, o, _ in run2) == 100, "second run did not start at the committed offsets"
    offs = group_offsets(admin, group)
    assert offs == {(topic, p): 150 for p in range(PARTITIONS)}, (
        f"committed offsets after the second kcat -G run: {offs}"
    )
    producer.flush(5)
