//! Streamable HTTP, both eras: each message is its own POST; a request's answer comes back as
//! `application/json` or on an SSE stream (parsed with the gateway's [`SseParser`]), which is
//! resumed with `Last-Event-ID` if the server closes it before answering (2025-11-25).
//!
//! Handshake era: the `Mcp-Session-Id` returned with the `initialize` answer and the
//! negotiated `MCP-Protocol-Version` ride on every later request, and the session is ended
//! with DELETE on close. Stateless era: `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name`
//! are taken from the body's `_meta`, method and name. Static headers (credentials) are
//! marked sensitive and sent on every request; redirects are not followed.
//!
//! Also here, for every HTTP transport: the reason a server cannot be reached (a plain TCP
//! connection is tried, because the HTTP client only says "error sending request").

use crate::error::{Error, ErrorKind};
use portcullis_gateway::upstream::http::{HttpSpec, SseParser};
use portcullis_gateway::upstream::MAX_UPSTREAM_MESSAGE;
use portcullis_mcp::META_PROTOCOL_VERSION;
use portcullis_policy::sync::LockExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::AbortHandle;

/// How often a request's closed stream is resumed before the request is given up.
const MAX_RESUMES: u32 = 8;
/// Reconnection delay when the server named none.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// Longest reconnection delay honoured.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// What arrives from an HTTP server: a message, or why a request will get no answer.
pub(crate) enum Incoming {
    Message(Value),
    Failed(Failure),
}

/// Why a request got no answer.
pub(crate) enum Failure {
    /// The request never reached the server (the whole sentence).
    Unreachable(String),
    /// The server answered with an HTTP error status and no JSON-RPC answer.
    Status(StatusCode),
    /// The connection ended without an answer (the reason).
    Lost(String),
}

impl Failure {
    /// The error of the request `step` that failed so.
    pub(crate) fn at(self, step: &str) -> Error {
        match self {
            Failure::Unreachable(text) => Error::new(ErrorKind::Unreachable, text),
            Failure::Status(s) => Error::new(
                ErrorKind::HttpStatus(s.as_u16()),
                format!("the server answered {step} with HTTP {s}"),
            ),
            Failure::Lost(why) => Error::new(
                ErrorKind::Transport,
                format!("{why} (while waiting for the answer to {step})"),
            ),
        }
    }
}

/// The next message or failure from a channel fed by background tasks.
pub(crate) async fn next(rx: &mut UnboundedReceiver<Incoming>, step: &str) -> Result<Value, Error> {
    match rx.recv().await {
        Some(Incoming::Message(v)) => Ok(v),
        Some(Incoming::Failed(f)) => Err(f.at(step)),
        None => Err(Error::new(
            ErrorKind::Transport,
            format!("the connection closed before the server answered {step}"),
        )),
    }
}

/// An HTTP client that follows no redirect (a server cannot send credentials elsewhere) and
/// the spec's static headers, marked sensitive. Header values with CR/LF are refused.
pub(crate) fn client_for(spec: &HttpSpec) -> Result<(reqwest::Client, HeaderMap), Error> {
    let mut headers = HeaderMap::new();
    for (k, v) in &spec.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            Error::new(
                ErrorKind::Connect,
                format!("header name {k:?} is not valid"),
            )
        })?;
        let mut value = HeaderValue::from_str(v).map_err(|_| {
            Error::new(
                ErrorKind::Connect,
                format!("header {k}: the value is not a valid HTTP header value"),
            )
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Connect,
                format!("cannot build the HTTP client: {e}"),
            )
        })?;
    Ok((client, headers))
}

/// A URL without the `user:password@` part, which must not be printed.
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

/// "cannot reach URL: …" for a request that could not be sent, with the reason a plain TCP
/// connection to the server fails (refused, unknown host, …) when there is one.
pub(crate) async fn unreachable(url: &str, err: reqwest::Error) -> String {
    let detail = match connect_failure(url).await {
        Some(d) => d,
        None => err.without_url().to_string(),
    };
    format!("cannot reach {}: {detail}", without_userinfo(url))
}

/// Why a TCP connection to the URL's host and port fails (within 5 s), or `None` if it works.
async fn connect_failure(url: &str) -> Option<String> {
    let plain = without_userinfo(url);
    let (scheme, rest) = plain.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let default = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            match after.strip_prefix(':') {
                Some(p) => (host, p.parse().ok()?),
                None => (host, default),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, p)) => (host, p.parse().ok()?),
            None => (authority, default),
        },
    };
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer to a TCP connection within 5 s".into()),
    }
}

