//! The audit log's columns added after its first release (the OAuth principal's issuer,
//! subject and client id): an older log gains them on open and keeps its records.

use portcullis_store::{AuditDecision, AuditFilter, AuditLog, AuditMode, AuditRecord};

#[test]
fn an_older_log_gains_the_principal_columns() {
    let dir = std::env::temp_dir().join(format!("portcullis-audit-columns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.db");
    {
        // The first release's table, with one record.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE audit (id INTEGER PRIMARY KEY, time INTEGER NOT NULL, request_id TEXT,
               grant_id TEXT, grant_label TEXT, server TEXT NOT NULL, session TEXT,
               method TEXT NOT NULL, tool TEXT, decision TEXT NOT NULL, rule TEXT, message TEXT,
               policy_name TEXT, policy_hash TEXT, arg_keys TEXT, args_hmac TEXT, args TEXT,
               upstream_status TEXT, upstream_ms INTEGER, gateway_us INTEGER NOT NULL,
               counters TEXT);
             INSERT INTO audit (time, server, method, decision, gateway_us)
               VALUES (1000, 'old', 'tools/list', 'allow', 5);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let log = AuditLog::open(&path, AuditMode::Durable).unwrap();
    let mut rec = AuditRecord::new(2000, "new", "tools/call", AuditDecision::Allow);
    rec.issuer = Some("https://id.example".into());
    rec.subject = Some("alice".into());
    rec.client_id = Some("app".into());
    log.append_blocking(rec.clone()).unwrap();
    let all = log.query(&AuditFilter::default()).unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        (all[0].server.as_str(), all[0].subject.as_deref()),
        ("old", None)
    );
    assert_eq!(all[1], rec);
    drop(log);
    // Opening again adds nothing twice.
    let log = AuditLog::open(&path, AuditMode::Durable).unwrap();
    assert_eq!(log.query(&AuditFilter::default()).unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
