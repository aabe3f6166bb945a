//! Servers and their tools: the configured servers, and each server's tools listed live
//! (every page, through the same code as `portcullis scan`), classified, and cached.

use super::{Kind, OpError, OpResult, Ops};
use portcullis_classify::classify_all;
use portcullis_gateway::config::Auth;
use portcullis_gateway::relay::system_clock;
use portcullis_gateway::upstream::UpstreamSpec;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a server's classified tool list is reused before the server is asked again.
const TOOLS_TTL: Duration = Duration::from_secs(60);

/// Longest wait for a server's tool list.
const TOOLS_TIMEOUT: Duration = Duration::from_secs(30);

/// A configured server.
#[derive(Clone, Debug, Serialize)]
pub struct ServerInfo {
    /// Its name (`/mcp/<name>`).
    pub name: String,
    /// `stdio`, `http` or `sse`.
    pub transport: &'static str,
    /// Its own policy's name, when one is in force.
    pub policy: Option<String>,
    /// `grant`, `token` or `none`.
    pub auth: &'static str,
}

impl Ops {
    /// The configured servers, sorted by name.
    pub fn servers(&self) -> Vec<ServerInfo> {
        let policies = self.gw.policies();
        let mut list: Vec<ServerInfo> = self
            .cfg
            .servers
            .iter()
            .map(|s| ServerInfo {
                name: s.name.clone(),
                transport: match self.gw.server_spec(&s.name) {
                    Some(UpstreamSpec::Command(_)) => "stdio",
                    Some(UpstreamSpec::Http(_)) => "http",
                    Some(UpstreamSpec::Sse(_)) => "sse",
                    None => "unknown",
                },
                policy: s
                    .policy
                    .as_ref()
                    .map(|_| s.name.clone())
                    .filter(|n| policies.contains_key(n)),
                auth: match s.auth {
                    Auth::Grant => "grant",
                    Auth::Token => "token",
                    Auth::None => "none",
                    Auth::OAuth => "oauth",
                    Auth::OAuthGrant => "oauth+grant",
                },
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// `Ok` when `name` is a configured server, else the error naming the servers there are.
    pub fn server_known(&self, name: &str) -> OpResult<()> {
        if self.cfg.servers.iter().any(|s| s.name == name) {
            Ok(())
        } else {
            Err(unknown_server(name, &self.gw.server_names()))
        }
    }

    /// `{server, listed_at, tools: [tool + classification + hidden_by_policy], cached}`: every
    /// tool of server `name` with its classification, and whether the server's own policy
    /// hides it. Cached per server for a minute; `refresh` asks the server again.
    pub async fn tools(&self, name: &str, refresh: bool) -> OpResult<Value> {
        let (Some(cache), Some(spec)) = (self.tools.get(name), self.gw.server_spec(name)) else {
            return Err(unknown_server(name, &self.gw.server_names()));
        };
        let mut slot = cache.lock().await;
        let (mut listed, cached) = match slot.as_ref() {
            Some((at, v)) if !refresh && at.elapsed() < TOOLS_TTL => (v.clone(), true),
            _ => match list_classified(name, spec).await {
                Ok(v) => {
                    *slot = Some((Instant::now(), v.clone()));
                    (v, false)
                }
                Err(e) => {
                    return Err(OpError::new(
                        Kind::Upstream,
                        "upstream_unavailable",
                        format!("cannot list the tools of {name:?}: {e}"),
                    ))
                }
            },
        };
        drop(slot);
        // Visibility under the server's own policy, as it stands now (not cached).
        let engine = self.gw.policies().get(name).map(|(e, _)| e.clone());
        if let Some(tools) = listed["tools"].as_array_mut() {
            for t in tools {
                let n = t["name"].as_str().unwrap_or_default().to_owned();
                t["hidden_by_policy"] = match &engine {
                    Some(e) => json!(!e.is_listed(&n)),
                    None => Value::Null,
                };
            }
        }
        listed["cached"] = json!(cached);
        Ok(listed)
    }
}

/// The error for a server name that is not configured.
pub fn unknown_server(name: &str, known: &[String]) -> OpError {
    OpError::new(
        Kind::NotFound,
        "unknown_server",
        format!(
            "no server named {name:?} is configured (servers: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ),
    )
}

/// Lists a server's tools through every page (as `portcullis scan` does) and classifies them.
/// Runs on its own thread and runtime: a listing never holds up the gateway's workers, and
/// whatever the conversation left behind ends with it.
async fn list_classified(name: &str, spec: UpstreamSpec) -> Result<Value, String> {
    let server = name.to_owned();
    let job = tokio::task::spawn_blocking(move || {
        let (tools, _own_name) =
            crate::scan::runtime()?.block_on(crate::scan::list_live(&spec, TOOLS_TIMEOUT))?;
        let tools = crate::scan::dedupe(tools, &server);
        let classes = classify_all(&tools, &server);
        let mut by_name: HashMap<String, Value> = classes
            .into_iter()
            .map(|c| {
                let v = serde_json::to_value(&c).unwrap_or(Value::Null);
                (c.tool, v)
            })
            .collect();
        let tools: Vec<Value> = tools
            .into_iter()
            .map(|mut t| {
                let n = t["name"].as_str().unwrap_or_default().to_owned();
                t["classification"] = by_name.remove(&n).unwrap_or(Value::Null);
                t
            })
            .collect();
        Ok::<_, String>(json!({
            "server": server,
            "listed_at": system_clock(),
            "tools": tools,
        }))
    });
    job.await
        .map_err(|e| format!("the listing task failed: {e}"))?
}
