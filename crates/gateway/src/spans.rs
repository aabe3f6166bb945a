//! The spans of the request path: [`Tracer`] starts one [`RequestSpan`] per client request
//! (continuing the caller's W3C trace when it sent one), the connection owner times its steps
//! (the decision, the audit commits, the upstream call) and finishes it with the request's
//! audit record, and the finished spans go to the OTLP exporter ([`crate::otlp`]).
//! Without `[telemetry]` there is no `Tracer` and none of this runs.

use crate::otlp::{now_ns, AttrValue, Exporter, SpanData, SpanKind};
use crate::traces::{Telemetry, TraceContext, TraceParent, TraceState};
use portcullis_mcp::Message;
use portcullis_store::{AuditDecision, AuditRecord};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Starts request spans and exports the sampled ones.
pub struct Tracer {
    exporter: Exporter,
    /// New traces are sampled when the low 8 bytes of their id fall under this bound.
    bound: u64,
}

impl Tracer {
    /// The tracer for resolved settings: starts the export thread. `OTEL_BSP_SCHEDULE_DELAY`
    /// (ms, default 5000) is how long spans wait to be batched.
    pub fn start(t: &Telemetry) -> std::io::Result<Tracer> {
        let delay = Duration::from_millis(t.export_delay_ms.max(1));
        let exporter = Exporter::start(
            t.traces_url.clone(),
            t.service_name.clone(),
            t.headers.clone(),
            delay,
        )?;
        Ok(Tracer::with_exporter(exporter, t.sampling_ratio))
    }

    /// A tracer exporting to `exporter`, sampling new traces at `ratio`.
    pub fn with_exporter(exporter: Exporter, ratio: f64) -> Tracer {
        let bound = if ratio >= 1.0 {
            u64::MAX
        } else {
            (ratio.max(0.0) * (u64::MAX as f64)) as u64
        };
        Tracer { exporter, bound }
    }

    /// The span of a client message, when it is a request (notifications and answers get none).
    /// Its parent: `params._meta.traceparent` if valid (with `_meta.tracestate`), else the
    /// HTTP headers the face read (`header`); none starts a new trace, sampled at the
    /// configured ratio. A continued trace keeps the caller's sampled flag (parent-based
    /// sampling) and its `tracestate`.
    pub fn request(&self, msg: &Message, header: Option<&TraceParent>) -> Option<RequestSpan> {
        let method = msg.method()?.to_owned();
        msg.id()?;
        let meta = meta_traceparent(msg);
        let span_id = new_span_id();
        let mut state = None;
        let (ctx, parent) = match meta.or_else(|| header.cloned()) {
            Some(p) => {
                state = p.state;
                (p.context.child(span_id), Some(p.context.span_id))
            }
            None => {
                let trace_id = new_trace_id();
                let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
                let sampled = self.bound == u64::MAX || low < self.bound;
                (
                    TraceContext {
                        trace_id,
                        span_id,
                        sampled,
                    },
                    None,
                )
            }
        };
        Some(RequestSpan {
            method,
            ctx,
            state,
            parent,
            start_ns: now_ns(),
            steps: Vec::new(),
            upstream: None,
        })
    }

    /// Posts the spans finished so far (at most `within`): for a gateway about to stop.
    pub async fn flush(&self, within: Duration) {
        self.exporter.flush(within).await;
    }

    fn export(&self, s: SpanData) {
        self.exporter.export(s);
    }
}

/// A step of a request timed by the connection owner, exported as a child span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `Relay::from_client`: the policy decision and the counter reservation.
    Decide,
    /// Waiting for the audit sinks to take the request's record (durable: on disk).
    AuditCommit,
    /// Waiting for the write-ahead record of a forwarded call (durable mode).
    AuditWriteAhead,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Decide => "portcullis.decide",
            Step::AuditCommit => "portcullis.audit.commit",
            Step::AuditWriteAhead => "portcullis.audit.write_ahead",
        }
    }
}

/// One client request in flight: its context (trace, own span id, sampled) and what has been
/// timed so far.
#[derive(Debug)]
pub struct RequestSpan {
    /// The request's method: its audit record is the one with the same method (other records
    /// can come first, such as an expired approval's).
    method: String,
    ctx: TraceContext,
    /// The caller's `tracestate`, passed on with the trace.
    state: Option<TraceState>,
    parent: Option<[u8; 8]>,
    start_ns: u64,
    steps: Vec<(Step, u64, u64)>,
    /// The upstream call: its span id, start, and end once the answer came.
    upstream: Option<Upstream>,
}

#[derive(Debug)]
struct Upstream {
    span_id: [u8; 8],
    start_ns: u64,
    end_ns: Option<u64>,
    error: Option<String>,
}

impl RequestSpan {
    /// This request's own context (its span id is the request span's).
    pub fn context(&self) -> TraceContext {
        self.ctx
    }

