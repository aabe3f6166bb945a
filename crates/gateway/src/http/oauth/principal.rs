//! The principal an access token names (issuer, subject, client, scopes, groups) and the
//! `[[oauth.rules]]` that map it to a policy: first match wins, no match is refused.

use crate::config::OAuthRule;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Who a validated access token speaks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    /// The token's `iss` (the configured issuer, exactly).
    pub issuer: String,
    /// The token's `sub`.
    pub subject: String,
    /// The OAuth client the token was issued to (`client_id`, else `azp`).
    pub client_id: Option<String>,
    /// The token's scopes (`scope`, space-separated, or `scp`).
    pub scopes: Vec<String>,
    /// The values of the configured groups claim.
    pub groups: Vec<String>,
    /// The fields above as one JSON object, built once: what a policy's `principal.*` paths
    /// read.
    pub view: Value,
}

/// One string or an array of strings (other values are ignored).
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

impl Principal {
    /// The principal of a token whose signature, issuer, audience and times were checked;
    /// `Err` names what is missing.
    pub(super) fn from_claims(
        claims: &Map<String, Value>,
        groups_claim: &str,
    ) -> Result<Principal, String> {
        let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
        let issuer = text("iss").ok_or("the token has no iss claim")?;
        let subject = text("sub")
            .filter(|s| !s.is_empty())
            .ok_or("the token has no sub claim: the gateway cannot tell whom it speaks for")?;
        let scopes = match claims.get("scope") {
            Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
            _ => strings(claims.get("scp")),
        };
        let client_id = text("client_id").or_else(|| text("azp"));
        let groups = strings(claims.get(groups_claim));
        let view = serde_json::json!({
            "issuer": issuer,
            "subject": subject,
            "client_id": client_id,
            "scopes": scopes,
            "groups": groups,
        });
        Ok(Principal {
            issuer,
            subject,
            client_id,
            scopes,
            groups,
            view,
        })
    }

    /// A stable id for counters and sessions (`oauth_` and 16 hex digits of SHA-256 over the
    /// issuer and subject): `scope: "grant"` limits count per principal.
    pub fn grant_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.issuer.as_bytes());
        h.update([0]);
        h.update(self.subject.as_bytes());
        let d = h.finalize();
        let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("oauth_{hex}")
    }

    /// The label the audit log and `grant.label` see: `oauth:<sub>`.
    pub fn label(&self) -> String {
        format!("oauth:{}", self.subject)
    }

    /// Writes the issuer, subject and client id into an audit record.
    pub fn audit(&self, rec: &mut portcullis_store::AuditRecord) {
        rec.issuer = Some(self.issuer.clone());
        rec.subject = Some(self.subject.clone());
        rec.client_id = self.client_id.clone();
    }

    /// The scopes of `needed` this principal lacks.
    pub(super) fn missing_scopes<'a>(&self, needed: &'a [String]) -> Vec<&'a str> {
        needed
            .iter()
            .filter(|s| !self.scopes.contains(s))
            .map(String::as_str)
            .collect()
    }

    fn matches(&self, rule: &OAuthRule, server: &str) -> bool {
        (rule.servers.is_empty() || rule.servers.iter().any(|s| s == server))
            && rule.subject.as_ref().is_none_or(|s| *s == self.subject)
            && rule
                .client_id
                .as_ref()
                .is_none_or(|c| Some(c) == self.client_id.as_ref())
            && rule.scope.as_ref().is_none_or(|s| self.scopes.contains(s))
            && rule.group.as_ref().is_none_or(|g| self.groups.contains(g))
    }
}

/// The policy of the first rule `p` matches on `server`, with the rule's index.
pub(super) fn policy_for<'r>(
    rules: &'r [OAuthRule],
    server: &str,
    p: &Principal,
) -> Option<(usize, &'r str)> {
    rules
        .iter()
        .enumerate()
        .find(|(_, r)| p.matches(r, server))
        .map(|(i, r)| (i, r.policy.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(policy: &str, f: impl FnOnce(&mut OAuthRule)) -> OAuthRule {
        let mut r = OAuthRule {
            policy: policy.into(),
            servers: Vec::new(),
            subject: None,
            client_id: None,
            scope: None,
            group: None,
        };
        f(&mut r);
        r
    }

    #[test]
    fn claims_to_principal() {
        let c = json!({"iss": "https://id", "sub": "alice", "azp": "app", "scope": "mcp:read  mcp:write", "roles": ["admin", 3]});
        let p = Principal::from_claims(c.as_object().unwrap(), "roles").unwrap();
        assert_eq!(p.client_id.as_deref(), Some("app"));
        assert_eq!(p.scopes, ["mcp:read", "mcp:write"]);
        assert_eq!(p.groups, ["admin"]);
        assert_eq!(p.view["groups"], json!(["admin"]));
        assert_eq!(p.view["client_id"], json!("app"));
        assert_eq!(p.label(), "oauth:alice");
        assert!(p.grant_id().starts_with("oauth_") && p.grant_id().len() == 22);
        let bob = Principal {
            subject: "bob".into(),
            ..p.clone()
        };
        assert_ne!(
            p.grant_id(),
            bob.grant_id(),
            "one counter scope per subject"
        );
        let c = json!({"iss": "https://id", "scp": ["a"], "client_id": "c"});
        assert!(Principal::from_claims(c.as_object().unwrap(), "groups")
            .unwrap_err()
            .contains("no sub"));
    }

    #[test]
    fn first_matching_rule_wins_and_nothing_matches_by_default() {
        let p = Principal {
            issuer: "https://id".into(),
            subject: "alice".into(),
            client_id: Some("app".into()),
            scopes: vec!["mcp:read".into()],
            groups: vec!["staff".into()],
            ..Principal::default()
        };
        let rules = vec![
            rule("admin", |r| r.group = Some("admins".into())),
            rule("other", |r| r.servers = vec!["other".into()]),
            rule("reader", |r| {
                r.scope = Some("mcp:read".into());
                r.client_id = Some("app".into());
            }),
            rule("everyone", |_| {}),
        ];
        assert_eq!(policy_for(&rules, "srv", &p), Some((2, "reader")));
        assert_eq!(policy_for(&rules, "other", &p), Some((1, "other")));
        assert_eq!(policy_for(&rules[..2], "srv", &p), None);
        assert_eq!(
            p.missing_scopes(&["mcp:read".into(), "mcp:write".into()]),
            ["mcp:write"]
        );
    }
}
