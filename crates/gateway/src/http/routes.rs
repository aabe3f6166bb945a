//! Client-bound routing: [`Routes`] sends each upstream line to the request it answers (else
//! the GET stream, else a backlog), and a request's answer is built as JSON or as an SSE
//! stream ([`answer`]); a handshake-era session's GET stream ([`get_stream`]).

use super::stateless::{CancelGuard, Restore};
use super::{header, rpc_status, Gateway};
use crate::connection::ToClient;
use crate::resume::{EventLog, Resumed, SseItem};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use portcullis_mcp::{codes, error_line, Kind, Message};
use portcullis_policy::sync::LockExt;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

/// Routes client-bound lines of one connection: answers and progress to the request's
/// stream; anything else to the single request in flight, else the GET stream, else a
/// bounded backlog the next GET receives. Locks nest only in the order `get`, `events`,
/// `backlog`.
#[derive(Default)]
pub(super) struct Routes {
    waiters: Mutex<HashMap<String, UnboundedSender<Routed>>>,
    tokens: Mutex<HashMap<String, String>>,
    pub(super) get: Mutex<Option<GetSink>>,
    backlog: Mutex<VecDeque<String>>,
    pub(super) stream_all: std::sync::atomic::AtomicBool,
    /// The numbered, resumable streams of a handshake-era session.
    events: Mutex<EventLog>,
}

/// A message routed to a waiting request: the message, parsed at most once (here, when it
/// came as text) for everything after (the answer's status, the client's id put back), and
/// its text when it came as text.
#[derive(Debug)]
pub(super) struct Routed {
    pub(super) line: Option<String>,
    pub(super) msg: Message,
}

impl Routed {
    pub(super) fn is_response(&self) -> bool {
        self.msg.kind() == Kind::Response
    }

    /// The line as it goes out.
    pub(super) fn into_text(self) -> String {
        self.line.unwrap_or_else(|| self.msg.to_json())
    }
}

/// Where the connection's unsolicited messages go.
pub(super) enum GetSink {
    /// A stream without ids (legacy HTTP+SSE).
    Plain(UnboundedSender<SseItem>),
    /// Resumable GET stream `n` of the event log (kept there even when the client is gone).
    Logged(u64),
}

/// Reconnection delay announced in priming events.
const SSE_RETRY: Duration = Duration::from_secs(1);

impl Routes {
    pub(super) fn route(&self, out: ToClient) {
        let ToClient {
            line,
            stream_of: related,
        } = out;
        let Ok((msg, line)) = line.into_message() else {
            return;
        };
        let target = match msg.kind() {
            Kind::Response => msg
                .id()
                .and_then(|id| self.waiters.lock_or_recover().remove(id.get())),
            Kind::Notification if subscription_of(&msg).is_some() => {
                let id = subscription_of(&msg).expect("checked");
                self.waiters.lock_or_recover().get(&id).cloned()
            }
            Kind::Notification if msg.method() == Some("notifications/progress") => {
                let token = msg
                    .value("params")
                    .and_then(|p| p.get("progressToken").map(Value::to_string));
                let id = token.and_then(|t| self.tokens.lock_or_recover().get(&t).cloned());
                id.and_then(|id| self.waiters.lock_or_recover().get(&id).cloned())
            }
            // Carried on one request's answer stream: that request's, or nobody's (its
            // client has gone; on a connection shared by many clients, no other may see it).
            // A legacy SSE session has no waiters: all of its messages go on its one stream.
            _ if related.is_some() && !self.stream_all.load(Ordering::Relaxed) => {
                let w = self.waiters.lock_or_recover();
                match related.as_deref().and_then(|id| w.get(id)) {
                    Some(tx) => Some(tx.clone()),
                    None => return,
                }
            }
            _ => {
                let w = self.waiters.lock_or_recover();
                if w.len() == 1 {
                    w.values().next().cloned()
                } else {
                    None
                }
            }
        };
        let is_response = msg.kind() == Kind::Response;
        let routed = Routed { line, msg };
        let line = match target {
            Some(tx) => match tx.send(routed) {
                Ok(()) => return,
                Err(back) => back.0.into_text(),
            },
            None => routed.into_text(),
        };
        if is_response && !self.stream_all.load(Ordering::Relaxed) {
            // An answer nobody waits for (cancelled, timed out): drop it. (A legacy SSE
            // session has no waiters: everything, answers included, goes on its stream.)
            return;
        }
        let mut get = self.get.lock_or_recover();
        match get.as_ref() {
            Some(GetSink::Plain(tx)) => {
                if tx.send((None, line.clone())).is_ok() {
                    return;
                }
                *get = None;
            }
            Some(GetSink::Logged(no)) => {
                // Kept in the log either way: a resuming GET replays it, a fresh one takes
                // what was not delivered.
                self.events.lock_or_recover().send(*no, line);
                return;
            }
            None => {}
        }
        let mut b = self.backlog.lock_or_recover();
        if b.len() >= 1000 {
            b.pop_front();
        }
        b.push_back(line);
    }

