//! Error and denial shapes the gateway answers with.

use portcullis_policy::Denial;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// JSON-RPC and MCP error codes Portcullis uses. Portcullis never invents codes in the
/// specification's reserved ranges.
pub mod codes {
    /// Not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid JSON-RPC message (also: batches, over-size messages).
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad params (e.g. `tools/call` without a string `name`).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error (upstream gone, store failure surfaced as a protocol error).
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// A protocol-level error to send back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// JSON-RPC error code.
    pub code: i64,
    /// Message for the client.
    pub message: String,
}

impl ProtocolError {
    /// Builds one.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }
}

/// A JSON-RPC error response line (`id: null` when the id could not be read).
pub fn error_line(id: Option<&RawValue>, code: i64, message: &str) -> String {
    let id = id.map_or("null", |r| r.get());
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{}}}",
        json!({"code": code, "message": message})
    )
}

/// The `tools/call` result for a denial: an `isError` result whose text starts with
/// `[POLICY DENIED]`, with the rule pointer (and retry hint) in `_meta`, and
/// `resultType: "complete"` for a 2026-07-28 client.
pub fn denial_result(d: &Denial, modern: bool) -> Value {
    let mut decision = json!({"rule": d.rule});
    if let Some(s) = d.retry_after_secs {
        decision["retryAfterSeconds"] = json!(s);
    }
    let mut r = json!({
        "content": [{"type": "text", "text": format!("[POLICY DENIED] {}", d.message)}],
        "isError": true,
        "_meta": {"portcullis/decision": decision}
    });
    if modern {
        r["resultType"] = json!("complete");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let d = Denial {
            rule: "/tools/x/limits/0".into(),
            message: "Slow down.".into(),
            retry_after_secs: Some(12),
        };
        let v = denial_result(&d, true);
        assert_eq!(v["content"][0]["text"], "[POLICY DENIED] Slow down.");
        assert_eq!(v["isError"], true);
        assert_eq!(v["_meta"]["portcullis/decision"]["retryAfterSeconds"], 12);
        assert_eq!(v["resultType"], "complete");
        assert!(denial_result(&d, false).get("resultType").is_none());
        let line = error_line(None, codes::PARSE_ERROR, "bad");
        assert_eq!(
            line,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#
        );
    }
}
