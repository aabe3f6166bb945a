//! The gateway's side of the aggregated endpoint ([`crate::aggregate`]): its members are the
//! configured servers a caller may reach, each connected through [`Gateway::connect_to`]
//! (the same relay, policy, counters and pins as `/mcp/<server>`).

use super::auth::admit_all;
use super::routes::{answer, get_stream, primes, Routes, Streaming};
use super::{
    accepts_sse, body_text, header, media, random_hex, refuse_invalid, rpc_status, streams,
    Gateway, SESSION_HEADER,
};
use crate::aggregate::{Aggregate, Connect, MemberSpec};
use crate::connection::ClientTx;
use crate::relay::Caller;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use portcullis_mcp::{codes, error_line, Kind, Message, META_PROTOCOL_VERSION};
use portcullis_policy::sync::LockExt;
use serde_json::Value;
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
    body: Bytes,
) -> Response {
    let members = match admit_all(&gw, &headers, uri.query()).await {
        Ok(m) => m,
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
                .value("params")
                .and_then(|p| p.pointer("/_meta").cloned())
                .is_some_and(|m| m.get(META_PROTOCOL_VERSION).is_some());
            if modern {
                return rpc_status(
                    StatusCode::BAD_REQUEST,
                    error_line(
                        msg.id(),
                        codes::INVALID_REQUEST,
                        "the aggregated endpoint /mcp speaks the handshake era (initialize, Mcp-Session-Id); 2026-07-28 clients use /mcp/<server>",
                    ),
                );
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
