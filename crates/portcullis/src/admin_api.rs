//! The admin API of `portcullis serve`: `/admin/api/…`, JSON in and out.
//!
//! | Route | What |
//! |---|---|
//! | `GET /admin/api/openapi.json` | this API's OpenAPI 3.1 document (no token needed) |
//! | `GET /admin/api/servers` | configured servers: name, transport, own policy, auth mode |
//! | `GET /admin/api/servers/{name}/tools` | the server's tools (every page), each classified |
//! | `GET /admin/api/policies` | policy names and version hashes |
//! | `GET /admin/api/policies/{name}` | one policy document as in force |
//! | `PUT /admin/api/policies/{name}` | validate, write the file atomically, reload |
//! | `GET /admin/api/grants[?server=]` | grants (never tokens) |
//! | `POST /admin/api/grants` | create a grant; the token is in this answer only |
//! | `POST /admin/api/grants/{id}/rotate` | new token for a grant |
//! | `DELETE /admin/api/grants/{id}` | revoke a grant |
//! | `GET /admin/api/audit?since=&until=&grant=&tool=&decision=&server=&limit=` | audit query |
//! | `GET /admin/api/counters/{server}?grant=` | usage of each limit of the server's policy |
//! | `GET /admin/api/approvals[?status=]` | approval requests, newest first (pending by default) |
//! | `GET /admin/api/approvals/{id}` | one approval request |
//! | `POST /admin/api/approvals/{id}/approve` | approve `{by?, valid_for?}`; audited |
//! | `POST /admin/api/approvals/{id}/deny` | deny `{reason, by?}`; audited |
//!
//! `GET /metrics` (Prometheus/OpenMetrics text, [`portcullis_gateway::metrics`]) sits beside
//! the API, outside `/admin/api`, behind the same admin token: what agents call and are refused
//! is for operators, never for agents.
//!
//! Every route but the OpenAPI document needs `Authorization: Bearer <admin token>`; grant
//! tokens never work here. The admin token is made at the first start of `serve` (see
//! [`admin_token_hash`]); only its SHA-256 is kept. `Host`/`Origin` follow the MCP face's rule
//! (loopback names, plus `allowed_hosts`/`allowed_origins` of the config): 403 otherwise.
//!
//! Errors are `{"error": code, "message": text}` with a fitting status. The grant and audit
//! operations go through the same store calls and argument parsing as `portcullis grant` and
//! `portcullis audit` (one code path per operation).

