//! Produce-time contract checks for the broker: the per-topic policy parsed
//! from topic configs, the schema-id/content `Validator` and the header
//! governance policy, plus the dead-letter header names the produce path
//! writes in `dlq` mode.

use std::collections::BTreeMap;

use crate::error::ValidationError;
use crate::registry::Registry;

/// Topic config keys this module reads.
pub mod keys {
    pub const VALUE_VALIDATION: &str = "confluent.value.schema.validation";
    pub const KEY_VALIDATION: &str = "confluent.key.schema.validation";
    pub const VALUE_STRATEGY: &str = "confluent.value.subject.name.strategy";
    pub const KEY_STRATEGY: &str = "confluent.key.subject.name.strategy";
    pub const MODE: &str = "sluice.validation.mode";
    pub const ON_FAILURE: &str = "sluice.validation.on_failure";
    pub const REQUIRED_HEADERS: &str = "sluice.governance.required.headers";
    pub const ALLOWED_CLASSIFICATIONS: &str = "sluice.governance.allowed.classifications";
    /// `true`: a record's `tenant-id` header must name the producing
    /// principal's tenant.
    pub const TENANT_BINDING: &str = "sluice.governance.tenant.binding";
    /// A header name: the broker writes the producing principal into it
    /// (replacing whatever the client sent).
    pub const IDENTITY_HEADER: &str = "sluice.governance.producer.identity.header";
    /// `confluent` (default: magic byte and schema id) or `json` (plain
    /// JSON values, checked against [`VALUE_SUBJECT`]'s schema).
    pub const VALUE_FORMAT: &str = "sluice.value.format";
    /// The JSON Schema subject plain JSON values are checked against.
    pub const VALUE_SUBJECT: &str = "sluice.value.schema.subject";
    /// The version of that subject (default: its latest).
    pub const VALUE_VERSION: &str = "sluice.value.schema.version";
    /// All of them, for config listings and validation.
    pub const ALL: [&str; 13] = [
        VALUE_VALIDATION,
        KEY_VALIDATION,
        VALUE_STRATEGY,
        KEY_STRATEGY,
        MODE,
        ON_FAILURE,
        REQUIRED_HEADERS,
        ALLOWED_CLASSIFICATIONS,
        TENANT_BINDING,
        IDENTITY_HEADER,
        VALUE_FORMAT,
        VALUE_SUBJECT,
        VALUE_VERSION,
    ];
}

/// Header names on a dead-lettered record (all values UTF-8 text).
pub mod dlq {
    /// Topic the record was produced to.
    pub const ORIGINAL_TOPIC: &str = "sluice.dlq.original.topic";
    /// Partition it was produced to (decimal).
    pub const ORIGINAL_PARTITION: &str = "sluice.dlq.original.partition";
    /// Short reason code (`ValidationError::reason`).
    pub const REASON: &str = "sluice.dlq.reason";
    /// Human readable reason (`ValidationError` display).
    pub const MESSAGE: &str = "sluice.dlq.message";
    /// Schema id the record carried (decimal), when one could be read.
    pub const SCHEMA_ID: &str = "sluice.dlq.schema.id";
    /// Kafka Connect's names for the same facts, understood by its tooling.
    pub const CONNECT_TOPIC: &str = "__connect.errors.topic";
    pub const CONNECT_PARTITION: &str = "__connect.errors.partition";
    pub const CONNECT_MESSAGE: &str = "__connect.errors.exception.message";
    /// `sluice.validation.<reason>`.
    pub const CONNECT_CLASS: &str = "__connect.errors.exception.class.name";
}

/// The dead-letter topic of `topic`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}-dlq")
}

