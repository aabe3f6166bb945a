//! The gateway's side of the aggregated endpoint ([`crate::aggregate`]): its members are the
//! configured servers a caller may reach, each connected through [`Gateway::connect_to`]
//! (the same relay, policy, counters and pins as `/mcp/<server>`).

use super::Gateway;
use crate::aggregate::{Aggregate, Connect, MemberSpec};
use crate::connection::ClientTx;
use crate::relay::Caller;
use std::sync::Arc;

impl Gateway {
    /// Every configured server (sorted by name), called by the local user `label` under the
    /// server's own policy: the members of `portcullis stdio --all`.
    pub fn local_members(&self, label: &str, session: &str) -> Vec<MemberSpec> {
        let policies = self.policies.now();
        self.server_names()
            .into_iter()
            .map(|name| {
                let policy = policies.get(&name);
                MemberSpec {
                    caller: Caller {
                        engine: policy.map(|(e, _)| e.clone()),
                        grant_id: format!("local:{label}"),
                        grant_label: label.to_owned(),
                        session_id: session.to_owned(),
                        policy: policy.map(|(_, h)| (name.clone(), h.clone())),
                        request_id: None,
                        principal: None,
                        trace: None,
                    },
                    name,
                }
            })
            .collect()
    }

    /// Opens the aggregated endpoint over `members` (configured server names), its
    /// client-bound lines handed to `to_client`.
    pub async fn aggregate(
        self: &Arc<Self>,
        members: Vec<MemberSpec>,
        to_client: ClientTx,
    ) -> Result<Arc<Aggregate>, String> {
        let mut servers = Vec::new();
        for m in &members {
            servers.push(
                self.rt
                    .server(&m.name)
                    .ok_or_else(|| format!("no server named {:?} is configured", m.name))?,
            );
        }
        let gw = self.clone();
        let connect: Connect = Arc::new(move |i, tx| {
            let gw = gw.clone();
            let srv = servers[i].clone();
            Box::pin(async move { gw.connect_to(&srv, tx).await })
        });
        let events = (!self.events.is_empty()).then(|| self.events.clone());
        Aggregate::open(members, to_client, events, connect).await
    }
}
