//! The audit log: one [`AuditRecord`] per decision, in a SQLite file with group commit.
//!
//! # Durability
//!
//! [`AuditLog::append`] hands the record to a single writer thread through a channel. The
//! writer takes the first waiting record, then **everything else already queued** (up to
//! [`MAX_BATCH`] records), writes them in one transaction and commits it with
//! `synchronous=FULL` in WAL mode, i.e. with an fsync of the write-ahead log; only then does
//! it complete the appenders' futures. So:
//!
//! - in [`AuditMode::Durable`] (the default) `append` resolves only when the record is on
//!   disk: the gateway awaits it before answering the client, and a crash of the process or
//!   the machine after the answer cannot lose the record;
//! - commits are eager (the writer never waits to fill a batch): a lone request pays one
//!   fsync; under load, every record that arrived during one fsync shares the next one, so
//!   throughput grows with concurrency instead of collapsing to one fsync per record;
//! - in [`AuditMode::Async`] `append` returns once the record is queued; the writer gathers
//!   records for at most `max_delay_ms` after the first one of a batch, then commits the
//!   same way. A crash loses at most the records appended in the last `max_delay_ms` plus
//!   the duration of one commit (and never a committed one). [`AuditLog::flush`] commits
//!   everything queued before it, at once.
//!
//! # Write-ahead records of forwarded calls
//!
//! In durable mode a forwarded `tools/call` is recorded twice in one row: [`AuditLog::begin`]
//! commits the decision with `upstream_status = "in flight"` **before** the call's bytes go
//! upstream, and the answer's record ([`AuditLog::complete`] of a record carrying the same
//! [`AuditRecord::intent`]) completes that row in place. Both go through the same group
//! commit, but only the first is awaited: the answer's record is queued and the client's
//! answer goes out without waiting for its commit (one fsync on a forwarded call's path, the
//! decision's). A process that dies before that commit leaves the row in flight; the next
//! `serve`/`stdio` on the data directory marks the rows of processes that no longer run as
//! [`OUTCOME_UNKNOWN`] ([`AuditLog::settle_unfinished`]), so a crash never hides a call the
//! upstream may have executed. In async mode there is no write-ahead row (its loss window
//! is the promise).
//!
//! The queue is bounded ([`QUEUE_CAPACITY`] records): when the disk cannot keep up,
//! appenders wait (asynchronously) for room rather than growing memory without bound.
//!
//! # What is stored
//!
//! Each record is one row, one column per field (the lists and the arguments as JSON text),
//! indexed by time. Rows are compact (no field names, no nulls spelled out), which matters:
//! the bytes written per commit are what an fsync pays for beyond its fixed cost. Queries
//! and the JSONL export rebuild [`AuditRecord`]s, so every exported line has every field.
//!
//! Argument **values** are not stored unless the
//! caller asks for it ([`AuditLog::set_args`] with `keep_values`); the sorted top-level
//! argument names and an HMAC-SHA256 of the canonical arguments are. The HMAC key is random
//! per database (kept in it): equal arguments give equal hashes within one log, so an
//! operator can tell that two calls had the same arguments, but low-entropy values (an enum,
//! a yes/no, a small number) cannot be recovered from an exported log by hashing guesses,
//! as they could from a plain hash.

use crate::secret::{hex, hmac_sha256, random_bytes};
use portcullis_policy::json::canonical;
use portcullis_policy::sync::LockExt;
use portcullis_policy::Millis;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

/// The audit database's file name inside the data directory.
pub const AUDIT_FILE: &str = "audit.db";

/// Most records committed in one transaction.
pub const MAX_BATCH: usize = 8192;

/// Most records queued and not yet committed; appenders wait for room beyond it.
pub const QUEUE_CAPACITY: usize = 65_536;

/// Rows deleted per transaction by [`AuditLog::retain`], so the writer is never held up long.
const DELETE_CHUNK: i64 = 10_000;

/// How long a connection waits for another's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema version stored in `PRAGMA user_version` (2: the `intent`, `issuer`, `subject` and
/// `client_id` columns).
const SCHEMA_VERSION: i64 = 2;

/// Columns added after version 1, each added to an older database when it is opened.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("intent", "TEXT"),
    ("issuer", "TEXT"),
    ("subject", "TEXT"),
    ("client_id", "TEXT"),
];

/// Created after [`ADDED_COLUMNS`] exist.
const INDEXES: &str = "
    -- The write-ahead rows still in flight (completed rows have no intent).
    CREATE INDEX IF NOT EXISTS audit_intent ON audit (intent) WHERE intent IS NOT NULL;
";

/// `upstream_status` of a write-ahead row whose answer has not come yet.
pub const IN_FLIGHT: &str = "in flight";

/// `upstream_status` of a forwarded call whose gateway stopped before the answer came: the
/// upstream may or may not have executed it.
pub const OUTCOME_UNKNOWN: &str = "unknown: the gateway stopped before the answer";

