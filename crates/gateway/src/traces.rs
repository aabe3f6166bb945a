//! W3C trace context and the `[telemetry]` settings for OpenTelemetry traces: parsing and
//! writing `traceparent` and `tracestate` (HTTP headers or `params._meta`), and resolving the
//! exporter settings from `portcullis.toml` and the standard `OTEL_*` variables. The spans
//! themselves are made in [`crate::spans`] and exported by [`crate::otlp`].

use serde::Deserialize;
use serde_json::Value;

/// `[telemetry]` in `portcullis.toml`. Tracing is off unless an OTLP endpoint is set here or
/// in `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP base URL (`http://collector:4318`); spans go to `<endpoint>/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces sampled, 0.0 to 1.0 (default 1.0). A continued trace follows
    /// the caller's sampled flag.
    pub sampling_ratio: Option<f64>,
    /// `service.name` of the exported spans (default `portcullis`).
    pub service_name: Option<String>,
}

impl TelemetryConfig {
    /// Checks the values a file can get wrong, with an error saying what to write.
    pub fn check(&self) -> Result<(), String> {
        if let Some(r) = self.sampling_ratio {
            check_ratio(r).map_err(|e| format!("telemetry.sampling_ratio: {e}"))?;
        }
        if let Some(e) = &self.otlp_endpoint {
            check_endpoint(e).map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
        }
        Ok(())
    }
}

fn check_ratio(r: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&r) {
        Ok(())
    } else {
        Err(format!("{r} is not between 0.0 and 1.0; write e.g. 0.25"))
    }
}

fn check_endpoint(e: &str) -> Result<(), String> {
    if e.starts_with("http://") || e.starts_with("https://") {
        Ok(())
    } else {
        Err(format!(
            "{e:?} is not an http(s) URL; write e.g. \"http://127.0.0.1:4318\" (OTLP over HTTP)"
        ))
    }
}

/// Resolved exporter settings: present only when tracing is on.
#[derive(Clone, PartialEq)]
pub struct Telemetry {
    /// Full URL the spans are posted to (`…/v1/traces`).
    pub traces_url: String,
    /// Fraction of new traces sampled.
    pub sampling_ratio: f64,
    /// `service.name` resource attribute.
    pub service_name: String,
    /// How long finished spans wait to be batched, ms (`OTEL_BSP_SCHEDULE_DELAY`, default
    /// 5000).
    pub export_delay_ms: u64,
    /// Extra headers on every post (`OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else
    /// `OTEL_EXPORTER_OTLP_HEADERS`): a collector's credentials, a tenant. Never logged.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Telemetry {
    /// The headers' names only: their values are often credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Telemetry")
            .field("traces_url", &self.traces_url)
            .field("sampling_ratio", &self.sampling_ratio)
            .field("service_name", &self.service_name)
            .field("export_delay_ms", &self.export_delay_ms)
            .field("headers", &names)
            .finish()
    }
}

