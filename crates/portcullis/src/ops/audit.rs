//! The audit log: a query with the CLI's own filter parser (`admin::audit_filter`), after the
//! records still queued in async mode are committed.

use super::{Kind, OpError, OpResult, Ops};
use portcullis_gateway::relay::system_clock;
use portcullis_store::{AuditFilter, AuditRecord};

/// Default number of audit records returned (as `portcullis audit` prints).
pub const DEFAULT_AUDIT_LIMIT: usize = 100;

/// An audit query as text, as the API's query string and the console's form give it.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// A duration back from now (`1h`) or a UTC date/time.
    pub since: Option<String>,
    /// Same forms as `since`.
    pub until: Option<String>,
    /// Grant id or label.
    pub grant: Option<String>,
    /// Tool name.
    pub tool: Option<String>,
    /// A decision (`allowed`, `denied`, …).
    pub decision: Option<String>,
    /// Server name.
    pub server: Option<String>,
    /// At most this many records (100 when absent, 0 for all).
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// Empty fields (an HTML form sends them) count as absent.
    pub fn without_empty(mut self) -> AuditQuery {
        for f in [
            &mut self.since,
            &mut self.until,
            &mut self.grant,
            &mut self.tool,
            &mut self.decision,
            &mut self.server,
        ] {
            if f.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *f = None;
            }
        }
        self
    }
}

impl Ops {
    /// The audit log and the filter of `q` (its limit as given: `None` for all).
    async fn audit_of(
        &self,
        q: AuditQuery,
    ) -> OpResult<(std::sync::Arc<portcullis_store::AuditLog>, AuditFilter)> {
        let Some(log) = self.gw.audit_log().cloned() else {
            return Err(OpError::new(
                Kind::Unavailable,
                "audit_off",
                "auditing is off ([gateway] audit = \"off\")",
            ));
        };
        let mut filter = crate::admin::audit_filter(
            q.since.as_deref(),
            q.until.as_deref(),
            q.grant,
            q.tool,
            q.decision.as_deref(),
            q.server,
            system_clock(),
            "",
        )
        .map_err(|e| OpError::new(Kind::BadRequest, "invalid_query", e))?;
        filter.limit = q.limit.filter(|&n| n > 0);
        // In async mode, records may still be queued: commit them first.
        log.flush()
            .await
            .map_err(|e| OpError::new(Kind::Internal, "audit_error", e.to_string()))?;
        Ok((log, filter))
    }

    /// Every matching record as JSON Lines, oldest first, as `portcullis audit --export`
    /// writes them.
    pub async fn audit_export(&self, q: AuditQuery) -> OpResult<Vec<u8>> {
        let (log, filter) = self.audit_of(q).await?;
        let failed = |e: String| OpError::new(Kind::Internal, "audit_error", e);
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            log.export_jsonl(&mut out, &filter).map(|_| out)
        })
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))
    }

    /// The most recent matching records, newest first.
    pub async fn audit(&self, q: AuditQuery) -> OpResult<Vec<AuditRecord>> {
        let limit = q.limit;
        let (log, mut filter) = self.audit_of(q).await?;
        filter.limit = match limit {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(DEFAULT_AUDIT_LIMIT),
        };
        let failed = |e: String| OpError::new(Kind::Internal, "audit_error", e);
        tokio::task::spawn_blocking(move || log.query(&filter))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))
    }
}
