//! The HTTP face: `/mcp/<server>` (Streamable HTTP, both MCP eras), `/sse/<server>` (legacy
//! HTTP+SSE), `/.well-known/oauth-protected-resource/…` (RFC 9728, servers with OAuth),
//! `/healthz`, `/readyz`.
//!
//! Order of checks on every request (spec §4.4): `Host`/`Origin` (403), the server (404),
//! the bearer token (401/403), the body cap (413); for a POST its `Content-Type` (415) and
//! `Accept` (406); then the era:
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
//!
//! | Module | Job |
//! |---|---|
//! | `mod.rs` | [`Gateway`] and its router, `/mcp` dispatch by method and era, small shared helpers |
//! | `policies.rs` | the policy table: compiled policies by name, swapped on reload |
//! | `auth.rs` | admission: `Host`/`Origin`, server lookup, bearer token → `Caller`, audited refusals |
//! | `oauth/` | the OAuth resource server: resource metadata, issuer keys, access tokens → principal → policy |
//! | `background.rs` | the gateway's loops: hot reload of the config and policies, audit retention |
//! | `media.rs` | a POST's `Content-Type` (415) and `Accept` (406), audited refusals |
//! | `runtime.rs` | configured servers, open sessions, upstream connections |
//! | `stateless.rs` | 2026-07-28 requests: header checks, shared connection, cancellation |
//! | `session.rs` | handshake-era sessions: `initialize`, session POSTs, bridged sessions |
//! | `shared.rs` | sessions shared by replicas (`[store] url`): recorded, looked up, resumed by replaying `initialize` |
//! | `routes.rs` | each upstream line to the request it answers; JSON or SSE answers; GET streams |
//! | `legacy_sse.rs` | the legacy HTTP+SSE face |
//! | `listener.rs` | the accept loop: connection caps, head/body/idle timeouts, hyper per connection |
//! | `cores.rs` | the threads connections are served on, one runtime each; what each keeps for itself (`PerCore`) |
//! | `streams.rs` | the cap on open SSE streams per client address |
//! | `era.rs` | the era probe and the bridge for stateless clients of a handshake-era upstream |

mod aggregated;
mod auth;
mod background;
mod cores;
mod era;
#[doc(hidden)]
pub mod fuzzing;
mod legacy_sse;
mod listener;
mod media;
mod oauth;
mod policies;
mod routes;
mod runtime;
mod session;
mod shared;
mod stateless;
mod streams;

pub use cores::Cores;
pub(crate) use cores::PerCore;
pub use listener::{serve, serve_on, Limits};
pub use oauth::Principal;
pub use policies::Policies;

use crate::config::{expand_env, Config};
use crate::events::{AuditEvents, EventSink};
use crate::metrics::{MetricsSink, Snapshot};
use crate::relay::{ApprovalHook, Caller};
use crate::upstream::UpstreamSpec;
use auth::{admit, Authenticator};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use legacy_sse::{sse_message, sse_open};
use policies::PolicyTable;
use portcullis_mcp::{codes, error_line, Kind, Message, ParseError, META_PROTOCOL_VERSION};
use portcullis_policy::CounterStore;
use portcullis_store::{
    ApprovalStore, AuditDecision, AuditLog, AuditRecord, GrantStore, SessionStore,
};
use routes::get_stream;
use runtime::Runtime;
use serde_json::Value;
use session::{bridged_legacy_post, legacy_post, open_session};
use stateless::modern_post;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

const SESSION_HEADER: &str = "mcp-session-id";

/// The running HTTP gateway's shared state.
pub struct Gateway {
    /// The configured servers and the open sessions.
    rt: Runtime,
    /// Named policies: compiled engine and version hash. Swapped whole on reload.
    policies: PolicyTable,
    /// Who may call: the `Host`/`Origin` rule and the bearer token → `Caller` lookup.
    auth: Authenticator,
    store: Arc<dyn CounterStore>,
    audit: Option<Arc<AuditLog>>,
    /// Where every decision, refusal and reload is emitted (the audit log, the metrics).
    events: crate::events::Events,
    metrics: Option<Arc<MetricsSink>>,
    approvals: Option<Arc<dyn ApprovalStore>>,
    on_new_approval: Option<ApprovalHook>,
    /// Tool pins: the store and the judged view of each server's tools (`None`: no data dir).
    pins: Option<Arc<crate::pinned::ToolPins>>,
    timeout: Duration,
    /// Open SSE streams per client address.
    streams: Arc<streams::StreamCaps>,
    next: AtomicU64,
    /// A random tag of this process, in the ids it makes.
    replica: String,
    /// Handshake-era sessions shared with other replicas (`[store] url`), and their TTL.
    shared: std::sync::OnceLock<shared::Shared>,
}

