//! What a listed tool means for its pin (pure rules; the relay applies them through
//! `pinned.rs`): first sight
//! pins (`tofu`) or waits for approval (`strict`); a definition that differs from the
//! approved one, or (under `poisoning = "quarantine"`) looks poisoned, is quarantined; a
//! server back on the approved definition is pinned again. And the denial a call to a
//! tool that is not pinned gets.

use crate::definition;
use portcullis_policy::Millis;
use portcullis_store::{Pin, PinState};
use serde_json::Value;

/// `pinning` of a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pinning {
    /// Trust on first use: a tool's first listed definition is its pin. The default.
    #[default]
    Tofu,
    /// A new tool is quarantined until an operator approves it.
    Strict,
    /// No pins.
    Off,
}

/// `poisoning` of a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Poisoning {
    /// A tool with poisoning findings is quarantined like a changed one.
    Quarantine,
    /// Findings are logged and audited; the tool stays usable. The default.
    #[default]
    Warn,
    /// Not looked for.
    Off,
}

impl std::str::FromStr for Pinning {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tofu" => Ok(Pinning::Tofu),
            "strict" => Ok(Pinning::Strict),
            "off" => Ok(Pinning::Off),
            _ => Err(format!("{s:?}: give tofu, strict or off")),
        }
    }
}

impl std::str::FromStr for Poisoning {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "quarantine" => Ok(Poisoning::Quarantine),
            "warn" => Ok(Poisoning::Warn),
            "off" => Ok(Poisoning::Off),
            _ => Err(format!("{s:?}: give quarantine, warn or off")),
        }
    }
}

/// One tool as listed now.
pub struct Seen<'a> {
    /// The server.
    pub server: &'a str,
    /// The tool (an element of `tools/list`'s `tools`).
    pub tool: &'a Value,
    /// The server's `pinning`.
    pub pinning: Pinning,
    /// Poisoning findings that quarantine (empty unless `poisoning = "quarantine"`).
    pub poisoned: Vec<String>,
}

/// The pin to write for `seen` given the stored one (`None`: nothing changes), and whether
/// it newly awaits an operator (to audit and announce).
pub fn judge(existing: Option<&Pin>, seen: &Seen<'_>, now: Millis) -> (Option<Pin>, bool) {
    let name = seen.tool.get("name").and_then(Value::as_str).unwrap_or("");
    let hash = definition::hash(seen.tool);
    let def = definition::definition(seen.tool);
    let poisoned = || {
        format!(
            "the definition looks poisoned: {}",
            seen.poisoned.join("; ")
        )
    };
    let Some(p) = existing else {
        let (state, reason) = if !seen.poisoned.is_empty() {
            (PinState::Quarantined, Some(poisoned()))
        } else if seen.pinning == Pinning::Strict {
            (
                PinState::Pending,
                Some("a new tool (pinning = \"strict\")".to_owned()),
            )
        } else {
            (PinState::Pinned, None)
        };
        let mut pin = Pin::first_sight(seen.server, name, state, &hash, &def, now);
        pin.reason = reason;
        pin.findings = seen.poisoned.clone();
        return (Some(pin), state != PinState::Pinned);
    };
    if p.hash.as_deref() == Some(hash.as_str()) {
        if p.state == PinState::Pinned {
            return (None, false);
        }
        // The server is back on the approved definition.
        let mut back = p.clone();
        back.state = PinState::Pinned;
        back.candidate = None;
        back.candidate_hash = None;
        back.changed.clear();
        back.reason = None;
        back.findings.clear();
        back.updated_at = now;
        return (Some(back), false);
    }
    if p.candidate_hash.as_deref() == Some(hash.as_str()) {
        return (None, false); // already awaiting review, or rejected
    }
    let mut q = p.clone();
    q.state = if p.hash.is_none() && p.state == PinState::Pending {
        PinState::Pending
    } else {
        PinState::Quarantined
    };
    q.changed = p
        .definition
        .as_ref()
        .map(|old| definition::changed_fields(old, &def))
        .unwrap_or_default();
    q.reason = Some(match (q.changed.is_empty(), seen.poisoned.is_empty()) {
        (false, true) => format!("the definition changed ({})", q.changed.join(", ")),
        (false, false) => format!(
            "the definition changed ({}); {}",
            q.changed.join(", "),
            poisoned()
        ),
        (true, false) => poisoned(),
        (true, true) => "a new definition awaits approval".to_owned(),
    });
    q.findings = seen.poisoned.clone();
    q.candidate_hash = Some(hash);
    q.candidate = Some(def);
    q.updated_at = now;
    (Some(q), true)
}

