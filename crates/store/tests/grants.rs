//! The grant store: tokens, hashing, rotation, revocation, expiry, server binding.

mod common;
use common::TempDb;

use portcullis_store::grants::{GRANT_ID_PREFIX, TOKEN_PREFIX, TOKEN_RANDOM_BYTES};
use portcullis_store::CachedGrants;
use portcullis_store::{
    bearer_token, AuthError, GrantError, GrantStatus, GrantStore, SqliteGrants,
};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 2026-11-22T12:00:00Z.
const NOW: u64 = 1_795_348_800_000;
const DAY: u64 = 86_400_000;

fn mem() -> SqliteGrants {
    SqliteGrants::open_in_memory().unwrap()
}

fn create_then_authenticate(s: Arc<dyn GrantStore>) {
    let (g, token) = s
        .create("odoo", "alice-laptop", Some("odoo-default"), None, NOW)
        .unwrap();
    assert!(g.id.starts_with(GRANT_ID_PREFIX));
    assert_eq!(g.id.len(), GRANT_ID_PREFIX.len() + 16);
    assert!(g.id[4..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(g.label, "alice-laptop");
    assert_eq!(g.server, "odoo");
    assert_eq!(g.policy.as_deref(), Some("odoo-default"));
    assert_eq!(g.created_at, NOW);
    assert_eq!(g.status(NOW), GrantStatus::Active);

    let got = s.authenticate(token.secret(), "odoo", NOW + 1).unwrap();
    assert_eq!(got, g);
    assert_eq!(s.get(&g.id, None).unwrap(), g);
    assert_eq!(s.get("alice-laptop", None).unwrap(), g);
    assert_eq!(s.list(None).unwrap(), vec![g.clone()]);
    assert_eq!(s.list(Some("odoo")).unwrap(), vec![g]);
    assert!(s.list(Some("time")).unwrap().is_empty());
}

fn tokens_have_the_prefix_and_256_random_bits(s: Arc<dyn GrantStore>) {
    let mut seen = std::collections::HashSet::new();
    for i in 0..50 {
        let (_, t) = s.create("odoo", &format!("l{i}"), None, None, NOW).unwrap();
        let t = t.into_secret();
        assert!(t.starts_with(TOKEN_PREFIX), "{t}");
        let body = &t[TOKEN_PREFIX.len()..];
        // 64 hex digits = 32 bytes = 256 bits.
        assert_eq!(body.len(), TOKEN_RANDOM_BYTES * 2);
        const { assert!(TOKEN_RANDOM_BYTES * 8 >= 256) };
        assert!(body
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(seen.insert(t));
    }
    // Debug never shows the secret.
    let (_, t) = s.create("odoo", "dbg", None, None, NOW).unwrap();
    assert!(!format!("{t:?}").contains(&t.secret()[TOKEN_PREFIX.len()..]));
}

fn rotate_kills_the_old_token_at_once(s: Arc<dyn GrantStore>) {
    let (g, old) = s.create("odoo", "ci-runner", None, None, NOW).unwrap();
    let (rotated, new) = s.rotate(&g.id, NOW + 10).unwrap();
    assert_eq!(rotated.id, g.id);
    assert_eq!(rotated.rotated_at, Some(NOW + 10));
    assert_ne!(old, new);
    assert_eq!(
        s.authenticate(old.secret(), "odoo", NOW + 11),
        Err(AuthError::Unknown)
    );
    let ok = s.authenticate(new.secret(), "odoo", NOW + 11).unwrap();
    assert_eq!(ok, rotated);
}

fn revoke_refuses_the_token_as_revoked(s: Arc<dyn GrantStore>) {
    let (g, token) = s.create("odoo", "bob", None, None, NOW).unwrap();
    let r = s.revoke(&g.id, NOW + 5).unwrap();
    assert_eq!(r.revoked_at, Some(NOW + 5));
    match s.authenticate(token.secret(), "odoo", NOW + 6) {
        Err(e @ AuthError::Revoked(_)) => {
            assert_eq!(e.status(), 401);
            assert_eq!(e.code(), "revoked_grant");
            assert_eq!(e.grant().unwrap().id, g.id);
            assert_eq!(e.body()["error"], "revoked_grant");
        }
        other => panic!("{other:?}"),
    }
    // Even a request whose clock is behind the revoking process's sees it revoked.
    assert!(matches!(
        s.authenticate(token.secret(), "odoo", NOW),
        Err(AuthError::Revoked(_))
    ));
    assert_eq!(
        s.revoke(&g.id, NOW + 7),
        Err(GrantError::Revoked(g.id.clone()))
    );
    assert_eq!(
        s.rotate(&g.id, NOW + 7).unwrap_err(),
        GrantError::Revoked(g.id.clone())
    );
    // The label is free again; the live grant wins label lookups.
    let (g2, _) = s.create("odoo", "bob", None, None, NOW + 8).unwrap();
    assert_eq!(s.get("bob", None).unwrap().id, g2.id);
    assert_eq!(s.get("bob", Some("odoo")).unwrap().id, g2.id);
}

fn expiry_uses_the_given_clock(s: Arc<dyn GrantStore>) {
    let (g, token) = s
        .create("odoo", "temp", None, Some(NOW + 30 * DAY), NOW)
        .unwrap();
    assert!(s
        .authenticate(token.secret(), "odoo", NOW + 30 * DAY - 1)
        .is_ok());
    match s.authenticate(token.secret(), "odoo", NOW + 30 * DAY) {
        Err(e @ AuthError::Expired(_)) => {
            assert_eq!(e.status(), 401);
            assert_eq!(e.code(), "expired_grant");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.get(&g.id, None).unwrap().status(NOW + 31 * DAY),
        GrantStatus::Expired
    );
}

fn a_grant_of_another_server_is_forbidden(s: Arc<dyn GrantStore>) {
    let (_, token) = s.create("odoo", "alice", None, None, NOW).unwrap();
    match s.authenticate(token.secret(), "time", NOW) {
        Err(e @ AuthError::WrongServer { .. }) => {
            assert_eq!(e.status(), 403);
            assert_eq!(e.code(), "wrong_server");
            let AuthError::WrongServer { grant_server, .. } = &e else {
                unreachable!()
            };
            assert_eq!(grant_server, "odoo");
            assert!(e.to_string().contains("\"odoo\""), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

fn a_grant_of_several_servers_or_all_admits_each_and_no_other(s: Arc<dyn GrantStore>) {
    let (multi, token) = s.create("odoo,time", "bob", Some("*"), None, NOW).unwrap();
    for server in ["odoo", "time"] {
        let g = s.authenticate(token.secret(), server, NOW).unwrap();
        assert_eq!(g.id, multi.id);
        assert_eq!(
            g.policy_on(server),
            Some(server),
            "each server's own policy"
        );
    }
    assert!(matches!(
        s.authenticate(token.secret(), "files", NOW),
        Err(AuthError::WrongServer { .. })
    ));
    // "od" is a prefix of a listed name, not a listed name.
    assert!(s.authenticate(token.secret(), "od", NOW).is_err());
    let (_, all) = s.create("*", "carol", Some("p"), None, NOW).unwrap();
    let g = s
        .authenticate(all.secret(), "anything_at-all", NOW)
        .unwrap();
    assert_eq!(g.policy_on("anything_at-all"), Some("p"));
    // Listing by server finds the grants that cover it; a label is found through its list.
    // (Created in the same millisecond: their order is the random ids'.)
    let mut of_time: Vec<String> = s
        .list(Some("time"))
        .unwrap()
        .into_iter()
        .map(|g| g.label)
        .collect();
    of_time.sort();
    assert_eq!(of_time, ["bob", "carol"]);
    assert_eq!(s.get("bob", Some("odoo")).unwrap().id, multi.id);
    assert!(s.get("bob", Some("files")).is_err());
    // Bad lists are refused.
    for bad in ["odoo,,time", "odoo,odoo", ",", "a b", "*,odoo"] {
        assert!(
            matches!(
                s.create(bad, "x", None, None, NOW),
                Err(GrantError::Invalid(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_grants_file_of_single_server_grants_keeps_working() {
    // A database written before server lists: one name per row, read as a list of one.
    let db = TempDb::new("old-single");
    let token = {
        let s = SqliteGrants::open(db.path()).unwrap();
        s.create("odoo", "alice", Some("odoo"), None, NOW)
            .unwrap()
            .1
    };
    let s = SqliteGrants::open(db.path()).unwrap();
    let g = s.authenticate(token.secret(), "odoo", NOW).unwrap();
    assert_eq!(g.server, "odoo");
    assert_eq!(g.policy_on("odoo"), Some("odoo"));
    assert!(s.authenticate(token.secret(), "odoo2", NOW).is_err());
}

fn missing_and_unknown_tokens(s: Arc<dyn GrantStore>) {
    let (_, token) = s.create("odoo", "alice", None, None, NOW).unwrap();
    assert_eq!(s.authenticate("", "odoo", NOW), Err(AuthError::Missing));
    assert_eq!(AuthError::Missing.status(), 401);
    assert_eq!(AuthError::Missing.code(), "missing_token");
    assert_eq!(
        s.authenticate("pcx_nonsense", "odoo", NOW),
        Err(AuthError::Unknown)
    );
    assert_eq!(AuthError::Unknown.status(), 401);
    // A token differing only in its last character is unknown.
    let t = token.secret();
    let last = t.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &t[..t.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    assert_eq!(
        s.authenticate(&flipped, "odoo", NOW),
        Err(AuthError::Unknown)
    );
    // … and one with a character more or less.
    assert_eq!(
        s.authenticate(&t[..t.len() - 1], "odoo", NOW),
        Err(AuthError::Unknown)
    );
    assert_eq!(
        s.authenticate(&format!("{t}0"), "odoo", NOW),
        Err(AuthError::Unknown)
    );
}

#[test]
fn bearer_header_parsing() {
    assert_eq!(bearer_token(None), Err(AuthError::Missing));
    assert_eq!(bearer_token(Some("")), Err(AuthError::Missing));
    assert_eq!(bearer_token(Some("Bearer")), Err(AuthError::Missing));
    assert_eq!(bearer_token(Some("Bearer   ")), Err(AuthError::Missing));
    assert_eq!(bearer_token(Some("Basic abc")), Err(AuthError::Missing));
    assert_eq!(bearer_token(Some("Bearer pcx_1")), Ok("pcx_1"));
    assert_eq!(bearer_token(Some("bearer  pcx_1 ")), Ok("pcx_1"));
}

fn labels_and_names_are_checked(s: Arc<dyn GrantStore>) {
    s.create("odoo", "alice", None, None, NOW).unwrap();
    assert_eq!(
        s.create("odoo", "alice", None, None, NOW).unwrap_err(),
        GrantError::Duplicate {
            label: "alice".into(),
            server: "odoo".into()
        }
    );
    // Same label on another server is another grant; the bare label is then ambiguous.
    let (t, _) = s.create("time", "alice", None, None, NOW).unwrap();
    assert!(matches!(
        s.get("alice", None),
        Err(GrantError::Ambiguous { .. })
    ));
    assert_eq!(s.get("alice", Some("time")).unwrap().id, t.id);
    assert!(matches!(
        s.get("nobody", None),
        Err(GrantError::NotFound(_))
    ));
    assert!(matches!(
        s.get(&t.id, Some("odoo")),
        Err(GrantError::NotFound(_))
    ));
    for bad in ["", "has space", "grt_x", "pcx_abc", &"x".repeat(65), "é"] {
        assert!(
            matches!(
                s.create("odoo", bad, None, None, NOW),
                Err(GrantError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        s.create("bad server", "ok", None, None, NOW),
        Err(GrantError::Invalid(_))
    ));
    assert!(matches!(
        s.create("odoo", "ok", Some(""), None, NOW),
        Err(GrantError::Invalid(_))
    ));
    assert!(matches!(
        s.rotate("grt_0000000000000000", NOW),
        Err(GrantError::NotFound(_))
    ));
}

#[test]
fn the_file_holds_no_token_and_survives_reopening() {
    let db = TempDb::new("file");
    let (g, token) = {
        let s = SqliteGrants::open(db.path()).unwrap();
        let (g, token) = s.create("odoo", "alice", Some("p"), None, NOW).unwrap();
        // Rotate once, so both an old and a current token have existed.
        let (_, token2) = s.rotate(&g.id, NOW + 1).unwrap();
        let files: Vec<u8> = ["", "-wal"]
            .iter()
            .flat_map(|suf| {
                let mut p = db.path().as_os_str().to_owned();
                p.push(suf);
                std::fs::read(p).unwrap_or_default()
            })
            .collect();
        for t in [&token, &token2] {
            let secret = t.secret().as_bytes();
            let body = &secret[TOKEN_PREFIX.len()..];
            assert!(
                !files.windows(body.len()).any(|w| w == body),
                "the database contains a token"
            );
        }
        assert!(!files.windows(4).any(|w| w == TOKEN_PREFIX.as_bytes()));
        (g, token2)
    };
    // A second process (a new connection) sees the grant; a rotation or revocation made
    // through one connection is seen by another on its next call, although the other keeps
    // the grants it found in memory.
    let a = SqliteGrants::open(db.path()).unwrap();
    let b = SqliteGrants::open(db.path()).unwrap();
    for at in [NOW + 2, NOW + 3] {
        assert_eq!(a.authenticate(token.secret(), "odoo", at).unwrap().id, g.id);
    }
    let (_, token) = {
        let (rotated, fresh) = b.rotate(&g.id, NOW + 3).unwrap();
        assert!(matches!(
            a.authenticate(token.secret(), "odoo", NOW + 3),
            Err(AuthError::Unknown)
        ));
        (rotated, fresh)
    };
    assert_eq!(
        a.authenticate(token.secret(), "odoo", NOW + 3).unwrap().id,
        g.id
    );
    b.revoke(&g.id, NOW + 3).unwrap();
    assert!(matches!(
        a.authenticate(token.secret(), "odoo", NOW + 4),
        Err(AuthError::Revoked(_))
    ));
}

#[test]
fn store_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SqliteGrants>();
    let s: std::sync::Arc<dyn GrantStore> = std::sync::Arc::new(mem());
    let (_, token) = s.create("odoo", "shared", None, None, NOW).unwrap();
    let token = token.into_secret();
    std::thread::scope(|sc| {
        for _ in 0..4 {
            let s = &s;
            let token = &token;
            sc.spawn(move || {
                for _ in 0..100 {
                    s.authenticate(token, "odoo", NOW).unwrap();
                }
            });
        }
    });
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
        mod cached {
            $(
                #[test]
                fn $test() {
                    let Some(server) = portcullis_bench::redis_server::RedisServer::start(&[]) else {
                        return;
                    };
                    super::$test(super::cached(&server));
                }
            )*
        }
    };
}

on_every_backend!(
    create_then_authenticate,
    tokens_have_the_prefix_and_256_random_bits,
    rotate_kills_the_old_token_at_once,
    revoke_refuses_the_token_as_revoked,
    expiry_uses_the_given_clock,
    a_grant_of_another_server_is_forbidden,
    a_grant_of_several_servers_or_all_admits_each_and_no_other,
    missing_and_unknown_tokens,
    labels_and_names_are_checked
);

/// A store on `server` (a new handle each call: another replica).
fn on_redis(server: &portcullis_bench::redis_server::RedisServer) -> Arc<dyn GrantStore> {
    Arc::new(portcullis_store::RedisGrants::new(
        portcullis_store::Redis::new(&server.url(), "test:").unwrap(),
    ))
}

/// Replicas share one Redis: what one does (or the CLI does) holds on every other from the
/// next request on, with no cache to wait for.
#[test]
fn a_change_on_one_replica_holds_on_every_other_at_once() {
    let Some(server) = portcullis_bench::redis_server::RedisServer::start(&[]) else {
        return;
    };
    let (a, b) = (on_redis(&server), on_redis(&server));
    let (g, token) = a.create("odoo", "alice", Some("p"), None, NOW).unwrap();
    assert_eq!(b.authenticate(token.secret(), "odoo", NOW).unwrap(), g);
    assert!(matches!(
        b.create("odoo", "alice", None, None, NOW),
        Err(GrantError::Duplicate { .. })
    ));
    let (_, new) = b.rotate(&g.id, NOW + 1).unwrap();
    assert_eq!(
        a.authenticate(token.secret(), "odoo", NOW + 2),
        Err(AuthError::Unknown)
    );
    a.authenticate(new.secret(), "odoo", NOW + 2).unwrap();
    a.revoke(&g.id, NOW + 3).unwrap();
    assert!(matches!(
        b.authenticate(new.secret(), "odoo", NOW + 4),
        Err(AuthError::Revoked(_))
    ));
    assert_eq!(b.get("alice", None).unwrap().revoked_at, Some(NOW + 3));
    // The label is free again, on either replica.
    b.create("odoo", "alice", None, None, NOW + 5).unwrap();
    assert_eq!(a.list(Some("odoo")).unwrap().len(), 2);
}

/// A Redis that does not answer is a store error at the door (HTTP 503), never a pass.
#[test]
fn redis_down_fails_closed() {
    let Some(mut server) = portcullis_bench::redis_server::RedisServer::start(&[]) else {
        return;
    };
    let s = on_redis(&server);
    let (_, token) = s.create("odoo", "alice", None, None, NOW).unwrap();
    server.kill();
    let e = s.authenticate(token.secret(), "odoo", NOW).unwrap_err();
    assert_eq!(e.status(), 503, "{e}");
    server.restart();
    // Back, but empty (nothing was persisted): the token is unknown, not accepted.
    assert_eq!(
        s.authenticate(token.secret(), "odoo", NOW),
        Err(AuthError::Unknown)
    );
}

/// A cached store on `server` (a replica as `serve` opens it), its subscription confirmed.
fn cached(server: &portcullis_bench::redis_server::RedisServer) -> Arc<CachedGrants> {
    let c = CachedGrants::new(portcullis_store::Redis::new(&server.url(), "test:").unwrap());
    assert!(
        c.wait_trusted(Duration::from_secs(5)),
        "the watcher subscribes"
    );
    Arc::new(c)
}

/// Waits (a bounded while) until `c` has seen more than `before` invalidations: a published
/// change reaches the watcher thread, not a timer.
fn seen(c: &CachedGrants, before: u64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while c.invalidations() <= before {
        assert!(Instant::now() < deadline, "no invalidation arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Two cached replicas and the CLI (no cache) on one Redis: a cached grant costs no lookup,
/// and a change by anyone empties every cache as soon as its message arrives.
#[test]
fn cached_grants_spare_lookups_and_empty_on_any_change() {
    let Some(server) = portcullis_bench::redis_server::RedisServer::start(&[]) else {
        return;
    };
    let (a, b, cli) = (cached(&server), cached(&server), on_redis(&server));
    let (ia, ib) = (a.invalidations(), b.invalidations());
    let (g, token) = cli.create("odoo", "alice", Some("p"), None, NOW).unwrap();
    // The creation's own message, once it has arrived, does not empty the cache again.
    seen(&a, ia);
    seen(&b, ib);
    for _ in 0..5 {
        assert_eq!(a.authenticate(token.secret(), "odoo", NOW).unwrap(), g);
        assert_eq!(b.authenticate(token.secret(), "odoo", NOW).unwrap(), g);
    }
    assert_eq!(
        (a.reads(), b.reads()),
        (1, 1),
        "one lookup each, then the cache"
    );
    // Still checked per request from the cached copy: server binding and expiry.
    assert!(matches!(
        a.authenticate(token.secret(), "other", NOW),
        Err(AuthError::WrongServer { .. })
    ));

    // Rotated by the CLI: the old token dies on both replicas.
    let (ia, ib) = (a.invalidations(), b.invalidations());
    let (_, new) = cli.rotate(&g.id, NOW + 1).unwrap();
    seen(&a, ia);
    seen(&b, ib);
    assert_eq!(
        a.authenticate(token.secret(), "odoo", NOW + 2),
        Err(AuthError::Unknown)
    );
    assert_eq!(
        b.authenticate(token.secret(), "odoo", NOW + 2),
        Err(AuthError::Unknown)
    );
    a.authenticate(new.secret(), "odoo", NOW + 2).unwrap();
    b.authenticate(new.secret(), "odoo", NOW + 2).unwrap();

    // Revoked on replica a: b refuses it too.
    let ib = b.invalidations();
    a.revoke(&g.id, NOW + 3).unwrap();
    assert!(matches!(
        a.authenticate(new.secret(), "odoo", NOW + 4),
        Err(AuthError::Revoked(_))
    ));
    seen(&b, ib);
    assert!(matches!(
        b.authenticate(new.secret(), "odoo", NOW + 4),
        Err(AuthError::Revoked(_))
    ));
}

/// A lost subscription makes the cache untrusted at once: lookups read through (so a Redis
/// that is down is a 503, never a cached pass), and caching resumes once subscribed again.
#[test]
fn a_lost_subscription_reads_through() {
    let Some(mut server) = portcullis_bench::redis_server::RedisServer::start(&[]) else {
        return;
    };
    let a = cached(&server);
    let ia = a.invalidations();
    let (_, token) = a.create("odoo", "alice", None, None, NOW).unwrap();
    // Emptied at once by the creation, then again when its own message arrives.
    seen(&a, ia + 1);
    a.authenticate(token.secret(), "odoo", NOW).unwrap();
    a.authenticate(token.secret(), "odoo", NOW).unwrap();
    assert_eq!(a.reads(), 1);

    // The subscription is cut (Redis stays up): the next lookups read through until the
    // watcher has subscribed again, which empties the cache.
    let mut admin = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    admin.write_all(b"CLIENT KILL TYPE pubsub\r\n").unwrap();
    let mut answer = [0u8; 64];
    let _ = admin.read(&mut answer).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let reads = a.reads();
    loop {
        a.authenticate(token.secret(), "odoo", NOW).unwrap();
        if a.reads() > reads {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never read through after the cut"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(a.wait_trusted(Duration::from_secs(5)), "subscribed again");
    a.authenticate(token.secret(), "odoo", NOW).unwrap();
    let reads = a.reads();
    a.authenticate(token.secret(), "odoo", NOW).unwrap();
    assert_eq!(a.reads(), reads, "cached again");

    // Redis gone: the watcher loses its connection, and the grant is a store error.
    server.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.trusted() {
        assert!(Instant::now() < deadline, "the loss went unnoticed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let e = a.authenticate(token.secret(), "odoo", NOW).unwrap_err();
    assert_eq!(e.status(), 503, "{e}");
}
