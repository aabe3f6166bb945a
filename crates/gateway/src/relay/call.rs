//! Deciding one `tools/call`, in three steps: judge (the policy engine's check, the arguments
//! checked against the tool's listed input schema, the pins, the approval store for
//! `approve_if` matches), reserve (the counters: on this thread, or awaited from a store that
//! makes reservations later), and settle (the answer or ticket that results).

use super::*;
use crate::schemas::ArgCheck;
use portcullis_policy::{LimitPlan, ReserveError};

impl Relay {
    /// Decides a `tools/call`: the ticket to forward with (empty when nothing was charged), or
    /// the answer to give instead; plus what the audit trail records. The counters are
    /// reserved on this thread.
    pub(super) fn decide_call(&self, params: Option<&str>, caller: &Caller) -> CallOutcome {
        match self.judge(params, caller) {
            Judged::Decided(out) => out,
            Judged::Reserve(mut r) => {
                let engine = caller.engine.as_ref().expect("a plan comes from an engine");
                let store = &*self.cfg.store;
                let (plan, now) = (&r.plan, r.now);
                let d = self.timed(&mut r.out, || engine.reserve(plan, store, now));
                r.settle(d)
            }
        }
    }

    /// [`Relay::decide_call`] with the counters reserved through
    /// [`CounterStore::reserve_later`](portcullis_policy::CounterStore::reserve_later): the
    /// task waits for a store that gathers reservations, its thread does not.
    pub(super) async fn decide_call_deferred(
        &self,
        params: Option<&str>,
        caller: &Caller,
    ) -> CallOutcome {
        match self.judge(params, caller) {
            Judged::Decided(out) => out,
            Judged::Reserve(mut r) => {
                let engine = caller.engine.as_ref().expect("a plan comes from an engine");
                let start = self.timed.then(crate::otlp::now_ns);
                let (tx, rx) = tokio::sync::oneshot::channel();
                let reqs = std::mem::take(&mut r.plan.reservations);
                let (store, now) = (Arc::clone(&self.cfg.store), r.now);
                let reply = Box::new(move |reqs, res| {
                    // The call was dropped while its counters were being charged (its client
                    // went away): nothing will be forwarded, so the charge is given back.
                    if let Err((_, Ok(ticket))) = tx.send((reqs, res)) {
                        if let Err(e) = store.refund(&ticket, now) {
                            tracing::error!("refund of a cancelled call failed: {e}");
                        }
                    }
                });
                self.cfg.store.reserve_later(reqs, r.now, reply);
                let reserved = match rx.await {
                    Ok((reqs, res)) => {
                        r.plan.reservations = reqs;
                        res
                    }
                    Err(_) => Err(ReserveError::Store(
                        "the counter store dropped a reservation unanswered".into(),
                    )),
                };
                if let Some(start) = start {
                    r.out.reserved_ns = Some((start, crate::otlp::now_ns()));
                }
                let d = engine.settle(&r.plan, reserved);
                r.settle(d)
            }
        }
    }