    /// The `tracestate` to send on with the trace (the caller's, unchanged).
    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_ref().map(TraceState::as_str)
    }

    /// Whether `rec` is this request's own record (the one that finishes it).
    pub fn is_for(&self, rec: &AuditRecord) -> bool {
        rec.method == self.method
    }

    /// Records a step that ran from `start_ns` until now.
    pub fn step(&mut self, step: Step, start_ns: u64) {
        if self.ctx.sampled {
            self.steps.push((step, start_ns, now_ns()));
        }
    }

    /// The request goes upstream now: a new child span for the call. Returns the
    /// `traceparent` to send with it (the upstream's parent is that span).
    pub fn upstream_starts(&mut self) -> String {
        let span_id = new_span_id();
        self.upstream = Some(Upstream {
            span_id,
            start_ns: now_ns(),
            end_ns: None,
            error: None,
        });
        self.ctx.child(span_id).header()
    }

    /// The upstream answered (or failed: `error`).
    pub fn upstream_ends(&mut self, error: Option<&str>) {
        if let Some(u) = &mut self.upstream {
            if u.end_ns.is_none() {
                u.end_ns = Some(now_ns());
                u.error = error.map(str::to_owned);
            }
        }
    }

    /// Ends the request with its audit record (server, method, tool, decision, rule, grant
    /// label, upstream status) and exports it with its children, when sampled. `rec`: `None`
    /// when the request ended without one (the upstream was lost, the call is held for an
    /// approval).
    pub fn finish(mut self, tracer: &Tracer, rec: Option<&AuditRecord>, lost: Option<&str>) {
        if !self.ctx.sampled {
            return;
        }
        let end = now_ns();
        self.upstream_ends(lost);
        let trace_id = self.ctx.trace_id;
        let me = self.ctx.span_id;
        let trace_state = self.tracestate().map(str::to_owned);
        let mut attrs: Vec<(&'static str, AttrValue)> = Vec::new();
        let mut name = std::mem::take(&mut self.method);
        let mut error = lost.map(str::to_owned);
        if rec.is_none() {
            attrs.push(("mcp.method.name", AttrValue::Str(name.clone())));
        }
        if let Some(r) = rec {
            name = match &r.tool {
                Some(t) => format!("{} {t}", r.method),
                None => r.method.clone(),
            };
            attrs.push(("mcp.method.name", AttrValue::Str(r.method.clone())));
            if let Some(t) = &r.tool {
                attrs.push(("gen_ai.tool.name", AttrValue::Str(t.clone())));
            }
            attrs.push(("portcullis.server", AttrValue::Str(r.server.clone())));
            attrs.push((
                "portcullis.decision",
                AttrValue::Str(r.decision.as_str().to_owned()),
            ));
            if let Some(rule) = &r.rule {
                attrs.push(("portcullis.rule", AttrValue::Str(rule.clone())));
            }
            if let Some(l) = &r.grant_label {
                attrs.push(("portcullis.grant.label", AttrValue::Str(l.clone())));
            }
            if let Some(s) = &r.upstream_status {
                attrs.push(("portcullis.upstream.status", AttrValue::Str(s.clone())));
            }
            if let Some(s) = &r.session {
                attrs.push(("mcp.session.id", AttrValue::Str(s.clone())));
            }
            if r.decision == AuditDecision::Error {
                error = Some(
                    r.upstream_status
                        .clone()
                        .or_else(|| r.message.clone())
                        .unwrap_or_else(|| "error".into()),
                );
            }
        }
        for (step, start, stop) in self.steps.drain(..) {
            let span_id = new_span_id();
            // The counter reservation happened inside the decision: its child.
            if let (Step::Decide, Some((rs, re))) = (step, rec.and_then(|r| r.reserved_ns)) {
                let mut attrs = Vec::new();
                if let Some(r) = rec {
                    attrs.push((
                        "portcullis.counters",
                        AttrValue::Int(r.counters.len() as i64),
                    ));
                }
                tracer.export(SpanData {
                    trace_id,
                    trace_state: trace_state.clone(),
                    span_id: new_span_id(),
                    parent: Some(span_id),
                    name: "portcullis.reserve".into(),
                    kind: SpanKind::Internal,
                    start_ns: rs,
                    end_ns: re,
                    attrs,
                    error: None,
                });
            }
            tracer.export(SpanData {
                trace_id,
                trace_state: trace_state.clone(),
                span_id,
                parent: Some(me),
                name: step.name().to_owned(),
                kind: SpanKind::Internal,
                start_ns: start,
                end_ns: stop,
                attrs: Vec::new(),
                error: None,
            });
        }
        if let Some(mut u) = self.upstream.take() {
            if u.error.is_none() {
                u.error = rec
                    .and_then(|r| r.upstream_status.as_ref())
                    .filter(|s| s.as_str() != "ok")
                    .cloned();
            }
            let mut ua = Vec::new();
            if let Some(r) = rec {
                ua.push(("portcullis.server", AttrValue::Str(r.server.clone())));
                ua.push(("mcp.method.name", AttrValue::Str(r.method.clone())));
                if let Some(ms) = r.upstream_ms {
                    ua.push(("portcullis.upstream.ms", AttrValue::Int(ms as i64)));
                }
            }
            tracer.export(SpanData {
                trace_id,
                trace_state: trace_state.clone(),
                span_id: u.span_id,
                parent: Some(me),
                name: match rec {
                    Some(r) => format!("upstream {}", r.method),
                    None => "upstream".into(),
                },
                kind: SpanKind::Client,
                start_ns: u.start_ns,
                end_ns: u.end_ns.unwrap_or(end),
                attrs: ua,
                error: u.error,
            });
        }
        tracer.export(SpanData {
            trace_id,
            trace_state: trace_state.clone(),
            span_id: me,
            parent: self.parent,
            name,
            kind: SpanKind::Server,
            start_ns: self.start_ns,
            end_ns: end,
            attrs,
            error,
        });
    }
}

