//! Upstream transports: how Portcullis reaches an MCP server. They only move lines: a
//! [`Transport`] sends one message and hands everything it receives — and its own failures —
//! to an [`Inbox`] as [`Inbound`] values. Nothing here knows about policy, audit or grants;
//! the owner of the connection ([`crate::connection`]) does. Side by side: [`stdio`] (child
//! process), [`http`] (Streamable HTTP, both eras), [`sse`] (legacy HTTP+SSE).

pub(crate) mod client;
pub mod http;
pub mod sse;
pub mod stdio;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

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
        let path_is_sse = url::Url::parse(&spec.url)
            .is_ok_and(|u| u.path().trim_end_matches('/').ends_with("/sse"));
        if path_is_sse {
            UpstreamSpec::Sse(spec)
        } else {
            UpstreamSpec::Http(spec)
        }
    }

    /// Connects: starts the child, prepares the HTTP client, or opens the SSE stream.
    /// Everything the server sends goes to `inbox`. HTTP connections come from the
    /// process-wide pool ([`Pool::Shared`]).
    pub async fn connect(&self, inbox: Inbox) -> std::io::Result<Arc<dyn Transport>> {
        self.connect_with(inbox, Pool::Shared).await
    }

    /// [`UpstreamSpec::connect`], with the HTTP connections taken from `pool`. An SSE stream
    /// that cannot be reached fails with [`std::io::ErrorKind::HostUnreachable`].
    pub async fn connect_with(
        &self,
        inbox: Inbox,
        pool: Pool,
    ) -> std::io::Result<Arc<dyn Transport>> {
        Ok(match self {
            UpstreamSpec::Command(c) => {
                stdio::StdioTransport::start(c.clone(), inbox, MAX_UPSTREAM_MESSAGE).await?
            }
            UpstreamSpec::Http(h) => {
                http::HttpTransport::start(h.clone(), inbox, MAX_UPSTREAM_MESSAGE, pool)
                    .map_err(std::io::Error::other)?
            }
            UpstreamSpec::Sse(h) => sse::SseTransport::start(h.clone(), inbox, pool).await?,
        })
    }
}

/// Where an HTTP transport's connections come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// One client for the whole process (the gateway: one runtime, many sessions share
    /// keep-alive connections).
    Shared,
    /// A client of the transport's own, dropped with it: for a caller that runs each
    /// conversation in a runtime of its own, since a pooled connection dies with the runtime
    /// that drives it.
    Own,
}

/// A boxed future, as the transport traits return them (they are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a transport hands to the owner of its connection.
#[derive(Debug)]
pub enum Inbound {
    /// A message from the server.
    Message {
        /// The message, parsed once where it was received ([`Inbound::message`]).
        msg: portcullis_mcp::Message,
        /// For a message that is not a response and arrived on a request's answer stream
        /// (Streamable HTTP): that request's upstream id, so that it can be routed to that
        /// request alone. A response finds its request by id and never carries one.
        stream_of: Option<u64>,
    },
    /// Request `up` was not delivered, or its answer will never come.
    Failed {
        /// Our upstream id of the request.
        up: u64,
        /// Why, for the client.
        why: String,
        /// The same, for an owner that acts on it.
        cause: Failure,
    },
    /// The server went away; requests in flight will get no answer.
    Lost(String),
    /// The server is back after [`Inbound::Lost`] (a restarted child): its session must be
    /// opened again.
    Restarted,
    /// A stream the server had closed was opened again (Streamable HTTP: the session's GET
    /// stream, or a request's answer stream before its answer came). `resumed`: the new
    /// stream was asked for with `Last-Event-ID`, so the server could replay what it sent in
    /// between. Nothing is lost or replayed by the owner: this is for health reporting only.
    Reconnected {
        /// The reconnection carried `Last-Event-ID`.
        resumed: bool,
    },
}

/// Why a request failed (see [`Inbound::Failed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The request could not be sent: nothing answers at the server's address.
    Unreachable,
    /// The server answered with this HTTP status and no JSON-RPC answer.
    HttpStatus(u16),
    /// Anything else: the answer stream ended without an answer, a failed write, ….
    Other,
}

/// The owner of a connection, as its transport sees it.
pub trait Receiver: Send + Sync {
    /// Takes one inbound item; resolves once it is handled (so a transport that reads in
    /// order keeps the server's order).
    fn receive(&self, inbound: Inbound) -> BoxFuture<'_, ()>;
    /// Whether request `up` still waits for its answer (a transport stops resuming the
    /// answer stream of a request that has been answered or cancelled).
    fn awaits(&self, up: u64) -> bool;
}

