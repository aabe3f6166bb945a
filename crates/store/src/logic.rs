//! The decision every backend shares: does a reservation fit, what is the retry, what gets
//! written. Backends only provide storage primitives ([`Cells`]), read and written inside
//! whatever makes them atomic (a mutex, a SQLite transaction); the rules live here once.
//!
//! Two rules beyond the port's contract keep counters exact when clocks disagree (two
//! processes sharing a SQLite file, or a wall clock stepping back):
//! - Calendar: if the stored bucket is *later* than the bucket of `now`, the call counts in the
//!   stored bucket rather than reopening one that has already ended for someone else.
//! - Rolling: a charge is stamped `max(now, newest charge)`, so a counter's log only moves
//!   forward in time. Checking the interval that ends at the new charge is then enough for
//!   "never more than `max` in any interval of the window's length".

use portcullis_policy::counters::rolling_retry_after;
use portcullis_policy::{
    CounterKey, Held, Millis, Reservation, ReserveError, Ticket, Usage, Window,
};

/// Storage primitives of one backend, used while the backend holds its lock or transaction.
pub(crate) trait Cells {
    /// A calendar counter as stored: (bucket start, used), whatever bucket that is.
    fn bucket(&mut self, key: &CounterKey) -> Result<Option<(Millis, u64)>, ReserveError>;
    /// Replaces a calendar counter by what `f` makes of the stored one (`None`: leave it
    /// as it is). The new bucket's `end` lets the backend sweep it once it is over.
    fn update_bucket(
        &mut self,
        key: &CounterKey,
        f: impl FnOnce(Option<(Millis, u64)>) -> Option<Bucket>,
    ) -> Result<(), ReserveError>;
    /// Timestamp of the newest charge of a rolling counter, if any is stored.
    fn newest_event(&mut self, key: &CounterKey) -> Result<Option<Millis>, ReserveError>;
    /// Sum of the charges stamped `first_live` or later. Older charges are dead for good
    /// (a log only moves forward), so the backend may drop them.
    fn live_sum(&mut self, key: &CounterKey, first_live: Millis) -> Result<u64, ReserveError>;
    /// The charges stamped `first_live` or later, oldest first.
    fn live_events(
        &mut self,
        key: &CounterKey,
        first_live: Millis,
    ) -> Result<Vec<(Millis, u64)>, ReserveError>;
    /// Appends a charge; `ts` is never older than the newest stored charge of `key`.
    fn push_event(
        &mut self,
        key: &CounterKey,
        ts: Millis,
        amount: u64,
        len: Millis,
    ) -> Result<(), ReserveError>;
    /// Removes one charge stamped `ts` of exactly `amount`, if there is one.
    fn remove_event(
        &mut self,
        key: &CounterKey,
        ts: Millis,
        amount: u64,
    ) -> Result<(), ReserveError>;
}

/// A calendar counter in the bucket a call counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// Bucket start (UTC ms).
    pub start: Millis,
    /// Bucket end, exclusive.
    pub end: Millis,
    /// Units used in it.
    pub used: u64,
}

/// The bucket `[start, end)` of a calendar window that contains `at`.
pub(crate) fn calendar_bounds(window: Window, at: Millis) -> (Millis, Millis) {
    window
        .bucket(at)
        .expect("only rolling windows lack a calendar bucket")
}

/// The bucket a call at `now` counts in, given what is stored: the stored one if it is the
/// current one (or a later one, see the module doc), else a fresh current one.
pub(crate) fn calendar_state(window: Window, stored: Option<(Millis, u64)>, now: Millis) -> Bucket {
    let (start, end) = calendar_bounds(window, now);
    match stored {
        Some((s, used)) if s == start => Bucket { start, end, used },
        Some((s, used)) if s > start => {
            let (start, end) = calendar_bounds(window, s);
            Bucket { start, end, used }
        }
        _ => Bucket {
            start,
            end,
            used: 0,
        },
    }
}

/// The stamp of a new rolling charge: `now`, or the newest charge if that is later.
pub(crate) fn rolling_instant(newest: Option<Millis>, now: Millis) -> Millis {
    newest.map_or(now, |n| n.max(now))
}

/// The oldest stamp still live at `t` in a window of `len` ms: a charge at `ts` is live while
/// `ts + len > t`, i.e. `ts >= t + 1 - len`.
pub(crate) fn first_live(t: Millis, len: Millis) -> Millis {
    t.saturating_add(1).saturating_sub(len)
}

/// Whether `need` more units fit next to `used` under `max`.
pub(crate) fn fits(used: u64, need: u64, max: u64) -> bool {
    used.checked_add(need).is_some_and(|total| total <= max)
}

/// Retry for an exhausted calendar counter: the bucket's end, unless `need` can never fit.
pub(crate) fn calendar_retry_after(
    bucket: &Bucket,
    need: u64,
    max: u64,
    now: Millis,
) -> Option<Millis> {
    (need <= max).then(|| bucket.end.saturating_sub(now))
}

/// Units reservation `index` asks of its counter, including what earlier reservations of the
/// same call ask of the same key (a key named twice must fit its sum).
pub(crate) fn need_of(reqs: &[Reservation], index: usize) -> u64 {
    let r = &reqs[index];
    reqs[..index]
        .iter()
        .filter(|p| p.key == r.key)
        .fold(r.amount, |sum, p| sum.saturating_add(p.amount))
}

