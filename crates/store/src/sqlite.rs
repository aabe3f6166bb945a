//! [`SqliteCounters`]: counters in a SQLite file, exact across restarts and processes.

use crate::batch::Batcher;
use crate::logic::{self, Bucket, Cells, SweepClock};
use portcullis_policy::sync::LockExt;
use portcullis_policy::{
    CounterKey, CounterStore, Deferred, Millis, Reply, Reservation, ReserveError, Ticket, Usage,
    Window,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::Duration;

/// How long a writer waits for another process's transaction before failing (closed).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema version stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
    -- One row per calendar counter: the bucket it last counted in.
    CREATE TABLE IF NOT EXISTS counters (
        key     TEXT PRIMARY KEY NOT NULL,
        bucket  INTEGER NOT NULL,  -- bucket start, ms since the epoch, UTC
        used    INTEGER NOT NULL,
        expires INTEGER NOT NULL   -- bucket end; the row is dead from then on
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS counters_expires ON counters (expires);
    -- One row per charge of a rolling counter.
    CREATE TABLE IF NOT EXISTS rolling_events (
        key     TEXT NOT NULL,
        ts      INTEGER NOT NULL,  -- when charged, ms since the epoch, UTC
        amount  INTEGER NOT NULL,
        expires INTEGER NOT NULL   -- ts + window length; the row is dead from then on
    );
    CREATE INDEX IF NOT EXISTS rolling_events_key_ts ON rolling_events (key, ts);
    CREATE INDEX IF NOT EXISTS rolling_events_expires ON rolling_events (expires);
";

/// Counter store in a SQLite database file.
///
/// Every [`reserve`](CounterStore::reserve) and [`refund`](CounterStore::refund) is one
/// `BEGIN IMMEDIATE` transaction: it takes the database's write lock before reading, so
/// callers in this process (serialised by a mutex around the connection) and in other
/// processes sharing the file (serialised by SQLite, waiting up to 5 s) see and charge
/// counters one at a time, and a failed check writes nothing. Counters survive restarts: a
/// daily quota stays spent when the gateway is restarted.
///
/// The file is opened in WAL mode with `synchronous=NORMAL`: commits do not wait for fsync,
/// only checkpoints do. That is durable against a crash of the process; a power loss or OS
/// crash may roll back the last few commits, i.e. forget a few charges made just before it.
/// For rate counters that is an acceptable trade for a write path that is not bound by disk
/// flushes (a few tens of microseconds instead of milliseconds).
///
/// [`reserve_later`](CounterStore::reserve_later) (the request path) reserves at once when the
/// connection is free; when another reservation holds it, the caller's thread does not wait:
/// the reservation is queued for the store's batcher thread, which commits every reservation
/// queued meanwhile in one transaction (each still all or nothing).
/// [`reserve_together`](CounterStore::reserve_together) makes a caller's batch in one
/// transaction the same way (the gateway gathers the reservations of the calls one of its
/// threads takes in at once).
pub struct SqliteCounters {
    inner: Arc<Mutex<Inner>>,
    /// The thread that commits reservations made while the connection was busy, many to a
    /// transaction ([`CounterStore::reserve_later`]); started by the first.
    batcher: OnceLock<Batcher>,
    /// The shared owner lock of a file opened by [`SqliteCounters::open`].
    _owner: Option<std::fs::File>,
}

pub(crate) struct Inner {
    conn: Connection,
    sweep_clock: SweepClock,
}

impl fmt::Debug for SqliteCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.lock().conn.path().map(str::to_owned);
        f.debug_struct("SqliteCounters")
            .field("path", &path)
            .finish()
    }
}

/// Why a [`SqliteCounters`] could not be opened.
#[derive(Debug)]
pub struct OpenError(String);

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot open the counter database: {}", self.0)
    }
}

impl std::error::Error for OpenError {}

impl OpenError {
    pub(crate) fn new(m: String) -> OpenError {
        OpenError(m)
    }
}

/// The owner lock of the counters file at `path` (`<path>-owner`, an advisory `flock`):
/// shared for the `sqlite` backend (any number of processes, each exact by its
/// transactions), exclusive for the write-behind one (this process alone decides). Taken
/// without waiting: a conflict is an error that says which backend holds the file.
pub(crate) fn owner_lock(path: &Path, exclusive: bool) -> Result<std::fs::File, OpenError> {
    use std::os::fd::AsRawFd;
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push("-owner");
    let lock_path = std::path::PathBuf::from(lock_path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| OpenError(format!("{}: {e}", lock_path.display())))?;
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    } | libc::LOCK_NB;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), op) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(OpenError(if e.kind() == std::io::ErrorKind::WouldBlock {
            if exclusive {
                format!(
                    "{} is in use by another gateway process; counters = \"write-behind\" \
                     needs it alone (stop the other process, or use counters = \"sqlite\" \
                     everywhere to share limits between processes)",
                    path.display()
                )
            } else {
                format!(
                    "{} is held by a gateway process with counters = \"write-behind\", which \
                     decides its limits alone; stop it, or set counters = \"sqlite\" there too \
                     to share limits between processes",
                    path.display()
                )
            }
        } else {
            format!("{}: flock: {e}", lock_path.display())
        }));
    }
    Ok(file)
}

