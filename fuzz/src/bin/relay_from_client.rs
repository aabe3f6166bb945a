//! Fuzz target: the relay's `from_client` on arbitrary lines (one input is a sequence of
//! lines sent to one relay, so ids and state carry over between them). No panic; a line that
//! is not a valid message never reaches the upstream, and every line the client gets is JSON.

use portcullis_gateway::{Caller, Out, Relay, RelayConfig};
use portcullis_mcp::Message;
use portcullis_policy::Engine;
use portcullis_store::MemoryCounters;
use std::sync::{Arc, OnceLock};

const NOON: u64 = 1_795_262_400_000;

fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Arc::new(Engine::from_json(portcullis_fuzz::POLICY).expect("policy")))
        .clone()
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        let relay = Relay::new(RelayConfig {
            store: Arc::new(MemoryCounters::new()),
            server: "odoo".into(),
            clock: || NOON,
            audit: true,
            approvals: None,
            on_new_approval: None,
            hold_ms: 0,
        });
        let caller = Caller {
            engine: Some(engine()),
            grant_id: "grt_1".into(),
            grant_label: "alice".into(),
            session_id: "s1".into(),
            policy: Some(("odoo".into(), "abc123".into())),
            request_id: None,
            principal: None,
            trace: None,
        };
        for line in text.split('\n').take(16) {
            let valid = Message::parse(line).is_ok();
            for out in relay.from_client(line, &caller) {
                match out {
                    Out::Server(m, _) => {
                        let l = m.to_json();
                        assert!(
                            valid,
                            "an invalid line reached the upstream: {line:?} -> {l}"
                        );
                        assert!(Message::parse(&l).is_ok(), "the upstream got {l:?}");
                    }
                    Out::Client(l) => {
                        let l = l.into_text();
                        assert!(
                            serde_json::from_str::<serde_json::Value>(&l).is_ok(),
                            "the client got a line that is not JSON: {l:?}"
                        );
                    }
                    Out::Audit(..) | Out::Forwarding(..) | Out::Hold(_) => {}
                }
            }
        }
    });
}
