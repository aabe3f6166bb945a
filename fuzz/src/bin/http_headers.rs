//! Fuzz target: the HTTP face's header checks (`Content-Type`, `Accept`, `Host`/`Origin`,
//! `MCP-Protocol-Version`) on arbitrary headers: each input line is `name: value`. No panic;
//! what a refusal shows stays within 200 characters.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let mut headers = HeaderMap::new();
        for line in data.split(|&b| b == b'\n').take(32) {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            let value = value.strip_prefix(b" ").unwrap_or(value);
            let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            else {
                continue;
            };
            headers.append(name, value);
        }
        let v = portcullis_gateway::http::fuzzing::header_checks(&headers);
        assert!(v.shown_content_type.chars().count() <= 200);
        assert!(v.shown_accept.chars().count() <= 200);
    });
}
