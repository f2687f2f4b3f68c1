//! Kafka's authorization model (KIP-11, KIP-290): a rule allows or denies
//! a principal, from a host, an operation on resources named literally or
//! by prefix. Deny wins over allow; `ALL` covers every operation; an allowed
//! `READ`, `WRITE`, `DELETE` or `ALTER` implies `DESCRIBE`, and an allowed
//! `ALTER_CONFIGS` implies `DESCRIBE_CONFIGS` (a deny implies nothing); the literal name `*`, the principal
//! `User:*` and the host `*` match everything. Super users are allowed
//! everything; a resource no rule names is allowed only with
//! `allow.everyone.if.no.acl.found`.
//!
//! The numeric codes are Kafka's (`AclOperation`, `ResourceType`,
//! `PatternType`, `AclPermissionType`), so CreateAcls, DescribeAcls and
//! DeleteAcls carry them unchanged.

use std::fmt;

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl ResourceType {
    pub fn code(self) -> i8 {
        match self {
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
            Self::TransactionalId => 5,
        }
    }

    pub fn from_code(c: i8) -> Option<Self> {
        match c {
            2 => Some(Self::Topic),
            3 => Some(Self::Group),
            4 => Some(Self::Cluster),
            5 => Some(Self::TransactionalId),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "topic" => Some(Self::Topic),
            "group" => Some(Self::Group),
            "cluster" => Some(Self::Cluster),
            "transactionalid" => Some(Self::TransactionalId),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Topic => "Topic",
            Self::Group => "Group",
            Self::Cluster => "Cluster",
            Self::TransactionalId => "TransactionalId",
        }
    }
}

/// How a rule's resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }

    pub fn from_code(c: i8) -> Option<Self> {
        match c {
            3 => Some(Self::Literal),
            4 => Some(Self::Prefixed),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "literal" => Some(Self::Literal),
            "prefixed" => Some(Self::Prefixed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Literal => "LITERAL",
            Self::Prefixed => "PREFIXED",
        }
    }
}

/// An operation on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    const TABLE: [(Operation, i8, &'static str); 11] = [
        (Operation::All, 2, "All"),
        (Operation::Read, 3, "Read"),
        (Operation::Write, 4, "Write"),
        (Operation::Create, 5, "Create"),
        (Operation::Delete, 6, "Delete"),
        (Operation::Alter, 7, "Alter"),
        (Operation::Describe, 8, "Describe"),
        (Operation::ClusterAction, 9, "ClusterAction"),
        (Operation::DescribeConfigs, 10, "DescribeConfigs"),
        (Operation::AlterConfigs, 11, "AlterConfigs"),
        (Operation::IdempotentWrite, 12, "IdempotentWrite"),
    ];

    pub fn code(self) -> i8 {
        Self::TABLE
            .iter()
            .find(|(o, _, _)| *o == self)
            .map_or(0, |(_, c, _)| *c)
    }

    pub fn from_code(c: i8) -> Option<Self> {
        Self::TABLE
            .iter()
            .find(|(_, x, _)| *x == c)
            .map(|(o, _, _)| *o)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let want = s.to_ascii_lowercase().replace(['-', '_'], "");
        Self::TABLE
            .iter()
            .find(|(_, _, n)| n.to_ascii_lowercase() == want)
            .map(|(o, _, _)| *o)
    }

    pub fn name(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(o, _, _)| *o == self)
            .map_or("Unknown", |(_, _, n)| n)
    }

    /// Whether a rule for `self` also covers `asked` (Kafka's implications).
    fn covers(self, asked: Operation) -> bool {
        use Operation::*;
        self == All
            || self == asked
            || (asked == Describe && matches!(self, Read | Write | Delete | Alter))
            || (asked == DescribeConfigs && self == AlterConfigs)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Self::Deny => 2,
            Self::Allow => 3,
        }
    }

    pub fn from_code(c: i8) -> Option<Self> {
        match c {
            2 => Some(Self::Deny),
            3 => Some(Self::Allow),
            _ => None,
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclRule {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern: PatternType,
    /// `User:NAME`, or `User:*`.
    pub principal: String,
    /// An address, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclRule {
    fn names(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern {
                PatternType::Literal => self.resource_name == "*" || self.resource_name == name,
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == "*" || self.host == host)
    }
}

/// A request for permission.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub principal: &'a str,
    pub host: &'a str,
    pub operation: Operation,
    pub resource_type: ResourceType,
    pub resource_name: &'a str,
}

/// The decision procedure over a set of rules.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub super_users: Vec<String>,
    pub allow_if_no_acl: bool,
}