const SCHEMA: &str = "
    -- The HMAC key of audited arguments ('args_key'), random per database.
    CREATE TABLE IF NOT EXISTS meta (
        name  TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    ) WITHOUT ROWID;
    -- One row per AuditRecord; the columns are its fields.
    CREATE TABLE IF NOT EXISTS audit (
        id              INTEGER PRIMARY KEY,  -- insertion order
        time            INTEGER NOT NULL,     -- ms since the epoch, UTC
        request_id      TEXT,
        grant_id        TEXT,
        grant_label     TEXT,
        server          TEXT NOT NULL,
        session         TEXT,
        method          TEXT NOT NULL,
        tool            TEXT,
        decision        TEXT NOT NULL,
        rule            TEXT,
        message         TEXT,
        policy_name     TEXT,
        policy_hash     TEXT,
        arg_keys        TEXT,                 -- JSON array; NULL when empty
        args_hmac       TEXT,
        args            TEXT,                 -- JSON; NULL unless values are kept
        upstream_status TEXT,
        upstream_ms     INTEGER,
        gateway_us      INTEGER NOT NULL,
        counters        TEXT,                 -- JSON array; NULL when empty
        issuer          TEXT,                 -- OAuth: the token's issuer, subject, client
        subject         TEXT,
        client_id       TEXT,
        intent          TEXT                  -- '<pid>:<start>:<n>' while a forwarded call is in flight
    );
    CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
";

/// What was decided about a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    /// Forwarded.
    Allow,
    /// Refused (policy rule, limit, authentication, fail-closed error). The default.
    #[default]
    Deny,
    /// Refused because the tool is hidden from this grant.
    Hidden,
    /// Held for a human's approval.
    Approval,
    /// The gateway or the upstream failed.
    Error,
    /// Allowed, but the policy in shadow mode would have denied it.
    ShadowDeny,
}

impl AuditDecision {
    /// Every decision, in declaration order.
    pub const ALL: [AuditDecision; 6] = [
        AuditDecision::Allow,
        AuditDecision::Deny,
        AuditDecision::Hidden,
        AuditDecision::Approval,
        AuditDecision::Error,
        AuditDecision::ShadowDeny,
    ];

    /// The stored name: `allow`, `deny`, `hidden`, `approval`, `error`, `shadow_deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allow => "allow",
            AuditDecision::Deny => "deny",
            AuditDecision::Hidden => "hidden",
            AuditDecision::Approval => "approval",
            AuditDecision::Error => "error",
            AuditDecision::ShadowDeny => "shadow_deny",
        }
    }
}

impl fmt::Display for AuditDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditDecision {
    type Err = String;

    /// The stored names, plus the words people type: `allowed`, `denied`, `hide`,
    /// `approval_required`, `pending`, `errors`, `shadow`.
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "allow" | "allowed" => AuditDecision::Allow,
            "deny" | "denied" => AuditDecision::Deny,
            "hidden" | "hide" => AuditDecision::Hidden,
            "approval" | "approval_required" | "pending" => AuditDecision::Approval,
            "error" | "errors" => AuditDecision::Error,
            "shadow_deny" | "shadow_denied" | "shadow" => AuditDecision::ShadowDeny,
            _ => {
                return Err(format!(
                    "unknown decision {s:?}; use one of allow, deny, hidden, approval, error, \
                     shadow_deny"
                ))
            }
        })
    }
}

/// One audited decision. Every field is serialised (absent ones as `null`), so JSONL
/// consumers see one stable shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditRecord {
    /// When the decision was made, ms since the epoch (UTC).
    pub time: Millis,
    /// The gateway's id for the request.
    pub request_id: Option<String>,
    /// The grant (`grt_…`), when the request was authenticated (or its token was a known,
    /// refused one).
    pub grant_id: Option<String>,
    /// The grant's label.
    pub grant_label: Option<String>,
    /// The server name.
    pub server: String,
    /// The MCP session id.
    pub session: Option<String>,
    /// The JSON-RPC method (`tools/call`, `tools/list`, `initialize`, …).
    pub method: String,
    /// The tool, for `tools/call`.
    pub tool: Option<String>,
    /// What was decided.
    pub decision: AuditDecision,
    /// The rule pointer (`/tools/x/deny_if/0`, `(default deny)`, `(no policy)`, …).
    pub rule: Option<String>,
    /// The message given to the client, if any.
    pub message: Option<String>,
    /// The policy's name.
    pub policy_name: Option<String>,
    /// The policy's version hash.
    pub policy_hash: Option<String>,
    /// The top-level argument names, sorted.
    pub arg_keys: Vec<String>,
    /// HMAC-SHA256 (hex) of the canonical arguments under the log's key.
    pub args_hmac: Option<String>,
    /// The arguments themselves, only when the server's config asks for them.
    pub args: Option<Value>,
    /// What the upstream answered (e.g. `ok`, `error -32602`, `http 502`, `timeout`).
    pub upstream_status: Option<String>,
    /// Upstream latency, ms.
    pub upstream_ms: Option<u64>,
    /// Time spent in the gateway itself, µs.
    pub gateway_us: u64,
    /// Keys of the counters the call consumed.
    pub counters: Vec<String>,
    /// The OAuth access token's issuer (`auth = "oauth"`).
    pub issuer: Option<String>,
    /// The OAuth access token's subject.
    pub subject: Option<String>,
    /// The OAuth client the access token was issued to.
    pub client_id: Option<String>,
    /// The write-ahead key of a forwarded call (durable mode): the record passed to
    /// [`AuditLog::begin`] and the answer's record carry the same one, and the second
    /// completes the row of the first. Not part of the exported record.
    #[serde(skip)]
    pub intent: Option<u64>,
    /// When the call's counters were reserved (start and end, ns since the epoch), for the
    /// gateway's traces; only measured while traces are on. Not part of the exported record.
    #[serde(skip)]
    pub reserved_ns: Option<(u64, u64)>,
}

