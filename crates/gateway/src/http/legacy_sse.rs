//! The legacy HTTP+SSE face (2024-11-05): `GET /sse/<server>` opens a session and its
//! stream, `POST /sse/<server>/messages` carries the client's messages.

use super::auth::admit;
use super::media::{check, Rule};
use super::routes::GetSink;
use super::session::Session;
use super::streams::holding;
use super::{client_ip, json_status, random_hex, refuse_invalid, Gateway, Peer};
use crate::resume::SseItem;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use portcullis_mcp::Message;
use portcullis_policy::sync::LockExt;
use serde_json::json;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::unbounded_channel;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

/// Ends a legacy SSE session when its stream is dropped (the client went away).
struct SseSessionGuard {
    gw: Arc<Gateway>,
    id: String,
}

impl Drop for SseSessionGuard {
    fn drop(&mut self) {
        let s = self.gw.rt.end(&self.id);
        if let Some(s) = s {
            tokio::spawn(async move { s.conn.link.shutdown(Duration::from_secs(2)).await });
        }
    }
}

/// `GET /sse/<server>`: legacy HTTP+SSE (2024-11-05). Opens a session and its upstream; the
/// first event names the URI to POST messages to; every message for the client follows on
/// this stream.
pub(super) async fn sse_open(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    peer: Option<Peer>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let (srv, caller) = match admit(&gw, &server, &headers, uri.query()).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let place = match gw.streams.take(client_ip(peer)) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let conn = match gw.connect(&srv).await {
        Ok(c) => c,
        Err(e) => {
            return json_status(
                StatusCode::BAD_GATEWAY,
                json!({"error": "upstream_unavailable", "message": format!("cannot start the upstream server: {e}")}),
            )
        }
    };
    let id = random_hex(16);
    let (tx, rx) = unbounded_channel();
    *conn.router.get.lock_or_recover() = Some(GetSink::Plain(tx));
    conn.router.stream_all.store(true, Ordering::Relaxed);
    gw.rt.open(
        id.clone(),
        Arc::new(Session {
            server: srv,
            caller,
            conn,
            bridged: None,
            shared: false,
            legacy: true,
        }),
    );
    let guard = Arc::new(SseSessionGuard {
        gw: gw.clone(),
        id: id.clone(),
    });
    let endpoint = format!("/sse/{server}/messages?session_id={id}");
    let first = tokio_stream::once(Ok::<_, Infallible>(
        Event::default().event("endpoint").data(endpoint),
    ));
    let rest = UnboundedReceiverStream::new(rx).map(move |(_, line): SseItem| {
        let _alive = &guard;
        Ok(Event::default().event("message").data(line))
    });
    holding(
        Sse::new(first.chain(rest))
            .keep_alive(KeepAlive::default())
            .into_response(),
        place,
    )
}

#[derive(serde::Deserialize)]
pub(super) struct SessionQuery {
    session_id: String,
}

/// `POST /sse/<server>/messages?session_id=…`: one client message of a legacy SSE session;
/// 202, and the answer arrives on the session's stream.
pub(super) async fn sse_message(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    axum::extract::Query(q): axum::extract::Query<SessionQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let (srv, caller) = match admit(&gw, &server, &headers, uri.query()).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let body = match super::admitted_body(&gw, &srv.name, &caller, body).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Err(r) = check(&gw, &srv.name, &caller, &headers, Rule::ContentTypeOnly).await {
        return r;
    }
    let session = gw.rt.session(&q.session_id);
    let Some(s) =
        session.filter(|s| s.server.name == srv.name && s.caller.grant_id == caller.grant_id)
    else {
        return json_status(
            StatusCode::NOT_FOUND,
            json!({"error": "unknown_session", "message": "Unknown or ended session; open /sse/<server> again."}),
        );
    };
    let text = match super::body_text(&body) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if let Err(e) = Message::parse(text) {
        return refuse_invalid(&gw, &srv.name, &caller, &e).await;
    }
    s.conn
        .link
        .from_client(text, &gw.policies.current(&s.caller))
        .await;
    StatusCode::ACCEPTED.into_response()
}
