//! Handshake-era sessions: `initialize` opens one (its own upstream connection, or a bridge
//! to a 2026-07-28-only upstream), and each later POST with `Mcp-Session-Id` goes to it.

use super::era::{era_of, Era};
use super::routes::{answer, primes, Streaming};
use super::runtime::{Conn, ServerRt};
use super::stateless::forward_stateless;
use super::{accepts_sse, random_hex, rpc_status, upstream_unavailable, Gateway, SESSION_HEADER};
use crate::relay::Caller;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_mcp::{codes, error_line, Kind, Message};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// An open session: its server, its caller (the grant that opened it), its upstream
/// connection.
pub(super) struct Session {
    pub(super) server: Arc<ServerRt>,
    pub(super) caller: Caller,
    pub(super) conn: Arc<Conn>,
    /// A handshake-era session bridged to a 2026-07-28-only upstream: the `_meta` each request
    /// is sent with (protocol version, the client's capabilities and info from `initialize`).
    pub(super) bridged: Option<Value>,
    /// Recorded in the shared session store (other replicas may continue it).
    pub(super) shared: bool,
    /// A legacy HTTP+SSE (2024-11-05) session of `/sse/<server>`, not a Streamable HTTP one.
    pub(super) legacy: bool,
}

/// `initialize` without a session: a new handshake-era session with its own upstream
/// connection, so the server sees this client's capabilities. When the upstream speaks
/// 2026-07-28 and refuses the handshake, the session is bridged instead: `initialize` is
/// answered from the upstream's `server/discover`, and every later request goes out stateless,
/// with the `_meta` this handshake declared.
pub(super) async fn open_session(
    gw: &Arc<Gateway>,
    srv: Arc<ServerRt>,
    mut caller: Caller,
    msg: Message,
    text: &str,
    headers: &HeaderMap,
) -> Response {
    // The session's `scope = "session"` counters: one key for the session's life, on
    // whichever replica its requests land.
    caller.session_id = super::shared::counter_key();
    let shared = gw.shared.get().is_some();
    let conn = match gw.connect(&srv).await {
        Ok(c) => c,
        Err(e) => return upstream_unavailable(&msg, &e),
    };
    let id = random_hex(16);
    let era = era_of(gw, &srv).await;
    let Era::Modern(discover) = era else {
        let s = Arc::new(Session {
            server: srv.clone(),
            caller,
            conn,
            bridged: None,
            shared,
            legacy: false,
        });
        gw.rt.open(id.clone(), s.clone());
        if let Err(r) = super::shared::record(gw, &id, &s, text).await {
            return *r;
        }
        return legacy_post(gw, &s, msg, text, headers, Some(id)).await;
    };
    // Try the handshake; keep the answer unless the server refuses it.
    let client_id = msg.id().expect("request").get().to_owned();
    let mut rx = conn.router.wait_for(&client_id, None);
    conn.link.from_client(text, &caller).await;
    let mut answer = None;
    while let Ok(Some(l)) = tokio::time::timeout(gw.timeout, rx.recv()).await {
        if l.is_response() {
            let line = l.line.clone().unwrap_or_else(|| l.msg.to_json());
            answer = Some((l.msg, line));
            break;
        }
    }
    conn.router.forget(&client_id);
    let with_session = |resp: Response| {
        let mut resp = resp;
        resp.headers_mut()
            .insert(SESSION_HEADER, HeaderValue::from_str(&id).expect("hex"));
        resp
    };
    match answer {
        Some((m, line)) if m.get("result").is_some() => {
            let s = Arc::new(Session {
                server: srv.clone(),
                caller,
                conn,
                bridged: None,
                shared,
                legacy: false,
            });
            gw.rt.open(id.clone(), s.clone());
            if let Err(r) = super::shared::record(gw, &id, &s, text).await {
                return *r;
            }
            with_session(rpc_status(StatusCode::OK, line))
        }
        Some(_) => {
            // Refused: bridge this session over the shared stateless connection.
            conn.link.shutdown(Duration::from_secs(2)).await;
            let Ok(modern) = srv.modern.get_or_try_init(|| gw.connect(&srv)).await else {
                return rpc_status(
                    StatusCode::BAD_GATEWAY,
                    error_line(
                        msg.id(),
                        codes::INTERNAL_ERROR,
                        "cannot reach the upstream server",
                    ),
                );
            };
            let p = msg.value("params").unwrap_or_else(|| json!({}));
            let (meta, result) = crate::bridge::session(&p, &discover, &srv.name);
            let s = Arc::new(Session {
                server: srv.clone(),
                caller,
                conn: modern.clone(),
                bridged: Some(meta),
                shared,
                legacy: false,
            });
            gw.rt.open(id.clone(), s.clone());
            if let Err(r) = super::shared::record(gw, &id, &s, text).await {
                return *r;
            }
            tracing::info!(server = %srv.name, "handshake refused upstream: session bridged to 2026-07-28");
            with_session(rpc_status(
                StatusCode::OK,
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{client_id},\"result\":{result}}}"),
            ))
        }
        None => rpc_status(
            StatusCode::GATEWAY_TIMEOUT,
            error_line(
                msg.id(),
                codes::INTERNAL_ERROR,
                "The upstream server did not answer initialize in time.",
            ),
        ),
    }
}

/// A request of a handshake-era session bridged to a 2026-07-28-only upstream: `ping` and
/// `logging/setLevel` are answered here, `notifications/initialized` has no stateless
/// counterpart; everything else goes out with the session's `_meta`.
pub(super) async fn bridged_legacy_post(
    gw: &Gateway,
    s: &Session,
    mut msg: Message,
    headers: &HeaderMap,
) -> Response {
    let caller = gw.policies.current(&s.caller);
    let method = msg.method().unwrap_or_default().to_owned();
    if msg.kind() != Kind::Request {
        if !crate::bridge::dropped(&method) && msg.kind() == Kind::Notification {
            s.conn.link.from_client(msg, &caller).await;
        }
        return StatusCode::ACCEPTED.into_response();
    }
    if crate::bridge::answered_here(&method) {
        let line = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{}}}}",
            msg.id().expect("request").get()
        );
        return rpc_status(StatusCode::OK, line);
    }
    let p = crate::bridge::with_meta(
        msg.value("params"),
        s.bridged.as_ref().unwrap_or(&Value::Null),
    );
    msg.set_value("params", &p);
    forward_stateless(gw, &s.conn, caller, msg, headers, Vec::new(), None).await
}

pub(super) async fn legacy_post(
    gw: &Gateway,
    s: &Session,
    msg: Message,
    text: &str,
    headers: &HeaderMap,
    new_session: Option<String>,
) -> Response {
    let mut caller = gw.policies.current(&s.caller);
    caller.trace = super::traceparent(headers);
    if msg.kind() != Kind::Request {
        s.conn.link.from_client(text, &caller).await;
        return StatusCode::ACCEPTED.into_response();
    }
    let id = msg.id().expect("request").get().to_owned();
    let token = msg
        .value("params")
        .and_then(|p| p.pointer("/_meta/progressToken").map(Value::to_string));
    let rx = s.conn.router.wait_for(&id, token);
    s.conn.link.from_client(text, &caller).await;
    let stream = if accepts_sse(headers) {
        Streaming::Resumable {
            priming: primes(headers),
        }
    } else {
        Streaming::JsonOnly
    };
    let mut resp = answer(gw, &s.conn.router, rx, &id, stream, None, None).await;
    if let Some(sid) = new_session {
        resp.headers_mut()
            .insert(SESSION_HEADER, HeaderValue::from_str(&sid).expect("hex"));
    }
    resp
}
