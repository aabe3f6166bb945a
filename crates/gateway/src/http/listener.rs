//! The listener: accepts TCP connections under the connection caps (in all, and per client
//! address) and serves each over HTTP/1.1 with hyper (on one of the gateway's cores, with
//! [`serve_on`]), closing a connection whose request head or body does not arrive in time,
//! or that sits idle between requests.
//!
//! hyper's own `header_read_timeout` is not used: it runs from the moment a connection falls
//! idle, so it cannot tell a slow head from a quiet keep-alive connection. Here a watchdog per
//! connection does: the head timer starts at the first byte of a request, the idle timer when
//! the last answer ends, and neither runs while a request is being answered (a long call, an
//! SSE stream). The body timer is a deadline on the request body itself.

use super::cores::{Cores, Seat};
use crate::config::GatewayConfig;
use axum::body::{Body, Bytes};
use axum::http::{header, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use portcullis_policy::sync::LockExt;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower_service::Service;

/// How long a client may take, and how many connections it may hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// From a request's first byte to its complete head.
    pub header_read: Duration,
    /// From a request's complete head to the end of its body.
    pub body_read: Duration,
    /// Between the end of an answer (or the connection's start) and the next request.
    pub idle: Duration,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_connections_per_ip: usize,
}

impl Limits {
    /// The `[gateway]` settings.
    pub fn new(g: &GatewayConfig) -> Limits {
        Limits {
            header_read: Duration::from_secs(g.header_read_timeout_secs),
            body_read: Duration::from_secs(g.body_read_timeout_secs),
            idle: Duration::from_secs(g.idle_timeout_secs),
            max_connections: g.max_connections,
            max_connections_per_ip: g.max_connections_per_ip,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, asks every
/// connection to finish its requests, and waits for them at most five seconds.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router<()>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    serve_on(listener, app, limits, &Cores::none(), shutdown).await
}

/// [`serve`], with each connection served on one of `cores` for its life.
pub async fn serve_on(
    listener: TcpListener,
    app: axum::Router<()>,
    limits: Limits,
    cores: &Cores,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Arc::new(limits);
    let open = Arc::new(Open::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: let the open connections drain a little.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        match open.take(peer.ip(), &limits) {
            Ok(slot) => {
                let _ = stream.set_nodelay(true);
                let (app, limits, stop) = (app.clone(), limits.clone(), stop_rx.clone());
                cores.spawn(stream, move |stream, seat| {
                    connection(stream, peer, app, limits, (slot, seat), stop)
                });
            }
            Err(why) => refuse(&stream, peer, why),
        }
    }
    let _ = stop_tx.send(true);
    drop(stop_rx);
    let _ = tokio::time::timeout(Duration::from_secs(5), stop_tx.closed()).await;
}

/// The open connections, in all and per client address.
#[derive(Default)]
struct Open {
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Open {
    /// A place for one more connection from `ip`, or which cap refuses it.
    fn take(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<Slot, &'static str> {
        let mut c = self.counts.lock_or_recover();
        if c.0 >= limits.max_connections {
            return Err("max_connections");
        }
        let mine = c.1.entry(ip).or_insert(0);
        if *mine >= limits.max_connections_per_ip {
            return Err("max_connections_per_ip");
        }
        *mine += 1;
        c.0 += 1;
        Ok(Slot {
            open: self.clone(),
            ip,
        })
    }
}

/// One connection's place in [`Open`], given back on drop.
struct Slot {
    open: Arc<Open>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.open.counts.lock_or_recover();
        c.0 -= 1;
        if let Some(n) = c.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.1.remove(&self.ip);
            }
        }
    }
}

