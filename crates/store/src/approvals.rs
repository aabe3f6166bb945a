//! Approvals: calls that a policy's `approve_if` holds for a human's decision.
//!
//! A call matching `approve_if` is not forwarded; the gateway asks the store with
//! [`ApprovalStore::check`] and the call's *fingerprint* (a digest over grant, server, tool
//! and canonical arguments, computed by the caller). The store answers with one of:
//!
//! - [`ApprovalCheck::Pending`]: a request waits for a human (created by this call, or an
//!   earlier identical call's request reused, so duplicates share one id);
//! - [`ApprovalCheck::Approved`]: a human approved it, and this call **consumed** the
//!   approval: an approved identical retry passes exactly once, also when several callers
//!   (threads or processes sharing the file) race;
//! - [`ApprovalCheck::Denied`]: a human denied it; until the request's `expires_at`, a retry
//!   is told so (with the reason), after that a new request can be made.
//!
//! Humans decide with [`ApprovalStore::approve`] / [`ApprovalStore::deny`] (the CLI, the
//! admin API). Only a pending, unexpired request can be decided.
//!
//! # Lifecycle
//!
//! ```text
//! pending ──approve──▶ approved ──identical retry──▶ consumed
//!    │  └───deny────▶ denied            └──valid_until passes──▶ expired
//!    └──expires_at passes──▶ expired
//! ```
//!
//! Every [`check`](ApprovalStore::check) is one `BEGIN IMMEDIATE` transaction: consumption
//! and creation happen under SQLite's write lock, so the answers are exact across threads and
//! processes. The store never reads the clock: `now` is an argument.
//!
//! Only [`ApprovalStore::expire_lapsed`] writes an expiry, and it returns what it expired, so
//! every expiry gets its audit record ([`Approval::audit_record`]) from whoever called it (the
//! relay before a check, the gateway's sweep, the CLI). Reads (`list`, `get` through
//! [`Approval::as_of`]) show a lapsed request as expired without writing it.

// `ApprovalError::NotPending` carries the whole approval (the agreed API: the caller sees
// its current status and decision). Errors are rare and on the admin path, so the size of
// the `Err` variant costs nothing worth boxing it for.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

use crate::secret::{hex, random_bytes};
use crate::{AuditDecision, AuditRecord};
use portcullis_policy::Millis;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::MutexGuard;
use std::time::Duration;

/// The approval database's file name inside the data directory.
pub const APPROVALS_FILE: &str = "approvals.db";

/// The `method` of the audit records of approval events (decided, expired).
pub const APPROVAL_METHOD: &str = "(approval)";

/// Every approval id starts with this, followed by 16 hex digits.
pub const APPROVAL_ID_PREFIX: &str = "apr_";

/// How long a writer waits for another process's transaction before failing (closed).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema version stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS approvals (
        id              TEXT PRIMARY KEY NOT NULL,  -- apr_ + 16 hex
        fingerprint     TEXT NOT NULL,              -- hex digest over grant+server+tool+args
        grant_id        TEXT NOT NULL,
        grant_label     TEXT NOT NULL,
        server          TEXT NOT NULL,
        tool            TEXT NOT NULL,
        args            TEXT NOT NULL,              -- JSON
        rule            TEXT NOT NULL,              -- JSON Pointer of the approve_if entry
        reason          TEXT NOT NULL,
        status          TEXT NOT NULL,              -- pending approved denied expired consumed
        created_at      INTEGER NOT NULL,           -- ms since the epoch, UTC
        expires_at      INTEGER NOT NULL,
        decided_at      INTEGER,
        decided_by      TEXT,
        decision_reason TEXT,
        valid_until     INTEGER,
        consumed_at     INTEGER
    );
    CREATE INDEX IF NOT EXISTS approvals_fingerprint ON approvals (fingerprint, status);
    CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status, created_at);
";

