//! A Streamable HTTP upstream (both eras): each message sent upstream is its own POST;
//! answers come back as `application/json` or as an SSE stream, and every message in them
//! goes to the inbox (marked with the request whose stream carried it).
//!
//! Handshake era: the `Mcp-Session-Id` the server returns with the `initialize` answer is kept
//! private to this link and sent on every later request, with the negotiated
//! `MCP-Protocol-Version`; after `notifications/initialized` a GET stream carries the
//! server's unsolicited messages (405 means it has none); DELETE ends the session on
//! shutdown. Streams the server closes are resumed as 2025-11-25 asks: after its `retry`
//! delay, a GET with `Last-Event-ID` (a request's stream until its answer arrives; the GET
//! stream for as long as the session lives); each stream so reopened is reported to the
//! inbox ([`Inbound::Reconnected`]). Stateless era: requests already carry their
//! `_meta`; the link adds `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` from the body.
//!
//! Upstream credentials (static headers) ride on every request that leaves, which is only
//! ever what the policy allowed; they are never logged.

use super::client::{Client, Response, Target};
use super::{BoxFuture, Failure, Inbound, Inbox, Pool, Transport};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use portcullis_mcp::{Kind, Message, META_PROTOCOL_VERSION};
use portcullis_policy::sync::LockExt;
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often a request's closed stream is resumed before the request is given up.
const MAX_RESUMES: u32 = 8;
/// Reconnection delay when the server named none (the SSE default is the client's choice).
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// Longest reconnection delay honoured (a larger `retry` is clamped).
const MAX_RETRY: Duration = Duration::from_secs(30);

/// How an SSE stream from the server ended.
struct StreamEnd {
    /// A response was among its messages.
    answered: bool,
    /// The last event id it carried (for `Last-Event-ID`).
    last_event_id: Option<String>,
    /// The server's reconnection delay, if it sent one.
    retry: Option<Duration>,
    /// It carried at least one event with data.
    delivered: bool,
}

/// Where and how to reach an HTTP server.
#[derive(Clone, Debug)]
pub struct HttpSpec {
    /// Endpoint URL (`http://127.0.0.1:8765/mcp`).
    pub url: String,
    /// Static headers (credentials), already expanded.
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct SessionState {
    session_id: Option<String>,
    version: Option<String>,
    get_open: bool,
}

/// A Streamable HTTP upstream (one handshake-era session, or the stateless era's requests).
pub struct HttpTransport {
    /// Itself, weakly: each request's POST runs in its own task.
    me: Weak<HttpTransport>,
    client: Client,
    spec: HttpSpec,
    /// `spec.url`, parsed once (not on every request).
    url: Target,
    static_headers: HeaderMap,
    inbox: Inbox,
    state: Mutex<SessionState>,
    closed: AtomicBool,
    max_body: usize,
}

/// The members of a request's params that its Streamable HTTP headers repeat, kept raw: one
/// of another type than a string is left out alone, as it was when the params were a `Value`.
#[derive(Default, serde::Deserialize)]
struct HeaderParams<'a> {
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    uri: Option<&'a RawValue>,
}

/// The `_meta` member the headers repeat ([`META_PROTOCOL_VERSION`]).
#[derive(serde::Deserialize)]
struct HeaderMeta<'a> {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow, default)]
    version: Option<&'a RawValue>,
}

/// A raw JSON string's text; `None` for any other JSON.
fn raw_str(raw: Option<&RawValue>) -> Option<std::borrow::Cow<'_, str>> {
    serde_json::from_str(raw?.get()).ok()
}

