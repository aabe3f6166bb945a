//! The relay core for one downstream connection and one upstream connection.
//!
//! Synchronous and transport-agnostic: feed it lines with [`Relay::from_client`] and
//! [`Relay::from_server`]; it returns the lines to write, as [`Out`]s. (One way in waits:
//! [`Relay::from_client_message_deferred`] awaits a `tools/call`'s counter reservation when
//! the store makes it later, on a thread of its own.) Everything a policy
//! gateway must rewrite is rewritten here and nothing else is touched:
//!
//! - client request ids → Portcullis' own upstream ids (answers get the exact original id back);
//! - server→client request ids → fresh downstream ids (answers mapped back);
//! - `params._meta.progressToken` → an upstream token unique on the connection;
//! - `notifications/cancelled` `requestId` in both directions;
//! - `tools/call` decided (arguments checked against the listed schema, deny / reserve;
//!   `call`), `tools/list` pages filtered for hidden tools and their schemas recorded
//!   (`messages`), listings judged against the tool pins (`listing`);
//! - an upstream that fails: undelivered requests, a lost connection, a restart (`health`).

mod call;
mod health;
mod listing;
mod messages;
mod request;

use crate::metrics::ListedTools;
use crate::pinned::{PinSettings, ToolPins, Verdict};
use crate::schemas::{ToolSchemas, ValidateArguments};
use call::Answer;
use messages::{
    filter_tools_list, parse_error_line, record_listed, record_schemas, upstream_status,
};
use portcullis_mcp::{
    codes, denial_result, error_line, Kind, Message, ParseError, META_PROTOCOL_VERSION,
};
use portcullis_policy::doc::Mode;
use portcullis_policy::sync::LockExt;
use portcullis_policy::{
    json, Call, Check, CounterStore, Decision, Denial, Engine, Identity, Millis, Ticket,
};
use portcullis_store::{
    Approval, ApprovalCheck, ApprovalRequest, ApprovalStore, AuditDecision, AuditRecord,
};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The `_meta` key carrying a listen stream's subscription id (2026-07-28).
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// A message for the client: as text, or still parsed — written out where it leaves, so that
/// a face that needs the message (the HTTP router) never parses it again.
#[derive(Clone, Debug)]
pub enum Line {
    /// As written.
    Text(String),
    /// Parsed, to be written out by whoever sends it.
    Parsed(Box<Message>),
}

impl Line {
    /// The text (the message written out, if it is parsed).
    pub fn into_text(self) -> String {
        match self {
            Line::Text(t) => t,
            Line::Parsed(m) => m.to_json(),
        }
    }

    /// The text, borrowed when it is one.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Line::Text(t) => t.into(),
            Line::Parsed(m) => m.to_json().into(),
        }
    }

    /// The message, and the text it was read from when it came as text.
    pub fn into_message(self) -> Result<(Message, Option<String>), ParseError> {
        match self {
            Line::Text(t) => Message::parse(&t).map(|m| (m, Some(t))),
            Line::Parsed(m) => Ok((*m, None)),
        }
    }

    /// Runs `f` on the message (parsed from the text if need be); `None` when the text is not
    /// a message.
    pub fn with_message<R>(&self, f: impl FnOnce(&Message) -> R) -> Option<R> {
        match self {
            Line::Text(t) => Message::parse(t).ok().map(|m| f(&m)),
            Line::Parsed(m) => Some(f(m)),
        }
    }
}

/// Equal when they read the same.
impl PartialEq for Line {
    fn eq(&self, other: &Line) -> bool {
        self.text() == other.text()
    }
}

impl Eq for Line {}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl From<String> for Line {
    fn from(t: String) -> Line {
        Line::Text(t)
    }
}

