//! Lexical normalization of path and URL arguments for the (ext) operators `path_under`,
//! `path_not_under`, `url_host_in` and `url_host_not_in`: what a string means, not how it is
//! spelt. Pure: no filesystem (symlinks are not followed) and no DNS (names are not resolved).
//!
//! Every function returns `Err(why)` for an argument it cannot judge; `why` completes the
//! sentence "the argument …" (e.g. `starts with "~" …`), and the engine denies the call.

use percent_encoding::percent_decode_str;
use std::net::Ipv6Addr;
use url::{Host, Url};

/// Which characters separate path segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathStyle {
    /// Both `/` and `\` (the default): a server on any platform is judged by what it could
    /// read.
    #[default]
    Mixed,
    /// Only `/`: `\` is an ordinary character of a file name.
    Posix,
}

impl PathStyle {
    /// Names as written in a condition's `style`.
    pub const NAMES: &'static [&'static str] = &["mixed", "posix"];

    /// Parses a `style` value.
    pub fn parse(s: &str) -> Option<PathStyle> {
        match s {
            "mixed" => Some(PathStyle::Mixed),
            "posix" => Some(PathStyle::Posix),
            _ => None,
        }
    }

    /// The name as written in a condition.
    pub fn as_str(self) -> &'static str {
        match self {
            PathStyle::Mixed => "mixed",
            PathStyle::Posix => "posix",
        }
    }
}

/// Normalizes a path argument to an absolute path with `/` separators, no `.` or `..`
/// segments, no repeated or trailing separator (`/` alone is the root).
///
/// A `file:` URL is decoded to its path (percent-decoding included). In [`PathStyle::Mixed`]
/// `\` separates segments too. A relative path is resolved against `base` (itself an
/// absolute, normalized path); without one it cannot be judged, nor can a path with a NUL, a
/// leading `~`, a `..` that climbs above the root, or (mixed style) a Windows drive letter.
pub fn normalize_path(raw: &str, style: PathStyle, base: Option<&str>) -> Result<String, String> {
    if raw.contains('\0') {
        return Err("contains a NUL character".into());
    }
    let decoded;
    let mut text = raw;
    if raw.len() >= 5 && raw[..5].eq_ignore_ascii_case("file:") {
        decoded = file_url_path(raw)?;
        text = &decoded;
    }
    if text.starts_with('~') {
        return Err("starts with \"~\", a home directory the policy cannot resolve".into());
    }
    let text = match style {
        PathStyle::Mixed => text.replace('\\', "/"),
        PathStyle::Posix => text.to_owned(),
    };
    if style == PathStyle::Mixed {
        let first = text.split('/').find(|s| !s.is_empty()).unwrap_or("");
        let b = first.as_bytes();
        if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
            return Err(format!(
                "starts with the Windows drive {:?}, which a lexical check cannot place (write \"style\": \"posix\" if the server is POSIX)",
                &first[..2]
            ));
        }
    }
    let joined = if text.starts_with('/') {
        text
    } else {
        match base {
            Some(b) => format!("{b}/{text}"),
            None => return Err("is a relative path and the condition has no \"base\"".into()),
        }
    };
    let mut segments: Vec<&str> = Vec::new();
    for seg in joined.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err("climbs above the root with \"..\"".into());
                }
            }
            s => segments.push(s),
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// The path of a `file:` URL, percent-decoded. Only local files (no host, or `localhost`)
/// without query or fragment are judged.
fn file_url_path(raw: &str) -> Result<String, String> {
    // Before parsing: the URL parser may drop the segment that holds it.
    if percent_decode_str(raw).any(|b| b == 0) {
        return Err("contains a NUL character (percent-encoded)".into());
    }
    let url = Url::parse(raw).map_err(|e| format!("is not a valid file: URL ({e})"))?;
    if url.host_str().is_some_and(|h| h != "localhost") {
        return Err("is a file: URL naming another host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("is a file: URL with a query or fragment".into());
    }
    let path = percent_decode_str(url.path())
        .decode_utf8()
        .map_err(|_| "is a file: URL whose path does not decode to UTF-8".to_string())?;
    Ok(path.into_owned())
}

/// Whether normalized `path` lies at or below normalized `prefix` (whole segments:
/// `/srv/app` is under `/srv` but not under `/sr`).
pub fn is_under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// An entry of a `url_host_in` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// This host exactly (normalized).
    Exact(String),
    /// `*.example.com`: any host strictly below this domain (not the domain itself).
    Below(String),
    /// `10.0.0.0/8`, `[fc00::]/7`: any IP address in this network (an IPv4-mapped IPv6
    /// address counts as its IPv4 address, as everywhere).
    Net(std::net::IpAddr, u8),
}

