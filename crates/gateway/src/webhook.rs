//! Approval notifications: a JSON POST per new approval request, signed with HMAC-SHA256
//! (`X-Portcullis-Signature: sha256=<hex>` over the exact body), retried with back-off, at
//! most a few in flight, and never on the request path (each is its own task).

use hmac::{Hmac, Mac};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-portcullis-signature";

/// A webhook target.
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
    slots: Arc<Semaphore>,
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

impl Webhook {
    /// A webhook to `url`, signed with `secret`, at most 4 deliveries in flight.
    pub fn new(url: &str, secret: &str) -> Result<Webhook, String> {
        reqwest::Url::parse(url).map_err(|e| format!("approval_webhook {url:?}: {e}"))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Webhook {
            client,
            url: url.to_owned(),
            secret: secret.as_bytes().to_vec(),
            slots: Arc::new(Semaphore::new(4)),
        })
    }

    /// Sends `event` in the background: up to 4 attempts (0.5 s, 1 s, 2 s apart) until a 2xx.
    pub fn notify(self: &Arc<Self>, event: &str, payload: Value) {
        let me = self.clone();
        let event = event.to_owned();
        tokio::spawn(async move {
            let Ok(_permit) = me.slots.clone().acquire_owned().await else {
                return;
            };
            let body = payload.to_string();
            let sig = signature(&me.secret, body.as_bytes());
            let mut wait = Duration::from_millis(500);
            for attempt in 1..=4 {
                let sent = me
                    .client
                    .post(&me.url)
                    .header("content-type", "application/json")
                    .header("x-portcullis-event", &event)
                    .header(SIGNATURE_HEADER, &sig)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => tracing::warn!(
                        "approval webhook: HTTP {} (attempt {attempt}/4)",
                        r.status()
                    ),
                    Err(e) => tracing::warn!(
                        "approval webhook: {} (attempt {attempt}/4)",
                        e.without_url()
                    ),
                }
                if attempt < 4 {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
            tracing::error!("approval webhook: gave up after 4 attempts");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
