//! `portcullis approvals …`: the approval queue of a data directory, from the command line.
//!
//! `list` (pending by default), `show ID`, `approve ID`, `deny ID --reason TEXT`. The data
//! directory is found as for `grant` and `audit` (`--config FILE` or `--data-dir DIR`).
//! Every decision goes through [`decide`], which the admin API uses too: one store call and
//! one audit record per decision, whichever way it was made.

use crate::admin::{create_private_dir, now_ms, print_table, Place, StoreArgs};
use clap::{Args, Subcommand};
use portcullis_policy::window::{parse_duration, rfc3339};
use portcullis_policy::Millis;
use portcullis_store::audit::{arg_keys, AUDIT_FILE};
use portcullis_store::{
    Approval, ApprovalError, ApprovalStatus, ApprovalStore, AuditLog, AuditMode, AuditRecord,
    APPROVALS_FILE,
};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// How long an approval stays usable when no validity is given: the agent's identical retry
/// must come within this time.
pub(crate) const DEFAULT_VALID_FOR: &str = "10m";

/// `portcullis approvals …` arguments.
#[derive(Args)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    cmd: ApprovalsCmd,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum ApprovalsCmd {
    /// List approval requests, newest first (pending ones by default).
    List {
        /// pending, approved, denied, expired, consumed, or all.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one request: the call, its arguments, the rule and the decision.
    Show {
        /// Approval id (apr_…).
        id: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request: the agent's identical retry passes once.
    Approve {
        /// Approval id (apr_…).
        id: String,
        /// Who approves [default: $USER, else the account name of the current user].
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// How long the approval stays usable (90s, 10m, 1h).
        #[arg(long, value_name = "DURATION", default_value = DEFAULT_VALID_FOR)]
        valid_for: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Deny a pending request; the agent's retry is told the reason.
    Deny {
        /// Approval id (apr_…).
        id: String,
        /// Why (shown to the agent).
        #[arg(long)]
        reason: String,
        /// Who denies [default: $USER, else the account name of the current user].
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// A human's decision on a pending request.
#[derive(Clone, Debug)]
pub(crate) enum Decision {
    /// Approve; the identical retry passes once within `valid_for_ms`.
    Approve {
        /// Validity of the approval, ms.
        valid_for_ms: Millis,
    },
    /// Deny, with the reason the agent is told.
    Deny {
        /// Why.
        reason: String,
    },
}

/// Why [`decide`] failed.
#[derive(Debug)]
pub(crate) enum DecideError {
    /// A malformed argument (empty name or reason).
    Invalid(String),
    /// The store refused or failed (boxed: `NotPending` carries the whole approval).
    Store(Box<ApprovalError>),
    /// The decision is stored but its audit record could not be written.
    Audit {
        /// The decided approval.
        approval: Box<Approval>,
        /// What failed.
        error: String,
    },
}

impl std::fmt::Display for DecideError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecideError::Invalid(m) => f.write_str(m),
            DecideError::Store(e) => write!(f, "{e}"),
            DecideError::Audit { approval, error } => write!(
                f,
                "the approval {} is {} but its audit record could not be written: {error}; \
                 check the data directory's audit.db (disk space, permissions)",
                approval.id, approval.status
            ),
        }
    }
}

/// Parses a validity such as `10m`; `field` names it in the error.
pub(crate) fn parse_valid_for(s: &str, field: &str) -> Result<Millis, String> {
    match parse_duration(s) {
        Some(d) if d > 0 => Ok(d),
        _ => Err(format!(
            "{field} {s:?}: give a duration such as 90s, 10m or 1h"
        )),
    }
}

/// Records a decision on approval `id`: the store call, then its audit record (method
/// `(approval)`, decision `approval`, the approval's rule, grant, tool and a message naming
/// the decision and who made it). The one code path of the CLI and the admin API.
/// `audit`: where the record goes (the audit log, or a gateway's event sink, which also feeds
/// its metrics; `None`: auditing is off). Blocking.
pub(crate) fn decide(
    store: &dyn ApprovalStore,
    audit: Option<&dyn Fn(AuditRecord) -> Result<(), String>>,
    id: &str,
    by: &str,
    decision: &Decision,
    now: Millis,
) -> Result<Approval, DecideError> {
    let by = by.trim();
    if by.is_empty() || by.chars().any(char::is_control) {
        return Err(DecideError::Invalid(
            "the approver's name is empty; give it (--by NAME, or \"by\" in the body)".into(),
        ));
    }
    let (approval, message) = match decision {
        Decision::Approve { valid_for_ms } => {
            let a = store
                .approve(id, by, *valid_for_ms, now)
                .map_err(|e| DecideError::Store(Box::new(e)))?;
            let m = format!("approved {} by {by}", a.id);
            (a, m)
        }
        Decision::Deny { reason } => {
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(DecideError::Invalid(
                    "a denial needs a reason, which the agent is told; give --reason TEXT (or \
                     \"reason\" in the body)"
                        .into(),
                ));
            }
            let a = store
                .deny(id, by, reason, now)
                .map_err(|e| DecideError::Store(Box::new(e)))?;
            let m = format!("denied {} by {by}: {reason}", a.id);
            (a, m)
        }
    };
    if let Some(write) = audit {
        let mut rec = approval.audit_record(now, message);
        rec.arg_keys = arg_keys(&approval.args);
        if let Err(error) = write(rec) {
            return Err(DecideError::Audit {
                approval: Box::new(approval),
                error,
            });
        }
    }
    Ok(approval)
}

