//! `portcullis.toml`: the gateway's configuration file.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener and store settings.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// Upstream servers.
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
    /// Named policies grants can carry (`name = "policies/file.json"`). Each server's own
    /// `policy` is also available under the server's name.
    #[serde(default)]
    pub policies: BTreeMap<String, PathBuf>,
    /// `[store]`: where counters, grants and approvals live (embedded SQLite by default).
    #[serde(default)]
    pub store: portcullis_store::StoreConfig,
    /// `[oauth]`: the authorization server whose access tokens servers with `auth = "oauth"`
    /// accept, and which policy each principal gets.
    pub oauth: Option<OAuthConfig>,
    /// `[telemetry]`: OpenTelemetry traces (off unless an OTLP endpoint is set).
    #[serde(default)]
    pub telemetry: crate::traces::TelemetryConfig,
    /// Directory the file lives in (relative paths resolve against it).
    #[serde(skip)]
    pub base: PathBuf,
}

/// `[gateway]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Listen address; loopback by default.
    pub listen: String,
    /// Data directory: counters, grants, approvals, the audit log, the admin token.
    pub data_dir: PathBuf,
    /// Extra `Host` values accepted besides localhost, 127.0.0.1 and `[::1]` (any port).
    pub allowed_hosts: Vec<String>,
    /// Extra `Origin` values accepted (exact `scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Longest wait for an upstream answer, seconds.
    pub request_timeout_secs: u64,
    /// `"durable"` (default: on disk before the client sees the answer), `"async"` or
    /// `"async:250ms"` (bounded loss window), or `"off"`.
    pub audit: String,
    /// Delete audit records older than this (`"30d"`); unset keeps everything.
    pub audit_retention: Option<String>,
    /// POSTed a JSON notification for every new approval request.
    pub approval_webhook: Option<String>,
    /// HMAC-SHA256 key for the webhook's `X-Portcullis-Signature` (may be `${VAR}`).
    pub approval_webhook_secret: Option<String>,
    /// Threads serving connections, each with a runtime of its own (`http::Cores`); 0 (the
    /// default) means one per CPU the process may run on.
    pub workers: usize,
    /// Longest wait, seconds, for a request head: from a new connection, or from the first
    /// byte of the next request on a kept-alive one.
    pub header_read_timeout_secs: u64,
    /// Longest wait, seconds, for a request body once its head has arrived.
    pub body_read_timeout_secs: u64,
    /// A kept-alive connection with no request for this long, seconds, is closed.
    pub idle_timeout_secs: u64,
    /// Most open connections in all; more are answered 503 and closed.
    pub max_connections: usize,
    /// Most open connections from one client address.
    pub max_connections_per_ip: usize,
    /// Most SSE streams open at once from one client address: Streamable HTTP GET streams
    /// (one per session at a time: a new one supersedes the old) and legacy `/sse` sessions.
    pub max_streams_per_client: usize,
    /// `true` (default): Prometheus metrics at `GET /metrics`. `false`: no metrics are kept
    /// and `/metrics` answers 404.
    pub metrics: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:8480".into(),
            data_dir: PathBuf::from("./portcullis-data"),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: 4 << 20,
            workers: 0,
            request_timeout_secs: 300,
            audit: "durable".into(),
            audit_retention: None,
            approval_webhook: None,
            approval_webhook_secret: None,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 1024,
            max_connections_per_ip: 256,
            max_streams_per_client: 64,
            metrics: true,
        }
    }
}

