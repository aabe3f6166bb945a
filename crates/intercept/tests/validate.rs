//! Validation: every error with its exact locator, on small inline policies.

mod common;

use common::{assert_error, assert_only_error, errs};
use portcullis_intercept::{translate, ImportError};

/// A document with one tool `t` whose rules are `rules` (YAML, indented by 6).
fn with_rules(rules: &str) -> String {
    format!("version: \"1\"\ndefault: allow\ntools:\n  t:\n    rules:\n{rules}")
}

#[test]
fn display_is_locator_colon_message() {
    let e = ImportError {
        locator: "tools.t.rules[0].name".into(),
        message: "rule must have a name".into(),
    };
    assert_eq!(
        e.to_string(),
        "tools.t.rules[0].name: rule must have a name"
    );
}

#[test]
fn version_must_be_one() {
    assert_only_error("version: \"2\"\ndefault: allow\n", "version", r#"got "2""#);
    assert_only_error("version: 1.5\ndefault: allow\n", "version", "got 1.5");
    assert_only_error("default: allow\n", "version", "version is required");
}

#[test]
fn default_must_be_allow_or_deny() {
    assert_only_error(
        "version: \"1\"\ndefault: Deny\n",
        "default",
        r#"got "Deny" (did you mean "deny"?)"#,
    );
    assert_only_error(
        "version: \"1\"\ndefault: [deny]\n",
        "default",
        "got [\"deny\"]",
    );
}

#[test]
fn document_must_be_a_mapping() {
    assert_only_error("- a\n- b\n", "(root)", "must be a YAML mapping");
}

#[test]
fn description_must_be_a_string() {
    assert_only_error(
        "version: \"1\"\ndefault: allow\ndescription: [x]\n",
        "description",
        "must be a string",
    );
}

#[test]
fn hide_entries() {
    let e = errs("version: \"1\"\ndefault: allow\nhide: [a, '', a, 3]\n");
    assert_error(&e, "hide[1]", "must not be empty");
    assert_error(&e, "hide[2]", r#"duplicate hide entry "a""#);
    assert_error(&e, "hide[3]", "must be a tool name");
    assert_eq!(e.len(), 3);
    assert_only_error(
        "version: \"1\"\ndefault: allow\nhide: a\n",
        "hide",
        "must be a list",
    );
}

#[test]
fn unknown_keys_everywhere_with_hints() {
    let e = errs(
        r#"
version: "1"
default: allow
tool: {}
tools:
  t:
    rule: []
  u:
    rules:
      - name: r
        conditons: []
        on_deny: x
        action: deny
      - name: s
        conditions:
          - { path: args.x, op: eq, value: 1, vaule: 2 }
          - { path: state.u.c, op: lte, value: 1 }
        state: { counter: c, window: day, incremnt_from: args.y }
"#,
    );
    assert_error(&e, "tool", r#"unknown key "tool" (did you mean "tools"?)"#);
    assert_error(&e, "tools.t.rule", r#"(did you mean "rules"?)"#);
    assert_error(
        &e,
        "tools.u.rules[0].conditons",
        r#"(did you mean "conditions"?)"#,
    );
    assert_error(
        &e,
        "tools.u.rules[1].conditions[0].vaule",
        r#"(did you mean "value"?)"#,
    );
    assert_error(
        &e,
        "tools.u.rules[1].state.incremnt_from",
        r#"(did you mean "increment_from"?)"#,
    );
    assert_eq!(e.len(), 5, "{e:#?}");
    assert_only_error(
        "version: \"1\"\ndefault: allow\nxyzzy: 1\n",
        "xyzzy",
        "expected one of: version, description, default, hide, tools",
    );
}

#[test]
fn locators_quote_keys_with_dots_or_spaces() {
    let e = errs(
        r#"
version: "1"
default: allow
tools:
  "files.read":
    rules: [ { name: "", action: deny } ]
  "my tool":
    rules: [ { name: "", action: deny } ]
  "*":
    rules: [ { name: "", action: deny } ]
"#,
    );
    assert_error(
        &e,
        r#"tools["files.read"].rules[0].name"#,
        "rule must have a name",
    );
    assert_error(
        &e,
        r#"tools["my tool"].rules[0].name"#,
        "rule must have a name",
    );
    assert_error(&e, "tools.*.rules[0].name", "rule must have a name");
    assert_eq!(e.len(), 3);
}

#[test]
fn tools_and_rules_shapes() {
    assert_only_error(
        "version: \"1\"\ndefault: allow\ntools: [a]\n",
        "tools",
        "must be a mapping",
    );
    assert_only_error(
        "version: \"1\"\ndefault: allow\ntools:\n  t: 3\n",
        "tools.t",
        "must be a mapping with \"rules\"",
    );
    assert_only_error(
        "version: \"1\"\ndefault: allow\ntools:\n  t:\n    rules: {}\n",
        "tools.t.rules",
        "rules must be a list",
    );
    assert_only_error(
        &with_rules("      - just a string\n"),
        "tools.t.rules[0]",
        "must be a mapping",
    );
    assert_only_error(
        "version: \"1\"\ndefault: allow\ntools:\n  '':\n    rules: []\n",
        "tools[\"\"]",
        "tool name must not be empty",
    );
}

#[test]
fn rule_name_is_required() {
    let rule = "      - action: deny\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].name",
        "rule must have a name",
    );
    let rule = "      - { name: '  ', action: deny }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].name",
        "rule must have a name",
    );
    let rule = "      - { name: [x], action: deny }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].name",
        "name must be a string",
    );
}

#[test]
fn unknown_action_with_hint() {
    let rule = "      - { name: r, action: dney }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].action",
        r#"got "dney" (did you mean "deny"?)"#,
    );
    let rule =
        "      - { name: r, action: block, conditions: [ { path: args.a, op: eq, value: 1 } ] }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].action",
        r#"action must be "evaluate" or "deny", got "block""#,
    );
}

