//! `sluice`: the single binary. `sluice serve` runs the Kafka-compatible
//! broker with its HTTP side; other subcommands are operator tools.

mod acls_cli;
mod catalog_cli;
mod cluster_cli;
mod console;
mod dlq_cli;
mod groups_cli;
mod http;
mod http_auth;
mod http_tls;
mod loadgen;
mod otlp_sink;
mod quotas_cli;
mod replay_cli;
mod rest_produce;
mod schemas_cli;
mod scorecard;
mod serve;
mod settings;
mod top;
mod users_cli;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: with many threads glibc keeps freed
/// memory in per-thread arenas, and the broker's RSS grew to about twice the
/// heap it used under sustained produce load (measured with heaptrack).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, the
/// same in mimalloc v2 and v3; the sys crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for 10 s before returning it to the OS (mimalloc v3
/// defaults to 1 s, v2 to 10 ms). Produce requests, the tail cache, read
/// buffers and fetch responses recycle hundreds of megabytes a second;
/// returned too soon, that memory is zeroed again by the kernel on its next
/// use, which cost a quarter of the broker's CPU on produce and on catch-up
/// reads (perf: `clear_page_erms`). Measured on 6 s of produce at ~400k
/// msg/s: 2.1 CPU-s/GiB with a 1 s delay, 1.6 with 10 s. What is held stays
/// within the configured caches and budgets. Left alone when the
/// environment sets `MIMALLOC_PURGE_DELAY`. (An earlier version compared
/// the option with v2's default, 10, so under v3 it never took effect.)
///
/// Transparent huge pages are turned off for the process (unless the
/// environment sets `MIMALLOC_ALLOW_THP`): the first touch of a huge page
/// zeroes 2 MiB inside one page fault, and on kernels without full
/// preemption nothing else runs on that CPU meanwhile. Catch-up reads touch
/// hundreds of MiB of new read buffers, and on our benchmark VM (where new
/// memory comes in at ~1.6 GB/s) those faults held the live traffic back:
/// first catch-up after start 532-547 MiB/s with tail p99 10.5-12.1 ms;
/// with this call 684-783 MiB/s and 4.7-6.1 ms in three runs of four (the
/// fourth 532 MiB/s, 12.7 ms; BENCHMARKS.md). Many databases advise the
/// same for the same reason.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting a mimalloc option has no preconditions.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000);
        }
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and
        // only sets a flag on this process.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
            eprintln!(
                "sluice: could not turn transparent huge pages off: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
use std::io::IsTerminal;

/// Worker threads of the bulk runtime (catch-up reads and large response
/// writes; see `sluice_storage::bulk`).
const BULK_THREADS: usize = 2;

/// Sluice: a Kafka-compatible event streaming platform for AI telemetry.
#[derive(Parser)]
#[command(name = "sluice", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker: Kafka protocol on --listen, HTTP (health, metrics) on --http-listen.
    Serve(Box<settings::ServeArgs>),
    /// Consumer groups: list, describe (offsets, lag, owners), reset offsets, delete.
    Groups(groups_cli::GroupsArgs),
    /// Dead-letter topics: inspect records with their failure context, replay them.
    Dlq(dlq_cli::DlqArgs),
    /// Copy a window of a topic (times or offsets) into another topic, with filters and a rate limit.
    Replay(replay_cli::ReplayArgs),
    /// Live view of topics and consumer groups: throughput, lag, lag seconds, status.
    Top(top::TopArgs),
    /// The cluster: live brokers, leases, the groups each coordinates, background jobs.
    Cluster(cluster_cli::ClusterArgs),
    /// The catalog: move a stopped embedded broker's into a cluster's (migrate).
    Catalog(catalog_cli::CatalogArgs),
    /// Schema registry: list, show, register, check compatibility, install the AI contracts.
    Schemas(schemas_cli::SchemasArgs),
    /// SASL users (SCRAM credentials) in a broker's catalog: add, list, delete.
    Users(users_cli::UsersArgs),
    /// Kafka ACLs in a broker's catalog (kafka-acls.sh's vocabulary): add, list, remove.
    Acls(acls_cli::AclsArgs),
    /// Client quotas in a broker's catalog (kafka-configs.sh's vocabulary): alter, describe.
    Quotas(quotas_cli::QuotasArgs),
    /// AI telemetry load (inferences, tool calls, retrievals, feedback) at a target rate, through librdkafka.
    Loadgen(loadgen::LoadgenArgs),
    /// Readiness checks against any Kafka bootstrap: freshness, burst, fan-out, replay, contracts, observability, durability.
    Scorecard(scorecard::ScorecardArgs),
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => {
            let settings = settings::Settings::resolve(*args)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("sluice")
                .build()?;
            let bulk = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(BULK_THREADS)
                .enable_all()
                .thread_name("sluice-bulk")
                .on_thread_start(sluice_storage::bulk::lower_thread_priority)
                .build()?;
            sluice_storage::bulk::install(bulk.handle().clone());
            let served = runtime.block_on(serve::run(settings));
            bulk.shutdown_background();
            served
        }
        Command::Groups(args) => groups_cli::run(args),
        Command::Dlq(args) => dlq_cli::run(args),
        Command::Replay(args) => replay_cli::run(args),
        Command::Top(args) => top::run(args),
        Command::Cluster(args) => cluster_cli::run(args),
        Command::Catalog(args) => catalog_cli::run(args),
        Command::Schemas(args) => schemas_cli::run(args),
        Command::Users(args) => users_cli::run(args),
        Command::Acls(args) => acls_cli::run(args),
        Command::Quotas(args) => quotas_cli::run(args),
        Command::Loadgen(args) => loadgen::run(args),
        Command::Scorecard(args) => scorecard::run(args),
    }
}