/// A line to write, and where.
#[derive(Clone, Debug, PartialEq)]
pub enum Out {
    /// To the MCP client (downstream).
    Client(Line),
    /// To the MCP server (upstream), tagged with the upstream request id when it is a request,
    /// so that a failed write can be answered with [`Relay::undeliverable`]. Handed over
    /// parsed: the transport writes it out once (and an HTTP one reads its headers from it).
    Server(Box<Message>, Option<u64>),
    /// An audit record, with the call's arguments (for the keyed hash, and the values when the
    /// server keeps them). It must be written before any `Client` line after it is delivered.
    Audit(Box<AuditRecord>, Option<Value>),
    /// The write-ahead record of a `tools/call` about to be forwarded (durable audit, see
    /// [`Relay::writing_ahead`]): it must be durable before the `Server` line after it is
    /// sent, and if it cannot be written that line must not be sent. The call's answer
    /// completes it (an `Audit` with the same [`AuditRecord::intent`]).
    Forwarding(Box<AuditRecord>, Option<Value>),
    /// Hold-open: a call waiting for a human's approval, kept open by the link (see
    /// [`Hold`]).
    Hold(Box<Hold>),
}

/// A call held open while a human decides its approval: the link polls the approval, replays
/// `request` through the relay the moment it is approved (it is then evaluated in full, limits
/// included) or denied, sends progress notifications meanwhile if the client gave a token, and
/// answers with `answer` (the `[APPROVAL REQUIRED]` result) when `wait_ms` runs out.
#[derive(Clone, Debug)]
pub struct Hold {
    /// The approval (`apr_…`).
    pub approval_id: String,
    /// The client's request line, as received.
    pub request: String,
    /// The answer to give if the hold times out.
    pub answer: String,
    /// The client's progress token, if any.
    pub progress_token: Option<Value>,
    /// Who sent it.
    pub caller: Caller,
    /// How long to hold, ms.
    pub wait_ms: Millis,
}

impl PartialEq for Hold {
    fn eq(&self, o: &Hold) -> bool {
        self.approval_id == o.approval_id && self.request == o.request
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Caller({}, {})", self.grant_id, self.session_id)
    }
}

/// Marks a replayed held call (it is not held a second time).
const HELD: &str = "(held) ";

/// A callback for new approval requests.
pub type ApprovalHook = Arc<dyn Fn(&Approval) + Send + Sync>;

/// What a relay needs that does not change per request.
pub struct RelayConfig {
    /// Counters.
    pub store: Arc<dyn CounterStore>,
    /// Upstream server name.
    pub server: String,
    /// Clock (ms since the epoch); injectable for tests.
    pub clock: fn() -> Millis,
    /// Emit an [`Out::Audit`] record for every client request.
    pub audit: bool,
    /// Where `approve_if` requests are kept; `None`: such calls are denied (fail closed).
    pub approvals: Option<Arc<dyn ApprovalStore>>,
    /// Called once for every new approval request (the webhook notification).
    pub on_new_approval: Option<ApprovalHook>,
    /// Hold-open: keep calls that need approval open this long (ms; 0: answer at once).
    pub hold_ms: Millis,
}

/// Who sent a client message, and the policy that applies to them. One per stdio connection
/// or HTTP session; per request on the stateless (2026-07-28) HTTP path.
#[derive(Clone)]
pub struct Caller {
    /// The grant's compiled policy (`None`: the grant has no policy — every call is denied).
    pub engine: Option<Arc<Engine>>,
    /// Grant id.
    pub grant_id: String,
    /// Grant label.
    pub grant_label: String,
    /// Session or connection id.
    pub session_id: String,
    /// The policy's name and version hash, for the audit trail.
    pub policy: Option<(String, String)>,
    /// The client's own request id when the face rewrote it (stateless HTTP), for the audit
    /// trail; `None` uses the id the relay sees.
    pub request_id: Option<String>,
    /// The OAuth principal behind the caller (`auth = "oauth"`): its issuer, subject and
    /// client go into every audit record.
    pub principal: Option<Arc<crate::http::Principal>>,
    /// The W3C trace context of the client's HTTP request (its `traceparent` and
    /// `tracestate` headers), set by the face per request; a `params._meta.traceparent` in
    /// the message wins over it.
    pub trace: Option<crate::traces::TraceParent>,
}

/// The wall clock.
pub fn system_clock() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