impl HostPattern {
    /// Parses and normalizes a host as written in a policy (`example.com`, `*.example.com`,
    /// `127.0.0.1`, `[::1]`): the same normalization as the host of a URL argument.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        // `address/length` is a network; anything else with a `/` (a URL) is refused below.
        if let Some((addr, len)) = s.split_once('/') {
            if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) && !addr.contains(':')
                || addr.starts_with('[')
            {
                return parse_net(s, addr, len);
            }
        }
        let (below, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if name.is_empty() {
            return Err(format!("{s:?} names no host"));
        }
        if name.contains(['*', '/', '@', '?', '#']) || name.contains(char::is_whitespace) {
            return Err(format!(
                "{s:?} is not a host (write a bare host such as \"example.com\", or \"*.example.com\" for its subdomains)"
            ));
        }
        if name.contains(':') && !name.starts_with('[') {
            return Err(format!(
                "{s:?} is not a host (ports are not compared; an IPv6 address is written in brackets: \"[::1]\")"
            ));
        }
        let host = Host::parse(name).map_err(|e| format!("{s:?} is not a valid host ({e})"))?;
        let key = host_key(&host).map_err(|why| format!("{s:?} {why}"))?;
        match (below, host) {
            (false, _) => Ok(HostPattern::Exact(key)),
            (true, Host::Domain(_)) => Ok(HostPattern::Below(key)),
            (true, _) => Err(format!(
                "{s:?}: \"*.\" goes before a domain name, not an IP address"
            )),
        }
    }

    /// Whether a normalized host matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Net(net, len) => {
                let ip = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                ip.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| in_net(ip, *net, *len))
            }
            HostPattern::Exact(h) => host == h,
            HostPattern::Below(d) => {
                host.len() > d.len() + 1
                    && host.ends_with(d.as_str())
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.'
            }
        }
    }
}

/// A network written `address/prefix-length` (`10.0.0.0/8`, `[fc00::]/7`).
fn parse_net(s: &str, addr: &str, len: &str) -> Result<HostPattern, String> {
    let bad = || {
        format!("{s:?} is not a network (write an address and a prefix length: \"10.0.0.0/8\", \"[fc00::]/7\")")
    };
    let ip: std::net::IpAddr = match addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        Some(v6) => std::net::IpAddr::V6(v6.parse().map_err(|_| bad())?),
        None => std::net::IpAddr::V4(addr.parse().map_err(|_| bad())?),
    };
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("{s:?}: the prefix length is at most {max}"));
    }
    Ok(HostPattern::Net(ip, len))
}