/// A connection over a cap: a 503 saying which, written if the socket takes it at once, then
/// closed (nothing is read, so an overloaded gateway spends nothing more on it).
fn refuse(stream: &TcpStream, peer: SocketAddr, cap: &str) {
    tracing::warn!(%peer, "connection refused: {cap} reached");
    let body = serde_json::json!({
        "error": "too_many_connections",
        "message": format!("The gateway's {cap} limit is reached; retry later."),
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.try_write(format!("{head}{body}").as_bytes());
}

/// One connection: hyper serves it while the watchdog watches its timers; a stop signal asks
/// it to end after its current requests.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: axum::Router<()>,
    limits: Arc<Limits>,
    _slot: (Slot, Seat),
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let (activity, limits) = (activity.clone(), limits.clone());
        hyper::service::service_fn(move |req| {
            answer(app.clone(), req, peer, limits.body_read, activity.clone())
        })
    };
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            why = activity.expired(&limits) => {
                tracing::debug!(%peer, "connection closed: {why}");
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// One request: its body under the read deadline, the connection busy until the answer's
/// body is done. A body that runs out of time is answered 408 and the connection closed.
async fn answer(
    mut app: axum::Router<()>,
    req: Request<Incoming>,
    peer: SocketAddr,
    body_read: Duration,
    activity: Arc<Activity>,
) -> Result<Response<Held<BusyGuard>>, Infallible> {
    let busy = activity.begin();
    let late = Arc::new(AtomicBool::new(false));
    let mut req = req.map(|b| {
        Body::new(Deadline {
            inner: b,
            at: tokio::time::Instant::now() + body_read,
            sleep: None,
            late: late.clone(),
        })
    });
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let res = app.call(req).await?;
    let res = if late.load(Ordering::Relaxed) {
        tracing::warn!(%peer, "request body not received within {body_read:?}: connection closed");
        let body = serde_json::json!({
            "error": "request_timeout",
            "message": format!("The request body did not arrive within {} s; nothing was forwarded.", body_read.as_secs()),
        });
        Response::builder()
            .status(StatusCode::REQUEST_TIMEOUT)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONNECTION, "close")
            .body(Body::from(body.to_string()))
            .expect("a valid response")
    } else {
        res
    };
    Ok(res.map(|inner| Held {
        inner,
        _guard: busy,
    }))
}

/// What a connection is doing, for its watchdog (times in ms since the connection opened).
struct Activity {
    start: Instant,
    /// Requests being answered (until their answer's body is done or dropped).
    busy: AtomicUsize,
    /// When the connection last fell idle.
    quiet_since: AtomicU64,
    /// When the first byte of the next request arrived, or [`NONE`].
    head_since: AtomicU64,
    /// Wakes the watchdog when a timer starts.
    changed: Notify,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            busy: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(0),
            // A new connection owes its first request head at once.
            head_since: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Bytes arrived: when nothing is being answered, they begin a request head.
    fn read(&self) {
        if self.busy.load(Ordering::Acquire) == 0 && self.head_since.load(Ordering::Acquire) == NONE
        {
            self.head_since.store(self.now(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// A request head is complete: the connection is busy until the guard drops.
    fn begin(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
        BusyGuard(self.clone())
    }

    /// Resolves with the reason once a timer runs out.
    async fn expired(&self, limits: &Limits) -> &'static str {
        loop {
            let wait = if self.busy.load(Ordering::Acquire) > 0 {
                // Answering: no timer runs; look again when the answer may be done.
                None
            } else {
                let now = self.now();
                let (since, limit, why) = match self.head_since.load(Ordering::Acquire) {
                    NONE => (
                        self.quiet_since.load(Ordering::Acquire),
                        limits.idle,
                        "idle",
                    ),
                    t => (t, limits.header_read, "request head not received in time"),
                };
                let due = since.saturating_add(limit.as_millis() as u64);
                if now >= due {
                    return why;
                }
                Some(Duration::from_millis(due - now))
            };
            match wait {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// A request being answered; dropping it (the answer sent, or abandoned) may make the
/// connection idle.
struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let a = &self.0;
        if a.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.quiet_since.store(a.now(), Ordering::Release);
            a.changed.notify_one();
        }
    }
}

/// A body that holds `guard` (a place, a busy mark) until it is dropped.
pub(super) struct Held<G> {
    pub(super) inner: Body,
    pub(super) _guard: G,
}

impl<G: Unpin> http_body::Body for Held<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails once its deadline passes (the timer is armed only when the
/// body is waited for).
struct Deadline {
    inner: Incoming,
    at: tokio::time::Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    late: Arc<AtomicBool>,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(f) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(f.map(|r| r.map_err(Into::into)));
        }
        let at = self.at;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.as_mut().poll(cx).is_ready() {
            self.late.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err("the request body did not arrive in time".into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
