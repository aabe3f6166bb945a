//! The input schemas each server listed, compiled, for checking `tools/call` arguments
//! (`validate_arguments`): filled from `tools/list` answers as they pass the relay, shared by
//! every connection to the same server.
//!
//! Schemas are compiled with the `jsonschema` crate (the draft named by `$schema`, 2020-12
//! when none is, as MCP specifies) and without any remote or file reference resolution: a
//! schema that points outside itself cannot be compiled and its tool is reported as
//! unusable rather than fetched.

use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

/// Most schemas remembered per server; tools beyond are treated as not listed.
pub const MAX_SCHEMAS_PER_SERVER: usize = 1024;

/// How a server's `tools/call` arguments are checked against the tool's `inputSchema`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidateArguments {
    /// Refuse calls whose arguments do not match (`-32602`, nothing forwarded), and calls to
    /// a tool whose schema the gateway could not obtain (fail closed). The default.
    #[default]
    Enforce,
    /// Log and audit mismatches, forward anyway.
    Warn,
    /// No check.
    Off,
}

impl std::str::FromStr for ValidateArguments {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "enforce" => Ok(ValidateArguments::Enforce),
            "warn" => Ok(ValidateArguments::Warn),
            "off" => Ok(ValidateArguments::Off),
            _ => Err(format!("{s:?}: give enforce, warn or off")),
        }
    }
}

/// One listed tool's schema: the JSON as listed (to skip recompiling an unchanged one) and
/// its validator, or why it could not be compiled.
struct Entry {
    schema: Value,
    validator: Result<Arc<jsonschema::Validator>, String>,
}

/// What checking a call's arguments found.
#[derive(Debug, PartialEq, Eq)]
pub enum ArgCheck {
    /// The server has not listed the tool (as far as the gateway saw).
    Unknown,
    /// The arguments match the schema.
    Valid,
    /// They do not: each mismatch as `locator: what was expected`.
    Invalid(String),
    /// The listed schema could not be compiled (why); the arguments cannot be checked.
    Unusable(String),
}

/// One server's schemas, and whether a whole listing has been seen since the server last
/// said its tools changed (a tool still unknown then is one the server does not list).
#[derive(Default)]
struct Server {
    tools: HashMap<String, Arc<Entry>>,
    complete: bool,
}

/// The compiled input schemas per server and tool.
#[derive(Default)]
pub struct ToolSchemas(RwLock<HashMap<String, Server>>);

impl std::fmt::Debug for ToolSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToolSchemas")
    }
}

impl ToolSchemas {
    /// Remembers `tool`'s `inputSchema` as listed by `server` (replacing an earlier one).
    pub fn record(&self, server: &str, tool: &str, schema: &Value) {
        if let Some(e) = self.entry(server, tool) {
            if e.schema == *schema {
                return;
            }
        }
        let validator = compile(schema).map(Arc::new);
        if let Err(e) = &validator {
            tracing::warn!(
                server,
                tool,
                "the tool's inputSchema cannot be compiled: {e}"
            );
        }
        let entry = Arc::new(Entry {
            schema: schema.clone(),
            validator,
        });
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        let tools = &mut map.entry(server.to_owned()).or_default().tools;
        if tools.len() < MAX_SCHEMAS_PER_SERVER || tools.contains_key(tool) {
            tools.insert(tool.to_owned(), entry);
        }
    }

    /// Notes that `server` answered the last page of a listing (`true`), or said its tools
    /// changed (`false`: the next call to an unknown tool fetches a listing again).
    pub fn set_complete(&self, server: &str, complete: bool) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.entry(server.to_owned()).or_default().complete = complete;
    }

    /// Whether a call to `tool` should wait for a listing first: its schema is unknown and no
    /// whole listing has been seen since the server's tools last changed.
    pub fn worth_listing(&self, server: &str, tool: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(server)
            .is_none_or(|s| !s.complete && !s.tools.contains_key(tool))
    }

    fn entry(&self, server: &str, tool: &str) -> Option<Arc<Entry>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(server)
            .and_then(|s| s.tools.get(tool))
            .cloned()
    }

    /// Whether `server` listed `tool` with a schema.
    pub fn knows(&self, server: &str, tool: &str) -> bool {
        self.entry(server, tool).is_some()
    }

    /// Checks a call's `arguments` (absent or `null`: an empty object) against the schema
    /// `server` listed for `tool`.
    pub fn check(&self, server: &str, tool: &str, args: Option<&Value>) -> ArgCheck {
        let Some(entry) = self.entry(server, tool) else {
            return ArgCheck::Unknown;
        };
        let validator = match &entry.validator {
            Ok(v) => v,
            Err(e) => return ArgCheck::Unusable(e.clone()),
        };
        let empty = Value::Object(Default::default());
        let args = match args {
            None | Some(Value::Null) => &empty,
            Some(a) => a,
        };
        let mut found = String::new();
        for (n, e) in validator.iter_errors(args).enumerate() {
            if n == 3 {
                found.push_str("; …");
                break;
            }
            if n > 0 {
                found.push_str("; ");
            }
            found.push_str(&locator(args, e.instance_path()));
            found.push_str(": ");
            match e.kind() {
                // The expected type, and the JSON type sent (not its value: it may be secret).
                jsonschema::error::ValidationErrorKind::Type { kind } => {
                    let expected = match kind {
                        jsonschema::error::TypeKind::Single(t) => t.to_string(),
                        jsonschema::error::TypeKind::Multiple(ts) => ts
                            .iter()
                            .map(|t| t.to_string())
                            .collect::<Vec<_>>()
                            .join(" or "),
                    };
                    let _ = write!(
                        found,
                        "expected {expected}, got {}",
                        portcullis_policy::json::type_name(e.instance())
                    );
                }
                _ => {
                    let _ = write!(found, "{}", e.masked());
                }
            }
        }
        if found.is_empty() {
            ArgCheck::Valid
        } else {
            ArgCheck::Invalid(found)
        }
    }
}

