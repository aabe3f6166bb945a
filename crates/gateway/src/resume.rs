//! Resumable SSE streams of a handshake-era session (2025-11-25): every event Portcullis sends
//! on a session's streams is numbered `<stream>-<n>` and kept, boundedly, so that a client whose
//! stream broke can GET with `Last-Event-ID` and receive what followed that event — on the
//! stream it came from only — and then the rest of that stream live.
//!
//! A request's stream lives until its answer; the session's GET stream until the session ends.
//! At most [`MAX_EVENTS`] events per stream are kept, and finished streams beyond
//! [`MAX_STREAMS`] are forgotten oldest first (streams still running are never dropped: they
//! are bounded by the requests in flight); a `Last-Event-ID` older than that gets a fresh
//! stream instead of a replay.

use std::collections::VecDeque;
use tokio::sync::mpsc::UnboundedSender;

/// One SSE frame for a client: its event id (on resumable streams) and the JSON-RPC message.
/// An empty message with an id is a priming event.
pub(crate) type SseItem = (Option<String>, String);

/// Finished streams kept per session (beyond the running ones).
pub(crate) const MAX_STREAMS: usize = 32;
/// Events kept per stream.
pub(crate) const MAX_EVENTS: usize = 256;

/// The numbered streams of one session.
#[derive(Default)]
pub(crate) struct EventLog {
    next: u64,
    streams: VecDeque<Logged>,
}

struct Logged {
    no: u64,
    /// The session's GET stream (as opposed to a request's).
    get: bool,
    /// The newest events; the first has sequence number `base + 1`.
    events: VecDeque<String>,
    base: u64,
    /// Sequence number of the last event a live end accepted.
    delivered: u64,
    /// Where new events go: the original response, or the GET that resumed it.
    live: Option<UnboundedSender<SseItem>>,
    /// Complete (a request's stream after its answer): a resumption replays and ends.
    done: bool,
}

/// What a `Last-Event-ID` resumed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resumed {
    /// A request's stream: its further events (up to the answer) follow.
    Request,
    /// The session's GET stream `n`: it carries the session's messages again.
    Get(u64),
}

impl EventLog {
    /// Opens stream `n` with `live` as its end; `get` marks the session's GET stream.
    pub(crate) fn open(&mut self, live: UnboundedSender<SseItem>, get: bool) -> u64 {
        self.next += 1;
        if self.streams.len() >= MAX_STREAMS {
            if let Some(i) = self.streams.iter().position(|s| s.done) {
                self.streams.remove(i);
            }
        }
        self.streams.push_back(Logged {
            no: self.next,
            get,
            events: VecDeque::new(),
            base: 0,
            delivered: 0,
            live: Some(live),
            done: false,
        });
        self.next
    }

    fn stream(&mut self, no: u64) -> Option<&mut Logged> {
        self.streams.iter_mut().find(|s| s.no == no)
    }

    /// The priming event of stream `no` (id `<no>-0`, empty data): lets a client resume
    /// before the stream's first message.
    pub(crate) fn prime(&mut self, no: u64) {
        if let Some(s) = self.stream(no) {
            if let Some(tx) = &s.live {
                let _ = tx.send((Some(format!("{no}-0")), String::new()));
            }
        }
    }

    /// Records `line` as the next event of stream `no` and sends it to the live end; false
    /// when no live end took it (it stays in the log for a resumption).
    pub(crate) fn send(&mut self, no: u64, line: String) -> bool {
        let Some(s) = self.stream(no) else {
            return false;
        };
        if s.events.len() >= MAX_EVENTS {
            s.events.pop_front();
            s.base += 1;
        }
        s.events.push_back(line.clone());
        let seq = s.base + s.events.len() as u64;
        match &s.live {
            Some(tx) if tx.send((Some(format!("{no}-{seq}")), line)).is_ok() => {
                s.delivered = seq;
                true
            }
            _ => {
                s.live = None;
                false
            }
        }
    }

    /// Ends stream `no` (its response is complete) and its live end.
    pub(crate) fn finish(&mut self, no: u64) {
        if let Some(s) = self.stream(no) {
            s.live = None;
            s.done = true;
        }
    }

    /// `Last-Event-ID: <no>-<seq>`: replays into `tx` the kept events of stream `no` after
    /// `seq` and makes `tx` its live end. None when the id names no kept stream or events
    /// after it were already dropped.
    pub(crate) fn resume(&mut self, last: &str, tx: &UnboundedSender<SseItem>) -> Option<Resumed> {
        let (no, seq) = last.trim().split_once('-')?;
        let (no, seq): (u64, u64) = (no.parse().ok()?, seq.parse().ok()?);
        let s = self.stream(no)?;
        if seq < s.base || seq > s.base + s.events.len() as u64 {
            return None;
        }
        for (i, e) in s.events.iter().enumerate() {
            let n = s.base + i as u64 + 1;
            if n > seq {
                let _ = tx.send((Some(format!("{no}-{n}")), e.clone()));
            }
        }
        s.delivered = s.base + s.events.len() as u64;
        if !s.done {
            s.live = Some(tx.clone());
        }
        Some(if s.get {
            Resumed::Get(no)
        } else {
            Resumed::Request
        })
    }

