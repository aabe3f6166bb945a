//! One owner per upstream connection: it holds the [`Relay`] (the MCP semantics), the
//! [`Transport`] (the lines) and the [`Events`] (audit, metrics), and is the only place where
//! the three meet. A client line goes in through [`Connection::from_client`]; what the server
//! sends comes back through [`Receiver::receive`]; both run the relay and then `deliver`
//! its outputs in order. A client request is logged inside a span naming its request id and
//! trace id.

use crate::events::Events;
use crate::otlp::now_ns;
use crate::relay::{Caller, Hold, Line, Out, Relay};
use crate::spans::{RequestSpan, Step, Tracer};
use crate::traces::hex;
use crate::upstream::{self, BoxFuture, Inbound, Inbox, Receiver, Transport, UpstreamSpec};
use portcullis_mcp::{codes, error_line, Message};
use portcullis_policy::sync::LockExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tracing::Instrument;

/// What a face hands to [`Connection::from_client`]: a line as it was read, or a message the
/// face has parsed already (so that the hot path parses it once).
pub enum FromClient<'a> {
    /// A line, parsed here (one that is not a message is answered and audited).
    Line(&'a str),
    /// A message.
    Parsed(Message),
}

impl<'a> From<&'a str> for FromClient<'a> {
    fn from(line: &'a str) -> Self {
        FromClient::Line(line)
    }
}

impl<'a> From<&'a String> for FromClient<'a> {
    fn from(line: &'a String) -> Self {
        FromClient::Line(line)
    }
}

impl From<Message> for FromClient<'_> {
    fn from(msg: Message) -> Self {
        FromClient::Parsed(msg)
    }
}

/// A line for the client side of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToClient {
    /// The message (as text, or parsed when the relay produced it from a message).
    pub line: Line,
    /// For a message that arrived on a request's answer stream ahead of its answer: that
    /// request's client id (raw JSON), so that a face serving many clients over one
    /// connection routes it to that request and no other.
    pub stream_of: Option<String>,
}

impl From<String> for ToClient {
    fn from(line: String) -> ToClient {
        ToClient {
            line: line.into(),
            stream_of: None,
        }
    }
}

/// Where a connection sends client-bound lines: a channel to a writer (the stdio face), or
/// straight into the face's router (HTTP: no task hop between the answer and its request).
#[derive(Clone)]
pub struct ClientTx(Arc<dyn Fn(ToClient) -> bool + Send + Sync>);

impl ClientTx {
    /// Lines handed to `f` (which says whether anyone took it).
    pub fn new(f: impl Fn(ToClient) -> bool + Send + Sync + 'static) -> ClientTx {
        ClientTx(Arc::new(f))
    }

    /// Lines sent on a channel.
    pub fn channel(tx: UnboundedSender<ToClient>) -> ClientTx {
        ClientTx::new(move |t| tx.send(t).is_ok())
    }

    /// Hands one line over; false when nobody takes it any more.
    pub fn send(&self, t: ToClient) -> bool {
        (self.0)(t)
    }
}

/// A live connection to one upstream server, serving one stdio client, one HTTP session, or
/// (stateless era) many clients of a server.
pub struct Connection {
    /// Itself, weakly: the transport's inbox and the tasks a connection spawns hold it so.
    me: Weak<Connection>,
    relay: Arc<Relay>,
    transport: OnceLock<Arc<dyn Transport>>,
    to_client: ClientTx,
    events: Option<Events>,
    /// Mark lines from a request's answer stream with its client id ([`ToClient::stream_of`]).
    tag_related: AtomicBool,
    /// Traces on: the spans of the requests now upstream, by upstream id.
    flights: Mutex<HashMap<u64, RequestSpan>>,
}

