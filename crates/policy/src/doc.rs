//! The policy document: its data model, the parser that checks every key and value with a
//! locator, and the serializer (which writes a document the parser reads back unchanged).

use crate::json::{self, type_name};
use crate::norm::{self, HostPattern, PathStyle};
use crate::path::Path;
use crate::window::{self, Scope, Window};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;

/// Keys of the top-level document.
pub const TOP_KEYS: &[&str] = &[
    "version",
    "default",
    "hide",
    "hide_denied",
    "all_tools",
    "tools",
    "mode",
    "description",
];
/// Keys of a rule object (`tools.<t>` and `all_tools`).
pub const RULE_KEYS: &[&str] = &["require", "deny_if", "limits", "approve_if"];
/// Keys of a `require` / `deny_if` entry.
pub const ENTRY_KEYS: &[&str] = &["conditions", "on_deny"];
/// Keys of an `approve_if` entry.
pub const APPROVAL_KEYS: &[&str] = &["conditions", "reason", "timeout", "hold"];
/// Keys of a condition. (ext) `style` and `base` belong to the path operators, `schemes` to
/// the URL operators.
pub const CONDITION_KEYS: &[&str] = &["path", "op", "value", "style", "base", "schemes"];
/// Keys of a `limits` entry. `on_deny` is a Portcullis extension (a message shown before the
/// engine's own limit text).
pub const LIMIT_KEYS: &[&str] = &[
    "counter",
    "window",
    "max",
    "scope",
    "per",
    "increment",
    "increment_from",
    "on_deny",
];
/// Window names (besides rolling durations such as `"90s"`).
pub const WINDOWS: &[&str] = &["second", "minute", "hour", "day", "week", "month"];
/// Scope names.
pub const SCOPES: &[&str] = &["grant", "session", "server", "global"];
/// Operator names.
pub const OPS: &[&str] = &[
    "eq",
    "neq",
    "lt",
    "lte",
    "gt",
    "gte",
    "in",
    "not_in",
    "contains",
    "regex",
    "exists",
    "path_under",
    "path_not_under",
    "url_host_in",
    "url_host_not_in",
];

/// Largest compiled regex, in bytes (the `regex` crate's size limit).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Default approval timeout when an `approve_if` entry gives none.
pub const DEFAULT_APPROVAL_TIMEOUT: &str = "15m";

/// A whole policy document (version "1").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyDoc {
    /// Always `"1"`.
    pub version: String,
    /// (ext) Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// (ext) Enforce (default) or shadow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// What happens to a tool not listed under `tools`.
    pub default: Default,
    /// Tools removed from `tools/list` and denied; `"*"` hides all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hide: Vec<String>,
    /// (ext) Also remove from `tools/list` every tool the policy can never allow (see
    /// [`crate::Engine::is_listed`]); calls to them are denied as without it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hide_denied: bool,
    /// Rules applied to every call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_tools: Option<Rules>,
    /// Tool name → rules, in document order.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "ser_tools")]
    pub tools: Vec<(String, Rules)>,
}

fn ser_tools<S: Serializer>(tools: &[(String, Rules)], s: S) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(tools.len()))?;
    for (k, v) in tools {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

/// `default`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Default {
    /// Unlisted tools are allowed.
    Allow,
    /// Unlisted tools are denied.
    Deny,
}

/// (ext) `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Decisions are enforced.
    Enforce,
    /// Decisions are evaluated and audited, but every call is forwarded.
    Shadow,
}

/// A rule object.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rules {
    /// Denied unless all conditions of each entry hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<Entry>,
    /// Denied when all conditions of an entry hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny_if: Vec<Entry>,
    /// Counters charged by the call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<Limit>,
    /// (ext) Human approval needed when all conditions of an entry hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approve_if: Vec<Approval>,
}

/// A `require` or `deny_if` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// Message for the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_deny: Option<String>,
}

/// (ext) An `approve_if` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Approval {
    /// All must hold (empty: always).
    pub conditions: Vec<Condition>,
    /// Why approval is needed, shown to agent and approver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long an approval request stays open (duration string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// (ext) How long the gateway keeps a matching request open waiting for the decision
    /// (duration string; `"0s"` answers at once). Overrides the server's `hold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
}

/// A condition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Condition {
    /// `args.…`, `grant.…` or `session.…`.
    pub path: String,
    /// Operator.
    pub op: Op,
    /// Operand.
    pub value: Value,
    /// (ext) Path operators: which characters separate segments (default both `/` and `\`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_style")]
    pub style: Option<PathStyle>,
    /// (ext) Path operators: the absolute path a relative argument is resolved against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// (ext) URL operators: the schemes a URL argument may have (default `http`, `https`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schemes: Option<Vec<String>>,
}

