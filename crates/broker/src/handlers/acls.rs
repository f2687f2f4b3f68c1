//! CreateAcls, DescribeAcls and DeleteAcls: Kafka's ACL administration,
//! over the rules the authorizer keeps in the catalog. (Who may call them,
//! Alter or Describe on the cluster, is checked by the dispatcher's guard.)

use super::{code, off_thread, str_bytes};
use crate::security::acl::{
    AclFilter, AclRule, Operation, PatternFilter, PatternType, Permission, ResourceType,
};
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A rule from a CreateAcls entry, or why it is not one.
pub fn rule_of(c: &AclCreation) -> Result<AclRule, String> {
    let resource_type = ResourceType::from_code(c.resource_type).ok_or_else(|| {
        format!(
            "resource type {} is not one of Topic, Group, Cluster, TransactionalId",
            c.resource_type
        )
    })?;
    let pattern = PatternType::from_code(c.resource_pattern_type).ok_or_else(|| {
        format!(
            "pattern type {} is not LITERAL or PREFIXED",
            c.resource_pattern_type
        )
    })?;
    let operation = Operation::from_code(c.operation)
        .ok_or_else(|| format!("operation {} is not a single operation", c.operation))?;
    let permission = Permission::from_code(c.permission_type)
        .ok_or_else(|| format!("permission type {} is not ALLOW or DENY", c.permission_type))?;
    let rule = AclRule {
        resource_type,
        resource_name: c.resource_name.as_str().to_string(),
        pattern,
        principal: c.principal.as_str().to_string(),
        host: c.host.as_str().to_string(),
        operation,
        permission,
    };
    check_rule(&rule)?;
    Ok(rule)
}

/// What Kafka refuses in a rule whatever its codes.
pub fn check_rule(r: &AclRule) -> Result<(), String> {
    match r.principal.split_once(':') {
        Some(("User", name)) if !name.is_empty() => {}
        _ => {
            return Err(format!(
                "principal {:?} is not of the form User:NAME",
                r.principal
            ))
        }
    }
    if r.resource_name.is_empty() {
        return Err("the resource name is empty".into());
    }
    if r.host.is_empty() {
        return Err("the host is empty (use * for any host)".into());
    }
    if r.resource_type == ResourceType::Cluster && r.resource_name != "kafka-cluster" {
        return Err("the cluster resource is named kafka-cluster".into());
    }
    if r.pattern == PatternType::Prefixed && r.resource_name == "*" {
        return Err("a PREFIXED pattern cannot be *".into());
    }
    Ok(())
}

/// A DescribeAcls or DeleteAcls filter, or why it is not one.
#[allow(clippy::too_many_arguments)]
pub fn filter_of(
    resource_type: i8,
    name: Option<&str>,
    pattern: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    Ok(AclFilter {
        resource_type: match resource_type {
            1 => None,
            c => Some(
                ResourceType::from_code(c).ok_or_else(|| format!("unknown resource type {c}"))?,
            ),
        },
        resource_name: name.map(str::to_string),
        pattern: PatternFilter::from_code(pattern)
            .ok_or_else(|| format!("unknown pattern type {pattern}"))?,
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation: match operation {
            1 => None,
            c => Some(Operation::from_code(c).ok_or_else(|| format!("unknown operation {c}"))?),
        },
        permission: match permission {
            1 => None,
            c => Some(
                Permission::from_code(c).ok_or_else(|| format!("unknown permission type {c}"))?,
            ),
        },
    })
}

pub async fn create(broker: &Broker, req: CreateAclsRequest) -> CreateAclsResponse {
    let mut resp = CreateAclsResponse::default();
    let parsed: Vec<Result<AclRule, String>> = req.creations.iter().map(rule_of).collect();
    let good: Vec<AclRule> = parsed
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let stored = if good.is_empty() {
        Ok(())
    } else {
        let authz = broker.authorizer.clone();
        off_thread(move || authz.add(&good)).await
    };
    for p in parsed {
        let mut r = AclCreationResult::default();
        match (&p, &stored) {
            (Err(why), _) => {
                r.error_code = code(ResponseError::InvalidRequest);
                r.error_message = Some(str_bytes(why.clone()));
            }
            (Ok(_), Err(why)) => {
                r.error_code = code(ResponseError::UnknownServerError);
                r.error_message = Some(str_bytes(format!("storing the ACL failed: {why}")));
            }
            (Ok(rule), Ok(())) => {
                tracing::info!(?rule, "ACL created");
            }
        }
        resp.results.push(r);
    }
    resp
}

pub fn describe(broker: &Broker, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut resp = DescribeAclsResponse::default();
    let filter = match filter_of(
        req.resource_type_filter,
        req.resource_name_filter.as_ref().map(|s| s.as_str()),
        req.pattern_type_filter,
        req.principal_filter.as_ref().map(|s| s.as_str()),
        req.host_filter.as_ref().map(|s| s.as_str()),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(why) => {
            resp.error_code = code(ResponseError::InvalidRequest);
            resp.error_message = Some(str_bytes(why));
            return resp;
        }
    };
    let rules = broker.authorizer.rules();
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for r in rules.iter().filter(|r| filter.matches(r)) {
        let mut d = AclDescription::default();
        d.principal = str_bytes(r.principal.clone());
        d.host = str_bytes(r.host.clone());
        d.operation = r.operation.code();
        d.permission_type = r.permission.code();
        by_resource
            .entry((
                r.resource_type.code(),
                r.resource_name.clone(),
                r.pattern.code(),
            ))
            .or_default()
            .push(d);
    }
    for ((t, name, p), acls) in by_resource {
        let mut res = DescribeAclsResource::default();
        res.resource_type = t;
        res.resource_name = str_bytes(name);
        res.pattern_type = p;
        res.acls = acls;
        resp.resources.push(res);
    }
    resp
}

fn filter_of_delete(f: &DeleteAclsFilter) -> Result<AclFilter, String> {
    filter_of(
        f.resource_type_filter,
        f.resource_name_filter.as_ref().map(|s| s.as_str()),
        f.pattern_type_filter,
        f.principal_filter.as_ref().map(|s| s.as_str()),
        f.host_filter.as_ref().map(|s| s.as_str()),
        f.operation,
        f.permission_type,
    )
}

pub async fn delete(broker: &Arc<Broker>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let mut resp = DeleteAclsResponse::default();
    for f in &req.filters {
        let mut fr = DeleteAclsFilterResult::default();
        match filter_of_delete(f) {
            Err(why) => {
                fr.error_code = code(ResponseError::InvalidRequest);
                fr.error_message = Some(str_bytes(why));
            }
            Ok(filter) => {
                let authz = broker.authorizer.clone();
                match off_thread(move || authz.remove(&filter)).await {
                    Err(why) => {
                        fr.error_code = code(ResponseError::UnknownServerError);
                        fr.error_message = Some(str_bytes(why));
                    }
                    Ok(gone) => {
                        for r in gone {
                            tracing::info!(rule = ?r, "ACL deleted");
                            let mut m = DeleteAclsMatchingAcl::default();
                            m.resource_type = r.resource_type.code();
                            m.resource_name = str_bytes(r.resource_name);
                            m.pattern_type = r.pattern.code();
                            m.principal = str_bytes(r.principal);
                            m.host = str_bytes(r.host);
                            m.operation = r.operation.code();
                            m.permission_type = r.permission.code();
                            fr.matching_acls.push(m);
                        }
                    }
                }
            }
        }
        resp.filter_results.push(fr);
    }
    resp
}
