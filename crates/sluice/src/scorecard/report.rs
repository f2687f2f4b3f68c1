//! The scorecard's outputs: a terminal table, JSON, and a self-contained
//! HTML report with two charts (latency over time, lag over time) drawn as
//! inline SVG, so the file opens anywhere with no network.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Color, ContentArrangement, Table};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// One readiness check's outcome.
#[derive(Serialize, Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// The measured figure, as people read it.
    pub figure: String,
    /// What passing takes.
    pub bound: String,
    /// The numbers behind the figure.
    pub values: serde_json::Value,
}

/// One second of the run.
#[derive(Serialize, Clone, Debug, Default)]
pub struct Sample {
    pub t: f64,
    pub produce_p99_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    /// Records acknowledged minus records read by the freshness group.
    pub lag_records: i64,
    /// The broker's own figures for that group, when `/metrics` is read.
    pub metric_lag: Option<f64>,
    pub metric_lag_seconds: Option<f64>,
    pub rss_mib: Option<f64>,
}

#[derive(Serialize, Clone, Debug)]
pub struct Phase {
    pub name: &'static str,
    pub start: f64,
    pub end: f64,
}

#[derive(Serialize, Debug)]
pub struct Scorecard {
    pub bootstrap: String,
    pub http: Option<String>,
    pub started_at: String,
    pub settings: serde_json::Value,
    pub checks: Vec<Check>,
    pub phases: Vec<Phase>,
    pub timeline: Vec<Sample>,
}

impl Scorecard {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }
}

pub fn table(card: &Scorecard) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_content_arrangement(ContentArrangement::Dynamic);
    if t.width().is_none() {
        t.set_width(160);
    }
    t.set_header(["check", "result", "figure", "to pass"]);
    for c in &card.checks {
        let (word, color) = match c.status {
            Status::Pass => ("PASS", Color::Green),
            Status::Fail => ("FAIL", Color::Red),
            Status::Skip => ("SKIP", Color::Yellow),
        };
        t.add_row(vec![
            Cell::new(c.name),
            Cell::new(word).fg(color),
            Cell::new(&c.figure),
            Cell::new(&c.bound),
        ]);
    }
    t
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart of one or more series over the run's seconds, with the
/// phases shaded behind.
/// A named, coloured series of (seconds, value) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

fn svg_chart(title: &str, unit: &str, phases: &[Phase], series: &[Series<'_>]) -> String {
    let (w, h, left, bottom, top, right) = (860.0, 260.0, 60.0, 30.0, 20.0, 20.0);
    let t_max = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(t, _)| *t))
        .chain(phases.iter().map(|p| p.end))
        .fold(1.0f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(_, v)| *v))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let x = |t: f64| left + t / t_max * (w - left - right);
    let y = |v: f64| top + (1.0 - v / y_max) * (h - top - bottom);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure><figcaption>{}</figcaption><svg role="img" aria-label="{}" viewBox="0 0 {w} {h}" width="100%" xmlns="http://www.w3.org/2000/svg">"#,
        esc(title),
        esc(title)
    );
    for (i, p) in phases.iter().enumerate() {
        let fill = if i % 2 == 0 { "#f1f4f8" } else { "#e6ebf2" };
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{:.1}" fill="{fill}"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#556">{}</text>"##,
            x(p.start),
            (x(p.end) - x(p.start)).max(0.0),
            h - top - bottom,
            x(p.start) + 3.0,
            top + 12.0,
            esc(p.name)
        );
    }
    for i in 0..=4 {
        let v = y_max * i as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ccd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{} {}</text>"##,
            w - right,
            y(v),
            y(v),
            left - 4.0,
            y(v) + 4.0,
            fmt_num(v),
            esc(unit)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{:.0} s</text>"#,
        w - right,
        h - 8.0,
        t_max
    );
    for (k, (name, color, points)) in series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let path: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            path.join(" "),
            left + 10.0 + 190.0 * k as f64,
            h - 20.0,
            left + 24.0 + 190.0 * k as f64,
            h - 11.0,
            esc(name)
        );
    }
    s.push_str("</svg></figure>");
    s
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn html(card: &Scorecard) -> String {
    let series = |f: fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        card.timeline
            .iter()
            .filter_map(|s| f(s).map(|v| (s.t, v)))
            .collect()
    };
    let latency = svg_chart(
        "Latency over time (p99 per second)",
        "ms",
        &card.phases,
        &[
            ("produce p99", "#1f6feb", series(|s| s.produce_p99_ms)),
            ("end-to-end p99", "#d9480f", series(|s| s.e2e_p99_ms)),
        ],
    );
    let lag = svg_chart(
        "Lag of the freshness group over time (records)",
        "",
        &card.phases,
        &[
            (
                "acked - read (client)",
                "#2b8a3e",
                series(|s| Some(s.lag_records as f64)),
            ),
            (
                "kafka_consumergroup_lag",
                "#7048e8",
                series(|s| s.metric_lag),
            ),
        ],
    );
    let lag_s = svg_chart(
        "Event age of the freshness group (kafka_consumergroup_lag_seconds)",
        "s",
        &card.phases,
        &[("lag seconds", "#c2255c", series(|s| s.metric_lag_seconds))],
    );
    let mut rows = String::new();
    for c in &card.checks {
        let (word, class) = match c.status {
            Status::Pass => ("PASS", "pass"),
            Status::Fail => ("FAIL", "fail"),
            Status::Skip => ("SKIP", "skip"),
        };
        let _ = write!(
            rows,
            r#"<tr><th scope="row">{}</th><td class="{class}">{word}</td><td>{}</td><td>{}</td></tr>"#,
            esc(c.name),
            esc(&c.figure),
            esc(&c.bound)
        );
    }
    let verdict = if card.passed() {
        r#"<p class="pass">Every check passed or was skipped.</p>"#
    } else {
        r#"<p class="fail">At least one check failed.</p>"#
    };
    let json = serde_json::to_string_pretty(card).unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sluice readiness scorecard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 940px; color: #1b1f24; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #d0d7de; }}
