//! Tool pins: the definition of each tool a server lists, as an operator approved it (or as
//! first seen, trust on first use), so that a definition that changes later — the
//! "rug-pull" — is noticed and quarantined until someone reviews it.
//!
//! One [`Pin`] per (server, tool). The gateway decides what a listing means (see
//! `portcullis-gateway`'s `pinning` module) and writes the outcome with [`PinStore::save`],
//! a compare-and-set on the pin's `version`, so that several replicas (or a replica and the
//! CLI) never overwrite each other's decisions blindly. Operators decide with
//! [`PinStore::approve`] and [`PinStore::reject`], which every backend gets from the same
//! rules ([`Pin::approved`], [`Pin::rejected`]).
//!
//! ```text
//!            first sight (tofu) ──▶ pinned ◀──────── approve ───────┐
//!  first sight (strict) ──▶ pending ──────────────────────────────┤
//!    pinned ── listed definition differs, or poisoned ──▶ quarantined ──reject──▶ rejected
//! ```
//!
//! The store never reads the clock: `now` is an argument.

// `PinError::NotQuarantined` carries the pin (the caller shows where it stands).
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

use portcullis_policy::Millis;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// The pin database's file name inside the data directory.
pub const PINS_FILE: &str = "pins.db";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS pins (
        server     TEXT NOT NULL,
        tool       TEXT NOT NULL,
        state      TEXT NOT NULL,     -- pinned quarantined pending rejected
        version    INTEGER NOT NULL,  -- bumped by every write (compare-and-set)
        pin        TEXT NOT NULL,     -- the whole Pin, JSON
        PRIMARY KEY (server, tool)
    );
";

/// How many times [`PinStore::approve`]/[`PinStore::reject`] re-read a pin that another
/// writer changed under them.
const RETRIES: usize = 8;

/// Where a tool stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinState {
    /// The listed definition is the approved one: calls pass (to the policy).
    Pinned,
    /// The listed definition differs from the approved one, or looks poisoned: hidden from
    /// `tools/list`, every call denied, until an operator approves or rejects it.
    Quarantined,
    /// A tool first seen under `pinning = "strict"`: quarantined until approved.
    Pending,
    /// An operator refused the listed definition: it stays quarantined while the server
    /// lists it; the approved one (if any) passes again when the server returns to it.
    Rejected,
}

impl PinState {
    /// Every state, in declaration order.
    pub const ALL: [PinState; 4] = [
        PinState::Pinned,
        PinState::Quarantined,
        PinState::Pending,
        PinState::Rejected,
    ];

    /// `pinned`, `quarantined`, `pending` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            PinState::Pinned => "pinned",
            PinState::Quarantined => "quarantined",
            PinState::Pending => "pending",
            PinState::Rejected => "rejected",
        }
    }

    /// Whether an operator's review is awaited (quarantined or pending).
    pub fn awaits_review(self) -> bool {
        matches!(self, PinState::Quarantined | PinState::Pending)
    }
}

impl fmt::Display for PinState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PinState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        PinState::ALL
            .into_iter()
            .find(|st| st.as_str() == lower)
            .ok_or_else(|| {
                format!(
                    "unknown pin state {s:?}; use one of pinned, quarantined, pending, rejected"
                )
            })
    }
}

/// One tool's pin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    /// The server's name.
    pub server: String,
    /// The tool's name.
    pub tool: String,
    /// Where it stands.
    pub state: PinState,
    /// The approved definition's hash (`sha256:…`); `None` while no definition was ever
    /// approved (a strict server's new tool, a tool poisoned at first sight).
    pub hash: Option<String>,
    /// The approved definition (canonical members only).
    pub definition: Option<Value>,
    /// The definition listed now that awaits review (quarantined, pending, rejected).
    pub candidate_hash: Option<String>,
    /// Its definition.
    pub candidate: Option<Value>,
    /// The members that differ between the approved and the listed definition
    /// (`description`, `inputSchema.properties.path`).
    pub changed: Vec<String>,
    /// Why it is quarantined, in words.
    pub reason: Option<String>,
    /// Poisoning findings of the listed definition, each with its evidence.
    pub findings: Vec<String>,
    /// First seen, ms since the epoch (UTC).
    pub created_at: Millis,
    /// Last changed.
    pub updated_at: Millis,
    /// Who last approved or rejected it (`tofu` for a first-sight pin).
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<Millis>,
    /// Bumped by every write; [`PinStore::save`] expects the version it read (0: a new pin).
    #[serde(default)]
    pub version: u64,
}

