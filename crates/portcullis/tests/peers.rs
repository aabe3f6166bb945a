//! The stdio gateway driven by real MCP peers: the Python `mcp` 2.x client (both eras), the
//! Python `mcp` 1.x client, the Inspector CLI, `mcp-server-time`, `server-everything`, and our
//! recording fixture server (which logs every line it receives, so a test can prove what did
//! not reach it).
//!
//! Peers are installed under `.peers/` by `scripts/install-peers.sh` (the README's test
//! command runs it). Without them these tests print "skipped"; with
//! `PORTCULLIS_REQUIRE_PEERS=1` (set by the test command) a missing peer is a failure.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn write_policy(dir: &Path, policy: &Value) -> String {
    let p = dir.join("policy.json");
    std::fs::write(&p, policy.to_string()).unwrap();
    p.display().to_string()
}

/// Runs a Python driver (client2.py or client1.py) with `actions`; returns its JSON output.
fn drive(
    python: &Path,
    script: &str,
    mode: Option<&str>,
    command: &[String],
    actions: &Value,
    env: &[(&str, String)],
) -> Value {
    let mut args: Vec<String> = mode.map(str::to_owned).into_iter().collect();
    args.push("--".into());
    args.extend(command.iter().cloned());
    run_driver(python, script, &args, actions, env)
}

fn gateway(policy: &str, server: &[String]) -> Vec<String> {
    let mut v = vec![
        bin(),
        "stdio".into(),
        "--policy".into(),
        policy.into(),
        "--".into(),
    ];
    v.extend(server.iter().cloned());
    v
}

fn names(r: &Value) -> Vec<String> {
    r["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn time_server() -> Option<Vec<String>> {
    Some(vec![
        peer("venv/bin/mcp-server-time")?.display().to_string(),
        "--local-timezone".into(),
        "UTC".into(),
    ])
}

#[test]
fn python2_client_modern_and_legacy_through_stdio_to_mcp_server_time() {
    let (Some(py), Some(server)) = (peer("venv/bin/python"), time_server()) else {
        return;
    };
    let dir = scratch("time");
    let policy = write_policy(
        &dir,
        &json!({"version":"1","default":"deny","hide":["convert_time"],
        "tools":{"get_current_time":{"limits":[{"counter":"t","window":"60s","max":2,"scope":"grant"}]}}}),
    );
    let actions = json!([
        {"op":"list_tools"},
        {"op":"call","name":"get_current_time","args":{"timezone":"UTC"}},
        {"op":"call","name":"convert_time","args":{"source_timezone":"UTC","time":"12:00","target_timezone":"UTC"}},
        {"op":"call","name":"get_current_time","args":{"timezone":"UTC"}},
        {"op":"call","name":"get_current_time","args":{"timezone":"UTC"}}
    ]);
    for (mode, version) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        let out = drive(
            &py,
            "client2.py",
            Some(mode),
            &gateway(&policy, &server),
            &actions,
            &[],
        );
        assert_eq!(out["protocol_version"], version, "{mode}");
        let r = out["results"].as_array().unwrap();
        assert_eq!(
            names(&r[0]),
            ["get_current_time"],
            "hidden tool not listed ({mode})"
        );
        assert_eq!(r[1]["isError"], false);
        assert_eq!(
            r[1]["structuredContent"]["timezone"], "UTC",
            "structured content relayed ({mode})"
        );
        assert_eq!(r[2]["isError"], true);
        assert!(
            text(&r[2]).starts_with("[POLICY DENIED] Tool \"convert_time\" is not available."),
            "{}",
            r[2]
        );
        assert_eq!(r[2]["_meta"]["portcullis/decision"]["rule"], "(hidden)");
        assert_eq!(r[3]["isError"], false);
        assert!(
            text(&r[4]).contains("counter \"t\" allows 2 in any 1m"),
            "{}",
            r[4]
        );
        assert_eq!(
            r[4]["_meta"]["portcullis/decision"]["rule"],
            "/tools/get_current_time/limits/0"
        );
        if mode == "auto" {
            assert_eq!(
                r[2]["resultType"], "complete",
                "denials carry resultType for a modern client"
            );
        }
    }
}

