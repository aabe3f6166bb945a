//! Shared handshake-era sessions in Redis: recorded, read back with their TTL refreshed,
//! ended, expired; one replica's session is every replica's.

use portcullis_store::{Redis, RedisSessions, SessionStore, SharedSession};
use serde_json::json;
use std::time::Duration;

fn on(server: &portcullis_bench::redis_server::RedisServer) -> RedisSessions {
    RedisSessions::new(Redis::new(&server.url(), "test:").unwrap())
}

#[test]
fn a_session_recorded_by_one_replica_is_read_by_another_until_ended_or_expired() {
    let Some(server) = portcullis_bench::redis_server::RedisServer::start(&[]) else {
        return;
    };
    let (a, b) = (on(&server), on(&server));
    let s = SharedSession {
        server: "odoo".into(),
        grant_id: "grt_1".into(),
        counter_key: "session-ab".into(),
        initialize: r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#.into(),
        bridged: Some(json!({"io.modelcontextprotocol/protocolVersion":"2025-11-25"})),
    };
    let ttl = Duration::from_millis(400);
    a.put("s1", &s, ttl).unwrap();
    assert_eq!(b.touch("s1", ttl).unwrap(), Some(s.clone()));
    assert_eq!(b.touch("nope", ttl).unwrap(), None);
    // Used more often than its TTL: it lives on.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(200));
        assert!(a.touch("s1", ttl).unwrap().is_some());
    }
    assert_eq!(
        b.live(&["s1".into(), "nope".into()]).unwrap(),
        [true, false]
    );
    b.end("s1").unwrap();
    assert_eq!(a.touch("s1", ttl).unwrap(), None);
    assert_eq!(a.live(&["s1".into()]).unwrap(), [false]);
    // Unused for longer than its TTL: gone.
    a.put("s2", &s, ttl).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(b.touch("s2", ttl).unwrap(), None);
}

#[test]
fn a_redis_that_does_not_answer_is_an_error_not_an_unknown_session() {
    let Some(mut server) = portcullis_bench::redis_server::RedisServer::start(&[]) else {
        return;
    };
    let a = on(&server);
    server.kill();
    assert!(a.touch("s1", Duration::from_secs(1)).is_err());
}
