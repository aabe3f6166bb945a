//! The `CounterStore` contract, run against every backend: `MemoryCounters`, `SqliteCounters`
//! in memory, `SqliteCounters` on a file, `WriteBehindCounters` on a file, and
//! `RedisCounters` on a redis-server of its own.

mod common;

use common::*;
use portcullis_bench::redis_server::RedisServer;
use portcullis_policy::{CounterStore, Millis, Reservation, Ticket, Usage, Window};
use portcullis_store::{MemoryCounters, Redis, RedisCounters, SqliteCounters, WriteBehindCounters};

/// A store under test, with whatever must outlive it (a temp file, a redis-server).
struct Fixture {
    store: Box<dyn CounterStore>,
    // Dropped after `store`, so the connection is closed before the file is deleted.
    _db: Option<TempDb>,
    _redis: Option<RedisServer>,
}

impl Fixture {
    fn store(&self) -> &dyn CounterStore {
        &*self.store
    }
}

fn memory() -> Option<Fixture> {
    Some(Fixture {
        store: Box::new(MemoryCounters::new()),
        _db: None,
        _redis: None,
    })
}

fn sqlite_in_memory() -> Option<Fixture> {
    Some(Fixture {
        store: Box::new(SqliteCounters::open_in_memory().unwrap()),
        _db: None,
        _redis: None,
    })
}

fn sqlite_file() -> Option<Fixture> {
    let db = TempDb::new("contract");
    Some(Fixture {
        store: Box::new(SqliteCounters::open(db.path()).unwrap()),
        _db: Some(db),
        _redis: None,
    })
}

fn write_behind() -> Option<Fixture> {
    let db = TempDb::new("contract-wb");
    Some(Fixture {
        store: Box::new(WriteBehindCounters::open(db.path(), MIDNIGHT).unwrap()),
        _db: Some(db),
        _redis: None,
    })
}

/// Counters on a redis-server of the test's own; `None` (skipped) when none is installed
/// and the test command does not require it.
fn redis() -> Option<Fixture> {
    let server = RedisServer::start(&[])?;
    let store = redis_counters(&server, "contract:");
    Some(Fixture {
        store: Box::new(store),
        _db: None,
        _redis: Some(server),
    })
}

fn redis_counters(server: &RedisServer, prefix: &str) -> RedisCounters {
    RedisCounters::new(Redis::new(&server.url(), prefix).unwrap()).unwrap()
}

/// [`redis_counters`] with an hourly counter of `max`, charged once at [`MIDNIGHT`].
fn charged_once(server: &RedisServer, prefix: &str, max: u64) -> (RedisCounters, Reservation) {
    let store = redis_counters(server, prefix);
    let r = req("calls", Window::Hour, max, 1);
    ok(&store, std::slice::from_ref(&r), MIDNIGHT);
    (store, r)
}

/// One `#[test]` per suite function, for one backend.
macro_rules! contract {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[test]
                fn $test() {
                    let Some(fixture) = super::$backend() else { return };
                    super::suite::$test(fixture.store());
                }
            )*
        }
    };
}

macro_rules! contract_for_all_backends {
    ($($test:ident),* $(,)?) => {
        contract!(memory: $($test),*);
        contract!(sqlite_in_memory: $($test),*);
        contract!(sqlite_file: $($test),*);
        contract!(write_behind: $($test),*);
        contract!(redis: $($test),*);
    };
}

contract_for_all_backends!(
    exactly_max_granted_under_contention,
    all_or_nothing_under_contention,
    deferred_reservations_are_exact_under_contention,
    all_or_nothing,
    first_exhausted_index_is_reported,
    calendar_windows_reset_at_utc_boundaries,
    calendar_retry_counts_down_to_the_boundary,
    rolling_window_is_a_sliding_log,
    rolling_window_from_the_epoch,
    rolling_window_never_exceeds_max_in_any_interval,
    increments_larger_than_one,
    amount_above_max_never_fits,
    refund_restores_room,
    double_refund_never_underflows,
    refund_after_bucket_ended_leaves_new_bucket_alone,
    rolling_refund_removes_one_charge,
    duplicate_key_in_one_slice,
    keys_are_independent,
    lagging_clock_counts_in_the_newer_bucket,
    empty_reservation,
);

/// What only a shared store can show: several replicas (each its own `RedisCounters`, with
/// its own connections) charge one set of counters.
mod shared {
    use super::*;
    use portcullis_policy::ReserveError;
    use std::sync::mpsc::{self, Sender};
    use std::time::{Duration, Instant};