impl From<rusqlite::Error> for OpenError {
    fn from(e: rusqlite::Error) -> Self {
        OpenError(e.to_string())
    }
}

impl SqliteCounters {
    /// Opens (creating if needed) the database file at `path` and its schema, with the
    /// file's shared owner lock (refused while a write-behind store holds the file).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        let path = path.as_ref();
        let owner = owner_lock(path, false)?;
        let mut s = Self::open_unlocked(path)?;
        s._owner = Some(owner);
        Ok(s)
    }

    /// [`SqliteCounters::open`] without the owner lock (the write-behind store holds the
    /// exclusive one).
    pub(crate) fn open_unlocked(path: &Path) -> Result<Self, OpenError> {
        let conn =
            Connection::open(path).map_err(|e| OpenError(format!("{}: {e}", path.display())))?;
        Self::init(conn)
    }

    /// A private in-memory database, for tests: nothing is shared or kept.
    pub fn open_in_memory() -> Result<Self, OpenError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, OpenError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Returns the mode in effect ("memory" for in-memory databases); either is fine.
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(OpenError(format!(
                "schema version {version} is newer than this build's {SCHEMA_VERSION}"
            )));
        }
        tx.execute_batch(SCHEMA)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        Ok(SqliteCounters {
            inner: Arc::new(Mutex::new(Inner {
                conn,
                sweep_clock: SweepClock::default(),
            })),
            batcher: OnceLock::new(),
            _owner: None,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic inside a transaction rolls it back when it unwinds, so the connection is
        // still consistent.
        self.inner.lock_or_recover()
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed only if `f` succeeds.
    fn write<T>(
        &self,
        now: Millis,
        f: impl FnOnce(&mut Sql<'_>) -> Result<T, ReserveError>,
    ) -> Result<T, ReserveError> {
        self.lock().write(now, f)
    }
}

impl Inner {
    /// [`SqliteCounters::write`] on the locked connection.
    fn write<T>(
        &mut self,
        now: Millis,
        f: impl FnOnce(&mut Sql<'_>) -> Result<T, ReserveError>,
    ) -> Result<T, ReserveError> {
        let Inner { conn, sweep_clock } = self;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut sql = Sql { conn: &tx };
        let out = f(&mut sql)?;
        if sweep_clock.due(now) {
            sql.sweep(now)?;
        }
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// Reserves every job of a batch in one transaction: each all or nothing (a reservation
    /// that does not fit writes nothing), all committed together, with one sweep when due
    /// (on the batch's latest clock). A store error fails the whole batch, closed: every
    /// reservation that had fit fails with it, since the transaction that charged them is
    /// rolled back.
    pub(crate) fn reserve_batch(&mut self, jobs: &[Deferred]) -> Vec<Result<Ticket, ReserveError>> {
        let latest = jobs.iter().map(|j| j.now).max().unwrap_or(0);
        let mut results = Vec::with_capacity(jobs.len());
        let outcome = self.write(latest, |sql| {
            for j in jobs {
                match logic::reserve(sql, &j.reqs, j.now) {
                    Err(e @ ReserveError::Store(_)) => return Err(e),
                    r => results.push(r),
                }
            }
            Ok(())
        });
        match outcome {
            Ok(()) => results,
            Err(e) => (0..jobs.len())
                .map(|i| match results.get(i) {
                    Some(Err(exhausted)) => Err(exhausted.clone()),
                    _ => Err(e.clone()),
                })
                .collect(),
        }
    }
}

impl SqliteCounters {
    /// The connection when no other caller holds it (a poisoned lock is recovered: the
    /// connection itself is sound, and every write is a transaction).
    fn try_lock(&self) -> Option<MutexGuard<'_, Inner>> {
        match self.inner.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The thread that commits the reservations that found the connection busy, started by
    /// the first.
    fn batcher(&self) -> &Batcher {
        self.batcher.get_or_init(|| {
            let inner = Arc::clone(&self.inner);
            Batcher::start("counters-batch", move |jobs| {
                inner.lock_or_recover().reserve_batch(jobs)
            })
        })
    }

    /// Writes what the write-behind store journaled, in one transaction (sweeping dead rows
    /// when due).
    pub(crate) fn apply(&self, ops: &[Op], now: Millis) -> Result<(), ReserveError> {
        self.write(now, |sql| {
            for op in ops {
                match op {
                    Op::Bucket(key, b) => sql.put_bucket(key, b)?,
                    Op::Push(key, ts, amount, len) => sql.push_event(key, *ts, *amount, *len)?,
                    Op::Remove(key, ts, amount) => sql.remove_event(key, *ts, *amount)?,
                }
            }
            Ok(())
        })
    }

    /// The counters still live at `now`, for the write-behind store to start from: calendar
    /// buckets, and rolling charges oldest first with their window's length.
    pub(crate) fn live(&self, now: Millis) -> Result<Live, ReserveError> {
        let inner = self.lock();
        let tx = inner.conn.unchecked_transaction().map_err(db)?;
        let buckets = tx
            .prepare("SELECT key, bucket, used, expires FROM counters WHERE expires > ?1")
            .and_then(|mut s| {
                s.query_map(params![now], |r| {
                    Ok((
                        CounterKey::from_stored(r.get(0)?),
                        Bucket {
                            start: r.get(1)?,
                            used: r.get(2)?,
                            end: r.get(3)?,
                        },
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)?;
        let events = tx
            .prepare(
                "SELECT key, ts, amount, expires FROM rolling_events WHERE expires > ?1
                 ORDER BY key, ts, rowid",
            )
            .and_then(|mut s| {
                s.query_map(params![now], |r| {
                    let (ts, expires): (Millis, Millis) = (r.get(1)?, r.get(3)?);
                    Ok((
                        CounterKey::from_stored(r.get(0)?),
                        ts,
                        r.get(2)?,
                        expires.saturating_sub(ts),
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(Live { buckets, events })
    }
}

/// A write the write-behind store journaled, to be repeated on the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// A calendar counter's new state.
    Bucket(CounterKey, Bucket),
    /// A rolling charge: key, stamp, amount, window length.
    Push(CounterKey, Millis, u64, Millis),
    /// A refunded rolling charge: key, stamp, amount.
    Remove(CounterKey, Millis, u64),
}

/// The live counters of a file (see [`SqliteCounters::live`]).
pub(crate) struct Live {
    pub(crate) buckets: Vec<(CounterKey, Bucket)>,
    /// Key, stamp, amount, window length.
    pub(crate) events: Vec<(CounterKey, Millis, u64, Millis)>,
}

impl CounterStore for SqliteCounters {
    fn reserve(&self, reqs: &[Reservation], now: Millis) -> Result<Ticket, ReserveError> {
        if reqs.is_empty() {
            return Ok(Ticket::default());
        }
        self.write(now, |sql| logic::reserve(sql, reqs, now))
    }

    fn defers(&self) -> bool {
        true
    }

    /// When the connection is free, reserves at once on this thread (one transaction, as
    /// [`reserve`](CounterStore::reserve)). When another reservation holds it, the caller does
    /// not wait for it: the reservation goes to the batcher thread, which commits every
    /// reservation that arrived meanwhile in one transaction once the connection is free.
    fn reserve_later(&self, reqs: Vec<Reservation>, now: Millis, reply: Reply) {
        if reqs.is_empty() {
            return reply(reqs, Ok(Ticket::default()));
        }
        let Some(mut inner) = self.try_lock() else {
            return self.batcher().queue(Deferred { reqs, now, reply });
        };
        let r = inner.write(now, |sql| logic::reserve(sql, &reqs, now));
        drop(inner);
        reply(reqs, r)
    }

    fn combines(&self) -> bool {
        true
    }

    /// One transaction for all of `jobs` when the connection is free; otherwise they are
    /// queued for the batcher thread, as in [`reserve_later`](CounterStore::reserve_later).
    fn reserve_together(&self, jobs: Vec<Deferred>) {
        match self.try_lock() {
            Some(mut inner) => {
                let results = inner.reserve_batch(&jobs);
                drop(inner);
                crate::batch::answer(jobs, results);
            }
            None => {
                let batcher = self.batcher();
                jobs.into_iter().for_each(|j| batcher.queue(j));
            }
        }
    }

    fn refund(&self, ticket: &Ticket, now: Millis) -> Result<(), ReserveError> {
        if ticket.held.is_empty() {
            return Ok(());
        }
        self.write(now, |sql| logic::refund(sql, ticket))
    }

    fn usage(&self, key: &CounterKey, window: Window, now: Millis) -> Result<Usage, ReserveError> {
        let inner = self.lock();
        // A read transaction, so the two reads of a rolling counter see one snapshot.
        let tx = inner.conn.unchecked_transaction().map_err(db)?;
        let usage = logic::usage(&mut Sql { conn: &tx }, key, window, now)?;
        tx.commit().map_err(db)?;
        Ok(usage)
    }
}

fn db(e: rusqlite::Error) -> ReserveError {
    ReserveError::Store(format!("sqlite: {e}"))
}

/// The storage primitives, on a connection inside a transaction.
struct Sql<'c> {
    conn: &'c Connection,
}

impl Sql<'_> {
    /// Stores a calendar counter's state.
    fn put_bucket(&mut self, key: &CounterKey, b: &Bucket) -> Result<(), ReserveError> {
        self.conn
            .prepare_cached(
                "INSERT INTO counters (key, bucket, used, expires) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE
                 SET bucket = excluded.bucket, used = excluded.used, expires = excluded.expires",
            )
            .and_then(|mut s| s.execute(params![key.as_str(), b.start, b.used, b.end]))
            .map(drop)
            .map_err(db)
    }

    /// Deletes ended buckets and expired rolling charges.
    fn sweep(&mut self, now: Millis) -> Result<(), ReserveError> {
        self.conn
            .prepare_cached("DELETE FROM counters WHERE expires <= ?1")
            .and_then(|mut s| s.execute(params![now]))
            .map_err(db)?;
        self.conn
            .prepare_cached("DELETE FROM rolling_events WHERE expires <= ?1")
            .and_then(|mut s| s.execute(params![now]))
            .map_err(db)?;
        Ok(())
    }
}

impl Cells for Sql<'_> {
    fn bucket(&mut self, key: &CounterKey) -> Result<Option<(Millis, u64)>, ReserveError> {
        self.conn
            .prepare_cached("SELECT bucket, used FROM counters WHERE key = ?1")
            .and_then(|mut s| {
                s.query_row(params![key.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(db)
    }

    fn update_bucket(
        &mut self,
        key: &CounterKey,
        f: impl FnOnce(Option<(Millis, u64)>) -> Option<Bucket>,
    ) -> Result<(), ReserveError> {
        let stored = self.bucket(key)?;
        match f(stored) {
            // The same bucket: only its count changes, so the row is rewritten in place and
            // the `expires` index is left alone (one page written instead of two).
            Some(b) if stored.is_some_and(|(start, _)| start == b.start) => self
                .conn
                .prepare_cached("UPDATE counters SET used = ?2 WHERE key = ?1")
                .and_then(|mut s| s.execute(params![key.as_str(), b.used]))
                .map(drop)
                .map_err(db),
            Some(b) => self.put_bucket(key, &b),
            None => Ok(()),
        }
    }

    fn newest_event(&mut self, key: &CounterKey) -> Result<Option<Millis>, ReserveError> {
        self.conn
            .prepare_cached("SELECT MAX(ts) FROM rolling_events WHERE key = ?1")
            .and_then(|mut s| s.query_row(params![key.as_str()], |row| row.get(0)))
            .map_err(db)
    }

    fn live_sum(&mut self, key: &CounterKey, first_live: Millis) -> Result<u64, ReserveError> {
        self.conn
            .prepare_cached(
                "SELECT COALESCE(SUM(amount), 0) FROM rolling_events WHERE key = ?1 AND ts >= ?2",
            )
            .and_then(|mut s| s.query_row(params![key.as_str(), first_live], |row| row.get(0)))
            .map_err(db)
    }

    fn live_events(
        &mut self,
        key: &CounterKey,
        first_live: Millis,
    ) -> Result<Vec<(Millis, u64)>, ReserveError> {
        self.conn
            .prepare_cached(
                "SELECT ts, amount FROM rolling_events WHERE key = ?1 AND ts >= ?2
                 ORDER BY ts, rowid",
            )
            .and_then(|mut s| {
                s.query_map(params![key.as_str(), first_live], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect()
            })
            .map_err(db)
    }

    fn push_event(
        &mut self,
        key: &CounterKey,
        ts: Millis,
        amount: u64,
        len: Millis,
    ) -> Result<(), ReserveError> {
        self.conn
            .prepare_cached(
                "INSERT INTO rolling_events (key, ts, amount, expires) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![key.as_str(), ts, amount, expiry(ts, len)]))
            .map(drop)
            .map_err(db)
    }

    fn remove_event(
        &mut self,
        key: &CounterKey,
        ts: Millis,
        amount: u64,
    ) -> Result<(), ReserveError> {
        self.conn
            .prepare_cached(
                "DELETE FROM rolling_events WHERE rowid = (
                     SELECT rowid FROM rolling_events
                     WHERE key = ?1 AND ts = ?2 AND amount = ?3 LIMIT 1)",
            )
            .and_then(|mut s| s.execute(params![key.as_str(), ts, amount]))
            .map(drop)
            .map_err(db)
    }
}

/// `ts + len`, kept within SQLite's integer range.
fn expiry(ts: Millis, len: Millis) -> Millis {
    ts.saturating_add(len).min(i64::MAX as u64)
}
