//! The `ai-telemetry` profile: a stream of AI telemetry records shaped like
//! what an LLM gateway and an agent runtime write (the contracts in
//! `contracts/`, and seed 004's TensorZero records).
//!
//! One agent turn (an "interaction", one W3C trace) becomes:
//! - a retrieval (60% of turns) on `{prefix}.retrieval`;
//! - an inference event (`{prefix}.inference`, the JSON contract) and the
//!   gateway's raw model-inference record (`{prefix}.model_inference`,
//!   TensorZero's shape) carrying the prompt and the raw response; its size
//!   is log-normal, median about 6 KiB, p90 about 40 KiB, p99 about 200 KiB,
//!   capped at 512 KiB (RAG prompts and long answers are what make AI
//!   telemetry heavy-tailed);
//! - a burst of tool calls from the agent loop (0 to 8, geometric, mean 1.5)
//!   followed by a second inference when the loop called a tool;
//! - feedback for 30% of inferences, due an exponential delay later (mean
//!   `feedback_delay`; minutes, as users rate answers after reading them),
//!   keyed and linked to the inference it rates.
//!
//! Every record carries `traceparent`, `tenant-id` and `classification`
//! headers (what Sluice's governance policies check) and the governance
//! envelope the contracts require. Deterministic for a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sluice_registry::validate::CLASSIFICATION_HEADER;
use sluice_registry::TENANT_HEADER;
use std::collections::{BinaryHeap, VecDeque};

/// The kinds of record the profile writes, in a fixed order (used as an
/// index into per-kind statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Inference,
    ModelInference,
    ToolCall,
    Retrieval,
    Feedback,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Inference,
        Kind::ModelInference,
        Kind::ToolCall,
        Kind::Retrieval,
        Kind::Feedback,
    ];

    /// The topic suffix (`{prefix}.{suffix}`).
    pub fn suffix(self) -> &'static str {
        match self {
            Kind::Inference => "inference",
            Kind::ModelInference => "model_inference",
            Kind::ToolCall => "tool_call",
            Kind::Retrieval => "retrieval",
            Kind::Feedback => "feedback",
        }
    }

    /// The JSON contract subject that governs this kind (installed by
    /// `sluice schemas install` / `POST /v1/schemas/ai-contracts`); the
    /// gateway's raw records have none in the registry (their contract is
    /// `contracts/tensorzero/model_inference.json`).
    pub fn contract_subject(self) -> Option<String> {
        match self {
            Kind::ModelInference => None,
            k => Some(sluice_registry::contracts::json_subject(k.suffix())),
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One record to produce.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: Kind,
    pub key: String,
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Feedback waiting for its time, ordered by due time (earliest first).
struct Due {
    at_ms: i64,
    seq: u64,
    event: Event,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: the earliest due time must compare greatest.
        (other.at_ms, other.seq).cmp(&(self.at_ms, self.seq))
    }
}

const TENANTS: [&str; 6] = ["acme", "globex", "initech", "umbrella", "hooli", "stark"];
const CLASSIFICATIONS: [&str; 3] = ["INTERNAL", "CONFIDENTIAL", "RESTRICTED"];
const MODELS: [(&str, &str); 5] = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4"),
    ("aws.bedrock", "llama-3.1-70b"),
    ("gcp.vertex_ai", "gemini-2.0-flash"),
];
const TOOLS: [&str; 6] = [
    "search_docs",
    "get_weather",
    "run_sql",
    "fetch_url",
    "create_ticket",
    "calculator",
];
const WORDS: [&str; 48] = [
    "the",
    "customer",
    "asked",
    "about",
    "refund",
    "policy",
    "for",
    "order",
    "which",
    "was",
    "shipped",
    "late",
    "and",
    "damaged",
    "please",
    "summarize",
    "context",
    "below",
    "using",
    "only",
    "documents",
    "retrieved",
    "from",
    "knowledge",
    "base",
    "answer",
    "should",
    "cite",
    "sources",
    "be",
    "concise",
    "if",
    "information",
    "is",
    "missing",
    "say",
    "so",
    "account",
    "invoice",
    "payment",
    "delivery",
    "window",
    "agent",
    "tool",
    "result",
    "error",
    "retry",
    "latency",
];

