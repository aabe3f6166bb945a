//! The web console of `portcullis serve` at `/ui`: server-rendered pages over the admin
//! operations ([`crate::ops`], the same code paths as the admin API), with a small embedded
//! script for the policy builder and live updates. No CDN, nothing to build: the stylesheet
//! and the script are in the binary.
//!
//! Security: the Host/Origin rule of the MCP face on every request (403); sign-in with the
//! admin token, which becomes a random session id in a cookie (`HttpOnly`, `SameSite=Strict`,
//! `Path=/ui`, `Secure` when the console is reached over TLS) — the token is never put in a
//! URL, a page or a log; a per-session CSRF token on every state change (a form field, or the
//! `X-CSRF-Token` header from the script), refused with 403 otherwise; a strict
//! Content-Security-Policy (scripts and styles from `/ui/assets` only, nothing inline); every
//! text from servers and stores escaped ([`html::esc`]).
//!
//! | File | Job |
//! |---|---|
//! | `mod.rs` | router, sessions, sign-in, CSRF, security headers, assets |
//! | `html.rs` | escaping and the page frame |
//! | `pages.rs` | overview, catalogue, grants, approvals, audit |
//! | `pins.rs` | tool pins: what awaits review (with its diff), approve, reject, every pin |
//! | `builder.rs` | the policy builder: rows per tool, raw JSON, validation, diff, save |

mod builder;
mod html;
mod pages;
mod pins;

use crate::ops::Ops;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Form;
use portcullis_policy::sync::LockExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
const COOKIE: &str = "portcullis_console";

/// How long a session lasts after sign-in.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The Content-Security-Policy of every console answer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// A signed-in browser.
#[derive(Clone)]
pub(crate) struct Session {
    /// The CSRF token every state change of this session must carry.
    pub csrf: String,
    until: Instant,
}

/// What the console's handlers share.
pub(crate) struct Console {
    pub ops: Arc<Ops>,
    token_hash: [u8; 32],
    /// Session id → session. In memory: a restart signs everyone out.
    sessions: Mutex<HashMap<String, Session>>,
    /// Whether the console is served over TLS (`Secure` cookies). `serve` speaks plain HTTP;
    /// behind a TLS proxy, the proxy's cookie policy applies.
    tls: bool,
}

type St = State<Arc<Console>>;

