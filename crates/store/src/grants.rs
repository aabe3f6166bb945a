//! Grants: labelled bearer tokens, each bound to one server (or a list of servers, or all of
//! them: the aggregated endpoint) and carrying one policy.
//!
//! The `server` column holds the grant's server list: one name (every grant made before
//! lists existed, so old databases need no migration), names joined by `,`, or
//! [`ALL_SERVERS`]. A grant of several servers whose policy is [`OWN_POLICY`] is judged on
//! each server by that server's own policy.
//!
//! A grant is created with a random token that is returned **once** ([`Token`]); the store
//! keeps only the token's SHA-256 digest. A request presents the token as
//! `Authorization: Bearer <token>`; [`GrantStore::authenticate`] finds the grant by the
//! digest and decides whether it may use the server (see [`AuthError`] for the answers and
//! their HTTP statuses). Rotation replaces the digest, so the old token is unknown from the
//! next request on; revocation marks the grant, so its token is refused as revoked. Neither
//! needs a restart: every authentication first asks whether anything has written the file since
//! the last one — the kernel's inotify events on Linux, else SQLite (`PRAGMA data_version`) —
//! so changes made by other processes (the `portcullis grant …` commands) are seen by the next
//! request, and grants are read again only then.
//!
//! # Why a plain SHA-256, and why no timing oracle
//!
//! A token is `pcx_` followed by 64 hex digits: 256 bits from the OS CSPRNG. Nobody can
//! search that space, so a slow or keyed hash would add nothing: the digest of a stolen
//! database reveals no token, and a per-store HMAC key kept next to the digests would be
//! stolen with them.
//!
//! The lookup uses an index on the digest. How long it takes can depend on how many leading
//! bytes of the candidate's digest match stored digests; but an attacker cannot steer a
//! digest byte by byte (SHA-256 has no usable preimages), so learning "the digest of my
//! guess shares a prefix with a stored one" never brings a guess closer to a token. The row
//! found is then checked by comparing the whole stored digest with the computed one through
//! [`subtle::ConstantTimeEq`], so acceptance never rests on a short-circuiting compare.

use crate::secret::{hex, random_bytes, sha256};
use portcullis_policy::sync::LockExt;
use portcullis_policy::Millis;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Every token starts with this (recognisable in logs, secret scanners, config files).
pub const TOKEN_PREFIX: &str = "pcx_";

/// Random bytes in a token (256 bits).
pub const TOKEN_RANDOM_BYTES: usize = 32;

/// The server list of a grant of every configured server.
pub const ALL_SERVERS: &str = "*";

/// The policy name that means "each server's own policy" (registered under the server's
/// name), the default of a grant of several servers.
pub const OWN_POLICY: &str = "*";

/// Every grant id starts with this, followed by 16 hex digits.
pub const GRANT_ID_PREFIX: &str = "grt_";

/// The grant database's file name inside the data directory.
pub const GRANTS_FILE: &str = "grants.db";

/// How long a writer waits for another process's transaction before failing (closed).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema version stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS grants (
        id          TEXT PRIMARY KEY NOT NULL,  -- grt_ + 16 hex
        label       TEXT NOT NULL,
        server      TEXT NOT NULL,
        policy      TEXT,                       -- policy name; NULL: every call is denied
        token_hash  BLOB NOT NULL UNIQUE,       -- SHA-256 of the current token
        created_at  INTEGER NOT NULL,           -- ms since the epoch, UTC
        expires_at  INTEGER,
        revoked_at  INTEGER,
        rotated_at  INTEGER
    );
    -- A label names at most one live grant per server.
    CREATE UNIQUE INDEX IF NOT EXISTS grants_live_label
        ON grants (server, label) WHERE revoked_at IS NULL;
";

/// SQL: the grant's server list covers server `?1` (a name, names joined by `,`, or `*`);
/// `instr`, not `LIKE`, since `_` is a server-name character.
const COVERS_1: &str =
    "(server = ?1 OR server = '*' OR instr(',' || server || ',', ',' || ?1 || ',') > 0)";

/// [`COVERS_1`] for parameter `?2`.
const COVERS_2: &str =
    "(server = ?2 OR server = '*' OR instr(',' || server || ',', ',' || ?2 || ',') > 0)";

