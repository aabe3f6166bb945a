//! A budget the clock cannot move, on the whole HTTP path: how many times one forwarded
//! stateless (2026-07-28) `tools/call` is parsed as JSON-RPC (`Message::parse`), from the
//! client's POST through the gateway to a Streamable HTTP upstream and back. Each message is
//! meant to be parsed once where it arrives: the request by the face (the relay hands the
//! upstream transport the parsed message, from which it reads what it repeats in headers),
//! the answer by the transport (the relay hands the router the parsed answer, which it
//! routes by id). The test fails when a change parses
//! more; lower the budget when one parses less.
//!
//! Everything runs in this process: the benchmark's upstream (`portcullis_bench::answer`) on
//! axum, the gateway's own router and listener, and a reqwest client.

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_bench::{free_port, META_PROTOCOL_VERSION, STATELESS_VERSION};
use portcullis_gateway::config::Config;
use portcullis_gateway::http::{Gateway, Limits, Parts};
use portcullis_store::{GrantStore, MemoryCounters, SqliteGrants};
use serde_json::{json, Value};
use std::sync::Arc;

/// Parses per forwarded call (request and answer), measured when the budget was last
/// lowered: the face parses the request, the transport the answer (4 while the transport
/// parsed the request again and the router the answer).
const BUDGET: u64 = 2;

async fn upstream(body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).expect("the gateway sends JSON");
    match portcullis_bench::answer(&req) {
        Some(reply) => (
            [(header::CONTENT_TYPE, "application/json")],
            reply.to_string(),
        )
            .into_response(),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_stateless_call_is_parsed_within_its_budget() {
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/mcp", axum::routing::post(upstream));
        axum::serve(up, app).await.unwrap();
    });

    let dir = std::env::temp_dir().join(format!("portcullis-parse-budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("policy.json"),
        r#"{"version":"1","default":"deny","tools":{"echo":{"limits":[{"counter":"calls","window":"minute","max":1000000,"scope":"grant"}]}}}"#,
    )
    .unwrap();
    let port = free_port();
    std::fs::write(
        dir.join("portcullis.toml"),
        format!(
            "[gateway]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\naudit = \"off\"\n\n\
             [[servers]]\nname = \"odoo\"\nurl = \"http://{up_addr}/mcp\"\nauth = \"grant\"\n\
             policy = \"policy.json\"\n",
            dir.join("data")
        ),
    )
    .unwrap();
    let cfg = Config::load(&dir.join("portcullis.toml")).unwrap();
    let grants = Arc::new(SqliteGrants::open_in_memory().unwrap());
    let (_, token) = grants
        .create("odoo", "budget", Some("odoo"), None, 1)
        .unwrap();
    let gw = Gateway::new(
        &cfg,
        Parts {
            store: Arc::new(MemoryCounters::new()),
            grants: Some(grants),
            audit: None,
            approvals: None,
            metrics: None,
            pins: None,
            tracer: None,
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let app = gw.router(cfg.gateway.max_body_bytes);
    let limits = Limits::new(&cfg.gateway);
    tokio::spawn(portcullis_gateway::http::serve(
        listener,
        app,
        limits,
        std::future::pending(),
    ));

    let client = reqwest::Client::new();
    let call = |id: u64| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "echo", "arguments": {"text": "hello"},
            "_meta": {META_PROTOCOL_VERSION: STATELESS_VERSION}}});
        let req = client
            .post(format!("http://127.0.0.1:{port}/mcp/odoo"))
            .bearer_auth(token.secret())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", STATELESS_VERSION)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "echo")
            .body(body.to_string());
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
            assert_eq!(v["id"], id, "the client's own id comes back");
            assert!(
                v["result"]["content"][0]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(portcullis_bench::RESULT_MARKER)),
                "forwarded and answered: {v}"
            );
        }
    };
    // The first calls probe the upstream's era and warm the connection.
    for id in 0..5 {
        call(id).await;
    }
    let n = 200;
    let before = portcullis_mcp::message::parses();
    for id in 100..100 + n {
        call(id).await;
    }
    let per_call = (portcullis_mcp::message::parses() - before) as f64 / n as f64;
    println!("Message::parse per forwarded call: {per_call} (budget {BUDGET})");
    assert!(
        per_call <= BUDGET as f64,
        "a forwarded call is now parsed {per_call} times (budget {BUDGET})"
    );
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
