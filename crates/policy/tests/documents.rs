//! Real documents: the seed policies, the shipped examples, and the JSON Schema agreeing with
//! the parser.

mod common;
use common::*;
use portcullis_policy::doc::{self, Default};
use portcullis_policy::{parse, Call, Decision, Engine, Scope, Window};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Pulls the `policy.json` block out of a seed page: the text from the first line that is
/// exactly `{` to the matching line that is exactly `}`.
fn seed_policy(page: &str) -> String {
    let lines: Vec<&str> = page.lines().collect();
    let start = lines.iter().position(|l| *l == "{").expect("policy block");
    let end = start
        + lines[start..]
            .iter()
            .position(|l| *l == "}")
            .expect("end of block");
    lines[start..=end].join("\n")
}

fn check_seed_meaning(text: &str, tool: &str) {
    let d = parse(text).unwrap_or_else(|e| panic!("seed for {tool} rejected: {e:?}"));
    assert_eq!(d.default, Default::Deny);
    assert_eq!(d.tools.len(), 1);
    let l = &d.tool(tool).unwrap().limits[0];
    assert_eq!(
        (l.counter.as_str(), l.window.as_str(), l.max, l.scope),
        (format!("{tool}_rate").as_str(), "minute", 10, Scope::Grant)
    );
    // It means what it says: 10 a minute per grant pass, the 11th is denied, other tools are denied.
    let e = Engine::compile(d);
    let store = TestCounters::default();
    let call = Call { tool, args: None };
    for i in 0..10 {
        assert!(
            matches!(
                e.decide(&call, &alice(), &store, NOON + i * 1000),
                Decision::Allow(_)
            ),
            "call {i}"
        );
    }
    match e.decide(&call, &alice(), &store, NOON + 10_000) {
        Decision::Deny(d) => {
            assert_eq!(d.rule, format!("/tools/{tool}/limits/0"));
            assert_eq!(d.retry_after_secs, Some(50));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(
            e.decide(&call, &bob(), &store, NOON + 10_000),
            Decision::Allow(_)
        ),
        "per grant"
    );
    assert!(
        matches!(
            e.decide(&call, &alice(), &store, NOON + 60_000),
            Decision::Allow(_)
        ),
        "next minute"
    );
    match e.decide(
        &Call {
            tool: "odoo_execute",
            args: None,
        },
        &alice(),
        &store,
        NOON,
    ) {
        Decision::Deny(d) => assert_eq!(d.rule, "(default deny)"),
        other => panic!("{other:?}"),
    }
    let _ = Window::Minute;
}

#[test]
fn shipped_seed_examples_mean_what_they_say() {
    for tool in ["ai_invoice_pipeline_run", "ai_pipeline_run"] {
        let text =
            std::fs::read_to_string(repo().join(format!("examples/policies/{tool}.json"))).unwrap();
        check_seed_meaning(&text, tool);
    }
}

#[test]
fn the_seed_pages_parse_unchanged() {
    let dir = repo().join("../shared/seeds");
    if !dir.exists() {
        eprintln!("skipped: ../shared/seeds not found (it is beside the repository in CI)");
        return;
    }
    for tool in ["ai_invoice_pipeline_run", "ai_pipeline_run"] {
        let page = std::fs::read_to_string(dir.join(format!("{tool}.txt"))).unwrap();
        let block = seed_policy(&page);
        check_seed_meaning(&block, tool);
        // The shipped example is the seed's block, byte for byte.
        let shipped =
            std::fs::read_to_string(repo().join(format!("examples/policies/{tool}.json"))).unwrap();
        assert_eq!(shipped.trim_end(), block);
    }
}

#[test]
fn every_shipped_example_policy_validates() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("examples/policies")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&p).unwrap();
            parse(&text).unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 3);
}

fn schema_keys(schema: &Value, pointer: &str) -> Vec<String> {
    let mut k: Vec<String> = schema
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer}"))
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

#[test]
fn json_schema_matches_the_parser() {
    let schema: Value = serde_json::from_str(portcullis_policy::JSON_SCHEMA).unwrap();
    assert_eq!(schema_keys(&schema, "/properties"), sorted(doc::TOP_KEYS));
    assert_eq!(
        schema_keys(&schema, "/$defs/rules/properties"),
        sorted(doc::RULE_KEYS)
    );
    assert_eq!(
        schema_keys(&schema, "/$defs/entry/properties"),
        sorted(doc::ENTRY_KEYS)
    );
    assert_eq!(
        schema_keys(&schema, "/$defs/approval/properties"),
        sorted(doc::APPROVAL_KEYS)
    );
    assert_eq!(
        schema_keys(&schema, "/$defs/condition/properties"),
        sorted(doc::CONDITION_KEYS)
    );
    assert_eq!(
        schema_keys(&schema, "/$defs/limit/properties"),
        sorted(doc::LIMIT_KEYS)
    );
    let ops: Vec<&str> = schema
        .pointer("/$defs/condition/properties/op/enum")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ops, doc::OPS);
    // The top-level extensions are marked as such, and `hide_denied` is a boolean that is off
    // unless set, as the parser reads it.
    for key in ["mode", "description", "hide_denied"] {
        let d = schema["properties"][key]["description"].as_str().unwrap();
        assert!(d.starts_with("(ext)"), "{key}: {d}");
    }
    assert_eq!(schema["properties"]["hide_denied"]["type"], "boolean");
    assert_eq!(schema["properties"]["hide_denied"]["default"], false);
    let minimal = parse(r#"{"version":"1","default":"deny"}"#).unwrap();
    assert!(!minimal.hide_denied);
    // The extensions of conditions are marked as such.
    let condition = schema.pointer("/$defs/condition/properties").unwrap();
    for key in ["style", "base", "schemes"] {
        let d = condition[key]["description"].as_str().unwrap();
        assert!(d.starts_with("(ext)"), "{key}: {d}");
    }
    let op_doc = condition["op"]["description"].as_str().unwrap();
    for op in [
        "path_under",
        "path_not_under",
        "url_host_in",
        "url_host_not_in",
    ] {
        assert!(
            op_doc.starts_with("(ext)") && op_doc.contains(op),
            "{op_doc}"
        );
    }
    let styles: Vec<&str> = condition["style"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(styles, portcullis_policy::norm::PathStyle::NAMES);
    let scopes: Vec<&str> = schema
        .pointer("/$defs/limit/properties/scope/enum")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(scopes, doc::SCOPES);
    // Every object in the schema is closed, as the parser is.
    fn closed(v: &Value, at: &str) {
        if let Some(m) = v.as_object() {
            if m.contains_key("properties") && !at.is_empty() {
                assert_eq!(
                    m.get("additionalProperties"),
                    Some(&Value::Bool(false)),
                    "schema object at {at} must be closed"
                );
            }
            for (k, c) in m {
                closed(c, &format!("{at}/{k}"));
            }
        }
    }
    closed(&schema, "");
    assert_eq!(
        schema.get("additionalProperties"),
        Some(&Value::Bool(false))
    );
}
