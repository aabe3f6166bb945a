//! [`WriteBehindCounters`]: counters decided in memory and written behind to the SQLite file
//! (`[store] counters = "write-behind"`): a reservation costs a map lookup under a mutex
//! instead of a SQLite transaction, and survives a restart like the `sqlite` backend.
//!
//! - **Decisions** are the in-memory store's ([`Maps`], the rules of [`crate::logic`]): exact
//!   within this process.
//! - **Writes** are journaled ([`Op`]) as the decision makes them and repeated on
//!   `counters.db` by a flusher thread in one transaction per batch: the first write after a
//!   flush wakes it, it waits [`FLUSH_EVERY`] for more, then commits them all. A refused
//!   reservation writes nothing.
//! - **Restart**: the live counters are read back from the file when the store opens; a
//!   crash (kill -9) forgets at most the charges of the last [`FLUSH_EVERY`] (the `sqlite`
//!   backend forgets a few on a power cut); a clean shutdown flushes everything.
//! - **One process**: the store holds an exclusive lock on `counters.db-owner` for its
//!   lifetime, and the `sqlite` backend a shared one, so a second process cannot open the
//!   same counters and silently double every limit: it fails to start, saying why. Several
//!   processes that must share limits use `counters = "sqlite"` (exact across processes, one
//!   transaction per call) or Redis.

use crate::logic::{self, Bucket, Cells};
use crate::memory::Maps;
use crate::sqlite::{Op, OpenError, SqliteCounters};
use portcullis_policy::sync::LockExt;
use portcullis_policy::{
    CounterKey, CounterStore, Millis, Reservation, ReserveError, Ticket, Usage, Window,
};
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the flusher gathers writes after the first one wakes it.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Counters decided in memory, written behind to a SQLite file (see the module's doc).
pub struct WriteBehindCounters {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
    /// The exclusive lock on the file's owner lock (released when dropped).
    _owner: File,
}

impl std::fmt::Debug for WriteBehindCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBehindCounters")
            .field("db", &self.shared.db)
            .finish()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the journal gets its first write since the last flush, and on stop.
    wake: Condvar,
    db: SqliteCounters,
}

#[derive(Default)]
struct State {
    maps: Maps,
    journal: Vec<Op>,
    stop: bool,
    /// Flushes that failed in a row (the writes are kept and tried again).
    failures: u32,
    /// The latest `now` a caller gave (the store reads no clock): the file's sweep runs by it.
    now: Millis,
}

impl WriteBehindCounters {
    /// Opens (creating if needed) the counters file at `path`, takes its owner lock, reads the
    /// counters still live at `now` back, and starts the flusher.
    pub fn open(path: impl AsRef<Path>, now: Millis) -> Result<Self, OpenError> {
        let path = path.as_ref();
        let owner = crate::sqlite::owner_lock(path, true)?;
        let db = SqliteCounters::open_unlocked(path)?;
        let live = db
            .live(now)
            .map_err(|e| OpenError::new(format!("{}: {e}", path.display())))?;
        let mut maps = Maps::default();
        for (key, b) in live.buckets {
            maps.restore_bucket(key, b);
        }
        for (key, ts, amount, len) in live.events {
            maps.push_event(&key, ts, amount, len)
                .map_err(|e| OpenError::new(e.to_string()))?;
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                maps,
                now,
                ..State::default()
            }),
            wake: Condvar::new(),
            db,
        });
        let s = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("counters-flush".into())
            .spawn(move || flush_loop(&s))
            .map_err(|e| OpenError::new(format!("cannot start the counters flusher: {e}")))?;
        Ok(WriteBehindCounters {
            shared,
            flusher: Some(flusher),
            _owner: owner,
        })
    }

    /// Counters held in memory (dead ones not yet swept included).
    pub fn len(&self) -> usize {
        self.shared.state.lock_or_recover().maps.len()
    }

    /// True if no counter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes everything journaled so far to the file now (tests; shutdown does it too).
    pub fn flush(&self) -> Result<(), ReserveError> {
        flush_once(&self.shared)
    }

    /// Runs `f` on the counters with a journal; wakes the flusher if `f` wrote the first
    /// entry since the last flush.
    fn decide<T>(&self, now: Millis, f: impl FnOnce(&mut Journaled<'_>) -> T) -> T {
        let mut st = self.shared.state.lock_or_recover();
        st.now = st.now.max(now);
        let was_empty = st.journal.is_empty();
        let State { maps, journal, .. } = &mut *st;
        let out = f(&mut Journaled { maps, journal });
        let wake = was_empty && !st.journal.is_empty();
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
        out
    }
}

