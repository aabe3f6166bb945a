//! `portcullis approvals list|show|approve|deny` against a temporary data directory: the
//! pending requests are made through the store, as the gateway makes them.

use portcullis_store::audit::AUDIT_FILE;
use portcullis_store::{
    ApprovalCheck, ApprovalRequest, ApprovalStatus, ApprovalStore, AuditDecision, AuditFilter,
    AuditLog, AuditMode, SqliteApprovals, APPROVALS_FILE,
};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::Scratch;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(cwd)
        .args(args)
        .env("USER", "tester")
        .output()
        .unwrap()
}

fn ok(cwd: &Path, args: &[&str]) -> String {
    let out = run(cwd, args);
    let (so, se) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "{args:?} failed:\n{so}\n{se}");
    so
}

fn fails(cwd: &Path, args: &[&str]) -> String {
    let out = run(cwd, args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn store(data: &Path) -> SqliteApprovals {
    std::fs::create_dir_all(data).unwrap();
    SqliteApprovals::open(data.join(APPROVALS_FILE)).unwrap()
}

/// Makes a pending request for `tool` (fingerprint `fp`), as the gateway would.
fn request(s: &SqliteApprovals, fp: &str, tool: &str, at: u64) -> String {
    let req = ApprovalRequest {
        fingerprint: fp.into(),
        grant_id: "grt_00000000000000aa".into(),
        grant_label: "agent-7".into(),
        server: "odoo".into(),
        tool: tool.into(),
        args: json!({"amount": 5000, "partner": {"name": "ACME"}}),
        rule: format!("/tools/{tool}/approve_if/0"),
        reason: "payments above 1000 need a human".into(),
        timeout_ms: 15 * 60_000,
    };
    match s.check(&req, at).unwrap() {
        ApprovalCheck::Pending { approval, new } => {
            assert!(new);
            approval.id
        }
        other => panic!("{other:?}"),
    }
}

fn audit_records(data: &Path) -> Vec<portcullis_store::AuditRecord> {
    let log = AuditLog::open(data.join(AUDIT_FILE), AuditMode::Durable).unwrap();
    log.query(&AuditFilter {
        decision: Some(AuditDecision::Approval),
        ..AuditFilter::default()
    })
    .unwrap()
}

#[test]
fn list_show_approve_deny_and_their_audit_records() {
    let dir = Scratch::new("lifecycle");
    let data = dir.join("data");
    let dd = data.to_str().unwrap();
    let cwd = &dir.0;

    // No store yet: an empty list, not an error.
    let out = ok(cwd, &["approvals", "list", "--data-dir", dd, "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([]));

    let s = store(&data);
    let t = now();
    let pay = request(&s, "fp-pay", "pay_invoice", t - 2000);
    let refund = request(&s, "fp-refund", "create_refund", t - 1000);

    // list: pending, newest first, table and JSON.
    let out = ok(cwd, &["approvals", "list", "--data-dir", dd]);
    assert!(out.starts_with("ID"), "{out}");
    let (i_refund, i_pay) = (out.find(&refund).unwrap(), out.find(&pay).unwrap());
    assert!(i_refund < i_pay, "{out}");
    assert!(
        out.contains("pay_invoice") && out.contains("agent-7"),
        "{out}"
    );
    let list: Value =
        serde_json::from_str(&ok(cwd, &["approvals", "list", "--data-dir", dd, "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["id"], refund.as_str());
    assert_eq!(list[0]["status"], "pending");

    // show: every field, the arguments pretty-printed.
    let out = ok(cwd, &["approvals", "show", &pay, "--data-dir", dd]);
    for want in [
        pay.as_str(),
        "pending",
        "pay_invoice",
        "agent-7 (grt_00000000000000aa)",
        "/tools/pay_invoice/approve_if/0",
        "payments above 1000 need a human",
        "\"amount\": 5000",
        "\"name\": \"ACME\"",
        "portcullis approvals approve",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let shown: Value = serde_json::from_str(&ok(
        cwd,
        &["approvals", "show", &pay, "--data-dir", dd, "--json"],
    ))
    .unwrap();
    assert_eq!(shown["args"]["partner"]["name"], "ACME");
    assert_eq!(shown["fingerprint"], "fp-pay");

    // approve: by $USER by default; validity from --valid-for.
    let out = ok(
        cwd,
        &[
            "approvals",
            "approve",
            &pay,
            "--valid-for",
            "5m",
            "--data-dir",
            dd,
        ],
    );
    assert!(
        out.contains(&format!("Approved {pay}")) && out.contains("by tester"),
        "{out}"
    );
    let a = s.get(&pay).unwrap();
    assert_eq!(a.status, ApprovalStatus::Approved);
    assert_eq!(a.decided_by.as_deref(), Some("tester"));
    assert_eq!(a.valid_until.unwrap() - a.decided_at.unwrap(), 5 * 60_000);

    // deny, with --by and --json.
    let out = ok(
        cwd,
        &[
            "approvals",
            "deny",
            &refund,
            "--reason",
            "not this supplier",
            "--by",
            "alice",
            "--json",
            "--data-dir",
            dd,
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "denied");
    assert_eq!(v["decided_by"], "alice");
    assert_eq!(v["decision_reason"], "not this supplier");

    // Nothing pending now; --status filters.
    let out = run(cwd, &["approvals", "list", "--data-dir", dd]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pending approval requests"));
    let all: Value = serde_json::from_str(&ok(
        cwd,
        &[
            "approvals",
            "list",
            "--status",
            "all",
            "--json",
            "--data-dir",
            dd,
        ],
    ))
    .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let denied: Value = serde_json::from_str(&ok(
        cwd,
        &[
            "approvals",
            "list",
            "--status",
            "denied",
            "--json",
            "--data-dir",
            dd,
        ],
    ))
    .unwrap();
    assert_eq!(denied[0]["id"], refund.as_str());

    // The gateway's next identical call consumes the approval.
    let req = ApprovalRequest {
        fingerprint: "fp-pay".into(),
        grant_id: String::new(),
        grant_label: String::new(),
        server: "odoo".into(),
        tool: "pay_invoice".into(),
        args: json!({}),
        rule: String::new(),
        reason: String::new(),
        timeout_ms: 60_000,
    };
    assert!(matches!(
        s.check(&req, now()).unwrap(),
        ApprovalCheck::Approved(_)
    ));

    // The audit records of both decisions.
    let records = audit_records(&data);
    assert_eq!(records.len(), 2, "{records:?}");
    let approved = records
        .iter()
        .find(|r| r.tool.as_deref() == Some("pay_invoice"))
        .unwrap();
    assert_eq!(approved.method, "(approval)");
    assert_eq!(approved.server, "odoo");
    assert_eq!(approved.grant_label.as_deref(), Some("agent-7"));
    assert_eq!(approved.grant_id.as_deref(), Some("grt_00000000000000aa"));
    assert_eq!(
        approved.rule.as_deref(),
        Some("/tools/pay_invoice/approve_if/0")
    );
    assert_eq!(
        approved.message.as_deref(),
        Some(format!("approved {pay} by tester").as_str())
    );
    let denied = records
        .iter()
        .find(|r| r.tool.as_deref() == Some("create_refund"))
        .unwrap();
    assert_eq!(
        denied.message.as_deref(),
        Some(format!("denied {refund} by alice: not this supplier").as_str())
    );
}

#[test]
fn errors_say_what_to_do() {
    let dir = Scratch::new("errors");
    let data = dir.join("data");
    let dd = data.to_str().unwrap();
    let cwd = &dir.0;

    // No approvals at all yet.
    let e = fails(
        cwd,
        &[
            "approvals",
            "approve",
            "apr_0000000000000000",
            "--data-dir",
            dd,
        ],
    );
    assert!(
        e.contains("no approvals in") && e.contains("--data-dir"),
        "{e}"
    );

    let s = store(&data);
    let id = request(&s, "fp", "pay_invoice", now());

    // Unknown id.
    let e = fails(
        cwd,
        &[
            "approvals",
            "show",
            "apr_ffffffffffffffff",
            "--data-dir",
            dd,
        ],
    );
    assert!(
        e.contains("apr_ffffffffffffffff") && e.contains("portcullis approvals list"),
        "{e}"
    );
    let e = fails(
        cwd,
        &[
            "approvals",
            "approve",
            "apr_ffffffffffffffff",
            "--data-dir",
            dd,
        ],
    );
    assert!(e.contains("portcullis approvals list"), "{e}");

    // Bad arguments.
    let e = fails(
        cwd,
        &["approvals", "list", "--status", "maybe", "--data-dir", dd],
    );
    assert!(
        e.contains("--status") && e.contains("pending") && e.contains("all"),
        "{e}"
    );
    let e = fails(
        cwd,
        &[
            "approvals",
            "approve",
            &id,
            "--valid-for",
            "soon",
            "--data-dir",
            dd,
        ],
    );
    assert!(e.contains("--valid-for") && e.contains("10m"), "{e}");
    let e = fails(
        cwd,
        &["approvals", "deny", &id, "--reason", " ", "--data-dir", dd],
    );
    assert!(e.contains("--reason"), "{e}");
    let e = fails(cwd, &["approvals", "deny", &id, "--data-dir", dd]);
    assert!(e.contains("--reason"), "{e}");

    // Approving a denied one: says it is denied and that the decision stands.
    ok(
        cwd,
        &["approvals", "deny", &id, "--reason", "no", "--data-dir", dd],
    );
    let e = fails(cwd, &["approvals", "approve", &id, "--data-dir", dd]);
    assert!(e.contains("denied") && e.contains("not pending"), "{e}");
    assert!(e.contains("retry makes a new request"), "{e}");
    // The failed attempt wrote no audit record.
    assert_eq!(audit_records(&data).len(), 1);

    // An expired request.
    let old = request(&s, "fp-old", "pay_invoice", now() - 16 * 60_000);
    let e = fails(cwd, &["approvals", "approve", &old, "--data-dir", dd]);
    assert!(e.contains("expired"), "{e}");
    let out = ok(cwd, &["approvals", "show", &old, "--data-dir", dd]);
    assert!(out.contains("expired"), "{out}");
}

#[test]
fn the_config_names_the_data_dir() {
    let dir = Scratch::new("config");
    std::fs::write(
        dir.0.join("portcullis.toml"),
        "[gateway]\ndata_dir = \"data\"\n\n[[servers]]\nname = \"odoo\"\ncommand = [\"true\"]\nauth = \"none\"\n",
    )
    .unwrap();
    let s = store(&dir.join("data"));
    let id = request(&s, "fp", "pay_invoice", now());
    // From the directory holding portcullis.toml, and with --config from elsewhere.
    let out = ok(&dir.0, &["approvals", "list"]);
    assert!(out.contains(&id), "{out}");
    let cfg = dir.0.join("portcullis.toml");
    let out = ok(
        &std::env::temp_dir(),
        &["approvals", "list", "--config", cfg.to_str().unwrap()],
    );
    assert!(out.contains(&id), "{out}");
}

#[test]
fn without_user_in_the_environment_the_account_name_decides() {
    let dir = Scratch::new("no-user");
    let data = dir.join("data");
    let dd = data.to_str().unwrap();
    let s = store(&data);
    let pay = request(&s, "fp-pay", "pay_invoice", now() - 1000);
    let me = Command::new("id").arg("-un").output().unwrap();
    let me = String::from_utf8(me.stdout).unwrap().trim().to_owned();
    assert!(!me.is_empty(), "`id -un` names the test's user");

    let out = Command::new(BIN)
        .current_dir(&dir.0)
        .args(["approvals", "approve", &pay, "--data-dir", dd])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()
        .unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "exit {:?}:\n{so}\n{se}", out.status);
    assert!(so.contains(&format!("by {me}")), "{so}");
    assert_eq!(
        s.get(&pay).unwrap().decided_by.as_deref(),
        Some(me.as_str())
    );
}
