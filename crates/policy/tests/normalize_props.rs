//! Property tests of path and URL normalization: it is idempotent, its output has no
//! spelling left to normalize, and what lies under a prefix stays under it however the path
//! is respelt with `.` segments, repeated or trailing separators.

mod common;
use common::*;
use portcullis_policy::norm::{self, PathStyle};
use portcullis_policy::{Call, Check, Engine};
use proptest::prelude::*;
use serde_json::json;

/// Path segments, including the ones normalization must handle.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c]{1,3}",
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just(String::new()),
        1 => Just("a b".to_string()),
        1 => Just("x\\..".to_string()),
        1 => Just("%2e%2e".to_string()),
    ]
}

fn raw_path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["/", "\\", "", "file://", "file:///"]),
        prop::collection::vec(segment(), 0..8),
        prop::sample::select(vec!["/", "\\"]),
        any::<bool>(),
    )
        .prop_map(|(lead, segs, sep, trailing)| {
            let mut p = format!("{lead}{}", segs.join(sep));
            if trailing {
                p.push_str(sep);
            }
            p
        })
}

fn style() -> impl Strategy<Value = PathStyle> {
    prop::sample::select(vec![PathStyle::Mixed, PathStyle::Posix])
}

/// Plain names: a prefix made of them is a valid policy value.
fn names(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-c]{1,3}", 1..max)
}

/// Respells a path made of `segs` with `./` segments, doubled separators and a trailing
/// separator where `noise` says so.
fn respell(segs: &[String], noise: &[u8]) -> String {
    let mut p = String::new();
    for (i, s) in segs.iter().enumerate() {
        let n = noise.get(i).copied().unwrap_or(0);
        p.push('/');
        if n & 1 != 0 {
            p.push_str("./");
        }
        if n & 2 != 0 {
            p.push('/');
        }
        if n & 4 != 0 {
            p.push_str("././/");
        }
        p.push_str(s);
    }
    if noise.last().is_some_and(|n| n & 8 != 0) {
        p.push('/');
    }
    p
}

fn require_under(prefix: &str) -> Engine {
    let policy = json!({"version":"1","default":"deny","tools":{"t":{"require":[{"conditions":[
        {"path":"args.p","op":"path_under","value":prefix}]}]}}});
    Engine::from_json(&policy.to_string()).unwrap()
}

fn passes(e: &Engine, p: &str) -> bool {
    let args = json!({ "p": p });
    let call = Call {
        tool: "t",
        args: Some(&args),
    };
    matches!(e.check(&call, &alice()), Check::Proceed(_))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn path_normalization_is_idempotent_and_leaves_nothing_to_normalize(
        raw in raw_path(),
        st in style(),
        base in prop::option::of(names(4)),
    ) {
        let base = base.map(|b| format!("/{}", b.join("/")));
        if let Ok(n) = norm::normalize_path(&raw, st, base.as_deref()) {
            prop_assert_eq!(norm::normalize_path(&n, st, None), Ok(n.clone()));
            prop_assert!(n.starts_with('/'));
            prop_assert!(n == "/" || !n.ends_with('/'), "{}", n);
            prop_assert!(!n.contains("//"), "{}", n);
            prop_assert!(!n.split('/').any(|s| s == "." || s == ".."), "{}", n);
            if let Some(b) = &base {
                if !raw.starts_with(['/', '\\']) && !raw.starts_with("file:") && !raw.contains("..") {
                    prop_assert!(norm::is_under(&n, b), "{} not under base {}", n, b);
                }
            }
        }
    }

    #[test]
    fn under_a_prefix_stays_under_it_after_respelling(
        prefix in names(4),
        rest in prop::collection::vec("[a-c]{1,3}", 0..4),
        noise in prop::collection::vec(any::<u8>(), 0..8),
        other in names(3),
    ) {
        let pre = format!("/{}", prefix.join("/"));
        let e = require_under(&pre);
        let all: Vec<String> = prefix.iter().chain(&rest).cloned().collect();
        let plain = respell(&all, &[]);
        prop_assert!(passes(&e, &plain), "{} under {}", plain, pre);
        let noisy = respell(&all, &noise);
        prop_assert!(passes(&e, &noisy), "{} under {}", noisy, pre);
        prop_assert_eq!(norm::normalize_path(&noisy, PathStyle::Mixed, None), Ok(plain.clone()));
        // And what is outside stays outside: climbing out with .. and into another name.
        let mut out = all.clone();
        out.extend(std::iter::repeat_n("..".to_string(), all.len()));
        out.push(format!("z{}", other.join("")));
        let escaped = respell(&out, &noise);
        prop_assert!(!passes(&e, &escaped), "{} escaped {}", escaped, pre);
    }

    #[test]
    fn host_normalization_is_idempotent(
        labels in prop::collection::vec("[a-zA-Z0-9]{1,6}", 1..4),
        dot in any::<bool>(),
        user in prop::option::of("[a-z]{1,4}"),
        port in prop::option::of(1u16..65535),
    ) {
        let schemes = vec!["http".to_string(), "https".to_string()];
        let host = format!("{}{}", labels.join("."), if dot { "." } else { "" });
        let url = format!(
            "http://{}{host}{}/x",
            user.map(|u| format!("{u}@")).unwrap_or_default(),
            port.map(|p| format!(":{p}")).unwrap_or_default()
        );
        if let Ok(h) = norm::url_host(&url, &schemes) {
            prop_assert_eq!(norm::url_host(&format!("https://{h}/"), &schemes), Ok(h.clone()));
            prop_assert_eq!(h.clone(), h.to_ascii_lowercase());
            prop_assert!(!h.ends_with('.'));
            let pattern = norm::HostPattern::parse(&host).map_err(TestCaseError::fail)?;
            prop_assert!(pattern.matches(&h), "{} does not match {}", h, host);
        }
    }
}
