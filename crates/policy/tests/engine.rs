//! Table-driven tests of the evaluator: every operator and edge, the evaluation order, the
//! denial shapes.

mod common;
use common::*;
use portcullis_policy::sync::LockExt;
use portcullis_policy::{Call, Check, Decision, Denial, Engine};
use serde_json::{json, Value};

fn engine(policy: Value) -> Engine {
    Engine::from_json(&policy.to_string()).unwrap_or_else(|e| panic!("policy rejected: {e:?}"))
}

/// A policy with one tool `t` guarded by `require` of a single condition.
fn cond_engine(path: &str, op: &str, value: Value) -> Engine {
    engine(
        json!({"version":"1","default":"deny","tools":{"t":{"require":[{"conditions":[{"path":path,"op":op,"value":value}]}]}}}),
    )
}

fn holds(path: &str, op: &str, value: Value, args: Option<Value>) -> bool {
    let e = cond_engine(path, op, value);
    match e.check(
        &Call {
            tool: "t",
            args: args.as_ref(),
        },
        &alice(),
    ) {
        Check::Proceed(_) => true,
        Check::Deny(d) => {
            assert_eq!(d.rule, "/tools/t/require/0");
            false
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn operators_table() {
    let big = 9_007_199_254_740_993u64; // 2^53 + 1
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Value, Value, bool)> = vec![
        // path, op, value, args, expected
        ("args.a", "eq", json!(1), json!({"a": 1}), true),
        ("args.a", "eq", json!(1), json!({"a": 1.0}), true),
        ("args.a", "eq", json!(1.0), json!({"a": 1}), true),
        ("args.a", "eq", json!(1), json!({"a": "1"}), false),
        ("args.a", "eq", json!("true"), json!({"a": true}), false),
        ("args.a", "eq", json!(true), json!({"a": true}), true),
        ("args.a", "eq", json!(null), json!({"a": null}), true),
        ("args.a", "eq", json!(null), json!({}), false),
        ("args.a", "eq", json!({"x": [1, 2]}), json!({"a": {"x": [1.0, 2]}}), true),
        ("args.a", "eq", json!([1, 2]), json!({"a": [2, 1]}), false),
        ("args.a", "eq", json!(big), json!({"a": big - 1}), false),
        ("args.a", "eq", json!(big), json!({"a": big}), true),
        ("args.a", "neq", json!(1), json!({"a": 2}), true),
        ("args.a", "neq", json!(1), json!({"a": "1"}), true),
        ("args.a", "neq", json!(1), json!({"a": 1.0}), false),
        ("args.a", "neq", json!(1), json!({}), false),
        ("args.a", "neq", json!(null), json!({"a": null}), false),
        ("args.a", "gt", json!(10), json!({"a": 11}), true),
        ("args.a", "gt", json!(10), json!({"a": 10}), false),
        ("args.a", "gt", json!(10), json!({"a": 10.000001}), true),
        ("args.a", "gt", json!(10), json!({"a": "11"}), false),
        ("args.a", "gt", json!(10), json!({"a": null}), false),
        ("args.a", "gt", json!(10), json!({"a": [11]}), false),
        ("args.a", "gt", json!(10), json!({}), false),
        ("args.a", "gte", json!(10), json!({"a": 10.0}), true),
        ("args.a", "lt", json!(10), json!({"a": 9.999}), true),
        ("args.a", "lt", json!(10), json!({"a": -1e300}), true),
        ("args.a", "lte", json!(-5), json!({"a": -5}), true),
        ("args.a", "lte", json!(-5), json!({"a": -4}), false),
        // Exact integers above 2^53: 2^53+1 > 2^53 although both round to the same f64.
        ("args.a", "gt", json!(9_007_199_254_740_992u64), json!({"a": big}), true),
        ("args.a", "gt", json!(9_007_199_254_740_992.0), json!({"a": big}), true),
        ("args.a", "lte", json!(9_007_199_254_740_992.0), json!({"a": big}), false),
        ("args.a", "gt", json!(big), json!({"a": 9_007_199_254_740_992.0}), false),
        ("args.a", "lt", json!(u64::MAX), json!({"a": -1}), true),
        ("args.a", "gt", json!(i64::MIN), json!({"a": u64::MAX}), true),
        ("args.a", "in", json!(["usd", "eur"]), json!({"a": "usd"}), true),
        ("args.a", "in", json!(["usd", "eur"]), json!({"a": "USD"}), false),
        ("args.a", "in", json!([1, "1", true, null]), json!({"a": 1.0}), true),
        ("args.a", "in", json!([1, "1", true, null]), json!({"a": "true"}), false),
        ("args.a", "in", json!([1, "1", true, null]), json!({"a": null}), true),
        ("args.a", "in", json!([1, "1"]), json!({"a": false}), false),
        ("args.a", "in", json!([]), json!({"a": 1}), false),
        ("args.a", "in", json!([1]), json!({}), false),
        ("args.a", "not_in", json!(["usd"]), json!({"a": "gbp"}), true),
        ("args.a", "not_in", json!(["usd"]), json!({"a": "usd"}), false),
        ("args.a", "not_in", json!([1, "x"]), json!({"a": "1"}), true),
        ("args.a", "not_in", json!(["usd"]), json!({}), false),
        ("args.a", "contains", json!("DROP"), json!({"a": "x; DROP TABLE"}), true),
        ("args.a", "contains", json!("drop"), json!({"a": "x; DROP TABLE"}), false),
        ("args.a", "contains", json!("x"), json!({"a": ["x", "y"]}), true),
        ("args.a", "contains", json!(2), json!({"a": [1, 2.0]}), true),
        ("args.a", "contains", json!("x"), json!({"a": ["xy"]}), false),
        ("args.a", "contains", json!(1), json!({"a": "1"}), false),
        ("args.a", "contains", json!("a"), json!({"a": {"a": 1}}), false),
        ("args.a", "contains", json!("x"), json!({}), false),
        // Regex is unanchored unless the pattern anchors itself.
        ("args.a", "regex", json!("b+"), json!({"a": "abbbc"}), true),
        ("args.a", "regex", json!("^b+$"), json!({"a": "abbbc"}), false),
        ("args.a", "regex", json!("^\\s*(SELECT|WITH)\\b"), json!({"a": "  select 1"}), false),
        ("args.a", "regex", json!("(?i)^\\s*(SELECT|WITH)\\b"), json!({"a": "  select 1"}), true),
        ("args.a", "regex", json!("^\\s*(SELECT|WITH)\\b"), json!({"a": "DELETE; SELECT"}), false),
        ("args.a", "regex", json!("1"), json!({"a": 1}), false),
        ("args.a", "regex", json!(".*"), json!({}), false),
        ("args.a", "regex", json!(".*"), json!({"a": null}), false),
        ("args.a", "exists", json!(true), json!({"a": 0}), true),
        ("args.a", "exists", json!(true), json!({"a": null}), false),
        ("args.a", "exists", json!(true), json!({}), false),
        ("args.a", "exists", json!(false), json!({}), true),
        ("args.a", "exists", json!(false), json!({"a": null}), true),
        ("args.a", "exists", json!(false), json!({"a": ""}), false),
        // Nested and array paths.
        ("args.c.country", "eq", json!("BG"), json!({"c": {"country": "BG"}}), true),
        ("args.c.country", "eq", json!("BG"), json!({"c": "BG"}), false),
        ("args.lines[0].qty", "lte", json!(5), json!({"lines": [{"qty": 5}]}), true),
        ("args.lines[1].qty", "lte", json!(5), json!({"lines": [{"qty": 5}]}), false),
        ("args.lines[1].qty", "exists", json!(false), json!({"lines": [{"qty": 5}]}), true),
        ("args.lines[0]", "eq", json!(1), json!({"lines": {"0": 1}}), false),
        ("args.m[0][1]", "eq", json!("b"), json!({"m": [["a", "b"]]}), true),
        // Identity paths.
        ("grant.label", "eq", json!("alice-laptop"), json!({}), true),
        ("grant.id", "regex", json!("^grt_"), json!({}), true),
        ("session.client_name", "in", json!(["claude-code", "cursor"]), json!({}), true),
    ];
    for (path, op, value, args, want) in cases {
        let got = holds(path, op, value.clone(), Some(args.clone()));
        assert_eq!(got, want, "{path} {op} {value} on {args}");
    }
}

#[test]
fn absent_arguments_object() {
    assert!(!holds("args.a", "eq", json!(1), None));
    assert!(holds("args.a", "exists", json!(false), None));
    assert!(!holds("args.a", "eq", json!(1), Some(json!(null))));
    assert!(!holds("args.a", "eq", json!(1), Some(json!([1]))));
}

#[test]
fn client_name_absent_is_absent() {
    let e = cond_engine("session.client_name", "exists", json!(false));
    assert!(matches!(
        e.check(
            &Call {
                tool: "t",
                args: None
            },
            &bob()
        ),
        Check::Proceed(_)
    ));
    assert!(matches!(
        e.check(
            &Call {
                tool: "t",
                args: None
            },
            &alice()
        ),
        Check::Deny(_)
    ));
}

fn deny_of(c: Check) -> Denial {
    match c {
        Check::Deny(d) => d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn default_deny_versus_empty_rules() {
    let e = engine(json!({"version":"1","default":"deny","tools":{"list_customers":{}}}));
    let ok = e.check(
        &Call {
            tool: "list_customers",
            args: None,
        },
        &alice(),
    );
    assert!(matches!(ok, Check::Proceed(ref p) if p.reservations.is_empty()));
    let d = deny_of(e.check(
        &Call {
            tool: "delete_customer",
            args: None,
        },
        &alice(),
    ));
    assert_eq!(d.rule, "(default deny)");
    assert!(
        d.message.contains("\"delete_customer\" is not allowed"),
        "{}",
        d.message
    );

    let e = engine(json!({"version":"1","default":"allow"}));
    assert!(matches!(
        e.check(
            &Call {
                tool: "anything",
                args: None
            },
            &alice()
        ),
        Check::Proceed(_)
    ));
}

#[test]
fn hide_wins_and_star_hides_all() {
    let e = engine(
        json!({"version":"1","default":"allow","hide":["delete_account"],"tools":{"delete_account":{}}}),
    );
    let d = deny_of(e.check(
        &Call {
            tool: "delete_account",
            args: None,
        },
        &alice(),
    ));
    assert_eq!(d.rule, "(hidden)");
    assert!(!e.is_listed("delete_account"));
    assert!(e.is_listed("read"));
    assert!(matches!(
        e.check(
            &Call {
                tool: "read",
                args: None
            },
            &alice()
        ),
        Check::Proceed(_)
    ));

    let e = engine(json!({"version":"1","default":"allow","hide":["*"],"tools":{"read":{}}}));
    assert_eq!(
        deny_of(e.check(
            &Call {
                tool: "read",
                args: None
            },
            &alice()
        ))
        .rule,
        "(hidden)"
    );
    assert!(!e.is_listed("read"));
    assert!(!e.is_listed("anything"));
}

/// A default-deny policy with one tool of each kind `hide_denied` must tell apart, with the
/// option set to `hide_denied` and the mode to `mode`.
fn mixed_policy(hide_denied: Value, mode: &str) -> Engine {
    let gt = |n: u64| json!([{"path":"args.amount","op":"gt","value":n}]);
    engine(json!({
        "version":"1","default":"deny","hide_denied":hide_denied,"mode":mode,
        "hide":["drop"],
        "tools":{
            "read":{},
            "refund":{"deny_if":[{"conditions":gt(500)}]},
            "pay":{"require":[{"conditions":[{"path":"args.reason","op":"exists","value":true}]}]},
            "not_for_alice":{"deny_if":[{"conditions":[{"path":"grant.label","op":"eq","value":"alice-laptop"}]}]},
            "approve":{"approve_if":[{"conditions":[]}]},
            "wipe":{"deny_if":[{"conditions":gt(1)},{"conditions":[],"on_deny":"Never."}]},
            "bulk":{"limits":[{"counter":"bulk","window":"minute","max":5,"scope":"grant","increment":6}]},
            "drop":{}
        }
    }))
}

/// Which of `names` the engine lists.
fn listed<'a>(e: &Engine, names: &[&'a str]) -> Vec<&'a str> {
    names.iter().copied().filter(|n| e.is_listed(n)).collect()
}

const MIXED: &[&str] = &[
    "read",
    "refund",
    "pay",
    "not_for_alice",
    "approve",
    "wipe",
    "bulk",
    "drop",
    "unlisted_tool",
];

#[test]
fn hide_denied_unlists_exactly_the_tools_the_policy_can_never_allow() {
    let e = mixed_policy(json!(true), "enforce");
    // Listed: every tool some call could pass, even one whose only condition reads the caller
    // (the listing is worked out once per policy, not per caller).
    assert_eq!(
        listed(&e, MIXED),
        ["read", "refund", "pay", "not_for_alice", "approve"]
    );
    // Without the option (or in shadow mode, which only observes) only `hide` unlists.
    let all_but_drop: Vec<&str> = MIXED.iter().copied().filter(|n| *n != "drop").collect();
    for (option, mode) in [(json!(false), "enforce"), (json!(true), "shadow")] {
        let plain = mixed_policy(option.clone(), mode);
        assert_eq!(listed(&plain, MIXED), all_but_drop, "{option} {mode}");
    }
}

#[test]
fn hide_denied_changes_no_decision() {
    let with = mixed_policy(json!(true), "enforce");
    let without = mixed_policy(json!(false), "enforce");
    let args = [None, Some(json!({"amount": 9, "reason": "r"}))];
    for tool in MIXED {
        for a in &args {
            for who in [alice(), bob()] {
                let call = Call {
                    tool,
                    args: a.as_ref(),
                };
                assert_eq!(
                    with.check(&call, &who),
                    without.check(&call, &who),
                    "{tool}"
                );
            }
        }
    }
    // The unlisted ones keep their own rule, not `(hidden)`.
    let rule = |tool: &str| {
        let d = deny_of(with.check(&Call { tool, args: None }, &alice()));
        (d.rule, d.message)
    };
    assert_eq!(
        rule("unlisted_tool"),
        (
            "(default deny)".to_string(),
            "Tool \"unlisted_tool\" is not allowed by this policy (default deny).".to_string()
        )
    );
    assert_eq!(
        rule("wipe"),
        ("/tools/wipe/deny_if/1".to_string(), "Never.".to_string())
    );
    assert_eq!(rule("drop").0, "(hidden)");
    let store = TestCounters::default();
    match with.decide(
        &Call {
            tool: "bulk",
            args: None,
        },
        &alice(),
        &store,
        NOON,
    ) {
        Decision::Deny(d) => {
            assert_eq!(d.rule, "/tools/bulk/limits/0");
            assert!(d.message.contains("can never pass"), "{}", d.message);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hide_denied_under_default_allow_and_all_tools() {
    let e = engine(json!({
        "version":"1","default":"allow","hide_denied":true,
        "all_tools":{"deny_if":[{"conditions":[{"path":"args.dry_run","op":"eq","value":false}]}]},
        "tools":{"wipe":{"deny_if":[{"conditions":[]}]},"refund":{"deny_if":[{"conditions":[{"path":"args.amount","op":"gt","value":1}]}]}}
    }));
    // Default allow: unlisted tools may be called, so they stay; only the refused-always goes.
    assert_eq!(
        listed(&e, &["anything", "refund", "wipe"]),
        ["anything", "refund"]
    );
    // An unconditional deny under all_tools refuses every call of every tool: nothing is listed.
    let e = engine(json!({
        "version":"1","default":"allow","hide_denied":true,
        "all_tools":{"deny_if":[{"conditions":[],"on_deny":"Maintenance."}]},
        "tools":{"read":{}}
    }));
    assert_eq!(listed(&e, &["anything", "read"]), Vec::<&str>::new());
    assert_eq!(
        deny_of(e.check(
            &Call {
                tool: "read",
                args: None
            },
            &alice()
        ))
        .rule,
        "/all_tools/deny_if/0"
    );
    // An increment that fits `max` leaves the tool listed; only one that cannot fit unlists.
    let e = engine(json!({
        "version":"1","default":"deny","hide_denied":true,
        "tools":{
            "fits":{"limits":[{"counter":"a","window":"hour","max":5,"scope":"grant","increment":5}]},
            "budget":{"limits":[{"counter":"b","window":"hour","max":5,"scope":"grant","increment_from":"args.n"}]}
        }
    }));
    assert_eq!(listed(&e, &["fits", "budget"]), ["fits", "budget"]);
}

#[test]
fn evaluation_order_require_then_deny_if_then_all_tools_then_limits() {
    let e = engine(json!({
        "version":"1","default":"deny",
        "all_tools": {
            "require":[{"conditions":[{"path":"args.tenant","op":"exists","value":true}],"on_deny":"all: tenant"}],
            "deny_if":[{"conditions":[{"path":"args.tenant","op":"eq","value":"blocked"}],"on_deny":"all: blocked"}],
            "limits":[{"counter":"all","window":"minute","max":100,"scope":"grant"}]
        },
        "tools": {"create_refund": {
            "require":[{"conditions":[{"path":"args.reason","op":"exists","value":true}],"on_deny":"Refunds need a reason."}],
            "deny_if":[
                {"conditions":[{"path":"args.amount","op":"gt","value":10000}],"on_deny":"Refund exceeds the policy limit."},
                {"conditions":[{"path":"args.amount","op":"gt","value":5000},{"path":"args.currency","op":"neq","value":"usd"}]}
            ],
            "limits":[{"counter":"refunds","window":"hour","max":30,"scope":"grant"}]
        }}
    }));
    let check = |args: Value| {
        e.check(
            &Call {
                tool: "create_refund",
                args: Some(&args),
            },
            &alice(),
        )
    };
    // require fails before deny_if is looked at, even when deny_if would match too.
    let d = deny_of(check(json!({"amount": 20000})));
    assert_eq!(
        (d.rule.as_str(), d.message.as_str()),
        ("/tools/create_refund/require/0", "Refunds need a reason.")
    );
    let d = deny_of(check(json!({"amount": 20000, "reason": "x"})));
    assert_eq!(
        (d.rule.as_str(), d.message.as_str()),
        (
            "/tools/create_refund/deny_if/0",
            "Refund exceeds the policy limit."
        )
    );
    // deny_if needs all its conditions; without on_deny the engine names rule and conditions.
    let d = deny_of(check(
        json!({"amount": 6000, "reason": "x", "currency": "eur"}),
    ));
    assert_eq!(d.rule, "/tools/create_refund/deny_if/1");
    assert!(
        d.message.contains("/tools/create_refund/deny_if/1")
            && d.message.contains("args.amount gt 5000"),
        "{}",
        d.message
    );
    // Tool rules pass; all_tools rules come next.
    let d = deny_of(check(
        json!({"amount": 6000, "reason": "x", "currency": "usd"}),
    ));
    assert_eq!(
        (d.rule.as_str(), d.message.as_str()),
        ("/all_tools/require/0", "all: tenant")
    );
    let d = deny_of(check(
        json!({"amount": 6000, "reason": "x", "currency": "usd", "tenant": "blocked"}),
    ));
    assert_eq!(d.rule, "/all_tools/deny_if/0");
    // Everything passes: tool limits first, then all_tools limits.
    match check(json!({"amount": 6000, "reason": "x", "currency": "usd", "tenant": "a"})) {
        Check::Proceed(p) => {
            assert_eq!(p.reservations.len(), 2);
            assert_eq!(p.reservations[0].max, 30);
            assert_eq!(p.reservations[1].max, 100);
            assert!(p.reservations[0].key.as_str().contains("grt_alice"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn all_tools_applies_to_unlisted_tools_under_default_allow() {
    let e = engine(json!({"version":"1","default":"allow","all_tools":{
        "deny_if":[{"conditions":[{"path":"args.path","op":"regex","value":"^/etc/"}],"on_deny":"No /etc."}]}}));
    let args = json!({"path": "/etc/passwd"});
    assert_eq!(
        deny_of(e.check(
            &Call {
                tool: "read_file",
                args: Some(&args)
            },
            &alice()
        ))
        .rule,
        "/all_tools/deny_if/0"
    );
    let args = json!({"path": "/tmp/x"});
    assert!(matches!(
        e.check(
            &Call {
                tool: "read_file",
                args: Some(&args)
            },
            &alice()
        ),
        Check::Proceed(_)
    ));
}

#[test]
fn empty_deny_if_always_denies() {
    let e = engine(
        json!({"version":"1","default":"deny","tools":{"pay":{"deny_if":[{"conditions":[],"on_deny":"Requires human approval."}]}}}),
    );
    let d = deny_of(e.check(
        &Call {
            tool: "pay",
            args: None,
        },
        &alice(),
    ));
    assert_eq!(
        (d.rule.as_str(), d.message.as_str()),
        ("/tools/pay/deny_if/0", "Requires human approval.")
    );
}

#[test]
fn rule_pointers_escape_tool_names() {
    let e = engine(
        json!({"version":"1","default":"deny","tools":{"a/b~c":{"deny_if":[{"conditions":[]}]}}}),
    );
    assert_eq!(
        deny_of(e.check(
            &Call {
                tool: "a/b~c",
                args: None
            },
            &alice()
        ))
        .rule,
        "/tools/a~1b~0c/deny_if/0"
    );
}

#[test]
fn limits_reserve_and_deny_with_counter_window_and_retry() {
    let e = engine(
        json!({"version":"1","default":"deny","tools":{"run":{"limits":[
        {"counter":"run_rate","window":"minute","max":2,"scope":"grant"}]}}}),
    );
    let store = TestCounters::default();
    let call = Call {
        tool: "run",
        args: None,
    };
    for _ in 0..2 {
        assert!(matches!(
            e.decide(&call, &alice(), &store, NOON + 15_000),
            Decision::Allow(_)
        ));
    }
    match e.decide(&call, &alice(), &store, NOON + 15_000) {
        Decision::Deny(d) => {
            assert_eq!(d.rule, "/tools/run/limits/0");
            assert_eq!(d.retry_after_secs, Some(45));
            assert!(
                d.message
                    .contains("\"run_rate\" allows 2 per minute (scope grant)"),
                "{}",
                d.message
            );
            assert!(d.message.contains("try again in 45s"), "{}", d.message);
        }
        other => panic!("{other:?}"),
    }
    // Per grant: bob has his own counter.
    assert!(matches!(
        e.decide(&call, &bob(), &store, NOON + 15_000),
        Decision::Allow(_)
    ));
    // Next minute: fresh.
    assert!(matches!(
        e.decide(&call, &alice(), &store, NOON + 60_000),
        Decision::Allow(_)
    ));
}

#[test]
fn limits_are_all_or_nothing_across_tool_and_all_tools() {
    let e = engine(json!({"version":"1","default":"allow",
        "all_tools":{"limits":[{"counter":"total","window":"minute","max":1,"scope":"grant"}]},
        "tools":{"a":{"limits":[{"counter":"a","window":"minute","max":5,"scope":"grant"}]}}}));
    let store = TestCounters::default();
    assert!(matches!(
        e.decide(
            &Call {
                tool: "b",
                args: None
            },
            &alice(),
            &store,
            NOON
        ),
        Decision::Allow(_)
    ));
    match e.decide(
        &Call {
            tool: "a",
            args: None,
        },
        &alice(),
        &store,
        NOON,
    ) {
        Decision::Deny(d) => assert_eq!(d.rule, "/all_tools/limits/0"),
        other => panic!("{other:?}"),
    }
    // The tool's own counter was not charged by the failed attempt.
    let key = portcullis_policy::CounterKey::new(
        portcullis_policy::Scope::Grant,
        "grt_alice",
        "a",
        portcullis_policy::Window::Minute,
        None,
    );
    assert_eq!(
        portcullis_policy::CounterStore::usage(
            &store,
            &key,
            portcullis_policy::Window::Minute,
            NOON
        )
        .unwrap()
        .used,
        0
    );
}

#[test]
fn store_errors_fail_closed() {
    let e = engine(
        json!({"version":"1","default":"deny","tools":{"run":{"limits":[
        {"counter":"r","window":"minute","max":2,"scope":"grant"}]}}}),
    );
    let store = TestCounters {
        fail: true,
        ..Default::default()
    };
    match e.decide(
        &Call {
            tool: "run",
            args: None,
        },
        &alice(),
        &store,
        NOON,
    ) {
        Decision::Deny(d) => {
            assert_eq!(d.rule, "(store error)");
            assert!(d.message.contains("not forwarded"));
            assert!(d.message.starts_with("the limit store is unavailable"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn scopes_key_counters() {
    let mk = |scope: &str| {
        engine(
            json!({"version":"1","default":"allow","all_tools":{"limits":[{"counter":"c","window":"day","max":1,"scope":scope}]}}),
        )
    };
    let key = |e: &Engine, who| match e.check(
        &Call {
            tool: "x",
            args: None,
        },
        &who,
    ) {
        Check::Proceed(p) => p.reservations[0].key.clone(),
        other => panic!("{other:?}"),
    };
    let g = mk("grant");
    assert_ne!(key(&g, alice()), key(&g, bob()));
    let s = mk("session");
    assert_ne!(key(&s, alice()), key(&s, bob()));
    let sv = mk("server");
    assert_eq!(key(&sv, alice()), key(&sv, bob())); // same server
    let gl = mk("global");
    let mut other = bob();
    other.server = "time";
    assert_eq!(key(&gl, alice()), key(&gl, other));
    assert_ne!(key(&sv, alice()), key(&sv, other));
}

#[test]
fn per_keys_the_counter_and_absent_per_denies() {
    let e = engine(
        json!({"version":"1","default":"deny","tools":{"ai_invoice_pipeline_run":{"limits":[
        {"counter":"per_move","window":"hour","max":1,"scope":"grant","per":"args.move_id"}]}}}),
    );
    let store = TestCounters::default();
    let run = |args: Value| {
        e.decide(
            &Call {
                tool: "ai_invoice_pipeline_run",
                args: Some(&args),
            },
            &alice(),
            &store,
            NOON,
        )
    };
    assert!(matches!(run(json!({"move_id": 7})), Decision::Allow(_)));
    assert!(
        matches!(run(json!({"move_id": 7.0})), Decision::Deny(_)),
        "7.0 is the same invoice as 7"
    );
    assert!(matches!(run(json!({"move_id": 8})), Decision::Allow(_)));
    assert!(
        matches!(run(json!({"move_id": "8"})), Decision::Allow(_)),
        "a string is another key"
    );
    for bad in [json!({}), json!({"move_id": null})] {
        match run(bad) {
            Decision::Deny(d) => {
                assert_eq!(d.rule, "/tools/ai_invoice_pipeline_run/limits/0");
                assert!(d.message.contains("kept per args.move_id"), "{}", d.message);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn increment_and_increment_from() {
    let e = engine(json!({"version":"1","default":"deny","tools":{
        "charge":{"limits":[{"counter":"spend","window":"day","max":1000,"scope":"grant","increment_from":"args.amount"}]},
        "bulk":{"limits":[{"counter":"bulk","window":"day","max":10,"scope":"grant","increment":4}]}}}));
    let store = TestCounters::default();
    let charge = |args: Value| {
        e.decide(
            &Call {
                tool: "charge",
                args: Some(&args),
            },
            &alice(),
            &store,
            NOON,
        )
    };
    assert!(matches!(charge(json!({"amount": 600})), Decision::Allow(_)));
    assert!(
        matches!(charge(json!({"amount": 399.5})), Decision::Allow(_)),
        "rounds up to 400 → 1000"
    );
    match charge(json!({"amount": 1})) {
        Decision::Deny(d) => assert!(
            d.message.contains("allows 1000 per day") && d.message.contains("needs 1"),
            "{}",
            d.message
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(charge(json!({"amount": 0})), Decision::Allow(_)),
        "zero fits even in a full budget"
    );
    for (bad, why) in [
        (json!({"amount": -5}), "is negative"),
        (json!({}), "is absent"),
        (json!({"amount": "10"}), "is not a number"),
        (json!({"amount": -0.5}), "is negative"),
        (json!({"amount": null}), "is not a number"),
    ] {
        match charge(bad.clone()) {
            Decision::Deny(d) => {
                assert_eq!(d.rule, "/tools/charge/limits/0");
                assert!(d.message.contains(why), "{bad}: {}", d.message);
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let over = json!({"amount": 5000});
    let e2 = engine(
        json!({"version":"1","default":"deny","tools":{"charge":{"limits":[{"counter":"spend","window":"day","max":1000,"scope":"grant","increment_from":"args.amount"}]}}}),
    );
    match e2.decide(
        &Call {
            tool: "charge",
            args: Some(&over),
        },
        &alice(),
        &TestCounters::default(),
        NOON,
    ) {
        Decision::Deny(d) => {
            assert_eq!(d.retry_after_secs, None);
            assert!(d.message.contains("can never pass"), "{}", d.message);
        }
        other => panic!("{other:?}"),
    }
    let bulk = |n| {
        (0..n)
            .map(|_| {
                e.decide(
                    &Call {
                        tool: "bulk",
                        args: None,
                    },
                    &alice(),
                    &store,
                    NOON,
                )
            })
            .filter(|d| matches!(d, Decision::Allow(_)))
            .count()
    };
    assert_eq!(bulk(5), 2, "increment 4 against max 10 fits twice");
}

#[test]
fn rolling_windows() {
    let e = engine(
        json!({"version":"1","default":"deny","tools":{"run":{"limits":[
        {"counter":"r","window":"90s","max":2,"scope":"grant","on_deny":"Slow down."}]}}}),
    );
    let store = TestCounters::default();
    let at = |t| {
        e.decide(
            &Call {
                tool: "run",
                args: None,
            },
            &alice(),
            &store,
            NOON + t,
        )
    };
    assert!(matches!(at(0), Decision::Allow(_)));
    assert!(matches!(at(30_000), Decision::Allow(_)));
    match at(60_000) {
        Decision::Deny(d) => {
            assert_eq!(d.retry_after_secs, Some(30));
            assert!(
                d.message
                    .starts_with("Slow down. (counter \"r\" allows 2 in any 90s"),
                "{}",
                d.message
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(at(90_000), Decision::Allow(_)));
    assert!(matches!(at(100_000), Decision::Deny(_)));
}

#[test]
fn an_approve_if_entry_may_set_its_own_hold() {
    let e = engine(json!({"version":"1","default":"deny","tools":{
        "a":{"approve_if":[{"conditions":[],"hold":"45s"}]},
        "b":{"approve_if":[{"conditions":[],"hold":"0s"}]},
        "c":{"approve_if":[{"conditions":[],"hold":"2h","timeout":"10m"}]},
        "d":{"approve_if":[{"conditions":[]}]}}}));
    let hold = |tool: &str| match e.check(&Call { tool, args: None }, &alice()) {
        Check::Approval(need, _) => need.hold_ms,
        other => panic!("{other:?}"),
    };
    assert_eq!(hold("a"), Some(45_000));
    assert_eq!(hold("b"), Some(0), "\"0s\" means answer at once");
    assert_eq!(hold("c"), Some(10 * 60_000), "never held past the timeout");
    assert_eq!(hold("d"), None, "no hold of its own: the server decides");
}

#[test]
fn approve_if_comes_after_deny_and_carries_the_limits() {
    let e = engine(json!({"version":"1","default":"deny","tools":{"pay":{
        "deny_if":[{"conditions":[{"path":"args.amount","op":"gt","value":100000}],"on_deny":"Too much."}],
        "approve_if":[{"conditions":[{"path":"args.amount","op":"gt","value":1000}],"reason":"Large payment","timeout":"30m"}],
        "limits":[{"counter":"pay","window":"day","max":5,"scope":"grant"}]}}}));
    let check = |args: Value| {
        e.check(
            &Call {
                tool: "pay",
                args: Some(&args),
            },
            &alice(),
        )
    };
    assert_eq!(
        deny_of(check(json!({"amount": 200000}))).rule,
        "/tools/pay/deny_if/0"
    );
    match check(json!({"amount": 5000})) {
        Check::Approval(need, plan) => {
            assert_eq!(need.rule, "/tools/pay/approve_if/0");
            assert_eq!(need.reason, "Large payment");
            assert_eq!(need.timeout_ms, 30 * 60_000);
            assert_eq!(plan.reservations.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(check(json!({"amount": 50})), Check::Proceed(_)));
    let store = TestCounters::default();
    let args = json!({"amount": 5000});
    assert!(matches!(
        e.decide(
            &Call {
                tool: "pay",
                args: Some(&args)
            },
            &alice(),
            &store,
            NOON
        ),
        Decision::NeedsApproval(..)
    ));
    assert!(
        store.map.lock_or_recover().is_empty(),
        "an approval request charges nothing"
    );
}

#[test]
fn shadow_mode_is_reported() {
    let e = engine(json!({"version":"1","default":"deny","mode":"shadow"}));
    assert_eq!(e.mode(), portcullis_policy::doc::Mode::Shadow);
    let e = engine(json!({"version":"1","default":"deny"}));
    assert_eq!(e.mode(), portcullis_policy::doc::Mode::Enforce);
}

#[test]
fn no_policy_denial() {
    let d = Denial::no_policy();
    assert_eq!(d.rule, "(no policy)");
}

/// The pure check of one call of tool `t` with these arguments, by alice.
fn verdict(e: &Engine, args: Value) -> Check {
    e.check(
        &Call {
            tool: "t",
            args: Some(&args),
        },
        &alice(),
    )
}

/// A policy whose tool `t` has `kind` (require, deny_if or approve_if) = one entry of
/// `conditions`.
fn entry_engine(kind: &str, conditions: Value) -> Engine {
    engine(json!({"version":"1","default":"deny","tools":{"t":{kind:[{"conditions":conditions}]}}}))
}

#[test]
fn path_under_and_path_not_under_compare_whole_segments_after_normalizing() {
    let under =
        |value: Value, arg: &str| holds("args.p", "path_under", value, Some(json!({ "p": arg })));
    assert!(under(json!("/srv/app"), "/srv/app/x.txt"));
    assert!(under(json!("/srv/app"), "/srv/app"));
    assert!(under(json!("/srv/app/"), "/srv//app/./x/../y"));
    assert!(!under(json!("/srv/app"), "/srv/application"));
    assert!(!under(json!("/srv/app"), "/srv"));
    assert!(under(json!(["/tmp", "/srv/app"]), "/tmp/x"));
    assert!(!under(json!(["/tmp", "/srv/app"]), "/etc/x"));
    assert!(under(json!("/"), "/anything/at/all"));
    // Absent: false, like every operator but exists (so a require fails).
    assert!(!holds(
        "args.p",
        "path_under",
        json!("/srv"),
        Some(json!({}))
    ));
    let not_under = |arg: &str| {
        holds(
            "args.p",
            "path_not_under",
            json!(["/etc", "/root"]),
            Some(json!({ "p": arg })),
        )
    };
    assert!(not_under("/srv/etc"));
    assert!(!not_under("/srv/../etc/shadow"));
    assert!(!not_under("/root"));
}

#[test]
fn path_style_and_base() {
    let e = |extra: Value| {
        let mut c = json!({"path":"args.p","op":"path_under","value":"/srv/app"});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        entry_engine("require", json!([c]))
    };
    let mixed = e(json!({}));
    assert!(matches!(
        verdict(&mixed, json!({"p": "/srv/app/..\\..\\..\\etc\\passwd"})),
        Check::Deny(_)
    ));
    assert!(matches!(
        verdict(&mixed, json!({"p": "\\srv\\app\\x"})),
        Check::Proceed(_)
    ));
    // posix: a backslash is part of a file name, so this stays inside /srv/app.
    let posix = e(json!({"style":"posix"}));
    assert!(matches!(
        verdict(&posix, json!({"p": "/srv/app/..\\..\\etc"})),
        Check::Proceed(_)
    ));
    assert!(matches!(
        verdict(&posix, json!({"p": "\\srv\\app\\x"})),
        Check::Deny(_)
    ));
    // A relative argument is resolved against base; without one it denies.
    let based = e(json!({"base":"/srv/app"}));
    assert!(matches!(
        verdict(&based, json!({"p": "notes/a.md"})),
        Check::Proceed(_)
    ));
    let d = deny_of(verdict(&based, json!({"p": "../other/a.md"})));
    assert!(
        d.message.contains("normalizes to \"/srv/other/a.md\""),
        "{}",
        d.message
    );
    let d = deny_of(verdict(&mixed, json!({"p": "notes/a.md"})));
    assert!(d.message.contains("has no \"base\""), "{}", d.message);
}

#[test]
fn url_host_in_and_not_in() {
    let hosts = json!(["example.com", "*.example.org", "127.0.0.1", "[::1]"]);
    let host_in = |url: &str| {
        holds(
            "args.u",
            "url_host_in",
            hosts.clone(),
            Some(json!({ "u": url })),
        )
    };
    assert!(host_in("https://example.com/x?y#z"));
    assert!(host_in("http://user:pw@EXAMPLE.com.:8080/"));
    assert!(host_in("https://a.b.example.org/"));
    assert!(!host_in("https://example.org/"), "*. names subdomains only");
    assert!(!host_in("https://notexample.com/"));
    assert!(host_in("http://[0:0:0:0:0:0:0:1]/"));
    assert!(host_in("http://0177.0.0.1/"));
    let not_in = |url: &str| {
        holds(
            "args.u",
            "url_host_not_in",
            json!(["internal.corp"]),
            Some(json!({ "u": url })),
        )
    };
    assert!(not_in("https://example.com/"));
    assert!(!not_in("https://INTERNAL.corp./"));
    // schemes: default http and https; a condition may allow others.
    let e = entry_engine(
        "require",
        json!([{"path":"args.u","op":"url_host_in","value":["example.com"],"schemes":["https","FTP"]}]),
    );
    assert!(matches!(
        verdict(&e, json!({"u": "ftp://example.com/f"})),
        Check::Proceed(_)
    ));
    let d = deny_of(verdict(&e, json!({"u": "http://example.com/"})));
    assert!(d.message.contains("scheme \"http\""), "{}", d.message);
}

#[test]
fn an_argument_that_cannot_be_judged_denies_whatever_the_entry() {
    let bad = json!({"p": "~/.ssh/id_rsa", "mode": "read"});
    let path_cond = json!({"path":"args.p","op":"path_not_under","value":"/etc"});
    let never = json!({"path":"args.mode","op":"eq","value":"write"});
    // deny_if whose other condition is false, approve_if, require: all deny outright.
    for (kind, conds) in [
        ("deny_if", json!([never.clone(), path_cond.clone()])),
        ("approve_if", json!([path_cond.clone()])),
        ("require", json!([path_cond.clone()])),
    ] {
        let d = deny_of(verdict(&entry_engine(kind, conds), bad.clone()));
        assert_eq!(d.rule, format!("/tools/t/{kind}/0"));
        assert!(
            d.message
                .contains("args.p (\"~/.ssh/id_rsa\") starts with \"~\""),
            "{}",
            d.message
        );
        assert!(
            d.message
                .contains("(condition args.p path_not_under \"/etc\")"),
            "{}",
            d.message
        );
    }
    // The same policy forwards a judgeable call.
    assert!(matches!(
        verdict(
            &entry_engine("deny_if", json!([never, path_cond.clone()])),
            json!({"p": "/srv/x", "mode": "read"})
        ),
        Check::Proceed(_)
    ));
    // An on_deny text does not hide why: the engine's message is used.
    let e = engine(
        json!({"version":"1","default":"deny","tools":{"t":{"deny_if":[{"conditions":[path_cond],"on_deny":"No system files."}]}}}),
    );
    let d = deny_of(verdict(&e, json!({"p": 7})));
    assert!(
        d.message
            .contains("args.p (7) is integer, not a path string"),
        "{}",
        d.message
    );
    // Unjudgeable URLs too, and under all_tools.
    let e = engine(
        json!({"version":"1","default":"allow","all_tools":{"deny_if":[{"conditions":[
        {"path":"args.url","op":"url_host_in","value":["evil.com"]}]}]}}),
    );
    for (url, why) in [
        ("not a url", "is not a URL"),
        ("gopher://good.com/", "scheme \"gopher\""),
        ("http://good.com\\@evil.com/", "backslash"),
        ("mailto:x@good.com", "scheme \"mailto\""),
    ] {
        let d = deny_of(verdict(&e, json!({ "url": url })));
        assert_eq!(d.rule, "/all_tools/deny_if/0");
        assert!(d.message.contains(why), "{url}: {}", d.message);
    }
    assert!(matches!(
        verdict(&e, json!({"url": "https://good.com/"})),
        Check::Proceed(_)
    ));
    assert!(
        matches!(verdict(&e, json!({})), Check::Proceed(_)),
        "absent: false"
    );
    let d = deny_of(verdict(&e, json!({"url": null})));
    assert!(
        d.message.contains("is null, not a URL string"),
        "{}",
        d.message
    );
}

#[test]
fn every_element_require_needs_all_deny_if_and_approve_if_need_one() {
    let req = entry_engine(
        "require",
        json!([{"path":"args.files[*]","op":"path_under","value":"/srv"}]),
    );
    assert!(matches!(
        verdict(&req, json!({"files": ["/srv/a", "/srv/b/../c"]})),
        Check::Proceed(_)
    ));
    let d = deny_of(verdict(
        &req,
        json!({"files": ["/srv/a", "/srv/../etc/x", "/tmp"]}),
    ));
    assert_eq!(d.rule, "/tools/t/require/0");
    assert!(
        d.message
            .ends_with(": args.files[1] (\"/srv/../etc/x\") normalizes to \"/etc/x\"."),
        "the first element that fails is named: {}",
        d.message
    );

    let deny = entry_engine(
        "deny_if",
        json!([{"path":"args.files[*]","op":"path_under","value":"/etc"}]),
    );
    assert!(matches!(
        verdict(&deny, json!({"files": ["/srv/a", "/tmp/b"]})),
        Check::Proceed(_)
    ));
    let d = deny_of(verdict(
        &deny,
        json!({"files": ["/srv/a", "/etc//shadow/"]}),
    ));
    assert!(
        d.message
            .contains("args.files[1] (\"/etc//shadow/\") normalizes to \"/etc/shadow\""),
        "{}",
        d.message
    );

    let appr = entry_engine(
        "approve_if",
        json!([{"path":"args.lines[*].qty","op":"gt","value":100}]),
    );
    assert!(matches!(
        verdict(&appr, json!({"lines": [{"qty": 5}, {"qty": 500}]})),
        Check::Approval(..)
    ));
    assert!(matches!(
        verdict(&appr, json!({"lines": [{"qty": 5}, {"sku": "x"}]})),
        Check::Proceed(_)
    ));
}

#[test]
fn every_element_with_no_element_to_judge_denies() {
    for kind in ["require", "deny_if", "approve_if"] {
        let e = entry_engine(
            kind,
            json!([{"path":"args.lines[*].qty","op":"lte","value":10}]),
        );
        for (args, why) in [
            (json!({"lines": []}), "args.lines is empty"),
            (json!({}), "args.lines is missing"),
            (json!({"lines": null}), "args.lines is missing"),
            (
                json!({"lines": {"qty": 1}}),
                "args.lines is object, not an array",
            ),
        ] {
            let d = deny_of(verdict(&e, args.clone()));
            assert_eq!(d.rule, format!("/tools/t/{kind}/0"));
            assert!(d.message.contains(why), "{kind} {args}: {}", d.message);
        }
    }
}

#[test]
fn every_element_is_judged_before_any_entry_decides() {
    // Element 0 would ask for an approval; element 1 cannot be judged: denied.
    let e = entry_engine(
        "approve_if",
        json!([{"path":"args.urls[*]","op":"url_host_not_in","value":["example.com"]}]),
    );
    assert!(matches!(
        verdict(&e, json!({"urls": ["https://other.org/"]})),
        Check::Approval(..)
    ));
    let d = deny_of(verdict(
        &e,
        json!({"urls": ["https://other.org/", "ftp://example.com/"]}),
    ));
    assert!(
        d.message
            .contains("args.urls[1] (\"ftp://example.com/\") has the scheme \"ftp\""),
        "{}",
        d.message
    );
    // A deny_if on another argument that already denies does not hide it either: the
    // unjudgeable element is reported first, whatever the order of the entries.
    let e = engine(json!({"version":"1","default":"deny","tools":{"t":{
        "deny_if":[{"conditions":[]}],
        "require":[{"conditions":[{"path":"args.files[*]","op":"path_under","value":"/srv"}]}]}}}));
    let d = deny_of(verdict(&e, json!({"files": ["/srv/a", "x\u{0}y"]})));
    assert!(
        d.message.contains("args.files[1]") && d.message.contains("NUL"),
        "{}",
        d.message
    );
    // Elements lacking the field are absent: false for every operator but exists.
    let e = entry_engine(
        "require",
        json!([{"path":"args.lines[*].qty","op":"exists","value":true}]),
    );
    let d = deny_of(verdict(&e, json!({"lines": [{"qty": 1}, {"sku": "x"}]})));
    assert!(
        d.message.contains("args.lines[1].qty (absent)"),
        "{}",
        d.message
    );
}

/// How the bypass corpus expects an argument to be read.
#[derive(Debug)]
enum Meant {
    /// It normalizes to this (path) or has this host (URL).
    As(&'static str),
    /// It cannot be judged, for this reason (part of the message).
    Unjudged(&'static str),
}

#[test]
fn path_bypass_corpus_is_judged_as_meant() {
    use Meant::*;
    // A block-list (deny_if under /etc) and an allow-list (require under /srv/app): each
    // spelling of /etc/passwd is refused by both, and for the reason the operator meant.
    let block = entry_engine(
        "deny_if",
        json!([{"path":"args.path","op":"path_under","value":"/etc"}]),
    );
    let allow = entry_engine(
        "require",
        json!([{"path":"args.path","op":"path_under","value":"/srv/app"}]),
    );
    let corpus: Vec<(&str, Meant)> = vec![
        ("/srv/app/../../etc/passwd", As("/etc/passwd")),
        ("//etc/passwd", As("/etc/passwd")),
        ("/etc/./passwd", As("/etc/passwd")),
        ("/etc//passwd", As("/etc/passwd")),
        ("/etc/passwd/", As("/etc/passwd")),
        ("/etc", As("/etc")),
        ("\\etc\\passwd", As("/etc/passwd")),
        ("/srv/app/..\\..\\etc\\passwd", As("/etc/passwd")),
        (
            "/srv/app/..\\..\\..\\etc\\passwd",
            Unjudged("climbs above the root"),
        ),
        ("file:///etc/passwd", As("/etc/passwd")),
        ("file:///srv/%2e%2e/etc/passwd", As("/etc/passwd")),
        (
            "file:///srv/app/%2E%2E%2F%2E%2E/etc/passwd",
            As("/etc/passwd"),
        ),
        ("file://localhost/etc/passwd", As("/etc/passwd")),
        (
            "file://attacker/etc/passwd",
            Unjudged("naming another host"),
        ),
        (
            "etc/passwd",
            Unjudged("relative path and the condition has no \"base\""),
        ),
        ("./etc/passwd", Unjudged("relative path")),
        ("~/.ssh/id_rsa", Unjudged("starts with \"~\"")),
        ("~root/.ssh/id_rsa", Unjudged("starts with \"~\"")),
        ("/srv/app/x\u{0}/../../../etc/passwd", Unjudged("NUL")),
        ("file:///srv/app/x%00/../../../etc/passwd", Unjudged("NUL")),
        ("/srv/app/../../..", Unjudged("climbs above the root")),
        ("file:///etc/pass%00wd", Unjudged("NUL")),
        ("C:\\Windows\\system32", Unjudged("Windows drive")),
    ];
    for (path, meant) in &corpus {
        let args = json!({ "path": path });
        let (b, a) = (
            deny_of(verdict(&block, args.clone())),
            deny_of(verdict(&allow, args.clone())),
        );
        match meant {
            As(n) => {
                let want = format!("normalizes to {n:?}");
                assert!(b.message.contains(&want), "{path:?}: {}", b.message);
                assert!(a.message.contains(&want), "{path:?}: {}", a.message);
            }
            Unjudged(why) => {
                for d in [&b, &a] {
                    assert!(
                        d.message.contains(why) && d.message.contains("cannot check"),
                        "{path:?}: {}",
                        d.message
                    );
                }
            }
        }
    }
    // Spellings that mean a file inside /srv/app pass both.
    for path in [
        "/srv/app/notes.txt",
        "/srv/app/./a//b/",
        "/srv/other/../app/x",
        "file:///srv/app/a%20b.txt",
        "\\srv\\app\\x",
    ] {
        let args = json!({ "path": path });
        assert!(
            matches!(verdict(&block, args.clone()), Check::Proceed(_)),
            "{path}"
        );
        assert!(matches!(verdict(&allow, args), Check::Proceed(_)), "{path}");
    }
}

#[test]
fn url_bypass_corpus_is_judged_as_meant() {
    use Meant::*;
    // An allow-list of good.com and bücher.de, and a block-list of loopback.
    let allow = entry_engine(
        "require",
        json!([{"path":"args.url","op":"url_host_in","value":["good.com", "bücher.de"]}]),
    );
    let block = entry_engine(
        "deny_if",
        json!([{"path":"args.url","op":"url_host_in","value":["127.0.0.1", "[::1]", "localhost"]}]),
    );
    let loopback = ["127.0.0.1", "[::1]", "localhost"];
    let corpus: Vec<(&str, Meant)> = vec![
        ("http://127.1/", As("127.0.0.1")),
        ("http://2130706433/", As("127.0.0.1")),
        ("http://0x7f.0.0.1/", As("127.0.0.1")),
        ("http://0177.0.0.01/", As("127.0.0.1")),
        ("http://[::1]/", As("[::1]")),
        ("http://[0000::0001]:8080/", As("[::1]")),
        ("http://[::ffff:7f00:1]/", As("127.0.0.1")),
        ("http://LOCALHOST./admin", As("localhost")),
        ("http://good.com@evil.com/", As("evil.com")),
        ("http://good.com:pw@evil.com/", As("evil.com")),
        ("http://evil.com#@good.com", As("evil.com")),
        ("http://evil.com?@good.com", As("evil.com")),
        ("http://good.com.evil.com/", As("good.com.evil.com")),
        ("HTTP://GOOD.COM./", As("good.com")),
        ("https://good.com:443/path?q#f", As("good.com")),
        ("http://xn--bcher-kva.de/", As("xn--bcher-kva.de")),
        ("http://BÜCHER.de/", As("xn--bcher-kva.de")),
        // Cyrillic "о" twice: a look-alike of good.com, a different host.
        ("http://g\u{43e}\u{43e}d.com/", As("xn--gd-fmca.com")),
        ("gopher://good.com", Unjudged("scheme \"gopher\"")),
        ("file:///etc/passwd", Unjudged("scheme \"file\"")),
        ("javascript:alert(1)", Unjudged("scheme \"javascript\"")),
        ("good.com/path", Unjudged("is not a URL")),
        ("//good.com/", Unjudged("is not a URL")),
        ("http://good.com\\@evil.com/", Unjudged("backslash")),
        ("http://evil.com\t.good.com/", Unjudged("control character")),
        (" http://good.com/", Unjudged("surrounding spaces")),
        (
            "http://xn--/",
            Unjudged("is not a URL (invalid international domain name)"),
        ),
        ("http://good..com/", Unjudged("empty label")),
    ];
    for (url, meant) in &corpus {
        let args = json!({ "url": url });
        let (a, b) = (verdict(&allow, args.clone()), verdict(&block, args.clone()));
        match meant {
            As(host) => {
                let allowed = *host == "good.com" || *host == "xn--bcher-kva.de";
                let blocked = loopback.contains(host);
                let a_msg = match &a {
                    Check::Proceed(_) => None,
                    Check::Deny(d) => Some(d.message.clone()),
                    other => panic!("{other:?}"),
                };
                assert_eq!(a_msg.is_none(), allowed, "{url:?}: {a_msg:?}");
                if let Some(m) = a_msg {
                    assert!(
                        m.contains(&format!("has the host {host:?}")),
                        "{url:?}: {m}"
                    );
                }
                match (&b, blocked) {
                    (Check::Proceed(_), false) => {}
                    (Check::Deny(d), true) => assert!(
                        d.message.contains(&format!("has the host {host:?}")),
                        "{url:?}: {}",
                        d.message
                    ),
                    other => panic!("{url:?}: block-list gave {other:?}"),
                }
            }
            Unjudged(why) => {
                for c in [a, b] {
                    let d = deny_of(c);
                    assert!(
                        d.message.contains(why) && d.message.contains("cannot check"),
                        "{url:?}: {}",
                        d.message
                    );
                }
            }
        }
    }
}

#[test]
fn explanations_go_with_the_engine_message_not_with_on_deny() {
    let cond = json!({"path":"args.files[*]","op":"path_under","value":"/etc"});
    let args = json!({"files": ["/tmp/a", "/etc/../etc/x"]});
    let plain = entry_engine("deny_if", json!([cond.clone()]));
    assert_eq!(
        deny_of(verdict(&plain, args.clone())).message,
        "Denied by rule /tools/t/deny_if/0 (args.files[*] path_under \"/etc\"): args.files[1] (\"/etc/../etc/x\") normalizes to \"/etc/x\"."
    );
    let e = engine(
        json!({"version":"1","default":"deny","tools":{"t":{"deny_if":[
        {"conditions":[cond],"on_deny":"No system files."}]}}}),
    );
    assert_eq!(deny_of(verdict(&e, args)).message, "No system files.");
    // Plain scalar conditions keep the message they always had.
    let e = entry_engine("deny_if", json!([{"path":"args.n","op":"gt","value":1}]));
    assert_eq!(
        deny_of(verdict(&e, json!({"n": 2}))).message,
        "Denied by rule /tools/t/deny_if/0 (args.n gt 1)."
    );
}

#[test]
fn principal_paths_fence_a_tool_to_an_oauth_group() {
    let e = cond_engine("principal.groups", "contains", json!("finance"));
    let call = Call {
        tool: "t",
        args: None,
    };
    let finance = json!({"issuer": "https://id.example", "subject": "u1", "client_id": "app",
                         "scopes": ["mcp"], "groups": ["staff", "finance"]});
    let staff = json!({"issuer": "https://id.example", "subject": "u2", "client_id": "app",
                       "scopes": ["mcp"], "groups": ["staff"]});
    let who = |p| portcullis_policy::Identity {
        principal: Some(p),
        ..alice()
    };
    assert!(matches!(e.check(&call, &who(&finance)), Check::Proceed(_)));
    assert_eq!(
        deny_of(e.check(&call, &who(&staff))).rule,
        "/tools/t/require/0"
    );
    // A grant caller has no principal: the fence holds it out too.
    assert_eq!(deny_of(e.check(&call, &alice())).rule, "/tools/t/require/0");
    let e = cond_engine("principal.subject", "eq", json!("u2"));
    assert!(matches!(e.check(&call, &who(&staff)), Check::Proceed(_)));
    let bad = Engine::from_json(
        &json!({"version":"1","default":"deny","tools":{"t":{"require":[{"conditions":[
            {"path":"principal.email","op":"eq","value":"x"}]}]}}})
        .to_string(),
    )
    .unwrap_err();
    assert!(format!("{bad:?}").contains("principal.subject"), "{bad:?}");
}