/// Why a pin operation failed. The messages say what to do.
#[derive(Debug)]
pub enum PinError {
    /// No pin for this server and tool.
    NotFound {
        /// Server.
        server: String,
        /// Tool.
        tool: String,
    },
    /// Nothing awaits a decision (carries the pin).
    NotQuarantined(Pin),
    /// Another writer changed the pin since it was read.
    Conflict,
    /// The store failed.
    Store(String),
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinError::NotFound { server, tool } => write!(
                f,
                "no pin for tool {tool:?} of server {server:?}; see `portcullis pins list` (a tool is pinned when the gateway first sees it listed)"
            ),
            PinError::NotQuarantined(p) => write!(
                f,
                "tool {:?} of server {:?} is {}, so there is nothing to approve or reject",
                p.tool, p.server, p.state
            ),
            PinError::Conflict => {
                f.write_str("the pin changed while it was being written; try again")
            }
            PinError::Store(e) => write!(f, "the pin store failed: {e}"),
        }
    }
}

impl std::error::Error for PinError {}

impl Pin {
    /// A pin of a tool first seen now, in `state` (`Pinned` also approves `definition`).
    pub fn first_sight(
        server: &str,
        tool: &str,
        state: PinState,
        hash: &str,
        definition: &Value,
        now: Millis,
    ) -> Pin {
        let pinned = state == PinState::Pinned;
        Pin {
            server: server.to_owned(),
            tool: tool.to_owned(),
            state,
            hash: pinned.then(|| hash.to_owned()),
            definition: pinned.then(|| definition.clone()),
            candidate_hash: (!pinned).then(|| hash.to_owned()),
            candidate: (!pinned).then(|| definition.clone()),
            changed: Vec::new(),
            reason: None,
            findings: Vec::new(),
            created_at: now,
            updated_at: now,
            decided_by: pinned.then(|| "tofu".to_owned()),
            decided_at: pinned.then_some(now),
            version: 0,
        }
    }

    /// The pin after an operator approved the listed definition: it becomes the pin.
    pub fn approved(&self, by: &str, now: Millis) -> Result<Pin, PinError> {
        if self.state == PinState::Pinned || self.candidate_hash.is_none() {
            return Err(PinError::NotQuarantined(self.clone()));
        }
        let mut p = self.clone();
        p.state = PinState::Pinned;
        p.hash = p.candidate_hash.take();
        p.definition = p.candidate.take();
        p.changed.clear();
        p.reason = None;
        p.findings.clear();
        p.decided_by = Some(by.to_owned());
        p.decided_at = Some(now);
        p.updated_at = now;
        Ok(p)
    }

    /// The pin after an operator refused the listed definition.
    pub fn rejected(&self, by: &str, now: Millis) -> Result<Pin, PinError> {
        if !self.state.awaits_review() {
            return Err(PinError::NotQuarantined(self.clone()));
        }
        let mut p = self.clone();
        p.state = PinState::Rejected;
        p.decided_by = Some(by.to_owned());
        p.decided_at = Some(now);
        p.updated_at = now;
        Ok(p)
    }
}

/// The pin port. Implementations never read the clock.
pub trait PinStore: Send + Sync {
    /// The pin of `tool` on `server`.
    fn get(&self, server: &str, tool: &str) -> Result<Option<Pin>, PinError>;

    /// Every pin (of `server` when given), sorted by server then tool.
    fn list(&self, server: Option<&str>) -> Result<Vec<Pin>, PinError>;

    /// Writes `pin` if the stored one still has `pin.version` (0: none is stored), and
    /// returns it as stored (version bumped); otherwise [`PinError::Conflict`].
    fn save(&self, pin: &Pin) -> Result<Pin, PinError>;

    /// An operator approves the listed definition of a quarantined, pending or rejected tool:
    /// it becomes the pin, and calls pass again.
    fn approve(&self, server: &str, tool: &str, by: &str, now: Millis) -> Result<Pin, PinError> {
        decide(self, server, tool, |p| p.approved(by, now))
    }

    /// An operator refuses the listed definition: the tool stays quarantined while the
    /// server lists it.
    fn reject(&self, server: &str, tool: &str, by: &str, now: Millis) -> Result<Pin, PinError> {
        decide(self, server, tool, |p| p.rejected(by, now))
    }
}

