//! The conversation with one server, over any transport: the handshake of its era, requests
//! and their answers (the server's own requests are answered meanwhile: `ping` with `{}`,
//! anything else declined), every page of `tools/list`, `tools/call`, and the close.

use crate::error::{Error, ErrorKind};
use crate::stdio::{Closed, LineWire};
use crate::transport::TransportWire;
use crate::{Era, Options, UpstreamSpec};
use portcullis_gateway::upstream::http::without_userinfo;
use portcullis_mcp::{LEGACY_LATEST, META_PROTOCOL_VERSION, MODERN};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// Most `tools/list` pages followed before giving up on a server that never stops paging.
const MAX_PAGES: usize = 1000;
/// How long [`Era::Auto`] waits for a `server/discover` answer before trying `initialize`.
const DISCOVER_WAIT: Duration = Duration::from_secs(10);
/// The `-32022` error: the server does not support the requested version (its `data.supported`
/// names those it does).
const UNSUPPORTED_VERSION: i64 = -32022;

/// The transport under a conversation: line-delimited pipes, or the gateway's HTTP and SSE
/// transports.
enum Wire {
    Lines(Box<LineWire>),
    Remote(TransportWire),
}

impl Wire {
    async fn send(&mut self, msg: &Value, step: &str) -> Result<(), Error> {
        match self {
            Wire::Lines(w) => w.send(msg, step).await,
            Wire::Remote(w) => w.send(msg, step).await,
        }
    }

    async fn recv(&mut self, step: &str) -> Result<Value, Error> {
        match self {
            Wire::Lines(w) => w.recv(step).await,
            Wire::Remote(w) => w.recv(step).await,
        }
    }

    async fn close(self) -> Closed {
        match self {
            Wire::Lines(w) => return w.close().await,
            Wire::Remote(w) => w.close().await,
        }
        Closed::default()
    }
}

/// An MCP client connected to one server, past the handshake.
pub struct Client {
    wire: Wire,
    opts: Options,
    /// When the whole conversation's budget ([`Options::timeout`]) runs out.
    deadline: Option<Instant>,
    next_id: u64,
    /// The era spoken (never [`Era::Auto`] once connected).
    era: Era,
    /// The protocol version agreed (handshake) or sent in `_meta` (stateless).
    version: String,
    /// The `initialize` or `server/discover` result.
    handshake: Value,
}