const COLUMNS: &str = "id, fingerprint, grant_id, grant_label, server, tool, args, rule, \
     reason, status, created_at, expires_at, decided_at, decided_by, decision_reason, \
     valid_until, consumed_at";

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Waiting for a human, until `expires_at`.
    Pending,
    /// A human approved it; the identical retry passes once before `valid_until`.
    Approved,
    /// A human denied it.
    Denied,
    /// Nobody decided before `expires_at`, or the approval was not used before
    /// `valid_until`.
    Expired,
    /// Approved and used by the identical retry (it passed).
    Consumed,
}

impl ApprovalStatus {
    /// Every status, in declaration order.
    pub const ALL: [ApprovalStatus; 5] = [
        ApprovalStatus::Pending,
        ApprovalStatus::Approved,
        ApprovalStatus::Denied,
        ApprovalStatus::Expired,
        ApprovalStatus::Consumed,
    ];

    /// `pending`, `approved`, `denied`, `expired` or `consumed` (as stored).
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Consumed => "consumed",
        }
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApprovalStatus {
    type Err = String;

    /// The stored names (any case).
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        ApprovalStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == lower)
            .ok_or_else(|| {
                format!(
                    "unknown approval status {s:?}; use one of pending, approved, denied, \
                     expired, consumed"
                )
            })
    }
}

/// One approval request, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// `apr_` + 16 hex digits (random).
    pub id: String,
    /// Given by the caller: hex of a digest over grant, server, tool and canonical arguments.
    pub fingerprint: String,
    /// The grant that made the call.
    pub grant_id: String,
    /// That grant's label.
    pub grant_label: String,
    /// The server the call is for.
    pub server: String,
    /// The tool called.
    pub tool: String,
    /// The call's arguments, for the approver to see.
    pub args: serde_json::Value,
    /// The rule that asked for approval, e.g. `/tools/pay/approve_if/0`.
    pub rule: String,
    /// Why approval is needed (the rule's `reason`).
    pub reason: String,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// When it was requested, ms since the epoch (UTC).
    pub created_at: Millis,
    /// A pending request expires at this time; a denial is reported to retries until then.
    pub expires_at: Millis,
    /// When a human approved or denied it.
    pub decided_at: Option<Millis>,
    /// Who approved or denied it.
    pub decided_by: Option<String>,
    /// The reason given with a denial.
    pub decision_reason: Option<String>,
    /// Approved: the identical retry passes once before this time.
    pub valid_until: Option<Millis>,
    /// When the identical retry used the approval.
    pub consumed_at: Option<Millis>,
}

/// What the gateway knows of a call that needs approval.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRequest {
    /// Hex digest over grant, server, tool and canonical arguments: identical calls share it.
    pub fingerprint: String,
    /// The calling grant's id.
    pub grant_id: String,
    /// The calling grant's label.
    pub grant_label: String,
    /// The server.
    pub server: String,
    /// The tool.
    pub tool: String,
    /// The call's arguments (shown to the approver).
    pub args: serde_json::Value,
    /// The `approve_if` rule pointer.
    pub rule: String,
    /// The rule's reason.
    pub reason: String,
    /// How long a new request waits for a decision (the rule's `timeout`).
    pub timeout_ms: Millis,
}

/// The answer of [`ApprovalStore::check`].
#[derive(Clone, Debug, PartialEq)]
pub enum ApprovalCheck {
    /// Waiting for a human: `new` is true when this call created the request (false: a
    /// duplicate reused the pending id).
    Pending {
        /// The pending request.
        approval: Approval,
        /// Whether this call created it.
        new: bool,
    },
    /// Approved and now CONSUMED by this call (exactly once, atomically).
    Approved(Approval),
    /// A human denied it (within its window).
    Denied(Approval),
}

/// Why an approval operation failed. The messages say what to do.
#[derive(Debug)]
pub enum ApprovalError {
    /// No approval has this id.
    NotFound(String),
    /// The approval is no longer pending (carries it, with its current status).
    NotPending(Approval),
    /// The database failed.
    Store(String),
}

