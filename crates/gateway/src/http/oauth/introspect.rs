//! Opaque access tokens checked at the issuer's introspection endpoint (RFC 7662): an active
//! answer for this resource becomes claims like a JWT's, cached briefly; everything else,
//! including an unreachable endpoint, is refused.

use super::keys::{read_json, Keys};
use super::token::TokenError;
use crate::config::IntrospectionConfig;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Most active answers kept; past it the expired ones go, then all.
const MAX_CACHED: usize = 10_000;

/// Claims of active tokens by the SHA-256 of the token, each with when it stops being reused.
type Cache = HashMap<[u8; 32], (Map<String, Value>, Instant)>;

/// What an introspected token must match.
pub(super) struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway_secs: u64,
}

/// The gateway as an introspection client of the issuer.
pub(super) struct Introspector {
    client_id: String,
    client_secret: String,
    endpoint: Option<String>,
    cache_for: Duration,
    /// SHA-256 of the token → its claims, until when they may be reused.
    cache: Mutex<Cache>,
}

/// Seconds since the epoch, the unit of `exp` and `nbf`.
fn now_secs() -> u64 {
    crate::relay::system_clock() / 1000
}

/// `aud` (a string or an array of strings) names `audience`.
fn audience_holds(aud: Option<&Value>, audience: &str) -> bool {
    match aud {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// Checks an introspection answer and returns the token's claims (RFC 7662 §2.2). A token
/// without `sub` (client credentials) speaks for its client, as RFC 9068 §2.2 has it.
pub(super) fn judge(
    mut answer: Map<String, Value>,
    expect: &Expect<'_>,
    now: u64,
) -> Result<Map<String, Value>, String> {
    if answer.get("active") != Some(&Value::Bool(true)) {
        return Err(
            "the authorization server says the token is not active (expired, revoked or unknown)"
                .into(),
        );
    }
    match answer.get("iss") {
        None => {
            answer.insert("iss".into(), Value::String(expect.issuer.to_owned()));
        }
        Some(Value::String(i)) if i == expect.issuer => {}
        Some(other) => {
            return Err(format!(
                "the token was issued by {other}, not {}",
                expect.issuer
            ))
        }
    }
    if !audience_holds(answer.get("aud"), expect.audience) {
        return Err(format!(
            "the token's audience is not this resource ({}); request it with resource={}",
            expect.audience, expect.audience
        ));
    }
    let time = |k: &str| answer.get(k).and_then(Value::as_u64);
    if time("exp").is_some_and(|exp| exp + expect.leeway_secs <= now) {
        return Err("the token has expired".into());
    }
    if time("nbf").is_some_and(|nbf| nbf > now + expect.leeway_secs) {
        return Err("the token is not valid yet (nbf)".into());
    }
    if !answer.contains_key("sub") {
        if let Some(c) = answer.get("client_id").cloned() {
            answer.insert("sub".into(), c);
        }
    }
    Ok(answer)
}

impl Introspector {
    /// The introspection client of `cfg` (its secret's `${VAR}` expanded).
    pub(super) fn new(cfg: &IntrospectionConfig) -> Result<Introspector, String> {
        let client_secret = crate::config::expand_env(&cfg.client_secret)
            .map_err(|e| format!("oauth.introspection.client_secret: {e}"))?;
        Ok(Introspector {
            client_id: cfg.client_id.clone(),
            client_secret,
            endpoint: cfg.endpoint.clone(),
            cache_for: Duration::from_secs(cfg.cache_secs),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The claims of an active opaque `token` for `expect`'s resource.
    pub(super) async fn claims(
        &self,
        token: &str,
        keys: &Keys,
        expect: &Expect<'_>,
    ) -> Result<Map<String, Value>, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((claims, until)) = self.cache.lock().await.get(&digest) {
            if Instant::now() < *until {
                // Cached claims are judged again: the audience differs per server.
                return judge(claims.clone(), expect, now_secs()).map_err(TokenError::Invalid);
            }
        }
        let endpoint = match &self.endpoint {
            Some(e) => e.clone(),
            None => keys
                .introspection_endpoint()
                .await
                .map_err(TokenError::Unavailable)?,
        };
        let resp = keys
            .client()
            .post(&endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header("accept", "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(format!("cannot reach {endpoint}: {e}")))?;
        let answer = read_json(resp, &endpoint)
            .await
            .map_err(TokenError::Unavailable)?;
        let Value::Object(answer) = answer else {
            return Err(TokenError::Unavailable(format!(
                "{endpoint} did not answer with a JSON object"
            )));
        };
        let claims = judge(answer, expect, now_secs()).map_err(TokenError::Invalid)?;
        if !self.cache_for.is_zero() {
            let mut until = Instant::now() + self.cache_for;
            if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
                let left = Duration::from_secs(exp.saturating_sub(now_secs()));
                until = until.min(Instant::now() + left);
            }
            let mut cache = self.cache.lock().await;
            if cache.len() >= MAX_CACHED {
                let now = Instant::now();
                cache.retain(|_, (_, u)| *u > now);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(digest, (claims.clone(), until));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect() -> Expect<'static> {
        Expect {
            issuer: "https://id.example",
            audience: "https://gw.example/mcp/odoo",
            leeway_secs: 30,
        }
    }

    fn answer(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn only_an_active_token_for_this_resource_passes() {
        let now = 1_000_000;
        let ok = json!({"active": true, "aud": ["x", "https://gw.example/mcp/odoo"],
            "sub": "alice", "exp": now + 60, "scope": "mcp:tools"});
        let c = judge(answer(ok.clone()), &expect(), now).unwrap();
        assert_eq!(c["iss"], "https://id.example", "the issuer is implied");
        let cases = [
            (json!({"active": false}), "not active"),
            (
                json!({"sub": "a", "aud": "https://gw.example/mcp/odoo"}),
                "not active",
            ),
            (json!({"active": true, "sub": "a"}), "audience"),
            (
                json!({"active": true, "sub": "a", "aud": "https://gw.example/mcp/other"}),
                "audience",
            ),
            (
                json!({"active": true, "sub": "a", "aud": "https://gw.example/mcp/odoo",
                "iss": "https://evil.example"}),
                "issued by",
            ),
            (
                json!({"active": true, "sub": "a", "aud": "https://gw.example/mcp/odoo",
                "exp": now - 31}),
                "expired",
            ),
            (
                json!({"active": true, "sub": "a", "aud": "https://gw.example/mcp/odoo",
                "nbf": now + 31}),
                "not valid yet",
            ),
        ];
        for (a, says) in cases {
            let e = judge(answer(a.clone()), &expect(), now).unwrap_err();
            assert!(e.contains(says), "{a}: {e}");
        }
        let svc = json!({"active": true, "aud": "https://gw.example/mcp/odoo", "client_id": "svc"});
        assert_eq!(judge(answer(svc), &expect(), now).unwrap()["sub"], "svc");
    }
}
