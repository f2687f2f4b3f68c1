//! Reads a Prometheus `/metrics` page (Sluice's, or kafka-exporter's: the
//! names are the same) for the figures the scorecard needs: a group's lag
//! and lag in seconds, a dead-letter topic's depth, the process's memory.

/// What one scrape found (None: the page has no such sample).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    /// Sum of `kafka_consumergroup_lag` over the group's partitions.
    pub lag: Option<f64>,
    /// Largest `kafka_consumergroup_lag_seconds` of the group.
    pub lag_seconds: Option<f64>,
    /// `process_resident_memory_bytes`.
    pub rss_bytes: Option<f64>,
    /// `sluice_dlq_records` of the watched dead-letter topic.
    pub dlq_records: Option<f64>,
}

/// Scrapes every address of a comma-separated list and merges what they
/// say: in a Sluice cluster each broker exports the groups it coordinates
/// and one of them the cluster-wide families, as kafka-exporter instances
/// would. Fails only when no address answers.
pub fn scrape_all(http: &str, group: &str, dlq_topic: &str) -> anyhow::Result<Scrape> {
    let mut merged = Scrape::default();
    let mut last_error = None;
    let mut answered = false;
    for address in http.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match scrape(address, group, dlq_topic) {
            Ok(s) => {
                answered = true;
                merged.merge(s);
            }
            Err(e) => last_error = Some(e),
        }
    }
    match (answered, last_error) {
        (false, Some(e)) => Err(e),
        (false, None) => anyhow::bail!("no /metrics address given"),
        _ => Ok(merged),
    }
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Scrape {
    fn merge(&mut self, other: Scrape) {
        self.lag = match (self.lag, other.lag) {
            (Some(x), Some(y)) => Some(x + y),
            (x, None) => x,
            (None, y) => y,
        };
        self.lag_seconds = max_of(self.lag_seconds, other.lag_seconds);
        self.rss_bytes = max_of(self.rss_bytes, other.rss_bytes);
        self.dlq_records = max_of(self.dlq_records, other.dlq_records);
    }
}

/// Fetches and parses the page at `http` (HOST:PORT or URL) + `/metrics`.
pub fn scrape(http: &str, group: &str, dlq_topic: &str) -> anyhow::Result<Scrape> {
    let url = crate::groups_cli::url(http, "/metrics");
    let mut resp = crate::groups_cli::agent()
        .get(&url)
        .call()
        .map_err(|e| anyhow::anyhow!("cannot read {url}: {e}"))?;
    if !resp.status().is_success() {
        anyhow::bail!("{url} answered {}", resp.status());
    }
    let text = resp.body_mut().read_to_string()?;
    Ok(parse(&text, group, dlq_topic))
}

/// The value of `label` in a sample's label set `{a="x",b="y"}`.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

pub fn parse(text: &str, group: &str, dlq_topic: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        match name {
            "kafka_consumergroup_lag" if label(labels, "consumergroup") == Some(group) => {
                *s.lag.get_or_insert(0.0) += v;
            }
            "kafka_consumergroup_lag_seconds" if label(labels, "consumergroup") == Some(group) => {
                let m = s.lag_seconds.get_or_insert(v);
                *m = m.max(v);
            }
            "process_resident_memory_bytes" => s.rss_bytes = Some(v),
            "sluice_dlq_records" if label(labels, "topic") == Some(dlq_topic) => {
                s.dlq_records = Some(v)
            }
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groups_figures_are_found_and_others_ignored() {
        let page = "# HELP x\n\
            kafka_consumergroup_lag{consumergroup=\"g\",partition=\"0\",topic=\"t\"} 5\n\
            kafka_consumergroup_lag{consumergroup=\"g\",partition=\"1\",topic=\"t\"} 7\n\
            kafka_consumergroup_lag{consumergroup=\"other\",partition=\"0\",topic=\"t\"} 100\n\
            kafka_consumergroup_lag_seconds{consumergroup=\"g\",partition=\"0\",topic=\"t\"} 1.5\n\
            kafka_consumergroup_lag_seconds{consumergroup=\"g\",partition=\"1\",topic=\"t\"} 0.25\n\
            process_resident_memory_bytes 1048576\n\
            sluice_dlq_records{topic=\"t-dlq\"} 1\n";
        let s = parse(page, "g", "t-dlq");
        assert_eq!(s.lag, Some(12.0));
        assert_eq!(s.lag_seconds, Some(1.5));
        assert_eq!(s.rss_bytes, Some(1048576.0));
        assert_eq!(s.dlq_records, Some(1.0));
        assert_eq!(parse(page, "nobody", "x").lag, None);
    }

    #[test]
    fn scrapes_of_several_brokers_merge() {
        let mut a = Scrape {
            lag: Some(3.0),
            lag_seconds: Some(0.5),
            rss_bytes: Some(10.0),
            dlq_records: None,
        };
        a.merge(Scrape {
            lag: None,
            lag_seconds: Some(2.0),
            rss_bytes: Some(5.0),
            dlq_records: Some(1.0),
        });
        assert_eq!(
            a,
            Scrape {
                lag: Some(3.0),
                lag_seconds: Some(2.0),
                rss_bytes: Some(10.0),
                dlq_records: Some(1.0)
            }
        );
    }
}
