//! A legacy HTTP+SSE upstream (2024-11-05): one long GET stream carries everything from the
//! server; its first event, `endpoint`, names the URI to POST each client message to.
//!
//! The endpoint must be on the SSE URL's own origin: an upstream cannot redirect traffic —
//! and the credentials injected into it — elsewhere.

use super::{BoxFuture, Inbound, Inbox, Transport};
use crate::upstream::http::{HttpSpec, SseParser};
use reqwest::header::{HeaderMap, HeaderValue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// A legacy SSE upstream: messages are POSTed to the endpoint the stream named; everything
/// the server sends arrives on the stream and goes to the inbox.
pub struct SseTransport {
    /// Itself, weakly: each POST runs in its own task.
    me: Weak<SseTransport>,
    client: reqwest::Client,
    headers: HeaderMap,
    inbox: Inbox,
    endpoint: watch::Receiver<Option<Result<String, String>>>,
    closed: AtomicBool,
}

fn origin(u: &reqwest::Url) -> (String, Option<String>, Option<u16>) {
    (
        u.scheme().to_owned(),
        u.host_str().map(str::to_owned),
        u.port_or_known_default(),
    )
}

impl SseTransport {
    /// Opens the SSE stream and waits (up to 10 s) for the `endpoint` event.
    pub async fn start(spec: HttpSpec, inbox: Inbox) -> Result<Arc<dyn Transport>, String> {
        let (client, headers) = super::http::client_for(&spec)?;
        let base = reqwest::Url::parse(&spec.url).map_err(|e| format!("{}: {e}", spec.url))?;
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
        tokio::spawn(async move { me.read_stream(base, tx).await });
        let mut rx = link.endpoint.clone();
        let got = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|e| e.is_some())).await;
        match got {
            Ok(Ok(e)) => match e.clone().expect("some") {
                Ok(_) => Ok(link),
                Err(why) => Err(why),
            },
            _ => Err(format!("{}: no endpoint event within 10 s", spec.url)),
        }
    }

    async fn read_stream(
        self: Arc<Self>,
        base: reqwest::Url,
        endpoint: watch::Sender<Option<Result<String, String>>>,
    ) {
        let mut h = self.headers.clone();
        h.insert("accept", HeaderValue::from_static("text/event-stream"));
        let resp = match self.client.get(base.clone()).headers(h).send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let _ = endpoint.send(Some(Err(format!("{base}: HTTP {}", r.status()))));
                return;
            }
            Err(e) => {
                let _ = endpoint.send(Some(Err(format!(
                    "cannot reach {base}: {}",
                    e.without_url()
                ))));
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
                                Ok(u.to_string())
                            } else {
                                Err(format!("the server named an endpoint on another origin ({u}); refused"))
                            }
                        });
                        let _ = endpoint.send(Some(resolved));
                    }
                    _ => {
                        self.inbox
                            .put(Inbound::Message {
                                line: ev.data,
                                stream_of: None,
                            })
                            .await;
                    }
                }
            }
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
        }
        if endpoint.borrow().is_none() {
            let _ = endpoint.send(Some(Err(format!(
                "{base}: the stream ended before the endpoint event"
            ))));
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
        let result = self.client.post(url).headers(h).body(line).send().await;
        let failed = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("the server answered HTTP {}", r.status())),
            Err(e) => Some(e.without_url().to_string()),
        };
        if let (Some(why), Some(up)) = (failed, up) {
            self.inbox.put(Inbound::Failed { up, why }).await;
        }
    }
}

impl Transport for SseTransport {
    fn send(
        &self,
        line: String,
        up: Option<u64>,
        _extra: Vec<(String, String)>,
    ) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let me = self
                .me
                .upgrade()
                .ok_or_else(|| std::io::Error::other("the upstream link is closed"))?;
            tokio::spawn(me.post(line, up));
            Ok(())
        })
    }

    /// Stops reading the stream.
    fn shutdown(&self, _grace: Duration) -> BoxFuture<'_, ()> {
        self.closed.store(true, Ordering::SeqCst);
        Box::pin(async {})
    }
}