#[test]
fn server_everything_progress_sampling_and_hiding_through_stdio() {
    let (Some(py), Some(everything)) = (
        peer("venv/bin/python"),
        peer("node/node_modules/.bin/mcp-server-everything"),
    ) else {
        return;
    };
    let dir = scratch("everything");
    let policy = write_policy(
        &dir,
        &json!({"version":"1","default":"allow","hide":["get-env"]}),
    );
    let server = vec![everything.display().to_string(), "stdio".into()];
    let out = drive(
        &py,
        "client2.py",
        Some("auto"),
        &gateway(&policy, &server),
        &json!([
            {"op":"list_tools"},
            {"op":"call","name":"echo","args":{"message":"hello through the gate"}},
            {"op":"call","name":"trigger-long-running-operation","args":{"duration":1,"steps":3},"progress":true},
            {"op":"call","name":"trigger-sampling-request","args":{"prompt":"hi","maxTokens":5}},
            {"op":"call","name":"get-structured-content","args":{"location":"New York"}},
            {"op":"call","name":"get-env","args":{}}
        ]),
        &[],
    );
    assert_eq!(
        out["protocol_version"], "2025-11-25",
        "server-everything is legacy"
    );
    let r = out["results"].as_array().unwrap();
    let listed = names(&r[0]);
    assert!(
        listed.contains(&"echo".to_string()) && !listed.contains(&"get-env".to_string()),
        "{listed:?}"
    );
    assert_eq!(text(&r[1]), "Echo: hello through the gate");
    assert_eq!(
        r[2]["_progress"],
        json!([1.0, 2.0, 3.0]),
        "progress notifications reach the client with its own token"
    );
    assert!(
        text(&r[3]).contains("sampled-by-test"),
        "sampling request relayed and answered: {}",
        r[3]
    );
    assert!(r[4]["structuredContent"].is_object(), "{}", r[4]);
    assert!(text(&r[5]).starts_with("[POLICY DENIED]"));
}

#[test]
fn the_seed_policy_verbatim_lets_ten_pipeline_runs_through_and_the_upstream_sees_ten() {
    let Some(py) = peer("venv/bin/python") else {
        return;
    };
    let dir = scratch("seed");
    let record = dir.join("record.jsonl");
    let mut env = vec![
        ("RECORD", record.display().to_string()),
        ("PAGE_SIZE", "10".to_string()),
    ];
    let odoo = repo().join("../shared/fixtures/odoo-claude-mcp/tools.json");
    let real = odoo.exists();
    if real {
        env.push(("TOOLS_JSON", odoo.display().to_string()));
    } else {
        eprintln!("note: ../shared/fixtures not found; using the fixture's built-in tools");
    }
    let policy = repo()
        .join("examples/policies/ai_invoice_pipeline_run.json")
        .display()
        .to_string();
    let mut actions = vec![json!({"op":"list_tools"})];
    for i in 0..11 {
        actions.push(
            json!({"op":"call","name":"ai_invoice_pipeline_run","args":{"move_id": 100 + i}}),
        );
    }
    actions.push(json!({"op":"call","name":"odoo_execute","args":{"model":"account.move","method":"unlink","args":[[1]]}}));
    clear_of_minute_boundary(Duration::from_secs(20));
    let server = vec!["python3".to_string(), fixture_server()];
    let out = drive(
        &py,
        "client2.py",
        Some("auto"),
        &gateway(&policy, &server),
        &Value::Array(actions),
        &env,
    );
    let r = out["results"].as_array().unwrap();
    if real {
        assert_eq!(
            names(&r[0]).len(),
            123,
            "every page relayed; default deny hides nothing from the list"
        );
    }
    for (i, res) in r[1..11].iter().enumerate() {
        assert_eq!(res["isError"], false, "run {}: {res}", i + 1);
    }
    assert_eq!(r[11]["isError"], true);
    assert!(
        text(&r[11]).contains(
            "counter \"ai_invoice_pipeline_run_rate\" allows 10 per minute (scope grant)"
        ),
        "{}",
        r[11]
    );
    assert_eq!(
        r[11]["_meta"]["portcullis/decision"]["rule"],
        "/tools/ai_invoice_pipeline_run/limits/0"
    );
    assert!(r[11]["_meta"]["portcullis/decision"]["retryAfterSeconds"]
        .as_u64()
        .is_some_and(|s| (1..=60).contains(&s)));
    assert_eq!(
        r[12]["_meta"]["portcullis/decision"]["rule"],
        "(default deny)"
    );
    let seen = std::fs::read_to_string(&record).unwrap();
    let calls = seen
        .lines()
        .filter(|l| l.contains("\"tools/call\""))
        .count();
    assert_eq!(calls, 10, "the upstream saw exactly 10 calls:\n{seen}");
    assert!(!seen.contains("odoo_execute"));
}

