//! `portcullis grant …` and `portcullis audit …` against a temporary data directory.

use portcullis_store::grants::{GRANTS_FILE, TOKEN_PREFIX};
use portcullis_store::{
    AuditDecision, AuditLog, AuditMode, AuditRecord, AuthError, GrantStore, SqliteGrants,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::Scratch;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A fresh directory with a config naming servers `odoo` and `time` (which has a policy of its
/// own) and `data_dir = "data"`.
fn with_config(name: &str) -> Scratch {
    let d = Scratch::new(name);
    std::fs::write(
        d.join("portcullis.toml"),
        "[gateway]\ndata_dir = \"data\"\n\n\
         [[servers]]\nname = \"odoo\"\ncommand = [\"true\"]\nauth = \"none\"\n\n\
         [[servers]]\nname = \"time\"\ncommand = [\"true\"]\nauth = \"none\"\npolicy = \"time.json\"\n",
    )
    .unwrap();
    d
}

/// Runs the binary in `cwd`.
fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

fn ok(cwd: &Path, args: &[&str]) -> (String, String) {
    let out = run(cwd, args);
    let (so, se) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "{args:?} failed:\n{so}\n{se}");
    (so, se)
}

fn fails(cwd: &Path, args: &[&str]) -> String {
    let out = run(cwd, args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// The tokens printed in `text`.
fn tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(TOKEN_PREFIX) {
        let t: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !out.contains(&t) {
            out.push(t.clone());
        }
        rest = &rest[i + t.len()..];
    }
    out
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn grant_lifecycle() {
    let d = with_config("lifecycle");
    let cwd = &d.0;
    let (out, _) = ok(
        cwd,
        &[
            "grant",
            "create",
            "--server",
            "odoo",
            "--label",
            "alice-laptop",
            "--policy",
            "odoo",
            "--expires",
            "30d",
        ],
    );
    assert!(out.contains("store it now; it is not shown again"), "{out}");
    assert!(out.contains("\"Authorization\": \"Bearer pcx_"), "{out}");
    assert!(out.contains("http://127.0.0.1:8480/mcp/odoo"), "{out}");
    let t = tokens(&out);
    assert_eq!(t.len(), 1, "{out}");
    let token = t[0].clone();
    assert_eq!(token.len(), TOKEN_PREFIX.len() + 64);

    // The store (as the gateway would open it) accepts the token for odoo only.
    let db = cwd.join("data").join(GRANTS_FILE);
    let store = SqliteGrants::open(&db).unwrap();
    let g = store.authenticate(&token, "odoo", now()).unwrap();
    assert_eq!(g.label, "alice-laptop");
    assert_eq!(g.policy.as_deref(), Some("odoo"));
    assert!(g.expires_at.unwrap() > now() + 29 * 86_400_000);
    assert!(matches!(
        store.authenticate(&token, "time", now()),
        Err(AuthError::WrongServer { .. })
    ));

    // list: the grant, never a token.
    let (table, _) = ok(cwd, &["grant", "list"]);
    assert!(
        table.contains("alice-laptop") && table.contains("active"),
        "{table}"
    );
    assert!(tokens(&table).is_empty());
    let (json, _) = ok(cwd, &["grant", "list", "--json"]);
    assert!(tokens(&json).is_empty());
    let list: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list[0]["id"], g.id.as_str());
    assert_eq!(list[0]["status"], "active");
    let (none, _) = ok(cwd, &["grant", "list", "--server", "time", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&none).unwrap(),
        serde_json::json!([])
    );

    // rotate by label: a new token; the old one is unknown at once.
    let (out, _) = ok(cwd, &["grant", "rotate", "alice-laptop"]);
    let new = tokens(&out);
    assert_eq!(new.len(), 1);
    assert_ne!(new[0], token);
    assert_eq!(
        store.authenticate(&token, "odoo", now()),
        Err(AuthError::Unknown)
    );
    assert_eq!(store.authenticate(&new[0], "odoo", now()).unwrap().id, g.id);

    // rotate --json by id.
    let (out, _) = ok(cwd, &["grant", "rotate", &g.id, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let newest = v["token"].as_str().unwrap().to_owned();
    assert_eq!(v["grant"]["id"], g.id.as_str());
    assert!(store.authenticate(&newest, "odoo", now()).is_ok());

    // revoke: refused as revoked, listed as revoked.
    let (out, _) = ok(cwd, &["grant", "revoke", &g.id]);
    assert!(out.contains("Revoked grant"), "{out}");
    assert!(matches!(
        store.authenticate(&newest, "odoo", now()),
        Err(AuthError::Revoked(_))
    ));
    let (table, _) = ok(cwd, &["grant", "list"]);
    assert!(table.contains("revoked"), "{table}");
    let err = fails(cwd, &["grant", "revoke", &g.id]);
    assert!(err.contains("revoked"), "{err}");

    // The file never held a token.
    let bytes = std::fs::read(&db).unwrap();
    for t in [&token, &new[0], &newest] {
        assert!(!bytes.windows(t.len()).any(|w| w == t.as_bytes()));
    }
}

#[test]
fn grant_errors_say_what_to_do() {
    let d = with_config("errors");
    let cwd = &d.0;
    // No grant database yet.
    let err = fails(cwd, &["grant", "rotate", "ghost"]);
    assert!(err.contains("grant create"), "{err}");
    let err = fails(
        cwd,
        &["grant", "create", "--server", "nope", "--label", "x"],
    );
    assert!(
        err.contains("no server \"nope\"") && err.contains("odoo, time"),
        "{err}"
    );
    let err = fails(
        cwd,
        &[
            "grant",
            "create",
            "--server",
            "odoo",
            "--label",
            "bad label",
        ],
    );
    assert!(err.contains("label"), "{err}");
    let err = fails(
        cwd,
        &[
            "grant",
            "create",
            "--server",
            "odoo",
            "--label",
            "x",
            "--expires",
            "whenever",
        ],
    );
    assert!(err.contains("--expires"), "{err}");
    // A server without a policy of its own: say which to choose.
    let err = fails(
        cwd,
        &["grant", "create", "--server", "odoo", "--label", "nopol"],
    );
    assert!(
        err.contains("no policy of its own") && err.contains("--no-policy"),
        "{err}"
    );
    // A server with one: the grant carries it, and says so.
    let (out, _) = ok(
        cwd,
        &["grant", "create", "--server", "time", "--label", "clock"],
    );
    assert!(out.contains("policy \"time\""), "{out}");
    // No policy, asked for: created, with a warning that every call will be denied.
    let (_, warn) = ok(
        cwd,
        &[
            "grant",
            "create",
            "--server",
            "odoo",
            "--label",
            "nopol",
            "--no-policy",
        ],
    );
    assert!(warn.contains("(no policy)"), "{warn}");
    let err = fails(
        cwd,
        &[
            "grant",
            "create",
            "--server",
            "odoo",
            "--label",
            "nopol",
            "--no-policy",
        ],
    );
    assert!(err.contains("already has a live grant"), "{err}");
    let err = fails(cwd, &["grant", "rotate", "ghost"]);
    assert!(
        err.contains("no grant has the id or label \"ghost\""),
        "{err}"
    );
    let err = fails(cwd, &["grant", "list", "--config", "missing.toml"]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn without_a_config_the_default_data_dir_is_used() {
    let d = Scratch::new("noconfig");
    let cwd = &d.0;
    let (out, note) = ok(
        cwd,
        &[
            "grant", "create", "--server", "anything", "--label", "a", "--policy", "p",
        ],
    );
    assert!(note.contains("./portcullis-data"), "{note}");
    assert_eq!(tokens(&out).len(), 1);
    assert!(cwd.join("portcullis-data").join(GRANTS_FILE).exists());
    // --data-dir elsewhere: no note, another store.
    let (out, note) = ok(cwd, &["grant", "list", "--data-dir", "other"]);
    assert!(!note.contains("note:"), "{note}");
    assert!(out.is_empty());
}

fn rec(time: u64, i: u32, decision: AuditDecision, tool: &str, label: &str) -> AuditRecord {
    let mut r = AuditRecord::new(time, "odoo", "tools/call", decision);
    r.request_id = Some(format!("r{i}"));
    r.grant_id = Some(format!("grt_{label:0>16}"));
    r.grant_label = Some(label.into());
    r.tool = Some(tool.into());
    if decision == AuditDecision::Deny {
        r.rule = Some(format!("/tools/{tool}/deny_if/0"));
        r.message = Some("refused by policy".into());
    }
    r
}

#[test]
fn audit_query_export_and_retention() {
    let d = with_config("audit");
    let cwd = &d.0;
    let err = fails(cwd, &["audit"]);
    assert!(err.contains("no audit log"), "{err}");

    let data = cwd.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let t = now();
    const H: u64 = 3_600_000;
    {
        let log = AuditLog::open(data.join("audit.db"), AuditMode::Durable).unwrap();
        let recs = [
            rec(t - 48 * H, 0, AuditDecision::Allow, "search_read", "alice"),
            rec(
                t - 3 * H,
                1,
                AuditDecision::Deny,
                "ai_pipeline_run",
                "alice",
            ),
            rec(
                t - 30 * 60_000,
                2,
                AuditDecision::Allow,
                "ai_pipeline_run",
                "bob",
            ),
            rec(
                t - 20 * 60_000,
                3,
                AuditDecision::Deny,
                "ai_pipeline_run",
                "bob",
            ),
            rec(t - 10 * 60_000, 4, AuditDecision::Deny, "unlink", "alice"),
        ];
        for r in recs {
            log.append_blocking(r).unwrap();
        }
    }
    let ids = |json: &str| -> Vec<String> {
        serde_json::from_str::<Vec<Value>>(json)
            .unwrap()
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (all, _) = ok(cwd, &["audit", "--json"]);
    assert_eq!(ids(&all), ["r0", "r1", "r2", "r3", "r4"]);
    let (x, _) = ok(cwd, &["audit", "--since", "1h", "--json"]);
    assert_eq!(ids(&x), ["r2", "r3", "r4"]);
    let (x, _) = ok(cwd, &["audit", "--decision", "denied", "--json"]);
    assert_eq!(ids(&x), ["r1", "r3", "r4"]);
    let (x, _) = ok(
        cwd,
        &[
            "audit",
            "--grant",
            "alice",
            "--tool",
            "ai_pipeline_run",
            "--json",
        ],
    );
    assert_eq!(ids(&x), ["r1"]);
    let (x, _) = ok(cwd, &["audit", "--server", "time", "--json"]);
    assert_eq!(ids(&x), Vec::<String>::new());
    let (x, _) = ok(cwd, &["audit", "--limit", "2", "--json"]);
    assert_eq!(ids(&x), ["r3", "r4"]);

    // The table.
    let (table, _) = ok(cwd, &["audit", "--decision", "deny"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("DECISION"),
        "{table}"
    );
    assert!(
        lines[3].contains("unlink") && lines[3].contains("/tools/unlink/deny_if/0"),
        "{table}"
    );
    let (_, more) = ok(cwd, &["audit", "--limit", "1"]);
    assert!(more.contains("showing the 1 most recent of 5"), "{more}");
    let err = fails(cwd, &["audit", "--decision", "maybe"]);
    assert!(err.contains("allow, deny"), "{err}");
    let err = fails(cwd, &["audit", "--since", "yesterday"]);
    assert!(err.contains("--since"), "{err}");

    // JSONL export round-trips.
    let (_, note) = ok(cwd, &["audit", "--grant", "bob", "--export", "bob.jsonl"]);
    assert!(note.contains("exported 2 records"), "{note}");
    let text = std::fs::read_to_string(cwd.join("bob.jsonl")).unwrap();
    let back: Vec<AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].grant_label.as_deref(), Some("bob"));
    assert_eq!(back[1].decision, AuditDecision::Deny);
    let (stdout, _) = ok(cwd, &["audit", "--export", "-"]);
    assert_eq!(stdout.lines().count(), 5);

    // Retention.
    let (out, _) = ok(cwd, &["audit", "retain", "--older-than", "1d", "--dry-run"]);
    assert!(out.starts_with("1 records"), "{out}");
    let (out, _) = ok(cwd, &["audit", "retain", "--older-than", "1d"]);
    assert!(out.contains("Deleted 1 records"), "{out}");
    let (all, _) = ok(cwd, &["audit", "--json"]);
    assert_eq!(ids(&all), ["r1", "r2", "r3", "r4"]);
    let err = fails(cwd, &["audit", "retain", "--older-than", "forever"]);
    assert!(err.contains("--older-than"), "{err}");
}

#[test]
fn the_table_says_when_more_records_match_than_it_shows() {
    let d = with_config("audit-more");
    let cwd = &d.0;
    let data = cwd.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let t = now();
    {
        let log = AuditLog::open(data.join("audit.db"), AuditMode::Durable).unwrap();
        for i in 0..101u32 {
            let r = rec(
                t - 1000 + u64::from(i),
                i,
                AuditDecision::Allow,
                "read",
                "alice",
            );
            log.append_blocking(r).unwrap();
        }
    }
    let rows = |table: &str| table.lines().filter(|l| l.contains(" read ")).count();

    // The default view: 100 rows, and a note on stderr about the 101st.
    let (out, err) = ok(cwd, &["audit"]);
    assert_eq!(rows(&out), 100, "{out}");
    assert!(
        err.contains("showing the 100 most recent of 101 matching records (use --limit 0 for all)"),
        "{err}"
    );
    // Everything: no note.
    let (out, err) = ok(cwd, &["audit", "--limit", "0"]);
    assert_eq!(rows(&out), 101, "{out}");
    assert!(!err.contains("showing"), "{err}");
    // Exactly as many as match: no note either.
    let (_, err) = ok(cwd, &["audit", "--limit", "101"]);
    assert!(!err.contains("showing"), "{err}");
}

/// Runs the binary with its standard output a pipe that the reader closes after one line, as
/// `portcullis … | head -1` does, and returns the exit status and standard error.
fn run_into_closed_pipe(cwd: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let mut child = Command::new(BIN)
        .current_dir(cwd)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "{args:?} printed nothing");
    // The reader is gone; the command still has far more than a pipe buffer to write.
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap(), err)
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let d = with_config("audit-pipe");
    let cwd = &d.0;
    let data = cwd.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let t = now();
    {
        let mode = AuditMode::Async { max_delay_ms: 10 };
        let log = AuditLog::open(data.join("audit.db"), mode).unwrap();
        for i in 0..3000u32 {
            let r = rec(
                t - 10_000 + u64::from(i),
                i,
                AuditDecision::Deny,
                "read",
                "alice",
            );
            log.append_blocking(r).unwrap();
        }
        log.flush_blocking().unwrap();
    }
    // Each writes well over a megabyte: JSON, the table, JSON Lines.
    for args in [
        &["audit", "--json", "--limit", "0"][..],
        &["audit", "--limit", "0"],
        &["audit", "--export", "-"],
    ] {
        let (status, err) = run_into_closed_pipe(cwd, args);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.to_lowercase().contains("backtrace"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
        assert!(status.success(), "{args:?}: {status:?}");
    }
}
