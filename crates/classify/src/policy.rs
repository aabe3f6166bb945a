//! Recommended rules (policy v1 fragments) and starter policies.

use crate::catchall::ArgRules;
use crate::{Category, Classification};
use serde_json::{json, Map, Value};

/// How strict a starter policy is. Every preset writes `"default": "deny"`, so a tool that is
/// not listed is denied, and every preset hides poisoning suspects: hiding is the only rule
/// that keeps a description away from the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Read: allowed at 60 calls a minute per grant. Write: each call needs a human approval.
    /// Execute and Financial: denied (unconditional `deny_if`). Destructive and poisoning
    /// suspects: hidden. Other: denied until reviewed. Argument rules of catch-all executors
    /// are kept where the tool stays callable.
    Strict,
    /// PolicyLayer's mapping, extended with argument rules. Read: allowed (`{}`). Write: 30 a
    /// minute per grant. Execute: 10 a minute per grant. Destructive: hidden. Financial: a
    /// human approves each call (`approve_if` with no conditions). Other: 30 a minute per
    /// grant, like a write, until reviewed. Catch-all executors keep their argument rules;
    /// poisoning suspects are hidden.
    Recommended,
    /// Usable first, still default deny. Read: allowed. Write: 60 a minute per grant. Execute:
    /// 30 a minute per grant. Financial: approval. Destructive: listed but denied (the agent
    /// sees the tool and gets a clear denial). Other: 60 a minute per grant. Argument rules are
    /// kept; poisoning suspects are hidden.
    Permissive,
}

impl Preset {
    /// `strict`, `recommended`, `permissive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Strict => "strict",
            Preset::Recommended => "recommended",
            Preset::Permissive => "permissive",
        }
    }

    /// Parses a preset name (as `init --preset` takes it).
    pub fn parse(s: &str) -> Option<Preset> {
        match s {
            "strict" => Some(Preset::Strict),
            "recommended" => Some(Preset::Recommended),
            "permissive" => Some(Preset::Permissive),
            _ => None,
        }
    }
}

/// Where a tool goes in a policy document.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Placement {
    /// `tools.<name>` = this rule object.
    Rule(Value),
    /// Listed under `hide`.
    Hide,
}

/// The counter name used for a tool's rate limit (`<tool>_rate`, as in the catalogue).
pub fn counter_name(tool: &str) -> String {
    format!("{tool}_rate")
}

/// A per-minute, per-grant limit on `tool`'s own counter.
pub(crate) fn per_minute(tool: &str, max: u64) -> Value {
    json!({ "counter": counter_name(tool), "window": "minute", "max": max, "scope": "grant" })
}

/// An unconditional `deny_if` entry.
pub(crate) fn deny_all(message: &str) -> Value {
    json!({ "conditions": [], "on_deny": message })
}

/// An unconditional `approve_if` entry.
pub(crate) fn approve_all(reason: &str) -> Value {
    json!({ "conditions": [], "reason": reason })
}

/// Message of the Financial approval.
pub(crate) const FINANCIAL_REASON: &str =
    "Financial tool: it moves money or changes billing, so a human approves each call.";
/// Message of the unconditional deny kept on hidden tools.
pub(crate) const HIDDEN_MESSAGE: &str =
    "This tool is hidden by policy: it deletes or destroys, or its description addresses the model.";

/// Builds a rule object: argument rules first, then extra entries, then limits. Empty
/// sections are left out, so a plain allow is `{}`.
fn rule(args: &ArgRules, deny: Vec<Value>, approve: Vec<Value>, limits: Vec<Value>) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Vec<Value>| {
        if !v.is_empty() {
            m.insert(k.to_string(), Value::Array(v));
        }
    };
    put("require", args.require.clone());
    let mut d = args.deny_if.clone();
    d.extend(deny);
    put("deny_if", d);
    let mut a = args.approve_if.clone();
    a.extend(approve);
    put("approve_if", a);
    put("limits", limits);
    Value::Object(m)
}

