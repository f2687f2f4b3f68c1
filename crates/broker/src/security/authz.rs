//! The authorizer: the ACLs of the catalog held in memory and the decision
//! for each request ([`Authorizer::allows`]). Off (the embedded default),
//! everything is allowed. On (`--authorizer acl`), a request is allowed by
//! the rules of [`acl`](super::acl), super users pass, and a resource no
//! rule names is allowed only with `--allow-everyone-if-no-acl-found`.
//!
//! Rules change through CreateAcls/DeleteAcls, the HTTP admin API or
//! `sluice acls` (another process writing the catalog). The broker that
//! made a change reloads at once; the others of a cluster hear the
//! catalog's `acls` notification; and every broker reloads every few
//! seconds, which is how a change from `sluice acls` reaches an embedded
//! broker.

use super::acl::{
    Access, AclFilter, AclRule, Operation, PatternType, Permission, Policy, ResourceType,
};
use sluice_catalog::{AclRecord, AclStore, Catalog};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often every broker reads the rules again.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Who is asking, as the connection established it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `User:NAME` after SASL, `User:<subject DN>` after mutual TLS,
    /// `User:ANONYMOUS` otherwise (Kafka's names).
    pub principal: String,
    /// The client's address.
    pub host: String,
    /// The user's tenant (the `tenant` attribute of `sluice users`), for
    /// identity-bound governance.
    pub tenant: Option<String>,
}

impl Caller {
    pub const ANONYMOUS: &'static str = "User:ANONYMOUS";

    pub fn anonymous(host: String) -> Self {
        Self {
            principal: Self::ANONYMOUS.to_string(),
            host,
            tenant: None,
        }
    }

    /// Becomes `principal`, with its tenant from the catalog.
    pub async fn become_principal(&mut self, catalog: &Arc<Catalog>, principal: String) {
        if principal == self.principal {
            return;
        }
        let user = principal
            .strip_prefix("User:")
            .unwrap_or(&principal)
            .to_string();
        let c = catalog.clone();
        self.tenant = match tokio::task::spawn_blocking(move || {
            sluice_catalog::CredentialStore::user_attributes(&*c, &user)
        })
        .await
        {
            Ok(Ok(attrs)) => attrs
                .into_iter()
                .find(|(a, _)| a == "tenant")
                .map(|(_, v)| v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading a user's tenant failed");
                None
            }
            Err(_) => None,
        };
        self.principal = principal;
    }
}

pub struct Authorizer {
    /// None: authorization is off.
    policy: Option<Policy>,
    catalog: Arc<Catalog>,
    rules: RwLock<Arc<Vec<AclRule>>>,
}

/// A rule as the catalog stores it (Kafka's numeric codes).
pub fn to_record(r: &AclRule) -> AclRecord {
    AclRecord {
        resource_type: r.resource_type.code(),
        resource_name: r.resource_name.clone(),
        pattern_type: r.pattern.code(),
        principal: r.principal.clone(),
        host: r.host.clone(),
        operation: r.operation.code(),
        permission: r.permission.code(),
    }
}

/// A stored rule (none for codes this broker does not know).
pub fn from_record(r: &AclRecord) -> Option<AclRule> {
    Some(AclRule {
        resource_type: ResourceType::from_code(r.resource_type)?,
        resource_name: r.resource_name.clone(),
        pattern: PatternType::from_code(r.pattern_type)?,
        principal: r.principal.clone(),
        host: r.host.clone(),
        operation: Operation::from_code(r.operation)?,
        permission: Permission::from_code(r.permission)?,
    })
}

impl Authorizer {
    /// Loads the rules; `policy` None turns authorization off.
    pub fn open(catalog: Arc<Catalog>, policy: Option<Policy>) -> anyhow::Result<Arc<Self>> {
        let a = Arc::new(Self {
            policy,
            catalog,
            rules: RwLock::new(Arc::new(Vec::new())),
        });
        a.reload()?;
        Ok(a)
    }

    /// Whether requests are authorized at all.
    pub fn enabled(&self) -> bool {
        self.policy.is_some()
    }

    /// Whether `caller` may do `operation` on the resource.
    pub fn allows(
        &self,
        caller: &Caller,
        operation: Operation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> bool {
        let Some(policy) = &self.policy else {
            return true;
        };
        let rules = self.rules();
        let allowed = policy.allows(
            &rules,
            &Access {
                principal: &caller.principal,
                host: &caller.host,
                operation,
                resource_type,
                resource_name,
            },
        );
        if !allowed {
            sluice_observe::metrics()
                .authorization_denials
                .with_label_values(&[resource_type.name(), operation.name()])
                .inc();
            tracing::debug!(principal = %caller.principal, host = %caller.host, %operation,
                resource = resource_type.name(), name = resource_name, "denied");
        }
        allowed
    }

    /// Whether `caller` is allowed `operation` on the cluster.
    pub fn allows_cluster(&self, caller: &Caller, operation: Operation) -> bool {
        self.allows(caller, operation, ResourceType::Cluster, "kafka-cluster")
    }

    /// The rules as last loaded.
    pub fn rules(&self) -> Arc<Vec<AclRule>> {
        match self.rules.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the rules from the catalog again (blocking).
    pub fn reload(&self) -> sluice_catalog::Result<()> {
        let rules: Vec<AclRule> = self
            .catalog
            .all_acls()?
            .iter()
            .filter_map(from_record)
            .collect();
        let mut slot = match self.rules.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = Arc::new(rules);
        Ok(())
    }

    /// Adds rules (blocking); a rule already there stays once.
    pub fn add(&self, rules: &[AclRule]) -> sluice_catalog::Result<()> {
        let records: Vec<AclRecord> = rules.iter().map(to_record).collect();
        self.catalog.put_acls(&records)?;
        self.reload()
    }

    /// Removes every rule `filter` selects (blocking); returns them.
    pub fn remove(&self, filter: &AclFilter) -> sluice_catalog::Result<Vec<AclRule>> {
        self.reload()?;
        let doomed: Vec<AclRule> = self
            .rules()
            .iter()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect();
        if !doomed.is_empty() {
            let records: Vec<AclRecord> = doomed.iter().map(to_record).collect();
            self.catalog.delete_acls(&records)?;
            self.reload()?;
        }
        Ok(doomed)
    }
}
