//! The counter port: what the engine asks of a counter store, and what it gets back.
//!
//! The engine turns the applicable `limits` of a call into [`Reservation`]s. A
//! [`CounterStore`] reserves all of them atomically — every counter is charged or none is —
//! in one call, so that a networked backend can do it in one round trip. Implementations live
//! in the `portcullis-store` crate (in-memory, SQLite, later Redis); this crate only defines
//! the contract, so the engine stays free of I/O.

use crate::window::{Millis, Scope, Window};
use std::fmt;

/// Identifies one counter: scope, the scope's subject (grant id, session id, server name),
/// counter name, window and the optional `per` value, encoded unambiguously as a string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey(String);

impl CounterKey {
    /// Builds the key. `per` is the canonical JSON of the `per` argument's value.
    pub fn new(
        scope: Scope,
        subject: &str,
        counter: &str,
        window: Window,
        per: Option<&str>,
    ) -> Self {
        KeyTemplate::new(scope, counter, window).key(subject, per)
    }

    /// Rebuilds a key from its stored string form (as returned by [`CounterKey::as_str`]).
    pub fn from_stored(s: String) -> Self {
        CounterKey(s)
    }

    /// The key's string form, suitable as a database or Redis key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parts of a [`CounterKey`] that a policy fixes (scope, counter name, window),
/// pre-encoded once at compile time so that building a key per call is one allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    head: String,
    tail: String,
}

impl KeyTemplate {
    /// Pre-encodes scope, counter and window.
    pub fn new(scope: Scope, counter: &str, window: Window) -> Self {
        let mut head = String::from("[");
        push_json_str(&mut head, scope.as_str());
        head.push(',');
        let mut tail = String::from(",");
        push_json_str(&mut tail, counter);
        tail.push(',');
        push_json_str(&mut tail, &window.to_string());
        KeyTemplate { head, tail }
    }

    /// The key for one subject (grant id, session id, server name) and `per` value.
    pub fn key(&self, subject: &str, per: Option<&str>) -> CounterKey {
        let mut s = String::with_capacity(
            self.head.len() + self.tail.len() + subject.len() + per.map_or(0, |p| p.len() + 3) + 3,
        );
        s.push_str(&self.head);
        push_json_str(&mut s, subject);
        s.push_str(&self.tail);
        if let Some(per) = per {
            s.push(',');
            push_json_str(&mut s, per);
        }
        s.push(']');
        CounterKey(s)
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).expect("strings always serialize"));
    }
}

/// One counter to charge for a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Which counter.
    pub key: CounterKey,
    /// Its window.
    pub window: Window,
    /// Most units allowed per window (calendar) or per any interval of the window's length
    /// (rolling).
    pub max: u64,
    /// Units this call consumes (`increment`, or the value at `increment_from`, rounded up).
    pub amount: u64,
}

/// What a successful reservation charged, so that it can be refunded exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ticket {
    /// One entry per charged counter, in reservation order.
    pub held: Vec<Held>,
}

/// One charged counter inside a [`Ticket`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Which counter.
    pub key: CounterKey,
    /// Its window.
    pub window: Window,
    /// Calendar windows: the start of the bucket charged. Rolling windows: the instant of the
    /// charge (the event's timestamp).
    pub at: Millis,
    /// Units charged.
    pub amount: u64,
}

/// Why a reservation did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveError {
    /// The counter at `index` (into the reservation slice) has no room; nothing was charged.
    Exhausted {
        /// Index of the first exhausted reservation.
        index: usize,
        /// When enough frees up for this call, in ms from `now`; `None` if never (the call's
        /// amount alone exceeds `max`).
        retry_after_ms: Option<Millis>,
    },
    /// The store failed; nothing may be assumed charged. Callers fail closed.
    Store(String),
}

impl fmt::Display for ReserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReserveError::Exhausted { index, .. } => write!(f, "counter #{index} exhausted"),
            ReserveError::Store(e) => write!(f, "counter store error: {e}"),
        }
    }
}

impl std::error::Error for ReserveError {}

/// Current state of one counter, for display (admin API, CLI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Units used in the current window (calendar) or in the last window length (rolling).
    pub used: u64,
    /// When the current calendar bucket ends, or when the oldest rolling charge expires.
    pub resets_at: Option<Millis>,
}

/// A counter store: atomic multi-counter reservation with refund.
///
/// Contract, which every backend's tests check:
/// - `reserve` charges every reservation or none; with concurrent callers, a counter never
///   exceeds `max` in its window (calendar) or in any interval of the window's length
///   (rolling).
/// - `refund` gives back exactly what a ticket charged, never driving a counter below zero;
///   refunding into a calendar bucket that has already ended does nothing.
/// - Stores never read the clock; `now` is passed in.
pub trait CounterStore: Send + Sync {
    /// Charges all `reqs` at `now`, or none of them.
    fn reserve(&self, reqs: &[Reservation], now: Millis) -> Result<Ticket, ReserveError>;
    /// Gives back what `ticket` charged.
    fn refund(&self, ticket: &Ticket, now: Millis) -> Result<(), ReserveError>;
    /// Reads one counter without charging it.
    fn usage(&self, key: &CounterKey, window: Window, now: Millis) -> Result<Usage, ReserveError>;

