//! [`MemoryCounters`]: counters in a hash map behind one mutex.

use crate::logic::{self, Bucket, Cells, SweepClock};
use portcullis_policy::sync::LockExt;
use portcullis_policy::{
    CounterKey, CounterStore, Millis, Reservation, ReserveError, Ticket, Usage, Window,
};
use std::collections::{HashMap, VecDeque};
use std::hash::RandomState;
use std::sync::{Mutex, MutexGuard};

/// Keys hold caller-controlled text (the `per` argument's value), so the map keeps std's
/// randomly keyed SipHash: an unkeyed fast hash (FxHash) would let a caller who can mint
/// counters craft colliding keys and turn every lookup under the one lock into a linear scan.
/// SipHash costs about 50 ns more per one-counter reservation and refund than FxHash.
type Map<V> = HashMap<CounterKey, V, RandomState>;

/// In-memory counter store: fast, exact within one process, gone on restart.
///
/// One mutex guards all counters, so a multi-counter reservation is atomic without any lock
/// ordering; the critical section is a few hash lookups (well under a microsecond), which is
/// far shorter than anything else a gateway does per call. Dead counters (ended buckets,
/// expired rolling charges) are dropped lazily on access and by a sweep at most once a
/// minute of the callers' clock, so memory follows the live counters.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    inner: Mutex<Maps>,
}

impl MemoryCounters {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of counters currently held (calendar buckets plus rolling logs), dead ones not
    /// yet swept included. For metrics and tests.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if no counter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        // A panic while holding the lock can at worst leave a reservation half charged, which
        // over-counts (errs towards denying), so the data stays usable.
        self.inner.lock_or_recover()
    }
}

impl CounterStore for MemoryCounters {
    fn reserve(&self, reqs: &[Reservation], now: Millis) -> Result<Ticket, ReserveError> {
        if reqs.is_empty() {
            return Ok(Ticket::default());
        }
        let mut maps = self.lock();
        if maps.sweep_clock.due(now) {
            maps.sweep(now);
        }
        logic::reserve(&mut *maps, reqs, now)
    }

    fn refund(&self, ticket: &Ticket, _now: Millis) -> Result<(), ReserveError> {
        if ticket.held.is_empty() {
            return Ok(());
        }
        logic::refund(&mut *self.lock(), ticket)
    }

    fn usage(&self, key: &CounterKey, window: Window, now: Millis) -> Result<Usage, ReserveError> {
        logic::usage(&mut *self.lock(), key, window, now)
    }
}

/// The counters themselves, with no lock: [`MemoryCounters`] puts them behind its mutex, and
/// the write-behind store ([`crate::write_behind`]) behind its own, journaled.
#[derive(Debug, Default)]
pub(crate) struct Maps {
    calendar: Map<Bucket>,
    rolling: Map<Log>,
    pub(crate) sweep_clock: SweepClock,
}

/// The charges of one rolling counter, oldest first, and their sum.
#[derive(Debug, Default)]
struct Log {
    /// Window length (for sweeping).
    len: Millis,
    sum: u64,
    events: VecDeque<(Millis, u64)>,
}

impl Log {
    /// Drops charges stamped before `first_live`.
    fn expire(&mut self, first_live: Millis) {
        while let Some(&(ts, amount)) = self.events.front() {
            if ts >= first_live {
                break;
            }
            self.sum = self.sum.saturating_sub(amount);
            self.events.pop_front();
        }
    }
}

impl Maps {
    /// Restores a calendar counter read back from disk.
    pub(crate) fn restore_bucket(&mut self, key: CounterKey, b: Bucket) {
        self.calendar.insert(key, b);
    }

    /// Counters held (calendar buckets plus rolling logs), dead ones not yet swept included.
    pub(crate) fn len(&self) -> usize {
        self.calendar.len() + self.rolling.len()
    }

    /// Drops ended buckets and rolling counters with no live charge.
    pub(crate) fn sweep(&mut self, now: Millis) {
        self.calendar.retain(|_, b| b.end > now);
        self.rolling.retain(|_, log| {
            log.expire(logic::first_live(now, log.len));
            !log.events.is_empty()
        });
        shrink(&mut self.calendar);
        shrink(&mut self.rolling);
    }
}

