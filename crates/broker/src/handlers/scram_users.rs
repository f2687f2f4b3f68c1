//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554):
//! the SASL users of the catalog managed by Kafka clients, the same users
//! `sluice users` manages. Clients send a salted password, never the
//! password; the catalog keeps only the SCRAM keys. (Who may call them,
//! Describe or Alter on the cluster, is checked by the dispatcher's guard.)

use super::{code, off_thread, str_bytes};
use crate::security::sasl::{from_record, to_record};
use crate::security::scram::{Credential, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use sluice_catalog::{CredentialRecord, CredentialStore};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub async fn describe(
    broker: &Arc<Broker>,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let mut resp = DescribeUserScramCredentialsResponse::default();
    let catalog = broker.catalog.clone();
    let all = match off_thread(move || catalog.all_credentials()).await {
        Ok(all) => all,
        Err(e) => {
            resp.error_code = code(ResponseError::UnknownServerError);
            resp.error_message = Some(str_bytes(e));
            return resp;
        }
    };
    let mut by_user: BTreeMap<String, Vec<CredentialRecord>> = BTreeMap::new();
    for c in all {
        by_user.entry(c.user.clone()).or_default().push(c);
    }
    let info = |creds: &[CredentialRecord]| -> Vec<CredentialInfo> {
        creds
            .iter()
            .filter_map(from_record)
            .map(|c| {
                let mut i = CredentialInfo::default();
                i.mechanism = c.mechanism.kafka_code();
                i.iterations = c.iterations as i32;
                i
            })
            .collect()
    };
    match req.users.filter(|u| !u.is_empty()) {
        // Every user.
        None => {
            for (user, creds) in &by_user {
                let mut r = DescribeUserScramCredentialsResult::default();
                r.user = str_bytes(user.clone());
                r.credential_infos = info(creds);
                resp.results.push(r);
            }
        }
        Some(users) => {
            let mut asked: HashMap<String, usize> = HashMap::new();
            for u in &users {
                *asked.entry(u.name.as_str().to_string()).or_default() += 1;
            }
            for u in users {
                let name = u.name.as_str().to_string();
                let mut r = DescribeUserScramCredentialsResult::default();
                r.user = u.name.clone();
                if asked.get(&name).copied().unwrap_or(0) > 1 {
                    r.error_code = code(ResponseError::DuplicateResource);
                    r.error_message =
                        Some(str_bytes(format!("user {name} asked for more than once")));
                } else {
                    match by_user.get(&name) {
                        Some(creds) => r.credential_infos = info(creds),
                        None => {
                            r.error_code = code(ResponseError::ResourceNotFound);
                            r.error_message = Some(str_bytes(format!(
                                "attempt to describe a user credential that does not exist: {name}"
                            )));
                        }
                    }
                }
                resp.results.push(r);
            }
        }
    }
    resp
}

/// A refusal: the error code and its message.
type Refusal = (ResponseError, String);

/// One change of the request, checked.
enum Change {
    Delete(String, Mechanism),
    Upsert(String, Credential),
}

fn check_upsert(
    name: &str,
    mechanism: i8,
    iterations: i32,
    salt: &[u8],
    salted: &[u8],
) -> Result<Change, Refusal> {
    let m = Mechanism::from_kafka_code(mechanism).ok_or_else(|| {
        (
            ResponseError::UnsupportedSaslMechanism,
            format!("unknown SCRAM mechanism code {mechanism}"),
        )
    })?;
    if name.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "the user name is empty".into(),
        ));
    }
    let iterations = u32::try_from(iterations).unwrap_or(0);
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err((
            ResponseError::UnacceptableCredential,
            format!("iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"),
        ));
    }
    if salt.is_empty() || salted.len() != m.key_len() {
        return Err((
            ResponseError::UnacceptableCredential,
            format!(
                "a {} credential needs a salt and a {}-byte salted password",
                m.name(),
                m.key_len()
            ),
        ));
    }
    Ok(Change::Upsert(
        name.to_string(),
        Credential::from_salted(m, salted, salt.to_vec(), iterations),
    ))
}

pub async fn alter(
    broker: &Arc<Broker>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut resp = AlterUserScramCredentialsResponse::default();
    // Kafka refuses a user named twice in one request (in either list).
    let mut seen: HashMap<String, usize> = HashMap::new();
    for n in req
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(req.upsertions.iter().map(|u| &u.name))
    {
        *seen.entry(n.as_str().to_string()).or_default() += 1;
    }
    let mut checked: Vec<(String, Result<Change, Refusal>)> = Vec::new();
    for d in &req.deletions {
        let name = d.name.as_str().to_string();
        let c = Mechanism::from_kafka_code(d.mechanism)
            .map(|m| Change::Delete(name.clone(), m))
            .ok_or_else(|| {
                (
                    ResponseError::UnsupportedSaslMechanism,
                    format!("unknown SCRAM mechanism code {}", d.mechanism),
                )
            });
        checked.push((name, c));
    }
    for u in &req.upsertions {
        let name = u.name.as_str().to_string();
        let c = check_upsert(
            &name,
            u.mechanism,
            u.iterations,
            &u.salt,
            &u.salted_password,
        );
        checked.push((name, c));
    }
    for (name, change) in checked {
        let mut r = AlterUserScramCredentialsResult::default();
        r.user = str_bytes(name.clone());
        let outcome = match change {
            _ if seen.get(&name).copied().unwrap_or(0) > 1 => Err((
                ResponseError::DuplicateResource,
                format!("user {name} appears more than once in the request"),
            )),
            Err(e) => Err(e),
            Ok(Change::Delete(user, m)) => {
                let catalog = broker.catalog.clone();
                match off_thread(move || catalog.delete_credentials(&user, Some(m.name()))).await {
                    Ok(0) => Err((
                        ResponseError::ResourceNotFound,
                        format!("attempt to delete a user credential that does not exist: {name}"),
                    )),
                    Ok(_) => Ok(()),
                    Err(e) => Err((ResponseError::UnknownServerError, e)),
                }
            }
            Ok(Change::Upsert(user, cred)) => {
                let record = to_record(&user, &cred);
                let catalog = broker.catalog.clone();
                off_thread(move || catalog.put_credential(&record))
                    .await
                    .map_err(|e| (ResponseError::UnknownServerError, e))
            }
        };
        if let Err((e, msg)) = outcome {
            r.error_code = code(e);
            r.error_message = Some(str_bytes(msg));
        } else {
            tracing::info!(user = %name, "SCRAM credential changed through AlterUserScramCredentials");
        }
        resp.results.push(r);
    }
    resp
}