/// The status filter of a listing: a status, or `all` (`None`).
pub(crate) fn status_filter(s: &str) -> Result<Option<ApprovalStatus>, String> {
    if s.trim().eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e: String| format!("{e}, or all"))
}

/// The approver's default name: `$USER` (or `$LOGNAME`); when neither is set (cron, systemd
/// units, containers), the account name of the current uid; failing that, `uid N`.
pub(crate) fn default_by() -> Result<String, String> {
    let from_env = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()));
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    Ok(from_env
        .or_else(|| account_name(uid))
        .unwrap_or_else(|| format!("uid {uid}")))
}

/// The user database's name for `uid` (`getpwuid_r`), if it has one.
fn account_name(uid: libc::uid_t) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids); it is only read
        // after getpwuid_r filled it in.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `buf` outlives the call and its length is passed; `pwd` and `found` are
        // valid for writes. On success the strings in `pwd` point into `buf`.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: pw_name is a NUL-terminated string inside `buf`, which is still alive.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty());
    }
}

/// Opens the approval store (through the factory: the shared Redis when `[store] url` is
/// set), if there is one.
fn open_existing(place: &Place) -> Result<Option<Arc<dyn ApprovalStore>>, String> {
    place.store().open_approvals(&place.data_dir, false)
}

fn require_store(place: &Place) -> Result<Arc<dyn ApprovalStore>, String> {
    open_existing(place)?.ok_or_else(|| {
        format!(
            "there are no approvals in {} (no {APPROVALS_FILE}); requests appear when a call \
             matches a policy's approve_if. Check --config / --data-dir",
            place.data_dir.display()
        )
    })
}

fn store_error(e: ApprovalError, place: &Place) -> String {
    match e {
        ApprovalError::NotFound(_) => format!("{e} ({})", place.where_()),
        other => other.to_string(),
    }
}

