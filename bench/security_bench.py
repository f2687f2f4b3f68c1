#!/usr/bin/env python3
"""Sluice security benchmark (issue 17, must-show 5): produce and consume
throughput, and the broker's CPU per GiB, over SASL_SSL (and SSL, and
SASL_PLAINTEXT) against PLAINTEXT, measured in the same run on one broker.

One `sluice serve` with four listeners (certificates from a throwaway CA
made with openssl, as the e2e tests do; a SCRAM user made with `sluice
users`). For each protocol, in rounds that alternate the protocols (so a
slow stretch of the machine hits them alike):

* produce: kcat (librdkafka, C, so the client is not the bottleneck) sends
  --messages values of --size bytes read from a file, acks=all, to a fresh
  one-partition topic; throughput = bytes / wall time from start to exit
  (kcat exits when every message is acknowledged);
* consume: kcat reads the topic from the beginning to its end (-e),
  printing only offsets; the broker's tail cache (--tail-cache-mib) holds
  the whole topic, which is deleted after each run;
* broker CPU: utime + stime of the broker process over each phase, per GiB
  moved.

Printed: a table of the medians over --rounds, the SASL_SSL / PLAINTEXT
ratios (the median of each round's ratio) with the target (>= 70% of plaintext throughput), and the machine's
idle CPU over the run; --json FILE writes every figure. Exit 0 when the
SASL_SSL ratios meet the target, 1 otherwise (or on a failure).

    cargo build --profile fast
    python3 bench/security_bench.py --json target/security-bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import os as _os

# The brokers started here need no OTLP receivers (their default ports would
# collide between brokers); older builds ignore the variables.
_os.environ.setdefault("SLUICE_OTLP_HTTP_LISTEN", "off")
_os.environ.setdefault("SLUICE_OTLP_GRPC_LISTEN", "off")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))

import cluster_bench as cb  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
import tls_certs  # noqa: E402
from sluice_proc import free_port  # noqa: E402

PROTOCOLS = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
USER, PASSWORD = "bench", "bench-password"
TARGET = 0.70


def info(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine_idle() -> float:
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    return (int(parts[3]) + int(parts[4])) / os.sysconf("SC_CLK_TCK")


def kcat_args(protocol: str, port: int, certs) -> list:
    args = ["-b", f"127.0.0.1:{port}", "-X", f"security.protocol={protocol}"]
    if protocol.endswith("SSL"):
        args += ["-X", f"ssl.ca.location={certs.ca}"]
    if protocol.startswith("SASL"):
        args += ["-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", f"sasl.username={USER}",
                 "-X", f"sasl.password={PASSWORD}"]
    return args


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list, broker_pid: int, stdin=None, timeout: float = 600.0) -> tuple:
    """(wall seconds, broker CPU seconds, kcat CPU seconds, stdout) of one kcat run."""
    cpu0, kc0 = cb.proc_cpu_seconds(broker_pid), children_cpu()
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    wall = time.monotonic() - t0
    cpu1, kc1 = cb.proc_cpu_seconds(broker_pid), children_cpu()
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}... exited {r.returncode}: {r.stderr[-500:]!r}")
    return wall, (cpu1 or 0) - (cpu0 or 0), kc1 - kc0, r.stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=REPO / "target" / "fast" / "sluice")
    ap.add_argument("--messages", type=int, default=500_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tail-cache-mib", type=int, default=2048,
                    help="the broker's tail cache: large enough that every run's topic is read "
                         "from memory, so reads measure the wire, not the disk")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--authorizer", action="store_true",
                    help="run the broker with --authorizer acl (rules for every principal on the bench "
                         "topics and the cluster) and a default-user producer and consumer quota far above "
                         "the rates reached, so every request goes through the ACL check and the quota meters")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    protocols = [p.strip().upper() for p in args.protocols.split(",") if p.strip()]
    if "PLAINTEXT" not in protocols or "SASL_SSL" not in protocols:
        ap.error("--protocols must include PLAINTEXT and SASL_SSL (the ratio is between them)")
    if not args.bin.exists():
        ap.error(f"{args.bin} does not exist: cargo build --profile fast")
    if shutil.which("kcat") is None:
        ap.error("kcat is not installed (scripts/install-test-deps.sh)")

    scratch = Path(tempfile.mkdtemp(prefix="security-bench-", dir=REPO / "target"))
    binary = scratch / "sluice"
    shutil.copy2(args.bin, binary)
    certs = tls_certs.make_certs(scratch / "certs")
    data = scratch / "data"
    subprocess.run([str(binary), "users", "--data-dir", str(data), "add", USER, "--password", PASSWORD],
                   check=True, capture_output=True, timeout=60)
    extra = []
    if args.authorizer:
        for rule in (["--topic", "bench-", "--resource-pattern-type", "prefixed"], ["--cluster"]):
            subprocess.run([str(binary), "acls", "--data-dir", str(data), "add", "--allow-principal", "User:*",
                            "--operation", "All", *rule], check=True, capture_output=True, timeout=60)
        subprocess.run([str(binary), "quotas", "--data-dir", str(data), "alter", "--user-default",
                        "--add-config", f"producer_byte_rate={100 << 30},consumer_byte_rate={100 << 30}"],
                       check=True, capture_output=True, timeout=60)
        extra = ["--authorizer", "acl"]
    ports = {p: free_port() for p in PROTOCOLS}
    http = free_port()
    log = open(scratch / "broker.log", "wb")
    broker = subprocess.Popen(
        [str(binary), "serve", "--data-dir", str(data), "--http-listen", f"127.0.0.1:{http}",
         "--listeners", ",".join(f"{p}://127.0.0.1:{ports[p]}" for p in PROTOCOLS),
         "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
         "--tail-cache-bytes", str(args.tail_cache_mib << 20), *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )
    payload = scratch / "payload.txt"
    with open(payload, "wb") as f:
        for i in range(args.messages):
            head = b"%010d-" % i
            f.write(head + b"x" * (args.size - len(head)) + b"\n")
    total_bytes = args.messages * args.size
    results = {"messages": args.messages, "size": args.size, "rounds": [], "protocols": protocols,
               "authorizer": args.authorizer}
    failure = None
    idle0, t_start = machine_idle(), time.monotonic()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                cb.http_json(f"http://127.0.0.1:{http}/healthz")
                break
            except Exception:
                if time.monotonic() > deadline or broker.poll() is not None:
                    raise RuntimeError("the broker did not start; see broker.log")
                time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{ports['PLAINTEXT']}"})
        info(f"broker up; {args.messages:,} x {args.size} B per run, {args.rounds} rounds over {protocols}")
        for rnd in range(args.rounds):
            for p in protocols:
                topic = f"bench-{p.lower()}-{rnd}"
                base = ["kcat"] + kcat_args(p, ports[p], certs)
                with open(payload, "rb") as stdin:
                    pw, pc, pk, _ = timed(base + ["-P", "-t", topic, "-p", "0", "-X", "linger.ms=5",
                                                  "-X", "batch.num.messages=10000"], broker.pid, stdin=stdin)
                # Only offsets are printed: the consumer's own output must not
                # be what limits it.
                cw, cc, ck, out = timed(base + ["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e",
                                                "-q", "-f", "%o\n", "-X", "fetch.max.bytes=52428800"],
                                        broker.pid)
                offsets = out.split()
                if len(offsets) != args.messages or int(offsets[-1]) != args.messages - 1:
                    raise RuntimeError(f"{p}: consumed {len(offsets)} of {args.messages} messages")
                row = {"round": rnd, "protocol": p,
                       "produce_mib_s": total_bytes / pw / 2**20, "consume_mib_s": total_bytes / cw / 2**20,
                       "produce_cpu_s_per_gib": pc / (total_bytes / 2**30),
                       "consume_cpu_s_per_gib": cc / (total_bytes / 2**30),
                       "produce_client_cpu_s_per_gib": pk / (total_bytes / 2**30),
                       "consume_client_cpu_s_per_gib": ck / (total_bytes / 2**30)}
                results["rounds"].append(row)
                admin.delete_topics([topic])[topic].result(30)  # keep the tail cache for the next
                info(f"round {rnd} {p:<15} produce {row['produce_mib_s']:7.1f} MiB/s "
                     f"(CPU s/GiB broker {row['produce_cpu_s_per_gib']:.2f}, kcat "
                     f"{row['produce_client_cpu_s_per_gib']:.2f}), consume "
                     f"{row['consume_mib_s']:7.1f} MiB/s (broker {row['consume_cpu_s_per_gib']:.2f}, "
                     f"kcat {row['consume_client_cpu_s_per_gib']:.2f})")
    except Exception as e:  # reported below; the broker is stopped either way
        failure = str(e)
    finally:
        broker.terminate()
        try:
            broker.wait(20)
        except subprocess.TimeoutExpired:
            broker.kill()
        log.close()
    wall = time.monotonic() - t_start
    idle_cores = (machine_idle() - idle0) / wall
    results["machine_idle_cores"] = idle_cores
    if failure:
        print(f"FAILED: {failure}; scratch dir kept: {scratch}", file=sys.stderr)
        return 1

    med = {}
    for p in protocols:
        rows = [r for r in results["rounds"] if r["protocol"] == p]
        med[p] = {k: statistics.median(r[k] for r in rows)
                  for k in ("produce_mib_s", "consume_mib_s", "produce_cpu_s_per_gib", "consume_cpu_s_per_gib",
                            "produce_client_cpu_s_per_gib", "consume_client_cpu_s_per_gib")}
    results["medians"] = med
    plain = med["PLAINTEXT"]
    print()
    print(f"{'protocol':<16}{'produce MiB/s':>14}{'vs plain':>10}{'broker s/GiB':>13}{'kcat s/GiB':>11}"
          f"{'consume MiB/s':>15}{'vs plain':>10}{'broker s/GiB':>13}{'kcat s/GiB':>11}")
    for p in protocols:
        m = med[p]
        print(f"{p:<16}{m['produce_mib_s']:>14.1f}{m['produce_mib_s'] / plain['produce_mib_s']:>10.0%}"
              f"{m['produce_cpu_s_per_gib']:>13.2f}{m['produce_client_cpu_s_per_gib']:>11.2f}"
              f"{m['consume_mib_s']:>15.1f}{m['consume_mib_s'] / plain['consume_mib_s']:>10.0%}"
              f"{m['consume_cpu_s_per_gib']:>13.2f}{m['consume_client_cpu_s_per_gib']:>11.2f}")
    # Each round's SASL_SSL figure against the same round's PLAINTEXT one,
    # then the median: the machine drifts over a run, a round does not.
    def per_round(k):
        by = {(r["round"], r["protocol"]): r[k] for r in results["rounds"]}
        return statistics.median(by[(n, "SASL_SSL")] / by[(n, "PLAINTEXT")] for n in range(args.rounds))

    ratios = {k: per_round(k) for k in ("produce_mib_s", "consume_mib_s")}
    results["sasl_ssl_ratios"] = ratios
    ok = all(v >= TARGET for v in ratios.values())
    print()
    for k, v in ratios.items():
        print(f"{'PASS' if v >= TARGET else 'MISS'} SASL_SSL {k.split('_')[0]} throughput {v:.0%} of PLAINTEXT "
              f"(median of the rounds' ratios; target >= {TARGET:.0%})")
    print(f"machine idle over the run: {idle_cores:.2f} of {os.cpu_count()} cores"
          + ("  (CPU-bound: the clients and the broker share the cores)" if idle_cores < 0.25 else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        info(f"results written to {args.json}")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
