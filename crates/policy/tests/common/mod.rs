//! Test helpers shared by the policy crate's integration tests.
#![allow(dead_code)]

use portcullis_policy::counters::rolling_retry_after;
use portcullis_policy::sync::LockExt;
use portcullis_policy::{
    CounterKey, CounterStore, Held, Identity, Millis, Reservation, ReserveError, Ticket, Usage,
    Window,
};
use std::collections::HashMap;
use std::sync::Mutex;

/// A minimal calendar-and-rolling counter store for engine tests. The real backends live in
/// `portcullis-store` and are tested there against the same contract.
#[derive(Default)]
pub struct TestCounters {
    pub map: Mutex<HashMap<CounterKey, Vec<(Millis, u64)>>>,
    pub fail: bool,
}

impl TestCounters {
    fn used(events: &[(Millis, u64)], w: Window, now: Millis) -> (u64, Vec<(Millis, u64)>) {
        let live: Vec<_> = match (w.bucket(now), w.rolling()) {
            (Some((s, _)), _) => events.iter().copied().filter(|&(t, _)| t >= s).collect(),
            (None, Some(len)) => events
                .iter()
                .copied()
                .filter(|&(t, _)| t + len > now)
                .collect(),
            _ => unreachable!(),
        };
        (live.iter().map(|e| e.1).sum(), live)
    }
}

impl CounterStore for TestCounters {
    fn reserve(&self, reqs: &[Reservation], now: Millis) -> Result<Ticket, ReserveError> {
        if self.fail {
            return Err(ReserveError::Store("disk on fire".into()));
        }
        let mut m = self.map.lock_or_recover();
        for (i, r) in reqs.iter().enumerate() {
            let ev = m.get(&r.key).cloned().unwrap_or_default();
            let (used, live) = Self::used(&ev, r.window, now);
            if used + r.amount > r.max {
                let retry = match r.window.bucket(now) {
                    Some((_, end)) => (r.amount <= r.max).then_some(end - now),
                    None => rolling_retry_after(
                        &live,
                        r.window.rolling().unwrap(),
                        r.max,
                        r.amount,
                        now,
                    ),
                };
                return Err(ReserveError::Exhausted {
                    index: i,
                    retry_after_ms: retry,
                });
            }
        }
        let mut held = Vec::new();
        for r in reqs {
            m.entry(r.key.clone()).or_default().push((now, r.amount));
            held.push(Held {
                key: r.key.clone(),
                window: r.window,
                at: now,
                amount: r.amount,
            });
        }
        Ok(Ticket { held })
    }

    fn refund(&self, t: &Ticket, _now: Millis) -> Result<(), ReserveError> {
        let mut m = self.map.lock_or_recover();
        for h in &t.held {
            if let Some(ev) = m.get_mut(&h.key) {
                if let Some(p) = ev.iter().position(|&(ts, a)| ts == h.at && a == h.amount) {
                    ev.remove(p);
                }
            }
        }
        Ok(())
    }

    fn usage(&self, key: &CounterKey, w: Window, now: Millis) -> Result<Usage, ReserveError> {
        let m = self.map.lock_or_recover();
        let ev = m.get(key).cloned().unwrap_or_default();
        Ok(Usage {
            used: Self::used(&ev, w, now).0,
            resets_at: None,
        })
    }
}

pub fn alice() -> Identity<'static> {
    Identity {
        grant_id: "grt_alice",
        grant_label: "alice-laptop",
        session_id: "sess-1",
        client_name: Some("claude-code"),
        server: "odoo",
        principal: None,
    }
}

pub fn bob() -> Identity<'static> {
    Identity {
        grant_id: "grt_bob",
        grant_label: "ci-runner",
        session_id: "sess-2",
        client_name: None,
        server: "odoo",
        principal: None,
    }
}

/// 2026-11-21T12:00:00Z.
pub const NOON: Millis = 1_795_262_400_000;
