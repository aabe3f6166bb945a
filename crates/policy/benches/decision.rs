//! Decision cost: `Engine::check` for policies of 10, 1,000 and 100,000 tools.
//!
//! Scenarios: the seed rule (one per-grant limit: lookup + counter key), an argument rule
//! (lookup + three conditions + limit), a default-deny miss, and strict parsing of a policy.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use portcullis_policy::{Call, Engine, Identity};
use serde_json::{json, Map, Value};

fn policy(n: usize) -> Engine {
    let mut tools = Map::new();
    for i in 0..n {
        tools.insert(
            format!("tool_{i}"),
            json!({"limits":[{"counter":format!("tool_{i}_rate"),"window":"minute","max":10,"scope":"grant"}]}),
        );
    }
    tools.insert(
        "ai_invoice_pipeline_run".into(),
        json!({"limits":[{"counter":"ai_invoice_pipeline_run_rate","window":"minute","max":10,"scope":"grant"}]}),
    );
    tools.insert(
        "create_refund".into(),
        json!({
            "require":[{"conditions":[{"path":"args.reason","op":"exists","value":true}]}],
            "deny_if":[{"conditions":[{"path":"args.amount","op":"gt","value":10000}]},
                       {"conditions":[{"path":"args.currency","op":"not_in","value":["usd","eur"]}]}],
            "limits":[{"counter":"refunds","window":"hour","max":30,"scope":"grant"}]}),
    );
    Engine::from_json(&json!({"version":"1","default":"deny","tools":tools}).to_string()).unwrap()
}

fn bench(c: &mut Criterion) {
    let who = Identity {
        grant_id: "grt_01JD7Y3M",
        grant_label: "alice-laptop",
        session_id: "s1",
        client_name: None,
        server: "odoo",
        principal: None,
    };
    let seed_args = json!({"move_id": 4211, "attachment_id": 0});
    let refund_args = json!({"amount": 2500, "currency": "usd", "reason": "duplicate charge"});
    let mut g = c.benchmark_group("decision");
    for n in [10usize, 1_000, 100_000] {
        let e = policy(n);
        g.bench_with_input(BenchmarkId::new("seed_limit", n), &e, |b, e| {
            b.iter(|| {
                black_box(e.check(
                    black_box(&Call {
                        tool: "ai_invoice_pipeline_run",
                        args: Some(&seed_args),
                    }),
                    &who,
                ))
            })
        });
        g.bench_with_input(
            BenchmarkId::new("three_conditions_and_limit", n),
            &e,
            |b, e| {
                b.iter(|| {
                    black_box(e.check(
                        black_box(&Call {
                            tool: "create_refund",
                            args: Some(&refund_args),
                        }),
                        &who,
                    ))
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("default_deny", n), &e, |b, e| {
            b.iter(|| {
                black_box(e.check(
                    black_box(&Call {
                        tool: "not_listed",
                        args: None,
                    }),
                    &who,
                ))
            })
        });
    }
    g.finish();
    let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_refund","arguments":{"amount":2500,"currency":"usd","reason":"duplicate charge"},"_meta":{"progressToken":"p1"}}}"#;
    c.bench_function("parse_tools_call_209B", |b| {
        b.iter(|| black_box(serde_json::from_str::<Value>(black_box(call)).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