enum Pending {
    /// A client request in flight upstream.
    Client {
        client_id: Box<RawValue>,
        what: What,
        token: Option<String>,
        trail: Option<Box<Trail>>,
    },
    /// Portcullis' own request (e.g. the replayed `initialize`); its answer is swallowed.
    Internal,
    /// Portcullis' own `tools/list` (to learn the schemas before a call): its answer is
    /// recorded, swallowed, and its `nextCursor` (or `None`: last page, or an error) handed to
    /// whoever waits.
    Listing(tokio::sync::oneshot::Sender<Option<String>>),
}

/// The audit record of a request in flight, completed when its answer comes back.
struct Trail {
    rec: AuditRecord,
    args: Option<Value>,
    started: Instant,
}

enum What {
    ToolsList(Option<Arc<Engine>>),
    ToolsCall(Ticket),
    Initialize,
    Other,
}

#[derive(Default)]
struct State {
    next_up: u64,
    next_down: u64,
    next_token: u64,
    /// upstream id → pending.
    pending: HashMap<u64, Pending>,
    /// client id (raw text) → upstream id, for cancellation.
    by_client: HashMap<String, u64>,
    /// downstream id we assigned → the server's own request id.
    server_reqs: HashMap<u64, Box<RawValue>>,
    /// server request id (raw text) → downstream id, for the server's cancellations.
    server_reqs_rev: HashMap<String, u64>,
    /// upstream progress token (raw text) → the client's token.
    tokens: HashMap<String, Box<RawValue>>,
    client_name: Option<String>,
    /// The client's `initialize` params, replayed after an upstream restart.
    init_params: Option<Value>,
    /// Whether the upstream declared `tools.listChanged`.
    tools_list_changed: bool,
}

/// The relay for one downstream connection.
pub struct Relay {
    cfg: RelayConfig,
    state: Mutex<State>,
    /// Where the names of the tools this server lists are recorded (metrics' `tool` label).
    listed: Option<Arc<ListedTools>>,
    /// Where the listed input schemas are recorded, and how calls are checked against them
    /// (`None`: `validate_arguments = "off"`).
    validate: Option<(Arc<ToolSchemas>, ValidateArguments)>,
    /// Emit [`Out::Forwarding`] before each forwarded `tools/call`.
    write_ahead: bool,
    /// Where listed tools are judged against their pins, and this server's settings (`None`:
    /// `pinning = "off"`, or no pin store).
    pins: Option<(Arc<ToolPins>, PinSettings)>,
    /// Time each counter reservation into its audit record (traces on).
    timed: bool,
}

/// The `method` of the audit records of the upstream's health.
pub const UPSTREAM: &str = "(upstream)";
/// The rule of the record of an upstream connection lost (its process exited, its stream
/// broke for good).
pub const UPSTREAM_LOST: &str = "(upstream lost)";
/// The rule of the record of an upstream process restarted (the session replayed).
pub const UPSTREAM_RESTARTED: &str = "(upstream restarted)";
/// The rule of the event of a new upstream connection made (a child started, an SSE stream
/// opened): the server is up (counted by the metrics, not kept in the audit log).
pub const UPSTREAM_CONNECTED: &str = "(upstream connected)";
/// The rule of the event of an upstream stream reopened after the server closed it, without
/// `Last-Event-ID` (counted by the metrics, not kept in the audit log).
pub const UPSTREAM_RECONNECTED: &str = "(upstream reconnected)";
/// The rule of the event of an upstream stream reopened with `Last-Event-ID` (a resumption;
/// counted by the metrics, not kept in the audit log).
pub const UPSTREAM_RESUMED: &str = "(upstream stream resumed)";

/// Write-ahead keys, unique in this process (the audit log prefixes its process's own id).
static NEXT_INTENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn raw(text: String) -> Box<RawValue> {
    RawValue::from_string(text).expect("valid JSON")
}

fn result_line(id: &RawValue, result: &Value) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{}}}",
        id.get(),
        result
    )
}