fn ser_style<S: Serializer>(s: &Option<PathStyle>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.unwrap_or_default().as_str())
}

impl Condition {
    /// A condition with no (ext) options.
    pub fn new(path: impl Into<String>, op: Op, value: Value) -> Condition {
        Condition {
            path: path.into(),
            op,
            value,
            style: None,
            base: None,
            schemes: None,
        }
    }
}

/// Condition operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Op {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    NotIn,
    Contains,
    Regex,
    Exists,
    PathUnder,
    PathNotUnder,
    UrlHostIn,
    UrlHostNotIn,
}

impl Op {
    /// Parses an operator name.
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "neq" => Op::Neq,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "contains" => Op::Contains,
            "regex" => Op::Regex,
            "exists" => Op::Exists,
            "path_under" => Op::PathUnder,
            "path_not_under" => Op::PathNotUnder,
            "url_host_in" => Op::UrlHostIn,
            "url_host_not_in" => Op::UrlHostNotIn,
            _ => return None,
        })
    }

    /// The operator's name in the document.
    pub fn as_str(self) -> &'static str {
        OPS[self as usize]
    }

    /// (ext) `path_under` / `path_not_under`.
    pub fn is_path_op(self) -> bool {
        matches!(self, Op::PathUnder | Op::PathNotUnder)
    }

    /// (ext) `url_host_in` / `url_host_not_in`.
    pub fn is_url_op(self) -> bool {
        matches!(self, Op::UrlHostIn | Op::UrlHostNotIn)
    }
}

/// A `limits` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Limit {
    /// Counter name; the same name under the same scope is one counter.
    pub counter: String,
    /// Window: calendar name or rolling duration, as written.
    pub window: String,
    /// Most units per window.
    pub max: u64,
    /// Who shares the counter.
    #[serde(serialize_with = "ser_scope")]
    pub scope: Scope,
    /// (ext) Path whose value further keys the counter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per: Option<String>,
    /// (ext) Units per call (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub increment: Option<u64>,
    /// (ext) Path to a non-negative number giving the units per call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub increment_from: Option<String>,
    /// (ext) Message shown before the engine's limit text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_deny: Option<String>,
}

fn ser_scope<S: Serializer>(s: &Scope, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

/// One problem found in a policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// Where: `tools.create_refund.deny_if[0].conditions[1].op`; `(json)` for syntax errors;
    /// `(document)` for the whole document.
    pub locator: String,
    /// What is wrong and, where possible, what to write instead.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.locator, self.message)
    }
}

impl std::error::Error for ValidationError {}

/// Builds locators like `tools["a.b"].deny_if[0].op`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Loc(String);

impl Loc {
    pub(crate) fn key(&self, k: &str) -> Loc {
        let plain = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let mut s = self.0.clone();
        if plain {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(k);
        } else {
            s.push('[');
            s.push_str(&Value::String(k.to_owned()).to_string());
            s.push(']');
        }
        Loc(s)
    }
    pub(crate) fn idx(&self, i: usize) -> Loc {
        Loc(format!("{}[{i}]", self.0))
    }
    pub(crate) fn as_str(&self) -> &str {
        if self.0.is_empty() {
            "(document)"
        } else {
            &self.0
        }
    }
}

/// "did you mean" for a misspelt word among `choices`.
pub fn suggest(word: &str, choices: &[&str]) -> Option<String> {
    let w = word.trim().to_ascii_lowercase();
    choices
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&w, c), *c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 3) && d < c.len())
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c.to_string())
}

fn hint(word: &str, choices: &[&str]) -> String {
    match suggest(word, choices) {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => format!(" (expected one of: {})", choices.join(", ")),
    }
}

/// Parses and validates policy JSON text. Every problem is reported, each with a locator.
pub fn parse(text: &str) -> Result<PolicyDoc, Vec<ValidationError>> {
    let v = json::parse_strict(text).map_err(|e| {
        vec![ValidationError {
            locator: "(json)".into(),
            message: format!("not valid JSON: {e}"),
        }]
    })?;
    from_value(&v)
}

/// Validates a JSON value as a policy document.
pub fn from_value(v: &Value) -> Result<PolicyDoc, Vec<ValidationError>> {
    let mut p = Parser::default();
    let doc = p.document(v);
    p.cross_checks(doc.as_ref());
    match doc {
        Some(d) if p.errors.is_empty() => Ok(d),
        _ => Err(p.errors),
    }
}

