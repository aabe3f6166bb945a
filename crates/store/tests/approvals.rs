//! The approval store: request, duplicate, approve (consumed exactly once, also under a
//! race), deny (reported until the window ends), expiry with an injected clock, restarts and
//! several handles on one file.

mod common;
use common::TempDb;

use portcullis_store::{
    ApprovalCheck, ApprovalError, ApprovalRequest, ApprovalStatus, ApprovalStore, SqliteApprovals,
};
use serde_json::json;
use std::sync::{Arc, Barrier};

const NOW: u64 = 1_795_348_800_000;
const MIN: u64 = 60_000;

fn req(fp: &str) -> ApprovalRequest {
    ApprovalRequest {
        fingerprint: fp.into(),
        grant_id: "grt_0000000000000001".into(),
        grant_label: "alice".into(),
        server: "odoo".into(),
        tool: "pay".into(),
        args: json!({"amount": 5000, "to": "ACME"}),
        rule: "/tools/pay/approve_if/0".into(),
        reason: "payments above 1000 need a human".into(),
        timeout_ms: 15 * MIN,
    }
}

fn pending(c: ApprovalCheck) -> (portcullis_store::Approval, bool) {
    match c {
        ApprovalCheck::Pending { approval, new } => (approval, new),
        other => panic!("expected pending, got {other:?}"),
    }
}

fn mem() -> SqliteApprovals {
    SqliteApprovals::open_in_memory().unwrap()
}

