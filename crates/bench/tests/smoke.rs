//! Smoke test: `fast-upstream stdio` answers a `tools/call` over its stdin/stdout.
//! (No timing assertions: timings are never pass/fail tests.)

use portcullis_bench::free_port;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

#[test]
fn stdio_tools_call_round_trip() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fast-upstream"))
        .arg("stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn fast-upstream");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":"a1","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hi"}}}}}}"#
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        v["id"], "a1",
        "the notification got no answer; the call did: {line}"
    );
    assert_eq!(v["result"]["isError"], false);
    assert!(v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("fast-upstream:"));
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// POSTs one JSON-RPC message to `fast-upstream http` and returns (status, session header, body).
fn post(port: u16, body: &str, headers: &str) -> (String, Option<String>, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_string();
    let sid = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("mcp-session-id: ")
            .map(str::to_owned)
    });
    (status, sid, body.to_string())
}

/// A child killed when dropped.
struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn http_answers_both_eras() {
    let port = free_port();
    let _up = Kill(
        Command::new(env!("CARGO_BIN_EXE_fast-upstream"))
            .args(["http", "--port", &port.to_string()])
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "fast-upstream did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Handshake era: initialize hands out a session id.
    let (status, sid, body) = post(
        port,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#,
        "",
    );
    assert!(status.contains("200"), "{status}");
    assert!(sid.is_some_and(|s| s.starts_with("fast-")));
    assert!(body.contains(r#""protocolVersion":"2025-06-18""#), "{body}");
    // Stateless era: a tools/call with _meta is answered without a session.
    let (status, sid, body) = post(
        port,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: echo\r\n",
    );
    assert!(status.contains("200"), "{status}");
    assert!(sid.is_none());
    assert!(body.contains("fast-upstream:"), "{body}");
    // An unknown tool is an error, not a result; a notification gets 202 and no body.
    let (_, _, body) = post(
        port,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope"}}"#,
        "",
    );
    assert!(body.contains("-32602"), "{body}");
    let (status, _, body) = post(
        port,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        "",
    );
    assert!(status.contains("202"), "{status}");
    assert!(body.is_empty());
}

/// The harness end to end, tiny: three scenarios direct and through the real gateway binary
/// (built by the workspace's `cargo test`) and `naive-proxy`, JSON and Markdown written. Checks the shape of
/// the report and that no call failed, never a timing.
#[test]
fn bench_runs_one_scenario_and_writes_its_report() {
    let bench = std::path::PathBuf::from(env!("CARGO_BIN_EXE_bench"));
    let portcullis = bench.with_file_name("portcullis");
    assert!(
        portcullis.exists(),
        "{} is missing: run the workspace's tests (cargo test --workspace) so the gateway binary is built",
        portcullis.display()
    );
    let dir = std::env::temp_dir().join(format!("bench-smoke-{}", std::process::id()));
    let out = Command::new(&bench)
        .arg("--quick")
        .args(["--calls", "40", "--only", "http c=1 seed/audit=durable"])
        .args(["--only", "http c=1 seed/audit=async write-behind counters"])
        .args(["--only", "http c=1 naive proxy"])
        .arg("--portcullis")
        .arg(&portcullis)
        .arg("--json")
        .arg(dir.join("r.json"))
        .arg("--markdown")
        .arg(dir.join("r.md"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    // The durable row, the same gateway with its counters written behind, and the floor: a
    // bare axum + reqwest pass-through.
    assert_eq!(
        names,
        [
            "http c=1 seed/audit=async write-behind counters",
            "http c=1 seed/audit=durable",
            "http c=1 naive proxy"
        ],
        "{report}"
    );
    for s in scenarios {
        assert_eq!(s["direct"]["errors"], 0, "{s}");
        assert_eq!(s["gateway"]["errors"], 0, "{s}");
        assert_eq!(s["gateway"]["calls_per_run"][0], 40);
        assert!(s["throughput_ratio"].as_f64().unwrap() > 0.0);
    }
    assert!(report["machine"]["cpus"].as_u64().unwrap() >= 1);
    let md = std::fs::read_to_string(dir.join("r.md")).unwrap();
    assert!(md.contains("| http c=1 seed/audit=durable |"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}
