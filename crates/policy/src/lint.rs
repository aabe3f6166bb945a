//! Checks a policy against a server's real tool list (`validate --tools`): policy keys that
//! name no tool, and `args.*` paths that the tool's `inputSchema` does not declare — the typos
//! that make a rule silently never match; comparisons with a value of another JSON type than
//! the schema declares for the argument (`gt 10000` on a string), which never match a call
//! that follows the schema; and string comparisons (`regex`, `eq`, `contains`) on arguments
//! that look like paths or URLs, which a respelling slips past.

use crate::doc::{suggest, tool_locator, Op, PolicyDoc, ValidationError};
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
    for (locator, tool, c) in doc.conditions() {
        let Ok(p) = Path::parse(&c.path) else {
            continue;
        };
        if p.root() != Root::Args {
            continue;
        }
        let operands: Vec<&Value> = match c.op {
            Op::Eq | Op::Neq | Op::Lt | Op::Lte | Op::Gt | Op::Gte => vec![&c.value],
            Op::In | Op::NotIn => c
                .value
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let candidates: Vec<(&str, &Value)> = match tool {
            Some(t) => by_name.iter().filter(|(n, _)| *n == t).copied().collect(),
            None => by_name.clone(),
        };
        let mismatch = candidates.iter().find_map(|(t, s)| {
            let declared = declared_types(schema_at(s, p.steps())?)?;
            let v = operands.iter().find(|v| !type_fits(v, &declared))?;
            Some((*t, declared, *v))
        });
        if let Some((t, declared, v)) = mismatch {
            out.push(ValidationError {
                locator: format!("{locator}.value"),
                message: format!(
                    "{} is declared {} in the inputSchema of {t:?}, but {:?} compares it with {} ({}), which a call that follows the schema never equals or orders against; compare with a {} (validate_arguments = \"enforce\" refuses calls that send another type)",
                    c.path,
                    declared.join(" or "),
                    c.op.as_str(),
                    crate::json::type_name(v),
                    v,
                    declared.join(" or "),
                ),
            });
        }
    }
    for (locator, tool, c) in doc.conditions() {
        if !matches!(c.op, Op::Regex | Op::Eq | Op::Contains) {
            continue;
        }
        let Ok(p) = Path::parse(&c.path) else {
            continue;
        };
        if p.root() != Root::Args {
            continue;
        }
        // The tool's schema; for all_tools, any tool's.
        let schemas: Vec<&Value> = match tool {
            Some(t) => schema_of(t).into_iter().collect(),
            None => by_name.iter().map(|(_, s)| *s).collect(),
        };
        let Some((kind, why)) = looks_like(&p, &schemas) else {
            continue;
        };
        let (instead, respelt) = match kind {
            Kind::Path => ("path_under or path_not_under", "/srv/app/../../etc/passwd"),
            Kind::Url => ("url_host_in or url_host_not_in", "HTTP://2130706433/"),
        };
        out.push(ValidationError {
            locator: format!("{locator}.op"),
            message: format!(
                "{} looks like a {} ({why}), but {:?} compares its spelling, which a respelling such as {respelt:?} slips past; use {instead} instead",
                c.path,
                kind.noun(),
                c.op.as_str()
            ),
        });
    }
    out
}

/// What an argument looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Path,
    Url,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Path => "file path",
            Kind::Url => "URL",
        }
    }
}

/// Words of an argument name that mark a path or a URL.
const PATH_WORDS: &[&str] = &[
    "path",
    "paths",
    "file",
    "files",
    "filename",
    "filepath",
    "dir",
    "dirs",
    "directory",
    "directories",
    "folder",
    "cwd",
];
const URL_WORDS: &[&str] = &["url", "urls", "uri", "uris", "href", "endpoint"];

/// Whether the argument at `path` looks like a path or URL, and why: its schema says
/// `format: uri` (or `uri-reference`, `iri`), or the last field name has a telling word
/// (`file_path`, `targetUrl`, `dir`).
fn looks_like(path: &Path, schemas: &[&Value]) -> Option<(Kind, String)> {
    let uri_format = schemas.iter().find_map(|s| {
        let f = schema_at(s, path.steps())?.get("format")?.as_str()?;
        matches!(f, "uri" | "uri-reference" | "iri" | "iri-reference" | "url").then_some(f)
    });
    if let Some(f) = uri_format {
        return Some((Kind::Url, format!("its inputSchema says format: {f}")));
    }
    let name = path.steps().iter().rev().find_map(|s| match s {
        Step::Key(k) => Some(&**k),
        _ => None,
    })?;
    let words = words(name);
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    let kind = if has(URL_WORDS) {
        Kind::Url
    } else if has(PATH_WORDS) {
        Kind::Path
    } else {
        return None;
    };
    Some((kind, format!("by its name {name:?}")))
}

