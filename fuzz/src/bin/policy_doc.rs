//! Fuzz target: the policy document parser (`portcullis_policy::doc::parse`) on arbitrary
//! text. No panic; a document it accepts prints back to JSON that it accepts again, and the
//! engine compiles it.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(doc) = portcullis_policy::doc::parse(text) {
            let again = doc.to_json_pretty();
            if let Err(e) = portcullis_policy::doc::parse(&again) {
                panic!("an accepted policy does not parse once printed: {e:?}\n{again}");
            }
            let _ = portcullis_policy::Engine::from_json(text);
        }
    });
}
