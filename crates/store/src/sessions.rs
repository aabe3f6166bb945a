//! Shared handshake-era sessions: what one replica records when a client's `initialize` opens
//! an `Mcp-Session-Id`, so that any other replica sharing the store can continue the session
//! (trait [`SessionStore`]; the one implementation is [`crate::RedisSessions`], as a single
//! gateway keeps its sessions in memory).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// What continuing a session on another replica needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedSession {
    /// The server the session belongs to.
    pub server: String,
    /// The grant (or static token, `static:<label>`, or principal) that opened it: a request
    /// of another caller never finds it.
    pub grant_id: String,
    /// The key of the session's `scope = "session"` counters, the same on every replica.
    pub counter_key: String,
    /// The client's `initialize` request as it sent it (its protocol version, capabilities
    /// and `clientInfo`): a replica without an upstream connection for the session opens one
    /// and replays it, then `notifications/initialized`.
    pub initialize: String,
    /// The `_meta` of a session bridged to a 2026-07-28-only upstream (no replay then: its
    /// requests go out stateless with this `_meta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridged: Option<Value>,
}

/// Sessions shared by the replicas of one gateway, each expiring `ttl` after its last use.
pub trait SessionStore: Send + Sync {
    /// Records a new session.
    fn put(&self, id: &str, s: &SharedSession, ttl: Duration) -> Result<(), String>;
    /// The session, its expiry pushed back to `ttl` from now; `None` when it never existed,
    /// ended or expired.
    fn touch(&self, id: &str, ttl: Duration) -> Result<Option<SharedSession>, String>;
    /// Ends it (`DELETE` with its `Mcp-Session-Id`) on every replica.
    fn end(&self, id: &str) -> Result<(), String>;
    /// Which of `ids` still exist (ended and expired ones do not), without refreshing them.
    fn live(&self, ids: &[String]) -> Result<Vec<bool>, String>;
}

/// How long an unused session lives by default (`[store] session_ttl`).
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(3600);
