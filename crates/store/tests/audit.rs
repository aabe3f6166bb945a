//! The audit log: durability (group commit), concurrency, queries, retention, export.

mod common;
use common::TempDb;

use portcullis_store::audit::{arg_keys, IN_FLIGHT, OUTCOME_UNKNOWN};
use portcullis_store::{AuditDecision, AuditFilter, AuditLog, AuditMode, AuditRecord};
use rusqlite::Connection;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

/// 2026-11-22T12:00:00Z.
const NOW: u64 = 1_795_348_800_000;
const MIN: u64 = 60_000;

fn record(i: u64) -> AuditRecord {
    let mut r = AuditRecord::new(NOW + i, "odoo", "tools/call", AuditDecision::Allow);
    r.request_id = Some(format!("req-{i}"));
    r.grant_id = Some("grt_0123456789abcdef".into());
    r.grant_label = Some("alice-laptop".into());
    r.tool = Some("ai_pipeline_run".into());
    r.rule = Some("/tools/ai_pipeline_run".into());
    r.policy_name = Some("odoo".into());
    r.policy_hash = Some("sha256:abc".into());
    r.gateway_us = 42;
    r.upstream_ms = Some(7);
    r.upstream_status = Some("ok".into());
    r.counters = vec!["grant:grt_0123456789abcdef:calls:minute".into()];
    r
}

