//! The gateway's background loops: hot reload (the config and every policy file polled once
//! a second; a valid change swaps the policy table, an invalid one is logged, audited and
//! ignored), audit retention (records older than `audit_retention` deleted at start, then
//! hourly) and the approvals sweep (lapsed requests expired, each through the event sink,
//! every [`SWEEP`], so an expiry is audited and counted even when no call comes).

use super::Gateway;
use portcullis_policy::Millis;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often lapsed approval requests are expired (and audited) without a call asking.
pub const SWEEP: Duration = Duration::from_secs(5);

impl Gateway {
    /// Starts the background loops on the current runtime: hot reload of `config_path` and
    /// what it names, the approvals sweep, and (with an audit log and a `retention`) the
    /// audit retention.
    pub fn spawn_background(self: &Arc<Self>, config_path: PathBuf, retention: Option<Millis>) {
        let gw = self.clone();
        tokio::spawn(async move { gw.watch(config_path).await });
        if let Some(store) = self.approvals.clone() {
            let gw = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SWEEP).await;
                    gw.sweep_approvals(store.clone()).await;
                }
            });
        }
        if let (Some(log), Some(keep)) = (self.audit_log().cloned(), retention) {
            tokio::spawn(async move {
                loop {
                    let cutoff = crate::relay::system_clock().saturating_sub(keep);
                    let log = log.clone();
                    match tokio::task::spawn_blocking(move || log.retain(cutoff)).await {
                        Ok(Ok(n)) if n > 0 => tracing::info!("audit retention removed {n} records"),
                        Ok(Err(e)) => tracing::error!("audit retention failed: {e}"),
                        _ => {}
                    }
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
    }

    /// Expires the lapsed approval requests and emits an audit record for each.
    async fn sweep_approvals(&self, store: Arc<dyn portcullis_store::ApprovalStore>) {
        let now = crate::relay::system_clock();
        let lapsed = match tokio::task::spawn_blocking(move || {
            store.expire_lapsed(now).map_err(|e| e.to_string())
        })
        .await
        {
            Ok(Ok(lapsed)) => lapsed,
            Ok(Err(e)) => return tracing::warn!("cannot expire lapsed approvals: {e}"),
            Err(e) => return tracing::error!("the approvals sweep failed: {e}"),
        };
        for a in lapsed {
            if let Err(e) = self.emit(a.expiry_record(now)).await {
                tracing::error!("the expiry of approval {} was not audited: {e}", a.id);
            }
        }
    }

    /// Polls the config and the files it names once a second and reloads on a change.
    async fn watch(self: Arc<Self>, config_path: PathBuf) {
        let stamp = |files: &[PathBuf]| -> Vec<Option<SystemTime>> {
            files
                .iter()
                .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
                .collect()
        };
        let mut watched = match crate::config::Config::load(&config_path) {
            Ok(c) => c.watched_files(&config_path),
            Err(_) => vec![config_path.clone()],
        };
        let mut last = stamp(&watched);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = stamp(&watched);
            if now == last {
                continue;
            }
            last = now;
            match self.reload_from(&config_path).await {
                Ok(n) => {
                    tracing::info!("configuration reloaded ({n} policies)");
                    if let Ok(c) = crate::config::Config::load(&config_path) {
                        watched = c.watched_files(&config_path);
                        last = stamp(&watched);
                    }
                }
                Err(e) => tracing::error!("{e}"),
            }
        }
    }
}