impl Telemetry {
    /// Merges the file's `[telemetry]` with the environment (`lookup` is `std::env::var`
    /// outside tests). The standard variables win over the file, as OpenTelemetry SDKs do.
    /// `Ok(None)`: no endpoint anywhere, tracing is off.
    pub fn resolve(
        file: &TelemetryConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Telemetry>, String> {
        let env = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        // The signal-specific variable is the full URL; the generic one and the file's key
        // are a base the traces path is appended to.
        let traces_url = if let Some(u) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            check_endpoint(&u).map_err(|e| format!("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: {e}"))?;
            u
        } else if let Some(u) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            check_endpoint(&u).map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
            traces_path(&u)
        } else if let Some(u) = &file.otlp_endpoint {
            check_endpoint(u).map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
            traces_path(u)
        } else {
            return Ok(None);
        };
        let sampling_ratio = match env("OTEL_TRACES_SAMPLER_ARG") {
            Some(v) => {
                let r: f64 = v.trim().parse().map_err(|_| {
                    format!("OTEL_TRACES_SAMPLER_ARG {v:?}: write a number from 0.0 to 1.0")
                })?;
                check_ratio(r).map_err(|e| format!("OTEL_TRACES_SAMPLER_ARG: {e}"))?;
                r
            }
            None => file.sampling_ratio.unwrap_or(1.0),
        };
        let service_name = env("OTEL_SERVICE_NAME")
            .or_else(|| file.service_name.clone())
            .unwrap_or_else(|| "portcullis".to_string());
        let export_delay_ms = match env("OTEL_BSP_SCHEDULE_DELAY") {
            Some(v) => v.trim().parse().map_err(|_| {
                format!("OTEL_BSP_SCHEDULE_DELAY {v:?}: write a number of milliseconds")
            })?,
            None => 5000,
        };
        // The signal-specific list replaces the generic one (it is not merged), as the
        // OpenTelemetry SDKs do.
        let headers = match env("OTEL_EXPORTER_OTLP_TRACES_HEADERS") {
            Some(v) => {
                otlp_headers(&v).map_err(|e| format!("OTEL_EXPORTER_OTLP_TRACES_HEADERS: {e}"))?
            }
            None => match env("OTEL_EXPORTER_OTLP_HEADERS") {
                Some(v) => {
                    otlp_headers(&v).map_err(|e| format!("OTEL_EXPORTER_OTLP_HEADERS: {e}"))?
                }
                None => Vec::new(),
            },
        };
        Ok(Some(Telemetry {
            traces_url,
            sampling_ratio,
            service_name,
            export_delay_ms,
            headers,
        }))
    }
}

/// The OpenTelemetry headers list: `key=value` pairs separated by commas, blanks around
/// either trimmed, values percent-decoded (`Bearer%20abc`). A name must be an HTTP header
/// name and a value a header value; errors name the entry by its key only (values are
/// often secrets).
fn otlp_headers(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for entry in list.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = entry.split_once('=') else {
            return Err(
                "an entry is not key=value; write e.g. \"authorization=Bearer%20abc,x-tenant=t1\""
                    .to_string(),
            );
        };
        let k = k.trim();
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(format!("{k:?} is not an HTTP header name"));
        }
        let v = percent_decode(v.trim())
            .ok_or_else(|| format!("the value of {k} is not valid percent-encoded UTF-8"))?;
        if reqwest::header::HeaderValue::from_str(&v).is_err() {
            return Err(format!(
                "the value of {k} is not a valid HTTP header value (control characters?)"
            ));
        }
        out.push((k.to_ascii_lowercase(), v));
    }
    Ok(out)
}

/// `%XX` escapes decoded (a `%` not followed by two hex digits is an error); the result must
/// be UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn traces_path(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// One hop of a W3C trace: the trace, the span that is the parent of what we do next, and
/// whether the trace is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 16-byte trace id (never all zero).
    pub trace_id: [u8; 16],
    /// 8-byte span id of the parent (never all zero).
    pub span_id: [u8; 8],
    /// The `sampled` flag (bit 0 of trace-flags).
    pub sampled: bool,
}

impl TraceContext {
    /// Parses a `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`). Anything malformed,
    /// an all-zero id or version `ff` gives `None`: the request then starts a new trace, as
    /// the W3C recommendation says. Later versions are read by their first four fields.
    pub fn parse(s: &str) -> Option<TraceContext> {
        let s = s.trim();
        let mut parts = s.split('-');
        let version = hex_array::<1>(parts.next()?)?[0];
        let trace_id = hex_array::<16>(parts.next()?)?;
        let span_id = hex_array::<8>(parts.next()?)?;
        let flags = hex_array::<1>(parts.next()?)?[0];
        let rest = parts.next();
        if version == 0xff || (version == 0 && rest.is_some()) {
            return None;
        }
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The context a JSON-RPC request carries in `params._meta.traceparent`, if any.
    pub fn from_meta(params: Option<&Value>) -> Option<TraceContext> {
        let tp = params?.get("_meta")?.get("traceparent")?.as_str()?;
        TraceContext::parse(tp)
    }

    /// The `traceparent` value for this context (version 00).
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            u8::from(self.sampled)
        )
    }

    /// The same trace with `span_id` as the parent of the next hop.
    pub fn child(&self, span_id: [u8; 8]) -> TraceContext {
        TraceContext { span_id, ..*self }
    }
}

