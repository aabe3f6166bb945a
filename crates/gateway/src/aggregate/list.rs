//! Merged pagination across servers: what each list method lists, and the aggregated
//! cursor — the member's index and that member's own cursor, signed with a key of this
//! endpoint so a client cannot forge one that points anywhere else.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// One of the four paginated lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list`.
    Resources,
    /// `resources/templates/list`.
    Templates,
}

impl Kind {
    /// The list method of `method`, if it is one.
    pub fn of(method: &str) -> Option<Kind> {
        Some(match method {
            "tools/list" => Kind::Tools,
            "prompts/list" => Kind::Prompts,
            "resources/list" => Kind::Resources,
            "resources/templates/list" => Kind::Templates,
            _ => return None,
        })
    }

    /// The JSON-RPC method.
    pub fn method(self) -> &'static str {
        match self {
            Kind::Tools => "tools/list",
            Kind::Prompts => "prompts/list",
            Kind::Resources => "resources/list",
            Kind::Templates => "resources/templates/list",
        }
    }

    /// The member of the result that holds the entries.
    pub fn field(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Prompts => "prompts",
            Kind::Resources => "resources",
            Kind::Templates => "resourceTemplates",
        }
    }

    /// The server capability without which a member is not asked.
    pub fn capability(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Prompts => "prompts",
            Kind::Resources | Kind::Templates => "resources",
        }
    }
}

/// Signs and reads aggregated cursors.
pub struct Cursors {
    key: Vec<u8>,
}

impl Cursors {
    /// A fresh random key: cursors are good for this endpoint's life.
    pub fn new() -> Cursors {
        Cursors {
            key: crate::http::random_hex(32).into_bytes(),
        }
    }

    fn mac(&self, kind: Kind, body: &str) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        m.update(kind.method().as_bytes());
        m.update(b"\0");
        m.update(body.as_bytes());
        m.finalize().into_bytes()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The cursor of `kind`'s next page: member `member`, at its own cursor `upstream`
    /// (`None`: its first page).
    pub fn encode(&self, kind: Kind, member: usize, upstream: Option<&str>) -> String {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!([member, upstream]).to_string());
        format!("{body}.{}", self.mac(kind, &body))
    }

    /// The member and its own cursor of a cursor this endpoint gave for `kind`; `None` for
    /// anything else (forged, of another list, of another endpoint's life).
    pub fn decode(&self, kind: Kind, cursor: &str) -> Option<(usize, Option<String>)> {
        let (body, mac) = cursor.split_once('.')?;
        let want = self.mac(kind, body);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            want.as_bytes(),
            mac.as_bytes(),
        )) {
            return None;
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()?;
        let v: Value = serde_json::from_slice(&raw).ok()?;
        let member = usize::try_from(v.get(0)?.as_u64()?).ok()?;
        let upstream = match v.get(1)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => return None,
        };
        Some((member, upstream))
    }
}

impl Default for Cursors {
    fn default() -> Self {
        Cursors::new()
    }
}

/// The static part of a URI template (before its first `{`), by which a `resources/read` of
/// a URI the template matches is routed.
pub fn template_prefix(template: &str) -> &str {
    template.split('{').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let c = Cursors::new();
        let s = c.encode(Kind::Tools, 2, Some("page-3"));
        assert_eq!(c.decode(Kind::Tools, &s), Some((2, Some("page-3".into()))));
        let first = c.encode(Kind::Tools, 1, None);
        assert_eq!(c.decode(Kind::Tools, &first), Some((1, None)));
        // Another list, another endpoint, a changed body, garbage: refused.
        assert_eq!(c.decode(Kind::Prompts, &s), None);
        assert_eq!(Cursors::new().decode(Kind::Tools, &s), None);
        let (body, mac) = s.split_once('.').unwrap();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"[0,"page-3"]"#);
        assert_eq!(c.decode(Kind::Tools, &format!("{forged}.{mac}")), None);
        assert_eq!(c.decode(Kind::Tools, body), None);
        assert_eq!(c.decode(Kind::Tools, "page-3"), None);
    }

    #[test]
    fn template_prefixes() {
        assert_eq!(template_prefix("file:///{path}"), "file:///");
        assert_eq!(template_prefix("test://static"), "test://static");
    }
}