/// Compiles a listed schema; references outside it are never fetched (no retriever is
/// built in: the crate's HTTP and file resolution are compiled out).
fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

/// `arguments.amount`, `arguments.items[2].sku`, `arguments["a b"]` for an instance path.
fn locator(args: &Value, path: &jsonschema::paths::Location) -> String {
    let mut out = String::from("arguments");
    let mut at = Some(args);
    for seg in path.segments() {
        match seg {
            jsonschema::paths::LocationSegment::Index(i) => {
                let _ = write!(out, "[{i}]");
                at = at.and_then(|v| v.get(i));
            }
            jsonschema::paths::LocationSegment::Property(p) => {
                let p: &str = &p;
                // An array index may come as a property segment: show it as one.
                match at {
                    Some(Value::Array(a)) if p.parse::<usize>().is_ok_and(|i| i < a.len()) => {
                        let _ = write!(out, "[{p}]");
                    }
                    _ if !p.is_empty()
                        && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                    {
                        let _ = write!(out, ".{p}");
                    }
                    _ => {
                        let _ = write!(out, "[{}]", Value::from(p));
                    }
                }
                at = at.and_then(|v| match v {
                    Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => v.get(p),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pay() -> ToolSchemas {
        let s = ToolSchemas::default();
        s.record(
            "odoo",
            "pay",
            &json!({"type":"object","properties":{
                "amount":{"type":"integer"},
                "items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string"}}}},
                "note":{"type":["string","null"]}
            },"required":["amount"]}),
        );
        s
    }

    #[test]
    fn locators_and_expected_types() {
        let s = pay();
        assert_eq!(
            s.check("odoo", "pay", Some(&json!({"amount": 5}))),
            ArgCheck::Valid
        );
        assert_eq!(
            s.check("odoo", "pay", Some(&json!({"amount": "20000"}))),
            ArgCheck::Invalid("arguments.amount: expected integer, got string".into())
        );
        assert_eq!(
            s.check(
                "odoo",
                "pay",
                Some(&json!({"amount": 1, "items": [{"sku": "a"}, {"sku": 7}]}))
            ),
            ArgCheck::Invalid("arguments.items[1].sku: expected string, got integer".into())
        );
        assert_eq!(
            s.check("odoo", "pay", Some(&json!({"amount": 1, "note": 3}))),
            ArgCheck::Invalid("arguments.note: expected null or string, got integer".into())
        );
        let ArgCheck::Invalid(m) = s.check("odoo", "pay", None) else {
            panic!("missing required amount must be refused")
        };
        assert!(m.starts_with("arguments: ") && m.contains("amount"), "{m}");
        assert_eq!(s.check("odoo", "other", None), ArgCheck::Unknown);
        assert_eq!(s.check("crm", "pay", None), ArgCheck::Unknown);
        assert!(s.worth_listing("odoo", "other") && !s.worth_listing("odoo", "pay"));
        s.set_complete("odoo", true);
        assert!(
            !s.worth_listing("odoo", "other"),
            "listed in full: other is not a tool"
        );
        s.set_complete("odoo", false);
        assert!(s.worth_listing("odoo", "other"), "the tools changed");
    }

    #[test]
    fn remote_references_are_not_fetched() {
        let s = ToolSchemas::default();
        s.record("x", "t", &json!({"$ref": "http://127.0.0.1:9/never.json"}));
        assert!(matches!(s.check("x", "t", None), ArgCheck::Unusable(_)));
    }

    #[test]
    fn modes_parse() {
        assert_eq!("warn".parse(), Ok(ValidateArguments::Warn));
        assert!("strict".parse::<ValidateArguments>().is_err());
        assert_eq!(ValidateArguments::default(), ValidateArguments::Enforce);
    }
}
