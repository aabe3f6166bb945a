//! The HTTP face's pure header checks, reachable without a running server for the fuzz
//! targets under `fuzz/` (not an API: hidden from the docs, may change at any time).

use super::auth::Authenticator;
use super::routes::primes;
use super::{accepts_sse, header, media};
use crate::config::Config;
use axum::http::HeaderMap;
use std::sync::OnceLock;

/// What the header checks of a request say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderVerdict {
    /// `Content-Type` is `application/json` (else 415).
    pub content_type_ok: bool,
    /// `Accept` allows both answers of Streamable HTTP, or is absent (else 406).
    pub accept_ok: bool,
    /// A GET would get an event stream.
    pub accepts_sse: bool,
    /// A handshake-era client gets priming events.
    pub primes: bool,
    /// The `Host`/`Origin` rule (loopback names, `gw.example`, origin `https://app.example`).
    pub host_ok: bool,
    /// `Content-Type` as a refusal shows it (at most 200 characters).
    pub shown_content_type: String,
    /// `Accept` as a refusal shows it (at most 200 characters).
    pub shown_accept: String,
    /// `MCP-Protocol-Version` when it is of the 2026-07-28 era or later.
    pub modern_header: Option<String>,
}

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let cfg: Config = toml::from_str(
            "[gateway]\nallowed_hosts = [\"gw.example\"]\nallowed_origins = [\"https://app.example\"]\n",
        )
        .expect("the fuzzing configuration parses");
        Authenticator::new(&cfg, None).expect("no [oauth] table, nothing to build")
    })
}

/// Runs every pure header check of the HTTP face on `headers`.
pub fn header_checks(headers: &HeaderMap) -> HeaderVerdict {
    HeaderVerdict {
        content_type_ok: media::content_type_ok(headers),
        accept_ok: media::accept_ok(headers),
        accepts_sse: accepts_sse(headers),
        primes: primes(headers),
        host_ok: authenticator().host_ok(headers),
        shown_content_type: media::shown(headers, "content-type"),
        shown_accept: media::shown(headers, "accept"),
        modern_header: header(headers, "mcp-protocol-version")
            .filter(|v| *v >= portcullis_mcp::MODERN)
            .map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typical_request_passes_every_check_and_a_foreign_origin_does_not() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert(
            "accept",
            "application/json, text/event-stream".parse().unwrap(),
        );
        h.insert("host", "gw.example:8080".parse().unwrap());
        h.insert("mcp-protocol-version", "2026-07-28".parse().unwrap());
        let v = header_checks(&h);
        assert!(v.content_type_ok && v.accept_ok && v.accepts_sse && v.primes && v.host_ok);
        assert_eq!(v.modern_header.as_deref(), Some("2026-07-28"));
        h.insert("origin", "https://evil.example".parse().unwrap());
        assert!(!header_checks(&h).host_ok);
    }
}
