//! The gateway's side of the aggregated endpoint ([`crate::aggregate`]): its members are the
//! configured servers a caller may reach, each connected through [`Gateway::connect_to`]
//! (the same relay, policy, counters and pins as `/mcp/<server>`).

use super::auth::admit_all;
use super::era::bridged_client;
use super::routes::{answer, get_stream, primes, Routes, Streaming};
use super::stateless::{removed_method, request_headers, version_header, Restore};
use super::{
    accepts_sse, admitted_body, body_text, header, media, random_hex, refuse_invalid, rpc_status,
    streams, Gateway, SESSION_HEADER,
};
use crate::aggregate::{Aggregate, Connect, MemberSpec};
use crate::connection::{ClientTx, ToClient};
use crate::relay::Caller;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use portcullis_mcp::{codes, error_line, Kind, Message, META_PROTOCOL_VERSION};
use portcullis_policy::sync::LockExt;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

impl Gateway {
    /// Every configured server (sorted by name), called by the local user `label` under the
    /// server's own policy: the members of `portcullis stdio --all`.
    pub fn local_members(&self, label: &str, session: &str) -> Vec<MemberSpec> {
        let policies = self.policies.now();
        self.server_names()
            .into_iter()
            .map(|name| {
                let policy = policies.get(&name);
                MemberSpec {
                    caller: Caller {
                        engine: policy.map(|(e, _)| e.clone()),
                        grant_id: format!("local:{label}"),
                        grant_label: label.to_owned(),
                        session_id: session.to_owned(),
                        policy: policy.map(|(_, h)| (name.clone(), h.clone())),
                        request_id: None,
                        principal: None,
                        trace: None,
                    },
                    name,
                }
            })
            .collect()
    }

    /// Opens the aggregated endpoint over `members` (configured server names), its
    /// client-bound lines handed to `to_client`.
    pub async fn aggregate(
        self: &Arc<Self>,
        members: Vec<MemberSpec>,
        to_client: ClientTx,
    ) -> Result<Arc<Aggregate>, String> {
        let mut servers = Vec::new();
        for m in &members {
            servers.push(
                self.rt
                    .server(&m.name)
                    .ok_or_else(|| format!("no server named {:?} is configured", m.name))?,
            );
        }
        let gw = self.clone();
        let connect: Connect = Arc::new(move |i, tx| {
            let gw = gw.clone();
            let srv = servers[i].clone();
            Box::pin(async move { gw.connect_to(&srv, tx).await })
        });
        let events = (!self.events.is_empty()).then(|| self.events.clone());
        Aggregate::open(members, to_client, events, connect).await
    }
}

/// A handshake-era session of the aggregated endpoint: the members' connections behind one
/// [`Aggregate`], and the router of what it sends the client.
pub(super) struct AggSession {
    pub(super) agg: Arc<Aggregate>,
    router: Arc<Routes>,
    /// The grant (or principal) that opened it; later requests must come from it.
    who: String,
}