impl Relay {
    /// A relay for one connection.
    pub fn new(cfg: RelayConfig) -> Relay {
        Relay {
            cfg,
            state: Mutex::new(State {
                next_up: 1,
                next_down: 1,
                next_token: 1,
                ..Default::default()
            }),
            listed: None,
            validate: None,
            write_ahead: false,
            pins: None,
            timed: false,
        }
    }

    /// Judges every listed tool against its pin in `pins` (hiding and refusing what is not
    /// pinned) as `settings` say; `pinning = "off"`: neither.
    pub fn pinning(mut self, pins: Arc<ToolPins>, settings: PinSettings) -> Relay {
        self.pins = (settings.pinning != crate::pinning::Pinning::Off).then_some((pins, settings));
        self
    }

    /// Times each counter reservation into the call's audit record
    /// ([`AuditRecord::reserved_ns`]), for the request's trace.
    pub fn timing(mut self, on: bool) -> Relay {
        self.timed = on;
        self
    }

    /// Emits an [`Out::Forwarding`] record before every forwarded `tools/call` (when the
    /// audit log is durable: the call is on disk before it can run), completed by the
    /// answer's record.
    pub fn writing_ahead(mut self, on: bool) -> Relay {
        self.write_ahead = on && self.cfg.audit;
        self
    }

    /// Records the input schemas of every `tools/list` answer into `schemas`, and checks each
    /// `tools/call`'s arguments against them as `mode` says (`off`: neither).
    pub fn validating(mut self, schemas: Arc<ToolSchemas>, mode: ValidateArguments) -> Relay {
        self.validate = (mode != ValidateArguments::Off).then_some((schemas, mode));
        self
    }

    /// Records the names in every `tools/list` answer of the server into `listed`.
    pub fn recording_listed(mut self, listed: Arc<ListedTools>) -> Relay {
        self.listed = Some(listed);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere must not wedge the connection; the state stays consistent per call.
        self.state.lock_or_recover()
    }

    /// Handles one line from the client.
    pub fn from_client(&self, line: &str, caller: &Caller) -> Vec<Out> {
        match Message::parse(line) {
            Ok(m) => self.from_client_message(m, caller),
            Err(e) => self.invalid_from_client(&e, caller),
        }
    }

    /// What a client line that is not a message we can handle gets: its error answer, audited
    /// as a denial.
    pub fn invalid_from_client(&self, e: &ParseError, caller: &Caller) -> Vec<Out> {
        let mut out = Vec::with_capacity(2);
        if self.cfg.audit {
            let mut rec = self.record(caller, "(invalid message)", None);
            rec.decision = AuditDecision::Deny;
            rec.rule = Some("(invalid message)".into());
            rec.message = Some(e.to_string());
            out.push(Out::Audit(Box::new(rec), None));
        }
        out.push(Out::Client(parse_error_line(e).into()));
        out
    }

    /// [`Relay::from_client`] for a message the face has parsed already.
    pub fn from_client_message(&self, mut msg: Message, caller: &Caller) -> Vec<Out> {
        match msg.kind() {
            Kind::Request => self.client_request(msg, caller),
            Kind::Notification => self.client_notification(msg),
            Kind::Response => {
                // An answer to a server→client request: restore the server's id.
                let mut st = self.lock();
                let down: Option<u64> = msg.id().and_then(|i| i.get().parse().ok());
                match down.and_then(|d| st.server_reqs.remove(&d)) {
                    Some(server_id) => {
                        st.server_reqs_rev.remove(server_id.get());
                        msg.set_id(&server_id);
                        vec![Out::Server(Box::new(msg), None)]
                    }
                    None => {
                        tracing::warn!("dropping a client response to an unknown request id");
                        Vec::new()
                    }
                }
            }
        }
    }

