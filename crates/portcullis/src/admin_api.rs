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
//! | `GET /admin/api/pins[?server=&state=]` | tool pins, sorted by server and tool |
//! | `GET /admin/api/pins/{server}/{tool}` | one pin and its diff (approved vs listed) |
//! | `POST /admin/api/pins/{server}/{tool}/approve` | approve the listed definition `{by?}`; audited |
//! | `POST /admin/api/pins/{server}/{tool}/reject` | reject the listed definition `{by?}`; audited |
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
//! Errors are `{"error": code, "message": text}` with a fitting status. This file is the HTTP
//! face only: every operation is one of [`crate::ops`] (shared with the web console), whose
//! errors map to statuses in [`op_error`].

use crate::admin::grant_json;
use crate::ops::audit::AuditQuery;
use crate::ops::grants::Issued;
use crate::ops::{Kind, OpError, OpResult, Ops};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portcullis_gateway::relay::system_clock;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path as FsPath;
use std::sync::Arc;

/// The OpenAPI 3.1 document of this API, served at `/admin/api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// File in the data directory holding the admin token's SHA-256 (hex).
pub const ADMIN_TOKEN_FILE: &str = "admin.token.sha256";

/// Environment variable whose value, when set at start, becomes the admin token.
pub const ADMIN_TOKEN_ENV: &str = "PORTCULLIS_ADMIN_TOKEN";

/// Prefix of generated admin tokens (grant tokens start with `pcx_`).
pub const ADMIN_TOKEN_PREFIX: &str = "pca_";

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
    let tmp = crate::ops::tmp_name(path);
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

/// What the handlers share.
pub struct AdminState {
    ops: Arc<Ops>,
    token_hash: [u8; 32],
}

/// The `/admin/api/…` routes (and `/metrics`) over the operations of a running gateway.
/// `token_hash` comes from [`admin_token_hash`]; `max_body` caps request bodies.
pub fn router(ops: Arc<Ops>, token_hash: [u8; 32], max_body: usize) -> axum::Router<()> {
    let state = Arc::new(AdminState { ops, token_hash });
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
        .route("/pins", get(pins_list))
        .route("/pins/{server}/{tool}", get(pin_get))
        .route("/pins/{server}/{tool}/approve", post(pin_approve))
        .route("/pins/{server}/{tool}/reject", post(pin_reject))
        // Unknown routes under the prefix only: the rest of the gateway is untouched.
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state);
    axum::Router::new().nest("/admin/api", api).merge(scrape)
}

/// Whether `token` is the admin token (compared in constant time on its SHA-256).
pub(crate) fn is_admin_token(token: &str, hash: &[u8; 32]) -> bool {
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    subtle::ConstantTimeEq::ct_eq(&presented[..], &hash[..]).into()
}