    pub(super) fn wait_for(&self, id: &str, token: Option<String>) -> UnboundedReceiver<Routed> {
        let (tx, rx) = unbounded_channel();
        self.waiters.lock_or_recover().insert(id.to_owned(), tx);
        if let Some(t) = token {
            self.tokens.lock_or_recover().insert(t, id.to_owned());
        }
        rx
    }

    pub(super) fn forget(&self, id: &str) {
        self.waiters.lock_or_recover().remove(id);
        self.tokens.lock_or_recover().retain(|_, v| v != id);
    }
}

pub(super) fn subscription_of(msg: &Message) -> Option<String> {
    msg.value("params")?
        .pointer("/_meta/io.modelcontextprotocol~1subscriptionId")
        .map(Value::to_string)
}

/// `GET` on a handshake-era session: with a `Last-Event-ID` the log knows, the stream it names
/// resumed (what followed that event, then the rest live); otherwise a new GET stream that
/// carries the session's unsolicited messages, starting with those nobody received yet.
pub(super) fn get_stream(
    router: &Routes,
    headers: &HeaderMap,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = unbounded_channel();
    // Lock order everywhere: get, then events, then backlog.
    let mut get = router.get.lock_or_recover();
    let mut log = router.events.lock_or_recover();
    match header(headers, "last-event-id").and_then(|last| log.resume(last, &tx)) {
        Some(Resumed::Request) => {}
        Some(Resumed::Get(no)) => *get = Some(GetSink::Logged(no)),
        None => {
            let no = log.open(tx, true);
            if primes(headers) {
                log.prime(no);
            }
            let mut pending = match get.take() {
                Some(GetSink::Logged(old)) => log.undelivered(old),
                _ => Vec::new(),
            };
            pending.extend(router.backlog.lock_or_recover().drain(..));
            for line in pending {
                log.send(no, line);
            }
            *get = Some(GetSink::Logged(no));
        }
    }
    sse(rx)
}

/// Whether a handshake-era client gets priming events (2025-11-25 on; older clients may not
/// expect an event without data).
pub(super) fn primes(headers: &HeaderMap) -> bool {
    header(headers, "mcp-protocol-version").is_some_and(|v| v >= "2025-11-25")
}

fn sse(
    rx: UnboundedReceiver<SseItem>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    Sse::new(UnboundedReceiverStream::new(rx).map(|(id, line)| {
        Ok(match id {
            Some(id) if line.is_empty() => Event::default().id(id).retry(SSE_RETRY).data(""),
            Some(id) => Event::default().id(id).event("message").data(line),
            None => Event::default().event("message").data(line),
        })
    }))
    .keep_alive(KeepAlive::default())
}

