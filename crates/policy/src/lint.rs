//! Checks a policy against a server's real tool list (`validate --tools`): policy keys that
//! name no tool, and `args.*` paths that the tool's `inputSchema` does not declare. These are
//! the typos that make a rule silently never match.

use crate::doc::{suggest, tool_locator, PolicyDoc, ValidationError};
use crate::path::{Path, Root, Step};
use serde_json::Value;

/// Extracts the tools array from a `tools/list` result (`{"tools": [...]}`), a JSON-RPC
/// response carrying one (`{"result": {"tools": [...]}}`), or a bare array.
pub fn tools_of(v: &Value) -> Option<&Vec<Value>> {
    match v {
        Value::Array(a) => Some(a),
        Value::Object(m) => match m.get("tools") {
            Some(Value::Array(a)) => Some(a),
            _ => m.get("result").and_then(tools_of),
        },
        _ => None,
    }
}

/// Reports policy keys naming no tool and undeclared argument paths.
pub fn lint(doc: &PolicyDoc, tools: &[Value]) -> Vec<ValidationError> {
    let by_name: Vec<(&str, &Value)> = tools
        .iter()
        .filter_map(|t| {
            Some((
                t.get("name")?.as_str()?,
                t.get("inputSchema").unwrap_or(&Value::Null),
            ))
        })
        .collect();
    let names: Vec<&str> = by_name.iter().map(|(n, _)| *n).collect();
    let schema_of = |tool: &str| by_name.iter().find(|(n, _)| *n == tool).map(|(_, s)| *s);
    let mut out = Vec::new();
    let unknown = |name: &str| {
        let hint = suggest(name, &names)
            .map(|s| format!(" (did you mean {s:?}?)"))
            .unwrap_or_default();
        format!("no tool named {name:?} on this server{hint}; the entry can never apply")
    };
    for (name, _) in &doc.tools {
        if schema_of(name).is_none() {
            out.push(ValidationError {
                locator: tool_locator(name),
                message: unknown(name),
            });
        }
    }
    for (i, h) in doc.hide.iter().enumerate() {
        if h != "*" && schema_of(h).is_none() {
            out.push(ValidationError {
                locator: format!("hide[{i}]"),
                message: unknown(h),
            });
        }
    }
    for (locator, tool, path) in doc.condition_paths() {
        let Ok(p) = Path::parse(path) else { continue };
        if p.root() != Root::Args {
            continue;
        }
        match tool {
            Some(t) => {
                let Some(schema) = schema_of(t) else { continue };
                if let Some(why) = undeclared(schema, p.steps()) {
                    out.push(ValidationError {
                        locator,
                        message: format!("{path}: {why} in the inputSchema of {t:?}"),
                    });
                }
            }
            None => {
                if !by_name.is_empty()
                    && by_name
                        .iter()
                        .all(|(_, s)| undeclared(s, p.steps()).is_some())
                {
                    out.push(ValidationError {
                        locator,
                        message: format!("{path}: no tool on this server declares it"),
                    });
                }
            }
        }
    }
    out
}

/// Walks `steps` through a JSON Schema; `Some(reason)` when a step is certainly undeclared.
/// Schemas that do not say (no `properties`, or `additionalProperties` allowed) pass.
fn undeclared(schema: &Value, steps: &[Step]) -> Option<String> {
    let mut cur = schema;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Key(k) => {
                let props = cur.get("properties").and_then(Value::as_object)?;
                match props.get(&**k) {
                    Some(s) => cur = s,
                    None => {
                        let open = cur
                            .get("additionalProperties")
                            .is_some_and(|a| a != &Value::Bool(false));
                        if open && i > 0 {
                            return None;
                        }
                        let keys: Vec<&str> = props.keys().map(String::as_str).collect();
                        let hint = suggest(k, &keys)
                            .map(|s| format!(" (did you mean {s:?}?)"))
                            .unwrap_or_default();
                        return Some(format!("field {k:?} is not declared{hint}"));
                    }
                }
            }
            Step::Index(_) | Step::Each => cur = cur.get("items")?,
        }
    }
    None
}