#[derive(Default)]
struct Parser {
    errors: Vec<ValidationError>,
}

impl Parser {
    fn err(&mut self, loc: &Loc, msg: impl Into<String>) {
        self.errors.push(ValidationError {
            locator: loc.as_str().to_owned(),
            message: msg.into(),
        });
    }

    /// Checks the object's keys against `allowed`; reports unknown ones with a hint.
    fn object<'v>(
        &mut self,
        v: &'v Value,
        loc: &Loc,
        what: &str,
        allowed: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(m) = v.as_object() else {
            self.err(
                loc,
                format!("{what} must be an object, found {}", type_name(v)),
            );
            return None;
        };
        for k in m.keys() {
            if !allowed.contains(&k.as_str()) {
                let extra = match k.as_str() {
                    "action" | "rules" | "rate_limit" | "state" => {
                        " — this looks like Intercept YAML; convert it with `portcullis import-intercept`".to_string()
                    }
                    _ => hint(k, allowed),
                };
                self.err(&loc.key(k), format!("unknown key {k:?} in {what}{extra}"));
            }
        }
        Some(m)
    }

    fn string(&mut self, v: &Value, loc: &Loc, what: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.err(
                    loc,
                    format!("{what} must be a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn document(&mut self, v: &Value) -> Option<PolicyDoc> {
        let root = Loc::default();
        let m = self.object(v, &root, "the policy document", TOP_KEYS)?;
        let version = match m.get("version") {
            None => {
                self.err(
                    &root.key("version"),
                    "missing required key \"version\" (write \"version\": \"1\")",
                );
                None
            }
            Some(Value::String(s)) if s == "1" => Some(s.clone()),
            Some(Value::Number(n)) if n.as_u64() == Some(1) => {
                self.err(
                    &root.key("version"),
                    "version must be the string \"1\", not the number 1",
                );
                None
            }
            Some(other) => {
                self.err(
                    &root.key("version"),
                    format!("unsupported version {other}; this gateway reads version \"1\""),
                );
                None
            }
        };
        let default = match m.get("default") {
            None => {
                self.err(
                    &root.key("default"),
                    "missing required key \"default\" (\"deny\" or \"allow\")",
                );
                None
            }
            Some(Value::String(s)) if s == "deny" => Some(Default::Deny),
            Some(Value::String(s)) if s == "allow" => Some(Default::Allow),
            Some(Value::String(s)) => {
                self.err(
                    &root.key("default"),
                    format!("unknown default {s:?}{}", hint(s, &["deny", "allow"])),
                );
                None
            }
            Some(other) => {
                self.err(
                    &root.key("default"),
                    format!(
                        "default must be \"deny\" or \"allow\", found {}",
                        type_name(other)
                    ),
                );
                None
            }
        };
        let mode = match m.get("mode") {
            None => None,
            Some(Value::String(s)) if s == "enforce" => Some(Mode::Enforce),
            Some(Value::String(s)) if s == "shadow" => Some(Mode::Shadow),
            Some(other) => {
                let s = other.as_str().unwrap_or_default();
                self.err(
                    &root.key("mode"),
                    format!(
                        "mode must be \"enforce\" or \"shadow\", found {other}{}",
                        hint(s, &["enforce", "shadow"])
                    ),
                );
                None
            }
        };
        let description = m
            .get("description")
            .and_then(|d| self.string(d, &root.key("description"), "description"));
        let mut hide = Vec::new();
        if let Some(h) = m.get("hide") {
            let loc = root.key("hide");
            match h.as_array() {
                None => self.err(
                    &loc,
                    format!(
                        "hide must be an array of tool names, found {}",
                        type_name(h)
                    ),
                ),
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        match item.as_str() {
                            Some("") => self.err(&loc.idx(i), "tool name must not be empty"),
                            Some(s) => hide.push(s.to_owned()),
                            None => self.err(
                                &loc.idx(i),
                                format!("tool name must be a string, found {}", type_name(item)),
                            ),
                        }
                    }
                }
            }
        }
        let hide_denied = match m.get("hide_denied") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.err(
                    &root.key("hide_denied"),
                    format!(
                        "hide_denied must be true or false (a JSON boolean), found {}",
                        match other {
                            Value::String(s) => format!("the string {s:?}"),
                            o => type_name(o).to_string(),
                        }
                    ),
                );
                false
            }
        };
        let all_tools = m
            .get("all_tools")
            .map(|a| self.rules(a, &root.key("all_tools"), "all_tools"));
        let mut tools = Vec::new();
        if let Some(t) = m.get("tools") {
            let loc = root.key("tools");
            match t.as_object() {
                None => self.err(
                    &loc,
                    format!(
                        "tools must be an object of tool name → rules, found {}",
                        type_name(t)
                    ),
                ),
                Some(tm) => {
                    for (name, rules) in tm {
                        let tl = loc.key(name);
                        if name.is_empty() {
                            self.err(&tl, "tool name must not be empty");
                        } else if name == "*" {
                            self.err(&tl, "\"*\" is not a wildcard under tools; put rules for every tool under all_tools");
                        }
                        let r = self.rules(rules, &tl, "a tool's rules");
                        tools.push((name.clone(), r));
                    }
                }
            }
        }
        Some(PolicyDoc {
            version: version?,
            description,
            mode,
            default: default?,
            hide,
            hide_denied,
            all_tools,
            tools,
        })
    }

    fn rules(&mut self, v: &Value, loc: &Loc, what: &str) -> Rules {
        let mut r = Rules::default();
        let Some(m) = self.object(v, loc, what, RULE_KEYS) else {
            return r;
        };
        if let Some(a) = m.get("require") {
            r.require = self.list(a, &loc.key("require"), "require", |p, e, l| p.entry(e, l));
        }
        if let Some(a) = m.get("deny_if") {
            r.deny_if = self.list(a, &loc.key("deny_if"), "deny_if", |p, e, l| p.entry(e, l));
        }
        if let Some(a) = m.get("approve_if") {
            r.approve_if = self.list(a, &loc.key("approve_if"), "approve_if", |p, e, l| {
                p.approval(e, l)
            });
        }
        if let Some(a) = m.get("limits") {
            r.limits = self.list(a, &loc.key("limits"), "limits", |p, e, l| p.limit(e, l));
        }
        r
    }

    fn list<T>(
        &mut self,
        v: &Value,
        loc: &Loc,
        what: &str,
        mut each: impl FnMut(&mut Self, &Value, &Loc) -> Option<T>,
    ) -> Vec<T> {
        let Some(items) = v.as_array() else {
            self.err(
                loc,
                format!("{what} must be an array, found {}", type_name(v)),
            );
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| each(self, item, &loc.idx(i)))
            .collect()
    }

    fn conditions(&mut self, m: &Map<String, Value>, loc: &Loc) -> Option<Vec<Condition>> {
        match m.get("conditions") {
            None => {
                self.err(
                    &loc.key("conditions"),
                    "missing required key \"conditions\" (use [] to match every call)",
                );
                None
            }
            Some(c) => {
                let before = self.errors.len();
                let conds = self.list(c, &loc.key("conditions"), "conditions", |p, e, l| {
                    p.condition(e, l)
                });
                (self.errors.len() == before).then_some(conds)
            }
        }
    }

    fn entry(&mut self, v: &Value, loc: &Loc) -> Option<Entry> {
        let m = self.object(v, loc, "an entry", ENTRY_KEYS)?;
        let on_deny = m
            .get("on_deny")
            .and_then(|s| self.string(s, &loc.key("on_deny"), "on_deny"));
        let conditions = self.conditions(m, loc)?;
        Some(Entry {
            conditions,
            on_deny,
        })
    }

    /// Optional duration string `key` of `m`, checked with `parse` (`examples` for the error).
    fn duration(
        &mut self,
        m: &Map<String, Value>,
        loc: &Loc,
        key: &str,
        parse: fn(&str) -> Option<window::Millis>,
        examples: &str,
    ) -> Option<String> {
        let d = m
            .get(key)
            .and_then(|s| self.string(s, &loc.key(key), key))?;
        if parse(&d).is_none() {
            self.err(
                &loc.key(key),
                format!("{key} {d:?} is not a duration (write e.g. {examples})"),
            );
        }
        Some(d)
    }

    fn approval(&mut self, v: &Value, loc: &Loc) -> Option<Approval> {
        let m = self.object(v, loc, "an approve_if entry", APPROVAL_KEYS)?;
        let reason = m
            .get("reason")
            .and_then(|s| self.string(s, &loc.key("reason"), "reason"));
        let timeout = self.duration(
            m,
            loc,
            "timeout",
            window::parse_duration,
            "\"15m\", \"1h\", \"90s\"",
        );
        let hold = self.duration(
            m,
            loc,
            "hold",
            window::parse_hold,
            "\"30s\", or \"0s\" not to hold",
        );
        let conditions = self.conditions(m, loc)?;
        Some(Approval {
            conditions,
            reason,
            timeout,
            hold,
        })
    }

    fn condition(&mut self, v: &Value, loc: &Loc) -> Option<Condition> {
        let m = self.object(v, loc, "a condition", CONDITION_KEYS)?;
        let before = self.errors.len();
        let path = match m.get("path") {
            None => {
                self.err(
                    &loc.key("path"),
                    "missing required key \"path\" (e.g. \"args.amount\")",
                );
                None
            }
            Some(p) => self
                .string(p, &loc.key("path"), "path")
                .filter(|p| match Path::parse(p) {
                    Ok(_) => true,
                    Err(e) => {
                        self.err(&loc.key("path"), e);
                        false
                    }
                }),
        };
        let op = match m.get("op") {
            None => {
                self.err(
                    &loc.key("op"),
                    format!("missing required key \"op\"{}", hint("", OPS)),
                );
                None
            }
            Some(Value::String(s)) => match Op::parse(s) {
                Some(op) => Some(op),
                None => {
                    self.err(&loc.key("op"), format!("unknown op {s:?}{}", hint(s, OPS)));
                    None
                }
            },
            Some(other) => {
                self.err(
                    &loc.key("op"),
                    format!("op must be a string, found {}", type_name(other)),
                );
                None
            }
        };
        let value = match m.get("value") {
            None => {
                self.err(&loc.key("value"), "missing required key \"value\"");
                None
            }
            Some(v) => Some(v.clone()),
        };
        if let (Some(op), Some(value)) = (op, &value) {
            let vl = loc.key("value");
            let found = type_name(value);
            match op {
                Op::Lt | Op::Lte | Op::Gt | Op::Gte if !value.is_number() => self.err(
                    &vl,
                    format!("op {:?} needs a number, found {found}", op.as_str()),
                ),
                Op::In | Op::NotIn if !value.is_array() => self.err(
                    &vl,
                    format!(
                        "op {:?} needs an array of values, found {found}",
                        op.as_str()
                    ),
                ),
                Op::Exists if !value.is_boolean() => self.err(
                    &vl,
                    format!("op \"exists\" needs true or false, found {found}"),
                ),
                Op::Regex => match value.as_str() {
                    None => self.err(
                        &vl,
                        format!("op \"regex\" needs a string pattern, found {found}"),
                    ),
                    Some(p) => {
                        if let Err(e) = compile_regex(p) {
                            self.err(&vl, format!("invalid regex: {e}"));
                        }
                    }
                },
                _ => {}
            }
        }
        let (style, base, schemes) = self.condition_options(m, loc, op, value.as_ref());
        if self.errors.len() != before {
            return None;
        }
        Some(Condition {
            path: path?,
            op: op?,
            value: value?,
            style,
            base,
            schemes,
        })
    }

    /// (ext) The options and operands of the path and URL operators: `style` and `base` only
    /// with a path operator, `schemes` only with a URL operator; every path, host and scheme
    /// is checked as the engine will read it.
    fn condition_options(
        &mut self,
        m: &Map<String, Value>,
        loc: &Loc,
        op: Option<Op>,
        value: Option<&Value>,
    ) -> (Option<PathStyle>, Option<String>, Option<Vec<String>>) {
        let Some(op) = op else {
            return (None, None, None);
        };
        for (key, fits) in [
            ("style", op.is_path_op()),
            ("base", op.is_path_op()),
            ("schemes", op.is_url_op()),
        ] {
            if m.contains_key(key) && !fits {
                let owners = if key == "schemes" {
                    "url_host_in and url_host_not_in"
                } else {
                    "path_under and path_not_under"
                };
                self.err(
                    &loc.key(key),
                    format!(
                        "{key:?} applies only to the ops {owners}, not {:?}",
                        op.as_str()
                    ),
                );
            }
        }
        let name = op.as_str();
        let vl = loc.key("value");
        if op.is_path_op() {
            let style = match m.get("style") {
                None => None,
                Some(Value::String(s)) => PathStyle::parse(s).or_else(|| {
                    self.err(
                        &loc.key("style"),
                        format!("unknown style {s:?}{}", hint(s, PathStyle::NAMES)),
                    );
                    None
                }),
                Some(other) => {
                    self.err(
                        &loc.key("style"),
                        format!("style must be a string, found {}", type_name(other)),
                    );
                    None
                }
            };
            let st = style.unwrap_or_default();
            let base = m
                .get("base")
                .and_then(|b| self.string(b, &loc.key("base"), "base"))
                .filter(|b| self.absolute_path(b, st, &loc.key("base"), "base"));
            if let Some(v) = value {
                let items: Vec<(Loc, &Value)> = match v {
                    Value::Array(a) if a.is_empty() => {
                        self.err(&vl, format!("op {name:?} needs at least one path"));
                        Vec::new()
                    }
                    Value::Array(a) => a.iter().enumerate().map(|(i, p)| (vl.idx(i), p)).collect(),
                    other => vec![(vl.clone(), other)],
                };
                for (l, p) in items {
                    match p.as_str() {
                        Some(p) => {
                            self.absolute_path(p, st, &l, &format!("op {name:?}"));
                        }
                        None => self.err(
                            &l,
                            format!(
                                "op {name:?} needs an absolute path or an array of them, found {}",
                                type_name(p)
                            ),
                        ),
                    }
                }
            }
            return (style, base, None);
        }
        if op.is_url_op() {
            let schemes = m.get("schemes").and_then(|v| {
                let l = loc.key("schemes");
                let items = match v.as_array() {
                    Some(a) if !a.is_empty() => a,
                    _ => {
                        let found = if v.is_array() { "an empty array" } else { type_name(v) };
                        self.err(
                            &l,
                            format!("schemes must be a non-empty array of URL schemes such as [\"https\"], found {found}"),
                        );
                        return None;
                    }
                };
                let before = self.errors.len();
                let out: Vec<String> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| match s.as_str() {
                        Some(s) if norm::is_scheme(s) => Some(s.to_owned()),
                        _ => {
                            self.err(
                                &l.idx(i),
                                format!("{s} is not a URL scheme (write e.g. \"https\", without \"://\")"),
                            );
                            None
                        }
                    })
                    .collect();
                (self.errors.len() == before).then_some(out)
            });
            match value {
                Some(Value::Array(hosts)) if !hosts.is_empty() => {
                    for (i, h) in hosts.iter().enumerate() {
                        let r = match h.as_str() {
                            Some(h) => HostPattern::parse(h).map(|_| ()),
                            None => Err(format!("a host must be a string, found {}", type_name(h))),
                        };
                        if let Err(e) = r {
                            self.err(&vl.idx(i), e);
                        }
                    }
                }
                Some(other) => self.err(
                    &vl,
                    format!(
                        "op {name:?} needs a non-empty array of hosts such as [\"example.com\", \"*.example.com\"], found {}",
                        match other {
                            Value::Array(_) => "an empty array",
                            o => type_name(o),
                        }
                    ),
                ),
                None => {}
            }
            return (None, None, schemes);
        }
        (None, None, None)
    }

    /// Checks that `p` is an absolute path that normalizes; reports it at `loc` otherwise.
    fn absolute_path(&mut self, p: &str, style: PathStyle, loc: &Loc, what: &str) -> bool {
        let problem = if p.starts_with('/') || (style == PathStyle::Mixed && p.starts_with('\\')) {
            norm::normalize_path(p, style, None).err()
        } else {
            Some("is not absolute (it must start with \"/\")".to_string())
        };
        match problem {
            None => true,
            Some(why) => {
                self.err(loc, format!("{what} needs an absolute path: {p:?} {why}"));
                false
            }
        }
    }

    fn limit(&mut self, v: &Value, loc: &Loc) -> Option<Limit> {
        let m = self.object(v, loc, "a limit", LIMIT_KEYS)?;
        let before = self.errors.len();
        let counter = match m.get("counter") {
            None => {
                self.err(
                    &loc.key("counter"),
                    "missing required key \"counter\" (a name for this counter)",
                );
                None
            }
            Some(c) => self.string(c, &loc.key("counter"), "counter").filter(|c| {
                let ok = !c.trim().is_empty();
                if !ok {
                    self.err(&loc.key("counter"), "counter name must not be empty");
                }
                ok
            }),
        };
        let window = match m.get("window") {
            None => {
                self.err(&loc.key("window"), "missing required key \"window\" (minute, hour, day, … or a rolling duration like \"90s\")");
                None
            }
            Some(Value::Number(n)) => {
                self.err(&loc.key("window"), format!("window must be a string such as \"minute\" or \"{n}s\", found the number {n}"));
                None
            }
            Some(w) => self.string(w, &loc.key("window"), "window").filter(|w| {
                let ok = Window::parse(w).is_some();
                if !ok {
                    self.err(&loc.key("window"), format!("unknown window {w:?}{}; a rolling window is a duration such as \"90s\", \"15m\", \"24h\"", hint(w, WINDOWS)));
                }
                ok
            }),
        };
        let max = match m.get("max") {
            None => {
                self.err(
                    &loc.key("max"),
                    "missing required key \"max\" (a positive integer)",
                );
                None
            }
            Some(v) => self.positive_int(
                v,
                &loc.key("max"),
                "max",
                "; to block a tool use deny_if with empty conditions",
            ),
        };
        let scope = match m.get("scope") {
            None => {
                self.err(
                    &loc.key("scope"),
                    "missing required key \"scope\" (grant, session, server or global)",
                );
                None
            }
            Some(Value::String(s)) => match Scope::parse(s) {
                Some(sc) => Some(sc),
                None => {
                    self.err(
                        &loc.key("scope"),
                        format!("unknown scope {s:?}{}", hint(s, SCOPES)),
                    );
                    None
                }
            },
            Some(other) => {
                self.err(
                    &loc.key("scope"),
                    format!("scope must be a string, found {}", type_name(other)),
                );
                None
            }
        };
        let per = m
            .get("per")
            .and_then(|p| self.path_string(p, &loc.key("per"), "per"));
        let increment = m
            .get("increment")
            .and_then(|v| self.positive_int(v, &loc.key("increment"), "increment", ""));
        let increment_from = m.get("increment_from").and_then(|p| {
            let s = self.path_string(p, &loc.key("increment_from"), "increment_from")?;
            if !s.starts_with("args.") {
                self.err(
                    &loc.key("increment_from"),
                    format!("increment_from must name an argument (args.…), found {s:?}"),
                );
                return None;
            }
            Some(s)
        });
        if m.contains_key("increment") && m.contains_key("increment_from") {
            self.err(
                &loc.key("increment_from"),
                "give either increment or increment_from, not both",
            );
        }
        let on_deny = m
            .get("on_deny")
            .and_then(|s| self.string(s, &loc.key("on_deny"), "on_deny"));
        if self.errors.len() != before {
            return None;
        }
        Some(Limit {
            counter: counter?,
            window: window?,
            max: max?,
            scope: scope?,
            per,
            increment,
            increment_from,
            on_deny,
        })
    }

    fn positive_int(&mut self, v: &Value, loc: &Loc, what: &str, zero_hint: &str) -> Option<u64> {
        match v.as_u64() {
            Some(0) => {
                self.err(loc, format!("{what} must be at least 1{zero_hint}"));
                None
            }
            Some(n) => Some(n),
            None => {
                let found = match v {
                    Value::Number(n) if n.as_i64().is_some_and(|i| i < 0) => {
                        "a negative number".to_string()
                    }
                    Value::Number(n) => format!("{n}"),
                    other => type_name(other).to_string(),
                };
                self.err(
                    loc,
                    format!("{what} must be a positive integer, found {found}"),
                );
                None
            }
        }
    }

    fn path_string(&mut self, v: &Value, loc: &Loc, what: &str) -> Option<String> {
        let s = self.string(v, loc, what)?;
        match Path::parse(&s) {
            Ok(p) if p.has_each() => {
                self.err(
                    loc,
                    format!("{what} needs one value per call; [*] is only for condition paths"),
                );
                None
            }
            Ok(_) => Some(s),
            Err(e) => {
                self.err(loc, e);
                None
            }
        }
    }

    /// Checks that span entries: one counter (name + scope) has one window.
    fn cross_checks(&mut self, doc: Option<&PolicyDoc>) {
        let Some(doc) = doc else { return };
        let root = Loc::default();
        let mut seen: HashMap<(&str, Scope), (&str, String)> = HashMap::new();
        let sites = doc
            .all_tools
            .iter()
            .map(|r| (root.key("all_tools"), r))
            .chain(doc.tools.iter().map(|(n, r)| (root.key("tools").key(n), r)));
        let mut errs = Vec::new();
        for (loc, rules) in sites {
            for (i, l) in rules.limits.iter().enumerate() {
                let here = loc.key("limits").idx(i);
                match seen.get(&(l.counter.as_str(), l.scope)) {
                    Some((w, first)) if *w != l.window => errs.push((
                        here.key("window"),
                        format!(
                            "counter {:?} (scope {}) has window {:?} here but {:?} at {first}; one counter has one window — rename one of them",
                            l.counter,
                            l.scope.as_str(),
                            l.window,
                            w
                        ),
                    )),
                    Some(_) => {}
                    None => {
                        seen.insert((&l.counter, l.scope), (&l.window, here.as_str().to_owned()));
                    }
                }
            }
        }
        for (loc, msg) in errs {
            self.err(&loc, msg);
        }
    }
}