#[test]
fn unknown_op_with_and_without_hint() {
    let rule = "      - { name: r, conditions: [ { path: args.a, op: \"gte \", value: 1 } ] }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].conditions[0].op",
        r#"unknown op "gte " (did you mean "gte"?)"#,
    );
    let rule = "      - { name: r, conditions: [ { path: args.a, op: between, value: 1 } ] }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].conditions[0].op",
        r#"unknown op "between"; expected one of: eq, neq"#,
    );
    let rule = "      - { name: r, conditions: [ { path: args.a, value: 1 } ] }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].conditions[0].op",
        "op is required",
    );
}

#[test]
fn path_rules() {
    let cases = [
        (
            "foo.bar",
            r#"path must start with "args." or "state.", got "foo.bar""#,
        ),
        (
            "args",
            r#"path must start with "args." or "state.", got "args""#,
        ),
        ("args.", "has an empty segment"),
        ("args.a..b", "has an empty segment"),
        ("args.lines[0]", "contains \"[\" or \"]\""),
    ];
    for (path, text) in cases {
        let rule = format!(
            "      - {{ name: r, conditions: [ {{ path: \"{path}\", op: exists, value: true }} ] }}\n"
        );
        assert_only_error(
            &with_rules(&rule),
            "tools.t.rules[0].conditions[0].path",
            text,
        );
    }
    let rule = "      - { name: r, conditions: [ { op: exists, value: true } ] }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].conditions[0].path",
        "path is required",
    );
}