    /// A fresh audit record for a request of this caller.
    fn record(&self, caller: &Caller, method: &str, id: Option<&RawValue>) -> AuditRecord {
        let mut r = AuditRecord::new(
            (self.cfg.clock)(),
            self.cfg.server.clone(),
            method,
            AuditDecision::Allow,
        );
        r.request_id = caller
            .request_id
            .clone()
            .or_else(|| id.map(|i| i.get().to_owned()));
        r.grant_id = Some(caller.grant_id.clone());
        r.grant_label = Some(caller.grant_label.clone());
        r.session = Some(caller.session_id.clone());
        if let Some(p) = &caller.principal {
            p.audit(&mut r);
        }
        if let Some((name, hash)) = &caller.policy {
            r.policy_name = Some(name.clone());
            r.policy_hash = Some(hash.clone());
        }
        r
    }

    fn client_notification(&self, mut msg: Message) -> Vec<Out> {
        if msg.method() == Some("notifications/cancelled") {
            let Some(mut p) = msg.value("params") else {
                return Vec::new();
            };
            let key = p.get("requestId").map(Value::to_string);
            let st = self.lock();
            match key.and_then(|k| st.by_client.get(&k).copied()) {
                Some(up) => {
                    p["requestId"] = Value::from(up);
                    msg.set_value("params", &p);
                }
                None => return Vec::new(), // unknown or finished: drop
            }
        }
        vec![Out::Server(Box::new(msg), None)]
    }

    /// Handles one line from the server.
    pub fn from_server(&self, line: &str) -> Vec<Out> {
        match Message::parse(line) {
            Ok(m) => self.from_server_message(m),
            Err(e) => {
                tracing::warn!(
                    "dropping a line from the server that is not a JSON-RPC message: {e}"
                );
                Vec::new()
            }
        }
    }

    /// [`Relay::from_server`] for a message its transport has parsed already.
    pub fn from_server_message(&self, mut msg: Message) -> Vec<Out> {
        match msg.kind() {
            Kind::Response => self.server_response(msg),
            Kind::Request => {
                // Server→client request: give it a downstream id of ours.
                let mut st = self.lock();
                let down = st.next_down;
                st.next_down += 1;
                let server_id = msg.id().expect("requests have ids").to_owned();
                st.server_reqs_rev.insert(server_id.get().to_owned(), down);
                st.server_reqs.insert(down, server_id);
                msg.set_id(&raw(down.to_string()));
                vec![Out::Client(Line::Parsed(Box::new(msg)))]
            }
            Kind::Notification => {
                let method = msg.method().unwrap_or_default().to_owned();
                let st = self.lock();
                match method.as_str() {
                    "notifications/progress" => {
                        let Some(mut p) = msg.value("params") else {
                            return Vec::new();
                        };
                        let key = p.get("progressToken").map(Value::to_string);
                        match key.and_then(|k| st.tokens.get(&k)) {
                            Some(client_token) => {
                                p["progressToken"] =
                                    serde_json::from_str(client_token.get()).expect("json");
                                msg.set_value("params", &p);
                            }
                            None => return Vec::new(), // not a token we issued (or its request ended)
                        }
                    }
                    "notifications/cancelled" => {
                        let Some(mut p) = msg.value("params") else {
                            return Vec::new();
                        };
                        let key = p.get("requestId").map(Value::to_string);
                        match key.and_then(|k| st.server_reqs_rev.get(&k).copied()) {
                            Some(down) => {
                                p["requestId"] = Value::from(down);
                                msg.set_value("params", &p);
                            }
                            None => return Vec::new(),
                        }
                    }
                    _ => {
                        if msg.method() == Some("notifications/tools/list_changed") {
                            // The next call to a tool not seen yet fetches the listing again.
                            if let Some((schemas, _)) = &self.validate {
                                schemas.set_complete(&self.cfg.server, false);
                            }
                            // Every tool is judged again at the next listing; a call meanwhile
                            // waits for one.
                            if let Some((pins, _)) = &self.pins {
                                pins.list_changed(&self.cfg.server);
                            }
                        }
                        // 2026-07-28 listen streams: the subscription id is the id of the
                        // listen request, which upstream is ours; give the client its own.
                        if let Some(mut p) = msg.value("params") {
                            let sub = p
                                .pointer("/_meta/io.modelcontextprotocol~1subscriptionId")
                                .and_then(Value::as_u64);
                            if let Some(up) = sub {
                                match st.pending.get(&up) {
                                    Some(Pending::Client { client_id, .. }) => {
                                        p["_meta"][SUBSCRIPTION_ID] =
                                            serde_json::from_str(client_id.get()).expect("json");
                                        msg.set_value("params", &p);
                                    }
                                    _ => return Vec::new(), // not a listen of this client's
                                }
                            }
                        }
                    }
                }
                vec![Out::Client(Line::Parsed(Box::new(msg)))]
            }
        }
    }

