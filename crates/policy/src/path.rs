//! Condition paths: `args.a.b[0].c`, (ext) `args.files[*]` for every element of an array,
//! and (ext) `grant.label`, `grant.id`, `session.client_name`, `principal.*` (an OAuth caller's
//! issuer, subject, client_id, scopes, groups). Parsed once at load into steps;
//! resolved per call without allocation for `args.*`.

use crate::engine::Identity;
use serde_json::Value;
use std::borrow::Cow;

/// Where a path starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// The call's `arguments` object.
    Args,
    /// The grant's id (ext).
    GrantId,
    /// The grant's label (ext).
    GrantLabel,
    /// The MCP client's name from `initialize`/`_meta` (ext).
    SessionClientName,
    /// (ext) A member of the OAuth principal: `principal.subject`, `principal.groups`, …
    Principal,
}

/// The members of `principal.*` (strings, but `scopes` and `groups`: arrays of strings).
pub const PRINCIPAL_FIELDS: &[&str] = &["issuer", "subject", "client_id", "scopes", "groups"];

/// One step into the arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Key(Box<str>),
    /// An array element.
    Index(usize),
    /// (ext) `[*]`: every element of an array (at most one per path).
    Each,
}

/// Why a path with `[*]` has no elements to judge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoElements {
    /// The array is absent or `null`.
    Missing,
    /// The value is there but not an array (its JSON type).
    NotArray(&'static str),
    /// The array is empty.
    Empty,
}

/// A parsed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    root: Root,
    steps: Vec<Step>,
    text: Box<str>,
}

/// The roots a path may start with, for messages.
pub const ROOTS: &[&str] = &[
    "args.",
    "grant.id",
    "grant.label",
    "session.client_name",
    "principal.",
];

impl Path {
    /// Parses a path, or explains what is wrong with it.
    pub fn parse(text: &str) -> Result<Path, String> {
        let root_of = |root| Path {
            root,
            steps: Vec::new(),
            text: text.into(),
        };
        match text {
            "grant.id" => return Ok(root_of(Root::GrantId)),
            "grant.label" => return Ok(root_of(Root::GrantLabel)),
            "session.client_name" => return Ok(root_of(Root::SessionClientName)),
            _ => {}
        }
        if let Some(field) = text.strip_prefix("principal.") {
            if !PRINCIPAL_FIELDS.contains(&field) {
                return Err(format!(
                    "path {text:?}: the principal's members are principal.{}",
                    PRINCIPAL_FIELDS.join(", principal.")
                ));
            }
            return Ok(Path {
                root: Root::Principal,
                steps: vec![Step::Key(field.into())],
                text: text.into(),
            });
        }
        let Some(rest) = text.strip_prefix("args.") else {
            let hint = if text.starts_with("grant.") || text.starts_with("session.") {
                "the identity paths are grant.id, grant.label, session.client_name and principal.*"
                    .to_string()
            } else if text.starts_with("state.") {
                "state.* paths are Intercept's; in policy v1 counters are `limits` entries"
                    .to_string()
            } else if !text.contains('.') && !text.is_empty() {
                format!("did you mean \"args.{text}\"?")
            } else {
                "paths start with args. (or grant.id, grant.label, session.client_name, principal.*)"
                    .to_string()
            };
            return Err(format!("path {text:?} does not start with args. ({hint})"));
        };
        let mut steps = Vec::new();
        for seg in rest.split('.') {
            let (name, mut idx) = match seg.find('[') {
                Some(i) => (&seg[..i], &seg[i..]),
                None => (seg, ""),
            };
            if name.is_empty() {
                return Err(format!("path {text:?} has an empty field name"));
            }
            if name.contains(']') {
                return Err(format!("path {text:?} has a stray ']'"));
            }
            steps.push(Step::Key(name.into()));
            while !idx.is_empty() {
                let close = idx
                    .find(']')
                    .ok_or_else(|| format!("path {text:?} has an unclosed '['"))?;
                let n = &idx[1..close];
                if n == "*" {
                    if steps.contains(&Step::Each) {
                        return Err(format!("path {text:?} has more than one [*]"));
                    }
                    steps.push(Step::Each);
                    idx = &idx[close + 1..];
                    if !idx.is_empty() && !idx.starts_with('[') {
                        return Err(format!("path {text:?}: expected '.' or '[' after ']'"));
                    }
                    continue;
                }
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 9 {
                    return Err(format!(
                        "path {text:?}: array index {n:?} must be a non-negative integer or *"
                    ));
                }
                steps.push(Step::Index(n.parse().expect("digits")));
                idx = &idx[close + 1..];
                if !idx.is_empty() && !idx.starts_with('[') {
                    return Err(format!("path {text:?}: expected '.' or '[' after ']'"));
                }
            }
        }
        Ok(Path {
            root: Root::Args,
            steps,
            text: text.into(),
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Where the path starts.
    pub fn root(&self) -> Root {
        self.root
    }

    /// The steps after `args.` (empty for identity paths but `principal.*`, whose one step is
    /// the member).
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether the path has a `[*]` step (then read it with [`Path::each`]).
    pub fn has_each(&self) -> bool {
        self.steps.contains(&Step::Each)
    }

    /// The path with its `[*]` replaced by an index: `args.files[2]`.
    pub fn element(&self, i: usize) -> String {
        self.text.replacen("[*]", &format!("[{i}]"), 1)
    }

    /// The path up to its `[*]` (`args.lines` for `args.lines[*].qty`).
    pub fn array_part(&self) -> &str {
        self.text.split("[*]").next().unwrap_or(&self.text)
    }

    /// Resolves a path with a `[*]` step into the value below each element of the array
    /// (`None` where that element lacks it), or says why there is no element to judge.
    pub fn each<'a>(&self, args: Option<&'a Value>) -> Result<Vec<Option<&'a Value>>, NoElements> {
        let Some(at) = self.steps.iter().position(|s| *s == Step::Each) else {
            // No `[*]`: the path's one value.
            return Ok(vec![walk(args, &self.steps)]);
        };
        let (head, tail) = self.steps.split_at(at);
        let array = walk(args, head).filter(|v| !v.is_null());
        match array {
            None => Err(NoElements::Missing),
            Some(Value::Array(a)) if a.is_empty() => Err(NoElements::Empty),
            Some(Value::Array(a)) => Ok(a.iter().map(|e| walk(Some(e), &tail[1..])).collect()),
            Some(other) => Err(NoElements::NotArray(crate::json::type_name(other))),
        }
    }

    /// Resolves the path for a call. `None` when absent (missing member, index out of range,
    /// stepping into a non-container, or an identity field the caller does not have); a path
    /// with `[*]` is read with [`Path::each`] instead and resolves to `None` here.
    pub fn resolve<'a>(
        &self,
        args: Option<&'a Value>,
        who: &Identity<'_>,
    ) -> Option<Cow<'a, Value>> {
        let owned = |s: &str| Some(Cow::Owned(Value::String(s.to_owned())));
        match self.root {
            Root::GrantId => return owned(who.grant_id),
            Root::GrantLabel => return owned(who.grant_label),
            Root::SessionClientName => return who.client_name.and_then(owned),
            Root::Principal => {
                return walk(who.principal, &self.steps)
                    .filter(|v| !v.is_null())
                    .map(|v| Cow::Owned(v.clone()))
            }
            Root::Args => {}
        }
        walk(args, &self.steps).map(Cow::Borrowed)
    }
}

