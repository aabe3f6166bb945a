//! A JWT access token judged: its algorithm on the allow-list (never `none`, never a
//! symmetric one), a key the issuer published that fits the algorithm, the signature, `iss`
//! exactly, `aud` the resource, `exp`/`nbf` within the leeway.

use super::keys::{KeyError, Keys};
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// What a token must be.
pub(super) struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub algorithms: &'a [Algorithm],
    pub leeway_secs: u64,
}

/// Why a token was refused.
#[derive(Debug)]
pub(super) enum TokenError {
    /// Not acceptable (401 `invalid_token`); the sentence says why.
    Invalid(String),
    /// The issuer's keys cannot be fetched: the token cannot be judged (503).
    Unavailable(String),
}

/// The algorithm an allow-list name stands for.
pub(super) fn algorithm(name: &str) -> Option<Algorithm> {
    name.parse()
        .ok()
        .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
}

/// Whether `jwk` is a key for `alg`: the family and curve agree, and the key's own `alg`, when
/// it names one, is `alg`. Symmetric (`oct`) keys fit nothing.
fn fits(alg: Algorithm, jwk: &Jwk) -> bool {
    if let Some(ka) = jwk.common.key_algorithm {
        if ka.to_string() != format!("{alg:?}") {
            return false;
        }
    }
    match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        _ => false,
    }
}

/// The header's `alg` as written (to name `none` and unknown ones plainly).
fn raw_alg(token: &str) -> Option<String> {
    let head = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_owned)
}

/// Checks `token` and returns its claims.
pub(super) async fn validate(
    token: &str,
    keys: &Keys,
    expect: &Expect<'_>,
) -> Result<Map<String, Value>, TokenError> {
    let invalid = |s: String| TokenError::Invalid(s);
    if token.split('.').count() != 3 {
        return Err(invalid(
            "the access token is not a JWT (three dot-separated parts)".into(),
        ));
    }
    let alg_name = raw_alg(token)
        .ok_or_else(|| invalid("the token's header is not JSON with an alg".into()))?;
    let alg = expect
        .algorithms
        .iter()
        .copied()
        .find(|a| format!("{a:?}") == alg_name);
    let Some(alg) = alg else {
        let why = if alg_name.eq_ignore_ascii_case("none") {
            "unsigned tokens (alg none) are never accepted".to_string()
        } else {
            let names: Vec<String> = expect.algorithms.iter().map(|a| format!("{a:?}")).collect();
            format!(
                "algorithm {alg_name:?} is not accepted (accepted: {})",
                names.join(", ")
            )
        };
        return Err(invalid(why));
    };
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| invalid(format!("the token's header is unreadable: {e}")))?;
    let jwk = keys
        .find(header.kid.as_deref(), |k| fits(alg, k))
        .await
        .map_err(|e| match e {
            KeyError::Unavailable(s) => TokenError::Unavailable(s),
            KeyError::Unknown(s) => TokenError::Invalid(s),
        })?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| {
        invalid(format!(
            "the issuer's key {:?} is unusable: {e}",
            jwk.common.key_id
        ))
    })?;
    let mut v = Validation::new(alg);
    v.leeway = expect.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_issuer(&[expect.issuer]);
    v.set_audience(&[expect.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    use jsonwebtoken::errors::ErrorKind as K;
    jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| {
            invalid(match e.kind() {
                K::ExpiredSignature => "the token has expired".into(),
                K::ImmatureSignature => "the token is not valid yet (nbf)".into(),
                K::InvalidAudience => format!(
                    "the token's audience is not this resource ({}); request it with resource={}",
                    expect.audience, expect.audience
                ),
                K::InvalidIssuer => {
                    format!("the token was not issued by {}", expect.issuer)
                }
                K::InvalidSignature => {
                    "the signature does not verify with the issuer's published key".into()
                }
                K::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
                _ => format!("the token is invalid: {e}"),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_never_admits_symmetric_or_none() {
        assert_eq!(algorithm("RS256"), Some(Algorithm::RS256));
        assert_eq!(algorithm("EdDSA"), Some(Algorithm::EdDSA));
        assert_eq!(algorithm("HS256"), None);
        assert_eq!(algorithm("none"), None);
    }

    #[test]
    fn keys_fit_only_their_family() {
        let rsa: Jwk = serde_json::from_value(
            serde_json::json!({"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}),
        )
        .unwrap();
        let oct: Jwk =
            serde_json::from_value(serde_json::json!({"kty":"oct","kid":"o","k":"c2VjcmV0"}))
                .unwrap();
        let pinned: Jwk = serde_json::from_value(
            serde_json::json!({"kty":"RSA","kid":"p","alg":"PS256","n":"AQAB","e":"AQAB"}),
        )
        .unwrap();
        assert!(fits(Algorithm::RS256, &rsa));
        assert!(!fits(Algorithm::ES256, &rsa));
        assert!(!fits(Algorithm::HS256, &oct) && !fits(Algorithm::RS256, &oct));
        assert!(fits(Algorithm::PS256, &pinned) && !fits(Algorithm::RS256, &pinned));
    }
}
