//! The path and URL operators in front of real servers: `@modelcontextprotocol/server-filesystem`
//! with `require path_under` an allowed directory never reads a canary file outside it, and
//! `mcp-server-fetch` with `require url_host_in` never reaches a loopback host the list does not
//! name — whatever spelling the agent sends. Each test also proves, through a permissive policy,
//! that the server would have reached what the guarded run did not.
//!
//! Peers come from `scripts/install-peers.sh`; without them the tests print "skipped" (a failure
//! under `PORTCULLIS_REQUIRE_PEERS=1`).

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the Python 2.x client through `portcullis stdio --policy POLICY -- server…` with one
/// `call` action per `(tool, args)`; returns the results in order.
fn calls_through_gateway(
    python: &Path,
    policy: &Value,
    dir: &Path,
    server: &[String],
    calls: &[(&str, Value)],
) -> Vec<Value> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let policy_file = dir.join(format!("policy-{n}.json"));
    std::fs::write(&policy_file, policy.to_string()).unwrap();
    let mut args = vec![
        "auto".to_string(),
        "--".into(),
        bin(),
        "stdio".into(),
        "--policy".into(),
        policy_file.display().to_string(),
        "--".into(),
    ];
    args.extend(server.iter().cloned());
    let actions: Vec<Value> = calls
        .iter()
        .map(|(name, a)| json!({"op": "call", "name": name, "args": a}))
        .collect();
    let env = [("NO_PROXY", "*".to_string()), ("no_proxy", "*".to_string())];
    let out = run_driver(python, "client2.py", &args, &json!(actions), &env);
    let results = out["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), calls.len(), "{out}");
    results
}

fn denied(r: &Value) -> bool {
    r["isError"] == true && text(r).starts_with("[POLICY DENIED]")
}

#[test]
fn server_filesystem_never_reads_the_canary_outside_the_allowed_directory() {
    let (Some(py), Some(fs)) = (
        peer("venv/bin/python"),
        peer("node/node_modules/.bin/mcp-server-filesystem"),
    ) else {
        return;
    };
    let dir = Scratch::new("fs-canary");
    let root = dir.canonicalize().unwrap();
    let allowed = root.join("allowed");
    std::fs::create_dir_all(allowed.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("allowed-evil")).unwrap();
    std::fs::write(allowed.join("ok.txt"), "ALLOWED-CONTENT").unwrap();
    let canary = format!("CANARY-{}", std::process::id());
    std::fs::write(root.join("canary.txt"), &canary).unwrap();
    std::fs::write(root.join("allowed-evil/canary.txt"), &canary).unwrap();
    // The server may read all of `root`: only the gateway stands between it and the canary.
    let server = vec![fs.display().to_string(), root.display().to_string()];
    let (s, a) = (root.display().to_string(), allowed.display().to_string());
    let under = |path: &str| json!([{"conditions":[{"path":path,"op":"path_under","value":a}]}]);
    let policy = json!({"version":"1","default":"deny","tools":{
        "read_text_file":{"require": under("args.path")},
        "read_file":{"require": under("args.path")},
        "list_directory":{"require": under("args.path")},
        "read_multiple_files":{"require": under("args.paths[*]")}}});

    let spellings = [
        format!("{a}/../canary.txt"),
        format!("{a}//..//canary.txt"),
        format!("{a}/./../canary.txt/"),
        format!("{a}/sub/../../canary.txt"),
        format!("{a}/..\\canary.txt"),
        format!("{s}/canary.txt"),
        format!("/{s}//canary.txt"),
        format!("{s}/allowed-evil/canary.txt"),
        format!("file://{s}/canary.txt"),
        format!("file://{a}/%2e%2e/canary.txt"),
        format!("file://{a}/%2E%2E%2Fcanary.txt"),
        "canary.txt".to_string(),
        "../canary.txt".to_string(),
        "~/canary.txt".to_string(),
        format!("{a}/x\u{0}/../../canary.txt"),
    ];
    let mut calls: Vec<(&str, Value)> = Vec::new();
    for p in &spellings {
        calls.push(("read_text_file", json!({ "path": p })));
        calls.push(("read_file", json!({ "path": p })));
        calls.push((
            "read_multiple_files",
            json!({"paths": [format!("{a}/ok.txt"), p]}),
        ));
    }
    calls.push(("read_multiple_files", json!({"paths": []})));
    calls.push(("list_directory", json!({"path": format!("{a}/..")})));
    let guarded = calls.len();
    // What the policy lets through still works.
    calls.push(("read_text_file", json!({"path": format!("{a}/ok.txt")})));
    calls.push((
        "read_multiple_files",
        json!({"paths": [format!("{a}/ok.txt"), format!("{a}/./sub/../ok.txt")]}),
    ));
    let results = calls_through_gateway(&py, &policy, &dir, &server, &calls);
    for ((tool, args), r) in calls.iter().zip(&results).take(guarded) {
        assert!(
            !r.to_string().contains(&canary),
            "{tool} {args} read the canary: {r}"
        );
        assert!(denied(r), "{tool} {args} was not denied: {r}");
    }
    assert!(
        text(&results[guarded]).contains("ALLOWED-CONTENT"),
        "{}",
        results[guarded]
    );
    assert!(
        !results[guarded + 1]["isError"].as_bool().unwrap_or(false)
            && results[guarded + 1].to_string().contains("ALLOWED-CONTENT"),
        "{}",
        results[guarded + 1]
    );

    // Without the rule the same server reads the canary: the guarded run proves something.
    let open = json!({"version":"1","default":"allow"});
    let r = calls_through_gateway(
        &py,
        &open,
        &dir,
        &server,
        &[("read_text_file", json!({"path": &spellings[0]}))],
    );
    assert!(text(&r[0]).contains(&canary), "{}", r[0]);
}