/// HTTP status for a modern JSON-RPC error answer (spec §4.3); 200 otherwise.
fn modern_status(m: &Message) -> StatusCode {
    let code = m
        .value("error")
        .and_then(|e| e.get("code").and_then(Value::as_i64));
    match code {
        Some(-32601) => StatusCode::NOT_FOUND,
        Some(-32602) | Some(-32020) | Some(-32021) | Some(-32022) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// How a request may be answered when messages precede its response.
#[derive(Clone, Copy)]
pub(super) enum Streaming {
    /// The client accepts JSON only: related messages are dropped.
    JsonOnly,
    /// An SSE stream without ids (stateless era: no resumability).
    Sse,
    /// A resumable SSE stream of a handshake-era session (ids; a priming event first for
    /// 2025-11-25 clients); a client that goes away can resume it, so it runs to the answer.
    Resumable { priming: bool },
}

pub(super) async fn answer(
    gw: &Gateway,
    router: &Arc<Routes>,
    mut rx: UnboundedReceiver<Routed>,
    id: &str,
    stream: Streaming,
    restore: Option<Restore>,
    mut cancel: Option<CancelGuard>,
) -> Response {
    let restore = Arc::new(restore);
    let fix = {
        let restore = restore.clone();
        move |r: Routed| match &*restore {
            Some(restore) => restore.apply(r),
            None => r.into_text(),
        }
    };
    let first = match tokio::time::timeout(gw.timeout, rx.recv()).await {
        Ok(Some(l)) => l,
        Ok(None) | Err(_) => {
            router.forget(id);
            let raw_id = restore
                .as_ref()
                .as_ref()
                .map(|r| r.id.get().to_owned())
                .unwrap_or_else(|| id.to_owned());
            let raw = serde_json::value::RawValue::from_string(raw_id).expect("json");
            return rpc_status(
                StatusCode::GATEWAY_TIMEOUT,
                error_line(
                    Some(&raw),
                    codes::INTERNAL_ERROR,
                    &format!(
                        "The upstream server did not answer within {}s.",
                        gw.timeout.as_secs()
                    ),
                ),
            );
        }
    };
    if first.is_response() {
        let status = if restore.is_some() {
            modern_status(&first.msg)
        } else {
            StatusCode::OK
        };
        drop(restore);
        if let Some(g) = cancel.as_mut() {
            g.armed = false;
        }
        return rpc_status(status, fix(first));
    }
    if matches!(stream, Streaming::JsonOnly) {
        // The client takes JSON only: drop the related messages, wait for the answer.
        loop {
            match tokio::time::timeout(gw.timeout, rx.recv()).await {
                Ok(Some(l)) if l.is_response() => {
                    if let Some(g) = cancel.as_mut() {
                        g.armed = false;
                    }
                    return rpc_status(StatusCode::OK, fix(l));
                }
                Ok(Some(_)) => continue,
                _ => {
                    router.forget(id);
                    return rpc_status(
                        StatusCode::GATEWAY_TIMEOUT,
                        error_line(
                            None,
                            codes::INTERNAL_ERROR,
                            "The upstream server did not answer in time.",
                        ),
                    );
                }
            }
        }
    }
    let (tx, out) = unbounded_channel();
    let router = router.clone();
    // Resumable: the stream is numbered in the session's log, which holds its live end.
    let logged = match stream {
        Streaming::Resumable { priming } => {
            let mut log = router.events.lock_or_recover();
            let no = log.open(tx.clone(), false);
            if priming {
                log.prime(no);
            }
            Some(no)
        }
        _ => None,
    };
    let send = move |router: &Routes, l: String| match logged {
        Some(no) => router.events.lock_or_recover().send(no, l),
        None => tx.send((None, l)).is_ok(),
    };
    send(&router, fix(first));
    let id = id.to_owned();
    let timeout = gw.timeout;
    tokio::spawn(async move {
        while let Ok(Some(l)) = tokio::time::timeout(timeout, rx.recv()).await {
            let done = l.is_response();
            let delivered = send(&router, fix(l));
            if done && delivered {
                if let Some(g) = cancel.as_mut() {
                    g.armed = false;
                }
            }
            // A resumable stream keeps going without its client: a resumption gets the rest.
            if (!delivered && logged.is_none()) || done {
                break;
            }
        }
        if let Some(no) = logged {
            router.events.lock_or_recover().finish(no);
        }
        drop(cancel);
        router.forget(&id);
    });
    sse(out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(client_id: &str, line: &str) -> ToClient {
        ToClient {
            line: line.to_owned().into(),
            stream_of: Some(client_id.to_owned()),
        }
    }

    /// A message from one request's answer stream reaches that request and no other, also
    /// when another is the only one in flight (the old single-request guess would have
    /// handed it over).
    #[test]
    fn a_related_message_goes_to_its_own_request_only() {
        let routes = Routes::default();
        let mut a = routes.wait_for("\"h1\"", None);
        let mut b = routes.wait_for("\"h2\"", None);
        let note = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"for h1"}}"#;
        routes.route(tagged("\"h1\"", note));
        assert_eq!(
            a.try_recv().unwrap().into_text(),
            note,
            "untagged on the way out"
        );
        assert!(b.try_recv().is_err());
        routes.forget("\"h1\"");
        routes.route(tagged("\"h1\"", note));
        assert!(
            b.try_recv().is_err(),
            "h1 has gone: h2, alone now, still gets nothing"
        );
        assert!(routes.backlog.lock_or_recover().is_empty());
        // Untagged (a stdio upstream): the single request in flight, as before.
        routes.route(note.to_string().into());
        assert_eq!(b.try_recv().unwrap().into_text(), note);
    }

    /// A legacy HTTP+SSE session has one stream and no waiters: tagged messages go there.
    #[test]
    fn a_legacy_sse_session_gets_its_related_messages_on_its_stream() {
        let routes = Routes::default();
        let (tx, mut rx) = unbounded_channel();
        *routes.get.lock_or_recover() = Some(GetSink::Plain(tx));
        routes.stream_all.store(true, Ordering::Relaxed);
        let ask = r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}"#;
        routes.route(tagged("\"c1\"", ask));
        assert_eq!(rx.try_recv().unwrap(), (None, ask.to_string()));
    }
}
