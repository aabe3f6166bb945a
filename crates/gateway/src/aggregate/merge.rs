//! A page of a merged list: each member's page as the client sees it (tools and prompts
//! renamed `server__name` and remembered, resources and templates remembered by URI for
//! routing) and the cursor to the next page (`list.rs`).

use super::list::{self, Kind};
use super::{names, Aggregate, LIST_WAIT};
use portcullis_mcp::{codes, Message};
use portcullis_policy::sync::LockExt;
use portcullis_store::AuditDecision;
use serde_json::{json, Value};
use std::sync::Arc;

impl Aggregate {
    /// A page of a merged list: the member the cursor names (the first without one), at its
    /// own cursor; the next cursor names the same member at its next page, or the next member
    /// that serves the list. A member that fails is left out (logged, audited).
    pub(super) async fn list(self: Arc<Self>, kind: Kind, id: String, msg: Message) {
        let params = msg.value("params").unwrap_or_else(|| json!({}));
        let (mut i, mut upstream) = match params.get("cursor") {
            None | Some(Value::Null) => (0, None),
            Some(Value::String(c)) => match self.cursors.decode(kind, c) {
                Some((i, u)) if i < self.members.len() => (i, u),
                _ => {
                    self.audit(
                        usize::MAX,
                        kind.method(),
                        None,
                        AuditDecision::Deny,
                        Some("(invalid cursor)"),
                        "a cursor this endpoint did not give".into(),
                    )
                    .await;
                    return self.fail(&id, codes::INVALID_PARAMS, "invalid cursor: not one this endpoint gave (list again from the start); nothing was forwarded");
                }
            },
            Some(_) => {
                return self.fail(
                    &id,
                    codes::INVALID_PARAMS,
                    "cursor must be a string; nothing was forwarded",
                )
            }
        };
        let mut entries: Vec<Value> = Vec::new();
        let mut next = None;
        while i < self.members.len() {
            let m = &self.members[i];
            if m.live().is_none() || !m.has(kind.capability()) {
                if m.live().is_none() && kind == Kind::Tools {
                    tracing::info!(server = %m.name, "server {:?} is down: its tools are not listed", m.name);
                }
                i += 1;
                upstream = None;
                continue;
            }
            let mut p = json!({});
            if let Some(c) = &upstream {
                p["cursor"] = json!(c);
            }
            match self.ask(i, kind.method(), &p, LIST_WAIT).await {
                Ok(result) => {
                    for e in result
                        .get(kind.field())
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                    {
                        if let Some(e) = self.rename(kind, i, e) {
                            entries.push(e);
                        }
                    }
                    if let Some(c) = result.get("nextCursor").and_then(Value::as_str) {
                        next = Some(self.cursors.encode(kind, i, Some(c)));
                        break;
                    }
                }
                Err(why) if kind == Kind::Tools => {
                    tracing::warn!(server = %m.name, "{} of server {:?} failed ({why}): its tools are left out of this list", kind.method(), m.name);
                    self.audit(i, kind.method(), None, AuditDecision::Error, None, format!("{} failed ({why}): the server's entries are left out of the aggregated list", kind.method())).await;
                }
                Err(why) => {
                    tracing::info!(server = %m.name, "{} of server {:?} failed ({why}): left out", kind.method(), m.name)
                }
            }
            i += 1;
            upstream = None;
            // One member's page per answer; an empty page moves on at once.
            if !entries.is_empty() {
                let rest = (i..self.members.len()).find(|&j| {
                    self.members[j].live().is_some() && self.members[j].has(kind.capability())
                });
                next = rest.map(|j| self.cursors.encode(kind, j, None));
                break;
            }
        }
        let mut result = json!({ kind.field(): entries });
        if let Some(c) = next {
            result["nextCursor"] = json!(c);
        }
        self.answer(&id, &result);
    }

    /// An entry of member `i`'s list as the client sees it: tools and prompts renamed (and
    /// remembered), resources and templates remembered by URI; `None` when it collides.
    pub(super) fn rename(&self, kind: Kind, i: usize, mut e: Value) -> Option<Value> {
        let m = &self.members[i];
        match kind {
            Kind::Tools | Kind::Prompts => {
                let own = e.get("name")?.as_str()?.to_owned();
                let name = names::join(&m.prefix, &own);
                let table = if kind == Kind::Tools {
                    &self.tools
                } else {
                    &self.prompts
                };
                if !table.lock_or_recover().insert(&name, i, &own) {
                    tracing::warn!(server = %m.name, "{own:?} of server {:?} would be named {name:?}, which another entry has: left out", m.name);
                    return None;
                }
                e["name"] = json!(name);
                let meta = e
                    .as_object_mut()?
                    .entry("_meta")
                    .or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert("portcullis/server".into(), json!(m.name));
                    meta.insert("portcullis/name".into(), json!(own));
                }
                Some(e)
            }
            Kind::Resources => {
                let uri = e.get("uri")?.as_str()?.to_owned();
                let mut uris = self.uris.lock_or_recover();
                match uris.get(&uri) {
                    Some(&o) if o != i => {
                        tracing::warn!(server = %m.name, "resource {uri:?} is also listed by server {:?}: left out", self.members[o].name);
                        return None;
                    }
                    _ => uris.insert(uri, i),
                };
                Some(e)
            }
            Kind::Templates => {
                let t = e.get("uriTemplate")?.as_str()?;
                let p = list::template_prefix(t).to_owned();
                let mut ts = self.templates.lock_or_recover();
                if !ts.iter().any(|(q, j)| *q == p && *j == i) {
                    ts.push((p, i));
                }
                Some(e)
            }
        }
    }

    /// Which member a resource URI belongs to: listed URIs first, then the longest template
    /// prefix that matches.
    pub(super) fn uri_owner(&self, uri: &str) -> Option<usize> {
        if let Some(&i) = self.uris.lock_or_recover().get(uri) {
            return Some(i);
        }
        self.templates
            .lock_or_recover()
            .iter()
            .filter(|(p, _)| !p.is_empty() && uri.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, i)| *i)
    }
}