#[test]
fn python1_client_through_stdio_with_paginated_hidden_tools() {
    let Some(py) = peer("venv1/bin/python") else {
        return;
    };
    let dir = scratch("py1");
    let policy = write_policy(
        &dir,
        &json!({"version":"1","default":"deny","hide":["delete_invoice","slow"],"tools":{"read_invoice":{}}}),
    );
    let server = vec!["python3".to_string(), fixture_server()];
    let out = drive(
        &py,
        "client1.py",
        None,
        &gateway(&policy, &server),
        &json!([{"op":"list_tools"},{"op":"call","name":"read_invoice","args":{"id":7}},{"op":"call","name":"pay_invoice","args":{"id":7}}]),
        &[("PAGE_SIZE", "3".to_string())],
    );
    assert_eq!(out["protocol_version"], "2025-11-25");
    let r = out["results"].as_array().unwrap();
    assert_eq!(
        names(&r[0]),
        [
            "read_invoice",
            "ai_invoice_pipeline_run",
            "pay_invoice",
            "fail_rpc",
            "fail_tool",
            "crash",
            "ask"
        ]
    );
    assert_eq!(text(&r[1]), "called read_invoice with {\"id\":7}");
    assert_eq!(
        r[2]["_meta"]["portcullis/decision"]["rule"], "(default deny)",
        "denied but visible"
    );
}

#[test]
fn inspector_cli_through_stdio() {
    let (Some(inspector), Some(everything)) = (
        peer("node/node_modules/.bin/mcp-inspector"),
        peer("node/node_modules/.bin/mcp-server-everything"),
    ) else {
        return;
    };
    let dir = scratch("inspector");
    let policy = write_policy(
        &dir,
        &json!({"version":"1","default":"deny","tools":{"echo":{}}}),
    );
    let (gateway, server) = (bin(), everything.display().to_string());
    let target = [
        gateway.as_str(),
        "stdio",
        "--policy",
        &policy,
        &server,
        "stdio",
    ];
    let run = |tool: &str, arg: &str| -> Value { inspector_call(&inspector, &target, tool, arg) };
    let ok = run("echo", "message=hello");
    assert_eq!(text(&ok), "Echo: hello");
    let denied = run("get-sum", "a=1");
    assert_eq!(denied["isError"], true);
    assert!(text(&denied).starts_with("[POLICY DENIED]"));
}

/// A raw pipe to `portcullis stdio` in front of the recording server.
struct Raw {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: BufReader<std::process::ChildStdout>,
}

impl Raw {
    fn start(policy: &str, record: &Path) -> Raw {
        Raw::start_with(policy, record, &[])
    }
    /// With extra `portcullis stdio` options.
    fn start_with(policy: &str, record: &Path, options: &[&str]) -> Raw {
        let mut child = Command::new(bin())
            .args(["stdio", "--policy", policy])
            .args(options)
            .args(["--", "python3", &fixture_server()])
            .env("RECORD", record)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Raw { child, stdin, out }
    }
    fn send(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }
    fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
    fn finish(mut self) {
        drop(self.stdin);
        if wait_exit(&mut self.child, Duration::from_secs(10)) {
            return;
        }
        let _ = self.child.kill();
        panic!("portcullis did not exit after its client closed stdin");
    }
}

