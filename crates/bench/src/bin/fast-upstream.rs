//! `fast-upstream`: an MCP server that answers every request at once, over stdio or HTTP.
//!
//! `fast-upstream stdio` reads line-delimited JSON-RPC on stdin and answers on stdout;
//! `fast-upstream http --port P` serves Streamable HTTP at `POST /mcp` with JSON answers, in
//! both eras (handshake: `initialize` returns an `Mcp-Session-Id`; stateless: requests with
//! `_meta` protocolVersion are answered without a session). Nothing is logged per request.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::{Parser, Subcommand};
use portcullis_bench::answer;
use serde_json::Value;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// Command line.
#[derive(Parser)]
#[command(about = "An MCP server that answers immediately (for benchmarks)")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

/// Transport.
#[derive(Subcommand)]
enum Mode {
    /// Line-delimited JSON-RPC on stdin/stdout.
    Stdio,
    /// Streamable HTTP at POST /mcp on 127.0.0.1.
    Http {
        /// Port to listen on.
        #[arg(long)]
        port: u16,
    },
}

fn main() {
    match Cli::parse().mode {
        Mode::Stdio => stdio(),
        Mode::Http { port } => http(port),
    }
}

fn stdio() {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut line = String::new();
    let mut input = stdin.lock();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(text) {
            Ok(req) => answer(&req),
            Err(e) => Some(serde_json::json!({
                "jsonrpc": "2.0", "id": null,
                "error": { "code": -32700, "message": format!("parse error: {e}") }
            })),
        };
        if let Some(reply) = reply {
            let mut bytes = serde_json::to_vec(&reply).expect("serialise");
            bytes.push(b'\n');
            if out.write_all(&bytes).and_then(|_| out.flush()).is_err() {
                return;
            }
        }
    }
}

static SESSIONS: AtomicU64 = AtomicU64::new(1);

async fn handle(_headers: HeaderMap, body: Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("parse error: {e}")).into_response(),
    };
    let Some(reply) = answer(&req) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let mut resp = (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&reply).expect("serialise"),
    )
        .into_response();
    if req.get("method").and_then(Value::as_str) == Some("initialize") {
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
        if let Ok(v) = HeaderValue::from_str(&format!("fast-{n:016x}")) {
            resp.headers_mut().insert("mcp-session-id", v);
        }
    }
    resp
}

fn http(port: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let app = axum::Router::new().route(
            "/mcp",
            post(handle)
                .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
                .delete(|| async { StatusCode::NO_CONTENT }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        axum::serve(listener, app).await.expect("serve");
    });
}
