//! The HTTP face: `/mcp/<server>` (Streamable HTTP, both MCP eras), `/healthz`, `/readyz`.
//!
//! Order of checks on every request (spec §4.4): `Host`/`Origin` (403), the server (404),
//! the bearer token (401/403), the body cap (413), then the era:
//!
//! - a POST whose `params._meta` carries `io.modelcontextprotocol/protocolVersion` is a
//!   stateless (2026-07-28) request: its `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name`
//!   headers must agree with the body (400 + `-32020`), and it goes to the server's one shared
//!   upstream connection;
//! - a POST with `Mcp-Session-Id` belongs to a handshake-era session (404 if unknown);
//! - a POST of `initialize` opens such a session: one upstream child per session, so the
//!   server sees this client's own capabilities;
//! - GET opens the session's stream for messages not tied to a request; DELETE ends it.
//!
//! A request is answered with `application/json` when the upstream's first word is the
//! answer, and as an SSE stream when related messages (progress, server requests) come
//! first and the client accepts `text/event-stream`.

use crate::config::{expand_env, Auth, Config};
use crate::connection::Connection;
use crate::events::Events;
use crate::relay::{Caller, Relay, RelayConfig};
use crate::upstream::stdio::ChildSpec;
use crate::upstream::UpstreamSpec;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use portcullis_mcp::{codes, error_line, Kind, Message, ParseError, META_PROTOCOL_VERSION};
use portcullis_policy::{CounterStore, Engine};
use portcullis_store::{
    bearer_token, ApprovalStore, AuditDecision, AuditLog, AuditRecord, AuthError, GrantStore,
};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use crate::resume::{EventLog, Resumed, SseItem};

const SESSION_HEADER: &str = "mcp-session-id";

/// Requests of the handshake era that do not exist in the stateless one.
const REMOVED_IN_MODERN: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// Named policies: compiled engine and version hash.
pub type Policies = HashMap<String, (Arc<Engine>, String)>;

/// The running HTTP gateway's shared state.
pub struct Gateway {
    servers: HashMap<String, Arc<ServerRt>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    store: Arc<dyn CounterStore>,
    /// Named policies: compiled engine and version hash. Swapped whole on reload.
    policies: std::sync::RwLock<Arc<Policies>>,
    grants: Option<Arc<dyn GrantStore>>,
    audit: Option<Arc<AuditLog>>,
    /// Where every decision, refusal and reload is emitted (the audit log, for now).
    events: Events,
    approvals: Option<Arc<dyn ApprovalStore>>,
    on_new_approval: Option<crate::relay::ApprovalHook>,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    timeout: Duration,
    next: AtomicU64,
}

struct ServerRt {
    name: String,
    spec: UpstreamSpec,
    audit_arguments: bool,
    /// Hold-open for calls needing approval, ms (0: off).
    hold_ms: u64,
    auth: Auth,
    tokens: Vec<(String, String)>,
    modern: tokio::sync::OnceCell<Arc<Conn>>,
    /// Which eras the upstream speaks (probed once with `server/discover`).
    era: tokio::sync::OnceCell<Era>,
    /// Handshake-era sessions opened for stateless clients (bridge), per grant and declared
    /// client capabilities.
    bridges: tokio::sync::Mutex<HashMap<String, Arc<Bridge>>>,
}

/// What an upstream speaks.
#[derive(Clone, Debug)]
enum Era {
    /// Handshake era only (answers `server/discover` with an error, or not at all).
    Legacy,
    /// 2026-07-28 (perhaps the handshake era too: `supportedVersions` lists only stateless
    /// versions, so a handshake is tried first); its `server/discover` result.
    Modern(Value),
}

/// A handshake-era upstream session serving stateless (2026-07-28) clients.
struct Bridge {
    conn: Arc<Conn>,
    /// The upstream's `initialize` result (capabilities, serverInfo, instructions).
    init: Value,
}

/// One upstream connection and the routing of what it sends to the client side.
struct Conn {
    link: Arc<Connection>,
    router: Arc<Routes>,
}

struct Session {
    server: Arc<ServerRt>,
    caller: Caller,
    conn: Arc<Conn>,
    /// A handshake-era session bridged to a 2026-07-28-only upstream: the `_meta` each request
    /// is sent with (protocol version, the client's capabilities and info from `initialize`).
    bridged: Option<Value>,
}

/// Routes client-bound lines of one connection: answers and progress to the request's
/// stream; anything else to the single request in flight, else the GET stream, else a
/// bounded backlog the next GET receives. Locks nest only in the order `get`, `events`,
/// `backlog`.
#[derive(Default)]
struct Routes {
    waiters: Mutex<HashMap<String, UnboundedSender<String>>>,
    tokens: Mutex<HashMap<String, String>>,
    get: Mutex<Option<GetSink>>,
    backlog: Mutex<VecDeque<String>>,
    stream_all: std::sync::atomic::AtomicBool,
    /// The numbered, resumable streams of a handshake-era session.
    events: Mutex<EventLog>,
}

/// Where the connection's unsolicited messages go.
enum GetSink {
    /// A stream without ids (legacy HTTP+SSE).
    Plain(UnboundedSender<SseItem>),
    /// Resumable GET stream `n` of the event log (kept there even when the client is gone).
    Logged(u64),
}

/// Reconnection delay announced in priming events.
const SSE_RETRY: Duration = Duration::from_secs(1);