impl AuditRecord {
    /// A record with the four fields every record has; the rest empty.
    pub fn new(
        time: Millis,
        server: impl Into<String>,
        method: impl Into<String>,
        decision: AuditDecision,
    ) -> Self {
        AuditRecord {
            time,
            server: server.into(),
            method: method.into(),
            decision,
            ..AuditRecord::default()
        }
    }
}

/// The sorted top-level keys of `args` (none unless it is an object).
pub fn arg_keys(args: &Value) -> Vec<String> {
    let mut keys: Vec<String> = args
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// When [`AuditLog::append`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditMode {
    /// After the record is committed and fsynced (group commit). The default.
    #[default]
    Durable,
    /// At once; the writer commits at most `max_delay_ms` after a record arrives.
    Async {
        /// Upper bound of the wait before a commit, ms (the loss window on a crash, plus one
        /// commit's duration).
        max_delay_ms: u64,
    },
}

/// The async mode's commit delay when none is given (`"async"`), ms.
pub const DEFAULT_ASYNC_DELAY_MS: u64 = 100;

impl FromStr for AuditMode {
    type Err = String;

    /// `durable`, `async` (a 100 ms delay) or `async:250ms` (any duration `"500ms"`, `"1s"`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "durable" => Ok(AuditMode::Durable),
            None if s == "async" => Ok(AuditMode::Async {
                max_delay_ms: DEFAULT_ASYNC_DELAY_MS,
            }),
            Some(("async", d)) => portcullis_policy::window::parse_duration(d)
                .map(|max_delay_ms| AuditMode::Async { max_delay_ms })
                .ok_or_else(|| {
                    format!("audit mode {s:?}: the delay must be a duration like 100ms or 1s")
                }),
            _ => Err(format!(
                "audit mode {s:?}: use \"durable\" (the default), \"async\" or \"async:100ms\""
            )),
        }
    }
}

/// Which records a query returns. Every given criterion must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Records at or after this time (ms).
    pub since: Option<Millis>,
    /// Records before this time (ms).
    pub until: Option<Millis>,
    /// Records of this grant (id or label).
    pub grant: Option<String>,
    /// Records of this tool.
    pub tool: Option<String>,
    /// Records with this decision.
    pub decision: Option<AuditDecision>,
    /// Records of this server.
    pub server: Option<String>,
    /// At most this many: the most recent matching ones.
    pub limit: Option<usize>,
}

/// Why an audit operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditError {
    /// The database failed (disk full, locked for too long, corrupt…).
    Store(String),
    /// The writer thread is gone (the log was closed or the thread panicked).
    Closed,
    /// A stored record could not be read back, or an export could not be written.
    Io(String),
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::Store(e) => write!(f, "the audit log failed: {e}"),
            AuditError::Closed => f.write_str("the audit log is closed"),
            AuditError::Io(e) => write!(f, "audit log: {e}"),
        }
    }
}

impl std::error::Error for AuditError {}

fn store(e: rusqlite::Error) -> AuditError {
    AuditError::Store(format!("sqlite: {e}"))
}

/// Upper bounds of the batch-size buckets of [`AuditStats::batch_sizes`]: 1, 2, 4, … 1024
/// records (a last bucket takes the larger batches, up to [`MAX_BATCH`]).
pub const BATCH_SIZE_BOUNDS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Counters of the writer, for metrics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Records committed.
    pub committed: u64,
    /// Records whose commit failed.
    pub failed: u64,
    /// Transactions committed (records per batch = committed / batches).
    pub batches: u64,
    /// Committed transactions by their number of records: `batch_sizes[i]` counts those of
    /// more than `BATCH_SIZE_BOUNDS[i - 1]` and at most [`BATCH_SIZE_BOUNDS`]`[i]` records;
    /// the last entry those above 1024 (not cumulative; they add up to `batches`, and the
    /// sizes to `committed`).
    pub batch_sizes: [u64; BATCH_SIZE_BOUNDS.len() + 1],
}

#[derive(Default)]
struct Stats {
    committed: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    batch_sizes: [AtomicU64; BATCH_SIZE_BOUNDS.len() + 1],
}

/// The [`AuditStats::batch_sizes`] bucket of a commit of `n` (at least 1) records.
fn batch_bucket(n: usize) -> usize {
    (n.max(1).next_power_of_two().trailing_zeros() as usize).min(BATCH_SIZE_BOUNDS.len())
}

/// A record ready for the writer: the record, with its JSON-valued fields encoded by the
/// appender (in parallel, off the writer thread).
struct Row {
    rec: AuditRecord,
    arg_keys: Option<String>,
    args: Option<String>,
    counters: Option<String>,
    /// The write-ahead key (`<owner>:<n>`), when the row begins or completes a forwarded call.
    intent: Option<String>,
    /// Whether the row begins a forwarded call (else it completes one, or stands alone).
    begins: bool,
}

