//! What only the SQLite backend promises: counters survive a restart, and processes sharing
//! one file share its counters exactly.

mod common;

use common::*;
use portcullis_policy::{CounterStore, Usage, Window};
use portcullis_store::SqliteCounters;

#[test]
fn restart_keeps_the_day_counter() {
    let db = TempDb::new("restart");
    let day = req("daily", Window::Day, 3, 1);
    let rolling = req("hourly", Window::Rolling(HOUR), 2, 1);
    let morning = MIDNIGHT + 9 * HOUR;
    {
        let store = SqliteCounters::open(db.path()).unwrap();
        for i in 0..3 {
            ok(
                &store,
                &[day.clone(), rolling.clone()][..if i < 2 { 2 } else { 1 }],
                morning + i,
            );
        }
        assert_eq!(
            denied(&store, std::slice::from_ref(&day), morning + 10),
            (0, Some(15 * HOUR - 10))
        );
    } // "process" exits

    let store = SqliteCounters::open(db.path()).unwrap();
    let later = morning + 5 * HOUR;
    assert_eq!(
        store.usage(&day.key, day.window, later).unwrap(),
        Usage {
            used: 3,
            resets_at: Some(MIDNIGHT + DAY)
        }
    );
    assert_eq!(
        denied(&store, std::slice::from_ref(&day), later),
        (0, Some(MIDNIGHT + DAY - later))
    );
    assert_eq!(
        store
            .usage(&rolling.key, rolling.window, morning + 30 * 60_000)
            .unwrap(),
        Usage {
            used: 2,
            resets_at: Some(morning + HOUR)
        }
    );
    // The next day starts fresh.
    ok(&store, std::slice::from_ref(&day), MIDNIGHT + DAY);
    assert_eq!(used(&store, &day, MIDNIGHT + DAY), 1);
}

#[test]
fn two_processes_share_the_quota_exactly() {
    let db = TempDb::new("two-processes");
    let a = SqliteCounters::open(db.path()).unwrap();
    let b = SqliteCounters::open(db.path()).unwrap();
    let r = req("shared", Window::Minute, 10, 1);
    let now = MIDNIGHT + 42;
    let granted = contend(&[&a, &b], 1_000, &[vec![r.clone()]], now);
    assert_eq!(granted, [10]);
    assert_eq!(used(&a, &r, now), 10);
    assert_eq!(used(&b, &r, now), 10);

    // Multi-counter reservations stay all-or-nothing across the two connections.
    let x = req("x", Window::Hour, 10, 1);
    let y = req("y", Window::Rolling(MIN), 15, 1);
    let mix = [vec![x.clone(), y.clone()], vec![y.clone()], vec![x.clone()]];
    let g = contend(&[&a, &b], 600, &mix, now);
    assert_eq!(g[0] + g[2], 10, "{g:?}");
    assert_eq!(g[0] + g[1], 15, "{g:?}");
    assert_eq!((used(&a, &x, now), used(&b, &y, now)), (10, 15));
}

#[test]
fn a_ticket_can_be_refunded_through_another_connection() {
    let db = TempDb::new("refund-elsewhere");
    let a = SqliteCounters::open(db.path()).unwrap();
    let b = SqliteCounters::open(db.path()).unwrap();
    let cal = req("c", Window::Minute, 1, 1);
    let roll = req("r", Window::Rolling(MIN), 1, 1);
    let t = ok(&a, &[cal.clone(), roll.clone()], MIDNIGHT);
    denied(&b, std::slice::from_ref(&cal), MIDNIGHT + 1);
    b.refund(&t, MIDNIGHT + 1).unwrap();
    ok(&a, &[cal, roll], MIDNIGHT + 2);
}

#[test]
fn dead_rows_are_swept() {
    let db = TempDb::new("sweep");
    let store = SqliteCounters::open(db.path()).unwrap();
    let t0 = MIDNIGHT + 1;
    for i in 0..100 {
        let name = format!("c{i}");
        ok(
            &store,
            &[
                req(&name, Window::Minute, 5, 1),
                req(&name, Window::Rolling(30 * SEC), 5, 1),
            ],
            t0 + i,
        );
    }
    let rows = || {
        let conn = rusqlite::Connection::open(db.path()).unwrap();
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        (count("counters"), count("rolling_events"))
    };
    assert_eq!(rows(), (100, 100));
    // Two minutes later everything above is dead; the next write sweeps it.
    ok(&store, &[req("new", Window::Day, 5, 1)], t0 + 2 * MIN);
    assert_eq!(rows(), (1, 0));
}

