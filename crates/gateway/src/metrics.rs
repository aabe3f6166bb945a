//! Prometheus metrics: the second [`EventSink`]. Every decision, door refusal, reload and
//! approval reaches it as the same [`Event`] the audit log gets, and becomes counters and
//! histograms (`prometheus-client`), as do the upstream reconnections the connections note
//! ([`crate::events::Events::note`]); a scrape adds what it reads at that moment (the audit
//! writer's counters and batch sizes, open sessions, pending approvals) and encodes
//! everything as OpenMetrics text.
//!
//! Labels are bounded whatever callers send: servers are the configured ones (else
//! `(unknown)`), methods the MCP ones (else `(other)`), rules their kind (`deny_if`,
//! `limits`, `(default deny)`, …), and a tool is named only when its server listed it in a
//! `tools/list` answer ([`ListedTools`], which the relay records into); any other name is
//! counted as `(unlisted)`.

use crate::events::{Commit, Event, EventSink};
use portcullis_store::{AuditDecision, AuditRecord, AuditStats};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// The `tool` label of a call to a tool its server has not listed.
pub const UNLISTED: &str = "(unlisted)";

/// The `server` label of a record naming no configured server (a refused request's path).
pub const UNKNOWN_SERVER: &str = "(unknown)";

/// The `method` label of a method MCP does not define, and the kind of an unrecognised rule.
pub const OTHER: &str = "(other)";

/// Most tool names remembered per server; a server listing more gets the rest as
/// `(unlisted)`.
pub const MAX_LISTED_PER_SERVER: usize = 1024;

/// The methods counted under their own name.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
];

/// The tools each server has listed, as the relay saw them in `tools/list` answers (before
/// hidden tools are filtered out: a hidden tool is still one the server lists).
#[derive(Debug, Default)]
pub struct ListedTools(RwLock<HashMap<String, HashSet<String>>>);