impl Connection {
    /// Connects to `spec`: client-bound lines go to `to_client`, events to `events`.
    pub async fn start(
        spec: &UpstreamSpec,
        relay: Arc<Relay>,
        to_client: ClientTx,
        events: Option<Events>,
    ) -> std::io::Result<Arc<Connection>> {
        let conn = Arc::new_cyclic(|me| Connection {
            me: me.clone(),
            relay,
            transport: OnceLock::new(),
            to_client,
            events,
            tag_related: AtomicBool::new(false),
            flights: Mutex::new(HashMap::new()),
        });
        let owner: Weak<dyn Receiver> = conn.me.clone();
        let transport = spec.connect(Inbox::new(owner)).await?;
        let _ = conn.transport.set(transport);
        // The server answered (a child started, an SSE stream opened): it is up again, even
        // after another connection of it was lost for good.
        if let (Some(e), Some(rec)) = (&conn.events, conn.relay.connected()) {
            e.note(rec);
        }
        Ok(conn)
    }

    /// The tracer, when traces are on.
    fn tracer(&self) -> Option<&Arc<Tracer>> {
        self.events.as_ref().and_then(Events::tracer)
    }

    /// The span of the request a server line answers (taken out of the flights), when traces
    /// are on and it is the answer to a traced request.
    fn answered(&self, m: &Message) -> Option<RequestSpan> {
        self.tracer()?;
        let mut flights = self.flights.lock_or_recover();
        if flights.is_empty() {
            return None;
        }
        if m.method().is_some() {
            return None;
        }
        let up: u64 = m.id()?.get().parse().ok()?;
        let mut span = flights.remove(&up)?;
        span.upstream_ends(None);
        Some(span)
    }

    fn transport(&self) -> &Arc<dyn Transport> {
        self.transport.get().expect("set in start")
    }

    /// From now on, messages that arrive on a request's answer stream reach the client side
    /// marked with that request's client id ([`ToClient::stream_of`]): for a face that serves many
    /// clients over this one connection and must route each message to its own request.
    pub fn tag_related(&self) {
        self.tag_related.store(true, Ordering::Relaxed);
    }

    /// The relay of this connection.
    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    /// The Streamable HTTP transport, when that is what this connection runs on.
    pub fn http(&self) -> Option<&upstream::http::HttpTransport> {
        self.transport().as_http()
    }

    /// Passes a client line through the relay to the server.
    pub async fn from_client(self: &Arc<Self>, line: impl Into<FromClient<'_>>, caller: &Caller) {
        self.from_client_with(line, caller, Vec::new()).await;
    }

    /// Like [`Connection::from_client`], with extra HTTP headers for a Streamable HTTP
    /// upstream (`Mcp-Param-*` from a modern client); other transports ignore them.
    pub async fn from_client_with(
        self: &Arc<Self>,
        line: impl Into<FromClient<'_>>,
        caller: &Caller,
        extra: Vec<(String, String)>,
    ) {
        self.from_client_how(line.into(), caller, extra, Sending::Queued)
            .await;
    }

    /// Like [`Connection::from_client_with`], but a request the server answers with one JSON
    /// body is answered when this returns, all on the caller's task
    /// ([`Transport::send_answered`]): the stateless face, which then finds the answer
    /// waiting without a wake-up.
    pub async fn from_client_answered(
        self: &Arc<Self>,
        line: impl Into<FromClient<'_>>,
        caller: &Caller,
        extra: Vec<(String, String)>,
    ) {
        self.from_client_how(line.into(), caller, extra, Sending::Answered)
            .await;
    }

    async fn from_client_how(
        self: &Arc<Self>,
        input: FromClient<'_>,
        caller: &Caller,
        extra: Vec<(String, String)>,
        how: Sending,
    ) {
        let msg = match input {
            FromClient::Parsed(m) => m,
            FromClient::Line(line) => match Message::parse(line) {
                Ok(m) => m,
                Err(e) => {
                    let outs = self.relay.invalid_from_client(&e, caller);
                    self.dispatch(outs, extra, None, None, how).await;
                    return;
                }
            },
        };
        if let Some(tool) = self.relay.needs_listing(&msg) {
            self.fetch_listing(&tool, &msg).await;
        }
        let mut span = self
            .tracer()
            .and_then(|t| t.request(&msg, caller.trace.as_ref()));
        let log = log_span(&msg, caller, span.as_ref());
        let t0 = if span.is_some() { now_ns() } else { 0 };
        let outs = self
            .relay
            .from_client_message_deferred(msg, caller)
            .instrument(log.clone())
            .await;
        if let Some(s) = &mut span {
            s.step(Step::Decide, t0);
        }
        self.dispatch(outs, extra, None, span, how)
            .instrument(log)
            .await;
    }

