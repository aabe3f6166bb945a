//! Admission at the door: the `Host`/`Origin` rule, the server lookup, the bearer token →
//! [`Caller`] (the grant lookup, or an OAuth access token's principal), and the audited
//! refusals of each.

use super::oauth::{OAuth, Refusal};
use super::policies::Policies;
use super::runtime::ServerRt;
use super::{json_status, Gateway};
use crate::config::{Auth, Config};
use crate::relay::Caller;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use portcullis_store::{bearer_token, AuthError, GrantStore};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Who may call: the `Host`/`Origin` rule, and the bearer token → [`Caller`] lookup.
pub(super) struct Authenticator {
    grants: Option<Arc<dyn GrantStore>>,
    /// The OAuth resource server, when the config has an `[oauth]` table.
    oauth: Option<OAuth>,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
}

/// A refusal at the door: of a grant or static token, or of an OAuth request.
enum Refused {
    Grant(AuthError),
    OAuth(Refusal),
}

impl Authenticator {
    /// Loopback names and the configured `allowed_hosts`/`allowed_origins`; the grant store
    /// when grants are in use.
    pub(super) fn new(
        cfg: &Config,
        grants: Option<Arc<dyn GrantStore>>,
    ) -> Result<Authenticator, String> {
        let mut allowed_hosts = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "[::1]".to_string(),
        ];
        allowed_hosts.extend(cfg.gateway.allowed_hosts.iter().cloned());
        Ok(Authenticator {
            grants,
            oauth: OAuth::new(cfg)?,
            allowed_hosts,
            allowed_origins: cfg.gateway.allowed_origins.clone(),
        })
    }

    /// The OAuth resource server, when configured.
    pub(super) fn oauth(&self) -> Option<&OAuth> {
        self.oauth.as_ref()
    }

    /// The grant store, when grants are in use.
    pub(super) fn grants(&self) -> Option<&Arc<dyn GrantStore>> {
        self.grants.as_ref()
    }

    /// The `Host`/`Origin` rule of every face (DNS rebinding, cross-site requests): loopback
    /// names and the configured `allowed_hosts`/`allowed_origins`.
    pub(super) fn host_ok(&self, headers: &HeaderMap) -> bool {
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
    /// user for `auth = "none"`), with the policy that grant carries, from `policies`.
    fn caller(
        &self,
        server: &ServerRt,
        headers: &HeaderMap,
        policies: &Policies,
        session_id: String,
    ) -> Result<Caller, AuthError> {
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
                principal: None,
                trace: None,
            }),
            Auth::Token => {
                let header = headers.get("authorization").and_then(|h| h.to_str().ok());
                let token = bearer_token(header)?;
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
                        principal: None,
                        trace: None,
                    }),
                    None => Err(AuthError::Unknown),
                }
            }
            Auth::Grant => {
                let header = headers.get("authorization").and_then(|h| h.to_str().ok());
                self.grant_caller(server, bearer_token(header)?, policies, session_id)
            }
            // Admitted by `oauth_caller`; never asked here.
            Auth::OAuth | Auth::OAuthGrant => Err(AuthError::Missing),
        }
    }

    /// The caller of a grant token: the grant, with the policy it carries.
    fn grant_caller(
        &self,
        server: &ServerRt,
        token: &str,
        policies: &Policies,
        session_id: String,
    ) -> Result<Caller, AuthError> {
        let Some(grants) = &self.grants else {
            return Err(AuthError::Store("no grant store is configured".into()));
        };
        let g = grants.authenticate(token, &server.name, crate::relay::system_clock())?;
        // A grant of several servers may carry each server's own policy (`*`).
        let policy = g.policy_on(&server.name).and_then(|name| {
            policies
                .get(name)
                .map(|(e, h)| (e.clone(), (name.to_owned(), h.clone())))
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
            principal: None,
            trace: None,
        })
    }

    /// The caller of a server with `auth = "oauth"` (or `"oauth+grant"`, where grant tokens
    /// go the grant's way): the access token's principal, with the policy the rules give it.
    async fn oauth_caller(
        &self,
        server: &ServerRt,
        headers: &HeaderMap,
        query: Option<&str>,
        policies: &Policies,
        session_id: String,
    ) -> Result<Caller, Refused> {
        let oauth = self
            .oauth
            .as_ref()
            .ok_or_else(|| Refused::OAuth(Refusal::Unavailable("no [oauth] table".into())))?;
        let in_query = query.is_some_and(|q| {
            q.split('&')
                .any(|kv| kv.split('=').next() == Some("access_token"))
        });
        if in_query {
            return Err(Refused::OAuth(Refusal::InQuery));
        }
        let header = headers.get("authorization").and_then(|h| h.to_str().ok());
        let token = bearer_token(header).map_err(|_| Refused::OAuth(Refusal::Missing))?;
        if server.auth == Auth::OAuthGrant
            && token.starts_with(portcullis_store::grants::TOKEN_PREFIX)
        {
            return self
                .grant_caller(server, token, policies, session_id)
                .map_err(Refused::Grant);
        }
        let p = oauth
            .principal(&server.name, token)
            .await
            .map_err(Refused::OAuth)?;
        let (name, p) = oauth.policy_for(&server.name, p).map_err(Refused::OAuth)?;
        let (engine, policy) = match policies.get(&name) {
            Some((e, h)) => (Some(e.clone()), Some((name, h.clone()))),
            None => {
                tracing::warn!(principal = %p.label(), "oauth rule names policy {name:?}, which is not configured: every call is denied");
                (None, None)
            }
        };
        Ok(Caller {
            engine,
            grant_id: p.grant_id(),
            grant_label: p.label(),
            session_id,
            policy,
            request_id: None,
            principal: Some(Arc::new(p)),
            trace: None,
        })
    }
}

