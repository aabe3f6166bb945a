//! The batcher of the counter stores that gather reservations
//! ([`CounterStore::reserve_later`](portcullis_policy::CounterStore::reserve_later)): a thread
//! that takes every reservation queued while it worked on the last batch and makes them all
//! with one write — one SQLite transaction (one `BEGIN IMMEDIATE`/`COMMIT`, its lock calls
//! and WAL write), one Redis pipeline (one round trip) — then replies to each. A store queues
//! here what it cannot make at once without making the caller's thread wait behind another
//! reservation (SQLite: its connection is busy; Redis: another reservation is pending); the
//! caller's task waits for the reply, its thread goes on.

use portcullis_policy::{Deferred, ReserveError, Ticket};
use std::sync::mpsc;

/// Most reservations made with one write.
const MAX_BATCH: usize = 256;

/// The results of a batch's reservations, one per job, in the jobs' order.
pub(crate) type Results = Vec<Result<Ticket, ReserveError>>;

/// The handle of a batcher thread; the thread ends when the handle is dropped (with its
/// store), once the jobs queued before are done.
pub(crate) struct Batcher(mpsc::Sender<Deferred>);

impl Batcher {
    /// Starts the thread `name`: `write` makes a batch's reservations (its results in the
    /// order of the jobs, one per job).
    pub(crate) fn start(
        name: &str,
        mut write: impl FnMut(&[Deferred]) -> Results + Send + 'static,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel::<Deferred>();
        // Without a thread (the spawn failed), the receiver is gone with the closure, and
        // every job is refused at once, closed (see `queue`).
        let _ = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&rx, &mut write));
        Batcher(tx)
    }

    /// Queues a reservation; if the thread is gone, it is refused at once (closed).
    pub(crate) fn queue(&self, job: Deferred) {
        if let Err(mpsc::SendError(job)) = self.0.send(job) {
            let refused =
                ReserveError::Store("the counter store's batch thread is not running".into());
            (job.reply)(job.reqs, Err(refused));
        }
    }
}

/// Waits for a job, takes every other one queued (up to [`MAX_BATCH`]), makes them with one
/// `write` and replies to each; until every sender is gone.
fn run(rx: &mpsc::Receiver<Deferred>, write: &mut dyn FnMut(&[Deferred]) -> Results) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let results = write(&jobs);
        answer(jobs.drain(..), results);
    }
}

/// Hands each job its result (`results` in the jobs' order); a job without one is refused,
/// closed.
pub(crate) fn answer(jobs: impl IntoIterator<Item = Deferred>, results: Results) {
    let mut results = results.into_iter();
    for job in jobs {
        let r = results.next().unwrap_or_else(|| {
            Err(ReserveError::Store(
                "the counter store gave no answer for this reservation".into(),
            ))
        });
        (job.reply)(job.reqs, r);
    }
}
