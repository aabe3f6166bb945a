//! Upstream transports: how Portcullis reaches an MCP server. Each is bound to a
//! [`Relay`](crate::relay::Relay) and sends client-bound lines to a channel the face reads.

pub mod http;
pub mod stdio;

use crate::relay::{Caller, Relay};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// How to reach a server.
#[derive(Clone, Debug)]
pub enum UpstreamSpec {
    /// A child process speaking stdio.
    Command(stdio::ChildSpec),
    /// A Streamable HTTP endpoint.
    Http(http::HttpSpec),
}

/// A live upstream link of either kind.
#[derive(Clone)]
pub enum Upstream {
    /// stdio child.
    Stdio(Arc<stdio::Link>),
    /// HTTP endpoint.
    Http(Arc<http::HttpLink>),
}

/// Largest single message accepted from an upstream.
pub const MAX_UPSTREAM_MESSAGE: usize = 64 << 20;

impl Upstream {
    /// Connects (starts the child, or prepares the HTTP client).
    pub async fn start(
        spec: &UpstreamSpec,
        relay: Arc<Relay>,
        to_client: UnboundedSender<String>,
    ) -> std::io::Result<Upstream> {
        Ok(match spec {
            UpstreamSpec::Command(c) => Upstream::Stdio(
                stdio::Link::start(c.clone(), relay, to_client, MAX_UPSTREAM_MESSAGE).await?,
            ),
            UpstreamSpec::Http(h) => Upstream::Http(
                http::HttpLink::start(h.clone(), relay, to_client, MAX_UPSTREAM_MESSAGE)
                    .map_err(std::io::Error::other)?,
            ),
        })
    }

    /// Passes a client line through the relay to the server.
    pub async fn from_client(&self, line: &str, caller: &Caller) {
        match self {
            Upstream::Stdio(l) => l.from_client(line, caller).await,
            Upstream::Http(l) => l.from_client(line, caller).await,
        }
    }

    /// Like [`Upstream::from_client`], with extra HTTP headers for the upstream request
    /// (`Mcp-Param-*` from a modern client); a stdio upstream has no headers and ignores them.
    pub async fn from_client_with(
        &self,
        line: &str,
        caller: &Caller,
        extra: Vec<(String, String)>,
    ) {
        match self {
            Upstream::Stdio(l) => l.from_client(line, caller).await,
            Upstream::Http(l) => l.from_client_with(line, caller, extra).await,
        }
    }

    /// Stops the child or ends the HTTP session.
    pub async fn shutdown(&self, grace: Duration) {
        match self {
            Upstream::Stdio(l) => l.shutdown(grace).await,
            Upstream::Http(l) => l.shutdown().await,
        }
    }
}