/// The text of the denial of a call to a tool that is not pinned (`None`: it is).
pub fn denial(p: &Pin) -> Option<String> {
    let (tool, server) = (&p.tool, &p.server);
    let review = format!("review it with `portcullis pins diff {server} {tool}`, then `portcullis pins approve {server} {tool}` or `reject`");
    match p.state {
        PinState::Pinned => None,
        PinState::Pending => Some(format!(
            "[POLICY DENIED] {tool} is new on server {server} and pinning is strict; an operator must approve it ({review})"
        )),
        PinState::Rejected => Some(format!(
            "[POLICY DENIED] The definition {server} lists for {tool} was rejected by an operator; calls are refused until the server lists the approved one again"
        )),
        PinState::Quarantined if !p.changed.is_empty() => Some(format!(
            "[POLICY DENIED] The definition of {tool} changed since it was approved ({}); an operator must review it ({review})",
            p.changed.join(", ")
        )),
        PinState::Quarantined => Some(format!(
            "[POLICY DENIED] The definition of {tool} is quarantined ({}); an operator must review it ({review})",
            p.reason.as_deref().unwrap_or("awaiting review")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seen<'a>(tool: &'a Value, pinning: Pinning, poisoned: &[&str]) -> Seen<'a> {
        Seen {
            server: "erp",
            tool,
            pinning,
            poisoned: poisoned.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tofu_pins_then_a_change_is_quarantined_and_a_revert_restores_it() {
        let v1 = json!({"name": "odoo_read", "description": "Reads records.", "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}}});
        let v2 = json!({"name": "odoo_read", "description": "Reads records and mails them.", "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}, "path": {"type": "string"}}}});
        let (p, new) = judge(None, &seen(&v1, Pinning::Tofu, &[]), 1);
        let p = p.unwrap();
        assert_eq!((p.state, new), (PinState::Pinned, false));
        assert_eq!(denial(&p), None);
        assert_eq!(
            judge(Some(&p), &seen(&v1, Pinning::Tofu, &[]), 2),
            (None, false)
        );
        let (q, new) = judge(Some(&p), &seen(&v2, Pinning::Tofu, &[]), 3);
        let q = q.unwrap();
        assert!(new);
        assert_eq!(q.state, PinState::Quarantined);
        assert_eq!(q.changed, ["description", "inputSchema.properties.path"]);
        assert_eq!(
            denial(&q).unwrap().split(" (review").next().unwrap(),
            "[POLICY DENIED] The definition of odoo_read changed since it was approved (description, inputSchema.properties.path); an operator must review it"
        );
        // Listed again unchanged: nothing to write, not announced twice.
        assert_eq!(
            judge(Some(&q), &seen(&v2, Pinning::Tofu, &[]), 4),
            (None, false)
        );
        let (back, new) = judge(Some(&q), &seen(&v1, Pinning::Tofu, &[]), 5);
        assert_eq!((back.unwrap().state, new), (PinState::Pinned, false));
    }

    #[test]
    fn strict_waits_and_poisoned_is_quarantined_at_first_sight() {
        let t = json!({"name": "add", "description": "Adds."});
        let (p, new) = judge(None, &seen(&t, Pinning::Strict, &[]), 1);
        let p = p.unwrap();
        assert_eq!((p.state, new), (PinState::Pending, true));
        assert!(denial(&p).unwrap().contains("pinning is strict"));
        let (q, new) = judge(
            None,
            &seen(&t, Pinning::Tofu, &["description asks for secrets"]),
            1,
        );
        let q = q.unwrap();
        assert_eq!((q.state, new), (PinState::Quarantined, true));
        assert!(q.hash.is_none() && q.candidate_hash.is_some());
        assert!(denial(&q)
            .unwrap()
            .contains("looks poisoned: description asks for secrets"));
    }
}
