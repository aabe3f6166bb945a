//! Streamable HTTP and legacy HTTP+SSE through the gateway's own [`Transport`]s: they move the
//! lines (headers, the session, resumption with `Last-Event-ID`, the SSE endpoint on the same
//! origin, DELETE on close), and a small [`Receiver`] forwards what they hand over into a
//! channel that `TransportWire::recv` reads. What stays here is the client's own: turning an
//! [`Inbound::Failed`] into an [`Error`] of the step that waited, and, for a server that
//! cannot be reached, the reason a plain TCP connection fails (the HTTP client only says
//! "error sending request").

use crate::error::{Error, ErrorKind};
use portcullis_gateway::upstream::http::cannot_reach;
use portcullis_gateway::upstream::{
    BoxFuture, Failure, Inbound, Inbox, Pool, Receiver, Transport, UpstreamSpec,
};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// No request waits for its answer (request ids start at 1).
const NO_REQUEST: u64 = 0;

/// What the transport handed over, parsed.
enum Incoming {
    Message(Value),
    Failed {
        up: u64,
        why: String,
        cause: Failure,
    },
    Lost(String),
}

/// The client as the owner of its transport: everything goes into the wire's channel.
struct Forward {
    tx: UnboundedSender<Incoming>,
    /// The request whose answer is awaited (the client asks one at a time), or
    /// [`NO_REQUEST`]: the transport stops resuming the stream of any other.
    waiting: AtomicU64,
}

impl Receiver for Forward {
    fn receive(&self, inbound: Inbound) -> BoxFuture<'_, ()> {
        let item = match inbound {
            Inbound::Message { msg, .. } => match serde_json::from_str(&msg.to_json()) {
                Ok(v @ Value::Object(_)) => {
                    let id = v.get("id").and_then(Value::as_u64);
                    if v.get("method").is_none() && id.is_some() {
                        let _ = self.waiting.compare_exchange(
                            id.unwrap_or(NO_REQUEST),
                            NO_REQUEST,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                    }
                    Some(Incoming::Message(v))
                }
                _ => None,
            },
            Inbound::Failed { up, why, cause } => Some(Incoming::Failed { up, why, cause }),
            Inbound::Lost(why) => Some(Incoming::Lost(why)),
            Inbound::Restarted | Inbound::Reconnected { .. } => None,
        };
        if let Some(item) = item {
            let _ = self.tx.send(item);
        }
        Box::pin(async {})
    }

    fn awaits(&self, up: u64) -> bool {
        self.waiting.load(Ordering::SeqCst) == up
    }
}

/// An HTTP server (Streamable HTTP or legacy SSE) behind the gateway's transport.
pub(crate) struct TransportWire {
    transport: Arc<dyn Transport>,
    owner: Arc<Forward>,
    rx: UnboundedReceiver<Incoming>,
    /// The server's URL (for "cannot reach").
    url: String,
    /// Why the connection is gone, once it is.
    lost: Option<String>,
}

impl TransportWire {
    /// Connects to the server at `url` that `spec` describes, with connections of its own
    /// (the caller's runtime may be short-lived): for Streamable HTTP nothing is sent yet; a
    /// legacy SSE stream is opened and its endpoint awaited.
    pub(crate) async fn connect(spec: &UpstreamSpec, url: &str) -> Result<TransportWire, Error> {
        let (tx, rx) = unbounded_channel();
        let owner = Arc::new(Forward {
            tx,
            waiting: AtomicU64::new(NO_REQUEST),
        });
        let weak: Weak<Forward> = Arc::downgrade(&owner);
        let inbox = Inbox::new(weak);
        let transport = match spec.connect_with(inbox, Pool::Own).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::HostUnreachable => {
                let why = unreachable(url, e.to_string()).await;
                return Err(Error::new(ErrorKind::Unreachable, why));
            }
            Err(e) => return Err(Error::new(ErrorKind::Connect, e.to_string())),
        };
        Ok(TransportWire {
            transport,
            owner,
            rx,
            url: url.to_owned(),
            lost: None,
        })
    }

    /// Sends a message. A request's answer (or its failure) arrives through [`Self::recv`];
    /// notifications and responses have left when this returns.
    pub(crate) async fn send(&mut self, msg: &Value, step: &str) -> Result<(), Error> {
        let up = msg.get("method").and(msg.get("id")).and_then(Value::as_u64);
        if let Some(up) = up {
            self.owner.waiting.store(up, Ordering::SeqCst);
        }
        let parsed = portcullis_mcp::Message::parse(&msg.to_string())
            .map_err(|e| Error::new(ErrorKind::Transport, format!("{e} (while sending {step})")))?;
        self.transport
            .send(Box::new(parsed), up, Vec::new())
            .await
            .map_err(|e| Error::new(ErrorKind::Transport, format!("{e} (while sending {step})")))
    }

    /// The next message from the server, or the failure of the request that waits.
    pub(crate) async fn recv(&mut self, step: &str) -> Result<Value, Error> {
        loop {
            if let Some(why) = &self.lost {
                return Err(Error::new(
                    ErrorKind::Transport,
                    format!("{why} (while waiting for the answer to {step})"),
                ));
            }
            let (why, cause) = match self.rx.recv().await {
                Some(Incoming::Message(v)) => return Ok(v),
                Some(Incoming::Lost(why)) => {
                    self.lost = Some(why);
                    continue;
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::Transport,
                        format!("the connection closed before the server answered {step}"),
                    ))
                }
                Some(Incoming::Failed { up, why, cause }) => {
                    // A request given up earlier (timed out) fails too late to matter.
                    let current = self.owner.waiting.compare_exchange(
                        up,
                        NO_REQUEST,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    if current.is_err() {
                        continue;
                    }
                    (why, cause)
                }
            };
            return Err(match cause {
                Failure::Unreachable => {
                    Error::new(ErrorKind::Unreachable, unreachable(&self.url, why).await)
                }
                Failure::HttpStatus(code) => {
                    let status = reqwest::StatusCode::from_u16(code)
                        .map_or_else(|_| code.to_string(), |s| s.to_string());
                    Error::new(
                        ErrorKind::HttpStatus(code),
                        format!("the server answered {step} with HTTP {status}"),
                    )
                }
                Failure::Other => Error::new(
                    ErrorKind::Transport,
                    format!("{why} (while waiting for the answer to {step})"),
                ),
            });
        }
    }

    /// Stops reading: a handshake-era session is ended (DELETE, 2 s at most), a legacy
    /// stream closed.
    pub(crate) async fn close(self) {
        self.owner.waiting.store(NO_REQUEST, Ordering::SeqCst);
        self.transport.shutdown(Duration::ZERO).await;
    }
}

/// "cannot reach URL: …" with the reason a plain TCP connection to the server fails (refused,
/// unknown host, …) when there is one; else `why`, the transport's own sentence.
async fn unreachable(url: &str, why: String) -> String {
    match connect_failure(url).await {
        Some(detail) => cannot_reach(url, detail),
        None => why,
    }
}

/// Why a TCP connection to the URL's host and port fails (within 5 s), or `None` if it works.
async fn connect_failure(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
    let connect = tokio::net::TcpStream::connect((host, u.port_or_known_default()?));
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer to a TCP connection within 5 s".into()),
    }
}
