//! The SQLite engine, used by the embedded broker (`sqlite:///path`, by
//! default `catalog.db` in the data directory). One connection behind a
//! mutex: metadata writes are rare (uploads, admin calls) and reads are short
//! indexed lookups. `synchronous=FULL` because the WAL segments an upload
//! covers are deleted once its commit returns. Write units take the database
//! lock up front (`BEGIN IMMEDIATE`), so two writers never deadlock on an
//! upgrade.

use crate::sql::{Db, Dialect, Mode, Row, Tx, Value, Work};
use crate::{CatalogError, Result};
use parking_lot::Mutex;
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use std::path::Path;

/// SQLite [`Db`].
pub struct SqliteDb {
    conn: Mutex<Connection>,
}

impl From<rusqlite::Error> for CatalogError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                CatalogError::Unavailable(format!("SQLite: {e}"))
            }
            e => CatalogError::Db(format!("SQLite: {e}")),
        }
    }
}

impl SqliteDb {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        // In-memory databases answer "memory" here; both are fine.
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(128);
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        conn.set_prepared_statement_cache_capacity(128);
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }
}

impl Db for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn run(&self, mode: Mode, work: &mut Work<'_>) -> Result<()> {
        let conn = self.conn.lock();
        let mut tx = SqliteTx { conn: &conn };
        if mode == Mode::Read {
            return work(&mut tx);
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        match work(&mut tx) {
            Ok(()) => match conn.execute_batch("COMMIT") {
                Ok(()) => Ok(()),
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e.into())
                }
            },
            Err(e) => {
                if let Err(r) = conn.execute_batch("ROLLBACK") {
                    // SQLite rolls back on its own when a statement inside
                    // the transaction failed hard; the connection stays usable.
                    tracing::warn!(error = %r, "SQLite rollback failed");
                }
                Err(e)
            }
        }
    }
}

struct SqliteTx<'a> {
    conn: &'a Connection,
}

/// `$N` placeholders become SQLite's numbered `?N` (SQLite would read `$1`
/// as a *named* parameter and number it by first appearance).
fn sqlite_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn bind(v: &Value) -> rusqlite::types::ToSqlOutput<'_> {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    match v {
        Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
        Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
    }
}

fn column(v: ValueRef<'_>) -> Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Int(f as i64),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| CatalogError::Corrupt(format!("text column is not UTF-8: {e}")))?
                .to_string(),
        ),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    })
}

impl Tx for SqliteTx<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(&sqlite_sql(sql))?;
        let n = stmt.execute(rusqlite::params_from_iter(params.iter().map(bind)))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare_cached(&sqlite_sql(sql))?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(bind)))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(column(r.get_ref(i)?)?);
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params;
    use crate::sql::{read, write};

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(
            sqlite_sql("SELECT $2, $1, '$x' WHERE a = $10"),
            "SELECT ?2, ?1, '$x' WHERE a = ?10"
        );
    }

    #[test]
    fn write_units_commit_or_roll_back() {
        let db = SqliteDb::in_memory().unwrap();
        write(&db, |tx| {
            tx.execute("CREATE TABLE t (a INTEGER, b TEXT)", &[])
        })
        .unwrap();
        write(&db, |tx| {
            tx.execute("INSERT INTO t (a, b) VALUES ($2, $1)", params!["x", 1i64])
        })
        .unwrap();
        let failed: Result<()> = write(&db, |tx| {
            tx.execute("INSERT INTO t (a, b) VALUES (2, 'y')", &[])?;
            Err(CatalogError::Corrupt("no".into()))
        });
        assert!(failed.is_err());
        let rows = read(&db, |tx| tx.query("SELECT a, b FROM t", &[])).unwrap();
        assert_eq!(rows.len(), 1, "the failed unit was rolled back");
        assert_eq!(rows[0].int(0).unwrap(), 1);
        assert_eq!(rows[0].text(1).unwrap(), "x");
    }
}