const COLUMNS: &str =
    "id, label, server, policy, created_at, expires_at, revoked_at, rotated_at, token_hash";

/// A grant as stored (never with its token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `grt_` + 16 hex digits.
    pub id: String,
    /// Who holds it (`alice-laptop`, `ci-runner`).
    pub label: String,
    /// The server it may use; several joined by `,`; or [`ALL_SERVERS`].
    pub server: String,
    /// Name of the policy it carries; `None`: every call is denied with rule `(no policy)`.
    pub policy: Option<String>,
    /// Creation time, ms since the epoch (UTC).
    pub created_at: Millis,
    /// From then on the token is refused as expired.
    pub expires_at: Option<Millis>,
    /// When it was revoked; its token is refused from then on.
    pub revoked_at: Option<Millis>,
    /// When its token was last replaced.
    pub rotated_at: Option<Millis>,
}

/// Whether a grant's token is accepted at some time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantStatus {
    /// Accepted.
    Active,
    /// Past `expires_at`.
    Expired,
    /// Revoked.
    Revoked,
}

impl GrantStatus {
    /// `active`, `expired` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::Expired => "expired",
            GrantStatus::Revoked => "revoked",
        }
    }
}

impl Grant {
    /// Whether the grant may use `server`.
    pub fn covers(&self, server: &str) -> bool {
        self.server == ALL_SERVERS || self.server.split(',').any(|s| s == server)
    }

    /// The policy name the grant carries on `server` ([`OWN_POLICY`]: the server's own).
    pub fn policy_on<'a>(&'a self, server: &'a str) -> Option<&'a str> {
        match self.policy.as_deref() {
            Some(OWN_POLICY) => Some(server),
            p => p,
        }
    }
    /// The grant's status at `now`. Revocation counts whatever its time (a revocation made
    /// by a process whose clock is ahead still takes effect at once) and wins over expiry.
    pub fn status(&self, now: Millis) -> GrantStatus {
        if self.revoked_at.is_some() {
            GrantStatus::Revoked
        } else if self.expires_at.is_some_and(|t| t <= now) {
            GrantStatus::Expired
        } else {
            GrantStatus::Active
        }
    }
}

/// A bearer token: returned once by [`GrantStore::create`] and [`GrantStore::rotate`],
/// never stored. `Debug` does not show it; read it with [`Token::secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token text, `pcx_` + 64 hex digits.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The token text, consuming the token.
    pub fn into_secret(self) -> String {
        self.0
    }

    pub(crate) fn generate() -> Result<Token, String> {
        let bytes = random_bytes::<TOKEN_RANDOM_BYTES>()?;
        Ok(Token(format!("{TOKEN_PREFIX}{}", hex(&bytes))))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({TOKEN_PREFIX}…)")
    }
}

/// Why a request's token was refused. Each maps to an HTTP status ([`AuthError::status`]),
/// a stable machine code ([`AuthError::code`]) and a message ([`fmt::Display`]) for the
/// JSON body ([`AuthError::body`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header (401).
    Missing,
    /// No grant has this token: mistyped, rotated away, or never issued (401).
    Unknown,
    /// The grant was revoked (401). Carries the grant, for the audit record.
    Revoked(Box<Grant>),
    /// The grant has expired (401). Carries the grant, for the audit record.
    Expired(Box<Grant>),
    /// The grant is live but bound to another server (403).
    WrongServer {
        /// The server the grant is bound to.
        grant_server: String,
        /// The grant, for the audit record.
        grant: Box<Grant>,
    },
    /// The grant database could not be read: fail closed (503).
    Store(String),
}