impl ListedTools {
    /// Remembers `names` as listed by `server` (up to [`MAX_LISTED_PER_SERVER`]).
    pub fn record<'a>(&self, server: &str, names: impl IntoIterator<Item = &'a str>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        let set = map.entry(server.to_owned()).or_default();
        for n in names {
            if set.len() >= MAX_LISTED_PER_SERVER {
                break;
            }
            if !set.contains(n) {
                set.insert(n.to_owned());
            }
        }
    }

    /// Whether `server` has listed `tool`.
    pub fn contains(&self, server: &str, tool: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(server)
            .is_some_and(|s| s.contains(tool))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    server: String,
    method: String,
    decision: String,
    rule_kind: String,
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    server: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApprovalLabels {
    server: String,
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    server: String,
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    server: String,
    kind: String,
}

type Histograms = Family<ServerLabels, Histogram, fn() -> Histogram>;

/// Seconds, from 100 µs to about 100 s (doubling).
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

/// What a scrape reads at the moment it runs.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The audit writer's counters, when auditing is on.
    pub audit: Option<AuditStats>,
    /// Open sessions: (server, kind, count); kind is `handshake`, `bridged` or
    /// `legacy_sse`.
    pub sessions: Vec<(String, &'static str, u64)>,
    /// Approval requests waiting for a human, by server (`None`: no approval store, or it
    /// could not be read).
    pub pending_approvals: Option<Vec<(String, u64)>>,
}

/// The metrics sink: counters and histograms fed by events, encoded on scrape.
#[derive(Debug)]
pub struct MetricsSink {
    registry: Registry,
    servers: HashSet<String>,
    listed: Arc<ListedTools>,
    requests: Family<RequestLabels, Counter>,
    upstream_seconds: Histograms,
    gateway_seconds: Histograms,
    refusals: Family<RefusalLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    approvals: Family<ApprovalLabels, Counter>,
    upstream_events: Family<UpstreamLabels, Counter>,
    upstream_up: Family<ServerLabels, Gauge>,
    reconnects: Family<ServerLabels, Counter>,
    resumptions: Family<ServerLabels, Counter>,
    audit_commit_seconds: Histogram,
}

impl MetricsSink {
    /// A sink for a gateway serving `servers` (the configured names).
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> MetricsSink {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "portcullis_requests",
            "Client requests by server, method, decision, rule kind and (listed) tool",
            requests.clone(),
        );
        let upstream_seconds: Histograms = Family::new_with_constructor(seconds_histogram);
        registry.register(
            "portcullis_upstream_seconds",
            "Time from forwarding a request to the upstream's answer",
            upstream_seconds.clone(),
        );
        let gateway_seconds: Histograms = Family::new_with_constructor(seconds_histogram);
        registry.register(
            "portcullis_gateway_seconds",
            "Time the gateway itself spent on a request (parse, policy, counters)",
            gateway_seconds.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "portcullis_door_refusals",
            "Requests refused before reaching the relay, by reason",
            refusals.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "portcullis_reloads",
            "Configuration reloads by result (ok, failed)",
            reloads.clone(),
        );
        let approvals = Family::<ApprovalLabels, Counter>::default();
        registry.register(
            "portcullis_approvals",
            "Approval events (required: a call was held for a human; expired)",
            approvals.clone(),
        );
        let upstream_events = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "portcullis_upstream_events",
            "Upstream health changes by server and event (lost: the connection or process died; \
             restarted: the process came back and the session was replayed)",
            upstream_events.clone(),
        );
        let upstream_up = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "portcullis_upstream_up",
            "0 while a server's upstream is lost and has not come back, 1 otherwise",
            upstream_up.clone(),
        );
        let reconnects = Family::<ServerLabels, Counter>::default();
        registry.register(
            "portcullis_upstream_reconnects",
            "Upstream streams the server closed and the gateway opened again (Streamable HTTP: \
             the session's GET stream, a request's answer stream), resumptions included",
            reconnects.clone(),
        );
        let resumptions = Family::<ServerLabels, Counter>::default();
        registry.register(
            "portcullis_upstream_stream_resumptions",
            "Upstream reconnections that asked the server to resume with Last-Event-ID",
            resumptions.clone(),
        );
        let servers: HashSet<String> = servers.into_iter().map(Into::into).collect();
        for s in &servers {
            let by_server = ServerLabels { server: s.clone() };
            upstream_up.get_or_create(&by_server).set(1);
            // Present from the start, so that a rate over the first reconnection is right.
            let _ = reconnects.get_or_create(&by_server);
            let _ = resumptions.get_or_create(&by_server);
        }
        let audit_commit_seconds = seconds_histogram();
        registry.register(
            "portcullis_audit_commit_seconds",
            "Time a request waited for its audit record to be durable (group commit)",
            audit_commit_seconds.clone(),
        );
        MetricsSink {
            registry,
            servers,
            listed: Arc::new(ListedTools::default()),
            requests,
            upstream_seconds,
            gateway_seconds,
            refusals,
            reloads,
            approvals,
            upstream_events,
            upstream_up,
            reconnects,
            resumptions,
            audit_commit_seconds,
        }
    }

    /// The listed-tools set the relays record into.
    pub fn listed(&self) -> &Arc<ListedTools> {
        &self.listed
    }

    fn server(&self, name: &str) -> String {
        if self.servers.contains(name) {
            name.to_owned()
        } else {
            UNKNOWN_SERVER.to_owned()
        }
    }

    /// Counts one record.
    pub fn observe(&self, rec: &AuditRecord) {
        let server = self.server(&rec.server);
        match rec.method.as_str() {
            "(reload)" => {
                let result = if rec.decision == AuditDecision::Allow {
                    "ok"
                } else {
                    "failed"
                };
                self.reloads
                    .get_or_create(&ResultLabels {
                        result: result.into(),
                    })
                    .inc();
            }
            "(authentication)" | "(invalid message)" | "(media type)" => {
                self.refusals
                    .get_or_create(&RefusalLabels {
                        server,
                        reason: refusal_reason(rec.rule.as_deref()).into(),
                    })
                    .inc();
            }
            crate::relay::UPSTREAM => {
                if rec.rule.as_deref() == Some(crate::relay::UPSTREAM_CONNECTED) {
                    self.upstream_up
                        .get_or_create(&ServerLabels { server })
                        .set(1);
                    return;
                }
                let resumed = match rec.rule.as_deref() {
                    Some(crate::relay::UPSTREAM_RECONNECTED) => Some(false),
                    Some(crate::relay::UPSTREAM_RESUMED) => Some(true),
                    _ => None,
                };
                if let Some(resumed) = resumed {
                    let by_server = ServerLabels { server };
                    self.reconnects.get_or_create(&by_server).inc();
                    if resumed {
                        self.resumptions.get_or_create(&by_server).inc();
                    }
                    return;
                }
                let event = match rec.rule.as_deref() {
                    Some(crate::relay::UPSTREAM_LOST) => "lost",
                    Some(crate::relay::UPSTREAM_RESTARTED) => "restarted",
                    _ => OTHER,
                };
                let up = match event {
                    "lost" => Some(0),
                    "restarted" => Some(1),
                    _ => None,
                };
                if let Some(up) = up {
                    self.upstream_up
                        .get_or_create(&ServerLabels {
                            server: server.clone(),
                        })
                        .set(up);
                }
                self.upstream_events
                    .get_or_create(&UpstreamLabels {
                        server,
                        event: event.into(),
                    })
                    .inc();
            }
            // Pin events of listings and operators' pin decisions are not requests.
            crate::pinned::PIN_METHOD => {}
            portcullis_store::APPROVAL_METHOD => {
                // The messages of `Approval::audit_record` (decided, expired).
                let event = match rec.message.as_deref().and_then(|m| m.split(' ').next()) {
                    Some("expired") => "expired",
                    Some("approved") => "approved",
                    Some("denied") => "denied",
                    _ => OTHER,
                };
                self.approvals
                    .get_or_create(&ApprovalLabels {
                        server,
                        event: event.into(),
                    })
                    .inc();
            }
            method => {
                let tool = match rec.tool.as_deref() {
                    None => String::new(),
                    Some(t) if self.listed.contains(&rec.server, t) => t.to_owned(),
                    Some(_) => UNLISTED.to_owned(),
                };
                let method = if METHODS.contains(&method) {
                    method
                } else {
                    OTHER
                };
                self.requests
                    .get_or_create(&RequestLabels {
                        server: server.clone(),
                        method: method.into(),
                        decision: rec.decision.as_str().into(),
                        rule_kind: rule_kind(rec.rule.as_deref()).into(),
                        tool,
                    })
                    .inc();
                let by_server = ServerLabels { server };
                self.gateway_seconds
                    .get_or_create(&by_server)
                    .observe(rec.gateway_us as f64 / 1e6);
                if let Some(ms) = rec.upstream_ms {
                    self.upstream_seconds
                        .get_or_create(&by_server)
                        .observe(ms as f64 / 1e3);
                }
                if rec.decision == AuditDecision::Approval {
                    self.approvals
                        .get_or_create(&ApprovalLabels {
                            server: by_server.server,
                            event: "required".into(),
                        })
                        .inc();
                }
            }
        }
    }

    /// The OpenMetrics text of everything counted, plus `now`'s gauges.
    pub fn render(&self, now: &Snapshot) -> String {
        let mut scrape = Registry::default();
        if let Some(a) = now.audit {
            for (name, help, v) in [
                (
                    "portcullis_audit_committed",
                    "Audit records committed",
                    a.committed,
                ),
                (
                    "portcullis_audit_failed",
                    "Audit records whose commit failed",
                    a.failed,
                ),
                (
                    "portcullis_audit_batches",
                    "Audit transactions committed (group commit)",
                    a.batches,
                ),
            ] {
                scrape.register(name, help, ConstCounter::new(v));
            }
            scrape.register(
                "portcullis_audit_batch_size",
                "Records per audit transaction (group commit), one observation per commit",
                BatchSizes(a),
            );
        }
        let sessions = Family::<SessionLabels, Gauge>::default();
        for (server, kind, n) in &now.sessions {
            sessions
                .get_or_create(&SessionLabels {
                    server: server.clone(),
                    kind: (*kind).into(),
                })
                .set(*n as i64);
        }
        scrape.register(
            "portcullis_sessions_open",
            "Open sessions by server and kind: handshake (Streamable HTTP), bridged (to a \
             2026-07-28 upstream), legacy_sse (HTTP+SSE)",
            sessions,
        );
        if let Some(pending) = &now.pending_approvals {
            let gauge = Family::<ServerLabels, Gauge>::default();
            for s in &self.servers {
                gauge
                    .get_or_create(&ServerLabels { server: s.clone() })
                    .set(0);
            }
            for (server, n) in pending {
                gauge
                    .get_or_create(&ServerLabels {
                        server: self.server(server),
                    })
                    .inc_by(*n as i64);
            }
            scrape.register(
                "portcullis_approvals_pending",
                "Approval requests waiting for a human, by server (read at scrape time)",
                gauge,
            );
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &scrape))
            .and_then(|()| encode_eof(&mut out));
        out
    }
}

