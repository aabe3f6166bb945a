//! The HTTP gateway (`portcullis serve`) driven by real peers and raw HTTP: both eras with the
//! Python `mcp` 2.x client, progress and sampling over SSE with server-everything, and every
//! refusal (token, Origin, Host, size, batch, session, header mismatch) answered without the
//! upstream seeing anything.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Gw {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Gw {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// Starts `portcullis serve` with `servers` (TOML `[[servers]]` blocks) on a free port.
fn serve(name: &str, servers: &str, files: &[(&str, String)]) -> Gw {
    serve_with(name, "", servers, files)
}

/// [`serve`], with `gateway` lines added to `[gateway]`.
fn serve_with(name: &str, gateway: &str, servers: &str, files: &[(&str, String)]) -> Gw {
    let dir = std::env::temp_dir().join(format!("portcullis-http-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (f, text) in files {
        std::fs::write(dir.join(f), text).unwrap();
    }
    let port = free_port();
    let cfg = format!("[gateway]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nmax_body_bytes = 65536\n{gateway}\n{servers}");
    std::fs::write(dir.join("portcullis.toml"), cfg).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--config",
            dir.join("portcullis.toml").to_str().unwrap(),
            "--log",
            "warn",
        ])
        .env("RECORD", dir.join("record.jsonl"))
        .env("PORTCULLIS_TEST_TOKEN", "tok-alice-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let gw = Gw { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    gw
}

/// A minimal HTTP/1.1 request over a fresh connection (Connection: close).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    http_request(port, method, path, headers, body, Duration::from_secs(20))
}

fn drive(py: &Path, mode: &str, url: &str, token: Option<&str>, actions: &Value) -> Value {
    let mut args = vec![mode.to_string(), "--url".into(), url.to_string()];
    if let Some(t) = token {
        args.extend(["--token".to_string(), t.to_string()]);
    }
    run_driver(py, "client2.py", &args, actions, &[])
}

fn drive1(py: &Path, args: &[&str], actions: &Value) -> Value {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_driver(py, "client1.py", &args, actions, &[])
}

/// A stateless (2026-07-28) `tools/call` of `read_invoice` with id and argument `n`, without
/// credentials, over a fresh connection.
fn stateless_read_invoice(port: u16, n: usize) -> Reply {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"read_invoice","arguments":{{"id":{n}}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    stateless_call(port, "read_invoice", &body)
}

/// POSTs `body`, a stateless (2026-07-28) `tools/call` of `tool`, to `/mcp/rec` with the
/// headers that era's client sends (no credentials), over a fresh connection.
fn stateless_call(port: u16, tool: &str, body: &str) -> Reply {
    http(
        port,
        "POST",
        "/mcp/rec",
        &[
            CT,
            JSON_SSE,
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", tool),
        ],
        body.as_bytes(),
    )
}

const JSON_SSE: (&str, &str) = ("Accept", "application/json, text/event-stream");
const CT: (&str, &str) = ("Content-Type", "application/json");

fn init_body() -> &'static str {
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#
}

/// The recording fixture as server `rec`, policy `p.json`, no authentication, plus `extra`
/// config lines.
fn open_recording_server(extra: &str) -> String {
    format!(
        "[[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{}\"]\npolicy = \"p.json\"\nauth = \"none\"\n{extra}",
        fixture_server()
    )
}

fn recording_servers(policy_file: &str) -> String {
    format!(
        "[[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{}\"]\npolicy = \"{policy_file}\"\nauth = \"token\"\ntokens = [{{ label = \"alice\", token = \"${{PORTCULLIS_TEST_TOKEN}}\" }}]\n",
        fixture_server()
    )
}

#[test]
fn python2_client_both_eras_over_http_to_mcp_server_time() {
    let (Some(py), Some(time)) = (peer("venv/bin/python"), peer("venv/bin/mcp-server-time")) else {
        return;
    };
    let policy = json!({"version":"1","default":"deny","hide":["convert_time"],"tools":{"get_current_time":{"limits":[{"counter":"t","window":"60s","max":3,"scope":"grant"}]}}});
    let servers = format!("[[servers]]\nname = \"time\"\ncommand = [\"{}\", \"--local-timezone\", \"UTC\"]\npolicy = \"p.json\"\nauth = \"none\"\n", time.display());
    let gw = serve("time", &servers, &[("p.json", policy.to_string())]);
    let url = format!("http://127.0.0.1:{}/mcp/time", gw.port);
    let actions = json!([{"op":"list_tools"},{"op":"call","name":"get_current_time","args":{"timezone":"UTC"}},{"op":"call","name":"convert_time","args":{}}]);
    let modern = drive(&py, "auto", &url, None, &actions);
    assert_eq!(modern["protocol_version"], "2026-07-28");
    let legacy = drive(&py, "legacy", &url, None, &actions);
    assert_eq!(legacy["protocol_version"], "2025-11-25");
    for out in [&modern, &legacy] {
        let r = out["results"].as_array().unwrap();
        let names: Vec<&str> = r[0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["get_current_time"]);
        assert_eq!(r[1]["structuredContent"]["timezone"], "UTC");
        assert!(text(&r[2]).starts_with("[POLICY DENIED]"));
    }
    assert_eq!(modern["results"][2]["resultType"], "complete");
    // Both eras share the grant's counter ("local" grant): two calls made, a third passes,
    // the fourth is denied. (A rolling window: a calendar minute could roll over between
    // the drivers and reset the count.)
    let more = drive(
        &py,
        "auto",
        &url,
        None,
        &json!([{"op":"call","name":"get_current_time","args":{"timezone":"UTC"}},{"op":"call","name":"get_current_time","args":{"timezone":"UTC"}}]),
    );
    assert_eq!(more["results"][0]["isError"], false);
    assert!(
        text(&more["results"][1]).contains("allows 3 in any 1m"),
        "{}",
        more["results"][1]
    );
}

#[test]
fn server_everything_over_http_relays_progress_and_sampling_on_sse() {
    let (Some(py), Some(everything)) = (
        peer("venv/bin/python"),
        peer("node/node_modules/.bin/mcp-server-everything"),
    ) else {
        return;
    };
    let servers = format!(
        "[[servers]]\nname = \"everything\"\ncommand = [\"{}\", \"stdio\"]\npolicy = \"p.json\"\nauth = \"token\"\ntokens = [{{ label = \"alice\", token = \"${{PORTCULLIS_TEST_TOKEN}}\" }}]\n",
        everything.display()
    );
    let gw = serve(
        "everything",
        &servers,
        &[(
            "p.json",
            json!({"version":"1","default":"allow","hide":["get-env"]}).to_string(),
        )],
    );
    let url = format!("http://127.0.0.1:{}/mcp/everything", gw.port);
    let out = drive(
        &py,
        "auto",
        &url,
        Some("tok-alice-0123456789"),
        &json!([
            {"op":"list_tools"},
            {"op":"call","name":"trigger-long-running-operation","args":{"duration":1,"steps":3},"progress":true},
            {"op":"call","name":"trigger-sampling-request","args":{"prompt":"hi","maxTokens":5}},
            {"op":"call","name":"get-env","args":{}}
        ]),
    );
    assert_eq!(out["protocol_version"], "2025-11-25");
    let r = out["results"].as_array().unwrap();
    assert!(!r[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "get-env"));
    assert_eq!(r[1]["_progress"], json!([1.0, 2.0, 3.0]));
    assert!(text(&r[2]).contains("sampled-by-test"), "{}", r[2]);
    assert!(text(&r[3]).starts_with("[POLICY DENIED]"));
}

#[test]
fn the_seed_policy_over_http_lets_exactly_ten_runs_reach_the_upstream() {
    let Some(py) = peer("venv/bin/python") else {
        return;
    };
    let seed =
        std::fs::read_to_string(repo().join("examples/policies/ai_invoice_pipeline_run.json"))
            .unwrap();
    let gw = serve(
        "seed",
        &recording_servers("seed.json"),
        &[("seed.json", seed)],
    );
    let url = format!("http://127.0.0.1:{}/mcp/rec", gw.port);
    let mut actions = Vec::new();
    for i in 0..11 {
        actions.push(json!({"op":"call","name":"ai_invoice_pipeline_run","args":{"move_id": i}}));
    }
    clear_of_minute_boundary(Duration::from_secs(20));
    let out = drive(
        &py,
        "auto",
        &url,
        Some("tok-alice-0123456789"),
        &Value::Array(actions),
    );
    let r = out["results"].as_array().unwrap();
    assert!(r[..10].iter().all(|x| x["isError"] == false), "{r:?}");
    assert_eq!(
        r[10]["_meta"]["portcullis/decision"]["rule"],
        "/tools/ai_invoice_pipeline_run/limits/0"
    );
    let seen = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap();
    assert_eq!(
        seen.lines()
            .filter(|l| l.contains("\"tools/call\""))
            .count(),
        10
    );
}