impl Routes {
    fn route(&self, line: String) {
        let (related, text) = crate::upstream::untag(&line);
        let related = related.map(str::to_owned);
        let line = if related.is_some() {
            text.to_owned()
        } else {
            line
        };
        let Ok(msg) = Message::parse(&line) else {
            return;
        };
        let target = match msg.kind() {
            Kind::Response => msg
                .id()
                .and_then(|id| self.waiters.lock().unwrap().remove(id.get())),
            Kind::Notification if subscription_of(&msg).is_some() => {
                let id = subscription_of(&msg).expect("checked");
                self.waiters.lock().unwrap().get(&id).cloned()
            }
            Kind::Notification if msg.method() == Some("notifications/progress") => {
                let token = msg
                    .value("params")
                    .and_then(|p| p.get("progressToken").map(Value::to_string));
                let id = token.and_then(|t| self.tokens.lock().unwrap().get(&t).cloned());
                id.and_then(|id| self.waiters.lock().unwrap().get(&id).cloned())
            }
            // Carried on one request's answer stream: that request's, or nobody's (its
            // client has gone; on a connection shared by many clients, no other may see it).
            // A legacy SSE session has no waiters: all of its messages go on its one stream.
            _ if related.is_some() && !self.stream_all.load(Ordering::Relaxed) => {
                let w = self.waiters.lock().unwrap();
                match related.as_deref().and_then(|id| w.get(id)) {
                    Some(tx) => Some(tx.clone()),
                    None => return,
                }
            }
            _ => {
                let w = self.waiters.lock().unwrap();
                if w.len() == 1 {
                    w.values().next().cloned()
                } else {
                    None
                }
            }
        };
        if let Some(tx) = target {
            if tx.send(line.clone()).is_ok() {
                return;
            }
        }
        if msg.kind() == Kind::Response && !self.stream_all.load(Ordering::Relaxed) {
            // An answer nobody waits for (cancelled, timed out): drop it. (A legacy SSE
            // session has no waiters: everything, answers included, goes on its stream.)
            return;
        }
        let mut get = self.get.lock().unwrap();
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
                self.events.lock().unwrap().send(*no, line);
                return;
            }
            None => {}
        }
        let mut b = self.backlog.lock().unwrap();
        if b.len() >= 1000 {
            b.pop_front();
        }
        b.push_back(line);
    }

    fn wait_for(&self, id: &str, token: Option<String>) -> UnboundedReceiver<String> {
        let (tx, rx) = unbounded_channel();
        self.waiters.lock().unwrap().insert(id.to_owned(), tx);
        if let Some(t) = token {
            self.tokens.lock().unwrap().insert(t, id.to_owned());
        }
        rx
    }

    fn forget(&self, id: &str) {
        self.waiters.lock().unwrap().remove(id);
        self.tokens.lock().unwrap().retain(|_, v| v != id);
    }
}

fn subscription_of(msg: &Message) -> Option<String> {
    msg.value("params")?
        .pointer("/_meta/io.modelcontextprotocol~1subscriptionId")
        .map(Value::to_string)
}

fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("the OS random source is readable");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Gateway {
    /// Reads and compiles one policy file; its version hash is the SHA-256 of its bytes.
    fn load_policy_file(
        name: &str,
        path: &std::path::Path,
    ) -> Result<(Arc<Engine>, String), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("policy {name:?}: cannot read {}: {e}", path.display()))?;
        let engine = Engine::from_json(&text).map_err(|errs| {
            let list: Vec<String> = errs
                .iter()
                .map(|e| format!("  {}: {e}", path.display()))
                .collect();
            format!("policy {name:?} is invalid:\n{}", list.join("\n"))
        })?;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(text.as_bytes());
        let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok((Arc::new(engine), hash))
    }

    /// Builds the gateway from a checked config: loads every policy (an invalid policy is an
    /// error, never a silent allow).
    pub fn new(
        cfg: &Config,
        store: Arc<dyn CounterStore>,
        grants: Option<Arc<dyn GrantStore>>,
        audit: Option<Arc<AuditLog>>,
        approvals: Option<Arc<dyn ApprovalStore>>,
    ) -> Result<Arc<Gateway>, String> {
        let policies = Self::load_policies(cfg)?;
        let mut servers = HashMap::new();
        for s in &cfg.servers {
            let mut env = Vec::new();
            for (k, v) in &s.env {
                env.push((
                    k.clone(),
                    expand_env(v).map_err(|e| format!("server {:?}: env.{k}: {e}", s.name))?,
                ));
            }
            let mut tokens = Vec::new();
            for t in &s.tokens {
                tokens.push((
                    t.label.clone(),
                    expand_env(&t.token)
                        .map_err(|e| format!("server {:?}: token {:?}: {e}", s.name, t.label))?,
                ));
            }
            let spec = match (&s.command, &s.url) {
                (Some(command), _) => UpstreamSpec::Command(ChildSpec {
                    argv: command.clone(),
                    env,
                }),
                (None, Some(url)) => {
                    let mut headers = Vec::new();
                    for (k, v) in &s.headers {
                        headers.push((
                            k.clone(),
                            expand_env(v)
                                .map_err(|e| format!("server {:?}: headers.{k}: {e}", s.name))?,
                        ));
                    }
                    // Refuse header injection (CR/LF, control characters) at load, not at first use.
                    for (k, v) in &headers {
                        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                            || reqwest::header::HeaderValue::from_str(v).is_err()
                        {
                            return Err(format!("server {:?}: headers.{k} is not a valid HTTP header (control characters or line breaks are refused)", s.name));
                        }
                    }
                    UpstreamSpec::for_url(url.clone(), headers)
                }
                (None, None) => return Err(format!("server {:?}: give command or url", s.name)),
            };
            let rt = ServerRt {
                name: s.name.clone(),
                spec,
                audit_arguments: s.audit_arguments,
                hold_ms: s
                    .hold
                    .as_deref()
                    .and_then(portcullis_policy::window::parse_duration)
                    .unwrap_or(0),
                auth: s.auth,
                tokens,
                modern: tokio::sync::OnceCell::new(),
                era: tokio::sync::OnceCell::new(),
                bridges: tokio::sync::Mutex::new(HashMap::new()),
            };
            servers.insert(s.name.clone(), Arc::new(rt));
        }
        let mut allowed_hosts = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "[::1]".to_string(),
        ];
        allowed_hosts.extend(cfg.gateway.allowed_hosts.iter().cloned());
        Ok(Arc::new(Gateway {
            servers,
            sessions: Mutex::new(HashMap::new()),
            store,
            policies: std::sync::RwLock::new(Arc::new(policies)),
            grants,
            events: Events::audit(audit.clone()),
            audit,
            approvals,
            on_new_approval: match &cfg.gateway.approval_webhook {
                None => None,
                Some(url) => {
                    let secret =
                        expand_env(cfg.gateway.approval_webhook_secret.as_deref().unwrap_or(""))?;
                    let hook = Arc::new(crate::webhook::Webhook::new(url, &secret)?);
                    let f: Arc<dyn Fn(&portcullis_store::Approval) + Send + Sync> =
                        Arc::new(move |a: &portcullis_store::Approval| {
                            hook.notify(
                                "approval.requested",
                                serde_json::to_value(a).unwrap_or(Value::Null),
                            );
                        });
                    Some(f)
                }
            },
            allowed_hosts,
            allowed_origins: cfg.gateway.allowed_origins.clone(),
            timeout: Duration::from_secs(cfg.gateway.request_timeout_secs),
            next: AtomicU64::new(1),
        }))
    }

    /// The axum router.
    pub fn router(self: &Arc<Self>, max_body: usize) -> axum::Router<()> {
        axum::Router::new()
            .route("/mcp/{server}", any(mcp))
            .route("/mcp", any(mcp_default))
            .route("/sse/{server}", get(sse_open))
            .route("/sse/{server}/messages", axum::routing::post(sse_message))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(|| async { "ready\n" }))
            .layer(DefaultBodyLimit::max(max_body))
            .with_state(self.clone())
    }

    /// Stops every upstream child.
    pub async fn shutdown(&self) {
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .unwrap()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in sessions {
            s.conn.link.shutdown(Duration::from_secs(2)).await;
        }
        for s in self.servers.values() {
            if let Some(c) = s.modern.get() {
                c.link.shutdown(Duration::from_secs(2)).await;
            }
            let bridges: Vec<Arc<Bridge>> =
                s.bridges.lock().await.drain().map(|(_, b)| b).collect();
            for b in bridges {
                b.conn.link.shutdown(Duration::from_secs(2)).await;
            }
        }
    }

    async fn connect(&self, server: &ServerRt) -> std::io::Result<Arc<Conn>> {
        let relay = Arc::new(Relay::new(RelayConfig {
            store: self.store.clone(),
            server: server.name.clone(),
            clock: crate::relay::system_clock,
            audit: !self.events.is_empty(),
            approvals: self.approvals.clone(),
            on_new_approval: self.on_new_approval.clone(),
            hold_ms: server.hold_ms,
        }));
        let (tx, mut rx) = unbounded_channel();
        let link = Connection::start(&server.spec, relay, tx, self.audit_sink(server)).await?;
        if link.http().is_some() {
            // What arrives on one request's answer stream goes to that request only.
            link.tag_related();
        }
        let router = Arc::new(Routes::default());
        let r = router.clone();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                r.route(line);
            }
        });
        Ok(Arc::new(Conn { link, router }))
    }

    /// The `Host`/`Origin` rule of every face (DNS rebinding, cross-site requests): loopback
    /// names and the configured `allowed_hosts`/`allowed_origins`.
    pub fn host_ok(&self, headers: &HeaderMap) -> bool {
        let strip_port = |h: &str| -> String {
            if let Some(rest) = h.strip_prefix('[') {
                return format!("[{}]", rest.split(']').next().unwrap_or_default());
            }
            h.rsplit_once(':')
                .map_or(h, |(host, port)| {
                    if port.bytes().all(|b| b.is_ascii_digit()) {
                        host
                    } else {
                        h
                    }
                })
                .to_string()
        };
        if let Some(host) = headers.get("host").and_then(|h| h.to_str().ok()) {
            if !self
                .allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&strip_port(host)))
            {
                return false;
            }
        }
        if let Some(origin) = headers.get("origin").and_then(|h| h.to_str().ok()) {
            if self.allowed_origins.iter().any(|o| o == origin) {
                return true;
            }
            let host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
            if !self
                .allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&strip_port(host)))
            {
                return false;
            }
        }
        true
    }

    /// Who is calling: the grant behind the bearer token (or a static token, or the local
    /// user for `auth = "none"`), with the policy that grant carries. Refusals are audited.
    async fn caller(
        &self,
        server: &ServerRt,
        headers: &HeaderMap,
    ) -> Result<Caller, Box<Response>> {
        let session_id = format!("http-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let policies = self.policies();
        let server_engine = policies.get(&server.name).map(|(e, _)| e.clone());
        let server_policy = || {
            policies
                .get(&server.name)
                .map(|(_, h)| (server.name.clone(), h.clone()))
        };
        match server.auth {
            Auth::None => Ok(Caller {
                engine: server_engine.clone(),
                grant_id: "local".into(),
                grant_label: "local".into(),
                session_id,
                policy: server_policy(),
                request_id: None,
            }),
            Auth::Token => {
                let header = headers.get("authorization").and_then(|h| h.to_str().ok());
                let token = match bearer_token(header) {
                    Ok(t) => t,
                    Err(e) => return Err(self.refuse(server, e, None).await),
                };
                // Compare against every token in constant time; no early exit reveals which matched.
                let mut found: Option<&str> = None;
                for (label, t) in &server.tokens {
                    let eq: bool =
                        subtle::ConstantTimeEq::ct_eq(t.as_bytes(), token.as_bytes()).into();
                    if eq {
                        found = Some(label);
                    }
                }
                match found {
                    Some(label) => Ok(Caller {
                        engine: server_engine.clone(),
                        grant_id: format!("static:{label}"),
                        grant_label: label.to_owned(),
                        session_id,
                        policy: server_policy(),
                        request_id: None,
                    }),
                    None => Err(self.refuse(server, AuthError::Unknown, None).await),
                }
            }
            Auth::Grant => {
                let Some(grants) = &self.grants else {
                    return Err(self
                        .refuse(
                            server,
                            AuthError::Store("no grant store is configured".into()),
                            None,
                        )
                        .await);
                };
                let header = headers.get("authorization").and_then(|h| h.to_str().ok());
                let token = match bearer_token(header) {
                    Ok(t) => t,
                    Err(e) => return Err(self.refuse(server, e, None).await),
                };
                match grants.authenticate(token, &server.name, crate::relay::system_clock()) {
                    Ok(g) => {
                        let policy = g.policy.as_ref().and_then(|name| {
                            policies
                                .get(name)
                                .map(|(e, h)| (e.clone(), (name.clone(), h.clone())))
                        });
                        if g.policy.is_some() && policy.is_none() {
                            tracing::warn!(grant = %g.id, "grant names policy {:?}, which is not configured: every call is denied", g.policy);
                        }
                        let (engine, policy) = match policy {
                            Some((e, p)) => (Some(e), Some(p)),
                            None => (None, None),
                        };
                        Ok(Caller {
                            engine,
                            grant_id: g.id,
                            grant_label: g.label,
                            session_id,
                            policy,
                            request_id: None,
                        })
                    }
                    Err(e) => Err(self.refuse(server, e, None).await),
                }
            }
        }
    }

    /// Names of the configured servers, sorted.
    pub fn server_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.servers.keys().cloned().collect();
        v.sort();
        v
    }

    /// How a server is reached (for listing its tools).
    pub fn server_spec(&self, name: &str) -> Option<UpstreamSpec> {
        self.servers.get(name).map(|s| s.spec.clone())
    }

    /// The grant store, when grants are in use.
    pub fn grants(&self) -> Option<&Arc<dyn GrantStore>> {
        self.grants.as_ref()
    }

    /// The audit log, unless auditing is off.
    pub fn audit_log(&self) -> Option<&Arc<AuditLog>> {
        self.audit.as_ref()
    }

    /// The counter store.
    pub fn counters(&self) -> &Arc<dyn CounterStore> {
        &self.store
    }

    /// The policies in force now.
    pub fn policies(&self) -> Arc<Policies> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A session's caller with the policy as it stands now (hot reload applies to the next
    /// request of an open session too).
    fn current(&self, c: &Caller) -> Caller {
        let mut c = c.clone();
        if let Some((name, _)) = &c.policy {
            match self.policies().get(name) {
                Some((e, h)) => {
                    c.engine = Some(e.clone());
                    c.policy = Some((name.clone(), h.clone()));
                }
                None => c.engine = None,
            }
        }
        c
    }

    /// Every named policy of a config (each server's own under its name, then `[policies]`),
    /// compiled; the first invalid one is an error with the validator's messages.
    pub fn load_policies(cfg: &Config) -> Result<Policies, String> {
        let mut policies = HashMap::new();
        let named = cfg
            .servers
            .iter()
            .filter_map(|s| s.policy.as_ref().map(|p| (s.name.clone(), p.clone())))
            .chain(cfg.policies.iter().map(|(n, p)| (n.clone(), p.clone())));
        for (name, p) in named {
            let path = cfg.resolve(&p);
            policies.insert(name.clone(), Self::load_policy_file(&name, &path)?);
        }
        Ok(policies)
    }

    /// Hot reload: re-reads the config file and every policy it names, and swaps the policies
    /// in for the next request; or, when anything is invalid, keeps the running ones and
    /// returns the messages. Either way an audit record says what happened. Open connections
    /// and counters are kept. (Server definitions — commands, URLs, tokens — take effect on
    /// restart.)
    pub async fn reload_from(&self, config: &std::path::Path) -> Result<usize, String> {
        let outcome = Config::load(config).and_then(|cfg| Self::load_policies(&cfg));
        let (decision, message) = match &outcome {
            Ok(p) => (
                AuditDecision::Allow,
                format!("reloaded {} policies from {}", p.len(), config.display()),
            ),
            Err(e) => (
                AuditDecision::Error,
                format!("reload rejected, previous configuration kept: {e}"),
            ),
        };
        if !self.events.is_empty() {
            let mut rec = AuditRecord::new(
                crate::relay::system_clock(),
                "(gateway)",
                "(reload)",
                decision,
            );
            rec.message = Some(message);
            self.events.record(rec).await;
        }
        let policies = outcome?;
        let n = policies.len();
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policies);
        Ok(n)
    }

    /// Answers a refused authentication (401/403/503 with a JSON body saying which) after
    /// writing its audit record.
    async fn refuse(&self, server: &ServerRt, e: AuthError, _why: Option<&str>) -> Box<Response> {
        if !self.events.is_empty() {
            let mut rec = AuditRecord::new(
                crate::relay::system_clock(),
                server.name.clone(),
                "(authentication)",
                AuditDecision::Deny,
            );
            rec.rule = Some(format!("(auth: {})", e.code()));
            rec.message = Some(e.to_string());
            if let Some(g) = e.grant() {
                rec.grant_id = Some(g.id.clone());
                rec.grant_label = Some(g.label.clone());
            }
            self.events.record(rec).await;
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        Box::new(json_status(status, e.body()))
    }

    fn audit_sink(&self, server: &ServerRt) -> Option<Events> {
        (!self.events.is_empty()).then(|| self.events.for_server(server.audit_arguments))
    }
}