/// A W3C `tracestate`: vendors' entries that travel with the `traceparent` they came with.
/// The gateway adds no entry of its own and passes the caller's on unchanged (normalised:
/// empty members dropped, one comma between members).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceState(String);

/// Most `tracestate` list members (more: the whole value is discarded, as the W3C says).
const MAX_STATE_MEMBERS: usize = 32;
/// Longest `tracestate` passed on; a longer one loses its members of more than 128
/// characters, then its last members, until it fits (the W3C's order).
const MAX_STATE_LEN: usize = 512;

impl TraceState {
    /// Parses a `tracestate` value (several header lines joined by commas). Anything
    /// malformed — a key or value outside the W3C grammar, a key twice, more than 32 members
    /// — gives `None`: nothing is passed on. An empty list is `None` too.
    pub fn parse(s: &str) -> Option<TraceState> {
        if s.len() > 8 * MAX_STATE_LEN {
            return None;
        }
        let mut members: Vec<&str> = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        for m in s.split(',') {
            let m = m.trim_matches([' ', '\t']);
            if m.is_empty() {
                continue;
            }
            let (key, value) = m.split_once('=')?;
            if !state_key(key) || !state_value(value) || keys.contains(&key) {
                return None;
            }
            keys.push(key);
            members.push(m);
        }
        if members.is_empty() || members.len() > MAX_STATE_MEMBERS {
            return None;
        }
        let len = |m: &[&str]| {
            m.iter()
                .map(|x| x.len() + 1)
                .sum::<usize>()
                .saturating_sub(1)
        };
        while len(&members) > MAX_STATE_LEN {
            match members.iter().rposition(|m| m.len() > 128) {
                Some(i) => {
                    members.remove(i);
                }
                None => {
                    members.pop();
                }
            }
        }
        (!members.is_empty()).then(|| TraceState(members.join(",")))
    }

    /// The value, as sent on.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `simple-key` or `tenant-id@system-id` of the W3C grammar.
fn state_key(k: &str) -> bool {
    let rest = |s: &str, max: usize| {
        s.len() <= max
            && s.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'*' | b'/')
            })
    };
    match k.split_once('@') {
        None => k.as_bytes().first().is_some_and(u8::is_ascii_lowercase) && rest(k, 256),
        Some((tenant, system)) => {
            tenant
                .as_bytes()
                .first()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && rest(tenant, 241)
                && system
                    .as_bytes()
                    .first()
                    .is_some_and(u8::is_ascii_lowercase)
                && rest(system, 14)
        }
    }
}

/// A `tracestate` value: 1 to 256 printable ASCII characters but `,` and `=`, not ending in
/// a space.
fn state_value(v: &str) -> bool {
    (1..=256).contains(&v.len())
        && !v.ends_with(' ')
        && v.bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

/// What a caller sent to be continued: its `traceparent` and the `tracestate` that came
/// with it (from the same place: both HTTP headers, or both `params._meta` members).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The caller's context (its span is the parent of ours).
    pub context: TraceContext,
    /// Its `tracestate`, when one came and is well-formed.
    pub state: Option<TraceState>,
}

impl TraceParent {
    /// From HTTP header values: `traceparent` and the `tracestate` lines (joined by commas,
    /// as HTTP combines repeated fields). No valid `traceparent`: `None` (a `tracestate`
    /// alone is ignored).
    pub fn from_headers<'a>(
        traceparent: Option<&str>,
        tracestate: impl IntoIterator<Item = &'a str>,
    ) -> Option<TraceParent> {
        let context = TraceContext::parse(traceparent?)?;
        let joined: Vec<&str> = tracestate.into_iter().collect();
        let state = (!joined.is_empty())
            .then(|| TraceState::parse(&joined.join(",")))
            .flatten();
        Some(TraceParent { context, state })
    }

    /// From a request's `params._meta.traceparent` and `params._meta.tracestate`.
    pub fn from_meta(params: Option<&Value>) -> Option<TraceParent> {
        let meta = params?.get("_meta")?;
        let context = TraceContext::parse(meta.get("traceparent")?.as_str()?)?;
        let state = meta
            .get("tracestate")
            .and_then(Value::as_str)
            .and_then(TraceState::parse);
        Some(TraceParent { context, state })
    }
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[usize::from(x >> 4)] as char);
        s.push(D[usize::from(x & 15)] as char);
    }
    s
}