impl Row {
    fn new(mut rec: AuditRecord, owner: Option<&str>, begins: bool) -> Row {
        // Encoded straight from the strings (no intermediate `Value` of copies).
        let list = |v: &[String]| {
            (!v.is_empty()).then(|| serde_json::to_string(v).expect("strings encode"))
        };
        Row {
            arg_keys: list(&rec.arg_keys),
            args: rec.args.take().map(|a| a.to_string()),
            counters: list(&rec.counters),
            intent: owner.and_then(|o| rec.intent.map(|n| format!("{o}:{n}"))),
            begins,
            rec,
        }
    }
}

/// The columns, in the order [`Writer::commit`] binds and [`read_row`] reads them.
const COLUMNS: &str = "time, request_id, grant_id, grant_label, server, session, method, tool, \
     decision, rule, message, policy_name, policy_hash, arg_keys, args_hmac, args, \
     upstream_status, upstream_ms, gateway_us, counters, issuer, subject, client_id";

/// How many names [`COLUMNS`] lists; `intent` is bound after them, as `?{N_COLUMNS + 1}`.
const N_COLUMNS: usize = 23;

/// Rebuilds a record from a row selected with [`COLUMNS`].
fn read_row(row: &rusqlite::Row<'_>) -> Result<AuditRecord, AuditError> {
    fn json<T: serde::de::DeserializeOwned>(
        row: &rusqlite::Row<'_>,
        i: usize,
    ) -> Result<Option<T>, AuditError> {
        let text: Option<String> = row.get(i).map_err(store)?;
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| AuditError::Io(format!("a stored record is unreadable: {e}")))
    }
    let decision: String = row.get(8).map_err(store)?;
    Ok(AuditRecord {
        time: row.get(0).map_err(store)?,
        request_id: row.get(1).map_err(store)?,
        grant_id: row.get(2).map_err(store)?,
        grant_label: row.get(3).map_err(store)?,
        server: row.get(4).map_err(store)?,
        session: row.get(5).map_err(store)?,
        method: row.get(6).map_err(store)?,
        tool: row.get(7).map_err(store)?,
        decision: decision.parse().map_err(AuditError::Io)?,
        rule: row.get(9).map_err(store)?,
        message: row.get(10).map_err(store)?,
        policy_name: row.get(11).map_err(store)?,
        policy_hash: row.get(12).map_err(store)?,
        arg_keys: json(row, 13)?.unwrap_or_default(),
        args_hmac: row.get(14).map_err(store)?,
        args: json(row, 15)?,
        upstream_status: row.get(16).map_err(store)?,
        upstream_ms: row.get(17).map_err(store)?,
        gateway_us: row.get(18).map_err(store)?,
        counters: json(row, 19)?.unwrap_or_default(),
        issuer: row.get(20).map_err(store)?,
        subject: row.get(21).map_err(store)?,
        client_id: row.get(22).map_err(store)?,
        intent: None,
        reserved_ns: None,
    })
}

type Done = oneshot::Sender<Result<(), AuditError>>;

enum Msg {
    /// A record; `done` is completed after its commit (durable mode).
    Append(Box<Row>, Option<Done>),
    /// Commit everything queued before this, then complete.
    Flush(Done),
}

/// The audit log: appends through a group-commit writer thread, queries on a second
/// connection. See the [module documentation](self) for the durability guarantees.
///
/// Dropping the log commits what is queued and waits for the writer to finish.
pub struct AuditLog {
    tx: Option<mpsc::Sender<Msg>>,
    writer: Option<JoinHandle<()>>,
    slots: Arc<Semaphore>,
    stats: Arc<Stats>,
    reader: Mutex<Connection>,
    key: [u8; 32],
    mode: AuditMode,
    path: PathBuf,
    /// This process's prefix of write-ahead keys: `<pid>:<ms at open>`.
    owner: String,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .finish()
    }
}