/// `[[servers]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Name; the server is served at `/mcp/<name>`.
    pub name: String,
    /// Command line of a stdio server.
    pub command: Option<Vec<String>>,
    /// URL of an HTTP server: its Streamable HTTP endpoint (legacy HTTP+SSE when the path ends in `/sse`).
    pub url: Option<String>,
    /// Policy file (relative to the config file). Without one, every call is denied.
    pub policy: Option<PathBuf>,
    /// `"grant"` (default): requests need the bearer token of a live grant of this server.
    /// `"token"`: a bearer token from `tokens`. `"none"`: no authentication, allowed only on a
    /// loopback listener (local use, conformance runs).
    #[serde(default)]
    pub auth: Auth,
    /// Static bearer tokens (until grants arrive), each with a label.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Environment for a stdio server (values may use `${VAR}`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Headers for an HTTP server (values may use `${VAR}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Store `tools/call` argument values in the audit log (default: only their keys and a
    /// keyed hash).
    #[serde(default)]
    pub audit_arguments: bool,
    /// Hold-open for calls needing approval (`"30s"`): keep the request open and forward it the
    /// moment a human approves; unset answers `[APPROVAL REQUIRED]` at once.
    pub hold: Option<String>,
    /// How each `tools/call`'s arguments are checked against the `inputSchema` the server
    /// listed: `"enforce"` (default: mismatches, and tools whose schema cannot be obtained, are
    /// refused), `"warn"` (logged and audited, forwarded), `"off"`.
    #[serde(default)]
    pub validate_arguments: crate::schemas::ValidateArguments,
    /// Tool pinning (docs/pinning.md): `"tofu"` (default: a tool's first listed definition
    /// is its pin; a later change is quarantined until an operator reviews it), `"strict"`
    /// (a new tool is hidden until approved), `"off"`.
    #[serde(default)]
    pub pinning: crate::pinning::Pinning,
    /// Poisoned definitions (instructions to the model, requests for secrets…):
    /// `"warn"` (default: logged, audited, kept with the pin, still callable),
    /// `"quarantine"` (quarantined like a changed definition, even at first sight), `"off"`.
    #[serde(default)]
    pub poisoning: crate::pinning::Poisoning,
    /// `auth = "oauth"`: the audience access tokens must carry; unset, the server's canonical
    /// resource URI `<oauth.public_url>/mcp/<name>`.
    pub audience: Option<String>,
    /// `auth = "oauth"`: scopes every access token for this server must carry; a token without
    /// them is answered 403 `insufficient_scope` naming them.
    #[serde(default)]
    pub required_scopes: Vec<String>,
}

/// Authentication mode of a server.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// OAuth 2.1 access tokens of the `[oauth]` issuer (the gateway as a resource server).
    #[serde(rename = "oauth")]
    OAuth,
    /// OAuth access tokens, and grant tokens (`pcx_…`) side by side.
    #[serde(rename = "oauth+grant")]
    OAuthGrant,
    /// Grants from the store (`portcullis grant create`), the default.
    #[default]
    Grant,
    /// Static bearer tokens listed in the file.
    Token,
    /// None (loopback only).
    None,
}

impl Auth {
    /// The name written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::OAuth => "oauth",
            Auth::OAuthGrant => "oauth+grant",
            Auth::Grant => "grant",
            Auth::Token => "token",
            Auth::None => "none",
        }
    }

    /// Whether OAuth access tokens are accepted.
    pub fn oauth(self) -> bool {
        matches!(self, Auth::OAuth | Auth::OAuthGrant)
    }
}

/// The signature algorithms accepted unless `[oauth] algorithms` says otherwise: asymmetric
/// only (the issuer's published public keys verify them).
pub const DEFAULT_OAUTH_ALGORITHMS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// Every algorithm `[oauth] algorithms` may name.
pub const OAUTH_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// `[oauth]`: the gateway as an OAuth 2.1 resource server (the MCP authorization spec).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The authorization server's issuer identifier (exactly as its tokens' `iss`); its
    /// metadata is discovered at `/.well-known/openid-configuration` or RFC 8414's
    /// `/.well-known/oauth-authorization-server`.
    pub issuer: String,
    /// The gateway's externally visible base URL (`https://mcp.example.com`, behind a reverse
    /// proxy its public address): resources are `<public_url>/mcp/<server>`.
    pub public_url: String,
    /// Scopes listed in the Protected Resource Metadata.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Accepted JWS algorithms (default RS256, PS256, ES256, EdDSA); `none` and the
    /// symmetric HS* are refused.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, seconds (at most 300).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Longest wait for the issuer's metadata or keys, seconds.
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_secs: u64,
    /// The issuer's keys are fetched again after this long, seconds; a token naming an
    /// unknown `kid` fetches them at once (at most every 10 seconds).
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_secs: u64,
    /// The claim holding the principal's groups or roles (an array of strings, or one).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Principal → policy, first match wins; no match is refused (403).
    #[serde(default)]
    pub rules: Vec<OAuthRule>,
    /// `[oauth.introspection]`: opaque (non-JWT) access tokens are checked at the issuer's
    /// introspection endpoint (RFC 7662). Unset: only JWT access tokens are accepted.
    pub introspection: Option<IntrospectionConfig>,
}