/// Whether a message is a response (an id, and a result or an error).
pub(crate) fn is_response(v: &Value) -> bool {
    v.get("method").is_none()
        && v.get("id").is_some()
        && (v.get("result").is_some() || v.get("error").is_some())
}

/// Reads a whole body, refusing more than `cap` bytes.
pub(crate) async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        body.extend_from_slice(&chunk);
        if body.len() > cap {
            return Err(format!("the answer exceeds {cap} bytes"));
        }
    }
    String::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_string())
}

/// The handshake-era session: what the server gave with its `initialize` answer.
#[derive(Default)]
struct SessionState {
    session_id: Option<String>,
    version: Option<String>,
}

/// What a request's background task needs.
#[derive(Clone)]
struct Shared {
    url: String,
    client: reqwest::Client,
    headers: HeaderMap,
    state: Arc<Mutex<SessionState>>,
    tx: UnboundedSender<Incoming>,
}

/// A Streamable HTTP server.
pub(crate) struct HttpWire {
    shared: Shared,
    rx: UnboundedReceiver<Incoming>,
    tasks: Vec<AbortHandle>,
}

impl HttpWire {
    /// Prepares the client; nothing is sent until the first message.
    pub(crate) fn new(spec: &HttpSpec) -> Result<HttpWire, Error> {
        let (client, headers) = client_for(spec)?;
        let (tx, rx) = unbounded_channel();
        Ok(HttpWire {
            shared: Shared {
                url: spec.url.clone(),
                client,
                headers,
                state: Arc::default(),
                tx,
            },
            rx,
            tasks: Vec::new(),
        })
    }

    /// POSTs a message. A request's answer is read in the background (so that the server's
    /// own requests on its stream can be answered meanwhile); notifications and responses are
    /// delivered before this returns, in order, and their failures ignored.
    pub(crate) async fn send(&mut self, msg: &Value, _step: &str) -> Result<(), Error> {
        let headers = self.shared.headers_for(msg);
        let body = msg.to_string();
        let is_request = msg.get("method").is_some() && msg.get("id").is_some();
        if !is_request {
            let post = self.shared.client.post(&self.shared.url);
            let _ = post.headers(headers).body(body).send().await;
            return Ok(());
        }
        let is_init = msg.get("method").and_then(Value::as_str) == Some("initialize");
        let shared = self.shared.clone();
        self.tasks.retain(|t| !t.is_finished());
        let task = tokio::spawn(async move { shared.request(headers, body, is_init).await });
        self.tasks.push(task.abort_handle());
        Ok(())
    }

    /// The next message from the server.
    pub(crate) async fn recv(&mut self, step: &str) -> Result<Value, Error> {
        next(&mut self.rx, step).await
    }

    /// Stops reading and ends a handshake-era session (DELETE, 2 s at most).
    pub(crate) async fn close(self) {
        for t in &self.tasks {
            t.abort();
        }
        let sid = self.shared.state.lock_or_recover().session_id.clone();
        if let Some(sid) = sid.and_then(|s| HeaderValue::from_str(&s).ok()) {
            let mut h = self.shared.headers.clone();
            h.insert("mcp-session-id", sid);
            let delete = self
                .shared
                .client
                .delete(&self.shared.url)
                .headers(h)
                .send();
            let _ = tokio::time::timeout(Duration::from_secs(2), delete).await;
        }
    }
}