/// Where a classified tool goes under a preset.
pub(crate) fn placement(
    tool: &str,
    category: Category,
    poisoned: bool,
    args: &ArgRules,
    preset: Preset,
) -> Placement {
    use Category::*;
    if poisoned {
        return Placement::Hide;
    }
    let none = ArgRules::default();
    let limit = |max| vec![per_minute(tool, max)];
    match preset {
        Preset::Recommended => match category {
            Read => Placement::Rule(rule(args, vec![], vec![], vec![])),
            Write | Other => Placement::Rule(rule(args, vec![], vec![], limit(30))),
            Execute => Placement::Rule(rule(args, vec![], vec![], limit(10))),
            Destructive => Placement::Hide,
            Financial => Placement::Rule(rule(
                args,
                vec![],
                vec![approve_all(FINANCIAL_REASON)],
                vec![],
            )),
        },
        Preset::Strict => match category {
            Read => Placement::Rule(rule(args, vec![], vec![], limit(60))),
            Write => Placement::Rule(rule(
                args,
                vec![],
                vec![approve_all(
                    "Strict policy: every call to a tool that writes needs a human approval.",
                )],
                vec![],
            )),
            Execute => Placement::Rule(rule(
                &none,
                vec![deny_all(
                    "Strict policy: tools that execute code, commands or processes are denied.",
                )],
                vec![],
                vec![],
            )),
            Financial => Placement::Rule(rule(
                &none,
                vec![deny_all("Strict policy: financial tools are denied.")],
                vec![],
                vec![],
            )),
            Destructive => Placement::Hide,
            Other => Placement::Rule(rule(
                &none,
                vec![deny_all(
                    "Strict policy: this tool could not be classified; review it and write a rule.",
                )],
                vec![],
                vec![],
            )),
        },
        Preset::Permissive => match category {
            Read => Placement::Rule(rule(args, vec![], vec![], vec![])),
            Write | Other => Placement::Rule(rule(args, vec![], vec![], limit(60))),
            Execute => Placement::Rule(rule(args, vec![], vec![], limit(30))),
            Financial => Placement::Rule(rule(
                args,
                vec![],
                vec![approve_all(FINANCIAL_REASON)],
                vec![],
            )),
            Destructive => Placement::Rule(rule(
                &none,
                vec![deny_all(
                    "This tool deletes or destroys data; the policy denies it.",
                )],
                vec![],
                vec![],
            )),
        },
    }
}

/// The recommended rule object for `tools.<name>`; for a hidden tool, the unconditional deny
/// that applies if someone lists it without hiding it.
pub(crate) fn recommended_rule(placement: &Placement) -> Value {
    match placement {
        Placement::Rule(r) => r.clone(),
        Placement::Hide => json!({ "deny_if": [deny_all(HIDDEN_MESSAGE)] }),
    }
}

/// A full policy v1 document, `"default": "deny"`, with one entry per classified tool (in the
/// order given; a repeated name keeps its first entry). The document validates with
/// `portcullis_policy::doc::from_value`.
pub fn starter_policy(classes: &[Classification], preset: Preset) -> Value {
    let mut tools = Map::new();
    let mut hide: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let (mut listed, mut hidden) = (0usize, 0usize);
    for c in classes {
        if c.tool.is_empty() || !seen.insert(c.tool.as_str()) {
            continue;
        }
        match c.placement(preset) {
            Placement::Rule(r) => {
                tools.insert(c.tool.clone(), r);
                listed += 1;
            }
            Placement::Hide => {
                hide.push(json!(c.tool));
                hidden += 1;
            }
        }
    }
    let server = classes.first().map(|c| c.server.as_str()).unwrap_or("");
    let mut doc = Map::new();
    doc.insert("version".into(), json!("1"));
    doc.insert("default".into(), json!("deny"));
    doc.insert(
        "description".into(),
        json!(format!(
            "Starter policy ({} preset) for server {server:?}, generated by portcullis-classify from {} tool definitions: {listed} listed, {hidden} hidden, everything else denied. Review before use.",
            preset.as_str(),
            listed + hidden
        )),
    );
    if !hide.is_empty() {
        doc.insert("hide".into(), Value::Array(hide));
    }
    doc.insert("tools".into(), Value::Object(tools));
    Value::Object(doc)
}

/// The recommended document for one tool: default deny, and just this tool (listed with its
/// rule, or hidden) — what a catalogue page shows as `policy.json`.
pub fn tool_policy(c: &Classification) -> Value {
    let mut doc = Map::new();
    doc.insert("version".into(), json!("1"));
    doc.insert("default".into(), json!("deny"));
    if c.hide {
        doc.insert("hide".into(), json!([c.tool]));
    } else {
        let mut tools = Map::new();
        tools.insert(c.tool.clone(), c.rule.clone());
        doc.insert("tools".into(), Value::Object(tools));
    }
    Value::Object(doc)
}