/// Compiles a condition regex with the size limit policies are held to.
pub fn compile_regex(p: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(p)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

impl PolicyDoc {
    /// The document as JSON (what [`parse`] reads back into an equal document).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("policy documents always serialize")
    }

    /// The document as pretty JSON text.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("policy documents always serialize")
    }

    /// Rules for a tool, if listed.
    pub fn tool(&self, name: &str) -> Option<&Rules> {
        self.tools.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }

    /// Every condition in the document as (its locator, the tool it belongs to — `None` for
    /// all_tools, the condition).
    pub fn conditions(&self) -> Vec<(String, Option<&str>, &Condition)> {
        let root = Loc::default();
        let mut out = Vec::new();
        if let Some(a) = &self.all_tools {
            collect_conditions(&root.key("all_tools"), None, a, &mut out);
        }
        for (n, r) in &self.tools {
            collect_conditions(&root.key("tools").key(n), Some(n), r, &mut out);
        }
        out
    }

    /// Every path in the document (conditions, `per`, `increment_from`) as
    /// (locator, tool it belongs to — `None` for all_tools, path).
    pub fn condition_paths(&self) -> Vec<(String, Option<&str>, &str)> {
        let root = Loc::default();
        let mut out = Vec::new();
        if let Some(a) = &self.all_tools {
            collect_paths(&root.key("all_tools"), None, a, &mut out);
        }
        for (n, r) in &self.tools {
            collect_paths(&root.key("tools").key(n), Some(n), r, &mut out);
        }
        out
    }
}

