//! DescribeClientQuotas and AlterClientQuotas (KIP-546) over the quotas of
//! [`crate::quotas`]. (Who may call them, DescribeConfigs or AlterConfigs
//! on the cluster, is checked by the dispatcher's guard.)

use super::{code, off_thread, str_bytes};
use crate::quotas::{Entity, QuotaKind};
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_request::EntityData as AlterEntity;
use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use std::sync::Arc;

/// An entity from its Kafka components, or why it is not one.
pub fn entity_of<'a>(
    components: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<Entity, String> {
    let mut e = Entity {
        user: None,
        client_id: None,
    };
    for (kind, name) in components {
        let slot = match kind {
            "user" => &mut e.user,
            "client-id" => &mut e.client_id,
            other => {
                return Err(format!(
                    "entity type {other:?} is not supported (user, client-id)"
                ))
            }
        };
        if slot.is_some() {
            return Err(format!("entity type {kind} given twice"));
        }
        if name.is_some_and(str::is_empty) {
            return Err(format!("the {kind} name is empty (null means the default)"));
        }
        *slot = Some(name.map(str::to_string));
    }
    if e.user.is_none() && e.client_id.is_none() {
        return Err("the entity names no user and no client id".into());
    }
    Ok(e)
}

/// Checks a quota value.
pub fn check_value(kind: QuotaKind, value: f64) -> Result<(), String> {
    if !value.is_finite() || value <= 0.0 {
        return Err(format!(
            "{} must be a positive number, not {value}",
            kind.key()
        ));
    }
    Ok(())
}

/// How a DescribeClientQuotas component matches an entity's name.
enum Match {
    Exact(String),
    Default,
    /// Any name but the default.
    Specified,
}

impl Match {
    fn accepts(&self, name: Option<&str>) -> bool {
        match self {
            Match::Exact(n) => name == Some(n.as_str()),
            Match::Default => name.is_none(),
            Match::Specified => name.is_some(),
        }
    }
}

pub fn describe(broker: &Broker, req: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    let mut resp = DescribeClientQuotasResponse::default();
    let mut filters = Vec::new();
    for c in &req.components {
        let kind = c.entity_type.as_str();
        if kind != "user" && kind != "client-id" {
            resp.error_code = code(ResponseError::InvalidRequest);
            resp.error_message = Some(str_bytes(format!("entity type {kind:?} is not supported")));
            return resp;
        }
        let matcher = match (c.match_type, &c._match) {
            (0, Some(name)) => Match::Exact(name.as_str().to_string()),
            (0, None) | (1, _) => Match::Default,
            (2, _) => Match::Specified,
            (m, _) => {
                resp.error_code = code(ResponseError::InvalidRequest);
                resp.error_message = Some(str_bytes(format!("unknown match type {m}")));
                return resp;
            }
        };
        filters.push((kind.to_string(), matcher));
    }
    let mut entries = Vec::new();
    for (entity, values) in broker.quotas.config().iter() {
        let parts = entity.components();
        let all_match = filters.iter().all(|(kind, matches)| {
            parts
                .iter()
                .any(|(k, n)| *k == kind.as_str() && matches.accepts(*n))
        });
        let strict_ok = !req.strict
            || parts
                .iter()
                .all(|(k, _)| filters.iter().any(|(f, _)| f == k));
        if !all_match || !strict_ok || values.is_empty() {
            continue;
        }
        let mut entry = EntryData::default();
        for (k, n) in parts {
            let mut d = EntityData::default();
            d.entity_type = str_bytes(k);
            d.entity_name = n.map(|s| str_bytes(s.to_string()));
            entry.entity.push(d);
        }
        for (kind, v) in values {
            let mut d = ValueData::default();
            d.key = str_bytes(kind.key());
            d.value = *v;
            entry.values.push(d);
        }
        entries.push(entry);
    }
    resp.entries = Some(entries);
    resp
}

fn altered(entity: &[AlterEntity], error: Option<(ResponseError, String)>) -> AlteredEntry {
    let mut e = AlteredEntry::default();
    for c in entity {
        let mut d = AlteredEntity::default();
        d.entity_type = c.entity_type.clone();
        d.entity_name = c.entity_name.clone();
        e.entity.push(d);
    }
    if let Some((err, msg)) = error {
        e.error_code = code(err);
        e.error_message = Some(str_bytes(msg));
    }
    e
}

pub async fn alter(
    broker: &Arc<Broker>,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let mut resp = AlterClientQuotasResponse::default();
    for entry in req.entries {
        let parsed = entity_of(
            entry
                .entity
                .iter()
                .map(|c| (c.entity_type.as_str(), c.entity_name.as_ref().map(|n| n.as_str()))),
        )
        .and_then(|entity| {
            let mut changes = Vec::new();
            for op in &entry.ops {
                let kind = QuotaKind::parse(op.key.as_str())
                    .ok_or_else(|| format!("unknown quota {:?} (producer_byte_rate, consumer_byte_rate, request_percentage)", op.key.as_str()))?;
                if op.remove {
                    changes.push((kind, None));
                } else {
                    check_value(kind, op.value)?;
                    changes.push((kind, Some(op.value)));
                }
            }
            Ok((entity, changes))
        });
        let error = match parsed {
            Err(why) => Some((ResponseError::InvalidRequest, why)),
            Ok(_) if req.validate_only => None,
            Ok((entity, changes)) => {
                let quotas = broker.quotas.clone();
                off_thread(move || quotas.alter(&entity, &changes))
                    .await
                    .err()
                    .map(|e| (ResponseError::UnknownServerError, e))
            }
        };
        resp.entries.push(altered(&entry.entity, error));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_from_components() {
        let e = entity_of([("user", Some("alice")), ("client-id", None)].into_iter()).unwrap();
        assert_eq!(e.user, Some(Some("alice".into())));
        assert_eq!(e.client_id, Some(None));
        assert!(entity_of([("ip", Some("1.2.3.4"))].into_iter()).is_err());
        assert!(entity_of([("user", Some("a")), ("user", Some("b"))].into_iter()).is_err());
        assert!(entity_of(std::iter::empty()).is_err());
        assert!(check_value(QuotaKind::Produce, 0.0).is_err());
        assert!(check_value(QuotaKind::Produce, f64::NAN).is_err());
        assert!(check_value(QuotaKind::Fetch, 1024.0).is_ok());
    }
}