    /// What GET stream `no` recorded but no live end accepted (for a new GET stream that does
    /// not resume it).
    pub(crate) fn undelivered(&mut self, no: u64) -> Vec<String> {
        let Some(s) = self.stream(no) else {
            return Vec::new();
        };
        let from = s.delivered.saturating_sub(s.base) as usize;
        s.delivered = s.base + s.events.len() as u64;
        s.live = None;
        s.done = true; // replaced by a new GET stream
        s.events.iter().skip(from).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::error::TryRecvError;
    use tokio::sync::mpsc::unbounded_channel;

    #[test]
    fn a_broken_request_stream_resumes_after_its_last_event() {
        let mut log = EventLog::default();
        let (tx, mut rx) = unbounded_channel();
        let no = log.open(tx, false);
        log.prime(no);
        assert_eq!(
            rx.try_recv().unwrap(),
            (Some(format!("{no}-0")), String::new())
        );
        assert!(log.send(no, "progress".into()));
        assert_eq!(rx.try_recv().unwrap().0.unwrap(), format!("{no}-1"));
        drop(rx); // the client's connection broke
        assert!(!log.send(no, "answer".into()), "kept, not delivered");
        let (tx2, mut rx2) = unbounded_channel();
        assert_eq!(log.resume(&format!("{no}-1"), &tx2), Some(Resumed::Request));
        assert_eq!(
            rx2.try_recv().unwrap(),
            (Some(format!("{no}-2")), "answer".into())
        );
        assert!(
            rx2.try_recv().is_err(),
            "nothing before the given event again"
        );
        assert!(log.send(no, "late".into()), "the resumed stream is live");
        log.finish(no);
        drop(tx2);
        assert_eq!(rx2.try_recv().unwrap().1, "late");
        assert!(
            matches!(rx2.try_recv(), Err(TryRecvError::Disconnected)),
            "finished: the resumed stream ends"
        );
        // A stream that finished while its client was away replays and ends at once.
        let (tx3, mut rx3) = unbounded_channel();
        assert_eq!(log.resume(&format!("{no}-1"), &tx3), Some(Resumed::Request));
        drop(tx3);
        let mut replayed = Vec::new();
        while let Ok((_, m)) = rx3.try_recv() {
            replayed.push(m);
        }
        assert_eq!(replayed, vec!["answer".to_string(), "late".to_string()]);
        assert!(matches!(rx3.try_recv(), Err(TryRecvError::Disconnected)));
    }

    #[test]
    fn unknown_or_dropped_ids_are_not_resumed() {
        let mut log = EventLog::default();
        let (tx, _rx) = unbounded_channel();
        let no = log.open(tx.clone(), true);
        for i in 0..MAX_EVENTS + 10 {
            log.send(no, format!("m{i}"));
        }
        assert_eq!(log.resume("nonsense", &tx), None);
        assert_eq!(log.resume(&format!("{}-1", no + 1), &tx), None);
        assert_eq!(log.resume(&format!("{no}-3"), &tx), None, "dropped");
        assert_eq!(log.resume(&format!("{no}-9999"), &tx), None, "never sent");
        assert_eq!(log.resume(&format!("{no}-20"), &tx), Some(Resumed::Get(no)));
    }

    #[test]
    fn a_new_get_stream_takes_what_the_broken_one_could_not_deliver() {
        let mut log = EventLog::default();
        let (tx, rx) = unbounded_channel();
        let no = log.open(tx, true);
        assert!(log.send(no, "a".into()));
        drop(rx);
        assert!(!log.send(no, "b".into()));
        assert!(!log.send(no, "c".into()));
        assert_eq!(log.undelivered(no), vec!["b".to_string(), "c".to_string()]);
        assert!(log.undelivered(no).is_empty(), "handed over once");
    }

    #[test]
    fn finished_streams_are_forgotten_oldest_first_running_ones_never() {
        let mut log = EventLog::default();
        let (tx, _rx) = unbounded_channel();
        let first = log.open(tx.clone(), false);
        log.send(first, "x".into());
        log.finish(first);
        let running = log.open(tx.clone(), false);
        for _ in 0..MAX_STREAMS {
            let no = log.open(tx.clone(), false);
            log.finish(no);
        }
        assert_eq!(
            log.resume(&format!("{first}-0"), &tx),
            None,
            "finished, oldest: gone"
        );
        // Many requests at once: a running stream stays, and still delivers.
        for _ in 0..MAX_STREAMS * 2 {
            log.open(tx.clone(), false);
        }
        assert!(log.send(running, "still here".into()));
    }
}
