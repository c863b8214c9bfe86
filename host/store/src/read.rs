//! Reads on SQLite without a thread hop per query.
//!
//! sqlx runs each SQLite connection on its own thread: every statement is
//! sent to that thread and every row sent back, two context switches per
//! query at least. For the API's hottest uncached reads (a page of runs,
//! a run's jobs per state) those hand-offs cost more than the query
//! (#18: 54 % of the server's samples were on sqlx's SQLite thread, about
//! a third of all samples kernel context switches). [`Readers`] keeps a
//! few plain SQLite connections to the same file and runs such a read on
//! the calling thread.
//!
//! The rules that make that safe:
//!
//! - **Reads only.** Each connection is opened with `PRAGMA query_only`, so
//!   a statement that would write fails; writes keep going through the
//!   pool and its write transactions.
//! - **Short, bounded statements only.** A read here holds an async worker
//!   for its duration, like any CPU work in a handler. The callers are
//!   index reads bounded by a page limit (at most 500 rows) or a single
//!   key; a read that could scan a table belongs on the pool.
//! - **The same snapshot rules as the pool.** In WAL mode a read sees every
//!   transaction committed before it started, whichever connection wrote
//!   it.

use std::path::PathBuf;
use std::sync::Mutex;

use super::error::{Result, StoreError};
use super::sql::{Arg, Sql};

/// Idle connections kept; more are opened when more reads run at once and
/// closed after.
const KEEP: usize = 8;

/// Plain SQLite read connections to the store's file.
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
                | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.execute_batch(
            "PRAGMA query_only = ON; PRAGMA busy_timeout = 10000; \
             PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Runs `read` on an idle connection (opening one if none is idle) on
    /// this thread.
    fn with<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let conn = self.idle.lock().expect("readers lock").pop();
        let conn = match conn {
            Some(conn) => conn,
            None => self.open().map_err(read_error)?,
        };
        let result = read(&conn).map_err(read_error);
        let mut idle = self.idle.lock().expect("readers lock");
        if idle.len() < KEEP {
            idle.push(conn);
        }
        result
    }

    /// Calls `each` with every row `sql` returns, in order.
    pub(crate) fn for_each(
        &self,
        sql: &Sql,
        mut each: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
    ) -> Result<()> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(sql.text())?;
            bind(&mut statement, sql.args())?;
            let mut rows = statement.raw_query();
            while let Some(r) = rows.next()? {
                each(r)?;
            }
            Ok(())
        })
    }

    /// Every row `sql` returns, each read by `row`.
    pub(crate) fn fetch_all<T>(
        &self,
        sql: &Sql,
        mut row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.for_each(sql, |r| {
            out.push(row(r)?);
            Ok(())
        })?;
        Ok(out)
    }
}

fn bind(statement: &mut rusqlite::Statement<'_>, args: &[Arg]) -> rusqlite::Result<()> {
    for (i, arg) in args.iter().enumerate() {
        match arg {
            Arg::Int(v) => statement.raw_bind_parameter(i + 1, v)?,
            Arg::Text(v) => statement.raw_bind_parameter(i + 1, v.as_deref())?,
        }
    }
    Ok(())
}

fn read_error(e: rusqlite::Error) -> StoreError {
    StoreError::Read(e)
}