impl Policy {
    /// Whether `rules` let `access` happen.
    pub fn allows(&self, rules: &[AclRule], access: &Access<'_>) -> bool {
        if self.super_users.iter().any(|u| u == access.principal) {
            return true;
        }
        let on_resource: Vec<&AclRule> = rules
            .iter()
            .filter(|r| r.names(access.resource_type, access.resource_name))
            .collect();
        if on_resource.is_empty() {
            return self.allow_if_no_acl;
        }
        let mine = || {
            on_resource
                .iter()
                .filter(|r| r.applies_to(access.principal, access.host))
        };
        // As in Kafka, only allow rules imply other operations: Deny Read
        // refuses Read (and a Deny All everything) but leaves Describe to
        // the other rules.
        let denied = mine().any(|r| {
            r.permission == Permission::Deny
                && (r.operation == access.operation || r.operation == Operation::All)
        });
        !denied
            && mine()
                .any(|r| r.permission == Permission::Allow && r.operation.covers(access.operation))
    }
}

/// How a filter matches a rule's pattern (Kafka's `PatternTypeFilter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Any rule, whatever its pattern type (code 1).
    Any,
    /// Rules that would apply to the filter's resource name: the literal
    /// name, the wildcard `*`, and every prefix of it (code 2).
    Match,
    /// Rules of exactly this pattern type (codes 3 and 4).
    Exactly(PatternType),
}

impl PatternFilter {
    pub fn from_code(c: i8) -> Option<Self> {
        match c {
            1 => Some(Self::Any),
            2 => Some(Self::Match),
            c => PatternType::from_code(c).map(Self::Exactly),
        }
    }
}