/// The HTTP client an upstream link uses (from `pool`; no redirects: an upstream cannot send
/// traffic and injected credentials elsewhere) and the spec's static headers, marked sensitive
/// so they never appear in debug output. Header values with CR/LF (injection) are refused.
pub(crate) fn client_for(spec: &HttpSpec, pool: Pool) -> Result<(Client, HeaderMap), String> {
    let mut headers = HeaderMap::new();
    for (k, v) in &spec.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("header name {k:?} is not valid"))?;
        let mut value = HeaderValue::from_str(v)
            .map_err(|_| format!("header {k}: the value is not a valid HTTP header value"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let client = match pool {
        Pool::Shared => shared_client()?,
        Pool::Own => build_client()?,
    };
    Ok((client, headers))
}

/// A client that follows no redirect.
fn build_client() -> Result<Client, String> {
    Client::new().map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A URL without its `user:password@` part, which must never be printed.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// "cannot reach URL: why", for a request that could not be sent (the URL without its
/// userinfo).
pub fn cannot_reach(url: &str, why: impl std::fmt::Display) -> String {
    format!("cannot reach {}: {why}", without_userinfo(url))
}

/// One client (connection pool, TLS configuration) for the whole process: a client costs
/// tens of KiB, so one per handshake-era session would dominate a session's memory, and
/// sessions to the same upstream can share keep-alive connections (an MCP session lives in
/// the `Mcp-Session-Id` header, not in the connection). Credentials are per request.
fn shared_client() -> Result<Client, String> {
    static CLIENT: std::sync::OnceLock<Result<Client, String>> = std::sync::OnceLock::new();
    CLIENT.get_or_init(build_client).clone()
}

impl HttpTransport {
    /// Prepares the transport (no request is made until the first message).
    pub fn start(
        spec: HttpSpec,
        inbox: Inbox,
        max_body: usize,
        pool: Pool,
    ) -> Result<Arc<dyn Transport>, String> {
        let (client, static_headers) = client_for(&spec, pool)?;
        let url = Target::parse(&spec.url).map_err(|e| {
            format!(
                "the server URL {} is not valid: {e}",
                without_userinfo(&spec.url)
            )
        })?;
        Ok(Arc::new_cyclic(|me| HttpTransport {
            me: me.clone(),
            client,
            url,
            spec,
            static_headers,
            inbox,
            state: Mutex::new(SessionState::default()),
            closed: AtomicBool::new(false),
            max_body,
        }))
    }

    /// This transport as an owned handle, for work that outlives the call (an error once
    /// the link is being dropped).
    fn link(&self) -> std::io::Result<Arc<HttpTransport>> {
        self.me
            .upgrade()
            .ok_or_else(|| std::io::Error::other("the upstream link is closed"))
    }

    async fn failed(&self, up: u64, why: String, cause: Failure) {
        self.inbox.put(Inbound::Failed { up, why, cause }).await;
    }

    fn headers_for(&self, msg: &Message) -> HeaderMap {
        let mut h = self.static_headers.clone();
        h.insert(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        h.insert("content-type", HeaderValue::from_static("application/json"));
        // Only the members the headers repeat are read from the params (not the arguments).
        let params: HeaderParams = msg
            .get("params")
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or_default();
        let modern = params
            .meta
            .and_then(|m| serde_json::from_str::<HeaderMeta>(m.get()).ok())
            .and_then(|m| raw_str(m.version));
        let set = |h: &mut HeaderMap, k: &'static str, v: &str| {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(k, v);
            }
        };
        match modern {
            Some(v) => {
                set(&mut h, "mcp-protocol-version", &v);
                if msg.kind() == Kind::Request {
                    if let Some(m) = msg.method() {
                        set(&mut h, "mcp-method", m);
                        let name = match m {
                            "tools/call" | "prompts/get" => raw_str(params.name),
                            "resources/read" => raw_str(params.uri),
                            _ => None,
                        };
                        if let Some(n) = name {
                            set(&mut h, "mcp-name", &n);
                        }
                    }
                }
            }
            None => self.session_headers(&mut h),
        }
        h
    }

    /// The handshake-era session's headers: its `Mcp-Session-Id` and negotiated version.
    fn session_headers(&self, h: &mut HeaderMap) {
        let st = self.state.lock_or_recover();
        for (k, v) in [
            ("mcp-session-id", &st.session_id),
            ("mcp-protocol-version", &st.version),
        ] {
            if let Some(v) = v.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                h.insert(k, v);
            }
        }
    }

    /// POSTs one message and hands what comes back to the inbox. `detach_stream`: an answer
    /// that streams (SSE) is read in a task of its own and this returns at once; a JSON answer
    /// is always read and handed over before this returns.
    async fn post(
        self: Arc<Self>,
        msg: Box<Message>,
        up: Option<u64>,
        extra: Vec<(String, String)>,
        detach_stream: bool,
    ) {
        let is_init = msg.method() == Some("initialize");
        let is_initialized = msg.method() == Some("notifications/initialized");
        let mut headers = self.headers_for(&msg);
        for (k, v) in extra {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                headers.insert(k, v);
            }
        }
        let resp = match self
            .client
            .send(Method::POST, &self.url, headers, msg.to_json())
            .await
        {
            Ok(r) => r,
            Err(e) => {
                if let Some(up) = up {
                    let why = cannot_reach(&self.spec.url, e);
                    self.failed(up, why, Failure::Unreachable).await;
                }
                return;
            }
        };
        let status = resp.status();
        if is_init && status.is_success() {
            if let Some(sid) = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                self.state.lock_or_recover().session_id = Some(sid.to_owned());
            }
        }
        if status == StatusCode::ACCEPTED {
            if is_initialized {
                self.open_get_stream();
            }
            return;
        }
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if sse && detach_stream {
            tokio::spawn(self.read_answer(resp, status, sse, is_init, up));
        } else {
            self.read_answer(resp, status, sse, is_init, up).await;
        }
    }

    /// Reads the answer to a POST (an SSE stream, resumed when the server closes it early, or
    /// one JSON body) into the inbox; a request left without an answer is reported failed.
    async fn read_answer(
        self: Arc<Self>,
        resp: Response,
        status: StatusCode,
        sse: bool,
        is_init: bool,
        up: Option<u64>,
    ) {
        let mut answered = false;
        if sse {
            let mut end = self.read_sse(resp, is_init, up).await;
            answered = end.answered;
            // A 2025-11-25 server may close a request's stream before answering (after a
            // priming event with an id): resume it by GET with Last-Event-ID after `retry`.
            let mut resumes = 0;
            while let (false, Some(up), Some(last)) = (answered, up, end.last_event_id.clone()) {
                if resumes == MAX_RESUMES
                    || self.closed.load(Ordering::SeqCst)
                    || !self.inbox.awaits(up)
                {
                    answered = !self.inbox.awaits(up);
                    break;
                }
                resumes += 1;
                tokio::time::sleep(end.retry.unwrap_or(DEFAULT_RETRY).min(MAX_RETRY)).await;
                match self.get_stream(Some(&last)).await {
                    Ok(r) => {
                        self.inbox.put(Inbound::Reconnected { resumed: true }).await;
                        let next = self.read_sse(r, is_init, Some(up)).await;
                        answered = next.answered;
                        end = StreamEnd {
                            last_event_id: next.last_event_id.or(Some(last)),
                            retry: next.retry.or(end.retry),
                            ..next
                        };
                    }
                    Err(e) => {
                        tracing::debug!("resuming the upstream stream: {e}");
                        answered = !self.inbox.awaits(up);
                        break;
                    }
                }
            }
        } else {
            match read_capped(resp, self.max_body).await {
                Ok(body) if !body.trim().is_empty() => {
                    answered = self.hand_over(body, is_init, up).await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("upstream answer unreadable: {e}"),
            }
        }
        if !answered {
            if let Some(up) = up {
                let (why, cause) = if status.is_success() {
                    let why = "the server closed the response without an answer";
                    (why.to_string(), Failure::Other)
                } else {
                    let why = format!("the server answered HTTP {status}");
                    (why, Failure::HttpStatus(status.as_u16()))
                };
                if status == StatusCode::NOT_FOUND
                    && self.state.lock_or_recover().session_id.is_some()
                {
                    tracing::warn!("the upstream session ended (404)");
                }
                self.failed(up, why, cause).await;
            }
        }
    }

    /// One message from the server (on the answer stream of request `related`, if any);
    /// returns whether it was a response.
    async fn hand_over(&self, text: String, is_init: bool, related: Option<u64>) -> bool {
        let Some(msg) = super::server_message(&text) else {
            return false;
        };
        if is_init && msg.kind() == Kind::Response {
            if let Some(v) = msg.value("result").and_then(|r| {
                r.get("protocolVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }) {
                self.state.lock_or_recover().version = Some(v);
            }
        }
        let response = msg.kind() == Kind::Response;
        // A response finds its request by id: only what precedes it needs the stream's mark.
        self.inbox
            .put(Inbound::Message {
                msg,
                stream_of: related.filter(|_| !response),
            })
            .await;
        response
    }

    /// Reads an SSE stream, passing every message to the inbox. A request's stream
    /// (`related`: its upstream id) is left as soon as a response came: a resumed stream is
    /// the session's GET stream, which the server may keep open.
    async fn read_sse(&self, mut resp: Response, is_init: bool, related: Option<u64>) -> StreamEnd {
        let mut parser = SseParser::default();
        let mut answered = false;
        let mut delivered = false;
        let mut total = 0usize;
        while let Ok(Some(chunk)) = resp.chunk().await {
            total += chunk.len();
            if total > self.max_body.saturating_mul(16) {
                tracing::warn!("upstream SSE stream exceeded its cap; closing it");
                break;
            }
            for data in parser.feed(&chunk) {
                delivered = true;
                answered |= self.hand_over(data, is_init, related).await;
            }
            if self.closed.load(Ordering::SeqCst) || (related.is_some() && answered) {
                break;
            }
        }
        StreamEnd {
            answered,
            last_event_id: parser.last_event_id,
            retry: parser.retry_ms.map(Duration::from_millis),
            delivered,
        }
    }

    /// Opens a GET stream of the session (resuming after `last_event_id` if given); a
    /// refusal (405: the server has no GET stream; 404: the session ended) is an error.
    async fn get_stream(&self, last_event_id: Option<&str>) -> Result<Response, String> {
        let mut h = self.static_headers.clone();
        h.insert("accept", HeaderValue::from_static("text/event-stream"));
        self.session_headers(&mut h);
        if let Some(id) = last_event_id.and_then(|i| HeaderValue::from_str(i).ok()) {
            h.insert("last-event-id", id);
        }
        match self.client.send(Method::GET, &self.url, h, "").await {
            Ok(r) if r.status().is_success() => Ok(r),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The session's GET stream, kept open for as long as the session lives: when the
    /// server closes it, it is reopened after the server's `retry` delay (doubling from 1 s
    /// up to 30 s while reconnections bring nothing), with `Last-Event-ID` when the server
    /// gave event ids. A refusal (405, 404), a shutdown or the link's end ends it.
    fn open_get_stream(&self) {
        {
            let mut st = self.state.lock_or_recover();
            if st.get_open || st.session_id.is_none() {
                return;
            }
            st.get_open = true;
        }
        let link = self.me.clone();
        tokio::spawn(async move {
            let mut last: Option<String> = None;
            let mut backoff = DEFAULT_RETRY;
            let mut reopening = false;
            // Between streams the task holds the link only weakly, so a session dropped
            // while its server keeps closing the stream does not live on here.
            while let Some(me) = link.upgrade().filter(|l| !l.closed.load(Ordering::SeqCst)) {
                let end = match me.get_stream(last.as_deref()).await {
                    Ok(r) => {
                        if reopening {
                            let resumed = last.is_some();
                            me.inbox.put(Inbound::Reconnected { resumed }).await;
                        }
                        reopening = true;
                        me.read_sse(r, false, None).await
                    }
                    Err(e) => {
                        tracing::debug!("upstream GET stream: {e}");
                        me.state.lock_or_recover().get_open = false;
                        return;
                    }
                };
                drop(me);
                last = end.last_event_id.or(last);
                let wait = match end.retry {
                    Some(r) => r.min(MAX_RETRY),
                    None if end.delivered => DEFAULT_RETRY,
                    None => backoff,
                };
                backoff = if end.delivered {
                    DEFAULT_RETRY
                } else {
                    (backoff * 2).min(MAX_RETRY)
                };
                tokio::time::sleep(wait).await;
            }
            if let Some(me) = link.upgrade() {
                me.state.lock_or_recover().get_open = false;
            }
        });
    }

    /// Asks the server for its `server/discover` result directly (not through the relay: it is
    /// the gateway's own question). A `-32022` naming supported versions is retried once with
    /// the first of them. None: a handshake-era server (an error, silence for 10 s).
    pub async fn discover(&self) -> Option<Value> {
        let mut version = portcullis_mcp::MODERN.to_owned();
        for _ in 0..2 {
            let body = serde_json::json!({"jsonrpc":"2.0","id":"portcullis-discover","method":"server/discover",
                "params":{"_meta":{META_PROTOCOL_VERSION: version,"io.modelcontextprotocol/clientCapabilities":{},
                "io.modelcontextprotocol/clientInfo":{"name":"portcullis","version":env!("CARGO_PKG_VERSION")}}}})
            .to_string();
            let h = self.headers_for(&Message::parse(&body).ok()?);
            let send = self.client.send(Method::POST, &self.url, h, body);
            let resp = tokio::time::timeout(Duration::from_secs(10), send)
                .await
                .ok()?
                .ok()?;
            let sse = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("text/event-stream"));
            let text = read_capped(resp, self.max_body).await.ok()?;
            let answer = if sse {
                SseParser::default()
                    .feed(text.as_bytes())
                    .into_iter()
                    .find(|d| d.contains("portcullis-discover"))?
            } else {
                text
            };
            let v: Value = serde_json::from_str(&answer).ok()?;
            if let Some(r) = v.get("result") {
                return Some(r.clone());
            }
            let next = v
                .pointer("/error/data/supported/0")
                .and_then(Value::as_str)
                .filter(|_| v.pointer("/error/code").and_then(Value::as_i64) == Some(-32022))?;
            version = next.to_owned();
        }
        None
    }

    /// Ends the upstream session (DELETE) and stops reading.
    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let sid = self.state.lock_or_recover().session_id.clone();
        if let Some(sid) = sid.and_then(|s| HeaderValue::from_str(&s).ok()) {
            let mut h = self.static_headers.clone();
            h.insert("mcp-session-id", sid);
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.client.send(Method::DELETE, &self.url, h, ""),
            )
            .await;
        }
    }
}

impl Transport for HttpTransport {
    /// Notifications and responses are POSTed before this returns, so the server sees them
    /// in the order the client sent them (e.g. `notifications/initialized` before the first
    /// request); requests run concurrently, each in its own task.
    fn send(
        &self,
        msg: Box<Message>,
        up: Option<u64>,
        extra: Vec<(String, String)>,
    ) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let me = self.link()?;
            if up.is_none() {
                me.post(msg, None, extra, false).await;
            } else {
                tokio::spawn(me.post(msg, up, extra, false));
            }
            Ok(())
        })
    }

    /// A request whose answer is one JSON body is answered on the caller's task (no task
    /// hop, no wake-up of another thread); an answer that streams goes on in a task of its
    /// own. If the caller stops waiting (its client went away), the exchange finishes in a
    /// task, so the answer still reaches the relay and its audit record.
    fn send_answered(
        &self,
        msg: Box<Message>,
        up: Option<u64>,
        extra: Vec<(String, String)>,
    ) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let me = self.link()?;
            let detach = up.is_some();
            super::Detached::new(me.post(msg, up, extra, detach)).await;
            Ok(())
        })
    }

    fn shutdown(&self, _grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(self.close())
    }

    fn as_http(&self) -> Option<&HttpTransport> {
        Some(self)
    }
}