    /// Lists the server's tools (page by page, until `tool` is seen) so that a call to it can
    /// be checked against its schema (`validate_arguments = "enforce"`); bounded: a server
    /// that does not answer leaves the schema unknown, and the call is then refused.
    async fn fetch_listing(&self, tool: &str, like: &Message) {
        let mut cursor: Option<String> = None;
        for _ in 0..LISTING_PAGES {
            let (req, up, rx) = self.relay.listing_request(cursor.as_deref(), like);
            if self
                .transport()
                .send(req, Some(up), Vec::new())
                .await
                .is_err()
            {
                let _ = self.relay.undeliverable(up, "listing");
                return;
            }
            match tokio::time::timeout(LISTING_WAIT, rx).await {
                Ok(Ok(Some(next))) if !self.relay.knows_tool(tool) => cursor = Some(next),
                Ok(_) => return,
                Err(_) => {
                    let _ = self.relay.undeliverable(up, "listing timed out");
                    return;
                }
            }
        }
    }

    /// Delivers relay outputs, then sends what goes upstream; a request that cannot be sent
    /// is answered (and its quota refunded) through the relay.
    /// `stream_of` marks the client lines among `outs` ([`ToClient::stream_of`]). `span`: the
    /// span of the request these outputs are about (traces on). `how`: how requests go.
    fn dispatch(
        self: &Arc<Self>,
        outs: Vec<Out>,
        extra: Vec<(String, String)>,
        mut stream_of: Option<String>,
        mut span: Option<RequestSpan>,
        how: Sending,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut queue = outs;
            while !queue.is_empty() {
                let mut next = Vec::new();
                let to = self.events.as_ref();
                let (send, unrecorded) = deliver(
                    to,
                    &self.to_client,
                    queue,
                    self,
                    stream_of.take(),
                    &mut span,
                )
                .await;
                for up in unrecorded {
                    next.extend(self.relay.undeliverable(up, UNRECORDED));
                }
                for (line, up, context) in send {
                    let mut headers = extra.clone();
                    if let Some((tp, ts)) = context {
                        headers.push(("traceparent".to_owned(), tp));
                        if let Some(ts) = ts {
                            headers.push(("tracestate".to_owned(), ts));
                        }
                    }
                    let sent = match how {
                        Sending::Answered => self.transport().send_answered(line, up, headers),
                        Sending::Queued => self.transport().send(line, up, headers),
                    };
                    if let Err(e) = sent.await {
                        if let Some(up) = up {
                            let why = e.to_string();
                            if let Some(mut s) = self.flights.lock_or_recover().remove(&up) {
                                s.upstream_ends(Some(&why));
                                span = Some(s);
                            }
                            next.extend(self.relay.undeliverable(up, &why));
                        }
                    }
                }
                queue = next;
            }
            // A request that ended without its own record (held for an approval).
            if let (Some(s), Some(t)) = (span, self.tracer()) {
                s.finish(t, None, None);
            }
        })
    }

    /// Stops the upstream.
    pub async fn shutdown(&self, grace: Duration) {
        self.transport().shutdown(grace).await;
    }
}

/// How a client line goes to the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sending {
    /// [`Transport::send`]: returns once the line is on its way.
    Queued,
    /// [`Transport::send_answered`]: a JSON answer is handled before it returns.
    Answered,
}

/// The log span of a client line: the request's id (the client's own, raw JSON, as the audit
/// record has it) and its trace id (the request span's, else the caller's `traceparent`), so
/// that every line logged while it is decided and delivered names them (JSON logs:
/// `span.request_id`, `span.trace_id`). Nothing is computed when INFO is not logged.
fn log_span(msg: &Message, caller: &Caller, span: Option<&RequestSpan>) -> tracing::Span {
    let log = tracing::info_span!(
        "request",
        request_id = tracing::field::Empty,
        trace_id = tracing::field::Empty
    );
    if log.is_disabled() {
        return log;
    }
    let id = caller
        .request_id
        .clone()
        .or_else(|| Some(msg.id()?.get().to_owned()));
    if let Some(id) = id {
        log.record("request_id", id.as_str());
    }
    let trace = span.map(|s| s.context().trace_id).or_else(|| {
        crate::spans::meta_traceparent(msg)
            .or_else(|| caller.trace.clone())
            .map(|p| p.context.trace_id)
    });
    if let Some(t) = trace {
        log.record("trace_id", hex(&t).as_str());
    }
    log
}