    /// Everything about a `tools/call` but the counters: decided already (refused, denied,
    /// held for approval), or a plan to reserve.
    fn judge(&self, params: Option<&str>, caller: &Caller) -> Judged {
        let mut out = CallOutcome {
            result: Ok(Ticket::default()),
            expired: Vec::new(),
            tool: None,
            args: None,
            audit_decision: AuditDecision::Allow,
            rule: None,
            message: None,
            hold_ms: None,
            warning: None,
            reserved_ns: None,
        };
        // Strict parse: duplicate keys anywhere in the params are refused, so that the
        // gateway and the server can never read two different tool names or arguments.
        let pv = match params.map(json::parse_strict) {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return refuse(
                    out,
                    codes::INVALID_PARAMS,
                    format!(
                        "tools/call params could not be read ({e}); the call was not forwarded"
                    ),
                )
                .into()
            }
            None => {
                return refuse(
                    out,
                    codes::INVALID_PARAMS,
                    "tools/call needs params with a tool name; the call was not forwarded".into(),
                )
                .into()
            }
        };
        let Some(tool) = pv.get("name").and_then(Value::as_str) else {
            return refuse(out, codes::INVALID_PARAMS, "tools/call params.name must be a string naming the tool; the call was not forwarded".into()).into();
        };
        out.tool = Some(tool.to_owned());
        let mut judged = self.judge_call(&pv, tool, caller, out);
        // The arguments move into the outcome for the audit trail (never copied).
        if let Value::Object(mut o) = pv {
            let out = match &mut judged {
                Judged::Decided(out) => out,
                Judged::Reserve(r) => &mut r.out,
            };
            out.args = o.remove("arguments");
        }
        judged
    }

    /// [`Relay::judge`] once the params are read and name a tool.
    fn judge_call(&self, pv: &Value, tool: &str, caller: &Caller, mut out: CallOutcome) -> Judged {
        let args = pv.get("arguments");
        if let Some(a) = args {
            if !a.is_object() && !a.is_null() {
                return refuse(
                    out,
                    codes::INVALID_PARAMS,
                    "tools/call params.arguments must be an object; the call was not forwarded"
                        .into(),
                )
                .into();
            }
        }
        let meta = pv.get("_meta");
        let modern = meta.and_then(|m| m.get(META_PROTOCOL_VERSION)).is_some();
        let deny = |out: CallOutcome, d: Denial| Judged::Decided(deny(out, d, modern));
        let Some(engine) = &caller.engine else {
            return deny(out, Denial::no_policy());
        };
        // Modern requests carry the client's (self-reported) name per request; legacy ones
        // gave it at initialize.
        let client_name = match meta
            .and_then(|m| m.pointer("/io.modelcontextprotocol~1clientInfo/name"))
            .and_then(Value::as_str)
        {
            Some(n) => Some(n.to_owned()),
            None => self.lock().client_name.clone(),
        };
        let who = Identity {
            grant_id: &caller.grant_id,
            grant_label: &caller.grant_label,
            session_id: &caller.session_id,
            client_name: client_name.as_deref(),
            server: &self.cfg.server,
            principal: caller.principal.as_deref().map(|p| &p.view),
        };
        let call = Call { tool, args };
        let shadow = engine.mode() == Mode::Shadow;
        let check = engine.check(&call, &who);
        // A call the policy lets through (or would, in shadow mode) has its arguments checked
        // before anything is reserved or asked; a denied one is refused as it is (its schema
        // is never revealed).
        if shadow || !matches!(check, Check::Deny(_)) {
            // A tool whose listed definition is not the pinned one is refused whatever the
            // policy says (nothing reserved, nothing forwarded).
            if let Some(d) = self.pin_check(tool) {
                tracing::info!(tool, rule = %d.rule, "deny: pin");
                return deny(out, d);
            }
            match self.check_arguments(tool, args) {
                Ok(warning) => out.warning = warning,
                Err(msg) => {
                    tracing::info!(tool, "invalid arguments: {msg}");
                    out.audit_decision = AuditDecision::Deny;
                    out.rule = Some(INVALID_ARGUMENTS.into());
                    out.message = Some(msg.clone());
                    out.result = Err(Answer::Error(codes::INVALID_PARAMS, msg));
                    return out.into();
                }
            }
        }
        let reserve = |out: CallOutcome, plan: LimitPlan, now: Millis| {
            Judged::Reserve(Reserving {
                out,
                plan,
                now,
                shadow,
                modern,
            })
        };
        let denied = match check {
            Check::Deny(d) => d,
            Check::Approval(need, plan) => {
                let Some(store) = &self.cfg.approvals else {
                    return deny(
                        out,
                        Denial {
                            rule: need.rule,
                            message: format!("Approval required: {} This gateway has no approval store (give it a data dir), so the call was not forwarded.", need.reason),
                            retry_after_secs: None,
                        },
                    );
                };
                let now = (self.cfg.clock)();
                // Lapsed requests are expired (and audited) before this call is looked up.
                out.expired = store.expire_lapsed(now).unwrap_or_default();
                let req = ApprovalRequest {
                    fingerprint: fingerprint(&caller.grant_id, &self.cfg.server, tool, args),
                    grant_id: caller.grant_id.clone(),
                    grant_label: caller.grant_label.clone(),
                    server: self.cfg.server.clone(),
                    tool: tool.to_owned(),
                    args: args
                        .cloned()
                        .unwrap_or_else(|| Value::Object(Default::default())),
                    rule: need.rule.clone(),
                    reason: need.reason.clone(),
                    timeout_ms: need.timeout_ms,
                };
                match store.check(&req, now) {
                    Ok(ApprovalCheck::Approved(a)) => {
                        // Approved and consumed: this identical call passes once; limits still apply.
                        out.message = Some(format!(
                            "approval {} consumed (approved by {})",
                            a.id,
                            a.decided_by.as_deref().unwrap_or("?")
                        ));
                        return reserve(out, plan, now);
                    }
                    Ok(ApprovalCheck::Denied(a)) => Denial {
                        rule: need.rule,
                        message: format!(
                            "Approval denied: {}",
                            a.decision_reason.as_deref().unwrap_or("no reason given")
                        ),
                        retry_after_secs: None,
                    },
                    Ok(ApprovalCheck::Pending { approval, new }) => {
                        if new {
                            if let Some(notify) = &self.cfg.on_new_approval {
                                notify(&approval);
                            }
                        }
                        out.audit_decision = AuditDecision::Approval;
                        out.hold_ms = need.hold_ms;
                        out.rule = Some(need.rule);
                        out.message = Some(format!(
                            "{} approval {}",
                            if new { "requested" } else { "still pending:" },
                            approval.id
                        ));
                        out.result = Err(Answer::Approval(Box::new(approval), modern));
                        return out.into();
                    }
                    Err(e) => Denial::store_error(&format!("approvals: {e}")),
                }
            }
            Check::Proceed(plan) => return reserve(out, plan, (self.cfg.clock)()),
        };
        Judged::Decided(settle(out, Decision::Deny(denied), shadow, modern))
    }
}