/// What a [`Gateway`] is built from besides its config: the stores, and the event sinks.
pub struct Parts {
    /// The rate-limit counters.
    pub store: Arc<dyn CounterStore>,
    /// Grants (`None`: no `auth = "grant"` server can admit anyone).
    pub grants: Option<Arc<dyn GrantStore>>,
    /// The audit log (`audit = "off"`: none).
    pub audit: Option<Arc<AuditLog>>,
    /// Calls held for a human's approval.
    pub approvals: Option<Arc<dyn ApprovalStore>>,
    /// Prometheus metrics, the event sink's second implementation (`metrics = false`: none).
    pub metrics: Option<Arc<MetricsSink>>,
    /// Tool pins (`None`: no pin store).
    pub pins: Option<Arc<crate::pinned::ToolPins>>,
    /// Spans of each request (`[telemetry]` on).
    pub tracer: Option<Arc<crate::spans::Tracer>>,
}

impl Gateway {
    /// Builds the gateway from a checked config: loads every policy (an invalid policy is an
    /// error, never a silent allow). Events go to the audit log and to `metrics`, when given;
    /// `tracer` makes a span of each request (`[telemetry]`).
    pub fn new(cfg: &Config, parts: Parts) -> Result<Arc<Gateway>, String> {
        let Parts {
            store,
            grants,
            audit,
            approvals,
            metrics,
            pins,
            tracer,
        } = parts;
        let policies = Self::load_policies(cfg)?;
        let rt = Runtime::new(&cfg.servers)?;
        let mut sinks: Vec<Arc<dyn EventSink>> = Vec::new();
        if let Some(log) = &audit {
            sinks.push(Arc::new(AuditEvents(log.clone())));
        }
        if let Some(m) = &metrics {
            sinks.push(m.clone());
        }
        let webhook = match &cfg.gateway.approval_webhook {
            None => None,
            Some(url) => {
                let secret =
                    expand_env(cfg.gateway.approval_webhook_secret.as_deref().unwrap_or(""))?;
                Some(Arc::new(crate::webhook::Webhook::new(url, &secret)?))
            }
        };
        // A tool newly quarantined (or pending) is announced like an approval request.
        if let (Some(pins), Some(hook)) = (&pins, &webhook) {
            let hook = hook.clone();
            pins.announce_to(Arc::new(move |p: &portcullis_store::Pin| {
                hook.notify(
                    "pin.quarantined",
                    serde_json::to_value(p).unwrap_or(Value::Null),
                );
            }));
        }
        Ok(Arc::new(Gateway {
            rt,
            policies: PolicyTable::new(policies),
            auth: Authenticator::new(cfg, grants)?,
            // Reservations of the calls a core takes in together share one write.
            store: crate::gather::gather(store),
            events: crate::events::Events::new(sinks).traced(tracer),
            metrics,
            audit,
            approvals,
            on_new_approval: match &webhook {
                None => None,
                Some(hook) => {
                    let hook = hook.clone();
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
            pins,
            timeout: Duration::from_secs(cfg.gateway.request_timeout_secs),
            streams: streams::StreamCaps::new(cfg.gateway.max_streams_per_client),
            next: AtomicU64::new(1),
            replica: random_hex(4),
            shared: std::sync::OnceLock::new(),
        }))
    }

    /// Shares handshake-era sessions through `store` (the replicas' Redis): a session opened
    /// here continues on any replica, each unused session expiring after `ttl`. Set once,
    /// before serving.
    pub fn share_sessions(&self, store: Arc<dyn SessionStore>, ttl: Duration) {
        let _ = self.shared.set(shared::Shared::new(store, ttl));
    }

    /// The axum router.
    pub fn router(self: &Arc<Self>, max_body: usize) -> axum::Router<()> {
        axum::Router::new()
            .route("/mcp/{server}", any(mcp))
            .route("/mcp", any(mcp_default))
            .route("/sse/{server}", get(sse_open))
            .route("/sse/{server}/messages", axum::routing::post(sse_message))
            .route(
                "/.well-known/oauth-protected-resource",
                get(oauth::metadata::root_metadata),
            )
            .route(
                "/.well-known/oauth-protected-resource/{*rest}",
                get(oauth::metadata::resource_metadata),
            )
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(|| async { "ready\n" }))
            .layer(DefaultBodyLimit::max(max_body))
            .with_state(self.clone())
    }

    /// Names of the configured servers, sorted.
    pub fn server_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.rt.servers().keys().cloned().collect();
        v.sort();
        v
    }

    /// How a server is reached (for listing its tools).
    pub fn server_spec(&self, name: &str) -> Option<UpstreamSpec> {
        self.rt.server(name).map(|s| s.spec.clone())
    }

    /// The grant store, when grants are in use.
    pub fn grants(&self) -> Option<&Arc<dyn GrantStore>> {
        self.auth.grants()
    }

