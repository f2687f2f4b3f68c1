//! `sluice schemas`: register, list, show and check schemas against a
//! running broker's Confluent-compatible registry, and install the AI event
//! contracts shipped with Sluice.

use crate::groups_cli::{agent, call, print_table, url, ApiArgs};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct SchemasArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: SchemasCommand,
}

#[derive(Subcommand, Debug)]
enum SchemasCommand {
    /// List subjects with their latest version and schema id.
    List,
    /// Show a subject's schema (latest, or a given version).
    Show {
        subject: String,
        #[arg(default_value = "latest")]
        version: String,
    },
    /// Register a schema file under a subject.
    Register {
        subject: String,
        file: std::path::PathBuf,
        /// AVRO, JSON or PROTOBUF.
        #[arg(long = "type", default_value = "AVRO")]
        schema_type: String,
    },
    /// Check a schema file's compatibility with a subject's latest version.
    Check {
        subject: String,
        file: std::path::PathBuf,
        #[arg(long = "type", default_value = "AVRO")]
        schema_type: String,
    },
    /// Register the AI event contracts (subjects under `ai.`); with --tensorzero, the
    /// JSON Schema contracts of TensorZero's three topics, bound to those topics.
    Install {
        /// TensorZero's topics ({prefix}_model_inference, _chat_inference, _json_inference).
        #[arg(long)]
        tensorzero: bool,
        /// The gateway's topic_prefix.
        #[arg(long, default_value = "tensorzero", requires = "tensorzero")]
        topic_prefix: String,
    },
}

fn schema_body(file: &std::path::Path, schema_type: &str) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(json!({"schema": text, "schemaType": schema_type.to_ascii_uppercase()}))
}

pub fn run(args: SchemasArgs) -> anyhow::Result<()> {
    let agent = agent();
    let http = &args.api.http;
    match args.command {
        SchemasCommand::List => {
            let subjects: Vec<String> =
                call(agent.get(url(http, "/subjects")).call(), "listing subjects")?;
            let mut rows = Vec::new();
            for s in subjects {
                let v: Value = call(
                    agent
                        .get(url(http, &format!("/subjects/{s}/versions/latest")))
                        .call(),
                    "reading a subject",
                )?;
                rows.push(vec![
                    s,
                    v["version"].to_string(),
                    v["id"].to_string(),
                    v["schemaType"].as_str().unwrap_or("AVRO").to_string(),
                ]);
            }
            print_table(&["SUBJECT", "VERSION", "ID", "TYPE"], &rows);
        }
        SchemasCommand::Show { subject, version } => {
            let v: Value = call(
                agent
                    .get(url(
                        http,
                        &format!("/subjects/{subject}/versions/{version}"),
                    ))
                    .call(),
                "reading the subject",
            )?;
            println!(
                "subject {} version {} id {} type {}",
                v["subject"].as_str().unwrap_or(&subject),
                v["version"],
                v["id"],
                v["schemaType"].as_str().unwrap_or("AVRO")
            );
            let schema = v["schema"].as_str().unwrap_or_default();
            match serde_json::from_str::<Value>(schema) {
                Ok(parsed) => println!("{}", serde_json::to_string_pretty(&parsed)?),
                Err(_) => println!("{schema}"),
            }
        }
        SchemasCommand::Register {
            subject,
            file,
            schema_type,
        } => {
            let v: Value = call(
                agent
                    .post(url(http, &format!("/subjects/{subject}/versions")))
                    .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                    .send_json(schema_body(&file, &schema_type)?),
                "registering the schema",
            )?;
            println!("registered under '{subject}' with id {}", v["id"]);
        }
        SchemasCommand::Check {
            subject,
            file,
            schema_type,
        } => {
            let v: Value = call(
                agent
                    .post(url(
                        http,
                        &format!("/compatibility/subjects/{subject}/versions/latest?verbose=true"),
                    ))
                    .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                    .send_json(schema_body(&file, &schema_type)?),
                "checking compatibility",
            )?;
            if v["is_compatible"].as_bool() == Some(true) {
                println!("compatible with the latest version of '{subject}'");
            } else {
                println!("NOT compatible with the latest version of '{subject}':");
                for m in v["messages"].as_array().into_iter().flatten() {
                    println!("  - {}", m.as_str().unwrap_or_default());
                }
                anyhow::bail!("incompatible schema");
            }
        }
        SchemasCommand::Install {
            tensorzero: true,
            topic_prefix,
        } => {
            let path = format!(
                "/v1/schemas/tensorzero?topic_prefix={}",
                percent_encoding::utf8_percent_encode(
                    &topic_prefix,
                    percent_encoding::NON_ALPHANUMERIC
                )
            );
            let bound: Vec<Value> = call(
                agent.post(url(http, &path)).send_empty(),
                "installing the TensorZero contracts",
            )?;
            let rows: Vec<Vec<String>> = bound
                .iter()
                .map(|b| {
                    let s = |k: &str| {
                        b.get(k)
                            .map(|v| v.to_string().trim_matches('"').to_string())
                            .unwrap_or_default()
                    };
                    vec![
                        s("topic"),
                        s("subject"),
                        s("id"),
                        if b.get("created").and_then(Value::as_bool) == Some(true) {
                            "created".into()
                        } else {
                            "bound".into()
                        },
                    ]
                })
                .collect();
            print_table(&["TOPIC", "SUBJECT", "ID", "TOPIC STATUS"], &rows);
        }
        SchemasCommand::Install { .. } => {
            let installed: Vec<(String, u32)> = call(
                agent
                    .post(url(http, "/v1/schemas/ai-contracts"))
                    .send_empty(),
                "installing the AI contracts",
            )?;
            let rows: Vec<Vec<String>> = installed
                .into_iter()
                .map(|(s, id)| vec![s, id.to_string()])
                .collect();
            print_table(&["SUBJECT", "ID"], &rows);
        }
    }
    Ok(())
}
