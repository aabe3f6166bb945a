//! The one event sink: every decision, refusal at the door, reload, approval change and
//! upstream failure is emitted here, once, as an [`Event`]; each [`EventSink`] behind it
//! takes what it needs. The durable audit log ([`AuditEvents`]) is one sink and keeps its
//! guarantee (the record is on disk before the answer goes out, by group commit); metrics
//! ([`crate::metrics::MetricsSink`]) are another. Observations that are counted but not kept
//! (an upstream stream reopened) go through [`Events::note`], which the audit log ignores.

use portcullis_store::{AuditLog, AuditRecord};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Something that happened on the request path: its audit record (who, what, the decision,
/// the rule, the outcome) and, for a `tools/call`, the call's arguments.
#[derive(Clone, Debug)]
pub struct Event {
    /// The record, as the audit log keeps it.
    pub record: AuditRecord,
    /// The call's arguments (hashed by the audit log; kept as values only where the server
    /// says `audit_arguments = true`).
    pub args: Option<Value>,
}

/// What a durable sink hands back: resolves once the event is as safe as the sink promises.
pub type Commit = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A consumer of events.
pub trait EventSink: Send + Sync {
    /// Takes one event. `keep_args`: the server keeps argument values in its audit trail.
    /// A sink that promises durability returns the commit the caller must wait for before
    /// the answer goes out; a best-effort sink (metrics) returns `None`.
    fn emit(&self, event: &Event, keep_args: bool) -> Option<Commit>;

    /// Takes the write-ahead record of a call about to be forwarded (its answer's event
    /// follows through [`emit`](Self::emit), carrying the same
    /// [`intent`](AuditRecord::intent)). Only a sink that records calls durably before they
    /// run takes it; the default ignores it, so nothing is counted twice.
    fn forwarding(&self, _event: &Event, _keep_args: bool) -> Option<Commit> {
        None
    }

    /// Takes the answer's event of a call whose [`forwarding`](Self::forwarding) record is
    /// durable already (it carries the same [`intent`](AuditRecord::intent)): a durable sink
    /// may commit it after the answer goes out. The default is [`emit`](Self::emit).
    fn completing(&self, event: &Event, keep_args: bool) -> Option<Commit> {
        self.emit(event, keep_args)
    }

    /// Told how long a request waited for another sink's durable commit (audit commit
    /// latency, for metrics); the default ignores it.
    fn committed(&self, _waited: std::time::Duration) {}

    /// Takes an event that is counted but never kept (an upstream stream reopened: see
    /// [`Events::note`]); the default, and the audit log, ignore it.
    fn note(&self, _event: &Event) {}

    /// Whether this sink wants [`forwarding`](Self::forwarding) records.
    fn writes_ahead(&self) -> bool {
        false
    }
}

/// The audit log as an event sink: durable mode commits before the answer (group commit),
/// async mode queues with its bounded loss window.
pub struct AuditEvents(pub Arc<AuditLog>);

impl AuditEvents {
    /// The record of `event` as the log keeps it (arguments hashed, values when kept).
    fn record(&self, event: &Event, keep_args: bool) -> AuditRecord {
        let mut rec = event.record.clone();
        if let Some(a) = &event.args {
            self.0.set_args(&mut rec, a, keep_args);
        }
        rec
    }
}

impl EventSink for AuditEvents {
    fn emit(&self, event: &Event, keep_args: bool) -> Option<Commit> {
        let rec = self.record(event, keep_args);
        let log = self.0.clone();
        Some(Box::pin(async move {
            log.append(rec).await.map_err(|e| e.to_string())
        }))
    }

    fn forwarding(&self, event: &Event, keep_args: bool) -> Option<Commit> {
        let rec = self.record(event, keep_args);
        let log = self.0.clone();
        Some(Box::pin(async move {
            log.begin(rec).await.map_err(|e| e.to_string())
        }))
    }

    fn completing(&self, event: &Event, keep_args: bool) -> Option<Commit> {
        let rec = self.record(event, keep_args);
        let log = self.0.clone();
        Some(Box::pin(async move {
            log.complete(rec).await.map_err(|e| e.to_string())
        }))
    }

    fn writes_ahead(&self) -> bool {
        self.0.writes_ahead()
    }
}

/// The handle the request path emits through: every sink of the gateway, and this server's
/// `audit_arguments` setting.
#[derive(Clone, Default)]
pub struct Events {
    sinks: Arc<Vec<Arc<dyn EventSink>>>,
    keep_args: bool,
    /// Traces (`[telemetry]`): the connection owner makes a span of each request and finishes
    /// it with the request's event.
    tracer: Option<Arc<crate::spans::Tracer>>,
}

impl Events {
    /// Events going to `sinks`.
    pub fn new(sinks: Vec<Arc<dyn EventSink>>) -> Events {
        Events {
            sinks: Arc::new(sinks),
            keep_args: false,
            tracer: None,
        }
    }

    /// The same sinks, with request spans made and exported by `tracer`.
    pub fn traced(mut self, tracer: Option<Arc<crate::spans::Tracer>>) -> Events {
        self.tracer = tracer;
        self
    }

    /// The tracer, when traces are on.
    pub fn tracer(&self) -> Option<&Arc<crate::spans::Tracer>> {
        self.tracer.as_ref()
    }

    /// Events going to the audit log alone (or nowhere, without one).
    pub fn audit(log: Option<Arc<AuditLog>>) -> Events {
        Events::new(
            log.into_iter()
                .map(|l| Arc::new(AuditEvents(l)) as Arc<dyn EventSink>)
                .collect(),
        )
    }

    /// The same sinks, for a server with this `audit_arguments` setting.
    pub fn for_server(&self, keep_args: bool) -> Events {
        Events {
            sinks: self.sinks.clone(),
            keep_args,
            tracer: self.tracer.clone(),
        }
    }

    /// Whether nothing listens (a gateway with `audit = "off"`, no metrics and no traces):
    /// the relay then makes no records at all.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty() && self.tracer.is_none()
    }

    /// Whether a sink records forwarded calls before they go upstream (the audit log in
    /// durable mode): the relay then emits their write-ahead records.
    pub fn writes_ahead(&self) -> bool {
        self.sinks.iter().any(|s| s.writes_ahead())
    }

    /// Emits one event to every sink and waits for the durable ones. An error means the
    /// event could not be made durable: the caller fails closed (withholds the answer).
    ///
    /// The answer's record of a call written ahead (one with an
    /// [`intent`](AuditRecord::intent)) goes to [`EventSink::completing`]: the call's decision
    /// is durable already, so the answer does not wait for a second commit (an error still
    /// means the record could not even be queued).
    pub async fn emit(&self, record: AuditRecord, args: Option<Value>) -> Result<(), String> {
        if record.intent.is_some() {
            return self
                .fan_out(Event { record, args }, false, |s, e, k| s.completing(e, k))
                .await;
        }
        self.fan_out(Event { record, args }, true, |s, e, k| s.emit(e, k))
            .await
    }

    /// Emits the write-ahead record of a call about to be forwarded and waits until it is
    /// durable. An error means it is not: the caller must not forward the call.
    pub async fn forwarding(&self, record: AuditRecord, args: Option<Value>) -> Result<(), String> {
        self.fan_out(Event { record, args }, true, |s, e, k| s.forwarding(e, k))
            .await
    }

    /// Hands `event` to every sink through `take` and waits for the commits they return;
    /// `durable_wait`: the wait is a durable commit's, reported to [`EventSink::committed`].
    async fn fan_out(
        &self,
        event: Event,
        durable_wait: bool,
        take: impl Fn(&dyn EventSink, &Event, bool) -> Option<Commit>,
    ) -> Result<(), String> {
        let mut failed = None;
        let mut waited = None;
        for sink in self.sinks.iter() {
            if let Some(commit) = take(sink.as_ref(), &event, self.keep_args) {
                let start = std::time::Instant::now();
                if let Err(e) = commit.await {
                    tracing::error!("event sink failed (audit write): {e}");
                    failed = Some(e);
                }
                *waited.get_or_insert_with(Default::default) += start.elapsed();
            }
        }
        if let (Some(w), None, true) = (waited, &failed, durable_wait) {
            for sink in self.sinks.iter() {
                sink.committed(w);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Hands `record` to every sink's [`EventSink::note`]: an observation for the metrics
    /// (an upstream stream reopened or resumed) that no durable sink keeps, so frequent
    /// reconnections of a healthy server do not fill the audit log. Never waits.
    pub fn note(&self, record: AuditRecord) {
        let event = Event { record, args: None };
        for sink in self.sinks.iter() {
            sink.note(&event);
        }
    }

    /// [`emit`](Self::emit) where the caller has nothing to withhold (a refusal already
    /// decided, a reload): a failure is logged.
    pub async fn record(&self, record: AuditRecord) {
        let _ = self.emit(record, None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::sync::LockExt;
    use portcullis_store::{AuditDecision, AuditFilter, AuditMode};
    use std::sync::Mutex;

    /// A sink that remembers what it saw (the shape a metrics sink will have).
    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, bool)>>);

    impl EventSink for Seen {
        fn emit(&self, event: &Event, keep_args: bool) -> Option<Commit> {
            self.0
                .lock()
                .unwrap()
                .push((event.record.method.clone(), keep_args));
            None
        }
    }

    #[tokio::test]
    async fn every_sink_sees_each_event_once_and_the_audit_log_keeps_it() {
        let dir = std::env::temp_dir().join(format!("portcullis-events-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = Arc::new(AuditLog::open(dir.join("audit.db"), AuditMode::Durable).unwrap());
        let seen = Arc::new(Seen::default());
        let events = Events::new(vec![
            Arc::new(AuditEvents(log.clone())),
            seen.clone() as Arc<dyn EventSink>,
        ])
        .for_server(true);
        let rec = AuditRecord::new(1, "odoo", "tools/call", AuditDecision::Deny);
        events
            .emit(rec, Some(serde_json::json!({"amount": 5})))
            .await
            .unwrap();
        assert_eq!(*seen.0.lock_or_recover(), vec![("tools/call".into(), true)]);
        let rows = log.query(&AuditFilter::default()).unwrap();
        assert_eq!(rows.len(), 1, "on disk when emit returns (durable mode)");
        assert_eq!(rows[0].args, Some(serde_json::json!({"amount": 5})));
        assert_eq!(rows[0].arg_keys, vec!["amount".to_string()]);
        assert!(Events::default().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
