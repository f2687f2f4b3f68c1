"""`sluice loadgen --profile ai-telemetry` and `sluice scorecard` against a
real broker (issue 20, must-show 2 and 3).

- loadgen at a fixed rate for a fixed duration: a consumer reads back the
  advertised per-topic counts and exactly the advertised value-size
  quantiles; the raw inference records are heavy-tailed as documented;
  every record validates against the contracts installed in the broker's
  registry (and the broker, whose topics loadgen bound to them, accepted
  them all); feedback names an inference written earlier.
- scorecard against the embedded broker: every check passes and is
  printed with its figure; the HTML report (charts) and JSON are written.
- scorecard with a deliberately slowed consumer: freshness fails, and the
  figure that fails it is end-to-end latency / event age, not produce.
"""

import json
import subprocess
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from helpers import consume_all
from sluice_proc import sluice_bin_path

REPO = Path(__file__).resolve().parents[2]
KINDS = ["inference", "model_inference", "tool_call", "retrieval", "feedback"]


def run_cli(args, timeout):
    return subprocess.run(
        [str(sluice_bin_path()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def registry_schema(broker, subject):
    url = f"http://127.0.0.1:{broker.http_port}/subjects/{subject}/versions/latest"
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(json.loads(r.read())["schema"])


def exact_quantiles(sizes):
    s = sorted(sizes)
    q = lambda p: s[int((len(s) - 1) * p)]  # noqa: E731  (the CLI's definition)
    return {"min": s[0], "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": s[-1]}


@pytest.mark.e2e_timeout(240)
def test_loadgen_writes_the_advertised_counts_sizes_and_valid_records(broker, tmp_path):
    summary_path = tmp_path / "summary.json"
    rate, duration = 400, 8
    p = run_cli(
        [
            "loadgen", "--profile", "ai-telemetry",
            "--bootstrap", broker.bootstrap,
            "--http", f"127.0.0.1:{broker.http_port}",
            "--rate", str(rate), "--duration", str(duration),
            "--burst", "3x@2s", "--burst-start", "3",
            "--feedback-delay", "1", "--topics-prefix", "lg",
            "--seed", "42", "--summary-json", str(summary_path),
        ],
        timeout=120,
    )
    assert p.returncode == 0, p.stderr + p.stdout
    # The end-of-run table and latency histogram.
    assert "lg.model_inference" in p.stdout and "produce latency" in p.stdout
    assert "p99" in p.stdout
    summary = json.loads(summary_path.read_text())
    # rate x duration, plus the burst's two seconds at three times the rate.
    total = rate * duration + 2 * rate * 2
    assert summary["records"] == total == summary["planned_records"]
    assert summary["delivered"] == summary["records"] and summary["failed"] == 0

    schemas = {k: registry_schema(broker, f"ai.{k}.json-value") for k in KINDS if k != "model_inference"}
    schemas["model_inference"] = json.loads(
        (REPO / "contracts/tensorzero/model_inference.json").read_text()
    )
    by_kind = {t["kind"]: t for t in summary["topics"]}
    inference_ids = set()
    seen_total = 0
    values = {}
    for kind in KINDS:
        topic = f"lg.{kind}"
        advertised = by_kind[kind]
        got = consume_all(broker.bootstrap, topic, range(3), expected=advertised["records"], timeout=60)
        assert len(got) == advertised["records"], f"{topic}: read {len(got)}, advertised {advertised['records']}"
        seen_total += len(got)
        sizes = [len(m.value) for m in got]
        want = advertised["value_bytes"]
        assert exact_quantiles(sizes) == {k: want[k] for k in ["min", "p50", "p90", "p99", "max"]}, topic
        validator = jsonschema.Draft7Validator(schemas[kind])
        values[kind] = []
        for m in got:
            v = json.loads(m.value)
            errors = list(validator.iter_errors(v))
            assert not errors, f"{topic} offset {m.offset}: {errors[0].message}"
            hmap = {(k.decode() if isinstance(k, bytes) else k): val for k, val in (m.headers or [])}
            assert "traceparent" in hmap and "tenant-id" in hmap and "classification" in hmap
            trace_id = hmap["traceparent"].decode().split("-")[1]
            if "governance" in v:
                assert v["governance"]["trace_id"] == trace_id
                assert v["governance"]["tenant_id"] == hmap["tenant-id"].decode()
            values[kind].append(v)
        if kind == "inference":
            inference_ids = {v["governance"]["event_id"] for v in values[kind]}
    assert seen_total == total

    # The advertised shape of the raw records: median ~6 KiB, heavy tail.
    mi = by_kind["model_inference"]["value_bytes"]
    assert 3 * 1024 <= mi["p50"] <= 12 * 1024, mi
    assert mi["p99"] >= 64 * 1024 and mi["max"] >= 100 * 1024, mi
    # Tool calls come in bursts from agent loops: more of them than turns with one.
    assert by_kind["tool_call"]["records"] > 0.5 * by_kind["inference"]["records"]
    # Feedback arrives later, about an inference written before it.
    assert by_kind["feedback"]["records"] > 0
    for f in values["feedback"]:
        assert f["target_event_id"] in inference_ids


def test_loadgen_refuses_bad_arguments(broker):
    for args, needle in [
        (["--burst", "ten@60s"], "FACTORx@SECONDS"),
        (["--rate", "0"], "--rate"),
        (["--profile", "nonsense"], "nonsense"),
        (["-X", "novalue"], "key=value"),
    ]:
        p = run_cli(["loadgen", "--bootstrap", broker.bootstrap, "--duration", "1", *args], timeout=60)
        assert p.returncode != 0, args
        assert needle in p.stderr, (args, p.stderr)


def metrics_addresses(broker):
    """Every broker's HTTP address: in a cluster each exports the groups it
    coordinates (and one the cluster-wide families)."""
    brokers = getattr(broker, "brokers", None) or [broker]
    return ",".join(f"127.0.0.1:{b.http_port}" for b in brokers)


def scorecard(broker, tmp_path, name, extra, timeout=400):
    html = tmp_path / f"{name}.html"
    base = [
        "scorecard", "--bootstrap", broker.bootstrap,
        "--http", metrics_addresses(broker),
    ]
    p = run_cli(base + extra + ["--report", str(html)], timeout=timeout)
    return p, html


def produce_bound_ms(broker):
    """The produce p99 bound: a cluster acknowledges after its flush (50 ms
    gathering, an object PUT and a catalog commit; BENCHMARKS.md, issue 15),
    and here three brokers, PostgreSQL and the clients share two cores."""
    return 500 if getattr(broker, "brokers", None) else 100


@pytest.mark.e2e_timeout(400)
def test_scorecard_against_sluice_passes_every_check(broker, tmp_path):
    bound = produce_bound_ms(broker)
    p, html = scorecard(
        broker, tmp_path, "card",
        ["--rate", "200", "--duration", "6", "--burst", "5x@5s", "--fanout-duration", "4",
         "--max-produce-p99-ms", str(bound),
         "--fanout-p99-factor", "2" if bound == 100 else "5"],
    )
    assert p.returncode == 0, p.stderr[-3000:] + p.stdout
    for check in ["freshness", "burst", "fan-out", "replay", "contracts", "observability", "durability"]:
        line = next((l for l in p.stdout.splitlines() if f" {check} " in l), None)
        assert line is not None, f"{check} missing from:\n{p.stdout}"
        assert "PASS" in line, line
    page = html.read_text()
    assert page.count("<svg") == 3 and "polyline" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    data = json.loads(page.split("<pre>")[1].split("</pre>")[0].replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    fresh = next(c for c in data["checks"] if c["name"] == "freshness")["values"]
    assert 0 < fresh["produce_p99_ms"] <= bound and 0 < fresh["e2e_p99_ms"] <= 1000
    dur = next(c for c in data["checks"] if c["name"] == "durability")["values"]
    assert dur["missing"] == 0 and dur["acknowledged"] >= 200 * 6 + 200 * 5 * 5
    assert len(data["timeline"]) >= 15


@pytest.mark.e2e_timeout(300)
def test_scorecard_fails_freshness_for_a_slow_consumer(broker, tmp_path):
    js = tmp_path / "slow.json"
    p = run_cli(
        [
            "scorecard", "--bootstrap", broker.bootstrap,
            "--http", metrics_addresses(broker),
            "--checks", "freshness,observability",
            "--rate", "200", "--duration", "6", "--slow-consumer-ms", "20",
            "--max-produce-p99-ms", str(produce_bound_ms(broker)),
            "--report", str(js),
        ],
        timeout=200,
    )
    assert p.returncode != 0, p.stdout
    assert "failed: freshness" in p.stderr
    card = json.loads(js.read_text())
    fresh = next(c for c in card["checks"] if c["name"] == "freshness")
    assert fresh["status"] == "FAIL"
    v = fresh["values"]
    # 200 records/s read at most 50/s: after 6 s the reader is ~900 records
    # (~4.5 s of production) behind and falls further behind while the
    # check waits, so the end-to-end p99 is seconds; producing was fine.
    assert v["e2e_p99_ms"] >= 3000, v
    assert v["produce_p99_ms"] <= produce_bound_ms(broker), v
    assert v["event_age_p99_s"] is not None and v["event_age_p99_s"] >= 2.0, v
    assert f"{v['e2e_p99_ms']:.1f} ms" in fresh["figure"]
    # The broker's lag seconds, read back now, is at least as old as the figure says.
    obs = next(c for c in card["checks"] if c["name"] == "observability")
    assert obs["status"] == "PASS", obs