    #[test]
    fn three_replicas_grant_exactly_max() {
        let Some(server) = RedisServer::start(&[]) else {
            return;
        };
        let stores: Vec<RedisCounters> = (0..3).map(|_| redis_counters(&server, "gw:")).collect();
        let refs: Vec<&dyn CounterStore> = stores.iter().map(|s| s as &dyn CounterStore).collect();
        let a = req("a", Window::Minute, 10, 1);
        let r = req("r", Window::Rolling(MIN), 7, 1);
        let g = contend(
            &refs,
            300,
            &[vec![a.clone(), r.clone()], vec![a.clone()]],
            MIDNIGHT,
        );
        assert_eq!(used(&stores[1], &a, MIDNIGHT), 10);
        assert_eq!(g[0] + g[1], 10, "{g:?}");
        assert_eq!(used(&stores[2], &r, MIDNIGHT), g[0] as u64);
    }

    #[test]
    fn prefixes_keep_gateways_apart() {
        let Some(server) = RedisServer::start(&[]) else {
            return;
        };
        let (one, two) = (
            redis_counters(&server, "one:"),
            redis_counters(&server, "two:"),
        );
        let r = req("calls", Window::Hour, 1, 1);
        ok(&one, std::slice::from_ref(&r), MIDNIGHT);
        denied(&one, std::slice::from_ref(&r), MIDNIGHT);
        ok(&two, std::slice::from_ref(&r), MIDNIGHT);
    }

