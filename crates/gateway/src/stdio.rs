//! The stdio face: a client that launched `portcullis stdio … -- server…` talks to us on our
//! stdin/stdout; we talk to the server as a child process.

use crate::relay::{Out, Relay};
use crate::upstream::stdio::{self as child, Backoff, ChildSpec, SharedStdin};
use portcullis_mcp::{codes, error_line, read_line_capped, LineError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

/// Size caps for one connection.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Longest line accepted from the client (bytes).
    pub client_line: usize,
    /// Longest line accepted from the server (bytes).
    pub server_line: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            client_line: 4 << 20,
            server_line: 64 << 20,
        }
    }
}

type Writer = Arc<Mutex<Box<dyn AsyncWrite + Unpin + Send>>>;

struct Wires {
    client: Writer,
    server: SharedStdin,
    relay: Arc<Relay>,
}

impl Wires {
    async fn dispatch(&self, outs: Vec<Out>) {
        let mut queue = outs;
        while !queue.is_empty() {
            let mut next = Vec::new();
            for o in queue {
                match o {
                    Out::Client(line) => {
                        let mut w = self.client.lock().await;
                        let mut buf = line.into_bytes();
                        buf.push(b'\n');
                        if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
                            tracing::debug!("client output closed");
                        }
                    }
                    Out::Server(line, up) => {
                        if let Err(e) = child::send(&self.server, &line).await {
                            if let Some(up) = up {
                                next.extend(self.relay.undeliverable(up, &e.to_string()));
                            }
                        }
                    }
                }
            }
            queue = next;
        }
    }
}

/// Runs the stdio gateway until the client closes its input; then stops the server.
pub async fn run<R, W>(
    relay: Arc<Relay>,
    spec: ChildSpec,
    client_in: R,
    client_out: W,
    caps: Caps,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let wires = Arc::new(Wires {
        client: Arc::new(Mutex::new(Box::new(client_out))),
        server: Arc::new(Mutex::new(None)),
        relay: relay.clone(),
    });
    let shutting = Arc::new(AtomicBool::new(false));
    // Start the first child before reading the client, so that the first request finds it.
    let mut slot = None;
    let first = child::spawn(&spec, &mut slot)?;
    *wires.server.lock().await = slot;
    let (child_tx, mut child_rx) = tokio::sync::mpsc::channel::<tokio::process::Child>(1);
    let supervisor = {
        let wires = wires.clone();
        let shutting = shutting.clone();
        tokio::spawn(async move {
            let mut running = Some(first);
            let mut backoff = Backoff::default();
            loop {
                let Some(child::Running { child, stdout }) = running.take() else {
                    break;
                };
                let started = Instant::now();
                let _ = child_tx.send(child).await;
                let mut reader = BufReader::new(stdout);
                let mut buf = Vec::new();
                loop {
                    match read_line_capped(&mut reader, &mut buf, caps.server_line).await {
                        Ok(Some(line)) => {
                            let outs = wires.relay.from_server(&line);
                            wires.dispatch(outs).await;
                        }
                        Ok(None) | Err(LineError::Io(_)) => break,
                        Err(LineError::TooLong(n)) => tracing::error!(
                            "dropped a {n}-byte line from the server (cap {})",
                            caps.server_line
                        ),
                        Err(LineError::NotUtf8) => {
                            tracing::warn!("dropped a non-UTF-8 line from the server")
                        }
                    }
                }
                wires.server.lock().await.take();
                let lost = wires.relay.upstream_lost("the server process exited");
                wires.dispatch(lost).await;
                if shutting.load(Ordering::SeqCst) {
                    break;
                }
                let wait = backoff.wait(started.elapsed());
                tracing::warn!("the server exited; restarting in {wait:?}");
                tokio::time::sleep(wait).await;
                if shutting.load(Ordering::SeqCst) {
                    break;
                }
                let mut slot = None;
                match child::spawn(&spec, &mut slot) {
                    Ok(r) => {
                        *wires.server.lock().await = slot;
                        running = Some(r);
                        let replay = wires.relay.replay_after_restart();
                        wires.dispatch(replay).await;
                    }
                    Err(e) => {
                        tracing::error!("{e}");
                        // Keep trying with back-off: an empty `running` would end the loop, so
                        // fabricate a wait and try again.
                        loop {
                            let wait = backoff.wait(Duration::ZERO);
                            tokio::time::sleep(wait).await;
                            if shutting.load(Ordering::SeqCst) {
                                return;
                            }
                            let mut slot = None;
                            if let Ok(r) = child::spawn(&spec, &mut slot) {
                                *wires.server.lock().await = slot;
                                running = Some(r);
                                let replay = wires.relay.replay_after_restart();
                                wires.dispatch(replay).await;
                                break;
                            }
                        }
                    }
                }
            }
        })
    };
    // Keep the latest child so we can stop it at the end.
    let current: Arc<Mutex<Option<tokio::process::Child>>> = Arc::new(Mutex::new(None));
    let keeper = {
        let current = current.clone();
        tokio::spawn(async move {
            while let Some(c) = child_rx.recv().await {
                *current.lock().await = Some(c);
            }
        })
    };

    let mut reader = BufReader::new(client_in);
    let mut buf = Vec::new();
    loop {
        match read_line_capped(&mut reader, &mut buf, caps.client_line).await {
            Ok(Some(line)) if line.trim().is_empty() => {}
            Ok(Some(line)) => {
                let outs = relay.from_client(&line);
                wires.dispatch(outs).await;
            }
            Ok(None) | Err(LineError::Io(_)) => break,
            Err(LineError::TooLong(n)) => {
                let msg = format!(
                    "message of {n} bytes exceeds the {}-byte limit; nothing was forwarded",
                    caps.client_line
                );
                wires
                    .dispatch(vec![Out::Client(error_line(
                        None,
                        codes::INVALID_REQUEST,
                        &msg,
                    ))])
                    .await;
            }
            Err(LineError::NotUtf8) => {
                wires
                    .dispatch(vec![Out::Client(error_line(
                        None,
                        codes::PARSE_ERROR,
                        "message is not UTF-8; nothing was forwarded",
                    ))])
                    .await;
            }
        }
    }
    // Client gone: stop the server.
    shutting.store(true, Ordering::SeqCst);
    // Give the keeper a moment to have recorded the newest child.
    tokio::task::yield_now().await;
    if let Some(mut c) = current.lock().await.take() {
        child::stop(&mut c, &wires.server, Duration::from_secs(2)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), supervisor).await;
    keeper.abort();
    Ok(())
}
