//! A legacy HTTP+SSE upstream (2024-11-05): one long GET stream carries everything from the
//! server; its first event, `endpoint`, names the URI to POST each client message to.
//!
//! The endpoint must be on the SSE URL's own origin: an upstream cannot redirect traffic —
//! and the credentials injected into it — elsewhere.

use crate::relay::{Caller, Out, Relay};
use crate::upstream::http::{HttpSpec, SseParser};
use reqwest::header::{HeaderMap, HeaderValue};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

/// A link to a legacy SSE upstream bound to one [`Relay`].
pub struct SseLink {
    relay: Arc<Relay>,
    client: reqwest::Client,
    headers: HeaderMap,
    to_client: UnboundedSender<String>,
    endpoint: watch::Receiver<Option<Result<String, String>>>,
    closed: AtomicBool,
    audit: Option<crate::events::Events>,
}

fn origin(u: &reqwest::Url) -> (String, Option<String>, Option<u16>) {
    (
        u.scheme().to_owned(),
        u.host_str().map(str::to_owned),
        u.port_or_known_default(),
    )
}

impl SseLink {
    /// Opens the SSE stream and waits (up to 10 s) for the `endpoint` event.
    pub async fn start(
        spec: HttpSpec,
        relay: Arc<Relay>,
        to_client: UnboundedSender<String>,
        audit: Option<crate::events::Events>,
    ) -> Result<Arc<SseLink>, String> {
        let (client, headers) = super::http::client_for(&spec)?;
        let base = reqwest::Url::parse(&spec.url).map_err(|e| format!("{}: {e}", spec.url))?;
        let (tx, rx) = watch::channel(None);
        let link = Arc::new(SseLink {
            relay,
            client,
            headers,
            to_client,
            endpoint: rx,
            closed: AtomicBool::new(false),
            audit,
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
                        let outs = self.relay.from_server(&ev.data);
                        self.dispatch(outs).await;
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
        let lost = self.relay.upstream_lost("the server's event stream ended");
        self.dispatch(lost).await;
    }

    /// The relay this link feeds.
    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    /// Passes one client line through the relay and on to the server.
    pub async fn from_client(self: &Arc<Self>, line: &str, caller: &Caller) {
        let outs = self.relay.from_client(line, caller);
        self.dispatch(outs).await;
    }

    // Boxed with an explicit `Send` so that the post → dispatch → post recursion type-checks.
    fn dispatch<'a>(
        self: &'a Arc<Self>,
        outs: Vec<Out>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            for (line, up) in super::deliver(
                self.audit.as_ref(),
                &self.to_client,
                outs,
                Some(super::Upstream::Sse(self.clone())),
            )
            .await
            {
                let me = self.clone();
                tokio::spawn(async move { me.post(line, up).await });
            }
        })
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
            let outs = self.relay.undeliverable(up, &why);
            self.dispatch(outs).await;
        }
    }

    /// Stops reading the stream.
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}
