//! The `PinStore` contract, run against SQLite (in memory and on a file) and Redis on a
//! redis-server of the test's own: first sight, compare-and-set, approve / reject, listing,
//! and two handles (two replicas, or a gateway and the CLI) that never overwrite each other.

// `PinError::NotQuarantined` carries the whole pin, as the store does.
#![allow(clippy::result_large_err)]

mod common;

use common::TempDb;
use portcullis_bench::redis_server::RedisServer;
use portcullis_store::{Pin, PinError, PinState, PinStore, Redis, RedisPins, SqlitePins};
use serde_json::json;
use std::sync::{Arc, Barrier};

const NOW: u64 = 1_795_348_800_000;

fn first(server: &str, tool: &str, state: PinState, desc: &str) -> Pin {
    let def = json!({"name": tool, "description": desc});
    Pin::first_sight(server, tool, state, &format!("sha256:{desc}"), &def, NOW)
}

fn first_sight_pins_and_a_second_insert_conflicts(h: [Arc<dyn PinStore>; 2]) {
    let s = &h[0];
    assert!(s.get("srv", "read").unwrap().is_none());
    let p = s
        .save(&first("srv", "read", PinState::Pinned, "Reads."))
        .unwrap();
    assert_eq!((p.version, p.state), (1, PinState::Pinned));
    assert_eq!(p.hash.as_deref(), Some("sha256:Reads."));
    assert_eq!(p.decided_by.as_deref(), Some("tofu"));
    // The other handle saw nothing yet: its insert (version 0) must not overwrite the pin.
    let e = h[1]
        .save(&first("srv", "read", PinState::Pinned, "Evil."))
        .unwrap_err();
    assert!(matches!(e, PinError::Conflict), "{e:?}");
    assert_eq!(h[1].get("srv", "read").unwrap().unwrap(), p);
}

fn a_stale_version_is_refused(h: [Arc<dyn PinStore>; 2]) {
    let p = h[0]
        .save(&first("srv", "t", PinState::Pinned, "One."))
        .unwrap();
    let mut a = p.clone();
    a.state = PinState::Quarantined;
    a.candidate_hash = Some("sha256:Two.".into());
    let a = h[0].save(&a).unwrap();
    assert_eq!(a.version, 2);
    // A writer still holding version 1 loses.
    let mut b = p.clone();
    b.reason = Some("stale".into());
    assert!(matches!(h[1].save(&b), Err(PinError::Conflict)));
    assert_eq!(
        h[1].get("srv", "t").unwrap().unwrap().state,
        PinState::Quarantined
    );
}

fn approve_repins_and_reject_keeps_it_quarantined(h: [Arc<dyn PinStore>; 2]) {
    let s = &h[0];
    let p = s
        .save(&first("srv", "t", PinState::Pinned, "One."))
        .unwrap();
    // Approving a pinned tool: nothing to approve, said so.
    let e = s.approve("srv", "t", "ops", NOW + 1).unwrap_err();
    assert!(e.to_string().contains("nothing to approve"), "{e}");
    let mut q = p.clone();
    q.state = PinState::Quarantined;
    q.candidate_hash = Some("sha256:Two.".into());
    q.candidate = Some(json!({"name": "t", "description": "Two."}));
    q.changed = vec!["description".into()];
    q.reason = Some("changed".into());
    s.save(&q).unwrap();
    let r = h[1].reject("srv", "t", "alice", NOW + 2).unwrap();
    assert_eq!(r.state, PinState::Rejected);
    assert_eq!(
        r.hash.as_deref(),
        Some("sha256:One."),
        "the approved pin stays"
    );
    assert_eq!(r.decided_by.as_deref(), Some("alice"));
    assert!(matches!(
        s.reject("srv", "t", "bob", NOW + 3),
        Err(PinError::NotQuarantined(_))
    ));
    // A rejected definition can still be approved later (the operator changed their mind).
    let a = s.approve("srv", "t", "bob", NOW + 4).unwrap();
    assert_eq!(a.state, PinState::Pinned);
    assert_eq!(a.hash.as_deref(), Some("sha256:Two."));
    assert_eq!(
        a.definition,
        Some(json!({"name": "t", "description": "Two."}))
    );
    assert!(a.candidate.is_none() && a.changed.is_empty() && a.reason.is_none());
    assert_eq!(
        (a.decided_by.as_deref(), a.decided_at),
        (Some("bob"), Some(NOW + 4))
    );
    assert_eq!(h[1].get("srv", "t").unwrap().unwrap(), a);
    let e = s.approve("srv", "nope", "bob", NOW).unwrap_err();
    assert!(
        e.to_string().contains("no pin for tool \"nope\"") && e.to_string().contains("pins list"),
        "{e}"
    );
}