fn collect_paths<'d>(
    loc: &Loc,
    tool: Option<&'d str>,
    rules: &'d Rules,
    out: &mut Vec<(String, Option<&'d str>, &'d str)>,
) {
    let mut conds = Vec::new();
    collect_conditions(loc, tool, rules, &mut conds);
    out.extend(
        conds
            .into_iter()
            .map(|(l, t, c)| (format!("{l}.path"), t, c.path.as_str())),
    );
    for (i, l) in rules.limits.iter().enumerate() {
        for (key, p) in [("per", &l.per), ("increment_from", &l.increment_from)] {
            if let Some(p) = p {
                out.push((
                    loc.key("limits").idx(i).key(key).as_str().to_owned(),
                    tool,
                    p.as_str(),
                ));
            }
        }
    }
}

fn collect_conditions<'d>(
    loc: &Loc,
    tool: Option<&'d str>,
    rules: &'d Rules,
    out: &mut Vec<(String, Option<&'d str>, &'d Condition)>,
) {
    let lists: [(&str, Vec<&'d [Condition]>); 3] = [
        (
            "require",
            rules.require.iter().map(|e| &e.conditions[..]).collect(),
        ),
        (
            "deny_if",
            rules.deny_if.iter().map(|e| &e.conditions[..]).collect(),
        ),
        (
            "approve_if",
            rules.approve_if.iter().map(|e| &e.conditions[..]).collect(),
        ),
    ];
    for (key, entries) in lists {
        for (i, cs) in entries.into_iter().enumerate() {
            for (j, c) in cs.iter().enumerate() {
                let at = loc.key(key).idx(i).key("conditions").idx(j);
                out.push((at.as_str().to_owned(), tool, c));
            }
        }
    }
}

/// The locator of a tool's key, as [`ValidationError`]s spell it (`tools.x`, `tools["a.b"]`).
pub fn tool_locator(name: &str) -> String {
    Loc::default().key("tools").key(name).as_str().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_quote_odd_keys() {
        assert_eq!(tool_locator("create_refund"), "tools.create_refund");
        assert_eq!(tool_locator("a.b"), "tools[\"a.b\"]");
        assert_eq!(
            Loc::default()
                .key("tools")
                .key("x")
                .key("deny_if")
                .idx(0)
                .key("conditions")
                .idx(1)
                .key("op")
                .as_str(),
            "tools.x.deny_if[0].conditions[1].op"
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("gte ", OPS).as_deref(), Some("gte"));
        assert_eq!(suggest("deny_iff", RULE_KEYS).as_deref(), Some("deny_if"));
        assert_eq!(suggest("limit", RULE_KEYS).as_deref(), Some("limits"));
        assert_eq!(suggest("zzzzzz", RULE_KEYS), None);
    }
}