/// Gives memory back after a burst of counters has died.
fn shrink<V>(map: &mut Map<V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

impl Cells for Maps {
    fn bucket(&mut self, key: &CounterKey) -> Result<Option<(Millis, u64)>, ReserveError> {
        Ok(self.calendar.get(key).map(|b| (b.start, b.used)))
    }

    fn update_bucket(
        &mut self,
        key: &CounterKey,
        f: impl FnOnce(Option<(Millis, u64)>) -> Option<Bucket>,
    ) -> Result<(), ReserveError> {
        match self.calendar.get_mut(key) {
            Some(b) => {
                if let Some(new) = f(Some((b.start, b.used))) {
                    *b = new;
                }
            }
            None => {
                if let Some(new) = f(None) {
                    self.calendar.insert(key.clone(), new);
                }
            }
        }
        Ok(())
    }

    fn newest_event(&mut self, key: &CounterKey) -> Result<Option<Millis>, ReserveError> {
        Ok(self
            .rolling
            .get(key)
            .and_then(|log| log.events.back())
            .map(|&(ts, _)| ts))
    }

    fn live_sum(&mut self, key: &CounterKey, first_live: Millis) -> Result<u64, ReserveError> {
        Ok(self.rolling.get_mut(key).map_or(0, |log| {
            log.expire(first_live);
            log.sum
        }))
    }

    fn live_events(
        &mut self,
        key: &CounterKey,
        first_live: Millis,
    ) -> Result<Vec<(Millis, u64)>, ReserveError> {
        Ok(self.rolling.get_mut(key).map_or_else(Vec::new, |log| {
            log.expire(first_live);
            log.events.iter().copied().collect()
        }))
    }

    fn push_event(
        &mut self,
        key: &CounterKey,
        ts: Millis,
        amount: u64,
        len: Millis,
    ) -> Result<(), ReserveError> {
        let log = match self.rolling.get_mut(key) {
            Some(log) => log,
            None => self.rolling.entry(key.clone()).or_default(),
        };
        debug_assert!(log.events.back().is_none_or(|&(last, _)| last <= ts));
        log.len = log.len.max(len);
        log.sum = log.sum.saturating_add(amount);
        log.events.push_back((ts, amount));
        Ok(())
    }

    fn remove_event(
        &mut self,
        key: &CounterKey,
        ts: Millis,
        amount: u64,
    ) -> Result<(), ReserveError> {
        if let Some(log) = self.rolling.get_mut(key) {
            if let Some(i) = log.events.iter().rposition(|&e| e == (ts, amount)) {
                log.events.remove(i);
                log.sum = log.sum.saturating_sub(amount);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::Scope;

    fn req(name: &str, window: Window) -> Reservation {
        Reservation {
            key: CounterKey::new(Scope::Grant, "g1", name, window, None),
            window,
            max: 5,
            amount: 1,
        }
    }

    #[test]
    fn dead_counters_are_swept() {
        let store = MemoryCounters::new();
        let t0 = 1_000_000_000;
        for i in 0..1_000 {
            let name = format!("c{i}");
            store
                .reserve(
                    &[
                        req(&name, Window::Minute),
                        req(&name, Window::Rolling(30_000)),
                    ],
                    t0 + i,
                )
                .unwrap();
        }
        assert_eq!(store.len(), 2_000);
        // Two minutes later every bucket and every rolling charge is dead; the next
        // reservation sweeps them.
        store
            .reserve(&[req("x", Window::Minute)], t0 + 120_000)
            .unwrap();
        assert_eq!(store.len(), 1);
        assert!(store.inner.lock_or_recover().calendar.capacity() < 100);
    }

    #[test]
    fn rolling_sum_tracks_events() {
        let store = MemoryCounters::new();
        let r = req("r", Window::Rolling(1_000));
        let t1 = store.reserve(std::slice::from_ref(&r), 0).unwrap();
        store.reserve(std::slice::from_ref(&r), 500).unwrap();
        store.refund(&t1, 600).unwrap();
        store.refund(&t1, 600).unwrap();
        let maps = store.inner.lock_or_recover();
        let log = &maps.rolling[&r.key];
        assert_eq!(log.sum, 1);
        assert_eq!(log.events, [(500, 1)]);
    }
}
