//! The two seed tools of the catalogue, and a few others, from the real Odoo Claude MCP tool
//! list (`shared/fixtures/odoo-claude-mcp/tools.json`; skipped when absent).

mod common;

use portcullis_classify::{
    classify, classify_all, starter_policy, CatchAllKind, Category, Preset, Risk,
};
use portcullis_policy::{doc, lint};
use serde_json::{json, Value};

fn find<'a>(tools: &'a [Value], name: &str) -> &'a Value {
    tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} in tools.json"))
}

#[test]
fn seed_tools_are_execute_high_with_the_seed_rule() {
    let Some(tools) = common::odoo_tools() else {
        return;
    };
    for name in ["ai_invoice_pipeline_run", "ai_pipeline_run"] {
        let c = classify(find(&tools, name), "odoo-claude-mcp");
        assert_eq!(c.category, Category::Execute, "{name}: {:#?}", c.evidence);
        assert_eq!(c.risk, Risk::High, "{name}");
        assert!(!c.hide);
        assert!(c.catch_all.is_none(), "{name}: {:?}", c.catch_all);
        // Exactly the seed page's rule.
        assert_eq!(
            c.rule,
            json!({
                "limits": [
                    { "counter": format!("{name}_rate"), "window": "minute", "max": 10, "scope": "grant" }
                ]
            })
        );
        assert!(c.evidence.iter().any(|e| e.contains("\"run\"")));
        assert!(c
            .evidence
            .iter()
            .any(|e| e.contains("description says \"Execute")));
    }
    // The seed's whole document, text for text.
    let c = classify(find(&tools, "ai_invoice_pipeline_run"), "odoo-claude-mcp");
    let page_doc = portcullis_classify::tool_policy(&c);
    assert_eq!(
        page_doc,
        json!({
            "version": "1",
            "default": "deny",
            "tools": {
                "ai_invoice_pipeline_run": {
                    "limits": [
                        { "counter": "ai_invoice_pipeline_run_rate", "window": "minute", "max": 10, "scope": "grant" }
                    ]
                }
            }
        })
    );
}

#[test]
fn odoo_execute_is_a_catch_all_with_method_rules() {
    let Some(tools) = common::odoo_tools() else {
        return;
    };
    let c = classify(find(&tools, "odoo_execute"), "odoo-claude-mcp");
    assert_eq!(c.category, Category::Execute);
    let ca = c.catch_all.as_ref().expect("catch-all");
    assert_eq!(ca.kind, CatchAllKind::ModelMethod);
    let deny = c.rule["deny_if"].as_array().expect("deny_if");
    let on_method: Vec<&Value> = deny
        .iter()
        .filter(|e| e["conditions"][0]["path"] == "args.method")
        .collect();
    assert!(!on_method.is_empty());
    let listed = on_method
        .iter()
        .find(|e| e["conditions"][0]["op"] == "in")
        .expect("an `in` list of methods");
    let methods = listed["conditions"][0]["value"].as_array().unwrap();
    assert!(methods.contains(&json!("unlink")));
    assert!(methods.contains(&json!("action_post")));
    assert_eq!(c.rule["limits"][0]["max"], 10);
}

#[test]
fn other_odoo_verdicts() {
    let Some(tools) = common::odoo_tools() else {
        return;
    };
    let get = |n: &str| classify(find(&tools, n), "odoo-claude-mcp");
    let unlink = get("odoo_unlink");
    assert_eq!(unlink.category, Category::Destructive);
    assert!(unlink.hide);
    for read in [
        "odoo_search_read",
        "odoo_read",
        "odoo_list_models",
        "memory_list",
    ] {
        let c = get(read);
        assert_eq!((c.category, c.risk), (Category::Read, Risk::Low), "{read}");
        assert_eq!(c.rule, json!({}));
    }
    assert_eq!(
        get("ssh_execute").catch_all.unwrap().kind,
        CatchAllKind::Shell
    );
    assert_eq!(
        get("github_api").catch_all.unwrap().kind,
        CatchAllKind::Http
    );
    assert_eq!(
        get("proxy_call").catch_all.unwrap().kind,
        CatchAllKind::ToolProxy
    );
    assert_eq!(
        get("odoo_web_call").catch_all.unwrap().kind,
        CatchAllKind::ModelMethod
    );
    assert_eq!(get("odoo_write").category, Category::Write);
    // Invoice data read through the portal stays Read.
    assert_eq!(
        get("public_access_portal_invoices").category,
        Category::Read
    );
    // No tool of this server carries text aimed at the model.
    for t in &tools {
        let c = classify(t, "odoo-claude-mcp");
        assert!(!c.is_poisoning_suspect(), "{}: {:?}", c.tool, c.poisoning);
    }
}

#[test]
fn odoo_starter_policies_validate_and_name_only_declared_arguments() {
    let Some(tools) = common::odoo_tools() else {
        return;
    };
    let classes = classify_all(&tools, "odoo-claude-mcp");
    assert_eq!(classes.len(), tools.len());
    for preset in [Preset::Strict, Preset::Recommended, Preset::Permissive] {
        let policy = starter_policy(&classes, preset);
        let d = doc::from_value(&policy).unwrap_or_else(|e| panic!("{preset:?}: {e:?}"));
        let problems = lint::lint(&d, &tools);
        assert!(problems.is_empty(), "{preset:?}: {problems:?}");
        let listed = d.tools.len() + d.hide.len();
        assert_eq!(listed, tools.len(), "{preset:?}: every tool is placed");
    }
}