/// Counts rows through a separate, fresh connection (what another process would see).
fn rows_on_disk(path: &Path) -> i64 {
    let c = Connection::open(path).unwrap();
    c.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
        .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn durable_append_is_on_disk_when_it_returns() {
    let db = TempDb::new("durable");
    let log = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    rt().block_on(async {
        for i in 0..5 {
            log.append(record(i)).await.unwrap();
            // Visible to another connection at once: committed, not merely queued.
            assert_eq!(rows_on_disk(db.path()), i as i64 + 1);
        }
    });
    // No clean close: the writer thread and its connection are leaked, never shut down.
    std::mem::forget(log);
    let reopened = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    let got = reopened.query(&AuditFilter::default()).unwrap();
    assert_eq!(got, (0..5).map(record).collect::<Vec<_>>());
}

/// Run only as the child of [`durable_records_survive_a_process_abort`].
#[test]
fn crash_child() {
    let Ok(path) = std::env::var("PORTCULLIS_AUDIT_CRASH_CHILD") else {
        return;
    };
    let log = AuditLog::open(&path, AuditMode::Durable).unwrap();
    rt().block_on(async {
        let log = &log;
        let tasks: Vec<_> = (0..100u64)
            .map(|i| async move { log.append(record(i)).await.unwrap() })
            .collect();
        for t in tasks {
            t.await;
        }
    });
    // Every append has returned: die without closing anything.
    std::process::abort();
}

#[test]
fn durable_records_survive_a_process_abort() {
    let db = TempDb::new("abort");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("PORTCULLIS_AUDIT_CRASH_CHILD", db.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child should have aborted");
    assert_eq!(rows_on_disk(db.path()), 100);
    let log = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    let got = log.query(&AuditFilter::default()).unwrap();
    assert_eq!(got.len(), 100);
}

/// A forwarded call's write-ahead record: the record `i` with its intent key and no answer.
fn begun(i: u64) -> AuditRecord {
    let mut r = record(i);
    r.intent = Some(i);
    r.upstream_status = None;
    r.upstream_ms = None;
    r
}

/// The answer's record of [`begun`]`(i)`.
fn answered(i: u64) -> AuditRecord {
    let mut r = record(i);
    r.intent = Some(i);
    r
}

#[test]
fn a_forwarded_call_is_on_disk_before_it_goes_up_and_its_answer_completes_the_same_row() {
    let db = TempDb::new("write-ahead");
    let log = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    assert!(log.writes_ahead());
    rt().block_on(async {
        log.begin(begun(1)).await.unwrap();
        assert_eq!(rows_on_disk(db.path()), 1, "committed when begin returns");
        let got = log.query(&AuditFilter::default()).unwrap();
        assert_eq!(got[0].upstream_status.as_deref(), Some(IN_FLIGHT));
        assert_eq!(got[0].upstream_ms, None);
        log.append(answered(1)).await.unwrap();
    });
    assert_eq!(
        rows_on_disk(db.path()),
        1,
        "completed in place, not a second row"
    );
    let got = log.query(&AuditFilter::default()).unwrap();
    assert_eq!(got, vec![record(1)]);
    // The completed row is no longer in flight: nothing to settle, even for a dead owner.
    assert_eq!(log.settle_unfinished().unwrap(), 0);
    // An answer whose write-ahead row is missing (its begin failed) stands alone.
    rt().block_on(log.append(answered(2))).unwrap();
    assert_eq!(rows_on_disk(db.path()), 2);
}

/// A completion writes the call's outcome into its row (the decision, when the upstream was
/// lost; the message; the status and timings; the counters) and leaves the columns that name
/// the call as the write-ahead wrote them.
#[test]
fn an_answer_completes_the_outcome_of_its_row_and_leaves_the_call_as_written() {
    let db = TempDb::new("complete-outcome");
    let log = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    let mut lost = answered(3);
    lost.decision = AuditDecision::Error;
    lost.message = Some("the upstream stopped".into());
    lost.upstream_status = Some("lost: connection reset".into());
    lost.upstream_ms = Some(40);
    lost.gateway_us = 7;
    lost.counters = vec!["grant:g:calls:day".into()];
    let mut renamed = lost.clone();
    renamed.tool = Some("another_tool".into());
    renamed.grant_label = Some("someone else".into());
    renamed.time += 5;
    rt().block_on(async {
        log.begin(begun(3)).await.unwrap();
        log.append(renamed).await.unwrap();
    });
    let mut want = lost;
    want.intent = None;
    assert_eq!(log.query(&AuditFilter::default()).unwrap(), vec![want]);
}

/// The answer of a call written ahead does not wait for a second commit: `complete` resolves
/// once the record is queued, also while nothing can be committed (another connection holds
/// the database's write lock), where `append` waits; the queued answer still completes its row.
#[test]
fn a_written_ahead_calls_answer_is_queued_not_awaited() {
    let db = TempDb::new("complete");
    let log = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    let rt = rt();
    rt.block_on(log.begin(begun(1))).unwrap();
    let blocker = Connection::open(db.path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    rt.block_on(async {
        let bound = std::time::Duration::from_secs(3); // far below the writer's 5 s busy wait
        tokio::time::timeout(bound, log.complete(answered(1)))
            .await
            .expect("complete waited for a commit that cannot happen yet")
            .unwrap();
        // The control: a plain record does wait for its commit.
        let append = log.append(record(2));
        tokio::pin!(append);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(300), &mut append)
                .await
                .is_err(),
            "append resolved while the write lock was held"
        );
        blocker.execute_batch("COMMIT").unwrap();
        append.await.unwrap();
        log.flush().await.unwrap();
    });
    assert_eq!(
        log.query(&AuditFilter::default()).unwrap(),
        vec![record(1), record(2)],
        "the first row completed in place"
    );
}

#[test]
fn async_mode_writes_no_write_ahead_row() {
    let db = TempDb::new("write-ahead-async");
    let log = AuditLog::open(db.path(), AuditMode::Async { max_delay_ms: 5 }).unwrap();
    assert!(!log.writes_ahead());
    rt().block_on(async {
        log.begin(begun(1)).await.unwrap();
        log.flush().await.unwrap();
        assert_eq!(rows_on_disk(db.path()), 0);
        log.append(answered(1)).await.unwrap();
        log.flush().await.unwrap();
    });
    assert_eq!(log.query(&AuditFilter::default()).unwrap(), vec![record(1)]);
}

/// Run only as the child of [`calls_in_flight_at_a_crash_show_as_outcome_unknown`]: ten calls
/// forwarded, four answered, then the process dies.
#[test]
fn in_flight_child() {
    let Ok(path) = std::env::var("PORTCULLIS_AUDIT_IN_FLIGHT_CHILD") else {
        return;
    };
    let log = AuditLog::open(&path, AuditMode::Durable).unwrap();
    rt().block_on(async {
        for i in 0..10 {
            log.begin(begun(i)).await.unwrap();
        }
        for i in 0..4 {
            log.append(answered(i)).await.unwrap();
        }
    });
    std::process::abort();
}

#[test]
fn calls_in_flight_at_a_crash_show_as_outcome_unknown() {
    let db = TempDb::new("in-flight");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "in_flight_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PORTCULLIS_AUDIT_IN_FLIGHT_CHILD", db.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child should have aborted");
    assert_eq!(
        rows_on_disk(db.path()),
        10,
        "every forwarded call has its row"
    );
    let log = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    let status = |log: &AuditLog| -> Vec<Option<String>> {
        log.query(&AuditFilter::default())
            .unwrap()
            .into_iter()
            .map(|r| r.upstream_status)
            .collect()
    };
    let before = status(&log);
    assert_eq!(before[..4], vec![Some("ok".to_string()); 4]);
    assert_eq!(before[4..], vec![Some(IN_FLIGHT.to_string()); 6]);
    // The child is gone: its six unanswered calls are settled as outcome unknown, once.
    assert_eq!(log.settle_unfinished().unwrap(), 6);
    assert_eq!(log.settle_unfinished().unwrap(), 0);
    let after = status(&log);
    assert_eq!(after[..4], vec![Some("ok".to_string()); 4]);
    assert_eq!(after[4..], vec![Some(OUTCOME_UNKNOWN.to_string()); 6]);
    // This process's own calls in flight are left alone (it still runs).
    rt().block_on(log.begin(begun(20))).unwrap();
    assert_eq!(log.settle_unfinished().unwrap(), 0);
}

/// A version 1 database (the first release's table) gains the columns added since — the
/// write-ahead `intent`, the OAuth principal's `issuer`, `subject` and `client_id` — keeps its
/// records, and opening it again adds nothing twice.
#[test]
fn a_version_1_database_gains_the_columns_added_since() {
    let db = TempDb::new("v1");
    {
        let c = Connection::open(db.path()).unwrap();
        c.execute_batch(
            "CREATE TABLE meta (name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE audit (id INTEGER PRIMARY KEY, time INTEGER NOT NULL, request_id TEXT,
               grant_id TEXT, grant_label TEXT, server TEXT NOT NULL, session TEXT,
               method TEXT NOT NULL, tool TEXT, decision TEXT NOT NULL, rule TEXT, message TEXT,
               policy_name TEXT, policy_hash TEXT, arg_keys TEXT, args_hmac TEXT, args TEXT,
               upstream_status TEXT, upstream_ms INTEGER, gateway_us INTEGER NOT NULL,
               counters TEXT);
             INSERT INTO audit (time, server, method, decision, gateway_us)
               VALUES (1, 'odoo', 'tools/list', 'allow', 3);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let log = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    rt().block_on(async {
        log.begin(begun(1)).await.unwrap();
        log.append(answered(1)).await.unwrap();
    });
    let mut oauth = record(2);
    oauth.issuer = Some("https://id.example".into());
    oauth.subject = Some("alice".into());
    oauth.client_id = Some("app".into());
    log.append_blocking(oauth.clone()).unwrap();
    let got = log.query(&AuditFilter::default()).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].method, "tools/list");
    assert_eq!(got[0].subject, None);
    assert_eq!(got[1], record(1));
    assert_eq!(got[2], oauth);
    drop(log);
    let log = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    assert_eq!(log.query(&AuditFilter::default()).unwrap().len(), 3);
}