    #[test]
    fn a_password_from_the_url_is_used() {
        let Some(server) = RedisServer::start(&["--requirepass", "s3cret"]) else {
            return;
        };
        let r = req("calls", Window::Hour, 5, 1);
        let without = redis_counters(&server, "p:");
        match without.reserve(std::slice::from_ref(&r), MIDNIGHT) {
            Err(ReserveError::Store(e)) => {
                assert!(e.contains("NOAUTH") || e.contains("auth"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let url = server.url().replace("redis://", "redis://default:s3cret@");
        let with = RedisCounters::new(Redis::new(&url, "p:").unwrap()).unwrap();
        ok(&with, std::slice::from_ref(&r), MIDNIGHT);
    }

    #[test]
    fn redis_down_is_a_store_error_and_recovery_is_automatic() {
        let Some(mut server) = RedisServer::start(&[]) else {
            return;
        };
        let (store, r) = charged_once(&server, "down:", 3);
        let one = std::slice::from_ref(&r);
        server.kill();
        for _ in 0..3 {
            match store.reserve(one, MIDNIGHT) {
                Err(ReserveError::Store(e)) => assert!(e.contains("redis at"), "{e}"),
                other => panic!("expected a store error, got {other:?}"),
            }
            assert!(store.usage(&r.key, r.window, MIDNIGHT).is_err());
        }
        // Back (empty: nothing was persisted), the same store reconnects by itself, and the
        // failed attempts charged nothing.
        server.restart();
        ok(&store, one, MIDNIGHT);
        assert_eq!(used(&store, &r, MIDNIGHT), 1);
    }

    /// `reserve_later` of `r` at [`MIDNIGHT`], its result sent to `tx`.
    fn later(store: &RedisCounters, r: &Reservation, tx: &Sender<Result<Ticket, ReserveError>>) {
        let tx = tx.clone();
        let reply = Box::new(move |_, res| tx.send(res).unwrap());
        store.reserve_later(vec![r.clone()], MIDNIGHT, reply);
    }

    /// A Redis that has lost the reservation script (restarted without its data, `SCRIPT
    /// FLUSH`) refuses it with `NOSCRIPT`, which did not run: it is loaded again and each
    /// reservation is charged exactly once. (The pipelined path's own case is a unit test in
    /// `redis/counters.rs`, where the batch can be made whole.)
    #[test]
    fn reservations_survive_a_flushed_script_cache() {
        let Some(server) = RedisServer::start(&[]) else {
            return;
        };
        let (store, r) = charged_once(&server, "flushed:", 1_000);
        server.flush_scripts();
        let (tx, rx) = mpsc::channel();
        for i in 0..5 {
            later(&store, &r, &tx);
            rx.recv_timeout(Duration::from_secs(10))
                .unwrap()
                .unwrap_or_else(|e| panic!("reservation {i}: {e}"));
        }
        assert_eq!(used(&store, &r, MIDNIGHT), 6);
    }

    /// While one caller's reservation (`reserve_later`, alone: made on its own thread) waits
    /// for a Redis that hangs, the others' do not wait on their threads: fifty made meanwhile
    /// return at once, queued for the pipelining thread; all fifty-one are refused (closed)
    /// within about one timeout, each answered once; then Redis is back and reservations pass.
    #[test]
    fn while_one_reservation_waits_for_a_hung_redis_the_others_are_queued() {
        use portcullis_store::redis::{COOL_OFF, TIMEOUT};
        let Some(server) = RedisServer::start(&[]) else {
            return;
        };
        let (store, r) = charged_once(&server, "hung-later:", 1_000);
        server.pause();
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| later(&store, &r, &tx));
            // The lone reservation is on its way, waiting for Redis on that thread.
            std::thread::sleep(TIMEOUT / 5);
            let queued = Instant::now();
            for _ in 0..50 {
                later(&store, &r, &tx);
            }
            assert!(
                queued.elapsed() < TIMEOUT / 4,
                "making fifty reservations took {:?}: the callers waited for Redis",
                queued.elapsed()
            );
        });
        for i in 0..51 {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Err(ReserveError::Store(e))) => {
                    assert!(e.contains("redis at"), "reservation {i}: {e}")
                }
                other => panic!("reservation {i}: expected a store error, got {other:?}"),
            }
        }
        assert!(
            started.elapsed() < TIMEOUT * 3,
            "fifty-one reservations took {:?} to be refused: more than a timeout each batch",
            started.elapsed()
        );
        assert!(rx.try_recv().is_err(), "one answer per reservation");
        server.resume();
        std::thread::sleep(COOL_OFF);
        later(&store, &r, &tx);
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("Redis is back: the reservation passes");
    }

    /// A Redis that hangs (stopped, not gone: connects succeed, nothing is answered) costs
    /// one timeout, not one per call: for [`COOL_OFF`] after it, calls fail at once, without
    /// waiting; then the first call asks again, and once Redis is back, succeeds.
    #[test]
    fn a_hung_redis_costs_one_timeout_then_calls_fail_at_once_until_it_is_asked_again() {
        use portcullis_store::redis::{COOL_OFF, TIMEOUT};
        let Some(server) = RedisServer::start(&[]) else {
            return;
        };
        let (store, r) = charged_once(&server, "hung:", 100);
        let one = std::slice::from_ref(&r);
        server.pause();
        let store_error = |what: &str| match store.reserve(one, MIDNIGHT) {
            Err(ReserveError::Store(e)) => e,
            other => panic!("{what}: expected a store error, got {other:?}"),
        };
        let started = Instant::now();
        let first = store_error("the first call");
        assert!(
            started.elapsed() >= TIMEOUT,
            "the first call waited for its timeout: {first}"
        );
        assert!(
            first.contains("no answer within 500 ms") && !first.contains("not asked"),
            "{first}"
        );
        // The calls right after it are not sent: each fails at once, saying why.
        for i in 0..20 {
            let e = store_error("a call in the cool-off");
            assert!(
                e.contains("not asked") && e.contains("timed out"),
                "call {i}: {e}"
            );
        }
        assert!(
            started.elapsed() < TIMEOUT + COOL_OFF,
            "20 calls in the cool-off took {:?}: they waited",
            started.elapsed()
        );
        // Redis back: after the cool-off the next call asks it again and succeeds. The 20
        // calls refused in the cool-off charged nothing; the one that timed out may have: its
        // script waited in the socket and ran when Redis woke (an unknown outcome, which is why
        // a failed call is never retried).
        server.resume();
        std::thread::sleep(COOL_OFF);
        ok(&store, one, MIDNIGHT);
        let n = used(&store, &r, MIDNIGHT);
        assert!((2..=3).contains(&n), "{n} charged");
    }

    #[test]
    fn keys_expire_with_their_window() {
        let Some(server) = RedisServer::start(&[]) else {
            return;
        };
        let store = redis_counters(&server, "ttl:");
        // Caller time and Redis time differ (the contract tests run in 2026-11); the TTL is
        // the window's remaining length in caller time plus the grace.
        ok(&store, &[req("s", Window::Second, 5, 1)], MIDNIGHT - 1);
        ok(&store, &[req("r", Window::Rolling(DAY), 5, 1)], MIDNIGHT);
        let ttl = |k: &str| -> i64 {
            let c = ::redis::Client::open(server.url()).unwrap();
            let mut con = c.get_connection().unwrap();
            ::redis::cmd("PTTL").arg(k).query(&mut con).unwrap()
        };
        let second = ttl(&format!("ttl:c:{}", key("s", Window::Second)));
        assert!((59_000..=60_001).contains(&second), "{second}");
        let rolling = ttl(&format!("ttl:r:{}", key("r", Window::Rolling(DAY))));
        assert!(
            (DAY as i64..=(DAY + MIN) as i64).contains(&rolling),
            "{rolling}"
        );
    }
}

