//! Reservations gathered on the runtime: the `tools/call`s a core (a thread with its own
//! runtime, [`crate::http::Cores`]) takes in before it runs out of work hand their counter
//! reservations to the store together (one SQLite transaction for all of them), without a
//! timer and without a thread of its own.
//!
//! [`gather`] wraps a counter store that [`combines`](CounterStore::combines). A reservation
//! made while no pass is open is made at once, on the caller's thread (a lone call waits for
//! nothing), and opens a pass: a flush task that yields (tokio runs a yielded task once the
//! runtime has no other task ready), then hands the store every reservation queued meanwhile
//! with [`reserve_together`](CounterStore::reserve_together), and goes on while more arrive.
//! Under load, the requests a core reads in one pass share one write; the pass closes when
//! a flush finds nothing queued. Off a runtime, reservations go straight to the store.

use crate::http::PerCore;
use portcullis_policy::sync::LockExt;
use portcullis_policy::{
    CounterKey, CounterStore, Deferred, Millis, Reply, Reservation, ReserveError, Ticket, Usage,
    Window,
};
use std::sync::{Arc, Mutex};

/// `store` with its reservations gathered when it combines them; `store` itself otherwise.
pub fn gather(store: Arc<dyn CounterStore>) -> Arc<dyn CounterStore> {
    if store.combines() {
        Arc::new(Gathered {
            store,
            shared: Arc::default(),
            per_core: PerCore::new(),
        })
    } else {
        store
    }
}

/// A combining store whose request-path reservations are queued and flushed together: on
/// each of the gateway's cores in a queue of its own (a pass never mixes two cores'
/// requests, nor answers one core's from another), elsewhere in one shared queue.
struct Gathered {
    store: Arc<dyn CounterStore>,
    shared: Arc<Mutex<Queue>>,
    per_core: PerCore<Arc<Mutex<Queue>>>,
}

/// The reservations waiting for the flush task, and whether a pass is open (its flush task
/// scheduled or running).
#[derive(Default)]
struct Queue {
    jobs: Vec<Deferred>,
    open: bool,
}

impl CounterStore for Gathered {
    fn reserve(&self, reqs: &[Reservation], now: Millis) -> Result<Ticket, ReserveError> {
        self.store.reserve(reqs, now)
    }

    fn refund(&self, ticket: &Ticket, now: Millis) -> Result<(), ReserveError> {
        self.store.refund(ticket, now)
    }

    fn usage(&self, key: &CounterKey, window: Window, now: Millis) -> Result<Usage, ReserveError> {
        self.store.usage(key, window, now)
    }

    fn defers(&self) -> bool {
        true
    }

    fn reserve_later(&self, reqs: Vec<Reservation>, now: Millis, reply: Reply) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return self.store.reserve_later(reqs, now, reply);
        };
        let queue = self
            .per_core
            .get(Arc::default)
            .unwrap_or_else(|| self.shared.clone());
        let (reqs, reply) = {
            let mut q = queue.lock_or_recover();
            if q.open {
                return q.jobs.push(Deferred { reqs, now, reply });
            }
            q.open = true;
            (reqs, reply)
        };
        self.store.reserve_later(reqs, now, reply);
        let flush = Flush {
            store: Arc::clone(&self.store),
            queue,
        };
        // A runtime shutting down drops the task unrun: `Flush`'s drop then makes what is
        // queued on this thread.
        drop(rt.spawn(flush.run()));
    }
}

/// The flush task of a pass of a [`Gathered`] store. Whichever way it ends (done, or dropped
/// by a runtime shutting down), its drop makes every reservation still queued and closes the
/// pass, so none is left unanswered.
struct Flush {
    store: Arc<dyn CounterStore>,
    queue: Arc<Mutex<Queue>>,
}