/// Why a call whose write-ahead record could not be written was not forwarded.
const UNRECORDED: &str =
    "the gateway could not write its audit record, so the call was not forwarded";

/// Most `tools/list` pages fetched to learn one tool's schema.
const LISTING_PAGES: usize = 32;

/// How long one page of that listing is waited for.
const LISTING_WAIT: Duration = Duration::from_secs(10);

impl Receiver for Connection {
    fn receive(&self, inbound: Inbound) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // The transport holds its owner weakly; an Arc is needed to dispatch (holds).
            let Some(me) = self.me.upgrade() else { return };
            let mut tag = None;
            let mut span = None;
            let outs = match inbound {
                Inbound::Message { msg, stream_of } => {
                    tag = stream_of
                        .filter(|_| self.tag_related.load(Ordering::Relaxed))
                        .and_then(|up| self.relay.client_id_of(up));
                    span = self.answered(&msg);
                    self.relay.from_server_message(msg)
                }
                Inbound::Failed { up, why, .. } => {
                    if self.tracer().is_some() {
                        span = self.flights.lock_or_recover().remove(&up);
                        if let Some(s) = &mut span {
                            s.upstream_ends(Some(&why));
                        }
                    }
                    self.relay.undeliverable(up, &why)
                }
                Inbound::Lost(why) => {
                    if let Some(t) = self.tracer() {
                        let lost: Vec<RequestSpan> = self
                            .flights
                            .lock_or_recover()
                            .drain()
                            .map(|(_, s)| s)
                            .collect();
                        for s in lost {
                            s.finish(t, None, Some(&why));
                        }
                    }
                    self.relay.upstream_lost(&why)
                }
                Inbound::Restarted => self.relay.replay_after_restart(),
                Inbound::Reconnected { resumed } => {
                    if let (Some(e), Some(rec)) = (&self.events, self.relay.reconnected(resumed)) {
                        e.note(rec);
                    }
                    return;
                }
            };
            me.dispatch(outs, Vec::new(), tag, span, Sending::Queued)
                .await;
        })
    }

    fn awaits(&self, up: u64) -> bool {
        self.relay.awaits(up)
    }
}

/// Delivers relay outputs in order: each event is emitted (durably, in durable mode) before
/// any client line after it goes out; if that fails, the client gets an error in place of
/// the answer (fail closed). A call's write-ahead record is made durable before its line
/// goes upstream; a call whose record cannot be written is not sent. Returns the lines for
/// the upstream (with the `traceparent` and `tracestate` headers of a traced request) and
/// the upstream ids of the calls held back so; held calls are handed to [`hold`].
///
/// Traces on (`span`): the audit waits are timed as its steps, a request going upstream gets
/// its upstream span and `_meta.traceparent` (with the caller's `_meta.tracestate`) and waits
/// in the flights for its answer, and the request's audit record finishes it.
async fn deliver(
    events: Option<&Events>,
    to_client: &ClientTx,
    outs: Vec<Out>,
    conn: &Arc<Connection>,
    stream_of: Option<String>,
    span: &mut Option<RequestSpan>,
) -> (
    Vec<(Box<Message>, Option<u64>, Option<TraceHeaders>)>,
    Vec<u64>,
) {
    let mut upstream = Vec::new();
    let mut unrecorded = Vec::new();
    let mut audit_failed = false;
    let mut ahead_failed = false;
    for o in outs {
        match o {
            Out::Forwarding(rec, args) => {
                if let Some(e) = events {
                    let t0 = if span.is_some() { now_ns() } else { 0 };
                    ahead_failed = e.forwarding(*rec, args).await.is_err();
                    if let Some(s) = span.as_mut() {
                        s.step(Step::AuditWriteAhead, t0);
                    }
                }
            }
            Out::Server(_, Some(up)) if std::mem::take(&mut ahead_failed) => unrecorded.push(up),
            Out::Audit(rec, args) => {
                if let Some(e) = events {
                    let traced = span
                        .take_if(|s| s.is_for(&rec))
                        .map(|s| (s, (*rec).clone(), now_ns()));
                    if e.emit(*rec, args).await.is_err() {
                        audit_failed = true;
                    }
                    if let (Some((mut s, rec, t0)), Some(t)) = (traced, e.tracer()) {
                        s.step(Step::AuditCommit, t0);
                        s.finish(t, Some(&rec), None);
                    }
                }
            }
            Out::Client(line) => {
                if audit_failed {
                    if let Ok((m, _)) = line.into_message() {
                        if m.id().is_some() {
                            let _ = to_client.send(error_line(m.id(), codes::INTERNAL_ERROR, "The gateway could not write its audit record, so the answer is withheld. Try again shortly.").into());
                        }
                    }
                    continue;
                }
                let _ = to_client.send(ToClient {
                    line,
                    stream_of: stream_of.clone(),
                });
            }
            Out::Server(line, Some(up)) if span.is_some() => {
                let mut s = span.take().expect("checked");
                let tp = s.upstream_starts();
                let ts = s.tracestate().map(str::to_owned);
                let mut msg = line;
                with_trace_context(&mut msg, &tp, ts.as_deref());
                conn.flights.lock_or_recover().insert(up, s);
                upstream.push((msg, Some(up), Some((tp, ts))));
            }
            Out::Server(line, up) => upstream.push((line, up, None)),
            Out::Hold(h) => {
                if audit_failed {
                    let _ = to_client.send(h.answer.into());
                } else {
                    hold(conn.clone(), *h, to_client.clone());
                }
            }
        }
    }
    (upstream, unrecorded)
}

