//! Property tests: documents round-trip through the serializer, the evaluator never panics,
//! whatever JSON the agent sends, and a tool left out of `tools/list` is never allowed.

mod common;
use common::*;
use portcullis_policy::doc::{
    Approval, Condition, Default, Entry, Limit, Mode, Op, PolicyDoc, Rules,
};
use portcullis_policy::norm::PathStyle;
use portcullis_policy::{parse, Call, Decision, Engine, Scope};
use proptest::prelude::*;
use serde_json::{json, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        (-1e20f64..1e20).prop_map(|f| json!(f)),
        "[a-z0-9 ]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("[a-d]", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn arb_path() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => ("[a-d]", prop::option::of(0usize..3), prop::option::of("[a-d]")).prop_map(|(a, i, b)| {
            let mut p = format!("args.{a}");
            if let Some(i) = i {
                p.push_str(&format!("[{i}]"));
            }
            if let Some(b) = b {
                p.push('.');
                p.push_str(&b);
            }
            p
        }),
        1 => Just("grant.label".to_string()),
        1 => Just("session.client_name".to_string()),
    ]
}

/// Condition paths: those of [`arb_path`], and (ext) `[*]` paths.
fn arb_condition_path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => arb_path(),
        1 => ("[a-d]", prop::option::of("[a-d]")).prop_map(|(a, b)| match b {
            Some(b) => format!("args.{a}[*].{b}"),
            None => format!("args.{a}[*]"),
        }),
    ]
}

