//! The era probe (`server/discover`, once per server) and the bridge that lets stateless
//! clients reach a handshake-era upstream (one upstream session per grant and capabilities).

use super::runtime::{Conn, ServerRt};
use super::stateless::forward_stateless;
use super::{rpc_status, Gateway};
use crate::relay::Caller;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_mcp::{codes, error_line, Kind, Message, META_PROTOCOL_VERSION};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// What an upstream speaks.
#[derive(Clone, Debug)]
pub(super) enum Era {
    /// Handshake era only (answers `server/discover` with an error, or not at all).
    Legacy,
    /// 2026-07-28 (perhaps the handshake era too: `supportedVersions` lists only stateless
    /// versions, so a handshake is tried first); its `server/discover` result.
    Modern(Arc<Value>),
}

/// A handshake-era upstream session serving stateless (2026-07-28) clients.
pub(super) struct Bridge {
    pub(super) conn: Arc<Conn>,
    /// The upstream's `initialize` result (capabilities, serverInfo, instructions).
    init: Value,
}

/// Asks the upstream once whether it speaks 2026-07-28: a `server/discover` answer, or one of
/// that era's errors, means yes; anything else (-32601, silence for 10 s) means a
/// handshake-era server, which stateless clients then reach through a bridge.
async fn probe_era(gw: &Gateway, srv: &ServerRt) -> Result<Era, ()> {
    let Ok(conn) = srv.modern.get_or_try_init(|| gw.connect(srv)).await else {
        return Err(()); // not cached: the request itself reports the failure
    };
    let id = "\"portcullis-probe\"";
    let rx = conn.router.wait_for(id, None);
    let probe = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"server/discover","params":{{"_meta":{{"{META_PROTOCOL_VERSION}":"{}","io.modelcontextprotocol/clientCapabilities":{{}},"io.modelcontextprotocol/clientInfo":{{"name":"portcullis","version":"{}"}}}}}}}}"#,
        portcullis_mcp::MODERN,
        env!("CARGO_PKG_VERSION")
    );
    let caller = Caller {
        engine: None,
        grant_id: "(gateway)".into(),
        grant_label: "(gateway)".into(),
        session_id: "probe".into(),
        policy: None,
        request_id: None,
        principal: None,
        trace: None,
    };
    conn.link
        .from_client_with(&probe, &caller, Vec::new())
        .await;
    let mut rx = rx;
    let answer = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .ok()
        .flatten();
    conn.router.forget(id);
    let era = match answer.map(|r| r.msg) {
        Some(m) => match m.value("result") {
            Some(r) => Era::Modern(Arc::new(r)),
            None if m
                .value("error")
                .and_then(|e| e.get("code").and_then(Value::as_i64))
                .is_some_and(|c| (-32022..=-32020).contains(&c)) =>
            {
                Era::Modern(Arc::new(json!({})))
            }
            None => Era::Legacy,
        },
        None => Era::Legacy,
    };
    tracing::info!(server = %srv.name, "upstream era: {}", if matches!(era, Era::Legacy) { "handshake only (stateless clients are bridged)" } else { "2026-07-28" });
    Ok(era)
}

/// The upstream's era, probed once (a failure to connect is not cached).
pub(super) async fn era_of(gw: &Gateway, srv: &ServerRt) -> Era {
    match srv.era.get_or_try_init(|| probe_era(gw, srv)).await {
        Ok(e) => e.clone(),
        Err(()) => Era::Modern(Arc::new(json!({}))),
    }
}

