//! Same input, same output: for one tool, and for the whole development corpus.

mod common;

use common::tool;
use portcullis_classify::{classify, classify_all, starter_policy, Category, Preset};

#[test]
fn one_tool_twice() {
    let t = tool(
        "odd_tool",
        "Run a SQL statement. <IMPORTANT>secret</IMPORTANT>",
        &[("sql", "string"), ("amount", "number")],
    );
    let a = classify(&t, "s");
    let b = classify(&t, "s");
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
}

#[test]
fn whole_corpus_twice() {
    let rows = common::corpus();
    let run = || -> String {
        rows.iter()
            .map(|(server, _, t)| serde_json::to_string(&classify(t, server)).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let first = run();
    assert_eq!(first, run());
    // Every corpus tool gets a category and a rule that starter policies accept.
    for (server, theirs, t) in &rows {
        assert!(Category::parse(theirs).is_some(), "{theirs}");
        let c = classify(t, server);
        assert!(!c.evidence.is_empty(), "{}", c.tool);
        assert!(!c.is_poisoning_suspect(), "{}: {:?}", c.tool, c.poisoning);
    }
}

#[test]
fn odoo_twice() {
    let Some(tools) = common::odoo_tools() else {
        return;
    };
    let a = classify_all(&tools, "odoo");
    let b = classify_all(&tools, "odoo");
    assert_eq!(a, b);
    assert_eq!(
        starter_policy(&a, Preset::Recommended),
        starter_policy(&b, Preset::Recommended)
    );
}
