//! Shared pieces of the Portcullis load harness.
//!
//! [`answer`] is the whole MCP "server" behind `fast-upstream`: it answers every request at
//! once with a fixed result, so that a benchmark through the gateway measures the gateway and
//! not the upstream. The `bench` binary drives the same workload direct and through the
//! gateway and reports the difference.

use serde_json::{json, Value};

pub mod redis_server;

/// Protocol version of the stateless era, sent in `_meta` and in `MCP-Protocol-Version`.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// Protocol version answered to a handshake-era `initialize` that names none.
pub const HANDSHAKE_VERSION: &str = "2025-06-18";
/// `_meta` key carrying the protocol version of a stateless request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the client capabilities of a stateless request.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// Marker contained in every successful `tools/call` result text.
pub const RESULT_MARKER: &str = "fast-upstream:";

/// Fixed text of a `tools/call` result (about 150 B once wrapped in the result envelope).
const RESULT_TEXT: &str =
    "fast-upstream: ok. This fixed text stands in for a tool result so that the payload is about 150 bytes.";

/// Whether a request carries the stateless era's protocol version in `params._meta`.
pub fn is_stateless(req: &Value) -> bool {
    req.pointer("/params/_meta")
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .is_some()
}

fn server_info() -> Value {
    json!({ "name": "fast-upstream", "version": env!("CARGO_PKG_VERSION") })
}

/// The answer to one JSON-RPC message, or `None` for a notification or a response (no reply).
pub fn answer(req: &Value) -> Option<Value> {
    let id = req.get("id")?.clone();
    let method = req.get("method")?.as_str().unwrap_or("");
    let result = match method {
        "initialize" => {
            let version = req
                .pointer("/params/protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(HANDSHAKE_VERSION);
            json!({
                "protocolVersion": version,
                "capabilities": { "tools": {} },
                "serverInfo": server_info(),
            })
        }
        "server/discover" => json!({
            "supportedVersions": [STATELESS_VERSION, HANDSHAKE_VERSION],
            "capabilities": { "tools": {} },
            "serverInfo": server_info(),
        }),
        "ping" => json!({}),
        "tools/list" => json!({
            "tools": [
                {
                    "name": "echo",
                    "description": "Answers at once with a fixed text.",
                    "inputSchema": { "type": "object", "properties": { "text": { "type": "string" } } }
                },
                {
                    "name": "ai_invoice_pipeline_run",
                    "description": "Pretends to run the invoice pipeline; answers at once.",
                    "inputSchema": { "type": "object", "properties": { "move_id": { "type": "integer" } } }
                }
            ]
        }),
        "tools/call" => {
            let name = req
                .pointer("/params/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            match name {
                "echo" | "ai_invoice_pipeline_run" => json!({
                    "content": [ { "type": "text", "text": RESULT_TEXT } ],
                    "isError": false,
                }),
                _ => {
                    return Some(json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "error": { "code": -32602, "message": format!("unknown tool {name:?}") }
                    }))
                }
            }
        }
        _ => {
            return Some(json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": { "code": -32601, "message": format!("method not found: {method}") }
            }))
        }
    };
    Some(json!({ "jsonrpc": "2.0", "id": id, "result": result }))
}

/// A port nothing listens on (right now), for a child process to bind.
///
/// The probe socket is bound but never put in the listening state. A listening probe (what
/// `TcpListener::bind` makes) can be copied into a child that another thread forks at that
/// moment; until that child execs, connections to the port queue on the copy and are reset
/// when it closes, so a readiness check passes before the real server listens.
pub fn free_port() -> u16 {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("a TCP socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind 127.0.0.1:0");
    s.local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("a bound port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_requests_not_notifications() {
        let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}});
        let a = answer(&call).unwrap();
        assert_eq!(a["id"], 7);
        assert_eq!(a["result"]["isError"], false);
        let n = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        assert!(answer(&n).is_none());
        let size = serde_json::to_string(&a).unwrap().len();
        assert!((120..220).contains(&size), "result is {size} B");
    }
}
