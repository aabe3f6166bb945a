//! The SQLite plumbing shared by the stores of authority data (grants, approvals): WAL with
//! `synchronous=FULL` (a revocation or a decision survives a power loss), a busy timeout so
//! several processes can share the file, a versioned schema, one connection behind a mutex,
//! and writes in `BEGIN IMMEDIATE` transactions.

use portcullis_policy::sync::LockExt;
use rusqlite::{Connection, TransactionBehavior};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// One authority database.
pub(crate) struct AuthorityDb {
    conn: Mutex<Connection>,
}

impl AuthorityDb {
    /// Configures `conn` and creates or checks `schema` at `version`; a file written by a newer
    /// build is refused.
    pub(crate) fn init(
        mut conn: Connection,
        schema: &str,
        version: i64,
        busy: Duration,
    ) -> Result<AuthorityDb, String> {
        let e = |e: rusqlite::Error| e.to_string();
        conn.busy_timeout(busy).map_err(e)?;
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(e)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(e)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let found: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(e)?;
        if found > version {
            return Err(format!("schema version {found} is newer than this build's {version}; use a newer portcullis"));
        }
        tx.execute_batch(schema).map_err(e)?;
        tx.pragma_update(None, "user_version", version).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(AuthorityDb {
            conn: Mutex::new(conn),
        })
    }

    /// The connection (a panic inside a transaction rolled it back when it unwound).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock_or_recover()
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed only if it succeeds;
    /// `sql_err` turns SQLite's errors into the caller's.
    pub(crate) fn write<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
        sql_err: impl Fn(rusqlite::Error) -> E,
    ) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(sql_err)?;
        Ok(out)
    }
}