fn a_pending_tool_is_approved_into_its_first_pin(h: [Arc<dyn PinStore>; 2]) {
    let s = &h[0];
    let p = s
        .save(&first("srv", "new", PinState::Pending, "New."))
        .unwrap();
    assert!(p.hash.is_none() && p.candidate_hash.is_some());
    let a = h[1].approve("srv", "new", "ops", NOW + 1).unwrap();
    assert_eq!(
        (a.state, a.hash.as_deref()),
        (PinState::Pinned, Some("sha256:New."))
    );
}

fn lists_are_sorted_and_filtered_by_server(h: [Arc<dyn PinStore>; 2]) {
    for (srv, tool) in [("b", "z"), ("a", "y"), ("b", "a"), ("a", "x\"quoted\"")] {
        h[0].save(&first(srv, tool, PinState::Pinned, tool))
            .unwrap();
    }
    let all: Vec<(String, String)> = h[1]
        .list(None)
        .unwrap()
        .into_iter()
        .map(|p| (p.server, p.tool))
        .collect();
    let want = [("a", "x\"quoted\""), ("a", "y"), ("b", "a"), ("b", "z")];
    assert_eq!(
        all,
        want.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
    );
    assert_eq!(h[1].list(Some("b")).unwrap().len(), 2);
    assert!(h[1].list(Some("c")).unwrap().is_empty());
}

fn racing_approvals_decide_once(h: [Arc<dyn PinStore>; 2]) {
    let mut q = h[0]
        .save(&first("srv", "t", PinState::Pinned, "One."))
        .unwrap();
    q.state = PinState::Quarantined;
    q.candidate_hash = Some("sha256:Two.".into());
    q.candidate = Some(json!({"name": "t"}));
    h[0].save(&q).unwrap();
    let barrier = Barrier::new(8);
    let results: Vec<Result<Pin, PinError>> = std::thread::scope(|sc| {
        let joins: Vec<_> = (0..8)
            .map(|i| {
                let (s, barrier) = (h[i % 2].clone(), &barrier);
                sc.spawn(move || {
                    barrier.wait();
                    s.approve("srv", "t", &format!("op{i}"), NOW + 1)
                })
            })
            .collect();
        joins.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, PinError::NotQuarantined(_))));
}

/// Each contract test on every backend: two handles on one SQLite file, and two handles
/// (two replicas) on one redis-server of the test's own.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    let db = super::TempDb::new(stringify!($test));
                    let open = || -> std::sync::Arc<dyn super::PinStore> {
                        std::sync::Arc::new(super::SqlitePins::open(db.path()).unwrap())
                    };
                    super::$test([open(), open()]);
                }
            )*
        }
        mod redis {
            $(
                #[test]
                fn $test() {
                    let Some(server) = super::RedisServer::start(&[]) else {
                        return;
                    };
                    let open = || -> std::sync::Arc<dyn super::PinStore> {
                        std::sync::Arc::new(super::RedisPins::new(
                            super::Redis::new(&server.url(), "test:").unwrap(),
                        ))
                    };
                    super::$test([open(), open()]);
                }
            )*
        }
    };
}

on_every_backend!(
    first_sight_pins_and_a_second_insert_conflicts,
    a_stale_version_is_refused,
    approve_repins_and_reject_keeps_it_quarantined,
    a_pending_tool_is_approved_into_its_first_pin,
    lists_are_sorted_and_filtered_by_server,
    racing_approvals_decide_once,
);

#[test]
fn in_memory_sqlite_and_state_names() {
    let s = SqlitePins::open_in_memory().unwrap();
    s.save(&first("srv", "t", PinState::Pinned, "x")).unwrap();
    assert_eq!(s.list(None).unwrap().len(), 1);
    for st in PinState::ALL {
        assert_eq!(st.as_str().parse::<PinState>().unwrap(), st);
    }
    let e = "held".parse::<PinState>().unwrap_err();
    assert!(e.contains("pinned, quarantined"), "{e}");
}
