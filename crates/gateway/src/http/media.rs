//! The media-type rule of a POST: its `Content-Type` must be `application/json` (else 415),
//! and its `Accept` must allow both `application/json` and `text/event-stream` (else 406);
//! refusals are audited and nothing is forwarded.
//!
//! A missing `Accept` is tolerated: HTTP reads it as "any media type" (RFC 9110 §12.5.1), the
//! gateway can then answer with either, and raw and scripted clients commonly omit it. Every
//! real MCP client in the test suite (Python `mcp` 1.x and 2.x, the TypeScript SDK behind the
//! Inspector and the conformance suite, `portcullis-client`) sends both types, as the
//! transport requires.

use super::{json_status, Gateway};
use crate::relay::Caller;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

/// What a POST must declare before its body is read as a message.
#[derive(Clone, Copy)]
pub(super) enum Rule {
    /// Streamable HTTP: `Content-Type` and `Accept`.
    Streamable,
    /// The legacy HTTP+SSE message endpoint (answers arrive on the stream): `Content-Type` only.
    ContentTypeOnly,
}

/// Whether `Content-Type` is `application/json` (parameters such as `charset` allowed).
pub(super) fn content_type_ok(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether an `Accept` value allows `ty/sub`: the most specific matching media range decides
/// (`ty/sub` over `ty/*` over `*/*`), and `q=0` means "not acceptable".
fn allows(accept: &str, ty: &str, sub: &str) -> bool {
    let mut best: Option<(u8, bool)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let Some((t, s)) = parts.next().and_then(|r| r.trim().split_once('/')) else {
            continue;
        };
        let (t, s) = (t.trim(), s.trim());
        let specificity = if t.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(sub) {
            2
        } else if t.eq_ignore_ascii_case(ty) && s == "*" {
            1
        } else if t == "*" && s == "*" {
            0
        } else {
            continue;
        };
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, v)| v.trim().parse::<f32>().unwrap_or(0.0));
        if best.is_none_or(|(b, _)| specificity > b) {
            best = Some((specificity, q > 0.0));
        }
    }
    best.is_some_and(|(_, ok)| ok)
}

/// Whether `Accept` (every such header, joined) allows both answers of the transport; a
/// request without `Accept` is accepted.
pub(super) fn accept_ok(headers: &HeaderMap) -> bool {
    let values: Vec<&str> = headers
        .get_all("accept")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    if values.is_empty() {
        return true;
    }
    let accept = values.join(",");
    allows(&accept, "application", "json") && allows(&accept, "text", "event-stream")
}

/// A header's value for a message: at most 200 characters, `-` when absent.
pub(super) fn shown(headers: &HeaderMap, name: &str) -> String {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if values.is_empty() {
        return "-".into();
    }
    values.join(", ").chars().take(200).collect()
}

/// Checks a POST against `rule`; a refusal (415 or 406 with a JSON body saying what to send)
/// is audited first.
pub(super) async fn check(
    gw: &Gateway,
    server: &str,
    caller: &Caller,
    headers: &HeaderMap,
    rule: Rule,
) -> Result<(), Response> {
    let (status, code, why, message) = if !content_type_ok(headers) {
        let got = shown(headers, "content-type");
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type {got:?}"),
            format!("Send the JSON-RPC message with Content-Type: application/json (got {got:?}); nothing was forwarded."),
        )
    } else if matches!(rule, Rule::Streamable) && !accept_ok(headers) {
        let got = shown(headers, "accept");
        (
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            format!("Accept {got:?}"),
            format!("Accept must allow both application/json and text/event-stream: send Accept: application/json, text/event-stream (got {got:?}); nothing was forwarded."),
        )
    } else {
        return Ok(());
    };
    if !gw.events.is_empty() {
        let rec = super::refusal(
            server,
            "(media type)",
            format!("({})", code.replace('_', " ")),
            why,
            Some((&caller.grant_id, &caller.grant_label)),
        );
        gw.events.record(rec).await;
    }
    Err(json_status(
        status,
        json!({"error": code, "message": message}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn content_type_is_application_json_with_any_parameters() {
        assert!(content_type_ok(&h(&[("content-type", "application/json")])));
        assert!(content_type_ok(&h(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/json-rpc",
            "multipart/form-data; boundary=x",
            "",
        ] {
            assert!(!content_type_ok(&h(&[("content-type", bad)])), "{bad}");
        }
        assert!(!content_type_ok(&h(&[])), "missing");
    }

    #[test]
    fn accept_must_allow_both_answers_or_be_absent() {
        for ok in [
            "application/json, text/event-stream",
            "text/event-stream, application/json",
            "application/json;q=0.9, text/event-stream;q=0.5",
            "*/*",
            "application/*, text/*",
            "application/json, */*;q=0.1",
        ] {
            assert!(accept_ok(&h(&[("accept", ok)])), "{ok}");
        }
        assert!(accept_ok(&h(&[])), "a missing Accept means any type");
        assert!(
            accept_ok(&h(&[
                ("accept", "application/json"),
                ("accept", "text/event-stream")
            ])),
            "several Accept headers are one list"
        );
        for bad in [
            "application/json",
            "text/event-stream",
            "text/html",
            "*/*, text/event-stream;q=0",
            "application/json, text/event-stream;q=0.0",
            "",
        ] {
            assert!(!accept_ok(&h(&[("accept", bad)])), "{bad}");
        }
    }
}
