//! Observability of `portcullis serve`, against the real binary and the recording fixture:
//! `GET /metrics` shows allowed, denied, unlisted and refused calls as the right series; the
//! scrape needs the admin token; a real Prometheus (Debian's package) scraping the gateway
//! with that token stores the request and latency series with their labels and values;
//! `--log-format json` writes one JSON object per line (a request's with its request id and
//! trace id); an HTTP upstream's reopened stream is counted; and the example Prometheus config and
//! alert rules under `examples/prometheus/` pass `promtool` (check and unit tests).

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "pca_metrics-admin-token-0123456789";
const ALICE: &str = "tok-alice-0123456789";

/// The recording fixture as server `rec`: `read_invoice` allowed, `crash` hidden, everything
/// else denied by default; alice's static token.
fn start(test: &Scratch) -> Served {
    start_with(test, &[], &[])
}

/// [`start`] with more environment and arguments.
fn start_with(test: &Scratch, env: &[(&str, &str)], args: &[&str]) -> Served {
    let policy =
        json!({"version":"1","default":"deny","hide":["crash"],"tools":{"read_invoice":{}}});
    start_policy(test, &policy, env, args)
}

/// [`start_with`] with another policy.
fn start_policy(test: &Scratch, policy: &Value, env: &[(&str, &str)], args: &[&str]) -> Served {
    let servers = format!(
        "[[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{}\"]\npolicy = \"p.json\"\nauth = \"token\"\ntokens = [{{ label = \"alice\", token = \"${{PORTCULLIS_TEST_TOKEN}}\" }}]\n",
        fixture_server()
    );
    serve_in(
        test,
        &servers,
        &[("p.json", policy.to_string())],
        &[
            &[
                ("PORTCULLIS_ADMIN_TOKEN", ADMIN),
                ("PORTCULLIS_TEST_TOKEN", ALICE),
            ],
            env,
        ]
        .concat(),
        args,
    )
}

/// One stateless (2026-07-28) request to `/mcp/rec` with `token`.
fn mcp(gw: &Served, token: &str, id: u32, method: &str, params: Value) -> Reply {
    mcp_with(gw, token, id, method, params, &[])
}

/// [`mcp`] with more headers.
fn mcp_with(
    gw: &Served,
    token: &str,
    id: u32,
    method: &str,
    params: Value,
    more: &[(&str, &str)],
) -> Reply {
    let mut params = params;
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}});
    let body = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string();
    let bearer = format!("Bearer {token}");
    let name = params["name"].as_str().unwrap_or_default().to_owned();
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("Authorization", bearer.as_str()),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", method),
    ];
    if !name.is_empty() {
        headers.push(("Mcp-Name", &name));
    }
    headers.extend_from_slice(more);
    http_request(
        gw.port,
        "POST",
        "/mcp/rec",
        &headers,
        body.as_bytes(),
        Duration::from_secs(20),
    )
}

fn call(gw: &Served, id: u32, tool: &str) -> Reply {
    mcp(
        gw,
        ALICE,
        id,
        "tools/call",
        json!({"name": tool, "arguments": {"id": id}}),
    )
}

/// The traffic both tests look for: a listing, 3 allowed calls, 2 denied by default, 1 hidden,
/// 1 to a tool the server does not list, and 1 refused at the door (unknown token).
fn traffic(gw: &Served) {
    let list = mcp(gw, ALICE, 1, "tools/list", json!({}));
    assert_eq!(list.status, 200, "{}", list.body);
    for id in 2..5 {
        let r = call(gw, id, "read_invoice");
        assert!(r.body.contains("called read_invoice"), "{}", r.body);
    }
    for id in 5..7 {
        let r = call(gw, id, "delete_invoice");
        assert!(r.body.contains("[POLICY DENIED]"), "{}", r.body);
    }
    let r = call(gw, 7, "crash");
    assert!(r.body.contains("isError"), "{}", r.body);
    let r = call(gw, 8, "no_such_tool_7f3a");
    assert!(r.body.contains("[POLICY DENIED]"), "{}", r.body);
    let r = mcp(gw, "tok-wrong-000000000000", 9, "tools/list", json!({}));
    assert_eq!(r.status, 401, "{}", r.body);
}