/// `[oauth.introspection]`: how the gateway asks the issuer about an opaque token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The gateway's client at the authorization server (HTTP Basic authentication).
    pub client_id: String,
    /// Its secret (may be `${VAR}`).
    pub client_secret: String,
    /// The endpoint; unset: the issuer metadata's `introspection_endpoint`.
    pub endpoint: Option<String>,
    /// An active answer is reused for this long (never past the token's `exp`), seconds; 0
    /// asks on every request, so a revoked token is refused at once.
    #[serde(default = "default_introspection_cache")]
    pub cache_secs: u64,
}

fn default_introspection_cache() -> u64 {
    30
}

fn default_algorithms() -> Vec<String> {
    DEFAULT_OAUTH_ALGORITHMS.map(String::from).to_vec()
}
fn default_leeway() -> u64 {
    30
}
fn default_fetch_timeout() -> u64 {
    5
}
fn default_jwks_max_age() -> u64 {
    300
}
fn default_groups_claim() -> String {
    "groups".into()
}

/// `[[oauth.rules]]`: principals matching every given field get `policy`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthRule {
    /// The policy's name: a server's name or a `[policies]` key.
    pub policy: String,
    /// Only for these servers (unset: every server).
    #[serde(default)]
    pub servers: Vec<String>,
    /// The token's `sub`.
    pub subject: Option<String>,
    /// The token's `client_id` (or `azp`).
    pub client_id: Option<String>,
    /// A scope the token carries.
    pub scope: Option<String>,
    /// A value of the groups claim.
    pub group: Option<String>,
}