/// The headers to append (after the record's own headers) to a record
/// dead-lettered from `topic`/`partition` because of `err`.
pub fn dlq_headers(topic: &str, partition: i32, err: &ValidationError) -> Vec<(String, Vec<u8>)> {
    let message = err.to_string();
    let mut h = vec![
        (dlq::ORIGINAL_TOPIC.to_string(), topic.as_bytes().to_vec()),
        (
            dlq::ORIGINAL_PARTITION.to_string(),
            partition.to_string().into_bytes(),
        ),
        (dlq::REASON.to_string(), err.reason().as_bytes().to_vec()),
        (dlq::MESSAGE.to_string(), message.clone().into_bytes()),
    ];
    if let Some(id) = err.schema_id() {
        h.push((dlq::SCHEMA_ID.to_string(), id.to_string().into_bytes()));
    }
    h.push((dlq::CONNECT_TOPIC.to_string(), topic.as_bytes().to_vec()));
    h.push((
        dlq::CONNECT_PARTITION.to_string(),
        partition.to_string().into_bytes(),
    ));
    h.push((
        dlq::CONNECT_CLASS.to_string(),
        format!("sluice.validation.{}", err.reason()).into_bytes(),
    ));
    h.push((dlq::CONNECT_MESSAGE.to_string(), message.into_bytes()));
    h
}

/// How the expected subject is derived (Confluent's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectStrategy {
    /// `<topic>-key` / `<topic>-value`.
    #[default]
    TopicName,
    /// The record's name (Avro full name, Protobuf first message, JSON title).
    RecordName,
    /// `<topic>-<record name>`.
    TopicRecordName,
}

impl SubjectStrategy {
    /// Accepts Confluent class names
    /// (`io.confluent.kafka.serializers.subject.TopicNameStrategy`) and the
    /// bare names.
    pub fn parse(s: &str) -> Option<SubjectStrategy> {
        let short = s.trim().rsplit('.').next().unwrap_or("");
        match short {
            "TopicNameStrategy" | "TopicName" => Some(SubjectStrategy::TopicName),
            "RecordNameStrategy" | "RecordName" => Some(SubjectStrategy::RecordName),
            "TopicRecordNameStrategy" | "TopicRecordName" => Some(SubjectStrategy::TopicRecordName),
            _ => None,
        }
    }
}

/// What a record must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidationMode {
    /// Wire format and a schema id registered under the expected subject.
    #[default]
    Id,
    /// As `Id`, and the payload decodes against that schema.
    Content,
}

/// What the produce path does with a record that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Refuse the whole batch with INVALID_RECORD (error code 87), naming
    /// the record index and reason.
    #[default]
    Reject,
    /// Append the record to `<topic>-dlq` with the `dlq` headers; accept
    /// the rest of the batch.
    Dlq,
}

/// Header rules of a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GovernancePolicy {
    /// Headers every record must carry with a non-empty value.
    pub required_headers: Vec<String>,
    /// When set, the `classification` header must be one of these
    /// (compared case-insensitively).
    pub allowed_classifications: Option<Vec<String>>,
    /// The `tenant-id` header must be the producing principal's tenant.
    pub tenant_binding: bool,
    /// The header the broker stamps the producing principal into.
    pub identity_header: Option<String>,
}

/// The header naming a record's tenant.
pub const TENANT_HEADER: &str = "tenant-id";

/// The header carrying a record's data classification.
pub const CLASSIFICATION_HEADER: &str = "classification";

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a W3C trace-context `traceparent` value
/// (`version-traceid-parentid-flags`).
pub fn check_traceparent(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split('-').collect();
    if parts.len() < 4 {
        return Err(format!("'{v}' does not have 4 dash-separated fields"));
    }
    let (version, trace, parent, flags) = (parts[0], parts[1], parts[2], parts[3]);
    if version.len() != 2 || !is_lower_hex(version) || version == "ff" {
        return Err(format!("invalid version '{version}'"));
    }
    if version == "00" && parts.len() != 4 {
        return Err("version 00 has exactly 4 fields".into());
    }
    if trace.len() != 32 || !is_lower_hex(trace) || trace.bytes().all(|b| b == b'0') {
        return Err(format!("invalid trace id '{trace}'"));
    }
    if parent.len() != 16 || !is_lower_hex(parent) || parent.bytes().all(|b| b == b'0') {
        return Err(format!("invalid parent id '{parent}'"));
    }
    if flags.len() != 2 || !is_lower_hex(flags) {
        return Err(format!("invalid flags '{flags}'"));
    }
    Ok(())
}

