//! One endpoint for many servers: [`Aggregate`] presents every member server as one MCP
//! server, in front of one [`Connection`] per member (each with its own relay, so each call
//! is judged by that server's policy, counters and pins, and audited as that server's).
//!
//! | File | Job |
//! |---|---|
//! | `mod.rs` | [`Aggregate`]: the members, the handshake, what each client message becomes |
//! | `names.rs` | `server__tool` names (always `^[a-zA-Z0-9_-]{1,64}$`, hashed when too long), the table mapping them back |
//! | `list.rs` | merged pagination: the list kinds, the signed cursor (member index + its own cursor) |
//! | `merge.rs` | a page of a merged list: each member's entries renamed and remembered, the next cursor |
//! | `route.rs` | ids between the client and the members, both directions |
//!
//! Resources keep their URIs (a URI is the server's to mint and may be embedded anywhere):
//! `resources/read`, `subscribe` and `unsubscribe` are routed by a map of the URIs (and URI
//! template prefixes) the members listed; the first member to list a URI owns it, the same URI
//! from another member is left out of the list with a warning.

pub mod list;
mod merge;
pub mod names;
pub mod route;

use crate::connection::{ClientTx, Connection, ToClient};
use crate::events::Events;
use crate::relay::Caller;
use crate::upstream::BoxFuture;
use list::{Cursors, Kind};
use names::{NameError, Table};
use portcullis_mcp::{codes, error_line, Kind as MsgKind, Message, ParseError};
use portcullis_policy::sync::LockExt;
use portcullis_store::{AuditDecision, AuditRecord};
use route::{Flights, Waiting};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// How long a member's `initialize` is waited for before it counts as down.
const INIT_WAIT: Duration = Duration::from_secs(20);

/// How long one page of a member's list is waited for before it is left out.
const LIST_WAIT: Duration = Duration::from_secs(10);

/// Most pages read from one member to find a name it was never seen listing.
const REFRESH_PAGES: usize = 32;

/// The handshake-era versions this endpoint answers `initialize` with.
const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// One server behind the endpoint.
pub struct MemberSpec {
    /// The configured server name.
    pub name: String,
    /// Who calls it: the grant (or local user) with this server's policy.
    pub caller: Caller,
}

/// Opens the connection of member `index`: its client-bound lines go to the given sink.
pub type Connect = Arc<
    dyn Fn(usize, ClientTx) -> BoxFuture<'static, std::io::Result<Arc<Connection>>> + Send + Sync,
>;

struct Member {
    name: String,
    prefix: String,
    /// Who calls it; [`Aggregate::refresh`] re-resolves its policy (hot reload).
    caller: Mutex<Caller>,
    link: OnceLock<Arc<Connection>>,
    /// Why it is out of service (`None`: up).
    down: Mutex<Option<String>>,
    /// Its `initialize` result's capabilities.
    caps: Mutex<Value>,
    instructions: Mutex<Option<String>>,
}

impl Member {
    fn live(&self) -> Option<Arc<Connection>> {
        if self.down.lock_or_recover().is_some() {
            return None;
        }
        self.link.get().cloned()
    }

    fn caller(&self) -> Caller {
        self.caller.lock_or_recover().clone()
    }

    fn has(&self, capability: &str) -> bool {
        capability == "tools" || self.caps.lock_or_recover().get(capability).is_some()
    }
}

/// The aggregated endpoint of one client (a stdio client or an HTTP session).
pub struct Aggregate {
    me: Weak<Aggregate>,
    members: Vec<Member>,
    to_client: ClientTx,
    events: Option<Events>,
    flights: Mutex<Flights>,
    tools: Mutex<Table>,
    prompts: Mutex<Table>,
    /// Resource URIs and URI-template prefixes → member.
    uris: Mutex<HashMap<String, usize>>,
    templates: Mutex<Vec<(String, usize)>>,
    cursors: Cursors,
    /// The client has its `initialize` answer: member notifications may reach it.
    ready: AtomicBool,
}

