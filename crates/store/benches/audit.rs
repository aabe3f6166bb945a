//! Audit log throughput: records per second with 1, 16 and 64 concurrent appenders in
//! durable mode (group commit, fsync per transaction) and in async mode.
//!
//! Each measurement appends `iters` records split over N tokio tasks on a 2-worker runtime
//! and reports elements/s (criterion's `thrpt`). The database lives in the system temp
//! directory (same file system as the data dir on a typical install).
//!
//! Before the criterion groups, a summary runs each configuration on a fresh database with
//! a fixed number of records, three times, and prints the median records/s and the mean
//! records per commit: fsync latency on a shared machine is noisy, and the summary is the
//! steadier figure. `forwarded` does the same for the two writes of a call forwarded in
//! durable mode (its write-ahead row, then the answer's completion of that row).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis_store::{AuditDecision, AuditLog, AuditMode, AuditRecord};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 2026-11-22T12:00:00Z.
const NOW: u64 = 1_795_348_800_000;

/// A typical record: an allowed `tools/call` with two argument keys and one counter.
fn record(i: u64) -> AuditRecord {
    let mut r = AuditRecord::new(NOW + i, "odoo", "tools/call", AuditDecision::Allow);
    r.request_id = Some(format!("req-{i}"));
    r.grant_id = Some("grt_0123456789abcdef".into());
    r.grant_label = Some("alice-laptop".into());
    r.session = Some("4f1c2d3e-aaaa-bbbb-cccc-0123456789ab".into());
    r.tool = Some("ai_pipeline_run".into());
    r.rule = Some("/tools/ai_pipeline_run".into());
    r.policy_name = Some("odoo".into());
    r.policy_hash = Some("6c1f0e6a8d3b2f41".into());
    r.arg_keys = vec!["bill_id".into(), "steps".into()];
    r.args_hmac = Some("9f2c4a1b0e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807f6e5d4c3b2a19080".into());
    r.upstream_status = Some("ok".into());
    r.upstream_ms = Some(12);
    r.gateway_us = 85;
    r.counters = vec!["grant:grt_0123456789abcdef:calls:minute".into()];
    r
}

/// A fresh database file in a scratch directory (removed, with the WAL files, when the
/// directory is dropped).
fn fresh_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    (dir, path)
}

/// Runs `op` for `total` records (numbered from 0) from `tasks` concurrent tasks; returns the
/// elapsed time (including, in async mode, the final flush: the records are on disk at the
/// end).
fn run_with<F, Fut>(
    rt: &tokio::runtime::Runtime,
    log: &Arc<AuditLog>,
    tasks: u64,
    total: u64,
    op: F,
) -> Duration
where
    F: Fn(Arc<AuditLog>, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (log, op) = (Arc::clone(log), op.clone());
                tokio::spawn(async move {
                    let mut i = t;
                    while i < total {
                        op(Arc::clone(&log), i).await;
                        i += tasks;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        log.flush().await.unwrap();
        start.elapsed()
    })
}

/// Appends `total` records from `tasks` concurrent tasks.
fn run(rt: &tokio::runtime::Runtime, log: &Arc<AuditLog>, tasks: u64, total: u64) -> Duration {
    run_with(rt, log, tasks, total, |log, i| async move {
        log.append(record(i)).await.unwrap();
    })
}

/// Forwards `total` calls from `tasks` concurrent tasks as the durable gateway records them:
/// the write-ahead row (awaited: the call goes upstream only once it is on disk), then the
/// answer's completion of the same row (queued for the next commit).
fn run_forwarded(
    rt: &tokio::runtime::Runtime,
    log: &Arc<AuditLog>,
    tasks: u64,
    total: u64,
) -> Duration {
    run_with(rt, log, tasks, total, |log, i| async move {
        let mut r = record(i);
        r.intent = Some(i + 1);
        r.upstream_status = None;
        r.upstream_ms = None;
        log.begin(r.clone()).await.unwrap();
        r.upstream_status = Some("ok".into());
        r.upstream_ms = Some(12);
        log.complete(r).await.unwrap();
    })
}

fn bench_mode(c: &mut Criterion, name: &str, mode: AuditMode) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_dir, path) = fresh_db();
    let log = Arc::new(AuditLog::open(&path, mode).unwrap());
    let mut group = c.benchmark_group(format!("audit/{name}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for tasks in [1u64, 16, 64] {
        let before = log.stats();
        group.bench_function(format!("{tasks} appenders"), |b| {
            b.iter_custom(|iters| run(&rt, &log, tasks, iters.max(tasks)))
        });
        let after = log.stats();
        let batches = after.batches - before.batches;
        if batches > 0 {
            eprintln!(
                "  audit/{name}/{tasks} appenders: {:.1} records per commit",
                (after.committed - before.committed) as f64 / batches as f64
            );
        }
    }
    group.finish();
    drop(log);
}

/// Fixed-size runs: median records/s of three, and records per commit.
fn summary(_c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let configs = [
        ("durable", AuditMode::Durable),
        ("async-10ms", AuditMode::Async { max_delay_ms: 10 }),
    ];
    eprintln!("audit summary (records/s, median of 3 runs on a fresh database):");
    for (name, mode) in configs {
        for tasks in [1u64, 16, 64, 256] {
            let total = if tasks == 1 && mode == AuditMode::Durable {
                3_000
            } else {
                40_000
            };
            let mut rates = Vec::new();
            let mut per_commit = 0.0;
            for _ in 0..3 {
                let (_dir, path) = fresh_db();
                let log = Arc::new(AuditLog::open(&path, mode).unwrap());
                let elapsed = run(&rt, &log, tasks, total);
                let s = log.stats();
                per_commit += s.committed as f64 / s.batches.max(1) as f64 / 3.0;
                rates.push(total as f64 / elapsed.as_secs_f64());
                drop(log);
            }
            rates.sort_by(f64::total_cmp);
            eprintln!(
                "  {name:>10} {tasks:>3} appenders: {:>8.0} records/s ({per_commit:.1} records per commit)",
                rates[1]
            );
        }
    }
}

/// Fixed-size runs of forwarded calls in durable mode (write-ahead row, then its
/// completion): median calls/s of three.
fn forwarded(_c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    eprintln!("forwarded calls, durable (calls/s, median of 3 runs on a fresh database):");
    for (tasks, total) in [(1u64, 2_000u64), (64, 20_000)] {
        let mut rates = Vec::new();
        for _ in 0..3 {
            let (_dir, path) = fresh_db();
            let log = Arc::new(AuditLog::open(&path, AuditMode::Durable).unwrap());
            let elapsed = run_forwarded(&rt, &log, tasks, total);
            rates.push(total as f64 / elapsed.as_secs_f64());
            drop(log);
        }
        rates.sort_by(f64::total_cmp);
        eprintln!("  {tasks:>3} callers: {:>8.0} calls/s", rates[1]);
    }
}

fn durable(c: &mut Criterion) {
    bench_mode(c, "durable", AuditMode::Durable);
}

fn async_mode(c: &mut Criterion) {
    bench_mode(c, "async-10ms", AuditMode::Async { max_delay_ms: 10 });
}

criterion_group!(benches, forwarded, summary, durable, async_mode);
criterion_main!(benches);