impl fmt::Display for ApprovalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApprovalError::NotFound(id) => write!(
                f,
                "no approval has the id {id:?}; see `portcullis approvals list --status all`"
            ),
            ApprovalError::NotPending(a) => {
                write!(
                    f,
                    "the approval {} is {}, not pending, so it cannot be decided",
                    a.id, a.status
                )?;
                match a.status {
                    ApprovalStatus::Expired => f.write_str(
                        "; nobody decided in time (or the approval was not used in time): the \
                         agent's retry makes a new request to decide",
                    ),
                    ApprovalStatus::Denied | ApprovalStatus::Approved => write!(
                        f,
                        " (already {} by {}); a decision cannot be changed — once it lapses, \
                         the agent's retry makes a new request",
                        a.status,
                        a.decided_by.as_deref().unwrap_or("someone")
                    ),
                    ApprovalStatus::Consumed => f.write_str(
                        "; it was approved and the call has already passed; a new identical \
                         call makes a new request",
                    ),
                    ApprovalStatus::Pending => Ok(()),
                }
            }
            ApprovalError::Store(e) => write!(f, "the approval store failed: {e}"),
        }
    }
}

impl std::error::Error for ApprovalError {}

/// The approval port. Implementations never read the clock: `now` (ms since the epoch, UTC)
/// is an argument.
pub trait ApprovalStore: Send + Sync {
    /// Looks up (or creates) the approval of a call; see [`ApprovalCheck`]. Atomic: of
    /// several concurrent checks of one approved fingerprint, exactly one gets `Approved`.
    fn check(&self, req: &ApprovalRequest, now: Millis) -> Result<ApprovalCheck, ApprovalError>;

    /// Marks lapsed requests and unused approvals [`ApprovalStatus::Expired`] and returns
    /// them, so that each expiry can be audited.
    fn expire_lapsed(&self, now: Millis) -> Result<Vec<Approval>, ApprovalError>;

    /// Approvals with `status` (all when `None`), newest first, as of `now`: a lapsed one is
    /// shown (and filtered) as [`ApprovalStatus::Expired`] but not written, so that its
    /// expiry is still returned, and audited, by the next [`ApprovalStore::expire_lapsed`].
    fn list(
        &self,
        status: Option<ApprovalStatus>,
        now: Millis,
    ) -> Result<Vec<Approval>, ApprovalError>;

    /// The approval with this id, as stored ([`Approval::as_of`] shows it as of a time).
    fn get(&self, id: &str) -> Result<Approval, ApprovalError>;

    /// Approves a pending, unexpired request: the identical retry passes once within
    /// `valid_for_ms` from `now`. Otherwise [`ApprovalError::NotPending`].
    fn approve(
        &self,
        id: &str,
        by: &str,
        valid_for_ms: Millis,
        now: Millis,
    ) -> Result<Approval, ApprovalError>;

    /// Denies a pending, unexpired request with `reason`. Otherwise
    /// [`ApprovalError::NotPending`].
    fn deny(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Approval, ApprovalError>;
}

/// Approvals in a SQLite file (`approvals.db` in the data directory; [`APPROVALS_FILE`]).
///
/// WAL mode, `synchronous=FULL` (a decision is authority data: a forgotten denial or a
/// consumption lost to a power cut could let a call through twice), one connection behind a
/// mutex, one `BEGIN IMMEDIATE` transaction per change. Several processes may share the file.
pub struct SqliteApprovals {
    db: crate::authority::AuthorityDb,
}

impl fmt::Debug for SqliteApprovals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.lock().path().map(str::to_owned);
        f.debug_struct("SqliteApprovals")
            .field("path", &path)
            .finish()
    }
}

