//! Fuzz target: the JSON-RPC message parser (`portcullis_mcp::Message::parse`) on arbitrary
//! text. No panic; a message it accepts prints back to JSON that parses to the same kind,
//! method and id.

use portcullis_mcp::Message;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match Message::parse(text) {
            Ok(m) => {
                let line = m.to_json();
                let again = Message::parse(&line)
                    .unwrap_or_else(|e| panic!("a printed message does not parse: {e}\n{line}"));
                assert_eq!(again.kind(), m.kind(), "{line}");
                assert_eq!(again.method(), m.method(), "{line}");
                assert_eq!(
                    again.id().map(|r| r.get()),
                    m.id().map(|r| r.get()),
                    "{line}"
                );
                let _ = m.is_error_response();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    });
}
