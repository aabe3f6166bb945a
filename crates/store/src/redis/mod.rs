//! The shared network store: counters, grants, approvals and tool pins of several gateway replicas in
//! one Redis (`[store] url = "redis://…"` or `"rediss://…"`), each under a key prefix so that
//! several gateways can share one Redis.
//!
//! Every call runs on a pooled synchronous connection with connect, read and write timeouts
//! ([`TIMEOUT`]); a connection that failed is dropped, and the next call opens a new one, so a
//! replica recovers on its own when Redis returns. A call that timed out (a Redis that hangs
//! rather than refuses) makes the calls of the next [`COOL_OFF`] fail at once, without asking
//! it: each call blocks its thread while it waits, and a gateway's few request threads must
//! not all sit out a timeout per call. Either way the caller fails closed. A failed call is
//! never retried here: its outcome is unknown (a script may have run before the answer was
//! lost), and retrying a reservation could count it twice.
//!
//! Key layout (`P` is the prefix, `portcullis:` by default):
//!
//! | key | type | what |
//! |---|---|---|
//! | `P c:<counter key>` | hash `b`, `e`, `u` | a calendar counter: bucket start, end, used; expires after the bucket's end |
//! | `P r:<counter key>` | sorted set | a rolling counter: one member `<amount>:<nonce>` per charge, scored by its stamp; expires after the newest charge leaves the window |
//! | `P g:<grant id>` | hash | a grant and its token's SHA-256 digest |
//! | `P gt:<digest hex>` | string | token digest → grant id |
//! | `P gl:<server>:<label>` | string | the live grant labelled so on a server |
//! | `P grants` | sorted set | every grant id, by creation time |
//! | `P grants:changed` | channel | the id of every grant created, rotated or revoked (the grant caches empty themselves) |
//! | `P a:<approval id>` | string | an approval request (JSON) |
//! | `P af:<fingerprint>` | set | the approval ids of one fingerprint |
//! | `P approvals` | sorted set | every approval id, by creation time |
//! | `P ap:open` | set | the ids of pending and approved (not yet used) requests |
//! | `P s:<session id>` | string | a handshake-era session (JSON); expires after `[store] session_ttl` unused |
//! | `P pins` | hash | tool pins: field `["server","tool"]` (JSON), value the pin (JSON) |

mod approvals;
mod counters;
mod grant_cache;
mod grants;
mod pins;
mod sessions;

pub use approvals::RedisApprovals;
pub use counters::RedisCounters;
pub use grant_cache::{CachedGrants, HEARTBEAT, TRUST_WINDOW};
pub use grants::RedisGrants;
pub use pins::RedisPins;
pub use sessions::RedisSessions;

use ::redis::{Client, Connection, RedisResult};
use portcullis_policy::sync::LockExt;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connect, read and write timeout of every Redis call.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// After a call times out, how long further calls fail at once instead of waiting for their
/// own timeout; the first call after it asks Redis again.
pub const COOL_OFF: Duration = Duration::from_secs(1);

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "portcullis:";

/// Idle connections kept per replica (more are opened under load and closed after use).
const POOL_KEEP: usize = 8;

/// One Redis server as the stores use it: a client, a small pool of connections, the prefix.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    prefix: String,
    /// Where the URL points, without credentials (for messages).
    place: String,
    idle: Mutex<Vec<Connection>>,
    /// Calls fail at once until this many ms after `born` (see [`COOL_OFF`]).
    cool_until_ms: AtomicU64,
    born: Instant,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("at", &self.inner.place)
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

impl fmt::Display for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the Redis at {} (prefix {:?})",
            self.inner.place, self.inner.prefix
        )
    }
}

impl Redis {
    /// A handle on the Redis at `url` (`redis://[user:password@]host:port/db`, or `rediss://`
    /// for TLS), its keys under `prefix`. Does not connect: the first call does.
    pub fn new(url: &str, prefix: &str) -> Result<Redis, String> {
        let place = redact(url);
        let client =
            Client::open(url).map_err(|e| format!("store.url {place:?} is not usable: {e}"))?;
        Ok(Redis {
            inner: Arc::new(Inner {
                client,
                prefix: prefix.to_owned(),
                place,
                idle: Mutex::new(Vec::new()),
                cool_until_ms: AtomicU64::new(0),
                born: Instant::now(),
            }),
        })
    }

