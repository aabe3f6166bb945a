//! Fuzz target: the Intercept importer (`portcullis_intercept::translate`) on arbitrary YAML
//! text. No panic, and a translation it returns is a valid policy document (the CLI refuses
//! to write one that is not).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match portcullis_intercept::translate(text) {
            Ok(t) => {
                if let Err(e) = portcullis_policy::doc::from_value(&t.policy) {
                    panic!("the translation is not a valid policy: {e:?}\n{}", t.policy);
                }
            }
            Err(errors) => assert!(!errors.is_empty(), "a refusal names no error"),
        }
    });
}