impl SqliteApprovals {
    /// Opens (creating if needed) the database file at `path` and its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ApprovalError> {
        let path = path.as_ref();
        let fail = |e: String| {
            ApprovalError::Store(format!(
                "cannot open the approval database {}: {e}",
                path.display()
            ))
        };
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        Self::init(conn).map_err(fail)
    }

    /// A private in-memory database, for tests: nothing is shared or kept.
    pub fn open_in_memory() -> Result<Self, ApprovalError> {
        let conn = Connection::open_in_memory().map_err(store)?;
        Self::init(conn).map_err(ApprovalError::Store)
    }

    fn init(conn: Connection) -> Result<Self, String> {
        crate::authority::AuthorityDb::init(conn, SCHEMA, SCHEMA_VERSION, BUSY_TIMEOUT)
            .map(|db| SqliteApprovals { db })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.db.lock()
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed only if it succeeds.
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ApprovalError>,
    ) -> Result<T, ApprovalError> {
        self.db.write(f, store)
    }
}

fn store(e: rusqlite::Error) -> ApprovalError {
    ApprovalError::Store(format!("sqlite: {e}"))
}

/// Reads an approval from a row selected with [`COLUMNS`].
fn approval_row(row: &Row<'_>) -> rusqlite::Result<Approval> {
    let args: String = row.get(6)?;
    let status: String = row.get(9)?;
    let bad = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(e),
        )
    };
    Ok(Approval {
        id: row.get(0)?,
        fingerprint: row.get(1)?,
        grant_id: row.get(2)?,
        grant_label: row.get(3)?,
        server: row.get(4)?,
        tool: row.get(5)?,
        args: serde_json::from_str(&args).map_err(|e| bad(6, e.to_string()))?,
        rule: row.get(7)?,
        reason: row.get(8)?,
        status: status.parse().map_err(|e| bad(9, e))?,
        created_at: row.get(10)?,
        expires_at: row.get(11)?,
        decided_at: row.get(12)?,
        decided_by: row.get(13)?,
        decision_reason: row.get(14)?,
        valid_until: row.get(15)?,
        consumed_at: row.get(16)?,
    })
}

fn by_id(conn: &Connection, id: &str) -> Result<Option<Approval>, ApprovalError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"))
        .and_then(|mut s| s.query_row(params![id], approval_row).optional())
        .map_err(store)
}

/// The newest approval of `fingerprint` matching `cond` (SQL over `?1` fingerprint, `?2` now).
fn find(
    conn: &Connection,
    fingerprint: &str,
    cond: &str,
    now: Millis,
) -> Result<Option<Approval>, ApprovalError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM approvals WHERE fingerprint = ?1 AND {cond}
         ORDER BY created_at DESC, id DESC LIMIT 1"
    ))
    .and_then(|mut s| {
        s.query_row(params![fingerprint, now], approval_row)
            .optional()
    })
    .map_err(store)
}

/// The condition of the rows that have lapsed at the time in parameter `p` (`?1`):
/// [`Approval::lapsed`] in SQL.
fn lapsed_at(p: &str) -> String {
    format!(
        "(status = 'pending' AND expires_at <= {p})
         OR (status = 'approved' AND consumed_at IS NULL AND valid_until <= {p})"
    )
}

/// A new pending request of `req` (of every backend).
pub(crate) fn new_request(req: &ApprovalRequest, id: String, now: Millis) -> Approval {
    Approval {
        id,
        fingerprint: req.fingerprint.clone(),
        grant_id: req.grant_id.clone(),
        grant_label: req.grant_label.clone(),
        server: req.server.clone(),
        tool: req.tool.clone(),
        args: req.args.clone(),
        rule: req.rule.clone(),
        reason: req.reason.clone(),
        status: ApprovalStatus::Pending,
        created_at: now,
        expires_at: now.saturating_add(req.timeout_ms),
        decided_at: None,
        decided_by: None,
        decision_reason: None,
        valid_until: None,
        consumed_at: None,
    }
}

impl Approval {
    /// Whether it has lapsed at `now`: pending past `expires_at`, or approved and unused past
    /// `valid_until`. (SQLite states the same rule in SQL, in `lapsed_at`.)
    pub fn lapsed(&self, now: Millis) -> bool {
        match self.status {
            ApprovalStatus::Pending => self.expires_at <= now,
            ApprovalStatus::Approved => {
                self.consumed_at.is_none() && self.valid_until.is_none_or(|t| t <= now)
            }
            _ => false,
        }
    }

