//! Measures the produce-path cost of `Validator::validate` on an Avro
//! inference event (the `contracts/examples/inference.valid.json` example),
//! in `id` and `content` mode, single-threaded:
//! `cargo run -p sluice-registry --profile fast --example validate_bench`.

use std::time::Instant;

use sluice_registry::contracts::{avro_subject, install_ai_contracts};
use sluice_registry::schema::Parsed;
use sluice_registry::{Registry, SubjectStrategy, ValidationMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reg = Registry::in_memory()?;
    let installed = install_ai_contracts(&reg)?;
    let subject = avro_subject("inference");
    let id = installed
        .iter()
        .find(|(s, _)| *s == subject)
        .map(|(_, id)| *id)
        .ok_or("inference contract not installed")?;
    let parsed = reg.parsed(id)?;
    let Parsed::Avro(schema) = &*parsed else {
        return Err("not an Avro schema".into());
    };
    let example = include_str!("../../../contracts/examples/inference.valid.json");
    let json: serde_json::Value = serde_json::from_str(example)?;
    let value = apache_avro::types::Value::try_from(json)?.resolve(&schema.full)?;
    #[allow(deprecated)]
    let body = apache_avro::to_avro_datum(&schema.full, value)?;
    let mut payload = vec![0u8];
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(&body);
    let v = reg.validator();
    for (name, mode) in [
        ("id", ValidationMode::Id),
        ("content", ValidationMode::Content),
    ] {
        let n = 2_000_000u32;
        let start = Instant::now();
        for _ in 0..n {
            let r = v.validate(
                "ai.inference",
                false,
                SubjectStrategy::TopicName,
                mode,
                Some(&payload),
            );
            std::hint::black_box(r)?;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name:>8}: {:.0} ns/record, {:.2} M records/s, {:.0} MB/s ({} byte records)",
            secs * 1e9 / n as f64,
            n as f64 / secs / 1e6,
            n as f64 * payload.len() as f64 / secs / 1e6,
            payload.len()
        );
    }
    let n = 2_000_000u32;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(schema.plan.validate(std::hint::black_box(&payload[5..])))?;
    }
    println!(
        "    plan: {:.0} ns/record (Avro walk alone)",
        start.elapsed().as_secs_f64() * 1e9 / n as f64
    );
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(reg.parsed(std::hint::black_box(id))?);
    }
    println!(
        "  lookup: {:.0} ns/record (parsed-schema cache)",
        start.elapsed().as_secs_f64() * 1e9 / n as f64
    );
    Ok(())
}