/// The `/ui` routes over the admin operations; `token_hash` is the admin token's SHA-256.
pub fn router(ops: Arc<Ops>, token_hash: [u8; 32], max_body: usize) -> axum::Router<()> {
    let st = Arc::new(Console {
        ops,
        token_hash,
        sessions: Mutex::new(HashMap::new()),
        tls: false,
    });
    let ui = axum::Router::new()
        .route("/ui", get(|| async { redirect("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/console.css", get(css))
        .route("/ui/assets/console.js", get(js))
        .route("/ui/catalogue", get(pages::catalogue))
        .route("/ui/catalogue/{server}/{tool}", get(pages::tool_page))
        .route("/ui/policies", get(builder::index))
        .route("/ui/policies/{server}", get(builder::builder))
        .route("/ui/policies/{server}/preview", post(builder::preview))
        .route("/ui/policies/{server}/save", post(builder::save))
        .route("/ui/validate", post(builder::validate))
        .route("/ui/grants", get(pages::grants).post(pages::grant_create))
        .route("/ui/grants/{id}/rotate", post(pages::grant_rotate))
        .route("/ui/grants/{id}/revoke", post(pages::grant_revoke))
        .route("/ui/approvals", get(pages::approvals))
        .route("/ui/approvals/{id}/approve", post(pages::approve))
        .route("/ui/approvals/{id}/deny", post(pages::deny))
        .route("/ui/pins", get(pins::pins))
        .route("/ui/pins/{server}/{tool}/approve", post(pins::approve))
        .route("/ui/pins/{server}/{tool}/reject", post(pins::reject))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/audit/export", get(pages::audit_export))
        .route("/ui/{*rest}", get(not_found))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(st);
    // Not nested: a nested fallback would answer for the whole gateway.
    ui
}

/// The headers of every console answer: CSP, no sniffing, no referrer to other sites, no
/// caching, no framing.
async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null`
    // with the console's own form posts and fetches, which the Origin rule refuses. Other
    // sites still get no referrer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// An HTML answer.
pub(crate) fn html_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// A 303 to `to` (after a form post, or to the sign-in page).
pub(crate) fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A plain-text refusal.
fn refusal(status: StatusCode, text: &str) -> Response {
    let mut r = (status, text.to_owned()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

fn asset(text: &'static str, ty: &'static str) -> Response {
    let mut r = text.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

impl Console {
    /// The Host/Origin rule of the MCP face.
    fn host_ok(&self, headers: &HeaderMap) -> bool {
        self.ops.gateway().host_ok(headers)
    }

    /// The session of this request, if it carries a live one.
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let mut sessions = self.sessions.lock_or_recover();
        let now = Instant::now();
        sessions.retain(|_, s| s.until > now);
        sessions.get(id).cloned()
    }

    /// A signed-in page request: Host/Origin (403), then a session (else to the sign-in page).
    pub(crate) fn viewer(&self, headers: &HeaderMap) -> Result<Session, Box<Response>> {
        if !self.host_ok(headers) {
            return Err(Box::new(refusal(
                StatusCode::FORBIDDEN,
                "This Host or Origin is not allowed to reach the gateway.",
            )));
        }
        self.session(headers)
            .ok_or_else(|| Box::new(redirect("/ui/login")))
    }

    /// A state change: [`Console::viewer`], then the session's CSRF token, from the form
    /// field `csrf` or the `X-CSRF-Token` header (403 without it).
    pub(crate) fn changer(
        &self,
        headers: &HeaderMap,
        form_token: Option<&str>,
    ) -> Result<Session, Box<Response>> {
        let s = self.viewer(headers)?;
        let presented =
            form_token.or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
        let ok = presented.is_some_and(|p| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                p.as_bytes(),
                s.csrf.as_bytes(),
            ))
        });
        if ok {
            Ok(s)
        } else {
            Err(Box::new(refusal(
                StatusCode::FORBIDDEN,
                "This change carries no valid CSRF token, so nothing was changed. Reload the \
                 page and try again.",
            )))
        }
    }
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// 32 random bytes as hex.
fn random_hex() -> Result<String, String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| format!("the random generator failed: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The value of a `Result<T, Box<Response>>`, or returns the response from the handler.
macro_rules! or_answer {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return *r,
        }
    };
}
pub(crate) use or_answer;

fn login_form(message: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(m) = message {
        body.push_str(&html::notice("error", m));
    }
    body.push_str(
        "<form method=\"post\" action=\"/ui/login\" class=\"login\">\n\
         <label for=\"token\">Admin token</label>\n\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\n\
         <p class=\"hint\">The <code>pca_…</code> token <code>portcullis serve</code> printed at its first start (or <code>PORTCULLIS_ADMIN_TOKEN</code>).</p>\n\
         <button type=\"submit\">Sign in</button>\n</form>\n",
    );
    html::page("Sign in", "", None, &body)
}

async fn login_page(State(st): St, headers: HeaderMap) -> Response {
    if !st.host_ok(&headers) {
        return refusal(StatusCode::FORBIDDEN, "This Host or Origin is not allowed.");
    }
    if st.session(&headers).is_some() {
        return redirect("/ui/");
    }
    html_response(StatusCode::OK, login_form(None))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /ui/login`: the admin token (compared in constant time on its hash) opens a session.
async fn login(State(st): St, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if !st.host_ok(&headers) {
        return refusal(StatusCode::FORBIDDEN, "This Host or Origin is not allowed.");
    }
    if !crate::admin_api::is_admin_token(f.token.trim(), &st.token_hash) {
        let m = if f
            .token
            .trim()
            .starts_with(portcullis_store::grants::TOKEN_PREFIX)
        {
            "That is a grant token; grant tokens are for agents. Sign in with the admin token."
        } else {
            "That is not the admin token. Use the one printed at the first start of `portcullis serve`."
        };
        return html_response(StatusCode::UNAUTHORIZED, login_form(Some(m)));
    }
    let (id, csrf) = match (random_hex(), random_hex()) {
        (Ok(i), Ok(c)) => (i, c),
        (Err(e), _) | (_, Err(e)) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    st.sessions.lock_or_recover().insert(
        id.clone(),
        Session {
            csrf,
            until: Instant::now() + SESSION_TTL,
        },
    );
    let mut r = redirect("/ui/");
    let secure = if st.tls { "; Secure" } else { "" };
    let c = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: Option<String>,
}

/// `POST /ui/logout`: ends the session.
async fn logout(State(st): St, headers: HeaderMap, Form(f): Form<CsrfOnly>) -> Response {
    or_answer!(st.changer(&headers, f.csrf.as_deref()));
    if let Some(id) = cookie(&headers, COOKIE) {
        st.sessions.lock_or_recover().remove(id);
    }
    let mut r = redirect("/ui/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "portcullis_console=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

async fn not_found(State(st): St, headers: HeaderMap) -> Response {
    let s = or_answer!(st.viewer(&headers));
    html_response(
        StatusCode::NOT_FOUND,
        html::page(
            "Not found",
            "",
            Some(&s.csrf),
            "<p>No such console page. <a href=\"/ui/\">Back to the overview</a>.</p>",
        ),
    )
}