    /// This approval as of `now`: a lapsed one shown as [`ApprovalStatus::Expired`] (what
    /// [`ApprovalStore::expire_lapsed`] will write).
    pub fn as_of(mut self, now: Millis) -> Approval {
        if self.lapsed(now) {
            self.status = ApprovalStatus::Expired;
        }
        self
    }

    /// The audit record of an event of this approval at `now` (`message`: `expired apr_…`,
    /// `approved apr_… by …`), the same from every place that records one.
    pub fn audit_record(&self, now: Millis, message: String) -> AuditRecord {
        let mut rec = AuditRecord::new(
            now,
            self.server.clone(),
            APPROVAL_METHOD,
            AuditDecision::Approval,
        );
        rec.grant_id = Some(self.grant_id.clone());
        rec.grant_label = Some(self.grant_label.clone());
        rec.tool = Some(self.tool.clone());
        rec.rule = Some(self.rule.clone());
        rec.message = Some(message);
        rec
    }

    /// The audit record of its expiry.
    pub fn expiry_record(&self, now: Millis) -> AuditRecord {
        self.audit_record(now, format!("expired {}", self.id))
    }
}

/// Which of a fingerprint's requests (lapsed or not: the rule reads the times) answers a check at
/// `now`, in the order `check` asks (SQLite asks the same in SQL): an approved unused one
/// (consumed by the check), else a denied one within its window, else a pending one; the
/// newest of each (creation time, then id). `None`: a new request is made.
pub(crate) fn answering(of_fingerprint: &[Approval], now: Millis) -> Option<&Approval> {
    let newest = |want: &dyn Fn(&Approval) -> bool| {
        of_fingerprint
            .iter()
            .filter(|a| want(a))
            .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
    };
    newest(&|a| {
        a.status == ApprovalStatus::Approved
            && a.consumed_at.is_none()
            && a.valid_until.is_some_and(|t| t > now)
    })
    .or_else(|| newest(&|a| a.status == ApprovalStatus::Denied && now < a.expires_at))
    .or_else(|| newest(&|a| a.status == ApprovalStatus::Pending && a.expires_at > now))
}

pub(crate) fn new_id() -> Result<String, ApprovalError> {
    let bytes = random_bytes::<8>().map_err(ApprovalError::Store)?;
    Ok(format!("{APPROVAL_ID_PREFIX}{}", hex(&bytes)))
}

/// The pending, unexpired approval `id` (a lapsed one is [`ApprovalError::NotPending`], shown
/// expired), or why not.
fn pending(conn: &Connection, id: &str, now: Millis) -> Result<Approval, ApprovalError> {
    let a = by_id(conn, id)?
        .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?
        .as_of(now);
    if a.status != ApprovalStatus::Pending {
        return Err(ApprovalError::NotPending(a));
    }
    Ok(a)
}