.pass {{ color: #1a7f37; font-weight: 600; }} .fail {{ color: #cf222e; font-weight: 600; }} .skip {{ color: #9a6700; font-weight: 600; }}
figure {{ margin: 1.5rem 0; }} figcaption {{ font-weight: 600; margin-bottom: .3rem; }}
details pre {{ background: #f6f8fa; padding: 1rem; overflow: auto; font-size: 12px; }}
</style></head><body>
<h1>Readiness scorecard</h1>
<p>Bootstrap <code>{}</code>{}; started {}.</p>
{verdict}
<table><thead><tr><th scope="col">check</th><th scope="col">result</th><th scope="col">figure</th><th scope="col">to pass</th></tr></thead><tbody>{rows}</tbody></table>
{latency}
{lag}
{lag_s}
<details><summary>All figures (JSON)</summary><pre>{}</pre></details>
</body></html>
"#,
        esc(&card.bootstrap),
        card.http
            .as_deref()
            .map(|h| format!(", metrics from <code>{}</code>", esc(h)))
            .unwrap_or_default(),
        esc(&card.started_at),
        esc(&json)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(status: Status) -> Scorecard {
        Scorecard {
            bootstrap: "127.0.0.1:9092".into(),
            http: None,
            started_at: "now".into(),
            settings: serde_json::json!({}),
            checks: vec![Check {
                name: "freshness",
                status,
                figure: "e2e p99 12 ms <script>".into(),
                bound: "<= 1000 ms".into(),
                values: serde_json::json!({}),
            }],
            phases: vec![Phase {
                name: "steady",
                start: 0.0,
                end: 2.0,
            }],
            timeline: (0..3)
                .map(|i| Sample {
                    t: i as f64,
                    produce_p99_ms: Some(5.0 + i as f64),
                    ..Sample::default()
                })
                .collect(),
        }
    }

    #[test]
    fn the_html_report_is_self_contained_and_escaped() {
        let page = html(&card(Status::Fail));
        assert!(page.contains("<svg"));
        assert!(page.contains("polyline"));
        assert!(page.contains("FAIL"));
        assert!(!page.contains("<script>"));
        // Nothing is loaded from elsewhere.
        assert!(!page.contains("src=") && !page.contains("href="));
        assert!(!card(Status::Fail).passed());
        assert!(card(Status::Skip).passed());
    }
}
