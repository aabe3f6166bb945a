//! Names on the aggregated endpoint: each server's prefix, `prefix__tool` names that always
//! match `^[a-zA-Z0-9_-]{1,64}$` (too long or unusual names shortened with a short hash), the
//! table that maps them back, and the refusals of names that map to nothing.

use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Between a server's prefix and a tool's (or prompt's) own name.
pub const SEP: &str = "__";

/// The longest name clients in the field accept.
pub const MAX: usize = 64;

/// Longest server name used as its own prefix; longer ones are shortened with a hash.
const MAX_PREFIX: usize = 24;

/// Whether `name` matches `^[a-zA-Z0-9_-]{1,64}$`.
pub fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `n` hex digits of the SHA-256 of `s`.
fn short_hash(s: &str, n: usize) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .flat_map(|b| [b >> 4, b & 15])
        .take(n)
        .map(|d| char::from_digit(u32::from(d), 16).expect("a hex digit"))
        .collect()
}

/// A server's prefix. Never contains `__` and never ends with `_`, so the first `__` of an
/// aggregated name is always the separator: the server name itself when it is short and
/// plain, else its first 12 characters (underscores made `-`) and 6 hex digits of its hash.
pub fn prefix(server: &str) -> String {
    let plain = !server.is_empty()
        && server.len() <= MAX_PREFIX
        && !server.contains(SEP)
        && !server.ends_with('_')
        && valid(server);
    if plain {
        return server.to_owned();
    }
    let head: String = server
        .chars()
        .take(12)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{head}-{}", short_hash(server, 6))
}

/// The aggregated name of `tool` on the server with `prefix`: `prefix__tool` when that is a
/// valid name; otherwise `prefix__<head>_<8 hex of the tool name's hash>`, where the head is
/// the tool name with unusual characters made `-`, cut to fit 64 characters. Deterministic.
pub fn join(prefix: &str, tool: &str) -> String {
    let plain = format!("{prefix}{SEP}{tool}");
    if valid(&plain) {
        return plain;
    }
    let hash = short_hash(tool, 8);
    let budget = MAX.saturating_sub(prefix.len() + SEP.len() + 1 + hash.len());
    let head: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(budget)
        .collect();
    if head.is_empty() {
        format!("{prefix}{SEP}{hash}")
    } else {
        format!("{prefix}{SEP}{head}_{hash}")
    }
}

/// The prefix and the rest of an aggregated name (split at its first `__`).
pub fn split(name: &str) -> Option<(&str, &str)> {
    name.split_once(SEP)
        .filter(|(p, rest)| !p.is_empty() && !rest.is_empty())
}

/// Why a name given by the client maps to nothing. Nothing is forwarded for any of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Not `^[a-zA-Z0-9_-]{1,64}$`, or no `server__` prefix.
    Malformed(String),
    /// The prefix names no server this caller may reach.
    UnknownServer { name: String, prefix: String },
    /// The server's prefix is right, but it lists nothing under that name.
    Unknown { name: String, server: String },
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Malformed(n) => write!(
                f,
                "{n:?} is not a name of this gateway: names are `<server>__<name>` (1-64 characters of A-Z a-z 0-9 _ -); list them first; nothing was forwarded"
            ),
            NameError::UnknownServer { name, prefix } => write!(
                f,
                "{name:?}: no server with the prefix {prefix:?} is reachable through this endpoint; nothing was forwarded"
            ),
            NameError::Unknown { name, server } => write!(
                f,
                "{name:?}: server {server:?} lists no such name; nothing was forwarded"
            ),
        }
    }
}

/// The aggregated names handed out, mapped back to (member index, the server's own name).
#[derive(Default)]
pub struct Table {
    by_name: HashMap<String, (usize, String)>,
}

impl Table {
    /// Records `name` for (`member`, `own`); false when the name already stands for something
    /// else (a collision: the caller leaves this entry out of the list).
    pub fn insert(&mut self, name: &str, member: usize, own: &str) -> bool {
        match self.by_name.get(name) {
            Some((m, o)) if *m != member || o != own => false,
            Some(_) => true,
            None => {
                self.by_name
                    .insert(name.to_owned(), (member, own.to_owned()));
                true
            }
        }
    }

    /// What `name` stands for, when it was handed out.
    pub fn get(&self, name: &str) -> Option<(usize, String)> {
        self.by_name.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_server_and_tool() {
        assert_eq!(prefix("odoo"), "odoo");
        assert_eq!(join("odoo", "read_invoice"), "odoo__read_invoice");
        assert_eq!(split("odoo__read__x"), Some(("odoo", "read__x")));
        assert_eq!(split("odoo___x"), Some(("odoo", "_x")));
        assert_eq!(split("odoo"), None);
        assert_eq!(split("__x"), None);
    }

    #[test]
    fn awkward_server_names_get_a_hashed_prefix_without_separator() {
        for s in [
            "a__b",
            "trailing_",
            &"x".repeat(40),
            "a_b_c_d_e_f_g_h_i_j_k_l_m",
        ] {
            let p = prefix(s);
            assert!(
                !p.contains(SEP) && !p.ends_with('_') && valid(&p),
                "{s} -> {p}"
            );
            assert_eq!(prefix(s), p, "deterministic");
        }
        assert_ne!(prefix(&"x".repeat(40)), prefix(&"x".repeat(41)));
    }

    #[test]
    fn long_and_odd_tool_names_are_shortened_validly_and_distinctly() {
        let long = "t".repeat(100);
        let a = join("srv", &long);
        let b = join("srv", &format!("{long}x"));
        assert!(valid(&a) && valid(&b), "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(a, join("srv", &long), "deterministic");
        assert_eq!(split(&a).unwrap().0, "srv");
        let dotted = join("srv", "files.read");
        assert!(
            valid(&dotted) && dotted.starts_with("srv__files-read_"),
            "{dotted}"
        );
        assert_ne!(dotted, join("srv", "files-read"));
        assert!(valid(&join(&prefix(&"s".repeat(64)), &"é".repeat(70))));
    }

    #[test]
    fn the_table_refuses_a_name_taken_by_something_else() {
        let mut t = Table::default();
        assert!(t.insert("a__x", 0, "x"));
        assert!(t.insert("a__x", 0, "x"));
        assert!(!t.insert("a__x", 0, "y"));
        assert!(!t.insert("a__x", 1, "x"));
        assert_eq!(t.get("a__x"), Some((0, "x".into())));
    }
}