fn header<'h, K: AsRef<str>, V: AsRef<[u8]>>(
    headers: &'h [(K, Option<V>)],
    name: &str,
) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|(k, _)| k.as_ref() == name)
        .and_then(|(_, v)| v.as_ref().map(AsRef::as_ref))
}

impl GovernancePolicy {
    pub fn is_empty(&self) -> bool {
        self.required_headers.is_empty()
            && self.allowed_classifications.is_none()
            && !self.tenant_binding
            && self.identity_header.is_none()
    }

    /// With tenant binding on: whether a record's `tenant-id` header is
    /// the tenant of the principal producing it.
    pub fn check_identity(
        &self,
        tenant_header: Option<&[u8]>,
        principal: &str,
        tenant: Option<&str>,
    ) -> Result<(), ValidationError> {
        if !self.tenant_binding {
            return Ok(());
        }
        let sent = tenant_header.map(|v| String::from_utf8_lossy(v).into_owned());
        match (&sent, tenant) {
            (Some(s), Some(t)) if s == t => Ok(()),
            _ => Err(ValidationError::TenantMismatch {
                sent,
                principal: principal.to_string(),
                tenant: tenant.map(str::to_string),
            }),
        }
    }

    /// Checks a record's headers. Accepts `&[(String, Option<Vec<u8>>)]`
    /// or borrowed forms.
    pub fn check<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        headers: &[(K, Option<V>)],
    ) -> Result<(), ValidationError> {
        self.check_with(|name| header(headers, name))
    }

    /// Checks a record's headers through a lookup (`name` -> value of the
    /// first header with that name, `None` when absent or null), so a
    /// caller holding headers in another shape need not copy them.
    pub fn check_with<'h>(
        &self,
        lookup: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> Result<(), ValidationError> {
        for name in &self.required_headers {
            let Some(v) = lookup(name).filter(|v| !v.is_empty()) else {
                return Err(ValidationError::MissingHeader(name.clone()));
            };
            if name == "traceparent" {
                let s = std::str::from_utf8(v)
                    .map_err(|_| ValidationError::InvalidTraceparent("not UTF-8".into()))?;
                check_traceparent(s).map_err(ValidationError::InvalidTraceparent)?;
            }
        }
        if let Some(allowed) = &self.allowed_classifications {
            let v = lookup(CLASSIFICATION_HEADER)
                .filter(|v| !v.is_empty())
                .ok_or(ValidationError::MissingClassification)?;
            let s = String::from_utf8_lossy(v);
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(s.trim())) {
                return Err(ValidationError::ClassificationNotAllowed {
                    value: s.into_owned(),
                    allowed: allowed.join(","),
                });
            }
        }
        Ok(())
    }
}

/// Schema check of one side (key or value) of a topic's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaCheck {
    pub strategy: SubjectStrategy,
}

/// Everything a topic asks of its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicPolicy {
    pub key: Option<SchemaCheck>,
    pub value: Option<SchemaCheck>,
    /// `sluice.value.format=json`: values are plain JSON, checked against
    /// this subject's schema.
    pub plain_json: Option<PlainJson>,
    pub mode: ValidationMode,
    pub on_failure: OnFailure,
    pub governance: GovernancePolicy,
}

/// Where plain JSON values find their schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainJson {
    pub subject: String,
    pub version: crate::model::VersionSel,
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" | "" => Some(false),
        _ => None,
    }
}

