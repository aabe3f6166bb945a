//! Rule shapes and document-level translation, on small inline policies.

mod common;

use common::{assert_note, ok};
use serde_json::json;

#[test]
fn conditions_become_a_require_entry() {
    let t = ok(r#"
version: "1"
default: deny
tools:
  send_email:
    rules:
      - name: internal only
        conditions:
          - { path: args.to, op: regex, value: "@example\\.org$" }
          - { path: args.cc, op: exists, value: false }
        on_deny: Only internal mail.
      - name: small
        conditions:
          - { path: args.size, op: lt, value: 1.5 }
"#);
    assert_eq!(
        t.policy["tools"]["send_email"],
        json!({ "require": [
            { "conditions": [
                { "path": "args.to", "op": "regex", "value": "@example\\.org$" },
                { "path": "args.cc", "op": "exists", "value": false } ],
              "on_deny": "Only internal mail." },
            { "conditions": [ { "path": "args.size", "op": "lt", "value": 1.5 } ],
              "on_deny": "Denied by rule 'small'" }
        ] })
    );
    assert!(t.notes.is_empty(), "{:#?}", t.notes);
}

#[test]
fn every_op_carries_over() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  t:
    rules:
      - name: all ops
        conditions:
          - { path: args.a, op: eq, value: 1 }
          - { path: args.b, op: neq, value: "x" }
          - { path: args.c, op: in, value: [1, "2"] }
          - { path: args.d, op: not_in, value: [] }
          - { path: args.e, op: contains, value: "sub" }
          - { path: args.f, op: regex, value: "^a" }
          - { path: args.g, op: exists, value: true }
          - { path: args.h, op: lt, value: 1 }
          - { path: args.i, op: lte, value: 2 }
          - { path: args.j, op: gt, value: -3 }
          - { path: args.k.nested, op: gte, value: 4.5 }
"#);
    let conds = t.policy["tools"]["t"]["require"][0]["conditions"]
        .as_array()
        .unwrap();
    let ops: Vec<&str> = conds.iter().map(|c| c["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        ["eq", "neq", "in", "not_in", "contains", "regex", "exists", "lt", "lte", "gt", "gte"]
    );
    assert_eq!(conds[2]["value"], json!([1, "2"]));
    assert_eq!(conds[10]["path"], "args.k.nested");
    assert_note(&t, "loosely");
}

#[test]
fn deny_action_becomes_an_empty_deny_if() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  drop_table:
    rules:
      - name: never
        action: deny
      - name: never again
        action: deny
        on_deny: No.
"#);
    assert_eq!(
        t.policy["tools"]["drop_table"],
        json!({ "deny_if": [
            { "conditions": [], "on_deny": "Denied by rule 'never'" },
            { "conditions": [], "on_deny": "No." }
        ] })
    );
}

#[test]
fn rate_limit_becomes_a_limit_with_a_derived_counter() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  search:
    rules:
      - name: "Per Minute!"
        rate_limit: 30/minute
      - name: per-minute
        rate_limit: 1000/day
        on_deny: Daily search budget used.
      - name: hourly
        action: evaluate
        rate_limit: "+7/hour"
"#);
    assert_eq!(
        t.policy["tools"]["search"],
        json!({ "limits": [
            { "counter": "search_per_minute", "window": "minute", "max": 30, "scope": "grant" },
            { "counter": "search_per_minute_2", "window": "day", "max": 1000, "scope": "grant",
              "on_deny": "Daily search budget used." },
            { "counter": "search_hourly", "window": "hour", "max": 7, "scope": "grant" }
        ] })
    );
    assert_note(&t, "\"scope\": \"grant\"");
}

#[test]
fn state_counter_with_lt_and_lte() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  pay:
    rules:
      - name: daily budget
        conditions:
          - { path: state.pay.spent, op: lte, value: 5000 }
        state: { counter: spent, window: day, increment_from: args.amount.cents }
        on_deny: Budget spent.
      - name: calls
        conditions:
          - { path: state.pay.calls, op: lt, value: 3.0 }
        state: { counter: calls, window: hour, increment: 2 }
"#);
    assert_eq!(
        t.policy["tools"]["pay"],
        json!({ "limits": [
            { "counter": "spent", "window": "day", "max": 5000, "scope": "grant",
              "increment_from": "args.amount.cents", "on_deny": "Budget spent." },
            { "counter": "calls", "window": "hour", "max": 2, "scope": "grant", "increment": 2 }
        ] })
    );
    assert_note(&t, "tools.pay.rules[1] (lt 3 → max 2)");
    assert_note(&t, "increment_from");
}

