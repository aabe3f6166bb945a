//! A client request: opened (its audit trail begun), a `tools/call` decided ([`call`]), and
//! forwarded with its id, progress token and answer's bookkeeping rewritten once.

use super::*;
use call::CallOutcome;

/// A client request while it is handled: what every method's path shares.
pub(super) struct Request {
    msg: Message,
    client_id: Box<RawValue>,
    method: String,
    trail: Option<Box<Trail>>,
    started: Instant,
}

impl Request {
    /// The request's params, as the client sent them.
    fn params(&self) -> Option<&str> {
        self.msg.get("params").map(|p| p.get())
    }
}

impl Relay {
    /// Begins handling a client request: its id and method read, its audit record begun.
    fn open_request(&self, msg: Message, caller: &Caller) -> Request {
        let started = Instant::now();
        let client_id = msg.id().expect("requests have ids").to_owned();
        let method = msg.method().unwrap_or_default().to_owned();
        let trail = self.cfg.audit.then(|| {
            Box::new(Trail {
                rec: self.record(caller, &method, Some(&client_id)),
                args: None,
                started,
            })
        });
        Request {
            msg,
            client_id,
            method,
            trail,
            started,
        }
    }

    pub(super) fn client_request(&self, msg: Message, caller: &Caller) -> Vec<Out> {
        let req = self.open_request(msg, caller);
        if req.method == "tools/call" {
            let outcome = self.decide_call(req.params(), caller);
            return self.call_decided(req, caller, outcome);
        }
        self.other_request(req, caller)
    }

    /// [`Relay::from_client_message`] for a task that can wait: a `tools/call`'s counters
    /// are reserved through the store's
    /// [`reserve_later`](portcullis_policy::CounterStore::reserve_later) when the store
    /// [`defers`](portcullis_policy::CounterStore::defers) (it gathers concurrent
    /// reservations into one write), so that the task waits for the reservation and its
    /// thread goes on with other work. Everything else is as `from_client_message`.
    pub async fn from_client_message_deferred(&self, msg: Message, caller: &Caller) -> Vec<Out> {
        let deferred = self.cfg.store.defers()
            && msg.kind() == Kind::Request
            && msg.method() == Some("tools/call");
        if !deferred {
            return self.from_client_message(msg, caller);
        }
        let req = self.open_request(msg, caller);
        let outcome = self.decide_call_deferred(req.params(), caller).await;
        self.call_decided(req, caller, outcome)
    }

    /// A `tools/call` once decided: answered here (refused, denied, held for approval), or
    /// forwarded with its ticket.
    fn call_decided(
        &self,
        mut req: Request,
        caller: &Caller,
        mut outcome: CallOutcome,
    ) -> Vec<Out> {
        // Audit records that go out before this request's own outputs (expired approvals).
        let mut pre: Vec<Out> = if self.cfg.audit {
            std::mem::take(&mut outcome.expired)
                .into_iter()
                .map(|a| Out::Audit(Box::new(a.expiry_record((self.cfg.clock)())), None))
                .collect()
        } else {
            Vec::new()
        };
        if let Some(t) = req.trail.as_mut() {
            t.rec.tool = outcome.tool.clone();
            t.args = outcome.args.take();
            t.rec.decision = outcome.audit_decision;
            t.rec.rule = outcome.rule.clone();
            t.rec.message = outcome.message.clone();
            t.rec.reserved_ns = outcome.reserved_ns;
            if let Some(w) = &outcome.warning {
                t.rec
                    .rule
                    .get_or_insert_with(|| call::INVALID_ARGUMENTS.into());
                t.rec.message = Some(match t.rec.message.take() {
                    Some(m) => format!("{m}; {w}"),
                    None => w.clone(),
                });
            }
        }
        let hold_ms = outcome.hold_ms.unwrap_or(self.cfg.hold_ms);
        let answer = match outcome.result {
            Ok(ticket) => {
                if let Some(t) = req.trail.as_mut() {
                    t.rec.counters = ticket
                        .held
                        .iter()
                        .map(|h| h.key.as_str().to_owned())
                        .collect();
                }
                return self.forward(req, What::ToolsCall(ticket), pre);
            }
            Err(answer) => answer,
        };
        let Request {
            msg,
            client_id,
            trail,
            started,
            ..
        } = req;
        if let Some(mut t) = trail {
            t.rec.gateway_us = started.elapsed().as_micros() as u64;
            pre.push(Out::Audit(Box::new(t.rec), t.args));
        }
        match answer {
            Answer::Approval(a, _)
                if hold_ms > 0
                    && !caller
                        .request_id
                        .as_deref()
                        .is_some_and(|r| r.starts_with(HELD)) =>
            {
                let progress_token = msg.peek_as::<Value>("params", &["_meta", "progressToken"]);
                let answer_line = Answer::Approval(a.clone(), false).line(&client_id);
                let mut held = caller.clone();
                held.request_id = Some(format!(
                    "{HELD}{}",
                    caller.request_id.as_deref().unwrap_or(client_id.get())
                ));
                pre.push(Out::Hold(Box::new(Hold {
                    approval_id: a.id.clone(),
                    request: msg.to_json(),
                    answer: answer_line,
                    progress_token,
                    caller: held,
                    wait_ms: hold_ms,
                })));
            }
            answer => pre.push(Out::Client(answer.line(&client_id).into())),
        }
        pre
    }

