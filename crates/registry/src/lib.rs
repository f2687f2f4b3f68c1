//! Sluice schema registry: Confluent-compatible schema storage and REST API,
//! compatibility checking for Avro, JSON Schema and Protobuf, produce-time
//! validation of records against registered schemas, governance checks on
//! headers, and the AI event contracts shipped with the broker.
//!
//! Broker integration (see README.md beside this crate):
//! `Registry::open(catalog.db())` (the broker catalog's engine), `.merge(router(reg))`
//! on the HTTP listener, `policy_from_configs` per topic and
//! `TopicPolicy::check_record` with `Registry::validator()` per record.

pub mod avro;
pub mod contracts;
pub mod decode;
pub mod error;
pub mod json;
pub mod model;
pub mod proto_text;
pub mod protobuf;
pub mod registry;
pub mod rest;
pub mod schema;
pub mod store;
pub mod validate;

pub use contracts::{install_ai_contracts, install_tensorzero};
pub use error::{RegistryError, ValidationError};
pub use model::{CompatibilityLevel, Mode, SchemaReference, SchemaType, StoredSchema, VersionSel};
pub use registry::{Registered, Registry, SchemaRequest, SubjectVersion};
pub use rest::router;
pub use validate::{
    dlq, dlq_headers, dlq_topic, keys, policy_from_configs, try_policy_from_configs,
    GovernancePolicy, OnFailure, PlainJson, SchemaCheck, SubjectStrategy, TopicPolicy,
    ValidationMode, Validator, TENANT_HEADER,
};