/// Calls made at once from many connections share SQLite transactions (`serve` gathers the
/// reservations a worker takes in together) and stay exact: of 80 calls against a limit of
/// 25, exactly 25 reach the upstream and the other 55 are refused by that limit.
#[test]
fn concurrent_calls_through_serve_are_limited_exactly() {
    let policy = json!({"version":"1","default":"deny","tools":{"read_invoice":{"limits":[{"counter":"reads","window":"60s","max":25,"scope":"server"}]}}});
    let gw = serve(
        "concurrent-limit",
        &open_recording_server(""),
        &[("p.json", policy.to_string())],
    );
    let port = gw.port;
    let threads: Vec<_> = (0..16)
        .map(|t| {
            std::thread::spawn(move || {
                (0..5)
                    .map(|k| stateless_read_invoice(port, t * 5 + k))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let replies: Vec<Reply> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let called = replies
        .iter()
        .filter(|r| r.status == 200 && r.body.contains("called read_invoice"))
        .count();
    let limited = replies
        .iter()
        .filter(|r| r.status == 200 && r.body.contains("/tools/read_invoice/limits/0"))
        .count();
    assert_eq!(
        (called, limited),
        (25, 55),
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let seen = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap();
    assert_eq!(
        seen.lines()
            .filter(|l| l.contains("\"tools/call\""))
            .count(),
        25,
        "exactly the allowed calls reached the upstream"
    );
}

#[test]
fn refusals_are_clear_and_nothing_reaches_the_upstream() {
    let policy = json!({"version":"1","default":"deny","hide":["delete_invoice"],"tools":{"read_invoice":{}}});
    let gw = serve(
        "refusals",
        &recording_servers("p.json"),
        &[("p.json", policy.to_string())],
    );
    let p = gw.port;
    let auth = ("Authorization", "Bearer tok-alice-0123456789");
    let post = |headers: &[(&str, &str)], body: &str| {
        http(p, "POST", "/mcp/rec", headers, body.as_bytes())
    };

    // Authentication.
    let r = post(&[CT, JSON_SSE], init_body());
    assert_eq!(r.status, 401);
    assert!(r.body.contains("missing_token"), "{}", r.body);
    let r = post(
        &[CT, JSON_SSE, ("Authorization", "Bearer wrong")],
        init_body(),
    );
    assert_eq!(r.status, 401);
    assert!(r.body.contains("unknown_token"));
    let r = post(
        &[CT, JSON_SSE, ("Authorization", "Basic dG9rOng=")],
        init_body(),
    );
    assert_eq!(r.status, 401);
    let long = format!("Bearer {}", "x".repeat(100_000));
    let r = post(&[CT, JSON_SSE, ("Authorization", &long)], init_body());
    assert!(
        r.status == 401 || r.status == 431 || r.status == 400,
        "oversize Authorization: {}",
        r.status
    );
    // Origin and Host.
    assert_eq!(
        post(
            &[CT, JSON_SSE, auth, ("Origin", "https://evil.example")],
            init_body()
        )
        .status,
        403
    );
    assert_eq!(
        post(&[CT, JSON_SSE, auth, ("Host", "evil.example")], init_body()).status,
        403
    );
    assert_eq!(
        post(
            &[
                CT,
                JSON_SSE,
                auth,
                ("Host", "localhost:9"),
                ("Origin", "http://localhost:3000")
            ],
            r#"{"jsonrpc":"2.0","method":"notifications/x"}"#
        )
        .status,
        400,
        "localhost is fine (then: no session)"
    );
    // Unknown server, methods without a session.
    assert_eq!(
        http(p, "POST", "/mcp/nope", &[CT, auth], init_body().as_bytes()).status,
        404
    );
    assert_eq!(http(p, "GET", "/mcp/rec", &[auth], b"").status, 405);
    assert_eq!(http(p, "DELETE", "/mcp/rec", &[auth], b"").status, 405);
    assert_eq!(
        http(
            p,
            "GET",
            "/mcp/rec",
            &[auth, ("Mcp-Session-Id", "feedface")],
            b""
        )
        .status,
        404
    );
    // Body problems.
    let r = post(&[CT, auth], "not json");
    assert_eq!(
        (r.status, r.body.contains("-32700")),
        (400, true),
        "{}",
        r.body
    );
    let r = post(
        &[CT, auth],
        r#"[{"jsonrpc":"2.0","id":1,"method":"initialize"}]"#,
    );
    assert_eq!((r.status, r.body.contains("-32600")), (400, true));
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"x":"{}"}}}}"#,
        "y".repeat(70_000)
    );
    assert_eq!(post(&[CT, auth], &big).status, 413);
    let r = post(
        &[CT, auth],
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_invoice"}}"#,
    );
    assert_eq!(
        r.status, 400,
        "a legacy request needs a session: {}",
        r.body
    );
    // A modern request whose headers disagree with its body.
    let modern = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_invoice","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let r = post(
        &[
            CT,
            JSON_SSE,
            auth,
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "delete_invoice"),
        ],
        modern,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("-32020") && r.body.contains("Mcp-Name"),
        "{}",
        r.body
    );
    let r = post(
        &[
            CT,
            JSON_SSE,
            auth,
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/list"),
            ("Mcp-Name", "read_invoice"),
        ],
        modern,
    );
    assert!(
        r.status == 400 && r.body.contains("Mcp-Method"),
        "{}",
        r.body
    );
    let r = post(
        &[
            CT,
            JSON_SSE,
            auth,
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "read_invoice"),
        ],
        modern,
    );
    assert!(
        r.status == 400 && r.body.contains("MCP-Protocol-Version"),
        "{}",
        r.body
    );

    // Now a real session: policy denials come back as results, and the session works.
    let r = post(&[CT, JSON_SSE, auth], init_body());
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.session_id();
    assert!(sid.len() >= 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()));
    let s = ("Mcp-Session-Id", sid.as_str());
    assert_eq!(
        post(
            &[CT, auth, s],
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        )
        .status,
        202
    );
    let r = post(
        &[CT, JSON_SSE, auth, s],
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_invoice","arguments":{"id":1}}}"#,
    );
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v["result"]["_meta"]["portcullis/decision"]["rule"],
        "(hidden)"
    );
    let r = post(
        &[CT, JSON_SSE, auth, s],
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_invoice","name":"delete_invoice"}}"#,
    );
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v["error"]["code"], -32602,
        "duplicate keys in params are refused: {v}"
    );
    let r = post(
        &[CT, JSON_SSE, auth, s],
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"read_invoice","arguments":{"id":9}}}"#,
    );
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        v["result"]["content"][0]["text"],
        "called read_invoice with {\"id\":9}"
    );
    // Another grant cannot use this session.
    assert_eq!(
        http(
            p,
            "DELETE",
            "/mcp/rec",
            &[("Authorization", "Bearer wrong"), s],
            b""
        )
        .status,
        401
    );
    assert_eq!(http(p, "DELETE", "/mcp/rec", &[auth, s], b"").status, 204);
    assert_eq!(
        post(
            &[CT, JSON_SSE, auth, s],
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#
        )
        .status,
        404,
        "ended session"
    );

    let seen = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap();
    // The gateway's own era probe (server/discover) aside, and its own tools/list (it lists
    // the tools to learn their schemas before the first call: validate_arguments = enforce).
    let seen: Vec<&str> = seen
        .lines()
        .filter(|l| !l.contains("\"server/discover\"") && !l.contains("\"tools/list\""))
        .collect();
    assert_eq!(
        seen.len(),
        3,
        "only initialize, initialized and the allowed call reached the upstream: {seen:#?}"
    );
    // Each refusal at the door left an audit record saying why.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "--json", "--limit", "0", "--config"])
        .arg(gw.dir.join("portcullis.toml"))
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&out.stdout);
    for why in [
        "(forbidden origin)",
        "(auth: missing_token)",
        "(auth: unknown_token)",
        "(hidden)",
        "(invalid params)",
    ] {
        assert!(audit.contains(why), "no audit record for {why}: {audit}");
    }
    assert!(seen[2].contains("read_invoice") && !seen[2].contains("delete_invoice"));
}

/// A `tools/call` sent as a notification (no id) is refused on both eras of the HTTP face:
/// 400 with a JSON-RPC error, an audit record, and nothing reaches the upstream.
#[test]
fn a_tools_call_sent_as_a_notification_is_refused_and_audited() {
    let policy = json!({"version":"1","default":"allow","hide":["delete_invoice"]});
    let gw = serve(
        "notification-call",
        &recording_servers("p.json"),
        &[("p.json", policy.to_string())],
    );
    let p = gw.port;
    let auth = ("Authorization", "Bearer tok-alice-0123456789");
    let post = |headers: &[(&str, &str)], body: &str| {
        http(p, "POST", "/mcp/rec", headers, body.as_bytes())
    };
    let refused = |r: Reply| {
        assert_eq!(r.status, 400, "{}", r.body);
        let v = r.json();
        assert_eq!(v["id"], Value::Null, "{v}");
        assert_eq!(v["error"]["code"], -32600, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tools/call\" sent as a notification"),
            "{v}"
        );
    };
    // A handshake-era session.
    let r = post(&[CT, JSON_SSE, auth], init_body());
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.session_id();
    let s = ("Mcp-Session-Id", sid.as_str());
    refused(post(
        &[CT, JSON_SSE, auth, s],
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_invoice"}}"#,
    ));
    // A stateless (2026-07-28) one, headers and all.
    refused(post(
        &[
            CT,
            JSON_SSE,
            auth,
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "delete_invoice"),
        ],
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_invoice","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
    ));
    // Without a session at all.
    refused(post(
        &[CT, JSON_SSE, auth],
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_invoice"}}"#,
    ));
    let seen = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap();
    assert!(
        !seen.contains("delete_invoice") && !seen.contains("tools/call"),
        "nothing of the notifications reached the upstream: {seen}"
    );
    let out = cli(&gw.dir, &["audit", "--json", "--limit", "0"]);
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    let refusals = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["rule"] == "(invalid message)"
                && r["decision"] == "deny"
                && r["grant_label"] == "alice"
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("sent as a notification"))
        })
        .count();
    assert_eq!(refusals, 3, "one audit record per refusal: {audit:#}");
}

