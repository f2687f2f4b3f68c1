//! The PostgreSQL engine, used by clusters (`postgres://user:password@host:
//! port/dbname`, with the standard `PG*` variables filling what the URL
//! leaves out). A pool of connections (r2d2, with a connection manager of
//! our own so that each pooled connection keeps its prepared statements);
//! write units are explicit transactions retried on serialization failures
//! and deadlocks; change notifications cross brokers with `LISTEN/NOTIFY`
//! on a dedicated connection ([`listen`]).
//!
//! Connection-level failures (refused, reset, timed out, server shutting
//! down) come back as [`CatalogError::Unavailable`], which the broker turns
//! into retriable errors for its clients.
//!
//! The `postgres` client blocks on a runtime of its own, which tokio forbids
//! on a thread that drives async tasks; every call (and every connection's
//! drop) goes through [`off_runtime`], so the catalog may be called from
//! anywhere, as the SQLite engine may.

use crate::sql::{Db, Dialect, Mode, Row, Tx, Value, Work};
use crate::{CatalogError, Result};
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, Config, NoTls, Statement};
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a statement may run before the server cancels it.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long opening a connection, or waiting for a pooled one, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections one broker holds at most.
const POOL_SIZE: u32 = 16;
/// Retries of a write unit the server aborted to break a conflict.
const CONFLICT_RETRIES: usize = 8;

impl From<postgres::Error> for CatalogError {
    fn from(e: postgres::Error) -> Self {
        let connection_lost = e.is_closed()
            || e.code().is_some_and(|c| {
                // Class 08 (connection exception), 57P01-03 (shutdown,
                // crash shutdown, cannot connect now), 53300 (too many connections).
                c.code().starts_with("08") || c.code().starts_with("57P") || c.code() == "53300"
            })
            || std::error::Error::source(&e)
                .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
        let text = match e.as_db_error() {
            Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
            None => format!("PostgreSQL: {e}"),
        };
        if connection_lost {
            CatalogError::Unavailable(text)
        } else {
            CatalogError::Db(text)
        }
    }
}

fn is_conflict(e: &postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code() == "40001" || c.code() == "40P01")
}

/// Parses a `postgres://` URL; the `PG*` variables fill in what it leaves
/// out (host, port, user, password, database), as libpq does.
pub fn config_from_url(url: &str) -> Result<Config> {
    let mut config = Config::from_str(url)
        .map_err(|e| CatalogError::Url(format!("cannot parse the PostgreSQL URL: {e}")))?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if config.get_hosts().is_empty() {
        config.host(&env("PGHOST").unwrap_or_else(|| "localhost".into()));
    }
    if config.get_ports().is_empty() {
        if let Some(p) = env("PGPORT") {
            let port = p
                .parse()
                .map_err(|_| CatalogError::Url(format!("PGPORT '{p}' is not a port number")))?;
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        config.user(&env("PGUSER").unwrap_or_else(|| "postgres".into()));
    }
    if config.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            config.password(p);
        }
    }
    if config.get_dbname().is_none() {
        if let Some(d) = env("PGDATABASE") {
            config.dbname(&d);
        }
    }
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .tcp_user_timeout(Duration::from_secs(10))
        .application_name("sluice");
    Ok(config)
}

/// Runs `f`, which blocks on the `postgres` client's own runtime, where
/// that is allowed: as is outside any runtime (or on a blocking thread),
/// through `block_in_place` on a multi-threaded runtime's thread, and on a
/// scoped thread of its own under a current-thread runtime.
pub fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => f(),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

/// A pooled connection and the statements prepared on it.
pub struct PgConn {
    client: ManuallyDrop<Client>,
    statements: HashMap<String, Statement>,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // SAFETY: the client is taken once, here, and never used again.
        let client = unsafe { ManuallyDrop::take(&mut self.client) };
        // Closing the connection blocks on the client's runtime too.
        off_runtime(move || drop(client));
    }
}

