//! The engine-neutral SQL layer every catalog store is written against.
//!
//! A store runs its statements through [`Tx`] with `$1, $2, ...`
//! placeholders and [`Value`] parameters and reads [`Row`]s back; each
//! engine ([`crate::sqlite`], [`crate::postgres`]) turns that into its own
//! driver's calls. The SQL itself is written once in the portable subset both
//! engines accept (`INSERT ... ON CONFLICT ... DO UPDATE`, `RETURNING`,
//! row-value `IN` lists, `CAST(... AS BIGINT)`); the few places that differ
//! ask the [`Dialect`]. Hand-written because no crate offers one query API
//! over both rusqlite and postgres (sqlx does, but it cannot share a lockfile
//! with rusqlite, which the registry and tests already rely on).

use crate::{CatalogError, Result};

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v as i64)
    }
}
impl From<i16> for Value {
    fn from(v: i16) -> Self {
        Value::Int(v as i64)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(v as i64)
    }
}
impl From<u64> for Value {
    /// Sizes and positions; values past i64::MAX do not occur (they would
    /// be objects of more than 8 EiB) and saturate.
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(v as i64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

/// Builds a parameter list: `params![a, b, c]`.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => {
        &[$($crate::sql::Value::from($v)),*][..]
    };
}

/// One result row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row(pub(crate) Vec<Value>);

impl Row {
    fn get(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| CatalogError::Corrupt(format!("result row has no column {i}")))
    }

    /// An integer column.
    pub fn int(&self, i: usize) -> Result<i64> {
        match self.get(i)? {
            Value::Int(v) => Ok(*v),
            other => Err(CatalogError::Corrupt(format!(
                "column {i}: expected an integer, found {other:?}"
            ))),
        }
    }

    /// An integer column that must fit an i32 (partitions, counts).
    pub fn int32(&self, i: usize) -> Result<i32> {
        let v = self.int(i)?;
        i32::try_from(v)
            .map_err(|_| CatalogError::Corrupt(format!("column {i}: {v} does not fit 32 bits")))
    }

    /// A nullable integer column.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.get(i)? {
            Value::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    /// A text column.
    pub fn text(&self, i: usize) -> Result<String> {
        match self.get(i)? {
            Value::Text(s) => Ok(s.clone()),
            other => Err(CatalogError::Corrupt(format!(
                "column {i}: expected text, found {other:?}"
            ))),
        }
    }

    /// A nullable text column.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.get(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    /// A nullable string stored as text or as UTF-8 bytes.
    pub fn opt_string_or_bytes(&self, i: usize) -> Result<Option<String>> {
        match self.get(i)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            Value::Bytes(b) => String::from_utf8(b.clone())
                .map(Some)
                .map_err(|e| CatalogError::Corrupt(format!("column {i} is not UTF-8: {e}"))),
            Value::Int(v) => Err(CatalogError::Corrupt(format!(
                "column {i}: expected a string, found {v}"
            ))),
        }
    }

    /// A UUID stored as text.
    pub fn uuid(&self, i: usize) -> Result<uuid::Uuid> {
        let s = self.text(i)?;
        uuid::Uuid::parse_str(&s).map_err(|e| CatalogError::Corrupt(format!("bad uuid {s:?}: {e}")))
    }
}

/// Which SQL engine a store talks to, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Row locks for a read that precedes a write of the same rows. SQLite
    /// has none to take: a write transaction holds the whole database.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// A shared row lock: the rows read cannot change until this
    /// transaction ends (none to take in SQLite, as for [`Self::for_update`]).
    pub fn for_share(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR SHARE",
        }
    }

    /// The database server's clock in milliseconds since the epoch (broker
    /// leases are judged by one clock, not by each broker's).
    pub fn now_ms(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
            Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }
}

/// Whether a unit of work writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Statements run on their own (no explicit transaction): single reads.
    Read,
    /// One transaction, committed if the work succeeds, rolled back if not.
    Write,
}

/// Statements inside one unit of work.
pub trait Tx {
    /// Runs a statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Runs a query; returns every row.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    fn dialect(&self) -> Dialect;
}

impl dyn Tx + '_ {
    /// The first row of a query, if any.
    pub fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Sends a change notification to every broker listening on `channel`,
    /// delivered when this transaction commits (PostgreSQL); the embedded
    /// engine has no other broker to tell.
    pub fn notify(&mut self, channel: &str, payload: &str) -> Result<()> {
        if self.dialect() == Dialect::Postgres {
            self.query("SELECT pg_notify($1, $2)", params![channel, payload])?;
        }
        Ok(())
    }
}

