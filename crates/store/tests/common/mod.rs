//! Helpers shared by the integration tests.
#![allow(dead_code)]

use portcullis_policy::{
    CounterKey, CounterStore, Millis, Reservation, ReserveError, Scope, Ticket, Window,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;

/// 2026-11-22T00:00:00.000Z: a minute, hour, day (and second) boundary.
pub const MIDNIGHT: Millis = 1_795_305_600_000;
/// 2026-11-23T00:00:00.000Z, a Monday: a week boundary.
pub const MONDAY: Millis = 1_795_392_000_000;
/// 2026-12-01T00:00:00.000Z: a month boundary.
pub const DEC_1: Millis = 1_796_083_200_000;

pub const SEC: Millis = 1_000;
pub const MIN: Millis = 60 * SEC;
pub const HOUR: Millis = 60 * MIN;
pub const DAY: Millis = 24 * HOUR;

/// The key of counter `name` in `window`, for grant `g1`.
pub fn key(name: &str, window: Window) -> CounterKey {
    CounterKey::new(Scope::Grant, "g1", name, window, None)
}

/// A reservation of `amount` units of counter `name`, at most `max` per window.
pub fn req(name: &str, window: Window, max: u64, amount: u64) -> Reservation {
    Reservation {
        key: key(name, window),
        window,
        max,
        amount,
    }
}

/// Reserves, expecting success.
pub fn ok(store: &dyn CounterStore, reqs: &[Reservation], now: Millis) -> Ticket {
    store
        .reserve(reqs, now)
        .unwrap_or_else(|e| panic!("reserve at {now} failed: {e:?}"))
}

/// Reserves, expecting `Exhausted`; returns (index, retry_after_ms).
pub fn denied(
    store: &dyn CounterStore,
    reqs: &[Reservation],
    now: Millis,
) -> (usize, Option<Millis>) {
    match store.reserve(reqs, now) {
        Err(ReserveError::Exhausted {
            index,
            retry_after_ms,
        }) => (index, retry_after_ms),
        other => panic!("expected Exhausted at {now}, got {other:?}"),
    }
}

/// Units used by `r`'s counter at `now`.
pub fn used(store: &dyn CounterStore, r: &Reservation, now: Millis) -> u64 {
    store.usage(&r.key, r.window, now).unwrap().used
}

/// Starts `threads` threads (spread round-robin over `stores`), releases them together, and
/// has thread `i` reserve `mix[i % mix.len()]` at `now`. Returns how many of each mix entry
/// were granted. Any error other than `Exhausted` fails the test.
pub fn contend(
    stores: &[&dyn CounterStore],
    threads: usize,
    mix: &[Vec<Reservation>],
    now: Millis,
) -> Vec<usize> {
    contend_how(stores, threads, mix, now, false)
}

/// [`contend`] through [`CounterStore::reserve_later`]: each thread waits for its reply
/// (which must come once, within 30 s, with the reservations it was given back).
pub fn contend_deferred(
    stores: &[&dyn CounterStore],
    threads: usize,
    mix: &[Vec<Reservation>],
    now: Millis,
) -> Vec<usize> {
    contend_how(stores, threads, mix, now, true)
}

fn contend_how(
    stores: &[&dyn CounterStore],
    threads: usize,
    mix: &[Vec<Reservation>],
    now: Millis,
    deferred: bool,
) -> Vec<usize> {
    let barrier = Barrier::new(threads);
    let granted: Vec<AtomicUsize> = mix.iter().map(|_| AtomicUsize::new(0)).collect();
    thread::scope(|s| {
        for i in 0..threads {
            let (store, barrier, granted) = (stores[i % stores.len()], &barrier, &granted);
            let kind = i % mix.len();
            let reqs = &mix[kind];
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || {
                    barrier.wait();
                    let result = if deferred {
                        let (tx, rx) = std::sync::mpsc::channel();
                        let reply = Box::new(move |back, r| tx.send((back, r)).unwrap());
                        store.reserve_later(reqs.clone(), now, reply);
                        let (back, r) = rx
                            .recv_timeout(std::time::Duration::from_secs(30))
                            .expect("reserve_later replied");
                        assert_eq!(&back, reqs, "the reservations come back with the reply");
                        assert!(rx.try_recv().is_err(), "one reply per reservation");
                        r
                    } else {
                        store.reserve(reqs, now)
                    };
                    match result {
                        Ok(_) => {
                            granted[kind].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(ReserveError::Exhausted { .. }) => {}
                        Err(e) => panic!("store failed under contention: {e}"),
                    }
                })
                .expect("spawn");
        }
    });
    granted.into_iter().map(AtomicUsize::into_inner).collect()
}

/// A database file in a scratch directory of its own, removed (with its WAL and lock
/// files) on drop.
pub struct TempDb {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TempDb {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-store-")
            .tempdir()
            .unwrap();
        let path = dir.path().join(format!("{name}.db"));
        TempDb { _dir: dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A deterministic pseudo-random sequence (Knuth's MMIX LCG).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed)
    }

    /// Next value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}