    /// Whether callers that can wait without holding a thread (an async request path) should
    /// reserve through [`reserve_later`](Self::reserve_later): a store that gathers the
    /// reservations of concurrent callers into one write says so. False by default.
    fn defers(&self) -> bool {
        false
    }

    /// Charges like [`reserve`](Self::reserve) and hands the result, with `reqs` back, to
    /// `reply`: at once, on this thread (the default), or later, from another thread,
    /// together with other callers' reservations. `reply` is called exactly once.
    fn reserve_later(&self, reqs: Vec<Reservation>, now: Millis, reply: Reply) {
        let r = self.reserve(&reqs, now);
        reply(reqs, r)
    }

    /// Whether reservations handed over together ([`reserve_together`](Self::reserve_together))
    /// cost less than the same made one by one (SQLite: one transaction for all), so that a
    /// caller that can gather the reservations arriving close together should. False by
    /// default.
    fn combines(&self) -> bool {
        false
    }

    /// Makes every reservation of `jobs`, each all or nothing as [`reserve`](Self::reserve),
    /// and calls each job's `reply` exactly once: by default one by one through
    /// [`reserve_later`](Self::reserve_later); a store that [`combines`](Self::combines) makes
    /// them with one write.
    fn reserve_together(&self, jobs: Vec<Deferred>) {
        for j in jobs {
            self.reserve_later(j.reqs, j.now, j.reply);
        }
    }
}

/// One reservation handed over to be made later or with others
/// ([`CounterStore::reserve_together`]): what to charge, when, and where its result goes.
pub struct Deferred {
    /// The counters to charge, all or nothing.
    pub reqs: Vec<Reservation>,
    /// The instant of the call.
    pub now: Millis,
    /// Called exactly once with `reqs` and the result.
    pub reply: Reply,
}

impl fmt::Debug for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferred")
            .field("reqs", &self.reqs)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Where [`CounterStore::reserve_later`] hands its result (and the reservations it was given).
pub type Reply = Box<dyn FnOnce(Vec<Reservation>, Result<Ticket, ReserveError>) + Send>;

/// Shared arithmetic for backends: given the charges of a rolling window that are still live
/// (timestamp, amount; oldest first), when will `amount` more fit under `max`?
/// Returns the wait in ms from `now`, or `None` if `amount > max`.
pub fn rolling_retry_after(
    live: &[(Millis, u64)],
    len: Millis,
    max: u64,
    amount: u64,
    now: Millis,
) -> Option<Millis> {
    if amount > max {
        return None;
    }
    let mut used: u64 = live.iter().map(|&(_, a)| a).sum();
    for &(ts, a) in live {
        if used + amount <= max {
            break;
        }
        used -= a;
        if used + amount <= max {
            return Some((ts + len).saturating_sub(now).max(1));
        }
    }
    Some(if used + amount <= max { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unambiguous() {
        let a = CounterKey::new(Scope::Grant, "g,1", "c", Window::Minute, None);
        let b = CounterKey::new(Scope::Grant, "g", "1,c", Window::Minute, None);
        assert_ne!(a, b);
        let c = CounterKey::new(Scope::Grant, "g", "c", Window::Minute, Some("1"));
        let d = CounterKey::new(Scope::Grant, "g", "c", Window::Minute, Some("\"1\""));
        assert_ne!(c, d);
        assert_eq!(c.as_str(), r#"["grant","g","c","minute","1"]"#);
        assert_ne!(
            CounterKey::new(Scope::Grant, "g", "c", Window::Minute, None),
            CounterKey::new(Scope::Session, "g", "c", Window::Minute, None)
        );
    }

    #[test]
    fn fast_escaping_matches_serde_json() {
        for s in [
            "plain",
            "with \"quote\"",
            "back\\slash",
            "tab\tnew\nline",
            "ünïcödé ✓",
            "\u{7f}del",
            "",
        ] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn rolling_retry() {
        // max 3 in 60s; charges at 0, 10s, 20s; now 30s → next fits when the 0s charge expires.
        let live = [(0, 1), (10_000, 1), (20_000, 1)];
        assert_eq!(
            rolling_retry_after(&live, 60_000, 3, 1, 30_000),
            Some(30_000)
        );
        // amount 2 needs the first two to expire.
        assert_eq!(
            rolling_retry_after(&live, 60_000, 3, 2, 30_000),
            Some(40_000)
        );
        assert_eq!(rolling_retry_after(&live, 60_000, 3, 4, 30_000), None);
    }
}