/// Parses a topic's policy, strictly: the error names the bad config (for
/// CreateTopics/AlterConfigs to answer INVALID_CONFIG).
pub fn try_policy_from_configs(configs: &BTreeMap<String, String>) -> Result<TopicPolicy, String> {
    let get = |k: &str| configs.get(k).map(String::as_str);
    let bad = |k: &str, v: &str| format!("invalid value '{v}' for topic config {k}");
    let side = |enabled: &str, strategy: &str| -> Result<Option<SchemaCheck>, String> {
        let on = match get(enabled) {
            None => false,
            Some(v) => flag(v).ok_or_else(|| bad(enabled, v))?,
        };
        let strategy = match get(strategy) {
            None => SubjectStrategy::TopicName,
            Some(v) if v.trim().is_empty() => SubjectStrategy::TopicName,
            Some(v) => SubjectStrategy::parse(v).ok_or_else(|| bad(strategy, v))?,
        };
        Ok(on.then_some(SchemaCheck { strategy }))
    };
    let key = side(keys::KEY_VALIDATION, keys::KEY_STRATEGY)?;
    let value = side(keys::VALUE_VALIDATION, keys::VALUE_STRATEGY)?;
    let mode = match get(keys::MODE).map(|v| v.trim().to_ascii_lowercase()) {
        None => ValidationMode::Id,
        Some(v) if v.is_empty() || v == "id" => ValidationMode::Id,
        Some(v) if v == "content" => ValidationMode::Content,
        Some(v) => return Err(bad(keys::MODE, &v)),
    };
    let on_failure = match get(keys::ON_FAILURE).map(|v| v.trim().to_ascii_lowercase()) {
        None => OnFailure::Reject,
        Some(v) if v.is_empty() || v == "reject" => OnFailure::Reject,
        Some(v) if v == "dlq" => OnFailure::Dlq,
        Some(v) => return Err(bad(keys::ON_FAILURE, &v)),
    };
    let governance = GovernancePolicy {
        required_headers: get(keys::REQUIRED_HEADERS).map(list).unwrap_or_default(),
        allowed_classifications: get(keys::ALLOWED_CLASSIFICATIONS)
            .map(list)
            .filter(|l| !l.is_empty()),
        tenant_binding: match get(keys::TENANT_BINDING) {
            None => false,
            Some(v) => flag(v).ok_or_else(|| bad(keys::TENANT_BINDING, v))?,
        },
        identity_header: match get(keys::IDENTITY_HEADER).map(str::trim) {
            None | Some("") => None,
            Some(h) if h.chars().any(char::is_control) => {
                return Err(bad(keys::IDENTITY_HEADER, h));
            }
            Some(h) => Some(h.to_string()),
        },
    };
    let plain_json = match get(keys::VALUE_FORMAT).map(|v| v.trim().to_ascii_lowercase()) {
        None => None,
        Some(v) if v.is_empty() || v == "confluent" => None,
        Some(v) if v == "json" => {
            let subject = get(keys::VALUE_SUBJECT)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    format!(
                        "topic config {} = json needs {} (the JSON Schema subject)",
                        keys::VALUE_FORMAT,
                        keys::VALUE_SUBJECT
                    )
                })?;
            if value.is_some() {
                return Err(format!(
                    "topic config {} = json cannot go with {} (plain JSON carries no schema id)",
                    keys::VALUE_FORMAT,
                    keys::VALUE_VALIDATION
                ));
            }
            let version = match get(keys::VALUE_VERSION).map(str::trim) {
                None | Some("") | Some("latest") => crate::model::VersionSel::Latest,
                Some(n) => match n.parse::<u32>() {
                    Ok(n) if n > 0 => crate::model::VersionSel::Number(n),
                    _ => return Err(bad(keys::VALUE_VERSION, n)),
                },
            };
            Some(PlainJson {
                subject: subject.to_string(),
                version,
            })
        }
        Some(v) => return Err(bad(keys::VALUE_FORMAT, &v)),
    };
    Ok(TopicPolicy {
        key,
        value,
        plain_json,
        mode,
        on_failure,
        governance,
    })
}

