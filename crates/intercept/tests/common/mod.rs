//! Helpers shared by the integration tests.
#![allow(dead_code)]

use portcullis_intercept::{translate, ImportError, Translation};
use serde_json::Value;

/// Translates `yaml`, failing the test with every error if it does not translate or if the
/// translation is not a valid policy document.
pub fn ok(yaml: &str) -> Translation {
    match translate(yaml) {
        Ok(t) => {
            assert_policy_v1_keys(&t.policy);
            if let Err(e) = portcullis_policy::doc::from_value(&t.policy) {
                panic!("the translation is not a valid policy: {e:?}\n{}", t.policy);
            }
            t
        }
        Err(errors) => panic!(
            "expected a translation, got errors:\n{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// Translates `yaml`, failing the test if it translates.
pub fn errs(yaml: &str) -> Vec<ImportError> {
    match translate(yaml) {
        Ok(t) => panic!("expected errors, got {}", t.policy),
        Err(errors) => {
            assert!(!errors.is_empty(), "Err(vec![]) is never returned");
            errors
        }
    }
}

/// Asserts an error at exactly `locator` whose message contains `text`.
pub fn assert_error(errors: &[ImportError], locator: &str, text: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.locator == locator && e.message.contains(text)),
        "no error at {locator:?} containing {text:?}; got:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Asserts exactly one error, at `locator`, containing `text`.
pub fn assert_only_error(yaml: &str, locator: &str, text: &str) {
    let errors = errs(yaml);
    assert_error(&errors, locator, text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:?}");
}

/// Asserts that some note contains `text`.
pub fn assert_note(t: &Translation, text: &str) {
    assert!(
        t.notes.iter().any(|n| n.contains(text)),
        "no note containing {text:?}; notes: {:#?}",
        t.notes
    );
}

fn keys_within(v: &Value, allowed: &[&str], at: &str) {
    let m = v
        .as_object()
        .unwrap_or_else(|| panic!("{at} is not an object"));
    for k in m.keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "{at}: key {k:?} is outside policy v1"
        );
    }
}

fn rule_object(v: &Value, at: &str) {
    keys_within(v, &["require", "deny_if", "limits"], at);
    for list in ["require", "deny_if"] {
        for (i, entry) in v
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{at}.{list}[{i}]");
            keys_within(entry, &["conditions", "on_deny"], &at);
            assert!(entry["on_deny"].is_string(), "{at}: on_deny");
            for (j, c) in entry["conditions"].as_array().unwrap().iter().enumerate() {
                keys_within(
                    c,
                    &["path", "op", "value"],
                    &format!("{at}.conditions[{j}]"),
                );
                assert!(c["path"].as_str().unwrap().starts_with("args."));
            }
        }
    }
    for (i, l) in v
        .get("limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("{at}.limits[{i}]");
        keys_within(
            l,
            &[
                "counter",
                "window",
                "max",
                "scope",
                "increment",
                "increment_from",
                "on_deny",
            ],
            &at,
        );
        assert!(l["counter"].is_string(), "{at}: counter");
        assert!(["minute", "hour", "day"].contains(&l["window"].as_str().unwrap()));
        assert!(l["max"].is_u64(), "{at}: max");
        assert_eq!(l["scope"], "grant", "{at}: scope");
    }
}

/// Checks that a translated document stays within policy v1's keys (plus `on_deny` on limits).
pub fn assert_policy_v1_keys(policy: &Value) {
    keys_within(
        policy,
        &[
            "version",
            "description",
            "default",
            "hide",
            "all_tools",
            "tools",
        ],
        "(root)",
    );
    assert_eq!(policy["version"], "1");
    assert!(["allow", "deny"].contains(&policy["default"].as_str().unwrap()));
    if let Some(all) = policy.get("all_tools") {
        rule_object(all, "all_tools");
    }
    for (name, tool) in policy["tools"].as_object().unwrap() {
        rule_object(tool, &format!("tools.{name}"));
    }
}
