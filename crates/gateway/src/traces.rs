//! W3C trace context and the `[telemetry]` settings for OpenTelemetry traces: parsing and
//! writing `traceparent` (HTTP header or `params._meta.traceparent`), and resolving the
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
#[derive(Clone, Debug, PartialEq)]
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
        Ok(Some(Telemetry {
            traces_url,
            sampling_ratio,
            service_name,
            export_delay_ms,
        }))
    }
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