    /// The tool pins, when the gateway keeps them.
    pub fn pins(&self) -> Option<&Arc<crate::pinned::ToolPins>> {
        self.pins.as_ref()
    }

    /// The audit log, unless auditing is off.
    pub fn audit_log(&self) -> Option<&Arc<AuditLog>> {
        self.audit.as_ref()
    }

    /// Sends an operator's event (an approval decided, say) through the gateway's event sink:
    /// the audit log and the metrics. An error means the audit log could not take it.
    pub async fn emit(&self, record: AuditRecord) -> Result<(), String> {
        self.events.emit(record, None).await
    }

    /// The metrics as OpenMetrics text, with the audit writer's counters and the open
    /// sessions read now; `None` when the gateway was built without metrics.
    pub fn metrics_text(&self) -> Option<String> {
        let m = self.metrics.as_ref()?;
        let pending_approvals = self.approvals.as_ref().and_then(|store| {
            let now = crate::relay::system_clock();
            let list = store
                .list(Some(portcullis_store::ApprovalStatus::Pending), now)
                .map_err(|e| tracing::warn!("metrics: cannot read the pending approvals: {e}"))
                .ok()?;
            let mut by_server: std::collections::BTreeMap<String, u64> = Default::default();
            for a in list {
                *by_server.entry(a.server).or_default() += 1;
            }
            Some(by_server.into_iter().collect())
        });
        Some(m.render(&Snapshot {
            audit: self.audit.as_ref().map(|a| a.stats()),
            sessions: self.rt.open_sessions(),
            pending_approvals,
        }))
    }

    /// The counter store.
    pub fn counters(&self) -> &Arc<dyn CounterStore> {
        &self.store
    }

    /// The policies in force now.
    pub fn policies(&self) -> Arc<Policies> {
        self.policies.now()
    }

    /// Every named policy of a config (each server's own under its name, then `[policies]`),
    /// compiled; the first invalid one is an error with the validator's messages.
    pub fn load_policies(cfg: &Config) -> Result<Policies, String> {
        PolicyTable::load(cfg)
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
        self.policies.swap(policies);
        Ok(n)
    }
}

/// `/mcp` without a server name: the only configured server, when there is exactly one
/// (some clients, such as the Inspector CLI, always post to `/mcp`); with several, every
/// server the caller may reach behind one endpoint (`aggregated.rs`).
async fn mcp_default(
    State(gw): State<Arc<Gateway>>,
    peer: Option<Peer>,
    uri: Uri,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if gw.rt.servers().len() != 1 {
        // Several servers: the aggregated endpoint.
        return aggregated::mcp_all(gw, client_ip(peer), uri, method, headers, body).await;
    }
    let name = gw.rt.servers().keys().next().expect("one").clone();
    mcp(State(gw), Path(name), peer, uri, method, headers, body).await
}

/// The client's address, as the listener records it (absent when the router is served
/// otherwise).
type Peer = axum::Extension<ConnectInfo<SocketAddr>>;

fn client_ip(peer: Option<Peer>) -> Option<IpAddr> {
    peer.map(|axum::Extension(ConnectInfo(a))| a.ip())
}

