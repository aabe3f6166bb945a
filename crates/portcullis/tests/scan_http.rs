//! `portcullis scan` and `init` against HTTP MCP servers: the Python `mcp` 2.x server over
//! Streamable HTTP, the Python `mcp` 1.x server over legacy HTTP+SSE, a configuration mixing
//! URL and command servers with an unreachable one, and a small in-test server that pages its
//! tools, wants a bearer token and proves which headers arrived.
//!
//! The Python servers are installed under `.peers/` by `scripts/install-peers.sh`. Without
//! them those tests print "skipped"; with `PORTCULLIS_REQUIRE_PEERS=1` a missing peer is a
//! failure.

mod common;
use common::*;
use portcullis_policy::sync::LockExt;
use portcullis_policy::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `portcullis` from the repository with extra environment.
fn portcullis(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo())
        .output()
        .expect("run portcullis")
}

/// Waits (up to 30 s) until an HTTP server answers on `port`; panics if `server` exits first
/// (another process may hold the port) or the deadline passes.
fn wait_port(port: u16, server: &mut Bg) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = http_answers(port);
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("the server for port {port} exited ({status})");
        }
        if up {
            return;
        }
        assert!(Instant::now() < deadline, "nothing answers on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether an HTTP server answers a `GET /` on `port`. A bare connect is not enough: while
/// nothing listens on a port of the ephemeral range, a connection to it can be the socket's
/// own (TCP simultaneous open), which "succeeds" and echoes what it is sent.
fn http_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    if s.local_addr().ok() == s.peer_addr().ok() {
        return false;
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = [0u8; 5];
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_ok()
        && s.read_exact(&mut head).is_ok()
        && &head == b"HTTP/"
}

/// Starts a Python peer server script with `args` on a free port and waits for it.
fn python_server(python: &Path, script: &str, extra: &[&str]) -> (Bg, u16) {
    let port = free_port();
    let mut server = Bg(Command::new(python)
        .arg(repo().join("crates/portcullis/tests/peers").join(script))
        .arg(port.to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    wait_port(port, &mut server);
    (server, port)
}

/// The Python `mcp` 2.x server (tools add, drop_table, slow_count) over Streamable HTTP.
fn py2_http() -> Option<(Bg, u16)> {
    let py = peer("venv/bin/python")?;
    Some(python_server(&py, "server2_http.py", &[]))
}

/// Tool name → category from `scan --json` output for its first server.
fn categories(v: &Value) -> HashMap<String, String> {
    v["classifications"]
        .as_array()
        .unwrap_or_else(|| panic!("no classifications: {v:#}"))
        .iter()
        .map(|c| {
            (
                c["tool"].as_str().unwrap().to_string(),
                c["category"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// Real servers
// ------------------------------------------------------------------------------------------

#[test]
fn scan_url_lists_a_python2_streamable_http_server() {
    let Some((_server, port)) = py2_http() else {
        return;
    };
    let url = format!("http://127.0.0.1:{port}/mcp");
    let o = portcullis(&["scan", "--json", "--url", &url], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(
        v[0]["server"], "py2-fixture",
        "the server's own name: {v:#}"
    );
    assert_eq!(v[0]["source"], url.as_str());
    let cats = categories(&v[0]);
    assert_eq!(cats.len(), 3, "{cats:?}");
    assert_eq!(cats["drop_table"], "Destructive");
    assert_eq!(cats["add"], "Write");
    assert_eq!(cats["slow_count"], "Read");

    // The table too, under a given name.
    let o = portcullis(&["scan", "--url", &url, "--server", "calc"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with(&format!("calc — {url}\n")), "{out}");
    assert!(
        out.contains("calc: 3 tools: 1 Read, 1 Write, 1 Destructive"),
        "{out}"
    );
}

#[test]
fn scan_url_lists_a_python1_legacy_sse_server() {
    let Some(py) = peer("venv1/bin/python") else {
        return;
    };
    let (_server, port) = python_server(&py, "server1_sse.py", &["sse"]);
    let url = format!("http://127.0.0.1:{port}/sse");
    let o = portcullis(&["scan", "--json", "--url", &url], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v[0]["server"], "py1-fixture", "{v:#}");
    let cats = categories(&v[0]);
    assert_eq!(cats.len(), 2, "{cats:?}");
    assert_eq!(cats["drop_table"], "Destructive");
    assert_eq!(cats["add"], "Write");
}

#[test]
fn scan_config_mixes_url_and_command_servers_and_reports_the_unreachable_one() {
    let Some((_server, port)) = py2_http() else {
        return;
    };
    let dir = Scratch::new("mixed");
    let fixture = repo().join("crates/gateway/tests/fixtures/recording_server.py");
    let config = dir.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[servers]]
name = "calc"
url = "http://127.0.0.1:{port}/mcp"
auth = "none"

[[servers]]
name = "gone"
url = "http://127.0.0.1:1/mcp"
auth = "none"

[[servers]]
name = "invoices"
command = ["python3", {fixture:?}]
auth = "none"
env = {{ PAGE_SIZE = "4" }}
"#,
            fixture = fixture.to_str().unwrap()
        ),
    )
    .unwrap();
    let o = portcullis(&["scan", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(
        out.starts_with(&format!("calc — http://127.0.0.1:{port}/mcp\n")),
        "{out}"
    );
    assert!(out.contains("calc: 3 tools"), "{out}");
    assert!(out.contains("\ninvoices — python3 "), "{out}");
    assert!(out.contains("invoices: 9 tools"), "{out}");
    assert!(!out.contains("gone"), "{out}");
    assert!(
        err.contains("error: gone: cannot reach http://127.0.0.1:1/mcp: "),
        "{err}"
    );
    assert!(
        err.contains("2 of 3 servers scanned; failed: gone"),
        "{err}"
    );

    let o = portcullis(
        &["scan", "--json", "--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let oks: Vec<(&str, bool)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["server"].as_str().unwrap(), s["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(oks, [("calc", true), ("gone", false), ("invoices", true)]);
}

#[test]
fn init_url_writes_a_policy_that_validates() {
    let Some((_server, port)) = py2_http() else {
        return;
    };
    let dir = Scratch::new("init");
    let out = dir.join("policies");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let o = portcullis(
        &["init", "--url", &url, "--out", out.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let file = out.join("py2-fixture.json");
    assert!(
        stdout(&o).contains(&format!("wrote {}", file.display())),
        "{}",
        stdout(&o)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let engine = Engine::from_json(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    // The recommended preset hides Destructive tools and lists the others.
    assert!(!engine.is_listed("drop_table"), "{text}");
    assert!(engine.is_listed("add"), "{text}");
    assert!(engine.is_listed("slow_count"), "{text}");
    // And the command-line validator agrees.
    let o = portcullis(&["validate", file.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

// ------------------------------------------------------------------------------------------
// An in-test server: pagination, credentials, headers
// ------------------------------------------------------------------------------------------

/// One HTTP request the in-test server received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Header names lower-cased.
    headers: HashMap<String, String>,
    body: Value,
}

/// A Streamable HTTP MCP server (handshake era) on a thread of the test process. It answers
/// `initialize` with a session id, lists seven tools three per page (the second page as an
/// SSE stream), refuses any POST without `Authorization: Bearer s3cret` with 401, and records
/// every request. Dropping it stops the listener.
struct PagingServer {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

const TOKEN: &str = "s3cret";

fn paging_tools() -> Vec<Value> {
    [
        ("list_orders", "List orders."),
        ("get_order", "Get one order."),
        ("update_order", "Update an order's note."),
        ("delete_order", "Delete an order permanently."),
        ("refund_order", "Refund an order to the customer."),
        ("count_orders", "Count orders."),
        ("archive_order", "Archive an order."),
    ]
    .iter()
    .map(|(n, d)| json!({"name": n, "description": d, "inputSchema": {"type": "object"}}))
    .collect()
}

impl PagingServer {
    fn start() -> PagingServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve_connection(conn, &s));
            }
        });
        PagingServer { port, seen, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock_or_recover().clone()
    }
}

impl Drop for PagingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
    }
}

/// Serves one keep-alive connection until the client closes it.
fn serve_connection(conn: TcpStream, seen: &Mutex<Vec<Seen>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let method = line.split_whitespace().next().unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        seen.lock_or_recover().push(Seen {
            method: method.clone(),
            headers: headers.clone(),
            body: body.clone(),
        });
        let reply = answer(&method, &headers, &body);
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// A complete HTTP/1.1 response.
fn response(status: &str, extra: &[(&str, &str)], content_type: &str, body: &str) -> String {
    let mut r = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    if !content_type.is_empty() {
        r += &format!("content-type: {content_type}\r\n");
    }
    for (k, v) in extra {
        r += &format!("{k}: {v}\r\n");
    }
    r + "\r\n" + body
}

/// What the in-test server says to one request.
fn answer(method: &str, headers: &HashMap<String, String>, body: &Value) -> String {
    match method {
        "POST" => {}
        "DELETE" => return response("200 OK", &[], "", ""),
        _ => return response("405 Method Not Allowed", &[], "", ""),
    }
    if headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {TOKEN}")) {
        return response(
            "401 Unauthorized",
            &[("www-authenticate", "Bearer")],
            "application/json",
            r#"{"error":"invalid_token"}"#,
        );
    }
    let Some(id) = body.get("id") else {
        return response("202 Accepted", &[], "", ""); // a notification
    };
    let ok = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    match body["method"].as_str().unwrap_or("") {
        "initialize" => response(
            "200 OK",
            &[("mcp-session-id", "fake-session")],
            "application/json",
            &ok(json!({
                "protocolVersion": body["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "paging-fixture", "version": "1"}
            })),
        ),
        "tools/list" => {
            let tools = paging_tools();
            let start: usize = body["params"]["cursor"]
                .as_str()
                .and_then(|c| c.strip_prefix("from-"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let end = (start + 3).min(tools.len());
            let mut result = json!({"tools": tools[start..end]});
            if end < tools.len() {
                result["nextCursor"] = json!(format!("from-{end}"));
            }
            if start == 3 {
                // An SSE answer, with a priming event and a notification before it.
                let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                    "params": {"level": "info", "data": "paging"}});
                let sse = format!(
                    "id: 1\ndata:\n\ndata: {note}\n\nevent: message\ndata: {}\n\n",
                    ok(result)
                );
                response("200 OK", &[], "text/event-stream", &sse)
            } else {
                response("200 OK", &[], "application/json", &ok(result))
            }
        }
        other => response(
            "200 OK",
            &[],
            "application/json",
            &json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": format!("no {other}")}})
            .to_string(),
        ),
    }
}

#[test]
fn scan_url_follows_every_page_and_sends_the_headers() {
    let server = PagingServer::start();
    let url = server.url();
    let o = portcullis(
        &[
            "scan",
            "--json",
            "--url",
            &url,
            "--header",
            "Authorization: Bearer ${SCAN_HTTP_TOKEN}",
            "--header",
            "X-Team:  ops ",
        ],
        &[("SCAN_HTTP_TOKEN", TOKEN)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v[0]["server"], "paging-fixture");
    let cats = categories(&v[0]);
    let mut names: Vec<&str> = cats.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "archive_order",
            "count_orders",
            "delete_order",
            "get_order",
            "list_orders",
            "refund_order",
            "update_order"
        ]
    );
    assert_eq!(cats["delete_order"], "Destructive");
    assert_eq!(cats["refund_order"], "Financial");
    assert_eq!(cats["list_orders"], "Read");

    // The handshake, three pages, then the session's end; every request with the headers.
    // (The transport POSTs each message on its own, so `notifications/initialized` and the
    // first `tools/list` can arrive in either order.)
    let seen = server.seen();
    let posts: Vec<&Seen> = seen.iter().filter(|s| s.method == "POST").collect();
    let method = |s: &Seen| s.body["method"].as_str().unwrap_or("?").to_string();
    assert_eq!(posts.len(), 5, "{seen:?}");
    assert_eq!(method(posts[0]), "initialize");
    assert_eq!(posts[0].body["params"]["protocolVersion"], "2025-11-25");
    assert_eq!(
        posts[0].body["params"]["clientInfo"]["name"],
        "portcullis-scan"
    );
    assert_eq!(
        posts
            .iter()
            .filter(|s| method(s) == "notifications/initialized")
            .count(),
        1,
        "{seen:?}"
    );
    let cursors: Vec<&Value> = posts
        .iter()
        .filter(|s| method(s) == "tools/list")
        .map(|s| &s.body["params"]["cursor"])
        .collect();
    assert_eq!(
        cursors,
        [&Value::Null, &json!("from-3"), &json!("from-6")],
        "{seen:?}"
    );
    for s in &posts {
        assert_eq!(
            s.headers["authorization"],
            format!("Bearer {TOKEN}"),
            "{s:?}"
        );
        assert_eq!(s.headers["x-team"], "ops", "{s:?}");
    }
    for s in &posts[1..] {
        assert_eq!(s.headers["mcp-session-id"], "fake-session", "{s:?}");
        assert_eq!(s.headers["mcp-protocol-version"], "2025-11-25", "{s:?}");
    }
    let deletes: Vec<&Seen> = seen.iter().filter(|s| s.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1, "the session is ended: {seen:?}");
    assert_eq!(deletes[0].headers["mcp-session-id"], "fake-session");
}

#[test]
fn scan_url_without_credentials_says_http_401_and_how_to_send_them() {
    let server = PagingServer::start();
    let o = portcullis(&["scan", "--url", &server.url()], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("the server answered initialize with HTTP 401 Unauthorized"),
        "{err}"
    );
    assert!(err.contains("--header 'Authorization: Bearer"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");

    // A missing variable in a header is this server's failure, named.
    let o = portcullis(
        &[
            "scan",
            "--url",
            &server.url(),
            "--header",
            "Authorization: Bearer ${SCAN_HTTP_UNSET_VAR}",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .contains("header Authorization: environment variable SCAN_HTTP_UNSET_VAR is not set"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn scan_config_sends_a_url_servers_headers_with_variables_expanded() {
    let server = PagingServer::start();
    let dir = Scratch::new("headers");
    let config = dir.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[servers]]
name = "orders"
url = "{url}"
auth = "none"
headers = {{ Authorization = "Bearer ${{SCAN_HTTP_TOKEN}}" }}

[[servers]]
name = "orders-anonymous"
url = "{url}"
auth = "none"
"#,
            url = server.url()
        ),
    )
    .unwrap();
    let o = portcullis(
        &["scan", "--config", config.to_str().unwrap()],
        &[("SCAN_HTTP_TOKEN", TOKEN)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(out.contains("orders: 7 tools"), "{out}");
    assert!(
        err.contains("error: orders-anonymous: the server answered initialize with HTTP 401"),
        "{err}"
    );
    assert!(
        err.contains("1 of 2 servers scanned; failed: orders-anonymous"),
        "{err}"
    );
}

#[test]
fn scan_url_times_out_on_a_server_that_never_answers() {
    // Accepts connections (the kernel does, from the backlog) and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let start = Instant::now();
    let o = portcullis(&["scan", "--timeout", "1", "--url", &url], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("timed out after 1 s waiting for the answer to initialize"),
        "{}",
        stderr(&o)
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    drop(listener);
}