impl PgConn {
    fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn statement(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client().prepare(sql)?;
        // Bounded: statements are few and fixed, except multi-row inserts
        // whose text varies with the row count.
        if self.statements.len() >= 512 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

struct Manager {
    config: Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<PgConn, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        client.batch_execute(&format!(
            "SET statement_timeout = {}; SET client_min_messages = warning",
            STATEMENT_TIMEOUT.as_millis()
        ))?;
        Ok(PgConn {
            client: ManuallyDrop::new(client),
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> std::result::Result<(), postgres::Error> {
        conn.client().batch_execute("")
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// PostgreSQL [`Db`].
pub struct PgDb {
    pool: r2d2::Pool<Manager>,
    config: Config,
}

/// Collects r2d2's connection errors for the message of a failed start.
#[derive(Debug, Default, Clone)]
struct LastError(Arc<parking_lot::Mutex<Option<String>>>);

impl r2d2::HandleError<postgres::Error> for LastError {
    fn handle_error(&self, error: postgres::Error) {
        *self.0.lock() = Some(CatalogError::from(error).to_string());
    }
}

impl PgDb {
    /// Connects (failing within a few seconds, with the server's reason,
    /// when the database cannot be reached).
    pub fn connect(url: &str) -> Result<Self> {
        let config = config_from_url(url)?;
        let last = LastError::default();
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .error_handler(Box::new(last.clone()))
            .build(Manager {
                config: config.clone(),
            })
            .map_err(|e| {
                let why = last.0.lock().clone().unwrap_or_else(|| e.to_string());
                CatalogError::Unavailable(format!("cannot connect to {}: {why}", redact(url)))
            })?;
        Ok(Self { pool, config })
    }

    /// The connection settings (for the notification listener).
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>> {
        self.pool
            .get()
            .map_err(|e| CatalogError::Unavailable(format!("PostgreSQL: {e}")))
    }
}

/// The URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Db for PgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn run(&self, mode: Mode, work: &mut Work<'_>) -> Result<()> {
        off_runtime(|| self.run_here(mode, work))
    }
}

impl PgDb {
    fn run_here(&self, mode: Mode, work: &mut Work<'_>) -> Result<()> {
        let mut conn = self.conn()?;
        if mode == Mode::Read {
            let mut tx = PgTx {
                conn: &mut conn,
                conflict: false,
            };
            return work(&mut tx);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            conn.client().batch_execute("BEGIN")?;
            let mut tx = PgTx {
                conn: &mut conn,
                conflict: false,
            };
            let result = work(&mut tx);
            let conflict = tx.conflict;
            match result {
                Ok(()) => match conn.client().batch_execute("COMMIT") {
                    Ok(()) => return Ok(()),
                    Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => {}
                    Err(e) => return Err(e.into()),
                },
                Err(e) => {
                    let _ = conn.client().batch_execute("ROLLBACK");
                    if !(conflict && attempt < CONFLICT_RETRIES) {
                        return Err(e);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2 * attempt as u64));
        }
    }
}

struct PgTx<'a> {
    conn: &'a mut PgConn,
    /// A statement failed because the server aborted the transaction to
    /// break a conflict: the whole unit is worth another try.
    conflict: bool,
}

impl PgTx<'_> {
    fn note(&mut self, e: postgres::Error) -> CatalogError {
        self.conflict |= is_conflict(&e);
        e.into()
    }
}

impl Tx for PgTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let stmt = self.conn.statement(sql).map_err(|e| self.note(e))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let result = self.conn.client().execute(&stmt, &refs);
        result.map_err(|e| self.note(e))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let stmt = self.conn.statement(sql).map_err(|e| self.note(e))?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let result = self.conn.client().query(&stmt, &refs);
        let rows = result.map_err(|e| self.note(e))?;
        rows.iter().map(row).collect()
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

fn row(r: &postgres::Row) -> Result<Row> {
    let mut values = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let v = match *c.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v as i64)),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v as i64)),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v as i64)),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                r.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Bytes),
            // pg_notify() and other void functions.
            Type::VOID => None,
            ref other => {
                return Err(CatalogError::Db(format!(
                    "PostgreSQL: column {} has type {other}, which the catalog does not read",
                    c.name()
                )))
            }
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                ref other => Err(format!("an integer cannot be sent as {other}").into()),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Bytes(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A change notification from another broker (or this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// `NOTIFY channel, payload`.
    Notice { channel: String, payload: String },
    /// The listening connection was (re)established: notifications may have
    /// been missed, so whatever they keep fresh must be reloaded.
    Resync,
}

/// Stops a [`listen`] thread when dropped.
pub struct Listening {
    stop: Arc<AtomicBool>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Listens on `channels` from a thread of its own, calling `on` for every
/// notification, and with [`Heard::Resync`] after each (re)connection; a
/// lost connection is re-opened with backoff. Stops when the returned guard
/// is dropped (within half a second).
pub fn listen(
    config: Config,
    channels: &[&str],
    on: impl Fn(Heard) + Send + 'static,
) -> std::io::Result<Listening> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let statement: String = channels
        .iter()
        .map(|c| format!("LISTEN \"{}\";", c.replace('"', "")))
        .collect();
    std::thread::Builder::new()
        .name("sluice-catalog-listen".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(100);
            while !flag.load(Ordering::Acquire) {
                let mut client = match config.connect(NoTls) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %CatalogError::from(e), "catalog listener cannot connect; retrying");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                };
                if let Err(e) = client.batch_execute(&statement) {
                    tracing::warn!(error = %CatalogError::from(e), "catalog listener cannot LISTEN; retrying");
                    std::thread::sleep(backoff);
                    continue;
                }
                backoff = Duration::from_millis(100);
                on(Heard::Resync);
                let mut quiet_rounds = 0;
                while !flag.load(Ordering::Acquire) {
                    let mut lost = false;
                    let mut heard = false;
                    {
                        use fallible_iterator::FallibleIterator;
                        let mut notes = client.notifications();
                        let mut it = notes.timeout_iter(Duration::from_millis(500));
                        loop {
                            match it.next() {
                                Ok(Some(n)) => {
                                    heard = true;
                                    on(Heard::Notice {
                                        channel: n.channel().to_string(),
                                        payload: n.payload().to_string(),
                                    })
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::warn!(error = %CatalogError::from(e), "catalog listener lost its connection; reconnecting");
                                    lost = true;
                                    break;
                                }
                            }
                        }
                    }
                    // A silent connection may be a dead one: probe it now and then.
                    quiet_rounds = if heard { 0 } else { quiet_rounds + 1 };
                    if !lost && quiet_rounds >= 10 {
                        quiet_rounds = 0;
                        lost = client.batch_execute("").is_err();
                    }
                    if lost || client.is_closed() {
                        break;
                    }
                }
            }
        })?;
    Ok(Listening { stop })
}