/// The generator of the `ai-telemetry` profile.
pub struct Generator {
    rng: StdRng,
    queue: VecDeque<Event>,
    feedback: BinaryHeap<Due>,
    feedback_delay_ms: f64,
    seq: u64,
    instance: String,
}

impl Generator {
    /// `feedback_delay_s`: the mean delay of feedback after its inference.
    pub fn new(seed: u64, feedback_delay_s: f64) -> Generator {
        let mut rng = StdRng::seed_from_u64(seed);
        let instance = format!("loadgen-{:04x}", rng.random::<u16>());
        Generator {
            rng,
            queue: VecDeque::new(),
            feedback: BinaryHeap::new(),
            feedback_delay_ms: (feedback_delay_s * 1000.0).max(0.0),
            seq: 0,
            instance,
        }
    }

    /// The next record at wall-clock time `now_ms`: feedback that has come
    /// due first, then the rest of the current agent turn, then a new turn.
    pub fn next(&mut self, now_ms: i64) -> Event {
        if self.feedback.peek().is_some_and(|d| d.at_ms <= now_ms) {
            if let Some(d) = self.feedback.pop() {
                return d.event;
            }
        }
        loop {
            if let Some(e) = self.queue.pop_front() {
                return e;
            }
            self.turn(now_ms);
        }
    }