#[test]
fn state_rule_with_argument_conditions_splits_in_two() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  refund:
    rules:
      - name: capped refunds
        conditions:
          - { path: args.reason, op: exists, value: true }
          - { path: state.refund.n, op: lte, value: 10 }
        state: { counter: n, window: day }
        on_deny: Refund refused.
      - name: unnamed message
        conditions:
          - { path: args.ok, op: eq, value: true }
          - { path: state.refund.m, op: lte, value: 1 }
        state: { counter: m, window: minute }
"#);
    assert_eq!(
        t.policy["tools"]["refund"],
        json!({
            "require": [
                { "conditions": [ { "path": "args.reason", "op": "exists", "value": true } ],
                  "on_deny": "Refund refused." },
                { "conditions": [ { "path": "args.ok", "op": "eq", "value": true } ],
                  "on_deny": "Denied by rule 'unnamed message'" }
            ],
            "limits": [
                { "counter": "n", "window": "day", "max": 10, "scope": "grant",
                  "on_deny": "Refund refused." },
                { "counter": "m", "window": "minute", "max": 1, "scope": "grant" }
            ]
        })
    );
    assert_note(
        &t,
        "tools.refund.rules[0] (\"capped refunds\"): Intercept checks",
    );
    assert_note(
        &t,
        "tools.refund.rules[1] (\"unnamed message\"): Intercept checks",
    );
}

#[test]
fn wildcard_becomes_all_tools() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  "*":
    rules:
      - name: needs tenant
        conditions: [ { path: args.tenant, op: exists, value: true } ]
      - name: global cap
        conditions: [ { path: state._global.calls, op: lt, value: 101 } ]
        state: { counter: calls, window: minute }
      - name: shorthand
        rate_limit: 5000/day
      - name: maintenance
        action: deny
        on_deny: Down for maintenance.
"#);
    assert_eq!(
        t.policy,
        json!({
            "version": "1",
            "default": "allow",
            "all_tools": {
                "require": [ { "conditions": [ { "path": "args.tenant", "op": "exists", "value": true } ],
                               "on_deny": "Denied by rule 'needs tenant'" } ],
                "deny_if": [ { "conditions": [], "on_deny": "Down for maintenance." } ],
                "limits": [
                    { "counter": "calls", "window": "minute", "max": 100, "scope": "grant" },
                    { "counter": "all_tools_shorthand", "window": "day", "max": 5000, "scope": "grant" }
                ]
            },
            "tools": {}
        })
    );
}