/// Exactly `N` bytes of lower-case hex (the W3C format forbids upper case).
fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != N * 2 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(b[2 * i])? << 4) | nib(b[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trip() {
        let c = TraceContext::parse(TP).unwrap();
        assert!(c.sampled);
        assert_eq!(hex(&c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&c.span_id), "00f067aa0ba902b7");
        assert_eq!(c.header(), TP);
        let child = c.child([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            child.header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        let unsampled = TraceContext::parse(&TP.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
        assert!(unsampled.header().ends_with("-00"));
    }

    #[test]
    fn bad_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        // A later version is read by its first four fields.
        assert!(TraceContext::parse(&format!("01{}-later", &TP[2..])).is_some());
    }

    #[test]
    fn tracestate_is_checked_and_travels_with_its_traceparent() {
        let ok =
            TraceState::parse("rojo=00f067aa0ba902b7, ,congo=t61rcWkgMzE,a1@vendor=x y").unwrap();
        assert_eq!(
            ok.as_str(),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,a1@vendor=x y"
        );
        for bad in [
            "",
            " , ",
            "Rojo=1",
            "rojo",
            "rojo=",
            "rojo=a,rojo=b",
            "rojo=a\tb",
            "rojo=a=b",
            "1abc=x",
            "a@Vendor=x",
            "a@vendorvendorvendor=x",
            "rojo=caf\u{e9}",
        ] {
            assert_eq!(TraceState::parse(bad), None, "{bad:?}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(TraceState::parse(&many.join(",")), None, "33 members");
        assert!(TraceState::parse(&many[..32].join(",")).is_some());
        // Too long: the members over 128 characters go first, then the last ones.
        let long = format!(
            "big={},a=1,{}",
            "x".repeat(200),
            (0..30)
                .map(|i| format!("k{i}=yyyyyyyyyy"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let cut = TraceState::parse(&long).unwrap();
        assert!(cut.as_str().starts_with("a=1,k0="), "{}", cut.as_str());
        assert!(cut.as_str().len() <= 512);

        let p = TraceParent::from_headers(Some(TP), ["rojo=1", "congo=2"]).unwrap();
        assert_eq!(p.context, TraceContext::parse(TP).unwrap());
        assert_eq!(p.state.unwrap().as_str(), "rojo=1,congo=2");
        assert_eq!(TraceParent::from_headers(None, ["rojo=1"]), None);
        assert_eq!(TraceParent::from_headers(Some("junk"), ["rojo=1"]), None);
        let bad_state = TraceParent::from_headers(Some(TP), ["Rojo=1"]).unwrap();
        assert_eq!(bad_state.state, None, "the traceparent stands alone");
        let m = TraceParent::from_meta(Some(
            &json!({"_meta": {"traceparent": TP, "tracestate": "rojo=1"}}),
        ))
        .unwrap();
        assert_eq!(m.state.unwrap().as_str(), "rojo=1");
        assert_eq!(
            TraceParent::from_meta(Some(&json!({"_meta": {"tracestate": "rojo=1"}}))),
            None
        );
    }

    #[test]
    fn meta_traceparent() {
        let p = json!({"name": "t", "_meta": {"traceparent": TP}});
        assert_eq!(TraceContext::from_meta(Some(&p)), TraceContext::parse(TP));
        assert_eq!(TraceContext::from_meta(Some(&json!({"name": "t"}))), None);
        assert_eq!(
            TraceContext::from_meta(Some(&json!({"_meta": {"traceparent": 7}}))),
            None
        );
        assert_eq!(TraceContext::from_meta(None), None);
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn off_by_default() {
        let none = Telemetry::resolve(&TelemetryConfig::default(), env(&[])).unwrap();
        assert_eq!(none, None);
        // A sampler argument or service name alone does not turn tracing on.
        let none = Telemetry::resolve(
            &TelemetryConfig::default(),
            env(&[
                ("OTEL_SERVICE_NAME", "x"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
            ]),
        )
        .unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn file_and_environment() {
        let file = TelemetryConfig {
            otlp_endpoint: Some("http://127.0.0.1:4318/".into()),
            sampling_ratio: Some(0.5),
            service_name: Some("gw".into()),
        };
        let t = Telemetry::resolve(&file, env(&[])).unwrap().unwrap();
        assert_eq!(t.traces_url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(t.sampling_ratio, 0.5);
        assert_eq!(t.service_name, "gw");
        assert_eq!(t.export_delay_ms, 5000);

        let t = Telemetry::resolve(
            &file,
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SERVICE_NAME", "edge"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
                ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.export_delay_ms, 250);
        assert_eq!(t.traces_url, "http://c:4318/v1/traces");
        assert_eq!(t.sampling_ratio, 0.1);
        assert_eq!(t.service_name, "edge");

        let t = Telemetry::resolve(
            &TelemetryConfig::default(),
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9/custom"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.traces_url, "http://t:9/custom");
        assert_eq!(t.sampling_ratio, 1.0);
        assert_eq!(t.service_name, "portcullis");
    }

    #[test]
    fn otlp_headers_from_the_environment() {
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let vars: Vec<(&str, &str)> = on.iter().chain(extra).copied().collect();
            Telemetry::resolve(&TelemetryConfig::default(), env(&vars))
        };
        assert!(with(&[]).unwrap().unwrap().headers.is_empty());
        let t = with(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            " Authorization = Bearer%20s3cr%3Dt ,, x-tenant=t1%2Ca",
        )])
        .unwrap()
        .unwrap();
        assert_eq!(
            t.headers,
            vec![
                ("authorization".to_string(), "Bearer s3cr=t".to_string()),
                ("x-tenant".to_string(), "t1,a".to_string())
            ]
        );
        assert!(!format!("{t:?}").contains("s3cr"), "values are not shown");
        // The traces list replaces the generic one.
        let t = with(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "c=3"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(t.headers, vec![("c".to_string(), "3".to_string())]);
        for (bad, says) in [
            ("novalue", "key=value"),
            ("bad header=1", "header name"),
            ("a=%zz", "percent-encoded"),
            ("a=%0d%0aInjected: 1", "header value"),
        ] {
            let e = with(&[("OTEL_EXPORTER_OTLP_HEADERS", bad)]).unwrap_err();
            assert!(
                e.contains("OTEL_EXPORTER_OTLP_HEADERS") && e.contains(says),
                "{bad}: {e}"
            );
        }
        let e = with(&[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x=%E2%82")]).unwrap_err();
        assert!(e.contains("OTEL_EXPORTER_OTLP_TRACES_HEADERS"), "{e}");
    }

    #[test]
    fn bad_settings_say_what_to_write() {
        let e = Telemetry::resolve(
            &TelemetryConfig::default(),
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_TRACES_SAMPLER_ARG", "half"),
            ]),
        )
        .unwrap_err();
        assert!(
            e.contains("OTEL_TRACES_SAMPLER_ARG") && e.contains("0.0 to 1.0"),
            "{e}"
        );
        let e = Telemetry::resolve(
            &TelemetryConfig::default(),
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]),
        )
        .unwrap_err();
        assert!(e.contains("http://127.0.0.1:4318"), "{e}");
        let e = Telemetry::resolve(
            &TelemetryConfig::default(),
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_BSP_SCHEDULE_DELAY", "5s"),
            ]),
        )
        .unwrap_err();
        assert!(e.contains("OTEL_BSP_SCHEDULE_DELAY"), "{e}");
        let bad = TelemetryConfig {
            sampling_ratio: Some(1.5),
            ..Default::default()
        };
        let e = bad.check().unwrap_err();
        assert!(e.contains("telemetry.sampling_ratio"), "{e}");
    }
}