impl AuthError {
    /// The HTTP status: 401 (missing, unknown, revoked, expired), 403 (wrong server), 503
    /// (store error).
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing
            | AuthError::Unknown
            | AuthError::Revoked(_)
            | AuthError::Expired(_) => 401,
            AuthError::WrongServer { .. } => 403,
            AuthError::Store(_) => 503,
        }
    }

    /// A stable machine-readable code: `missing_token`, `unknown_token`, `revoked_grant`,
    /// `expired_grant`, `wrong_server`, `store_error`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Unknown => "unknown_token",
            AuthError::Revoked(_) => "revoked_grant",
            AuthError::Expired(_) => "expired_grant",
            AuthError::WrongServer { .. } => "wrong_server",
            AuthError::Store(_) => "store_error",
        }
    }

    /// The grant the token belongs to, when one was found (for the audit record).
    pub fn grant(&self) -> Option<&Grant> {
        match self {
            AuthError::Revoked(g)
            | AuthError::Expired(g)
            | AuthError::WrongServer { grant: g, .. } => Some(g),
            _ => None,
        }
    }

    /// The JSON body of the refusal: `{"error": code, "message": …}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.code(), "message": self.to_string() })
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str(
                "no bearer token: send `Authorization: Bearer <token>` with a grant's token \
                 (create one with `portcullis grant create`)",
            ),
            AuthError::Unknown => f.write_str(
                "unknown token: no grant has it (mistyped, rotated or never issued); ask the \
                 operator for the current token",
            ),
            AuthError::Revoked(g) => write!(
                f,
                "the grant {} ({}) was revoked; ask the operator for a new grant",
                g.id, g.label
            ),
            AuthError::Expired(g) => write!(
                f,
                "the grant {} ({}) has expired; ask the operator for a new grant",
                g.id, g.label
            ),
            AuthError::WrongServer {
                grant_server,
                grant,
            } => write!(
                f,
                "the grant {} ({}) is for server \"{grant_server}\", not this one; use a grant \
                 of this server (or one whose --server list names it)",
                grant.id, grant.label
            ),
            AuthError::Store(e) => write!(f, "the grant store failed: {e}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// The token of an `Authorization` header value: `Bearer <token>` (scheme
/// case-insensitive). Anything else, including an empty token, is [`AuthError::Missing`].
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let h = header.ok_or(AuthError::Missing)?.trim();
    let (scheme, rest) = h.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let token = rest.trim();
    if token.is_empty() {
        Err(AuthError::Missing)
    } else {
        Ok(token)
    }
}

/// Why a grant operation failed. The messages say what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// No grant has this id or label.
    NotFound(String),
    /// The label names several grants (on different servers, or revoked ones).
    Ambiguous {
        /// The label asked for.
        key: String,
        /// The grants it names.
        matches: Vec<Grant>,
    },
    /// A live grant with this label already exists on the server.
    Duplicate {
        /// The label.
        label: String,
        /// The server.
        server: String,
    },
    /// The grant is revoked (it cannot be rotated or revoked again).
    Revoked(String),
    /// A malformed argument (label, server or policy name).
    Invalid(String),
    /// The database failed.
    Store(String),
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantError::NotFound(k) => write!(
                f,
                "no grant has the id or label {k:?}; see `portcullis grant list`"
            ),
            GrantError::Ambiguous { key, matches } => {
                write!(f, "{key:?} names {} grants:", matches.len())?;
                for g in matches {
                    write!(
                        f,
                        " {} (server {}, {})",
                        g.id,
                        g.server,
                        if g.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "live"
                        }
                    )?;
                }
                f.write_str("; give the grant id, or the server with --server")
            }
            GrantError::Duplicate { label, server } => write!(
                f,
                "server {server:?} already has a live grant labelled {label:?}; choose another \
                 label, or rotate or revoke that grant"
            ),
            GrantError::Revoked(id) => {
                write!(f, "the grant {id} is revoked; create a new grant instead")
            }
            GrantError::Invalid(m) => f.write_str(m),
            GrantError::Store(e) => write!(f, "the grant store failed: {e}"),
        }
    }
}

impl std::error::Error for GrantError {}

/// The grant port: create, list, find, rotate, revoke, authenticate.
///
/// Implementations never read the clock: `now` (ms since the epoch, UTC) is an argument.
pub trait GrantStore: Send + Sync {
    /// Creates a grant of `label` for `server`, carrying `policy` (a policy name; `None`:
    /// every call is denied), expiring at `expires_at` if given. Returns the grant and its
    /// token — the only time the token is available.
    fn create(
        &self,
        server: &str,
        label: &str,
        policy: Option<&str>,
        expires_at: Option<Millis>,
        now: Millis,
    ) -> Result<(Grant, Token), GrantError>;

