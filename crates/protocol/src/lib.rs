//! Wire-level pieces of the Kafka protocol that the `kafka-protocol` crate does
//! not cover: length-prefixed framing with a size limit checked before any
//! allocation, and zero-copy views over v2 record batches (header fields,
//! CRC32C validation, base-offset patching). Request and response bodies are
//! encoded and decoded by `kafka-protocol`; this crate re-exports it.

pub mod batch;
pub mod frame;
pub mod records;

pub use kafka_protocol;
