//! [`RedisSessions`]: handshake-era sessions in Redis (`P s:<session id>`, the record as
//! JSON, expiring after its TTL), so that a session opened on one replica continues on any.

use super::Redis;
use crate::sessions::{SessionStore, SharedSession};
use std::time::Duration;

/// Sessions in a shared Redis: one string per session, `SET … PX` when opened, `GETEX … PX`
/// (read and refresh in one round trip) on every use, `DEL` when ended; `EXISTS` (one
/// pipeline) for a replica's sweep of the connections it holds.
#[derive(Debug)]
pub struct RedisSessions {
    redis: Redis,
}

impl RedisSessions {
    /// Sessions on `redis`.
    pub fn new(redis: Redis) -> RedisSessions {
        RedisSessions { redis }
    }

    fn key(&self, id: &str) -> String {
        self.redis.key(&format!("s:{id}"))
    }
}

fn ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

impl SessionStore for RedisSessions {
    fn put(&self, id: &str, s: &SharedSession, ttl: Duration) -> Result<(), String> {
        let text = serde_json::to_string(s).map_err(|e| e.to_string())?;
        self.redis.run(|c| {
            ::redis::cmd("SET")
                .arg(self.key(id))
                .arg(text)
                .arg("PX")
                .arg(ms(ttl))
                .query::<()>(c)
        })
    }

    fn touch(&self, id: &str, ttl: Duration) -> Result<Option<SharedSession>, String> {
        let text: Option<String> = self.redis.run(|c| {
            ::redis::cmd("GETEX")
                .arg(self.key(id))
                .arg("PX")
                .arg(ms(ttl))
                .query(c)
        })?;
        // A record this version cannot read is a session it cannot continue.
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    fn end(&self, id: &str) -> Result<(), String> {
        self.redis
            .run(|c| ::redis::cmd("DEL").arg(self.key(id)).query::<()>(c))
    }

    fn live(&self, ids: &[String]) -> Result<Vec<bool>, String> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.redis.run(|c| {
            let mut p = ::redis::pipe();
            for id in ids {
                p.cmd("EXISTS").arg(self.key(id));
            }
            p.query(c)
        })
    }
}
