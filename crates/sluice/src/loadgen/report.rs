//! What `sluice loadgen` prints at the end: a per-topic table of counts and
//! value sizes, and a latency histogram drawn as bars.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};

/// Exact quantiles of value sizes, in bytes.
#[derive(Serialize, Default, Debug, PartialEq)]
pub struct SizeSummary {
    pub min: u32,
    pub p50: u32,
    pub p90: u32,
    pub p99: u32,
    pub max: u32,
    pub mean: f64,
}

impl SizeSummary {
    /// Sorts `sizes` in place. Quantile q is the value at index
    /// floor((n - 1) * q) of the sorted sizes.
    pub fn of(sizes: &mut [u32]) -> SizeSummary {
        if sizes.is_empty() {
            return SizeSummary::default();
        }
        sizes.sort_unstable();
        let q = |p: f64| sizes[((sizes.len() - 1) as f64 * p) as usize];
        SizeSummary {
            min: sizes[0],
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: sizes[sizes.len() - 1],
            mean: sizes.iter().map(|&s| s as f64).sum::<f64>() / sizes.len() as f64,
        }
    }
}

/// p50/p90/p99/p99.9/max of a µs histogram, in milliseconds.
pub fn latency_summary(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| v as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.5)),
        "p90": ms(h.value_at_quantile(0.9)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}

fn human_bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// The per-topic table of a loadgen summary.
pub fn topics_table(summary: &Value) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "topic",
        "records",
        "delivered",
        "bytes",
        "value p50",
        "p90",
        "p99",
        "max",
    ]);
    let empty = Vec::new();
    for row in summary["topics"].as_array().unwrap_or(&empty) {
        let size = |k: &str| human_bytes(row["value_bytes"][k].as_f64().unwrap_or(0.0));
        t.add_row([
            row["topic"].as_str().unwrap_or("").to_string(),
            row["records"].to_string(),
            row["delivered"].to_string(),
            human_bytes(row["bytes"].as_f64().unwrap_or(0.0)),
            size("p50"),
            size("p90"),
            size("p99"),
            size("max"),
        ]);
    }
    t
}

/// Upper bounds of the histogram's rows, in µs.
const BOUNDS_US: [u64; 12] = [
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    u64::MAX,
];

/// Produce latency as a bar per latency band, with percentiles underneath.
pub fn latency_chart(h: &Histogram<u64>) -> String {
    let mut counts = [0u64; BOUNDS_US.len()];
    for v in h.iter_recorded() {
        let value = v.value_iterated_to();
        let row = BOUNDS_US.iter().position(|&b| value <= b).unwrap_or(0);
        counts[row] += v.count_at_value();
    }
    let most = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut out = String::from("produce latency (send to acknowledgement)\n");
    let mut lower = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        let label = if BOUNDS_US[i] == u64::MAX {
            format!("> {:>7}", band(lower))
        } else {
            format!("<= {:>6}", band(BOUNDS_US[i]))
        };
        lower = BOUNDS_US[i];
        let width = (n as f64 / most as f64 * 40.0).round() as usize;
        let pct = if h.is_empty() {
            0.0
        } else {
            n as f64 * 100.0 / h.len() as f64
        };
        out.push_str(&format!(
            "  {label} |{:<40}| {n:>9} {pct:5.1}%\n",
            "█".repeat(width)
        ));
    }
    let s = latency_summary(h);
    out.push_str(&format!(
        "  p50 {} ms  p90 {} ms  p99 {} ms  p99.9 {} ms  max {} ms",
        s["p50"], s["p90"], s["p99"], s["p999"], s["max"]
    ));
    out
}

fn band(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{}s", us / 1_000_000)
    } else if us >= 1_000 {
        format!("{}ms", us / 1_000)
    } else {
        format!("{us}us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_quantiles_are_exact() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        let s = SizeSummary::of(&mut v);
        assert_eq!((s.min, s.p50, s.p90, s.p99, s.max), (1, 50, 90, 99, 100));
        assert_eq!(SizeSummary::of(&mut []), SizeSummary::default());
    }

    #[test]
    fn the_chart_counts_every_sample() {
        let mut h = super::super::kafka::latency_histogram();
        for us in [300, 800, 800, 15_000, 2_000_000] {
            h.record(us).expect("in range");
        }
        let chart = latency_chart(&h);
        assert!(chart.contains("<=  500us"), "{chart}");
        let total: u64 = chart
            .lines()
            .filter(|l| l.contains('|'))
            .filter_map(|l| l.rsplit('|').next())
            .filter_map(|t| t.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(total, 5);
    }
}
