//! `portcullis pins …`: the tool pins of a data directory (or the shared Redis), from the
//! command line: `list` (`--json`), `diff SERVER TOOL` (the approved and the listed definition
//! side by side, member by member), `approve SERVER TOOL`, `reject SERVER TOOL`. Each decision
//! is audited (method `(pin)`).

use crate::admin::{now_ms, print_table, Place, StoreArgs};
use crate::approvals_cli::{default_by, open_audit};
use clap::{Args, Subcommand};
use portcullis_gateway::definition;
use portcullis_policy::window::rfc3339;
use portcullis_store::{
    AuditDecision, AuditLog, AuditRecord, Pin, PinError, PinState, PinStore, PINS_FILE,
};
use std::process::ExitCode;
use std::sync::Arc;

/// The audit record's method for pin decisions.
pub(crate) const PIN_METHOD: &str = portcullis_gateway::pinned::PIN_METHOD;

/// `portcullis pins …` arguments.
#[derive(Args)]
pub struct PinsArgs {
    #[command(subcommand)]
    cmd: PinsCmd,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum PinsCmd {
    /// List pins, sorted by server and tool.
    List {
        /// Only this server's.
        #[arg(long)]
        server: Option<String>,
        /// Only pins in this state: pinned, quarantined, pending, rejected.
        #[arg(long)]
        state: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the approved and the listed definition of a tool side by side, member by member.
    Diff {
        /// Server name.
        server: String,
        /// Tool name.
        tool: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Approve the listed definition: it becomes the pin, and calls pass again.
    Approve {
        /// Server name.
        server: String,
        /// Tool name.
        tool: String,
        /// Who approves [default: $USER].
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Refuse the listed definition: the tool stays quarantined while the server lists it.
    Reject {
        /// Server name.
        server: String,
        /// Tool name.
        tool: String,
        /// Who rejects [default: $USER].
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
}

fn require_store(place: &Place) -> Result<Arc<dyn PinStore>, String> {
    place
        .store()
        .open_pins(&place.data_dir, false)?
        .ok_or_else(|| {
            format!(
            "there are no pins in {} (no {PINS_FILE}); tools are pinned when the gateway first \
             sees them listed. Check --config / --data-dir",
            place.data_dir.display()
        )
        })
}

/// `portcullis pins …`.
pub fn pins(a: PinsArgs) -> Result<ExitCode, String> {
    let place = Place::find(&a.store)?;
    match a.cmd {
        PinsCmd::List {
            server,
            state,
            json,
        } => {
            let state: Option<PinState> = state
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| format!("--state: {e}"))?;
            let mut list = match place.store().open_pins(&place.data_dir, false)? {
                Some(s) => s.list(server.as_deref()).map_err(|e| e.to_string())?,
                None => Vec::new(),
            };
            list.retain(|p| state.is_none_or(|s| p.state == s));
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else if list.is_empty() {
                eprintln!("no pins in {}", place.where_());
            } else {
                let rows: Vec<[String; 5]> = list
                    .iter()
                    .map(|p| {
                        [
                            p.server.clone(),
                            p.tool.clone(),
                            p.state.to_string(),
                            rfc3339(p.updated_at),
                            p.reason.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(&["SERVER", "TOOL", "STATE", "UPDATED", "WHY"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        PinsCmd::Diff { server, tool, json } => {
            let store = require_store(&place)?;
            let p = get(&*store, &server, &tool)?;
            let changes = changes(&p);
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"pin": p, "changes": changes})
                    )
                    .unwrap_or_default()
                );
                return Ok(ExitCode::SUCCESS);
            }
            outln!("{server}/{tool}: {}", p.state);
            if let Some(r) = &p.reason {
                outln!("why: {r}");
            }
            if changes.is_empty() {
                outln!("no listed definition differs from the approved one");
            }
            let show = |v: &Option<serde_json::Value>| {
                v.as_ref()
                    .map_or_else(|| "(absent)".to_owned(), |v| v.to_string())
            };
            let rows: Vec<[String; 3]> = changes
                .iter()
                .map(|c| [c.field.clone(), show(&c.old), show(&c.new)])
                .collect();
            if !rows.is_empty() {
                print_table(&["FIELD", "APPROVED", "LISTED NOW"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        PinsCmd::Approve { server, tool, by } => decide(&place, &server, &tool, by, true),
        PinsCmd::Reject { server, tool, by } => decide(&place, &server, &tool, by, false),
    }
}

fn get(store: &dyn PinStore, server: &str, tool: &str) -> Result<Pin, String> {
    find(store, server, tool).map_err(|e| e.to_string())
}

/// The pin of `tool` on `server`, or [`PinError::NotFound`].
#[allow(clippy::result_large_err)] // `PinError::NotQuarantined` carries a pin
pub(crate) fn find(store: &dyn PinStore, server: &str, tool: &str) -> Result<Pin, PinError> {
    store.get(server, tool)?.ok_or_else(|| PinError::NotFound {
        server: server.to_owned(),
        tool: tool.to_owned(),
    })
}

/// The members that differ between a pin's approved definition and the one listed now
/// (none when nothing awaits review).
pub(crate) fn changes(p: &Pin) -> Vec<definition::Change> {
    let empty = serde_json::json!({});
    let old = p.definition.as_ref().unwrap_or(&empty);
    match &p.candidate {
        Some(new) => definition::diff(old, new),
        None => Vec::new(),
    }
}

/// Why a pin decision failed.
#[derive(Debug)]
pub(crate) enum PinDecideError {
    /// The approver's name is empty.
    Invalid(String),
    /// The store refused or failed.
    Store(Box<PinError>),
    /// The decision was made but its audit record could not be written.
    Audit {
        /// The pin as decided.
        pin: Box<Pin>,
        /// Why the record failed.
        error: String,
    },
}

impl std::fmt::Display for PinDecideError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinDecideError::Invalid(m) => f.write_str(m),
            PinDecideError::Store(e) => write!(f, "{e}"),
            PinDecideError::Audit { pin, error } => write!(
                f,
                "the pin is {} but its audit record could not be written: {error}",
                pin.state
            ),
        }
    }
}

/// Approves (`approve`) or rejects the listed definition of `tool` on `server`, then writes
/// the decision's audit record (method `(pin)`) to `audit` (`None`: auditing is off). The one
/// code path of the CLI and the admin API. Blocking.
pub(crate) fn decide_pin(
    store: &dyn PinStore,
    audit: Option<&AuditLog>,
    server: &str,
    tool: &str,
    by: &str,
    approve: bool,
    now: u64,
) -> Result<Pin, PinDecideError> {
    let by = by.trim();
    if by.is_empty() || by.chars().any(char::is_control) {
        return Err(PinDecideError::Invalid(
            "the approver's name is empty; give it (--by NAME, or \"by\" in the body)".into(),
        ));
    }
    let p = if approve {
        store.approve(server, tool, by, now)
    } else {
        store.reject(server, tool, by, now)
    }
    .map_err(|e| PinDecideError::Store(Box::new(e)))?;
    let verb = if approve { "approved" } else { "rejected" };
    if let Some(log) = audit {
        let mut rec = AuditRecord::new(now, server, PIN_METHOD, AuditDecision::Approval);
        rec.tool = Some(tool.to_owned());
        rec.message = Some(format!(
            "{verb} the definition of {tool} by {by}{}",
            p.hash
                .as_deref()
                .filter(|_| approve)
                .map(|h| format!(" (pinned {h})"))
                .unwrap_or_default()
        ));
        if let Err(e) = log.append_blocking(rec) {
            return Err(PinDecideError::Audit {
                pin: Box::new(p),
                error: e.to_string(),
            });
        }
    }
    Ok(p)
}

fn decide(
    place: &Place,
    server: &str,
    tool: &str,
    by: Option<String>,
    approve: bool,
) -> Result<ExitCode, String> {
    let store = require_store(place)?;
    let by = match by {
        Some(b) => b,
        None => default_by()?,
    };
    let log = open_audit(&place.data_dir)?;
    let p = decide_pin(&*store, Some(&log), server, tool, &by, approve, now_ms())
        .map_err(|e| e.to_string())?;
    let verb = if approve { "approved" } else { "rejected" };
    outln!("{server}/{tool}: {verb} by {by}; now {}", p.state);
    Ok(ExitCode::SUCCESS)
}