    /// All grants (revoked and expired ones too), of one server or of all, oldest first.
    fn list(&self, server: Option<&str>) -> Result<Vec<Grant>, GrantError>;

    /// The grant with this id, or labelled so (on `server`, when given). A label that names
    /// one live grant and older revoked ones resolves to the live one; otherwise a label
    /// naming several grants is [`GrantError::Ambiguous`].
    fn get(&self, id_or_label: &str, server: Option<&str>) -> Result<Grant, GrantError>;

    /// Replaces the token of grant `id`; the old one is [`AuthError::Unknown`] from now on.
    fn rotate(&self, id: &str, now: Millis) -> Result<(Grant, Token), GrantError>;

    /// Revokes grant `id`; its token is [`AuthError::Revoked`] from now on.
    fn revoke(&self, id: &str, now: Millis) -> Result<Grant, GrantError>;

    /// The live grant of `server` whose token is `token` (as sent; see [`bearer_token`]).
    fn authenticate(&self, token: &str, server: &str, now: Millis) -> Result<Grant, AuthError>;
}

/// Why a grant store could not be opened.
#[derive(Debug)]
pub struct GrantOpenError(String);

impl fmt::Display for GrantOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot open the grant database: {}", self.0)
    }
}

impl std::error::Error for GrantOpenError {}

impl From<rusqlite::Error> for GrantOpenError {
    fn from(e: rusqlite::Error) -> Self {
        GrantOpenError(e.to_string())
    }
}

/// Grants in a SQLite file (`grants.db` in the data directory; [`GRANTS_FILE`]).
///
/// WAL mode, `synchronous=FULL` (grant changes are rare and must survive a power loss: a
/// revocation that is forgotten would re-enable a token), one connection behind a mutex.
/// Grants found by a token are kept in memory only while the file is unchanged: each
/// authentication looks for a write since the last one (`Freshness`), and this store's own
/// writes empty the cache, so a change made anywhere takes effect on the next request.
pub struct SqliteGrants {
    db: crate::authority::AuthorityDb,
    /// Taken only while the connection's lock is held (connection first, then cache).
    cache: Mutex<GrantCache>,
    freshness: Freshness,
}

/// How an authentication learns that another connection may have changed the grants.
enum Freshness {
    /// inotify on the file's directory (Linux): one non-blocking read.
    Watched(crate::file_watch::FileWatch),
    /// `PRAGMA data_version`, which moves when another connection commits (a read
    /// transaction, with its lock calls).
    DataVersion,
    /// An in-memory database: no other connection can write it.
    Private,
}

/// Grants found by token digest, valid until [`Freshness`] tells of a change. Only tokens
/// that exist are kept (so random tokens cannot grow it), and at most [`GrantCache::MAX`].
#[derive(Default)]
struct GrantCache {
    /// The file's `data_version` when last asked ([`Freshness::DataVersion`] only).
    version: Option<i64>,
    found: HashMap<[u8; 32], (Grant, Vec<u8>)>,
}

impl GrantCache {
    const MAX: usize = 4096;
}

impl fmt::Debug for SqliteGrants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.lock().path().map(str::to_owned);
        f.debug_struct("SqliteGrants").field("path", &path).finish()
    }
}

impl SqliteGrants {
    /// Opens (creating if needed) the database file at `path` and its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GrantOpenError> {
        let path = path.as_ref();
        // Watching starts before the first read, so no write can fall between the two.
        let freshness = match crate::file_watch::FileWatch::open(path) {
            Some(w) => Freshness::Watched(w),
            None => Freshness::DataVersion,
        };
        let conn = Connection::open(path)
            .map_err(|e| GrantOpenError(format!("{}: {e}", path.display())))?;
        Self::init(conn, freshness)
            .map_err(|e| GrantOpenError(format!("{}: {}", path.display(), e.0)))
    }

    /// A private in-memory database, for tests: nothing is shared or kept.
    pub fn open_in_memory() -> Result<Self, GrantOpenError> {
        Self::init(Connection::open_in_memory()?, Freshness::Private)
    }

    fn init(conn: Connection, freshness: Freshness) -> Result<Self, GrantOpenError> {
        crate::authority::AuthorityDb::init(conn, SCHEMA, SCHEMA_VERSION, BUSY_TIMEOUT)
            .map(|db| SqliteGrants {
                db,
                cache: Mutex::default(),
                freshness,
            })
            .map_err(GrantOpenError)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.db.lock()
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed only if it succeeds.
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, GrantError>,
    ) -> Result<T, GrantError> {
        self.db.write(
            |conn| {
                // This connection's own commits do not move its `data_version`.
                self.cache.lock_or_recover().found.clear();
                f(conn)
            },
            store,
        )
    }
}

