//! The relay when the upstream fails: a request that could not be delivered, the connection
//! lost with requests in flight, and the session replayed after a restart — each answered and
//! audited; and the event of a stream reopened, for the metrics.

use super::*;

impl Relay {
    /// A request could not be written upstream: answer the client and refund its quota (the
    /// call certainly had no effect).
    pub fn undeliverable(&self, up: u64, why: &str) -> Vec<Out> {
        let mut st = self.lock();
        let Some(Pending::Client {
            client_id,
            what,
            token,
            trail,
        }) = st.pending.remove(&up)
        else {
            return Vec::new();
        };
        st.by_client.remove(client_id.get());
        if let Some(t) = token {
            st.tokens.remove(&t);
        }
        drop(st);
        if let What::ToolsCall(ticket) = what {
            if !ticket.held.is_empty() {
                let _ = self.cfg.store.refund(&ticket, (self.cfg.clock)());
            }
        }
        let audit = trail.map(|t| {
            let mut t = *t;
            t.rec.decision = AuditDecision::Error;
            t.rec.upstream_status = Some(format!("undeliverable: {why}"));
            Out::Audit(Box::new(t.rec), t.args)
        });
        let answer = Out::Client(
            error_line(
                Some(&client_id),
                codes::INTERNAL_ERROR,
                &format!(
                    "The upstream server is not reachable ({why}); the request was not delivered."
                ),
            )
            .into(),
        );
        audit.into_iter().chain([answer]).collect()
    }

    /// The audit event of the upstream's health changing (`rule`: [`UPSTREAM_LOST`] or
    /// [`UPSTREAM_RESTARTED`]), when auditing.
    pub(super) fn upstream_event(&self, rule: &str, why: &str) -> Option<Out> {
        self.health_record(rule, why)
            .map(|r| Out::Audit(Box::new(r), None))
    }

    /// The record of an upstream health event (`rule`), when anything listens.
    fn health_record(&self, rule: &str, why: &str) -> Option<AuditRecord> {
        self.cfg.audit.then(|| {
            let decision = if rule == UPSTREAM_LOST {
                AuditDecision::Error
            } else {
                AuditDecision::Allow
            };
            let mut r = AuditRecord::new(
                (self.cfg.clock)(),
                self.cfg.server.clone(),
                UPSTREAM,
                decision,
            );
            r.rule = Some(rule.to_owned());
            r.message = Some(why.to_owned());
            r
        })
    }

    /// The event of a new connection to the upstream made ([`UPSTREAM_CONNECTED`]), when
    /// anything listens; like [`Relay::reconnected`], for the sinks that count.
    pub fn connected(&self) -> Option<AuditRecord> {
        self.health_record(UPSTREAM_CONNECTED, "connected")
    }

    /// The event of a stream the server closed being opened again ([`UPSTREAM_RESUMED`] when
    /// it carried `Last-Event-ID`, else [`UPSTREAM_RECONNECTED`]), when anything listens. Not
    /// an [`Out`]: nothing reached a client and nothing is audited; the connection hands it
    /// to the sinks that count ([`crate::events::Events::note`]).
    pub fn reconnected(&self, resumed: bool) -> Option<AuditRecord> {
        if resumed {
            self.health_record(UPSTREAM_RESUMED, "a stream resumed with Last-Event-ID")
        } else {
            self.health_record(UPSTREAM_RECONNECTED, "a stream reopened")
        }
    }

    /// The upstream connection died: every request in flight gets a clear error now. Quota
    /// stays charged (the server may have acted before it died).
    pub fn upstream_lost(&self, why: &str) -> Vec<Out> {
        let mut out: Vec<Out> = self
            .upstream_event(UPSTREAM_LOST, why)
            .into_iter()
            .collect();
        let mut st = self.lock();
        let pending: Vec<(u64, Pending)> = st.pending.drain().collect();
        st.by_client.clear();
        st.tokens.clear();
        st.server_reqs.clear();
        st.server_reqs_rev.clear();
        for (_, p) in pending {
            if let Pending::Client {
                client_id, trail, ..
            } = p
            {
                if let Some(t) = trail {
                    let mut t = *t;
                    t.rec.decision = AuditDecision::Error;
                    t.rec.upstream_status = Some(format!("lost: {why}"));
                    t.rec.upstream_ms = Some(t.started.elapsed().as_millis() as u64);
                    out.push(Out::Audit(Box::new(t.rec), t.args));
                }
                out.push(Out::Client(error_line(Some(&client_id), codes::INTERNAL_ERROR, &format!("The upstream server stopped before answering ({why}); retry once it is back.")).into()));
            }
        }
        out
    }

    /// After an upstream restart: the messages that re-open the session (the client's stored
    /// `initialize`, then `notifications/initialized`), and a `tools/list_changed` for the
    /// client if the server declared it. Empty when the client never initialized.
    pub fn replay_after_restart(&self) -> Vec<Out> {
        let event = self.upstream_event(UPSTREAM_RESTARTED, "the server process was restarted");
        let mut st = self.lock();
        let Some(params) = st.init_params.clone() else {
            return event.into_iter().collect();
        };
        let up = st.next_up;
        st.next_up += 1;
        st.pending.insert(up, Pending::Internal);
        let mut out: Vec<Out> = event.into_iter().collect();
        out.extend([
            Out::Server(
                Box::new(Message::request(
                    &up.to_string(),
                    "initialize",
                    Some(&params),
                )),
                None,
            ),
            Out::Server(
                Box::new(Message::notification("notifications/initialized", None)),
                None,
            ),
        ]);
        if st.tools_list_changed {
            out.push(Out::Client(Line::Parsed(Box::new(Message::notification(
                "notifications/tools/list_changed",
                None,
            )))));
        }
        out
    }
}