/// 502 with a JSON-RPC error for `msg`: the upstream could not be started or reached.
fn upstream_unavailable(msg: &Message, e: &std::io::Error) -> Response {
    rpc_status(
        StatusCode::BAD_GATEWAY,
        error_line(
            msg.id(),
            codes::INTERNAL_ERROR,
            &format!("cannot start the upstream server: {e}"),
        ),
    )
}

fn json_status(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn rpc_status(status: StatusCode, line: String) -> Response {
    (status, [("content-type", "application/json")], line).into_response()
}

fn parse_error_response(e: &ParseError) -> Response {
    let (code, id) = match e {
        ParseError::NotJson(_) => (codes::PARSE_ERROR, None),
        ParseError::Batch => (codes::INVALID_REQUEST, None),
        ParseError::Invalid { id, .. } => (codes::INVALID_REQUEST, id.as_deref()),
    };
    rpc_status(
        StatusCode::BAD_REQUEST,
        error_line(id, code, &format!("{e}; nothing was forwarded")),
    )
}

/// A body that is not a message we can handle, from an admitted caller: audited (as the
/// relay audits a bad line on stdio), then answered with [`parse_error_response`]. Nothing is
/// forwarded.
async fn refuse_invalid(gw: &Gateway, server: &str, caller: &Caller, e: &ParseError) -> Response {
    if !gw.events.is_empty() {
        let mut rec = AuditRecord::new(
            crate::relay::system_clock(),
            server,
            "(invalid message)",
            AuditDecision::Deny,
        );
        rec.rule = Some("(invalid message)".into());
        rec.message = Some(e.to_string());
        rec.grant_id = Some(caller.grant_id.clone());
        rec.grant_label = Some(caller.grant_label.clone());
        if gw.events.emit(rec, None).await.is_err() {
            return rpc_status(
                StatusCode::SERVICE_UNAVAILABLE,
                error_line(None, codes::INTERNAL_ERROR, "the audit log is unavailable"),
            );
        }
    }
    parse_error_response(e)
}

fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all("accept")
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/event-stream")))
}

/// The checks every request passes first, in the spec's order: `Host`/`Origin` (403), the
/// server (404), the bearer token (401/403, audited).
async fn admit(
    gw: &Arc<Gateway>,
    server: &str,
    headers: &HeaderMap,
) -> Result<(Arc<ServerRt>, Caller), Box<Response>> {
    if !gw.host_ok(headers) {
        if !gw.events.is_empty() {
            let mut rec = AuditRecord::new(
                crate::relay::system_clock(),
                server,
                "(authentication)",
                AuditDecision::Deny,
            );
            rec.rule = Some("(forbidden origin)".into());
            let h = |k: &str| {
                headers
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .chars()
                    .take(200)
                    .collect::<String>()
            };
            rec.message = Some(format!("Host {:?}, Origin {:?}", h("host"), h("origin")));
            gw.events.record(rec).await;
        }
        return Err(Box::new(json_status(
            StatusCode::FORBIDDEN,
            json!({"error": "forbidden_origin", "message": "This Host or Origin is not allowed to reach the gateway."}),
        )));
    }
    let Some(srv) = gw.servers.get(server).cloned() else {
        return Err(Box::new(json_status(
            StatusCode::NOT_FOUND,
            json!({"error": "unknown_server", "message": format!("No server named {server:?} is configured.")}),
        )));
    };
    let caller = gw.caller(&srv, headers).await?;
    Ok((srv, caller))
}