fn connect(path: &Path) -> Result<Connection, AuditError> {
    let conn = Connection::open(path)
        .map_err(|e| AuditError::Store(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(store)?;
    Ok(conn)
}

impl AuditLog {
    /// Opens (creating if needed) the audit database at `path` and starts its writer.
    pub fn open(path: impl AsRef<Path>, mode: AuditMode) -> Result<AuditLog, AuditError> {
        let path = path.as_ref().to_path_buf();
        let mut writer = connect(&path)?;
        let _mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(store)?;
        // WAL + FULL: every commit fsyncs the log before it returns.
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(store)?;
        let key = {
            let tx = writer
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store)?;
            let version: i64 = tx
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(store)?;
            if version > SCHEMA_VERSION {
                return Err(AuditError::Store(format!(
                    "{}: schema version {version} is newer than this build's {SCHEMA_VERSION}; \
                     use a newer portcullis",
                    path.display()
                )));
            }
            tx.execute_batch(SCHEMA).map_err(store)?;
            for (column, kind) in ADDED_COLUMNS {
                let present: bool = tx
                    .query_row(
                        "SELECT COUNT(*) > 0 FROM pragma_table_info('audit') WHERE name = ?1",
                        [column],
                        |r| r.get(0),
                    )
                    .map_err(store)?;
                if !present {
                    tx.execute_batch(&format!("ALTER TABLE audit ADD COLUMN {column} {kind}"))
                        .map_err(store)?;
                }
            }
            tx.execute_batch(INDEXES).map_err(store)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(store)?;
            let stored: Option<Vec<u8>> = tx
                .query_row("SELECT value FROM meta WHERE name = 'args_key'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(store)?;
            let key: [u8; 32] = match stored.map(<[u8; 32]>::try_from) {
                Some(Ok(k)) => k,
                Some(Err(_)) => {
                    return Err(AuditError::Store(format!(
                        "{}: the stored argument key is not 32 bytes",
                        path.display()
                    )))
                }
                None => {
                    let k = random_bytes::<32>().map_err(AuditError::Store)?;
                    tx.execute(
                        "INSERT INTO meta (name, value) VALUES ('args_key', ?1)",
                        params![&k[..]],
                    )
                    .map_err(store)?;
                    k
                }
            };
            tx.commit().map_err(store)?;
            key
        };
        let reader = connect(&path)?;
        let (tx, rx) = mpsc::channel();
        let slots = Arc::new(Semaphore::new(QUEUE_CAPACITY));
        let stats = Arc::new(Stats::default());
        let w = Writer {
            conn: writer,
            rx,
            mode,
            slots: Arc::clone(&slots),
            stats: Arc::clone(&stats),
        };
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || w.run())
            .map_err(|e| AuditError::Store(format!("cannot start the audit writer: {e}")))?;
        Ok(AuditLog {
            tx: Some(tx),
            writer: Some(handle),
            slots,
            stats,
            reader: Mutex::new(reader),
            key,
            mode,
            path,
            owner: format!("{}:{}", std::process::id(), now_ms()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mode the log was opened in.
    pub fn mode(&self) -> AuditMode {
        self.mode
    }

    /// The writer's counters.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            committed: self.stats.committed.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
            batches: self.stats.batches.load(Ordering::Relaxed),
            batch_sizes: std::array::from_fn(|i| self.stats.batch_sizes[i].load(Ordering::Relaxed)),
        }
    }

    /// HMAC-SHA256 (hex) of the canonical form of `args` under this log's key.
    pub fn args_hmac(&self, args: &Value) -> String {
        hex(&hmac_sha256(&self.key, canonical(args).as_bytes()))
    }

    /// Fills `rec.arg_keys` and `rec.args_hmac` from `args`, and `rec.args` only if
    /// `keep_values` (the server's `audit_arguments = true`).
    pub fn set_args(&self, rec: &mut AuditRecord, args: &Value, keep_values: bool) {
        rec.arg_keys = arg_keys(args);
        rec.args_hmac = Some(self.args_hmac(args));
        rec.args = keep_values.then(|| args.clone());
    }

    fn send(&self, msg: Msg) -> Result<(), AuditError> {
        self.tx
            .as_ref()
            .ok_or(AuditError::Closed)?
            .send(msg)
            .map_err(|_| AuditError::Closed)
    }

    /// Appends a record. Durable mode: resolves once it is committed and fsynced. Async
    /// mode: resolves once it is queued. Either waits (without blocking the runtime) while
    /// the queue is full. A store error is returned to every appender of the failed batch:
    /// the caller should fail closed.
    ///
    /// Cancelling the future does not withdraw the record: once queued it is written.
    ///
    /// A record carrying an [`intent`](AuditRecord::intent) completes the row its
    /// [`begin`](Self::begin) wrote (or stands alone when there is none, as in async mode).
    pub async fn append(&self, rec: AuditRecord) -> Result<(), AuditError> {
        self.enqueue(Box::new(self.row(rec, false))).await
    }

    /// Write-ahead (durable mode): commits `rec` (which carries an
    /// [`intent`](AuditRecord::intent)) as a call in flight before it is forwarded; the
    /// answer's record completes it. Async mode writes nothing here (the answer's record is
    /// the only one) and returns at once.
    pub async fn begin(&self, mut rec: AuditRecord) -> Result<(), AuditError> {
        if self.mode != AuditMode::Durable || rec.intent.is_none() {
            return Ok(());
        }
        rec.upstream_status.get_or_insert_with(|| IN_FLIGHT.into());
        self.enqueue(Box::new(self.row(rec, true))).await
    }

    /// The answer's record of a call [`begin`](Self::begin) wrote ahead. Durable mode: it goes
    /// into the next group commit (the writer starts one at once) and this resolves when it is
    /// queued, not when it is on disk: the call's decision is durable already, and a crash
    /// before this commit leaves the row in flight, settled as [`OUTCOME_UNKNOWN`]. So an
    /// answer waits for one fsync (the write-ahead), not two. A record without an intent, or
    /// async mode: [`append`](Self::append).
    pub async fn complete(&self, rec: AuditRecord) -> Result<(), AuditError> {
        if self.mode != AuditMode::Durable || rec.intent.is_none() {
            return self.append(rec).await;
        }
        self.slots
            .acquire()
            .await
            .map_err(|_| AuditError::Closed)?
            .forget();
        self.send(Msg::Append(Box::new(self.row(rec, false)), None))
    }

    /// Whether forwarded calls are recorded before they go upstream ([`begin`](Self::begin)).
    pub fn writes_ahead(&self) -> bool {
        self.mode == AuditMode::Durable
    }

    /// The row for `rec`: its write-ahead key only where a row of it exists or is begun
    /// (durable mode).
    fn row(&self, rec: AuditRecord, begins: bool) -> Row {
        let owner = (self.mode == AuditMode::Durable).then_some(self.owner.as_str());
        Row::new(rec, owner, begins)
    }

    /// Marks the write-ahead rows of processes that no longer run as [`OUTCOME_UNKNOWN`]
    /// (their gateway stopped between forwarding a call and its answer); returns how many.
    /// Rows of running processes (another `stdio` gateway on the same data directory) are
    /// left alone; so are all rows where liveness cannot be told (no `/proc`).
    pub fn settle_unfinished(&self) -> Result<u64, AuditError> {
        let conn = self.reader();
        let owners: Vec<String> = conn
            .prepare(
                "SELECT DISTINCT substr(intent, 1, instr(intent, ':') - 1) FROM audit
                 WHERE intent IS NOT NULL",
            )
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(store)?;
        let mut total = 0u64;
        for pid in owners {
            if process_runs(&pid) {
                continue;
            }
            let n = conn
                .execute(
                    "UPDATE audit SET upstream_status = ?1, intent = NULL
                     WHERE intent IS NOT NULL AND intent LIKE ?2",
                    params![OUTCOME_UNKNOWN, format!("{pid}:%")],
                )
                .map_err(store)?;
            total += n as u64;
        }
        Ok(total)
    }

    /// Waits for room in the queue, then queues `row` (durable: and waits for its commit).
    async fn enqueue(&self, row: Box<Row>) -> Result<(), AuditError> {
        self.slots
            .acquire()
            .await
            .map_err(|_| AuditError::Closed)?
            .forget();
        match self.mode {
            AuditMode::Durable => {
                let (done, wait) = oneshot::channel();
                self.send(Msg::Append(row, Some(done)))?;
                wait.await.map_err(|_| AuditError::Closed)?
            }
            AuditMode::Async { .. } => self.queue_async(row),
        }
    }

    /// [`append`](Self::append) for synchronous code. Must not be called from inside an
    /// async runtime (it blocks the thread).
    pub fn append_blocking(&self, rec: AuditRecord) -> Result<(), AuditError> {
        let row = Box::new(self.row(rec, false));
        loop {
            match self.slots.try_acquire() {
                Ok(p) => {
                    p.forget();
                    break;
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(tokio::sync::TryAcquireError::Closed) => return Err(AuditError::Closed),
            }
        }
        match self.mode {
            AuditMode::Durable => {
                let (done, wait) = oneshot::channel();
                self.send(Msg::Append(row, Some(done)))?;
                wait.blocking_recv().map_err(|_| AuditError::Closed)?
            }
            AuditMode::Async { .. } => self.queue_async(row),
        }
    }

    /// Resolves once every record appended before the call is committed.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        self.send(Msg::Flush(done))?;
        self.wake();
        wait.await.map_err(|_| AuditError::Closed)?
    }

    /// [`flush`](Self::flush) for synchronous code (not from inside an async runtime).
    pub fn flush_blocking(&self) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        self.send(Msg::Flush(done))?;
        self.wake();
        wait.blocking_recv().map_err(|_| AuditError::Closed)?
    }

    /// Commits what is queued and stops the writer (also what dropping the log does).
    /// Blocking: call it outside the runtime or in `spawn_blocking`.
    pub fn close(mut self) -> Result<(), AuditError> {
        self.shutdown()
    }

    /// Async mode: queues a row without waking the writer, unless a batch's worth waits.
    fn queue_async(&self, row: Box<Row>) -> Result<(), AuditError> {
        self.send(Msg::Append(row, None))?;
        if self.slots.available_permits() + MAX_BATCH <= QUEUE_CAPACITY {
            self.wake();
        }
        Ok(())
    }

    /// Unparks the writer if it sleeps out an async batch window.
    fn wake(&self) {
        if let Some(h) = &self.writer {
            h.thread().unpark();
        }
    }

    fn shutdown(&mut self) -> Result<(), AuditError> {
        drop(self.tx.take());
        self.wake();
        match self.writer.take() {
            Some(h) => h.join().map_err(|_| AuditError::Closed),
            None => Ok(()),
        }
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock_or_recover()
    }

    /// Calls `each` with every record matching `filter`, oldest first (with a limit: the
    /// most recent `limit` ones, still oldest first).
    fn scan(
        &self,
        filter: &AuditFilter,
        mut each: impl FnMut(AuditRecord) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let mut cond = String::from("1 = 1");
        let mut args: Vec<SqlValue> = Vec::new();
        let mut arg = |cond: &mut String, sql: &str, v: SqlValue| {
            args.push(v);
            cond.push_str(&sql.replace('?', &format!("?{}", args.len())));
        };
        if let Some(t) = filter.since {
            arg(&mut cond, " AND time >= ?", SqlValue::Integer(clamp(t)));
        }
        if let Some(t) = filter.until {
            arg(&mut cond, " AND time < ?", SqlValue::Integer(clamp(t)));
        }
        if let Some(g) = &filter.grant {
            // Both placeholders become the same parameter.
            arg(
                &mut cond,
                " AND (grant_id = ? OR grant_label = ?)",
                SqlValue::Text(g.clone()),
            );
        }
        if let Some(t) = &filter.tool {
            arg(&mut cond, " AND tool = ?", SqlValue::Text(t.clone()));
        }
        if let Some(d) = filter.decision {
            arg(
                &mut cond,
                " AND decision = ?",
                SqlValue::Text(d.as_str().into()),
            );
        }
        if let Some(s) = &filter.server {
            arg(&mut cond, " AND server = ?", SqlValue::Text(s.clone()));
        }
        let sql = match filter.limit {
            Some(n) => {
                args.push(SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
                format!(
                    "SELECT {COLUMNS} FROM (SELECT * FROM audit WHERE {cond}
                     ORDER BY time DESC, id DESC LIMIT ?{}) ORDER BY time, id",
                    args.len()
                )
            }
            None => format!("SELECT {COLUMNS} FROM audit WHERE {cond} ORDER BY time, id"),
        };
        let conn = self.reader();
        let mut stmt = conn.prepare(&sql).map_err(store)?;
        let mut rows = stmt.query(params_from_iter(args)).map_err(store)?;
        while let Some(row) = rows.next().map_err(store)? {
            each(read_row(row)?)?;
        }
        Ok(())
    }

    /// The records matching `filter`, oldest first (with a limit: the most recent `limit`
    /// matching records, oldest first). Sees only committed records.
    pub fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuditError> {
        let mut out = Vec::new();
        self.scan(filter, |rec| {
            out.push(rec);
            Ok(())
        })?;
        Ok(out)
    }

    /// Writes the records matching `filter` as JSON Lines (one [`AuditRecord`] per line,
    /// every field present), oldest first; returns how many.
    pub fn export_jsonl(
        &self,
        out: &mut dyn Write,
        filter: &AuditFilter,
    ) -> Result<u64, AuditError> {
        let mut n = 0;
        self.scan(filter, |rec| {
            serde_json::to_writer(&mut *out, &rec)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| AuditError::Io(format!("cannot write the export: {e}")))?;
            n += 1;
            Ok(())
        })?;
        out.flush()
            .map_err(|e| AuditError::Io(format!("cannot write the export: {e}")))?;
        Ok(n)
    }

    /// Retention: deletes the records older than `cutoff` (ms), a chunk per transaction so
    /// the writer is never held up for long. Returns how many were deleted. The file does not
    /// shrink (no auto-vacuum: it made every commit about a third dearer); new records
    /// reuse the freed pages, so a steady retention keeps the file at a steady size.
    pub fn retain(&self, cutoff: Millis) -> Result<u64, AuditError> {
        let conn = self.reader();
        let mut total = 0u64;
        loop {
            let n = conn
                .prepare_cached(
                    "DELETE FROM audit WHERE id IN
                     (SELECT id FROM audit WHERE time < ?1 LIMIT ?2)",
                )
                .and_then(|mut s| s.execute(params![clamp(cutoff), DELETE_CHUNK]))
                .map_err(store)?;
            total += n as u64;
            if (n as i64) < DELETE_CHUNK {
                break;
            }
        }
        Ok(total)
    }

    /// How many records match `filter` (its limit ignored).
    pub fn count(&self, filter: &AuditFilter) -> Result<u64, AuditError> {
        let mut n = 0;
        let f = AuditFilter {
            limit: None,
            ..filter.clone()
        };
        self.scan(&f, |_| {
            n += 1;
            Ok(())
        })?;
        Ok(n)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn clamp(t: Millis) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Whether the process `pid` (a decimal string) runs; true when that cannot be told.
fn process_runs(pid: &str) -> bool {
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return false; // not a key this build writes: nobody will complete it
    }
    if pid == std::process::id().to_string() {
        return true;
    }
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid).exists()
}

/// `INSERT` of the [`COLUMNS`] and `intent`.
static INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let params: Vec<String> = (1..=N_COLUMNS + 1).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO audit ({COLUMNS}, intent) VALUES ({})",
        params.join(", ")
    )
});

