//! Upstream transports: how Portcullis reaches an MCP server. Each is bound to a
//! [`Relay`](crate::relay::Relay) and sends client-bound lines to a channel the face reads.
//! Side by side: [`stdio`] (child process), [`http`] (Streamable HTTP, both eras),
//! [`sse`] (legacy HTTP+SSE).

pub mod http;
pub mod sse;
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
    /// A legacy HTTP+SSE endpoint (the SSE URL).
    Sse(http::HttpSpec),
}

impl UpstreamSpec {
    /// An HTTP upstream: legacy HTTP+SSE when the URL's path ends in `/sse`, else Streamable
    /// HTTP.
    pub fn for_url(url: String, headers: Vec<(String, String)>) -> UpstreamSpec {
        let spec = http::HttpSpec { url, headers };
        let path_is_sse = reqwest::Url::parse(&spec.url)
            .is_ok_and(|u| u.path().trim_end_matches('/').ends_with("/sse"));
        if path_is_sse {
            UpstreamSpec::Sse(spec)
        } else {
            UpstreamSpec::Http(spec)
        }
    }
}

/// A live upstream link of any kind.
#[derive(Clone)]
pub enum Upstream {
    /// stdio child.
    Stdio(Arc<stdio::Link>),
    /// Streamable HTTP endpoint.
    Http(Arc<http::HttpLink>),
    /// Legacy SSE endpoint.
    Sse(Arc<sse::SseLink>),
}

/// Largest single message accepted from an upstream.
pub const MAX_UPSTREAM_MESSAGE: usize = 64 << 20;

impl Upstream {
    /// Connects (starts the child, prepares the HTTP client, or opens the SSE stream).
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
            UpstreamSpec::Sse(h) => Upstream::Sse(
                sse::SseLink::start(h.clone(), relay, to_client)
                    .await
                    .map_err(std::io::Error::other)?,
            ),
        })
    }

    /// Passes a client line through the relay to the server.
    pub async fn from_client(&self, line: &str, caller: &Caller) {
        self.from_client_with(line, caller, Vec::new()).await;
    }

    /// Like [`Upstream::from_client`], with extra HTTP headers for a Streamable HTTP upstream
    /// (`Mcp-Param-*` from a modern client); other transports ignore them.
    pub async fn from_client_with(
        &self,
        line: &str,
        caller: &Caller,
        extra: Vec<(String, String)>,
    ) {
        match self {
            Upstream::Stdio(l) => l.from_client(line, caller).await,
            Upstream::Http(l) => l.from_client_with(line, caller, extra).await,
            Upstream::Sse(l) => l.from_client(line, caller).await,
        }
    }

    /// Stops the child, ends the HTTP session, or closes the SSE stream.
    pub async fn shutdown(&self, grace: Duration) {
        match self {
            Upstream::Stdio(l) => l.shutdown(grace).await,
            Upstream::Http(l) => l.shutdown().await,
            Upstream::Sse(l) => l.shutdown(),
        }
    }
}
