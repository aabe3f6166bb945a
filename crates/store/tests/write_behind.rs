//! What the write-behind backend promises beyond the contract: its counters reach the file
//! in the background and come back after a restart, every write (charges, refunds, rolling
//! charges) included; and one process owns the file, so a second one cannot double the limits.

mod common;

use common::*;
use portcullis_policy::{CounterStore, Usage, Window};
use portcullis_store::{SqliteCounters, WriteBehindCounters, FLUSH_EVERY};
use std::time::{Duration, Instant};

/// Calendar rows (key, used) and rolling charges (key, ts, amount) of a counters file.
type Rows = (Vec<(String, u64)>, Vec<(String, u64, u64)>);

/// Rows of the counters file as another reader sees them.
fn on_disk(db: &TempDb) -> Rows {
    let c = rusqlite::Connection::open(db.path()).unwrap();
    let buckets = c
        .prepare("SELECT key, used FROM counters ORDER BY key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let events = c
        .prepare("SELECT key, ts, amount FROM rolling_events ORDER BY key, ts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (buckets, events)
}

#[test]
fn charges_reach_the_file_in_the_background_within_a_flush() {
    let db = TempDb::new("wb-background");
    let store = WriteBehindCounters::open(db.path(), MIDNIGHT).unwrap();
    let day = req("daily", Window::Day, 10, 1);
    ok(&store, &[day.clone(), day.clone()], MIDNIGHT + 1);
    // Decided in memory at once; on disk within a flush (no call to `flush`).
    assert_eq!(used(&store, &day, MIDNIGHT + 2), 2);
    let deadline = Instant::now() + FLUSH_EVERY * 50;
    loop {
        if on_disk(&db).0 == [(day.key.as_str().to_owned(), 2)] {
            break;
        }
        assert!(Instant::now() < deadline, "not written: {:?}", on_disk(&db));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_restart_keeps_charges_refunds_and_rolling_charges() {
    let db = TempDb::new("wb-restart");
    let day = req("daily", Window::Day, 3, 1);
    let rolling = req("hourly", Window::Rolling(HOUR), 2, 1);
    let morning = MIDNIGHT + 9 * HOUR;
    {
        let store = WriteBehindCounters::open(db.path(), morning).unwrap();
        ok(&store, &[day.clone(), rolling.clone()], morning);
        let refunded = ok(&store, &[day.clone(), rolling.clone()], morning + 1);
        ok(&store, std::slice::from_ref(&day), morning + 2);
        store.refund(&refunded, morning + 3).unwrap();
        ok(&store, &[day.clone(), rolling.clone()], morning + 4);
        // A refused reservation writes nothing.
        assert_eq!(
            denied(&store, &[day.clone(), rolling.clone()], morning + 5).0,
            0
        );
    } // a clean shutdown flushes what is left

    let (buckets, events) = on_disk(&db);
    assert_eq!(buckets, [(day.key.as_str().to_owned(), 3)]);
    assert_eq!(
        events,
        [
            (rolling.key.as_str().to_owned(), morning, 1),
            (rolling.key.as_str().to_owned(), morning + 4, 1)
        ]
    );

    // Read back, by this backend and by the transactional one alike.
    let later = morning + 30 * 60_000;
    let store = WriteBehindCounters::open(db.path(), later).unwrap();
    let want_day = Usage {
        used: 3,
        resets_at: Some(MIDNIGHT + DAY),
    };
    assert_eq!(store.usage(&day.key, day.window, later).unwrap(), want_day);
    assert_eq!(
        store.usage(&rolling.key, rolling.window, later).unwrap(),
        Usage {
            used: 2,
            resets_at: Some(morning + HOUR)
        }
    );
    assert_eq!(
        denied(&store, std::slice::from_ref(&day), later),
        (0, Some(MIDNIGHT + DAY - later))
    );
    // The first rolling charge leaves the window an hour after it was made.
    ok(&store, std::slice::from_ref(&rolling), morning + HOUR);
    drop(store);
    let sqlite = SqliteCounters::open(db.path()).unwrap();
    assert_eq!(sqlite.usage(&day.key, day.window, later).unwrap(), want_day);
    assert_eq!(used(&sqlite, &rolling, morning + HOUR), 2);
}

#[test]
fn one_process_owns_the_file_and_a_second_is_refused_saying_why() {
    let db = TempDb::new("wb-owner");
    let owner = WriteBehindCounters::open(db.path(), MIDNIGHT).unwrap();
    let e = WriteBehindCounters::open(db.path(), MIDNIGHT)
        .unwrap_err()
        .to_string();
    assert!(e.contains("in use by another gateway process"), "{e}");
    assert!(e.contains("counters = \"sqlite\""), "{e}");
    let e = SqliteCounters::open(db.path()).unwrap_err().to_string();
    assert!(e.contains("counters = \"write-behind\""), "{e}");
    drop(owner);

    // Processes on the transactional backend share the file; a write-behind one cannot join.
    let a = SqliteCounters::open(db.path()).unwrap();
    let b = SqliteCounters::open(db.path()).unwrap();
    let e = WriteBehindCounters::open(db.path(), MIDNIGHT)
        .unwrap_err()
        .to_string();
    assert!(e.contains("in use by another gateway process"), "{e}");
    drop((a, b));
    WriteBehindCounters::open(db.path(), MIDNIGHT).unwrap();
}

#[test]
fn dead_counters_are_not_restored() {
    let db = TempDb::new("wb-dead");
    let minute = req("per-minute", Window::Minute, 5, 1);
    {
        let store = WriteBehindCounters::open(db.path(), MIDNIGHT).unwrap();
        ok(&store, std::slice::from_ref(&minute), MIDNIGHT);
    }
    let store = WriteBehindCounters::open(db.path(), MIDNIGHT + 2 * MIN).unwrap();
    assert!(store.is_empty(), "{} counters restored", store.len());
    assert_eq!(used(&store, &minute, MIDNIGHT + 2 * MIN), 0);
}
