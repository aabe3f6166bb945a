//! Legacy HTTP+SSE (2024-11-05): one long GET stream carries everything from the server; its
//! first event, `endpoint`, names the URI each message is POSTed to, which must be on the
//! SSE URL's own origin (a server cannot send the credentials elsewhere).

use crate::error::{Error, ErrorKind};
use crate::http::{client_for, next, unreachable, Failure, Incoming};
use portcullis_gateway::upstream::http::{HttpSpec, SseParser};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

/// How long the server gets to name its endpoint.
const ENDPOINT_WAIT: Duration = Duration::from_secs(10);

/// A legacy SSE server.
pub(crate) struct SseWire {
    client: reqwest::Client,
    headers: HeaderMap,
    endpoint: String,
    rx: UnboundedReceiver<Incoming>,
    reader: AbortHandle,
}

fn origin(u: &reqwest::Url) -> (String, Option<String>, Option<u16>) {
    (
        u.scheme().to_owned(),
        u.host_str().map(str::to_owned),
        u.port_or_known_default(),
    )
}

impl SseWire {
    /// Opens the stream and waits (10 s at most) for the `endpoint` event.
    pub(crate) async fn connect(spec: &HttpSpec) -> Result<SseWire, Error> {
        let connect_error = |text: String| Error::new(ErrorKind::Connect, text);
        let (client, headers) = client_for(spec)?;
        let base = reqwest::Url::parse(&spec.url)
            .map_err(|e| connect_error(format!("{}: {e}", spec.url)))?;
        let mut h = headers.clone();
        h.insert("accept", HeaderValue::from_static("text/event-stream"));
        let resp = match client.get(base.clone()).headers(h).send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => return Err(connect_error(format!("{base}: HTTP {}", r.status()))),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Unreachable,
                    unreachable(&spec.url, e).await,
                ))
            }
        };
        let (tx, rx) = unbounded_channel();
        let (found, endpoint) = oneshot::channel::<Result<String, String>>();
        let reader = tokio::spawn(async move {
            let mut resp = resp;
            let mut found = Some(found);
            let mut parser = SseParser::default();
            while let Ok(Some(chunk)) = resp.chunk().await {
                for ev in parser.feed_events(&chunk) {
                    if ev.event == "endpoint" {
                        let resolved = base
                            .join(ev.data.trim())
                            .map_err(|e| e.to_string())
                            .and_then(|u| {
                                if origin(&u) == origin(&base) {
                                    Ok(u.to_string())
                                } else {
                                    Err(format!("the server named an endpoint on another origin ({u}); refused"))
                                }
                            });
                        if let Some(f) = found.take() {
                            let _ = f.send(resolved);
                        }
                    } else if let Ok(v @ Value::Object(_)) = serde_json::from_str(&ev.data) {
                        let _ = tx.send(Incoming::Message(v));
                    }
                }
            }
            if let Some(f) = found.take() {
                let _ = f.send(Err(format!(
                    "{base}: the stream ended before the endpoint event"
                )));
            }
            let _ = tx.send(Incoming::Failed(Failure::Lost(
                "the server's event stream ended".into(),
            )));
        })
        .abort_handle();
        let endpoint = match tokio::time::timeout(ENDPOINT_WAIT, endpoint).await {
            Ok(Ok(Ok(e))) => e,
            Ok(Ok(Err(why))) => {
                reader.abort();
                return Err(connect_error(why));
            }
            _ => {
                reader.abort();
                return Err(connect_error(format!(
                    "{}: no endpoint event within 10 s",
                    spec.url
                )));
            }
        };
        Ok(SseWire {
            client,
            headers,
            endpoint,
            rx,
            reader,
        })
    }

    /// POSTs a message to the endpoint; a request that cannot be delivered fails at once.
    pub(crate) async fn send(&mut self, msg: &Value, step: &str) -> Result<(), Error> {
        let mut h = self.headers.clone();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let post = self.client.post(&self.endpoint).headers(h);
        let failure = match post.body(msg.to_string()).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => Failure::Status(r.status()),
            Err(e) => Failure::Lost(e.without_url().to_string()),
        };
        let is_request = msg.get("method").is_some() && msg.get("id").is_some();
        if is_request {
            Err(failure.at(step))
        } else {
            Ok(())
        }
    }

    /// The next message from the stream.
    pub(crate) async fn recv(&mut self, step: &str) -> Result<Value, Error> {
        next(&mut self.rx, step).await
    }

    /// Stops reading the stream.
    pub(crate) fn close(self) {
        self.reader.abort();
    }
}