impl Gateway {
    /// The `Host`/`Origin` rule of every face (DNS rebinding, cross-site requests): loopback
    /// names and the configured `allowed_hosts`/`allowed_origins`.
    pub fn host_ok(&self, headers: &HeaderMap) -> bool {
        self.auth.host_ok(headers)
    }

    /// Who is calling, with the policies in force now; refusals are audited.
    async fn caller(
        &self,
        server: &ServerRt,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Caller, Box<Response>> {
        // Unique across the replicas sharing a counter store (a `scope = "session"` counter of
        // one request must not meet another replica's request of the same number).
        let session_id = format!(
            "http-{}-{}",
            self.replica,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let policies = self.policies.now();
        let outcome = if server.auth.oauth() {
            self.auth
                .oauth_caller(server, headers, query, &policies, session_id)
                .await
        } else {
            self.auth
                .caller(server, headers, &policies, session_id)
                .map_err(Refused::Grant)
        };
        match outcome {
            Ok(c) => Ok(c),
            Err(Refused::Grant(e)) => Err(self.refuse(server, e).await),
            Err(Refused::OAuth(r)) => Err(self.refuse_oauth(server, r).await),
        }
    }

    /// Answers a refused OAuth request (400/401/403/503, with its `WWW-Authenticate`
    /// challenge and a JSON body) after writing its audit record.
    async fn refuse_oauth(&self, server: &ServerRt, r: Refusal) -> Box<Response> {
        let oauth = self.auth.oauth();
        if !self.events.is_empty() {
            let p = r.principal();
            let (id, label) = p.map(|p| (p.grant_id(), p.label())).unzip();
            let mut rec = super::refusal(
                &server.name,
                "(authentication)",
                format!("(oauth: {})", r.code()),
                r.message(),
                id.as_deref().zip(label.as_deref()),
            );
            if let Some(p) = p {
                p.audit(&mut rec);
            }
            self.events.record(rec).await;
        }
        let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut resp = json_status(status, json!({"error": r.code(), "message": r.message()}));
        if let Some(c) = oauth.and_then(|o| o.challenge(&server.name, &r)) {
            if let Ok(v) = axum::http::HeaderValue::from_str(&c) {
                resp.headers_mut().insert("www-authenticate", v);
            }
        }
        Box::new(resp)
    }

    /// Answers a refused authentication (401/403/503 with a JSON body saying which) after
    /// writing its audit record.
    async fn refuse(&self, server: &ServerRt, e: AuthError) -> Box<Response> {
        self.refuse_named(&server.name, e).await
    }

    /// [`Gateway::refuse`] under a server name (or `(aggregate)`).
    async fn refuse_named(&self, server: &str, e: AuthError) -> Box<Response> {
        if !self.events.is_empty() {
            let rec = super::refusal(
                server,
                "(authentication)",
                format!("(auth: {})", e.code()),
                e.to_string(),
                e.grant().map(|g| (g.id.as_str(), g.label.as_str())),
            );
            self.events.record(rec).await;
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        Box::new(json_status(status, e.body()))
    }
}

/// The checks every request passes first, in the spec's order: `Host`/`Origin` (403), the
/// server (404), the bearer token or access token (400/401/403, audited). `query` is the
/// request URI's query (an access token there is refused).
pub(super) async fn admit(
    gw: &Arc<Gateway>,
    server: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(Arc<ServerRt>, Caller), Box<Response>> {
    check_host(gw, server, headers).await?;
    let Some(srv) = gw.rt.server(server) else {
        return Err(Box::new(json_status(
            StatusCode::NOT_FOUND,
            json!({"error": "unknown_server", "message": format!("No server named {server:?} is configured.")}),
        )));
    };
    let caller = gw.caller(&srv, headers, query).await?;
    Ok((srv, caller))
}

/// Admission to the aggregated endpoint (`/mcp` of several servers): the `Host`/`Origin`
/// rule, then the bearer token (or access token) asked of every configured server in turn,
/// silently; the servers that admit it are the endpoint's members, each with the caller that
/// server gives it (the grant's policy, a static token's or principal's). None admitting it is
/// refused (and audited) once, as `(aggregate)`, with the most telling reason: a bad token
/// rather than "another server's grant".
pub(super) async fn admit_all(
    gw: &Arc<Gateway>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Vec<crate::aggregate::MemberSpec>, Box<Response>> {
    check_host(gw, "(aggregate)", headers).await?;
    let session_id = format!(
        "http-{}-{}",
        gw.replica,
        gw.next.fetch_add(1, Ordering::Relaxed)
    );
    let policies = gw.policies.now();
    let mut members = Vec::new();
    let mut refused: Option<(Arc<ServerRt>, Refused)> = None;
    for name in gw.server_names() {
        let Some(srv) = gw.rt.server(&name) else {
            continue;
        };
        let outcome = if srv.auth.oauth() {
            gw.auth
                .oauth_caller(&srv, headers, query, &policies, session_id.clone())
                .await
        } else {
            gw.auth
                .caller(&srv, headers, &policies, session_id.clone())
                .map_err(Refused::Grant)
        };
        match outcome {
            Ok(caller) => members.push(crate::aggregate::MemberSpec { name, caller }),
            Err(r) => {
                let weak = |r: &Refused| matches!(r, Refused::Grant(AuthError::WrongServer { .. }));
                if refused
                    .as_ref()
                    .is_none_or(|(_, old)| weak(old) && !weak(&r))
                {
                    refused = Some((srv, r));
                }
            }
        }
    }
    if !members.is_empty() {
        return Ok(members);
    }
    let Some((srv, r)) = refused else {
        return Err(Box::new(json_status(
            StatusCode::NOT_FOUND,
            json!({"error": "unknown_server", "message": "No server is configured."}),
        )));
    };
    Err(match r {
        Refused::Grant(e) => gw.refuse_named("(aggregate)", e).await,
        Refused::OAuth(r) => gw.refuse_oauth(&srv, r).await,
    })
}

/// The `Host`/`Origin` rule (403, audited under `server`).
async fn check_host(
    gw: &Arc<Gateway>,
    server: &str,
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
    if !gw.host_ok(headers) {
        if !gw.events.is_empty() {
            let h = |k: &str| {
                headers
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .chars()
                    .take(200)
                    .collect::<String>()
            };
            let rec = super::refusal(
                server,
                "(authentication)",
                "(forbidden origin)".into(),
                format!("Host {:?}, Origin {:?}", h("host"), h("origin")),
                None,
            );
            gw.events.record(rec).await;
        }
        return Err(Box::new(json_status(
            StatusCode::FORBIDDEN,
            json!({"error": "forbidden_origin", "message": "This Host or Origin is not allowed to reach the gateway."}),
        )));
    }
    Ok(())
}
