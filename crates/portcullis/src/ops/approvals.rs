//! The approval queue: list, get, approve, deny — the store calls and the audit record of
//! `portcullis approvals` ([`crate::approvals_cli::decide`]), run off the async threads.

use super::{blocking, Kind, OpError, OpResult, Ops};
use crate::approvals_cli::{status_filter, DecideError, Decision, DEFAULT_VALID_FOR};
use portcullis_gateway::relay::system_clock;
use portcullis_store::{Approval, ApprovalError, ApprovalStore, SqliteApprovals};
use std::sync::Arc;

impl Ops {
    /// The approval store of the data directory (created on first use).
    fn approval_store(&self) -> OpResult<SqliteApprovals> {
        let dir = self.cfg.resolve(&self.cfg.gateway.data_dir);
        let fail = |m: String| OpError::new(Kind::Internal, "store_error", m);
        crate::admin::create_private_dir(&dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        SqliteApprovals::open(dir.join(portcullis_store::APPROVALS_FILE))
            .map_err(|e| fail(e.to_string()))
    }

    /// Approval requests, newest first; `status` is a status or `all` (pending when absent).
    pub async fn approvals(self: &Arc<Self>, status: Option<&str>) -> OpResult<Vec<Approval>> {
        let filter = status_filter(status.unwrap_or("pending"))
            .map_err(|e| OpError::new(Kind::BadRequest, "invalid_query", format!("status: {e}")))?;
        let ops = self.clone();
        blocking(move || {
            ops.approval_store()?
                .list(filter, system_clock())
                .map_err(approval_error)
        })
        .await
    }

    /// One approval request (a lapsed one shown as expired).
    pub async fn approval(self: &Arc<Self>, id: &str) -> OpResult<Approval> {
        let (ops, id) = (self.clone(), id.to_owned());
        blocking(move || {
            let store = ops.approval_store()?;
            Ok(store
                .get(&id)
                .map_err(approval_error)?
                .as_of(system_clock()))
        })
        .await
    }

    /// Approves request `id`: the agent's identical retry passes once within `valid_for`
    /// (`10m` when absent). Audited.
    pub async fn approve(
        self: &Arc<Self>,
        id: &str,
        by: &str,
        valid_for: Option<&str>,
    ) -> OpResult<Approval> {
        let valid_for = valid_for.unwrap_or(DEFAULT_VALID_FOR);
        let valid_for_ms = crate::approvals_cli::parse_valid_for(valid_for, "valid_for")
            .map_err(|e| OpError::new(Kind::Invalid, "invalid_decision", e))?;
        self.decide(id, by, Decision::Approve { valid_for_ms })
            .await
    }

    /// Denies request `id`; the agent's retry is told `reason`. Audited.
    pub async fn deny(self: &Arc<Self>, id: &str, by: &str, reason: &str) -> OpResult<Approval> {
        self.decide(
            id,
            by,
            Decision::Deny {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// [`crate::approvals_cli::decide`] with the gateway's event sink (the audit log and the
    /// metrics), off the async threads.
    async fn decide(self: &Arc<Self>, id: &str, by: &str, d: Decision) -> OpResult<Approval> {
        let (ops, id, by) = (self.clone(), id.to_owned(), by.to_owned());
        let rt = tokio::runtime::Handle::current();
        blocking(move || {
            let store = ops.approval_store()?;
            let gw = ops.gw.clone();
            let write = move |r| rt.block_on(gw.emit(r));
            crate::approvals_cli::decide(&store, Some(&write), &id, &by, &d, system_clock())
                .map_err(|e| match e {
                    DecideError::Store(e) => approval_error(*e),
                    e @ DecideError::Invalid(_) => {
                        OpError::new(Kind::Invalid, "invalid_decision", e.to_string())
                    }
                    e @ DecideError::Audit { .. } => {
                        OpError::new(Kind::Internal, "audit_error", e.to_string())
                    }
                })
        })
        .await
    }
}

fn approval_error(e: ApprovalError) -> OpError {
    let (kind, code) = match &e {
        ApprovalError::NotFound(_) => (Kind::NotFound, "approval_not_found"),
        ApprovalError::NotPending(_) => (Kind::Conflict, "approval_not_pending"),
        ApprovalError::Store(_) => (Kind::Internal, "store_error"),
    };
    OpError::new(kind, code, e.to_string())
}
