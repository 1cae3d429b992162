//! The SQL storage port (issue 14's foundation): one Durable Object's SQLite database — workerd's
//! `ctx.storage.sql`, synchronous, a request's statements one implicit transaction — or, natively,
//! rusqlite (feature `sqlite`, and always in core's tests). The same SQL runs in both, so the follower shards' queries are
//! unit-tested and benchmarked natively at the sizes the docs claim.
//!
//! Synchronous on purpose: between two statements nothing else runs in the object, so a sequence
//! of calls from one request is atomic without an explicit transaction.

/// One SQL value, as both SQLite bindings carry them.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl SqlValue {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(v)
    }
}

impl From<u32> for SqlValue {
    fn from(v: u32) -> Self {
        SqlValue::Int(i64::from(v))
    }
}

impl From<u64> for SqlValue {
    fn from(v: u64) -> Self {
        SqlValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}

impl From<Option<&str>> for SqlValue {
    fn from(v: Option<&str>) -> Self {
        v.map_or(SqlValue::Null, SqlValue::from)
    }
}

/// A SQLite database.
pub trait Sql {
    /// Runs one statement with positional parameters (`?1`, `?2` …) and answers its rows. An
    /// `Err` is the database's own words (a constraint, a full disk): storage's failure, ours.
    fn exec(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, String>;
}

/// rusqlite as the port, for native tests and benchmarks.
#[cfg(any(test, feature = "sqlite"))]
pub struct Sqlite(pub rusqlite::Connection);

#[cfg(any(test, feature = "sqlite"))]
impl Sqlite {
    pub fn memory() -> Sqlite {
        Sqlite(rusqlite::Connection::open_in_memory().expect("an in-memory SQLite database"))
    }
}

#[cfg(any(test, feature = "sqlite"))]
impl Sql for Sqlite {
    fn exec(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, String> {
        use rusqlite::types::{Value, ValueRef};
        let mut stmt = self.0.prepare_cached(sql).map_err(|e| e.to_string())?;
        let bound: Vec<Value> = params
            .iter()
            .map(|p| match p {
                SqlValue::Null => Value::Null,
                SqlValue::Int(i) => Value::Integer(*i),
                SqlValue::Real(r) => Value::Real(*r),
                SqlValue::Text(t) => Value::Text(t.clone()),
            })
            .collect();
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(bound)).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            let mut r = Vec::with_capacity(columns);
            for i in 0..columns {
                r.push(match row.get_ref(i).map_err(|e| e.to_string())? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(i) => SqlValue::Int(i),
                    ValueRef::Real(f) => SqlValue::Real(f),
                    ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => SqlValue::Text(String::from_utf8_lossy(b).into_owned()),
                });
            }
            out.push(r);
        }
        Ok(out)
    }
}