fn store(e: rusqlite::Error) -> GrantError {
    GrantError::Store(format!("sqlite: {e}"))
}

/// A new grant and its token, its arguments checked (of every backend).
pub(crate) fn new_grant(
    server: &str,
    label: &str,
    policy: Option<&str>,
    expires_at: Option<Millis>,
    now: Millis,
) -> Result<(Grant, Token), GrantError> {
    check_server_list(server)?;
    check_label(label)?;
    if let Some(p) = policy {
        check_policy_name(p)?;
    }
    let token = Token::generate().map_err(GrantError::Store)?;
    let grant = Grant {
        id: new_id()?,
        label: label.to_owned(),
        server: server.to_owned(),
        policy: policy.map(str::to_owned),
        created_at: now,
        expires_at,
        revoked_at: None,
        rotated_at: None,
    };
    Ok((grant, token))
}

/// Reads a grant from a row selected with [`COLUMNS`].
fn grant_row(row: &Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: row.get(0)?,
        label: row.get(1)?,
        server: row.get(2)?,
        policy: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        revoked_at: row.get(6)?,
        rotated_at: row.get(7)?,
    })
}

fn by_id(conn: &Connection, id: &str) -> Result<Option<Grant>, GrantError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM grants WHERE id = ?1"))
        .and_then(|mut s| s.query_row(params![id], grant_row).optional())
        .map_err(store)
}

/// The digest the store keeps of a token.
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    sha256(token.as_bytes())
}

/// Checks a server name: 1-64 characters of `A-Z a-z 0-9 _ -` (as in the config file).
pub fn check_server_name(server: &str) -> Result<(), GrantError> {
    if server.is_empty()
        || server.len() > 64
        || !server
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(GrantError::Invalid(format!(
            "server name {server:?}: use 1-64 characters of A-Z a-z 0-9 _ -"
        )));
    }
    Ok(())
}

