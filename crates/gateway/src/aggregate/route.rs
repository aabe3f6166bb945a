//! Ids between the client and the members: every request the endpoint sends a member gets an
//! id of the endpoint's own, mapped to what waits for its answer (the client's request, a
//! task of the endpoint, or nobody); server→client requests get fresh ids toward the client,
//! mapped back to their member and the id that member's connection gave them.

use portcullis_mcp::Message;
use serde_json::value::RawValue;
use std::collections::HashMap;
use tokio::sync::oneshot;

/// What waits for a member's answer.
pub enum Waiting {
    /// The client's request (its raw id), sent to `member`.
    Client { id: String, member: usize },
    /// A task of the endpoint (initialize, a page of a merged list, a refresh).
    Task(oneshot::Sender<String>),
    /// Nobody (a broadcast whose answers do not matter).
    Nobody,
}

/// The endpoint's requests in flight, and the members' requests to the client.
#[derive(Default)]
pub struct Flights {
    next: u64,
    up: HashMap<u64, Waiting>,
    /// The client's raw id → (member, our id), for cancellations.
    by_client: HashMap<String, (usize, u64)>,
    /// Our id toward the client → (member, that member's id for it).
    down: HashMap<u64, (usize, String)>,
}

impl Flights {
    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// An id for the client's request `id` going to `member`.
    pub fn client(&mut self, id: &str, member: usize) -> u64 {
        let n = self.next_id();
        self.up.insert(
            n,
            Waiting::Client {
                id: id.to_owned(),
                member,
            },
        );
        self.by_client.insert(id.to_owned(), (member, n));
        n
    }

    /// An id for a request whose answer a task awaits.
    pub fn task(&mut self) -> (u64, oneshot::Receiver<String>) {
        let n = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.up.insert(n, Waiting::Task(tx));
        (n, rx)
    }

    /// An id for a request whose answer is dropped.
    pub fn nobody(&mut self) -> u64 {
        let n = self.next_id();
        self.up.insert(n, Waiting::Nobody);
        n
    }

    /// Who waited for the answer to our request `n` (forgotten now).
    pub fn answered(&mut self, n: u64) -> Option<Waiting> {
        let w = self.up.remove(&n)?;
        if let Waiting::Client { id, .. } = &w {
            self.by_client.remove(id);
        }
        Some(w)
    }

    /// Forgets a request whose answer nobody awaits any more (timed out).
    pub fn forget(&mut self, n: u64) {
        self.answered(n);
    }

    /// The member and our id of the client's request `id`, while it is in flight.
    pub fn of_client(&self, id: &str) -> Option<(usize, u64)> {
        self.by_client.get(id).copied()
    }

    /// A fresh id toward the client for `member`'s request `id`.
    pub fn server_request(&mut self, member: usize, id: &str) -> u64 {
        let n = self.next_id();
        self.down.insert(n, (member, id.to_owned()));
        n
    }

    /// Our id toward the client for `member`'s request `id`, while it awaits its answer.
    pub fn server_request_id(&self, member: usize, id: &str) -> Option<u64> {
        self.down
            .iter()
            .find(|(_, (m, i))| *m == member && i == id)
            .map(|(n, _)| *n)
    }

    /// The member and its id for the client's answer to our request `n` (forgotten now).
    pub fn client_answered(&mut self, n: u64) -> Option<(usize, String)> {
        self.down.remove(&n)
    }
}

/// `line` with its `id` replaced by the raw JSON `id`; `None` if it does not parse.
pub fn with_id(line: &str, id: &str) -> Option<String> {
    let mut m = Message::parse(line).ok()?;
    let raw = RawValue::from_string(id.to_owned()).ok()?;
    m.set_id(&raw);
    Some(m.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_both_ways_and_are_forgotten_once_answered() {
        let mut f = Flights::default();
        let a = f.client("\"x\"", 1);
        assert_eq!(f.of_client("\"x\""), Some((1, a)));
        assert!(matches!(
            f.answered(a),
            Some(Waiting::Client { member: 1, .. })
        ));
        assert_eq!(f.of_client("\"x\""), None);
        assert!(f.answered(a).is_none());
        let s = f.server_request(2, "7");
        assert_eq!(f.server_request_id(2, "7"), Some(s));
        assert_eq!(f.client_answered(s), Some((2, "7".into())));
        assert_eq!(f.client_answered(s), None);
        assert_eq!(
            with_id(r#"{"jsonrpc":"2.0","id":5,"result":{}}"#, "\"abc\"").unwrap(),
            r#"{"jsonrpc":"2.0","id":"abc","result":{}}"#
        );
    }
}