async fn mcp(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    peer: Option<Peer>,
    uri: Uri,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (srv, caller) = match admit(&gw, &server, &headers, uri.query()).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let body = match admitted_body(&gw, &srv.name, &caller, body).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let session_id = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The session named by the header (this replica's, or, with shared sessions, resumed
    // from the store); `Err` when the store cannot say.
    let session = match &session_id {
        Some(id) => match shared::find(&gw, &srv, &caller, id).await {
            Ok(s) => s,
            Err(r) => return *r,
        },
        None => None,
    };
    match method {
        Method::GET => match session_id {
            None => StatusCode::METHOD_NOT_ALLOWED.into_response(),
            Some(_) => match session {
                None => StatusCode::NOT_FOUND.into_response(),
                // A bridged session rides the server's shared stateless connection: it has
                // no stream of its own, and others' unsolicited messages must not reach it.
                Some(s) if s.bridged.is_some() => StatusCode::METHOD_NOT_ALLOWED.into_response(),
                // A session has one GET stream at a time (a new one supersedes the old), so
                // only the client's cap applies.
                Some(s) => match gw.streams.take(client_ip(peer)) {
                    Ok(place) => streams::holding(
                        get_stream(&s.conn.router, &headers).into_response(),
                        place,
                    ),
                    Err(r) => *r,
                },
            },
        },
        Method::DELETE => match session_id {
            None => StatusCode::METHOD_NOT_ALLOWED.into_response(),
            Some(id) => match session {
                None => StatusCode::NOT_FOUND.into_response(),
                Some(s) => {
                    if let Err(r) = shared::end(&gw, &id) {
                        return *r;
                    }
                    gw.rt.end(&id);
                    // A bridged session rides the server's shared stateless connection.
                    if s.bridged.is_none() {
                        s.conn.link.shutdown(Duration::from_secs(2)).await;
                    }
                    StatusCode::NO_CONTENT.into_response()
                }
            },
        },
        Method::POST => {
            if let Err(r) =
                media::check(&gw, &srv.name, &caller, &headers, media::Rule::Streamable).await
            {
                return r;
            }
            let text = match body_text(&body) {
                Ok(t) => t,
                Err(r) => return *r,
            };
            let msg = match Message::parse(text) {
                Ok(m) => m,
                Err(e) => return refuse_invalid(&gw, &srv.name, &caller, &e).await,
            };
            let modern_version = msg.peek_as::<String>("params", &["_meta", META_PROTOCOL_VERSION]);
            if let Some(v) = modern_version {
                return modern_post(&gw, &srv, caller, msg, &v, &headers).await;
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
                return modern_post(&gw, &srv, caller, msg, &v, &headers).await;
            }
            if session_id.is_some() {
                return match session {
                    None => rpc_status(
                        StatusCode::NOT_FOUND,
                        error_line(
                            msg.id(),
                            codes::INVALID_REQUEST,
                            "Unknown or ended session; initialize again.",
                        ),
                    ),
                    Some(s) if s.bridged.is_some() => {
                        bridged_legacy_post(&gw, &s, msg, &headers).await
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

fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all("accept")
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/event-stream")))
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

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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

/// The audit record of a refusal at the door: `method` names the check (`(authentication)`,
/// `(media type)`, `(invalid message)`), `rule` why, `who` the grant when it is known.
pub(super) fn refusal(
    server: &str,
    method: &str,
    rule: String,
    message: String,
    who: Option<(&str, &str)>,
) -> AuditRecord {
    let mut rec = AuditRecord::new(
        crate::relay::system_clock(),
        server,
        method,
        AuditDecision::Deny,
    );
    rec.rule = Some(rule);
    rec.message = Some(message);
    if let Some((id, label)) = who {
        rec.grant_id = Some(id.to_owned());
        rec.grant_label = Some(label.to_owned());
    }
    rec
}

/// The body of an admitted caller's request, or the answer when it could not be read: over
/// `max_body_bytes`, 413 (audited as a door refusal, rule `(body too large)`); cut short by
/// the client, axum's own answer. The body is read before the handler runs, but judged only
/// after the Host/Origin, server and token checks, so a refusal's order stays 403, 404, 401,
/// 413.
pub(super) async fn admitted_body(
    gw: &Gateway,
    server: &str,
    caller: &Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Box<Response>> {
    let rejection = match body {
        Ok(b) => return Ok(b),
        Err(r) => r,
    };
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE && !gw.events.is_empty() {
        let rec = refusal(
            server,
            "(invalid message)",
            "(body too large)".into(),
            "the request body exceeds max_body_bytes".into(),
            Some((&caller.grant_id, &caller.grant_label)),
        );
        gw.events.record(rec).await;
    }
    Err(Box::new(rejection.into_response()))
}

/// The request body as text, or the `-32700` answer for a body that is not UTF-8.
pub(super) fn body_text(body: &[u8]) -> Result<&str, Box<Response>> {
    std::str::from_utf8(body).map_err(|_| {
        Box::new(rpc_status(
            StatusCode::BAD_REQUEST,
            error_line(
                None,
                codes::PARSE_ERROR,
                "the body is not UTF-8; nothing was forwarded",
            ),
        ))
    })
}

/// A body that is not a message we can handle, from an admitted caller: audited (as the
/// relay audits a bad line on stdio), then answered with [`parse_error_response`]. Nothing is
/// forwarded.
async fn refuse_invalid(gw: &Gateway, server: &str, caller: &Caller, e: &ParseError) -> Response {
    if !gw.events.is_empty() {
        let rec = refusal(
            server,
            "(invalid message)",
            "(invalid message)".into(),
            e.to_string(),
            Some((&caller.grant_id, &caller.grant_label)),
        );
        if gw.events.emit(rec, None).await.is_err() {
            return rpc_status(
                StatusCode::SERVICE_UNAVAILABLE,
                error_line(None, codes::INTERNAL_ERROR, "the audit log is unavailable"),
            );
        }
    }
    parse_error_response(e)
}

/// The W3C trace context of a client's request (its `traceparent` header, if valid, with
/// its `tracestate` lines).
fn traceparent(headers: &HeaderMap) -> Option<crate::traces::TraceParent> {
    crate::traces::TraceParent::from_headers(
        headers.get("traceparent").and_then(|v| v.to_str().ok()),
        headers
            .get_all("tracestate")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

pub(crate) fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("the OS random source is readable");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