#[test]
fn legacy_sse_clients_and_servers_through_the_gateway() {
    let Some(py1) = peer("venv1/bin/python") else {
        return;
    };
    let up_port = free_port();
    let _upstream = Bg(Command::new(&py1)
        .arg(repo().join("crates/portcullis/tests/peers/server1_sse.py"))
        .args([&up_port.to_string(), "sse"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", up_port)).is_err() {
        assert!(Instant::now() < deadline, "the SSE server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let servers = format!(
        "[[servers]]\nname = \"py1\"\nurl = \"http://127.0.0.1:{up_port}/sse\"\npolicy = \"p.json\"\nauth = \"token\"\ntokens = [{{ label = \"alice\", token = \"${{PORTCULLIS_TEST_TOKEN}}\" }}]\n"
    );
    let gw = serve(
        "sse",
        &servers,
        &[(
            "p.json",
            json!({"version":"1","default":"allow","hide":["drop_table"]}).to_string(),
        )],
    );
    let actions = json!([{"op":"list_tools"},{"op":"call","name":"add","args":{"a":20,"b":22}},{"op":"call","name":"drop_table","args":{"name":"x"}}]);
    for face in ["--sse", "--http"] {
        let path = if face == "--sse" { "sse" } else { "mcp" };
        let url = format!("http://127.0.0.1:{}/{path}/py1", gw.port);
        let out = drive1(
            &py1,
            &[face, &url, "--token", "tok-alice-0123456789"],
            &actions,
        );
        let r = out["results"].as_array().unwrap();
        let names: Vec<&str> = r[0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["add"], "{face}");
        assert_eq!(text(&r[1]), "42", "{face}");
        assert!(text(&r[2]).starts_with("[POLICY DENIED]"), "{face}");
    }
    // The SSE face refuses without a token, and for an unknown session.
    assert_eq!(http(gw.port, "GET", "/sse/py1", &[], b"").status, 401);
    let r = http(
        gw.port,
        "POST",
        "/sse/py1/messages?session_id=nope",
        &[CT, ("Authorization", "Bearer tok-alice-0123456789")],
        b"{}",
    );
    assert_eq!(r.status, 404);
}

#[test]
fn inspector_cli_over_http() {
    let (Some(inspector), Some(time)) = (
        peer("node/node_modules/.bin/mcp-inspector"),
        peer("venv/bin/mcp-server-time"),
    ) else {
        return;
    };
    let servers = format!("[[servers]]\nname = \"time\"\ncommand = [\"{}\", \"--local-timezone\", \"UTC\"]\npolicy = \"p.json\"\nauth = \"none\"\n", time.display());
    let gw = serve(
        "inspector",
        &servers,
        &[(
            "p.json",
            json!({"version":"1","default":"deny","tools":{"get_current_time":{}}}).to_string(),
        )],
    );
    let url = format!("http://127.0.0.1:{}/mcp/time", gw.port);
    let run = |tool: &str, arg: &str| -> Value {
        inspector_call(&inspector, &[&url, "--transport", "http"], tool, arg)
    };
    assert!(text(&run("get_current_time", "timezone=UTC")).contains("UTC"));
    let denied = run("convert_time", "time=12:00");
    assert!(text(&denied).starts_with("[POLICY DENIED]"), "{denied}");
}

#[test]
fn python2_client_through_serve_to_a_python2_http_server_both_eras() {
    let Some(py) = peer("venv/bin/python") else {
        return;
    };
    let up_port = free_port();
    let record =
        std::env::temp_dir().join(format!("portcullis-http-py2-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&record);
    let _upstream = Bg(Command::new(&py)
        .arg(repo().join("crates/portcullis/tests/peers/server2_http.py"))
        .arg(up_port.to_string())
        .env("RECORD", &record)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", up_port)).is_err() {
        assert!(Instant::now() < deadline, "the upstream did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let servers = format!(
        "[[servers]]\nname = \"py2\"\nurl = \"http://127.0.0.1:{up_port}/mcp\"\npolicy = \"p.json\"\nauth = \"token\"\ntokens = [{{ label = \"alice\", token = \"${{PORTCULLIS_TEST_TOKEN}}\" }}]\n"
    );
    let policy = json!({"version":"1","default":"deny","hide":["drop_table"],"tools":{
        "add":{"deny_if":[{"conditions":[{"path":"args.a","op":"gt","value":1000}],"on_deny":"Too big."}]},
        "slow_count":{}}});
    let gw = serve("py2", &servers, &[("p.json", policy.to_string())]);
    let url = format!("http://127.0.0.1:{}/mcp/py2", gw.port);
    let actions = json!([
        {"op":"list_tools"},
        {"op":"call","name":"add","args":{"a":2,"b":40}},
        {"op":"call","name":"add","args":{"a":2000,"b":1}},
        {"op":"call","name":"drop_table","args":{"name":"invoices"}},
        {"op":"call","name":"slow_count","args":{"n":3},"progress":true}
    ]);
    for (mode, version) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        let out = drive(&py, mode, &url, Some("tok-alice-0123456789"), &actions);
        assert_eq!(out["protocol_version"], version);
        let r = out["results"].as_array().unwrap();
        let names: Vec<&str> = r[0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["add", "slow_count"], "{mode}");
        assert_eq!(text(&r[1]), "42");
        assert_eq!(text(&r[2]), "[POLICY DENIED] Too big.");
        assert!(text(&r[3]).starts_with("[POLICY DENIED]"));
        assert_eq!(text(&r[4]), "counted to 3");
        assert_eq!(r[4]["_progress"], json!([1.0, 2.0, 3.0]), "{mode}");
        if mode == "auto" {
            assert_eq!(r[2]["resultType"], "complete");
        }
    }
    let seen = std::fs::read_to_string(&record).unwrap();
    assert_eq!(
        seen.lines().count(),
        4,
        "two adds and two counts reached the server: {seen}"
    );
    assert!(!seen.contains("drop_table") && !seen.contains("2000"));
}

#[test]
fn a_modern_client_closing_its_response_cancels_upstream() {
    let gw = serve(
        "cancel",
        &recording_servers("p.json"),
        &[(
            "p.json",
            json!({"version":"1","default":"allow"}).to_string(),
        )],
    );
    let body = r#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"slow","arguments":{"seconds":30},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let req = format!(
        "POST /mcp/rec HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nAuthorization: Bearer tok-alice-0123456789\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: slow\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    // Wait until the call reached the server, then walk away.
    let record = gw.dir.join("record.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&record)
        .unwrap_or_default()
        .contains("\"slow\"")
    {
        assert!(
            Instant::now() < deadline,
            "the call never reached the server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = std::fs::read_to_string(&record).unwrap();
        let call: Value =
            serde_json::from_str(seen.lines().find(|l| l.contains("\"slow\"")).unwrap()).unwrap();
        if let Some(c) = seen.lines().find(|l| l.contains("notifications/cancelled")) {
            let c: Value = serde_json::from_str(c).unwrap();
            assert_eq!(
                c["params"]["requestId"], call["id"],
                "the cancellation names the upstream request"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no cancellation reached the server:\n{seen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .arg("--config")
        .arg(dir.join("portcullis.toml"))
        .output()
        .unwrap()
}

#[test]
fn grants_decide_who_gets_in_and_every_decision_is_audited() {
    let fixture = fixture_server();
    let servers = format!(
        "[[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{fixture}\"]\npolicy = \"p.json\"\n\n[[servers]]\nname = \"other\"\ncommand = [\"python3\", \"{fixture}\"]\npolicy = \"p.json\"\n"
    );
    let policy = json!({"version":"1","default":"deny","tools":{"read_invoice":{}}});
    let gw = serve("grants", &servers, &[("p.json", policy.to_string())]);
    // Grants are made with the CLI against the same data dir, while the gateway runs.
    let out = cli(
        &gw.dir,
        &[
            "grant",
            "create",
            "--server",
            "rec",
            "--label",
            "alice-laptop",
            "--policy",
            "rec",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = g["token"].as_str().expect("token printed once").to_string();
    assert!(
        token.starts_with("pcx_") && token.len() >= 4 + 64,
        "{token}"
    );
    let out = cli(
        &gw.dir,
        &[
            "grant",
            "create",
            "--server",
            "rec",
            "--label",
            "no-policy",
            "--no-policy",
            "--json",
        ],
    );
    let bare: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bare_token = bare["token"].as_str().unwrap().to_string();

    let bearer = format!("Bearer {token}");
    let auth = ("Authorization", bearer.as_str());
    let call = |path: &str, auth: (&str, &str), id: u32, tool: &str| -> Reply {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"id":{id}}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
        );
        http(
            gw.port,
            "POST",
            path,
            &[
                CT,
                JSON_SSE,
                auth,
                ("MCP-Protocol-Version", "2026-07-28"),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", tool),
            ],
            body.as_bytes(),
        )
    };
    let r = call("/mcp/rec", auth, 1, "read_invoice");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("called read_invoice"), "{}", r.body);
    let r = call("/mcp/rec", auth, 2, "pay_invoice");
    assert!(r.body.contains("(default deny)"), "{}", r.body);
    // A grant without a policy denies everything.
    let bare_bearer = format!("Bearer {bare_token}");
    let r = call(
        "/mcp/rec",
        ("Authorization", bare_bearer.as_str()),
        3,
        "read_invoice",
    );
    assert!(r.body.contains("(no policy)"), "{}", r.body);
    // Wrong server: 403, saying which.
    let r = call("/mcp/other", auth, 4, "read_invoice");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("wrong_server") || r.body.contains("another server"),
        "{}",
        r.body
    );
    // Forged and missing tokens: 401.
    let forged = format!("Bearer {}x", &token[..token.len() - 1]);
    assert_eq!(
        call(
            "/mcp/rec",
            ("Authorization", forged.as_str()),
            5,
            "read_invoice"
        )
        .status,
        401
    );
    assert_eq!(
        call("/mcp/rec", ("X-Nothing", "1"), 6, "read_invoice").status,
        401
    );
    // Revoke: effective on the next request, no restart.
    let out = cli(
        &gw.dir,
        &["grant", "revoke", "alice-laptop", "--server", "rec"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = call("/mcp/rec", auth, 7, "read_invoice");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("revoked"), "{}", r.body);

    // The audit log holds every decision, including the refusals at the door.
    let out = cli(&gw.dir, &["audit", "--json", "--limit", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let records: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(a)) => a,
        _ => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    };
    let find = |pred: &dyn Fn(&Value) -> bool| records.iter().any(pred);
    assert!(
        find(&|r| r["decision"] == "allow"
            && r["tool"] == "read_invoice"
            && r["grant_label"] == "alice-laptop"
            && r["upstream_status"] == "ok"),
        "{records:#?}"
    );
    assert!(find(
        &|r| r["rule"] == "(default deny)" && r["tool"] == "pay_invoice"
    ));
    assert!(find(&|r| r["rule"] == "(no policy)"));
    assert!(find(&|r| r["rule"]
        .as_str()
        .is_some_and(|s| s.contains("wrong_server"))));
    assert!(find(&|r| r["rule"]
        .as_str()
        .is_some_and(|s| s.contains("revoked"))));
    assert!(find(&|r| r["rule"]
        .as_str()
        .is_some_and(|s| s.contains("missing_token"))));
    // Argument values are not stored by default; their keys and a keyed hash are.
    let allowed = records
        .iter()
        .find(|r| r["decision"] == "allow" && r["tool"] == "read_invoice")
        .unwrap();
    assert_eq!(allowed["arg_keys"], json!(["id"]));
    assert!(allowed["args"].is_null());
    assert!(allowed["args_hmac"].as_str().is_some_and(|h| h.len() >= 32));
    assert!(
        !text.contains(&token),
        "the token never reaches the audit log"
    );
}

#[test]
fn after_kill_9_under_load_every_answered_call_is_audited_and_counted() {
    let servers = open_recording_server("");
    let policy = json!({"version":"1","default":"deny","tools":{"read_invoice":{"limits":[{"counter":"reads","window":"day","max":100000,"scope":"grant"}]}}});
    let mut gw = serve("kill9", &servers, &[("p.json", policy.to_string())]);
    let port = gw.port;
    // Eight clients hammer the gateway with modern calls; each remembers the ids it got
    // answers for.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let stop = stop.clone();
            let count = count.clone();
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let id = format!("w{w}-{n}");
                    let body = format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"tools/call","params":{{"name":"read_invoice","arguments":{{"id":{n}}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#);
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { break };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let req = format!("POST /mcp/rec HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: read_invoice\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    if s.write_all(req.as_bytes()).is_err() {
                        break;
                    }
                    let mut raw = Vec::new();
                    let _ = s.read_to_end(&mut raw);
                    if String::from_utf8_lossy(&raw).contains("called read_invoice") {
                        answered.push(id);
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                answered
            })
        })
        .collect();
    // Under way: at least 1.5 s and 50 answers (a busy machine takes longer to get there).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500)
        || (count.load(std::sync::atomic::Ordering::Relaxed) < 50
            && t0.elapsed() < Duration::from_secs(20))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    // kill -9 the gateway mid-flight.
    unsafe {
        libc_kill(gw.child.id() as i32, 9);
    }
    let _ = gw.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        answered.len() > 20,
        "the load did not get going ({} answers)",
        answered.len()
    );
    // Every answered call is in the audit log...
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "audit",
            "--json",
            "--limit",
            "0",
            "--decision",
            "allow",
            "--config",
        ])
        .arg(gw.dir.join("portcullis.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let records: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(a)) => a,
        _ => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    };
    let ids: std::collections::HashSet<String> = records
        .iter()
        .filter_map(|r| {
            r["request_id"]
                .as_str()
                .map(|s| s.trim_matches('"').to_string())
        })
        .collect();
    let missing: Vec<&String> = answered.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered calls have no audit record: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
    // ...and the day counter survived: a restarted gateway still counts them.
    let db = gw.dir.join("data/counters.db");
    let out = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(sum(r[0] for r in c.execute('select used from counters')))", db.to_str().unwrap()])
        .output()
        .unwrap();
    let used: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        used >= answered.len() as u64,
        "the day counter holds {used}, but {} calls were answered",
        answered.len()
    );
}

#[test]
fn policies_reload_under_load_without_a_failed_request() {
    let servers = open_recording_server("");
    let allow = json!({"version":"1","default":"deny","tools":{"read_invoice":{}}});
    let gw = serve("reload", &servers, &[("p.json", allow.to_string())]);
    let port = gw.port;
    // One legacy session kept open across the reload, and continuous stateless load.
    let r = http(
        port,
        "POST",
        "/mcp/rec",
        &[CT, JSON_SSE],
        init_body().as_bytes(),
    );
    let sid = r.session_id();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut denied, mut failed) = (0, 0, Vec::new());
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let r = stateless_read_invoice(port, n);
                if r.status == 200 && r.body.contains("called read_invoice") {
                    ok += 1;
                } else if r.status == 200 && r.body.contains("[POLICY DENIED]") {
                    denied += 1;
                } else {
                    failed.push(format!("{} {}", r.status, r.body));
                }
            }
            (ok, denied, failed)
        })
    };
    let session_call = |id: u32| -> String {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"read_invoice","arguments":{{"id":1}}}}}}"#
        );
        http(
            port,
            "POST",
            "/mcp/rec",
            &[CT, JSON_SSE, ("Mcp-Session-Id", sid.as_str())],
            body.as_bytes(),
        )
        .body
    };
    assert!(session_call(100).contains("called read_invoice"));
    std::thread::sleep(Duration::from_millis(700));
    // A valid change: deny the tool. It applies to the next request, the open session included.
    let deny = json!({"version":"1","default":"deny","tools":{"read_invoice":{"deny_if":[{"conditions":[],"on_deny":"Reads are paused."}]}}});
    std::fs::write(gw.dir.join("p.json"), deny.to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !session_call(101).contains("Reads are paused.") {
        assert!(
            Instant::now() < deadline,
            "the valid change was never applied"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // An invalid change is rejected; the last good policy keeps running.
    std::fs::write(
        gw.dir.join("p.json"),
        r#"{"version":"1","default":"deny","tools":{"read_invoice":{"deny_iff":[]}}}"#,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        session_call(102).contains("Reads are paused."),
        "the rejected change must not apply"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, denied, failed) = load.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} requests failed during reload, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(
        ok > 0 && denied > 0,
        "load saw both policies: {ok} allowed, {denied} denied"
    );
    // Both reloads are in the audit log; the rejected one with the validator's message.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "--json", "--limit", "0", "--config"])
        .arg(gw.dir.join("portcullis.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("reloaded 1 policies"), "{text}");
    assert!(
        text.contains("reload rejected") && text.contains("deny_iff"),
        "the rejection names the problem"
    );
}

#[test]
fn upstream_credentials_with_header_injection_are_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("portcullis-http-{}-inject", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("portcullis.toml"),
        "[gateway]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n[[servers]]\nname = \"up\"\nurl = \"http://127.0.0.1:9/mcp\"\nheaders = { Authorization = \"Bearer ${PORTCULLIS_TEST_INJECT}\" }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--config",
            dir.join("portcullis.toml").to_str().unwrap(),
        ])
        .env("PORTCULLIS_TEST_INJECT", "abc\r\nX-Injected: 1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("headers.Authorization is not a valid HTTP header"),
        "{err}"
    );
    assert!(
        !err.contains("X-Injected: 1\n") && !err.contains("abc\r\n"),
        "the secret is not echoed: {err}"
    );
}

#[test]
fn an_expired_grant_is_refused_and_audited() {
    let fixture = fixture_server();
    let servers = format!("[[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{fixture}\"]\npolicy = \"p.json\"\n");
    let gw = serve(
        "expired",
        &servers,
        &[(
            "p.json",
            json!({"version":"1","default":"allow"}).to_string(),
        )],
    );
    let out = cli(
        &gw.dir,
        &[
            "grant",
            "create",
            "--server",
            "rec",
            "--label",
            "short",
            "--policy",
            "rec",
            "--expires",
            "1s",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = serde_json::from_slice::<Value>(&out.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1600));
    let bearer = format!("Bearer {token}");
    let r = http(
        gw.port,
        "POST",
        "/mcp/rec",
        &[CT, JSON_SSE, ("Authorization", bearer.as_str())],
        init_body().as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert!(r.body.contains("expired"), "{}", r.body);
    let out = cli(&gw.dir, &["audit", "--json", "--limit", "0"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("expired"));
    assert!(
        !std::fs::read_to_string(gw.dir.join("record.jsonl"))
            .unwrap_or_default()
            .contains("initialize"),
        "nothing reached the upstream"
    );
}

#[test]
fn a_client_pinned_to_2026_is_bridged_to_a_handshake_era_server() {
    let (Some(py), Some(everything)) = (
        peer("venv/bin/python"),
        peer("node/node_modules/.bin/mcp-server-everything"),
    ) else {
        return;
    };
    let servers = format!("[[servers]]\nname = \"everything\"\ncommand = [\"{}\", \"stdio\"]\npolicy = \"p.json\"\nauth = \"none\"\n", everything.display());
    let gw = serve(
        "bridge",
        &servers,
        &[(
            "p.json",
            json!({"version":"1","default":"allow","hide":["get-env"]}).to_string(),
        )],
    );
    let url = format!("http://127.0.0.1:{}/mcp/everything", gw.port);
    let out = drive(
        &py,
        "2026-07-28",
        &url,
        None,
        &json!([
            {"op":"list_tools"},
            {"op":"call","name":"echo","args":{"message":"bridged"}},
            {"op":"call","name":"trigger-long-running-operation","args":{"duration":1,"steps":2},"progress":true},
            {"op":"call","name":"get-env","args":{}}
        ]),
    );
    assert_eq!(out["protocol_version"], "2026-07-28");
    let r = out["results"].as_array().unwrap();
    assert!(!r[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "get-env"));
    assert_eq!(text(&r[1]), "Echo: bridged");
    assert_eq!(
        r[1]["resultType"], "complete",
        "a handshake-era answer gets the stateless era's resultType"
    );
    assert_eq!(r[2]["_progress"], json!([1.0, 2.0]));
    assert!(text(&r[3]).starts_with("[POLICY DENIED]"));
    // A dual-era client still negotiates the handshake with the same server (full features).
    let auto = drive(
        &py,
        "auto",
        &url,
        None,
        &json!([{"op":"call","name":"echo","args":{"message":"x"}}]),
    );
    assert_eq!(auto["protocol_version"], "2025-11-25");
}

#[test]
fn handshake_clients_are_bridged_to_a_server_that_only_speaks_2026() {
    let Some(py) = peer("venv/bin/python") else {
        return;
    };
    let fixture = fixture_server();
    let servers = format!("[[servers]]\nname = \"modern\"\ncommand = [\"env\", \"MODERN_ONLY=1\", \"python3\", \"{fixture}\"]\npolicy = \"p.json\"\nauth = \"none\"\n");
    let policy = json!({"version":"1","default":"deny","hide":["delete_invoice"],"tools":{"read_invoice":{}}});
    let gw = serve("modern-only", &servers, &[("p.json", policy.to_string())]);
    let url = format!("http://127.0.0.1:{}/mcp/modern", gw.port);
    let actions = json!([
        {"op":"list_tools"},
        {"op":"call","name":"read_invoice","args":{"id":3}},
        {"op":"call","name":"pay_invoice","args":{"id":3}},
        {"op":"call","name":"read_invoice","args":{"id":4},"progress":true}
    ]);
    for mode in ["legacy", "auto"] {
        let out = drive(&py, mode, &url, None, &actions);
        let r = out["results"].as_array().unwrap();
        let names: Vec<&str> = r[0]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{mode}: {out}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"read_invoice") && !names.contains(&"delete_invoice"),
            "{mode}: {names:?}"
        );
        assert_eq!(text(&r[1]), "called read_invoice with {\"id\":3}", "{mode}");
        assert_eq!(
            r[2]["_meta"]["portcullis/decision"]["rule"], "(default deny)",
            "{mode}"
        );
        assert_eq!(
            r[3]["_progress"],
            json!([1.0, 2.0]),
            "{mode}: progress through the bridge"
        );
    }
    // Every request reached the server stateless, with the handshake's capabilities in _meta.
    let seen = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap();
    for line in seen.lines().filter(|l| l.contains("\"tools/call\"")) {
        assert!(
            line.contains("io.modelcontextprotocol/protocolVersion"),
            "{line}"
        );
    }
    assert!(!seen.contains("pay_invoice") && !seen.contains("delete_invoice"));
    // A bridged session has no GET stream of its own (it shares the server's stateless
    // connection, whose stray messages belong to no one session): 405, as a server without
    // one answers.
    let r = http(
        gw.port,
        "POST",
        "/mcp/modern",
        &[CT, JSON_SSE],
        init_body().as_bytes(),
    );
    let sid = r.session_id();
    let r = http(
        gw.port,
        "GET",
        "/mcp/modern",
        &[("Accept", "text/event-stream"), ("Mcp-Session-Id", &sid)],
        b"",
    );
    assert_eq!(r.status, 405, "{}", r.body);
}

/// Starts `portcullis serve` again on an existing test directory (a restart), on a new port.
fn restart(old: Gw) -> Gw {
    let dir = old.dir.clone();
    drop(old);
    let port = free_port();
    let cfg = std::fs::read_to_string(dir.join("portcullis.toml")).unwrap();
    let cfg = cfg
        .lines()
        .map(|l| {
            if l.starts_with("listen = ") {
                format!("listen = \"127.0.0.1:{port}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("portcullis.toml"), cfg).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--config",
            dir.join("portcullis.toml").to_str().unwrap(),
            "--log",
            "warn",
        ])
        .env("RECORD", dir.join("record.jsonl"))
        .env("PORTCULLIS_TEST_TOKEN", "tok-alice-0123456789")
        .env("PORTCULLIS_TEST_HOOK_SECRET", "hook-secret")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port);
    Gw { child, port, dir }
}

#[test]
fn approvals_hold_risky_calls_until_a_human_decides() {
    // A webhook receiver that checks the HMAC signature of what it gets.
    let hook_port = free_port();
    let hook_log = scratch("hook").join("hook.log");
    let receiver = format!(
        r#"
import hashlib, hmac, http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        want = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(want, self.headers.get("X-Portcullis-Signature", ""))
        open(sys.argv[1], "a").write(("valid " if ok else "INVALID ") + body.decode() + "\n")
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", {hook_port}), H).serve_forever()
"#
    );
    let _hook = Bg(Command::new("python3")
        .args(["-c", &receiver, hook_log.to_str().unwrap()])
        .spawn()
        .unwrap());
    wait_port(hook_port);
    let servers = open_recording_server("");
    let policy = json!({"version":"1","default":"deny","tools":{
        "read_invoice":{},
        "pay_invoice":{"approve_if":[{"conditions":[{"path":"args.amount","op":"gt","value":100}],"reason":"Money moves.","timeout":"10m"}],
                        "limits":[{"counter":"pay","window":"minute","max":5,"scope":"server"}]}}});
    let gw = serve("approvals", &servers, &[("p.json", policy.to_string())]);
    // Point the gateway at the receiver (hot reload does not cover [gateway]; restart).
    let cfg = std::fs::read_to_string(gw.dir.join("portcullis.toml")).unwrap();
    let cfg = cfg.replacen("[gateway]\n", &format!("[gateway]\napproval_webhook = \"http://127.0.0.1:{hook_port}/hook\"\napproval_webhook_secret = \"${{PORTCULLIS_TEST_HOOK_SECRET}}\"\n"), 1);
    std::fs::write(gw.dir.join("portcullis.toml"), cfg).unwrap();
    let gw = restart(gw);
    let call = |gw: &Gw, id: &str, amount: u32| -> Value {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":"{id}","method":"tools/call","params":{{"name":"pay_invoice","arguments":{{"id":7,"amount":{amount},"meta":{{"b":1,"a":2}}}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
        );
        let r = stateless_call(gw.port, "pay_invoice", &body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
    };
    let approval_id = |v: &Value| {
        v["result"]["_meta"]["portcullis/approval"]["id"]
            .as_str()
            .map(str::to_owned)
    };
    let approvals = |gw: &Gw, args: &[&str]| cli(&gw.dir, args);
    let upstream_calls = |gw: &Gw| {
        std::fs::read_to_string(gw.dir.join("record.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"pay_invoice\""))
            .count()
    };

    // Below the threshold: no approval needed.
    assert!(call(&gw, "small", 50)["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("called pay_invoice"));
    // Above it: held, with an id, what to do and the expiry.
    let first = call(&gw, "a1", 500);
    let text = first["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("[APPROVAL REQUIRED] Money moves.")
            && text.contains("retry the identical call"),
        "{text}"
    );
    assert_eq!(first["result"]["isError"], true);
    assert!(first["result"]["_meta"]["portcullis/approval"]["expiresAt"]
        .as_str()
        .is_some_and(|e| e.ends_with('Z')));
    let id = approval_id(&first).expect("approval id");
    assert!(id.starts_with("apr_"));
    // A duplicate while pending reuses the id (argument key order does not matter).
    assert_eq!(approval_id(&call(&gw, "a2", 500)), Some(id.clone()));
    assert_eq!(
        upstream_calls(&gw),
        1,
        "only the small payment reached the server"
    );
    // The approval request survives a restart; a human approves it with the CLI.
    let gw = restart(gw);
    let out = approvals(&gw, &["approvals", "approve", &id, "--by", "carol"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two identical retries race: exactly one is forwarded, the other gets a clear answer.
    let (r1, r2) = std::thread::scope(|s| {
        let a = s.spawn(|| call(&gw, "r1", 500));
        let b = s.spawn(|| call(&gw, "r2", 500));
        (a.join().unwrap(), b.join().unwrap())
    });
    let passed = [&r1, &r2]
        .iter()
        .filter(|r| {
            r["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("called pay_invoice"))
        })
        .count();
    assert_eq!(passed, 1, "exactly one retry passes: {r1} {r2}");
    let other = if approval_id(&r1).is_some() { &r1 } else { &r2 };
    let new_id = approval_id(other).expect("the loser is told a new approval is needed");
    assert_ne!(new_id, id);
    assert_eq!(upstream_calls(&gw), 2);
    // Deny path.
    let out = approvals(
        &gw,
        &[
            "approvals",
            "deny",
            &new_id,
            "--reason",
            "Not this month.",
            "--by",
            "carol",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let denied = call(&gw, "d1", 500);
    assert!(
        denied["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("[POLICY DENIED] Approval denied: Not this month."),
        "{denied}"
    );
    assert_eq!(upstream_calls(&gw), 2);
    // The webhook got a signed notification for each new request.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&hook_log).unwrap_or_default();
        if log.contains(&id) && log.contains(&new_id) {
            assert!(!log.contains("INVALID"), "{log}");
            assert_eq!(
                log.lines().filter(|l| l.starts_with("valid ")).count(),
                2,
                "one notification per new request: {log}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "webhook not received: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every state change is audited.
    let out = cli(&gw.dir, &["audit", "--json", "--limit", "0"]);
    let audit = String::from_utf8_lossy(&out.stdout);
    for what in ["requested approval", "consumed", "approved", "denied"] {
        assert!(audit.contains(what), "no audit record mentions {what:?}");
    }
}

#[test]
fn hold_open_forwards_the_moment_a_human_approves() {
    let servers = open_recording_server("hold = \"20s\"\n");
    let policy = json!({"version":"1","default":"deny","tools":{"pay_invoice":{"approve_if":[{"conditions":[],"reason":"Money moves."}]}}});
    let gw = serve("hold", &servers, &[("p.json", policy.to_string())]);
    let port = gw.port;
    let waiting = std::thread::spawn(move || {
        let body = r#"{"jsonrpc":"2.0","id":"h1","method":"tools/call","params":{"name":"pay_invoice","arguments":{"id":1},"_meta":{"progressToken":"pt-1","io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        let t0 = Instant::now();
        let r = stateless_call(port, "pay_invoice", body);
        (r, t0.elapsed())
    });
    // An operator finds the pending request and approves it while the client waits.
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        let out = cli(&gw.dir, &["approvals", "list", "--json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(id) = list
            .as_array()
            .and_then(|a| a.first())
            .and_then(|a| a["id"].as_str())
        {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "no pending approval appeared");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(1200)); // long enough for a progress notification
    let out = cli(&gw.dir, &["approvals", "approve", &id, "--by", "dave"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (r, took) = waiting.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("called pay_invoice"),
        "forwarded once approved: {}",
        r.body
    );
    assert!(
        r.body.contains("waiting for approval") && r.body.contains("\"pt-1\""),
        "progress with the client's own token while held: {}",
        r.body
    );
    assert!(
        took < Duration::from_secs(15),
        "answered when approved, not at the hold's end ({took:?})"
    );
    let seen = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap();
    assert_eq!(
        seen.lines()
            .filter(|l| l.contains("\"pay_invoice\""))
            .count(),
        1
    );
}

#[test]
fn a_hold_that_runs_out_answers_approval_required() {
    let servers = open_recording_server("hold = \"1s\"\n");
    let policy = json!({"version":"1","default":"deny","tools":{"pay_invoice":{"approve_if":[{"conditions":[],"reason":"Money moves."}]}}});
    let gw = serve("hold-timeout", &servers, &[("p.json", policy.to_string())]);
    let (r, took) = timed_stateless_call(gw.port, "h2", "pay_invoice", json!({"id": 2}));
    assert!(
        took >= Duration::from_millis(900),
        "held for the configured second"
    );
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["id"], "h2");
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("[APPROVAL REQUIRED] Money moves."),
        "{v}"
    );
    assert!(!std::fs::read_to_string(gw.dir.join("record.jsonl"))
        .unwrap_or_default()
        .contains("pay_invoice"));
}

/// One stateless-era `tools/call` to `/mcp/rec`; the reply and how long it took.
fn timed_stateless_call(port: u16, id: &str, tool: &str, args: Value) -> (Reply, Duration) {
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args,
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    let t0 = Instant::now();
    let r = stateless_call(port, tool, &body.to_string());
    (r, t0.elapsed())
}

#[test]
fn an_approve_if_entry_sets_its_own_hold_over_the_servers() {
    // The server holds for 20 s; one entry answers at once ("0s"), another holds 1 s.
    let servers = open_recording_server("hold = \"20s\"\n");
    let policy = json!({"version":"1","default":"deny","tools":{
        "delete_invoice":{"approve_if":[{"conditions":[],"reason":"Refunds need a human.","hold":"0s"}]},
        "pay_invoice":{"approve_if":[{"conditions":[{"path":"args.amount","op":"gt","value":1000}],"reason":"Big payment.","hold":"1s"}]}}});
    let gw = serve("hold-entry", &servers, &[("p.json", policy.to_string())]);
    let text = |r: &Reply| {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (r, took) = timed_stateless_call(gw.port, "e1", "delete_invoice", json!({"id": 7}));
    assert!(
        text(&r).starts_with("[APPROVAL REQUIRED] Refunds need a human."),
        "{}",
        r.body
    );
    assert!(
        took < Duration::from_secs(5),
        "the entry's \"0s\" answers at once, not after the server's 20 s ({took:?})"
    );
    let (r, took) = timed_stateless_call(gw.port, "e2", "pay_invoice", json!({"amount": 5000}));
    assert!(
        text(&r).starts_with("[APPROVAL REQUIRED] Big payment."),
        "{}",
        r.body
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "held for the entry's 1 s, not the server's 20 s ({took:?})"
    );
    let seen = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap_or_default();
    assert!(
        !seen.contains("\"delete_invoice\"") && !seen.contains("\"pay_invoice\""),
        "nothing reached the upstream: {seen}"
    );
}

#[test]
fn a_real_mcp_client_waits_for_an_approval_then_passes_once() {
    let Some(py) = peer("venv/bin/python") else {
        return;
    };
    let servers = open_recording_server("");
    let policy = json!({"version":"1","default":"deny","tools":{"pay_invoice":{"approve_if":[{"conditions":[],"reason":"Money moves."}]}}});
    let gw = serve(
        "approval-client",
        &servers,
        &[("p.json", policy.to_string())],
    );
    let url = format!("http://127.0.0.1:{}/mcp/rec", gw.port);
    // The client asks, waits 3 s (meanwhile a human approves), retries, then retries again.
    let dir = gw.dir.clone();
    let approver = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = cli(&dir, &["approvals", "list", "--json"]);
            let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if let Some(id) = list
                .as_array()
                .and_then(|a| a.first())
                .and_then(|a| a["id"].as_str())
            {
                let out = cli(&dir, &["approvals", "approve", id, "--by", "erin"]);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "no pending approval appeared");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let pay = json!({"op":"call","name":"pay_invoice","args":{"id":9,"amount":1200}});
    let out = drive(
        &py,
        "auto",
        &url,
        None,
        &json!([pay, {"op":"sleep","seconds":3}, pay, pay]),
    );
    let approved = approver.join().unwrap();
    let r = out["results"].as_array().unwrap();
    assert!(
        text(&r[0]).starts_with("[APPROVAL REQUIRED] Money moves."),
        "{}",
        r[0]
    );
    assert_eq!(
        r[0]["_meta"]["portcullis/approval"]["id"],
        approved.as_str()
    );
    assert_eq!(
        text(&r[2]),
        "called pay_invoice with {\"amount\":1200,\"id\":9}",
        "the approved retry passes"
    );
    assert!(
        text(&r[3]).starts_with("[APPROVAL REQUIRED]"),
        "passes once: {}",
        r[3]
    );
    assert_ne!(
        r[3]["_meta"]["portcullis/approval"]["id"],
        approved.as_str(),
        "a new approval is needed"
    );
}

#[test]
fn an_expired_approval_request_is_audited_and_replaced() {
    let servers = open_recording_server("");
    let policy = json!({"version":"1","default":"deny","tools":{"pay_invoice":{"approve_if":[{"conditions":[],"reason":"Money moves.","timeout":"1s"}]}}});
    let gw = serve(
        "approval-expiry",
        &servers,
        &[("p.json", policy.to_string())],
    );
    let call = || -> Value {
        let body = r#"{"jsonrpc":"2.0","id":"e","method":"tools/call","params":{"name":"pay_invoice","arguments":{"id":5},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
        let r = stateless_call(gw.port, "pay_invoice", body);
        serde_json::from_str(&r.body).unwrap()
    };
    let first = call()["result"]["_meta"]["portcullis/approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1300));
    let second = call()["result"]["_meta"]["portcullis/approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first, second, "an expired request is replaced by a new one");
    let out = cli(&gw.dir, &["audit", "--json", "--limit", "0"]);
    let audit = String::from_utf8_lossy(&out.stdout);
    assert!(
        audit.contains(&format!("expired {first}")),
        "the expiry is audited: {audit}"
    );
    // The CLI refuses to approve the expired one, saying why.
    let out = cli(&gw.dir, &["approvals", "approve", &first, "--by", "frank"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expired"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 2025-11-25 resumability on our face: a client whose request stream breaks after the first
/// progress event GETs with `Last-Event-ID` and receives the rest — the second progress event
/// and the answer that arrived while it was away — and nothing it already had.
#[test]
fn a_broken_request_stream_resumes_with_last_event_id() {
    let servers = open_recording_server("");
    let gw = serve(
        "resume",
        &servers,
        &[("p.json", r#"{"version":"1","default":"allow"}"#.into())],
    );
    let post =
        |h: &[(&str, &str)], body: &str| http(gw.port, "POST", "/mcp/rec", h, body.as_bytes());
    let r = post(&[CT, JSON_SSE], init_body());
    let sid = r.session_id();
    let version = ("MCP-Protocol-Version", "2025-11-25");
    let s = ("Mcp-Session-Id", sid.as_str());
    let r = post(
        &[CT, version, s],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(r.status, 202);

    // The call: read its stream up to the first progress event, then drop the connection.
    let body = r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"slow","arguments":{"seconds":1.5},"_meta":{"progressToken":"p1"}}}"#;
    let mut conn = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "POST /mcp/rec HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\nMcp-Session-Id: {sid}\r\nContent-Length: {}\r\n\r\n{body}",
        gw.port,
        body.len()
    )
    .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("\"progress\":1") {
        let n = conn.read(&mut buf).expect("the stream's first events");
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(conn);
    // A priming event (id, retry, no message) opens the stream; every event has an id.
    let ids: Vec<&str> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")))
        .collect();
    assert!(seen.contains("retry:"), "priming event: {seen}");
    assert!(ids.len() >= 2 && ids[0].ends_with("-0"), "{seen}");
    // The client lost everything after the first progress event (a chunk may have carried
    // more): it resumes from that event's id.
    let last = seen
        .split("\n\n")
        .find(|event| event.contains("\"progress\":1"))
        .and_then(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")))
        })
        .expect("the first progress event has an id");

    std::thread::sleep(Duration::from_millis(2500)); // the answer arrives meanwhile
    let r = http(
        gw.port,
        "GET",
        "/mcp/rec",
        &[
            ("Accept", "text/event-stream"),
            version,
            s,
            ("Last-Event-ID", last),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("\"progress\":2") && r.body.contains("slow done"),
        "the rest of the stream: {}",
        r.body
    );
    assert!(
        !r.body.contains("\"progress\":1"),
        "nothing before Last-Event-ID again: {}",
        r.body
    );
    let answer = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .find(|d| d.contains("slow done"))
        .unwrap();
    let v: Value = serde_json::from_str(answer).unwrap();
    assert_eq!(v["id"], "c1", "the client's own id: {v}");
}

/// A POST must say `Content-Type: application/json` (415 otherwise) and, when it sends
/// `Accept`, allow both `application/json` and `text/event-stream` (406 otherwise), on
/// `/mcp/<server>`, `/mcp` and the legacy message endpoint (Content-Type only there). Each
/// refusal has a body saying what to send and an audit record, and nothing reaches the
/// upstream.
#[test]
fn content_type_and_accept_are_checked_and_refusals_audited() {
    let policy = json!({"version":"1","default":"allow"});
    let gw = serve(
        "media",
        &recording_servers("p.json"),
        &[("p.json", policy.to_string())],
    );
    let p = gw.port;
    let auth = ("Authorization", "Bearer tok-alice-0123456789");
    // A session, opened with a charset parameter on the type (allowed).
    let r = http(
        p,
        "POST",
        "/mcp/rec",
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            JSON_SSE,
            auth,
        ],
        init_body().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.session_id();
    let s = ("Mcp-Session-Id", sid.as_str());
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"read_invoice","arguments":{"marker":"refused"}}}"#;
    let refused = |r: Reply, status: u16, error: &str, says: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        let v = r.json();
        assert_eq!(v["error"], error, "{v}");
        let m = v["message"].as_str().unwrap();
        assert!(
            m.contains(says) && m.contains("nothing was forwarded"),
            "{v}"
        );
    };
    let no_type: &[(&str, &str)] = &[JSON_SSE, auth, s];
    for (path, headers) in [
        ("/mcp/rec", no_type),
        (
            "/mcp/rec",
            &[("Content-Type", "text/plain"), JSON_SSE, auth, s],
        ),
        (
            "/mcp/rec",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                JSON_SSE,
                auth,
                s,
            ],
        ),
        ("/mcp", &[("Content-Type", "text/plain"), JSON_SSE, auth, s]),
    ] {
        refused(
            http(p, "POST", path, headers, call.as_bytes()),
            415,
            "unsupported_media_type",
            "Content-Type: application/json",
        );
    }
    for accept in ["application/json", "text/event-stream", "text/html"] {
        refused(
            http(
                p,
                "POST",
                "/mcp/rec",
                &[CT, ("Accept", accept), auth, s],
                call.as_bytes(),
            ),
            406,
            "not_acceptable",
            "Accept: application/json, text/event-stream",
        );
    }
    // The legacy message endpoint checks the type (before the session), not Accept.
    refused(
        http(
            p,
            "POST",
            "/sse/rec/messages?session_id=feedface",
            &[("Content-Type", "text/plain"), auth],
            call.as_bytes(),
        ),
        415,
        "unsupported_media_type",
        "Content-Type: application/json",
    );
    let r = http(
        p,
        "POST",
        "/sse/rec/messages?session_id=feedface",
        &[CT, ("Accept", "text/html"), auth],
        call.as_bytes(),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    // Authentication still comes first: no token, no word about media types.
    let r = http(
        p,
        "POST",
        "/mcp/rec",
        &[("Content-Type", "text/plain")],
        b"{}",
    );
    assert_eq!(r.status, 401, "{}", r.body);
    // Without Accept (HTTP: any type) and with both types, the session works.
    for headers in [&[CT, auth, s][..], &[CT, JSON_SSE, auth, s][..]] {
        let r = http(
            p,
            "POST",
            "/mcp/rec",
            headers,
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_invoice","arguments":{"id":1}}}"#,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.json()["result"]["content"][0]["text"],
            "called read_invoice with {\"id\":1}"
        );
    }

    let seen = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap();
    assert!(
        !seen.contains("refused"),
        "no refused message reached the upstream: {seen}"
    );
    let out = cli(&gw.dir, &["audit", "--json", "--limit", "0"]);
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |rule: &str, says: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["rule"] == rule
                    && r["decision"] == "deny"
                    && r["method"] == "(media type)"
                    && r["grant_label"] == "alice"
                    && r["message"].as_str().is_some_and(|m| m.contains(says))
            })
            .count()
    };
    assert_eq!(
        count("(unsupported media type)", "Content-Type"),
        5,
        "{audit:#}"
    );
    assert_eq!(count("(unsupported media type)", "\"text/plain\""), 3);
    assert_eq!(
        count("(unsupported media type)", "\"-\""),
        1,
        "the missing type"
    );
    assert_eq!(count("(not acceptable)", "Accept"), 3, "{audit:#}");
}

/// Reads until the gateway closes the connection (waiting at most `limit`): what came, and
/// how long it took.
fn until_closed(s: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let t0 = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "still open after {:?} ({e}): {}",
                t0.elapsed(),
                String::from_utf8_lossy(&raw)
            ),
        }
    }
    (String::from_utf8_lossy(&raw).into_owned(), t0.elapsed())
}

/// Slowloris: a head sent a line at a time, a body shorter than its `Content-Length`, a
/// connection that sends nothing, and one idle after its answer are each closed when their
/// timer (1 s, 1 s, 1 s, 2 s here) runs out; meanwhile the gateway serves others at once.
#[test]
fn slow_heads_short_bodies_and_idle_connections_are_closed_in_time() {
    let policy = json!({"version":"1","default":"allow"});
    let gw = serve_with(
        "slowloris",
        "header_read_timeout_secs = 1\nbody_read_timeout_secs = 1\nidle_timeout_secs = 2\n",
        &open_recording_server(""),
        &[("p.json", policy.to_string())],
    );
    let p = gw.port;
    let r = http(
        p,
        "POST",
        "/mcp/rec",
        &[CT, JSON_SSE],
        init_body().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.session_id();
    let connect = || TcpStream::connect(("127.0.0.1", p)).unwrap();
    // A head that never ends: a header line every 200 ms.
    let mut head = connect();
    let dribble = {
        let mut w = head.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(b"POST /mcp/rec HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            for i in 0..30 {
                std::thread::sleep(Duration::from_millis(200));
                if w.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    // A body 100 bytes short of its Content-Length.
    let mut short = connect();
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_invoice","arguments":{"marker":"short"}}}"#;
    short
        .write_all(
            format!(
                "POST /mcp/rec HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{call}",
                call.len() + 100
            )
            .as_bytes(),
        )
        .unwrap();
    // Nothing at all.
    let mut silent = connect();
    // Meanwhile a client is served at once: a call on a session opened before them (its
    // upstream started then, so only the call itself is timed).
    let t0 = Instant::now();
    let r = http(
        p,
        "POST",
        "/mcp/rec",
        &[CT, JSON_SSE, ("Mcp-Session-Id", &sid)],
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_invoice","arguments":{"id":1}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "served while the slow ones hang: {:?}",
        t0.elapsed()
    );

    let limit = Duration::from_secs(5);
    let (got, took) = until_closed(&mut head, limit);
    assert!(
        took < Duration::from_millis(2500),
        "slow head closed after {took:?}"
    );
    assert!(!got.contains("200 OK"), "{got}");
    dribble.join().unwrap();
    let (got, took) = until_closed(&mut short, limit);
    assert!(
        took < Duration::from_millis(2500),
        "short body closed after {took:?}"
    );
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(
        got.contains("request_timeout") && got.contains("nothing was forwarded"),
        "{got}"
    );
    let (got, took) = until_closed(&mut silent, limit);
    assert!(
        took < Duration::from_millis(2500) && got.is_empty(),
        "silent: {took:?} {got}"
    );

    // Idle after an answer on a kept-alive connection: closed at the idle timeout (2 s), not
    // at the head timeout (1 s).
    let mut idle = connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let t0 = Instant::now();
    let (got, _) = until_closed(&mut idle, limit);
    let took = t0.elapsed();
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("ok\n"),
        "{got}"
    );
    assert!(
        took > Duration::from_millis(1800) && took < Duration::from_millis(3500),
        "idle connection closed after {took:?}"
    );
    let seen = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap();
    assert!(
        !seen.contains("short"),
        "the short body was not forwarded: {seen}"
    );
}

/// Connections beyond `max_connections_per_ip`, or beyond `max_connections` from any
/// address, get a 503 naming the limit and are closed; a freed place is usable again.
#[test]
fn connections_are_capped_in_all_and_per_client_address() {
    let gw = serve_with(
        "conncap",
        "max_connections = 3\nmax_connections_per_ip = 2\n",
        &open_recording_server(""),
        &[(
            "p.json",
            json!({"version":"1","default":"allow"}).to_string(),
        )],
    );
    let p = gw.port;
    let from = |ip: &str| -> TcpStream {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            let s = s
                .connect(format!("127.0.0.1:{p}").parse().unwrap())
                .await
                .unwrap();
            s.into_std().unwrap()
        })
    };
    let open = |s: &TcpStream| {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 64];
        match (&*s).read(&mut b) {
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            Ok(n) => {
                eprintln!("refused: {}", String::from_utf8_lossy(&b[..n]));
                false
            }
        }
    };
    // A place held by an earlier connection (the start-up probe) is given back when the
    // gateway has seen that connection close: retry a refused first connection briefly.
    let accepted = |ip: &str| -> TcpStream {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = from(ip);
            if open(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "no place for {ip}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let refused = |mut s: TcpStream, limit: &str| {
        s.set_nonblocking(false).unwrap();
        let (got, _) = until_closed(&mut s, Duration::from_secs(5));
        assert!(got.starts_with("HTTP/1.1 503"), "{got}");
        assert!(got.contains(&format!("{limit} limit")), "{got}");
    };
    let a1 = accepted("127.0.0.1");
    let a2 = accepted("127.0.0.1");
    refused(from("127.0.0.1"), "max_connections_per_ip");
    let b1 = accepted("127.0.0.2"); // another address has its own places
    refused(from("127.0.0.2"), "max_connections");
    // A place freed is taken again.
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = http(p, "GET", "/healthz", &[], b"");
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no place freed: {} {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop((a2, b1));
}

/// Opens an SSE stream with a raw GET: the status and the connection, the head read.
fn open_stream(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "closed before the head ended");
        head.push(b[0]);
    }
    let status = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, s)
}

/// Open SSE streams are capped per client address (`max_streams_per_client`), Streamable
/// HTTP GET streams and legacy `/sse` sessions together: one more is answered 429 naming the
/// limit, and a stream that ends gives its place back. A session's new GET stream supersedes
/// its old one, so it holds one place.
#[test]
fn open_sse_streams_are_capped_per_client() {
    let gw = serve_with(
        "streamcap",
        "max_streams_per_client = 2\n",
        &open_recording_server(""),
        &[(
            "p.json",
            json!({"version":"1","default":"allow"}).to_string(),
        )],
    );
    let p = gw.port;
    let r = http(
        p,
        "POST",
        "/mcp/rec",
        &[CT, JSON_SSE],
        init_body().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.session_id();
    // Priming events make the head go out at once.
    let get = [
        ("Mcp-Session-Id", sid.as_str()),
        ("MCP-Protocol-Version", "2025-11-25"),
    ];
    let too_many = |r: Reply| {
        assert_eq!(r.status, 429, "{}", r.body);
        let v = r.json();
        assert_eq!(v["error"], "too_many_streams", "{v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("gateway.max_streams_per_client"),
            "{v}"
        );
    };
    let (st, mut first) = open_stream(p, "/mcp/rec", &get);
    assert_eq!(st, 200);
    let (st, _second) = open_stream(p, "/mcp/rec", &get);
    assert_eq!(st, 200, "a session's new stream supersedes the old");
    // The old stream's chunked body ends (the connection itself stays for the next request).
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut seen = Vec::new();
    let mut b = [0u8; 1024];
    while !seen.ends_with(b"0\r\n\r\n") {
        let n = first.read(&mut b).expect("the old stream ended");
        assert!(n > 0, "closed instead of ending the stream");
        seen.extend_from_slice(&b[..n]);
    }
    let (st, _legacy) = open_stream(p, "/sse/rec", &[]);
    assert_eq!(st, 200, "the client's second stream");
    too_many(http(
        p,
        "GET",
        "/sse/rec",
        &[("Accept", "text/event-stream")],
        b"",
    ));
    // Ending the session ends its stream and frees its place.
    let r = http(
        p,
        "DELETE",
        "/mcp/rec",
        &[("Mcp-Session-Id", sid.as_str())],
        b"",
    );
    assert_eq!(r.status, 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (st, _again) = open_stream(p, "/sse/rec", &[]);
        if st == 200 {
            break;
        }
        assert_eq!(st, 429);
        assert!(Instant::now() < deadline, "the ended stream kept its place");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn write_behind_counters_survive_a_restart_and_own_their_file() {
    // A day limit of 3, counters decided in memory and written behind to counters.db.
    let policy = json!({"version":"1","default":"deny","tools":{
        "read_invoice":{"limits":[{"counter":"reads","window":"day","max":3,"scope":"server"}]}}});
    let servers = format!(
        "{}\n[store]\ncounters = \"write-behind\"\n",
        open_recording_server("")
    );
    let gw = serve("write-behind", &servers, &[("p.json", policy.to_string())]);
    let text = |r: &Reply| {
        r.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for i in 0..3 {
        let (r, _) = timed_stateless_call(gw.port, &format!("a{i}"), "read_invoice", json!({}));
        assert!(text(&r).contains("called read_invoice"), "{}", r.body);
    }
    let (r, _) = timed_stateless_call(gw.port, "a3", "read_invoice", json!({}));
    assert!(text(&r).contains("[POLICY DENIED]"), "{}", r.body);

    // Another gateway on the same data dir would count beside it: a `stdio` one (SQLite
    // counters, shared by transactions) refuses to start, saying why.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["stdio", "--policy"])
        .arg(gw.dir.join("p.json"))
        .arg("--data-dir")
        .arg(gw.dir.join("data"))
        .args(["--", "python3", &fixture_server()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("counters = \"write-behind\""), "{err}");

    // Stopped (SIGTERM) and started again: the day's three calls are still counted.
    let gw = restart(gw);
    let (r, _) = timed_stateless_call(gw.port, "b0", "read_invoice", json!({}));
    assert!(text(&r).contains("[POLICY DENIED]"), "{}", r.body);
    assert_eq!(
        r.json()["result"]["_meta"]["portcullis/decision"]["rule"],
        "/tools/read_invoice/limits/0",
        "{}",
        r.body
    );
    let seen = std::fs::read_to_string(gw.dir.join("record.jsonl")).unwrap();
    assert_eq!(
        seen.lines()
            .filter(|l| l.contains("\"tools/call\""))
            .count(),
        3,
        "exactly three calls reached the upstream"
    );
}