/// A unit of work's statements (it may run on another thread than its
/// caller's: see [`crate::postgres::off_runtime`]).
pub type Work<'a> = dyn FnMut(&mut dyn Tx) -> Result<()> + Send + 'a;

/// A database engine.
pub trait Db: Send + Sync + 'static {
    fn dialect(&self) -> Dialect;

    /// Runs `work` as one unit. Under [`Mode::Write`] it may run more than
    /// once (PostgreSQL retries serialization failures and deadlocks), so it
    /// must have no effects outside the transaction.
    fn run(&self, mode: Mode, work: &mut Work<'_>) -> Result<()>;
}

/// Runs `f` in one write transaction and returns its result.
pub fn write<T: Send>(
    db: &dyn Db,
    mut f: impl FnMut(&mut dyn Tx) -> Result<T> + Send,
) -> Result<T> {
    unit(db, Mode::Write, &mut f)
}

/// Runs `f` as reads and returns its result.
pub fn read<T: Send>(db: &dyn Db, mut f: impl FnMut(&mut dyn Tx) -> Result<T> + Send) -> Result<T> {
    unit(db, Mode::Read, &mut f)
}

fn unit<T: Send>(
    db: &dyn Db,
    mode: Mode,
    f: &mut (dyn FnMut(&mut dyn Tx) -> Result<T> + Send),
) -> Result<T> {
    let mut out = None;
    db.run(mode, &mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| CatalogError::Db("a catalog unit of work returned nothing".into()))
}

/// `($1, $2, ...), ($k, ...)`: placeholders for `rows` tuples of `width`
/// values each, numbered from `$first`.
pub fn tuples(rows: usize, width: usize, first: usize) -> String {
    let mut s = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..width {
            if c > 0 {
                s.push_str(", ");
            }
            s.push('$');
            s.push_str(&(first + r * width + c).to_string());
        }
        s.push(')');
    }
    s
}

/// `(VALUES ($1, CAST($2 AS BIGINT)), ...)`: a list of `rows` tuples typed
/// by `types` (SQL type names, or "" for none), numbered from `$first`, for
/// row-value `IN` tests (PostgreSQL cannot infer a VALUES list's types from
/// the comparison; SQLite wants a subquery on the right of a row-value IN).
pub fn typed_values(rows: usize, types: &[&str], first: usize) -> String {
    let mut s = String::from("(VALUES ");
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for (c, ty) in types.iter().enumerate() {
            if c > 0 {
                s.push_str(", ");
            }
            let n = first + r * types.len() + c;
            if ty.is_empty() {
                s.push_str(&format!("${n}"));
            } else {
                s.push_str(&format!("CAST(${n} AS {ty})"));
            }
        }
        s.push(')');
    }
    s.push(')');
    s
}

/// Runs `INSERT INTO {head} VALUES (...), ... {tail}` for `rows` of equal
/// width, [`ROWS_PER_STATEMENT`] at a time.
pub fn insert_many(tx: &mut dyn Tx, head: &str, tail: &str, rows: &[Vec<Value>]) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let width = chunk[0].len();
        let sql = format!(
            "INSERT INTO {head} VALUES {} {tail}",
            tuples(chunk.len(), width, 1)
        );
        let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
        tx.execute(&sql, &params)?;
    }
    Ok(())
}

/// Most rows one multi-row statement carries (keeps each statement far
/// below both engines' parameter limits).
pub const ROWS_PER_STATEMENT: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_placeholders() {
        assert_eq!(tuples(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(tuples(1, 2, 5), "($5, $6)");
        assert_eq!(
            typed_values(2, &["", "BIGINT"], 1),
            "(VALUES ($1, CAST($2 AS BIGINT)), ($3, CAST($4 AS BIGINT)))"
        );
    }

    #[test]
    fn row_accessors_check_types() {
        let r = Row(vec![Value::Int(7), Value::Text("x".into()), Value::Null]);
        assert_eq!(r.int(0).unwrap(), 7);
        assert_eq!(r.text(1).unwrap(), "x");
        assert_eq!(r.opt_text(2).unwrap(), None);
        assert!(r.int(1).is_err());
        assert!(r.text(9).is_err());
        assert!(Row(vec![Value::Int(1 << 40)]).int32(0).is_err());
    }
}