/// `/mcp` without a server name: the only configured server, when there is exactly one
/// (some clients, such as the Inspector CLI, always post to `/mcp`).
async fn mcp_default(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if gw.servers.len() != 1 {
        let mut names: Vec<&String> = gw.servers.keys().collect();
        names.sort();
        return json_status(
            StatusCode::NOT_FOUND,
            json!({"error": "unknown_server", "message": format!("Name the server in the path, /mcp/<server>; configured: {names:?}")}),
        );
    }
    let name = gw.servers.keys().next().expect("one").clone();
    mcp(State(gw), Path(name), method, headers, body).await
}

async fn mcp(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (srv, caller) = match admit(&gw, &server, &headers).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let session_id = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let session = |id: &str| -> Option<Arc<Session>> {
        let s = gw.sessions.lock().unwrap().get(id).cloned()?;
        // A session answers only its own server and grant.
        (s.server.name == srv.name && s.caller.grant_id == caller.grant_id).then_some(s)
    };
    match method {
        Method::GET => match session_id {
            None => StatusCode::METHOD_NOT_ALLOWED.into_response(),
            Some(id) => match session(&id) {
                None => StatusCode::NOT_FOUND.into_response(),
                // A bridged session rides the server's shared stateless connection: it has
                // no stream of its own, and others' unsolicited messages must not reach it.
                Some(s) if s.bridged.is_some() => StatusCode::METHOD_NOT_ALLOWED.into_response(),
                Some(s) => get_stream(&s, &headers).into_response(),
            },
        },
        Method::DELETE => match session_id {
            None => StatusCode::METHOD_NOT_ALLOWED.into_response(),
            Some(id) => match session(&id) {
                None => StatusCode::NOT_FOUND.into_response(),
                Some(s) => {
                    gw.sessions.lock().unwrap().remove(&id);
                    // A bridged session rides the server's shared stateless connection.
                    if s.bridged.is_none() {
                        s.conn.link.shutdown(Duration::from_secs(2)).await;
                    }
                    StatusCode::NO_CONTENT.into_response()
                }
            },
        },
        Method::POST => {
            let Ok(text) = std::str::from_utf8(&body) else {
                return rpc_status(
                    StatusCode::BAD_REQUEST,
                    error_line(
                        None,
                        codes::PARSE_ERROR,
                        "the body is not UTF-8; nothing was forwarded",
                    ),
                );
            };
            let msg = match Message::parse(text) {
                Ok(m) => m,
                Err(e) => return refuse_invalid(&gw, &srv.name, &caller, &e).await,
            };
            let params = msg.value("params");
            let modern_version = params
                .as_ref()
                .and_then(|p| p.pointer("/_meta"))
                .and_then(|m| m.get(META_PROTOCOL_VERSION))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(v) = modern_version {
                return modern_post(&gw, &srv, caller, msg, params, &v, &headers).await;
            }
            // A 2026-07-28 header without the matching `_meta`: a modern request missing its
            // required keys (never a legacy one, which has no such header before initialize).
            let header_version = header(&headers, "mcp-protocol-version")
                .filter(|v| *v >= portcullis_mcp::MODERN)
                .map(str::to_owned);
            if let (Some(v), None) = (header_version, &session_id) {
                if msg.kind() == Kind::Request {
                    return rpc_status(
                        StatusCode::BAD_REQUEST,
                        error_line(msg.id(), codes::INVALID_PARAMS, "params._meta must carry io.modelcontextprotocol/protocolVersion and io.modelcontextprotocol/clientCapabilities"),
                    );
                }
                return modern_post(&gw, &srv, caller, msg, params, &v, &headers).await;
            }
            if let Some(id) = session_id {
                return match session(&id) {
                    None => rpc_status(
                        StatusCode::NOT_FOUND,
                        error_line(
                            msg.id(),
                            codes::INVALID_REQUEST,
                            "Unknown or ended session; initialize again.",
                        ),
                    ),
                    Some(s) if s.bridged.is_some() => {
                        bridged_legacy_post(&gw, &s, msg, params, &headers).await
                    }
                    Some(s) => legacy_post(&gw, &s, msg, text, &headers, None).await,
                };
            }
            if msg.kind() == Kind::Request && msg.method() == Some("initialize") {
                return open_session(&gw, srv, caller, msg, text, &headers).await;
            }
            rpc_status(StatusCode::BAD_REQUEST, error_line(msg.id(), codes::INVALID_REQUEST, "Missing Mcp-Session-Id: send initialize first (or a 2026-07-28 request with _meta)."))
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// `initialize` without a session: a new handshake-era session with its own upstream
/// connection, so the server sees this client's capabilities. When the upstream speaks
/// 2026-07-28 and refuses the handshake, the session is bridged instead: `initialize` is
/// answered from the upstream's `server/discover`, and every later request goes out stateless,
/// with the `_meta` this handshake declared.
async fn open_session(
    gw: &Arc<Gateway>,
    srv: Arc<ServerRt>,
    caller: Caller,
    msg: Message,
    text: &str,
    headers: &HeaderMap,
) -> Response {
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
        });
        gw.sessions.lock().unwrap().insert(id.clone(), s.clone());
        return legacy_post(gw, &s, msg, text, headers, Some(id)).await;
    };
    // Try the handshake; keep the answer unless the server refuses it.
    let client_id = msg.id().expect("request").get().to_owned();
    let mut rx = conn.router.wait_for(&client_id, None);
    conn.link.from_client(text, &caller).await;
    let mut answer = None;
    while let Ok(Some(l)) = tokio::time::timeout(gw.timeout, rx.recv()).await {
        if let Some(m) = is_response(&l) {
            answer = Some((m, l));
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
            });
            gw.sessions.lock().unwrap().insert(id.clone(), s);
            with_session(rpc_status(StatusCode::OK, line))
        }
        Some(_) => {
            // Refused: bridge this session over the shared stateless connection.
            conn.link.shutdown(Duration::from_secs(2)).await;
            let Ok(shared) = srv.modern.get_or_try_init(|| gw.connect(&srv)).await else {
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
                conn: shared.clone(),
                bridged: Some(meta),
            });
            gw.sessions.lock().unwrap().insert(id.clone(), s);
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
async fn bridged_legacy_post(
    gw: &Gateway,
    s: &Session,
    mut msg: Message,
    params: Option<Value>,
    headers: &HeaderMap,
) -> Response {
    let caller = gw.current(&s.caller);
    let method = msg.method().unwrap_or_default().to_owned();
    if msg.kind() != Kind::Request {
        if !crate::bridge::dropped(&method) && msg.kind() == Kind::Notification {
            s.conn.link.from_client(&msg.to_json(), &caller).await;
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
    let p = crate::bridge::with_meta(params, s.bridged.as_ref().unwrap_or(&Value::Null));
    msg.set_value("params", &p);
    forward_stateless(gw, &s.conn, caller, msg, Some(p), headers, Vec::new(), None).await
}

/// `GET` on a handshake-era session: with a `Last-Event-ID` the log knows, the stream it names
/// resumed (what followed that event, then the rest live); otherwise a new GET stream that
/// carries the session's unsolicited messages, starting with those nobody received yet.
fn get_stream(
    s: &Session,
    headers: &HeaderMap,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let router = &s.conn.router;
    let (tx, rx) = unbounded_channel();
    // Lock order everywhere: get, then events, then backlog.
    let mut get = router.get.lock().unwrap();
    let mut log = router.events.lock().unwrap();
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
            pending.extend(router.backlog.lock().unwrap().drain(..));
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
fn primes(headers: &HeaderMap) -> bool {
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

async fn legacy_post(
    gw: &Gateway,
    s: &Session,
    msg: Message,
    text: &str,
    headers: &HeaderMap,
    new_session: Option<String>,
) -> Response {
    let caller = gw.current(&s.caller);
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
    let mut resp = answer(gw, &s.conn, rx, &id, stream, None, None).await;
    if let Some(sid) = new_session {
        resp.headers_mut()
            .insert(SESSION_HEADER, HeaderValue::from_str(&sid).expect("hex"));
    }
    resp
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn modern_post(
    gw: &Gateway,
    srv: &ServerRt,
    caller: Caller,
    msg: Message,
    params: Option<Value>,
    version: &str,
    headers: &HeaderMap,
) -> Response {
    let mismatch = |what: &str| {
        rpc_status(
            StatusCode::BAD_REQUEST,
            error_line(msg.id(), -32020, &format!("Header mismatch: {what}")),
        )
    };
    match header(headers, "mcp-protocol-version") {
        Some(h) if h == version => {}
        Some(h) => {
            return mismatch(&format!(
                "MCP-Protocol-Version {h:?} differs from _meta {version:?}"
            ))
        }
        None => return mismatch("MCP-Protocol-Version header is missing"),
    }
    let method = msg.method().unwrap_or_default().to_owned();
    if msg.kind() == Kind::Request && REMOVED_IN_MODERN.contains(&method.as_str()) {
        // Gone in 2026-07-28 whatever the upstream is: answer as a modern server must.
        return rpc_status(
            StatusCode::NOT_FOUND,
            error_line(
                msg.id(),
                codes::METHOD_NOT_FOUND,
                &format!("{method} does not exist in protocol version {version}"),
            ),
        );
    }
    if msg.kind() == Kind::Request {
        match header(headers, "mcp-method") {
            Some(h) if h == method => {}
            Some(h) => {
                return mismatch(&format!(
                    "Mcp-Method {h:?} differs from the body's method {method:?}"
                ))
            }
            None => return mismatch("Mcp-Method header is missing"),
        }
        let name_key = match method.as_str() {
            "tools/call" | "prompts/get" => Some("name"),
            "resources/read" => Some("uri"),
            _ => None,
        };
        if let Some(k) = name_key {
            let body_name = params
                .as_ref()
                .and_then(|p| p.get(k))
                .and_then(Value::as_str);
            match (header(headers, "mcp-name"), body_name) {
                (Some(h), Some(b)) if h == b => {}
                (h, b) => {
                    return mismatch(&format!("Mcp-Name {h:?} differs from params.{k} {b:?}"))
                }
            }
        }
    }
    // Mcp-Param-* headers travel on to an HTTP upstream unchanged (policy reads the body).
    let params_headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("mcp-param-"))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    if matches!(era_of(gw, srv).await, Era::Legacy) {
        return bridge_post(gw, srv, caller, msg, params, headers).await;
    }
    let conn = match srv.modern.get_or_try_init(|| gw.connect(srv)).await {
        Ok(c) => c.clone(),
        Err(e) => return upstream_unavailable(&msg, &e),
    };
    if msg.kind() != Kind::Request {
        conn.link
            .from_client_with(&msg.to_json(), &caller, params_headers)
            .await;
        return StatusCode::ACCEPTED.into_response();
    }
    forward_stateless(
        gw,
        &conn,
        caller,
        msg,
        params,
        headers,
        params_headers,
        None,
    )
    .await
}

/// Sends one stateless request on a connection many clients share: the request gets an id and
/// progress token unique on it, and the client's own come back on the answer. `bridged`
/// (the method) marks an answer from a handshake-era upstream, which gets the stateless era's
/// result fields.
#[allow(clippy::too_many_arguments)]
async fn forward_stateless(
    gw: &Gateway,
    conn: &Arc<Conn>,
    mut caller: Caller,
    mut msg: Message,
    params: Option<Value>,
    headers: &HeaderMap,
    params_headers: Vec<(String, String)>,
    bridged: Option<String>,
) -> Response {
    let original_id = msg.id().expect("request").to_owned();
    caller.request_id = Some(original_id.get().to_owned());
    let ours = format!("\"h{}\"", gw.next.fetch_add(1, Ordering::Relaxed));
    let ours_raw = serde_json::value::RawValue::from_string(ours.clone()).expect("json");
    msg.set_id(&ours_raw);
    let mut original_token = None;
    if let Some(mut p) = params {
        if let Some(t) = p.pointer("/_meta/progressToken").cloned() {
            original_token = Some(t);
            p["_meta"]["progressToken"] = serde_json::from_str(&ours).expect("json");
            msg.set_value("params", &p);
        }
    }
    let rx = conn
        .router
        .wait_for(&ours, original_token.as_ref().map(|_| ours.clone()));
    conn.link
        .from_client_with(&msg.to_json(), &caller, params_headers)
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
        conn,
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

/// Asks the upstream once whether it speaks 2026-07-28: a `server/discover` answer, or one of
/// that era's errors, means yes; anything else (-32601, silence for 10 s) means a
/// handshake-era server, which stateless clients then reach through a bridge.
async fn probe_era(gw: &Gateway, srv: &ServerRt) -> Result<Era, ()> {
    let Ok(conn) = srv.modern.get_or_try_init(|| gw.connect(srv)).await else {
        return Err(()); // not cached: the request itself reports the failure
    };
    let id = "\"portcullis-probe\"";
    let rx = conn.router.wait_for(id, None);
    let probe = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"server/discover","params":{{"_meta":{{"{META_PROTOCOL_VERSION}":"{}","io.modelcontextprotocol/clientCapabilities":{{}},"io.modelcontextprotocol/clientInfo":{{"name":"portcullis","version":"{}"}}}}}}}}"#,
        portcullis_mcp::MODERN,
        env!("CARGO_PKG_VERSION")
    );
    let caller = Caller {
        engine: None,
        grant_id: "(gateway)".into(),
        grant_label: "(gateway)".into(),
        session_id: "probe".into(),
        policy: None,
        request_id: None,
    };
    conn.link
        .from_client_with(&probe, &caller, Vec::new())
        .await;
    let mut rx = rx;
    let answer = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .ok()
        .flatten();
    conn.router.forget(id);
    let era = match answer.as_deref().and_then(|l| Message::parse(l).ok()) {
        Some(m) => match m.value("result") {
            Some(r) => Era::Modern(r),
            None if m
                .value("error")
                .and_then(|e| e.get("code").and_then(Value::as_i64))
                .is_some_and(|c| (-32022..=-32020).contains(&c)) =>
            {
                Era::Modern(json!({}))
            }
            None => Era::Legacy,
        },
        None => Era::Legacy,
    };
    tracing::info!(server = %srv.name, "upstream era: {}", if matches!(era, Era::Legacy) { "handshake only (stateless clients are bridged)" } else { "2026-07-28" });
    Ok(era)
}

/// The upstream's era, probed once (a failure to connect is not cached).
async fn era_of(gw: &Gateway, srv: &ServerRt) -> Era {
    match srv.era.get_or_try_init(|| probe_era(gw, srv)).await {
        Ok(e) => e.clone(),
        Err(()) => Era::Modern(json!({})),
    }
}

/// A stateless request to a handshake-era upstream: one upstream session per grant and
/// declared client capabilities, opened with the client's own capabilities; the per-request
/// `io.modelcontextprotocol/*` `_meta` keys stripped; answers given `resultType` (and
/// `ttlMs: 0`, `cacheScope: "private"` on lists). `server/discover` is answered `-32601`, as the
/// upstream would, so dual-era clients use the handshake.
async fn bridge_post(
    gw: &Gateway,
    srv: &ServerRt,
    caller: Caller,
    mut msg: Message,
    params: Option<Value>,
    headers: &HeaderMap,
) -> Response {
    let meta = params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .cloned()
        .unwrap_or(Value::Null);
    let caps = meta
        .get("io.modelcontextprotocol/clientCapabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let info = meta
        .get("io.modelcontextprotocol/clientInfo")
        .cloned()
        .unwrap_or_else(|| json!({"name": "portcullis-bridge", "version": "0"}));
    let key = format!(
        "{}|{}",
        caller.grant_id,
        portcullis_policy::json::canonical(&caps)
    );
    let bridge = {
        let mut bridges = srv.bridges.lock().await;
        match bridges.get(&key) {
            Some(b) => b.clone(),
            None => match open_bridge(gw, srv, &caller, &caps, &info).await {
                Ok(b) => {
                    bridges.insert(key, b.clone());
                    b
                }
                Err(e) => {
                    return rpc_status(
                        StatusCode::BAD_GATEWAY,
                        error_line(msg.id(), codes::INTERNAL_ERROR, &e),
                    )
                }
            },
        }
    };
    let method = msg.method().unwrap_or_default().to_owned();
    if msg.kind() == Kind::Request && method == "server/discover" {
        // Answered as the upstream itself does: a dual-era client then falls back to the
        // handshake and keeps every feature (server→client requests included, which this
        // bridge cannot yet turn into input-required results). Clients pinned to 2026-07-28
        // that skip discovery are bridged for everything else.
        let name = bridge
            .init
            .pointer("/serverInfo/name")
            .and_then(Value::as_str)
            .unwrap_or("the upstream");
        return rpc_status(
            StatusCode::NOT_FOUND,
            error_line(
                msg.id(),
                codes::METHOD_NOT_FOUND,
                &format!("server/discover: {name} is a handshake-era server; initialize instead"),
            ),
        );
    }
    // Strip the stateless era's per-request keys; a handshake-era server has the session.
    let mut params = params;
    if let Some(p) = params.as_mut() {
        if let Some(m) = p.get_mut("_meta").and_then(Value::as_object_mut) {
            m.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
            if m.is_empty() {
                p.as_object_mut().expect("object").remove("_meta");
            }
        }
        msg.set_value("params", p);
    }
    if msg.kind() != Kind::Request {
        bridge.conn.link.from_client(&msg.to_json(), &caller).await;
        return StatusCode::ACCEPTED.into_response();
    }
    forward_stateless(
        gw,
        &bridge.conn,
        caller,
        msg,
        params,
        headers,
        Vec::new(),
        Some(method),
    )
    .await
}

async fn open_bridge(
    gw: &Gateway,
    srv: &ServerRt,
    caller: &Caller,
    caps: &Value,
    info: &Value,
) -> Result<Arc<Bridge>, String> {
    let conn = gw
        .connect(srv)
        .await
        .map_err(|e| format!("cannot start the upstream server: {e}"))?;
    let id = "\"portcullis-bridge-init\"";
    let mut rx = conn.router.wait_for(id, None);
    let init = json!({"jsonrpc": "2.0", "id": "portcullis-bridge-init", "method": "initialize",
        "params": {"protocolVersion": portcullis_mcp::LEGACY_LATEST, "capabilities": caps, "clientInfo": info}});
    conn.link.from_client(&init.to_string(), caller).await;
    let answer = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .ok()
        .flatten();
    conn.router.forget(id);
    let result = answer
        .and_then(|l| Message::parse(&l).ok())
        .and_then(|m| m.value("result"))
        .ok_or_else(|| "the handshake-era upstream did not accept initialize".to_string())?;
    conn.link
        .from_client(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            caller,
        )
        .await;
    Ok(Arc::new(Bridge { conn, init: result }))
}

/// What to put back on lines for a modern request whose id and token were made unique.
struct Restore {
    id: Box<serde_json::value::RawValue>,
    token: Option<Value>,
    /// For an answer from a handshake-era upstream to a stateless client: the method.
    bridged: Option<String>,
}

impl Restore {
    fn apply(&self, line: String) -> String {
        let Ok(mut m) = Message::parse(&line) else {
            return line;
        };
        match m.kind() {
            Kind::Response => {
                m.set_id(&self.id);
                if let (Some(method), Some(mut r)) = (&self.bridged, m.value("result")) {
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
            _ => return line,
        }
        m.to_json()
    }
}

fn is_response(line: &str) -> Option<Message> {
    Message::parse(line)
        .ok()
        .filter(|m| m.kind() == Kind::Response)
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

/// For a stateless (2026-07-28) request, closing the response is the cancellation: if the
/// client goes away (or the gateway times out) before the answer, the upstream is told.
struct CancelGuard {
    conn: Arc<Conn>,
    caller: Caller,
    id: String,
    armed: bool,
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

/// How a request may be answered when messages precede its response.
#[derive(Clone, Copy)]
enum Streaming {
    /// The client accepts JSON only: related messages are dropped.
    JsonOnly,
    /// An SSE stream without ids (stateless era: no resumability).
    Sse,
    /// A resumable SSE stream of a handshake-era session (ids; a priming event first for
    /// 2025-11-25 clients); a client that goes away can resume it, so it runs to the answer.
    Resumable { priming: bool },
}

async fn answer(
    gw: &Gateway,
    conn: &Arc<Conn>,
    mut rx: UnboundedReceiver<String>,
    id: &str,
    stream: Streaming,
    restore: Option<Restore>,
    mut cancel: Option<CancelGuard>,
) -> Response {
    let restore = Arc::new(restore);
    let fix = {
        let restore = restore.clone();
        move |l: String| match &*restore {
            Some(r) => r.apply(l),
            None => l,
        }
    };
    let first = match tokio::time::timeout(gw.timeout, rx.recv()).await {
        Ok(Some(l)) => l,
        Ok(None) | Err(_) => {
            conn.router.forget(id);
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
    if let Some(m) = is_response(&first) {
        let status = if restore.is_some() {
            modern_status(&m)
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
                Ok(Some(l)) if is_response(&l).is_some() => {
                    if let Some(g) = cancel.as_mut() {
                        g.armed = false;
                    }
                    return rpc_status(StatusCode::OK, fix(l));
                }
                Ok(Some(_)) => continue,
                _ => {
                    conn.router.forget(id);
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
    let router = conn.router.clone();
    // Resumable: the stream is numbered in the session's log, which holds its live end.
    let logged = match stream {
        Streaming::Resumable { priming } => {
            let mut log = router.events.lock().unwrap();
            let no = log.open(tx.clone(), false);
            if priming {
                log.prime(no);
            }
            Some(no)
        }
        _ => None,
    };
    let send = move |router: &Routes, l: String| match logged {
        Some(no) => router.events.lock().unwrap().send(no, l),
        None => tx.send((None, l)).is_ok(),
    };
    send(&router, fix(first));
    let id = id.to_owned();
    let timeout = gw.timeout;
    tokio::spawn(async move {
        while let Ok(Some(l)) = tokio::time::timeout(timeout, rx.recv()).await {
            let done = is_response(&l).is_some();
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
            router.events.lock().unwrap().finish(no);
        }
        drop(cancel);
        router.forget(&id);
    });
    sse(out).into_response()
}

/// Ends a legacy SSE session when its stream is dropped (the client went away).
struct SseSessionGuard {
    gw: Arc<Gateway>,
    id: String,
}

impl Drop for SseSessionGuard {
    fn drop(&mut self) {
        let s = self.gw.sessions.lock().unwrap().remove(&self.id);
        if let Some(s) = s {
            tokio::spawn(async move { s.conn.link.shutdown(Duration::from_secs(2)).await });
        }
    }
}

/// `GET /sse/<server>`: legacy HTTP+SSE (2024-11-05). Opens a session and its upstream; the
/// first event names the URI to POST messages to; every message for the client follows on
/// this stream.
async fn sse_open(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (srv, caller) = match admit(&gw, &server, &headers).await {
        Ok(x) => x,
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
    *conn.router.get.lock().unwrap() = Some(GetSink::Plain(tx));
    conn.router.stream_all.store(true, Ordering::Relaxed);
    gw.sessions.lock().unwrap().insert(
        id.clone(),
        Arc::new(Session {
            server: srv,
            caller,
            conn,
            bridged: None,
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
    Sse::new(first.chain(rest))
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(serde::Deserialize)]
struct SessionQuery {
    session_id: String,
}

/// `POST /sse/<server>/messages?session_id=…`: one client message of a legacy SSE session;
/// 202, and the answer arrives on the session's stream.
async fn sse_message(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    axum::extract::Query(q): axum::extract::Query<SessionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (srv, caller) = match admit(&gw, &server, &headers).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let session = gw.sessions.lock().unwrap().get(&q.session_id).cloned();
    let Some(s) =
        session.filter(|s| s.server.name == srv.name && s.caller.grant_id == caller.grant_id)
    else {
        return json_status(
            StatusCode::NOT_FOUND,
            json!({"error": "unknown_session", "message": "Unknown or ended session; open /sse/<server> again."}),
        );
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return rpc_status(
            StatusCode::BAD_REQUEST,
            error_line(
                None,
                codes::PARSE_ERROR,
                "the body is not UTF-8; nothing was forwarded",
            ),
        );
    };
    if let Err(e) = Message::parse(text) {
        return refuse_invalid(&gw, &srv.name, &caller, &e).await;
    }
    s.conn.link.from_client(text, &gw.current(&s.caller)).await;
    StatusCode::ACCEPTED.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message from one request's answer stream reaches that request and no other, also
    /// when another is the only one in flight (the old single-request guess would have
    /// handed it over).
    #[test]
    fn a_related_message_goes_to_its_own_request_only() {
        let routes = Routes::default();
        let mut a = routes.wait_for("\"h1\"", None);
        let mut b = routes.wait_for("\"h2\"", None);
        let note = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"for h1"}}"#;
        routes.route(crate::upstream::tag("\"h1\"", note));
        assert_eq!(a.try_recv().unwrap(), note, "untagged on the way out");
        assert!(b.try_recv().is_err());
        routes.forget("\"h1\"");
        routes.route(crate::upstream::tag("\"h1\"", note));
        assert!(
            b.try_recv().is_err(),
            "h1 has gone: h2, alone now, still gets nothing"
        );
        assert!(routes.backlog.lock().unwrap().is_empty());
        // Untagged (a stdio upstream): the single request in flight, as before.
        routes.route(note.to_string());
        assert_eq!(b.try_recv().unwrap(), note);
    }

    /// A legacy HTTP+SSE session has one stream and no waiters: tagged messages go there.
    #[test]
    fn a_legacy_sse_session_gets_its_related_messages_on_its_stream() {
        let routes = Routes::default();
        let (tx, mut rx) = unbounded_channel();
        *routes.get.lock().unwrap() = Some(GetSink::Plain(tx));
        routes.stream_all.store(true, Ordering::Relaxed);
        let ask = r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}"#;
        routes.route(crate::upstream::tag("\"c1\"", ask));
        assert_eq!(rx.try_recv().unwrap(), (None, ask.to_string()));
    }
}
