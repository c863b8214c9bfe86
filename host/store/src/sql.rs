//! A small builder for statements whose shape depends on the input
//! (multi-row `VALUES`, `IN` lists). sqlx's `QueryBuilder` writes `?` for
//! the Any driver, which PostgreSQL rejects; this one writes `$n` for
//! PostgreSQL and a plain `?` for SQLite. Both backends accept `$n`, but
//! SQLite treats `$n` as a named parameter, and sqlx looks each one up by
//! name when binding, which SQLite does by a linear scan: a 4,000-parameter
//! insert spent tens of milliseconds binding. Anonymous `?` bind in order.

use std::fmt::Write as _;

use serde_json::Value;
use sqlx::any::{Any, AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{AnyConnection, Row};

use super::Backend;
use super::error::{Result, StoreError};
use super::ids::Timestamp;

/// Parameters per statement. SQLite allows 32,766 (PostgreSQL 65,535);
/// staying well under keeps one statement per chunk on both.
pub(crate) const MAX_PARAMS: usize = 30_000;

/// How many rows of `columns` parameters fit in one statement, at most
/// `cap`.
pub(crate) const fn rows_per_statement(columns: usize, cap: usize) -> usize {
    let rows = MAX_PARAMS / columns;
    if rows < cap { rows } else { cap }
}

/// A bound value.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl From<Timestamp> for Arg {
    fn from(v: Timestamp) -> Self {
        Arg::Int(Some(v.as_millis()))
    }
}

impl From<Option<Timestamp>> for Arg {
    fn from(v: Option<Timestamp>) -> Self {
        Arg::Int(v.map(Timestamp::as_millis))
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_owned))
    }
}

/// SQL text and its arguments, built together.
#[derive(Debug)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
    /// `?` placeholders (SQLite) instead of `$n` (PostgreSQL).
    anonymous: bool,
}

impl Sql {
    pub(crate) fn new(backend: Backend, text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
            anonymous: backend == Backend::Sqlite,
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `arg`.
    pub(crate) fn bind(&mut self, arg: impl Into<Arg>) -> &mut Self {
        self.args.push(arg.into());
        if self.anonymous {
            self.text.push('?');
        } else {
            let _ = write!(self.text, "${}", self.args.len());
        }
        self
    }

    /// Appends `(a, b, c)`: one placeholder per argument.
    pub(crate) fn tuple<I, A>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = A>,
        A: Into<Arg>,
    {
        self.push("(");
        for (i, arg) in args.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(arg);
        }
        self.push(")")
    }

    /// Appends `(a, b, c)` for an `IN` list (which must not be empty).
    pub(crate) fn in_list<'a, I>(&mut self, ids: I) -> &mut Self
    where
        I: IntoIterator<Item = &'a str>,
    {
        self.tuple(ids)
    }

    /// The statement's text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Its arguments, in placeholder order.
    pub(crate) fn args(&self) -> &[Arg] {
        &self.args
    }

    /// The statement, ready to run. On PostgreSQL it is not kept prepared:
    /// an unnamed statement is planned for the values it is run with. A
    /// kept one switches to a generic plan after five runs, made from the
    /// statistics of that moment; during a burst (100,000 firings) the
    /// tables outgrow them, and a generic plan that scanned every run
    /// still going to match an `IN` list made each statement hundreds of
    /// milliseconds (firings went from about 18,000 a second to 3,000,
    /// depending on when the plan was made). Statements of this builder
    /// vary in shape anyway, and would only churn the statement cache.
    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut query = sqlx::query(&self.text).persistent(self.anonymous);
        for arg in &self.args {
            query = match arg {
                Arg::Int(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.as_deref()),
            };
        }
        query
    }

    pub(crate) async fn execute(&self, conn: &mut AnyConnection) -> Result<u64> {
        Ok(self.query().execute(conn).await?.rows_affected())
    }

    pub(crate) async fn fetch_all(&self, conn: &mut AnyConnection) -> Result<Vec<AnyRow>> {
        Ok(self.query().fetch_all(conn).await?)
    }
}

/// Reads a TEXT column holding JSON.
pub(crate) fn json_column(row: &AnyRow, column: &'static str) -> Result<Value> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::corrupt(column, e))
}

/// Reads a nullable TEXT column holding JSON.
pub(crate) fn opt_json_column(row: &AnyRow, column: &'static str) -> Result<Option<Value>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::corrupt(column, e)))
        .transpose()
}

/// Reads a BIGINT column of unix milliseconds.
pub(crate) fn time_column(row: &AnyRow, column: &str) -> Result<Timestamp> {
    Ok(Timestamp::from_millis(row.try_get(column)?))
}

/// Reads a nullable BIGINT column of unix milliseconds.
pub(crate) fn opt_time_column(row: &AnyRow, column: &str) -> Result<Option<Timestamp>> {
    Ok(row
        .try_get::<Option<i64>, _>(column)?
        .map(Timestamp::from_millis))
}

/// Reads a TEXT column holding one of a `text_enum!`'s values.
pub(crate) fn enum_column<T: std::str::FromStr>(row: &AnyRow, column: &'static str) -> Result<T> {
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|_| StoreError::corrupt(column, format!("unknown value `{text}`")))
}

/// Reads a non-negative BIGINT column as `u32`.
pub(crate) fn u32_column(row: &AnyRow, column: &'static str) -> Result<u32> {
    let v: i64 = row.try_get(column)?;
    u32::try_from(v).map_err(|_| StoreError::corrupt(column, format!("{v} is out of range")))
}

/// JSON text of `value`.
pub(crate) fn to_json(value: &Value) -> String {
    value.to_string()
}