impl EventSink for MetricsSink {
    fn emit(&self, event: &Event, _keep_args: bool) -> Option<Commit> {
        self.observe(&event.record);
        None
    }

    fn committed(&self, waited: std::time::Duration) {
        self.audit_commit_seconds.observe(waited.as_secs_f64());
    }

    fn note(&self, event: &Event) {
        self.observe(&event.record);
    }
}

/// The audit writer's commits by size, as a histogram read at scrape time (the writer
/// counts them: [`AuditStats::batch_sizes`]); the sum is the records committed.
#[derive(Debug)]
struct BatchSizes(AuditStats);

impl EncodeMetric for BatchSizes {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let buckets: Vec<(f64, u64)> = portcullis_store::BATCH_SIZE_BOUNDS
            .iter()
            .map(|b| *b as f64)
            .chain([f64::INFINITY])
            .zip(s.batch_sizes)
            .collect();
        let count = s.batch_sizes.iter().sum();
        encoder.encode_histogram::<NoLabelSet>(s.committed as f64, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The kind of a rule: `deny_if`, `allow_if`, `approve_if`, `limits` … for a policy pointer
/// (`/tools/x/deny_if/0`), the gateway's own parenthesised rules as they are, `none` without
/// one.
fn rule_kind(rule: Option<&str>) -> &str {
    let Some(rule) = rule else { return "none" };
    if rule.starts_with('(') && rule.ends_with(')') && rule.len() <= 48 {
        return rule;
    }
    if rule.starts_with('/') {
        let mut segments = rule.rsplit('/');
        let last = segments.next().unwrap_or_default();
        let kind = if last.bytes().all(|b| b.is_ascii_digit()) {
            segments.next().unwrap_or_default()
        } else {
            last
        };
        if !kind.is_empty()
            && kind.len() <= 32
            && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return kind;
        }
    }
    OTHER
}

/// Why a request was refused at the door: the authentication error's code (401, 403),
/// `forbidden_origin` (403), `body_too_large` (413), `unsupported_media_type` (415),
/// `not_acceptable` (406) or `invalid_message` (400).
fn refusal_reason(rule: Option<&str>) -> &str {
    match rule {
        Some("(forbidden origin)") => "forbidden_origin",
        Some("(invalid message)") => "invalid_message",
        Some("(body too large)") => "body_too_large",
        Some("(unsupported media type)") => "unsupported_media_type",
        Some("(not acceptable)") => "not_acceptable",
        Some(r) => r
            .strip_prefix("(auth: ")
            .and_then(|c| c.strip_suffix(')'))
            .filter(|c| c.len() <= 32 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .unwrap_or(OTHER),
        None => OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Events;

    fn call(server: &str, tool: &str, decision: AuditDecision, rule: Option<&str>) -> AuditRecord {
        let mut r = AuditRecord::new(1, server, "tools/call", decision);
        r.tool = Some(tool.into());
        r.rule = rule.map(Into::into);
        r.gateway_us = 250;
        r
    }

    /// The value of the sample `series` (name and labels, exactly as exposed).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[tokio::test]
    async fn events_become_labelled_series() {
        let sink = Arc::new(MetricsSink::new(["odoo"]));
        sink.listed()
            .record("odoo", ["create_invoice", "delete_invoice"]);
        let events = Events::new(vec![sink.clone() as Arc<dyn EventSink>]);
        let mut allowed = call("odoo", "create_invoice", AuditDecision::Allow, None);
        allowed.upstream_ms = Some(12);
        events.record(allowed.clone()).await;
        events.record(allowed).await;
        events
            .record(call(
                "odoo",
                "delete_invoice",
                AuditDecision::Deny,
                Some("/tools/delete_invoice/deny_if/0"),
            ))
            .await;
        events
            .record(call(
                "odoo",
                "delete_invoice",
                AuditDecision::ShadowDeny,
                Some("/all_tools/limits/2"),
            ))
            .await;
        events
            .record(call(
                "odoo",
                "create_invoice",
                AuditDecision::Approval,
                Some("/tools/create_invoice/approve_if/0"),
            ))
            .await;
        let text = sink.render(&Snapshot::default());
        let q = |s: &str| sample(&text, s);
        assert_eq!(
            q(
                r#"portcullis_requests_total{server="odoo",method="tools/call",decision="allow",rule_kind="none",tool="create_invoice"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            q(
                r#"portcullis_requests_total{server="odoo",method="tools/call",decision="deny",rule_kind="deny_if",tool="delete_invoice"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            q(
                r#"portcullis_requests_total{server="odoo",method="tools/call",decision="shadow_deny",rule_kind="limits",tool="delete_invoice"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            q(r#"portcullis_approvals_total{server="odoo",event="required"}"#),
            Some(1.0)
        );
        // Two upstream answers of 12 ms; five gateway times of 250 µs.
        assert_eq!(
            q(r#"portcullis_upstream_seconds_count{server="odoo"}"#),
            Some(2.0)
        );
        assert_eq!(
            q(r#"portcullis_upstream_seconds_sum{server="odoo"}"#),
            Some(0.024)
        );
        assert_eq!(
            q(r#"portcullis_upstream_seconds_bucket{le="0.0128",server="odoo"}"#),
            Some(2.0)
        );
        assert_eq!(
            q(r#"portcullis_upstream_seconds_bucket{le="0.0064",server="odoo"}"#),
            Some(0.0)
        );
        assert_eq!(
            q(r#"portcullis_gateway_seconds_count{server="odoo"}"#),
            Some(5.0)
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn names_callers_choose_collapse_to_bounded_values() {
        let sink = MetricsSink::new(["odoo"]);
        sink.listed().record("odoo", ["create_invoice"]);
        // A tool the server never listed, a tool another server listed, a made-up method, a
        // made-up server (a refused request's path).
        for i in 0..50 {
            sink.observe(&call(
                "odoo",
                &format!("made_up_{i}"),
                AuditDecision::Deny,
                Some("(default deny)"),
            ));
        }
        sink.listed().record("other", ["secret_tool"]);
        sink.observe(&call(
            "odoo",
            "secret_tool",
            AuditDecision::Deny,
            Some("(default deny)"),
        ));
        for i in 0..10 {
            sink.observe(&AuditRecord::new(
                1,
                "odoo",
                format!("x/{i}"),
                AuditDecision::Allow,
            ));
        }
        let mut origin = AuditRecord::new(1, "evil-name", "(authentication)", AuditDecision::Deny);
        origin.rule = Some("(forbidden origin)".into());
        sink.observe(&origin);
        let mut token = AuditRecord::new(1, "odoo", "(authentication)", AuditDecision::Deny);
        token.rule = Some("(auth: unknown_token)".into());
        sink.observe(&token);
        sink.observe(&token);
        for (method, rule) in [
            ("(invalid message)", "(body too large)"),
            ("(media type)", "(unsupported media type)"),
            ("(media type)", "(not acceptable)"),
        ] {
            let mut r = AuditRecord::new(1, "odoo", method, AuditDecision::Deny);
            r.rule = Some(rule.into());
            sink.observe(&r);
        }
        let text = sink.render(&Snapshot::default());
        let q = |s: &str| sample(&text, s);
        assert_eq!(
            q(
                r#"portcullis_requests_total{server="odoo",method="tools/call",decision="deny",rule_kind="(default deny)",tool="(unlisted)"}"#
            ),
            Some(51.0),
            "{text}"
        );
        assert_eq!(
            q(
                r#"portcullis_requests_total{server="odoo",method="(other)",decision="allow",rule_kind="none",tool=""}"#
            ),
            Some(10.0)
        );
        assert!(
            !text.contains("made_up") && !text.contains("secret_tool") && !text.contains("x/1")
        );
        assert_eq!(
            q(r#"portcullis_door_refusals_total{server="(unknown)",reason="forbidden_origin"}"#),
            Some(1.0)
        );
        assert_eq!(
            q(r#"portcullis_door_refusals_total{server="odoo",reason="unknown_token"}"#),
            Some(2.0)
        );
        for reason in ["body_too_large", "unsupported_media_type", "not_acceptable"] {
            assert_eq!(
                q(&format!(
                    r#"portcullis_door_refusals_total{{server="odoo",reason="{reason}"}}"#
                )),
                Some(1.0),
                "{text}"
            );
        }
        assert!(!text.contains("evil-name"));
        // Door refusals are not requests.
        assert_eq!(text.matches("portcullis_requests_total{").count(), 2);
    }

    #[test]
    fn reloads_approvals_and_scrape_time_gauges() {
        let sink = MetricsSink::new(["odoo"]);
        let reload = |d| AuditRecord::new(1, "(gateway)", "(reload)", d);
        sink.observe(&reload(AuditDecision::Allow));
        sink.observe(&reload(AuditDecision::Allow));
        sink.observe(&reload(AuditDecision::Error));
        let mut expired = AuditRecord::new(1, "odoo", "(approval)", AuditDecision::Approval);
        expired.message = Some("expired apr_1".into());
        sink.observe(&expired);
        let upstream = |rule: &str| {
            let mut r = AuditRecord::new(1, "odoo", crate::relay::UPSTREAM, AuditDecision::Error);
            r.rule = Some(rule.into());
            r
        };
        let up = |sink: &MetricsSink| {
            let text = sink.render(&Snapshot {
                audit: None,
                sessions: vec![],
                pending_approvals: None,
            });
            sample(&text, r#"portcullis_upstream_up{server="odoo"}"#)
        };
        assert_eq!(up(&sink), Some(1.0), "up until known lost");
        // Reconnections: every reopened stream, and those resumed with Last-Event-ID. Told
        // through `note`, the path the connection uses (the audit log ignores it).
        let reconnects = |sink: &MetricsSink| {
            let text = sink.render(&Snapshot::default());
            (
                sample(
                    &text,
                    r#"portcullis_upstream_reconnects_total{server="odoo"}"#,
                ),
                sample(
                    &text,
                    r#"portcullis_upstream_stream_resumptions_total{server="odoo"}"#,
                ),
            )
        };
        assert_eq!(
            reconnects(&sink),
            (Some(0.0), Some(0.0)),
            "present from the start"
        );
        for rule in [
            crate::relay::UPSTREAM_RESUMED,
            crate::relay::UPSTREAM_RECONNECTED,
            crate::relay::UPSTREAM_RESUMED,
        ] {
            EventSink::note(
                &sink,
                &Event {
                    record: upstream(rule),
                    args: None,
                },
            );
        }
        assert_eq!(reconnects(&sink), (Some(3.0), Some(2.0)));
        assert_eq!(up(&sink), Some(1.0), "a reconnection is not a loss");
        // Lost for good (a legacy SSE stream that ended): down until a new connection of the
        // server is made.
        sink.observe(&upstream(crate::relay::UPSTREAM_LOST));
        assert_eq!(up(&sink), Some(0.0));
        EventSink::note(
            &sink,
            &Event {
                record: upstream(crate::relay::UPSTREAM_CONNECTED),
                args: None,
            },
        );
        assert_eq!(
            up(&sink),
            Some(1.0),
            "up again once a new connection is made"
        );
        assert_eq!(
            reconnects(&sink),
            (Some(3.0), Some(2.0)),
            "not a reconnection"
        );
        sink.observe(&upstream(crate::relay::UPSTREAM_LOST));
        assert_eq!(up(&sink), Some(0.0));
        sink.observe(&upstream(crate::relay::UPSTREAM_RESTARTED));
        assert_eq!(up(&sink), Some(1.0));
        for m in [
            "approved apr_2 by alice",
            "approved apr_3 by bob",
            "denied apr_4 by alice: no",
        ] {
            let mut decided = expired.clone();
            decided.message = Some(m.into());
            sink.observe(&decided);
        }
        let text = sink.render(&Snapshot {
            audit: Some(AuditStats {
                committed: 7,
                failed: 1,
                batches: 3,
                // One commit of 1 record, two of 3 (bucket "4").
                batch_sizes: [1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            }),
            sessions: vec![
                ("odoo".into(), "handshake", 2),
                ("odoo".into(), "bridged", 1),
            ],
            pending_approvals: Some(vec![("odoo".into(), 3)]),
        });
        let q = |s: &str| sample(&text, s);
        assert_eq!(
            q(r#"portcullis_reloads_total{result="ok"}"#),
            Some(2.0),
            "{text}"
        );
        assert_eq!(q(r#"portcullis_reloads_total{result="failed"}"#), Some(1.0));
        assert_eq!(
            q(r#"portcullis_approvals_total{server="odoo",event="expired"}"#),
            Some(1.0)
        );
        assert_eq!(
            q(r#"portcullis_approvals_total{server="odoo",event="approved"}"#),
            Some(2.0)
        );
        assert_eq!(
            q(r#"portcullis_approvals_pending{server="odoo"}"#),
            Some(3.0)
        );
        assert_eq!(
            q(r#"portcullis_approvals_total{server="odoo",event="denied"}"#),
            Some(1.0)
        );
        assert_eq!(q("portcullis_audit_committed_total"), Some(7.0));
        assert_eq!(q("portcullis_audit_failed_total"), Some(1.0));
        assert_eq!(q("portcullis_audit_batches_total"), Some(3.0));
        // The batch-size histogram: cumulative buckets 1, 2, 4, … 1024, +Inf.
        assert_eq!(
            q(r#"portcullis_audit_batch_size_bucket{le="1.0"}"#),
            Some(1.0)
        );
        assert_eq!(
            q(r#"portcullis_audit_batch_size_bucket{le="2.0"}"#),
            Some(1.0)
        );
        assert_eq!(
            q(r#"portcullis_audit_batch_size_bucket{le="4.0"}"#),
            Some(3.0)
        );
        assert_eq!(
            q(r#"portcullis_audit_batch_size_bucket{le="1024.0"}"#),
            Some(3.0)
        );
        assert_eq!(
            q(r#"portcullis_audit_batch_size_bucket{le="+Inf"}"#),
            Some(3.0)
        );
        assert_eq!(q("portcullis_audit_batch_size_count"), Some(3.0));
        assert_eq!(q("portcullis_audit_batch_size_sum"), Some(7.0));
        assert!(
            text.contains("# TYPE portcullis_audit_batch_size histogram"),
            "{text}"
        );
        assert_eq!(
            q(r#"portcullis_sessions_open{server="odoo",kind="handshake"}"#),
            Some(2.0)
        );
        assert_eq!(
            q(r#"portcullis_sessions_open{server="odoo",kind="bridged"}"#),
            Some(1.0)
        );
        assert_eq!(text.matches("# EOF").count(), 1);
    }

    #[test]
    fn every_series_the_example_alerts_and_dashboard_use_is_exposed() {
        let sink = MetricsSink::new(["odoo"]);
        let mut call = call("odoo", "t", AuditDecision::Approval, None);
        call.upstream_ms = Some(1);
        sink.observe(&call);
        let mut refused = AuditRecord::new(1, "odoo", "(authentication)", AuditDecision::Deny);
        refused.rule = Some("(auth: missing_token)".into());
        sink.observe(&refused);
        sink.observe(&AuditRecord::new(
            1,
            "(gateway)",
            "(reload)",
            AuditDecision::Error,
        ));
        let mut lost = AuditRecord::new(1, "odoo", crate::relay::UPSTREAM, AuditDecision::Error);
        lost.rule = Some(crate::relay::UPSTREAM_LOST.into());
        sink.observe(&lost);
        let text = sink.render(&Snapshot {
            audit: Some(AuditStats::default()),
            sessions: vec![("odoo".into(), "handshake", 1)],
            pending_approvals: Some(vec![("odoo".into(), 2)]),
        });
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/prometheus/alerts.yml"
        );
        let mut rules = std::fs::read_to_string(path).unwrap();
        let dashboard = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/grafana/portcullis.json"
        );
        rules.push_str(&std::fs::read_to_string(dashboard).unwrap());
        let mut used: Vec<&str> = rules
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("portcullis_"))
            .collect();
        used.sort();
        used.dedup();
        assert!(used.len() >= 5, "{used:?}");
        for name in used {
            assert!(
                text.lines()
                    .any(|l| l.split([' ', '{']).next() == Some(name)),
                "alerts.yml or the Grafana dashboard uses {name}, which the metrics do not expose: {text}"
            );
        }
    }

    #[test]
    fn listed_tools_are_per_server_and_capped() {
        let l = ListedTools::default();
        let names: Vec<String> = (0..MAX_LISTED_PER_SERVER + 10)
            .map(|i| format!("t{i}"))
            .collect();
        l.record("a", names.iter().map(String::as_str));
        assert!(l.contains("a", "t0"));
        assert!(l.contains("a", &format!("t{}", MAX_LISTED_PER_SERVER - 1)));
        assert!(!l.contains("a", &format!("t{MAX_LISTED_PER_SERVER}")));
        assert!(!l.contains("b", "t0"));
    }

    #[test]
    fn rule_kinds() {
        assert_eq!(rule_kind(None), "none");
        assert_eq!(rule_kind(Some("/tools/a~1b/deny_if/3")), "deny_if");
        assert_eq!(rule_kind(Some("/all_tools/approve_if/0")), "approve_if");
        assert_eq!(rule_kind(Some("(no policy)")), "(no policy)");
        assert_eq!(rule_kind(Some("/tools/x/Weird Kind/0")), OTHER);
        assert_eq!(rule_kind(Some("free text")), OTHER);
    }
}