fn a_request_is_pending_and_duplicates_reuse_its_id(s: Arc<dyn ApprovalStore>) {
    let (a, new) = pending(s.check(&req("fp1"), NOW).unwrap());
    assert!(new);
    assert!(a.id.starts_with("apr_") && a.id.len() == 20, "{}", a.id);
    assert!(a.id[4..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(a.status, ApprovalStatus::Pending);
    assert_eq!(a.expires_at, NOW + 15 * MIN);
    assert_eq!(a.args, json!({"amount": 5000, "to": "ACME"}));
    assert_eq!(a.rule, "/tools/pay/approve_if/0");

    let (b, new) = pending(s.check(&req("fp1"), NOW + MIN).unwrap());
    assert!(!new);
    assert_eq!(b.id, a.id);
    assert_eq!(s.get(&a.id).unwrap(), a);

    // Another call (another fingerprint) is its own request.
    let (c, new) = pending(s.check(&req("fp2"), NOW + 2 * MIN).unwrap());
    assert!(new);
    assert_ne!(c.id, a.id);

    // Newest first.
    let list = s
        .list(Some(ApprovalStatus::Pending), NOW + 2 * MIN)
        .unwrap();
    let ids: Vec<&str> = list.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, [c.id.as_str(), a.id.as_str()]);
    assert!(s
        .list(Some(ApprovalStatus::Approved), NOW)
        .unwrap()
        .is_empty());
}

fn approved_passes_exactly_once_then_a_new_request_is_made(s: Arc<dyn ApprovalStore>) {
    let (a, _) = pending(s.check(&req("fp"), NOW).unwrap());
    let ok = s.approve(&a.id, "alice", 10 * MIN, NOW + MIN).unwrap();
    assert_eq!(ok.status, ApprovalStatus::Approved);
    assert_eq!(ok.decided_by.as_deref(), Some("alice"));
    assert_eq!(ok.valid_until, Some(NOW + 11 * MIN));

    match s.check(&req("fp"), NOW + 2 * MIN).unwrap() {
        ApprovalCheck::Approved(b) => {
            assert_eq!(b.id, a.id);
            assert_eq!(b.status, ApprovalStatus::Consumed);
            assert_eq!(b.consumed_at, Some(NOW + 2 * MIN));
        }
        other => panic!("expected approved, got {other:?}"),
    }
    assert_eq!(s.get(&a.id).unwrap().status, ApprovalStatus::Consumed);

    let (c, new) = pending(s.check(&req("fp"), NOW + 3 * MIN).unwrap());
    assert!(new);
    assert_ne!(c.id, a.id);

    // A consumed approval cannot be decided again.
    match s.approve(&a.id, "bob", MIN, NOW + 3 * MIN) {
        Err(ApprovalError::NotPending(x)) => assert_eq!(x.status, ApprovalStatus::Consumed),
        other => panic!("{other:?}"),
    }
}

fn an_unused_approval_expires_at_valid_until(s: Arc<dyn ApprovalStore>) {
    let (a, _) = pending(s.check(&req("fp"), NOW).unwrap());
    s.approve(&a.id, "alice", MIN, NOW).unwrap();
    let (b, new) = pending(s.check(&req("fp"), NOW + MIN).unwrap());
    assert!(new);
    assert_ne!(b.id, a.id);
    // Shown expired as of then; written (and reported for its audit record) by the sweep.
    assert_eq!(
        s.get(&a.id).unwrap().as_of(NOW + MIN).status,
        ApprovalStatus::Expired
    );
    let lapsed = s.expire_lapsed(NOW + MIN).unwrap();
    assert_eq!(lapsed.len(), 1);
    assert_eq!(lapsed[0].id, a.id);
    assert_eq!(s.get(&a.id).unwrap().status, ApprovalStatus::Expired);
}

fn fifty_racing_checks_consume_an_approval_once(s: Arc<dyn ApprovalStore>) {
    let (a, _) = pending(s.check(&req("race"), NOW).unwrap());
    s.approve(&a.id, "alice", 10 * MIN, NOW).unwrap();
    let barrier = Arc::new(Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                s.check(&req("race"), NOW + 1).unwrap()
            })
        })
        .collect();
    let results: Vec<ApprovalCheck> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let approved = results
        .iter()
        .filter(|r| matches!(r, ApprovalCheck::Approved(_)))
        .count();
    assert_eq!(approved, 1);
    // The others share one new pending request.
    let new = results
        .iter()
        .filter(|r| matches!(r, ApprovalCheck::Pending { new: true, .. }))
        .count();
    assert_eq!(new, 1);
    let pending_ids: std::collections::HashSet<String> = results
        .iter()
        .filter_map(|r| match r {
            ApprovalCheck::Pending { approval, .. } => Some(approval.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(pending_ids.len(), 1);
    assert!(!pending_ids.contains(&a.id));
}

fn a_denial_is_reported_until_the_window_ends(s: Arc<dyn ApprovalStore>) {
    let (a, _) = pending(s.check(&req("fp"), NOW).unwrap());
    let d = s
        .deny(&a.id, "bob", "not this supplier", NOW + MIN)
        .unwrap();
    assert_eq!(d.status, ApprovalStatus::Denied);
    assert_eq!(d.decision_reason.as_deref(), Some("not this supplier"));

    for t in [NOW + 2 * MIN, NOW + 15 * MIN - 1] {
        match s.check(&req("fp"), t).unwrap() {
            ApprovalCheck::Denied(x) => {
                assert_eq!(x.id, a.id);
                assert_eq!(x.decision_reason.as_deref(), Some("not this supplier"));
                assert_eq!(x.decided_by.as_deref(), Some("bob"));
            }
            other => panic!("expected denied, got {other:?}"),
        }
    }
    let (b, new) = pending(s.check(&req("fp"), NOW + 15 * MIN).unwrap());
    assert!(new);
    assert_ne!(b.id, a.id);
    // The denial stays on record as a denial.
    assert_eq!(s.get(&a.id).unwrap().status, ApprovalStatus::Denied);
    // It cannot be approved afterwards.
    match s.approve(&a.id, "carol", MIN, NOW + 2 * MIN) {
        Err(e @ ApprovalError::NotPending(_)) => {
            let m = e.to_string();
            assert!(m.contains("denied"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

fn a_pending_request_expires_with_the_injected_clock(s: Arc<dyn ApprovalStore>) {
    let (a, _) = pending(s.check(&req("fp"), NOW).unwrap());
    let listed = s.list(None, NOW + 15 * MIN - 1).unwrap();
    assert_eq!(listed[0].status, ApprovalStatus::Pending);

    let listed = s.list(None, NOW + 15 * MIN).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, ApprovalStatus::Expired);
    assert!(s
        .list(Some(ApprovalStatus::Pending), NOW + 15 * MIN)
        .unwrap()
        .is_empty());
    let expired = s
        .list(Some(ApprovalStatus::Expired), NOW + 15 * MIN)
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, a.id);
    assert_eq!(
        s.get(&a.id).unwrap().as_of(NOW + 15 * MIN).status,
        ApprovalStatus::Expired
    );

    // Listing (and a new check of the same call) showed it expired but did not write it:
    // the expiry is still reported, once, to whoever audits it.
    let (b, new) = pending(s.check(&req("fp"), NOW + 16 * MIN).unwrap());
    assert!(new);
    assert_ne!(b.id, a.id);
    assert_eq!(s.get(&a.id).unwrap().status, ApprovalStatus::Pending);
    let lapsed = s.expire_lapsed(NOW + 16 * MIN).unwrap();
    assert_eq!(
        lapsed.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        [a.id.as_str()]
    );
    assert_eq!(lapsed[0].status, ApprovalStatus::Expired);
    assert_eq!(s.get(&a.id).unwrap().status, ApprovalStatus::Expired);
    assert!(s.expire_lapsed(NOW + 16 * MIN).unwrap().is_empty());
    let rec = lapsed[0].expiry_record(NOW + 16 * MIN);
    assert_eq!(rec.method, "(approval)");
    assert_eq!(
        rec.message.as_deref(),
        Some(format!("expired {}", a.id).as_str())
    );
}

fn deciding_an_expired_or_unknown_request_fails(s: Arc<dyn ApprovalStore>) {
    let (a, _) = pending(s.check(&req("fp"), NOW).unwrap());
    // Not yet marked expired by anyone: approve itself notices.
    match s.approve(&a.id, "alice", MIN, NOW + 15 * MIN) {
        Err(e @ ApprovalError::NotPending(_)) => {
            assert!(e.to_string().contains("expired"), "{e}");
            if let ApprovalError::NotPending(x) = e {
                assert_eq!(x.status, ApprovalStatus::Expired);
            }
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.deny(&a.id, "alice", "no", NOW + 20 * MIN),
        Err(ApprovalError::NotPending(_))
    ));
    match s.approve("apr_ffffffffffffffff", "alice", MIN, NOW) {
        Err(e @ ApprovalError::NotFound(_)) => {
            assert!(e.to_string().contains("portcullis approvals list"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.get("apr_ffffffffffffffff"),
        Err(ApprovalError::NotFound(_))
    ));
}

#[test]
fn status_names_round_trip() {
    for st in ApprovalStatus::ALL {
        assert_eq!(st.to_string().parse::<ApprovalStatus>().unwrap(), st);
        assert_eq!(
            serde_json::to_value(st).unwrap(),
            json!(st.as_str()),
            "serde name"
        );
    }
    assert_eq!(
        "Pending".parse::<ApprovalStatus>(),
        Ok(ApprovalStatus::Pending)
    );
    assert!("maybe"
        .parse::<ApprovalStatus>()
        .unwrap_err()
        .contains("pending"));
}

#[test]
fn approvals_survive_a_restart() {
    let db = TempDb::new("restart");
    let (a, approved) = {
        let s = SqliteApprovals::open(db.path()).unwrap();
        let (a, _) = pending(s.check(&req("one"), NOW).unwrap());
        let (b, _) = pending(s.check(&req("two"), NOW).unwrap());
        s.approve(&b.id, "alice", 10 * MIN, NOW).unwrap();
        (a, b)
    };
    let s = SqliteApprovals::open(db.path()).unwrap();
    assert_eq!(s.get(&a.id).unwrap(), a);
    let (again, new) = pending(s.check(&req("one"), NOW + MIN).unwrap());
    assert!(!new);
    assert_eq!(again.id, a.id);
    match s.check(&req("two"), NOW + MIN).unwrap() {
        ApprovalCheck::Approved(x) => assert_eq!(x.id, approved.id),
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_handles_on_one_file_stay_exact() {
    let db = TempDb::new("handles");
    two_handles_stay_exact(
        Arc::new(SqliteApprovals::open(db.path()).unwrap()),
        Arc::new(SqliteApprovals::open(db.path()).unwrap()),
    );
}

/// Two replicas on one Redis: a request made on one is seen, decided and raced on both.
#[test]
fn two_replicas_on_one_redis_stay_exact() {
    let Some(server) = portcullis_bench::redis_server::RedisServer::start(&[]) else {
        return;
    };
    two_handles_stay_exact(on_redis(&server), on_redis(&server));
}

fn two_handles_stay_exact(h1: Arc<dyn ApprovalStore>, h2: Arc<dyn ApprovalStore>) {
    let (a, _) = pending(h1.check(&req("fp"), NOW).unwrap());
    // The other handle sees the request, and a duplicate through it reuses the id.
    let (b, new) = pending(h2.check(&req("fp"), NOW + 1).unwrap());
    assert!(!new);
    assert_eq!(b.id, a.id);
    h2.approve(&a.id, "alice", 10 * MIN, NOW + 2).unwrap();
    // Both handles' second attempt to decide is refused.
    assert!(matches!(
        h1.deny(&a.id, "bob", "late", NOW + 3),
        Err(ApprovalError::NotPending(_))
    ));

    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let s = if i % 2 == 0 { h1.clone() } else { h2.clone() };
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                s.check(&req("fp"), NOW + 10).unwrap()
            })
        })
        .collect();
    let approved = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|r| matches!(r, ApprovalCheck::Approved(_)))
        .count();
    assert_eq!(approved, 1);
}

#[test]
fn store_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SqliteApprovals>();
    let _: Arc<dyn ApprovalStore> = Arc::new(mem());
}

/// Each shared test once per backend: SQLite in memory, and Redis on a redis-server of the
/// test's own (skipped when none is installed, unless the test command requires it).
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    super::$test(std::sync::Arc::new(super::mem()));
                }
            )*
        }
        mod redis {
            $(
                #[test]
                fn $test() {
                    let Some(server) = portcullis_bench::redis_server::RedisServer::start(&[]) else {
                        return;
                    };
                    super::$test(super::on_redis(&server));
                }
            )*
        }
    };
}

on_every_backend!(
    a_request_is_pending_and_duplicates_reuse_its_id,
    approved_passes_exactly_once_then_a_new_request_is_made,
    an_unused_approval_expires_at_valid_until,
    fifty_racing_checks_consume_an_approval_once,
    a_denial_is_reported_until_the_window_ends,
    a_pending_request_expires_with_the_injected_clock,
    deciding_an_expired_or_unknown_request_fails
);

/// A store on `server` (a new handle each call: another replica).
fn on_redis(server: &portcullis_bench::redis_server::RedisServer) -> Arc<dyn ApprovalStore> {
    Arc::new(portcullis_store::RedisApprovals::new(
        portcullis_store::Redis::new(&server.url(), "test:").unwrap(),
    ))
}
