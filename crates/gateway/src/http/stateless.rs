//! Stateless (2026-07-28) requests: the header checks, one shared upstream connection per
//! server with ids and progress tokens made unique per request (and put back on the way out),
//! and the cancellation sent when the client closes the response.

use super::era::{bridge_post, era_of, Era};
use super::routes::{answer, subscription_of, Routed, Streaming};
use super::runtime::{Conn, ServerRt};
use super::{accepts_sse, header, rpc_status, upstream_unavailable, Gateway};
use crate::relay::Caller;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_mcp::{codes, error_line, Kind, Message};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Requests of the handshake era that do not exist in the stateless one.
const REMOVED_IN_MODERN: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// A stateless request whose headers do not repeat its body: 400, `-32020`.
fn mismatch(msg: &Message, what: &str) -> Box<Response> {
    Box::new(rpc_status(
        StatusCode::BAD_REQUEST,
        error_line(msg.id(), -32020, &format!("Header mismatch: {what}")),
    ))
}

/// `MCP-Protocol-Version` must be the version the request's `_meta` names.
pub(super) fn version_header(
    msg: &Message,
    version: &str,
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
    match header(headers, "mcp-protocol-version") {
        Some(h) if h == version => Ok(()),
        Some(h) => Err(mismatch(
            msg,
            &format!("MCP-Protocol-Version {h:?} differs from _meta {version:?}"),
        )),
        None => Err(mismatch(msg, "MCP-Protocol-Version header is missing")),
    }
}

/// A request for a method 2026-07-28 removed is answered as a modern server must (404,
/// `-32601`), whatever the upstream is.
pub(super) fn removed_method(msg: &Message, version: &str) -> Result<(), Box<Response>> {
    let method = msg.method().unwrap_or_default();
    if msg.kind() == Kind::Request && REMOVED_IN_MODERN.contains(&method) {
        return Err(Box::new(rpc_status(
            StatusCode::NOT_FOUND,
            error_line(
                msg.id(),
                codes::METHOD_NOT_FOUND,
                &format!("{method} does not exist in protocol version {version}"),
            ),
        )));
    }
    Ok(())
}

/// A request's `Mcp-Method` must be its method, and its `Mcp-Name` the tool, prompt or
/// resource its params name.
pub(super) fn request_headers(msg: &Message, headers: &HeaderMap) -> Result<(), Box<Response>> {
    if msg.kind() != Kind::Request {
        return Ok(());
    }
    let method = msg.method().unwrap_or_default();
    match header(headers, "mcp-method") {
        Some(h) if h == method => {}
        Some(h) => {
            return Err(mismatch(
                msg,
                &format!("Mcp-Method {h:?} differs from the body's method {method:?}"),
            ))
        }
        None => return Err(mismatch(msg, "Mcp-Method header is missing")),
    }
    let name_key = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(k) = name_key {
        let body_name = msg.peek_as::<String>("params", &[k]);
        match (header(headers, "mcp-name"), body_name.as_deref()) {
            (Some(h), Some(b)) if h == b => {}
            (h, b) => {
                return Err(mismatch(
                    msg,
                    &format!("Mcp-Name {h:?} differs from params.{k} {b:?}"),
                ))
            }
        }
    }
    Ok(())
}

pub(super) async fn modern_post(
    gw: &Gateway,
    srv: &ServerRt,
    caller: Caller,
    msg: Message,
    version: &str,
    headers: &HeaderMap,
) -> Response {
    let checked = version_header(&msg, version, headers)
        .and_then(|()| removed_method(&msg, version))
        .and_then(|()| request_headers(&msg, headers));
    if let Err(r) = checked {
        return *r;
    }
    // Mcp-Param-* headers travel on to an HTTP upstream unchanged (policy reads the body).
    let params_headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("mcp-param-"))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    if matches!(era_of(gw, srv).await, Era::Legacy) {
        return bridge_post(gw, srv, caller, msg, headers).await;
    }
    let conn = match srv.modern.get_or_try_init(|| gw.connect(srv)).await {
        Ok(c) => c.clone(),
        Err(e) => return upstream_unavailable(&msg, &e),
    };
    if msg.kind() != Kind::Request {
        conn.link
            .from_client_with(msg, &caller, params_headers)
            .await;
        return StatusCode::ACCEPTED.into_response();
    }
    forward_stateless(gw, &conn, caller, msg, headers, params_headers, None).await
}

