//! JSON-RPC messages held as raw top-level members.

use indexmap::IndexMap;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result` or `error`, no `method`.
    Response,
}

/// Why a line or body is not a message we can handle. Every variant is answered, never
/// forwarded.
#[derive(Clone, Debug)]
pub enum ParseError {
    /// Not JSON at all (`-32700`).
    NotJson(String),
    /// A JSON array: batches are never forwarded (`-32600`).
    Batch,
    /// JSON, but not a JSON-RPC 2.0 message (`-32600`); the id, if one could be read, is kept
    /// so the error can answer it.
    Invalid {
        /// What is wrong.
        reason: String,
        /// The request id, when readable.
        id: Option<Box<RawValue>>,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotJson(e) => write!(f, "not JSON: {e}"),
            ParseError::Batch => f.write_str(
                "JSON-RPC batches (arrays) are not accepted; send one message at a time",
            ),
            ParseError::Invalid { reason, .. } => write!(f, "invalid JSON-RPC message: {reason}"),
        }
    }
}

/// Calls of [`Message::parse`] so far (feature `parse-count`, for tests).
#[cfg(feature = "parse-count")]
static PARSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times [`Message::parse`] has run in this process (feature `parse-count`).
#[cfg(feature = "parse-count")]
pub fn parses() -> u64 {
    PARSES.load(std::sync::atomic::Ordering::Relaxed)
}

/// One JSON-RPC 2.0 message. Members are kept raw and in order.
#[derive(Clone, Debug)]
pub struct Message {
    fields: Members,
    method: Option<String>,
    kind: Kind,
}

/// Equal when they would be written out byte for byte the same.
impl PartialEq for Message {
    fn eq(&self, other: &Message) -> bool {
        self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|((k, v), (ok, ov))| k == ok && v.get() == ov.get())
    }
}

/// A member name: JSON-RPC's own names are static (no allocation per message), others owned.
type Name = std::borrow::Cow<'static, str>;

/// The JSON-RPC members every message is made of.
const KNOWN: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

fn name(n: &str) -> Name {
    match KNOWN.iter().find(|k| **k == n) {
        Some(k) => Name::Borrowed(k),
        None => Name::Owned(n.to_owned()),
    }
}

/// Reads a member name as a [`Name`].
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Name;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Name, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for NameSeed {
    type Value = Name;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
        Ok(name(v))
    }
}

/// A message's members in order. Hashed with foldhash, randomly seeded per process: the
/// names come from the peer, and SipHash was ~1.7 % of the gateway's CPU for five names.
type Members = IndexMap<Name, Box<RawValue>, foldhash::fast::RandomState>;

struct Fields(Members);

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Fields, A::Error> {
                let mut out = Members::with_capacity_and_hasher(KNOWN.len(), Default::default());
                while let Some(k) = m.next_key_seed(NameSeed)? {
                    if out.contains_key(&k) {
                        return Err(de::Error::custom(format_args!("duplicate member {k:?}")));
                    }
                    let v: Box<RawValue> = m.next_value()?;
                    out.insert(k, v);
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Finds one member of an object, skipping the others unbuilt.
struct Pick<'n>(&'n str);

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Option<&'de RawValue>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Option<&'de RawValue>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is) = m.next_key_seed(KeyIs(self.0))? {
            if is {
                found = Some(m.next_value::<&'de RawValue>()?);
            } else {
                m.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A member name, compared with the wanted one and not kept.
struct KeyIs<'n>(&'n str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).expect("valid JSON")
}

impl Message {
    /// Parses one message (a line or an HTTP body).
    pub fn parse(text: &str) -> Result<Message, ParseError> {
        #[cfg(feature = "parse-count")]
        PARSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let first = text.trim_start().as_bytes().first().copied();
        match first {
            Some(b'[') => {
                return match serde_json::from_str::<&RawValue>(text) {
                    Ok(_) => Err(ParseError::Batch),
                    Err(e) => Err(ParseError::NotJson(e.to_string())),
                }
            }
            Some(b'{') => {}
            _ => {
                return match serde_json::from_str::<&RawValue>(text) {
                    Ok(_) => Err(ParseError::Invalid {
                        reason: "a message must be a JSON object".into(),
                        id: None,
                    }),
                    Err(e) => Err(ParseError::NotJson(e.to_string())),
                }
            }
        }
        let fields = match serde_json::from_str::<Fields>(text) {
            Ok(f) => f.0,
            Err(e) if e.is_syntax() || e.is_eof() => {
                return Err(ParseError::NotJson(e.to_string()))
            }
            Err(e) => {
                return Err(ParseError::Invalid {
                    reason: e.to_string(),
                    id: None,
                })
            }
        };
        // The id is checked first: an error answer echoes it, so it must be one a client can
        // read back (a string or an integer), never whatever the line carried.
        let id = fields.get("id").cloned();
        if let Some(i) = &id {
            let ok = match serde_json::from_str::<Value>(i.get()) {
                Ok(Value::String(_)) => true,
                Ok(Value::Number(n)) => n.is_i64() || n.is_u64(),
                _ => false,
            };
            if !ok {
                return Err(ParseError::Invalid {
                    reason: "id must be a string or an integer".into(),
                    id: None,
                });
            }
        }
        let invalid = |reason: &str| ParseError::Invalid {
            reason: reason.to_owned(),
            id: id.clone(),
        };
        match fields.get("jsonrpc").map(|r| r.get()) {
            Some("\"2.0\"") => {}
            _ => return Err(invalid("\"jsonrpc\": \"2.0\" is required")),
        }
        let method = match fields.get("method") {
            None => None,
            Some(m) => match serde_json::from_str::<String>(m.get()) {
                Ok(s) => Some(s),
                Err(_) => return Err(invalid("method must be a string")),
            },
        };
        let has = |k: &str| fields.contains_key(k);
        let kind = match (&method, has("id")) {
            (Some(_), true) => Kind::Request,
            // Every MCP notification is a `notifications/…` method. A request method sent
            // without an id (say `tools/call`) would reach a server that dispatches on the
            // method alone with no policy decision: refused, never forwarded.
            (Some(m), false) if !m.starts_with("notifications/") => {
                return Err(invalid(&format!(
                    "{m:?} sent as a notification (no id); only notifications/… methods may \
                     omit the id — send it as a request with an id"
                )))
            }
            (Some(_), false) => Kind::Notification,
            (None, true) if has("result") != has("error") => Kind::Response,
            (None, true) => return Err(invalid("a response needs exactly one of result or error")),
            (None, false) => return Err(invalid("a message needs a method or an id")),
        };
        if let Some(p) = fields.get("params") {
            if !matches!(
                p.get().trim_start().as_bytes().first(),
                Some(b'{') | Some(b'[')
            ) {
                return Err(invalid("params must be an object"));
            }
        }
        Ok(Message {
            fields,
            method,
            kind,
        })
    }

    /// Builds a request.
    pub fn request(id: &str, method: &str, params: Option<&Value>) -> Message {
        let mut text = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":{}",
            Value::String(method.into())
        );
        if let Some(p) = params {
            text.push_str(",\"params\":");
            text.push_str(&p.to_string());
        }
        text.push('}');
        Message::parse(&text).expect("well-formed")
    }

    /// Builds a notification.
    pub fn notification(method: &str, params: Option<&Value>) -> Message {
        let mut text = format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":{}",
            Value::String(method.into())
        );
        if let Some(p) = params {
            text.push_str(",\"params\":");
            text.push_str(&p.to_string());
        }
        text.push('}');
        Message::parse(&text).expect("well-formed")
    }

    /// Request, notification or response.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The method, for requests and notifications.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The id exactly as sent (`7`, `"7"`).
    pub fn id(&self) -> Option<&RawValue> {
        self.fields.get("id").map(|b| &**b)
    }

    /// Replaces the id.
    pub fn set_id(&mut self, id: &RawValue) {
        if let Some(slot) = self.fields.get_mut("id") {
            *slot = id.to_owned();
        }
    }

    /// A raw member.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields.get(key).map(|b| &**b)
    }

    /// The raw value at `path` inside member `key`, through objects, found without building
    /// values (`msg.peek("params", &["_meta", "progressToken"])`). As with a parsed `Value`,
    /// a name given twice reads as its last occurrence.
    pub fn peek(&self, key: &str, path: &[&str]) -> Option<&RawValue> {
        let mut at = self.get(key)?;
        for name in path {
            let mut de = serde_json::Deserializer::from_str(at.get());
            at = Pick(name).deserialize(&mut de).ok().flatten()?;
        }
        Some(at)
    }

    /// [`Message::peek`], read as a `T` (`None` when absent or of another shape).
    pub fn peek_as<T: DeserializeOwned>(&self, key: &str, path: &[&str]) -> Option<T> {
        serde_json::from_str(self.peek(key, path)?.get()).ok()
    }

    /// Parses a member into a value (e.g. `params` for policy).
    pub fn value(&self, key: &str) -> Option<Value> {
        self.get(key)
            .and_then(|r| serde_json::from_str(r.get()).ok())
    }

    /// Replaces or adds a member from a value.
    pub fn set_value(&mut self, key: &str, v: &Value) {
        self.fields.insert(name(key), raw(&v.to_string()));
    }

    /// Replaces or adds a member from raw JSON text (which must be valid).
    pub fn set_raw(&mut self, key: &str, v: Box<RawValue>) {
        self.fields.insert(name(key), v);
    }

    /// Whether this is a response carrying `error`.
    pub fn is_error_response(&self) -> bool {
        self.kind == Kind::Response && self.fields.contains_key("error")
    }

    /// The message as one line of JSON (no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.fields).expect("raw values serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_given_twice_is_refused_also_when_spelled_with_escapes() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":1,"\u0069d":2,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","x":1,"x":2}"#,
        ] {
            let e = Message::parse(text).expect_err(text).to_string();
            assert!(e.contains("duplicate member"), "{text}: {e}");
        }
        // An escaped JSON-RPC name is that member (read, and written back under its name).
        let m =
            Message::parse(r#"{"jsonrpc":"2.0","\u0069d":7,"method":"ping","x-y":{}}"#).unwrap();
        assert_eq!(m.id().map(|i| i.get()), Some("7"));
        assert_eq!(
            m.to_json(),
            r#"{"jsonrpc":"2.0","id":7,"method":"ping","x-y":{}}"#
        );
    }

    #[test]
    fn peek_reads_one_member_deep_inside_as_a_parsed_value_would() {
        let m = Message::parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\"b","arguments":{"x":[1,{"y":2}]},"_meta":{"progressToken":7,"k\u0065y":"v","progressToken":"last"}}}"#,
        )
        .unwrap();
        let v = m.value("params").unwrap();
        assert_eq!(
            m.peek_as::<String>("params", &["name"]).as_deref(),
            Some("a\"b")
        );
        assert_eq!(
            m.peek("params", &["arguments"]).unwrap().get(),
            r#"{"x":[1,{"y":2}]}"#
        );
        // An escaped name matches; a name given twice reads as its last, as in `Value`.
        assert_eq!(
            m.peek_as::<String>("params", &["_meta", "key"]).as_deref(),
            Some("v")
        );
        let last = m.peek_as::<Value>("params", &["_meta", "progressToken"]);
        assert_eq!(last.as_ref(), v.pointer("/_meta/progressToken"));
        // Absent, or not an object on the way: none.
        assert!(m.peek("params", &["nope"]).is_none());
        assert!(m.peek("params", &["name", "deeper"]).is_none());
        assert!(m.peek("params", &["arguments", "x", "y"]).is_none());
        assert!(m.peek("result", &[]).is_none());
        assert_eq!(
            m.peek("params", &[]).map(|r| r.get()),
            m.get("params").map(|r| r.get())
        );
        // Of another shape than asked: none.
        assert_eq!(m.peek_as::<String>("params", &["arguments"]), None);
    }

    #[test]
    fn kinds_and_raw_preservation() {
        let text = r#"{"jsonrpc":"2.0","id":"7","method":"tools/call","params":{"name":"x","arguments":{"a":1.0,"b":0.7,"c":123456789012345678901234567890,"z":1e5}},"extra":{"k":[]}}"#;
        let m = Message::parse(text).unwrap();
        assert_eq!(m.kind(), Kind::Request);
        assert_eq!(m.method(), Some("tools/call"));
        assert_eq!(m.id().unwrap().get(), "\"7\"");
        assert_eq!(m.to_json(), text, "byte for byte");
        let n =
            Message::parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.kind(), Kind::Notification);
        let r = Message::parse(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#).unwrap();
        assert_eq!(r.kind(), Kind::Response);
        let e = Message::parse(r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"x"}}"#)
            .unwrap();
        assert!(e.is_error_response());
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            Message::parse("hello"),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(
            Message::parse("{\"jsonrpc\":"),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(
            Message::parse(r#"[{"jsonrpc":"2.0","id":1,"method":"x"}]"#),
            Err(ParseError::Batch)
        ));
        assert!(matches!(Message::parse("[1,"), Err(ParseError::NotJson(_))));
        assert!(matches!(
            Message::parse("42"),
            Err(ParseError::Invalid { .. })
        ));
        for bad in [
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            r#"{"jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list"}"#,
        ] {
            assert!(
                matches!(Message::parse(bad), Err(ParseError::Invalid { .. })),
                "{bad}"
            );
        }
        match Message::parse(r#"{"jsonrpc":"2.0","id":"a","method":5}"#) {
            Err(ParseError::Invalid { id: Some(id), .. }) => assert_eq!(id.get(), "\"a\""),
            other => panic!("{other:?}"),
        }
        // An error answer echoes the id: one that is not a string or an integer is never
        // echoed, whatever else is wrong with the line (found by fuzzing the relay: an object,
        // or a number no JSON reader can hold, went back to the client).
        for bad_id in [r#"{"a":[1]}"#, "1E400", "1.5", "null", "[1]"] {
            for line in [
                format!(r#"{{"jsonrpc":"1.0","id":{bad_id},"method":"x"}}"#),
                format!(r#"{{"id":{bad_id},"method":"x"}}"#),
                format!(r#"{{"jsonrpc":"2.0","id":{bad_id},"method":7}}"#),
            ] {
                match Message::parse(&line) {
                    Err(ParseError::Invalid { id: None, .. }) => {}
                    other => panic!("{line}: {other:?}"),
                }
            }
        }
        match Message::parse(r#"{"jsonrpc":"1.0","id":12,"method":"x"}"#) {
            Err(ParseError::Invalid { id: Some(id), .. }) => assert_eq!(id.get(), "12"),
            other => panic!("{other:?}"),
        }
    }

    /// A request method without an id is not a notification we pass on: a server that
    /// dispatches on the method alone would run it with no policy decision.
    #[test]
    fn request_methods_sent_as_notifications_are_invalid() {
        for method in [
            "tools/call",
            "tools/list",
            "resources/read",
            "prompts/get",
            "initialize",
            "ping",
            "server/discover",
            "subscriptions/listen",
            "tasks/cancel",
            "completion/complete",
            "logging/setLevel",
            "custom/thing",
            "notifications",
        ] {
            let line = format!(
                r#"{{"jsonrpc":"2.0","method":"{method}","params":{{"name":"delete_invoice"}}}}"#
            );
            match Message::parse(&line) {
                Err(ParseError::Invalid { reason, id: None }) => {
                    assert!(reason.contains("as a notification"), "{reason}");
                    assert!(reason.contains("with an id"), "{reason}");
                }
                other => panic!("{method}: {other:?}"),
            }
            // The same method with an id is an ordinary request.
            let req = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#);
            assert_eq!(Message::parse(&req).unwrap().kind(), Kind::Request);
        }
        for ok in [
            "notifications/initialized",
            "notifications/cancelled",
            "notifications/progress",
            "notifications/roots/list_changed",
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","method":"{ok}"}}"#);
            assert_eq!(Message::parse(&line).unwrap().kind(), Kind::Notification);
        }
    }

    #[test]
    fn rewrite_id_only() {
        let mut m = Message::parse(
            r#"{"jsonrpc":"2.0","id":"abc","method":"ping","params":{"_meta":{"x":1.50}}}"#,
        )
        .unwrap();
        m.set_id(&RawValue::from_string("17".into()).unwrap());
        assert_eq!(
            m.to_json(),
            r#"{"jsonrpc":"2.0","id":17,"method":"ping","params":{"_meta":{"x":1.50}}}"#
        );
    }
}
