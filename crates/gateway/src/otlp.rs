//! OTLP/HTTP export of finished spans: the protobuf encoding of an `ExportTraceServiceRequest`
//! (written here from the OTLP `.proto` definitions, no code generator) and the background
//! batcher that posts it to `<endpoint>/v1/traces` (with the `OTEL_EXPORTER_OTLP_*HEADERS`)
//! on a thread of its own.
//!
//! Export never touches a request: spans are handed over with a non-blocking `try_send`
//! (dropped, and counted, when the queue is full), and a failed post is logged at most once a
//! minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// OTLP `Span.SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// Work inside the gateway.
    Internal = 1,
    /// The client's request, as the gateway serves it.
    Server = 2,
    /// The gateway's call to the upstream server.
    Client = 3,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// `string_value`.
    Str(String),
    /// `int_value`.
    Int(i64),
}

/// A finished span, ready to export.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanData {
    /// 16-byte trace id.
    pub trace_id: [u8; 16],
    /// 8-byte span id.
    pub span_id: [u8; 8],
    /// The W3C `tracestate` of the span's context (the caller's, passed on).
    pub trace_state: Option<String>,
    /// The parent span, if any (local or remote).
    pub parent: Option<[u8; 8]>,
    /// Span name.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// Start, ns since the Unix epoch.
    pub start_ns: u64,
    /// End, ns since the Unix epoch.
    pub end_ns: u64,
    /// Attributes.
    pub attrs: Vec<(&'static str, AttrValue)>,
    /// `Some(message)`: the span's status is ERROR.
    pub error: Option<String>,
}

/// The wall clock in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

// ---- protobuf wire format (varint, fixed64, length-delimited) ----

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn fixed64_field(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, 0);
    varint(out, v);
}

/// A nested message: encoded by `f` into a scratch buffer, then written length-delimited.
fn message_field(out: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    bytes_field(out, field, &inner);
}

/// `KeyValue { string key = 1; AnyValue value = 2; }`, `AnyValue { string_value = 1;
/// int_value = 3; }`.
fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &AttrValue) {
    message_field(out, field, |kv| {
        bytes_field(kv, 1, key.as_bytes());
        message_field(kv, 2, |any| match value {
            AttrValue::Str(s) => bytes_field(any, 1, s.as_bytes()),
            AttrValue::Int(i) => varint_field(any, 3, *i as u64),
        });
    });
}

/// `Span`: trace_id = 1, span_id = 2, trace_state = 3, parent_span_id = 4, name = 5, kind = 6,
/// start_time_unix_nano = 7, end_time_unix_nano = 8, attributes = 9, status = 15
/// (`Status { message = 2; code = 3 }`, code 2 = ERROR).
fn span(out: &mut Vec<u8>, s: &SpanData) {
    message_field(out, 2, |m| {
        bytes_field(m, 1, &s.trace_id);
        bytes_field(m, 2, &s.span_id);
        if let Some(t) = &s.trace_state {
            bytes_field(m, 3, t.as_bytes());
        }
        if let Some(p) = &s.parent {
            bytes_field(m, 4, p);
        }
        bytes_field(m, 5, s.name.as_bytes());
        varint_field(m, 6, s.kind as u64);
        fixed64_field(m, 7, s.start_ns);
        fixed64_field(m, 8, s.end_ns);
        for (k, v) in &s.attrs {
            key_value(m, 9, k, v);
        }
        if let Some(e) = &s.error {
            message_field(m, 15, |st| {
                bytes_field(st, 2, e.as_bytes());
                varint_field(st, 3, 2);
            });
        }
    });
}

