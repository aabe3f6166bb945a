//! Cost of one reservation plus its refund, for 1 and 3 counters, in each backend.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis_policy::{CounterKey, CounterStore, Millis, Reservation, Scope, Window};
use portcullis_store::{MemoryCounters, SqliteCounters};

/// 2026-11-22T12:00:00Z.
const NOW: Millis = 1_795_348_800_000;

fn reservation(counter: &str, window: Window) -> Reservation {
    Reservation {
        key: CounterKey::new(Scope::Grant, "grant-7f3a9c", counter, window, None),
        window,
        max: 1_000_000,
        amount: 1,
    }
}

fn one() -> Vec<Reservation> {
    vec![reservation("calls", Window::Minute)]
}

fn three() -> Vec<Reservation> {
    vec![
        reservation("calls", Window::Minute),
        reservation("calls", Window::Hour),
        reservation("tokens", Window::Day),
    ]
}

fn rolling() -> Vec<Reservation> {
    vec![reservation("burst", Window::Rolling(60_000))]
}

fn round_trip(store: &dyn CounterStore, reqs: &[Reservation]) {
    let ticket = store.reserve(black_box(reqs), NOW).unwrap();
    store.refund(black_box(&ticket), NOW).unwrap();
}

fn bench_store(c: &mut Criterion, name: &str, store: &dyn CounterStore) {
    let mut group = c.benchmark_group(format!("reserve+refund/{name}"));
    for (label, reqs) in [
        ("1 counter", one()),
        ("3 counters", three()),
        ("1 rolling", rolling()),
    ] {
        round_trip(store, &reqs); // create the rows / entries first
        group.bench_function(label, |b| b.iter(|| round_trip(store, &reqs)));
    }
    group.finish();
}

fn memory(c: &mut Criterion) {
    bench_store(c, "memory", &MemoryCounters::new());
}

fn sqlite(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteCounters::open(dir.path().join("counters.db")).unwrap();
    bench_store(c, "sqlite-file", &store);
}

criterion_group!(benches, memory, sqlite);
criterion_main!(benches);