impl Client {
    /// Connects to the server `spec` describes (starts the child, prepares the HTTP client,
    /// or opens the legacy SSE stream) and performs the handshake, all within
    /// [`Options::timeout`]. A failed handshake closes the connection; a stdio server's
    /// leftovers are in the error.
    pub async fn connect(spec: &UpstreamSpec, opts: &Options) -> Result<Client, Error> {
        let deadline = opts.timeout.map(|t| Instant::now() + t);
        let wire = match spec {
            UpstreamSpec::Command(c) => Wire::Lines(Box::new(LineWire::spawn(c)?)),
            UpstreamSpec::Http(h) | UpstreamSpec::Sse(h) => Wire::Remote(match opts.timeout {
                None => TransportWire::connect(spec, &h.url).await?,
                Some(t) => tokio::time::timeout(t, TransportWire::connect(spec, &h.url))
                    .await
                    .map_err(|_| {
                        Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "timed out after {} s connecting to {}",
                                t.as_secs_f32(),
                                without_userinfo(&h.url)
                            ),
                        )
                    })??,
            }),
        };
        Client::start(wire, opts, deadline).await
    }

    /// Speaks line-delimited JSON-RPC over a stream the caller already has (an in-process
    /// server or gateway), performing the handshake. Closing the client shuts the writer down.
    pub async fn over_lines<R, W>(reader: R, writer: W, opts: &Options) -> Result<Client, Error>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let deadline = opts.timeout.map(|t| Instant::now() + t);
        let wire = Wire::Lines(Box::new(LineWire::stream(
            Box::new(reader),
            Box::new(writer),
        )));
        Client::start(wire, opts, deadline).await
    }

    async fn start(wire: Wire, opts: &Options, deadline: Option<Instant>) -> Result<Client, Error> {
        let mut client = Client {
            wire,
            opts: opts.clone(),
            deadline,
            next_id: 1,
            era: opts.era,
            version: String::new(),
            handshake: Value::Null,
        };
        match client.greet().await {
            Ok(()) => Ok(client),
            Err(e) => {
                let closed = client.close().await;
                Err(closed.annotate(e))
            }
        }
    }

    /// The era spoken: [`Era::Handshake`] or [`Era::Stateless`].
    pub fn era(&self) -> Era {
        self.era
    }

    /// The protocol version agreed in `initialize`, or sent in every stateless request.
    pub fn protocol_version(&self) -> &str {
        &self.version
    }

    /// The server's `initialize` (or `server/discover`) result, as it sent it.
    pub fn handshake(&self) -> &Value {
        &self.handshake
    }

    /// The server's `serverInfo` (`name`, `version`, …), when it gave one.
    pub fn server_info(&self) -> Option<&Value> {
        self.handshake
            .get("serverInfo")
            .or_else(|| {
                self.handshake
                    .pointer("/_meta/io.modelcontextprotocol~1serverInfo")
            })
            .filter(|v| v.is_object())
    }

    /// The server's own name (`serverInfo.name`), when it said one.
    pub fn server_name(&self) -> Option<&str> {
        self.server_info()?.get("name")?.as_str()
    }

    /// Every page of `tools/list`, concatenated in the server's order. A repeated cursor (a
    /// server paging in a loop) or more than 1000 pages is an error.
    pub async fn list_tools(&mut self) -> Result<Vec<Value>, Error> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = HashSet::new();
        for page in 1..=MAX_PAGES {
            let step = format!("tools/list (page {page})");
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let r = self.ask(&step, "tools/list", params, None).await?;
            let list = r.get("tools").and_then(Value::as_array).ok_or_else(|| {
                Error::protocol(format!(
                    "the server's answer to {step} has no \"tools\" array"
                ))
            })?;
            tools.extend(list.iter().cloned());
            match r.get("nextCursor") {
                Some(Value::String(c)) if !c.is_empty() => {
                    if !seen.insert(c.clone()) {
                        return Err(Error::protocol(format!(
                            "tools/list repeated the cursor {c:?} (page {page}): the server pages in a loop"
                        )));
                    }
                    cursor = Some(c.clone());
                }
                _ => return Ok(tools),
            }
        }
        Err(Error::protocol(format!(
            "tools/list still had more pages after {MAX_PAGES}: giving up"
        )))
    }

    /// Calls a tool; returns its `tools/call` result (`content`, `isError`, …). A tool that
    /// failed is a result with `isError: true`, not an error; a JSON-RPC error is
    /// [`ErrorKind::Rpc`].
    pub async fn call_tool(&mut self, name: &str, arguments: Value) -> Result<Value, Error> {
        let step = format!("tools/call ({name})");
        let params = json!({"name": name, "arguments": arguments});
        self.ask(&step, "tools/call", params, None).await
    }

    /// Any request; returns its result.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, Error> {
        self.ask(method, method, params, None).await
    }

    /// Ends the conversation: a child is stopped, an HTTP session ended, a stream closed.
    /// Returns what a stdio server left behind, to explain an earlier failure.
    pub async fn close(self) -> Closed {
        self.wire.close().await
    }

    /// The handshake of the era asked for; [`Era::Auto`] tries `server/discover` first.
    async fn greet(&mut self) -> Result<(), Error> {
        match self.opts.era {
            Era::Handshake => self.initialize().await,
            Era::Stateless => self.discover(None).await,
            Era::Auto => match self.discover(Some(DISCOVER_WAIT)).await {
                Ok(()) if self.era == Era::Stateless => Ok(()),
                Ok(()) => self.initialize().await,
                Err(e) => match e.kind() {
                    ErrorKind::Rpc { .. } | ErrorKind::HttpStatus(_) | ErrorKind::Protocol => {
                        self.initialize().await
                    }
                    ErrorKind::Timeout if !self.out_of_time() => self.initialize().await,
                    _ => Err(e),
                },
            },
        }
    }

    /// `initialize` (2025-11-25), then `notifications/initialized`.
    async fn initialize(&mut self) -> Result<(), Error> {
        self.era = Era::Handshake;
        let params = json!({
            "protocolVersion": LEGACY_LATEST,
            "capabilities": {},
            "clientInfo": {"name": self.opts.client_name, "version": self.opts.client_version}
        });
        let result = self.ask("initialize", "initialize", params, None).await?;
        self.version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(LEGACY_LATEST)
            .to_owned();
        self.handshake = result;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        within(
            self.bound(None),
            "initialize",
            self.wire.send(&note, "initialize"),
        )
        .await
    }

    /// `server/discover` (2026-07-28), retried once with the version a `-32022` names. Sets
    /// the stateless era if the server lists a version of it (or lists none); within `cap`.
    async fn discover(&mut self, cap: Option<Duration>) -> Result<(), Error> {
        let mut version = MODERN.to_owned();
        let mut tries = 0;
        let result = loop {
            tries += 1;
            self.era = Era::Stateless;
            self.version = version.clone();
            let asked = self
                .ask("server/discover", "server/discover", json!({}), cap)
                .await;
            let supported = match &asked {
                Err(e) => match e.kind() {
                    ErrorKind::Rpc {
                        code,
                        data: Some(d),
                        ..
                    } if code.as_i64() == Some(UNSUPPORTED_VERSION) => d
                        .pointer("/supported/0")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    _ => None,
                },
                Ok(_) => None,
            };
            match supported {
                Some(v) if tries < 2 => version = v,
                _ => break asked,
            }
        };
        self.era = Era::Handshake;
        let result = result?;
        let stateless = result
            .get("supportedVersions")
            .and_then(Value::as_array)
            .is_none_or(|vs| {
                vs.iter()
                    .filter_map(Value::as_str)
                    .any(|v| v > LEGACY_LATEST)
            });
        if stateless || self.opts.era == Era::Stateless {
            self.era = Era::Stateless;
        }
        self.handshake = result;
        Ok(())
    }

    /// Whether the whole conversation's budget is spent.
    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The `_meta` every stateless request carries.
    fn meta(&self) -> Value {
        json!({
            META_PROTOCOL_VERSION: self.version,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": self.opts.client_name, "version": self.opts.client_version},
        })
    }

    /// The tightest bound on the next wait, and the duration to report if it runs out: the
    /// rest of the conversation's budget, the per-request timeout, or `cap`.
    fn bound(&self, cap: Option<Duration>) -> Option<(Duration, Duration)> {
        let now = Instant::now();
        let overall = self
            .deadline
            .zip(self.opts.timeout)
            .map(|(d, t)| (d.saturating_duration_since(now), t));
        let per = self.opts.request_timeout.map(|t| (t, t));
        [overall, per, cap.map(|c| (c, c))]
            .into_iter()
            .flatten()
            .min_by_key(|(left, _)| *left)
    }

    /// Sends a request and waits (within the bound, and `cap`) for its result.
    async fn ask(
        &mut self,
        step: &str,
        method: &str,
        mut params: Value,
        cap: Option<Duration>,
    ) -> Result<Value, Error> {
        if self.era == Era::Stateless {
            let meta = self.meta();
            if let Value::Object(p) = &mut params {
                let slot = p
                    .entry("_meta")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let (Value::Object(into), Value::Object(from)) = (slot, meta) {
                    into.extend(from);
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        within(self.bound(cap), step, self.exchange(id, &msg, step)).await
    }

    /// Sends `msg` and reads until the answer with `id`, skipping notifications and other
    /// answers, and answering the server's own requests.
    async fn exchange(&mut self, id: u64, msg: &Value, step: &str) -> Result<Value, Error> {
        self.wire.send(msg, step).await?;
        loop {
            let msg = self.wire.recv(step).await?;
            if let Some(m) = msg.get("method").and_then(Value::as_str) {
                if let Some(rid) = msg.get("id") {
                    let reply = if m == "ping" {
                        json!({"jsonrpc": "2.0", "id": rid, "result": {}})
                    } else {
                        json!({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601,
                            "message": format!("{} does not support {m}", self.opts.client_name)}})
                    };
                    self.wire.send(&reply, step).await?;
                }
                continue;
            }
            if msg.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(err) = msg.get("error") {
                return Err(Error::rpc(step, err));
            }
            return msg.get("result").cloned().ok_or_else(|| {
                Error::protocol(format!(
                    "the server's answer to {step} has neither result nor error"
                ))
            });
        }
    }
}

/// Runs `fut` within `bound` (what is left, and the duration to report); running out is a
/// timeout of `step`.
async fn within<T>(
    bound: Option<(Duration, Duration)>,
    step: &str,
    fut: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match bound {
        None => fut.await,
        Some((left, after)) => tokio::time::timeout(left, fut)
            .await
            .unwrap_or_else(|_| Err(Error::timeout(after, step))),
    }
}
