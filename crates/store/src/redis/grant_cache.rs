//! [`CachedGrants`]: the Redis grant store with a per-replica cache of authenticated grants,
//! emptied the moment any replica or the CLI creates, rotates or revokes a grant (Redis
//! pub/sub on `P grants:changed`), and bypassed (every lookup reads through) whenever that
//! subscription cannot be vouched for.
//!
//! The rules that keep a cached grant from outliving a change:
//!
//! - a watcher thread holds a subscription to `P grants:changed`; every message empties the
//!   cache (changes are rare, so no finer bookkeeping is worth its risk);
//! - the cache is *trusted* only while that subscription is confirmed: subscribed, and heard
//!   from (a message or the answer to a heartbeat `PING`) within [`TRUST_WINDOW`]; a lost or
//!   silent connection (Redis down, a partition) makes every lookup read through, so a
//!   revocation is never missed, and a failed read refuses the request as a store error;
//! - every event that empties the cache (a message, a lost subscription, a new one) bumps a
//!   generation, and a lookup only stores its answer if the generation it read under is still
//!   current, so a read that raced a revocation never lands in the cache;
//! - expiry is checked on every request against the cached grant's `expires_at`, as before.

use super::{Redis, RedisGrants, TIMEOUT};
use crate::grants::{admit, token_digest};
use crate::{AuthError, Grant, GrantError, GrantStore, Token};
use portcullis_policy::sync::LockExt;
use portcullis_policy::Millis;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// After this long without hearing from Redis, the watcher sends a `PING`.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The cache is trusted only if the subscription was heard from this recently (a heartbeat
/// plus its timeout, with some slack).
pub const TRUST_WINDOW: Duration = Duration::from_millis(2_000);

/// Most grants cached at once (the cache is emptied when full).
const CAPACITY: usize = 10_000;

/// Redis grants with an invalidated-on-change cache (see the module's doc).
pub struct CachedGrants {
    inner: RedisGrants,
    state: Arc<State>,
}

impl std::fmt::Debug for CachedGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedGrants")
            .field("inner", &self.inner)
            .field("trusted", &self.state.trusted())
            .finish()
    }
}

struct State {
    cache: Mutex<Cache>,
    /// Subscribed (the watcher sets it after `SUBSCRIBE` answered, clears it on any error).
    subscribed: AtomicBool,
    /// When the subscription was last heard from, in ms since `epoch`.
    heard: AtomicU64,
    epoch: Instant,
    /// Lookups that went to Redis (for tests and metrics).
    reads: AtomicU64,
    /// Times the cache was emptied.
    invalidations: AtomicU64,
}

#[derive(Default)]
struct Cache {
    generation: u64,
    entries: HashMap<[u8; 32], (Grant, Vec<u8>)>,
}

impl State {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn heard_now(&self) {
        self.heard.store(self.now_ms(), Ordering::Release);
    }

    fn trusted(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
            && self
                .now_ms()
                .saturating_sub(self.heard.load(Ordering::Acquire))
                < TRUST_WINDOW.as_millis() as u64
    }

    /// Empties the cache and starts a new generation.
    fn invalidate(&self) {
        let mut c = self.cache.lock_or_recover();
        c.generation += 1;
        c.entries.clear();
        self.invalidations.fetch_add(1, Ordering::Release);
    }
}

impl CachedGrants {
    /// Grants on `redis`, cached; starts the watcher thread (it ends when this is dropped).
    pub fn new(redis: Redis) -> CachedGrants {
        let inner = RedisGrants::new(redis.clone());
        let state = Arc::new(State {
            cache: Mutex::new(Cache::default()),
            subscribed: AtomicBool::new(false),
            heard: AtomicU64::new(0),
            epoch: Instant::now(),
            reads: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        });
        let channel = inner.channel();
        let weak = Arc::downgrade(&state);
        let spawned = std::thread::Builder::new()
            .name("grants-watch".into())
            .spawn(move || watch(redis, channel, weak));
        // Without a watcher the cache is never trusted: every lookup reads through.
        drop(spawned);
        CachedGrants { inner, state }
    }

    /// Whether cached grants are used right now (the subscription is confirmed).
    pub fn trusted(&self) -> bool {
        self.state.trusted()
    }

    /// How many lookups went to Redis so far.
    pub fn reads(&self) -> u64 {
        self.state.reads.load(Ordering::Relaxed)
    }