/// Whether `ip` lies in `net/len` (an IPv4-mapped IPv6 address as its IPv4 address).
fn in_net(ip: std::net::IpAddr, net: std::net::IpAddr, len: u8) -> bool {
    use std::net::IpAddr;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The default `schemes` of the URL operators.
pub const DEFAULT_SCHEMES: &[&str] = &["http", "https"];

/// Whether `s` is spelt as a URL scheme (`[a-z][a-z0-9+.-]*`, any case).
pub fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// The normalized host of a URL argument, parsed as a WHATWG URL: lowercased, IDNA to ASCII,
/// one trailing dot dropped, IPv4 in any numeric form and IPv6 in canonical form (an
/// IPv4-mapped IPv6 address becomes the IPv4 address). Userinfo, port, path and fragment
/// play no part. `schemes` are lowercase.
pub fn url_host(raw: &str, schemes: &[String]) -> Result<String, String> {
    if raw.contains('\\') || raw.contains(|c: char| c.is_ascii_control()) || raw.trim() != raw {
        return Err(
            "contains a backslash, a control character or surrounding spaces, which URL parsers read differently"
                .into(),
        );
    }
    let url = Url::parse(raw).map_err(|e| format!("is not a URL ({e})"))?;
    if !schemes.iter().any(|s| s == url.scheme()) {
        return Err(format!(
            "has the scheme {:?}, which the condition does not allow (allowed: {})",
            url.scheme(),
            schemes.join(", ")
        ));
    }
    match url.host() {
        None => Err("has no host".into()),
        // Hosts of non-special schemes are opaque to the URL parser: parse them as hosts.
        Some(Host::Domain(d)) if !url.is_special() => {
            let host = Host::parse(d).map_err(|e| format!("has an invalid host ({e})"))?;
            host_key(&host)
        }
        Some(h) => host_key(&h),
    }
}

/// The comparable text of a parsed host.
fn host_key<S: AsRef<str>>(host: &Host<S>) -> Result<String, String> {
    match host {
        Host::Domain(d) => {
            let d = d.as_ref().to_ascii_lowercase();
            let d = d.strip_suffix('.').unwrap_or(&d);
            if d.is_empty() || d.split('.').any(str::is_empty) {
                return Err("has a host with an empty label".into());
            }
            Ok(d.to_owned())
        }
        Host::Ipv4(a) => Ok(a.to_string()),
        Host::Ipv6(a) => Ok(ipv6_key(a)),
    }
}

fn ipv6_key(a: &Ipv6Addr) -> String {
    match a.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => format!("[{a}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_every_spelling_of_their_addresses() {
        let private = HostPattern::parse("10.0.0.0/8").unwrap();
        let link = HostPattern::parse("169.254.0.0/16").unwrap();
        let ula = HostPattern::parse("[fc00::]/7").unwrap();
        let schemes = vec!["http".to_string(), "https".to_string()];
        let host = |u: &str| url_host(u, &schemes).unwrap();
        assert!(private.matches(&host("http://10.1.2.3/")));
        assert!(
            private.matches(&host("http://167772161/")),
            "10.0.0.1 in decimal"
        );
        assert!(private.matches(&host("http://[::ffff:10.0.0.1]/")));
        assert!(!private.matches(&host("http://11.0.0.1/")));
        assert!(!private.matches(&host("http://example.com/")));
        assert!(link.matches(&host("http://169.254.169.254/latest")));
        assert!(ula.matches(&host("http://[fd00:ec2::254]/")));
        assert!(!ula.matches(&host("http://[2001:db8::1]/")));
        assert!(HostPattern::parse("0.0.0.0/0").unwrap().matches("8.8.8.8"));
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "[fc00::]/129",
            "example.com/8",
            "[fc00::]/x",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    fn norm(s: &str) -> Result<String, String> {
        normalize_path(s, PathStyle::Mixed, None)
    }

    #[test]
    fn paths_normalize_lexically() {
        assert_eq!(norm("/srv/app/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(norm("//etc//passwd/").unwrap(), "/etc/passwd");
        assert_eq!(norm("/").unwrap(), "/");
        assert_eq!(norm("/a/./b/.").unwrap(), "/a/b");
        assert_eq!(norm("\\srv\\x").unwrap(), "/srv/x");
        assert_eq!(
            normalize_path("/srv/a\\..\\b", PathStyle::Posix, None).unwrap(),
            "/srv/a\\..\\b"
        );
        assert_eq!(
            normalize_path("x/../y", PathStyle::Mixed, Some("/srv")).unwrap(),
            "/srv/y"
        );
        assert_eq!(
            norm("file:///srv/%2e%2e/etc/passwd").unwrap(),
            "/etc/passwd"
        );
        assert_eq!(norm("FILE://localhost/a%20b").unwrap(), "/a b");
        assert_eq!(norm("file:///srv/a%2F..%2F..%2Fetc").unwrap(), "/etc");
        for bad in [
            "etc/passwd",
            "~/.ssh/id_rsa",
            "/a\0b",
            "/..",
            "/a/../..",
            "C:\\Windows",
            "file://evil/x",
            "file:///a%00b",
            "file:///a?x",
        ] {
            assert!(norm(bad).is_err(), "{bad:?} should not be judged");
        }
        assert!(normalize_path("C:/x", PathStyle::Posix, Some("/srv")).is_ok());
    }

    #[test]
    fn under_is_by_whole_segments() {
        assert!(is_under("/srv/app", "/srv"));
        assert!(is_under("/srv", "/srv"));
        assert!(!is_under("/srvx", "/srv"));
        assert!(!is_under("/sr", "/srv"));
        assert!(is_under("/anything", "/"));
    }

    #[test]
    fn hosts_normalize() {
        let http = vec!["http".to_string(), "https".to_string()];
        let h = |s: &str| url_host(s, &http);
        assert_eq!(h("http://127.1/").unwrap(), "127.0.0.1");
        assert_eq!(h("http://0x7f.0.0.1/").unwrap(), "127.0.0.1");
        assert_eq!(h("http://2130706433/").unwrap(), "127.0.0.1");
        assert_eq!(h("http://[::ffff:127.0.0.1]/").unwrap(), "127.0.0.1");
        assert_eq!(h("http://[0:0::1]/").unwrap(), "[::1]");
        assert_eq!(h("HTTP://GOOD.COM./").unwrap(), "good.com");
        assert_eq!(h("http://good.com@evil.com/").unwrap(), "evil.com");
        assert_eq!(h("http://evil.com#@good.com").unwrap(), "evil.com");
        assert_eq!(h("https://bücher.de/").unwrap(), "xn--bcher-kva.de");
        assert!(h("gopher://good.com").is_err());
        assert!(h("good.com/x").is_err());
        assert!(h("http://good.com\\@evil.com").is_err());
        assert!(h("http://a..b/").is_err());
        let gopher = vec!["gopher".to_string()];
        assert_eq!(
            url_host("gopher://GOOD.com./", &gopher).unwrap(),
            "good.com"
        );
    }

    #[test]
    fn host_patterns() {
        let p = HostPattern::parse("*.Example.COM").unwrap();
        assert!(p.matches("a.example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("badexample.com"));
        assert_eq!(
            HostPattern::parse("[0::1]").unwrap(),
            HostPattern::Exact("[::1]".into())
        );
        assert_eq!(
            HostPattern::parse("127.1").unwrap(),
            HostPattern::Exact("127.0.0.1".into())
        );
        for bad in [
            "",
            "*.",
            "http://x.com",
            "x.com:80",
            "::1",
            "*.127.0.0.1",
            "a*.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
