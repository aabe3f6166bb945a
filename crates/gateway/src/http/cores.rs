//! Where accepted connections are served: one single-threaded runtime per thread ("core"),
//! each connection pinned to one for its life, so that a connection's requests — and the
//! tasks they start (an upstream connection's driver, a reservation pass) — stay on one
//! thread from accept to answer, with no hand-off to another worker and no wake-up of a
//! parked one. The accepting runtime is core 0; a connection goes to the core serving the
//! fewest.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The cores connections are spread over.
pub struct Cores {
    /// Connections open on the accepting runtime (core 0).
    here: Arc<AtomicUsize>,
    /// The other cores, each a thread running a current-thread runtime.
    others: Vec<Core>,
}

/// One core beside the accepting runtime.
struct Core {
    handle: Handle,
    open: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

thread_local! {
    /// Whether this thread is one of the gateway's cores.
    static ON_CORE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A core's value of one [`PerCore`], beside a weak handle on its owner.
type Owned = (Weak<()>, Box<dyn Any>);

thread_local! {
    /// The values of every [`PerCore`] used on this core, by owner.
    static PER_CORE: std::cell::RefCell<Vec<Owned>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A value of which each core keeps its own, made on first use there (an upstream
/// connection pool, a queue of reservations): what a core's requests share stays on its
/// thread. Off the cores there is none ([`get`](Self::get) answers `None`) and the owner
/// uses a value shared by every thread. A core drops its values of an owner that is gone
/// the next time it makes one.
pub(crate) struct PerCore<T> {
    owner: Arc<()>,
    _value: PhantomData<fn() -> T>,
}

impl<T: Clone + 'static> PerCore<T> {
    pub fn new() -> PerCore<T> {
        PerCore {
            owner: Arc::new(()),
            _value: PhantomData,
        }
    }

    /// This core's value, made by `make` on first use; `None` on a thread that is not a
    /// core.
    pub fn get(&self, make: impl FnOnce() -> T) -> Option<T> {
        if !Cores::on_core() {
            return None;
        }
        PER_CORE.with_borrow_mut(|values| {
            // Found by address (a weak handle keeps its owner's allocation, so an address is
            // never reused while listed): no reference count touched on the request path.
            let mine = Arc::as_ptr(&self.owner);
            if let Some((_, v)) = values.iter().find(|(owner, _)| owner.as_ptr() == mine) {
                return v.downcast_ref::<T>().cloned();
            }
            values.retain(|(owner, _)| owner.strong_count() > 0);
            let v = make();
            values.push((Arc::downgrade(&self.owner), Box::new(v.clone())));
            Some(v)
        })
    }
}

/// A connection's place on a core, given back when the connection ends.
pub(super) struct Seat(Arc<AtomicUsize>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Cores {
    /// Connections served on the accepting runtime alone.
    pub fn none() -> Cores {
        Cores {
            here: Arc::default(),
            others: Vec::new(),
        }
    }

    /// The calling thread (which must run a current-thread runtime and accept) and `extra`
    /// more threads, each with a current-thread runtime (I/O and timers on).
    pub fn start(extra: usize) -> std::io::Result<Cores> {
        let mut others = Vec::with_capacity(extra);
        for i in 1..=extra {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("portcullis-core-{i}"))
                .spawn(move || {
                    ON_CORE.set(true);
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            others.push(Core {
                handle,
                open: Arc::default(),
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        ON_CORE.set(true);
        Ok(Cores {
            here: Arc::default(),
            others,
        })
    }

    /// Whether the calling thread is one of the gateway's cores (where each upstream client
    /// keeps a pool of connections, and the counters a queue of reservations, of its own).
    pub fn on_core() -> bool {
        ON_CORE.get()
    }

    /// Serves `stream` with `serve` on the core with the fewest open connections (the
    /// accepting runtime when tied).
    pub(super) fn spawn<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream, Seat) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let load = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        let best = self
            .others
            .iter()
            .filter(|c| load(&c.open) < load(&self.here))
            .min_by_key(|c| load(&c.open));
        let Some(core) = best else {
            self.here.fetch_add(1, Ordering::Relaxed);
            let seat = Seat(self.here.clone());
            tokio::spawn(serve(stream, seat));
            return;
        };
        // The socket moves to the other runtime's reactor: deregistered here, registered
        // there (once per connection, not per request).
        let std = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot hand a connection to another core: {e}");
                return;
            }
        };
        core.open.fetch_add(1, Ordering::Relaxed);
        let seat = Seat(core.open.clone());
        core.handle.spawn(async move {
            match TcpStream::from_std(std) {
                Ok(stream) => serve(stream, seat).await,
                Err(e) => tracing::warn!("cannot take a connection on this core: {e}"),
            }
        });
    }
}

impl Drop for Cores {
    fn drop(&mut self) {
        for c in &mut self.others {
            drop(c.stop.take());
        }
        for c in &mut self.others {
            if let Some(t) = c.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{serve_on, Limits};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One keep-alive request; the answer's body (the app answers `Content-Length`).
    async fn get(conn: &mut TcpStream) -> String {
        conn.write_all(b"GET /thread HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 512];
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed mid-answer");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .expect("a content-length")
                    .parse()
                    .unwrap();
                if body.len() >= len {
                    return body[..len].to_string();
                }
            }
        }
    }

    /// An app answering `GET /thread` with the name of the thread that served it.
    fn thread_app() -> axum::Router {
        axum::Router::new().route(
            "/thread",
            axum::routing::get(|| async {
                std::thread::current().name().unwrap_or("").to_string()
            }),
        )
    }

    /// A loopback listener, its address and the default limits.
    async fn bind() -> (tokio::net::TcpListener, std::net::SocketAddr, Limits) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (
            listener,
            addr,
            Limits::new(&crate::config::GatewayConfig::default()),
        )
    }

    #[test]
    fn connections_go_to_the_least_busy_core_and_stay_there() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let here = std::thread::current().name().unwrap_or("").to_string();
        rt.block_on(async {
            let cores = Cores::start(1).unwrap();
            assert!(Cores::on_core());
            let app = thread_app();
            let (listener, addr, limits) = bind().await;
            let (stop, stopped) = oneshot::channel::<()>();
            let server = async {
                serve_on(listener, app, limits, &cores, async {
                    let _ = stopped.await;
                })
                .await
            };
            let client = async {
                let mut a = TcpStream::connect(addr).await.unwrap();
                let first = get(&mut a).await;
                // Ties go to the accepting runtime.
                assert_eq!(first, here);
                let mut b = TcpStream::connect(addr).await.unwrap();
                let other = get(&mut b).await;
                assert_eq!(other, "portcullis-core-1");
                for _ in 0..5 {
                    assert_eq!(get(&mut a).await, first);
                    assert_eq!(get(&mut b).await, other);
                }
                // `a` closed: its core is the least busy again.
                drop(a);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let mut c = TcpStream::connect(addr).await.unwrap();
                assert_eq!(get(&mut c).await, here);
                let _ = stop.send(());
            };
            tokio::join!(server, client);
        });
    }

    #[test]
    fn a_core_makes_its_own_value_once_and_forgets_those_of_owners_gone() {
        std::thread::spawn(|| {
            let made = std::cell::Cell::new(0);
            let make = || {
                made.set(made.get() + 1);
                made.get()
            };
            let a = PerCore::<usize>::new();
            assert_eq!(a.get(make), None, "not a core yet: no value of its own");
            assert_eq!(made.get(), 0);
            let _cores = Cores::start(0).unwrap();
            assert_eq!(a.get(make), Some(1));
            assert_eq!(a.get(make), Some(1), "made once per core");
            // Another core has its own.
            let on_other = std::thread::spawn(move || {
                let _cores = Cores::start(0).unwrap();
                a.get(|| 7)
            });
            assert_eq!(on_other.join().unwrap(), Some(7));
            let b = PerCore::<usize>::new();
            assert_eq!(b.get(make), Some(2));
            assert_eq!(
                PER_CORE.with_borrow(|v| v.len()),
                1,
                "a's value is dropped with a"
            );
        })
        .join()
        .unwrap();
    }

    /// Set by the slow handler of the test below when it answers.
    static SLOW_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// A stop lets a request in flight on another core finish and answer before `serve_on`
    /// returns.
    #[test]
    fn a_stop_waits_for_a_request_in_flight_on_another_core() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cores = Cores::start(1).unwrap();
            let app = thread_app().route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    SLOW_DONE.store(true, Ordering::SeqCst);
                    "done"
                }),
            );
            let (listener, addr, limits) = bind().await;
            let (stop, stopped) = oneshot::channel::<()>();
            let (asked, asked_rx) = oneshot::channel::<()>();
            let server = async {
                serve_on(listener, app, limits, &cores, async {
                    let _ = stopped.await;
                })
                .await;
                SLOW_DONE.load(Ordering::SeqCst)
            };
            let client = async {
                let mut a = TcpStream::connect(addr).await.unwrap();
                let _ = get(&mut a).await; // core 0
                let mut b = TcpStream::connect(addr).await.unwrap();
                assert_eq!(get(&mut b).await, "portcullis-core-1");
                b.write_all(b"GET /slow HTTP/1.1\r\nhost: localhost\r\n\r\n")
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let _ = asked.send(());
                let mut answer = Vec::new();
                b.read_to_end(&mut answer).await.unwrap();
                let answer = String::from_utf8_lossy(&answer).into_owned();
                assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
                assert!(answer.ends_with("done"), "{answer}");
            };
            let stopper = async {
                asked_rx.await.unwrap();
                let _ = stop.send(());
            };
            let (slow_done, (), ()) = tokio::join!(server, client, stopper);
            assert!(
                slow_done,
                "serve_on returned before the request in flight was answered"
            );
        });
    }
}