/// `GET /metrics`: the gateway's metrics as OpenMetrics text (which Prometheus reads), for
/// the admin token only.
async fn metrics(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Err(r) = s.admit(&headers) {
        return *r;
    }
    let Some(text) = s.ops.gateway().metrics_text() else {
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

/// The HTTP status of a kind of failure.
pub(crate) fn status_of(kind: Kind) -> StatusCode {
    match kind {
        Kind::BadRequest => StatusCode::BAD_REQUEST,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Upstream => StatusCode::BAD_GATEWAY,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An operation's error as `{"error", "message"[, "errors"]}` with its status.
fn op_error(e: OpError) -> Response {
    let mut body = json!({"error": e.code, "message": e.message});
    if !e.errors.is_empty() {
        body["errors"] = json!(e.errors);
    }
    reply(status_of(e.kind), &body)
}

/// An operation's result as a JSON answer (200) or its error.
fn answer<T>(r: OpResult<T>, to_json: impl FnOnce(T) -> Value) -> Response {
    match r {
        Ok(v) => ok(&to_json(v)),
        Err(e) => op_error(e),
    }
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
        if is_admin_token(token, &self.token_hash) {
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
        if self.ops.gateway().host_ok(headers) {
            Ok(())
        } else {
            Err(refuse(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "This Host or Origin is not allowed to reach the gateway.",
            ))
        }
    }
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

/// A query string as `T`, or the 400 answer.
fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, Refusal> {
    q.map(|Query(v)| v)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
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
    ok(&json!(st.ops.servers()))
}

#[derive(Deserialize)]
struct ToolsQuery {
    /// `true`: ignore the cached list and ask the server again.
    #[serde(default)]
    refresh: bool,
}

/// `GET /admin/api/servers/{name}/tools`: every tool with its classification, and whether
/// the server's own policy hides it.
async fn tools_of(
    State(st): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Query(q): Query<ToolsQuery>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    answer(st.ops.tools(&name, q.refresh).await, |v| v)
}

// ---------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------

/// `GET /admin/api/policies`: `[{name, hash}]`, sorted by name.
async fn policies(State(st): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    admitted!(st, headers);
    let list: Vec<Value> = st
        .ops
        .policies()
        .into_iter()
        .map(|(name, hash)| json!({"name": name, "hash": hash}))
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
    answer(st.ops.policy(&name), |p| json!(p))
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
    answer(
        st.ops.put_policy(&name, text).await,
        |(name, hash)| json!({"name": name, "hash": hash}),
    )
}

// ---------------------------------------------------------------------------------------------
// Grants
// ---------------------------------------------------------------------------------------------

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
    let now = system_clock();
    answer(st.ops.grants(q.server.as_deref()), |list| {
        Value::Array(list.iter().map(|g| grant_json(g, now)).collect())
    })
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

/// `{grant, token[, warning]}`: the answer to a create or rotate.
fn issued_json(i: Issued) -> Value {
    let mut out = json!({"grant": grant_json(&i.grant, system_clock()), "token": i.token.secret()});
    if let Some(w) = i.warning {
        out["warning"] = json!(w);
    }
    out
}

/// `POST /admin/api/grants {server, label, policy?, expires?}`: 201 `{grant, token}`; the
/// token is shown in this answer only.
async fn grant_create(
    State(st): State<Arc<AdminState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    admitted!(st, headers);
    let g: NewGrant = refused!(body_json(&body));
    match st.ops.create_grant(
        &g.server,
        &g.label,
        g.policy.as_deref(),
        g.expires.as_deref(),
    ) {
        Ok(i) => reply(StatusCode::CREATED, &issued_json(i)),
        Err(e) => op_error(e),
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
    answer(st.ops.rotate_grant(&id), issued_json)
}

/// `DELETE /admin/api/grants/{id}`: revokes; answers the revoked grant.
async fn grant_revoke(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    answer(st.ops.revoke_grant(&id), |g| grant_json(&g, system_clock()))
}

// ---------------------------------------------------------------------------------------------
// Audit and counters
// ---------------------------------------------------------------------------------------------

/// `GET /admin/api/audit?…`: `{records}`, the most recent matching ones (100 by default,
/// `limit=0` for all).
async fn audit(
    State(st): State<Arc<AdminState>>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    let q = refused!(query(q));
    answer(
        st.ops.audit(q).await,
        |records| json!({ "records": records }),
    )
}

#[derive(Deserialize)]
struct CountersQuery {
    /// Grant id or label (or the subject itself: `static:<label>`, `local`).
    grant: Option<String>,
}

/// `GET /admin/api/counters/{server}?grant=`: the usage of each limit of the policy that
/// applies.
async fn counters(
    State(st): State<Arc<AdminState>>,
    Path(server): Path<String>,
    Query(q): Query<CountersQuery>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    answer(st.ops.counters(&server, q.grant.as_deref()), |v| v)
}

// ---------------------------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------------------------

/// Who decided, when an API request does not say.
const API_APPROVER: &str = "admin-api";

fn approval_json(a: &portcullis_store::Approval) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
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
    q: Result<Query<ApprovalsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    let q = refused!(query(q));
    answer(st.ops.approvals(q.status.as_deref()).await, |list| {
        Value::Array(list.iter().map(approval_json).collect())
    })
}

/// `GET /admin/api/approvals/{id}`: one approval request (a lapsed one shown as expired).
async fn approval_get(
    State(st): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    answer(st.ops.approval(&id).await, |a| approval_json(&a))
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
    let by = b.by.as_deref().unwrap_or(API_APPROVER);
    answer(st.ops.approve(&id, by, b.valid_for.as_deref()).await, |a| {
        approval_json(&a)
    })
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
    let by = b.by.as_deref().unwrap_or(API_APPROVER);
    answer(st.ops.deny(&id, by, &b.reason).await, |a| approval_json(&a))
}

// ---------------------------------------------------------------------------------------------
// Tool pins
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinsQuery {
    /// Only this server's pins.
    server: Option<String>,
    /// pinned, quarantined, pending or rejected.
    state: Option<String>,
}

/// `GET /admin/api/pins[?server=&state=]`: pins sorted by server and tool.
async fn pins_list(
    State(st): State<Arc<AdminState>>,
    q: Result<Query<PinsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    let q = refused!(query(q));
    answer(
        st.ops.pins(q.server.as_deref(), q.state.as_deref()).await,
        |list| serde_json::to_value(list).unwrap_or(Value::Null),
    )
}

/// `GET /admin/api/pins/{server}/{tool}`: the pin and the members its listed definition
/// changes.
async fn pin_get(
    State(st): State<Arc<AdminState>>,
    Path((server, tool)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    admitted!(st, headers);
    answer(st.ops.pin(&server, &tool).await, |d| {
        serde_json::to_value(d).unwrap_or(Value::Null)
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PinDecisionBody {
    /// Who decides [default: `admin-api`].
    #[serde(default)]
    by: Option<String>,
}

async fn pin_decide(
    st: Arc<AdminState>,
    server: &str,
    tool: &str,
    body: &[u8],
    approve: bool,
) -> Response {
    let b: PinDecisionBody = if body.iter().all(u8::is_ascii_whitespace) {
        PinDecisionBody::default()
    } else {
        refused!(body_json(body))
    };
    let by = b.by.as_deref().unwrap_or(API_APPROVER);
    answer(st.ops.decide_pin(server, tool, by, approve).await, |p| {
        serde_json::to_value(p).unwrap_or(Value::Null)
    })
}

/// `POST /admin/api/pins/{server}/{tool}/approve {by?}`: the listed definition becomes the
/// pin; the next call passes. Audited.
async fn pin_approve(
    State(st): State<Arc<AdminState>>,
    Path((server, tool)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    admitted!(st, headers);
    pin_decide(st, &server, &tool, &body, true).await
}

/// `POST /admin/api/pins/{server}/{tool}/reject {by?}`: the listed definition is refused;
/// the tool stays quarantined while the server lists it. Audited.
async fn pin_reject(
    State(st): State<Arc<AdminState>>,
    Path((server, tool)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    admitted!(st, headers);
    pin_decide(st, &server, &tool, &body, false).await
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