/// The body of one export: `ExportTraceServiceRequest { repeated ResourceSpans
/// resource_spans = 1; }` with one `ResourceSpans { Resource resource = 1; repeated
/// ScopeSpans scope_spans = 2; }` (`service.name` the one resource attribute) and one
/// `ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }`.
pub fn encode_request(service_name: &str, spans: &[SpanData]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + spans.len() * 160);
    message_field(&mut out, 1, |rs| {
        message_field(rs, 1, |res| {
            key_value(
                res,
                1,
                "service.name",
                &AttrValue::Str(service_name.to_owned()),
            );
        });
        message_field(rs, 2, |ss| {
            message_field(ss, 1, |scope| {
                bytes_field(scope, 1, b"portcullis");
                bytes_field(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for s in spans {
                span(ss, s);
            }
        });
    });
    out
}

// ---- the batcher ----

/// Spans queued for export at most (beyond that they are dropped and counted).
const QUEUE: usize = 4096;
/// Spans in one post at most.
const BATCH: usize = 512;
/// How long one post may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// A failed export is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the export thread is handed.
enum Msg {
    Span(SpanData),
    /// Post what is waiting now, then say so.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Hands finished spans to the background exporter. Cloning shares the queue.
#[derive(Clone)]
pub struct Exporter {
    tx: tokio::sync::mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl Exporter {
    /// Starts the export thread: spans are posted to `url` as protobuf every `delay` or
    /// whenever `BATCH` are waiting, with `headers` (a collector's credentials; pairs that
    /// are not valid HTTP headers are left out). The thread ends once every `Exporter` is
    /// dropped, after posting what is left.
    pub fn start(
        url: String,
        service_name: String,
        headers: Vec<(String, String)>,
        delay: Duration,
    ) -> std::io::Result<Exporter> {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let d = dropped.clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || rt.block_on(run(url, service_name, headers, delay, rx, d)))?;
        Ok(Exporter { tx, dropped })
    }

    /// Queues one span; never waits. A full queue drops it (counted, reported with the next
    /// failure or batch).
    pub fn export(&self, span: SpanData) {
        if self.tx.try_send(Msg::Span(span)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Posts what is queued now and waits for that (at most `within`): for a gateway about
    /// to stop.
    pub async fn flush(&self, within: Duration) {
        let (done, wait) = tokio::sync::oneshot::channel();
        let asked = tokio::time::timeout(within, self.tx.send(Msg::Flush(done)));
        if matches!(asked.await, Ok(Ok(()))) {
            let _ = tokio::time::timeout(within, wait).await;
        }
    }
}

async fn run(
    url: String,
    service_name: String,
    headers: Vec<(String, String)>,
    delay: Duration,
    mut rx: tokio::sync::mpsc::Receiver<Msg>,
    dropped: Arc<AtomicU64>,
) {
    let client = match reqwest::Client::builder().timeout(POST_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("trace export is off: cannot build its HTTP client: {e}");
            return;
        }
    };
    let mut extra = reqwest::header::HeaderMap::new();
    // The body's own headers stay ours.
    for (k, v) in headers.into_iter().filter(|(k, _)| {
        !k.eq_ignore_ascii_case("content-type") && !k.eq_ignore_ascii_case("content-length")
    }) {
        if let (Ok(k), Ok(mut v)) = (
            reqwest::header::HeaderName::from_bytes(k.as_bytes()),
            reqwest::header::HeaderValue::from_str(&v),
        ) {
            v.set_sensitive(true);
            extra.append(k, v);
        }
    }
    let mut post = Poster {
        client,
        url,
        service_name,
        headers: extra,
        last_warning: None,
        failed: 0,
    };
    let mut batch = Vec::new();
    let mut tick = tokio::time::interval(delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(Msg::Span(s)) => {
                    batch.push(s);
                    if batch.len() >= BATCH {
                        post.send(std::mem::take(&mut batch), &dropped).await;
                    }
                }
                Some(Msg::Flush(done)) => {
                    if !batch.is_empty() {
                        post.send(std::mem::take(&mut batch), &dropped).await;
                    }
                    let _ = done.send(());
                }
                None => {
                    if !batch.is_empty() {
                        post.send(batch, &dropped).await;
                    }
                    return;
                }
            },
            _ = tick.tick() => {
                if !batch.is_empty() {
                    post.send(std::mem::take(&mut batch), &dropped).await;
                }
            }
        }
    }
}

struct Poster {
    client: reqwest::Client,
    url: String,
    service_name: String,
    headers: reqwest::header::HeaderMap,
    last_warning: Option<Instant>,
    failed: u64,
}

impl Poster {
    async fn send(&mut self, spans: Vec<SpanData>, dropped: &AtomicU64) {
        let body = encode_request(&self.service_name, &spans);
        let result = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await;
        let why = match result {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!("the collector answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        self.failed += spans.len() as u64;
        if self.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            self.last_warning = Some(Instant::now());
            let lost = dropped.swap(0, Ordering::Relaxed);
            tracing::warn!(
                "trace export to {} failed ({why}); {} spans lost since the last warning, {lost} more dropped on a full queue (next warning in a minute at the earliest)",
                self.url,
                std::mem::take(&mut self.failed),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut v = Vec::new();
        varint(&mut v, 1);
        varint(&mut v, 300);
        varint(&mut v, u64::MAX);
        assert_eq!(&v[..3], &[1, 0xac, 0x02]);
        assert_eq!(v.len(), 3 + 10);
    }
}
