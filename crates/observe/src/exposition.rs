//! Scrape-time gauge families in the Prometheus text format (0.0.4).
//!
//! Consumer lag and event age are computed on every scrape over every group
//! and partition (200 groups × 1,000 partitions is 200,000 series); building
//! them as registry objects would cost more than the computation itself, so
//! they are written directly: `# HELP`, `# TYPE`, then one line per sample.

use std::fmt::Write;

/// Writes families one after another.
pub struct FamilyWriter<'a> {
    out: &'a mut String,
}

impl<'a> FamilyWriter<'a> {
    pub fn new(out: &'a mut String) -> Self {
        Self { out }
    }

    /// Starts a gauge family.
    pub fn gauge(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} gauge");
    }

    /// Writes one sample.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_into(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        if value.is_finite() && value.fract() == 0.0 && value.abs() < 9.0e15 {
            let _ = write!(self.out, "{}", value as i64);
        } else if value.is_nan() {
            self.out.push_str("NaN");
        } else {
            let _ = write!(self.out, "{value}");
        }
        self.out.push('\n');
    }
}

/// Label value escaping of the text format: backslash, quote, newline.
fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_samples_with_escaped_labels() {
        let mut s = String::new();
        let mut w = FamilyWriter::new(&mut s);
        w.gauge("kafka_consumergroup_lag", "Lag.");
        w.sample(
            "kafka_consumergroup_lag",
            &[("consumergroup", "a\"b"), ("partition", "0")],
            42.0,
        );
        w.sample("kafka_consumergroup_lag_seconds", &[], 1.5);
        assert_eq!(
            s,
            "# HELP kafka_consumergroup_lag Lag.\n# TYPE kafka_consumergroup_lag gauge\n\
             kafka_consumergroup_lag{consumergroup=\"a\\\"b\",partition=\"0\"} 42\n\
             kafka_consumergroup_lag_seconds 1.5\n"
        );
    }
}
