//! The legacy → modern era bridge (a handshake-era client, a 2026-07-28-only server), shared
//! by both faces: `initialize` is answered from the server's `server/discover`, and every
//! later request goes out stateless with the `_meta` the handshake declared. `ping` and
//! `logging/setLevel` are answered here; `notifications/initialized` and
//! `notifications/roots/list_changed` have no stateless counterpart and are dropped.
//!
//! Not bridged: an upstream `InputRequiredResult` is passed on as it is, not turned into
//! server→client requests; there is no listen stream for `list_changed`.

use portcullis_mcp::{LEGACY_LATEST, META_PROTOCOL_VERSION, MODERN};
use serde_json::{json, Value};

/// Whether a `server/discover` result says the server speaks only the stateless era (no
/// handshake-era version among its `supportedVersions`).
pub(crate) fn modern_only(discover: &Value) -> bool {
    discover
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|v| {
            !v.is_empty()
                && v.iter()
                    .filter_map(Value::as_str)
                    .all(|s| s > LEGACY_LATEST)
        })
}

/// For a client's `initialize` params and the server's `server/discover` result: the `_meta`
/// every bridged request carries, and the `initialize` result to answer with (the client's
/// version if it is a handshake-era one, else the latest of them).
pub(crate) fn session(init: &Value, discover: &Value, server: &str) -> (Value, Value) {
    let requested = init
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or(LEGACY_LATEST);
    let version = if requested <= LEGACY_LATEST {
        requested
    } else {
        LEGACY_LATEST
    };
    let meta = json!({
        META_PROTOCOL_VERSION: MODERN,
        "io.modelcontextprotocol/clientCapabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "io.modelcontextprotocol/clientInfo": init.get("clientInfo").cloned().unwrap_or_else(|| json!({"name": "portcullis-bridge", "version": "0"})),
    });
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": discover.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "serverInfo": discover
            .pointer("/_meta/io.modelcontextprotocol~1serverInfo")
            .or_else(|| discover.get("serverInfo"))
            .cloned()
            .unwrap_or_else(|| json!({"name": server, "version": "0"})),
    });
    if let Some(i) = discover.get("instructions") {
        result["instructions"] = i.clone();
    }
    (meta, result)
}

/// `params` with the session's `_meta` keys added (an absent `params` becomes an object).
pub(crate) fn with_meta(params: Option<Value>, meta: &Value) -> Value {
    let mut p = params.unwrap_or_else(|| json!({}));
    if let (Some(obj), Some(meta)) = (p.as_object_mut(), meta.as_object()) {
        let m = obj.entry("_meta").or_insert_with(|| json!({}));
        if let Some(m) = m.as_object_mut() {
            for (k, v) in meta {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    p
}

/// Requests the bridge answers itself, with an empty result.
pub(crate) fn answered_here(method: &str) -> bool {
    method == "ping" || method == "logging/setLevel"
}

/// Notifications with no stateless counterpart (dropped).
pub(crate) fn dropped(method: &str) -> bool {
    method == "notifications/initialized" || method == "notifications/roots/list_changed"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_is_answered_from_discover() {
        let discover = json!({"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},
            "serverInfo":{"name":"s","version":"2"},"instructions":"Be brief."});
        assert!(modern_only(&discover));
        assert!(!modern_only(
            &json!({"supportedVersions":["2025-11-25","2026-07-28"]})
        ));
        assert!(!modern_only(&json!({})), "no list: try the handshake");
        let init = json!({"protocolVersion":"2025-06-18","capabilities":{"roots":{}},"clientInfo":{"name":"c","version":"1"}});
        let (meta, result) = session(&init, &discover, "up");
        assert_eq!(meta[META_PROTOCOL_VERSION], MODERN);
        assert_eq!(
            meta["io.modelcontextprotocol/clientCapabilities"],
            json!({"roots":{}})
        );
        assert_eq!(result["protocolVersion"], "2025-06-18");
        assert_eq!(result["serverInfo"]["name"], "s");
        assert_eq!(result["instructions"], "Be brief.");
        let p = with_meta(Some(json!({"name":"t","_meta":{"progressToken":1}})), &meta);
        assert_eq!(p["_meta"]["progressToken"], 1);
        assert_eq!(p["_meta"][META_PROTOCOL_VERSION], MODERN);
    }
}