/// The outcome of a call the policy let through to its reservation, or denied: allowed with
/// its ticket; denied, or (shadow mode) forwarded flagged as a denial.
fn settle(mut out: CallOutcome, d: Decision, shadow: bool, modern: bool) -> CallOutcome {
    let tool = out.tool.as_deref().unwrap_or_default();
    match d {
        Decision::Allow(t) => {
            tracing::debug!(tool, "allow");
            out.result = Ok(t);
            out
        }
        Decision::Deny(d) if shadow => {
            tracing::info!(tool, rule = %d.rule, "shadow mode: would deny, forwarding");
            out.audit_decision = AuditDecision::ShadowDeny;
            out.rule = Some(d.rule);
            out.message = Some(d.message);
            out
        }
        Decision::Deny(d) => {
            tracing::info!(tool, rule = %d.rule, "deny");
            deny(out, d, modern)
        }
        Decision::NeedsApproval(..) => unreachable!("approvals are asked before reserving"),
    }
}

/// A call denied by `d`: audited as hidden or denied, answered with the denial.
fn deny(mut out: CallOutcome, d: Denial, modern: bool) -> CallOutcome {
    out.audit_decision = if d.rule == "(hidden)" {
        AuditDecision::Hidden
    } else {
        AuditDecision::Deny
    };
    out.rule = Some(d.rule.clone());
    out.message = Some(d.message.clone());
    out.result = Err(Answer::Denied(d, modern));
    out
}

/// Where judging a `tools/call` stops: decided, or with counters to reserve.
pub(super) enum Judged {
    Decided(CallOutcome),
    Reserve(Reserving),
}

impl From<CallOutcome> for Judged {
    fn from(out: CallOutcome) -> Judged {
        Judged::Decided(out)
    }
}

/// A call the policy lets through once its counters are reserved.
pub(super) struct Reserving {
    out: CallOutcome,
    plan: LimitPlan,
    /// The clock the reservation is made at.
    now: Millis,
    /// Shadow mode: a denial is forwarded, flagged.
    shadow: bool,
    /// A 2026-07-28 request (its denial carries `resultType`).
    modern: bool,
}

impl Reserving {
    /// The outcome once the counters are reserved (`d`: the reservation's decision).
    fn settle(self, d: Decision) -> CallOutcome {
        settle(self.out, d, self.shadow, self.modern)
    }
}

/// The audit rule of a call refused (or, under `warn`, flagged) for its arguments.
pub const INVALID_ARGUMENTS: &str = "(invalid arguments)";

impl Relay {
    /// Runs the counter reservation `f`, timing it into `out` when the relay times.
    fn timed<T>(&self, out: &mut CallOutcome, f: impl FnOnce() -> T) -> T {
        if !self.timed {
            return f();
        }
        let start = crate::otlp::now_ns();
        let r = f();
        out.reserved_ns = Some((start, crate::otlp::now_ns()));
        r
    }

