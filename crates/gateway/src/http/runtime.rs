//! The runtime: the configured servers, the open sessions, and the upstream connections made
//! for them (each with its relay and its [`Routes`]).

use super::era::{Bridge, Era};
use super::routes::Routes;
use super::session::Session;
use super::Gateway;
use crate::config::{expand_env, Auth, ServerConfig};
use crate::connection::{ClientTx, Connection};
use crate::events::Events;
use crate::pinned::PinSettings;
use crate::relay::{Relay, RelayConfig};
use crate::schemas::{ToolSchemas, ValidateArguments};
use crate::upstream::stdio::ChildSpec;
use crate::upstream::UpstreamSpec;
use portcullis_policy::sync::LockExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One configured server.
pub(super) struct ServerRt {
    pub(super) name: String,
    pub(super) spec: UpstreamSpec,
    audit_arguments: bool,
    /// Hold-open for calls needing approval, ms (0: off).
    hold_ms: u64,
    /// How calls' arguments are checked, and the schemas this server listed (shared by every
    /// connection to it).
    validate: ValidateArguments,
    schemas: Arc<ToolSchemas>,
    /// `pinning` and `poisoning`.
    pins: PinSettings,
    pub(super) auth: Auth,
    pub(super) tokens: Vec<(String, String)>,
    pub(super) modern: tokio::sync::OnceCell<Arc<Conn>>,
    /// Which eras the upstream speaks (probed once with `server/discover`).
    pub(super) era: tokio::sync::OnceCell<Era>,
    /// Handshake-era sessions opened for stateless clients (bridge), per grant and declared
    /// client capabilities.
    pub(super) bridges: tokio::sync::Mutex<HashMap<String, Arc<Bridge>>>,
}

impl ServerRt {
    /// A server of the config, its `${VAR}`s expanded and its headers checked.
    fn from_config(s: &ServerConfig) -> Result<ServerRt, String> {
        let mut env = Vec::new();
        for (k, v) in &s.env {
            env.push((
                k.clone(),
                expand_env(v).map_err(|e| format!("server {:?}: env.{k}: {e}", s.name))?,
            ));
        }
        let mut tokens = Vec::new();
        for t in &s.tokens {
            tokens.push((
                t.label.clone(),
                expand_env(&t.token)
                    .map_err(|e| format!("server {:?}: token {:?}: {e}", s.name, t.label))?,
            ));
        }
        let spec = match (&s.command, &s.url) {
            (Some(command), _) => UpstreamSpec::Command(ChildSpec {
                argv: command.clone(),
                env,
            }),
            (None, Some(url)) => {
                let mut headers = Vec::new();
                for (k, v) in &s.headers {
                    headers.push((
                        k.clone(),
                        expand_env(v)
                            .map_err(|e| format!("server {:?}: headers.{k}: {e}", s.name))?,
                    ));
                }
                // Refuse header injection (CR/LF, control characters) at load, not at first use.
                for (k, v) in &headers {
                    if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                        || reqwest::header::HeaderValue::from_str(v).is_err()
                    {
                        return Err(format!("server {:?}: headers.{k} is not a valid HTTP header (control characters or line breaks are refused)", s.name));
                    }
                }
                UpstreamSpec::for_url(url.clone(), headers)
            }
            (None, None) => return Err(format!("server {:?}: give command or url", s.name)),
        };
        Ok(ServerRt {
            name: s.name.clone(),
            spec,
            audit_arguments: s.audit_arguments,
            hold_ms: s
                .hold
                .as_deref()
                .and_then(portcullis_policy::window::parse_duration)
                .unwrap_or(0),
            validate: s.validate_arguments,
            schemas: Arc::new(ToolSchemas::default()),
            pins: PinSettings {
                pinning: s.pinning,
                poisoning: s.poisoning,
            },
            auth: s.auth,
            tokens,
            modern: tokio::sync::OnceCell::new(),
            era: tokio::sync::OnceCell::new(),
            bridges: tokio::sync::Mutex::new(HashMap::new()),
        })
    }
}

/// One upstream connection and the routing of what it sends to the client side.
pub(super) struct Conn {
    pub(super) link: Arc<Connection>,
    pub(super) router: Arc<Routes>,
}

/// The configured servers by name, and the open sessions by id.
pub(super) struct Runtime {
    servers: HashMap<String, Arc<ServerRt>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Sessions of the aggregated endpoint (`/mcp` of several servers).
    pub(super) aggregates: Mutex<HashMap<String, Arc<super::aggregated::AggSession>>>,
}

