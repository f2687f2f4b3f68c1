//! Topic configs: the names Sluice knows, their defaults and validation.
//! Unknown names are refused with INVALID_CONFIG like Kafka does, except the
//! `confluent.` namespace used by schema validation settings.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Long { min: i64 },
    Int { min: i64 },
    Bool,
    OneOf(&'static [&'static str]),
    List(&'static [&'static str]),
    Text,
}

/// (name, default, kind).
const KNOWN: &[(&str, &str, Kind)] = &[
    (
        "cleanup.policy",
        "delete",
        Kind::List(&["delete", "compact"]),
    ),
    (
        "compression.type",
        "producer",
        Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
    ),
    ("delete.retention.ms", "86400000", Kind::Long { min: 0 }),
    ("file.delete.delay.ms", "60000", Kind::Long { min: 0 }),
    (
        "flush.messages",
        "9223372036854775807",
        Kind::Long { min: 1 },
    ),
    ("flush.ms", "9223372036854775807", Kind::Long { min: 0 }),
    ("index.interval.bytes", "4096", Kind::Int { min: 0 }),
    (
        "max.compaction.lag.ms",
        "9223372036854775807",
        Kind::Long { min: 1 },
    ),
    ("max.message.bytes", "1048588", Kind::Int { min: 0 }),
    // Deprecated and ignored since Kafka 3.0 (KIP-724) as here: batches are
    // stored as sent (record format v2).
    ("message.format.version", "3.0-IV1", Kind::Text),
    (
        "message.timestamp.type",
        "CreateTime",
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    (
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        Kind::Long { min: 0 },
    ),
    (
        "message.timestamp.after.max.ms",
        "9223372036854775807",
        Kind::Long { min: 0 },
    ),
    ("min.cleanable.dirty.ratio", "0.5", Kind::Text),
    ("min.compaction.lag.ms", "0", Kind::Long { min: 0 }),
    ("min.insync.replicas", "1", Kind::Int { min: 1 }),
    ("preallocate", "false", Kind::Bool),
    ("retention.bytes", "-1", Kind::Long { min: -1 }),
    ("retention.ms", "604800000", Kind::Long { min: -1 }),
    ("segment.bytes", "1073741824", Kind::Int { min: 14 }),
    ("segment.ms", "604800000", Kind::Long { min: 1 }),
    ("unclean.leader.election.enable", "false", Kind::Bool),
];

/// Every known config with its default, for DescribeConfigs.
pub fn defaults() -> impl Iterator<Item = (&'static str, &'static str)> {
    KNOWN.iter().map(|(n, d, _)| (*n, *d))
}

/// The default of a known config.
pub fn default_of(name: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, d, _)| *d)
}

/// Checks one config; the error message names the problem.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    if name.starts_with("confluent.") || name.starts_with("sluice.") {
        // Contract settings: checked as a whole by `validate_all`.
        return Ok(());
    }
    let Some((_, _, kind)) = KNOWN.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("Unknown topic config name: {name}"));
    };
    let bad = |why: &str| {
        Err(format!(
            "Invalid value {value} for configuration {name}: {why}"
        ))
    };
    match kind {
        Kind::Long { min } | Kind::Int { min } => {
            let parsed = value.trim().parse::<i64>();
            match parsed {
                Ok(v) if v < *min => bad(&format!("value must be at least {min}")),
                Ok(v) if matches!(kind, Kind::Int { .. }) && v > i32::MAX as i64 => {
                    bad("value must fit in an int")
                }
                Ok(_) => Ok(()),
                Err(_) => bad("not a number"),
            }
        }
        Kind::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => bad("expected true or false"),
        },
        Kind::OneOf(allowed) => {
            if allowed.contains(&value.trim()) {
                Ok(())
            } else {
                bad(&format!("expected one of {}", allowed.join(", ")))
            }
        }
        Kind::List(allowed) => {
            let parts: Vec<&str> = value.split(',').map(str::trim).collect();
            if !parts.is_empty() && parts.iter().all(|p| allowed.contains(p)) {
                Ok(())
            } else {
                bad(&format!("expected a list of {}", allowed.join(", ")))
            }
        }
        Kind::Text => {
            if name == "min.cleanable.dirty.ratio" {
                match value.trim().parse::<f64>() {
                    Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
                    _ => bad("expected a number between 0 and 1"),
                }
            } else {
                Ok(())
            }
        }
    }
}

/// Checks a whole set of configs.
pub fn validate_all(configs: &BTreeMap<String, String>) -> Result<(), String> {
    configs.iter().try_for_each(|(k, v)| validate(k, v))?;
    for k in configs.keys().filter(|k| k.starts_with("sluice.")) {
        if !sluice_registry::keys::ALL.contains(&k.as_str()) {
            return Err(format!("Unknown topic config name: {k}"));
        }
    }
    sluice_registry::try_policy_from_configs(configs).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_known_configs() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "abc")
            .unwrap_err()
            .contains("retention.ms"));
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("no.such.config", "1")
            .unwrap_err()
            .contains("Unknown"));
        assert!(validate("confluent.value.schema.validation", "true").is_ok());
        assert!(validate("max.message.bytes", "99999999999").is_err());
        assert_eq!(default_of("cleanup.policy"), Some("delete"));
    }
}
