//! The demo policy is valid, names only demo tools, and says what the walkthrough shows.

use portcullis_demo::{tools, DEMO_POLICY};
use portcullis_policy::{lint::lint, Engine};

#[test]
fn the_demo_policy_validates_and_names_only_demo_tools() {
    let engine = Engine::from_json(DEMO_POLICY).expect("valid");
    let listed = tools();
    let problems = lint(engine.doc(), listed["tools"].as_array().unwrap());
    assert!(problems.is_empty(), "{problems:?}");
    // Every demo tool is either hidden or has a rule: nothing falls to the default by
    // accident.
    for t in listed["tools"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        assert!(
            engine.doc().tools.iter().any(|(t, _)| t == name)
                || engine.doc().hide.iter().any(|h| h == name),
            "{name} is not covered by the demo policy"
        );
    }
    assert!(!engine.is_listed("odoo_unlink"));
    assert!(engine.is_listed("account_payment_register"));
}

#[test]
fn the_pipeline_rules_are_the_seeds() {
    let doc: serde_json::Value = serde_json::from_str(DEMO_POLICY).unwrap();
    for tool in ["ai_invoice_pipeline_run", "ai_pipeline_run"] {
        assert_eq!(
            doc["tools"][tool],
            serde_json::json!({"limits": [{"counter": format!("{tool}_rate"), "window": "minute", "max": 10, "scope": "grant"}]})
        );
    }
    assert_eq!(doc["default"], "deny");
    assert_eq!(
        doc["tools"]["account_payment_register"]["deny_if"],
        serde_json::json!([{"conditions": [], "on_deny": "Requires human approval."}])
    );
}