impl Runtime {
    /// Every server of the config; the first one that cannot be set up is an error.
    pub(super) fn new(servers: &[ServerConfig]) -> Result<Runtime, String> {
        let mut map = HashMap::new();
        for s in servers {
            map.insert(s.name.clone(), Arc::new(ServerRt::from_config(s)?));
        }
        Ok(Runtime {
            servers: map,
            sessions: Mutex::new(HashMap::new()),
            aggregates: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn server(&self, name: &str) -> Option<Arc<ServerRt>> {
        self.servers.get(name).cloned()
    }

    pub(super) fn servers(&self) -> &HashMap<String, Arc<ServerRt>> {
        &self.servers
    }

    pub(super) fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock_or_recover().get(id).cloned()
    }

    pub(super) fn open(&self, id: String, s: Arc<Session>) {
        self.sessions.lock_or_recover().insert(id, s);
    }

    /// The ids of the open sessions that are recorded in the shared store.
    pub(super) fn shared_ids(&self) -> Vec<String> {
        self.sessions
            .lock_or_recover()
            .iter()
            .filter(|(_, s)| s.shared)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub(super) fn end(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock_or_recover().remove(id)
    }

    /// How many sessions are open, per server and kind (`handshake`, `bridged` to a
    /// stateless upstream, or `legacy_sse` of the HTTP+SSE face), sorted.
    pub(super) fn open_sessions(&self) -> Vec<(String, &'static str, u64)> {
        let mut counts = std::collections::BTreeMap::new();
        for s in self.sessions.lock_or_recover().values() {
            let kind = if s.bridged.is_some() {
                "bridged"
            } else if s.legacy {
                "legacy_sse"
            } else {
                "handshake"
            };
            *counts.entry((s.server.name.clone(), kind)).or_insert(0) += 1;
        }
        counts.into_iter().map(|((s, k), n)| (s, k, n)).collect()
    }
}

impl Gateway {
    /// Stops every upstream child.
    pub async fn shutdown(&self) {
        let sessions: Vec<Arc<Session>> = self
            .rt
            .sessions
            .lock()
            .unwrap()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in sessions {
            s.conn.link.shutdown(Duration::from_secs(2)).await;
        }
        let aggregates: Vec<_> = self
            .rt
            .aggregates
            .lock_or_recover()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in aggregates {
            s.agg.shutdown(Duration::from_secs(2)).await;
        }
        for s in self.rt.servers.values() {
            if let Some(c) = s.modern.get() {
                c.link.shutdown(Duration::from_secs(2)).await;
            }
            let bridges: Vec<Arc<Bridge>> =
                s.bridges.lock().await.drain().map(|(_, b)| b).collect();
            for b in bridges {
                b.conn.link.shutdown(Duration::from_secs(2)).await;
            }
        }
    }

    /// A new upstream connection to `server`: its own relay, and a router for what it sends.
    pub(super) async fn connect(&self, server: &ServerRt) -> std::io::Result<Arc<Conn>> {
        // Client-bound lines go straight into the router, on the task that produced them.
        let router = Arc::new(Routes::default());
        let r = router.clone();
        let to_client = ClientTx::new(move |line| {
            r.route(line);
            true
        });
        let link = self.connect_to(server, to_client).await?;
        if link.http().is_some() {
            // What arrives on one request's answer stream goes to that request only.
            link.tag_related();
        }
        Ok(Arc::new(Conn { link, router }))
    }

    /// A new upstream connection to `server` with its own relay, its client-bound lines
    /// handed to `to_client`.
    pub(super) async fn connect_to(
        &self,
        server: &ServerRt,
        to_client: ClientTx,
    ) -> std::io::Result<Arc<Connection>> {
        let mut relay = Relay::new(RelayConfig {
            store: self.store.clone(),
            server: server.name.clone(),
            clock: crate::relay::system_clock,
            audit: !self.events.is_empty(),
            approvals: self.approvals.clone(),
            on_new_approval: self.on_new_approval.clone(),
            hold_ms: server.hold_ms,
        });
        if let Some(m) = &self.metrics {
            relay = relay.recording_listed(m.listed().clone());
        }
        if let Some(pins) = &self.pins {
            relay = relay.pinning(pins.clone(), server.pins);
        }
        relay = relay
            .validating(server.schemas.clone(), server.validate)
            .writing_ahead(self.events.writes_ahead())
            .timing(self.events.tracer().is_some());
        let relay = Arc::new(relay);
        Connection::start(&server.spec, relay, to_client, self.audit_sink(server)).await
    }

    fn audit_sink(&self, server: &ServerRt) -> Option<Events> {
        (!self.events.is_empty()).then(|| self.events.for_server(server.audit_arguments))
    }
}