    /// Checks a call's arguments against the schema its server listed, as `validate_arguments`
    /// says: `Ok(None)` passes, `Ok(Some(warning))` passes flagged, `Err(answer)` refuses.
    fn check_arguments(&self, tool: &str, args: Option<&Value>) -> Result<Option<String>, String> {
        let Some((schemas, mode)) = &self.validate else {
            return Ok(None);
        };
        let server = &self.cfg.server;
        let enforce = *mode == ValidateArguments::Enforce;
        match schemas.check(server, tool, args) {
            ArgCheck::Valid => Ok(None),
            ArgCheck::Invalid(found) if enforce => Err(format!(
                "tools/call arguments do not match the inputSchema server {server:?} lists for tool {tool:?}: {found}; the call was not forwarded"
            )),
            ArgCheck::Invalid(found) => {
                tracing::warn!(server, tool, "arguments do not match the tool's inputSchema (validate_arguments = warn, forwarded): {found}");
                Ok(Some(format!("warning: arguments do not match the inputSchema: {found} (forwarded: validate_arguments = warn)")))
            }
            ArgCheck::Unknown if enforce => Err(format!(
                "server {server:?} has not listed a tool {tool:?} with an inputSchema, so its arguments cannot be checked (validate_arguments = enforce); list the tools (tools/list) and retry; the call was not forwarded"
            )),
            ArgCheck::Unknown => Ok(None),
            // The server's own schema is broken (or points outside itself): not something a
            // caller can cause, so the call passes, flagged.
            ArgCheck::Unusable(why) => {
                tracing::warn!(server, tool, "arguments not checked: the tool's inputSchema cannot be compiled: {why}");
                Ok(Some(format!("warning: arguments not checked: the tool's inputSchema cannot be compiled ({why})")))
            }
        }
    }
}

/// What deciding a `tools/call` produced.
pub(super) struct CallOutcome {
    pub(super) result: Result<Ticket, Answer>,
    /// Approvals that lapsed just before this call (audited as expired).
    pub(super) expired: Vec<Approval>,
    pub(super) tool: Option<String>,
    pub(super) args: Option<Value>,
    pub(super) audit_decision: AuditDecision,
    pub(super) rule: Option<String>,
    pub(super) message: Option<String>,
    /// The matching `approve_if` entry's own hold (overrides the server's), if it has one.
    pub(super) hold_ms: Option<u64>,
    /// Arguments that did not match the schema, under `warn` (audited with the call).
    pub(super) warning: Option<String>,
    /// When the counters were reserved (ns since the epoch), when the relay times it.
    pub(super) reserved_ns: Option<(u64, u64)>,
}

pub(super) enum Answer {
    Error(i64, String),
    Denied(Denial, bool),
    Approval(Box<Approval>, bool),
}

impl Answer {
    pub(super) fn line(&self, id: &RawValue) -> String {
        match self {
            Answer::Error(code, m) => error_line(Some(id), *code, m),
            Answer::Denied(d, modern) => result_line(id, &denial_result(d, *modern)),
            Answer::Approval(a, modern) => result_line(id, &approval_result(a, *modern)),
        }
    }
}

/// The identity of a call for approvals: grant, server, tool and the canonical JSON of the
/// arguments (keys sorted at every depth), hashed.
fn fingerprint(grant: &str, server: &str, tool: &str, args: Option<&Value>) -> String {
    use sha2::Digest;
    let canonical = args.map_or_else(|| "{}".to_string(), json::canonical);
    let mut h = sha2::Sha256::new();
    for part in [grant, server, tool, canonical.as_str()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The `tools/call` result for a call waiting for a human: `[APPROVAL REQUIRED]`, the id, what
/// to do, and the expiry, in words and in `_meta`.
fn approval_result(a: &Approval, modern: bool) -> Value {
    let expires = portcullis_policy::window::rfc3339(a.expires_at);
    let text = format!(
        "[APPROVAL REQUIRED] {} This call needs a human's approval first (approval {}, rule {}). Once an operator approves it (`portcullis approvals approve {}`), retry the identical call: it will pass once. The request expires at {expires}.",
        a.reason, a.id, a.rule, a.id
    );
    let mut r = serde_json::json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
        "_meta": {"portcullis/approval": {"id": a.id, "expiresAt": expires, "expiresAtMs": a.expires_at, "rule": a.rule}}
    });
    if modern {
        r["resultType"] = serde_json::json!("complete");
    }
    r
}

/// A call refused for unreadable params: audited as a deny, answered with the error.
fn refuse(mut out: CallOutcome, code: i64, msg: String) -> CallOutcome {
    out.audit_decision = AuditDecision::Deny;
    out.rule = Some("(invalid params)".into());
    out.message = Some(msg.clone());
    out.result = Err(Answer::Error(code, msg));
    out
}
