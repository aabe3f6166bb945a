//! Handshake-era sessions shared by two `portcullis serve` replicas on one Redis: a session
//! opened on replica A (its `initialize`) continues on replica B with the same
//! `Mcp-Session-Id` (B replays the client's `initialize` to its own upstream), for a stdio
//! upstream, for a Streamable HTTP upstream, and for a session bridged to a 2026-07-28-only
//! upstream; `scope = "session"` limits count per session
//! across the replicas; a session unknown to every replica, or of another caller, is 404; a
//! `DELETE` on one replica ends it on the other.

mod common;
use common::*;
use portcullis_bench::redis_server::RedisServer;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OPS: &str = "tok-ops-0123456789";
const OTHER: &str = "tok-other-0123456789";

/// A handshake-era POST of `body` to `/mcp/<server>` on the replica at `port`, with `token`
/// and, when given, the session.
fn post(port: u16, server: &str, token: &str, sid: Option<&str>, body: &str) -> Reply {
    let auth = format!("Bearer {token}");
    let mut h = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("Authorization", auth.as_str()),
    ];
    if let Some(s) = sid {
        h.push(("Mcp-Session-Id", s));
        h.push(("MCP-Protocol-Version", "2025-11-25"));
    }
    http_request(
        port,
        "POST",
        &format!("/mcp/{server}"),
        &h,
        body.as_bytes(),
        Duration::from_secs(30),
    )
}

fn initialize(port: u16, server: &str, token: &str) -> String {
    let r = post(
        port,
        server,
        token,
        None,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{}},"clientInfo":{"name":"replica-hopper","version":"1"}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.session_id();
    let n = post(
        port,
        server,
        token,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(n.status, 202, "{}", n.body);
    sid
}

fn call(port: u16, server: &str, token: &str, sid: &str, id: u64) -> Reply {
    post(
        port,
        server,
        token,
        Some(sid),
        &format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"read_invoice","arguments":{{"id":{id}}}}}}}"#
        ),
    )
}

fn passes(r: &Reply, id: u64) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["result"]["content"][0]["text"],
        format!("called read_invoice with {{\"id\":{id}}}"),
        "{}",
        r.body
    );
}

fn limited(r: &Reply) {
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(t.starts_with("[POLICY DENIED]"), "{}", r.body);
}

