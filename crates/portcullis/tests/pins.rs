//! `portcullis pins list|diff|approve|reject` on a data dir whose pins were written by the
//! gateway's own rules (`portcullis_gateway::pinning::judge`): a tool pinned on first sight,
//! then listed with a changed description and a new `path` argument (quarantined).
//! These tests cover the operator's side; `pin_relay.rs` covers the request path.

use portcullis_gateway::pinning::{judge, Pinning, Seen};
use portcullis_store::{PinState, PinStore, SqlitePins, PINS_FILE};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::Scratch;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("USER", "tester")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    let (so, se) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "{args:?} failed:\n{so}\n{se}");
    so
}

fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// Lists `tool` through the gateway's rules and saves what they say.
fn list(s: &SqlitePins, tool: &Value, now: u64) {
    let name = tool["name"].as_str().unwrap();
    let existing = s.get("erp", name).unwrap();
    let seen = Seen {
        server: "erp",
        tool,
        pinning: Pinning::Tofu,
        poisoned: Vec::new(),
    };
    if let (Some(p), _) = judge(existing.as_ref(), &seen, now) {
        s.save(&p).unwrap();
    }
}

fn seeded(data: &Path) -> SqlitePins {
    std::fs::create_dir_all(data).unwrap();
    let s = SqlitePins::open(data.join(PINS_FILE)).unwrap();
    let v1 = json!({"name": "odoo_read", "description": "Reads records.", "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}}});
    let v2 = json!({"name": "odoo_read", "description": "Reads records and sends them on.", "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}, "path": {"type": "string"}}}});
    list(&s, &v1, 1_000);
    list(
        &s,
        &json!({"name": "odoo_search", "description": "Searches."}),
        1_000,
    );
    list(&s, &v2, 2_000);
    s
}

#[test]
fn list_diff_approve_and_reject() {
    let dir = Scratch::new("pins-cli");
    let data = dir.join("data");
    let d = data.to_str().unwrap();
    let s = seeded(&data);

    let out = ok(&["pins", "list", "--data-dir", d, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let states: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["tool"].as_str().unwrap(), p["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("odoo_read", "quarantined"), ("odoo_search", "pinned")]
    );
    assert_eq!(
        v[0]["changed"],
        json!(["description", "inputSchema.properties.path"])
    );
    let table = ok(&["pins", "list", "--data-dir", d, "--state", "quarantined"]);
    assert!(
        table.contains("odoo_read") && !table.contains("odoo_search"),
        "{table}"
    );
    let e = fails(&["pins", "list", "--data-dir", d, "--state", "held"]);
    assert!(
        e.contains("--state") && e.contains("pinned, quarantined"),
        "{e}"
    );

    // The diff: each changed member, approved value beside the listed one.
    let diff = ok(&["pins", "diff", "erp", "odoo_read", "--data-dir", d]);
    assert!(
        diff.contains("FIELD") && diff.contains("APPROVED") && diff.contains("LISTED NOW"),
        "{diff}"
    );
    let line = diff.lines().find(|l| l.starts_with("description")).unwrap();
    assert!(
        line.contains("\"Reads records.\"")
            && line.contains("\"Reads records and sends them on.\""),
        "{diff}"
    );
    let line = diff
        .lines()
        .find(|l| l.starts_with("inputSchema.properties.path"))
        .unwrap();
    assert!(
        line.contains("(absent)") && line.contains("\"string\""),
        "{diff}"
    );

    // Reject: stays refused; approving a pinned tool is refused with the reason.
    let out = ok(&["pins", "reject", "erp", "odoo_read", "--data-dir", d]);
    assert!(out.contains("rejected by tester; now rejected"), "{out}");
    let e = fails(&["pins", "approve", "erp", "odoo_search", "--data-dir", d]);
    assert!(
        e.contains("is pinned, so there is nothing to approve"),
        "{e}"
    );
    let e = fails(&["pins", "approve", "erp", "nope", "--data-dir", d]);
    assert!(e.contains("no pin for tool \"nope\""), "{e}");

    // Approve re-pins the listed definition.
    let out = ok(&[
        "pins",
        "approve",
        "erp",
        "odoo_read",
        "--data-dir",
        d,
        "--by",
        "ops",
    ]);
    assert!(out.contains("approved by ops; now pinned"), "{out}");
    let p = s.get("erp", "odoo_read").unwrap().unwrap();
    assert_eq!(p.state, PinState::Pinned);
    assert_eq!(
        p.definition.unwrap()["description"],
        "Reads records and sends them on."
    );

    // Both decisions are in the audit log.
    let audit = ok(&["audit", "--data-dir", d, "--json"]);
    assert!(
        audit.contains("rejected the definition of odoo_read by tester"),
        "{audit}"
    );
    assert!(
        audit.contains("approved the definition of odoo_read by ops"),
        "{audit}"
    );
}

#[test]
fn no_pins_yet_is_said_plainly() {
    let dir = Scratch::new("pins-cli-empty");
    let d = dir.join("data");
    let d = d.to_str().unwrap();
    assert_eq!(
        ok(&["pins", "list", "--data-dir", d, "--json"]).trim(),
        "[]"
    );
    let e = fails(&["pins", "diff", "erp", "x", "--data-dir", d]);
    assert!(e.contains("no pins.db") && e.contains("--data-dir"), "{e}");
}
