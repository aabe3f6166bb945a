//! The admin operations of `portcullis serve`, one code path each, with typed results and
//! errors: the admin API (`admin_api.rs`) and the web console (`console/`) are two faces
//! over them, and the CLI shares their parsers and store calls.
//!
//! | Module | Operations |
//! |---|---|
//! | `servers.rs` | configured servers; a server's tools, listed live and classified (cached) |
//! | `policies.rs` | policies in force; validate a document; write one atomically and reload |
//! | `grants.rs` | list, create, rotate, revoke |
//! | `audit.rs` | query the audit log |
//! | `counters.rs` | the usage of each limit of a server's policy |
//! | `approvals.rs` | the approval queue: list, get, approve, deny (audited) |
//! | `pins.rs` | tool pins: list, one with its diff, approve, reject (audited) |

pub mod approvals;
pub mod audit;
pub mod counters;
pub mod grants;
pub mod pins;
pub mod policies;
pub mod servers;

use portcullis_gateway::config::Config;
use portcullis_gateway::http::Gateway;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What kind of failure an operation met; each face maps it to its own answer (an HTTP
/// status, a page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request itself is malformed (unparsable query or body).
    BadRequest,
    /// The named thing does not exist.
    NotFound,
    /// The thing exists but is in a state that forbids the change.
    Conflict,
    /// Well-formed but invalid input (a policy with errors, a bad expiry).
    Invalid,
    /// A part this gateway runs without (grant store, audit log, metrics).
    Unavailable,
    /// An upstream server could not be asked.
    Upstream,
    /// A store or file failed.
    Internal,
}

/// One validation error of a policy document: where, and what to do.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Located {
    /// The locator, as `portcullis validate` prints it (`tools.x.deny_if[0].op`).
    pub locator: String,
    /// The message.
    pub message: String,
}

/// A failed operation: its kind, a stable code (`grant_not_found`), a sentence saying what to
/// do, and, for an invalid policy, every error at its locator.
#[derive(Debug)]
pub struct OpError {
    /// What kind of failure.
    pub kind: Kind,
    /// The stable code the admin API returns as `error`.
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// Policy validation errors (empty otherwise).
    pub errors: Vec<Located>,
}

impl OpError {
    /// An error without locators.
    pub fn new(kind: Kind, code: &'static str, message: impl Into<String>) -> OpError {
        OpError {
            kind,
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The result of an operation.
pub type OpResult<T> = Result<T, OpError>;

/// A cached, classified tool list of one server.
type ToolsCache = tokio::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>;

/// The running gateway and what the operations share.
pub struct Ops {
    pub(crate) gw: Arc<Gateway>,
    /// The configuration as started (server definitions change on restart only).
    pub(crate) cfg: Config,
    /// The config file, re-read for policy paths and passed to [`Gateway::reload_from`].
    pub(crate) config_path: PathBuf,
    tools: HashMap<String, Arc<ToolsCache>>,
    /// Serialises policy writes (write + reload as one step).
    policy_write: tokio::sync::Mutex<()>,
}

impl Ops {
    /// The operations over `gw`, started from `cfg` loaded from `config_path`.
    pub fn new(gw: Arc<Gateway>, cfg: Config, config_path: PathBuf) -> Ops {
        let tools = cfg
            .servers
            .iter()
            .map(|s| (s.name.clone(), Arc::new(ToolsCache::default())))
            .collect();
        Ops {
            gw,
            cfg,
            config_path,
            tools,
            policy_write: tokio::sync::Mutex::new(()),
        }
    }

    /// The gateway.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> OpResult<T> + Send + 'static,
) -> OpResult<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(OpError::new(
            Kind::Internal,
            "internal_error",
            e.to_string(),
        ))
    })
}

/// Writes `bytes` to `path` atomically, keeping the file's permissions when it exists.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_name(path);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(m) = std::fs::metadata(path) {
            f.set_permissions(m.permissions())?;
        }
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// A temporary file name next to `path` (same directory, so rename is atomic).
pub(crate) fn tmp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