#[test]
fn empty_and_null_rules_allow_the_tool() {
    let t = ok(r#"
version: "1"
default: deny
tools:
  read_file:
    rules: []
  list_files:
  stat_file:
    rules:
"#);
    assert_eq!(
        t.policy,
        json!({ "version": "1", "default": "deny",
                "tools": { "read_file": {}, "list_files": {}, "stat_file": {} } })
    );
    assert!(t.notes.is_empty());
}

#[test]
fn output_key_order_and_optional_keys() {
    let t = ok(r#"
tools:
  b: { rules: [] }
  a: { rules: [] }
  "*": { rules: [ { name: x, action: deny } ] }
hide: [secret_tool, "*"]
default: deny
description: Ordered
version: "1"
"#);
    assert_eq!(
        t.policy.to_string(),
        json!({
            "version": "1",
            "description": "Ordered",
            "default": "deny",
            "hide": ["secret_tool", "*"],
            "all_tools": { "deny_if": [ { "conditions": [], "on_deny": "Denied by rule 'x'" } ] },
            "tools": { "b": {}, "a": {} }
        })
        .to_string()
    );
}

#[test]
fn minimal_document_defaults_to_allow_with_a_note() {
    let t = ok("version: '1'\n");
    assert_eq!(
        t.policy.to_string(),
        r#"{"version":"1","default":"allow","tools":{}}"#
    );
    assert_eq!(t.notes.len(), 1);
    assert_note(&t, "\"default\" is not set");
}

#[test]
fn numeric_version_one_is_accepted() {
    let t = ok("version: 1\ndefault: allow\n");
    assert_eq!(t.policy["version"], "1");
}

#[test]
fn explicit_nulls_count_as_absent() {
    let t = ok(r#"
version: "1"
default:
description:
hide:
tools:
  t:
    rules:
      - name: r
        action:
        on_deny:
        state:
        rate_limit:
        conditions: [ { path: args.x, op: eq, value: null } ]
"#);
    assert_eq!(t.policy["default"], "allow");
    assert!(t.policy.get("description").is_none());
    assert_eq!(
        t.policy["tools"]["t"]["require"][0],
        json!({ "conditions": [ { "path": "args.x", "op": "eq", "value": null } ],
                "on_deny": "Denied by rule 'r'" })
    );
}

#[test]
fn same_counter_name_in_two_tools_stays_two_counters() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  a:
    rules:
      - name: a cap
        conditions: [ { path: state.a.daily, op: lte, value: 3 } ]
        state: { counter: daily, window: day }
  b:
    rules:
      - name: b cap
        conditions: [ { path: state.b.daily, op: lte, value: 4 } ]
        state: { counter: daily, window: day }
  c:
    rules:
      - name: c cap
        conditions: [ { path: state.c.other, op: lte, value: 5 } ]
        state: { counter: other, window: day }
"#);
    assert_eq!(t.policy["tools"]["a"]["limits"][0]["counter"], "a.daily");
    assert_eq!(t.policy["tools"]["b"]["limits"][0]["counter"], "b.daily");
    assert_eq!(t.policy["tools"]["c"]["limits"][0]["counter"], "other");
    assert_note(&t, "renamed <tool>.<counter>");
}

#[test]
fn derived_counter_names_do_not_collide_with_state_counters() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  t:
    rules:
      - name: x
        conditions: [ { path: state.t.t_x, op: lte, value: 1 } ]
        state: { counter: t_x, window: day }
      - name: x
        rate_limit: 2/hour
"#);
    let limits = &t.policy["tools"]["t"]["limits"];
    assert_eq!(limits[0]["counter"], "t_x");
    assert_eq!(limits[1]["counter"], "t_x_2");
}

#[test]
fn notes_for_approximations() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  t:
    rules:
      - name: blocked
        action: deny
      - name: digits
        conditions: [ { path: args.code, op: regex, value: "^\\d+$" } ]
      - name: zero
        conditions: [ { path: state.t.z, op: lt, value: 1 } ]
        state: { counter: z, window: minute }
      - name: both increments
        conditions: [ { path: state.t.w, op: lte, value: 100 } ]
        state: { counter: w, window: hour, increment: 5, increment_from: args.n }
"#);
    assert_note(&t, "tools.t.rules[0] (\"blocked\") always denies");
    assert_note(&t, "tools.t.rules[1].conditions[0]: in this regex, \\d");
    assert_note(&t, "limit is 0, so every call is denied");
    assert_note(&t, "ignores \"increment\" when \"increment_from\" is set");
    assert_eq!(
        t.policy["tools"]["t"]["limits"][0],
        json!({ "counter": "w", "window": "hour", "max": 100, "scope": "grant",
                "increment_from": "args.n" })
    );
}

#[test]
fn a_counter_limit_of_zero_blocks_the_tool() {
    // Found by fuzzing: "lt 1" became `max: 0`, which the policy refuses. Intercept denies
    // every call, whatever the rule's other conditions, and so does the translation.
    let t = ok(r#"
version: "1"
tools:
  create_refund:
    rules:
      - name: daily refund count
        conditions:
          - { path: args.amount, op: lte, value: 100 }
          - { path: state.create_refund.daily_count, op: lt, value: 1 }
        on_deny: "Daily refund limit reached"
        state: { counter: daily_count, window: day }
"#);
    assert_note(&t, "limit is 0, so every call is denied");
    assert_eq!(
        t.policy["tools"]["create_refund"],
        json!({ "deny_if": [ { "conditions": [], "on_deny": "Daily refund limit reached" } ] })
    );
}

#[test]
fn yaml_merge_keys_are_applied() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  t:
    rules:
      - &base
        name: base
        conditions: [ { path: args.x, op: exists, value: true } ]
      - <<: *base
        name: copy
"#);
    assert_eq!(
        t.policy["tools"]["t"]["require"][1]["on_deny"],
        "Denied by rule 'copy'"
    );
}

#[test]
fn empty_on_deny_means_not_set() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  t:
    rules:
      - { name: r, action: deny, on_deny: "" }
      - { name: s, rate_limit: 1/day, on_deny: "" }
"#);
    assert_eq!(
        t.policy["tools"]["t"],
        json!({
            "deny_if": [ { "conditions": [], "on_deny": "Denied by rule 'r'" } ],
            "limits": [ { "counter": "t_s", "window": "day", "max": 1, "scope": "grant" } ]
        })
    );
}

#[test]
fn large_counter_limits_stay_exact() {
    let t = ok(r#"
version: "1"
default: allow
tools:
  t:
    rules:
      - name: huge
        conditions: [ { path: state.t.c, op: lte, value: 18446744073709551615 } ]
        state: { counter: c, window: day }
"#);
    assert_eq!(
        t.policy["tools"]["t"]["limits"][0]["max"],
        json!(18446744073709551615u64)
    );
}