/// The columns an answer's record may change in the row its write-ahead wrote: the outcome.
/// The others (who called, what, under which policy, with which arguments) name the call,
/// which cannot change between its decision and its answer.
const OUTCOME: [&str; 7] = [
    "decision",
    "rule",
    "message",
    "upstream_status",
    "upstream_ms",
    "gateway_us",
    "counters",
];

/// `UPDATE` of the [`OUTCOME`] columns of the row whose `intent` is the last parameter, which
/// it clears; bound with the same parameters as [`INSERT`]. Leaving `time` alone leaves the
/// time index alone, and the identity columns are not rewritten.
static COMPLETE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let set: Vec<String> = COLUMNS
        .split(", ")
        .enumerate()
        .filter(|(_, c)| OUTCOME.contains(c))
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect();
    format!(
        "UPDATE audit SET {}, intent = NULL WHERE intent = ?{}",
        set.join(", "),
        N_COLUMNS + 1
    )
});

/// The writer thread's state.
struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Msg>,
    mode: AuditMode,
    slots: Arc<Semaphore>,
    stats: Arc<Stats>,
}

impl Writer {
    fn run(mut self) {
        let mut rows: Vec<Row> = Vec::with_capacity(256);
        let mut waiters: Vec<Done> = Vec::with_capacity(256);
        loop {
            let Ok(first) = self.rx.recv() else {
                return; // every sender is gone and the queue is empty
            };
            let mut flush_now = take(first, &mut rows, &mut waiters);
            let deadline = match self.mode {
                AuditMode::Async { max_delay_ms } => {
                    Some(Instant::now() + Duration::from_millis(max_delay_ms))
                }
                AuditMode::Durable => None,
            };
            let mut closed = false;
            if let Some(d) = deadline {
                // Async: sleep until the deadline instead of waking for every record (a
                // wake-up per record costs the request path a futex call and a context
                // switch); a flush, a shutdown or a queue of a batch's worth unpark it early.
                // What is queued already is taken first: a flush sent while the writer was
                // still inside `recv` may have had its wake-up consumed there, and would
                // otherwise wait out the whole delay.
                closed = drain(&self.rx, &mut rows, &mut waiters, &mut flush_now);
                while !flush_now && !closed && rows.len() < MAX_BATCH {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::park_timeout(left);
                    closed = drain(&self.rx, &mut rows, &mut waiters, &mut flush_now);
                }
            }
            if !closed {
                closed = drain(&self.rx, &mut rows, &mut waiters, &mut flush_now);
            }
            let n = rows.len();
            let result = self.commit(&rows);
            match &result {
                Ok(()) => {
                    self.stats.committed.fetch_add(n as u64, Ordering::Relaxed);
                    if n > 0 {
                        self.stats.batch_sizes[batch_bucket(n)].fetch_add(1, Ordering::Relaxed);
                        self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    self.stats.failed.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            rows.clear();
            self.slots.add_permits(n);
            for w in waiters.drain(..) {
                let _ = w.send(result.clone());
            }
            if closed {
                return;
            }
        }
    }

    /// Writes `rows` in one transaction and commits it (an fsync under `synchronous=FULL`).
    fn commit(&mut self, rows: &[Row]) -> Result<(), AuditError> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(store)?;
        {
            let mut insert = tx.prepare_cached(&INSERT).map_err(store)?;
            let mut complete = tx.prepare_cached(&COMPLETE).map_err(store)?;
            for row in rows {
                let Row {
                    rec: r,
                    arg_keys,
                    args,
                    counters,
                    intent,
                    begins,
                } = row;
                let key = intent.as_deref();
                let decision = r.decision.as_str();
                let gateway_us = clamp(r.gateway_us);
                let none: Option<&str> = None;
                let mut fields: [&dyn rusqlite::ToSql; N_COLUMNS + 1] = [
                    &clamp(r.time),
                    &r.request_id,
                    &r.grant_id,
                    &r.grant_label,
                    &r.server,
                    &r.session,
                    &r.method,
                    &r.tool,
                    &decision,
                    &r.rule,
                    &r.message,
                    &r.policy_name,
                    &r.policy_hash,
                    arg_keys,
                    &r.args_hmac,
                    args,
                    &r.upstream_status,
                    &r.upstream_ms,
                    &gateway_us,
                    counters,
                    &r.issuer,
                    &r.subject,
                    &r.client_id,
                    &key,
                ];
                // A completion updates its write-ahead row; without one (its begin failed,
                // or was never written) it is inserted like any record.
                let completed =
                    !begins && key.is_some() && complete.execute(&fields[..]).map_err(store)? > 0;
                if !completed {
                    if !begins {
                        fields[N_COLUMNS] = &none;
                    }
                    insert.execute(&fields[..]).map_err(store)?;
                }
            }
        }
        tx.commit().map_err(store)
    }
}

/// Takes what is queued, up to [`MAX_BATCH`] rows; true if every sender is gone.
fn drain(
    rx: &mpsc::Receiver<Msg>,
    rows: &mut Vec<Row>,
    waiters: &mut Vec<Done>,
    flush_now: &mut bool,
) -> bool {
    while rows.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(m) => *flush_now |= take(m, rows, waiters),
            Err(e) => return matches!(e, mpsc::TryRecvError::Disconnected),
        }
    }
    false
}

/// Adds a message to the batch; true if it asks for an immediate commit.
fn take(m: Msg, rows: &mut Vec<Row>, waiters: &mut Vec<Done>) -> bool {
    match m {
        Msg::Append(row, done) => {
            rows.push(*row);
            waiters.extend(done);
            false
        }
        Msg::Flush(done) => {
            waiters.push(done);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_column_count_matches_the_column_list() {
        assert_eq!(COLUMNS.split(", ").count(), N_COLUMNS);
        assert!(INSERT.ends_with(&format!("?{})", N_COLUMNS + 1)));
        assert!(COMPLETE.ends_with(&format!("intent = ?{}", N_COLUMNS + 1)));
        assert_eq!(COMPLETE.matches(" = ?").count(), OUTCOME.len() + 1);
    }
}
