//! Upstream transports: how Portcullis reaches an MCP server. Each is bound to a
//! [`Relay`](crate::relay::Relay) and sends client-bound lines to a channel the face reads.
//! Side by side: [`stdio`] (child process), [`http`] (Streamable HTTP, both eras),
//! [`sse`] (legacy HTTP+SSE).

pub mod http;
pub mod sse;
pub mod stdio;

use crate::events::Events;
use crate::relay::{Caller, Out, Relay};
use portcullis_mcp::{codes, error_line, Message};
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

/// Delivers relay outputs in order: each audit record is written (durably, in durable mode)
/// before any client line after it goes out; if writing fails, the client gets an error in
/// place of the answer (fail closed). Returns the lines for the upstream; held calls are
/// handed to [`hold`] with `link`.
pub async fn deliver(
    sink: Option<&Events>,
    to_client: &UnboundedSender<String>,
    outs: Vec<Out>,
    link: Option<Upstream>,
) -> Vec<(String, Option<u64>)> {
    let mut upstream = Vec::new();
    let mut audit_failed = false;
    for o in outs {
        match o {
            Out::Audit(rec, args) => {
                if let Some(s) = sink {
                    if s.emit(*rec, args).await.is_err() {
                        audit_failed = true;
                    }
                }
            }
            Out::Client(line) => {
                if audit_failed {
                    if let Ok(m) = Message::parse(&line) {
                        if m.id().is_some() {
                            let _ = to_client.send(error_line(m.id(), codes::INTERNAL_ERROR, "The gateway could not write its audit record, so the answer is withheld. Try again shortly."));
                        }
                    }
                    continue;
                }
                let _ = to_client.send(line);
            }
            Out::Server(line, up) => upstream.push((line, up)),
            Out::Hold(h) => match &link {
                Some(l) if !audit_failed => hold(l.clone(), *h, to_client.clone()),
                _ => {
                    let _ = to_client.send(h.answer);
                }
            },
        }
    }
    upstream
}

/// Hold-open: waits (polling the approval every 250 ms) until a human decides, then replays
/// the call through the relay — approved, it is forwarded (once); denied, the client gets the
/// denial — or, when the wait runs out, gives the `[APPROVAL REQUIRED]` answer. Progress
/// notifications keep a client that sent a progress token informed. Never blocks the caller.
pub fn hold(link: Upstream, h: crate::relay::Hold, to_client: UnboundedSender<String>) {
    tokio::spawn(async move {
        let Some(store) = link.relay().approvals() else {
            let _ = to_client.send(h.answer);
            return;
        };
        let deadline = std::time::Instant::now() + Duration::from_millis(h.wait_ms);
        let mut ticks = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            ticks += 1;
            let id = h.approval_id.clone();
            let store = store.clone();
            let status = tokio::task::spawn_blocking(move || {
                store.get(&id).map(|a| a.status).map_err(|e| e.to_string())
            })
            .await
            .ok()
            .and_then(Result::ok);
            match status {
                Some(portcullis_store::ApprovalStatus::Approved)
                | Some(portcullis_store::ApprovalStatus::Denied) => {
                    link.from_client(&h.request, &h.caller).await;
                    return;
                }
                Some(portcullis_store::ApprovalStatus::Pending) | None => {}
                Some(_) => break, // expired or already consumed elsewhere
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
            if let (Some(token), true) = (&h.progress_token, ticks.is_multiple_of(4)) {
                let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": ticks / 4, "message": format!("waiting for approval {}", h.approval_id)}});
                let _ = to_client.send(note.to_string());
            }
        }
        let _ = to_client.send(h.answer);
    });
}

/// Marks a client-bound line with the client id of the request whose stream carried it (an
/// HTTP upstream's answer stream), so that a face serving many clients over one upstream
/// connection routes it to that request and no other. Only links told to
/// ([`http::HttpLink::tag_related`]) produce it; the face strips it with [`untag`]. A JSON
/// line never starts with NUL.
pub(crate) fn tag(client_id: &str, line: &str) -> String {
    format!("\0{client_id}\0{line}")
}

/// Splits a line from [`tag`] into the request's client id and the line.
pub(crate) fn untag(line: &str) -> (Option<&str>, &str) {
    match line
        .strip_prefix('\0')
        .and_then(|rest| rest.split_once('\0'))
    {
        Some((id, line)) => (Some(id), line),
        None => (None, line),
    }
}

/// Largest single message accepted from an upstream.
pub const MAX_UPSTREAM_MESSAGE: usize = 64 << 20;

impl Upstream {
    /// Connects (starts the child, prepares the HTTP client, or opens the SSE stream).
    pub async fn start(
        spec: &UpstreamSpec,
        relay: Arc<Relay>,
        to_client: UnboundedSender<String>,
        audit: Option<Events>,
    ) -> std::io::Result<Upstream> {
        Ok(match spec {
            UpstreamSpec::Command(c) => Upstream::Stdio(
                stdio::Link::start(c.clone(), relay, to_client, MAX_UPSTREAM_MESSAGE, audit)
                    .await?,
            ),
            UpstreamSpec::Http(h) => Upstream::Http(
                http::HttpLink::start(h.clone(), relay, to_client, MAX_UPSTREAM_MESSAGE, audit)
                    .map_err(std::io::Error::other)?,
            ),
            UpstreamSpec::Sse(h) => Upstream::Sse(
                sse::SseLink::start(h.clone(), relay, to_client, audit)
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

    /// The relay this link feeds.
    pub fn relay(&self) -> &Arc<Relay> {
        match self {
            Upstream::Stdio(l) => l.relay(),
            Upstream::Http(l) => l.relay(),
            Upstream::Sse(l) => l.relay(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_plain_lines_pass() {
        let line = r#"{"jsonrpc":"2.0","method":"notifications/message"}"#;
        assert_eq!(untag(&tag("\"h7\"", line)), (Some("\"h7\""), line));
        assert_eq!(untag(line), (None, line));
    }
}
