//! `naive-proxy`: the floor under the gateway's forwarded hop — an HTTP pass-through built
//! from the same parts as `portcullis serve` (axum in front, one pooled reqwest client behind)
//! that does nothing else: no auth, no parse, no policy, no counters, no audit.
//!
//! `naive-proxy --port P --upstream http://127.0.0.1:U/mcp` forwards every `POST /mcp` with
//! its MCP headers and body and returns the upstream's status, content type, session id and
//! body. `bench` runs it beside the gateway so that the gateway's CPU per call can be read
//! against what the HTTP stack alone costs on the same machine, in the same run.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::Parser;
use std::sync::Arc;

/// Command line.
#[derive(Parser)]
#[command(about = "A bare HTTP pass-through for MCP POSTs (the benchmark's floor)")]
struct Cli {
    /// Port to listen on (127.0.0.1).
    #[arg(long)]
    port: u16,
    /// Where every POST goes.
    #[arg(long)]
    upstream: String,
    /// Worker threads (0: one per CPU, like the gateway's default).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

/// The request headers passed on (what an MCP client sends that a server reads).
const FORWARDED: [&str; 5] = [
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "authorization",
];

/// The answer headers passed back.
const RETURNED: [&str; 2] = ["content-type", "mcp-session-id"];

struct Proxy {
    client: reqwest::Client,
    upstream: String,
}

async fn forward(State(p): State<Arc<Proxy>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut req = p.client.post(&p.upstream).body(body);
    for name in FORWARDED {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    let answer = match req.send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = HeaderMap::new();
    for name in RETURNED {
        if let Some(v) = answer.headers().get(name) {
            out.insert(HeaderName::from_static(name), v.clone());
        }
    }
    match answer.bytes().await {
        Ok(b) => (status, out, b).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

fn main() {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if cli.workers > 0 {
        rt.worker_threads(cli.workers);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    let proxy = Arc::new(Proxy {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .expect("HTTP client"),
        upstream: cli.upstream,
    });
    rt.block_on(async move {
        let app = axum::Router::new()
            .route("/mcp", post(forward))
            .with_state(proxy);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", cli.port))
            .await
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{}: {e}", cli.port));
        axum::serve(listener, app).await.expect("serve");
    });
}