#[test]
fn mcp_server_fetch_never_reaches_a_host_outside_the_list() {
    let (Some(py), Some(fetch)) = (peer("venv/bin/python"), peer("venv/bin/mcp-server-fetch"))
    else {
        return;
    };
    let dir = Scratch::new("fetch-hosts");
    let port = free_port();
    let log = dir.join("hosts.log");
    std::fs::write(&log, "").unwrap();
    let _web = Bg(Command::new("python3")
        .arg(repo().join("crates/portcullis/tests/peers/host_recorder.py"))
        .arg(port.to_string())
        .arg(&log)
        .stdout(Stdio::null())
        .spawn()
        .unwrap());
    wait_port(port);
    let server = vec![
        fetch.display().to_string(),
        "--ignore-robots-txt".into(),
        "--allow-private-ips".into(),
    ];
    let policy = json!({"version":"1","default":"deny","tools":{"fetch":{"require":[{"conditions":[
        {"path":"args.url","op":"url_host_in","value":["localhost"]}]}]}}});
    let p = port;
    let corpus = [
        format!("http://127.0.0.1:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f.0.0.1:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("http://localhost@127.0.0.1:{p}/"),
        format!("http://127.0.0.1:{p}#@localhost"),
        format!("http://127.0.0.1:{p}?@localhost/"),
        format!("HTTP://127.0.0.1.:{p}/"),
        format!("http://localhost.127.0.0.1.nip.io:{p}/"),
        format!("http://localhost:{p}\\@127.0.0.1/"),
        format!("gopher://localhost:{p}/"),
        format!("localhost:{p}/"),
    ];
    let mut calls: Vec<(&str, Value)> = corpus
        .iter()
        .map(|u| ("fetch", json!({ "url": u, "raw": true })))
        .collect();
    calls.push((
        "fetch",
        json!({"url": format!("http://user@LOCALHOST:{p}/allowed"), "raw": true}),
    ));
    let results = calls_through_gateway(&py, &policy, &dir, &server, &calls);
    for (url, r) in corpus.iter().zip(&results) {
        assert!(denied(r), "{url} was not denied: {r}");
    }
    let last = results.last().unwrap();
    assert!(text(last).contains("PAGE-FROM"), "{last}");
    let hosts = std::fs::read_to_string(&log).unwrap();
    assert!(
        !hosts.trim().is_empty(),
        "the allowed fetch reached the server"
    );
    for h in hosts.lines() {
        assert!(
            h.to_ascii_lowercase().starts_with("localhost:"),
            "a host outside the list was reached: {h:?} (all: {hosts:?})"
        );
    }

    // Without the rule the same server reaches 127.0.0.1: the guarded run proves something.
    let open = json!({"version":"1","default":"allow"});
    let r = calls_through_gateway(
        &py,
        &open,
        &dir,
        &server,
        &[("fetch", json!({"url": &corpus[0], "raw": true}))],
    );
    assert!(text(&r[0]).contains("PAGE-FROM 127.0.0.1"), "{}", r[0]);
    let hosts = std::fs::read_to_string(&log).unwrap();
    assert!(hosts.contains(&format!("127.0.0.1:{p}")), "{hosts}");
}