impl Flush {
    /// Yields, then hands over what was queued meanwhile; again while more arrived.
    async fn run(self) {
        loop {
            tokio::task::yield_now().await;
            let jobs = std::mem::take(&mut self.queue.lock_or_recover().jobs);
            if jobs.is_empty() {
                return;
            }
            self.store.reserve_together(jobs);
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        loop {
            let jobs = {
                let mut q = self.queue.lock_or_recover();
                if q.jobs.is_empty() {
                    q.open = false;
                    return;
                }
                std::mem::take(&mut q.jobs)
            };
            self.store.reserve_together(jobs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::Scope;
    use portcullis_store::SqliteCounters;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// 2026-11-22T00:00:00Z.
    const NOW: Millis = 1_795_305_600_000;

    /// Real SQLite counters that count how they are asked to write: reservations one at a
    /// time, and the size of each batch handed over together.
    struct Counting {
        sqlite: SqliteCounters,
        one_by_one: AtomicUsize,
        batches: Mutex<Vec<usize>>,
    }

    impl CounterStore for Counting {
        fn reserve(&self, reqs: &[Reservation], now: Millis) -> Result<Ticket, ReserveError> {
            self.sqlite.reserve(reqs, now)
        }
        fn refund(&self, ticket: &Ticket, now: Millis) -> Result<(), ReserveError> {
            self.sqlite.refund(ticket, now)
        }
        fn usage(&self, k: &CounterKey, w: Window, now: Millis) -> Result<Usage, ReserveError> {
            self.sqlite.usage(k, w, now)
        }
        fn combines(&self) -> bool {
            true
        }
        fn reserve_later(&self, reqs: Vec<Reservation>, now: Millis, reply: Reply) {
            self.one_by_one.fetch_add(1, Ordering::SeqCst);
            self.sqlite.reserve_later(reqs, now, reply)
        }
        fn reserve_together(&self, jobs: Vec<Deferred>) {
            self.batches.lock_or_recover().push(jobs.len());
            self.sqlite.reserve_together(jobs)
        }
    }

    fn counting() -> Arc<Counting> {
        Arc::new(Counting {
            sqlite: SqliteCounters::open_in_memory().expect("in-memory SQLite"),
            one_by_one: AtomicUsize::new(0),
            batches: Mutex::new(Vec::new()),
        })
    }

    fn quota(max: u64) -> Vec<Reservation> {
        vec![Reservation {
            key: CounterKey::new(Scope::Grant, "g1", "calls", Window::Day, None),
            window: Window::Day,
            max,
            amount: 1,
        }]
    }

    /// Reserves `quota(max)` through `store` and awaits the reply.
    async fn reserve(store: &dyn CounterStore, max: u64) -> Result<Ticket, ReserveError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reply: Reply = Box::new(move |_, r| drop(tx.send(r)));
        store.reserve_later(quota(max), NOW, reply);
        rx.await.expect("every reservation is answered")
    }

    #[test]
    fn calls_taken_in_together_share_one_write_and_stay_exact() {
        let inner = counting();
        let store = gather(inner.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let granted = rt.block_on(async {
            let calls: Vec<_> = (0..50)
                .map(|_| {
                    let store = Arc::clone(&store);
                    tokio::spawn(async move { reserve(&*store, 30).await })
                })
                .collect();
            let mut granted = 0;
            for c in calls {
                granted += usize::from(c.await.expect("task").is_ok());
            }
            granted
        });
        assert_eq!(granted, 30, "exactly max reservations fit");
        // The first made at once (it opened the pass), the other 49 in one write.
        assert_eq!(inner.one_by_one.load(Ordering::SeqCst), 1);
        assert_eq!(*inner.batches.lock_or_recover(), vec![49]);
        let k = &quota(30)[0].key;
        assert_eq!(store.usage(k, Window::Day, NOW).expect("usage").used, 30);
    }

    #[test]
    fn passes_opened_and_closed_by_two_workers_lose_no_reservation() {
        let inner = counting();
        let store = gather(inner.clone());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let granted = rt.block_on(async {
            let calls: Vec<_> = (0..400)
                .map(|i| {
                    let store = Arc::clone(&store);
                    tokio::spawn(async move {
                        if i % 3 == 0 {
                            tokio::task::yield_now().await;
                        }
                        reserve(&*store, 123).await
                    })
                })
                .collect();
            let mut granted = 0;
            for c in calls {
                granted += usize::from(c.await.expect("task").is_ok());
            }
            granted
        });
        assert_eq!(granted, 123, "exactly max reservations fit");
        let batched: usize = inner.batches.lock_or_recover().iter().sum();
        assert_eq!(inner.one_by_one.load(Ordering::SeqCst) + batched, 400);
    }

    #[test]
    fn a_lone_call_is_reserved_at_once_and_closes_its_pass() {
        let inner = counting();
        let store = gather(inner.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            for _ in 0..3 {
                reserve(&*store, 10).await.expect("fits");
                // Let the pass's flush task run and find nothing.
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
            }
        });
        assert_eq!(inner.one_by_one.load(Ordering::SeqCst), 3);
        assert!(inner.batches.lock_or_recover().is_empty());
    }

    #[test]
    fn reservations_queued_when_the_runtime_stops_are_still_answered() {
        let inner = counting();
        let store = gather(inner.clone());
        let answered = Arc::new(Mutex::new(Vec::new()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            // Two at once from one task: the first opens the pass, the second is queued for
            // a flush task that never runs.
            for _ in 0..2 {
                let answered = Arc::clone(&answered);
                let reply: Reply = Box::new(move |_, r| answered.lock_or_recover().push(r));
                store.reserve_later(quota(10), NOW, reply);
            }
        });
        assert_eq!(answered.lock_or_recover().len(), 1, "the second waits");
        drop(rt);
        let answered = answered.lock_or_recover();
        assert_eq!(answered.len(), 2, "the stopped runtime's flush answered it");
        assert!(answered.iter().all(Result::is_ok), "{answered:?}");
        drop(answered);
        // The pass is closed: the next call, off any runtime, goes straight to the store.
        let (tx, rx) = std::sync::mpsc::channel();
        store.reserve_later(quota(10), NOW, Box::new(move |_, r| drop(tx.send(r))));
        assert!(rx.recv().expect("answered").is_ok());
        assert_eq!(inner.one_by_one.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_store_that_does_not_combine_is_not_wrapped() {
        let memory: Arc<dyn CounterStore> = Arc::new(portcullis_store::MemoryCounters::new());
        assert!(Arc::ptr_eq(&gather(Arc::clone(&memory)), &memory));
    }
}
