//! # portcullis-intercept
//!
//! Translates a policy written in PolicyLayer Intercept's YAML dialect into a Portcullis
//! policy v1 JSON document (`portcullis import-intercept FILE`).
//!
//! The input is validated the way Intercept's own validator does (version, rule names,
//! operators and their value types, regular expressions, `rate_limit` syntax and conflicts,
//! `state` blocks), plus two stricter checks: unknown keys are rejected (with a "did you mean"
//! hint) and constructs that cannot be translated faithfully are reported instead of guessed.
//! Every error is collected, each with a locator such as
//! `tools.create_charge.rules[1].conditions[0].op`.
//!
//! The translation:
//!
//! | Intercept | policy v1 |
//! |---|---|
//! | rule with `conditions` (all must pass) | `require` entry |
//! | `action: deny` | `deny_if` entry with empty `conditions` |
//! | `rate_limit: "N/window"` | `limits` entry, `max` N |
//! | `state` counter + `lt V` / `lte V` on `state.<tool>.<counter>` | `limits` entry, `max` V−1 / V (a limit of 0 denies every call: `deny_if`) |
//! | tool `"*"` | `all_tools` |
//! | `hide`, `default`, `description` | the same keys |
//!
//! Where the meaning shifts (counter scope, loose equality, …) a note says so in
//! [`Translation::notes`].

#![warn(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{json, Map, Value};

mod hint;
mod yaml;

/// One problem found in the input, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// Where: `version`, `tools.some_tool.rules[0].conditions[0].op`, `tools["a.b"].rules`,
    /// or `(yaml)` for an error in the YAML text itself.
    pub locator: String,
    /// What is wrong, in one line.
    pub message: String,
}

impl ImportError {
    fn new(locator: impl Into<String>, message: impl Into<String>) -> Self {
        ImportError {
            locator: locator.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.locator, self.message)
    }
}

impl std::error::Error for ImportError {}

/// A successful translation.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// The policy v1 document. Keys in this order: `version`, `description`, `default`,
    /// `hide`, `all_tools`, `tools` (optional ones only when present).
    pub policy: Value,
    /// Places where the translation is lossy or approximate, one sentence each, to be shown
    /// to the user.
    pub notes: Vec<String>,
}

/// Translates Intercept YAML into a policy v1 document, or returns every error found.
///
/// A YAML syntax error is returned alone, with locator `(yaml)` and the line and column in
/// its message.
pub fn translate(yaml: &str) -> Result<Translation, Vec<ImportError>> {
    let doc = yaml::parse(yaml).map_err(|e| vec![e])?;
    let mut cx = Cx::default();
    let parsed = cx.document(&doc);
    match parsed {
        Some(parsed) if cx.errors.is_empty() => Ok(cx.emit(parsed)),
        _ => Err(cx.errors),
    }
}

const TOP_KEYS: &[&str] = &["version", "description", "default", "hide", "tools"];
const TOOL_KEYS: &[&str] = &["rules"];
const RULE_KEYS: &[&str] = &[
    "name",
    "action",
    "rate_limit",
    "conditions",
    "on_deny",
    "state",
];
const CONDITION_KEYS: &[&str] = &["path", "op", "value"];
const STATE_KEYS: &[&str] = &["counter", "window", "increment", "increment_from"];
const OPS: &[&str] = &[
    "eq", "neq", "in", "not_in", "contains", "regex", "exists", "lt", "lte", "gt", "gte",
];
const ACTIONS: &[&str] = &["evaluate", "deny"];
const DEFAULTS: &[&str] = &["allow", "deny"];
/// The windows Intercept accepts (fixed, UTC-calendar aligned — the same meaning in policy v1).
const WINDOWS: &[&str] = &["minute", "hour", "day"];
/// The wildcard tool key; its rules apply to every call (`all_tools`).
const WILDCARD: &str = "*";
/// The counter scope Intercept uses in `state.<scope>.<counter>` paths under `"*"`.
const GLOBAL_SCOPE: &str = "_global";

/// `parent.key`, or `parent["key"]` when the key would not read back as one segment.
fn key_loc(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && !key
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || ".[]\"'".contains(c));
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", Value::from(key)),
    }
}

