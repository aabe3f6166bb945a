//! # portcullis-store
//!
//! State behind traits, chosen in one place ([`factory`], `[store]` in the config): counters
//! (the implementations of [`CounterStore`](portcullis_policy::CounterStore) that keep the
//! engine's rate limits and quotas), grants, approvals, tool pins, and the durable audit log.
//!
//! - [`MemoryCounters`]: a hash map behind one mutex. The fastest (a reservation costs well
//!   under a microsecond), exact within one process, forgotten on restart. For a single
//!   gateway process whose limits may reset when it restarts, and for tests.
//! - [`SqliteCounters`]: a SQLite file in WAL mode, one `BEGIN IMMEDIATE` transaction per
//!   reservation. Exact across restarts (a daily quota stays spent) and across processes that
//!   share the file; tens of microseconds per reservation. Reservations made through
//!   `reserve_later` that find the connection busy are committed together by a thread of the
//!   store's own (`batch`), one transaction for all that queued meanwhile; the store
//!   `combines`, so a caller may gather reservations and hand them over together
//!   (`reserve_together`, one transaction; the gateway gathers those of the calls one of its
//!   threads takes in at once).
//! - [`RedisCounters`]: a shared Redis (`[store] url`), one Lua script per reservation (one
//!   round trip; through `reserve_later`, those made while another is pending go in one
//!   pipeline, on the store's own thread). Exact across every replica sharing the Redis and
//!   key prefix.
//!
//! All three implement the same contract, checked by one shared test suite:
//! - a reservation charges all its counters or none, also under concurrency;
//! - calendar windows (second … month) count per UTC-aligned bucket and reset when a new one
//!   starts; rolling windows keep an exact log of charges, so no interval of the window's
//!   length ever holds more than `max` units;
//! - refunds give back exactly what a ticket charged, never below zero, and never into a
//!   bucket other than the one charged;
//! - the stores never read the clock: `now` is an argument.
//!
//! The rules themselves (does it fit, what is the retry, what is written) are written once,
//! in a private module shared by every backend (the Redis script restates them, see `redis`); a backend only supplies reads and writes of
//! its storage inside whatever makes them atomic. Dead counters (ended buckets, expired
//! rolling charges) are dropped lazily and by a sweep at most once a minute of the callers'
//! clock, so storage follows the live counters rather than growing without bound.

mod batch;
mod logic;
mod memory;
pub mod redis;
mod sqlite;
mod write_behind;

pub use memory::MemoryCounters;
pub use redis::{
    CachedGrants, Redis, RedisApprovals, RedisCounters, RedisGrants, RedisPins, RedisSessions,
};
pub use sqlite::{OpenError, SqliteCounters};
pub use write_behind::{WriteBehindCounters, FLUSH_EVERY};

pub mod approvals;
pub mod audit;
mod authority;
pub mod factory;
mod file_watch;
pub mod grants;
pub mod pins;
mod secret;
pub mod sessions;

pub use approvals::{
    Approval, ApprovalCheck, ApprovalError, ApprovalRequest, ApprovalStatus, ApprovalStore,
    SqliteApprovals, APPROVALS_FILE, APPROVAL_METHOD,
};
pub use audit::{
    AuditDecision, AuditError, AuditFilter, AuditLog, AuditMode, AuditRecord, AuditStats,
    BATCH_SIZE_BOUNDS,
};
pub use factory::{CounterBackend, StoreConfig, Stores};
pub use grants::{
    bearer_token, AuthError, Grant, GrantError, GrantOpenError, GrantStatus, GrantStore,
    SqliteGrants, Token,
};
pub use pins::{Pin, PinError, PinState, PinStore, SqlitePins, PINS_FILE};
pub use sessions::{SessionStore, SharedSession, DEFAULT_SESSION_TTL};
