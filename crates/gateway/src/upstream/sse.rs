//! A legacy HTTP+SSE upstream (2024-11-05): one long GET stream carries everything from the
//! server; its first event, `endpoint`, names the URI to POST each client message to.
//!
//! The endpoint must be on the SSE URL's own origin: an upstream cannot redirect traffic —
//! and the credentials injected into it — elsewhere.

use super::client::{Client, Target};
use super::{BoxFuture, Failure, Inbound, Inbox, Pool, Transport};
use crate::upstream::http::{cannot_reach, HttpSpec, SseParser};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::Method;
use portcullis_mcp::Message;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// A legacy SSE upstream: messages are POSTed to the endpoint the stream named; everything
/// the server sends arrives on the stream and goes to the inbox.
pub struct SseTransport {
    /// Itself, weakly: each POST runs in its own task.
    me: Weak<SseTransport>,
    client: Client,
    headers: HeaderMap,
    inbox: Inbox,
    endpoint: watch::Receiver<Option<Endpoint>>,
    closed: AtomicBool,
}

/// The URI the stream named, or why there is none (and what kind of failure that is).
type Endpoint = Result<Target, (ErrorKind, String)>;

fn origin(u: &url::Url) -> (String, Option<String>, Option<u16>) {
    (
        u.scheme().to_owned(),
        u.host_str().map(str::to_owned),
        u.port_or_known_default(),
    )
}

impl SseTransport {
    /// Opens the SSE stream and waits (up to 10 s) for the `endpoint` event. A stream that
    /// cannot be reached is [`ErrorKind::HostUnreachable`].
    pub async fn start(
        spec: HttpSpec,
        inbox: Inbox,
        pool: Pool,
    ) -> std::io::Result<Arc<dyn Transport>> {
        let (client, headers) =
            super::http::client_for(&spec, pool).map_err(std::io::Error::other)?;
        let base = url::Url::parse(&spec.url)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", spec.url)))?;
        let target = Target::parse(&spec.url)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", spec.url)))?;
        let (tx, rx) = watch::channel(None);
        let link = Arc::new_cyclic(|me| SseTransport {
            me: me.clone(),
            client,
            headers,
            inbox,
            endpoint: rx,
            closed: AtomicBool::new(false),
        });
        let me = link.clone();
        tokio::spawn(async move { me.read_stream(base, target, tx).await });
        let mut rx = link.endpoint.clone();
        let got = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|e| e.is_some())).await;
        match got {
            Ok(Ok(e)) => match e.clone().expect("some") {
                Ok(_) => Ok(link),
                Err((kind, why)) => Err(std::io::Error::new(kind, why)),
            },
            _ => Err(std::io::Error::other(format!(
                "{}: no endpoint event within 10 s",
                spec.url
            ))),
        }
    }

    async fn read_stream(
        self: Arc<Self>,
        base: url::Url,
        target: Target,
        endpoint: watch::Sender<Option<Endpoint>>,
    ) {
        let mut h = self.headers.clone();
        h.insert("accept", HeaderValue::from_static("text/event-stream"));
        let resp = match self.client.send(Method::GET, &target, h, "").await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let why = format!("{base}: HTTP {}", r.status());
                let _ = endpoint.send(Some(Err((ErrorKind::Other, why))));
                return;
            }
            Err(e) => {
                let why = cannot_reach(base.as_str(), e);
                let _ = endpoint.send(Some(Err((ErrorKind::HostUnreachable, why))));
                return;
            }
        };
        let mut resp = resp;
        let mut parser = SseParser::default();
        while let Ok(Some(chunk)) = resp.chunk().await {
            for ev in parser.feed_events(&chunk) {
                match ev.event.as_str() {
                    "endpoint" => {
                        let resolved = base.join(ev.data.trim()).map_err(|e| e.to_string()).and_then(|u| {
                            if origin(&u) == origin(&base) {
                                Target::parse(u.as_str())
                            } else {
                                Err(format!("the server named an endpoint on another origin ({u}); refused"))
                            }
                        }).map_err(|why| (ErrorKind::Other, why));
                        let _ = endpoint.send(Some(resolved));
                    }
                    _ => {
                        if let Some(m) = Inbound::message(&ev.data, None) {
                            self.inbox.put(m).await;
                        }
                    }
                }
            }
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
        }
        if endpoint.borrow().is_none() {
            let why = format!("{base}: the stream ended before the endpoint event");
            let _ = endpoint.send(Some(Err((ErrorKind::Other, why))));
        }
        self.inbox
            .put(Inbound::Lost("the server's event stream ended".into()))
            .await;
    }

    async fn post(self: Arc<Self>, line: String, up: Option<u64>) {
        let url = match self.endpoint.borrow().clone() {
            Some(Ok(u)) => u,
            _ => return,
        };
        let mut h = self.headers.clone();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let result = self.client.send(Method::POST, &url, h, line).await;
        let failed = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some((
                format!("the server answered HTTP {}", r.status()),
                Failure::HttpStatus(r.status().as_u16()),
            )),
            Err(e) => Some((e.to_string(), Failure::Other)),
        };
        if let (Some((why, cause)), Some(up)) = (failed, up) {
            self.inbox.put(Inbound::Failed { up, why, cause }).await;
        }
    }
}

impl Transport for SseTransport {
    /// Notifications and responses are POSTed before this returns (the server sees
    /// `notifications/initialized` before the next request); requests each in their own task.
    fn send(
        &self,
        msg: Box<Message>,
        up: Option<u64>,
        _extra: Vec<(String, String)>,
    ) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let line = msg.to_json();
            let me = self
                .me
                .upgrade()
                .ok_or_else(|| std::io::Error::other("the upstream link is closed"))?;
            if up.is_none() {
                me.post(line, None).await;
            } else {
                tokio::spawn(me.post(line, up));
            }
            Ok(())
        })
    }

    /// Stops reading the stream.
    fn shutdown(&self, _grace: Duration) -> BoxFuture<'_, ()> {
        self.closed.store(true, Ordering::SeqCst);
        Box::pin(async {})
    }
}