fn walk<'a>(from: Option<&'a Value>, steps: &[Step]) -> Option<&'a Value> {
    let mut cur = from?;
    for step in steps {
        cur = match (step, cur) {
            (Step::Key(k), Value::Object(m)) => m.get(&**k)?,
            (Step::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn who() -> Identity<'static> {
        Identity {
            grant_id: "g1",
            grant_label: "alice",
            session_id: "s1",
            client_name: None,
            server: "odoo",
            principal: None,
        }
    }

    #[test]
    fn principal_paths_read_the_oauth_principal_and_are_absent_for_grants() {
        let p = json!({"issuer": "https://id", "subject": "u1", "client_id": null,
                       "scopes": ["mcp"], "groups": ["finance"]});
        let mut w = who();
        w.principal = Some(&p);
        let r = |t: &str, w: &Identity| {
            Path::parse(t)
                .unwrap()
                .resolve(None, w)
                .map(|v| v.into_owned())
        };
        assert_eq!(r("principal.subject", &w), Some(json!("u1")));
        assert_eq!(r("principal.groups", &w), Some(json!(["finance"])));
        assert_eq!(r("principal.client_id", &w), None);
        assert_eq!(r("principal.subject", &who()), None);
        let e = Path::parse("principal.email").unwrap_err();
        assert!(e.contains("principal.subject"), "{e}");
        assert!(Path::parse("principal.groups[0]").is_err());
    }

    #[test]
    fn parses_and_resolves() {
        let args = json!({"a": {"b": [10, {"c": "x"}]}, "n": null});
        let r = |p: &str| {
            Path::parse(p)
                .unwrap()
                .resolve(Some(&args), &who())
                .map(Cow::into_owned)
        };
        assert_eq!(r("args.a.b[0]"), Some(json!(10)));
        assert_eq!(r("args.a.b[1].c"), Some(json!("x")));
        assert_eq!(r("args.a.b[2]"), None);
        assert_eq!(r("args.a.b.c"), None);
        assert_eq!(r("args.a[0]"), None);
        assert_eq!(r("args.n"), Some(json!(null)));
        assert_eq!(r("args.missing"), None);
        assert_eq!(r("grant.label"), Some(json!("alice")));
        assert_eq!(r("session.client_name"), None);
        assert_eq!(Path::parse("args.m[0][1]").unwrap().steps().len(), 3);
        assert_eq!(r("args.a.b[*]"), None, "[*] paths are read with each()");
    }

    #[test]
    fn every_element() {
        let args =
            json!({"files": ["/a", "/b"], "lines": [{"qty": 1}, {}], "e": [], "s": "x", "n": null});
        let each = |p: &str| Path::parse(p).unwrap().each(Some(&args));
        assert_eq!(
            each("args.files[*]"),
            Ok(vec![Some(&json!("/a")), Some(&json!("/b"))])
        );
        assert_eq!(each("args.lines[*].qty"), Ok(vec![Some(&json!(1)), None]));
        assert_eq!(each("args.e[*]"), Err(NoElements::Empty));
        assert_eq!(each("args.missing[*]"), Err(NoElements::Missing));
        assert_eq!(each("args.n[*]"), Err(NoElements::Missing));
        assert_eq!(each("args.s[*]"), Err(NoElements::NotArray("string")));
        let p = Path::parse("args.lines[*].qty").unwrap();
        assert!(p.has_each());
        assert_eq!(p.element(3), "args.lines[3].qty");
        assert_eq!(p.array_part(), "args.lines");
        assert!(Path::parse("args.m[*][*]")
            .unwrap_err()
            .contains("more than one"));
        assert!(Path::parse("args.m[*]x").is_err());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "x",
            "args",
            "args.",
            "args..a",
            "args.a[",
            "args.a[x]",
            "args.a[-1]",
            "args.a]",
            "args.a[0]b",
            "state.x.y",
            "grant.name",
            "foo.bar",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Path::parse("amount")
            .unwrap_err()
            .contains("did you mean \"args.amount\""));
    }
}
