//! Intercept's own policy test documents, carried in the repository under
//! `tests/data/intercept-policies/` (source and licence in `tests/data/README.md`).

mod common;

use std::path::PathBuf;

use common::{assert_error, errs, ok};
use serde_json::json;

/// The text of a fixture; a missing file fails the test, naming the path.
fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/intercept-policies")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "test data {} is missing or unreadable ({e}); it is part of the repository",
            path.display()
        )
    })
}

#[test]
fn valid_policy_translates_exactly() {
    let yaml = fixture("valid_policy.yaml");
    let t = ok(&yaml);
    let expected = json!({
        "version": "1",
        "description": "Stripe MCP server policies",
        "default": "allow",
        "all_tools": {
            "limits": [
                { "counter": "calls_per_minute", "window": "minute", "max": 59, "scope": "grant",
                  "on_deny": "Rate limit: maximum 60 tool calls per minute" }
            ]
        },
        "tools": {
            "create_charge": {
                "require": [
                    { "conditions": [ { "path": "args.amount", "op": "lte", "value": 50000 } ],
                      "on_deny": "Single charge cannot exceed $500.00" },
                    { "conditions": [ { "path": "args.currency", "op": "in", "value": ["usd", "eur"] } ],
                      "on_deny": "Only USD and EUR charges are permitted" }
                ],
                "limits": [
                    { "counter": "daily_spend", "window": "day", "max": 999999, "scope": "grant",
                      "increment_from": "args.amount",
                      "on_deny": "Daily spending cap of $10,000.00 reached" }
                ]
            },
            "create_issue": {
                "limits": [
                    { "counter": "create_issue_hourly_issue_limit", "window": "hour", "max": 5,
                      "scope": "grant", "on_deny": "Hourly limit of 5 new issues reached" }
                ]
            },
            "create_refund": {
                "require": [
                    { "conditions": [ { "path": "args.amount", "op": "lte", "value": 10000 } ],
                      "on_deny": "Refunds over $100.00 require manual processing" }
                ],
                "limits": [
                    { "counter": "daily_count", "window": "day", "max": 9, "scope": "grant",
                      "on_deny": "Daily refund limit (10) reached" }
                ]
            },
            "delete_customer": {
                "deny_if": [
                    { "conditions": [], "on_deny": "Customer deletion is not permitted via AI agents" }
                ]
            }
        }
    });
    assert_eq!(t.policy, expected);
    // Same text, so the key order is the documented one too.
    assert_eq!(t.policy.to_string(), expected.to_string());

    assert_eq!(t.notes.len(), 5, "{:#?}", t.notes);
    common::assert_note(&t, "\"default\" is not set");
    common::assert_note(&t, "increment_from");
    common::assert_note(&t, "loosely");
    common::assert_note(&t, "tools.*.rules[0] (lt 60 → max 59)");
    common::assert_note(&t, "\"scope\": \"grant\"");
}

#[test]
fn default_deny_policy_translates() {
    let yaml = fixture("default_deny_policy.yaml");
    let t = ok(&yaml);
    assert_eq!(
        t.policy,
        json!({
            "version": "1",
            "description": "Default-deny test fixture",
            "default": "deny",
            "all_tools": {
                "limits": [ { "counter": "all_tools_global_rate_limit", "window": "minute",
                              "max": 60, "scope": "grant" } ]
            },
            "tools": {
                "read_file": {},
                "create_issue": {
                    "limits": [ { "counter": "create_issue_hourly_issue_limit", "window": "hour",
                                  "max": 5, "scope": "grant",
                                  "on_deny": "Hourly limit of 5 new issues reached" } ]
                },
                "delete_customer": {
                    "deny_if": [ { "conditions": [], "on_deny": "Customer deletion is not permitted" } ]
                }
            }
        })
    );
    assert!(!t.notes.iter().any(|n| n.contains("\"default\" is not set")));
}

#[test]
fn invalid_policy_is_a_yaml_error() {
    let yaml = fixture("invalid_policy.yaml");
    let errors = errs(&yaml);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].locator, "(yaml)");
    assert!(
        errors[0].message.contains("line 7"),
        "{}",
        errors[0].message
    );
    assert!(
        errors[0].message.contains("column"),
        "{}",
        errors[0].message
    );
}

#[test]
fn invalid_schema_reports_every_error() {
    let yaml = fixture("invalid_schema.yaml");
    let e = errs(&yaml);
    let some = "tools.some_tool.rules";
    let rate = "tools.rate_limit_tool.rules";

    assert_error(&e, "version", r#"version must be "1", got "2""#);
    assert_error(&e, &format!("{some}[0].name"), "rule must have a name");
    assert_error(
        &e,
        &format!("{some}[0].conditions[0].op"),
        r#"unknown op "unknown_op""#,
    );
    assert_error(
        &e,
        &format!("{some}[1].conditions[0].path"),
        r#"path must start with "args." or "state.", got "foo.bar""#,
    );
    assert_error(
        &e,
        &format!("{some}[2].conditions[0].value"),
        r#"op "in" needs a list value"#,
    );
    assert_error(
        &e,
        &format!("{some}[3].conditions[0].value"),
        r#"op "lt" needs a numeric value"#,
    );
    assert_error(
        &e,
        &format!("{some}[4].conditions[0].value"),
        r#"invalid regex "[invalid(""#,
    );
    assert_error(
        &e,
        &format!("{some}[5]"),
        r#"action "deny" must not have conditions"#,
    );
    assert_error(
        &e,
        &format!("{some}[6]"),
        r#"an "evaluate" rule must have at least one condition"#,
    );
    assert_error(&e, &format!("{rate}[0].rate_limit"), r#"got "five/hour""#);
    assert_error(
        &e,
        &format!("{rate}[1]"),
        "rate_limit cannot be combined with conditions",
    );
    assert_error(
        &e,
        &format!("{rate}[2]"),
        "rate_limit cannot be combined with state",
    );
    assert_error(
        &e,
        &format!("{rate}[3].rate_limit"),
        "count must be a positive integer, got 0",
    );
    assert_error(&e, &format!("{rate}[4].rate_limit"), r#"got "week""#);
    assert_error(
        &e,
        &format!("{rate}[5]"),
        r#"rate_limit cannot be used with action "deny""#,
    );

    assert_eq!(e.len(), 15, "{e:#?}");
}