/// Sends one stateless request on a connection many clients share: the request gets an id and
/// progress token unique on it, and the client's own come back on the answer. `bridged`
/// (the method) marks an answer from a handshake-era upstream, which gets the stateless era's
/// result fields.
#[allow(clippy::too_many_arguments)]
pub(super) async fn forward_stateless(
    gw: &Gateway,
    conn: &Arc<Conn>,
    mut caller: Caller,
    mut msg: Message,
    headers: &HeaderMap,
    params_headers: Vec<(String, String)>,
    bridged: Option<String>,
) -> Response {
    let original_id = msg.id().expect("request").to_owned();
    caller.request_id = Some(original_id.get().to_owned());
    caller.trace = super::traceparent(headers);
    let ours = format!("\"h{}\"", gw.next.fetch_add(1, Ordering::Relaxed));
    let ours_raw = serde_json::value::RawValue::from_string(ours.clone()).expect("json");
    msg.set_id(&ours_raw);
    // A progress token (rare) is made unique too; only then are the params rebuilt.
    let original_token = msg.peek_as::<Value>("params", &["_meta", "progressToken"]);
    if original_token.is_some() {
        if let Some(mut p) = msg.value("params") {
            p["_meta"]["progressToken"] = serde_json::from_str(&ours).expect("json");
            msg.set_value("params", &p);
        }
    }
    let rx = conn
        .router
        .wait_for(&ours, original_token.as_ref().map(|_| ours.clone()));
    // A JSON answer is in `rx` when this returns (no task hop); a streamed one follows.
    conn.link
        .from_client_answered(msg, &caller, params_headers)
        .await;
    let restore = Restore {
        id: original_id,
        token: original_token,
        bridged,
    };
    let cancel = CancelGuard {
        conn: conn.clone(),
        caller: caller.clone(),
        id: ours.clone(),
        armed: true,
    };
    answer(
        gw,
        &conn.router,
        rx,
        &ours,
        if accepts_sse(headers) {
            Streaming::Sse
        } else {
            Streaming::JsonOnly
        },
        Some(restore),
        Some(cancel),
    )
    .await
}

/// For a stateless (2026-07-28) request, closing the response is the cancellation: if the
/// client goes away (or the gateway times out) before the answer, the upstream is told.
pub(super) struct CancelGuard {
    conn: Arc<Conn>,
    caller: Caller,
    id: String,
    pub(super) armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.conn.router.forget(&self.id);
        let line = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":"the client closed the response"}}}}"#,
            self.id
        );
        let (conn, caller) = (self.conn.clone(), self.caller.clone());
        tokio::spawn(async move { conn.link.from_client(&line, &caller).await });
    }
}

/// What to put back on lines for a modern request whose id and token were made unique.
pub(super) struct Restore {
    pub(super) id: Box<serde_json::value::RawValue>,
    token: Option<Value>,
    /// For an answer from a handshake-era upstream to a stateless client: the method.
    bridged: Option<String>,
}

impl Restore {
    /// Puts back the client's `id` and progress `token`; `bridged` (the method): the answer
    /// comes from a handshake-era session and gets the stateless era's result fields.
    pub(super) fn new(
        id: Box<serde_json::value::RawValue>,
        token: Option<Value>,
        bridged: Option<String>,
    ) -> Restore {
        Restore { id, token, bridged }
    }

    pub(super) fn apply(&self, routed: Routed) -> String {
        let Routed { line, msg: mut m } = routed;
        match m.kind() {
            Kind::Response => {
                m.set_id(&self.id);
                let bridged = self
                    .bridged
                    .as_ref()
                    .and_then(|b| Some((b, m.value("result")?)));
                if let Some((method, mut r)) = bridged {
                    if let Some(o) = r.as_object_mut() {
                        o.entry("resultType").or_insert_with(|| json!("complete"));
                        if method.ends_with("/list") {
                            o.insert("ttlMs".into(), json!(0));
                            o.insert("cacheScope".into(), json!("private"));
                        }
                    }
                    m.set_value("result", &r);
                }
            }
            Kind::Notification if m.method() == Some("notifications/progress") => {
                if let (Some(mut p), Some(t)) = (m.value("params"), &self.token) {
                    p["progressToken"] = t.clone();
                    m.set_value("params", &p);
                }
            }
            Kind::Notification if subscription_of(&m).is_some() => {
                if let Some(mut p) = m.value("params") {
                    p["_meta"][crate::relay::SUBSCRIPTION_ID] =
                        serde_json::from_str(self.id.get()).expect("json");
                    m.set_value("params", &p);
                }
            }
            _ => return line.unwrap_or_else(|| m.to_json()),
        }
        m.to_json()
    }
}
