//! The relay and the server's tool listings: which calls must wait for a fresh listing, the
//! gateway's own `tools/list` request, and each listing recorded (names, schemas) and judged
//! against the tool pins.

use super::*;

impl Relay {
    /// The tool a client line calls, when that call must wait for a listing of the gateway's
    /// own: under `validate_arguments = "enforce"` its schema has not been seen, or under
    /// pinning it has not been judged since the server's tools last changed — in either case
    /// only while no whole listing has been seen since (so a bogus name costs one listing, not
    /// one each). The link then fetches the server's listing ([`Relay::listing_request`])
    /// before passing the line on. `None` otherwise (cheaply when neither applies).
    pub fn needs_listing(&self, msg: &Message) -> Option<String> {
        let enforce = match self.validate.as_ref() {
            Some((schemas, ValidateArguments::Enforce)) => Some(schemas),
            _ => None,
        };
        if enforce.is_none() && self.pins.is_none() {
            return None;
        }
        if msg.method() != Some("tools/call") || msg.kind() != Kind::Request {
            return None;
        }
        let tool: String = msg.peek_as("params", &["name"])?;
        let server = &self.cfg.server;
        let schema = enforce.is_some_and(|s| s.worth_listing(server, &tool));
        let pin = self
            .pins
            .as_ref()
            .is_some_and(|(p, _)| p.worth_listing(server, &tool));
        (schema || pin).then_some(tool)
    }

    /// Whether a fetched listing has told the relay what a call to `tool` needs: its schema
    /// (under `enforce`) and a fresh judgement of its pin.
    pub fn knows_tool(&self, tool: &str) -> bool {
        let server = &self.cfg.server;
        let schema = match &self.validate {
            Some((s, ValidateArguments::Enforce)) => s.knows(server, tool),
            _ => true,
        };
        schema
            && self
                .pins
                .as_ref()
                .is_none_or(|(p, _)| p.fresh(server, tool))
    }

    /// Portcullis' own `tools/list` request (one page, from `cursor`), carrying the version
    /// `_meta` of the client line `like` (for a server of the stateless era): the line, its
    /// upstream id, and where the page's `nextCursor` will be handed once it is recorded.
    pub fn listing_request(
        &self,
        cursor: Option<&str>,
        like: &Message,
    ) -> (
        Box<Message>,
        u64,
        tokio::sync::oneshot::Receiver<Option<String>>,
    ) {
        let mut params = serde_json::Map::new();
        if let Some(c) = cursor {
            params.insert("cursor".into(), Value::from(c));
        }
        let meta = like
            .value("params")
            .and_then(|mut p| p.get_mut("_meta").map(Value::take))
            .and_then(|m| match m {
                Value::Object(mut o) => {
                    o.retain(|k, _| k.starts_with("io.modelcontextprotocol/"));
                    (!o.is_empty()).then_some(Value::Object(o))
                }
                _ => None,
            });
        if let Some(m) = meta {
            params.insert("_meta".into(), m);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut st = self.lock();
        let up = st.next_up;
        st.next_up += 1;
        st.pending.insert(up, Pending::Listing(tx));
        let req = Message::request(&up.to_string(), "tools/list", Some(&Value::Object(params)));
        (Box::new(req), up, rx)
    }

    /// Records a `tools/list` answer as the server sent it: the names (metrics), the input
    /// schemas (argument checks), and each tool judged against its pin. Returns the tools to
    /// hide from the client and the audit records of what the pins found.
    pub(super) fn record_listing(&self, msg: &Message) -> (HashSet<String>, Vec<Out>) {
        if let Some(listed) = &self.listed {
            record_listed(listed, &self.cfg.server, msg);
        }
        if let Some((schemas, _)) = &self.validate {
            record_schemas(schemas, &self.cfg.server, msg);
        }
        match &self.pins {
            Some((pins, settings)) => self.judge_listing(pins, *settings, msg),
            None => (HashSet::new(), Vec::new()),
        }
    }

    /// Judges a `tools/list` page against the pins (see [`crate::pinned`]).
    pub(super) fn judge_listing(
        &self,
        pins: &ToolPins,
        settings: PinSettings,
        msg: &Message,
    ) -> (HashSet<String>, Vec<Out>) {
        #[derive(serde::Deserialize)]
        struct Page {
            tools: Vec<Value>,
            #[serde(rename = "nextCursor")]
            next_cursor: Option<Value>,
        }
        let Some(page) = msg
            .get("result")
            .and_then(|r| serde_json::from_str::<Page>(r.get()).ok())
        else {
            return (HashSet::new(), Vec::new());
        };
        let now = (self.cfg.clock)();
        let server = &self.cfg.server;
        let judged = pins.judge_page(
            server,
            settings,
            &page.tools,
            page.next_cursor.is_none(),
            now,
        );
        let mut audits = Vec::new();
        if self.cfg.audit {
            for p in &judged.awaiting {
                let mut r = AuditRecord::new(
                    now,
                    server.clone(),
                    crate::pinned::PIN_METHOD,
                    AuditDecision::Hidden,
                );
                r.tool = Some(p.tool.clone());
                r.rule = Some(
                    match p.state {
                        portcullis_store::PinState::Pending => crate::pinned::RULE_PENDING,
                        _ => crate::pinned::RULE_QUARANTINED,
                    }
                    .into(),
                );
                r.message = Some(format!(
                    "{} {}: {}",
                    p.tool,
                    p.state,
                    p.reason.as_deref().unwrap_or("awaits review")
                ));
                audits.push(Out::Audit(Box::new(r), None));
            }
            for (tool, findings) in &judged.warnings {
                let mut r = AuditRecord::new(
                    now,
                    server.clone(),
                    crate::pinned::PIN_METHOD,
                    AuditDecision::Allow,
                );
                r.tool = Some(tool.clone());
                r.rule = Some("(pin poisoning warning)".into());
                r.message = Some(format!(
                    "the definition looks poisoned (poisoning = \"warn\": still callable): {}",
                    findings.join("; ")
                ));
                audits.push(Out::Audit(Box::new(r), None));
            }
        }
        (judged.blocked, audits)
    }

    /// What the pins say of a call to `tool` (`None`: pass on to the policy).
    pub(super) fn pin_check(&self, tool: &str) -> Option<Denial> {
        let (pins, _) = self.pins.as_ref()?;
        match pins.call(&self.cfg.server, tool, (self.cfg.clock)()) {
            Verdict::Pass => None,
            Verdict::Deny(d) => Some(d),
        }
    }
}