/// `/mcp` of a gateway with several servers: the aggregated endpoint, handshake era
/// (`initialize` opens a session; its POSTs, GET stream and DELETE as on `/mcp/<server>`).
/// Admission asks every server ([`admit_all`]) on every request, so a revoked grant is
/// refused at once.
pub(super) async fn mcp_all(
    gw: Arc<Gateway>,
    peer: Option<IpAddr>,
    uri: Uri,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let members = match admit_all(&gw, &headers, uri.query()).await {
        Ok(m) => m,
        Err(r) => return *r,
    };
    // The body cap is judged after the door, as on `/mcp/<server>` (413, audited).
    let body = match admitted_body(&gw, "(aggregate)", &members[0].caller, body).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let who = members[0].caller.grant_id.clone();
    let session_id = header(&headers, SESSION_HEADER).map(str::to_owned);
    let session = session_id
        .as_deref()
        .and_then(|id| gw.rt.aggregates.lock_or_recover().get(id).cloned())
        .filter(|s| s.who == who);
    match method {
        Method::GET => match (session_id, session) {
            (None, _) => StatusCode::METHOD_NOT_ALLOWED.into_response(),
            (Some(_), None) => StatusCode::NOT_FOUND.into_response(),
            (Some(_), Some(s)) => match gw.streams.take(peer) {
                Ok(place) => {
                    streams::holding(get_stream(&s.router, &headers).into_response(), place)
                }
                Err(r) => *r,
            },
        },
        Method::DELETE => match (session_id, session) {
            (None, _) => StatusCode::METHOD_NOT_ALLOWED.into_response(),
            (Some(_), None) => StatusCode::NOT_FOUND.into_response(),
            (Some(id), Some(s)) => {
                gw.rt.aggregates.lock_or_recover().remove(&id);
                s.agg.shutdown(Duration::from_secs(2)).await;
                StatusCode::NO_CONTENT.into_response()
            }
        },
        Method::POST => {
            let first = &members[0];
            let caller = &first.caller;
            if let Err(r) = media::check(
                &gw,
                "(aggregate)",
                caller,
                &headers,
                media::Rule::Streamable,
            )
            .await
            {
                return r;
            }
            let text = match body_text(&body) {
                Ok(t) => t,
                Err(r) => return *r,
            };
            let msg = match Message::parse(text) {
                Ok(m) => m,
                Err(e) => return refuse_invalid(&gw, "(aggregate)", caller, &e).await,
            };
            let modern = msg
                .peek("params", &["_meta", META_PROTOCOL_VERSION])
                .is_some();
            if modern {
                return stateless(&gw, members, who, msg, &headers).await;
            }
            match (session_id, session) {
                (Some(_), None) => rpc_status(
                    StatusCode::NOT_FOUND,
                    error_line(
                        msg.id(),
                        codes::INVALID_REQUEST,
                        "Unknown or ended session; initialize again.",
                    ),
                ),
                (Some(_), Some(s)) => post(&gw, &s, msg, text, &headers, None).await,
                (None, _) if msg.kind() == Kind::Request && msg.method() == Some("initialize") => {
                    let router = Arc::new(Routes::default());
                    let r = router.clone();
                    let to_client = ClientTx::new(move |line| {
                        r.route(line);
                        true
                    });
                    let mut members = members;
                    let counter_key = super::shared::counter_key();
                    for m in &mut members {
                        m.caller.session_id = counter_key.clone();
                    }
                    let agg = match gw.aggregate(members, to_client).await {
                        Ok(a) => a,
                        Err(e) => {
                            return rpc_status(
                                StatusCode::BAD_GATEWAY,
                                error_line(msg.id(), codes::INTERNAL_ERROR, &e),
                            )
                        }
                    };
                    let id = random_hex(16);
                    let s = Arc::new(AggSession { agg, router, who });
                    gw.rt
                        .aggregates
                        .lock_or_recover()
                        .insert(id.clone(), s.clone());
                    post(&gw, &s, msg, text, &headers, Some(id)).await
                }
                (None, _) => rpc_status(
                    StatusCode::BAD_REQUEST,
                    error_line(
                        msg.id(),
                        codes::INVALID_REQUEST,
                        "Missing Mcp-Session-Id: send initialize first.",
                    ),
                ),
            }
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// One POST of an aggregated session: notifications and answers are taken (202); a request
/// is answered as JSON, or as a resumable SSE stream when messages precede its answer.
async fn post(
    gw: &Gateway,
    s: &AggSession,
    msg: Message,
    text: &str,
    headers: &HeaderMap,
    new_session: Option<String>,
) -> Response {
    s.agg.refresh(|c| gw.policies.current(c));
    if msg.kind() != Kind::Request {
        s.agg.from_client(text).await;
        return StatusCode::ACCEPTED.into_response();
    }
    let id = msg.id().expect("request").get().to_owned();
    let token = msg
        .value("params")
        .and_then(|p| p.pointer("/_meta/progressToken").map(Value::to_string));
    let rx = s.router.wait_for(&id, token);
    s.agg.from_client(text).await;
    let stream = if accepts_sse(headers) {
        Streaming::Resumable {
            priming: primes(headers),
        }
    } else {
        Streaming::JsonOnly
    };
    let mut resp = answer(gw, &s.router, rx, &id, stream, None, None).await;
    if let Some(sid) = new_session {
        resp.headers_mut()
            .insert(SESSION_HEADER, HeaderValue::from_str(&sid).expect("hex"));
    }
    resp
}

/// A 2026-07-28 request to the aggregated endpoint. Its headers are checked against the body
/// (`-32020`) as on `/mcp/<server>`; `server/discover` is answered here; everything else goes
/// through one aggregated handshake-era session per grant and declared client capabilities
/// (opened on first use with the client's capabilities and info, then shared by its
/// requests), with the per-request `io.modelcontextprotocol/*` keys stripped, the id and
/// progress token made unique on that session, and the stateless result fields added.
async fn stateless(
    gw: &Arc<Gateway>,
    members: Vec<MemberSpec>,
    who: String,
    mut msg: Message,
    headers: &HeaderMap,
) -> Response {
    let params = msg.value("params");
    let meta = params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .cloned()
        .unwrap_or(Value::Null);
    let version = meta
        .get(META_PROTOCOL_VERSION)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Err(r) = version_header(&msg, &version, headers) {
        return *r;
    }
    if version != portcullis_mcp::MODERN {
        let data = json!({"supported": [portcullis_mcp::MODERN], "requested": version});
        let line = json!({"jsonrpc": "2.0", "id": msg.id().map(|i| i.get()).and_then(|i| serde_json::from_str::<Value>(i).ok()),
            "error": {"code": -32022, "message": "Unsupported protocol version", "data": data}});
        return rpc_status(StatusCode::BAD_REQUEST, line.to_string());
    }
    let checked = request_headers(&msg, headers).and_then(|()| removed_method(&msg, &version));
    if let Err(r) = checked {
        return *r;
    }
    let method = msg.method().unwrap_or_default().to_owned();
    let (caps, info) = bridged_client(&meta);
    let key = format!(
        "bridge|{who}|{}|{}",
        members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        portcullis_policy::json::canonical(&caps)
    );
    let existing = gw.rt.aggregates.lock_or_recover().get(&key).cloned();
    let s = match existing {
        Some(s) => s,
        None => match open_bridge(gw, members, who, &caps, &info).await {
            Ok(s) => {
                gw.rt.aggregates.lock_or_recover().insert(key, s.clone());
                s
            }
            Err(e) => {
                return rpc_status(
                    StatusCode::BAD_GATEWAY,
                    error_line(msg.id(), codes::INTERNAL_ERROR, &e),
                )
            }
        },
    };
    s.agg.refresh(|c| gw.policies.current(c));
    if msg.kind() == Kind::Request && method == "server/discover" {
        // As `/mcp/<server>` answers for a handshake-era upstream: the members are handshake
        // sessions, so a dual-era client falls back to `initialize` and keeps every feature
        // (server→client requests included, which this bridge cannot turn into input-required
        // results). Clients pinned to 2026-07-28 that skip discovery are bridged.
        return rpc_status(
            StatusCode::NOT_FOUND,
            error_line(
                msg.id(),
                codes::METHOD_NOT_FOUND,
                "server/discover: the aggregated endpoint is served in the handshake era; initialize instead (2026-07-28 requests are bridged)",
            ),
        );
    }
    // The session has the handshake: strip the per-request keys.
    let mut params = params;
    let mut token = None;
    let ours = format!(
        "\"a{}\"",
        gw.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    if let Some(p) = params.as_mut() {
        if let Some(m) = p.get_mut("_meta").and_then(Value::as_object_mut) {
            m.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
            if let Some(t) = m.get("progressToken").cloned() {
                token = Some(t);
                m.insert(
                    "progressToken".into(),
                    serde_json::from_str(&ours).expect("json"),
                );
            }
            if m.is_empty() {
                p.as_object_mut().expect("object").remove("_meta");
            }
        }
        msg.set_value("params", p);
    }
    if msg.kind() != Kind::Request {
        s.agg.from_client(&msg.to_json()).await;
        return StatusCode::ACCEPTED.into_response();
    }
    let original = msg.id().expect("request").to_owned();
    msg.set_id(&serde_json::value::RawValue::from_string(ours.clone()).expect("json"));
    let rx = s
        .router
        .wait_for(&ours, token.as_ref().map(|_| ours.clone()));
    s.agg.from_client(&msg.to_json()).await;
    let restore = Restore::new(original, token, Some(method));
    let stream = if accepts_sse(headers) {
        Streaming::Sse
    } else {
        Streaming::JsonOnly
    };
    answer(gw, &s.router, rx, &ours, stream, Some(restore), None).await
}

/// Opens the aggregated handshake-era session stateless clients of one grant and capability
/// set share: `initialize` with their capabilities and info, then `initialized`.
async fn open_bridge(
    gw: &Arc<Gateway>,
    members: Vec<MemberSpec>,
    who: String,
    caps: &Value,
    info: &Value,
) -> Result<Arc<AggSession>, String> {
    let router = Arc::new(Routes::default());
    let r = router.clone();
    // Stateless clients get notifications only about their own requests (progress, which
    // the router matches by token); change notifications need a listen stream, which this
    // endpoint does not offer.
    let to_client = ClientTx::new(move |t: ToClient| {
        let unsolicited = t.line.with_message(|m| {
            m.kind() == Kind::Notification && m.method() != Some("notifications/progress")
        }) == Some(true);
        if !unsolicited {
            r.route(t);
        }
        true
    });
    let agg = gw.aggregate(members, to_client).await?;
    let id = "\"portcullis-aggregate-init\"";
    let mut rx = router.wait_for(id, None);
    let init = json!({"jsonrpc": "2.0", "id": "portcullis-aggregate-init", "method": "initialize",
        "params": {"protocolVersion": portcullis_mcp::LEGACY_LATEST, "capabilities": caps, "clientInfo": info}});
    agg.from_client(&init.to_string()).await;
    let answer = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .ok()
        .flatten();
    router.forget(id);
    answer
        .and_then(|r| r.msg.value("result"))
        .ok_or_else(|| "the aggregated session did not complete its handshake".to_string())?;
    agg.from_client(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .await;
    Ok(Arc::new(AggSession { agg, router, who }))
}
