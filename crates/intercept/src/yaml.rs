//! YAML text → JSON value, strictly: duplicate keys, tags, non-finite numbers and
//! non-scalar keys are errors rather than silently coerced.

use serde_json::{Map, Number, Value};

use crate::ImportError;

/// The locator of every error found while reading the YAML text itself.
pub(crate) const YAML_LOCATOR: &str = "(yaml)";

/// Parses `src` (one YAML document) into a JSON value. Merge keys (`<<`) are applied, as
/// Intercept's YAML library does.
pub(crate) fn parse(src: &str) -> Result<Value, ImportError> {
    let mut doc: yaml_serde::Value = yaml_serde::from_str(src).map_err(syntax)?;
    doc.apply_merge().map_err(syntax)?;
    to_json(&doc, "(root)")
}

fn syntax(e: yaml_serde::Error) -> ImportError {
    let text = e.to_string();
    let message = match e.location() {
        Some(at) if !text.contains("line ") => format!(
            "YAML error at line {}, column {}: {text}",
            at.line(),
            at.column()
        ),
        _ => format!("YAML error: {text}"),
    };
    ImportError::new(YAML_LOCATOR, message)
}

fn to_json(v: &yaml_serde::Value, at: &str) -> Result<Value, ImportError> {
    use yaml_serde::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Value::Number(Number::from_f64(f).ok_or_else(|| {
                    ImportError::new(
                        YAML_LOCATOR,
                        format!("{at}: the number {n} cannot be used (not finite)"),
                    )
                })?)
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, item) in m {
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    _ => {
                        return Err(ImportError::new(
                            YAML_LOCATOR,
                            format!("{at}: mapping keys must be strings"),
                        ))
                    }
                };
                let value = to_json(item, &format!("{at}.{key}"))?;
                if out.insert(key.clone(), value).is_some() {
                    return Err(ImportError::new(
                        YAML_LOCATOR,
                        format!("{at}: duplicate key {key:?}"),
                    ));
                }
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            return Err(ImportError::new(
                YAML_LOCATOR,
                format!("{at}: YAML tags ({}) are not supported", t.tag),
            ))
        }
    })
}