impl Shared {
    /// Headers for one message: the static ones, then the stateless era's from the body's
    /// `_meta`, or else the handshake session's.
    fn headers_for(&self, msg: &Value) -> HeaderMap {
        let mut h = self.headers.clone();
        h.insert(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let set = |h: &mut HeaderMap, k: &'static str, v: &str| {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(k, v);
            }
        };
        let params = msg.get("params");
        let modern = params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_PROTOCOL_VERSION))
            .and_then(Value::as_str);
        match modern {
            Some(v) => {
                set(&mut h, "mcp-protocol-version", v);
                if let (Some(m), Some(_)) =
                    (msg.get("method").and_then(Value::as_str), msg.get("id"))
                {
                    set(&mut h, "mcp-method", m);
                    let key = match m {
                        "tools/call" | "prompts/get" => Some("name"),
                        "resources/read" => Some("uri"),
                        _ => None,
                    };
                    if let Some(n) = key.and_then(|k| params?.get(k)).and_then(Value::as_str) {
                        set(&mut h, "mcp-name", n);
                    }
                }
            }
            None => self.session_headers(&mut h),
        }
        h
    }

    /// The handshake-era session's `Mcp-Session-Id` and negotiated version.
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

    /// One request: POST, then its answer (JSON, or an SSE stream resumed until the answer).
    async fn request(self, headers: HeaderMap, body: String, is_init: bool) {
        let sent = self
            .client
            .post(&self.url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let why = unreachable(&self.url, e).await;
                let _ = self.tx.send(Incoming::Failed(Failure::Unreachable(why)));
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
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        let answered = if sse {
            self.follow_stream(resp, is_init).await
        } else {
            match read_capped(resp, MAX_UPSTREAM_MESSAGE).await {
                Ok(body) => match serde_json::from_str::<Value>(&body) {
                    Ok(Value::Array(batch)) => {
                        let mut any = false;
                        for m in batch {
                            any |= self.deliver(m, is_init);
                        }
                        any
                    }
                    Ok(v) => self.deliver(v, is_init),
                    Err(_) => false,
                },
                Err(_) => false,
            }
        };
        if !answered {
            let failure = if status.is_success() {
                Failure::Lost("the server closed the response without an answer".into())
            } else {
                Failure::Status(status)
            };
            let _ = self.tx.send(Incoming::Failed(failure));
        }
    }

    /// Reads a request's SSE stream until its answer, resuming it by GET with
    /// `Last-Event-ID` (after the server's `retry`) when the server closes it first.
    async fn follow_stream(&self, resp: reqwest::Response, is_init: bool) -> bool {
        let mut parser = SseParser::default();
        let mut resp = resp;
        for resumes in 0..=MAX_RESUMES {
            if self.read_stream(&mut resp, &mut parser, is_init).await {
                return true;
            }
            let Some(last) = parser.last_event_id.clone() else {
                return false;
            };
            if resumes == MAX_RESUMES {
                return false;
            }
            let retry = parser
                .retry_ms
                .map_or(DEFAULT_RETRY, Duration::from_millis)
                .min(MAX_RETRY);
            tokio::time::sleep(retry).await;
            let mut h = self.headers.clone();
            h.insert("accept", HeaderValue::from_static("text/event-stream"));
            self.session_headers(&mut h);
            if let Ok(id) = HeaderValue::from_str(&last) {
                h.insert("last-event-id", id);
            }
            resp = match self.client.get(&self.url).headers(h).send().await {
                Ok(r) if r.status().is_success() => r,
                _ => return false,
            };
        }
        false
    }

    /// Passes every message of one SSE response on; true once a response came.
    async fn read_stream(
        &self,
        resp: &mut reqwest::Response,
        parser: &mut SseParser,
        is_init: bool,
    ) -> bool {
        let mut total = 0usize;
        while let Ok(Some(chunk)) = resp.chunk().await {
            total += chunk.len();
            if total > MAX_UPSTREAM_MESSAGE.saturating_mul(16) {
                return false;
            }
            let mut answered = false;
            for data in parser.feed(&chunk) {
                if let Ok(v) = serde_json::from_str::<Value>(&data) {
                    answered |= self.deliver(v, is_init);
                }
            }
            if answered {
                return true;
            }
        }
        false
    }

    /// Hands one message to the client (keeping the version an `initialize` answer names);
    /// true if it is a response.
    fn deliver(&self, v: Value, is_init: bool) -> bool {
        if !v.is_object() {
            return false;
        }
        let response = is_response(&v);
        if is_init && response {
            if let Some(ver) = v.pointer("/result/protocolVersion").and_then(Value::as_str) {
                self.state.lock_or_recover().version = Some(ver.to_owned());
            }
        }
        let _ = self.tx.send(Incoming::Message(v));
        response
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
    }

    #[test]
    fn stateless_requests_carry_their_headers() {
        let spec = HttpSpec {
            url: "http://127.0.0.1:1/mcp".into(),
            headers: vec![("Authorization".into(), "Bearer t".into())],
        };
        let wire = HttpWire::new(&spec).unwrap();
        let call = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "_meta": {META_PROTOCOL_VERSION: "2026-07-28"}}});
        let h = wire.shared.headers_for(&call);
        assert_eq!(h["mcp-protocol-version"], "2026-07-28");
        assert_eq!(h["mcp-method"], "tools/call");
        assert_eq!(h["mcp-name"], "echo");
        assert!(h["authorization"].is_sensitive());
        assert!(h.get("mcp-session-id").is_none());
        assert!(HttpWire::new(&HttpSpec {
            url: spec.url,
            headers: vec![("X".into(), "a\r\nb".into())]
        })
        .is_err());
    }
}