#[test]
fn value_types_per_op() {
    let cases = [
        ("in", "\"a\"", r#"op "in" needs a list value, got "a""#),
        ("not_in", "{a: 1}", r#"op "not_in" needs a list value"#),
        ("lt", "\"5\"", r#"op "lt" needs a numeric value, got "5""#),
        ("lte", "true", r#"op "lte" needs a numeric value"#),
        ("gt", "[1]", r#"op "gt" needs a numeric value"#),
        ("gte", "null", r#"op "gte" needs a numeric value"#),
        ("exists", "\"yes\"", r#"op "exists" needs true or false"#),
        ("regex", "5", r#"op "regex" needs a string value"#),
        ("regex", "\"(a\"", r#"invalid regex "(a""#),
    ];
    for (op, value, text) in cases {
        let rule = format!(
            "      - {{ name: r, conditions: [ {{ path: args.a, op: {op}, value: {value} }} ] }}\n"
        );
        assert_only_error(
            &with_rules(&rule),
            "tools.t.rules[0].conditions[0].value",
            text,
        );
    }
    let rule = "      - { name: r, conditions: [ { path: args.a, op: eq } ] }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].conditions[0].value",
        "value is required",
    );
}

#[test]
fn condition_and_conditions_shapes() {
    let rule = "      - { name: r, conditions: { path: args.a } }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].conditions",
        "must be a list",
    );
    let rule = "      - { name: r, conditions: [ args.a ] }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].conditions[0]",
        "must be a mapping",
    );
}

#[test]
fn deny_rules_take_no_conditions_or_state() {
    let rule =
        "      - { name: r, action: deny, conditions: [ { path: args.a, op: eq, value: 1 } ] }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0]",
        "must not have conditions",
    );
    let rule = "      - { name: r, action: deny, state: { counter: c, window: day } }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0]",
        "must not have a state block",
    );
}

#[test]
fn evaluate_rules_need_a_condition() {
    for rule in [
        "      - { name: r, action: evaluate }\n",
        "      - { name: r }\n",
        "      - { name: r, conditions: [] }\n",
        "      - { name: r, state: { counter: c, window: day } }\n",
    ] {
        assert_only_error(
            &with_rules(rule),
            "tools.t.rules[0]",
            r#"an "evaluate" rule must have at least one condition"#,
        );
    }
}

#[test]
fn rate_limit_syntax() {
    let cases = [
        ("five/hour", r#"got "five/hour""#),
        ("5 per hour", r#"must look like "N/window""#),
        ("0/hour", "count must be a positive integer, got 0"),
        ("-2/hour", "count must be a positive integer, got -2"),
        (
            "5/week",
            r#"window must be "minute", "hour" or "day", got "week""#,
        ),
        ("5/hours", r#"got "hours" (did you mean "hour"?)"#),
    ];
    for (rate, text) in cases {
        let rule = format!("      - {{ name: r, rate_limit: \"{rate}\" }}\n");
        assert_only_error(&with_rules(&rule), "tools.t.rules[0].rate_limit", text);
    }
    let rule = "      - { name: r, rate_limit: 5 }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].rate_limit",
        "must be a string",
    );
}

#[test]
fn rate_limit_conflicts() {
    let rule = "      - { name: r, rate_limit: 5/hour, conditions: [ { path: args.a, op: eq, value: 1 } ] }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0]",
        "cannot be combined with conditions",
    );
    let rule = "      - { name: r, rate_limit: 5/hour, state: { counter: c, window: hour } }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0]",
        "cannot be combined with state",
    );
    let rule = "      - { name: r, rate_limit: 5/hour, action: deny }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0]",
        r#"cannot be used with action "deny""#,
    );
}

#[test]
fn two_rate_limits_with_one_window_on_one_tool() {
    let rules = "      - { name: a, rate_limit: 5/hour }\n      - { name: b, rate_limit: 50/day }\n      - { name: c, rate_limit: 9/hour }\n";
    assert_only_error(
        &with_rules(rules),
        "tools.t.rules[2].rate_limit",
        "a second rate_limit per hour on this tool",
    );
}

#[test]
fn state_block_fields() {
    let base = "      - name: r\n        conditions: [ { path: state.t.c, op: lte, value: 5 } ]\n";
    let cases = [
        (
            "{ counter: c, window: week }",
            "tools.t.rules[0].state.window",
            r#"got "week""#,
        ),
        (
            "{ counter: c, window: Hour }",
            "tools.t.rules[0].state.window",
            r#"(did you mean "hour"?)"#,
        ),
        (
            "{ counter: c }",
            "tools.t.rules[0].state.window",
            "got nothing",
        ),
        (
            "{ counter: '', window: day }",
            "tools.t.rules[0].state.counter",
            "must not be empty",
        ),
        (
            "{ counter: c, window: day, increment_from: amount }",
            "tools.t.rules[0].state.increment_from",
            r#"must start with "args.", got "amount""#,
        ),
        (
            "{ counter: c, window: day, increment_from: state.t.x }",
            "tools.t.rules[0].state.increment_from",
            r#"must start with "args.""#,
        ),
        (
            "{ counter: c, window: day, increment: -1 }",
            "tools.t.rules[0].state.increment",
            "positive whole number",
        ),
        (
            "[c, day]",
            "tools.t.rules[0].state",
            "state must be a mapping",
        ),
    ];
    for (state, locator, text) in cases {
        let rules = format!("{base}        state: {state}\n");
        assert_only_error(&with_rules(&rules), locator, text);
    }
}

#[test]
fn state_condition_must_match_the_state_block() {
    let rules = "      - name: r\n        conditions: [ { path: state.t.other, op: lte, value: 5 } ]\n        state: { counter: c, window: day }\n";
    let e = errs(&with_rules(rules));
    assert_error(
        &e,
        "tools.t.rules[0].conditions[0].path",
        r#"does not match this rule's state counter "c""#,
    );
    assert_eq!(e.len(), 1);

    // Another tool's counter, or the wildcard's counter under a named tool.
    for path in ["state.u.c", "state._global.c"] {
        let rules = format!(
            "      - name: r\n        conditions: [ {{ path: {path}, op: lte, value: 5 }} ]\n        state: {{ counter: c, window: day }}\n"
        );
        assert_error(
            &errs(&with_rules(&rules)),
            "tools.t.rules[0].conditions[0].path",
            r#"expected path "state.t.c""#,
        );
    }
}

#[test]
fn state_condition_needs_its_state_block() {
    let rules = "      - name: r\n        conditions: [ { path: state.t.c, op: lt, value: 5 } ]\n";
    assert_only_error(
        &with_rules(rules),
        "tools.t.rules[0].conditions[0].path",
        "has no state block",
    );
}

#[test]
fn state_limit_must_be_lt_or_lte_once_and_whole() {
    let block = "        state: { counter: c, window: day }\n";
    let cases = [
        (
            "[ { path: state.t.c, op: gt, value: 5 } ]",
            "tools.t.rules[0].conditions[0].op",
            r#"op "gt" on a state counter"#,
        ),
        (
            "[ { path: state.t.c, op: lt, value: 5 }, { path: state.t.c, op: lte, value: 9 } ]",
            "tools.t.rules[0].conditions[1]",
            "a second limit on the state counter",
        ),
        (
            "[ { path: state.t.c, op: lte, value: 2.5 } ]",
            "tools.t.rules[0].conditions[0].value",
            "whole number",
        ),
        (
            "[ { path: state.t.c, op: lt, value: 0 } ]",
            "tools.t.rules[0].conditions[0].value",
            "leaves no room",
        ),
        (
            "[ { path: args.a, op: exists, value: true } ]",
            "tools.t.rules[0].state",
            "would never count it",
        ),
    ];
    for (conds, locator, text) in cases {
        let rules = format!("      - name: r\n        conditions: {conds}\n{block}");
        let e = errs(&with_rules(&rules));
        assert_error(&e, locator, text);
        assert_eq!(e.len(), 1, "{e:#?}");
    }
}

#[test]
fn duplicate_state_counter_in_one_tool() {
    let rule = |n: &str| {
        format!("      - name: {n}\n        conditions: [ {{ path: state.t.c, op: lte, value: 5 }} ]\n        state: {{ counter: c, window: day }}\n")
    };
    assert_only_error(
        &with_rules(&(rule("a") + &rule("b"))),
        "tools.t.rules[1].state.counter",
        r#"duplicate state counter "c"; also used by rules[0]"#,
    );
}

#[test]
fn on_deny_must_be_a_string() {
    let rule = "      - { name: r, action: deny, on_deny: [no] }\n";
    assert_only_error(
        &with_rules(rule),
        "tools.t.rules[0].on_deny",
        "must be a string",
    );
}

#[test]
fn yaml_errors() {
    let e = errs("version: \"1\"\ntools:\n  t:\n    rules: [\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].locator, "(yaml)");
    assert!(e[0].message.contains("line "), "{}", e[0].message);

    assert_only_error(
        "version: \"1\"\nversion: \"1\"\n",
        "(yaml)",
        "duplicate entry with key \"version\"",
    );
    assert_only_error(
        "version: \"1\"\n---\nversion: \"1\"\n",
        "(yaml)",
        "more than one document",
    );
    assert_only_error("version: !custom \"1\"\n", "(yaml)", "tags");
    assert_only_error(
        "version: \"1\"\n? [a, b]\n: c\n",
        "(yaml)",
        "mapping keys must be strings",
    );
    assert_only_error(
        "version: \"1\"\ndefault: allow\nx: .nan\n",
        "(yaml)",
        "not finite",
    );
}

#[test]
fn errors_are_all_collected_in_document_order() {
    let e = translate(
        r#"
version: "3"
default: maybe
tools:
  a:
    rules:
      - { name: "", action: deny }
  b:
    rules:
      - { name: r, rate_limit: 1/year }
"#,
    )
    .unwrap_err();
    let locators: Vec<&str> = e.iter().map(|e| e.locator.as_str()).collect();
    assert_eq!(
        locators,
        [
            "version",
            "default",
            "tools.a.rules[0].name",
            "tools.b.rules[0].rate_limit"
        ]
    );
}