/// The `traceparent` and `tracestate` a traced request carries upstream.
type TraceHeaders = (String, Option<String>);

/// Sets `params._meta.traceparent` to `tp` and `params._meta.tracestate` to `ts` (removed
/// without one: a state belongs to the context it came with). Params that are not an object
/// are left as they are.
fn with_trace_context(msg: &mut Message, tp: &str, ts: Option<&str>) {
    let mut params = msg.value("params").unwrap_or_else(|| serde_json::json!({}));
    let Some(meta) = params.as_object_mut().and_then(|p| {
        p.entry("_meta")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
    }) else {
        return;
    };
    meta.insert("traceparent".to_owned(), tp.into());
    match ts {
        Some(ts) => meta.insert("tracestate".to_owned(), ts.into()),
        None => meta.remove("tracestate"),
    };
    msg.set_value("params", &params);
}

/// Hold-open: waits (polling the approval every 250 ms) until a human decides, then replays
/// the call through the relay — approved, it is forwarded (once); denied, the client gets the
/// denial — or, when the wait runs out, gives the `[APPROVAL REQUIRED]` answer. Progress
/// notifications keep a client that sent a progress token informed. Never blocks the caller.
pub fn hold(conn: Arc<Connection>, h: Hold, to_client: ClientTx) {
    tokio::spawn(async move {
        let Some(store) = conn.relay().approvals() else {
            let _ = to_client.send(h.answer.into());
            return;
        };
        let deadline = std::time::Instant::now() + Duration::from_millis(h.wait_ms);
        let mut ticks = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            ticks += 1;
            let id = h.approval_id.clone();
            let store = store.clone();
            let status = tokio::task::spawn_blocking(move || {
                store.get(&id).map(|a| a.status).map_err(|e| e.to_string())
            })
            .await
            .ok()
            .and_then(Result::ok);
            match status {
                Some(portcullis_store::ApprovalStatus::Approved)
                | Some(portcullis_store::ApprovalStatus::Denied) => {
                    conn.from_client(&h.request, &h.caller).await;
                    return;
                }
                Some(portcullis_store::ApprovalStatus::Pending) | None => {}
                Some(_) => break, // expired or already consumed elsewhere
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
            if let (Some(token), true) = (&h.progress_token, ticks.is_multiple_of(4)) {
                let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": ticks / 4, "message": format!("waiting for approval {}", h.approval_id)}});
                let _ = to_client.send(note.to_string().into());
            }
        }
        let _ = to_client.send(h.answer.into());
    });
}