    /// Connects once and sends `PING`, so that a wrong URL or password is reported at start.
    pub fn ping(&self) -> Result<(), String> {
        self.run(|c| ::redis::cmd("PING").query::<String>(c))
            .map(drop)
    }

    /// `P` + `tail`.
    pub(crate) fn key(&self, tail: &str) -> String {
        let mut k = String::with_capacity(self.inner.prefix.len() + tail.len());
        k.push_str(&self.inner.prefix);
        k.push_str(tail);
        k
    }

    /// Runs `f` on a pooled connection (opened if none is idle). On success the connection
    /// goes back to the pool; on an error that may have broken it, it is dropped. The error is
    /// a sentence naming the Redis (never its password).
    pub(crate) fn run<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, String> {
        let now_ms = self.inner.born.elapsed().as_millis() as u64;
        if now_ms < self.inner.cool_until_ms.load(Ordering::Relaxed) {
            return Err(format!(
                "redis at {}: not asked: a call timed out (after {} ms) less than {} s ago; \
                 calls fail at once until then",
                self.inner.place,
                TIMEOUT.as_millis(),
                COOL_OFF.as_secs()
            ));
        }
        let idle = self.inner.idle.lock_or_recover().pop();
        let mut con = match idle {
            Some(c) => c,
            None => self.connect().map_err(|e| {
                self.cool_off_after(&e);
                self.describe(&e)
            })?,
        };
        match f(&mut con) {
            Ok(v) => {
                let mut idle = self.inner.idle.lock_or_recover();
                if idle.len() < POOL_KEEP {
                    idle.push(con);
                }
                Ok(v)
            }
            Err(e) => {
                // A server's answer (a script error, a wrong type) leaves the connection
                // usable; anything else (timeout, reset, protocol) may leave an unread answer
                // on it, so it is dropped.
                if matches!(e.kind(), ::redis::ErrorKind::Server(_)) && !e.is_timeout() {
                    let mut idle = self.inner.idle.lock_or_recover();
                    if idle.len() < POOL_KEEP {
                        idle.push(con);
                    }
                } else {
                    // Idle connections opened before the failure are likely dead too.
                    self.inner.idle.lock_or_recover().clear();
                    self.cool_off_after(&e);
                }
                Err(self.describe(&e))
            }
        }
    }

    /// After a timeout, the calls of the next [`COOL_OFF`] fail at once.
    fn cool_off_after(&self, e: &::redis::RedisError) {
        if e.is_timeout() {
            let until = self.inner.born.elapsed() + COOL_OFF;
            self.inner
                .cool_until_ms
                .store(until.as_millis() as u64, Ordering::Relaxed);
        }
    }

    fn connect(&self) -> RedisResult<Connection> {
        let con = self.inner.client.get_connection_with_timeout(TIMEOUT)?;
        con.set_read_timeout(Some(TIMEOUT))?;
        con.set_write_timeout(Some(TIMEOUT))?;
        Ok(con)
    }

    pub(crate) fn describe(&self, e: &::redis::RedisError) -> String {
        if e.is_timeout() {
            // The OS's words for it ("Resource temporarily unavailable") do not say timeout.
            format!(
                "redis at {}: no answer within {} ms ({e})",
                self.inner.place,
                TIMEOUT.as_millis()
            )
        } else {
            format!("redis at {}: {e}", self.inner.place)
        }
    }
}

/// `url` without a password (`redis://user:***@host:port/db`).
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split_once(':').map_or(creds, |(u, _)| u);
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Decimal text of a number for a script argument.
pub(crate) fn num(n: u64) -> String {
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("redis://gw:s3cret@cache:6379/2"),
            "redis://gw:***@cache:6379/2"
        );
        assert_eq!(redact("rediss://:pw@h:1/0"), "rediss://:***@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
        let r = Redis::new("redis://u:hunter2@127.0.0.1:1/0", "p:").unwrap();
        let e = r.ping().unwrap_err();
        assert!(!e.contains("hunter2") && e.contains("127.0.0.1:1"), "{e}");
    }

    #[test]
    fn bad_urls_are_refused_at_once() {
        let e = Redis::new("http://localhost/", "p:").unwrap_err();
        assert!(e.contains("store.url"), "{e}");
    }
}
