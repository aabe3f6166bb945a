//! Tool pins: list, one pin with its diff, approve, reject — the store calls and the audit
//! record of `portcullis pins` ([`crate::pins_cli::decide_pin`]), on the gateway's own pin
//! store, run off the async threads.

use super::{blocking, Kind, OpError, OpResult, Ops};
use crate::pins_cli::{changes, decide_pin, find, PinDecideError};
use portcullis_gateway::definition::Change;
use portcullis_gateway::relay::system_clock;
use portcullis_store::{Pin, PinError, PinState, PinStore};
use std::sync::Arc;

/// One pin and what differs between its approved and its listed definition.
#[derive(Debug, serde::Serialize)]
pub struct PinDiff {
    /// The pin.
    pub pin: Pin,
    /// The changed members, old and new values.
    pub changes: Vec<Change>,
}

impl Ops {
    fn pin_store(&self) -> OpResult<Arc<dyn PinStore>> {
        self.gw.pins().map(|p| p.store().clone()).ok_or_else(|| {
            OpError::new(
                Kind::Unavailable,
                "pins_unavailable",
                "this gateway keeps no tool pins",
            )
        })
    }

    /// Pins sorted by server and tool, of `server` and in `state` when given.
    pub async fn pins(
        self: &Arc<Self>,
        server: Option<&str>,
        state: Option<&str>,
    ) -> OpResult<Vec<Pin>> {
        let state: Option<PinState> = state.map(str::parse).transpose().map_err(|e: String| {
            OpError::new(Kind::BadRequest, "invalid_query", format!("state: {e}"))
        })?;
        let store = self.pin_store()?;
        let server = server.map(str::to_owned);
        blocking(move || {
            let mut list = store.list(server.as_deref()).map_err(pin_error)?;
            list.retain(|p| state.is_none_or(|s| p.state == s));
            Ok(list)
        })
        .await
    }

    /// The pin of `tool` on `server`, with the members its listed definition changes.
    pub async fn pin(self: &Arc<Self>, server: &str, tool: &str) -> OpResult<PinDiff> {
        let store = self.pin_store()?;
        let (server, tool) = (server.to_owned(), tool.to_owned());
        blocking(move || {
            let pin = find(&*store, &server, &tool).map_err(pin_error)?;
            let changes = changes(&pin);
            Ok(PinDiff { pin, changes })
        })
        .await
    }

    /// Approves (`approve`) or rejects the listed definition of `tool`; audited. The next call
    /// to the tool reads its pin again.
    pub async fn decide_pin(
        self: &Arc<Self>,
        server: &str,
        tool: &str,
        by: &str,
        approve: bool,
    ) -> OpResult<Pin> {
        let store = self.pin_store()?;
        let (ops, server, tool, by) = (
            self.clone(),
            server.to_owned(),
            tool.to_owned(),
            by.to_owned(),
        );
        blocking(move || {
            let log = ops.gw.audit_log().cloned();
            let p = decide_pin(
                &*store,
                log.as_deref(),
                &server,
                &tool,
                &by,
                approve,
                system_clock(),
            )
            .map_err(|e| match e {
                PinDecideError::Store(e) => pin_error(*e),
                e @ PinDecideError::Invalid(_) => {
                    OpError::new(Kind::Invalid, "invalid_decision", e.to_string())
                }
                e @ PinDecideError::Audit { .. } => {
                    OpError::new(Kind::Internal, "audit_error", e.to_string())
                }
            })?;
            if let Some(pins) = ops.gw.pins() {
                pins.forget(&server, &tool);
            }
            Ok(p)
        })
        .await
    }
}

fn pin_error(e: PinError) -> OpError {
    let (kind, code) = match &e {
        PinError::NotFound { .. } => (Kind::NotFound, "pin_not_found"),
        PinError::NotQuarantined(_) => (Kind::Conflict, "pin_not_quarantined"),
        PinError::Conflict => (Kind::Conflict, "pin_conflict"),
        PinError::Store(_) => (Kind::Internal, "store_error"),
    };
    OpError::new(kind, code, e.to_string())
}