/// The lowercase words of a field name: `filePath`, `file_path`, `file-path` → file, path.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        let boundary = !ch.is_ascii_alphanumeric() || (ch.is_ascii_uppercase() && prev_lower);
        if boundary && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        if ch.is_ascii_alphanumeric() {
            cur.push(ch.to_ascii_lowercase());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The schema of the value at `steps`, when the schema declares it.
fn schema_at<'s>(schema: &'s Value, steps: &[Step]) -> Option<&'s Value> {
    let mut cur = schema;
    for step in steps {
        cur = match step {
            Step::Key(k) => cur.get("properties")?.get(&**k)?,
            Step::Index(_) | Step::Each => cur.get("items")?,
        };
    }
    Some(cur)
}

/// The JSON types a schema declares (`type: "string"` or `type: ["string", "null"]`); `None`
/// when it does not say.
fn declared_types(schema: &Value) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => {
            let ts: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            (!ts.is_empty()).then_some(ts)
        }
        _ => None,
    }
}

/// Whether a value is of one of the declared JSON types (an integer is also a `number`; a
/// whole float such as `5.0` is also an `integer`, as JSON Schema counts it).
fn type_fits(v: &Value, declared: &[&str]) -> bool {
    let whole = v.as_f64().is_some_and(|f| f.fract() == 0.0);
    declared.iter().any(|d| match *d {
        "number" => v.is_number(),
        "integer" => v.is_number() && whole,
        d => crate::json::type_name(v) == d,
    })
}

/// Walks `steps` through a JSON Schema; `Some(reason)` when a step is certainly undeclared.
/// (Unlike [`schema_at`], it tells an undeclared field from a schema that does not say.)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comparisons_with_another_type_than_declared() {
        let tools = vec![
            json!({"name": "pay", "inputSchema": {"type": "object", "properties": {
            "amount": {"type": "integer"}, "ref": {"type": "string"},
            "rate": {"type": "number"}, "tag": {"type": ["string", "null"]}}}}),
        ];
        let found = |op: &str, path: &str, value: Value| {
            let doc = crate::doc::from_value(&json!({"version": "1", "default": "allow",
                "tools": {"pay": {"deny_if": [{"conditions": [
                    {"path": path, "op": op, "value": value}]}]}}}))
            .unwrap();
            lint(&doc, &tools)
                .into_iter()
                .map(|e| format!("{} {}", e.locator, e.message))
                .collect::<Vec<_>>()
        };
        let m = found("gt", "args.ref", json!(10000));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with(
                "tools.pay.deny_if[0].conditions[0].value args.ref is declared string"
            ) && m[0].contains("\"gt\" compares it with integer (10000)"),
            "{m:?}"
        );
        let m = found("eq", "args.amount", json!("5"));
        assert!(
            m.len() == 1
                && m[0].contains("declared integer")
                && m[0].contains("with string (\"5\")"),
            "{m:?}"
        );
        assert_eq!(found("in", "args.amount", json!([1, "2"])).len(), 1);
        assert_eq!(found("eq", "args.amount", json!(5.0)), Vec::<String>::new());
        assert_eq!(found("gt", "args.rate", json!(10)), Vec::<String>::new());
        assert_eq!(found("eq", "args.tag", Value::Null), Vec::<String>::new());
        assert_eq!(
            found("regex", "args.ref", json!("^A")),
            Vec::<String>::new()
        );
        assert_eq!(
            found("gt", "args.amount", json!(10000)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn words_split_names() {
        assert_eq!(words("filePath"), ["file", "path"]);
        assert_eq!(words("target_URL"), ["target", "url"]);
        assert_eq!(words("security"), ["security"]);
        assert_eq!(words("dir2"), ["dir2"]);
    }

    #[test]
    fn names_and_formats_that_look_like_paths_or_urls() {
        let p = |s: &str| Path::parse(s).unwrap();
        let schema = json!({"properties": {"target": {"type": "string", "format": "uri"},
            "links": {"type": "array", "items": {"format": "uri"}}}});
        let kind = |s: &str| looks_like(&p(s), &[&schema]).map(|(k, _)| k);
        assert_eq!(kind("args.path"), Some(Kind::Path));
        assert_eq!(kind("args.sourceFiles[*]"), Some(Kind::Path));
        assert_eq!(kind("args.work_dir"), Some(Kind::Path));
        assert_eq!(kind("args.url"), Some(Kind::Url));
        assert_eq!(kind("args.target"), Some(Kind::Url));
        assert_eq!(kind("args.links[0]"), Some(Kind::Url));
        assert_eq!(kind("args.security"), None);
        assert_eq!(kind("args.profile"), None);
        assert_eq!(kind("args.amount"), None);
    }
}