async fn read_capped(mut resp: Response, cap: usize) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > cap {
            return Err(format!("the answer exceeds {cap} bytes"));
        }
    }
    String::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_string())
}

/// Incremental parser for `text/event-stream`: yields the `data` of each event (lines
/// joined by `\n`); events without data (priming events, keep-alives) yield nothing.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Vec<String>,
    event: String,
    /// How many bytes at the front of `buf` are known to hold no newline: a long line fed in
    /// small chunks is scanned once, not once per chunk (quadratic; found by fuzzing).
    scanned: usize,
    /// The last `id:` seen (what a reconnection sends as `Last-Event-ID`).
    pub last_event_id: Option<String>,
    /// The last `retry:` seen, in ms (the server's reconnection delay).
    pub retry_ms: Option<u64>,
}

/// One server-sent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` field (`message` when absent).
    pub event: String,
    /// `data:` lines joined by `\n`.
    pub data: String,
}

impl SseParser {
    /// Feeds bytes; returns the data of every event completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.feed_events(bytes)
            .into_iter()
            .map(|e| e.data)
            .collect()
    }

    /// Feeds bytes; returns every event (name and data) completed by them.
    pub fn feed_events(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        // Lines are read in place and the buffer is cut once at the end: draining it line by
        // line moved the rest of the buffer each time, quadratic in the lines of one chunk
        // (a 31 KiB chunk of empty lines took 0.3 s; found by fuzzing).
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(len) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let mut line = &self.buf[start..from + len];
            start = from + len + 1;
            from = start;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            if line.is_empty() {
                let event = std::mem::take(&mut self.event);
                if !self.data.is_empty() {
                    let d = self.data.join("\n");
                    self.data.clear();
                    if !d.trim().is_empty() {
                        out.push(SseEvent {
                            event: if event.is_empty() {
                                "message".into()
                            } else {
                                event
                            },
                            data: d,
                        });
                    }
                }
            } else if let Some(rest) = line.strip_prefix("event:") {
                self.event = rest.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("data:") {
                self.data
                    .push(rest.strip_prefix(' ').unwrap_or(rest).to_owned());
            } else if let Some(rest) = line.strip_prefix("id:") {
                let id = rest.strip_prefix(' ').unwrap_or(rest);
                if !id.contains('\0') {
                    self.last_event_id = (!id.is_empty()).then(|| id.to_owned());
                }
            } else if let Some(rest) = line.strip_prefix("retry:") {
                let r = rest.strip_prefix(' ').unwrap_or(rest);
                if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) {
                    self.retry_ms = r.parse().ok();
                }
            }
            // `:` comments and unknown fields are ignored.
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_never_shown() {
        assert_eq!(
            without_userinfo("https://u:p@example.com:8443/mcp?x=a@b"),
            "https://example.com:8443/mcp?x=a@b"
        );
        assert_eq!(without_userinfo("http://h/a@b"), "http://h/a@b");
        assert_eq!(
            cannot_reach("http://u:p@h:1/mcp", "refused"),
            "cannot reach http://h:1/mcp: refused"
        );
    }

    #[test]
    fn stateless_requests_carry_their_headers() {
        let spec = HttpSpec {
            url: "http://127.0.0.1:1/mcp".into(),
            headers: vec![("Authorization".into(), "Bearer t".into())],
        };
        let link =
            HttpTransport::start(spec.clone(), Inbox::default(), 1 << 20, Pool::Own).unwrap();
        let call = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "_meta": {META_PROTOCOL_VERSION: "2026-07-28"}}})
        .to_string();
        let h = link
            .as_http()
            .unwrap()
            .headers_for(&Message::parse(&call).unwrap());
        assert_eq!(h["mcp-protocol-version"], "2026-07-28");
        assert_eq!(h["mcp-method"], "tools/call");
        assert_eq!(h["mcp-name"], "echo");
        assert!(h["authorization"].is_sensitive());
        assert!(h.get("mcp-session-id").is_none());
        let injected = HttpSpec {
            url: spec.url,
            headers: vec![("X".into(), "a\r\nb".into())],
        };
        assert!(HttpTransport::start(injected, Inbox::default(), 1 << 20, Pool::Own).is_err());
    }

    #[test]
    fn sse_event_names() {
        let mut p = SseParser::default();
        let ev = p.feed_events(b"event: endpoint\ndata: /messages/?session_id=ab\n\ndata: {}\n\n");
        assert_eq!(
            ev[0],
            SseEvent {
                event: "endpoint".into(),
                data: "/messages/?session_id=ab".into()
            }
        );
        assert_eq!(ev[1].event, "message");
    }

    #[test]
    fn a_chunk_of_many_lines_is_read_in_one_pass_and_keeps_its_unfinished_line() {
        let mut p = SseParser::default();
        let mut chunk = b"\n".repeat(100_000);
        chunk.extend_from_slice(b"data: a\n\ndata: b\r\n\ndata: unfin");
        assert_eq!(p.feed(&chunk), vec!["a".to_string(), "b".to_string()]);
        // Only the unfinished line is kept for the next chunk.
        assert_eq!(p.buf, b"data: unfin");
        assert_eq!(p.feed(b"ished\n\n"), vec!["unfinished".to_string()]);
        assert!(p.buf.is_empty());
    }

    #[test]
    fn a_long_line_fed_in_small_chunks_is_scanned_once() {
        let mut p = SseParser::default();
        p.feed(b"data: ");
        for _ in 0..10_000 {
            assert!(p.feed(b"xyz").is_empty());
            // Everything buffered is known to hold no newline: the next chunk is searched
            // from its own first byte, not from the start of the line again.
            assert_eq!(p.scanned, p.buf.len());
        }
        assert_eq!(p.feed(b"\n\n"), vec!["xyz".repeat(10_000)]);
        assert_eq!((p.scanned, p.buf.len()), (0, 0));
    }

    #[test]
    fn sse_events() {
        let mut p = SseParser::default();
        assert!(
            p.feed(b"id: 1\nretry: 500\ndata:\n\n").is_empty(),
            "priming event"
        );
        assert_eq!(p.last_event_id.as_deref(), Some("1"));
        assert_eq!(p.retry_ms, Some(500));
        assert!(p
            .feed(b": keep-alive\n\nevent: message\ndata: {\"a\"")
            .is_empty());
        assert_eq!(p.feed(b":1}\r\n\r\n"), vec!["{\"a\":1}".to_string()]);
        assert_eq!(
            p.feed(b"data: x\ndata: y\n\ndata: z\n\n"),
            vec!["x\ny".to_string(), "z".to_string()]
        );
    }
}