    fn server_response(&self, mut msg: Message) -> Vec<Out> {
        let up: Option<u64> = msg.id().and_then(|i| i.get().parse().ok());
        let mut st = self.lock();
        let Some(pending) = up.and_then(|u| st.pending.remove(&u)) else {
            tracing::warn!("dropping a server response to an unknown request id");
            return Vec::new();
        };
        let (client_id, what, token, trail) = match pending {
            Pending::Client {
                client_id,
                what,
                token,
                trail,
            } => (client_id, what, token, trail),
            Pending::Listing(tx) => {
                drop(st);
                let (_, audits) = self.record_listing(&msg);
                let next = msg.value("result").and_then(|r| {
                    r.get("nextCursor")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
                let _ = tx.send(next);
                return audits;
            }
            // Portcullis' own request (a replayed initialize): swallowed.
            Pending::Internal => return Vec::new(),
        };
        st.by_client.remove(client_id.get());
        if let Some(t) = token {
            st.tokens.remove(&t);
        }
        msg.set_id(&client_id);
        let audit = trail.map(|t| {
            let mut t = *t;
            t.rec.upstream_ms = Some(t.started.elapsed().as_millis() as u64);
            t.rec.upstream_status = Some(upstream_status(&msg));
            Out::Audit(Box::new(t.rec), t.args)
        });
        let mut pin_audits = Vec::new();
        match what {
            What::ToolsCall(ticket) if msg.is_error_response() && !ticket.held.is_empty() => {
                // A JSON-RPC error: the tool did not run; give the quota back.
                drop(st);
                if let Err(e) = self.cfg.store.refund(&ticket, (self.cfg.clock)()) {
                    tracing::error!("refund failed: {e}");
                }
            }
            What::ToolsList(engine) => {
                drop(st);
                let (blocked, audits) = self.record_listing(&msg);
                pin_audits = audits;
                if let Some(engine) = &engine {
                    filter_tools_list(&mut msg, |n| engine.is_listed(n) && !blocked.contains(n));
                } else if let Some(r) = msg.value("result") {
                    // No policy: nothing is callable; list nothing.
                    let mut r = r;
                    r["tools"] = Value::Array(Vec::new());
                    msg.set_value("result", &r);
                }
            }
            What::Initialize => {
                st.tools_list_changed = msg
                    .value("result")
                    .and_then(|r| {
                        r.pointer("/capabilities/tools/listChanged")
                            .and_then(Value::as_bool)
                    })
                    .unwrap_or(false);
            }
            _ => {}
        }
        pin_audits
            .into_iter()
            .chain(audit)
            .chain([Out::Client(Line::Parsed(Box::new(msg)))])
            .collect()
    }

    /// The approval store, for links that hold calls open.
    pub fn approvals(&self) -> Option<Arc<dyn ApprovalStore>> {
        self.cfg.approvals.clone()
    }

    /// The client's id (raw JSON) of the request sent upstream as `up`, while it is in flight.
    pub fn client_id_of(&self, up: u64) -> Option<String> {
        match self.lock().pending.get(&up) {
            Some(Pending::Client { client_id, .. }) => Some(client_id.get().to_owned()),
            _ => None,
        }
    }

    /// Whether the request sent upstream as `up` still waits for its answer.
    pub fn awaits(&self, up: u64) -> bool {
        self.lock().pending.contains_key(&up)
    }

    /// Requests in flight upstream (for tests and shutdown).
    pub fn in_flight(&self) -> usize {
        self.lock().pending.len()
    }
}