/// Checks a grant's server list: [`ALL_SERVERS`], or server names ([`check_server_name`])
/// joined by `,`, none twice.
pub fn check_server_list(list: &str) -> Result<(), GrantError> {
    if list == ALL_SERVERS {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::new();
    for s in list.split(',') {
        check_server_name(s)?;
        if !seen.insert(s) {
            return Err(GrantError::Invalid(format!("server {s:?} is named twice")));
        }
    }
    Ok(())
}

/// Checks a grant label: 1-64 characters of `A-Z a-z 0-9 _ - . @ :`, not starting with
/// `grt_` (ids) or `pcx_` (tokens), so that a label never reads as either.
pub fn check_label(label: &str) -> Result<(), GrantError> {
    if label.is_empty()
        || label.len() > 64
        || !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.@:".contains(&b))
    {
        return Err(GrantError::Invalid(format!(
            "label {label:?}: use 1-64 characters of A-Z a-z 0-9 _ - . @ : (e.g. alice-laptop)"
        )));
    }
    if label.starts_with(GRANT_ID_PREFIX) || label.starts_with(TOKEN_PREFIX) {
        return Err(GrantError::Invalid(format!(
            "label {label:?}: a label may not start with {GRANT_ID_PREFIX} or {TOKEN_PREFIX}"
        )));
    }
    Ok(())
}

pub(crate) fn check_policy_name(policy: &str) -> Result<(), GrantError> {
    if policy.trim().is_empty() || policy.len() > 128 || policy.chars().any(char::is_control) {
        return Err(GrantError::Invalid(format!(
            "policy name {policy:?}: use 1-128 printable characters"
        )));
    }
    Ok(())
}

pub(crate) fn new_id() -> Result<String, GrantError> {
    let bytes = random_bytes::<8>().map_err(GrantError::Store)?;
    Ok(format!("{GRANT_ID_PREFIX}{}", hex(&bytes)))
}

impl GrantStore for SqliteGrants {
    fn create(
        &self,
        server: &str,
        label: &str,
        policy: Option<&str>,
        expires_at: Option<Millis>,
        now: Millis,
    ) -> Result<(Grant, Token), GrantError> {
        let (grant, token) = new_grant(server, label, policy, expires_at, now)?;
        self.write(|conn| {
            let taken: bool = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM grants
                     WHERE server = ?1 AND label = ?2 AND revoked_at IS NULL)",
                )
                .and_then(|mut s| s.query_row(params![server, label], |r| r.get(0)))
                .map_err(store)?;
            if taken {
                return Err(GrantError::Duplicate {
                    label: label.to_owned(),
                    server: server.to_owned(),
                });
            }
            conn.prepare_cached(&format!(
                "INSERT INTO grants ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    grant.id,
                    grant.label,
                    grant.server,
                    grant.policy,
                    grant.created_at,
                    grant.expires_at,
                    grant.revoked_at,
                    grant.rotated_at,
                    &token_digest(token.secret())[..],
                ])
            })
            .map_err(store)?;
            Ok(())
        })?;
        Ok((grant, token))
    }

    fn list(&self, server: Option<&str>) -> Result<Vec<Grant>, GrantError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM grants WHERE ?1 IS NULL OR {COVERS_1}
                 ORDER BY created_at, id"
            ))
            .map_err(store)?;
        let rows = stmt
            .query_map(params![server], grant_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(store)?;
        Ok(rows)
    }

    fn get(&self, id_or_label: &str, server: Option<&str>) -> Result<Grant, GrantError> {
        let conn = self.lock();
        if let Some(g) = by_id(&conn, id_or_label)? {
            return match server {
                Some(s) if !g.covers(s) => {
                    Err(GrantError::NotFound(format!("{id_or_label} on server {s}")))
                }
                _ => Ok(g),
            };
        }
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM grants WHERE label = ?1 AND (?2 IS NULL OR {COVERS_2})
                 ORDER BY created_at, id"
            ))
            .map_err(store)?;
        let matches = stmt
            .query_map(params![id_or_label, server], grant_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(store)?;
        by_label(id_or_label, matches)
    }

    fn rotate(&self, id: &str, now: Millis) -> Result<(Grant, Token), GrantError> {
        let token = Token::generate().map_err(GrantError::Store)?;
        let grant = self.write(|conn| {
            let mut g = by_id(conn, id)?.ok_or_else(|| GrantError::NotFound(id.to_owned()))?;
            if g.revoked_at.is_some() {
                return Err(GrantError::Revoked(g.id));
            }
            conn.prepare_cached("UPDATE grants SET token_hash = ?2, rotated_at = ?3 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, &token_digest(token.secret())[..], now]))
                .map_err(store)?;
            g.rotated_at = Some(now);
            Ok(g)
        })?;
        Ok((grant, token))
    }

    fn revoke(&self, id: &str, now: Millis) -> Result<Grant, GrantError> {
        self.write(|conn| {
            let mut g = by_id(conn, id)?.ok_or_else(|| GrantError::NotFound(id.to_owned()))?;
            if g.revoked_at.is_some() {
                return Err(GrantError::Revoked(g.id));
            }
            conn.prepare_cached("UPDATE grants SET revoked_at = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, now]))
                .map_err(store)?;
            g.revoked_at = Some(now);
            Ok(g)
        })
    }

    fn authenticate(&self, token: &str, server: &str, now: Millis) -> Result<Grant, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let digest = token_digest(token);
        let sql = |e: rusqlite::Error| AuthError::Store(format!("sqlite: {e}"));
        let conn = self.lock();
        let mut cache = self.cache.lock_or_recover();
        let changed = match &self.freshness {
            Freshness::Watched(w) => w.changed(),
            Freshness::DataVersion => {
                let version = conn
                    .prepare_cached("PRAGMA data_version")
                    .and_then(|mut s| s.query_row([], |row| row.get::<_, i64>(0)))
                    .map_err(sql)?;
                cache.version.replace(version) != Some(version)
            }
            Freshness::Private => false,
        };
        if changed {
            cache.found.clear();
        }
        if let Some(hit) = cache.found.get(&digest) {
            return admit(Some(hit.clone()), &digest, server, now);
        }
        let found = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM grants WHERE token_hash = ?1"
            ))
            .and_then(|mut s| {
                s.query_row(params![&digest[..]], |row| {
                    Ok((grant_row(row)?, row.get::<_, Vec<u8>>(8)?))
                })
                .optional()
            })
            .map_err(sql)?;
        if let Some(f) = &found {
            if cache.found.len() >= GrantCache::MAX {
                cache.found.clear();
            }
            cache.found.insert(digest, f.clone());
        }
        admit(found, &digest, server, now)
    }
}