/// The lines of a record file, as JSON.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_session_opened_on_one_replica_continues_on_another() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let env = [
        ("PORTCULLIS_TEST_REDIS", url.as_str()),
        ("PORTCULLIS_TEST_OPS", OPS),
        ("PORTCULLIS_TEST_OTHER", OTHER),
    ];
    // The HTTP upstream, shared by both replicas (each opens its own sessions on it).
    let up_dir = scratch("shared-sessions-upstream");
    let up_record = up_dir.join("http-record.jsonl");
    let up_port = free_port();
    let _upstream = Bg(Command::new("python3")
        .arg(repo().join("crates/gateway/tests/fixtures/recording_http_server.py"))
        .arg(up_port.to_string())
        .env("RECORD", &up_record)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", up_port)).is_err() {
        assert!(Instant::now() < deadline, "the HTTP upstream did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let tokens =
        "auth = \"token\"\ntokens = [{ label = \"ops\", token = \"${PORTCULLIS_TEST_OPS}\" }, \
                  { label = \"other\", token = \"${PORTCULLIS_TEST_OTHER}\" }]\n";
    let servers = format!(
        "[store]\nurl = \"${{PORTCULLIS_TEST_REDIS}}\"\nsession_ttl = \"10m\"\n\n\
         [[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{}\"]\npolicy = \"p.json\"\n{tokens}\n\
         [[servers]]\nname = \"web\"\nurl = \"http://127.0.0.1:{up_port}/mcp\"\npolicy = \"p.json\"\n{tokens}\n\
         [[servers]]\nname = \"modern\"\ncommand = [\"python3\", \"{0}\"]\npolicy = \"p.json\"\n\
         env = {{ MODERN_ONLY = \"1\", RECORD = \"/dev/null\" }}\n{tokens}",
        fixture_server()
    );
    // Three calls per session and minute, wherever they land.
    let policy = json!({"version":"1","default":"deny","tools":{"read_invoice":{
        "limits":[{"counter":"calls","window":"60s","max":3,"scope":"session"}]}}});
    let replicas: Vec<Served> = ["a", "b"]
        .iter()
        .map(|n| {
            let dir = scratch(&format!("shared-sessions-{n}"));
            serve_in(&dir, &servers, &[("p.json", policy.to_string())], &env, &[])
        })
        .collect();
    let (a, b) = (replicas[0].port, replicas[1].port);

    // `modern` speaks 2026-07-28 only: its sessions are bridged (no replay: B sends the
    // session's requests stateless, with the `_meta` A recorded).
    for server in ["rec", "web", "modern"] {
        let sid = initialize(a, server, OPS);
        // Next request on B: B has no upstream connection for it yet, and opens one.
        let r = post(
            b,
            server,
            OPS,
            Some(&sid),
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        );
        assert_eq!(r.status, 200, "{server}: {}", r.body);
        assert!(
            r.json()["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "read_invoice"),
            "{server}: {}",
            r.body
        );
        passes(&call(b, server, OPS, &sid, 3), 3);
        if server == "modern" {
            // Resumed on B as what it is, a bridged session: no GET stream of its own.
            let auth = format!("Bearer {OPS}");
            let r = http_request(
                b,
                "GET",
                "/mcp/modern",
                &[
                    ("Authorization", auth.as_str()),
                    ("Accept", "text/event-stream"),
                    ("Mcp-Session-Id", &sid),
                ],
                b"",
                Duration::from_secs(10),
            );
            assert_eq!(r.status, 405, "{}", r.body);
        }
        // The session's limit counts across both replicas: A, B, then the fourth is denied.
        passes(&call(a, server, OPS, &sid, 4), 4);
        passes(&call(b, server, OPS, &sid, 5), 5);
        limited(&call(a, server, OPS, &sid, 6));
        limited(&call(b, server, OPS, &sid, 7));
        // Another session (opened on B) has its own count.
        let other_sid = initialize(b, server, OPS);
        passes(&call(a, server, OPS, &other_sid, 8), 8);

        // Another caller cannot use the session on either replica; nobody knows a made-up id.
        for port in [a, b] {
            let r = call(port, server, OTHER, &sid, 9);
            assert_eq!(r.status, 404, "{server}: {}", r.body);
            let r = call(port, server, OPS, &"0".repeat(32), 10);
            assert_eq!(r.status, 404, "{server}: {}", r.body);
        }

        // Ended on B: A, which opened it, answers 404 from now on.
        let auth = format!("Bearer {OPS}");
        let r = http_request(
            b,
            "DELETE",
            &format!("/mcp/{server}"),
            &[("Authorization", auth.as_str()), ("Mcp-Session-Id", &sid)],
            b"",
            Duration::from_secs(10),
        );
        assert_eq!(r.status, 204, "{server}: {}", r.body);
        for port in [a, b] {
            let r = call(port, server, OPS, &sid, 11);
            assert_eq!(r.status, 404, "{server}: {}", r.body);
        }
        // The other session is untouched.
        passes(&call(b, server, OPS, &other_sid, 12), 12);
    }

    // What the upstreams saw. stdio: each replica its own child; B's got the client's own
    // initialize (replayed, with its clientInfo), then notifications/initialized, then the
    // session's requests.
    let b_rec = records(&replicas[1].dir.join("record.jsonl"));
    let methods: Vec<&str> = b_rec.iter().filter_map(|m| m["method"].as_str()).collect();
    let first = methods.iter().position(|m| *m == "initialize").unwrap();
    assert_eq!(
        &methods[first..first + 3],
        ["initialize", "notifications/initialized", "tools/list"],
        "{methods:?}"
    );
    let init = b_rec.iter().find(|m| m["method"] == "initialize").unwrap();
    assert_eq!(init["params"]["clientInfo"]["name"], "replica-hopper");
    let calls = |recs: &[Value]| recs.iter().filter(|m| m["method"] == "tools/call").count();
    let a_rec = records(&replicas[0].dir.join("record.jsonl"));
    assert_eq!(
        calls(&a_rec) + calls(&b_rec),
        5,
        "3 + 1 + 1 calls forwarded"
    );
    // HTTP: every request carried an upstream session the upstream knew (none got its 404),
    // B's under a session B opened by replaying the initialize.
    let up = records(&up_record);
    let up_msgs: Vec<&Value> = up.iter().map(|r| &r["message"]).collect();
    assert_eq!(
        up_msgs
            .iter()
            .filter(|m| m["method"] == "tools/call")
            .count(),
        5
    );
    let inits = up_msgs
        .iter()
        .filter(|m| {
            m["method"] == "initialize" && m["params"]["clientInfo"]["name"] == "replica-hopper"
        })
        .count();
    assert!(inits >= 3, "A's, B's replay, B's second session: {inits}");
    let upstream_sessions: std::collections::HashSet<&str> = up
        .iter()
        .filter(|r| r["message"]["method"] == "tools/call")
        .filter_map(|r| r["session"].as_str())
        .collect();
    assert!(
        upstream_sessions.len() >= 3,
        "each replica its own upstream session: {upstream_sessions:?}"
    );
}

/// `portcullis_sessions_open{server="rec",kind="handshake"}` on the replica at `port` (0 when
/// absent).
fn open_sessions(port: u16) -> f64 {
    let auth = format!("Bearer {ADMIN}");
    let r = http_request(
        port,
        "GET",
        "/metrics",
        &[("Authorization", auth.as_str())],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"portcullis_sessions_open{server="rec",kind="handshake"} "#)?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

const ADMIN: &str = "pca-admin-token-0123456789";

/// A replica that resumed a session lets its upstream connection go once the session ended
/// on another replica, even if the client never comes back to it (the sweep), and so for a
/// session that expired unused.
#[test]
fn a_replica_closes_its_connections_of_sessions_that_ended_elsewhere() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let env = [
        ("PORTCULLIS_TEST_REDIS", url.as_str()),
        ("PORTCULLIS_TEST_OPS", OPS),
        ("PORTCULLIS_TEST_OTHER", OTHER),
        ("PORTCULLIS_ADMIN_TOKEN", ADMIN),
    ];
    let servers = format!(
        "[store]\nurl = \"${{PORTCULLIS_TEST_REDIS}}\"\nsession_ttl = \"1s\"\n\n\
         [[servers]]\nname = \"rec\"\ncommand = [\"python3\", \"{}\"]\npolicy = \"p.json\"\n\
         auth = \"token\"\ntokens = [{{ label = \"ops\", token = \"${{PORTCULLIS_TEST_OPS}}\" }}]\n",
        fixture_server()
    );
    let policy = json!({"version":"1","default":"deny","tools":{"read_invoice":{}}});
    let replicas: Vec<Served> = ["a", "b"]
        .iter()
        .map(|n| {
            let dir = scratch(&format!("session-sweep-{n}"));
            serve_in(&dir, &servers, &[("p.json", policy.to_string())], &env, &[])
        })
        .collect();
    let (a, b) = (replicas[0].port, replicas[1].port);
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

    // Ended on A after B resumed it.
    let sid = initialize(a, "rec", OPS);
    assert_eq!(post(b, "rec", OPS, Some(&sid), list).status, 200);
    assert_eq!(open_sessions(b), 1.0);
    let auth = format!("Bearer {OPS}");
    let r = http_request(
        a,
        "DELETE",
        "/mcp/rec",
        &[("Authorization", auth.as_str()), ("Mcp-Session-Id", &sid)],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(open_sessions(a), 0.0);

    // Expired: opened on A, used on B, then left alone for longer than its TTL.
    let idle = initialize(a, "rec", OPS);
    assert_eq!(post(b, "rec", OPS, Some(&idle), list).status, 200);
    // (The ended one may already be gone: that request may have swept.)
    assert!(open_sessions(b) >= 1.0);
    std::thread::sleep(Duration::from_millis(1_300));

    // Any session request on B (here, of an unknown session) lets B sweep: both go.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = post(b, "rec", OPS, Some(&"0".repeat(32)), list);
        assert_eq!(r.status, 404, "{}", r.body);
        if open_sessions(b) == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "B kept its connections");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        post(a, "rec", OPS, Some(&idle), list).status,
        404,
        "expired"
    );
}