/// The trace context a message carries in `params._meta` (`traceparent`, `tracestate`);
/// the params are read only when their raw text names a `traceparent`.
pub(crate) fn meta_traceparent(msg: &Message) -> Option<TraceParent> {
    msg.get("params")
        .filter(|p| p.get().contains("traceparent"))?;
    TraceParent::from_meta(msg.value("params").as_ref())
}

/// A random, non-zero 8-byte span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let v = random_u64();
        if v != 0 {
            return v.to_be_bytes();
        }
    }
}

/// A random, non-zero 16-byte trace id.
pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&random_u64().to_be_bytes());
    id[8..].copy_from_slice(&new_span_id());
    id
}

/// SipHash, keyed at random once per process, of a counter: unpredictable ids without a
/// random-number crate (ids need uniqueness and spread, not secrecy).
fn random_u64() -> u64 {
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = KEYS
        .get_or_init(std::collections::hash_map::RandomState::new)
        .build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracer(ratio: f64) -> Tracer {
        // Nothing listens on the discard port: exports fail quietly, which is all these tests
        // need (they look at the contexts, not at the export).
        let e = Exporter::start(
            "http://127.0.0.1:9/v1/traces".into(),
            "t".into(),
            Vec::new(),
            Duration::from_secs(3600),
        )
        .unwrap();
        Tracer::with_exporter(e, ratio)
    }

    fn msg(line: &str) -> Message {
        Message::parse(line).unwrap()
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

    #[test]
    fn requests_only_and_meta_wins_over_the_header() {
        let t = tracer(1.0);
        assert!(t
            .request(
                &msg(r#"{"jsonrpc":"2.0","method":"notifications/x"}"#),
                None
            )
            .is_none());
        assert!(t
            .request(&msg(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#), None)
            .is_none());
        let header = TraceParent::from_headers(Some(OTHER), ["rojo=header"]);
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","_meta":{{"traceparent":"{TP}","tracestate":"congo=meta"}}}}}}"#
        );
        let s = t.request(&msg(&line), header.as_ref()).unwrap();
        assert_eq!(
            s.tracestate(),
            Some("congo=meta"),
            "the state of the context used"
        );
        let parent = TraceContext::parse(TP).unwrap();
        assert_eq!(s.context().trace_id, parent.trace_id);
        assert_ne!(s.context().span_id, parent.span_id);
        assert_eq!(s.parent, Some(parent.span_id));
        assert!(s.context().sampled);
        // The header alone: continued, its (unsampled) flag followed.
        let s = t
            .request(
                &msg(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#),
                header.as_ref(),
            )
            .unwrap();
        assert_eq!(s.context().trace_id, header.unwrap().context.trace_id);
        assert_eq!(s.tracestate(), Some("rojo=header"));
        assert!(!s.context().sampled);
        // A new trace has no state.
        let s = t
            .request(&msg(r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#), None)
            .unwrap();
        assert_eq!(s.tracestate(), None);
    }

    #[test]
    fn new_traces_follow_the_ratio() {
        let line = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let never = tracer(0.0);
        let always = tracer(1.0);
        for _ in 0..50 {
            let s = never.request(&msg(line), None).unwrap();
            assert!(!s.context().sampled && s.parent.is_none());
            assert!(always.request(&msg(line), None).unwrap().context().sampled);
        }
        let half = tracer(0.5);
        let n = (0..2000)
            .filter(|_| half.request(&msg(line), None).unwrap().context().sampled)
            .count();
        assert!((800..1200).contains(&n), "{n} of 2000 sampled at 0.5");
        // A caller's sampled context is followed even at 0.
        assert!(
            never
                .request(&msg(line), TraceParent::from_headers(Some(TP), []).as_ref())
                .unwrap()
                .context()
                .sampled
        );
    }

    #[test]
    fn the_upstream_gets_a_child_of_the_request() {
        let t = tracer(1.0);
        let mut s = t
            .request(&msg(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), None)
            .unwrap();
        let tp = TraceContext::parse(&s.upstream_starts()).unwrap();
        assert_eq!(tp.trace_id, s.context().trace_id);
        assert_ne!(tp.span_id, s.context().span_id);
        assert!(tp.sampled);
    }

    #[test]
    fn ids_are_distinct_and_non_zero() {
        let a = new_trace_id();
        let b = new_trace_id();
        assert_ne!(a, b);
        assert_ne!(a, [0; 16]);
        assert_ne!(new_span_id(), new_span_id());
    }
}