impl ApprovalStore for SqliteApprovals {
    fn expire_lapsed(&self, now: Millis) -> Result<Vec<Approval>, ApprovalError> {
        self.write(|conn| {
            let lapsed: Vec<Approval> = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM approvals WHERE {}",
                    lapsed_at("?1")
                ))
                .and_then(|mut s| s.query_map(params![now], approval_row)?.collect())
                .map_err(store)?;
            conn.prepare_cached(&format!(
                "UPDATE approvals SET status = 'expired' WHERE {}",
                lapsed_at("?1")
            ))
            .and_then(|mut s| s.execute(params![now]))
            .map_err(store)?;
            Ok(lapsed
                .into_iter()
                .map(|mut a| {
                    a.status = ApprovalStatus::Expired;
                    a
                })
                .collect())
        })
    }

    fn check(&self, req: &ApprovalRequest, now: Millis) -> Result<ApprovalCheck, ApprovalError> {
        // Drawn before the transaction, so the write lock is never held across a syscall
        // that could fail for reasons unrelated to the database.
        let id = new_id()?;
        let args = serde_json::to_string(&req.args)
            .map_err(|e| ApprovalError::Store(format!("arguments: {e}")))?;
        self.write(|conn| {
            // Lapsed rows are left for `expire_lapsed` (and its audit records): every query
            // below reads the times itself.
            let fp = req.fingerprint.as_str();
            if let Some(mut a) = find(
                conn,
                fp,
                "status = 'approved' AND consumed_at IS NULL AND valid_until > ?2",
                now,
            )? {
                conn.prepare_cached(
                    "UPDATE approvals SET status = 'consumed', consumed_at = ?2 WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![a.id, now]))
                .map_err(store)?;
                a.status = ApprovalStatus::Consumed;
                a.consumed_at = Some(now);
                return Ok(ApprovalCheck::Approved(a));
            }
            if let Some(a) = find(conn, fp, "status = 'denied' AND ?2 < expires_at", now)? {
                return Ok(ApprovalCheck::Denied(a));
            }
            if let Some(a) = find(conn, fp, "status = 'pending' AND expires_at > ?2", now)? {
                return Ok(ApprovalCheck::Pending {
                    approval: a,
                    new: false,
                });
            }
            let a = new_request(req, id, now);
            conn.prepare_cached(&format!(
                "INSERT INTO approvals ({COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULL, NULL, NULL,
                         NULL, NULL)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    a.id,
                    a.fingerprint,
                    a.grant_id,
                    a.grant_label,
                    a.server,
                    a.tool,
                    args,
                    a.rule,
                    a.reason,
                    a.status.as_str(),
                    a.created_at,
                    a.expires_at,
                ])
            })
            .map_err(store)?;
            Ok(ApprovalCheck::Pending {
                approval: a,
                new: true,
            })
        })
    }

    fn list(
        &self,
        status: Option<ApprovalStatus>,
        now: Millis,
    ) -> Result<Vec<Approval>, ApprovalError> {
        // Read only. The rows that may show as `status` once lapsed ones show as expired:
        // stored with it (and not lapsed), or for `expired`, also the lapsed pending and
        // approved ones.
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM approvals
                 WHERE ?1 IS NULL OR status = ?1 OR (?1 = 'expired' AND ({}))
                 ORDER BY created_at DESC, id DESC",
                lapsed_at("?2")
            ))
            .map_err(store)?;
        let rows = stmt
            .query_map(
                params![status.map(ApprovalStatus::as_str), now],
                approval_row,
            )
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(store)?;
        Ok(rows
            .into_iter()
            .map(|a| a.as_of(now))
            .filter(|a| status.is_none_or(|s| a.status == s))
            .collect())
    }

    fn get(&self, id: &str) -> Result<Approval, ApprovalError> {
        let conn = self.lock();
        by_id(&conn, id)?.ok_or_else(|| ApprovalError::NotFound(id.to_owned()))
    }

    fn approve(
        &self,
        id: &str,
        by: &str,
        valid_for_ms: Millis,
        now: Millis,
    ) -> Result<Approval, ApprovalError> {
        self.write(|conn| {
            let mut a = pending(conn, id, now)?;
            let valid_until = now.saturating_add(valid_for_ms);
            conn.prepare_cached(
                "UPDATE approvals SET status = 'approved', decided_at = ?2, decided_by = ?3,
                 valid_until = ?4 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, now, by, valid_until]))
            .map_err(store)?;
            a.status = ApprovalStatus::Approved;
            a.decided_at = Some(now);
            a.decided_by = Some(by.to_owned());
            a.valid_until = Some(valid_until);
            Ok(a)
        })
    }

    fn deny(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Approval, ApprovalError> {
        self.write(|conn| {
            let mut a = pending(conn, id, now)?;
            conn.prepare_cached(
                "UPDATE approvals SET status = 'denied', decided_at = ?2, decided_by = ?3,
                 decision_reason = ?4 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, now, by, reason]))
            .map_err(store)?;
            a.status = ApprovalStatus::Denied;
            a.decided_at = Some(now);
            a.decided_by = Some(by.to_owned());
            a.decision_reason = Some(reason.to_owned());
            Ok(a)
        })
    }
}