/// What a lookup by id or label found, of every backend: a label naming one grant, or one
/// live grant and older revoked ones, resolves to it; none is `NotFound`; more is ambiguous.
pub(crate) fn by_label(id_or_label: &str, matches: Vec<Grant>) -> Result<Grant, GrantError> {
    let live: Vec<&Grant> = matches.iter().filter(|g| g.revoked_at.is_none()).collect();
    match (matches.len(), live.as_slice()) {
        (0, _) => Err(GrantError::NotFound(id_or_label.to_owned())),
        (1, _) => Ok(matches.into_iter().next().expect("one match")),
        (_, [one]) => Ok((*one).clone()),
        _ => Err(GrantError::Ambiguous {
            key: id_or_label.to_owned(),
            matches,
        }),
    }
}

/// The verdict on what a backend found by a token's `digest` (the grant and its stored
/// digest), of every backend: unknown, revoked, expired, another server's, or admitted.
pub(crate) fn admit(
    found: Option<(Grant, Vec<u8>)>,
    digest: &[u8; 32],
    server: &str,
    now: Millis,
) -> Result<Grant, AuthError> {
    let Some((grant, stored)) = found else {
        return Err(AuthError::Unknown);
    };
    // The index found the grant by digest; compare the whole digest again without
    // data-dependent branches, so acceptance never rests on a short-circuiting compare.
    if !bool::from(stored.as_slice().ct_eq(&digest[..])) {
        return Err(AuthError::Unknown);
    }
    match grant.status(now) {
        GrantStatus::Revoked => return Err(AuthError::Revoked(Box::new(grant))),
        GrantStatus::Expired => return Err(AuthError::Expired(Box::new(grant))),
        GrantStatus::Active => {}
    }
    if !grant.covers(server) {
        return Err(AuthError::WrongServer {
            grant_server: grant.server.clone(),
            grant: Box::new(grant),
        });
    }
    Ok(grant)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without inotify (or elsewhere than Linux), `PRAGMA data_version` tells a cached grant
    /// from a changed one; the integration tests cover the watched file.
    #[test]
    fn asking_sqlite_sees_another_connections_rotation_and_revocation() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let path = dir.join("grants.db");
        let a =
            SqliteGrants::init(Connection::open(&path).unwrap(), Freshness::DataVersion).unwrap();
        let b = SqliteGrants::open(&path).unwrap();
        let (g, token) = b.create("odoo", "dv", None, None, 1).unwrap();
        for at in [2, 3] {
            assert_eq!(a.authenticate(token.secret(), "odoo", at).unwrap().id, g.id);
        }
        let (_, fresh) = b.rotate(&g.id, 4).unwrap();
        assert!(matches!(
            a.authenticate(token.secret(), "odoo", 5),
            Err(AuthError::Unknown)
        ));
        assert_eq!(a.authenticate(fresh.secret(), "odoo", 5).unwrap().id, g.id);
        b.revoke(&g.id, 6).unwrap();
        assert!(matches!(
            a.authenticate(fresh.secret(), "odoo", 7),
            Err(AuthError::Revoked(_))
        ));
    }
}
