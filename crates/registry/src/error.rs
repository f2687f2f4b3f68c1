//! Error types of the registry: `RegistryError` for the REST/admin side (each
//! maps to a Confluent Schema Registry `error_code` and HTTP status) and
//! `ValidationError` for produce-time checks (each has a short machine
//! readable reason used in dead-letter headers).

use thiserror::Error;

/// Everything the registry API can refuse. `error_code()` gives the Confluent
/// code (`40401`, `42201`, `409`, ...) and `http_status()` the HTTP status.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {version} not found.")]
    VersionNotFound { subject: String, version: String },
    #[error("Schema {0} not found")]
    SchemaNotFound(String),
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error("Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted { subject: String, version: u32 },
    #[error("Subject '{subject}' Version {version} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted { subject: String, version: u32 },
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectCompatibilityNotConfigured(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotConfigured(String),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    #[error("Invalid compatibility level '{0}'. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")]
    InvalidCompatibilityLevel(String),
    #[error(
        "Invalid mode '{0}'. Valid values are READWRITE, READONLY, READONLY_OVERRIDE and IMPORT"
    )]
    InvalidMode(String),
    #[error("{0}")]
    OperationNotPermitted(String),
    #[error("One or more references exist to the schema {{subject={subject}, version={version}}}")]
    ReferenceExists { subject: String, version: u32 },
    #[error("{0}")]
    IdDoesNotMatch(String),
    #[error("Invalid subject '{0}'")]
    InvalidSubject(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", messages.join(", "))]
    Incompatible {
        subject: String,
        messages: Vec<String>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("Error in the backend data store: {0}")]
    Store(String),
    /// Another writer changed the store since this change was computed.
    #[error("Error in the backend data store: the registry changed concurrently; retry")]
    Stale,
}

impl RegistryError {
    /// The Confluent `error_code` for this error.
    pub fn error_code(&self) -> u32 {
        match self {
            RegistryError::SubjectNotFound(_) => 40401,
            RegistryError::VersionNotFound { .. } => 40402,
            RegistryError::SchemaNotFound(_) => 40403,
            RegistryError::SubjectSoftDeleted(_) => 40404,
            RegistryError::SubjectNotSoftDeleted(_) => 40405,
            RegistryError::VersionSoftDeleted { .. } => 40406,
            RegistryError::VersionNotSoftDeleted { .. } => 40407,
            RegistryError::SubjectCompatibilityNotConfigured(_) => 40408,
            RegistryError::SubjectModeNotConfigured(_) => 40409,
            RegistryError::InvalidSchema(_) => 42201,
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidCompatibilityLevel(_) => 42203,
            RegistryError::InvalidMode(_) => 42204,
            RegistryError::OperationNotPermitted(_) => 42205,
            RegistryError::ReferenceExists { .. } => 42206,
            RegistryError::IdDoesNotMatch(_) => 42207,
            RegistryError::InvalidSubject(_) => 42208,
            RegistryError::Incompatible { .. } => 409,
            RegistryError::BadRequest(_) => 400,
            RegistryError::Store(_) | RegistryError::Stale => 50001,
        }
    }

    /// The HTTP status that carries this error (the first three digits of
    /// the error code).
    pub fn http_status(&self) -> u16 {
        let code = self.error_code();
        if code >= 10_000 {
            (code / 100) as u16
        } else {
            code as u16
        }
    }
}

/// Why a produced record (key or value) or its headers failed a topic's
/// contract. `Display` is the human readable reason put into INVALID_RECORD
/// messages; `reason()` is the short code for dead-letter headers.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("{part} has no schema wire format (expected magic byte 0 and a 4-byte schema id, got {len} bytes starting with {first:#04x})")]
    NoMagicByte {
        part: &'static str,
        len: usize,
        first: u8,
    },
    #[error("{part} carries schema id {id}, which is not registered")]
    UnknownSchemaId { part: &'static str, id: u32 },
    #[error("{part} carries schema id {id}, which is not registered under subject '{expected}'")]
    WrongSubject {
        part: &'static str,
        id: u32,
        expected: String,
    },
    #[error("{part} does not decode with schema id {id}: {detail}")]
    Decode {
        part: &'static str,
        id: u32,
        detail: String,
    },
    #[error("required header '{0}' is missing")]
    MissingHeader(String),
    #[error("the topic's JSON Schema subject '{subject}' cannot check values: {detail}")]
    NoJsonSchema { subject: String, detail: String },
    #[error("header 'traceparent' is not a valid W3C traceparent: {0}")]
    InvalidTraceparent(String),
    #[error("data classification '{value}' is not allowed on this topic (allowed: {allowed})")]
    ClassificationNotAllowed { value: String, allowed: String },
    #[error("header 'classification' is missing but the topic restricts classifications")]
    MissingClassification,
    #[error("header 'tenant-id' {} does not match the tenant of {principal} ({})",
        sent.as_deref().map(|s| format!("'{s}'")).unwrap_or_else(|| "is missing and".into()),
        tenant.as_deref().map(|t| format!("'{t}'")).unwrap_or_else(|| "none".into()))]
    TenantMismatch {
        sent: Option<String>,
        principal: String,
        tenant: Option<String>,
    },
}

impl ValidationError {
    /// A stable short code naming the failure, for the `sluice.dlq.reason`
    /// header and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::NoMagicByte { .. } => "no_magic_byte",
            ValidationError::UnknownSchemaId { .. } => "unknown_schema_id",
            ValidationError::WrongSubject { .. } => "wrong_subject",
            ValidationError::Decode { .. } => "decode_failed",
            ValidationError::MissingHeader(_) => "missing_header",
            ValidationError::NoJsonSchema { .. } => "no_json_schema",
            ValidationError::TenantMismatch { .. } => "tenant_mismatch",
            ValidationError::InvalidTraceparent(_) => "invalid_traceparent",
            ValidationError::ClassificationNotAllowed { .. } => "classification_not_allowed",
            ValidationError::MissingClassification => "missing_classification",
        }
    }

    /// The schema id the record carried, when one could be read.
    pub fn schema_id(&self) -> Option<u32> {
        match self {
            ValidationError::UnknownSchemaId { id, .. }
            | ValidationError::WrongSubject { id, .. }
            | ValidationError::Decode { id, .. } => Some(*id),
            _ => None,
        }
    }
}