    /// Feedback scheduled but not yet due.
    pub fn pending_feedback(&self) -> usize {
        self.feedback.len()
    }

    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", self.rng.random::<u8>()))
            .collect()
    }

    fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill(&mut b);
        uuid::Builder::from_random_bytes(b)
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    /// A standard normal sample (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn text(&mut self, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes + 16);
        while s.len() < bytes {
            let w = WORDS[self.rng.random_range(0..WORDS.len())];
            s.push_str(w);
            s.push(if self.rng.random_range(0..12) == 0 {
                '.'
            } else {
                ' '
            });
        }
        s.truncate(bytes);
        s
    }

    /// The size of a prompt plus response: log-normal, median 6 KiB,
    /// sigma 1.5 (p90 ~40 KiB, p99 ~200 KiB), within 1 KiB..512 KiB.
    fn payload_size(&mut self) -> usize {
        let z = self.normal();
        let size = (6144.0 * (1.5 * z).exp()).round();
        size.clamp(1024.0, 512.0 * 1024.0) as usize
    }

    fn envelope(&mut self, ctx: &Turn, service: &str, now_ms: i64, lineage: &[String]) -> Value {
        let event_id = self.uuid();
        let span_id = self.hex(8);
        json!({
            "event_id": event_id,
            "event_time": now_ms,
            "producer": {"service": service, "instance": self.instance, "version": "1.0.0"},
            "tenant_id": ctx.tenant,
            "classification": ctx.classification,
            "consent_scope": ["serving", "evaluation"],
            "lineage_source_event_ids": lineage,
            "schema_version": "1.0",
            "trace_id": ctx.trace_id,
            "span_id": span_id,
        })
    }

    fn event(&mut self, kind: Kind, ctx: &Turn, key: String, value: &Value) -> Event {
        self.seq += 1;
        let span = match value.pointer("/governance/span_id").and_then(Value::as_str) {
            Some(s) => s.to_string(),
            None => self.hex(8),
        };
        Event {
            kind,
            key,
            value: serde_json::to_vec(value).unwrap_or_default(),
            headers: vec![
                ("traceparent", format!("00-{}-{span}-01", ctx.trace_id)),
                (TENANT_HEADER, ctx.tenant.to_string()),
                (CLASSIFICATION_HEADER, ctx.classification.to_string()),
                ("content-type", "application/json".to_string()),
            ],
        }
    }

    /// One agent turn into the queue.
    fn turn(&mut self, now_ms: i64) {
        let ctx = Turn {
            trace_id: self.hex(16),
            tenant: TENANTS[self.rng.random_range(0..TENANTS.len())],
            classification: CLASSIFICATIONS[self.rng.random_range(0..CLASSIFICATIONS.len())],
            conversation: format!("conv-{}", self.rng.random_range(0..100_000u32)),
        };
        if self.rng.random_bool(0.6) {
            self.retrieval(&ctx, now_ms);
        }
        let first = self.inference(&ctx, now_ms);
        // The agent loop: tool calls, then an answer built on their results.
        let mut calls = 0;
        while calls < 8 && self.rng.random_bool(0.6) {
            calls += 1;
        }
        for _ in 0..calls {
            self.tool_call(&ctx, now_ms, &first);
        }
        let last = if calls > 0 {
            self.inference(&ctx, now_ms)
        } else {
            first
        };
        if self.rng.random_bool(0.3) {
            self.schedule_feedback(&ctx, now_ms, &last);
        }
    }

    fn retrieval(&mut self, ctx: &Turn, now_ms: i64) {
        let top_k = self.rng.random_range(3..11);
        let docs: Vec<Value> = (0..top_k)
            .map(|i| {
                json!({
                    "document_id": format!("doc-{}", self.rng.random_range(0..50_000u32)),
                    "score": 0.95 - 0.05 * i as f64,
                    "source_uri": format!("s3://kb/{}/doc-{i}.md", ctx.tenant),
                })
            })
            .collect();
        let gov = self.envelope(ctx, "rag-retriever", now_ms, &[]);
        let v = json!({
            "governance": gov,
            "gen_ai_operation_name": "retrieval",
            "gen_ai_data_source_id": format!("kb-{}", ctx.tenant),
            "query_ref": null,
            "top_k": top_k,
            "documents": docs,
            "latency_ms": self.rng.random_range(5..120),
        });
        let key = ctx.trace_id.clone();
        let e = self.event(Kind::Retrieval, ctx, key, &v);
        self.queue.push_back(e);
    }

    /// An inference and its raw record; answers (event id, response id).
    fn inference(&mut self, ctx: &Turn, now_ms: i64) -> Inference {
        let (provider, model) = MODELS[self.rng.random_range(0..MODELS.len())];
        let size = self.payload_size();
        let prompt_len = size * 7 / 10;
        let answer_len = size - prompt_len;
        let input_tokens = (prompt_len / 4).max(1) as i64;
        let output_tokens = (answer_len / 4).max(1) as i64;
        let latency = 150 + output_tokens * self.rng.random_range(8..25);
        let response_id = format!("chatcmpl-{}", self.hex(6));
        let gov = self.envelope(ctx, "llm-gateway", now_ms, &[]);
        let event_id = gov["event_id"].as_str().unwrap_or_default().to_string();
        let v = json!({
            "governance": gov,
            "gen_ai_operation_name": "chat",
            "gen_ai_provider_name": provider,
            "gen_ai_request_model": model,
            "gen_ai_response_model": model,
            "gen_ai_response_id": response_id,
            "gen_ai_request_temperature": 0.2,
            "gen_ai_request_max_tokens": 4096,
            "gen_ai_usage_input_tokens": input_tokens,
            "gen_ai_usage_output_tokens": output_tokens,
            "gen_ai_response_finish_reasons": ["stop"],
            "gen_ai_conversation_id": ctx.conversation,
            "latency_ms": latency,
            "prompt_ref": format!("s3://prompts/{}/{event_id}.json", ctx.tenant),
            "error_type": null,
        });
        let e = self.event(Kind::Inference, ctx, event_id.clone(), &v);
        self.queue.push_back(e);

        let prompt = self.text(prompt_len.saturating_sub(160));
        let answer = self.text(answer_len.saturating_sub(200));
        let raw_request = json!({
            "model": model,
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "You are a support assistant. Answer from the context."},
                {"role": "user", "content": prompt},
            ],
        })
        .to_string();
        let raw_response = json!({
            "id": response_id,
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens},
        })
        .to_string();
        let id = self.uuid();
        let raw = json!({
            "id": id,
            "inference_id": event_id,
            "raw_request": raw_request,
            "raw_response": raw_response,
            "model_name": model,
            "model_provider_name": provider,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "response_time_ms": latency,
            "cached": self.rng.random_bool(0.05),
        });
        let e = self.event(Kind::ModelInference, ctx, id, &raw);
        self.queue.push_back(e);
        Inference {
            event_id,
            response_id,
        }
    }

    fn tool_call(&mut self, ctx: &Turn, now_ms: i64, parent: &Inference) {
        let status = match self.rng.random_range(0..100) {
            0..=89 => "OK",
            90..=95 => "ERROR",
            96..=98 => "TIMEOUT",
            _ => "DENIED",
        };
        let call_id = format!("call_{}", self.hex(12));
        let gov = self.envelope(
            ctx,
            "agent-runtime",
            now_ms,
            std::slice::from_ref(&parent.event_id),
        );
        let v = json!({
            "governance": gov,
            "gen_ai_operation_name": "execute_tool",
            "gen_ai_tool_name": TOOLS[self.rng.random_range(0..TOOLS.len())],
            "gen_ai_tool_call_id": call_id,
            "gen_ai_tool_type": "function",
            "gen_ai_agent_name": "support-agent",
            "arguments_ref": null,
            "status": status,
            "duration_ms": self.rng.random_range(5..2000),
            "retry_count": if status == "OK" { 0 } else { self.rng.random_range(0..3) },
            "error_type": if status == "OK" { Value::Null } else { json!(status.to_lowercase()) },
        });
        let key = ctx.trace_id.clone();
        let e = self.event(Kind::ToolCall, ctx, key, &v);
        self.queue.push_back(e);
    }

    fn schedule_feedback(&mut self, ctx: &Turn, now_ms: i64, target: &Inference) {
        // Exponential delay with the configured mean.
        let u: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
        let delay = -u.ln() * self.feedback_delay_ms;
        let at_ms = now_ms + delay.round() as i64;
        let thumbs = self.rng.random_bool(0.7);
        let gov = self.envelope(
            ctx,
            "web-app",
            at_ms,
            std::slice::from_ref(&target.event_id),
        );
        let v = json!({
            "governance": gov,
            "target_event_id": target.event_id,
            "gen_ai_response_id": target.response_id,
            "kind": if thumbs { "THUMBS" } else { "RATING" },
            "score": if thumbs { if self.rng.random_bool(0.8) { 1.0 } else { -1.0 } }
                     else { f64::from(self.rng.random_range(1..6u8)) },
            "comment_ref": null,
            "reviewer_role": "end_user",
        });
        let e = self.event(Kind::Feedback, ctx, target.event_id.clone(), &v);
        self.feedback.push(Due {
            at_ms,
            seq: self.seq,
            event: e,
        });
    }
}