/// Reads, changes and compare-and-sets a pin, again when another writer came first.
fn decide<S: PinStore + ?Sized>(
    s: &S,
    server: &str,
    tool: &str,
    f: impl Fn(&Pin) -> Result<Pin, PinError>,
) -> Result<Pin, PinError> {
    for _ in 0..RETRIES {
        let p = s.get(server, tool)?.ok_or_else(|| PinError::NotFound {
            server: server.to_owned(),
            tool: tool.to_owned(),
        })?;
        match s.save(&f(&p)?) {
            Err(PinError::Conflict) => continue,
            r => return r,
        }
    }
    Err(PinError::Conflict)
}

/// Pins in a SQLite file (`pins.db` in the data directory; [`PINS_FILE`]), with the
/// settings of the other authority data (WAL, `synchronous=FULL`, `BEGIN IMMEDIATE`).
pub struct SqlitePins {
    db: crate::authority::AuthorityDb,
}

impl fmt::Debug for SqlitePins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.db.lock().path().map(str::to_owned);
        f.debug_struct("SqlitePins").field("path", &path).finish()
    }
}

impl SqlitePins {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PinError> {
        let path = path.as_ref();
        let fail = |e: String| {
            PinError::Store(format!(
                "cannot open the pin database {}: {e}",
                path.display()
            ))
        };
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        Self::init(conn).map_err(fail)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, PinError> {
        let conn = Connection::open_in_memory().map_err(sql)?;
        Self::init(conn).map_err(PinError::Store)
    }

    fn init(conn: Connection) -> Result<Self, String> {
        crate::authority::AuthorityDb::init(conn, SCHEMA, SCHEMA_VERSION, BUSY_TIMEOUT)
            .map(|db| SqlitePins { db })
    }
}

fn sql(e: rusqlite::Error) -> PinError {
    PinError::Store(format!("sqlite: {e}"))
}

/// A stored pin's JSON, read back.
pub(crate) fn parse(text: &str) -> Result<Pin, PinError> {
    serde_json::from_str(text)
        .map_err(|e| PinError::Store(format!("a stored pin is not readable: {e}")))
}

/// `pin` as stored: version bumped, JSON.
pub(crate) fn stored(pin: &Pin) -> Result<(Pin, String), PinError> {
    let mut p = pin.clone();
    p.version = pin.version + 1;
    let text = serde_json::to_string(&p).map_err(|e| PinError::Store(e.to_string()))?;
    Ok((p, text))
}

impl PinStore for SqlitePins {
    fn get(&self, server: &str, tool: &str) -> Result<Option<Pin>, PinError> {
        let conn = self.db.lock();
        let text: Option<String> = conn
            .prepare_cached("SELECT pin FROM pins WHERE server = ?1 AND tool = ?2")
            .and_then(|mut s| s.query_row(params![server, tool], |r| r.get(0)).optional())
            .map_err(sql)?;
        text.as_deref().map(parse).transpose()
    }

    fn list(&self, server: Option<&str>) -> Result<Vec<Pin>, PinError> {
        let conn = self.db.lock();
        let texts: Vec<String> = conn
            .prepare_cached(
                "SELECT pin FROM pins WHERE ?1 IS NULL OR server = ?1 ORDER BY server, tool",
            )
            .and_then(|mut s| s.query_map(params![server], |r| r.get(0))?.collect())
            .map_err(sql)?;
        texts.iter().map(|t| parse(t)).collect()
    }

    fn save(&self, pin: &Pin) -> Result<Pin, PinError> {
        let (p, text) = stored(pin)?;
        self.db.write(
            |conn| {
                let found: Option<u64> = conn
                    .prepare_cached("SELECT version FROM pins WHERE server = ?1 AND tool = ?2")
                    .and_then(|mut s| {
                        s.query_row(params![p.server, p.tool], |r| r.get(0))
                            .optional()
                    })
                    .map_err(sql)?;
                if found.unwrap_or(0) != pin.version {
                    return Err(PinError::Conflict);
                }
                conn.prepare_cached(
                    "INSERT INTO pins (server, tool, state, version, pin) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (server, tool) DO UPDATE
                     SET state = excluded.state, version = excluded.version, pin = excluded.pin",
                )
                .and_then(|mut s| {
                    s.execute(params![p.server, p.tool, p.state.as_str(), p.version, text])
                })
                .map_err(sql)?;
                Ok(p.clone())
            },
            sql,
        )
    }
}