mod suite {
    use super::*;

    pub fn exactly_max_granted_under_contention(store: &dyn CounterStore) {
        let r = req("calls", Window::Minute, 10, 1);
        let granted = contend(&[store], 1_000, &[vec![r.clone()]], MIDNIGHT + 1_234);
        assert_eq!(granted, [10]);
        assert_eq!(used(store, &r, MIDNIGHT + 1_234), 10);

        let r = req("calls", Window::Rolling(MIN), 10, 1);
        let granted = contend(&[store], 1_000, &[vec![r.clone()]], MIDNIGHT + 1_234);
        assert_eq!(granted, [10]);
        assert_eq!(used(store, &r, MIDNIGHT + 1_234), 10);
    }

    pub fn all_or_nothing_under_contention(store: &dyn CounterStore) {
        mixed_contention(store, MIDNIGHT + 5, |mix, now| {
            contend(&[store], 1_000, mix, now)
        });
    }

    /// Callers of four mixes of three counters contend (through `contend`, which returns how
    /// many of each mix were granted): every counter ends up full (each has a quarter of the
    /// callers asking it alone) and holds exactly what the granted reservations naming it
    /// charged.
    fn mixed_contention(
        store: &dyn CounterStore,
        now: Millis,
        contend: impl Fn(&[Vec<Reservation>], Millis) -> Vec<usize>,
    ) {
        let a = req("a", Window::Minute, 10, 1);
        let b = req("b", Window::Day, 15, 1);
        let r = req("r", Window::Rolling(MIN), 12, 1);
        let mix = [
            vec![a.clone(), b.clone(), r.clone()],
            vec![b.clone()],
            vec![a.clone()],
            vec![r.clone()],
        ];
        let g = contend(&mix, now);
        assert_eq!(used(store, &a, now), 10);
        assert_eq!(used(store, &b, now), 15);
        assert_eq!(used(store, &r, now), 12);
        assert_eq!(g[0] + g[2], 10, "{g:?}");
        assert_eq!(g[0] + g[1], 15, "{g:?}");
        assert_eq!(g[0] + g[3], 12, "{g:?}");
    }

    /// The same contract through `reserve_later` (the request path's way in): the stores
    /// that gather reservations into one write (SQLite, Redis) still charge each all or none,
    /// never past `max`, and reply once to each.
    pub fn deferred_reservations_are_exact_under_contention(store: &dyn CounterStore) {
        let now = MIDNIGHT + 7;
        let single = req("single", Window::Minute, 10, 1);
        assert_eq!(
            contend_deferred(&[store], 400, &[vec![single.clone()]], now),
            [10]
        );
        assert_eq!(used(store, &single, now), 10);
        mixed_contention(store, now, |mix, now| {
            contend_deferred(&[store], 400, mix, now)
        });
        // An empty reservation is granted at once, as by `reserve`.
        let (tx, rx) = std::sync::mpsc::channel();
        store.reserve_later(Vec::new(), now, Box::new(move |_, r| tx.send(r).unwrap()));
        assert_eq!(rx.recv().unwrap().unwrap(), Ticket::default());
    }

    pub fn all_or_nothing(store: &dyn CounterStore) {
        let now = MIDNIGHT + 30 * SEC;
        let a = req("a", Window::Minute, 5, 1);
        let b = req("b", Window::Minute, 2, 1);
        let r = req("r", Window::Rolling(MIN), 5, 1);
        ok(store, &[b.clone(), b.clone()], now);
        assert_eq!(
            denied(store, &[a.clone(), r.clone(), b.clone()], now),
            (2, Some(30 * SEC))
        );
        assert_eq!(
            used(store, &a, now),
            0,
            "first reservation must not be charged"
        );
        assert_eq!(
            used(store, &r, now),
            0,
            "rolling reservation must not be charged"
        );
        assert_eq!(used(store, &b, now), 2);
        // Rolling exhausted second: the calendar counter before it stays untouched.
        let full = req("full", Window::Rolling(MIN), 1, 1);
        ok(store, std::slice::from_ref(&full), now);
        assert_eq!(
            denied(store, &[a.clone(), full.clone()], now + 1),
            (1, Some(MIN - 1))
        );
        assert_eq!(used(store, &a, now + 1), 0);
        // And once everything has room, everything is charged.
        let t = ok(store, &[a.clone(), r.clone()], now + 2);
        assert_eq!(t.held.len(), 2);
        assert_eq!(used(store, &a, now + 2), 1);
        assert_eq!(used(store, &r, now + 2), 1);
    }