#[test]
fn open_reports_the_path_on_failure() {
    let dir = TempDb::new("missing-dir");
    let path = dir.path().join("nested").join("counters.db");
    let err = SqliteCounters::open(&path).unwrap_err().to_string();
    assert!(err.contains("counters.db"), "{err}");
}

#[test]
fn a_newer_schema_is_refused() {
    let db = TempDb::new("newer-schema");
    drop(SqliteCounters::open(db.path()).unwrap());
    rusqlite::Connection::open(db.path())
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteCounters::open(db.path()).unwrap_err().to_string();
    assert!(err.contains("schema version 99"), "{err}");
}

/// What a reservation costs on disk, counted rather than timed: the WAL frames (one page
/// each) a calendar counter's commit appends once its row exists. Charging the same bucket
/// rewrites the row in place and leaves the `expires` index alone, so it is one page; a
/// second page per call (the index's) was a fifth of the transaction's cost.
#[test]
fn charging_the_same_bucket_writes_one_page() {
    let db = TempDb::new("pages");
    let store = SqliteCounters::open(db.path()).unwrap();
    let day = req("daily", Window::Day, 1_000, 1);
    let morning = MIDNIGHT + 9 * HOUR;
    ok(&store, std::slice::from_ref(&day), morning); // creates the row
    let wal = Wal::of(&db);
    const CALLS: u64 = 50; // far below the 1,000-page auto-checkpoint, so the WAL only grows
    for i in 1..=CALLS {
        ok(&store, std::slice::from_ref(&day), morning + i);
    }
    let frames = wal.frames_since();
    assert_eq!(
        frames, CALLS,
        "{frames} WAL frames for {CALLS} charges of one bucket (one page each expected)"
    );
}

/// Reservations that find the connection busy are not waited for on the caller's thread:
/// they are queued, and the batcher commits those queued meanwhile in one transaction. Here a
/// blocking `reserve` holds the connection (it waits for another process's write lock) while
/// fifty `reserve_later` calls arrive: each returns at once, and once the lock is released the
/// fifty charges land in at most two transactions (the batcher may have taken the first
/// before the rest arrived), i.e. a few WAL frames where one transaction each would write
/// fifty.
#[test]
fn reservations_made_while_the_connection_is_busy_share_a_transaction() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let db = TempDb::new("batch");
    let store = SqliteCounters::open(db.path()).unwrap();
    let day = req("daily", Window::Day, 1_000, 1);
    let morning = MIDNIGHT + 9 * HOUR;
    ok(&store, std::slice::from_ref(&day), morning); // creates the row
    let wal = Wal::of(&db);
    let other = rusqlite::Connection::open(db.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    const CALLS: u64 = 50;
    std::thread::scope(|s| {
        let holder = s.spawn(|| ok(&store, std::slice::from_ref(&day), morning + 1));
        // Let the holder take the connection and wait for the other process's lock.
        std::thread::sleep(Duration::from_millis(300));
        let (tx, rx) = mpsc::channel();
        let queued = Instant::now();
        for i in 0..CALLS {
            let tx = tx.clone();
            let reply = Box::new(move |_, r| tx.send(r).unwrap());
            store.reserve_later(vec![day.clone()], morning + 2 + i, reply);
        }
        assert!(
            queued.elapsed() < Duration::from_secs(1),
            "reserve_later waited for the busy connection"
        );
        assert!(
            rx.try_recv().is_err(),
            "answered before the connection was free"
        );
        other.execute_batch("COMMIT").unwrap();
        holder.join().unwrap();
        for _ in 0..CALLS {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("every queued reservation is answered")
                .expect("and granted");
        }
    });
    assert_eq!(
        store
            .usage(&day.key, day.window, morning + 100)
            .unwrap()
            .used,
        2 + CALLS
    );
    let frames = wal.frames_since();
    assert!(
        frames <= 3,
        "{frames} WAL frames for one blocking charge and {CALLS} queued ones (at most 3: one \
         transaction for the blocking one, at most two for the queued)"
    );
}

/// The write-ahead log of a counters file, to count the frames (one page each) that commits
/// append to it from now on.
struct Wal {
    path: std::ffi::OsString,
    start: u64,
}

impl Wal {
    fn of(db: &TempDb) -> Wal {
        let mut path = db.path().as_os_str().to_owned();
        path.push("-wal");
        let start = std::fs::metadata(&path).unwrap().len();
        Wal { path, start }
    }

    /// Frames appended since [`Wal::of`] (page size and frame header: 4,096 + 24 bytes).
    fn frames_since(&self) -> u64 {
        (std::fs::metadata(&self.path).unwrap().len() - self.start) / (4096 + 24)
    }
}
