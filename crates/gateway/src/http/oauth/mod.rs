//! The gateway as an OAuth 2.1 resource server (the MCP authorization spec): servers with
//! `auth = "oauth"` accept JWT access tokens of the `[oauth]` issuer whose audience is the
//! server's resource URI; the token's principal gets a policy by the `[[oauth.rules]]`.
//!
//! | File | Job |
//! |---|---|
//! | `mod.rs` | [`OAuth`]: the resources, token → principal → policy, the refusals and their challenges |
//! | `metadata.rs` | Protected Resource Metadata (RFC 9728) at `/.well-known/oauth-protected-resource/…` |
//! | `keys.rs` | issuer discovery (RFC 8414, OpenID Connect) and the cached JWKS, fail closed |
//! | `token.rs` | JWT checks: algorithm allow-list, key fit, signature, `iss`, `aud`, `exp`/`nbf` |
//! | `introspect.rs` | opaque tokens asked about at the issuer's introspection endpoint (RFC 7662) |
//! | `principal.rs` | [`Principal`] from the claims; the rules that map it to a policy |

mod introspect;
mod keys;
pub(super) mod metadata;
mod principal;
mod token;

pub use principal::Principal;

use crate::config::{Config, OAuthConfig};
use jsonwebtoken::Algorithm;
use std::collections::HashMap;
use std::time::Duration;

/// One server's resource.
struct Resource {
    /// `<public_url>/mcp/<server>`: what the metadata names and clients ask tokens for.
    uri: String,
    /// What tokens' `aud` must hold (the URI unless `audience` is set).
    audience: String,
    /// Scopes every token must carry.
    required_scopes: Vec<String>,
}

/// The OAuth resource server of a gateway.
pub(crate) struct OAuth {
    cfg: OAuthConfig,
    keys: keys::Keys,
    introspector: Option<introspect::Introspector>,
    algorithms: Vec<Algorithm>,
    resources: HashMap<String, Resource>,
}

/// Why an OAuth request was refused: each has its status, code and challenge.
#[derive(Debug)]
pub(super) enum Refusal {
    /// No bearer token (401 with the metadata's address, RFC 9728 §5.1).
    Missing,
    /// An access token in the query string (400 `invalid_request`): tokens only in the
    /// `Authorization` header.
    InQuery,
    /// 401 `invalid_token`.
    Invalid(String),
    /// 403 `insufficient_scope`, with the scopes needed.
    Scope(Vec<String>, Box<Principal>),
    /// 403: no `[[oauth.rules]]` entry gives this principal a policy on this server.
    NoPolicy(Box<Principal>),
    /// 503: the issuer's keys (or its introspection endpoint) cannot be reached, so no token
    /// can be judged.
    Unavailable(String),
}

impl Refusal {
    /// The HTTP status.
    pub(super) fn status(&self) -> u16 {
        match self {
            Refusal::InQuery => 400,
            Refusal::Missing | Refusal::Invalid(_) => 401,
            Refusal::Scope(..) | Refusal::NoPolicy(_) => 403,
            Refusal::Unavailable(_) => 503,
        }
    }

    /// The error code (RFC 6750 §3.1, and ours).
    pub(super) fn code(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing_token",
            Refusal::InQuery => "invalid_request",
            Refusal::Invalid(_) => "invalid_token",
            Refusal::Scope(..) => "insufficient_scope",
            Refusal::NoPolicy(_) => "no_policy",
            Refusal::Unavailable(_) => "temporarily_unavailable",
        }
    }

    /// What the client is told, and the audit log keeps.
    pub(super) fn message(&self) -> String {
        match self {
            Refusal::Missing => "no access token: send `Authorization: Bearer <token>` with a token from the authorization server named in the resource metadata".into(),
            Refusal::InQuery => "access tokens are accepted only in the Authorization header, never in the URL".into(),
            Refusal::Invalid(why) => why.clone(),
            Refusal::Scope(need, _) => format!("the token lacks scope {}; request a token with it", need.join(" ")),
            Refusal::NoPolicy(p) => format!("no oauth rule gives {} (client {}) a policy on this server; ask the operator to add one", p.label(), p.client_id.as_deref().unwrap_or("-")),
            Refusal::Unavailable(why) => format!("the authorization server cannot be reached, so the token cannot be checked: {why}"),
        }
    }

    /// The principal, when the token was valid.
    pub(super) fn principal(&self) -> Option<&Principal> {
        match self {
            Refusal::Scope(_, p) | Refusal::NoPolicy(p) => Some(p),
            _ => None,
        }
    }
}

/// A quoted-string parameter value: no `"` or `\`, printable ASCII.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_ascii() && !c.is_ascii_control() => c,
            _ => '?',
        })
        .collect()
}