fn arb_condition() -> impl Strategy<Value = Condition> {
    let number = prop_oneof![
        any::<i64>().prop_map(|i| json!(i)),
        (-1e9f64..1e9).prop_map(|f| json!(f))
    ];
    (
        arb_condition_path(),
        0usize..15,
        arb_json(),
        number,
        prop::collection::vec(arb_json(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(path, op, any_v, num, list, b)| {
            let (op, value) = match op {
                0 => (Op::Eq, any_v),
                1 => (Op::Neq, any_v),
                2 => (Op::Lt, num),
                3 => (Op::Lte, num),
                4 => (Op::Gt, num),
                5 => (Op::Gte, num),
                6 => (Op::In, Value::Array(list)),
                7 => (Op::NotIn, Value::Array(list)),
                8 => (Op::Contains, any_v),
                9 => (Op::Regex, json!("^[a-c]+\\d?")),
                10 => (Op::Exists, json!(b)),
                11 => (Op::PathUnder, json!("/srv/app")),
                12 => (Op::PathNotUnder, json!(["/etc", "/root/../var"])),
                13 => (
                    Op::UrlHostIn,
                    json!(["example.com", "*.Example.org", "127.1"]),
                ),
                _ => (Op::UrlHostNotIn, json!(["[::1]"])),
            };
            let mut c = Condition::new(path, op, value);
            if op.is_path_op() && b {
                c.style = Some(PathStyle::Posix);
                c.base = Some("/srv".into());
            }
            if op == Op::UrlHostNotIn && b {
                c.schemes = Some(vec!["https".into(), "gopher".into()]);
            }
            c
        })
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (
        prop::collection::vec(arb_condition(), 0..3),
        prop::option::of("[A-Za-z .]{0,12}"),
    )
        .prop_map(|(conditions, on_deny)| Entry {
            conditions,
            on_deny,
        })
}

fn arb_limit() -> impl Strategy<Value = Limit> {
    let windows = prop::sample::select(vec![
        "second", "minute", "hour", "day", "week", "month", "90s", "15m", "1h30m",
    ]);
    let scopes = prop::sample::select(vec![
        Scope::Grant,
        Scope::Session,
        Scope::Server,
        Scope::Global,
    ]);
    (
        windows,
        1u64..1000,
        scopes,
        prop::option::of(arb_path()),
        0u8..3,
        prop::option::of("[a-z ]{1,10}"),
        "[a-z]{1,6}",
    )
        .prop_map(|(window, max, scope, per, inc, on_deny, counter)| Limit {
            // One window per counter name: derive the name from the window.
            counter: format!("{counter}-{window}"),
            window: window.to_string(),
            max,
            scope,
            per,
            increment: (inc == 1).then_some(3),
            increment_from: (inc == 2).then(|| "args.amount".to_string()),
            on_deny,
        })
}

fn arb_rules() -> impl Strategy<Value = Rules> {
    (
        prop::collection::vec(arb_entry(), 0..2),
        prop::collection::vec(arb_entry(), 0..2),
        prop::collection::vec(arb_limit(), 0..2),
        prop::collection::vec(
            (
                prop::collection::vec(arb_condition(), 0..2),
                prop::option::of("[a-z]{1,5}"),
                prop::option::of(Just("15m".to_string())),
                prop::option::of(prop::sample::select(vec![
                    "0s".to_string(),
                    "30s".to_string(),
                ])),
            ),
            0..2,
        ),
    )
        .prop_map(|(require, deny_if, limits, appr)| Rules {
            require,
            deny_if,
            limits,
            approve_if: appr
                .into_iter()
                .map(|(conditions, reason, timeout, hold)| Approval {
                    conditions,
                    reason,
                    timeout,
                    hold,
                })
                .collect(),
        })
}

fn arb_doc() -> impl Strategy<Value = PolicyDoc> {
    (
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![Mode::Enforce, Mode::Shadow])),
        prop::collection::vec("[a-z_]{1,8}", 0..3),
        prop::option::of(arb_rules()),
        prop::collection::btree_map("[a-z_./]{1,10}", arb_rules(), 0..4),
        prop::option::of("[a-z ]{0,20}"),
        any::<bool>(),
    )
        .prop_map(
            |(deny, mode, hide, all_tools, tools, description, hide_denied)| PolicyDoc {
                version: "1".into(),
                description,
                mode,
                default: if deny { Default::Deny } else { Default::Allow },
                hide,
                hide_denied,
                all_tools,
                tools: tools.into_iter().collect(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn documents_round_trip(doc in arb_doc()) {
        let text = doc.to_json_pretty();
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
        prop_assert_eq!(&back, &doc);
        // And once more through compact text.
        prop_assert_eq!(parse(&doc.to_value().to_string()).unwrap(), doc);
    }

    #[test]
    fn evaluator_never_panics(doc in arb_doc(), tool in "[a-z_./]{1,10}", args in arb_json(), t in 0u64..10_000_000_000) {
        let names: Vec<String> = doc.tools.iter().map(|(n, _)| n.clone()).collect();
        let engine = Engine::compile(doc);
        let store = TestCounters::default();
        for name in names.iter().map(String::as_str).chain([tool.as_str()]) {
            let call = Call { tool: name, args: Some(&args) };
            let _ = engine.decide(&call, &alice(), &store, NOON + t);
            let _ = engine.decide(&call, &bob(), &store, NOON + t);
            let _ = engine.check(&Call { tool: name, args: None }, &alice());
            let _ = engine.is_listed(name);
        }
    }

    /// A tool that `tools/list` leaves out (by `hide` or by `hide_denied`) is never let
    /// through in enforce mode, whatever the arguments and the caller.
    #[test]
    fn an_unlisted_tool_is_never_allowed(doc in arb_doc(), tool in "[a-z_./]{1,10}", args in arb_json()) {
        let names: Vec<String> = doc.tools.iter().map(|(n, _)| n.clone()).collect();
        let engine = Engine::compile(doc);
        prop_assume!(engine.mode() == Mode::Enforce);
        let store = TestCounters::default();
        for name in names.iter().map(String::as_str).chain([tool.as_str()]) {
            if engine.is_listed(name) {
                continue;
            }
            for who in [alice(), bob()] {
                let d = engine.decide(&Call { tool: name, args: Some(&args) }, &who, &store, NOON);
                prop_assert!(!matches!(d, Decision::Allow(_)), "{} was allowed: {:?}", name, d);
            }
        }
    }
}