/// Parses a topic's policy leniently: an unparseable value falls back to
/// its default (checks off, TopicNameStrategy, `id`, `reject`).
pub fn policy_from_configs(configs: &BTreeMap<String, String>) -> TopicPolicy {
    if let Ok(p) = try_policy_from_configs(configs) {
        return p;
    }
    // Retry key by key, dropping the ones that do not parse.
    let mut good = BTreeMap::new();
    for (k, v) in configs {
        let mut one = good.clone();
        one.insert(k.clone(), v.clone());
        if try_policy_from_configs(&one).is_ok() {
            good = one;
        }
    }
    try_policy_from_configs(&good).unwrap_or_default()
}

impl TopicPolicy {
    /// Does this topic need its records decoded at all?
    pub fn is_active(&self) -> bool {
        self.key.is_some()
            || self.value.is_some()
            || self.plain_json.is_some()
            || !self.governance.is_empty()
    }

    /// Runs every check on one record: key schema, value schema, headers.
    /// Returns the value's schema id (0 when not checked or null).
    pub fn check_record<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        validator: &Validator,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(K, Option<V>)],
    ) -> Result<u32, ValidationError> {
        self.check_record_with(validator, topic, key, value, |name| header(headers, name))
    }

    /// `check_record` with headers behind a lookup (see
    /// `GovernancePolicy::check_with`).
    pub fn check_record_with<'h>(
        &self,
        validator: &Validator,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> Result<u32, ValidationError> {
        if let Some(k) = self.key {
            validator.validate(topic, true, k.strategy, self.mode, key)?;
        }
        let mut id = 0;
        if let Some(v) = self.value {
            id = validator.validate(topic, false, v.strategy, self.mode, value)?;
        }
        if let Some(j) = &self.plain_json {
            id = validator.validate_plain_json(j, value)?;
        }
        if !self.governance.is_empty() {
            self.governance.check_with(headers)?;
        }
        Ok(id)
    }
}

/// Checks records against the registry. Cheap to clone; parsed schemas are
/// cached by id inside the registry.
#[derive(Clone)]
pub struct Validator {
    reg: Registry,
}

impl Registry {
    pub fn validator(&self) -> Validator {
        Validator { reg: self.clone() }
    }
}