    pub fn first_exhausted_index_is_reported(store: &dyn CounterStore) {
        let now = MIDNIGHT + 10;
        let a = req("a", Window::Minute, 5, 1);
        let b = req("b", Window::Hour, 1, 1);
        let c = req("c", Window::Day, 1, 1);
        ok(store, &[b.clone(), c.clone()], now);
        assert_eq!(denied(store, &[a.clone(), b, c], now), (1, Some(HOUR - 10)));
        assert_eq!(used(store, &a, now), 0);
    }

    pub fn calendar_windows_reset_at_utc_boundaries(store: &dyn CounterStore) {
        for (window, boundary) in [
            (Window::Second, MIDNIGHT),
            (Window::Minute, MIDNIGHT),
            (Window::Hour, MIDNIGHT),
            (Window::Day, MIDNIGHT),
            (Window::Week, MONDAY),
            (Window::Month, DEC_1),
        ] {
            let r = req("calls", window, 3, 1);
            let last_ms = boundary - 1; // 23:59:59.999
            for _ in 0..3 {
                let t = ok(store, std::slice::from_ref(&r), last_ms);
                assert_eq!(t.held[0].at, window.bucket(last_ms).unwrap().0, "{window}");
            }
            assert_eq!(
                denied(store, std::slice::from_ref(&r), last_ms),
                (0, Some(1)),
                "{window}: full until the boundary, 1 ms away"
            );
            assert_eq!(
                store.usage(&r.key, window, last_ms).unwrap(),
                Usage {
                    used: 3,
                    resets_at: Some(boundary)
                },
                "{window}"
            );
            // 00:00:00.000: a fresh bucket.
            assert_eq!(used(store, &r, boundary), 0, "{window}");
            let t = ok(store, std::slice::from_ref(&r), boundary);
            assert_eq!(t.held[0].at, boundary, "{window}");
            assert_eq!(
                store.usage(&r.key, window, boundary).unwrap(),
                Usage {
                    used: 1,
                    resets_at: Some(window.bucket(boundary).unwrap().1)
                },
                "{window}"
            );
        }
    }

    pub fn calendar_retry_counts_down_to_the_boundary(store: &dyn CounterStore) {
        let start = MIDNIGHT - HOUR; // 23:00:00.000
        for (window, end) in [
            (Window::Minute, start + MIN),
            (Window::Hour, MIDNIGHT),
            (Window::Day, MIDNIGHT),
        ] {
            let r = req("quota", window, 2, 1);
            ok(store, &[r.clone(), r.clone()], start);
            for now in [start, start + 1, start + 12_345, end - 1] {
                assert_eq!(
                    denied(store, std::slice::from_ref(&r), now),
                    (0, Some(end - now)),
                    "{window} at {now}"
                );
            }
            ok(store, std::slice::from_ref(&r), end);
        }
    }

    fn sliding_log(store: &dyn CounterStore, t0: Millis) {
        let r = req("rolling", Window::Rolling(MIN), 3, 1);
        let one = std::slice::from_ref(&r);
        for at in [t0, t0 + 10 * SEC, t0 + 20 * SEC] {
            assert_eq!(ok(store, one, at).held[0].at, at);
        }
        assert_eq!(denied(store, one, t0 + 30 * SEC), (0, Some(30 * SEC)));
        assert_eq!(denied(store, one, t0 + 59_999), (0, Some(1)));
        assert_eq!(
            store.usage(&r.key, r.window, t0 + 59_999).unwrap(),
            Usage {
                used: 3,
                resets_at: Some(t0 + MIN)
            }
        );
        // At 60 s the charge from 0 s has left the window.
        assert_eq!(
            store.usage(&r.key, r.window, t0 + MIN).unwrap(),
            Usage {
                used: 2,
                resets_at: Some(t0 + 70 * SEC)
            }
        );
        ok(store, one, t0 + MIN);
        assert_eq!(denied(store, one, t0 + MIN), (0, Some(10 * SEC)));
        // Two units need the 10 s and 20 s charges gone.
        let two = req("rolling", Window::Rolling(MIN), 3, 2);
        assert_eq!(denied(store, &[two], t0 + MIN), (0, Some(20 * SEC)));
        // Long after, the window is empty.
        assert_eq!(
            store.usage(&r.key, r.window, t0 + 10 * MIN).unwrap(),
            Usage {
                used: 0,
                resets_at: None
            }
        );
    }

