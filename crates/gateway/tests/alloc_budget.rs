//! A budget the clock cannot move: heap allocations per forwarded `tools/call` through the
//! relay core (request in, answer back, audit record built), counted by a counting global
//! allocator. The test fails when a change makes the hot path allocate more than the recorded
//! budget; lower the budget when a change makes it allocate less.

use portcullis_gateway::{Caller, Out, Relay, RelayConfig};
use portcullis_mcp::Message;
use portcullis_policy::{CounterStore, Engine};
use portcullis_store::{MemoryCounters, SqliteCounters};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per forwarded call (request and answer, audit on, a policy with a limit and
/// an argument rule; the test's own two `format!`s included): 57 measured when the budget was
/// last lowered (93 before members were peeked, the messages handed over parsed and the
/// JSON-RPC member names made static), with a little headroom so that a dependency's minor
/// release does not fail the build.
const BUDGET_FORWARDED: u64 = 62;
/// Allocations per denied call (no upstream hop; the denial result is built as a JSON
/// value): 66 measured (80 before).
const BUDGET_DENIED: u64 = 72;
/// Allocations per forwarded call on the way in of a connection
/// (`from_client_message_deferred`) with a store that reserves later (SQLite: the default):
/// the forwarded path's plus the reply's channel and callback; SQLite's own allocations are
/// its own allocator's, not counted. 62 measured.
const BUDGET_FORWARDED_DEFERRED: u64 = 66;

/// The tests of this file count one process-wide allocator: one measures at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{
  "read_invoice":{"limits":[{"counter":"reads","window":"minute","max":1000000,"scope":"grant"}]},
  "create_refund":{"deny_if":[{"conditions":[{"path":"args.amount","op":"gt","value":100}],"on_deny":"too much"}]}}}"#;

fn relay() -> (Relay, Caller) {
    relay_on(Arc::new(MemoryCounters::new()))
}

fn relay_on(store: Arc<dyn CounterStore>) -> (Relay, Caller) {
    let relay = Relay::new(RelayConfig {
        store,
        server: "odoo".into(),
        clock: || 1_795_262_400_000,
        audit: true,
        approvals: None,
        on_new_approval: None,
        hold_ms: 0,
    });
    let caller = Caller {
        engine: Some(Arc::new(Engine::from_json(POLICY).unwrap())),
        grant_id: "grt_1".into(),
        grant_label: "alice".into(),
        session_id: "s1".into(),
        policy: Some(("odoo".into(), "abc123".into())),
        request_id: None,
        principal: None,
        trace: None,
    };
    (relay, caller)
}

/// Average allocations of `n` runs of `f` after a warm-up.
fn per_call(n: u64, mut f: impl FnMut(u64)) -> u64 {
    for i in 0..100 {
        f(i);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for i in 0..n {
        f(1000 + i);
    }
    (ALLOCS.load(Ordering::Relaxed) - before) / n
}

/// One forwarded `tools/call` (`i` its id): the request handed to the relay by `send`, the
/// server's answer back through it, both checked.
fn forward_one(relay: &Relay, i: u64, send: impl FnOnce(&str) -> Vec<Out>) {
    let req = format!(
        r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"read_invoice","arguments":{{"id":{i}}}}}}}"#
    );
    let outs = send(&req);
    let up = match &outs[..] {
        [Out::Server(_, Some(up))] => *up,
        other => panic!("not forwarded: {other:?}"),
    };
    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":{up},"result":{{"content":[{{"type":"text","text":"INV/{i}"}}]}}}}"#
    );
    let back = relay.from_server(&answer);
    assert!(
        matches!(&back[..], [Out::Audit(..), Out::Client(_)]),
        "{back:?}"
    );
}

#[test]
fn the_forwarded_and_denied_paths_stay_within_their_allocation_budgets() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (relay, caller) = relay();
    let forwarded = per_call(2000, |i| {
        forward_one(&relay, i, |req| relay.from_client(req, &caller))
    });
    let denied = per_call(2000, |i| {
        let req = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"create_refund","arguments":{{"amount":500}}}}}}"#
        );
        let outs = relay.from_client(&req, &caller);
        assert!(
            matches!(&outs[..], [Out::Audit(..), Out::Client(_)]),
            "{outs:?}"
        );
    });
    println!("allocations per call: forwarded {forwarded} (budget {BUDGET_FORWARDED}), denied {denied} (budget {BUDGET_DENIED})");
    assert!(
        forwarded <= BUDGET_FORWARDED,
        "a forwarded call now allocates {forwarded} times (budget {BUDGET_FORWARDED})"
    );
    assert!(
        denied <= BUDGET_DENIED,
        "a denied call now allocates {denied} times (budget {BUDGET_DENIED})"
    );
    assert_eq!(relay.in_flight(), 0, "every forwarded call was answered");
}

#[test]
fn the_forwarded_path_through_a_store_that_reserves_later_stays_within_its_budget() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (relay, caller) = relay_on(Arc::new(SqliteCounters::open_in_memory().unwrap()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let forwarded = per_call(2000, |i| {
        forward_one(&relay, i, |req| {
            let msg = Message::parse(req).unwrap();
            rt.block_on(relay.from_client_message_deferred(msg, &caller))
        })
    });
    println!("allocations per call, reserved later: forwarded {forwarded} (budget {BUDGET_FORWARDED_DEFERRED})");
    assert!(
        forwarded <= BUDGET_FORWARDED_DEFERRED,
        "a forwarded call reserved later now allocates {forwarded} times (budget {BUDGET_FORWARDED_DEFERRED})"
    );
    assert_eq!(relay.in_flight(), 0, "every forwarded call was answered");
}