/// `https://…`, or `http://` to a loopback host: the URLs the gateway trusts for OAuth (its
/// own base, the issuer, and the endpoints the issuer's metadata names).
pub fn secure_url(u: &str) -> bool {
    if u.starts_with("https://") {
        return true;
    }
    let Some(rest) = u.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// A base URL `[oauth]` accepts: `https://…`, or `http://` on a loopback host (local use and
/// tests); no query or fragment.
fn check_base_url(key: &str, u: &str) -> Result<(), String> {
    let Some(rest) = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
    else {
        return Err(format!("oauth.{key} {u:?}: write an https:// URL"));
    };
    if !secure_url(u) {
        return Err(format!(
            "oauth.{key} {u:?}: use https:// (plain http is accepted only on localhost)"
        ));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("oauth.{key} {u:?} has no host"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!(
            "oauth.{key} {u:?}: drop the query and fragment (a base URL has neither)"
        ));
    }
    Ok(())
}

impl OAuthConfig {
    /// `public_url` without a trailing `/`.
    pub fn base(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }

    fn check(
        &self,
        servers: &[ServerConfig],
        policies: &BTreeMap<String, PathBuf>,
    ) -> Result<(), String> {
        check_base_url("issuer", &self.issuer)?;
        check_base_url("public_url", &self.public_url)?;
        if self.algorithms.is_empty() {
            return Err(
                "oauth.algorithms is empty; remove it for the default (RS256, PS256, ES256, EdDSA)"
                    .into(),
            );
        }
        for a in &self.algorithms {
            if !OAUTH_ALGORITHMS.contains(&a.as_str()) {
                let why = if a.eq_ignore_ascii_case("none") {
                    "unsigned tokens are never accepted"
                } else if a.to_ascii_uppercase().starts_with("HS") {
                    "symmetric algorithms are refused: the gateway verifies with the issuer's published public keys"
                } else {
                    "unknown algorithm"
                };
                return Err(format!(
                    "oauth.algorithms {a:?}: {why}; use some of {}",
                    OAUTH_ALGORITHMS.join(", ")
                ));
            }
        }
        if self.leeway_secs > 300 {
            return Err(format!(
                "oauth.leeway_secs {} is above 300; clocks that far apart need fixing (NTP)",
                self.leeway_secs
            ));
        }
        for (key, v) in [
            ("fetch_timeout_secs", self.fetch_timeout_secs),
            ("jwks_max_age_secs", self.jwks_max_age_secs),
        ] {
            if v == 0 {
                return Err(format!("oauth.{key} must be at least 1"));
            }
        }
        if let Some(i) = &self.introspection {
            if let Some(e) = &i.endpoint {
                check_base_url("introspection.endpoint", e)?;
            }
            if i.client_id.is_empty() {
                return Err("oauth.introspection.client_id is empty: name the gateway's client at the authorization server".into());
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("oauth.rules[{i}]");
            if !policies.contains_key(&r.policy)
                && !servers
                    .iter()
                    .any(|s| s.name == r.policy && s.policy.is_some())
            {
                return Err(format!(
                    "{at}: policy {:?} is not configured; name a [policies] key or a server with a policy",
                    r.policy
                ));
            }
            for s in &r.servers {
                if !servers.iter().any(|c| &c.name == s) {
                    return Err(format!(
                        "{at}: servers names {s:?}, which is not configured"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A static token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (`alice-laptop`).
    pub label: String,
    /// The token (may be `${VAR}`).
    pub token: String,
}

/// Replaces `${VAR}` with the environment's value; a missing variable is an error.
pub fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
        let var = &after[..end];
        let val = std::env::var(var).map_err(|_| {
            format!("environment variable {var} is not set (referenced as ${{{var}}})")
        })?;
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut cfg: Config =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.expand_store_url()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// Resolves a path from the file against its directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The files whose change triggers a reload: this config and every policy it names.
    pub fn watched_files(&self, config_path: &Path) -> Vec<PathBuf> {
        let mut v = vec![config_path.to_path_buf()];
        v.extend(
            self.servers
                .iter()
                .filter_map(|s| s.policy.as_ref())
                .map(|p| self.resolve(p)),
        );
        v.extend(self.policies.values().map(|p| self.resolve(p)));
        v
    }

    /// The listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.gateway.listen.parse().map_err(|e| {
            format!(
                "gateway.listen {:?} is not an address like 127.0.0.1:8480: {e}",
                self.gateway.listen
            )
        })
    }

    /// `[store] url` may carry its credentials as `${VAR}` (`redis://gw:${REDIS_PASSWORD}@…`).
    fn expand_store_url(&mut self) -> Result<(), String> {
        if let Some(u) = &self.store.url {
            self.store.url = Some(expand_env(u).map_err(|e| format!("store.url: {e}"))?);
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        let addr = self.listen_addr()?;
        self.store.check()?;
        self.telemetry.check()?;
        let audit = self.gateway.audit.as_str();
        if audit != "off" && audit.parse::<portcullis_store::AuditMode>().is_err() {
            return Err(format!(
                "gateway.audit {audit:?}: write \"durable\", \"async\", \"async:250ms\" or \"off\""
            ));
        }
        if let Some(r) = &self.gateway.audit_retention {
            if portcullis_policy::window::parse_duration(r).is_none() {
                return Err(format!(
                    "gateway.audit_retention {r:?} is not a duration (write e.g. \"30d\")"
                ));
            }
        }
        let g = &self.gateway;
        for (key, v) in [
            ("header_read_timeout_secs", g.header_read_timeout_secs),
            ("body_read_timeout_secs", g.body_read_timeout_secs),
            ("idle_timeout_secs", g.idle_timeout_secs),
            ("max_connections", g.max_connections as u64),
            ("max_connections_per_ip", g.max_connections_per_ip as u64),
            ("max_streams_per_client", g.max_streams_per_client as u64),
        ] {
            if v == 0 {
                return Err(format!("gateway.{key} must be at least 1"));
            }
        }
        if g.max_connections_per_ip > g.max_connections {
            return Err(format!(
                "gateway.max_connections_per_ip ({}) is above gateway.max_connections ({})",
                g.max_connections_per_ip, g.max_connections
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            let at = format!("servers[{i}] ({:?})", s.name);
            if s.name.is_empty()
                || s.name.len() > 64
                || !s
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "{at}: name must be 1-64 characters of A-Z a-z 0-9 _ -"
                ));
            }
            if !seen.insert(&s.name) {
                return Err(format!("{at}: the name is used twice"));
            }
            match (&s.command, &s.url) {
                (Some(c), None) if !c.is_empty() => {}
                (Some(_), None) => return Err(format!("{at}: command is empty")),
                (None, Some(_)) => {}
                _ => {
                    return Err(format!(
                        "{at}: give exactly one of command = [...] or url = \"...\""
                    ))
                }
            }
            if let Some(h) = &s.hold {
                if portcullis_policy::window::parse_duration(h).is_none() {
                    return Err(format!(
                        "{at}: hold {h:?} is not a duration (write e.g. \"30s\")"
                    ));
                }
            }
            if s.auth == Auth::None && !addr.ip().is_loopback() {
                return Err(format!("{at}: auth = \"none\" is refused on the non-loopback listener {addr}; use tokens"));
            }
            if s.auth == Auth::Token && s.tokens.is_empty() {
                return Err(format!("{at}: auth = \"token\" but no tokens configured; add tokens = [{{ label = \"…\", token = \"${{VAR}}\" }}], or use grants (the default)"));
            }
            if s.auth.oauth() && self.oauth.is_none() {
                return Err(format!("{at}: auth = \"{}\" needs an [oauth] table (issuer, public_url, rules); see docs/oauth.md", s.auth.as_str()));
            }
            if !s.auth.oauth() && (s.audience.is_some() || !s.required_scopes.is_empty()) {
                return Err(format!("{at}: audience and required_scopes apply to OAuth; add auth = \"oauth\" (or \"oauth+grant\")"));
            }
            if let Some(a) = &s.audience {
                if a.is_empty() {
                    return Err(format!(
                        "{at}: audience is empty; remove it to use the server's resource URI"
                    ));
                }
            }
            if s.auth != Auth::Token && !s.tokens.is_empty() {
                return Err(format!(
                    "{at}: tokens are listed but auth is not \"token\"; add auth = \"token\""
                ));
            }
        }
        if let Some(o) = &self.oauth {
            o.check(&self.servers, &self.policies)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(t).map_err(|e| e.to_string())?;
        c.check()?;
        Ok(c)
    }

    #[test]
    fn checks() {
        assert!(parse("[[servers]]\nname = \"a\"\ncommand = [\"x\"]\nauth = \"none\"\n").is_ok());
        assert!(
            parse("[[servers]]\nname = \"a\"\ncommand = [\"x\"]\n").is_ok(),
            "grants by default"
        );
        let token_without_tokens =
            "[[servers]]\nname = \"a\"\ncommand = [\"x\"]\nauth = \"token\"\n";
        assert!(parse(token_without_tokens)
            .unwrap_err()
            .contains("no tokens"));
        let tokens_without_mode = "[[servers]]\nname = \"a\"\ncommand = [\"x\"]\ntokens = [{ label = \"l\", token = \"t\" }]\n";
        assert!(parse(tokens_without_mode).unwrap_err().contains("add auth"));
        assert!(parse("[gateway]\naudit = \"sometimes\"\n")
            .unwrap_err()
            .contains("gateway.audit"));
        assert!(parse("[gateway]\naudit = \"async:250ms\"\naudit_retention = \"30d\"\n").is_ok());
        assert!(parse("[gateway]\nbody_read_timeout_secs = 0\n")
            .unwrap_err()
            .contains("gateway.body_read_timeout_secs must be at least 1"));
        assert!(
            parse("[gateway]\nmax_connections = 10\nmax_connections_per_ip = 11\n")
                .unwrap_err()
                .contains("max_connections_per_ip (11) is above")
        );
        let g = parse("[gateway]\nheader_read_timeout_secs = 1\nmax_connections = 8\nmax_connections_per_ip = 8\n").unwrap().gateway;
        assert_eq!(
            (
                g.header_read_timeout_secs,
                g.body_read_timeout_secs,
                g.idle_timeout_secs
            ),
            (1, 30, 60)
        );
        assert!(parse("[gateway]\nlisten = \"0.0.0.0:1\"\n[[servers]]\nname = \"a\"\ncommand = [\"x\"]\nauth = \"none\"\n").unwrap_err().contains("non-loopback"));
        assert!(
            parse("[[servers]]\nname = \"a b\"\ncommand = [\"x\"]\nauth = \"none\"\n").is_err()
        );
        assert!(parse("[[servers]]\nname = \"a\"\nauth = \"none\"\n")
            .unwrap_err()
            .contains("exactly one"));
        assert!(parse("[[servers]]\nname = \"a\"\ncomand = [\"x\"]\n")
            .unwrap_err()
            .contains("unknown field"));
    }

    #[test]
    fn the_oauth_table() {
        let srv =
            "[[servers]]\nname = \"a\"\ncommand = [\"x\"]\npolicy = \"p.json\"\nauth = \"oauth\"\n";
        let oauth =
            "[oauth]\nissuer = \"https://id.example\"\npublic_url = \"https://gw.example\"\n";
        let ok = parse(&format!(
            "{oauth}[[oauth.rules]]\ngroup = \"staff\"\npolicy = \"a\"\n{srv}"
        ))
        .unwrap();
        let o = ok.oauth.unwrap();
        assert_eq!(
            o.algorithms, DEFAULT_OAUTH_ALGORITHMS,
            "asymmetric by default"
        );
        assert_eq!((o.leeway_secs, o.fetch_timeout_secs), (30, 5));
        assert_eq!(ok.servers[0].auth, Auth::OAuth);
        assert!(parse(srv).unwrap_err().contains("needs an [oauth] table"));
        let both = srv.replace("\"oauth\"", "\"oauth+grant\"");
        assert_eq!(
            parse(&format!("{oauth}{both}")).unwrap().servers[0].auth,
            Auth::OAuthGrant
        );
        for (extra, says) in [
            (
                "algorithms = [\"HS256\"]\n",
                "symmetric algorithms are refused",
            ),
            (
                "algorithms = [\"none\"]\n",
                "unsigned tokens are never accepted",
            ),
            ("algorithms = []\n", "remove it for the default"),
            ("leeway_secs = 3600\n", "above 300"),
            ("fetch_timeout_secs = 0\n", "at least 1"),
        ] {
            let e = parse(&format!("{oauth}{extra}{srv}")).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
        }
        let http_issuer = oauth.replace("https://id.example", "http://id.example");
        assert!(parse(&format!("{http_issuer}{srv}"))
            .unwrap_err()
            .contains("use https://"));
        assert!(parse(&format!(
            "{}{srv}",
            oauth.replace("https://gw.example", "https://gw.example/?x=1")
        ))
        .unwrap_err()
        .contains("drop the query"));
        let local = oauth.replace("https://id.example", "http://127.0.0.1:9");
        assert!(
            parse(&format!("{local}{srv}")).is_ok(),
            "plain http on loopback"
        );
        assert!(
            parse(&format!("{oauth}[[oauth.rules]]\npolicy = \"nope\"\n{srv}"))
                .unwrap_err()
                .contains("policy \"nope\" is not configured")
        );
        assert!(parse(&format!(
            "{oauth}[[oauth.rules]]\npolicy = \"a\"\nservers = [\"b\"]\n{srv}"
        ))
        .unwrap_err()
        .contains("\"b\", which is not configured"));
        let aud_on_grant =
            "[[servers]]\nname = \"g\"\ncommand = [\"x\"]\naudience = \"https://x\"\n";
        assert!(parse(&format!("{oauth}{aud_on_grant}"))
            .unwrap_err()
            .contains("add auth = \"oauth\""));
    }

    #[test]
    fn the_store_section() {
        let c = parse("[store]\ncounters = \"memory\"\n").unwrap();
        assert_eq!(c.store.counters, portcullis_store::CounterBackend::Memory);
        assert_eq!(
            parse("").unwrap().store.counters,
            portcullis_store::CounterBackend::Sqlite,
            "embedded SQLite by default"
        );
        assert!(parse("[store]\ncounters = \"disk\"\n")
            .unwrap_err()
            .contains("unknown variant"));
        assert!(parse("[store]\nconters = \"memory\"\n")
            .unwrap_err()
            .contains("unknown field"));
        assert!(parse("[store]\nurl = \"redis://127.0.0.1:6379/0\"\n").is_ok());
        assert!(parse("[store]\nurl = \"http://127.0.0.1:6379/0\"\n")
            .unwrap_err()
            .contains("redis://"));
        std::env::set_var("PORTCULLIS_TEST_REDIS_PW", "pw");
        let mut c: Config =
            toml::from_str("[store]\nurl = \"redis://gw:${PORTCULLIS_TEST_REDIS_PW}@h:1/0\"\n")
                .unwrap();
        c.expand_store_url().unwrap();
        assert_eq!(c.store.url.as_deref(), Some("redis://gw:pw@h:1/0"));
        c.store.url = Some("redis://${PORTCULLIS_TEST_REDIS_MISSING}@h/0".into());
        assert!(c.expand_store_url().unwrap_err().contains("store.url"));
    }

    #[test]
    fn the_telemetry_section() {
        let c = parse("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsampling_ratio = 0.25\nservice_name = \"gw\"\n").unwrap();
        assert_eq!(
            c.telemetry.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318")
        );
        assert_eq!(c.telemetry.sampling_ratio, Some(0.25));
        assert_eq!(parse("").unwrap().telemetry, Default::default());
        let e = parse("[telemetry]\nsampling_ratio = 2.0\n").unwrap_err();
        assert!(e.contains("telemetry.sampling_ratio"), "{e}");
        let e = parse("[telemetry]\notlp_endpoint = \"localhost:4318\"\n").unwrap_err();
        assert!(e.contains("telemetry.otlp_endpoint"), "{e}");
        assert!(parse("[telemetry]\nendpoint = \"http://x\"\n").is_err());
    }

    #[test]
    fn env_expansion() {
        std::env::set_var("PORTCULLIS_TEST_X", "v");
        assert_eq!(expand_env("a${PORTCULLIS_TEST_X}b").unwrap(), "avb");
        assert!(expand_env("${PORTCULLIS_TEST_MISSING}")
            .unwrap_err()
            .contains("PORTCULLIS_TEST_MISSING"));
    }

    #[test]
    fn oauth_urls_are_https_or_loopback_http() {
        for ok in [
            "https://id.example",
            "https://id.example/realms/x",
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:9/p",
        ] {
            assert!(secure_url(ok), "{ok}");
            assert_eq!(check_base_url("issuer", ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("http://id.example", "use https://"),
            ("http://localhost.evil.example", "use https://"),
            ("ftp://id.example", "write an https:// URL"),
            ("id.example", "write an https:// URL"),
            ("https://", "has no host"),
            ("https://id.example/?x=1", "drop the query"),
        ] {
            let e = check_base_url("issuer", bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(!secure_url("http://id.example/"));
    }
}
