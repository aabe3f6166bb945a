//! Counters: for each limit of the policy that applies to a server (a grant's, when a grant
//! is named and carries one, else the server's own), its usage now.

use super::{grants::grant_error, Kind, OpError, OpResult, Ops};
use portcullis_gateway::relay::system_clock;
use portcullis_policy::{CounterKey, Scope, Window};
use portcullis_store::GrantError;
use serde_json::{json, Value};

impl Ops {
    /// `{server, policy: {name, hash}, grant, limits: [...]}`. `grant` is a grant id or label
    /// (or the subject itself: `static:<label>`, `local`). Session-scoped and `per` limits are
    /// listed without usage, with a note.
    pub fn counters(&self, server: &str, grant: Option<&str>) -> OpResult<Value> {
        self.server_known(server)?;
        // The grant's id (the engine's subject for grant scope) and its policy.
        let (subject, grant_policy) = match (grant, self.gw.grants()) {
            (Some(g), Some(store)) => match store.get(g, Some(server)) {
                Ok(found) => (Some(found.id), found.policy),
                Err(GrantError::NotFound(_)) => (Some(g.to_owned()), None),
                Err(e) => return Err(grant_error(e)),
            },
            (Some(g), None) => (Some(g.to_owned()), None),
            (None, _) => (None, None),
        };
        let policy_name = grant_policy.unwrap_or_else(|| server.to_owned());
        let policies = self.gw.policies();
        let Some((engine, hash)) = policies.get(&policy_name) else {
            return Err(OpError::new(
                Kind::NotFound,
                "unknown_policy",
                format!("no policy named {policy_name:?} is in force, so no limits apply"),
            ));
        };
        let doc = engine.doc();
        let now = system_clock();
        let store = self.gw.counters();
        let rules = doc
            .all_tools
            .iter()
            .map(|r| ("*", r))
            .chain(doc.tools.iter().map(|(n, r)| (n.as_str(), r)));
        let mut out = Vec::new();
        for (tool, rules) in rules {
            for l in &rules.limits {
                let mut entry = json!({
                    "tool": tool,
                    "counter": l.counter,
                    "window": l.window,
                    "scope": l.scope.as_str(),
                    "max": l.max,
                    "used": null,
                    "remaining": null,
                    "resets_at": null,
                });
                let subject = match l.scope {
                    Scope::Grant => match &subject {
                        Some(s) => Some(s.as_str()),
                        None => {
                            entry["note"] = json!("kept per grant: give ?grant=<id or label>");
                            None
                        }
                    },
                    Scope::Server => Some(server),
                    Scope::Global => Some(""),
                    Scope::Session => {
                        entry["note"] = json!("kept per session: not reported");
                        None
                    }
                };
                let window = Window::parse(&l.window);
                match (subject, window) {
                    _ if l.per.is_some() => {
                        entry["note"] = json!(format!(
                            "kept per value of {}: not reported",
                            l.per.as_deref().unwrap_or_default()
                        ));
                    }
                    (Some(s), Some(w)) => {
                        let key = CounterKey::new(l.scope, s, &l.counter, w, None);
                        match store.usage(&key, w, now) {
                            Ok(u) => {
                                entry["used"] = json!(u.used);
                                entry["remaining"] = json!(l.max.saturating_sub(u.used));
                                entry["resets_at"] = json!(u.resets_at);
                            }
                            Err(e) => {
                                entry["note"] = json!(format!("the counter store failed: {e}"))
                            }
                        }
                    }
                    _ => {}
                }
                out.push(entry);
            }
        }
        Ok(json!({
            "server": server,
            "policy": {"name": policy_name, "hash": hash},
            "grant": subject,
            "limits": out,
        }))
    }
}