/// A stateless request to a handshake-era upstream: one upstream session per grant and
/// declared client capabilities, opened with the client's own capabilities; the per-request
/// `io.modelcontextprotocol/*` `_meta` keys stripped; answers given `resultType` (and
/// `ttlMs: 0`, `cacheScope: "private"` on lists). `server/discover` is answered `-32601`, as the
/// upstream would, so dual-era clients use the handshake.
pub(super) async fn bridge_post(
    gw: &Gateway,
    srv: &ServerRt,
    caller: Caller,
    mut msg: Message,
    headers: &HeaderMap,
) -> Response {
    let params = msg.value("params");
    let meta = params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .cloned()
        .unwrap_or(Value::Null);
    let (caps, info) = bridged_client(&meta);
    let key = format!(
        "{}|{}",
        caller.grant_id,
        portcullis_policy::json::canonical(&caps)
    );
    let bridge = {
        let mut bridges = srv.bridges.lock().await;
        match bridges.get(&key) {
            Some(b) => b.clone(),
            None => match open_bridge(gw, srv, &caller, &caps, &info).await {
                Ok(b) => {
                    bridges.insert(key, b.clone());
                    b
                }
                Err(e) => {
                    return rpc_status(
                        StatusCode::BAD_GATEWAY,
                        error_line(msg.id(), codes::INTERNAL_ERROR, &e),
                    )
                }
            },
        }
    };
    let method = msg.method().unwrap_or_default().to_owned();
    if msg.kind() == Kind::Request && method == "server/discover" {
        // Answered as the upstream itself does: a dual-era client then falls back to the
        // handshake and keeps every feature (server→client requests included, which this
        // bridge cannot yet turn into input-required results). Clients pinned to 2026-07-28
        // that skip discovery are bridged for everything else.
        let name = bridge
            .init
            .pointer("/serverInfo/name")
            .and_then(Value::as_str)
            .unwrap_or("the upstream");
        return rpc_status(
            StatusCode::NOT_FOUND,
            error_line(
                msg.id(),
                codes::METHOD_NOT_FOUND,
                &format!("server/discover: {name} is a handshake-era server; initialize instead"),
            ),
        );
    }
    // Strip the stateless era's per-request keys; a handshake-era server has the session.
    let mut params = params;
    if let Some(p) = params.as_mut() {
        if let Some(m) = p.get_mut("_meta").and_then(Value::as_object_mut) {
            m.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
            if m.is_empty() {
                p.as_object_mut().expect("object").remove("_meta");
            }
        }
        msg.set_value("params", p);
    }
    if msg.kind() != Kind::Request {
        bridge.conn.link.from_client(msg, &caller).await;
        return StatusCode::ACCEPTED.into_response();
    }
    forward_stateless(
        gw,
        &bridge.conn,
        caller,
        msg,
        headers,
        Vec::new(),
        Some(method),
    )
    .await
}

async fn open_bridge(
    gw: &Gateway,
    srv: &ServerRt,
    caller: &Caller,
    caps: &Value,
    info: &Value,
) -> Result<Arc<Bridge>, String> {
    let conn = gw
        .connect(srv)
        .await
        .map_err(|e| format!("cannot start the upstream server: {e}"))?;
    let id = "\"portcullis-bridge-init\"";
    let mut rx = conn.router.wait_for(id, None);
    let init = json!({"jsonrpc": "2.0", "id": "portcullis-bridge-init", "method": "initialize",
        "params": {"protocolVersion": portcullis_mcp::LEGACY_LATEST, "capabilities": caps, "clientInfo": info}});
    conn.link.from_client(&init.to_string(), caller).await;
    let answer = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .ok()
        .flatten();
    conn.router.forget(id);
    let result = answer
        .and_then(|r| r.msg.value("result"))
        .ok_or_else(|| "the handshake-era upstream did not accept initialize".to_string())?;
    conn.link
        .from_client(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            caller,
        )
        .await;
    Ok(Arc::new(Bridge { conn, init: result }))
}

/// A stateless client's capabilities and `clientInfo`, from its request's `_meta`, as a bridge
/// to a handshake-era upstream presents them in its `initialize` (`{}` and a `portcullis-bridge`
/// info when absent).
pub(super) fn bridged_client(meta: &Value) -> (Value, Value) {
    let caps = meta
        .get("io.modelcontextprotocol/clientCapabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let info = meta
        .get("io.modelcontextprotocol/clientInfo")
        .cloned()
        .unwrap_or_else(|| json!({"name": "portcullis-bridge", "version": "0"}));
    (caps, info)
}