impl Aggregate {
    /// Opens a connection to every member (in parallel); a member that cannot be reached is
    /// marked down (logged and audited) and the others serve. Errors: two members whose names
    /// would share a prefix, or no member at all.
    pub async fn open(
        members: Vec<MemberSpec>,
        to_client: ClientTx,
        events: Option<Events>,
        connect: Connect,
    ) -> Result<Arc<Aggregate>, String> {
        if members.is_empty() {
            return Err("no server is reachable through this endpoint".into());
        }
        let mut seen: HashMap<String, &str> = HashMap::new();
        for m in &members {
            let p = names::prefix(&m.name);
            if let Some(other) = seen.insert(p.clone(), &m.name) {
                return Err(format!(
                    "servers {other:?} and {:?} would share the tool prefix {p:?}; rename one",
                    m.name
                ));
            }
        }
        let agg = Arc::new_cyclic(|me| Aggregate {
            me: me.clone(),
            members: members
                .into_iter()
                .map(|m| Member {
                    prefix: names::prefix(&m.name),
                    name: m.name,
                    caller: Mutex::new(m.caller),
                    link: OnceLock::new(),
                    down: Mutex::new(None),
                    caps: Mutex::new(Value::Null),
                    instructions: Mutex::new(None),
                })
                .collect(),
            to_client,
            events: events.filter(|e| !e.is_empty()),
            flights: Mutex::new(Flights::default()),
            tools: Mutex::new(Table::default()),
            prompts: Mutex::new(Table::default()),
            uris: Mutex::new(HashMap::new()),
            templates: Mutex::new(Vec::new()),
            cursors: Cursors::new(),
            ready: AtomicBool::new(false),
        });
        let mut starts = Vec::new();
        for i in 0..agg.members.len() {
            let weak = agg.me.clone();
            let tx = ClientTx::new(move |t| weak.upgrade().is_some_and(|a| a.member_line(i, t)));
            starts.push(tokio::spawn(connect(i, tx)));
        }
        for (i, s) in starts.into_iter().enumerate() {
            match s.await {
                Ok(Ok(link)) => {
                    let _ = agg.members[i].link.set(link);
                }
                Ok(Err(e)) => agg.mark_down(i, &format!("cannot start it: {e}")).await,
                Err(e) => agg.mark_down(i, &format!("cannot start it: {e}")).await,
            }
        }
        Ok(agg)
    }

    /// Re-resolves each member's caller (the face's view of the policies in force now).
    pub fn refresh(&self, f: impl Fn(&Caller) -> Caller) {
        for m in &self.members {
            let mut c = m.caller.lock_or_recover();
            *c = f(&c);
        }
    }

    /// The names of the members, in order.
    pub fn member_names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    /// Stops every member's upstream.
    pub async fn shutdown(&self, grace: Duration) {
        let mut stops = Vec::new();
        for m in &self.members {
            if let Some(l) = m.link.get().cloned() {
                stops.push(tokio::spawn(async move { l.shutdown(grace).await }));
            }
        }
        for s in stops {
            let _ = s.await;
        }
    }

    fn send(&self, line: String) {
        let _ = self.to_client.send(line.into());
    }