/// Where a transport delivers: bound to its owner once the owner exists (held weakly, so a
/// transport never keeps its owner alive). Items that arrive when no owner is bound are
/// dropped.
#[derive(Clone, Default)]
pub struct Inbox(Arc<OnceLock<Weak<dyn Receiver>>>);

impl Inbox {
    /// An inbox bound to `owner`.
    pub fn new(owner: Weak<dyn Receiver>) -> Inbox {
        let inbox = Inbox::default();
        let _ = inbox.0.set(owner);
        inbox
    }

    fn owner(&self) -> Option<Arc<dyn Receiver>> {
        self.0.get().and_then(Weak::upgrade)
    }

    /// Hands one item to the owner.
    pub async fn put(&self, inbound: Inbound) {
        if let Some(o) = self.owner() {
            o.receive(inbound).await;
        }
    }

    /// Whether request `up` still waits for its answer (false once the owner is gone).
    pub fn awaits(&self, up: u64) -> bool {
        self.owner().is_some_and(|o| o.awaits(up))
    }

    /// Whether the owner is gone (nobody reads what the server sends any more).
    pub fn is_orphaned(&self) -> bool {
        self.owner().is_none()
    }
}

impl Inbound {
    /// A line from the server as a message for the owner; a line that is not a JSON-RPC
    /// message is dropped here, with a warning (nothing could route or answer it).
    pub fn message(line: &str, stream_of: Option<u64>) -> Option<Inbound> {
        server_message(line).map(|msg| Inbound::Message { msg, stream_of })
    }
}

/// A line from the server, parsed once where it was received; `None`, with a warning, when
/// it is not a JSON-RPC message.
pub(crate) fn server_message(line: &str) -> Option<portcullis_mcp::Message> {
    match portcullis_mcp::Message::parse(line) {
        Ok(msg) => Some(msg),
        Err(e) => {
            let head: String = line.chars().take(120).collect();
            tracing::warn!(
                "dropping a line from the server that is not a JSON-RPC message ({e}): {head:?}"
            );
            None
        }
    }
}

/// A connection to one MCP server: sends lines, delivers what comes back to its [`Inbox`].
pub trait Transport: Send + Sync {
    /// Sends one message. `up`: our id for it when it is a request. `extra`: HTTP headers
    /// for a Streamable HTTP server (`Mcp-Param-*` from a modern client); other transports
    /// ignore them. An error means the message certainly did not leave; failures found
    /// later arrive as [`Inbound::Failed`]. Notifications and responses are sent before this
    /// returns, so the server sees them in order; requests may still be in flight.
    fn send(
        &self,
        msg: Box<portcullis_mcp::Message>,
        up: Option<u64>,
        extra: Vec<(String, String)>,
    ) -> BoxFuture<'_, std::io::Result<()>>;

    /// Like [`Transport::send`], but when the server answers a request with one JSON body
    /// (Streamable HTTP), that answer has been handed to the inbox when this returns: on the
    /// caller's task, with no hop to another task. The stateless face's fast path. Other
    /// transports (and streamed answers) behave as with `send`.
    fn send_answered(
        &self,
        msg: Box<portcullis_mcp::Message>,
        up: Option<u64>,
        extra: Vec<(String, String)>,
    ) -> BoxFuture<'_, std::io::Result<()>> {
        self.send(msg, up, extra)
    }

    /// Stops the child, ends the HTTP session, or closes the SSE stream.
    fn shutdown(&self, grace: Duration) -> BoxFuture<'_, ()>;

    /// The Streamable HTTP transport, for what only it can do (`server/discover` directly).
    fn as_http(&self) -> Option<&http::HttpTransport> {
        None
    }
}

/// A future that, dropped before it completes, is finished in a task of its own: work that
/// must not be cut off when the caller stops waiting (an upstream exchange whose answer the
/// relay must still see).
pub(crate) struct Detached(Option<BoxFuture<'static, ()>>);

impl Detached {
    pub(crate) fn new(f: impl Future<Output = ()> + Send + 'static) -> Detached {
        Detached(Some(Box::pin(f)))
    }
}

impl Future for Detached {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self.0.as_mut().map(|f| f.as_mut().poll(cx)) {
            Some(std::task::Poll::Pending) => std::task::Poll::Pending,
            _ => {
                self.0 = None;
                std::task::Poll::Ready(())
            }
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let (Some(f), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(f);
        }
    }
}

/// Largest single message accepted from an upstream.
pub const MAX_UPSTREAM_MESSAGE: usize = 64 << 20;