use crate::admin::{grant_json, parse_when};
use crate::approvals_cli::{DecideError, Decision};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portcullis_classify::classify_all;
use portcullis_gateway::config::{Auth, Config};
use portcullis_gateway::http::Gateway;
use portcullis_gateway::relay::system_clock;
use portcullis_gateway::upstream::UpstreamSpec;
use portcullis_policy::{CounterKey, Scope, Window};
use portcullis_store::{ApprovalError, ApprovalStatus, ApprovalStore, AuditFilter, GrantError};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The OpenAPI 3.1 document of this API, served at `/admin/api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// File in the data directory holding the admin token's SHA-256 (hex).
pub const ADMIN_TOKEN_FILE: &str = "admin.token.sha256";

/// Environment variable whose value, when set at start, becomes the admin token.
pub const ADMIN_TOKEN_ENV: &str = "PORTCULLIS_ADMIN_TOKEN";

/// Prefix of generated admin tokens (grant tokens start with `pcx_`).
pub const ADMIN_TOKEN_PREFIX: &str = "pca_";

/// How long a server's classified tool list is reused before the server is asked again.
const TOOLS_TTL: Duration = Duration::from_secs(60);

/// Longest wait for a server's tool list.
const TOOLS_TIMEOUT: Duration = Duration::from_secs(30);

/// Default number of audit records returned (as `portcullis audit` prints).
const DEFAULT_AUDIT_LIMIT: usize = 100;

/// The admin token's SHA-256, creating the token on first use.
///
/// - `PORTCULLIS_ADMIN_TOKEN` set (at least 16 characters): its hash replaces the stored one
///   (CI and tests use a known token); nothing is printed.
/// - Otherwise, `<data_dir>/admin.token.sha256` when it exists.
/// - Otherwise a new token `pca_` + 64 hex digits from the OS generator: its hash is stored
///   (mode 0600) and the token itself printed once to standard error.
pub fn admin_token_hash(data_dir: &FsPath) -> Result<[u8; 32], String> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if let Ok(token) = std::env::var(ADMIN_TOKEN_ENV) {
        let token = token.trim();
        if token.len() < 16 {
            return Err(format!(
                "{ADMIN_TOKEN_ENV} is set but shorter than 16 characters; give a longer token, \
                 or unset it to use the stored one"
            ));
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        write_private(&path, &format!("{}\n", hex(&hash)))?;
        return Ok(hash);
    }
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_hex32(text.trim()).ok_or_else(|| {
            format!(
                "{} is not a SHA-256 in hex; delete it to have a new admin token made at the \
                 next start, or set {ADMIN_TOKEN_ENV}",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::getrandom(&mut bytes)
                .map_err(|e| format!("the operating system's random generator failed: {e}"))?;
            let token = format!("{ADMIN_TOKEN_PREFIX}{}", hex(&bytes));
            let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            write_private(&path, &format!("{}\n", hex(&hash)))?;
            eprintln!("portcullis: created the admin API token (for /admin/api/…):");
            eprintln!();
            eprintln!("    {token}");
            eprintln!();
            eprintln!(
                "portcullis: store it now; it is not shown again (only its hash is kept in {}). \
                 To replace it, delete that file and restart, or set {ADMIN_TOKEN_ENV}.",
                path.display()
            );
            Ok(hash)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes `text` to `path` atomically (temporary file, then rename), readable by its owner
/// only.
fn write_private(path: &FsPath, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = tmp_name(path);
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// Writes `bytes` to `path` atomically, keeping the file's permissions when it exists.
fn write_atomic(path: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_name(path);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(m) = std::fs::metadata(path) {
            f.set_permissions(m.permissions())?;
        }
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// A temporary file name next to `path` (same directory, so rename is atomic).
fn tmp_name(path: &FsPath) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A cached, classified tool list of one server.
type ToolsCache = tokio::sync::Mutex<Option<(Instant, Value)>>;

/// What the handlers share.
pub struct AdminState {
    gw: Arc<Gateway>,
    /// The configuration as started (server definitions change on restart only).
    cfg: Config,
    /// The config file, re-read for policy paths and passed to [`Gateway::reload_from`].
    config_path: PathBuf,
    token_hash: [u8; 32],
    tools: HashMap<String, Arc<ToolsCache>>,
    /// Serialises policy writes (write + reload as one step).
    policy_write: tokio::sync::Mutex<()>,
}

/// The `/admin/api/…` routes over a running gateway. `cfg` is the loaded configuration of
/// `config_path`; `token_hash` comes from [`admin_token_hash`]; `max_body` caps request bodies.
pub fn router(
    gw: Arc<Gateway>,
    cfg: Config,
    config_path: PathBuf,
    token_hash: [u8; 32],
    max_body: usize,
) -> axum::Router<()> {
    let tools = cfg
        .servers
        .iter()
        .map(|s| (s.name.clone(), Arc::new(ToolsCache::default())))
        .collect();
    let state = Arc::new(AdminState {
        gw,
        cfg,
        config_path,
        token_hash,
        tools,
        policy_write: tokio::sync::Mutex::new(()),
    });
    let scrape = axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    let api = axum::Router::new()
        .route("/openapi.json", get(openapi))
        .route("/servers", get(servers))
        .route("/servers/{name}/tools", get(tools_of))
        .route("/policies", get(policies))
        .route("/policies/{name}", get(policy_get).put(policy_put))
        .route("/grants", get(grants_list).post(grant_create))
        .route("/grants/{id}/rotate", post(grant_rotate))
        .route("/grants/{id}", axum::routing::delete(grant_revoke))
        .route("/audit", get(audit))
        .route("/counters/{server}", get(counters))
        .route("/approvals", get(approvals_list))
        .route("/approvals/{id}", get(approval_get))
        .route("/approvals/{id}/approve", post(approval_approve))
        .route("/approvals/{id}/deny", post(approval_deny))
        // Unknown routes under the prefix only: the rest of the gateway is untouched.
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state);
    axum::Router::new().nest("/admin/api", api).merge(scrape)
}

/// `GET /metrics`: the gateway's metrics as OpenMetrics text (which Prometheus reads), for
/// the admin token only.
async fn metrics(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Err(r) = s.admit(&headers) {
        return *r;
    }
    let Some(text) = s.gw.metrics_text() else {
        return error(
            StatusCode::NOT_FOUND,
            "metrics_off",
            "this gateway runs without metrics",
        );
    };
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

// ---------------------------------------------------------------------------------------------
// Responses and checks
// ---------------------------------------------------------------------------------------------

/// A JSON answer with `status`.
fn reply(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `{"error": code, "message": message}` with `status`.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    reply(status, &json!({"error": code, "message": message.into()}))
}

/// An error answer, boxed for `Result`s (a `Response` is large).
type Refusal = Box<Response>;

/// [`error`], boxed.
fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> Refusal {
    Box::new(error(status, code, message))
}

fn ok(body: &Value) -> Response {
    reply(StatusCode::OK, body)
}

impl AdminState {
    /// Host/Origin (403), then the admin token (401), compared in constant time on its hash.
    fn admit(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        self.admit_host(headers)?;
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        let Ok(token) = portcullis_store::bearer_token(value) else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "admin_token_required",
                "send `Authorization: Bearer <admin token>`; the token was printed when \
                 `portcullis serve` first started (or set PORTCULLIS_ADMIN_TOKEN)",
            ));
        };
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let eq: bool = subtle::ConstantTimeEq::ct_eq(&presented[..], &self.token_hash[..]).into();
        if eq {
            return Ok(());
        }
        let message = if token.starts_with(portcullis_store::grants::TOKEN_PREFIX) {
            "this is a grant token; grant tokens are for /mcp/<server> only and never open the \
             admin API — use the admin token"
        } else {
            "this is not the admin token; use the one printed at the first start of \
             `portcullis serve` (or PORTCULLIS_ADMIN_TOKEN)"
        };
        Err(refuse(
            StatusCode::UNAUTHORIZED,
            "admin_token_invalid",
            message,
        ))
    }

    fn admit_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.gw.host_ok(headers) {
            Ok(())
        } else {
            Err(refuse(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "This Host or Origin is not allowed to reach the gateway.",
            ))
        }
    }

    fn grants(&self) -> Result<&Arc<dyn portcullis_store::GrantStore>, Refusal> {
        self.gw.grants().ok_or_else(|| {
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_grant_store",
                "this gateway runs without a grant store",
            )
        })
    }

    fn server_known(&self, name: &str) -> Result<(), Refusal> {
        if self.cfg.servers.iter().any(|s| s.name == name) {
            Ok(())
        } else {
            Err(Box::new(unknown_server(name, &self.gw.server_names())))
        }
    }
}

fn unknown_server(name: &str, known: &[String]) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "unknown_server",
        format!(
            "no server named {name:?} is configured (servers: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ),
    )
}

/// The value of a `Result<T, Refusal>`, or returns the refusal from the handler.
macro_rules! refused {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return *r,
        }
    };
}

/// Runs a handler body after the admission checks.
macro_rules! admitted {
    ($st:expr, $headers:expr) => {
        refused!($st.admit(&$headers));
    };
}

async fn not_found(State(st): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    admitted!(st, headers);
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such admin API route; see /admin/api/openapi.json",
    )
}

/// `GET /admin/api/openapi.json`: the API's description. No token needed (it holds no data).
async fn openapi(State(st): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    refused!(st.admit_host(&headers));
    let mut r = OPENAPI.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

// ---------------------------------------------------------------------------------------------
// Servers and tools
// ---------------------------------------------------------------------------------------------

/// `GET /admin/api/servers`.
async fn servers(State(st): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    admitted!(st, headers);
    let policies = st.gw.policies();
    let mut list: Vec<Value> = st
        .cfg
        .servers
        .iter()
        .map(|s| {
            let transport = match st.gw.server_spec(&s.name) {
                Some(UpstreamSpec::Command(_)) => "stdio",
                Some(UpstreamSpec::Http(_)) => "http",
                Some(UpstreamSpec::Sse(_)) => "sse",
                None => "unknown",
            };
            let policy = s
                .policy
                .as_ref()
                .map(|_| s.name.clone())
                .filter(|n| policies.contains_key(n));
            let auth = match s.auth {
                Auth::Grant => "grant",
                Auth::Token => "token",
                Auth::None => "none",
                Auth::OAuth => "oauth",
                Auth::OAuthGrant => "oauth+grant",
            };
            json!({"name": s.name, "transport": transport, "policy": policy, "auth": auth})
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    ok(&Value::Array(list))
}

#[derive(Deserialize)]
struct ToolsQuery {
    /// `true`: ignore the cached list and ask the server again.
    #[serde(default)]
    refresh: bool,
}

/// `GET /admin/api/servers/{name}/tools`: every tool with its classification, and whether
/// the server's own policy hides it. Cached per server for [`TOOLS_TTL`].
async fn tools_of(
    State(st): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Query(q): Query<ToolsQuery>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    let (Some(cache), Some(spec)) = (st.tools.get(&name), st.gw.server_spec(&name)) else {
        return unknown_server(&name, &st.gw.server_names());
    };
    let mut slot = cache.lock().await;
    let (listed, cached) = match slot.as_ref() {
        Some((at, v)) if !q.refresh && at.elapsed() < TOOLS_TTL => (v.clone(), true),
        _ => match list_classified(&name, spec).await {
            Ok(v) => {
                *slot = Some((Instant::now(), v.clone()));
                (v, false)
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    format!("cannot list the tools of {name:?}: {e}"),
                )
            }
        },
    };
    drop(slot);
    // Visibility under the server's own policy, as it stands now (not cached).
    let engine = st.gw.policies().get(&name).map(|(e, _)| e.clone());
    let mut listed = listed;
    if let Some(tools) = listed["tools"].as_array_mut() {
        for t in tools {
            let n = t["name"].as_str().unwrap_or_default().to_owned();
            t["hidden_by_policy"] = match &engine {
                Some(e) => json!(!e.is_listed(&n)),
                None => Value::Null,
            };
        }
    }
    listed["cached"] = json!(cached);
    ok(&listed)
}

/// Lists a server's tools through every page (as `portcullis scan` does) and classifies them.
/// Runs on its own thread and runtime: a listing never holds up the gateway's workers, and
/// whatever the conversation left behind ends with it.
async fn list_classified(name: &str, spec: UpstreamSpec) -> Result<Value, String> {
    let server = name.to_owned();
    let job = tokio::task::spawn_blocking(move || {
        let (tools, _own_name) =
            crate::scan::runtime()?.block_on(crate::scan::list_live(&spec, TOOLS_TIMEOUT))?;
        let tools = crate::scan::dedupe(tools, &server);
        let classes = classify_all(&tools, &server);
        let mut by_name: HashMap<String, Value> = classes
            .into_iter()
            .map(|c| {
                let v = serde_json::to_value(&c).unwrap_or(Value::Null);
                (c.tool, v)
            })
            .collect();
        let tools: Vec<Value> = tools
            .into_iter()
            .map(|mut t| {
                let n = t["name"].as_str().unwrap_or_default().to_owned();
                t["classification"] = by_name.remove(&n).unwrap_or(Value::Null);
                t
            })
            .collect();
        Ok::<_, String>(json!({
            "server": server,
            "listed_at": system_clock(),
            "tools": tools,
        }))
    });
    job.await
        .map_err(|e| format!("the listing task failed: {e}"))?
}

// ---------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------

/// The file of policy `name` in `cfg`: `[policies]` first (it wins in the gateway too), then
/// a server's own `policy`.
fn policy_file(cfg: &Config, name: &str) -> Option<PathBuf> {
    cfg.policies
        .get(name)
        .or_else(|| {
            cfg.servers
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.policy.as_ref())
        })
        .map(|p| cfg.resolve(p))
}

/// `GET /admin/api/policies`: `[{name, hash}]`, sorted by name.
async fn policies(State(st): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    admitted!(st, headers);
    let p = st.gw.policies();
    let mut names: Vec<&String> = p.keys().collect();
    names.sort();
    let list: Vec<Value> = names
        .into_iter()
        .map(|n| json!({"name": n, "hash": p[n].1}))
        .collect();
    ok(&Value::Array(list))
}

/// `GET /admin/api/policies/{name}`: `{name, hash, document}` as in force.
async fn policy_get(
    State(st): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    match st.gw.policies().get(&name) {
        Some((engine, hash)) => ok(&json!({
            "name": name,
            "hash": hash,
            "document": serde_json::to_value(engine.doc()).unwrap_or(Value::Null),
        })),
        None => unknown_policy(&name),
    }
}

fn unknown_policy(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "unknown_policy",
        format!(
            "no policy named {name:?} is configured; a policy is added in the config file \
             ([policies] or a server's policy = \"…\"), then edited here"
        ),
    )
}

/// `PUT /admin/api/policies/{name}`: validates the body (422 with every error and its
/// locator), writes it over the policy's file atomically, and reloads so that the next
/// request follows it. Answers `{name, hash}`.
async fn policy_put(
    State(st): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    admitted!(st, headers);
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body is not UTF-8",
        );
    };
    let _write = st.policy_write.lock().await;
    // The current config says which file holds the policy.
    let cfg = match Config::load(&st.config_path) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::CONFLICT,
                "config_invalid",
                format!("the config file cannot be read now, so nothing was written: {e}"),
            )
        }
    };
    let Some(path) = policy_file(&cfg, &name) else {
        return unknown_policy(&name);
    };
    if let Err(errors) = portcullis_policy::doc::parse(text) {
        let list: Vec<Value> = errors
            .iter()
            .map(|e| json!({"locator": e.locator, "message": e.message}))
            .collect();
        return reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({
                "error": "invalid_policy",
                "message": format!("{} error{} — nothing was written; the policy in force is unchanged", list.len(), if list.len() == 1 { "" } else { "s" }),
                "errors": list,
            }),
        );
    }
    let previous = std::fs::read(&path).ok();
    if let Err(e) = write_atomic(&path, text.as_bytes()) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "write_failed",
            format!("cannot write {}: {e}", path.display()),
        );
    }
    if let Err(e) = st.gw.reload_from(&st.config_path).await {
        // Something else in the configuration is invalid: put the file back as it was.
        if let Some(old) = previous {
            let _ = write_atomic(&path, &old);
        }
        return error(
            StatusCode::CONFLICT,
            "reload_failed",
            format!("the new policy is valid but the configuration could not be reloaded, so the file was restored: {e}"),
        );
    }
    match st.gw.policies().get(&name) {
        Some((_, hash)) => ok(&json!({"name": name, "hash": hash})),
        None => error(
            StatusCode::CONFLICT,
            "reload_failed",
            format!("the policy {name:?} was written but is not in force after the reload"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Grants: the same store calls as `portcullis grant`
// ---------------------------------------------------------------------------------------------

fn grant_error(e: GrantError) -> Response {
    let (status, code) = match &e {
        GrantError::NotFound(_) => (StatusCode::NOT_FOUND, "grant_not_found"),
        GrantError::Ambiguous { .. } => (StatusCode::CONFLICT, "grant_ambiguous"),
        GrantError::Duplicate { .. } => (StatusCode::CONFLICT, "grant_duplicate"),
        GrantError::Revoked(_) => (StatusCode::CONFLICT, "grant_revoked"),
        GrantError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_grant"),
        GrantError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
    };
    error(status, code, e.to_string())
}

#[derive(Deserialize)]
struct GrantsQuery {
    server: Option<String>,
}

/// `GET /admin/api/grants[?server=]`: grants with their status; never tokens.
async fn grants_list(
    State(st): State<Arc<AdminState>>,
    Query(q): Query<GrantsQuery>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    let store = refused!(st.grants());
    let now = system_clock();
    match store.list(q.server.as_deref()) {
        Ok(list) => ok(&Value::Array(
            list.iter().map(|g| grant_json(g, now)).collect(),
        )),
        Err(e) => grant_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGrant {
    server: String,
    label: String,
    #[serde(default)]
    policy: Option<String>,
    /// A duration from now (`30d`) or a UTC date/time, as `portcullis grant create --expires`.
    #[serde(default)]
    expires: Option<String>,
}

/// Parses a JSON body into `T`; 400 with serde's message otherwise.
fn body_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body is not the expected JSON object: {e}"),
        )
    })
}

/// `POST /admin/api/grants {server, label, policy?, expires?}`: 201 `{grant, token}`; the
/// token is shown in this answer only.
async fn grant_create(
    State(st): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    admitted!(st, headers);
    let store = refused!(st.grants());
    let g: NewGrant = refused!(body_json(&body));
    refused!(st.server_known(&g.server));
    let now = system_clock();
    let expires_at = match g
        .expires
        .as_deref()
        .map(|e| parse_when(e, now, true, "expires"))
        .transpose()
    {
        Ok(t) => t,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_grant", e),
    };
    if expires_at.is_some_and(|t| t <= now) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_grant",
            "expires is in the past; give a duration (30d) or a future date",
        );
    }
    match store.create(&g.server, &g.label, g.policy.as_deref(), expires_at, now) {
        Ok((grant, token)) => {
            let mut out = json!({"grant": grant_json(&grant, now), "token": token.secret()});
            if let Some(w) = policy_warning(&st, grant.policy.as_deref()) {
                out["warning"] = json!(w);
            }
            reply(StatusCode::CREATED, &out)
        }
        Err(e) => grant_error(e),
    }
}

/// Why a grant's policy will deny every call, if it will.
fn policy_warning(st: &AdminState, policy: Option<&str>) -> Option<String> {
    match policy {
        None => Some("this grant carries no policy, so every call through it is denied with rule \"(no policy)\"".into()),
        Some(p) if !st.gw.policies().contains_key(p) => Some(format!(
            "no policy named {p:?} is configured, so every call through this grant is denied until one is"
        )),
        Some(_) => None,
    }
}

/// `POST /admin/api/grants/{id}/rotate`: `{grant, token}` with the new token; the old one
/// is refused from the next request on. `{id}` may also be a label naming one grant.
async fn grant_rotate(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    let store = refused!(st.grants());
    let now = system_clock();
    let rotated = store.get(&id, None).and_then(|g| store.rotate(&g.id, now));
    match rotated {
        Ok((g, token)) => ok(&json!({"grant": grant_json(&g, now), "token": token.secret()})),
        Err(e) => grant_error(e),
    }
}

/// `DELETE /admin/api/grants/{id}`: revokes; answers the revoked grant.
async fn grant_revoke(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    let store = refused!(st.grants());
    let now = system_clock();
    match store.get(&id, None).and_then(|g| store.revoke(&g.id, now)) {
        Ok(g) => ok(&grant_json(&g, now)),
        Err(e) => grant_error(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    since: Option<String>,
    until: Option<String>,
    grant: Option<String>,
    tool: Option<String>,
    decision: Option<String>,
    server: Option<String>,
    limit: Option<usize>,
}

/// The audit filter of a query: the CLI's own parser ([`crate::admin::audit_filter`]).
fn audit_filter(q: AuditQuery, now: u64) -> Result<AuditFilter, String> {
    let mut f = crate::admin::audit_filter(
        q.since.as_deref(),
        q.until.as_deref(),
        q.grant,
        q.tool,
        q.decision.as_deref(),
        q.server,
        now,
        "",
    )?;
    f.limit = match q.limit {
        Some(0) => None,
        Some(n) => Some(n),
        None => Some(DEFAULT_AUDIT_LIMIT),
    };
    Ok(f)
}

/// `GET /admin/api/audit?…`: `{records}`, the most recent matching ones (100 by default,
/// `limit=0` for all).
async fn audit(
    State(st): State<Arc<AdminState>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    let Some(log) = st.gw.audit_log().cloned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_off",
            "auditing is off ([gateway] audit = \"off\")",
        );
    };
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()),
    };
    let filter = match audit_filter(q, system_clock()) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_query", e),
    };
    // In async mode, records may still be queued: commit them first.
    if let Err(e) = log.flush().await {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit_error",
            e.to_string(),
        );
    }
    match tokio::task::spawn_blocking(move || log.query(&filter)).await {
        Ok(Ok(records)) => ok(&json!({ "records": records })),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit_error",
            e.to_string(),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit_error",
            e.to_string(),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct CountersQuery {
    /// Grant id or label (or the subject itself: `static:<label>`, `local`).
    grant: Option<String>,
}

/// `GET /admin/api/counters/{server}?grant=`: for each limit of the policy that applies
/// (the grant's when a grant is given and carries one, else the server's own), its usage now.
/// Session-scoped and `per` limits are listed without usage, with a note.
async fn counters(
    State(st): State<Arc<AdminState>>,
    Path(server): Path<String>,
    Query(q): Query<CountersQuery>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    refused!(st.server_known(&server));
    // The grant's id (the engine's subject for grant scope) and its policy.
    let (subject, grant_policy) = match (&q.grant, st.gw.grants()) {
        (Some(g), Some(store)) => match store.get(g, Some(&server)) {
            Ok(found) => (Some(found.id), found.policy),
            Err(GrantError::NotFound(_)) => (Some(g.clone()), None),
            Err(e) => return grant_error(e),
        },
        (Some(g), None) => (Some(g.clone()), None),
        (None, _) => (None, None),
    };
    let policy_name = grant_policy.unwrap_or_else(|| server.clone());
    let policies = st.gw.policies();
    let Some((engine, hash)) = policies.get(&policy_name) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_policy",
            format!("no policy named {policy_name:?} is in force, so no limits apply"),
        );
    };
    let doc = engine.doc();
    let now = system_clock();
    let store = st.gw.counters();
    let rules = doc
        .all_tools
        .iter()
        .map(|r| ("*", r))
        .chain(doc.tools.iter().map(|(n, r)| (n.as_str(), r)));
    let mut out = Vec::new();
    for (tool, rules) in rules {
        for l in &rules.limits {
            let mut entry = json!({
                "tool": tool,
                "counter": l.counter,
                "window": l.window,
                "scope": l.scope.as_str(),
                "max": l.max,
                "used": null,
                "remaining": null,
                "resets_at": null,
            });
            let subject = match l.scope {
                Scope::Grant => match &subject {
                    Some(s) => Some(s.as_str()),
                    None => {
                        entry["note"] = json!("kept per grant: give ?grant=<id or label>");
                        None
                    }
                },
                Scope::Server => Some(server.as_str()),
                Scope::Global => Some(""),
                Scope::Session => {
                    entry["note"] = json!("kept per session: not reported");
                    None
                }
            };
            let window = Window::parse(&l.window);
            match (subject, window) {
                _ if l.per.is_some() => {
                    entry["note"] = json!(format!(
                        "kept per value of {}: not reported",
                        l.per.as_deref().unwrap_or_default()
                    ));
                }
                (Some(s), Some(w)) => {
                    let key = CounterKey::new(l.scope, s, &l.counter, w, None);
                    match store.usage(&key, w, now) {
                        Ok(u) => {
                            entry["used"] = json!(u.used);
                            entry["remaining"] = json!(l.max.saturating_sub(u.used));
                            entry["resets_at"] = json!(u.resets_at);
                        }
                        Err(e) => entry["note"] = json!(format!("the counter store failed: {e}")),
                    }
                }
                _ => {}
            }
            out.push(entry);
        }
    }
    ok(&json!({
        "server": server,
        "policy": {"name": policy_name, "hash": hash},
        "grant": subject,
        "limits": out,
    }))
}

// ---------------------------------------------------------------------------------------------
// Approvals: the same store calls and audit record as `portcullis approvals`
// ---------------------------------------------------------------------------------------------

/// Who decided, when an API request does not say.
const API_APPROVER: &str = "admin-api";

impl AdminState {
    /// The approval store of the data directory (created on first use).
    fn approvals(&self) -> Result<portcullis_store::SqliteApprovals, Refusal> {
        let dir = self.cfg.resolve(&self.cfg.gateway.data_dir);
        let fail = |m: String| refuse(StatusCode::INTERNAL_SERVER_ERROR, "store_error", m);
        crate::admin::create_private_dir(&dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        portcullis_store::SqliteApprovals::open(dir.join(portcullis_store::APPROVALS_FILE))
            .map_err(|e| fail(e.to_string()))
    }
}

fn approval_error(e: ApprovalError) -> Response {
    let (status, code) = match &e {
        ApprovalError::NotFound(_) => (StatusCode::NOT_FOUND, "approval_not_found"),
        ApprovalError::NotPending(_) => (StatusCode::CONFLICT, "approval_not_pending"),
        ApprovalError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
    };
    error(status, code, e.to_string())
}

fn approval_json(a: &portcullis_store::Approval) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

/// Runs blocking store work off the async threads.
async fn blocking(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsQuery {
    /// pending (default), approved, denied, expired, consumed or all.
    status: Option<String>,
}

/// `GET /admin/api/approvals[?status=]`: approval requests, newest first; pending ones by
/// default, `status=all` for every one.
async fn approvals_list(
    State(st): State<Arc<AdminState>>,
    query: Result<Query<ApprovalsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()),
    };
    let filter = match crate::approvals_cli::status_filter(q.status.as_deref().unwrap_or("pending"))
    {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("status: {e}"),
            )
        }
    };
    blocking(move || {
        let store = refused!(st.approvals());
        match store.list(filter, system_clock()) {
            Ok(list) => ok(&Value::Array(list.iter().map(approval_json).collect())),
            Err(e) => approval_error(e),
        }
    })
    .await
}

/// `GET /admin/api/approvals/{id}`: one approval request (a lapsed one shown as expired).
async fn approval_get(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    blocking(move || {
        let store = refused!(st.approvals());
        // Listing marks lapsed requests expired first, as `portcullis approvals show` does.
        if let Err(e) = store.list(Some(ApprovalStatus::Pending), system_clock()) {
            return approval_error(e);
        }
        match store.get(&id) {
            Ok(a) => ok(&approval_json(&a)),
            Err(e) => approval_error(e),
        }
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// Who approves [default: `admin-api`].
    #[serde(default)]
    by: Option<String>,
    /// How long the approval stays usable (`10m` by default).
    #[serde(default)]
    valid_for: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    reason: String,
    #[serde(default)]
    by: Option<String>,
}

/// [`crate::approvals_cli::decide`] with the gateway's audit log, off the async threads.
async fn decide_api(st: Arc<AdminState>, id: String, by: String, d: Decision) -> Response {
    blocking(move || {
        let store = refused!(st.approvals());
        let log = st.gw.audit_log().cloned();
        match crate::approvals_cli::decide(&store, log.as_deref(), &id, &by, &d, system_clock()) {
            Ok(a) => ok(&approval_json(&a)),
            Err(DecideError::Store(e)) => approval_error(*e),
            Err(e @ DecideError::Invalid(_)) => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_decision",
                e.to_string(),
            ),
            Err(e @ DecideError::Audit { .. }) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit_error",
                e.to_string(),
            ),
        }
    })
    .await
}

/// `POST /admin/api/approvals/{id}/approve {by?, valid_for?}`: approves a pending request;
/// the agent's identical retry passes once within `valid_for` (default 10m). Audited.
async fn approval_approve(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    admitted!(st, headers);
    let b: ApproveBody = if body.iter().all(u8::is_ascii_whitespace) {
        ApproveBody::default()
    } else {
        refused!(body_json(&body))
    };
    let valid_for = b
        .valid_for
        .as_deref()
        .unwrap_or(crate::approvals_cli::DEFAULT_VALID_FOR);
    let valid_for_ms = match crate::approvals_cli::parse_valid_for(valid_for, "valid_for") {
        Ok(v) => v,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_decision", e),
    };
    let by = b.by.unwrap_or_else(|| API_APPROVER.into());
    decide_api(st, id, by, Decision::Approve { valid_for_ms }).await
}

/// `POST /admin/api/approvals/{id}/deny {reason, by?}`: denies a pending request; the
/// agent's retry is told the reason. Audited.
async fn approval_deny(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    admitted!(st, headers);
    let b: DenyBody = refused!(body_json(&body));
    let by = b.by.unwrap_or_else(|| API_APPROVER.into());
    decide_api(st, id, by, Decision::Deny { reason: b.reason }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h: [u8; 32] = Sha256::digest(b"x").into();
        assert_eq!(parse_hex32(&hex(&h)), Some(h));
        assert_eq!(parse_hex32("zz"), None);
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    }
}