struct Turn {
    trace_id: String,
    tenant: &'static str,
    classification: &'static str,
    conversation: String,
}

struct Inference {
    event_id: String,
    response_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<Event> {
        let mut g = Generator::new(7, 0.0);
        (0..n)
            .map(|i| g.next(1_700_000_000_000 + i as i64))
            .collect()
    }

    #[test]
    fn every_kind_appears_and_values_are_json() {
        let events = sample(5000);
        for k in Kind::ALL {
            let n = events.iter().filter(|e| e.kind == k).count();
            assert!(n > 100, "{k:?}: only {n} of 5000");
        }
        for e in &events {
            let v: Value = serde_json::from_slice(&e.value).expect("JSON value");
            assert!(v.is_object());
            assert!(e
                .headers
                .iter()
                .any(|(h, v)| *h == "traceparent" && v.len() == 55));
        }
    }

    #[test]
    fn raw_inference_sizes_are_heavy_tailed() {
        let mut sizes: Vec<usize> = sample(20_000)
            .iter()
            .filter(|e| e.kind == Kind::ModelInference)
            .map(|e| e.value.len())
            .collect();
        sizes.sort_unstable();
        let q = |p: f64| sizes[((sizes.len() - 1) as f64 * p) as usize];
        assert!((4_000..10_000).contains(&q(0.5)), "median {}", q(0.5));
        assert!(q(0.99) > 100_000, "p99 {}", q(0.99));
        assert!(*sizes.last().unwrap_or(&0) <= 540_000);
    }

    #[test]
    fn feedback_waits_for_its_time_and_names_an_earlier_inference() {
        let mut g = Generator::new(3, 60.0);
        let t0 = 1_700_000_000_000;
        let early: Vec<Event> = (0..2000).map(|_| g.next(t0)).collect();
        assert!(early.iter().all(|e| e.kind != Kind::Feedback));
        assert!(g.pending_feedback() > 0);
        let inferences: std::collections::HashSet<String> = early
            .iter()
            .filter(|e| e.kind == Kind::Inference)
            .map(|e| e.key.clone())
            .collect();
        let later = g.next(t0 + 3_600_000);
        assert_eq!(later.kind, Kind::Feedback);
        assert!(inferences.contains(&later.key));
    }
}