#[test]
fn the_bad_input_corpus_never_reaches_a_real_upstream_process() {
    let dir = scratch("corpus");
    let record = dir.join("record.jsonl");
    let fixtures = repo().join("crates/gateway/tests/fixtures");
    let policy = fixtures
        .join("policy-bad-inputs.json")
        .display()
        .to_string();
    let mut raw = Raw::start(&policy, &record);
    raw.send(br#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"corpus","version":"1"}}}"#);
    assert_eq!(raw.recv()["id"], "init");
    raw.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let corpus = std::fs::read_to_string(fixtures.join("bad-inputs.jsonl")).unwrap();
    let mut lines: Vec<Vec<u8>> = corpus.lines().map(|l| l.as_bytes().to_vec()).collect();
    lines.push(b"\xff\xfe not utf-8".to_vec());
    let mut huge = br#"{"jsonrpc":"2.0","id":"huge","method":"tools/call","params":{"name":"read_invoice","arguments":{"blob":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 5 << 20));
    huge.extend(br#""}}}"#);
    lines.push(huge);
    for l in &lines {
        raw.send(l);
        let a = raw.recv();
        let answered = a.get("error").is_some() || a["result"]["isError"] == true;
        assert!(
            answered,
            "unclear answer {a} to {}",
            String::from_utf8_lossy(&l[..l.len().min(200)])
        );
    }
    // One good call proves the pipe is still in step after all that.
    raw.send(br#"{"jsonrpc":"2.0","id":"good","method":"tools/call","params":{"name":"read_invoice","arguments":{"id":1}}}"#);
    let good = raw.recv();
    assert_eq!(good["id"], "good");
    assert_eq!(text(&good["result"]), "called read_invoice with {\"id\":1}");
    raw.finish();
    let seen = std::fs::read_to_string(&record).unwrap();
    // The gateway's own tools/list aside (it lists once to learn the schemas:
    // validate_arguments = enforce).
    let listings = seen
        .lines()
        .filter(|l| l.contains("\"tools/list\""))
        .count();
    assert_eq!(
        listings, 1,
        "one listing, however many unknown names were called"
    );
    let seen: Vec<&str> = seen
        .lines()
        .filter(|l| !l.contains("\"tools/list\""))
        .collect();
    assert_eq!(
        seen.len(),
        3,
        "only initialize, initialized and the good call reached the server: {seen:#?}"
    );
    assert!(seen[2].contains("\"read_invoice\"") && seen[2].contains("\"id\":1}"));
}

/// A numeric rule is bypassed by a string where the server coerces strings ("20000"): through
/// the real binary, the call is checked against the schema the server lists (fetched by the
/// gateway itself when the client has not listed) and refused under the default (enforce),
/// never reaching the server; under warn it is forwarded.
#[test]
fn arguments_of_another_type_than_the_schema_never_reach_the_server() {
    let dir = scratch("schema-args");
    let policy = write_policy(
        &dir,
        &json!({"version":"1","default":"allow","tools":{"pay_invoice":{"deny_if":[
            {"conditions":[{"path":"args.amount","op":"gt","value":10000}]}]}}}),
    );
    let bad = br#"{"jsonrpc":"2.0","id":"bad","method":"tools/call","params":{"name":"pay_invoice","arguments":{"id":1,"amount":"20000"}}}"#;
    for (options, forwarded) in [
        (&[][..], false),
        (&["--validate-arguments", "warn"][..], true),
    ] {
        let record = dir.join(format!("record-{forwarded}.jsonl"));
        let mut raw = Raw::start_with(&policy, &record, options);
        raw.send(br#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"n","version":"1"}}}"#);
        assert_eq!(raw.recv()["id"], "init");
        raw.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        raw.send(bad);
        let a = raw.recv();
        assert_eq!(a["id"], "bad");
        if forwarded {
            assert_eq!(
                text(&a["result"]),
                r#"called pay_invoice with {"amount":"20000","id":1}"#
            );
        } else {
            assert_eq!(a["error"]["code"], -32602, "{a}");
            let m = a["error"]["message"].as_str().unwrap();
            assert!(
                m.contains("arguments.amount: expected number, got string"),
                "{m}"
            );
        }
        raw.send(br#"{"jsonrpc":"2.0","id":"good","method":"tools/call","params":{"name":"pay_invoice","arguments":{"id":1,"amount":20}}}"#);
        assert_eq!(
            text(&raw.recv()["result"]),
            r#"called pay_invoice with {"amount":20,"id":1}"#
        );
        raw.finish();
        let seen = std::fs::read_to_string(&record).unwrap();
        assert_eq!(
            seen.contains("\"20000\""),
            forwarded,
            "the bad call reached the server: {forwarded}: {seen}"
        );
        assert_eq!(
            seen.lines()
                .filter(|l| l.contains("\"tools/list\""))
                .count(),
            usize::from(!forwarded),
            "under enforce the gateway listed the tools once itself: {seen}"
        );
    }
}

/// A `tools/call` without an id (a notification) would reach a server that dispatches on the
/// method alone with no decision, no counter and no audit. It is refused with a clear error
/// and never forwarded; the same holds for every other request method.
#[test]
fn a_request_method_sent_as_a_notification_never_reaches_the_server() {
    let dir = scratch("notification-call");
    let record = dir.join("record.jsonl");
    let policy = write_policy(
        &dir,
        &json!({"version":"1","default":"allow","hide":["delete_invoice"]}),
    );
    let mut raw = Raw::start(&policy, &record);
    raw.send(br#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"n","version":"1"}}}"#);
    assert_eq!(raw.recv()["id"], "init");
    raw.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    for line in [
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_invoice"}}"#,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"read_invoice","arguments":{"id":2}}}"#,
        r#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#,
    ] {
        raw.send(line.as_bytes());
        let a = raw.recv();
        assert_eq!(a["id"], Value::Null, "{a}");
        assert_eq!(a["error"]["code"], -32600, "{a}");
        let m = a["error"]["message"].as_str().unwrap();
        assert!(
            m.contains("sent as a notification") && m.contains("nothing was forwarded"),
            "{m}"
        );
    }
    raw.send(br#"{"jsonrpc":"2.0","id":"good","method":"tools/call","params":{"name":"read_invoice","arguments":{"id":1}}}"#);
    assert_eq!(raw.recv()["id"], "good");
    raw.finish();
    let seen = std::fs::read_to_string(&record).unwrap();
    // The gateway's own tools/list aside (it lists once to learn the schemas:
    // validate_arguments = enforce).
    let listings = seen
        .lines()
        .filter(|l| l.contains("\"tools/list\""))
        .count();
    assert_eq!(
        listings, 1,
        "one listing, however many unknown names were called"
    );
    let seen: Vec<&str> = seen
        .lines()
        .filter(|l| !l.contains("\"tools/list\""))
        .collect();
    assert_eq!(
        seen.len(),
        3,
        "only initialize, initialized and the good call reached the server: {seen:#?}"
    );
    assert!(!seen
        .iter()
        .any(|l| l.contains("delete_invoice") || l.contains("passwd")));
}

/// `hide_denied` (an extension): the agent is shown only the tools the policy could allow; a
/// call to one it was not shown is refused by its own rule and never reaches the server.
#[test]
fn hide_denied_lists_only_the_allowed_tools_and_still_refuses_the_rest() {
    let dir = scratch("hide-denied");
    let record = dir.join("record.jsonl");
    let policy = write_policy(
        &dir,
        &json!({"version":"1","default":"deny","hide_denied":true,"tools":{
            "read_invoice":{},
            "pay_invoice":{"deny_if":[{"conditions":[{"path":"args.amount","op":"gt","value":100}]}]},
            "delete_invoice":{"deny_if":[{"conditions":[],"on_deny":"Invoices are never deleted."}]}
        }}),
    );
    let mut raw = Raw::start(&policy, &record);
    raw.send(br#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"h","version":"1"}}}"#);
    assert_eq!(raw.recv()["id"], "init");
    raw.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    raw.send(br#"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#);
    let list = raw.recv();
    assert_eq!(list["id"], "list");
    assert_eq!(names(&list["result"]), ["read_invoice", "pay_invoice"]);
    // What is listed is allowed.
    for (id, name, args) in [
        ("r", "read_invoice", json!({"id":1})),
        ("p", "pay_invoice", json!({"id":1,"amount":5})),
    ] {
        let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":args}});
        raw.send(call.to_string().as_bytes());
        let a = raw.recv();
        assert_eq!(a["id"], id);
        assert!(
            text(&a["result"]).starts_with(&format!("called {name}")),
            "{a}"
        );
    }
    // What is not listed is refused as without the option.
    for (name, rule, says) in [
        (
            "delete_invoice",
            "/tools/delete_invoice/deny_if/0",
            "[POLICY DENIED] Invoices are never deleted.",
        ),
        (
            "slow",
            "(default deny)",
            "[POLICY DENIED] Tool \"slow\" is not allowed by this policy (default deny).",
        ),
    ] {
        let call = json!({"jsonrpc":"2.0","id":name,"method":"tools/call","params":{"name":name,"arguments":{"id":1}}});
        raw.send(call.to_string().as_bytes());
        let a = raw.recv();
        assert_eq!(a["id"], name);
        assert_eq!(a["result"]["isError"], true, "{a}");
        assert_eq!(a["result"]["_meta"]["portcullis/decision"]["rule"], rule);
        assert_eq!(text(&a["result"]), says);
    }
    raw.finish();
    let seen = std::fs::read_to_string(&record).unwrap();
    let seen: Vec<&str> = seen.lines().collect();
    assert_eq!(
        seen.len(),
        5,
        "initialize, initialized, the listing and the two allowed calls: {seen:#?}"
    );
    assert!(!seen
        .iter()
        .any(|l| l.contains("delete_invoice") || l.contains("\"slow\"")));
}

#[test]
fn a_crashed_server_answers_in_flight_calls_fast_and_comes_back() {
    let dir = scratch("crash");
    let record = dir.join("record.jsonl");
    let policy = write_policy(&dir, &json!({"version":"1","default":"allow"}));
    let mut raw = Raw::start(&policy, &record);
    raw.send(br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"crash","version":"1"}}}"#);
    raw.recv();
    raw.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    raw.send(br#"{"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{"name":"slow","arguments":{"seconds":30}}}"#);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    raw.send(br#"{"jsonrpc":"2.0","id":"boom","method":"tools/call","params":{"name":"crash"}}"#);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let a = raw.recv();
        assert_eq!(a["error"]["code"], -32603, "{a}");
        assert!(a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped before answering"));
        ids.push(a["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    assert_eq!(ids, ["boom", "slow"]);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "in-flight calls answered within a second, took {:?}",
        t0.elapsed()
    );
    // A call sent while the restart is under way waits for the new process (bounded) instead
    // of being refused.
    raw.send(br#"{"jsonrpc":"2.0","id":"during","method":"tools/call","params":{"name":"read_invoice","arguments":{"id":3}}}"#);
    // The server is restarted, the session replayed, and the client told the tools may have changed.
    let note = raw.recv();
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
    let during = raw.recv();
    assert_eq!(during["id"], "during", "{during}");
    assert_eq!(
        text(&during["result"]),
        "called read_invoice with {\"id\":3}",
        "{during}"
    );
    raw.send(br#"{"jsonrpc":"2.0","id":"after","method":"tools/call","params":{"name":"read_invoice","arguments":{"id":2}}}"#);
    let mut a = raw.recv();
    while a.get("id").is_none() {
        a = raw.recv();
    }
    assert_eq!(a["id"], "after");
    assert_eq!(text(&a["result"]), "called read_invoice with {\"id\":2}");
    raw.finish();
    let seen = std::fs::read_to_string(&record).unwrap();
    assert_eq!(
        seen.matches("\"initialize\"").count(),
        2,
        "the stored initialize was replayed to the new process:\n{seen}"
    );
}

#[test]
fn an_invalid_policy_refuses_to_start() {
    let dir = scratch("badpolicy");
    let policy = write_policy(
        &dir,
        &json!({"version":"1","default":"deny","tools":{"x":{"deny_iff":[]}}}),
    );
    let out = Command::new(bin())
        .args([
            "stdio",
            "--policy",
            &policy,
            "--",
            "python3",
            &fixture_server(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tools.x.deny_iff: unknown key") && err.contains("refusing to start"),
        "{err}"
    );
    let mut s = String::new();
    let _ = (&out.stdout[..]).read_to_string(&mut s);
    assert!(s.is_empty());
}

#[test]
fn stdio_to_a_python2_http_upstream_in_both_eras() {
    let Some(py) = peer("venv/bin/python") else {
        return;
    };
    let dir = scratch("py2http");
    let record = dir.join("record.jsonl");
    let port = free_port();
    let _server = Bg(Command::new(&py)
        .arg(repo().join("crates/portcullis/tests/peers/server2_http.py"))
        .arg(port.to_string())
        .env("RECORD", &record)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    wait_port(port);
    let policy = write_policy(
        &dir,
        &json!({"version":"1","default":"allow","hide":["drop_table"]}),
    );
    let url = format!("http://127.0.0.1:{port}/mcp");
    let gw = vec![
        bin(),
        "stdio".into(),
        "--policy".into(),
        policy,
        "--url".into(),
        url,
    ];
    let actions = json!([
        {"op":"list_tools"},
        {"op":"call","name":"add","args":{"a":2,"b":40}},
        {"op":"call","name":"drop_table","args":{"name":"invoices"}},
        {"op":"call","name":"slow_count","args":{"n":3},"progress":true}
    ]);
    for (mode, version) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        let out = drive(&py, "client2.py", Some(mode), &gw, &actions, &[]);
        assert_eq!(out["protocol_version"], version);
        let r = out["results"].as_array().unwrap();
        assert_eq!(names(&r[0]), ["add", "slow_count"], "{mode}");
        assert_eq!(text(&r[1]), "42");
        assert!(text(&r[2]).starts_with("[POLICY DENIED]"));
        assert_eq!(text(&r[3]), "counted to 3");
        assert_eq!(
            r[3]["_progress"],
            json!([1.0, 2.0, 3.0]),
            "progress relayed from an HTTP upstream ({mode})"
        );
    }
    let seen = std::fs::read_to_string(&record).unwrap();
    assert!(!seen.contains("drop_table"), "{seen}");
    assert_eq!(seen.lines().filter(|l| l.contains("\"add\"")).count(), 2);
}

#[test]
fn stdio_to_server_everything_over_http_relays_sampling() {
    let (Some(py), Some(everything)) = (
        peer("venv/bin/python"),
        peer("node/node_modules/.bin/mcp-server-everything"),
    ) else {
        return;
    };
    let dir = scratch("evhttp");
    let port = free_port();
    let _server = Bg(Command::new(&everything)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    wait_port(port);
    let policy = write_policy(
        &dir,
        &json!({"version":"1","default":"allow","hide":["get-env"]}),
    );
    let gw = vec![
        bin(),
        "stdio".into(),
        "--policy".into(),
        policy,
        "--url".into(),
        format!("http://127.0.0.1:{port}/mcp"),
    ];
    let out = drive(
        &py,
        "client2.py",
        Some("auto"),
        &gw,
        &json!([
            {"op":"call","name":"trigger-sampling-request","args":{"prompt":"hi","maxTokens":5}},
            {"op":"call","name":"trigger-long-running-operation","args":{"duration":1,"steps":2},"progress":true},
            {"op":"call","name":"get-env","args":{}}
        ]),
        &[],
    );
    assert_eq!(out["protocol_version"], "2025-11-25");
    let r = out["results"].as_array().unwrap();
    assert!(text(&r[0]).contains("sampled-by-test"), "{}", r[0]);
    assert_eq!(r[1]["_progress"], json!([1.0, 2.0]));
    assert!(text(&r[2]).starts_with("[POLICY DENIED]"));
}

/// A 2025-11-25 server may close its GET stream (SSE polling): the stdio gateway's upstream
/// link reopens it after the server's `retry`, with `Last-Event-ID`, and what the server sends
/// on the new stream reaches the client.
#[test]
fn an_upstream_get_stream_the_server_closes_is_reopened_with_last_event_id() {
    let dir = scratch("closing-get");
    let port = free_port();
    let _server = Bg(Command::new("python3")
        .arg(repo().join("crates/gateway/tests/fixtures/closing_get_server.py"))
        .arg(port.to_string())
        .spawn()
        .unwrap());
    wait_port(port);
    let policy = write_policy(&dir, &json!({"version":"1","default":"allow"}));
    let mut gw = Command::new(bin())
        .args(["stdio", "--policy", &policy, "--url"])
        .arg(format!("http://127.0.0.1:{port}/mcp"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = gw.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = gw.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // As a client does: initialized only once initialize is answered.
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#).unwrap();
    stdin.flush().unwrap();
    let init = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("initialize answered");
    assert!(init.contains("closing-get"), "{init}");
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let note = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("notifications/message") => break l,
            Ok(_) => continue,
            Err(_) => panic!("no message from the reopened GET stream"),
        }
    };
    assert!(
        note.contains("reconnected with Last-Event-ID=g-1"),
        "the reconnection named the last event: {note}"
    );
    drop(stdin);
    terminate(&mut gw, Duration::from_secs(5));
}