    pub fn rolling_window_is_a_sliding_log(store: &dyn CounterStore) {
        sliding_log(store, MIDNIGHT + 777);
    }

    pub fn rolling_window_from_the_epoch(store: &dyn CounterStore) {
        // t = 0 exactly: nothing may count as expired before a whole window has passed.
        sliding_log(store, 0);
    }

    pub fn rolling_window_never_exceeds_max_in_any_interval(store: &dyn CounterStore) {
        const LEN: Millis = MIN;
        const MAX: u64 = 7;
        struct Charge {
            ts: Millis,
            amount: u64,
            ticket: Option<Ticket>, // None once refunded
        }
        let live_at = |charges: &[Charge], t: Millis| -> Vec<(Millis, u64)> {
            charges
                .iter()
                .filter(|c| c.ticket.is_some() && c.ts + LEN > t)
                .map(|c| (c.ts, c.amount))
                .collect()
        };
        let sum = |v: &[(Millis, u64)]| v.iter().map(|&(_, a)| a).sum::<u64>();

        let mut rng = Lcg::new(0x5eed);
        let mut charges: Vec<Charge> = Vec::new();
        let (mut granted, mut refused) = (0, 0);
        let mut t: Millis = 5 * SEC;
        for _ in 0..1_500 {
            t += rng.below(9 * SEC); // sometimes 0: several charges in one millisecond
            if rng.below(6) == 0 && !charges.is_empty() {
                let i = rng.below(charges.len() as u64) as usize;
                if let Some(ticket) = charges[i].ticket.take() {
                    store.refund(&ticket, t).unwrap();
                }
                continue;
            }
            let amount = 1 + rng.below(3);
            let r = req("sliding", Window::Rolling(LEN), MAX, amount);
            let live = live_at(&charges, t);
            assert_eq!(used(store, &r, t), sum(&live), "usage at {t}");
            match store.reserve(std::slice::from_ref(&r), t) {
                Ok(ticket) => {
                    assert!(sum(&live) + amount <= MAX, "granted over max at {t}");
                    assert_eq!(ticket.held[0].at, t);
                    charges.push(Charge {
                        ts: t,
                        amount,
                        ticket: Some(ticket),
                    });
                    granted += 1;
                }
                Err(portcullis_policy::ReserveError::Exhausted {
                    index: 0,
                    retry_after_ms,
                }) => {
                    assert!(sum(&live) + amount > MAX, "refused with room at {t}");
                    // The retry is the first instant at which the call would fit, found by
                    // trying every expiry instant.
                    let expected = live
                        .iter()
                        .map(|&(ts, _)| ts + LEN - t)
                        .find(|&w| sum(&live_at(&charges, t + w)) + amount <= MAX);
                    assert_eq!(retry_after_ms, expected, "retry at {t}");
                    refused += 1;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        eprintln!("granted {granted}, refused {refused}");
        assert!(
            granted > 200 && refused > 100,
            "schedule too tame: {granted}/{refused}"
        );
        // Brute force: every interval [x, x + LEN) — the fullest ones start at a charge.
        let kept: Vec<(Millis, u64)> = charges
            .iter()
            .filter(|c| c.ticket.is_some())
            .map(|c| (c.ts, c.amount))
            .collect();
        for &(x, _) in &kept {
            let in_interval: u64 = kept
                .iter()
                .filter(|&&(ts, _)| ts >= x && ts < x + LEN)
                .map(|&(_, a)| a)
                .sum();
            assert!(
                in_interval <= MAX,
                "{in_interval} units in [{x}, {})",
                x + LEN
            );
        }
    }

    pub fn increments_larger_than_one(store: &dyn CounterStore) {
        let now = MIDNIGHT + 100;
        for window in [Window::Hour, Window::Rolling(HOUR)] {
            let four = req("tokens", window, 10, 4);
            let two = req("tokens", window, 10, 2);
            let t = ok(store, std::slice::from_ref(&four), now);
            assert_eq!(t.held[0].amount, 4);
            ok(store, std::slice::from_ref(&four), now + 1);
            assert_eq!(used(store, &four, now + 1), 8);
            let (index, retry) = denied(store, std::slice::from_ref(&four), now + 2);
            assert_eq!(index, 0);
            // Calendar: at the end of the hour. Rolling: when the first charge of 4 expires.
            let expected = if window.rolling().is_some() {
                HOUR - 2
            } else {
                HOUR - 102
            };
            assert_eq!(retry, Some(expected), "{window}");
            ok(store, std::slice::from_ref(&two), now + 3);
            assert_eq!(used(store, &two, now + 3), 10);
            let one = req("tokens", window, 10, 1);
            assert_eq!(denied(store, &[one], now + 4).0, 0);
        }
    }

    pub fn amount_above_max_never_fits(store: &dyn CounterStore) {
        let now = MIDNIGHT + 100;
        for window in [Window::Day, Window::Rolling(DAY)] {
            let big = req("big", window, 10, 11);
            assert_eq!(
                denied(store, std::slice::from_ref(&big), now),
                (0, None),
                "{window}"
            );
            assert_eq!(used(store, &big, now), 0);
            // Exactly max fits.
            ok(store, &[req("big", window, 10, 10)], now);
            // Zero max: any positive amount is refused forever.
            assert_eq!(denied(store, &[req("zero", window, 0, 1)], now), (0, None));
        }
    }

    pub fn refund_restores_room(store: &dyn CounterStore) {
        let now = MIDNIGHT + 100;
        for window in [Window::Minute, Window::Rolling(MIN)] {
            let r = req("refund", window, 2, 1);
            let one = std::slice::from_ref(&r);
            ok(store, one, now);
            let t = ok(store, one, now);
            denied(store, one, now);
            store.refund(&t, now + 1).unwrap();
            assert_eq!(used(store, &r, now + 1), 1, "{window}");
            ok(store, one, now + 1);
            denied(store, one, now + 1);
        }
        // A multi-counter ticket gives back every counter.
        let a = req("ra", Window::Hour, 5, 2);
        let b = req("rb", Window::Rolling(HOUR), 5, 3);
        let t = ok(store, &[a.clone(), b.clone()], now);
        store.refund(&t, now).unwrap();
        assert_eq!((used(store, &a, now), used(store, &b, now)), (0, 0));
    }

    pub fn double_refund_never_underflows(store: &dyn CounterStore) {
        let now = MIDNIGHT + 100;
        for window in [Window::Minute, Window::Rolling(MIN)] {
            let small = req("under", window, 10, 1);
            let big = req("under", window, 10, 3);
            ok(store, std::slice::from_ref(&small), now);
            let t = ok(store, std::slice::from_ref(&big), now + 1);
            store.refund(&t, now + 2).unwrap();
            assert_eq!(used(store, &small, now + 2), 1, "{window}");
            // Refunding again is a caller bug, but must not wrap around: a calendar counter
            // clamps at zero, a rolling one finds no matching charge left.
            for _ in 0..3 {
                store.refund(&t, now + 2).unwrap();
                assert!(used(store, &small, now + 2) <= 1, "{window}");
            }
            // A forged ticket bigger than everything charged: clamps at zero as well.
            let mut forged = t.clone();
            forged.held[0].amount = 1_000;
            store.refund(&forged, now + 2).unwrap();
            let left = used(store, &small, now + 2);
            assert!(left <= 1, "{window}");
            // The counter is still usable, exactly up to max.
            ok(store, &[req("under", window, 10, 10 - left)], now + 3);
            denied(store, std::slice::from_ref(&small), now + 3);
            assert_eq!(used(store, &small, now + 3), 10, "{window}");
        }
        // Refunding a ticket for a counter that was never charged is harmless.
        let ghost = Ticket {
            held: vec![portcullis_policy::Held {
                key: key("ghost", Window::Day),
                window: Window::Day,
                at: MIDNIGHT,
                amount: 5,
            }],
        };
        store.refund(&ghost, now).unwrap();
        assert_eq!(
            store
                .usage(&key("ghost", Window::Day), Window::Day, now)
                .unwrap()
                .used,
            0
        );
    }

    pub fn refund_after_bucket_ended_leaves_new_bucket_alone(store: &dyn CounterStore) {
        let r = req("late", Window::Minute, 5, 2);
        let one = std::slice::from_ref(&r);
        let old = ok(store, one, MIDNIGHT - 1);
        ok(store, one, MIDNIGHT);
        store.refund(&old, MIDNIGHT + 1).unwrap();
        assert_eq!(used(store, &r, MIDNIGHT + 1), 2);
        // Also when the new bucket has no charge yet at refund time.
        let r = req("late2", Window::Minute, 5, 2);
        let one = std::slice::from_ref(&r);
        let old = ok(store, one, MIDNIGHT - 1);
        store.refund(&old, MIDNIGHT + 1).unwrap();
        ok(store, one, MIDNIGHT + 2);
        assert_eq!(used(store, &r, MIDNIGHT + 2), 2);
    }

    pub fn rolling_refund_removes_one_charge(store: &dyn CounterStore) {
        let now = MIDNIGHT;
        let r = req("same-ms", Window::Rolling(MIN), 10, 2);
        let one = std::slice::from_ref(&r);
        let t1 = ok(store, one, now);
        let _t2 = ok(store, one, now); // same instant, same amount
        let _t3 = ok(store, &[req("same-ms", Window::Rolling(MIN), 10, 1)], now);
        assert_eq!(used(store, &r, now), 5);
        store.refund(&t1, now).unwrap();
        assert_eq!(used(store, &r, now), 3);
        // A refund of a charge that already expired changes nothing.
        store.refund(&t1, now + 2 * MIN).unwrap();
        assert_eq!(used(store, &r, now + 2 * MIN), 0);
    }

    pub fn duplicate_key_in_one_slice(store: &dyn CounterStore) {
        let now = MIDNIGHT + 100;
        for window in [Window::Minute, Window::Rolling(MIN)] {
            let two = req("dup", window, 5, 2);
            let three = req("dup", window, 5, 3);
            // 2 + 3 = 5 fits; both charged, each in its own ticket entry.
            let t = ok(store, &[two.clone(), three.clone()], now);
            assert_eq!(t.held.len(), 2);
            assert_eq!(used(store, &two, now), 5, "{window}");
            store.refund(&t, now).unwrap();
            assert_eq!(used(store, &two, now), 0, "{window}");
            // 3 + 3 = 6 > 5 can never fit: the second is the exhausted one, retry never.
            assert_eq!(
                denied(store, &[three.clone(), three.clone()], now),
                (1, None)
            );
            assert_eq!(used(store, &two, now), 0, "{window}: nothing charged");
            // With 2 used, 2 + 2 more does not fit now but will.
            ok(store, std::slice::from_ref(&two), now);
            let (index, retry) = denied(store, &[two.clone(), two.clone()], now + 1);
            // Calendar: at the end of the minute. Rolling: when the charge of 2 expires.
            let expected = if window.rolling().is_some() {
                MIN - 1
            } else {
                MIN - 101
            };
            assert_eq!((index, retry), (1, Some(expected)), "{window}");
            assert_eq!(used(store, &two, now + 1), 2, "{window}");
        }
    }

    pub fn keys_are_independent(store: &dyn CounterStore) {
        let now = MIDNIGHT;
        let a = req("a", Window::Minute, 1, 1);
        let b = req("b", Window::Minute, 1, 1);
        ok(store, std::slice::from_ref(&a), now);
        ok(store, std::slice::from_ref(&b), now);
        denied(store, std::slice::from_ref(&a), now);
        let per = portcullis_policy::CounterKey::new(
            portcullis_policy::Scope::Grant,
            "g1",
            "a",
            Window::Minute,
            Some("\"x\""),
        );
        let a_per = portcullis_policy::Reservation {
            key: per,
            ..a.clone()
        };
        ok(store, &[a_per], now);
    }

    pub fn lagging_clock_counts_in_the_newer_bucket(store: &dyn CounterStore) {
        // Another process (or this clock before a step back) already counts in the new day;
        // a call stamped just before midnight must not reopen the old day's quota.
        let r = req("skew", Window::Day, 2, 1);
        let one = std::slice::from_ref(&r);
        ok(store, one, MIDNIGHT);
        let t = ok(store, one, MIDNIGHT - 1);
        assert_eq!(t.held[0].at, MIDNIGHT);
        assert_eq!(denied(store, one, MIDNIGHT - 1), (0, Some(DAY + 1)));
        assert_eq!(used(store, &r, MIDNIGHT), 2);
        store.refund(&t, MIDNIGHT).unwrap();
        assert_eq!(used(store, &r, MIDNIGHT), 1);
        // Rolling: a late stamp is moved up to the newest charge, so the log stays ordered.
        let r = req("skew-r", Window::Rolling(MIN), 2, 1);
        let one = std::slice::from_ref(&r);
        ok(store, one, MIDNIGHT + 100);
        let t = ok(store, one, MIDNIGHT + 50);
        assert_eq!(t.held[0].at, MIDNIGHT + 100);
        denied(store, one, MIDNIGHT + 60);
        store.refund(&t, MIDNIGHT + 70).unwrap();
        assert_eq!(used(store, &r, MIDNIGHT + 100), 1);
    }

    pub fn empty_reservation(store: &dyn CounterStore) {
        assert_eq!(store.reserve(&[], MIDNIGHT).unwrap(), Ticket::default());
        store.refund(&Ticket::default(), MIDNIGHT).unwrap();
    }
}