/// Charges every reservation or none. The caller makes `cells` atomic and, on `Err`, discards
/// whatever it wrote (nothing is written before every reservation has been checked).
pub(crate) fn reserve<C: Cells>(
    cells: &mut C,
    reqs: &[Reservation],
    now: Millis,
) -> Result<Ticket, ReserveError> {
    let mut held = Vec::with_capacity(reqs.len());
    // Check everything first.
    for (index, r) in reqs.iter().enumerate() {
        let need = need_of(reqs, index);
        let at = match r.window {
            Window::Rolling(len) => {
                let t = rolling_instant(cells.newest_event(&r.key)?, now);
                let first = first_live(t, len);
                if !fits(cells.live_sum(&r.key, first)?, need, r.max) {
                    let live = cells.live_events(&r.key, first)?;
                    return Err(ReserveError::Exhausted {
                        index,
                        retry_after_ms: rolling_retry_after(&live, len, r.max, need, now),
                    });
                }
                t
            }
            window => {
                let b = calendar_state(window, cells.bucket(&r.key)?, now);
                if !fits(b.used, need, r.max) {
                    return Err(ReserveError::Exhausted {
                        index,
                        retry_after_ms: calendar_retry_after(&b, need, r.max, now),
                    });
                }
                b.start
            }
        };
        held.push(Held {
            key: r.key.clone(),
            window: r.window,
            at,
            amount: r.amount,
        });
    }
    // Then charge. A key named twice is read back after its first charge, so its sum lands.
    for h in &held {
        match h.window {
            Window::Rolling(len) => cells.push_event(&h.key, h.at, h.amount, len)?,
            window => cells.update_bucket(&h.key, |stored| {
                let b = calendar_state(window, stored, now);
                debug_assert_eq!(b.start, h.at);
                let used = b.used.saturating_add(h.amount);
                Some(Bucket { used, ..b })
            })?,
        }
    }
    Ok(Ticket { held })
}

/// Gives back what `ticket` charged: calendar units only into the very bucket charged (a
/// bucket that has been replaced is left alone), never below zero; rolling charges by
/// removing one matching event.
pub(crate) fn refund<C: Cells>(cells: &mut C, ticket: &Ticket) -> Result<(), ReserveError> {
    for h in &ticket.held {
        match h.window {
            Window::Rolling(_) => cells.remove_event(&h.key, h.at, h.amount)?,
            window => cells.update_bucket(&h.key, |stored| match stored {
                Some((start, used)) if start == h.at && used > 0 => {
                    let (start, end) = calendar_bounds(window, start);
                    let used = used.saturating_sub(h.amount);
                    Some(Bucket { start, end, used })
                }
                _ => None,
            })?,
        }
    }
    Ok(())
}

/// Reads one counter as a call at `now` would see it.
pub(crate) fn usage<C: Cells>(
    cells: &mut C,
    key: &CounterKey,
    window: Window,
    now: Millis,
) -> Result<Usage, ReserveError> {
    Ok(match window {
        Window::Rolling(len) => {
            let t = rolling_instant(cells.newest_event(key)?, now);
            let live = cells.live_events(key, first_live(t, len))?;
            Usage {
                used: live.iter().fold(0, |s: u64, &(_, a)| s.saturating_add(a)),
                resets_at: live.first().map(|&(ts, _)| ts.saturating_add(len)),
            }
        }
        window => {
            let b = calendar_state(window, cells.bucket(key)?, now);
            Usage {
                used: b.used,
                resets_at: Some(b.end),
            }
        }
    })
}

/// How often (in the callers' time) a backend drops dead counters.
pub(crate) const SWEEP_EVERY_MS: Millis = 60_000;

/// Tells a backend when its next sweep of dead counters is due.
#[derive(Debug, Default)]
pub(crate) struct SweepClock {
    next: Millis,
}

impl SweepClock {
    /// True at most once per [`SWEEP_EVERY_MS`] of `now`.
    pub(crate) fn due(&mut self, now: Millis) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now.saturating_add(SWEEP_EVERY_MS);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_live_handles_early_instants() {
        // Nothing can be dead before a whole window has passed since the epoch.
        assert_eq!(first_live(59_999, 60_000), 0);
        assert_eq!(first_live(60_000, 60_000), 1);
        assert_eq!(first_live(u64::MAX, 10), u64::MAX - 10);
    }

    #[test]
    fn later_stored_bucket_wins() {
        let day = 86_400_000;
        // Stored: the next day, already 5 used; a call from a clock still in the previous day.
        let b = calendar_state(Window::Day, Some((day, 5)), day - 1);
        assert_eq!(
            b,
            Bucket {
                start: day,
                end: 2 * day,
                used: 5
            }
        );
        // Stored: an old day → fresh.
        let b = calendar_state(Window::Day, Some((0, 5)), day + 1);
        assert_eq!(
            b,
            Bucket {
                start: day,
                end: 2 * day,
                used: 0
            }
        );
    }

    #[test]
    fn fits_never_overflows() {
        assert!(fits(0, u64::MAX, u64::MAX));
        assert!(!fits(1, u64::MAX, u64::MAX));
        assert!(!fits(3, 1, 3));
        assert!(fits(2, 1, 3));
    }

    #[test]
    fn sweep_clock() {
        let mut c = SweepClock::default();
        assert!(c.due(5));
        assert!(!c.due(5 + SWEEP_EVERY_MS - 1));
        assert!(c.due(5 + SWEEP_EVERY_MS));
    }
}
