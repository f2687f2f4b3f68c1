//! A catch-up group member for bench/catchup_bench.py, in compiled code.
//!
//! The Python consumer costs ~2.4 CPU-s per GiB of 1 KiB records on the
//! client side alone; on a 2-core machine that CPU comes out of the broker's
//! share and the benchmark measures the client. This reader uses the same
//! real client library (librdkafka) through rust-rdkafka, checks every record
//! the same way (offsets follow each other; a produce-phase record at offset o
//! of partition p holds `size` bytes and sequence o*N+p in its first 8
//! bytes), and reports to the benchmark on stdout, one line per event:
//!
//! ```text
//! bytes <bytes> <messages>          every 0.5 s
//! sample <unix ns> <bytes>          every 0.25 s after the first record
//! done <partition> <unix ns>        a partition reached its target offset
//! bad <text> / error <text>         a wrong record / a client error
//! end <first ns> <cpu s> <bytes> <messages>   after stdin closes (the stop)
//! ```
//!
//! Usage: sluice-catchup-reader BOOTSTRAP TOPIC GROUP SIZE TARGETS PRODUCED_ENDS
//! where TARGETS and PRODUCED_ENDS are comma-separated offsets per partition.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// User + system CPU seconds of this process (/proc/self/stat, in clock
/// ticks of 1/100 s, which is USER_HZ on Linux).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn offsets(arg: &str) -> Result<Vec<i64>, String> {
    arg.split(',')
        .map(|s| {
            s.parse::<i64>()
                .map_err(|e| format!("bad offset {s:?}: {e}"))
        })
        .collect()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("sluice-catchup-reader: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        return Err("usage: BOOTSTRAP TOPIC GROUP SIZE TARGETS PRODUCED_ENDS".into());
    }
    let (bootstrap, topic, group) = (&args[1], &args[2], &args[3]);
    let size: usize = args[4].parse().map_err(|e| format!("bad size: {e}"))?;
    let targets = offsets(&args[5])?;
    let produced_ends = offsets(&args[6])?;
    let partitions = targets.len();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("max.partition.fetch.bytes", (8 << 20).to_string())
        .set("fetch.max.bytes", (64 << 20).to_string())
        .set("queued.max.messages.kbytes", "262144")
        // librdkafka 2.0 pauses a partition whose local queue is full for
        // fetch.error.backoff.ms (2.1 added fetch.queue.backoff.ms for it);
        // the default 500 ms would idle a reader slower than the broker.
        .set("fetch.error.backoff.ms", "5")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    consumer
        .subscribe(&[topic.as_str()])
        .map_err(|e| format!("subscribe: {e}"))?;

    // The benchmark closes our stdin to stop us.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        stop_flag.store(true, Ordering::Relaxed);
    });

    let out = std::io::stdout();
    let mut out = out.lock();
    let mut next = vec![0i64; partitions];
    let (mut bytes, mut msgs, mut bad) = (0u64, 0u64, 0usize);
    let mut first: Option<(u128, f64)> = None;
    let (mut last_report, mut last_sample) = (0u128, 0u128);
    let emit = |out: &mut std::io::StdoutLock, line: String| {
        // A closed pipe means the benchmark is gone; stop quietly.
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            std::process::exit(0);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if let Some(polled) = consumer.poll(Duration::from_millis(100)) {
            match polled {
                Err(e) => emit(&mut out, format!("error {e}")),
                Ok(m) => {
                    if first.is_none() {
                        first = Some((now_ns(), cpu_s()));
                    }
                    let (p, o) = (m.partition() as usize, m.offset());
                    if p < partitions && o >= next[p] && o < targets[p] {
                        if o > next[p] && bad < 10 {
                            bad += 1;
                            emit(
                                &mut out,
                                format!("bad gap p{p} expected {} got {o}", next[p]),
                            );
                        }
                        let v = m.payload().unwrap_or(&[]);
                        bytes += v.len() as u64;
                        msgs += 1;
                        if o < produced_ends[p] {
                            let seq = v
                                .get(..8)
                                .and_then(|b| b.try_into().ok())
                                .map(i64::from_be_bytes);
                            let want = o * partitions as i64 + p as i64;
                            if (v.len() != size || seq != Some(want)) && bad < 10 {
                                bad += 1;
                                emit(
                                    &mut out,
                                    format!("bad record p{p} o{o} len {} seq {seq:?}", v.len()),
                                );
                            }
                        }
                        next[p] = o + 1;
                        if o + 1 == targets[p] {
                            emit(&mut out, format!("done {p} {}", now_ns()));
                        }
                    }
                }
            }
        }
        let t = now_ns();
        if t - last_report > 500_000_000 {
            last_report = t;
            emit(&mut out, format!("bytes {bytes} {msgs}"));
        }
        if first.is_some() && t - last_sample >= 250_000_000 {
            last_sample = t;
            emit(&mut out, format!("sample {t} {bytes}"));
        }
    }
    emit(&mut out, format!("sample {} {bytes}", now_ns()));
    let (first_ns, first_cpu) = first.unwrap_or((0, cpu_s()));
    emit(
        &mut out,
        format!("end {first_ns} {:.3} {bytes} {msgs}", cpu_s() - first_cpu),
    );
    Ok(())
}
