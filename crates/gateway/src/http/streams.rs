//! The cap on open SSE streams (the GET streams of Streamable HTTP sessions, and legacy
//! `/sse/<server>` sessions) per client address. A stream holds its place until its body is
//! dropped; one over the cap is answered 429 before anything is opened.

use super::json_status;
use super::listener::Held;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use portcullis_policy::sync::LockExt;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The open streams per client address.
pub(super) struct StreamCaps {
    per_client: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A stream's place, given back on drop.
pub(super) struct Place {
    caps: Arc<StreamCaps>,
    client: Option<IpAddr>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let Some(ip) = self.client else { return };
        let mut open = self.caps.open.lock_or_recover();
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

impl StreamCaps {
    /// `max_streams_per_client`.
    pub(super) fn new(per_client: usize) -> Arc<StreamCaps> {
        Arc::new(StreamCaps {
            per_client,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more stream from `client` (unknown: not counted), or the 429 saying
    /// the cap is reached.
    pub(super) fn take(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Place, Box<Response>> {
        if let Some(ip) = client {
            let mut open = self.open.lock_or_recover();
            let n = open.entry(ip).or_insert(0);
            if *n >= self.per_client {
                let cap = self.per_client;
                tracing::warn!(client = %ip, "SSE stream refused: max_streams_per_client ({cap}) reached");
                return Err(Box::new(json_status(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"error": "too_many_streams", "message": format!("This client address already has {cap} open streams (gateway.max_streams_per_client); close one first.")}),
                )));
            }
            *n += 1;
        }
        Ok(Place {
            caps: self.clone(),
            client,
        })
    }
}

/// `res` (a stream), holding `place` until its body is dropped.
pub(super) fn holding(res: Response, place: Place) -> Response {
    res.map(|inner| {
        Body::new(Held {
            inner,
            _guard: place,
        })
    })
}