fn matches_parts(s: &str, parts: &[&str]) -> bool {
    let mut rest = s;
    for p in parts {
        match rest.strip_prefix(p) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

impl Validator {
    /// Checks a plain JSON value (no magic byte, no schema id) against the
    /// JSON Schema of `j`'s subject and version; returns that schema's id.
    /// A null value (a tombstone) passes.
    pub fn validate_plain_json(
        &self,
        j: &PlainJson,
        payload: Option<&[u8]>,
    ) -> Result<u32, ValidationError> {
        let Some(p) = payload else {
            return Ok(0);
        };
        let unusable = |detail: String| ValidationError::NoJsonSchema {
            subject: j.subject.clone(),
            detail,
        };
        let v = self
            .reg
            .version(&j.subject, j.version, false)
            .map_err(|e| unusable(e.to_string()))?;
        if v.schema.schema_type != crate::model::SchemaType::Json {
            return Err(unusable(format!(
                "its schema {} is {:?}, not JSON",
                v.id, v.schema.schema_type
            )));
        }
        let parsed = self.reg.parsed(v.id).map_err(|e| unusable(e.to_string()))?;
        parsed
            .validate_payload(p)
            .map_err(|detail| ValidationError::Decode {
                part: "value",
                id: v.id,
                detail,
            })?;
        Ok(v.id)
    }

    /// Checks one record key or value: wire format (magic byte 0 and a
    /// 4-byte big-endian schema id), the id registered (live) under the
    /// subject the strategy names, and in `Content` mode that the payload
    /// decodes against that schema (Avro binary; JSON parsed and validated;
    /// Protobuf message indexes then the message). Returns the schema id.
    /// A null payload (`None`, e.g. a tombstone) carries no schema and
    /// passes with id 0 (never a registered id).
    pub fn validate(
        &self,
        topic: &str,
        is_key: bool,
        strategy: SubjectStrategy,
        mode: ValidationMode,
        payload: Option<&[u8]>,
    ) -> Result<u32, ValidationError> {
        let part = if is_key { "key" } else { "value" };
        let Some(p) = payload else {
            return Ok(0);
        };
        if p.len() < 5 || p[0] != 0 {
            return Err(ValidationError::NoMagicByte {
                part,
                len: p.len(),
                first: p.first().copied().unwrap_or(0),
            });
        }
        let id = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
        let need_parsed = mode == ValidationMode::Content || strategy != SubjectStrategy::TopicName;
        let parsed = if need_parsed {
            match self.reg.parsed(id) {
                Ok(x) => Some(x),
                Err(crate::RegistryError::SchemaNotFound(_)) => {
                    return Err(ValidationError::UnknownSchemaId { part, id })
                }
                Err(e) => {
                    return Err(ValidationError::Decode {
                        part,
                        id,
                        detail: format!("schema {id} cannot be used: {e}"),
                    })
                }
            }
        } else {
            None
        };
        let suffix = if is_key { "-key" } else { "-value" };
        let record = parsed.as_ref().and_then(|x| x.record_name());
        {
            let st = self.reg.inner.state.read();
            if !st.schemas.contains_key(&id) {
                return Err(ValidationError::UnknownSchemaId { part, id });
            }
            let subjects = st.id_subjects.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            let ok = match (strategy, record) {
                (SubjectStrategy::TopicName, _) => {
                    subjects.iter().any(|s| matches_parts(s, &[topic, suffix]))
                }
                (SubjectStrategy::RecordName, Some(r)) => subjects.iter().any(|s| s == r),
                (SubjectStrategy::TopicRecordName, Some(r)) => {
                    subjects.iter().any(|s| matches_parts(s, &[topic, "-", r]))
                }
                (_, None) => false,
            };
            if !ok {
                let expected = match (strategy, record) {
                    (SubjectStrategy::TopicName, _) => format!("{topic}{suffix}"),
                    (SubjectStrategy::RecordName, Some(r)) => r.to_string(),
                    (SubjectStrategy::TopicRecordName, Some(r)) => format!("{topic}-{r}"),
                    (_, None) => format!("<record name of schema {id}: the schema has none>"),
                };
                return Err(ValidationError::WrongSubject { part, id, expected });
            }
        }
        if mode == ValidationMode::Content {
            if let Some(parsed) = parsed {
                parsed
                    .validate_payload(&p[5..])
                    .map_err(|detail| ValidationError::Decode { part, id, detail })?;
            }
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SchemaType;
    use crate::registry::SchemaRequest;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn policy_parsing() {
        let p = policy_from_configs(&cfg(&[]));
        assert!(!p.is_active());
        let p = policy_from_configs(&cfg(&[
            (keys::VALUE_VALIDATION, "true"),
            (
                keys::VALUE_STRATEGY,
                "io.confluent.kafka.serializers.subject.RecordNameStrategy",
            ),
            (keys::MODE, "content"),
            (keys::ON_FAILURE, "dlq"),
            (keys::REQUIRED_HEADERS, "traceparent, tenant-id"),
            (keys::ALLOWED_CLASSIFICATIONS, "public,internal"),
        ]));
        assert!(p.is_active());
        assert_eq!(
            p.value,
            Some(SchemaCheck {
                strategy: SubjectStrategy::RecordName
            })
        );
        assert_eq!(p.key, None);
        assert_eq!(p.mode, ValidationMode::Content);
        assert_eq!(p.on_failure, OnFailure::Dlq);
        assert_eq!(
            p.governance.required_headers,
            vec!["traceparent", "tenant-id"]
        );
        assert!(try_policy_from_configs(&cfg(&[(keys::MODE, "bogus")])).is_err());
        // Lenient parsing keeps the good keys.
        let p = policy_from_configs(&cfg(&[
            (keys::MODE, "bogus"),
            (keys::KEY_VALIDATION, "true"),
        ]));
        assert!(p.key.is_some());
        assert_eq!(p.mode, ValidationMode::Id);
    }

    #[test]
    fn traceparent_format() {
        assert!(
            check_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_ok()
        );
        assert!(check_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7").is_err());
        assert!(
            check_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_err()
        );
        assert!(
            check_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_err()
        );
        assert!(
            check_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_err()
        );
        assert!(
            check_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .is_ok()
        );
    }

    #[test]
    fn tenant_binding() {
        let g = GovernancePolicy {
            tenant_binding: true,
            ..GovernancePolicy::default()
        };
        assert!(!g.is_empty());
        assert_eq!(
            g.check_identity(Some(b"acme"), "User:a", Some("acme")),
            Ok(())
        );
        let e = g
            .check_identity(Some(b"globex"), "User:a", Some("acme"))
            .unwrap_err();
        assert_eq!(e.reason(), "tenant_mismatch");
        assert!(e.to_string().contains("'globex'") && e.to_string().contains("'acme'"));
        assert!(g.check_identity(None, "User:a", Some("acme")).is_err());
        assert!(g.check_identity(Some(b"acme"), "User:a", None).is_err());
        assert_eq!(
            GovernancePolicy::default().check_identity(None, "User:a", None),
            Ok(())
        );
    }

    #[test]
    fn governance_check() {
        let g = GovernancePolicy {
            required_headers: vec!["traceparent".into(), "tenant-id".into()],
            allowed_classifications: Some(vec!["public".into(), "internal".into()]),
            ..GovernancePolicy::default()
        };
        let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec();
        let good: Vec<(String, Option<Vec<u8>>)> = vec![
            ("traceparent".into(), Some(tp.clone())),
            ("tenant-id".into(), Some(b"t1".to_vec())),
            ("classification".into(), Some(b"Internal".to_vec())),
        ];
        assert_eq!(g.check(&good), Ok(()));
        let mut missing = good.clone();
        missing.remove(1);
        assert_eq!(
            g.check(&missing),
            Err(ValidationError::MissingHeader("tenant-id".into()))
        );
        let mut bad_tp = good.clone();
        bad_tp[0].1 = Some(b"nope".to_vec());
        assert!(matches!(
            g.check(&bad_tp),
            Err(ValidationError::InvalidTraceparent(_))
        ));
        let mut secret = good.clone();
        secret[2].1 = Some(b"secret".to_vec());
        assert!(matches!(
            g.check(&secret),
            Err(ValidationError::ClassificationNotAllowed { .. })
        ));
        let mut none = good.clone();
        none.remove(2);
        assert_eq!(g.check(&none), Err(ValidationError::MissingClassification));
        let empty_value: Vec<(String, Option<Vec<u8>>)> = vec![("tenant-id".into(), None)];
        assert!(g.check(&empty_value).is_err());
    }

    const AVRO: &str =
        r#"{"type":"record","name":"Ev","namespace":"ai","fields":[{"name":"n","type":"long"}]}"#;

    fn framed(id: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn validator_errors_name_the_reason() {
        let reg = Registry::in_memory().unwrap();
        let id = reg
            .register(
                "t-value",
                &SchemaRequest::new(SchemaType::Avro, AVRO),
                false,
            )
            .unwrap()
            .id;
        let other = reg
            .register(
                "u-value",
                &SchemaRequest::new(SchemaType::Json, r#"{"type":"object","title":"J"}"#),
                false,
            )
            .unwrap()
            .id;
        let v = reg.validator();
        let tn = SubjectStrategy::TopicName;
        let (idm, content) = (ValidationMode::Id, ValidationMode::Content);
        assert_eq!(
            v.validate("t", false, tn, content, Some(&framed(id, &[4]))),
            Ok(id)
        );
        assert_eq!(v.validate("t", false, tn, idm, None), Ok(0));
        assert!(matches!(
            v.validate("t", false, tn, idm, Some(b"{\"n\":1}")),
            Err(ValidationError::NoMagicByte { .. })
        ));
        assert!(matches!(
            v.validate("t", false, tn, idm, Some(&framed(999, &[4]))),
            Err(ValidationError::UnknownSchemaId { id: 999, .. })
        ));
        assert!(matches!(
            v.validate("t", false, tn, idm, Some(&framed(other, b"{}"))),
            Err(ValidationError::WrongSubject { .. })
        ));
        // Key side uses the -key subject.
        assert!(matches!(
            v.validate("t", true, tn, idm, Some(&framed(id, &[4]))),
            Err(ValidationError::WrongSubject { .. })
        ));
        // Id mode does not decode; content mode does.
        assert!(v
            .validate("t", false, tn, idm, Some(&framed(id, &[0x80])))
            .is_ok());
        let e = v
            .validate("t", false, tn, content, Some(&framed(id, &[0x80])))
            .unwrap_err();
        assert_eq!(e.reason(), "decode_failed");
        assert_eq!(e.schema_id(), Some(id));
        // Record name strategies.
        reg.register("ai.Ev", &SchemaRequest::new(SchemaType::Avro, AVRO), false)
            .unwrap();
        assert_eq!(
            v.validate(
                "x",
                false,
                SubjectStrategy::RecordName,
                idm,
                Some(&framed(id, &[4]))
            ),
            Ok(id)
        );
        assert!(v
            .validate(
                "x",
                false,
                SubjectStrategy::TopicRecordName,
                idm,
                Some(&framed(id, &[4]))
            )
            .is_err());
        reg.register(
            "x-ai.Ev",
            &SchemaRequest::new(SchemaType::Avro, AVRO),
            false,
        )
        .unwrap();
        assert!(v
            .validate(
                "x",
                false,
                SubjectStrategy::TopicRecordName,
                idm,
                Some(&framed(id, &[4]))
            )
            .is_ok());
        // A soft-deleted subject no longer validates.
        reg.delete_subject("t-value", false).unwrap();
        assert!(matches!(
            v.validate("t", false, tn, idm, Some(&framed(id, &[4]))),
            Err(ValidationError::WrongSubject { .. })
        ));
    }

    #[test]
    fn dlq_headers_carry_the_facts() {
        let e = ValidationError::UnknownSchemaId {
            part: "value",
            id: 7,
        };
        let h = dlq_headers("orders", 3, &e);
        let get = |k: &str| {
            h.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get(dlq::ORIGINAL_TOPIC).as_deref(), Some("orders"));
        assert_eq!(get(dlq::ORIGINAL_PARTITION).as_deref(), Some("3"));
        assert_eq!(get(dlq::REASON).as_deref(), Some("unknown_schema_id"));
        assert_eq!(get(dlq::SCHEMA_ID).as_deref(), Some("7"));
        assert_eq!(dlq_topic("orders"), "orders-dlq");
    }

    /// Random payloads and mutated valid ones never panic, for each type.
    #[test]
    fn random_payloads_never_panic() {
        let reg = Registry::in_memory().unwrap();
        let installed = crate::install_ai_contracts(&reg).unwrap();
        let proto = reg
            .register(
                "p-value",
                &SchemaRequest::new(
                    SchemaType::Protobuf,
                    "syntax = \"proto3\"; message A { int64 x = 1; string s = 2; repeated A kids = 3; map<string, A> m = 4; }",
                ),
                false,
            )
            .unwrap()
            .id;
        let mut ids: Vec<(String, u32)> = installed
            .iter()
            .map(|(s, id)| (s.trim_end_matches("-value").to_string(), *id))
            .collect();
        ids.push(("p".into(), proto));
        let v = reg.validator();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20_000 {
            let (topic, id) = &ids[round % ids.len()];
            let len = (next() % 64) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 {
                // Mostly-plausible prefixes: small varints.
                for b in body.iter_mut() {
                    *b &= 0x3f;
                }
            }
            let payload = framed(*id, &body);
            let _ = v.validate(
                topic,
                false,
                SubjectStrategy::TopicName,
                ValidationMode::Content,
                Some(&payload),
            );
        }
    }
}