impl Drop for WriteBehindCounters {
    fn drop(&mut self) {
        self.shared.state.lock_or_recover().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

impl CounterStore for WriteBehindCounters {
    fn reserve(&self, reqs: &[Reservation], now: Millis) -> Result<Ticket, ReserveError> {
        if reqs.is_empty() {
            return Ok(Ticket::default());
        }
        self.decide(now, |j| {
            if j.maps.sweep_clock.due(now) {
                // The file sweeps its own dead rows when the flusher writes.
                j.maps.sweep(now);
            }
            logic::reserve(j, reqs, now)
        })
    }

    fn refund(&self, ticket: &Ticket, now: Millis) -> Result<(), ReserveError> {
        if ticket.held.is_empty() {
            return Ok(());
        }
        self.decide(now, |j| logic::refund(j, ticket))
    }

    fn usage(&self, key: &CounterKey, window: Window, now: Millis) -> Result<Usage, ReserveError> {
        // Reads write nothing the file needs (a rolling log dropping dead charges in memory
        // is what the file's sweep does on its own).
        logic::usage(
            &mut self.shared.state.lock_or_recover().maps,
            key,
            window,
            now,
        )
    }
}

/// The flusher: sleeps until the first write after a flush, gathers for [`FLUSH_EVERY`],
/// writes the batch; on stop, writes what is left and ends.
fn flush_loop(s: &Shared) {
    loop {
        {
            let mut st = s.state.lock_or_recover();
            while st.journal.is_empty() && !st.stop {
                st = s
                    .wake
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if st.stop {
                drop(st);
                if let Err(e) = flush_once(s) {
                    tracing::error!("counters not written to disk at shutdown: {e}");
                }
                return;
            }
        }
        // Gather: every write of the next FLUSH_EVERY goes in the same transaction.
        let until = Instant::now() + FLUSH_EVERY;
        {
            let mut st = s.state.lock_or_recover();
            while !st.stop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = s
                    .wake
                    .wait_timeout(st, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
        if let Err(e) = flush_once(s) {
            let failures = s.state.lock_or_recover().failures;
            if failures == 1 || failures.is_multiple_of(100) {
                tracing::error!(
                    "counters could not be written to disk ({failures} tries): {e}; limits \
                     still hold in this process, but a restart would forget the unwritten charges"
                );
            }
            // Back off before the next try.
            std::thread::sleep(FLUSH_EVERY * 10);
        }
    }
}

/// Takes the journal and writes it in one transaction; on failure puts it back in front of
/// what was journaled since, so the file still gets every write in order.
fn flush_once(s: &Shared) -> Result<(), ReserveError> {
    let (ops, now) = {
        let mut st = s.state.lock_or_recover();
        (std::mem::take(&mut st.journal), st.now)
    };
    if ops.is_empty() {
        return Ok(());
    }
    match s.db.apply(&ops, now) {
        Ok(()) => {
            s.state.lock_or_recover().failures = 0;
            Ok(())
        }
        Err(e) => {
            let mut st = s.state.lock_or_recover();
            st.failures += 1;
            let newer = std::mem::replace(&mut st.journal, ops);
            st.journal.extend(newer);
            Err(e)
        }
    }
}

/// The in-memory counters, with every write they make journaled for the file.
struct Journaled<'a> {
    maps: &'a mut Maps,
    journal: &'a mut Vec<Op>,
}

impl Cells for Journaled<'_> {
    fn bucket(&mut self, key: &CounterKey) -> Result<Option<(Millis, u64)>, ReserveError> {
        self.maps.bucket(key)
    }

    fn update_bucket(
        &mut self,
        key: &CounterKey,
        f: impl FnOnce(Option<(Millis, u64)>) -> Option<Bucket>,
    ) -> Result<(), ReserveError> {
        let mut written = None;
        self.maps.update_bucket(key, |old| {
            written = f(old);
            written
        })?;
        if let Some(b) = written {
            self.journal.push(Op::Bucket(key.clone(), b));
        }
        Ok(())
    }

    fn newest_event(&mut self, key: &CounterKey) -> Result<Option<Millis>, ReserveError> {
        self.maps.newest_event(key)
    }

    fn live_sum(&mut self, key: &CounterKey, first_live: Millis) -> Result<u64, ReserveError> {
        self.maps.live_sum(key, first_live)
    }

    fn live_events(
        &mut self,
        key: &CounterKey,
        first_live: Millis,
    ) -> Result<Vec<(Millis, u64)>, ReserveError> {
        self.maps.live_events(key, first_live)
    }

    fn push_event(
        &mut self,
        key: &CounterKey,
        ts: Millis,
        amount: u64,
        len: Millis,
    ) -> Result<(), ReserveError> {
        self.maps.push_event(key, ts, amount, len)?;
        self.journal.push(Op::Push(key.clone(), ts, amount, len));
        Ok(())
    }

    fn remove_event(
        &mut self,
        key: &CounterKey,
        ts: Millis,
        amount: u64,
    ) -> Result<(), ReserveError> {
        self.maps.remove_event(key, ts, amount)?;
        self.journal.push(Op::Remove(key.clone(), ts, amount));
        Ok(())
    }
}