#[test]
fn ten_thousand_concurrent_appends_each_stored_once() {
    let db = TempDb::new("concurrent");
    let log = Arc::new(AuditLog::open(db.path(), AuditMode::Durable).unwrap());
    rt().block_on(async {
        let mut handles = Vec::new();
        for t in 0..64u64 {
            let log = Arc::clone(&log);
            handles.push(tokio::spawn(async move {
                let mut i = t;
                while i < 10_000 {
                    log.append(record(i)).await.unwrap();
                    i += 64;
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    assert_eq!(rows_on_disk(db.path()), 10_000);
    let got = log.query(&AuditFilter::default()).unwrap();
    let mut ids: Vec<String> = got.into_iter().map(|r| r.request_id.unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10_000);
    let stats = log.stats();
    assert_eq!(stats.committed, 10_000);
    assert_eq!(stats.failed, 0);
    // Group commit: fewer transactions than records (how many fewer depends on the disk's
    // fsync latency: on a RAM disk commits are so quick that batches stay small).
    assert!(stats.batches < 10_000, "{stats:?}");
    assert_eq!(stats.batch_sizes.iter().sum::<u64>(), stats.batches);
}

#[test]
fn async_mode_commits_within_the_delay_and_on_flush() {
    let db = TempDb::new("async");
    let log = AuditLog::open(db.path(), AuditMode::Async { max_delay_ms: 50 }).unwrap();
    rt().block_on(async {
        for i in 0..100 {
            log.append(record(i)).await.unwrap();
        }
        // Within the loss window the records may not be on disk yet; after it they are.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while rows_on_disk(db.path()) < 100 {
            assert!(
                std::time::Instant::now() < deadline,
                "not committed in time"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        log.append(record(100)).await.unwrap();
        log.flush().await.unwrap();
        assert_eq!(rows_on_disk(db.path()), 101);
    });
    // Closing commits whatever is queued.
    for i in 101..200 {
        log.append_blocking(record(i)).unwrap();
    }
    log.close().unwrap();
    assert_eq!(rows_on_disk(db.path()), 200);
}

/// The writer counts each commit in the bucket of its size (1, 2, 4, … 1024, more), for the
/// metrics' batch-size histogram: a hundred records gathered by async mode's delay are one
/// commit of at most 128 records, a lone record one commit of 1.
#[test]
fn commits_are_counted_by_batch_size() {
    let db = TempDb::new("batch-sizes");
    let log = AuditLog::open(
        db.path(),
        AuditMode::Async {
            max_delay_ms: 60_000,
        },
    )
    .unwrap();
    let start = std::time::Instant::now();
    for i in 0..100 {
        log.append_blocking(record(i)).unwrap();
    }
    log.flush_blocking().unwrap();
    log.append_blocking(record(100)).unwrap();
    log.flush_blocking().unwrap();
    // A flush right behind a record commits at once, never after the 60 s delay (its wake-up
    // could be lost while the writer was taking that record).
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let stats = log.stats();
    assert_eq!(stats.committed, 101, "{stats:?}");
    assert_eq!(stats.batches, 2, "{stats:?}");
    let mut want = [0u64; portcullis_store::BATCH_SIZE_BOUNDS.len() + 1];
    want[0] = 1; // 1 record
    want[7] = 1; // 65 to 128 records
    assert_eq!(stats.batch_sizes, want, "{stats:?}");
    assert_eq!(portcullis_store::BATCH_SIZE_BOUNDS[7], 128);
}

#[test]
fn blocking_api_works_outside_a_runtime() {
    let db = TempDb::new("blocking");
    let log = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    log.append_blocking(record(1)).unwrap();
    assert_eq!(rows_on_disk(db.path()), 1);
    log.flush_blocking().unwrap();
}

fn seeded(db: &TempDb) -> AuditLog {
    let log = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    let mut recs = Vec::new();
    for i in 0..30u64 {
        let mut r = record(i * MIN);
        r.request_id = Some(format!("r{i}"));
        if i % 3 == 1 {
            r.decision = AuditDecision::Deny;
            r.rule = Some("/tools/ai_pipeline_run/limits/0".into());
        }
        if i % 5 == 0 {
            r.tool = Some("search_read".into());
        }
        if i % 2 == 0 {
            r.grant_id = Some("grt_ffffffffffffffff".into());
            r.grant_label = Some("ci-runner".into());
        }
        if i == 29 {
            r.server = "time".into();
        }
        recs.push(r);
    }
    for r in recs {
        log.append_blocking(r).unwrap();
    }
    log
}

fn ids(recs: &[AuditRecord]) -> Vec<u64> {
    recs.iter()
        .map(|r| r.request_id.as_ref().unwrap()[1..].parse().unwrap())
        .collect()
}

#[test]
fn query_filters() {
    let db = TempDb::new("query");
    let log = seeded(&db);
    let q = |f: AuditFilter| ids(&log.query(&f).unwrap());
    assert_eq!(q(AuditFilter::default()), (0..30).collect::<Vec<_>>());
    assert_eq!(
        q(AuditFilter {
            since: Some(NOW + 25 * MIN),
            ..Default::default()
        }),
        vec![25, 26, 27, 28, 29]
    );
    assert_eq!(
        q(AuditFilter {
            since: Some(NOW + 2 * MIN),
            until: Some(NOW + 5 * MIN),
            ..Default::default()
        }),
        vec![2, 3, 4]
    );
    assert_eq!(
        q(AuditFilter {
            decision: Some(AuditDecision::Deny),
            ..Default::default()
        }),
        (0..30).filter(|i| i % 3 == 1).collect::<Vec<_>>()
    );
    assert_eq!(
        q(AuditFilter {
            tool: Some("search_read".into()),
            ..Default::default()
        }),
        vec![0, 5, 10, 15, 20, 25]
    );
    // A grant by label or by id.
    let odd: Vec<u64> = (0..30).filter(|i| i % 2 == 1).collect();
    assert_eq!(
        q(AuditFilter {
            grant: Some("alice-laptop".into()),
            ..Default::default()
        }),
        odd
    );
    assert_eq!(
        q(AuditFilter {
            grant: Some("grt_0123456789abcdef".into()),
            ..Default::default()
        }),
        odd
    );
    assert_eq!(
        q(AuditFilter {
            server: Some("time".into()),
            ..Default::default()
        }),
        vec![29]
    );
    // Several criteria at once; a limit keeps the most recent, oldest first.
    assert_eq!(
        q(AuditFilter {
            grant: Some("ci-runner".into()),
            decision: Some(AuditDecision::Deny),
            tool: Some("ai_pipeline_run".into()),
            ..Default::default()
        }),
        vec![4, 16, 22, 28]
    );
    assert_eq!(
        q(AuditFilter {
            limit: Some(3),
            ..Default::default()
        }),
        vec![27, 28, 29]
    );
    assert_eq!(
        log.count(&AuditFilter {
            decision: Some(AuditDecision::Deny),
            limit: Some(1),
            ..Default::default()
        })
        .unwrap(),
        10
    );
}

#[test]
fn retention_deletes_only_older_records() {
    let db = TempDb::new("retain");
    let log = seeded(&db);
    assert_eq!(log.retain(NOW + 10 * MIN).unwrap(), 10);
    assert_eq!(
        ids(&log.query(&AuditFilter::default()).unwrap()),
        (10..30).collect::<Vec<_>>()
    );
    assert_eq!(log.retain(NOW + 10 * MIN).unwrap(), 0);
    // New appends still work after retention.
    log.append_blocking(record(99 * MIN)).unwrap();
    assert_eq!(log.count(&AuditFilter::default()).unwrap(), 21);
}

#[test]
fn retention_in_chunks() {
    let db = TempDb::new("retain-big");
    let log = Arc::new(AuditLog::open(db.path(), AuditMode::Async { max_delay_ms: 5 }).unwrap());
    rt().block_on(async {
        for i in 0..25_000 {
            log.append(record(i)).await.unwrap();
        }
        log.flush().await.unwrap();
    });
    assert_eq!(log.retain(NOW + 24_000).unwrap(), 24_000);
    assert_eq!(rows_on_disk(db.path()), 1_000);
}

#[test]
fn jsonl_export_round_trips() {
    let db = TempDb::new("export");
    let log = seeded(&db);
    let mut buf = Vec::new();
    let filter = AuditFilter {
        decision: Some(AuditDecision::Deny),
        ..Default::default()
    };
    let n = log.export_jsonl(&mut buf, &filter).unwrap();
    assert_eq!(n, 10);
    let text = String::from_utf8(buf).unwrap();
    assert_eq!(text.lines().count(), 10);
    assert!(text.ends_with('\n'));
    let parsed: Vec<AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed, log.query(&filter).unwrap());
    // Every field is present in every line (stable shape for log pipelines).
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for field in [
        "time",
        "request_id",
        "grant_id",
        "grant_label",
        "server",
        "session",
        "method",
        "tool",
        "decision",
        "rule",
        "message",
        "policy_name",
        "policy_hash",
        "arg_keys",
        "args_hmac",
        "args",
        "upstream_status",
        "upstream_ms",
        "gateway_us",
        "counters",
    ] {
        assert!(first.get(field).is_some(), "missing {field}");
    }
    assert_eq!(first["decision"], "deny");
}

#[test]
fn argument_values_are_kept_only_when_asked() {
    let db = TempDb::new("args");
    let log = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    let args = json!({"zeta": 1, "amount": 12345.5, "method": "unlink_secret_value"});
    let mut hidden = record(1);
    log.set_args(&mut hidden, &args, false);
    assert_eq!(hidden.arg_keys, vec!["amount", "method", "zeta"]);
    assert_eq!(hidden.args, None);
    let hmac = hidden.args_hmac.clone().unwrap();
    assert_eq!(hmac.len(), 64);
    // Keyed and canonical: the same arguments in another key order hash the same…
    assert_eq!(
        log.args_hmac(&json!({"method": "unlink_secret_value", "zeta": 1, "amount": 12345.5})),
        hmac
    );
    assert_ne!(log.args_hmac(&json!({"zeta": 2})), hmac);
    let mut shown = record(2);
    log.set_args(&mut shown, &args, true);
    assert_eq!(shown.args, Some(args.clone()));
    log.append_blocking(hidden).unwrap();
    log.append_blocking(shown).unwrap();
    log.close().unwrap();

    // The value appears once in the file (the record that asked for it), never in the other.
    let c = Connection::open(db.path()).unwrap();
    // Every column of each row, as text.
    let mut stmt = c.prepare("SELECT * FROM audit ORDER BY id").unwrap();
    let n = stmt.column_count();
    let texts: Vec<String> = stmt
        .query_map([], |r| {
            Ok((0..n)
                .map(|i| match r.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(texts[0].contains("zeta"), "{}", texts[0]);
    assert!(!texts[0].contains("unlink_secret_value"));
    assert!(!texts[0].contains("12345.5"));
    assert!(texts[1].contains("unlink_secret_value"));

    // …and another log (another key) hashes them differently; a reopened one the same.
    let other = TempDb::new("args-other");
    let log2 = AuditLog::open(other.path(), AuditMode::Durable).unwrap();
    assert_ne!(log2.args_hmac(&args), hmac);
    let log3 = AuditLog::open(db.path(), AuditMode::Durable).unwrap();
    assert_eq!(log3.args_hmac(&args), hmac);
}

#[test]
fn arg_keys_of_non_objects_are_empty() {
    assert!(arg_keys(&json!([1, 2])).is_empty());
    assert!(arg_keys(&json!(null)).is_empty());
    assert_eq!(arg_keys(&json!({"b": 1, "a": {"z": 1}})), vec!["a", "b"]);
}

#[test]
fn decision_names() {
    for d in AuditDecision::ALL {
        assert_eq!(d.as_str().parse::<AuditDecision>().unwrap(), d);
        assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
    }
    assert_eq!("denied".parse::<AuditDecision>(), Ok(AuditDecision::Deny));
    assert_eq!("Allowed".parse::<AuditDecision>(), Ok(AuditDecision::Allow));
    assert!("maybe"
        .parse::<AuditDecision>()
        .unwrap_err()
        .contains("allow, deny"));
}

#[test]
fn mode_names() {
    assert_eq!("durable".parse(), Ok(AuditMode::Durable));
    assert_eq!(
        "async".parse(),
        Ok(AuditMode::Async {
            max_delay_ms: portcullis_store::audit::DEFAULT_ASYNC_DELAY_MS
        })
    );
    assert_eq!(
        "async:250ms".parse(),
        Ok(AuditMode::Async { max_delay_ms: 250 })
    );
    assert!("async:soon".parse::<AuditMode>().is_err());
    assert!("fast".parse::<AuditMode>().unwrap_err().contains("durable"));
}
