//! Helpers shared by the integration tests.
#![allow(dead_code)]

use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// A tool definition with string/number/… properties given as `(name, type)` pairs.
pub fn tool(name: &str, description: &str, props: &[(&str, &str)]) -> Value {
    let mut p = Map::new();
    for (n, t) in props {
        p.insert(n.to_string(), json!({ "type": t }));
    }
    json!({
        "name": name,
        "description": description,
        "inputSchema": { "type": "object", "properties": p }
    })
}

/// The same with annotations.
pub fn annotated(name: &str, description: &str, annotations: Value) -> Value {
    let mut t = tool(name, description, &[]);
    t["annotations"] = annotations;
    t
}

/// `../../../shared/fixtures/<rel>` relative to this crate, or `None` (with the skip notice on
/// stderr) when the shared fixtures are not there. Only for data the repository may not carry
/// (see `tests/data/README.md`). Under `CI=true` a missing fixture fails the test instead: CI
/// must not pass by skipping.
pub fn shared_fixture(rel: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(rel);
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "{} is missing or unreadable ({e}) and CI=true: the shared fixtures must be beside the repository",
            path.display()
        ),
        Err(_) => {
            eprintln!("skipped: ../shared/fixtures not found");
            None
        }
    }
}

/// `tests/data/<rel>` of the repository; a missing file fails the test, naming the path.
pub fn repo_data(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "test data {} is missing or unreadable ({e}); it is part of the repository",
            path.display()
        )
    })
}

/// The Odoo Claude MCP tool list, if present (never carried in the repository: its licence).
pub fn odoo_tools() -> Option<Vec<Value>> {
    let text = shared_fixture("odoo-claude-mcp/tools.json")?;
    let v: Value = serde_json::from_str(&text).expect("tools.json is JSON");
    Some(v["tools"].as_array().expect("tools array").clone())
}

/// The Intercept corpus as (server, category, tool definition).
pub fn corpus() -> Vec<(String, String, Value)> {
    let text = repo_data("tool-corpus/intercept-categories.tsv");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(4, '\t').collect();
            (f.len() == 4).then(|| {
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    json!({ "name": f[2], "description": f[3] }),
                )
            })
        })
        .collect()
}