fn scrape(gw: &Served, token: Option<&str>) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
    http_request(
        gw.port,
        "GET",
        "/metrics",
        &headers,
        b"",
        Duration::from_secs(10),
    )
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_what_agents_did_and_need_the_admin_token() {
    let test = Scratch::new("metrics-scrape");
    let gw = start(&test);
    traffic(&gw);
    // Door refusals beyond the token: a body over `max_body_bytes` (413, judged after the
    // token: without one it is a 401) and a wrong Content-Type (415).
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "y".repeat(70_000)
    );
    let bearer = format!("Bearer {ALICE}");
    let post = |headers: &[(&str, &str)], body: &str| {
        http_request(
            gw.port,
            "POST",
            "/mcp/rec",
            headers,
            body.as_bytes(),
            Duration::from_secs(20),
        )
    };
    let ct = ("Content-Type", "application/json");
    assert_eq!(post(&[ct, ("Authorization", &bearer)], &big).status, 413);
    assert_eq!(post(&[ct], &big).status, 401, "the token is judged first");
    let r = post(
        &[("Content-Type", "text/plain"), ("Authorization", &bearer)],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(r.status, 415, "{}", r.body);

    let none = scrape(&gw, None);
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(none.json()["error"], "admin_token_required");
    let grant = scrape(&gw, Some(ALICE));
    assert_eq!(grant.status, 401, "an agent's token never reads metrics");
    assert!(!grant.body.contains("portcullis_requests"));

    // A legacy HTTP+SSE session, open while the scrape runs: its own kind of session.
    let legacy = legacy_sse_session(&gw);

    let r = scrape(&gw, Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{}",
        r.headers
    );
    let text = &r.body;
    let req = |decision: &str, rule: &str, tool: &str| {
        sample(
            text,
            &format!(
                r#"portcullis_requests_total{{server="rec",method="tools/call",decision="{decision}",rule_kind="{rule}",tool="{tool}"}}"#
            ),
        )
    };
    assert_eq!(req("allow", "none", "read_invoice"), Some(3.0), "{text}");
    assert_eq!(req("deny", "(default deny)", "delete_invoice"), Some(2.0));
    assert_eq!(req("hidden", "(hidden)", "crash"), Some(1.0));
    assert_eq!(req("deny", "(default deny)", "(unlisted)"), Some(1.0));
    assert!(!text.contains("no_such_tool"), "callers cannot add series");
    assert_eq!(
        sample(
            text,
            r#"portcullis_requests_total{server="rec",method="tools/list",decision="allow",rule_kind="none",tool=""}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            text,
            r#"portcullis_door_refusals_total{server="rec",reason="unknown_token"}"#
        ),
        Some(1.0)
    );
    for reason in ["body_too_large", "unsupported_media_type", "missing_token"] {
        assert_eq!(
            sample(
                text,
                &format!(r#"portcullis_door_refusals_total{{server="rec",reason="{reason}"}}"#)
            ),
            Some(1.0),
            "{reason}: {text}"
        );
    }
    assert!(
        !text.contains(r#"method="(other)""#),
        "refusals are not requests: {text}"
    );
    // Records per audit commit: one observation per transaction, the records as its sum.
    let batches = sample(text, "portcullis_audit_batches_total").unwrap();
    assert_eq!(
        sample(text, "portcullis_audit_batch_size_count"),
        Some(batches)
    );
    assert_eq!(
        sample(text, "portcullis_audit_batch_size_sum"),
        sample(text, "portcullis_audit_committed_total")
    );
    assert_eq!(
        sample(text, r#"portcullis_audit_batch_size_bucket{le="+Inf"}"#),
        Some(batches)
    );
    // Forwarded: the listing and three calls (plus whatever the bridge itself sent).
    let upstream = sample(text, r#"portcullis_upstream_seconds_count{server="rec"}"#).unwrap();
    assert!(upstream >= 4.0, "{text}");
    let gateway = sample(text, r#"portcullis_gateway_seconds_count{server="rec"}"#).unwrap();
    assert!(gateway >= 8.0, "{text}");
    // Every record so far is committed (durable audit: each decision before its answer; a
    // forwarded call's completion went with the next commit, a later refusal's at the latest).
    let committed = sample(text, "portcullis_audit_committed_total").unwrap();
    assert!(committed >= 9.0, "{text}");
    assert_eq!(sample(text, "portcullis_audit_failed_total"), Some(0.0));
    assert_eq!(
        sample(
            text,
            r#"portcullis_sessions_open{server="rec",kind="legacy_sse"}"#
        ),
        Some(1.0),
        "{text}"
    );
    drop(legacy);
    assert!(text.ends_with("# EOF\n"));
}

/// Opens `GET /sse/rec` (a legacy HTTP+SSE session) with alice's token and reads up to its
/// `endpoint` event; the session lives as long as the returned socket.
fn legacy_sse_session(gw: &Served) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let req = format!(
        "GET /sse/rec HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\nAuthorization: Bearer {ALICE}\r\n\r\n",
        gw.port
    );
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut seen = Vec::new();
    let mut b = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("event: endpoint") {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&b[..n]);
    }
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    s
}

#[test]
fn upstream_crashes_restarts_and_audit_commit_latency_are_measured() {
    let test = Scratch::new("metrics-upstream");
    let policy = json!({"version":"1","default":"deny","tools":{"read_invoice":{},"crash":{}}});
    let gw = start_policy(&test, &policy, &[], &[]);
    let r = call(&gw, 1, "read_invoice");
    assert!(r.body.contains("called read_invoice"), "{}", r.body);
    // The upstream process exits; the stateless connection's child is restarted and the
    // next call is served by it.
    let r = call(&gw, 2, "crash");
    assert!(r.body.contains("error"), "{}", r.body);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = call(&gw, 3, "read_invoice");
        if r.body.contains("called read_invoice") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never came back: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = scrape(&gw, Some(ADMIN)).body;
    let events = |event: &str| {
        sample(
            &text,
            &format!(r#"portcullis_upstream_events_total{{server="rec",event="{event}"}}"#),
        )
        .unwrap_or(0.0)
    };
    assert!(events("lost") >= 1.0, "{text}");
    assert!(events("restarted") >= 1.0, "{text}");
    assert_eq!(
        sample(&text, r#"portcullis_upstream_up{server="rec"}"#),
        Some(1.0),
        "back up after the restart: {text}"
    );
    // Every request waited for its durable audit commit, and that wait is measured.
    let commits = sample(&text, "portcullis_audit_commit_seconds_count").unwrap();
    assert!(commits >= 3.0, "{text}");
    let sum = sample(&text, "portcullis_audit_commit_seconds_sum").unwrap();
    assert!(sum > 0.0, "{text}");
    // The audit trail says the same.
    let out = std::process::Command::new(bin())
        .args(["audit", "--data-dir"])
        .arg(test.join("data"))
        .args(["--json", "--limit", "0"])
        .output()
        .unwrap();
    let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let rules: Vec<&str> = records
        .iter()
        .filter(|r| r["method"] == "(upstream)")
        .filter_map(|r| r["rule"].as_str())
        .collect();
    assert!(rules.contains(&"(upstream lost)"), "{records:?}");
    assert!(rules.contains(&"(upstream restarted)"), "{records:?}");
}

/// A 2025-11-25 HTTP upstream that closes its GET stream after a priming event (SSE polling):
/// the session's upstream link reopens it with `Last-Event-ID`, and the scrape counts that
/// reconnection and resumption for the server (and the upstream is still up).
#[test]
fn a_reopened_upstream_stream_is_counted_as_a_reconnect_and_a_resumption() {
    let test = Scratch::new("metrics-reconnect");
    let port = free_port();
    let _server = Bg(Command::new("python3")
        .arg(repo().join("crates/gateway/tests/fixtures/closing_get_server.py"))
        .arg(port.to_string())
        .spawn()
        .unwrap());
    wait_port(port);
    let gw = serve_in(
        &test,
        &format!(
            "[[servers]]\nname = \"polling\"\nurl = \"http://127.0.0.1:{port}/mcp\"\npolicy = \"p.json\"\nauth = \"none\"\n"
        ),
        &[("p.json", json!({"version":"1","default":"allow"}).to_string())],
        &[("PORTCULLIS_ADMIN_TOKEN", ADMIN)],
        &[],
    );
    let counts = || {
        let text = scrape(&gw, Some(ADMIN)).body;
        let reconnects = sample(
            &text,
            r#"portcullis_upstream_reconnects_total{server="polling"}"#,
        );
        let resumptions = sample(
            &text,
            r#"portcullis_upstream_stream_resumptions_total{server="polling"}"#,
        );
        (reconnects, resumptions, text)
    };
    let (r, s, text) = counts();
    assert_eq!(
        (r, s),
        (Some(0.0), Some(0.0)),
        "zero before any session: {text}"
    );
    // A handshake-era session: initialize, then initialized opens the upstream GET stream.
    let json_sse = ("Accept", "application/json, text/event-stream");
    let ct = ("Content-Type", "application/json");
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    let r = http_request(
        gw.port,
        "POST",
        "/mcp/polling",
        &[json_sse, ct],
        init.as_bytes(),
        Duration::from_secs(20),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.session_id();
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let r = http_request(
        gw.port,
        "POST",
        "/mcp/polling",
        &[json_sse, ct, ("Mcp-Session-Id", &sid)],
        note.as_bytes(),
        Duration::from_secs(20),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    // The server closes the first GET stream at once and asks for 200 ms before the next.
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let (r, s, text) = counts();
        if r.unwrap_or(0.0) >= 1.0 && s.unwrap_or(0.0) >= 1.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the reopened stream was never counted: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        sample(&text, r#"portcullis_upstream_up{server="polling"}"#),
        Some(1.0),
        "{text}"
    );
    // Counted, not audited: the audit trail has no record of it.
    let out = Command::new(bin())
        .args(["audit", "--data-dir"])
        .arg(test.join("data"))
        .args(["--json", "--limit", "0"])
        .output()
        .unwrap();
    let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !records.iter().any(|r| r["method"] == "(upstream)"),
        "{records:?}"
    );
}

/// `application/x-www-form-urlencoded` value: everything but unreserved characters escaped.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's instant query `q`: the result vector (panics unless the query succeeded).
fn query(port: u16, q: &str) -> Vec<Value> {
    let r = http_request(
        port,
        "GET",
        &format!("/api/v1/query?query={}", urlencode(q)),
        &[],
        b"",
        Duration::from_secs(10),
    );
    let v = r.json();
    assert_eq!(v["status"], "success", "{}", r.body);
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The single sample of `q`, as a number, once Prometheus has it (polled up to 30 s).
fn wait_value(port: u16, q: &str) -> (Value, f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = query(port, q);
        if let [one] = got.as_slice() {
            let v = one["value"][1].as_str().unwrap().parse().unwrap();
            return (one["metric"].clone(), v);
        }
        assert!(got.len() <= 1, "{q}: {got:?}");
        assert!(
            Instant::now() < deadline,
            "Prometheus never had {q}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn write_prometheus_config(dir: &Path, gateway_port: u16) -> std::path::PathBuf {
    let path = dir.join("prometheus.yml");
    std::fs::write(
        &path,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: portcullis\n    metrics_path: /metrics\n    scrape_interval: 1s\n    authorization:\n      type: Bearer\n      credentials: {ADMIN}\n    static_configs:\n      - targets: ['127.0.0.1:{gateway_port}']\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_real_prometheus_scrapes_the_gateway_with_the_admin_token() {
    let Some(prometheus) = system_tool("prometheus") else {
        return;
    };
    let test = Scratch::new("metrics-prometheus");
    let gw = start(&test);
    traffic(&gw);
    let config = write_prometheus_config(&test, gw.port);
    let port = free_port();
    let log = std::fs::File::create(test.join("prometheus.log")).unwrap();
    let _prom = Bg(Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            test.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap());
    wait_port(port);
    // The port opens before the query API is ready (503 "Service Unavailable" until then).
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_request(port, "GET", "/-/ready", &[], b"", Duration::from_secs(5)).status != 200 {
        assert!(Instant::now() < deadline, "Prometheus never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }

    let (_, up) = wait_value(port, r#"up{job="portcullis"}"#);
    assert_eq!(
        up,
        1.0,
        "the scrape with the admin token succeeds: {}",
        std::fs::read_to_string(test.join("prometheus.log")).unwrap_or_default()
    );
    let (labels, allowed) = wait_value(
        port,
        r#"portcullis_requests_total{server="rec",method="tools/call",decision="allow"}"#,
    );
    assert_eq!(allowed, 3.0);
    assert_eq!(labels["tool"], "read_invoice");
    assert_eq!(labels["rule_kind"], "none");
    assert_eq!(labels["job"], "portcullis");
    let (_, denied) = wait_value(
        port,
        r#"sum(portcullis_requests_total{server="rec",decision="deny"})"#,
    );
    assert_eq!(denied, 3.0, "two by default, one to an unlisted tool");
    let (_, unlisted) = wait_value(port, r#"portcullis_requests_total{tool="(unlisted)"}"#);
    assert_eq!(unlisted, 1.0);
    let (_, refused) = wait_value(
        port,
        r#"portcullis_door_refusals_total{reason="unknown_token"}"#,
    );
    assert_eq!(refused, 1.0);
    // The latency histogram arrived whole: buckets, count, and a sum in seconds.
    let (_, count) = wait_value(port, r#"portcullis_upstream_seconds_count{server="rec"}"#);
    assert!(count >= 4.0);
    let (_, inf) = wait_value(
        port,
        r#"portcullis_upstream_seconds_bucket{server="rec",le="+Inf"}"#,
    );
    assert_eq!(inf, count);
    let (_, sum) = wait_value(port, r#"portcullis_upstream_seconds_sum{server="rec"}"#);
    assert!(sum > 0.0 && sum < 60.0, "{sum}");
    // The gateway's own time: 8 requests reached the relay.
    let (_, p50) = wait_value(
        port,
        r#"histogram_quantile(0.5, sum by (le) (portcullis_gateway_seconds_bucket{server="rec"}))"#,
    );
    assert!(p50 > 0.0 && p50 < 1.0, "{p50}");
}

#[test]
fn json_logs_are_one_object_per_line_without_colours() {
    let test = Scratch::new("metrics-json-logs");
    let gw = start_with(&test, &[("RUST_LOG", "info")], &["--log-format", "json"]);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = mcp_with(
        &gw,
        ALICE,
        41,
        "tools/call",
        json!({"name": "delete_invoice", "arguments": {"id": 1}}),
        &[("traceparent", traceparent)],
    );
    assert!(r.body.contains("[POLICY DENIED]"), "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.stderr().contains("\"deny\"") {
        assert!(Instant::now() < deadline, "no deny event: {}", gw.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = gw.stderr();
    assert!(!log.contains('\u{1b}'), "no ANSI escapes: {log}");
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["target"].is_string(),
            "{l}"
        );
    }
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("portcullis: listening on http://127.0.0.1:"))),
        "the banner is a log event too: {log}"
    );
    let deny = lines
        .iter()
        .find(|l| l["fields"]["message"] == "deny")
        .unwrap();
    assert_eq!(deny["level"], "INFO");
    assert_eq!(deny["fields"]["tool"], "delete_invoice");
    assert_eq!(deny["fields"]["rule"], "(default deny)");
    // The request's id (the client's own, as the audit record keeps it) and trace id.
    assert_eq!(deny["span"]["request_id"], "41", "{deny}");
    assert_eq!(
        deny["span"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{deny}"
    );
}

#[test]
fn the_example_prometheus_config_and_alert_rules_are_valid_and_fire() {
    let Some(promtool) = system_tool("promtool") else {
        return;
    };
    let test = Scratch::new("metrics-promtool");
    for f in ["prometheus.yml", "alerts.yml", "alerts.test.yml"] {
        std::fs::copy(repo().join("examples/prometheus").join(f), test.join(f)).unwrap();
    }
    // The token file the example's scrape config names.
    std::fs::write(test.join("portcullis-admin-token"), ADMIN).unwrap();
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "alerts.yml"],
        &["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&*test)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

#[test]
fn every_query_of_the_example_grafana_dashboard_parses() {
    let Some(promtool) = system_tool("promtool") else {
        return;
    };
    let text = std::fs::read_to_string(repo().join("examples/grafana/portcullis.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    // Each query becomes a recording rule, so that promtool's parser judges it; Grafana's
    // variables get values first.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m")
                .replace("$server", ".*");
            n += 1;
            rules.push_str(&format!(
                "      - record: dashboard:q{n}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            ));
        }
    }
    let test = Scratch::new("metrics-grafana");
    std::fs::write(test.join("dashboard.rules.yml"), &rules).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules", "dashboard.rules.yml"])
        .current_dir(&*test)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a dashboard query does not parse: {}{}\n{rules}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains(&format!("{n} rules found")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn metrics_can_be_turned_off() {
    let test = Scratch::new("metrics-off");
    let servers = format!(
        // Lands in the [gateway] table the helper writes just above.
        "metrics = false\n\n[[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{}\"]\npolicy = \"p.json\"\nauth = \"token\"\ntokens = [{{ label = \"alice\", token = \"${{PORTCULLIS_TEST_TOKEN}}\" }}]\n",
        fixture_server()
    );
    let policy = json!({"version":"1","default":"deny","tools":{"read_invoice":{}}});
    let gw = serve_in(
        &test,
        &servers,
        &[("p.json", policy.to_string())],
        &[
            ("PORTCULLIS_ADMIN_TOKEN", ADMIN),
            ("PORTCULLIS_TEST_TOKEN", ALICE),
        ],
        &[],
    );
    traffic(&gw);
    let r = scrape(&gw, Some(ADMIN));
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"], "metrics_off");
    // The gateway itself works as before.
    let call = mcp(
        &gw,
        ALICE,
        9,
        "tools/call",
        json!({"name": "read_invoice", "arguments": {"id": 1}}),
    );
    assert_eq!(call.status, 200, "{}", call.body);
    assert!(!call.body.contains("POLICY DENIED"), "{}", call.body);
}