    fn answer(&self, id: &str, result: &Value) {
        self.send(format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result}}}"
        ));
    }

    fn fail(&self, id: &str, code: i64, message: &str) {
        let raw = serde_json::value::RawValue::from_string(id.to_owned()).ok();
        self.send(error_line(raw.as_deref(), code, message));
    }

    /// Logs, and audits, that member `i` is out of service; its names drop out of lists.
    async fn mark_down(&self, i: usize, why: &str) {
        let m = &self.members[i];
        *m.down.lock_or_recover() = Some(why.to_owned());
        tracing::warn!(server = %m.name, "server {:?} is down ({why}): its tools are left out of the aggregated endpoint", m.name);
        self.audit(
            i,
            "(aggregate)",
            None,
            AuditDecision::Error,
            None,
            format!(
                "server {:?} is down ({why}): its tools are left out of the aggregated endpoint",
                m.name
            ),
        )
        .await;
    }

    /// An audit record of the endpoint's own (`member` None: of no server).
    async fn audit(
        &self,
        member: usize,
        method: &str,
        tool: Option<&str>,
        decision: AuditDecision,
        rule: Option<&str>,
        message: String,
    ) {
        let Some(ev) = &self.events else { return };
        let (server, caller) = match self.members.get(member) {
            Some(m) => (m.name.as_str(), m.caller()),
            None => ("(aggregate)", self.members[0].caller()),
        };
        let mut rec = AuditRecord::new(crate::relay::system_clock(), server, method, decision);
        rec.tool = tool.map(str::to_owned);
        rec.rule = rule.map(str::to_owned);
        rec.message = Some(message);
        rec.grant_id = Some(caller.grant_id.clone());
        rec.grant_label = Some(caller.grant_label.clone());
        rec.session = Some(caller.session_id.clone());
        ev.record(rec).await;
    }

    /// One line from the client.
    pub async fn from_client(self: &Arc<Self>, line: &str) {
        let msg = match Message::parse(line) {
            Ok(m) => m,
            Err(e) => {
                let (code, id) = match &e {
                    ParseError::NotJson(_) => (codes::PARSE_ERROR, None),
                    ParseError::Batch => (codes::INVALID_REQUEST, None),
                    ParseError::Invalid { id, .. } => (codes::INVALID_REQUEST, id.as_deref()),
                };
                self.send(error_line(id, code, &format!("{e}; nothing was forwarded")));
                return;
            }
        };
        let method = msg.method().unwrap_or_default().to_owned();
        match msg.kind() {
            MsgKind::Request => {
                let id = msg.id().expect("a request").get().to_owned();
                let me = self.clone();
                match method.as_str() {
                    "initialize" => {
                        tokio::spawn(async move { me.initialize(id, msg).await });
                    }
                    "ping" => self.answer(&id, &json!({})),
                    "logging/setLevel" => {
                        self.broadcast(&msg, true).await;
                        self.answer(&id, &json!({}));
                    }
                    m if Kind::of(m).is_some() => {
                        let kind = Kind::of(m).expect("checked");
                        tokio::spawn(async move { me.list(kind, id, msg).await });
                    }
                    "tools/call" | "prompts/get" | "resources/read" | "resources/subscribe"
                    | "resources/unsubscribe" | "completion/complete" => {
                        tokio::spawn(async move { me.routed(id, msg).await });
                    }
                    other => self.fail(
                        &id,
                        codes::METHOD_NOT_FOUND,
                        &format!("method {other:?} is not available on the aggregated endpoint (one server per name: use /mcp/<server> or `portcullis stdio` of that server); nothing was forwarded"),
                    ),
                }
            }
            MsgKind::Notification => {
                if method == "notifications/cancelled" {
                    self.cancel(msg).await;
                } else {
                    self.broadcast(&msg, false).await;
                }
            }
            MsgKind::Response => {
                // The client's answer to a member's request.
                let target = msg
                    .id()
                    .and_then(|i| i.get().parse::<u64>().ok())
                    .and_then(|n| self.flights.lock_or_recover().client_answered(n));
                let Some((i, their)) = target else {
                    tracing::debug!("an answer to no request of ours: dropped");
                    return;
                };
                if let (Some(link), Some(line)) =
                    (self.members[i].live(), route::with_id(line, &their))
                {
                    link.from_client(&line, &self.members[i].caller()).await;
                }
            }
        }
    }

    /// Sends a client notification (or a request whose answers nobody needs) to every live
    /// member.
    async fn broadcast(&self, msg: &Message, request: bool) {
        for m in &self.members {
            let Some(link) = m.live() else { continue };
            let line = if request {
                let n = self.flights.lock_or_recover().nobody();
                route::with_id(&msg.to_json(), &n.to_string()).unwrap_or_default()
            } else {
                msg.to_json()
            };
            link.from_client(&line, &m.caller()).await;
        }
    }

    /// `notifications/cancelled` for a request of the client's: to its member, with our id.
    async fn cancel(&self, mut msg: Message) {
        let Some(mut params) = msg.value("params") else {
            return;
        };
        let Some(req) = params.get("requestId").map(|v| v.to_string()) else {
            return;
        };
        let Some((i, n)) = self.flights.lock_or_recover().of_client(&req) else {
            return;
        };
        params["requestId"] = json!(n);
        msg.set_value("params", &params);
        if let Some(link) = self.members[i].live() {
            link.from_client(msg, &self.members[i].caller()).await;
        }
    }

    /// Sends `method(params)` to member `i` and waits for the answer's result; `Err` with a
    /// sentence for an error answer, no answer within `wait`, or a member that is down.
    async fn ask(
        &self,
        i: usize,
        method: &str,
        params: &Value,
        wait: Duration,
    ) -> Result<Value, String> {
        let m = &self.members[i];
        let Some(link) = m.live() else {
            return Err(m
                .down
                .lock_or_recover()
                .clone()
                .unwrap_or_else(|| "not connected".into()));
        };
        let (n, rx) = self.flights.lock_or_recover().task();
        let line =
            json!({"jsonrpc": "2.0", "id": n, "method": method, "params": params}).to_string();
        link.from_client(&line, &m.caller()).await;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(answer)) => {
                let v: Value = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
                if let Some(r) = v.get("result") {
                    return Ok(r.clone());
                }
                let e = &v["error"];
                Err(format!(
                    "error {}: {}",
                    e["code"],
                    e["message"].as_str().unwrap_or_default()
                ))
            }
            Ok(Err(_)) => Err("the connection closed".into()),
            Err(_) => {
                self.flights.lock_or_recover().forget(n);
                Err(format!("no answer within {} s", wait.as_secs()))
            }
        }
    }

    /// `initialize`: every live member's own handshake with the client's parameters, in
    /// parallel; the client's answer merges their capabilities.
    async fn initialize(self: Arc<Self>, id: String, msg: Message) {
        let params = msg.value("params").unwrap_or_else(|| json!({}));
        let mut asks = Vec::new();
        for i in 0..self.members.len() {
            let me = self.clone();
            let p = params.clone();
            asks.push(tokio::spawn(async move {
                (i, me.ask(i, "initialize", &p, INIT_WAIT).await)
            }));
        }
        for a in asks {
            let Ok((i, r)) = a.await else { continue };
            match r {
                Ok(result) => {
                    let m = &self.members[i];
                    *m.caps.lock_or_recover() =
                        result.get("capabilities").cloned().unwrap_or(json!({}));
                    *m.instructions.lock_or_recover() = result
                        .get("instructions")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
                Err(why) => {
                    if self.members[i].down.lock_or_recover().is_none() {
                        self.mark_down(i, &format!("initialize failed: {why}"))
                            .await;
                    }
                }
            }
        }
        let asked = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let version = if VERSIONS.contains(&asked) {
            asked
        } else {
            portcullis_mcp::LEGACY_LATEST
        };
        let mut caps = Map::new();
        caps.insert("tools".into(), json!({"listChanged": true}));
        let any = |c: &str| self.members.iter().any(|m| m.live().is_some() && m.has(c));
        if any("resources") {
            let subscribe = self.members.iter().any(|m| {
                m.live().is_some()
                    && m.caps.lock_or_recover().pointer("/resources/subscribe")
                        == Some(&json!(true))
            });
            caps.insert(
                "resources".into(),
                json!({"listChanged": true, "subscribe": subscribe}),
            );
        }
        if any("prompts") {
            caps.insert("prompts".into(), json!({"listChanged": true}));
        }
        if any("logging") {
            caps.insert("logging".into(), json!({}));
        }
        if any("completions") {
            caps.insert("completions".into(), json!({}));
        }
        let mut text = Vec::new();
        for m in &self.members {
            match (m.live(), m.instructions.lock_or_recover().as_deref()) {
                (Some(_), Some(t)) => text.push(format!(
                    "Tools of server {:?} are named {}__<tool>. {t}",
                    m.name, m.prefix
                )),
                (Some(_), None) => {}
                (None, _) => text.push(format!("Server {:?} is unavailable.", m.name)),
            }
        }
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": caps,
            "serverInfo": {"name": "portcullis", "title": "Portcullis (aggregated)", "version": env!("CARGO_PKG_VERSION")},
        });
        if !text.is_empty() {
            result["instructions"] = json!(text.join("\n"));
        }
        self.answer(&id, &result);
        self.ready.store(true, Ordering::Release);
    }

    /// The member and own name of an aggregated tool or prompt name.
    async fn resolve(&self, kind: Kind, name: &str) -> Result<(usize, String), NameError> {
        let table = if kind == Kind::Tools {
            &self.tools
        } else {
            &self.prompts
        };
        if let Some(hit) = table.lock_or_recover().get(name) {
            return Ok(hit);
        }
        if !names::valid(name) {
            return Err(NameError::Malformed(name.to_owned()));
        }
        let Some((prefix, rest)) = names::split(name) else {
            return Err(NameError::Malformed(name.to_owned()));
        };
        let Some(i) = self.members.iter().position(|m| m.prefix == prefix) else {
            return Err(NameError::UnknownServer {
                name: name.to_owned(),
                prefix: prefix.to_owned(),
            });
        };
        // A name never listed here: read the member's list to learn it (a shortened name
        // can only be known so).
        let mut cursor: Option<String> = None;
        for _ in 0..REFRESH_PAGES {
            let mut p = json!({});
            if let Some(c) = &cursor {
                p["cursor"] = json!(c);
            }
            let Ok(result) = self.ask(i, kind.method(), &p, LIST_WAIT).await else {
                break;
            };
            for e in result
                .get(kind.field())
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                self.rename(kind, i, e);
            }
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        if let Some(hit) = table.lock_or_recover().get(name) {
            return Ok(hit);
        }
        if names::join(prefix, rest) == name {
            // A plain name the server did not list: the server's connection judges it (its
            // pins refuse a tool it does not list, without forwarding).
            return Ok((i, rest.to_owned()));
        }
        Err(NameError::Unknown {
            name: name.to_owned(),
            server: self.members[i].name.clone(),
        })
    }

    /// A request for one member: routed by its name (tools, prompts, completion of a prompt)
    /// or resource URI, the name set back to the server's own, sent through that member's
    /// connection (whose relay judges it). A name or URI that maps to nothing is refused here.
    async fn routed(self: Arc<Self>, id: String, mut msg: Message) {
        let method = msg.method().unwrap_or_default().to_owned();
        let mut params = msg.value("params").unwrap_or(Value::Null);
        let target: Result<usize, String> = match method.as_str() {
            "tools/call" | "prompts/get" => {
                let kind = if method == "tools/call" {
                    Kind::Tools
                } else {
                    Kind::Prompts
                };
                match params
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                {
                    None => Err("params.name must be a string; nothing was forwarded".into()),
                    Some(name) => match self.resolve(kind, &name).await {
                        Ok((i, own)) => {
                            params["name"] = json!(own);
                            Ok(i)
                        }
                        Err(e) => Err(e.to_string()),
                    },
                }
            }
            "completion/complete" => match params.pointer("/ref/type").and_then(Value::as_str) {
                Some("ref/prompt") => match params
                    .pointer("/ref/name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                {
                    Some(name) => match self.resolve(Kind::Prompts, &name).await {
                        Ok((i, own)) => {
                            params["ref"]["name"] = json!(own);
                            Ok(i)
                        }
                        Err(e) => Err(e.to_string()),
                    },
                    None => Err("params.ref.name must be a string; nothing was forwarded".into()),
                },
                Some("ref/resource") => self.by_uri(params.pointer("/ref/uri")),
                _ => Err(
                    "params.ref must be a ref/prompt or ref/resource; nothing was forwarded".into(),
                ),
            },
            _ => self.by_uri(params.get("uri")),
        };
        let i = match target {
            Ok(i) => i,
            Err(why) => {
                let tool = params
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                self.audit(
                    usize::MAX,
                    &method,
                    tool.as_deref(),
                    AuditDecision::Deny,
                    Some("(unknown name)"),
                    why.clone(),
                )
                .await;
                return self.fail(&id, codes::INVALID_PARAMS, &why);
            }
        };
        let m = &self.members[i];
        let Some(link) = m.live() else {
            let why = m.down.lock_or_recover().clone().unwrap_or_default();
            let text = format!(
                "server {:?} is unavailable ({why}); nothing was forwarded",
                m.name
            );
            let tool = params
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned);
            self.audit(
                i,
                &method,
                tool.as_deref(),
                AuditDecision::Error,
                Some("(server down)"),
                text.clone(),
            )
            .await;
            return self.fail(&id, codes::INTERNAL_ERROR, &text);
        };
        msg.set_value("params", &params);
        let n = self.flights.lock_or_recover().client(&id, i);
        let Some(line) = route::with_id(&msg.to_json(), &n.to_string()) else {
            return;
        };
        link.from_client(&line, &m.caller()).await;
    }

    fn by_uri(&self, uri: Option<&Value>) -> Result<usize, String> {
        let Some(uri) = uri.and_then(Value::as_str) else {
            return Err("params.uri must be a string; nothing was forwarded".into());
        };
        self.uri_owner(uri).ok_or_else(|| format!("resource {uri:?} was not listed by any server of this endpoint (list resources or templates first); nothing was forwarded"))
    }

    /// A line from member `i`'s connection: answers go to whoever waits, the member's
    /// requests to the client under ids of ours, notifications to the client.
    fn member_line(&self, i: usize, t: ToClient) -> bool {
        let line = t.line.into_text();
        let Ok(mut msg) = Message::parse(&line) else {
            return true;
        };
        match msg.kind() {
            MsgKind::Response => {
                let Some(n) = msg.id().and_then(|i| i.get().parse::<u64>().ok()) else {
                    return true;
                };
                let waiting = self.flights.lock_or_recover().answered(n);
                match waiting {
                    Some(Waiting::Client { id, .. }) => {
                        if let Some(line) = route::with_id(&line, &id) {
                            self.send(line);
                        }
                    }
                    Some(Waiting::Task(tx)) => {
                        let _ = tx.send(line);
                    }
                    Some(Waiting::Nobody) | None => {}
                }
            }
            MsgKind::Request => {
                let their = msg.id().expect("a request").get().to_owned();
                let n = self.flights.lock_or_recover().server_request(i, &their);
                if let Some(line) = route::with_id(&line, &n.to_string()) {
                    self.send(line);
                }
            }
            MsgKind::Notification => {
                if !self.ready.load(Ordering::Acquire) {
                    tracing::debug!(server = %self.members[i].name, "a notification before the client's initialize answer: dropped");
                    return true;
                }
                if msg.method() == Some("notifications/cancelled") {
                    // The member cancels its own request to the client: our id for it.
                    let Some(mut p) = msg.value("params") else {
                        return true;
                    };
                    let req = p
                        .get("requestId")
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    let Some(n) = self.flights.lock_or_recover().server_request_id(i, &req) else {
                        return true;
                    };
                    p["requestId"] = json!(n);
                    msg.set_value("params", &p);
                    self.send(msg.to_json());
                    return true;
                }
                self.send(line);
            }
        }
        true
    }
}