fn index_loc(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Treats an explicit YAML `null` like an absent key (Intercept's zero values do the same).
fn get<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn show(v: &Value) -> String {
    v.to_string()
}

/// Lower-case letters and digits of `s`, other runs of characters as one `_`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// A validated document, ready to emit.
struct Doc {
    description: Option<String>,
    default: String,
    hide: Vec<String>,
    tools: Vec<Tool>,
}

struct Tool {
    /// The key under `tools` (`"*"` for the wildcard).
    name: String,
    locator: String,
    rules: Vec<Rule>,
}

struct Rule {
    index: usize,
    name: String,
    locator: String,
    kind: Kind,
}

impl Rule {
    /// A rule that denies every call, with its message.
    fn always_deny(index: usize, name: String, loc: &str, on_deny: String) -> Rule {
        Rule {
            index,
            name,
            locator: loc.to_string(),
            kind: Kind::Deny { on_deny },
        }
    }
}

enum Kind {
    /// All conditions must hold.
    Require {
        conditions: Vec<Value>,
        on_deny: String,
    },
    /// Always deny.
    Deny { on_deny: String },
    /// `rate_limit: "N/window"`.
    Rate {
        max: u64,
        window: String,
        on_deny: Option<String>,
    },
    /// A `state` counter with its `lt`/`lte` limit, and the rule's other conditions.
    Counter {
        counter: String,
        window: String,
        max: u64,
        increment: u64,
        increment_from: Option<String>,
        on_deny: Option<String>,
        require: Option<(Vec<Value>, String)>,
    },
}

/// A condition whose own fields are valid.
struct Cond {
    path: String,
    op: String,
    value: Value,
}

/// A state block whose own fields are valid.
struct StateDef {
    counter: String,
    window: String,
    increment: u64,
    increment_from: Option<String>,
}

/// The outcome of reading a `rate_limit` string.
struct RateLimit {
    count: u64,
    window: String,
}

#[derive(Default)]
struct Cx {
    errors: Vec<ImportError>,
    notes: Vec<String>,
    loose_equality_noted: bool,
    /// Counters limited with `lt`, for one note.
    lt_limits: Vec<String>,
    increment_from_noted: bool,
}

impl Cx {
    fn err(&mut self, locator: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ImportError::new(locator, message));
    }

    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn unknown_keys(&mut self, parent: &str, m: &Map<String, Value>, known: &[&str]) {
        for key in m.keys() {
            if !known.contains(&key.as_str()) {
                let hint = hint::suffix(key, known);
                self.err(key_loc(parent, key), format!("unknown key {key:?}{hint}"));
            }
        }
    }

    /// An optional string field; `None` when absent or null (an error when of another type).
    fn opt_string(&mut self, m: &Map<String, Value>, parent: &str, key: &str) -> Option<String> {
        match get(m, key) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.err(
                    key_loc(parent, key),
                    format!("{key} must be a string, got {}", show(other)),
                );
                None
            }
        }
    }

    fn document(&mut self, doc: &Value) -> Option<Doc> {
        let empty = Map::new();
        let m = match doc {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => {
                self.err(
                    "(root)",
                    format!("the policy must be a YAML mapping, got {}", show(other)),
                );
                return None;
            }
        };
        self.unknown_keys("", m, TOP_KEYS);

        match get(m, "version") {
            Some(Value::String(s)) if s == "1" => {}
            Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
            None => self.err("version", "version is required and must be \"1\""),
            Some(other) => self.err(
                "version",
                format!("version must be \"1\", got {}", show(other)),
            ),
        }

        let description = self.opt_string(m, "", "description");

        let default = match get(m, "default") {
            None => {
                self.note(
                    "\"default\" is not set: Intercept then allows every tool that is not listed \
                     under \"tools\", so the translation says \"default\": \"allow\" (consider \
                     \"deny\")."
                        .to_string(),
                );
                "allow".to_string()
            }
            Some(Value::String(s)) if DEFAULTS.contains(&s.as_str()) => s.clone(),
            Some(other) => {
                let hint = other
                    .as_str()
                    .map(|s| hint::did_you_mean(s, DEFAULTS))
                    .unwrap_or_default();
                self.err(
                    "default",
                    format!(
                        "default must be \"allow\" or \"deny\", got {}{hint}",
                        show(other)
                    ),
                );
                String::new()
            }
        };

        let hide = self.hide(get(m, "hide"));

        let mut tools = Vec::new();
        match get(m, "tools") {
            None => {}
            Some(Value::Object(t)) => {
                for (name, def) in t {
                    if let Some(tool) = self.tool(name, def) {
                        tools.push(tool);
                    }
                }
            }
            Some(other) => self.err(
                "tools",
                format!(
                    "tools must be a mapping of tool name to rules, got {}",
                    show(other)
                ),
            ),
        }

        Some(Doc {
            description,
            default,
            hide,
            tools,
        })
    }

    fn hide(&mut self, v: Option<&Value>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let Some(v) = v else { return out };
        let Value::Array(items) = v else {
            self.err(
                "hide",
                format!("hide must be a list of tool names, got {}", show(v)),
            );
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let loc = index_loc("hide", i);
            match item {
                Value::String(s) if s.trim().is_empty() => {
                    self.err(loc, "hide entry must not be empty")
                }
                Value::String(s) if out.contains(s) => {
                    self.err(loc, format!("duplicate hide entry {s:?}"))
                }
                Value::String(s) => out.push(s.clone()),
                other => self.err(
                    loc,
                    format!("hide entry must be a tool name, got {}", show(other)),
                ),
            }
        }
        out
    }

    fn tool(&mut self, name: &str, def: &Value) -> Option<Tool> {
        let loc = key_loc("tools", name);
        if name.trim().is_empty() {
            self.err(&loc, "tool name must not be empty");
        }
        let empty = Map::new();
        let m = match def {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => {
                self.err(
                    &loc,
                    format!(
                        "a tool must be a mapping with \"rules\", got {}",
                        show(other)
                    ),
                );
                return None;
            }
        };
        self.unknown_keys(&loc, m, TOOL_KEYS);
        let rules_loc = key_loc(&loc, "rules");
        let raw_rules: &[Value] = match get(m, "rules") {
            None => &[],
            Some(Value::Array(a)) => a,
            Some(other) => {
                self.err(
                    &rules_loc,
                    format!("rules must be a list, got {}", show(other)),
                );
                return None;
            }
        };

        let scope = if name == WILDCARD { GLOBAL_SCOPE } else { name };
        let mut rules = Vec::new();
        // Intercept keeps one counter per (tool, counter name): a second rule naming the same
        // counter in one tool is an error there; `rate_limit` uses the counter `_rate_<window>`.
        let mut counters: HashMap<String, usize> = HashMap::new();
        for (i, raw) in raw_rules.iter().enumerate() {
            let rule_loc = index_loc(&rules_loc, i);
            let before = self.errors.len();
            let rule = self.rule(scope, &rule_loc, i, raw);
            let counter = match raw.get("state").and_then(|s| s.get("counter")) {
                Some(Value::String(c)) if !c.is_empty() => Some((
                    c.clone(),
                    key_loc(&key_loc(&rule_loc, "state"), "counter"),
                    format!("duplicate state counter {c:?}"),
                )),
                _ => match &rule {
                    Some(Rule {
                        kind: Kind::Rate { window, .. },
                        ..
                    }) => Some((
                        format!("_rate_{window}"),
                        key_loc(&rule_loc, "rate_limit"),
                        format!(
                            "a second rate_limit per {window} on this tool (Intercept counts \
                             both in its counter \"_rate_{window}\" and rejects this)"
                        ),
                    )),
                    _ => None,
                },
            };
            if let Some((counter, at, message)) = counter {
                if let Some(prev) = counters.get(&counter) {
                    self.err(at, format!("{message}; also used by rules[{prev}]"));
                } else {
                    counters.insert(counter, i);
                }
            }
            if let Some(rule) = rule {
                if self.errors.len() == before {
                    rules.push(rule);
                }
            }
        }

        // Intercept stops at the first failing rule in document order; Portcullis checks every
        // `require` before any `deny_if`. Only the message can differ, and only when a rule
        // that always denies comes before a rule with conditions.
        if let Some(deny) = rules.iter().find(|r| matches!(r.kind, Kind::Deny { .. })) {
            let later_check = rules.iter().any(|r| {
                r.index > deny.index
                    && matches!(
                        r.kind,
                        Kind::Require { .. }
                            | Kind::Counter {
                                require: Some(_),
                                ..
                            }
                    )
            });
            if later_check {
                self.note(format!(
                    "{} ({:?}) always denies, as in Intercept; but Portcullis checks every \
                     \"require\" before \"deny_if\", so when a later rule fails too the agent sees \
                     that rule's message instead.",
                    deny.locator, deny.name
                ));
            }
        }

        Some(Tool {
            name: name.to_string(),
            locator: loc,
            rules,
        })
    }

    fn rule(&mut self, scope: &str, loc: &str, index: usize, raw: &Value) -> Option<Rule> {
        let Value::Object(m) = raw else {
            self.err(loc, format!("a rule must be a mapping, got {}", show(raw)));
            return None;
        };
        self.unknown_keys(loc, m, RULE_KEYS);

        let name = match get(m, "name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) | None => {
                self.err(key_loc(loc, "name"), "rule must have a name");
                String::new()
            }
            Some(other) => {
                self.err(
                    key_loc(loc, "name"),
                    format!("name must be a string, got {}", show(other)),
                );
                String::new()
            }
        };

        let action = match get(m, "action") {
            None => "evaluate".to_string(),
            Some(Value::String(s)) if ACTIONS.contains(&s.as_str()) => s.clone(),
            Some(other) => {
                let hint = other
                    .as_str()
                    .map(|s| hint::did_you_mean(s, ACTIONS))
                    .unwrap_or_default();
                self.err(
                    key_loc(loc, "action"),
                    format!(
                        "action must be \"evaluate\" or \"deny\", got {}{hint}",
                        show(other)
                    ),
                );
                String::new()
            }
        };

        // An empty on_deny is Intercept's "not set" (it then uses its default message).
        let on_deny = self.opt_string(m, loc, "on_deny").filter(|s| !s.is_empty());

        let conds_loc = key_loc(loc, "conditions");
        let (has_conditions, conditions): (bool, Vec<(String, Option<Cond>)>) =
            match get(m, "conditions") {
                None => (false, Vec::new()),
                Some(Value::Array(items)) => (
                    !items.is_empty(),
                    items
                        .iter()
                        .enumerate()
                        .map(|(j, c)| {
                            let at = index_loc(&conds_loc, j);
                            let cond = self.condition(&at, c);
                            (at, cond)
                        })
                        .collect(),
                ),
                Some(other) => {
                    self.err(
                        &conds_loc,
                        format!("conditions must be a list, got {}", show(other)),
                    );
                    (true, Vec::new())
                }
            };

        let state_loc = key_loc(loc, "state");
        let has_state = get(m, "state").is_some();
        let state = get(m, "state").and_then(|s| self.state(&state_loc, s));

        if let Some(raw_rate) = get(m, "rate_limit") {
            let rate = self.rate_limit(&key_loc(loc, "rate_limit"), raw_rate);
            // Intercept desugars (and so counts) a rate_limit only when nothing conflicts.
            let before = self.errors.len();
            if has_conditions {
                self.err(
                    loc,
                    "rate_limit cannot be combined with conditions; put the conditions in a \
                     separate rule",
                );
            }
            if has_state {
                self.err(
                    loc,
                    "rate_limit cannot be combined with state; use either the rate_limit \
                     shorthand or a state counter with a condition",
                );
            }
            if action == "deny" {
                self.err(loc, "rate_limit cannot be used with action \"deny\"");
            }
            if self.errors.len() != before {
                return None;
            }
            let rate = rate?;
            return Some(Rule {
                index,
                name,
                locator: loc.to_string(),
                kind: Kind::Rate {
                    max: rate.count,
                    window: rate.window,
                    on_deny,
                },
            });
        }

        let default_message = format!("Denied by rule '{name}'");

        if action == "deny" {
            if has_conditions {
                self.err(
                    loc,
                    "a rule with action \"deny\" must not have conditions (it always denies); \
                     use an \"evaluate\" rule for conditional checks",
                );
            }
            if has_state {
                self.err(
                    loc,
                    "a rule with action \"deny\" must not have a state block (it always denies, \
                     so nothing would be counted)",
                );
            }
            return Some(Rule::always_deny(
                index,
                name,
                loc,
                on_deny.unwrap_or(default_message),
            ));
        }

        if !has_conditions {
            if action == "evaluate" {
                self.err(
                    loc,
                    "an \"evaluate\" rule must have at least one condition (or be a rate_limit)",
                );
            }
            return None;
        }

        // Split the rule's conditions: argument checks, and checks on a state counter.
        let mut args_conditions = Vec::new();
        let mut limit: Option<(String, Cond)> = None;
        let before_state_checks = self.errors.len();
        for (at, cond) in conditions {
            let Some(cond) = cond else { continue };
            if !cond.path.starts_with("state.") {
                args_conditions.push(json!({
                    "path": cond.path, "op": cond.op, "value": cond.value,
                }));
                continue;
            }
            let path_loc = key_loc(&at, "path");
            match (&state, has_state) {
                (_, false) => self.err(
                    path_loc,
                    format!(
                        "{:?} reads a state counter, but this rule has no state block; only a \
                         counter limited in its own rule can be translated",
                        cond.path
                    ),
                ),
                (None, true) => {} // the state block's own errors are reported
                (Some(st), true) => {
                    let expected = format!("state.{scope}.{}", st.counter);
                    if cond.path != expected {
                        self.err(
                            path_loc,
                            format!(
                                "state condition on {:?} does not match this rule's state \
                                 counter {:?} (expected path {expected:?})",
                                cond.path, st.counter
                            ),
                        );
                    } else if cond.op != "lt" && cond.op != "lte" {
                        self.err(
                            key_loc(&at, "op"),
                            format!(
                                "op {:?} on a state counter cannot be translated; use \"lt\" \
                                 or \"lte\" (the counter's limit)",
                                cond.op
                            ),
                        );
                    } else if limit.is_some() {
                        self.err(
                            at,
                            format!(
                                "a second limit on the state counter {:?}; keep one \"lt\" or \
                                 \"lte\" condition",
                                st.counter
                            ),
                        );
                    } else {
                        limit = Some((at, cond));
                    }
                }
            }
        }

        let Some(st) = state else {
            if has_state {
                return None;
            }
            return Some(Rule {
                index,
                name,
                locator: loc.to_string(),
                kind: Kind::Require {
                    conditions: args_conditions,
                    on_deny: on_deny.unwrap_or(default_message),
                },
            });
        };

        let Some((at, limit)) = limit else {
            if self.errors.len() != before_state_checks {
                return None; // the state condition's own error says enough
            }
            self.err(
                &state_loc,
                format!(
                    "the state counter {:?} has no \"lt\" or \"lte\" condition on \
                     \"state.{scope}.{}\" in this rule, so Intercept would never count it; add \
                     one (the counter's limit)",
                    st.counter, st.counter
                ),
            );
            return None;
        };
        let value_loc = key_loc(&at, "value");
        let bound: Option<i128> = match &limit.value {
            Value::Number(n) => n.as_i64().map(i128::from).or_else(|| {
                n.as_u64().map(i128::from).or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i128)
                })
            }),
            _ => None,
        };
        let Some(bound) = bound else {
            self.err(
                value_loc,
                format!(
                    "a counter limit must be a whole number, got {}",
                    show(&limit.value)
                ),
            );
            return None;
        };
        let max = if limit.op == "lt" { bound - 1 } else { bound };
        let Ok(max) = u64::try_from(max) else {
            self.err(
                value_loc,
                format!(
                    "\"{} {bound}\" leaves no room for any call (the limit would be {max}); use \
                     action \"deny\" to block the tool",
                    limit.op
                ),
            );
            return None;
        };

        let rule_ref = format!("{loc} ({name:?})");
        if limit.op == "lt" {
            self.lt_limits
                .push(format!("{loc} (lt {bound} → max {max})"));
        }
        if max == 0 {
            // A limit of 0 is not a valid `limits` entry (the policy says to block with
            // `deny_if`), and the rule's other conditions cannot rescue a call: it always denies.
            self.note(format!(
                "{rule_ref}: the counter limit is 0, so every call is denied (as in Intercept); \
                 translated as a deny."
            ));
            return Some(Rule::always_deny(
                index,
                name,
                loc,
                on_deny.unwrap_or(default_message),
            ));
        }
        if st.increment_from.is_some() && st.increment != 1 {
            self.note(format!(
                "{rule_ref}: Intercept ignores \"increment\" when \"increment_from\" is set; so \
                 does the translation."
            ));
        }
        if st.increment_from.is_some() && !self.increment_from_noted {
            self.increment_from_noted = true;
            self.note(format!(
                "{rule_ref}: the counter is charged by an argument (increment_from). Intercept \
                 truncates a fractional amount and accepts a negative one (which lowers the \
                 counter); Portcullis denies a call whose amount is negative, non-numeric or \
                 absent."
            ));
        }
        let require = if args_conditions.is_empty() {
            None
        } else {
            self.note(format!(
                "{rule_ref}: Intercept checks the argument conditions and the counter in one \
                 rule; here they are a \"require\" entry and a \"limits\" entry, each with the \
                 rule's on_deny (same outcome: the counter is charged only when the conditions \
                 pass)."
            ));
            Some((args_conditions, on_deny.clone().unwrap_or(default_message)))
        };
        Some(Rule {
            index,
            name,
            locator: loc.to_string(),
            kind: Kind::Counter {
                counter: st.counter,
                window: st.window,
                max,
                increment: st.increment,
                increment_from: st.increment_from,
                on_deny,
                require,
            },
        })
    }

    /// Checks an `args.` path's segments (used for conditions and `increment_from`).
    fn args_path(&mut self, at: &str, path: &str) -> bool {
        let rest = &path["args.".len()..];
        if rest.split('.').any(str::is_empty) {
            self.err(at, format!("path {path:?} has an empty segment"));
            return false;
        }
        if rest.contains(['[', ']']) {
            self.err(
                at,
                format!(
                    "path {path:?} contains \"[\" or \"]\": Intercept reads them as part of a key \
                     name, Portcullis as an array index; rename the argument or drop the brackets"
                ),
            );
            return false;
        }
        true
    }

    fn condition(&mut self, loc: &str, raw: &Value) -> Option<Cond> {
        let Value::Object(m) = raw else {
            self.err(
                loc,
                format!(
                    "a condition must be a mapping with path, op and value, got {}",
                    show(raw)
                ),
            );
            return None;
        };
        let before = self.errors.len();
        self.unknown_keys(loc, m, CONDITION_KEYS);

        let path_loc = key_loc(loc, "path");
        let path = match get(m, "path") {
            Some(Value::String(p)) => {
                if p.starts_with("args.") {
                    self.args_path(&path_loc, p);
                } else if !p.starts_with("state.") {
                    self.err(
                        &path_loc,
                        format!("path must start with \"args.\" or \"state.\", got {p:?}"),
                    );
                }
                p.clone()
            }
            None => {
                self.err(&path_loc, "path is required");
                String::new()
            }
            Some(other) => {
                self.err(
                    &path_loc,
                    format!("path must be a string, got {}", show(other)),
                );
                String::new()
            }
        };

        let op_loc = key_loc(loc, "op");
        let op = match get(m, "op") {
            Some(Value::String(op)) if OPS.contains(&op.as_str()) => Some(op.clone()),
            Some(Value::String(op)) => {
                let hint = hint::suffix(op, OPS);
                self.err(&op_loc, format!("unknown op {op:?}{hint}"));
                None
            }
            None => {
                self.err(&op_loc, "op is required");
                None
            }
            Some(other) => {
                self.err(&op_loc, format!("op must be a string, got {}", show(other)));
                None
            }
        };

        let value_loc = key_loc(loc, "value");
        let value = m.get("value");
        if let (Some(op), Some(value)) = (&op, value) {
            let problem = match op.as_str() {
                "in" | "not_in" if !value.is_array() => {
                    Some(format!("op {op:?} needs a list value, got {}", show(value)))
                }
                "lt" | "lte" | "gt" | "gte" if !value.is_number() => Some(format!(
                    "op {op:?} needs a numeric value, got {}",
                    show(value)
                )),
                "exists" if !value.is_boolean() => Some(format!(
                    "op \"exists\" needs true or false, got {}",
                    show(value)
                )),
                "regex" => match value.as_str() {
                    None => Some(format!(
                        "op \"regex\" needs a string value, got {}",
                        show(value)
                    )),
                    Some(pattern) => match regex::Regex::new(pattern) {
                        Ok(_) => {
                            self.regex_note(loc, pattern);
                            None
                        }
                        Err(e) => Some(format!("invalid regex {pattern:?}: {}", regex_error(&e))),
                    },
                },
                _ => None,
            };
            if let Some(problem) = problem {
                self.err(&value_loc, problem);
            }
            if matches!(op.as_str(), "eq" | "neq" | "in" | "not_in" | "contains")
                && !self.loose_equality_noted
            {
                self.loose_equality_noted = true;
                self.note(
                    "Intercept compares eq, neq, in, not_in and contains loosely (the string \
                     \"5\" equals the number 5, true equals \"true\"); Portcullis compares by \
                     JSON type, so an argument of another type than the policy's value no longer \
                     matches (eq, in and contains then fail; neq and not_in pass)."
                        .to_string(),
                );
            }
        } else if op.is_some() {
            self.err(&value_loc, "value is required");
        }

        if self.errors.len() != before {
            return None;
        }
        Some(Cond {
            path,
            op: op?,
            value: value.cloned().unwrap_or(Value::Null),
        })
    }

    /// Go's `\d`, `\w`, `\s` and `\b` are ASCII-only; the Rust `regex` crate's are Unicode.
    fn regex_note(&mut self, loc: &str, pattern: &str) {
        let mut escaped = false;
        let mut perl_class = false;
        for c in pattern.chars() {
            if escaped {
                perl_class |= "dDwWsSbB".contains(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            }
        }
        if perl_class {
            self.note(format!(
                "{loc}: in this regex, \\d, \\w, \\s and \\b match only ASCII in Intercept (Go) \
                 but any Unicode digit, letter or space in Portcullis (Rust); write [0-9] or \
                 (?-u:\\d) for the ASCII meaning."
            ));
        }
    }

    fn state(&mut self, loc: &str, raw: &Value) -> Option<StateDef> {
        let Value::Object(m) = raw else {
            self.err(
                loc,
                format!(
                    "state must be a mapping with counter and window, got {}",
                    show(raw)
                ),
            );
            return None;
        };
        let before = self.errors.len();
        self.unknown_keys(loc, m, STATE_KEYS);

        let counter_loc = key_loc(loc, "counter");
        let counter = match get(m, "counter") {
            Some(Value::String(c)) if !c.trim().is_empty() => c.clone(),
            Some(Value::String(_)) | None => {
                self.err(&counter_loc, "state counter must not be empty");
                String::new()
            }
            Some(other) => {
                self.err(
                    &counter_loc,
                    format!("state counter must be a string, got {}", show(other)),
                );
                String::new()
            }
        };

        let window_loc = key_loc(loc, "window");
        let window = match get(m, "window") {
            Some(Value::String(w)) if WINDOWS.contains(&w.as_str()) => w.clone(),
            other => {
                let got = other.map_or_else(|| "nothing".to_string(), show);
                let hint = other
                    .and_then(Value::as_str)
                    .map(|w| hint::did_you_mean(w, WINDOWS))
                    .unwrap_or_default();
                self.err(
                    window_loc,
                    format!(
                        "state window must be \"minute\", \"hour\" or \"day\", got {got}{hint}"
                    ),
                );
                String::new()
            }
        };

        let increment = match get(m, "increment") {
            None => 1,
            Some(v) => match v.as_u64() {
                Some(0) => 1, // Intercept's default
                Some(n) => n,
                None => {
                    self.err(
                        key_loc(loc, "increment"),
                        format!("increment must be a positive whole number, got {}", show(v)),
                    );
                    1
                }
            },
        };

        let from_loc = key_loc(loc, "increment_from");
        let increment_from = match get(m, "increment_from") {
            None => None,
            Some(Value::String(p)) if p.is_empty() => None, // Intercept: "" = not set
            Some(Value::String(p)) if p.starts_with("args.") => {
                self.args_path(&from_loc, p);
                Some(p.clone())
            }
            Some(other) => {
                self.err(
                    from_loc,
                    format!(
                        "increment_from must start with \"args.\", got {}",
                        show(other)
                    ),
                );
                None
            }
        };

        if self.errors.len() != before {
            return None;
        }
        Some(StateDef {
            counter,
            window,
            increment,
            increment_from,
        })
    }

    fn rate_limit(&mut self, loc: &str, raw: &Value) -> Option<RateLimit> {
        let Some(s) = raw.as_str() else {
            self.err(
                loc,
                format!(
                    "rate_limit must be a string like \"5/hour\", got {}",
                    show(raw)
                ),
            );
            return None;
        };
        let Some((count, window)) = s.split_once('/') else {
            self.err(
                loc,
                format!("rate_limit must look like \"N/window\" (e.g. \"5/hour\"), got {s:?}"),
            );
            return None;
        };
        let count = match count.parse::<i64>() {
            Ok(n) if n >= 1 => Some(n as u64),
            Ok(n) => {
                self.err(
                    loc,
                    format!("rate_limit count must be a positive integer, got {n}"),
                );
                None
            }
            Err(_) => {
                self.err(
                    loc,
                    format!(
                        "rate_limit must look like \"N/window\" with N a whole number (e.g. \
                         \"5/hour\"), got {s:?}"
                    ),
                );
                None
            }
        };
        if !WINDOWS.contains(&window) {
            let hint = hint::did_you_mean(window, WINDOWS);
            self.err(
                loc,
                format!(
                    "rate_limit window must be \"minute\", \"hour\" or \"day\", got {window:?}{hint}"
                ),
            );
            return None;
        }
        Some(RateLimit {
            count: count?,
            window: window.to_string(),
        })
    }

    /// Builds the policy v1 document from a document that validated cleanly.
    fn emit(mut self, doc: Doc) -> Translation {
        let names = self.counter_names(&doc);

        let mut all_tools = None;
        let mut tools = Map::new();
        let mut any_limit = false;
        for tool in &doc.tools {
            let mut require = Vec::new();
            let mut deny_if = Vec::new();
            let mut limits = Vec::new();
            for rule in &tool.rules {
                match &rule.kind {
                    Kind::Require {
                        conditions,
                        on_deny,
                    } => require.push(json!({ "conditions": conditions, "on_deny": on_deny })),
                    Kind::Deny { on_deny } => {
                        deny_if.push(json!({ "conditions": [], "on_deny": on_deny }))
                    }
                    Kind::Rate {
                        max,
                        window,
                        on_deny,
                    } => limits.push(limit(
                        &names[&(tool.locator.clone(), rule.index)],
                        window,
                        *max,
                        1,
                        None,
                        on_deny.as_deref(),
                    )),
                    Kind::Counter {
                        window,
                        max,
                        increment,
                        increment_from,
                        on_deny,
                        require: checks,
                        ..
                    } => {
                        if let Some((conditions, message)) = checks {
                            require.push(json!({ "conditions": conditions, "on_deny": message }));
                        }
                        limits.push(limit(
                            &names[&(tool.locator.clone(), rule.index)],
                            window,
                            *max,
                            *increment,
                            increment_from.as_deref(),
                            on_deny.as_deref(),
                        ));
                    }
                }
            }
            any_limit |= !limits.is_empty();
            let mut entry = Map::new();
            for (key, list) in [
                ("require", require),
                ("deny_if", deny_if),
                ("limits", limits),
            ] {
                if !list.is_empty() {
                    entry.insert(key.to_string(), Value::Array(list));
                }
            }
            if tool.name == WILDCARD {
                if !entry.is_empty() {
                    all_tools = Some(Value::Object(entry));
                }
            } else {
                tools.insert(tool.name.clone(), Value::Object(entry));
            }
        }

        if !self.lt_limits.is_empty() {
            let list = std::mem::take(&mut self.lt_limits).join(", ");
            self.note(format!(
                "A counter condition \"lt V\" lets at most V−1 calls (or amount V−1) through per \
                 window in Intercept, because the check includes the current call; the \
                 translated \"max\" is therefore V−1: {list}."
            ));
        }
        if any_limit {
            self.note(
                "Every limit has \"scope\": \"grant\" (one counter per agent grant). Intercept \
                 keeps its counters in its state store, shared by every call through that store \
                 (by default one SQLite file per user, or a shared Redis); if several agents \
                 should share one budget, change the scope to \"server\" or \"global\"."
                    .to_string(),
            );
        }

        let mut out = Map::new();
        out.insert("version".into(), json!("1"));
        if let Some(d) = doc.description {
            out.insert("description".into(), json!(d));
        }
        out.insert("default".into(), json!(doc.default));
        if !doc.hide.is_empty() {
            out.insert("hide".into(), json!(doc.hide));
        }
        if let Some(all) = all_tools {
            out.insert("all_tools".into(), all);
        }
        out.insert("tools".into(), Value::Object(tools));
        Translation {
            policy: Value::Object(out),
            notes: self.notes,
        }
    }

    /// Names every counter, keyed by (tool locator, rule index), so that distinct Intercept
    /// counters stay distinct: in Intercept a counter belongs to its tool (`state.<tool>.<c>`),
    /// in policy v1 one name is one counter.
    fn counter_names(&mut self, doc: &Doc) -> HashMap<(String, usize), String> {
        let scope_of = |tool: &Tool| {
            if tool.name == WILDCARD {
                GLOBAL_SCOPE.to_string()
            } else {
                tool.name.clone()
            }
        };
        let mut scopes: HashMap<&str, Vec<String>> = HashMap::new();
        for tool in &doc.tools {
            for rule in &tool.rules {
                if let Kind::Counter { counter, .. } = &rule.kind {
                    scopes.entry(counter).or_default().push(scope_of(tool));
                }
            }
        }

        let mut taken: HashSet<String> = HashSet::new();
        let mut unique = |wanted: String| {
            let mut name = wanted.clone();
            let mut n = 2;
            while !taken.insert(name.clone()) {
                name = format!("{wanted}_{n}");
                n += 1;
            }
            name
        };

        let mut names = HashMap::new();
        let mut renamed = Vec::new();
        for tool in &doc.tools {
            for rule in &tool.rules {
                if let Kind::Counter { counter, .. } = &rule.kind {
                    let shared = scopes[counter.as_str()].len() > 1;
                    let wanted = if shared {
                        format!("{}.{counter}", scope_of(tool))
                    } else {
                        counter.clone()
                    };
                    let name = unique(wanted);
                    if shared {
                        renamed.push(format!("{} ({name:?})", rule.locator));
                    }
                    names.insert((tool.locator.clone(), rule.index), name);
                }
            }
        }
        for tool in &doc.tools {
            let prefix = if tool.name == WILDCARD {
                "all_tools".to_string()
            } else {
                tool.name.clone()
            };
            for rule in &tool.rules {
                if let Kind::Rate { .. } = rule.kind {
                    let mut rule_part = slug(&rule.name);
                    if rule_part.is_empty() {
                        rule_part = format!("rule_{}", rule.index);
                    }
                    let name = unique(format!("{prefix}_{rule_part}"));
                    names.insert((tool.locator.clone(), rule.index), name);
                }
            }
        }
        if !renamed.is_empty() {
            self.note(format!(
                "Several tools use the same state counter name; Intercept keeps one counter per \
                 tool, Portcullis one per name, so they are renamed <tool>.<counter>: {}.",
                renamed.join(", ")
            ));
        }
        names
    }
}

/// A `limits` entry.
fn limit(
    counter: &str,
    window: &str,
    max: u64,
    increment: u64,
    increment_from: Option<&str>,
    on_deny: Option<&str>,
) -> Value {
    let mut m = Map::new();
    m.insert("counter".into(), json!(counter));
    m.insert("window".into(), json!(window));
    m.insert("max".into(), json!(max));
    m.insert("scope".into(), json!("grant"));
    match increment_from {
        Some(path) => {
            m.insert("increment_from".into(), json!(path));
        }
        None if increment != 1 => {
            m.insert("increment".into(), json!(increment));
        }
        None => {}
    }
    if let Some(message) = on_deny {
        m.insert("on_deny".into(), json!(message));
    }
    Value::Object(m)
}

/// The one-line cause of a regex error (the crate's message spans several lines).
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().last().unwrap_or_default().trim())
        .to_string()
}