    /// A request other than `tools/call`: noted where the relay needs to (`tools/list`
    /// answers are filtered, `initialize` names the client), then forwarded.
    fn other_request(&self, req: Request, caller: &Caller) -> Vec<Out> {
        let what = match req.method.as_str() {
            "tools/list" => What::ToolsList(caller.engine.clone()),
            "initialize" => {
                let p: Option<Value> = req.params().and_then(|p| serde_json::from_str(p).ok());
                let mut st = self.lock();
                st.client_name = p
                    .as_ref()
                    .and_then(|p| p.pointer("/clientInfo/name"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                st.init_params = p;
                What::Initialize
            }
            _ => What::Other,
        };
        self.forward(req, what, Vec::new())
    }

    /// Sends a request upstream under an id of ours (and a progress token unique on the
    /// connection), remembering what its answer needs; `pre` goes out first.
    fn forward(&self, req: Request, what: What, mut pre: Vec<Out>) -> Vec<Out> {
        let Request {
            mut msg,
            client_id,
            mut trail,
            started,
            ..
        } = req;
        let mut st = self.lock();
        let up = st.next_up;
        st.next_up += 1;
        // Progress token: replace with one unique on the upstream connection.
        let mut token = None;
        // Peeked first: the params are parsed and re-encoded only when a token is rewritten.
        if let Some(t) = msg
            .peek("params", &["_meta", "progressToken"])
            .map(|t| t.to_owned())
        {
            if let Some(mut pv) = msg.value("params") {
                let ours = format!("\"pc-{}\"", st.next_token);
                st.next_token += 1;
                st.tokens.insert(ours.clone(), t);
                pv["_meta"]["progressToken"] = serde_json::from_str(&ours).expect("string");
                msg.set_raw("params", raw(pv.to_string()));
                token = Some(ours);
            }
        }
        if let Some(t) = trail.as_mut() {
            t.rec.gateway_us = started.elapsed().as_micros() as u64;
            if self.write_ahead && matches!(what, What::ToolsCall(_)) {
                t.rec.intent = Some(NEXT_INTENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                pre.push(Out::Forwarding(Box::new(t.rec.clone()), t.args.clone()));
            }
        }
        st.by_client.insert(client_id.get().to_owned(), up);
        st.pending.insert(
            up,
            Pending::Client {
                client_id,
                what,
                token,
                trail,
            },
        );
        msg.set_id(&raw(up.to_string()));
        pre.push(Out::Server(Box::new(msg), Some(up)));
        pre
    }
}