impl OAuth {
    /// The resource server of `cfg`, when it has an `[oauth]` table.
    pub(crate) fn new(cfg: &Config) -> Result<Option<OAuth>, String> {
        let Some(o) = &cfg.oauth else {
            return Ok(None);
        };
        let keys = keys::Keys::new(
            &o.issuer,
            Duration::from_secs(o.fetch_timeout_secs),
            Duration::from_secs(o.jwks_max_age_secs),
        )?;
        let algorithms = o
            .algorithms
            .iter()
            .map(|a| {
                token::algorithm(a)
                    .ok_or_else(|| format!("oauth.algorithms: {a:?} is not accepted"))
            })
            .collect::<Result<_, _>>()?;
        let resources = cfg
            .servers
            .iter()
            .filter(|s| s.auth.oauth())
            .map(|s| {
                let uri = format!("{}/mcp/{}", o.base(), s.name);
                let r = Resource {
                    audience: s.audience.clone().unwrap_or_else(|| uri.clone()),
                    uri,
                    required_scopes: s.required_scopes.clone(),
                };
                (s.name.clone(), r)
            })
            .collect();
        let introspector = o
            .introspection
            .as_ref()
            .map(introspect::Introspector::new)
            .transpose()?;
        Ok(Some(OAuth {
            cfg: o.clone(),
            keys,
            introspector,
            algorithms,
            resources,
        }))
    }

    /// `public_url` split into its origin and its path (`""` or `/prefix`).
    fn origin_and_path(&self) -> (&str, &str) {
        let base = self.cfg.base();
        let start = base.find("://").map_or(0, |i| i + 3);
        match base[start..].find('/') {
            Some(p) => base.split_at(start + p),
            None => (base, ""),
        }
    }

    /// Where a server's Protected Resource Metadata is published (RFC 9728 §3.1: the
    /// well-known segment between the host and the resource's path).
    pub(super) fn metadata_url(&self, server: &str) -> String {
        let (origin, path) = self.origin_and_path();
        format!("{origin}/.well-known/oauth-protected-resource{path}/mcp/{server}")
    }

    /// The `WWW-Authenticate` value for a refusal on `server` (none for `no_policy` and 503).
    pub(super) fn challenge(&self, server: &str, r: &Refusal) -> Option<String> {
        let mut c = format!(
            "Bearer resource_metadata=\"{}\"",
            quoted(&self.metadata_url(server))
        );
        let res = self.resources.get(server);
        let scope = |need: &[String]| format!(", scope=\"{}\"", quoted(&need.join(" ")));
        match r {
            Refusal::Missing => {
                let need = res
                    .map(|r| r.required_scopes.as_slice())
                    .unwrap_or_default();
                if !need.is_empty() {
                    c.push_str(&scope(need));
                }
            }
            Refusal::InQuery | Refusal::Invalid(_) => {
                c.push_str(&format!(
                    ", error=\"{}\", error_description=\"{}\"",
                    r.code(),
                    quoted(&r.message())
                ));
            }
            Refusal::Scope(need, _) => {
                c.push_str(&format!(", error=\"insufficient_scope\"{}", scope(need)));
            }
            Refusal::NoPolicy(_) | Refusal::Unavailable(_) => return None,
        }
        Some(c)
    }

    /// The principal of a valid access token for `server`, carrying the server's required
    /// scopes.
    pub(super) async fn principal(&self, server: &str, token: &str) -> Result<Principal, Refusal> {
        let Some(res) = self.resources.get(server) else {
            return Err(Refusal::Invalid(format!(
                "server {server:?} does not accept OAuth tokens"
            )));
        };
        if token.starts_with(portcullis_store::grants::TOKEN_PREFIX) {
            return Err(Refusal::Invalid(
                "grant tokens (pcx_…) are not accepted on this server (auth = \"oauth\"); use an OAuth access token".into(),
            ));
        }
        let expect = token::Expect {
            issuer: &self.cfg.issuer,
            audience: &res.audience,
            algorithms: &self.algorithms,
            leeway_secs: self.cfg.leeway_secs,
        };
        let claims = match &self.introspector {
            // Not a JWT: an opaque token, which only the issuer can judge.
            Some(i) if token.split('.').count() != 3 => {
                let expect = introspect::Expect {
                    issuer: &self.cfg.issuer,
                    audience: &res.audience,
                    leeway_secs: self.cfg.leeway_secs,
                };
                i.claims(token, &self.keys, &expect).await
            }
            _ => token::validate(token, &self.keys, &expect).await,
        }
        .map_err(|e| match e {
            token::TokenError::Invalid(s) => Refusal::Invalid(s),
            token::TokenError::Unavailable(s) => Refusal::Unavailable(s),
        })?;
        let p =
            Principal::from_claims(&claims, &self.cfg.groups_claim).map_err(Refusal::Invalid)?;
        let missing = p.missing_scopes(&res.required_scopes);
        if !missing.is_empty() {
            let need = missing.into_iter().map(str::to_owned).collect();
            return Err(Refusal::Scope(need, Box::new(p)));
        }
        Ok(p)
    }

    /// The policy the rules give `p` on `server` (first match), or the `no_policy` refusal.
    pub(super) fn policy_for(
        &self,
        server: &str,
        p: Principal,
    ) -> Result<(String, Principal), Refusal> {
        match principal::policy_for(&self.cfg.rules, server, &p) {
            Some((_, name)) => Ok((name.to_owned(), p)),
            None => Err(Refusal::NoPolicy(Box::new(p))),
        }
    }
}
