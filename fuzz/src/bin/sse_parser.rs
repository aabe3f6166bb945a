//! Fuzz target: the upstream SSE parser (`SseParser`) on arbitrary bytes cut into arbitrary
//! chunks. No panic; the events do not depend on where the chunks were cut (whole input fed
//! at once versus chunk by chunk), and neither do `id:` and `retry:`.

use portcullis_gateway::upstream::http::SseParser;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let mut whole = SseParser::default();
        let mut cut = SseParser::default();
        let mut a = Vec::new();
        let mut b = Vec::new();
        let chunks = portcullis_fuzz::chunks(data);
        for c in &chunks {
            b.extend(cut.feed_events(c));
        }
        let joined: Vec<u8> = chunks.concat();
        a.extend(whole.feed_events(&joined));
        assert_eq!(a, b, "the events depend on the chunking");
        assert_eq!(whole.last_event_id, cut.last_event_id);
        assert_eq!(whole.retry_ms, cut.retry_ms);
        let mut plain = SseParser::default();
        let data_only: Vec<String> = plain.feed(&joined);
        assert_eq!(data_only, a.into_iter().map(|e| e.data).collect::<Vec<_>>());
    });
}
