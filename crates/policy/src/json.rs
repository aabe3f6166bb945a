//! JSON helpers with the exact semantics policy conditions need: strict parsing (duplicate
//! keys are errors), JSON-typed equality with exact number comparison, canonical encoding.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cmp::Ordering;
use std::fmt;

/// Parses JSON text, rejecting duplicate object keys anywhere in the document.
///
/// `serde_json::from_str::<Value>` keeps the last of two equal keys silently; in a security
/// policy `{"tools": {"x": {deny…}, "x": {}}}` must not quietly mean "allow".
pub fn parse_strict(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = StrictValue::deserialize_in(&mut de)?;
    de.end()?;
    Ok(v)
}

struct StrictValue;

impl StrictValue {
    fn deserialize_in<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictSeed;

impl<'de> de::DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize_in(d)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format_args!("duplicate key {k:?}")));
            }
            let v = map.next_value_seed(StrictSeed)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// A number as exactly as JSON carried it: an integer in `i128` range or a float.
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i128),
    Float(f64),
}

fn num(n: &Number) -> Option<Num> {
    if let Some(i) = n.as_i64() {
        Some(Num::Int(i.into()))
    } else if let Some(u) = n.as_u64() {
        Some(Num::Int(u.into()))
    } else {
        n.as_f64().filter(|f| f.is_finite()).map(Num::Float)
    }
}

/// Compares an integer with a float exactly (no rounding of the integer to f64).
fn cmp_int_float(i: i128, f: f64) -> Ordering {
    // |i| < 2^64 here, so any float beyond ±2^100 decides by sign alone.
    if f >= 1e30 {
        return Ordering::Less;
    }
    if f <= -1e30 {
        return Ordering::Greater;
    }
    let fl = f.floor();
    let fi = fl as i128; // exact: fl is integral and well inside i128
    match i.cmp(&fi) {
        Ordering::Equal if f > fl => Ordering::Less,
        o => o,
    }
}

/// Orders two JSON numbers exactly. `None` only for numbers that have no finite value.
pub fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    Some(match (num(a)?, num(b)?) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y)?,
    })
}

/// JSON-typed equality: same type and value; numbers compare by value (`1 == 1.0`); arrays
/// element-wise; objects key-wise regardless of key order.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => false,
    }
}

/// Canonical JSON: object keys sorted at every depth, no insignificant whitespace, integers
/// as integers. Used for counter keys (`per`) and, later, approval fingerprints.
pub fn canonical(v: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(v, &mut out);
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// Writes `v` canonically into `out`, straight from the value (no text per member).
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    use std::io::Write;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("a string encodes");
                out.push(b':');
                write_canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, out);
            }
            out.push(b']');
        }
        Value::Number(n) => match num(n) {
            // 1.0 and 1 are equal under json_eq, so they must share a key.
            Some(Num::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                write!(out, "{}", f as i64).expect("writing to memory")
            }
            _ => write!(out, "{n}").expect("writing to memory"),
        },
        other => serde_json::to_writer(&mut *out, other).expect("a value encodes"),
    }
}

/// The name of a JSON value's type, for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        assert!(parse_strict(r#"{"a":1,"a":2}"#)
            .unwrap_err()
            .to_string()
            .contains("duplicate key \"a\""));
        assert!(parse_strict(r#"{"t":{"x":{},"x":{"deny_if":[]}}}"#).is_err());
        assert!(parse_strict(r#"[{"a":1},{"a":1}]"#).is_ok());
        assert!(parse_strict(r#"{"a":1} x"#).is_err());
        assert_eq!(
            parse_strict(r#"{"b":1,"a":[1.5,"x",null]}"#).unwrap(),
            json!({"b":1,"a":[1.5,"x",null]})
        );
    }

    #[test]
    fn exact_numbers() {
        let n = |v: Value| match v {
            Value::Number(n) => n,
            _ => unreachable!(),
        };
        let big = n(json!(9_007_199_254_740_993u64)); // 2^53 + 1
        let big_f = n(json!(9_007_199_254_740_992.0f64)); // 2^53
        assert_eq!(cmp_numbers(&big, &big_f), Some(Ordering::Greater));
        assert_eq!(cmp_numbers(&big_f, &big), Some(Ordering::Less));
        assert_eq!(
            cmp_numbers(&n(json!(1)), &n(json!(1.0))),
            Some(Ordering::Equal)
        );
        assert_eq!(
            cmp_numbers(&n(json!(-1)), &n(json!(-0.5))),
            Some(Ordering::Less)
        );
        assert_eq!(
            cmp_numbers(&n(json!(u64::MAX)), &n(json!(-1))),
            Some(Ordering::Greater)
        );
        assert_eq!(
            cmp_numbers(&n(json!(u64::MAX)), &n(json!(1e300))),
            Some(Ordering::Less)
        );
        assert_eq!(
            cmp_numbers(&n(json!(2)), &n(json!(1.5))),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn typed_equality() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(!json_eq(&json!("1"), &json!(1)));
        assert!(!json_eq(&json!(true), &json!("true")));
        assert!(!json_eq(&json!(null), &json!(false)));
        assert!(json_eq(
            &json!({"a":[1,{"b":2}]}),
            &json!({"a":[1.0,{"b":2}]})
        ));
        assert!(!json_eq(&json!([1, 2]), &json!([2, 1])));
    }

    #[test]
    fn canonical_sorts_keys() {
        assert_eq!(
            canonical(&json!({"b":1,"a":{"d":[1.0,2.5],"c":"x"}})),
            r#"{"a":{"c":"x","d":[1,2.5]},"b":1}"#
        );
        // Counter keys are stored: the text of escapes, numbers and literals must not move.
        assert_eq!(
            canonical(
                &json!({"k\"é\n":"v\u{0001}\\","n":[-0.0,1e300,12345678901234567890u64,-7,true,null]})
            ),
            r#"{"k\"é\n":"v\u0001\\","n":[0,1e+300,12345678901234567890,-7,true,null]}"#
        );
    }
}
