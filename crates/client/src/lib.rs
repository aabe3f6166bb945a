//! # portcullis-client
//!
//! An MCP client of one server, and nothing else: no relay, no policy, no counters.
//! [`Client::connect`] reaches a server described by the gateway's own
//! [`UpstreamSpec`] — a stdio child command, a Streamable HTTP URL, or a legacy HTTP+SSE URL,
//! with static headers — and speaks the handshake of the server's era: 2025-11-25
//! (`initialize`, `notifications/initialized`) or 2026-07-28 (`server/discover`, then `_meta`
//! on every request). Then [`Client::list_tools`] follows `tools/list` through every page,
//! [`Client::call_tool`] calls one tool, and [`Client::close`] ends the session and says what
//! a stdio server left behind ([`Closed`]). [`Client::over_lines`] speaks the same protocol
//! over any byte stream (an in-process gateway, for instance).
//!
//! One file per concern: [`session`] (the conversation), [`stdio`] (line-delimited pipes and
//! child processes, with the gateway's child-process helpers), [`transport`] (Streamable HTTP
//! and legacy HTTP+SSE: the gateway's own upstream transports, owned by the client instead
//! of a relay), [`error`].

pub mod error;
pub mod session;
pub mod stdio;
pub mod transport;

pub use error::{Error, ErrorKind};
pub use portcullis_gateway::upstream::http::without_userinfo;
pub use portcullis_gateway::upstream::http::HttpSpec;
pub use portcullis_gateway::upstream::stdio::ChildSpec;
pub use portcullis_gateway::upstream::UpstreamSpec;
pub use session::Client;
pub use stdio::Closed;

use serde_json::Value;
use std::time::Duration;

/// Which handshake to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// Ask `server/discover` first (10 s at most); a server that lists a 2026-07-28 version is
    /// spoken to statelessly, any other (an error, silence, handshake versions only) gets
    /// `initialize`.
    Auto,
    /// 2025-11-25: `initialize`, then `notifications/initialized` (dual-era servers accept it).
    Handshake,
    /// 2026-07-28: `server/discover`, then `_meta` on every request; no session.
    Stateless,
}

/// How the client introduces itself and how long it waits.
#[derive(Clone, Debug)]
pub struct Options {
    /// `clientInfo.name` (also named when declining a server's own request).
    pub client_name: String,
    /// `clientInfo.version`.
    pub client_version: String,
    /// The handshake to speak.
    pub era: Era,
    /// The whole conversation's budget, counted from [`Client::connect`]: connecting, the
    /// handshake and every request must be done within it. `None`: no overall bound.
    pub timeout: Option<Duration>,
    /// The most one request may wait for its answer. `None`: no per-request bound.
    pub request_timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client_name: "portcullis-client".into(),
            client_version: env!("CARGO_PKG_VERSION").into(),
            era: Era::Auto,
            timeout: None,
            request_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// A server's tools and its own name.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// Every page of `tools/list`, in the server's order, as the server sent them.
    pub tools: Vec<Value>,
    /// `serverInfo.name`, when the server said one.
    pub server_name: Option<String>,
}

/// Connects, lists every page of tools, and closes the connection whatever happened; a
/// failure says, for a stdio server, what it left behind (see [`Closed::annotate`]).
pub async fn list_tools(spec: &UpstreamSpec, opts: &Options) -> Result<Listing, Error> {
    let mut client = Client::connect(spec, opts).await?;
    let listed = client.list_tools().await;
    let server_name = client.server_name().map(str::to_owned);
    let closed = client.close().await;
    match listed {
        Ok(tools) => Ok(Listing { tools, server_name }),
        Err(e) => Err(closed.annotate(e)),
    }
}

/// Cuts `s` to at most `max` characters, marking the cut with `…` (for quoting what a server
/// said in one line).
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("short", 5), "short");
    }
}
