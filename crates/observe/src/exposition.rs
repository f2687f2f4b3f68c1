//! Scrape-time gauge families in the Prometheus text format (0.0.4).
//!
//! Consumer lag and event age are computed on every scrape over every group
//! and partition (200 groups × 1,000 partitions is 200,000 series); building
//! them as registry objects would cost more than the computation itself, so
//! they are written directly: `# HELP`, `# TYPE`, then one line per sample.

use std::fmt::Write;

/// Writes families one after another, handing the text to a sink in chunks
/// of about `chunk` bytes (a streamed HTTP body).
pub struct FamilyWriter<'a> {
    out: String,
    chunk: usize,
    sink: Box<dyn FnMut(String) + 'a>,
}

impl<'a> FamilyWriter<'a> {
    pub fn new(chunk: usize, sink: impl FnMut(String) + 'a) -> Self {
        Self {
            out: String::with_capacity(chunk + 4096),
            chunk,
            sink: Box::new(sink),
        }
    }

    /// Text already in the exposition format.
    pub fn raw(&mut self, text: &str) {
        self.out.push_str(text);
        self.flush_full();
    }

    /// Hands over what is left.
    pub fn finish(mut self) {
        if !self.out.is_empty() {
            let rest = std::mem::take(&mut self.out);
            (self.sink)(rest);
        }
    }

    fn flush_full(&mut self) {
        if self.out.len() >= self.chunk {
            let full = std::mem::replace(&mut self.out, String::with_capacity(self.chunk + 4096));
            (self.sink)(full);
        }
    }

    /// Starts a gauge family.
    pub fn gauge(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} gauge");
        self.flush_full();
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
                self.label(k, v);
            }
            self.out.push('}');
        }
        self.value(value);
    }

    /// Writes one sample whose labels up to the partition were rendered
    /// once by [`group_topic_labels`] (shared by a topic's partitions): the
    /// per-partition lag families are 200,000 lines each at 200 groups ×
    /// 1,000 partitions.
    pub fn sample_prefixed(&mut self, name: &str, labels: &str, partition: i32, value: f64) {
        self.out.push_str(name);
        self.out.push('{');
        self.out.push_str(labels);
        self.out.push_str(",partition=\"");
        self.out.push_str(itoa::Buffer::new().format(partition));
        self.out.push_str("\"}");
        self.value(value);
    }

    fn label(&mut self, key: &str, value: &str) {
        self.out.push_str(key);
        self.out.push_str("=\"");
        escape_into(&mut self.out, value);
        self.out.push('"');
    }

    /// ` value\n`: integers without a fraction, other numbers in their
    /// shortest exact form.
    fn value(&mut self, value: f64) {
        self.out.push(' ');
        if value.is_finite() && value.fract() == 0.0 && value.abs() < 9.0e15 {
            self.out.push_str(itoa::Buffer::new().format(value as i64));
        } else if value.is_nan() {
            self.out.push_str("NaN");
        } else if value.is_infinite() {
            self.out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            self.out.push_str(ryu::Buffer::new().format_finite(value));
        }
        self.out.push('\n');
        self.flush_full();
    }
}

/// `consumergroup="…",topic="…"`, escaped, for [`FamilyWriter::sample_prefixed`].
pub fn group_topic_labels(out: &mut String, group: &str, topic: &str) {
    out.clear();
    out.push_str("consumergroup=\"");
    escape_into(out, group);
    out.push_str("\",topic=\"");
    escape_into(out, topic);
    out.push('"');
}

/// Label value escaping of the text format: backslash, quote, newline.
fn escape_into(out: &mut String, v: &str) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
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
        let mut chunks = 0;
        let mut w = FamilyWriter::new(64, |c: String| {
            chunks += 1;
            s.push_str(&c)
        });
        w.gauge("kafka_consumergroup_lag", "Lag.");
        w.sample(
            "kafka_consumergroup_lag",
            &[("consumergroup", "a\"b"), ("partition", "0")],
            42.0,
        );
        w.sample("kafka_consumergroup_lag_seconds", &[], 1.5);
        let mut labels = String::new();
        group_topic_labels(&mut labels, "g\\1", "t");
        w.sample_prefixed("kafka_consumergroup_lag_seconds", &labels, 7, 0.25);
        w.sample("x", &[], f64::INFINITY);
        w.sample("y", &[], 1e20);
        w.finish();
        assert!(chunks > 2, "handed over in chunks of about 64 bytes");
        assert_eq!(
            s,
            "# HELP kafka_consumergroup_lag Lag.\n# TYPE kafka_consumergroup_lag gauge\n\
             kafka_consumergroup_lag{consumergroup=\"a\\\"b\",partition=\"0\"} 42\n\
             kafka_consumergroup_lag_seconds 1.5\n\
             kafka_consumergroup_lag_seconds{consumergroup=\"g\\\\1\",topic=\"t\",partition=\"7\"} 0.25\n\
             x +Inf\n\
             y 1e20\n"
        );
    }
}
