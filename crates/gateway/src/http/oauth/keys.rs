//! The issuer's signing keys: its metadata discovered (RFC 8414, then OpenID Connect
//! discovery), its JWKS fetched with a timeout and cached, fetched again when it is old or a
//! token names a key it does not hold. Every failure fails closed.

use crate::config::secure_url;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Largest metadata or JWKS document read.
const MAX_DOCUMENT: usize = 256 * 1024;

/// An unknown `kid` fetches the keys again at most this often (a flood of forged tokens must
/// not become a flood of requests to the issuer).
const MIN_REFETCH: Duration = Duration::from_secs(10);

/// Why no key was found.
#[derive(Debug)]
pub(super) enum KeyError {
    /// The issuer's metadata or keys could not be fetched (the token cannot be judged).
    Unavailable(String),
    /// The issuer publishes no key this token could be verified with.
    Unknown(String),
}

/// The issuer's keys, cached.
pub(super) struct Keys {
    issuer: String,
    client: reqwest::Client,
    max_age: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The issuer's metadata document, once discovered.
    metadata: Option<Value>,
    jwks_uri: Option<String>,
    keys: Vec<Jwk>,
    /// The last successful fetch.
    fetched: Option<Instant>,
    /// The last attempt, and its error if it failed.
    tried: Option<(Instant, Option<String>)>,
}

impl Keys {
    /// Keys of `issuer`, fetched within `timeout`, kept for `max_age`.
    pub(super) fn new(issuer: &str, timeout: Duration, max_age: Duration) -> Result<Keys, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for the OAuth issuer: {e}"))?;
        Ok(Keys {
            issuer: issuer.to_owned(),
            client,
            max_age,
            state: Mutex::new(State::default()),
        })
    }

    /// The published key named `kid` (or, for a token naming none, the one key that `fits`),
    /// fetching the keys first when the cache is old, or again (rate-limited) when it lacks
    /// the key.
    pub(super) async fn find(
        &self,
        kid: Option<&str>,
        fits: impl Fn(&Jwk) -> bool,
    ) -> Result<Jwk, KeyError> {
        let mut st = self.state.lock().await;
        let fresh = st.fetched.is_some_and(|t| t.elapsed() < self.max_age);
        let recently_tried = st.tried.as_ref().filter(|(t, _)| t.elapsed() < MIN_REFETCH);
        if fresh {
            if let Some(k) = select(&st.keys, kid, &fits) {
                return Ok(k);
            }
            if recently_tried.is_some() {
                return Err(unknown(kid));
            }
        } else if let Some((_, Some(e))) = recently_tried {
            return Err(KeyError::Unavailable(e.clone()));
        }
        let outcome = self.fetch(&mut st).await;
        st.tried = Some((Instant::now(), outcome.clone().err()));
        let keys = outcome.map_err(KeyError::Unavailable)?;
        st.keys = keys;
        st.fetched = Some(Instant::now());
        select(&st.keys, kid, &fits).ok_or_else(|| unknown(kid))
    }

    /// An `https` endpoint the issuer's metadata names (`jwks_uri`, `introspection_endpoint`),
    /// discovering the metadata first if needed.
    async fn endpoint(&self, st: &mut State, member: &str) -> Result<String, String> {
        if st.metadata.is_none() {
            st.metadata = Some(self.discover().await?);
        }
        let doc = st.metadata.as_ref().expect("discovered");
        let uri = doc
            .get(member)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the issuer's metadata has no {member}"))?;
        if !secure_url(uri) {
            return Err(format!(
                "the issuer's {member} {uri:?} is not https (plain http only on localhost)"
            ));
        }
        Ok(uri.to_owned())
    }

    /// The issuer's `introspection_endpoint` (RFC 8414), from its metadata.
    pub(super) async fn introspection_endpoint(&self) -> Result<String, String> {
        let mut st = self.state.lock().await;
        self.endpoint(&mut st, "introspection_endpoint").await
    }

    /// The HTTP client for the issuer (timeouts set, no redirects).
    pub(super) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Discovers the JWKS URI (once) and fetches the key set.
    async fn fetch(&self, st: &mut State) -> Result<Vec<Jwk>, String> {
        let uri = match &st.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let u = self.endpoint(st, "jwks_uri").await?;
                st.jwks_uri = Some(u.clone());
                u
            }
        };
        let doc = self.get_json(&uri).await?;
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err(format!("{uri} is not a JWK set (no \"keys\" array)"));
        };
        // Keys this build cannot use (another key type, an encryption key) are skipped, not
        // fatal: the set may serve other relying parties too.
        Ok(list
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter(|k| k.common.public_key_use != Some(PublicKeyUse::Encryption))
            .collect())
    }

    /// The issuer's metadata, the first document found: RFC 8414
    /// (`/.well-known/oauth-authorization-server`, path inserted), then OpenID Connect
    /// discovery (path inserted, then appended). The document must name the issuer exactly.
    async fn discover(&self) -> Result<Value, String> {
        let iss = self.issuer.trim_end_matches('/');
        let (origin, path) = match iss.find("://").map(|i| i + 3) {
            Some(start) => match iss[start..].find('/') {
                Some(p) => iss.split_at(start + p),
                None => (iss, ""),
            },
            None => (iss, ""),
        };
        let mut urls = vec![format!(
            "{origin}/.well-known/oauth-authorization-server{path}"
        )];
        if !path.is_empty() {
            urls.push(format!("{origin}/.well-known/openid-configuration{path}"));
        }
        urls.push(format!("{iss}/.well-known/openid-configuration"));
        let mut errors = Vec::new();
        for url in urls {
            match self.get_json(&url).await {
                Ok(doc) => {
                    if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                        return Err(format!(
                            "{url} names issuer {}, not the configured {:?}; fix oauth.issuer",
                            doc.get("issuer").unwrap_or(&Value::Null),
                            self.issuer
                        ));
                    }
                    return Ok(doc);
                }
                Err(e) => errors.push(e),
            }
        }
        Err(format!(
            "no authorization server metadata for issuer {:?}: {}",
            self.issuer,
            errors.join("; ")
        ))
    }

    /// GETs a JSON document (200 only, at most [`MAX_DOCUMENT`] bytes, within the timeout).
    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let resp = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("cannot fetch {url}: {e}"))?;
        read_json(resp, url).await
    }
}

/// The JSON body of a 200 answer, at most [`MAX_DOCUMENT`] bytes.
pub(super) async fn read_json(mut resp: reqwest::Response, url: &str) -> Result<Value, String> {
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("{url} answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("{url} is larger than {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url} is not JSON: {e}"))
}

fn unknown(kid: Option<&str>) -> KeyError {
    KeyError::Unknown(match kid {
        Some(k) => format!("the issuer publishes no signing key with kid {k:?}"),
        None => "the token names no kid and no single published key fits its algorithm".into(),
    })
}

/// The key named `kid` that fits; without a `kid`, the only key that fits.
fn select(keys: &[Jwk], kid: Option<&str>, fits: &impl Fn(&Jwk) -> bool) -> Option<Jwk> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid) && fits(k))
            .cloned(),
        None => {
            let mut it = keys.iter().filter(|k| fits(k));
            match (it.next(), it.next()) {
                (Some(k), None) => Some(k.clone()),
                _ => None,
            }
        }
    }
}
