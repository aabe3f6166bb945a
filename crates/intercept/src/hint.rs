//! "Did you mean" hints: the closest known word by edit distance.

/// Edit distance (insertions, deletions, substitutions) between two strings, by `char`.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The known word closest to `word`, if it is close enough to be a likely typo: the same
/// word in another case or with stray spaces, or within 1 edit (words up to 3 letters),
/// 2 edits (up to 6) or 3 edits (longer).
pub(crate) fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let folded = word.trim().to_lowercase();
    if let Some(k) = known.iter().find(|k| **k == folded) {
        return Some(k);
    }
    known
        .iter()
        .map(|k| (distance(&folded, k), *k))
        .filter(|(d, k)| {
            let allowed = match k.chars().count() {
                0..=3 => 1,
                4..=6 => 2,
                _ => 3,
            };
            *d <= allowed
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// `" (did you mean \"x\"?)"` when a close word exists, otherwise `""`.
pub(crate) fn did_you_mean(word: &str, known: &[&str]) -> String {
    closest(word, known)
        .map(|k| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default()
}

/// `" (did you mean \"x\"?)"` when a close word exists, otherwise `"; expected one of: a, b"`.
pub(crate) fn suffix(word: &str, known: &[&str]) -> String {
    match closest(word, known) {
        Some(k) => format!(" (did you mean {k:?}?)"),
        None => format!("; expected one of: {}", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("gte", "gte"), 0);
        assert_eq!(distance("conditons", "conditions"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn closest_words() {
        let ops = ["eq", "neq", "in", "not_in", "lt", "lte", "gt", "gte"];
        assert_eq!(closest("gte ", &ops), Some("gte"));
        assert_eq!(closest("EQ", &ops), Some("eq"));
        assert_eq!(closest("notin", &ops), Some("not_in"));
        assert_eq!(closest("unknown_op", &ops), None);
        assert_eq!(closest("xyz", &ops), None);
    }
}
