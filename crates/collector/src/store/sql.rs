//! One way to read either store: a reader connection ([`Db`]) over SQLite
//! or PostgreSQL, SQL written once with `?N` placeholders, and rows read by
//! column into owned values.
//!
//! On the data's road this is the seam under every read of
//! [`super::query`] and the API: the same query text runs on the embedded
//! store and on the shared one (`storage.backend`). The SQL it is given is
//! the subset both engines read alike; where they differ the query asks
//! [`Db::is_postgres`] (or [`Db::like`]) and says so beside it.

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::Type;

use super::StoreError;

/// A parameter that both engines can bind. `u8` and `u32` are not (the
/// PostgreSQL driver binds integers by their exact width): pass `i64`.
pub trait Bind: rusqlite::ToSql + postgres::types::ToSql + Sync {}
impl<T: rusqlite::ToSql + postgres::types::ToSql + Sync> Bind for T {}

/// A column's value as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer (PostgreSQL booleans read as 0 or 1).
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// One row, its columns in the order of the `SELECT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, StoreError> {
        self.0.get(i).ok_or_else(|| StoreError::Corrupt(format!("a stored row has no column {i}")))
    }

    fn wrong(&self, i: usize, want: &str) -> StoreError {
        StoreError::Corrupt(format!("stored column {i} is {:?}, not {want}", self.0.get(i)))
    }

    /// An integer column.
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?.ok_or_else(|| self.wrong(i, "an integer"))
    }

    /// An integer column that may be NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            _ => Err(self.wrong(i, "an integer")),
        }
    }

    /// A boolean column (an integer in SQLite).
    pub fn bool(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.int(i)? != 0)
    }

    /// A number column (an integer is widened).
    pub fn real(&self, i: usize) -> Result<f64, StoreError> {
        match self.at(i)? {
            Value::Real(v) => Ok(*v),
            Value::Int(v) => Ok(*v as f64),
            Value::Null => Ok(0.0),
            _ => Err(self.wrong(i, "a number")),
        }
    }

    /// A text column.
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or_else(|| self.wrong(i, "text"))
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            _ => Err(self.wrong(i, "text")),
        }
    }

    /// A bytes column.
    pub fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        self.opt_blob(i)?.ok_or_else(|| self.wrong(i, "bytes"))
    }

    /// A bytes column that may be NULL.
    pub fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Blob(v) => Ok(Some(v.clone())),
            _ => Err(self.wrong(i, "bytes")),
        }
    }
}

/// Rows one PostgreSQL read fetches at a time.
const ROWS_PER_PAGE: i32 = 512;

/// Most prepared statements one PostgreSQL reader keeps.
const MAX_CACHED_STATEMENTS: usize = 256;

/// A PostgreSQL connection with its prepared statements, by query text.
pub(crate) struct PgConn {
    pub(crate) client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

impl PgConn {
    pub(crate) fn new(client: postgres::Client) -> PgConn {
        PgConn { client, statements: HashMap::new() }
    }

    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.prepare(&dollars(sql))?;
        if self.statements.len() >= MAX_CACHED_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres(Box<RefCell<PgConn>>),
}

/// A reader connection to the store, whichever engine holds it.
pub struct Db(Backend);

impl Db {
    /// A reader over an open SQLite connection (the store's file; benches
    /// and tools open it read-only).
    pub fn sqlite(conn: rusqlite::Connection) -> Db {
        Db(Backend::Sqlite(conn))
    }

    pub(crate) fn postgres(conn: PgConn) -> Db {
        Db(Backend::Postgres(Box::new(RefCell::new(conn))))
    }

    /// Runs `f` as one read: on SQLite in one read transaction, so every
    /// query of it sees the same snapshot (a retention batch committing
    /// between two of them is not seen half). On PostgreSQL each query is
    /// its own (an export lease must commit as it is taken).
    pub(crate) fn snapshot<T>(&self, f: impl FnOnce(&Db) -> Result<T, StoreError>) -> Result<T, StoreError> {
        match &self.0 {
            Backend::Sqlite(conn) => {
                conn.execute_batch("BEGIN")?;
                let result = f(self);
                // Read only: nothing to keep or undo; this only ends the snapshot.
                let ended = conn.execute_batch("COMMIT").or_else(|_| conn.execute_batch("ROLLBACK"));
                let out = result?;
                ended?;
                Ok(out)
            }
            Backend::Postgres(_) => f(self),
        }
    }

    /// Whether the connection cannot serve another read: the server closed
    /// it, or a read transaction did not end (it is not pooled again).
    pub(crate) fn is_closed(&self) -> bool {
        match &self.0 {
            Backend::Sqlite(conn) => !conn.is_autocommit(),
            Backend::Postgres(conn) => conn.borrow().client.is_closed(),
        }
    }

    /// Whether the store is PostgreSQL (for the few queries whose text differs).
    pub fn is_postgres(&self) -> bool {
        matches!(self.0, Backend::Postgres(_))
    }

    /// The case-insensitive `LIKE` of the engine: SQLite's `LIKE` folds
    /// ASCII case, PostgreSQL's needs `ILIKE`.
    pub fn like(&self) -> &'static str {
        if self.is_postgres() { "ILIKE" } else { "LIKE" }
    }