    /// How many times the cache was emptied so far (a change seen, a subscription lost or made).
    pub fn invalidations(&self) -> u64 {
        self.state.invalidations.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for the subscription to be confirmed (tests, start-up).
    pub fn wait_trusted(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.trusted() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// The watcher: subscribe, listen, heartbeat; on any failure mark the cache untrusted, empty
/// it, and subscribe again.
fn watch(redis: Redis, channel: String, state: Weak<State>) {
    loop {
        let Some(s) = state.upgrade() else { return };
        let outcome = listen(&redis, &channel, &s, &state);
        s.subscribed.store(false, Ordering::Release);
        s.invalidate();
        drop(s);
        match outcome {
            Listen::Dropped => return,
            // Until subscribed again, every lookup reads through.
            Listen::Lost => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

enum Listen {
    /// The store was dropped.
    Dropped,
    /// The connection failed.
    Lost,
}

fn listen(redis: &Redis, channel: &str, s: &State, state: &Weak<State>) -> Listen {
    let Ok(mut con) = redis.connect() else {
        return Listen::Lost;
    };
    let mut ps = con.as_pubsub();
    if ps.subscribe(channel).is_err() {
        return Listen::Lost;
    }
    // Anything published before this point was missed: start from an empty cache.
    s.invalidate();
    s.heard_now();
    s.subscribed.store(true, Ordering::Release);
    let poll = Duration::from_millis(250);
    if ps.set_read_timeout(Some(poll)).is_err() {
        return Listen::Lost;
    }
    let mut last = Instant::now();
    loop {
        if state.strong_count() <= 1 {
            // Only this thread's `s` is left.
            return Listen::Dropped;
        }
        match ps.get_message() {
            Ok(msg) => {
                last = Instant::now();
                s.heard_now();
                if msg.get_channel_name() == channel {
                    s.invalidate();
                }
            }
            Err(e) if e.is_timeout() => {
                if last.elapsed() >= HEARTBEAT {
                    if ps.set_read_timeout(Some(TIMEOUT)).is_err() {
                        return Listen::Lost;
                    }
                    if ps.ping::<::redis::Value>().is_err() {
                        return Listen::Lost;
                    }
                    if ps.set_read_timeout(Some(poll)).is_err() {
                        return Listen::Lost;
                    }
                    last = Instant::now();
                    s.heard_now();
                }
            }
            Err(_) => return Listen::Lost,
        }
    }
}

impl GrantStore for CachedGrants {
    fn create(
        &self,
        server: &str,
        label: &str,
        policy: Option<&str>,
        expires_at: Option<Millis>,
        now: Millis,
    ) -> Result<(Grant, Token), GrantError> {
        let r = self.inner.create(server, label, policy, expires_at, now);
        self.state.invalidate();
        r
    }

    fn list(&self, server: Option<&str>) -> Result<Vec<Grant>, GrantError> {
        self.inner.list(server)
    }

    fn get(&self, id_or_label: &str, server: Option<&str>) -> Result<Grant, GrantError> {
        self.inner.get(id_or_label, server)
    }

    fn rotate(&self, id: &str, now: Millis) -> Result<(Grant, Token), GrantError> {
        let r = self.inner.rotate(id, now);
        self.state.invalidate();
        r
    }

    fn revoke(&self, id: &str, now: Millis) -> Result<Grant, GrantError> {
        let r = self.inner.revoke(id, now);
        self.state.invalidate();
        r
    }

    fn authenticate(&self, token: &str, server: &str, now: Millis) -> Result<Grant, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let digest = token_digest(token);
        let generation = {
            let c = self.state.cache.lock_or_recover();
            if self.state.trusted() {
                if let Some(found) = c.entries.get(&digest) {
                    return admit(Some(found.clone()), &digest, server, now);
                }
            }
            c.generation
        };
        self.state.reads.fetch_add(1, Ordering::Relaxed);
        let found = self.inner.lookup(&digest).map_err(AuthError::Store)?;
        if let Some(f) = &found {
            let mut c = self.state.cache.lock_or_recover();
            // Stored only if nothing was invalidated since the read began, and the
            // subscription still holds.
            if c.generation == generation && self.state.trusted() {
                if c.entries.len() >= CAPACITY {
                    c.entries.clear();
                }
                c.entries.insert(digest, f.clone());
            }
        }
        admit(found, &digest, server, now)
    }
}
