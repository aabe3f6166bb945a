//! Write-ahead audit, end to end: calls the upstream received when the gateway was killed
//! (SIGKILL) each have an audit record, and the next `serve` on the data directory settles
//! them as outcome unknown.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const CT: (&str, &str) = ("Content-Type", "application/json");
const ACCEPT: (&str, &str) = ("Accept", "application/json, text/event-stream");

fn servers() -> String {
    format!(
        "[[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{}\"]\npolicy = \"p.json\"\nauth = \"none\"\n",
        fixture_server()
    )
}

const POLICY: &str =
    r#"{"version": "1", "default": "deny", "tools": {"slow": {}, "read_invoice": {}}}"#;

/// The `tools/call` lines the recording fixture received for `tool`.
fn received(dir: &std::path::Path, tool: &str) -> usize {
    std::fs::read_to_string(dir.join("record.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["method"] == "tools/call" && m["params"]["name"] == tool)
        .count()
}

/// The `tools/call` records of the audit log, read with `portcullis audit --json`.
fn calls_audited(dir: &std::path::Path) -> Vec<Value> {
    let out = std::process::Command::new(bin())
        .args(["audit", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--json", "--limit", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter()
        .filter(|r| r["method"] == "tools/call")
        .collect()
}

/// A POST to the gateway's `rec` server with `headers` beside the media types.
fn post(port: u16, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut all = vec![CT, ACCEPT];
    all.extend_from_slice(headers);
    http_request(
        port,
        "POST",
        "/mcp/rec",
        &all,
        body.as_bytes(),
        Duration::from_secs(60),
    )
}

fn statuses(records: &[Value], tool: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["tool"] == tool)
        .map(|r| {
            r["upstream_status"]
                .as_str()
                .unwrap_or("(none)")
                .to_string()
        })
        .collect()
}

#[test]
fn calls_in_flight_when_the_gateway_is_killed_are_audited_and_settled_as_outcome_unknown() {
    let dir = Scratch::new("write-ahead-kill");
    let files = [("p.json", POLICY.to_string())];
    let mut gw = serve_in(&dir, &servers(), &files, &[], &[]);
    let port = gw.port;
    let init = post(
        port,
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#,
    );
    assert_eq!(init.status, 200, "{}", init.body);
    let sid = init.session_id();
    let post = move |body: String| {
        let sid = sid.clone();
        std::thread::spawn(move || post(port, &[("Mcp-Session-Id", &sid)], &body))
    };
    // One call answered before the crash, five that the upstream holds for a minute.
    let done = post(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_invoice","arguments":{"id":7}}}"#.into(),
    )
    .join()
    .unwrap();
    assert_eq!(done.status, 200, "{}", done.body);
    let _held: Vec<_> = (0..5)
        .map(|i| {
            post(format!(
                r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"slow","arguments":{{"seconds":60}}}}}}"#,
                10 + i
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received(&dir, "slow") < 5 {
        assert!(
            Instant::now() < deadline,
            "the upstream did not receive the five calls"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: no shutdown, no flush, no answer.
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();

    // Every call the upstream received has its record: the answered one complete, the five
    // others in flight.
    let records = calls_audited(&dir);
    assert_eq!(
        statuses(&records, "read_invoice"),
        vec!["ok"],
        "{records:?}"
    );
    assert_eq!(
        statuses(&records, "slow"),
        vec!["in flight"; 5],
        "{records:?}"
    );
    assert!(
        records.iter().all(|r| r["decision"] == "allow"),
        "{records:?}"
    );

    // The next gateway on this data directory settles them, says so, and answers as before.
    drop(gw);
    let gw = serve_in(&dir, &servers(), &files, &[], &[]);
    let records = calls_audited(&dir);
    assert_eq!(
        statuses(&records, "slow"),
        vec!["unknown: the gateway stopped before the answer"; 5],
        "{records:?}"
    );
    assert_eq!(statuses(&records, "read_invoice"), vec!["ok"]);
    assert_eq!(
        records.len(),
        6,
        "completed in place, never a second row: {records:?}"
    );
    let said = gw.stderr();
    assert!(
        said.contains("5 call(s) forwarded by a gateway that stopped"),
        "{said}"
    );
}

#[test]
fn an_answered_call_has_one_complete_record_in_durable_and_async_modes() {
    for mode in ["durable", "async:10ms"] {
        let dir = Scratch::new(&format!("write-ahead-{}", mode.replace(':', "-")));
        let files = [("p.json", POLICY.to_string())];
        // Keys before the first [[servers]] belong to [gateway].
        let cfg = format!("audit = \"{mode}\"\n{}", servers());
        let gw = serve_in(&dir, &cfg, &files, &[], &[]);
        let call = |id: u32, tool: &str| {
            let headers = [
                ("MCP-Protocol-Version", "2026-07-28"),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", tool),
            ];
            post(
                gw.port,
                &headers,
                &format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
                ),
            )
        };
        let ok = call(1, "read_invoice");
        assert_eq!(ok.status, 200, "{mode}: {}", ok.body);
        let denied = call(2, "delete_invoice");
        assert!(
            denied.body.contains("POLICY DENIED"),
            "{mode}: {}",
            denied.body
        );
        drop(gw); // a clean stop commits what async mode still holds
        let records = calls_audited(&dir);
        assert_eq!(
            statuses(&records, "read_invoice"),
            vec!["ok"],
            "{mode}: {records:?}"
        );
        assert_eq!(
            statuses(&records, "delete_invoice"),
            vec!["(none)"],
            "{mode}: {records:?}"
        );
        assert_eq!(records.len(), 2, "{mode}: {records:?}");
    }
}