fn print_json<T: serde::Serialize>(v: &T) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// `portcullis approvals …`.
pub fn approvals(a: ApprovalsArgs) -> Result<ExitCode, String> {
    let place = Place::find(&a.store)?;
    let now = now_ms();
    match a.cmd {
        ApprovalsCmd::List { status, json } => {
            let filter = status_filter(&status).map_err(|e| format!("--status: {e}"))?;
            let list = match open_existing(&place)? {
                Some(s) => {
                    expire_and_audit(&*s, &place.data_dir, now)?;
                    s.list(filter, now).map_err(|e| e.to_string())?
                }
                None => Vec::new(),
            };
            if json {
                print_json(&list);
            } else if list.is_empty() {
                eprintln!(
                    "no {}approval requests in {}{}",
                    filter.map(|s| format!("{s} ")).unwrap_or_default(),
                    place.data_dir.display(),
                    if filter == Some(ApprovalStatus::Pending) {
                        " (`--status all` lists decided ones too)"
                    } else {
                        ""
                    }
                );
            } else {
                print_list(&list);
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCmd::Show { id, json } => {
            let store = require_store(&place)?;
            // Expiring first makes `show` tell the truth (and audits each expiry).
            expire_and_audit(&*store, &place.data_dir, now)?;
            let ap = store.get(&id).map_err(|e| store_error(e, &place))?;
            if json {
                print_json(&ap);
            } else {
                print_one(&ap);
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCmd::Approve {
            id,
            by,
            valid_for,
            json,
        } => {
            let valid_for_ms = parse_valid_for(&valid_for, "--valid-for")?;
            let by = by.map_or_else(default_by, Ok)?;
            let ap = decide_here(&place, &id, &by, &Decision::Approve { valid_for_ms }, now)?;
            if json {
                print_json(&ap);
            } else {
                outln!(
                    "Approved {} ({} on server \"{}\" for grant \"{}\") by {by}. The agent's \
                     identical retry passes once before {}.",
                    ap.id,
                    ap.tool,
                    ap.server,
                    ap.grant_label,
                    ap.valid_until.map(rfc3339).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCmd::Deny {
            id,
            reason,
            by,
            json,
        } => {
            let by = by.map_or_else(default_by, Ok)?;
            let ap = decide_here(&place, &id, &by, &Decision::Deny { reason }, now)?;
            if json {
                print_json(&ap);
            } else {
                outln!(
                    "Denied {} ({} on server \"{}\" for grant \"{}\") by {by}. Until {} the \
                     agent's retry is told: {}",
                    ap.id,
                    ap.tool,
                    ap.server,
                    ap.grant_label,
                    rfc3339(ap.expires_at),
                    ap.decision_reason.as_deref().unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// [`decide`] against the data directory's store and audit log.
fn decide_here(
    place: &Place,
    id: &str,
    by: &str,
    decision: &Decision,
    now: Millis,
) -> Result<Approval, String> {
    let store = require_store(place)?;
    // Refuse an unknown id before the audit log is opened (or created).
    store.get(id).map_err(|e| store_error(e, place))?;
    let log = open_audit(&place.data_dir)?;
    let write = |r: AuditRecord| log.append_blocking(r).map_err(|e| e.to_string());
    let out = decide(&*store, Some(&write), id, by, decision, now);
    let closed = log.close().map_err(|e| e.to_string());
    let ap = out.map_err(|e| match e {
        DecideError::Store(e) => store_error(*e, place),
        other => other.to_string(),
    })?;
    closed.map_err(|e| {
        format!(
            "the approval {} is {} but its audit record could not be written: {e}",
            ap.id, ap.status
        )
    })?;
    Ok(ap)
}

/// Marks lapsed approvals expired and writes an audit record for each ("expired apr_…").
fn expire_and_audit(store: &dyn ApprovalStore, data_dir: &Path, now: Millis) -> Result<(), String> {
    let expired = store.expire_lapsed(now).map_err(|e| e.to_string())?;
    if expired.is_empty() {
        return Ok(());
    }
    let log = open_audit(data_dir)?;
    for a in expired {
        let rec = a.expiry_record(now);
        log.append_blocking(rec).map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub(crate) fn open_audit(data_dir: &Path) -> Result<AuditLog, String> {
    create_private_dir(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    AuditLog::open(data_dir.join(AUDIT_FILE), AuditMode::Durable).map_err(|e| e.to_string())
}

fn print_list(list: &[Approval]) {
    let rows: Vec<[String; 8]> = list
        .iter()
        .map(|a| {
            let mut reason = a.reason.replace('\n', " ");
            if reason.chars().count() > 50 {
                reason = reason.chars().take(49).collect::<String>() + "…";
            }
            [
                a.id.clone(),
                a.status.to_string(),
                a.server.clone(),
                a.grant_label.clone(),
                a.tool.clone(),
                rfc3339(a.created_at),
                rfc3339(a.expires_at),
                reason,
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "STATUS", "SERVER", "GRANT", "TOOL", "CREATED", "EXPIRES", "REASON",
        ],
        &rows,
    );
}

fn print_one(a: &Approval) {
    let opt = |t: Option<Millis>| t.map(rfc3339).unwrap_or_else(|| "-".into());
    outln!("id:              {}", a.id);
    outln!("status:          {}", a.status);
    outln!("server:          {}", a.server);
    outln!("tool:            {}", a.tool);
    outln!("grant:           {} ({})", a.grant_label, a.grant_id);
    outln!("rule:            {}", a.rule);
    outln!("reason:          {}", a.reason);
    outln!("fingerprint:     {}", a.fingerprint);
    outln!("created:         {}", rfc3339(a.created_at));
    outln!("expires:         {}", rfc3339(a.expires_at));
    outln!("decided:         {}", opt(a.decided_at));
    outln!(
        "decided by:      {}",
        a.decided_by.as_deref().unwrap_or("-")
    );
    outln!(
        "decision reason: {}",
        a.decision_reason.as_deref().unwrap_or("-")
    );
    outln!("valid until:     {}", opt(a.valid_until));
    outln!("consumed:        {}", opt(a.consumed_at));
    outln!("arguments:");
    let args = serde_json::to_string_pretty(&a.args).unwrap_or_default();
    for line in args.lines() {
        outln!("  {line}");
    }
    if a.status == ApprovalStatus::Pending {
        outln!();
        outln!(
            "Decide with `portcullis approvals approve {}` or `portcullis approvals deny {} \
             --reason TEXT`.",
            a.id,
            a.id
        );
    }
}