/// Which rules a DescribeAcls or DeleteAcls filter selects; `None` fields
/// match anything (Kafka's ANY and null).
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// Every rule.
    pub fn any() -> Self {
        Self {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    pub fn matches(&self, r: &AclRule) -> bool {
        let name_ok = match (&self.pattern, &self.resource_name) {
            (PatternFilter::Match, Some(name)) => match r.pattern {
                PatternType::Literal => r.resource_name == *name || r.resource_name == "*",
                PatternType::Prefixed => name.starts_with(&r.resource_name),
            },
            (PatternFilter::Exactly(p), name) => {
                r.pattern == *p && name.as_ref().is_none_or(|n| *n == r.resource_name)
            }
            (_, name) => name.as_ref().is_none_or(|n| *n == r.resource_name),
        };
        name_ok
            && self.resource_type.is_none_or(|t| t == r.resource_type)
            && self.principal.as_ref().is_none_or(|p| *p == r.principal)
            && self.host.as_ref().is_none_or(|h| *h == r.host)
            && self.operation.is_none_or(|o| o == r.operation)
            && self.permission.is_none_or(|p| p == r.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        t: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: Operation,
        perm: Permission,
    ) -> AclRule {
        AclRule {
            resource_type: t,
            resource_name: name.into(),
            pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    fn access<'a>(principal: &'a str, op: Operation, t: ResourceType, name: &'a str) -> Access<'a> {
        Access {
            principal,
            host: "10.0.0.1",
            operation: op,
            resource_type: t,
            resource_name: name,
        }
    }

    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    #[test]
    fn allow_deny_prefix_wildcards_and_implications() {
        let rules = vec![
            rule(Topic, "orders", Literal, "User:alice", Write, Allow),
            rule(Topic, "llm.", Prefixed, "User:bob", Read, Allow),
            rule(Topic, "llm.secret", Literal, "User:bob", Read, Deny),
            rule(Group, "*", Literal, "User:*", Read, Allow),
            rule(Topic, "audit", Literal, "User:carol", All, Allow),
        ];
        let p = Policy::default();
        assert!(p.allows(&rules, &access("User:alice", Write, Topic, "orders")));
        assert!(
            p.allows(&rules, &access("User:alice", Describe, Topic, "orders")),
            "write implies describe"
        );
        assert!(!p.allows(&rules, &access("User:alice", Read, Topic, "orders")));
        assert!(!p.allows(&rules, &access("User:bob", Write, Topic, "orders")));
        assert!(p.allows(&rules, &access("User:bob", Read, Topic, "llm.inference")));
        assert!(
            !p.allows(&rules, &access("User:bob", Read, Topic, "llm.secret")),
            "deny wins"
        );
        assert!(
            p.allows(&rules, &access("User:bob", Describe, Topic, "llm.secret")),
            "a deny implies nothing: the prefixed Read still gives Describe"
        );
        assert!(
            !p.allows(&rules, &access("User:bob", Read, Topic, "other")),
            "no rule: denied"
        );
        assert!(p.allows(&rules, &access("User:zed", Read, Group, "any-group")));
        assert!(p.allows(&rules, &access("User:carol", Delete, Topic, "audit")));
        assert!(p.allows(
            &rules,
            &access("User:carol", DescribeConfigs, Topic, "audit")
        ));
        let open = Policy {
            allow_if_no_acl: true,
            ..Policy::default()
        };
        assert!(open.allows(&rules, &access("User:bob", Read, Topic, "other")));
        assert!(
            !open.allows(&rules, &access("User:bob", Write, Topic, "orders")),
            "a rule exists there"
        );
        let supers = Policy {
            super_users: vec!["User:admin".into()],
            ..Policy::default()
        };
        assert!(supers.allows(&rules, &access("User:admin", Read, Topic, "llm.secret")));
    }

    #[test]
    fn hosts_and_codes() {
        let mut r = rule(Topic, "t", Literal, "User:a", Read, Allow);
        r.host = "10.0.0.2".into();
        assert!(!Policy::default().allows(&[r.clone()], &access("User:a", Read, Topic, "t")));
        r.host = "10.0.0.1".into();
        assert!(Policy::default().allows(&[r], &access("User:a", Read, Topic, "t")));
        for op in Operation::TABLE.iter().map(|(o, _, _)| *o) {
            assert_eq!(Operation::from_code(op.code()), Some(op));
            assert_eq!(Operation::parse(op.name()), Some(op));
        }
        assert_eq!(Operation::parse("describe-configs"), Some(DescribeConfigs));
        assert_eq!(
            ResourceType::parse("transactional-id"),
            Some(TransactionalId)
        );
        assert_eq!(
            Operation::from_code(1),
            None,
            "ANY is a filter, not an operation"
        );
    }

    #[test]
    fn filters() {
        let rules = [
            rule(Topic, "llm.", Prefixed, "User:bob", Read, Allow),
            rule(Topic, "llm.inference", Literal, "User:bob", Write, Allow),
            rule(Topic, "*", Literal, "User:ops", Describe, Allow),
            rule(Group, "g", Literal, "User:bob", Read, Deny),
        ];
        let pick = |f: &AclFilter| rules.iter().filter(|r| f.matches(r)).count();
        assert_eq!(pick(&AclFilter::any()), 4);
        let matching = AclFilter {
            resource_type: Some(Topic),
            resource_name: Some("llm.inference".into()),
            pattern: PatternFilter::Match,
            ..AclFilter::any()
        };
        assert_eq!(pick(&matching), 3, "prefix, literal and wildcard");
        let prefixed = AclFilter {
            pattern: PatternFilter::Exactly(Prefixed),
            ..AclFilter::any()
        };
        assert_eq!(pick(&prefixed), 1);
        let bob_denies = AclFilter {
            principal: Some("User:bob".into()),
            permission: Some(Deny),
            ..AclFilter::any()
        };
        assert_eq!(pick(&bob_denies), 1);
        assert_eq!(PatternFilter::from_code(2), Some(PatternFilter::Match));
        assert_eq!(PatternFilter::from_code(9), None);
    }
}