    /// Every row of a query (on PostgreSQL one round trip, committed
    /// at once: a statement that writes, an export lease, keeps it).
    pub fn rows(&self, sql: &str, params: &[&dyn Bind]) -> Result<Vec<Row>, StoreError> {
        match &self.0 {
            Backend::Sqlite(_) => {
                let mut out = Vec::new();
                self.each(sql, params, |row| {
                    out.push(row);
                    Ok(true)
                })?;
                Ok(out)
            }
            Backend::Postgres(conn) => {
                let mut conn = conn.borrow_mut();
                let statement = conn.prepare(sql)?;
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| *p as &(dyn postgres::types::ToSql + Sync)).collect();
                conn.client.query(&statement, &params)?.iter().map(pg_row).collect()
            }
        }
    }

    /// The first row of a query, if there is one (for lookups of one row).
    pub fn opt_row(&self, sql: &str, params: &[&dyn Bind]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    /// The first row of a query that always has one (an aggregate).
    pub fn row(&self, sql: &str, params: &[&dyn Bind]) -> Result<Row, StoreError> {
        self.opt_row(sql, params)?.ok_or_else(|| StoreError::Corrupt(format!("no row from `{sql}`")))
    }

    /// The first column of every row, as bytes (trace IDs, mostly).
    pub fn blobs(&self, sql: &str, params: &[&dyn Bind]) -> Result<Vec<Vec<u8>>, StoreError> {
        self.rows(sql, params)?.iter().map(|r| r.blob(0)).collect()
    }

    /// The first column of every row, as text.
    pub fn texts(&self, sql: &str, params: &[&dyn Bind]) -> Result<Vec<String>, StoreError> {
        self.rows(sql, params)?.iter().map(|r| r.text(0)).collect()
    }

    /// Runs a query and hands each row to `f` as it is read, until `f`
    /// says stop (returns `false`): a long scan read only as far as needed.
    /// For reads only (on PostgreSQL it runs in a transaction that pages
    /// through a portal).
    pub fn each(
        &self,
        sql: &str,
        params: &[&dyn Bind],
        mut f: impl FnMut(Row) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        match &self.0 {
            Backend::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows =
                    stmt.query(rusqlite::params_from_iter(params.iter().map(|p| *p as &dyn rusqlite::ToSql)))?;
                while let Some(row) = rows.next()? {
                    let n = row.as_ref().column_count();
                    let mut values = Vec::with_capacity(n);
                    for i in 0..n {
                        values.push(match row.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Value::Null,
                            rusqlite::types::ValueRef::Integer(v) => Value::Int(v),
                            rusqlite::types::ValueRef::Real(v) => Value::Real(v),
                            rusqlite::types::ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
                            rusqlite::types::ValueRef::Blob(v) => Value::Blob(v.to_vec()),
                        });
                    }
                    if !f(Row(values))? {
                        break;
                    }
                }
                Ok(())
            }
            Backend::Postgres(conn) => {
                let mut conn = conn.borrow_mut();
                let statement = conn.prepare(sql)?;
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| *p as &(dyn postgres::types::ToSql + Sync)).collect();
                // Through a portal, a page of rows at a time: a scan that
                // stops early (a list page) reads no further than that page,
                // where the whole result would otherwise come over the wire.
                let mut tx = conn.client.transaction()?;
                let portal = tx.bind(&statement, &params)?;
                'pages: loop {
                    let page = tx.query_portal(&portal, ROWS_PER_PAGE)?;
                    let last = page.len() < ROWS_PER_PAGE as usize;
                    for row in &page {
                        if !f(pg_row(row)?)? {
                            break 'pages;
                        }
                    }
                    if last {
                        break;
                    }
                }
                tx.commit()?;
                Ok(())
            }
        }
    }
}

/// A PostgreSQL row as owned values, by each column's type.
fn pg_row(row: &postgres::Row) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(v.into()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?.map(|v| Value::Int(v.into()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?.map(|v| Value::Int(v.into()))
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)?.map(Value::Real)
        } else if *ty == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(i)?.map(|v| Value::Real(v.into()))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
        } else if [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty) {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            return Err(StoreError::Corrupt(format!("column {} has type {ty}, which no query reads", column.name())));
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N`. No query of the store
/// has a `?` inside a string literal.
pub(crate) fn dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_alike_in_both_dialects() {
        assert_eq!(
            dollars("SELECT a FROM t WHERE b = ?1 AND c IN (?2, ?13) AND d = ?1"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $13) AND d = $1"
        );
    }

    #[test]
    fn sqlite_rows_read_by_column() {
        let db = Db::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        let row = db.row("SELECT ?1, ?2, ?3, ?4, NULL", &[&7_i64, &"x", &vec![1_u8, 2], &1.5_f64]).unwrap();
        assert_eq!(row.int(0).unwrap(), 7);
        assert_eq!(row.text(1).unwrap(), "x");
        assert_eq!(row.blob(2).unwrap(), vec![1, 2]);
        assert_eq!(row.real(3).unwrap(), 1.5);
        assert_eq!(row.opt_text(4).unwrap(), None);
        let err = row.int(1).unwrap_err().to_string();
        assert!(err.contains("column 1") && err.contains("not an integer"), "{err}");
    }
}
